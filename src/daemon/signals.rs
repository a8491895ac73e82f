//! SIGHUP reloads; SIGTERM and SIGINT stop. Registered once at start, before the first apply,
//! so a signal that arrives early is not lost (or fatal: SIGHUP's default action exits).

use std::io;

use tokio::signal::unix::{Signal, SignalKind, signal};

/// SIGHUP.
pub struct Hangup(Signal);

/// SIGTERM and SIGINT.
pub struct Stops {
    terminate: Signal,
    interrupt: Signal,
}

/// Which stop signal came, for the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    Terminate,
    Interrupt,
}

pub fn register() -> io::Result<(Hangup, Stops)> {
    Ok((
        Hangup(signal(SignalKind::hangup())?),
        Stops {
            terminate: signal(SignalKind::terminate())?,
            interrupt: signal(SignalKind::interrupt())?,
        },
    ))
}

impl Hangup {
    pub async fn recv(&mut self) {
        self.0.recv().await;
    }
}

impl Stops {
    pub async fn recv(&mut self) -> Stop {
        tokio::select! {
            _ = self.terminate.recv() => Stop::Terminate,
            _ = self.interrupt.recv() => Stop::Interrupt,
        }
    }
}
