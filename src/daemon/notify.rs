//! systemd's notify protocol (`Type=notify`): READY once a table guards Docker's bridges,
//! WATCHDOG pings, STOPPING, and a one-line STATUS. A datagram to `$NOTIFY_SOCKET`; written
//! out here (a dozen lines) rather than pulled in as a dependency. Without `$NOTIFY_SOCKET`
//! (not under systemd) every call does nothing.
//!
//! The environment is read by the two public functions only; the work is done by functions
//! that take it as arguments, so tests never have to change the process's environment.

use std::ffi::OsStr;
use std::io;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

use tracing::debug;

/// Send one notification, e.g. `READY=1\nSTATUS=...`.
pub fn notify(state: &str) {
    let Some(socket) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    if let Err(error) = send(&socket, state) {
        debug!(%error, socket = %socket.to_string_lossy(), "sd_notify failed");
    }
}

/// Send `state` to the notify socket at `socket` (a path, or `@name` for an abstract socket).
fn send(socket: &OsStr, state: &str) -> io::Result<()> {
    let path = socket.to_string_lossy();
    let address = match path.strip_prefix('@') {
        Some(abstract_name) => SocketAddr::from_abstract_name(abstract_name.as_bytes())?,
        None => SocketAddr::from_pathname(path.as_ref())?,
    };
    UnixDatagram::unbound()?
        .send_to_addr(state.as_bytes(), &address)
        .map(drop)
}

/// The watchdog ping interval systemd asks for (half of `WatchdogSec`), if it is meant for
/// this process.
pub fn watchdog_interval() -> Option<Duration> {
    watchdog_interval_from(
        std::env::var("WATCHDOG_USEC").ok().as_deref(),
        std::env::var("WATCHDOG_PID").ok().as_deref(),
        std::process::id(),
    )
}

/// [`watchdog_interval`] for the given `WATCHDOG_USEC` and `WATCHDOG_PID` values.
fn watchdog_interval_from(usec: Option<&str>, pid: Option<&str>, own_pid: u32) -> Option<Duration> {
    let usec: u64 = usec?.parse().ok()?;
    if let Some(pid) = pid {
        if pid.parse::<u32>().ok()? != own_pid {
            return None;
        }
    }
    (usec > 0).then(|| Duration::from_micros(usec / 2))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notifications_reach_the_socket() {
        let dir = std::env::temp_dir().join(format!("v6guard-notify-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("notify.sock");
        let _ = std::fs::remove_file(&path);
        let listener = UnixDatagram::bind(&path).unwrap();
        send(path.as_os_str(), "READY=1\nSTATUS=x").unwrap();
        let mut buffer = [0u8; 64];
        let n = listener.recv(&mut buffer).unwrap();
        assert_eq!(&buffer[..n], b"READY=1\nSTATUS=x");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn abstract_sockets_are_addressed_by_name() {
        let name = format!("v6guard-notify-test-{}", std::process::id());
        let address = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let listener = UnixDatagram::bind_addr(&address).unwrap();
        send(OsStr::new(&format!("@{name}")), "WATCHDOG=1").unwrap();
        let mut buffer = [0u8; 64];
        let n = listener.recv(&mut buffer).unwrap();
        assert_eq!(&buffer[..n], b"WATCHDOG=1");
    }

    #[test]
    fn the_watchdog_interval_is_half_of_systemds_and_only_for_its_pid() {
        assert_eq!(
            watchdog_interval_from(Some("90000000"), None, 7),
            Some(Duration::from_secs(45))
        );
        assert_eq!(
            watchdog_interval_from(Some("90000000"), Some("7"), 7),
            Some(Duration::from_secs(45))
        );
        assert_eq!(watchdog_interval_from(Some("90000000"), Some("8"), 7), None);
        assert_eq!(watchdog_interval_from(Some("0"), None, 7), None);
        assert_eq!(watchdog_interval_from(Some("soon"), None, 7), None);
        assert_eq!(watchdog_interval_from(None, None, 7), None);
    }
}
