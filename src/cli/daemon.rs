//! daemon, status and reload.

use std::path::Path;
use std::time::{Duration, Instant};

use super::args::{DaemonArgs, Format, SCHEMA_VERSION, load_inputs, load_inputs_typed};
use super::commands::to_json;
use super::exit::{Exit, Failure};
use v6guard::daemon::status::{Health, Status, unix_now};

pub async fn daemon(args: DaemonArgs) -> Result<Exit, Failure> {
    use v6guard::daemon::{self, DaemonError, DaemonOptions};
    // A bad configuration stops the daemon before it touches anything (exit 6, which the
    // unit does not restart). Where Docker is and how often to resync are read once; SIGHUP
    // re-reads the options and policies.
    let (config, _) = load_inputs(&args.config)?;
    let resync = args
        .resync_interval
        .map(Duration::from_secs)
        .unwrap_or(config.resync_interval);
    let options = DaemonOptions {
        docker_host: args.docker.host(&config),
        daemon_json: args.docker.daemon_json(&config),
        resync_interval: resync.max(Duration::from_secs(1)),
        verify_interval: Duration::from_secs(args.verify_interval.max(1)),
        metrics_listen: args.metrics_listen.or(config.metrics_listen),
        cleanup_on_exit: args.cleanup_on_exit,
        state_file: args.state_file,
        force: args.force,
    };
    warn_about_ipv6nat();
    let files = args.config;
    let force = args.force;
    let reload = move || {
        load_inputs_typed(&files).map(|(_, mut inputs)| {
            inputs.options.force_full = force;
            inputs
        })
    };
    match daemon::run(options, reload).await {
        Ok(()) => Ok(Exit::Ok),
        Err(DaemonError::Inputs(error)) => Err(Failure::Config(error.to_string())),
        Err(error @ DaemonError::Cleanup(_)) => Err(Failure::KernelRefused(error.to_string())),
        Err(error) => Err(Failure::Unexpected(error.to_string())),
    }
}

/// Log docker-ipv6nat's chains at start (Docker may not be up yet, so not its container):
/// both tools managing IPv6 contradict each other.
fn warn_about_ipv6nat() {
    use v6guard::docker_ipv6nat;
    match docker_ipv6nat::read_chains() {
        Ok(chains) => {
            if let Some(hazard) = docker_ipv6nat::hazard(&chains, &[]) {
                tracing::warn!(fix = %hazard.fix, "{}", hazard.message);
            }
        }
        Err(error) => tracing::debug!(%error, "docker-ipv6nat's chains not looked for"),
    }
}

/// Whether the process named in the state file is alive.
fn running(pid: u32) -> bool {
    // SAFETY: kill with signal 0 only checks that the process exists (EPERM: it does).
    let alive = unsafe { libc::kill(pid as libc::pid_t, 0) } == 0;
    alive || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// Exit 0 enforcing, 3 standing down, 5 anything else (not running, hung, failing,
/// disconnected, not started).
pub fn status(state_file: &Path, format: Format) -> Result<Exit, Failure> {
    let status = Status::read(state_file).map_err(Failure::Unexpected)?;
    let now = unix_now();
    let running = running(status.pid);
    let health = status.health(now, running);
    let exit = match health {
        Health::Enforcing => Exit::Ok,
        Health::StoodDown => Exit::StoodDown,
        _ => Exit::NotEnforced,
    };
    match format {
        Format::Json => {
            let document = serde_json::json!({
                "schema_version": SCHEMA_VERSION,
                "health": health,
                "running": running,
                "state_age_s": now.as_secs().saturating_sub(status.updated_at),
                "exit_code": exit.code(),
                "state": status,
            });
            println!("{}", to_json(&document)?);
        }
        Format::Table => print!("{}", status.summary(now, running)),
    }
    Ok(exit)
}

/// How often `reload` looks at the state file for the daemon's answer.
const POLL: Duration = Duration::from_millis(100);

/// `reload`: SIGHUP the daemon named in the state file, then wait until its reload
/// generation moves and report its answer: exit 0 accepted, 6 rejected (the daemon keeps the
/// previous configuration and says why), 1 no daemon or no answer.
pub fn reload(state_file: &Path, timeout: Duration) -> Result<Exit, Failure> {
    let before = Status::read(state_file).map_err(Failure::Unexpected)?;
    if before.pid == 0 || !running(before.pid) {
        return Err(Failure::Unexpected(format!(
            "no daemon is running (pid {} from {})",
            before.pid,
            state_file.display()
        )));
    }
    // SAFETY: kill sends a signal to the pid from the state file, checked alive above.
    if unsafe { libc::kill(before.pid as libc::pid_t, libc::SIGHUP) } != 0 {
        return Err(Failure::Unexpected(format!(
            "cannot signal pid {}: {}",
            before.pid,
            std::io::Error::last_os_error()
        )));
    }
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        std::thread::sleep(POLL);
        // A read may meet no file between a restart's start and its first write: keep waiting.
        let Ok(now) = Status::read(state_file) else {
            continue;
        };
        if now.pid != before.pid {
            return Err(Failure::Unexpected(format!(
                "the daemon was replaced (pid {} -> {}) before it answered",
                before.pid, now.pid
            )));
        }
        if now.totals.reloads > before.totals.reloads {
            return match now.reload_error {
                None => {
                    println!("configuration reloaded (pid {})", now.pid);
                    Ok(Exit::Ok)
                }
                Some(error) => Err(Failure::Config(format!(
                    "the daemon rejected the new configuration and keeps the previous one:\n{error}"
                ))),
            };
        }
    }
    Err(Failure::Unexpected(format!(
        "the daemon (pid {}) did not answer the reload within {} s; see `v6guard status`",
        before.pid,
        timeout.as_secs()
    )))
}
