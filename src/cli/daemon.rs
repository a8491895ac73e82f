//! daemon and status.

use std::path::Path;
use std::process::ExitCode;

use super::args::{DaemonArgs, load_inputs, load_inputs_typed};

pub async fn daemon(args: DaemonArgs) -> Result<ExitCode, String> {
    use std::time::Duration;
    use v6guard::daemon::{self, DaemonOptions};
    // A bad configuration stops the daemon before it touches anything. Where Docker is and
    // how often to resync are read once; SIGHUP re-reads the options and policies.
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
    let files = args.config;
    let reload = move || load_inputs_typed(&files).map(|(_, inputs)| inputs);
    daemon::run(options, reload)
        .await
        .map_err(|e| e.to_string())?;
    Ok(ExitCode::SUCCESS)
}

/// Exit 0 when the daemon runs and its last reconcile succeeded, 1 otherwise.
pub fn status(state_file: &Path, json: bool) -> Result<ExitCode, String> {
    use v6guard::daemon::status::{Status, unix_now};
    let status = Status::read(state_file)?;
    // SAFETY: kill with signal 0 only checks that the process exists (EPERM: it does).
    let running = unsafe { libc::kill(status.pid as libc::pid_t, 0) } == 0
        || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM);
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&status).map_err(|e| e.to_string())?
        );
    } else {
        print!("{}", status.summary(unix_now(), running));
    }
    let healthy = running
        && status
            .last_reconcile
            .as_ref()
            .is_some_and(|r| r.result != "error");
    Ok(if healthy {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
