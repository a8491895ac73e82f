//! render, apply, snapshot, cleanup: read, plan, then print or install.

use std::path::Path;
use std::process::ExitCode;
use std::time::Instant;

use tracing::{info, warn};

use super::args::{DockerArgs, ReadArgs, load_inputs};
use v6guard::config::Config;
use v6guard::daemon::enforcer::Enforcer;
use v6guard::nft;
use v6guard::plan::{self, PlanInputs};
use v6guard::read::take_snapshot;
use v6guard::snapshot::Snapshot;

/// Exit code when `apply` stands down because Docker manages IPv6 itself.
const EXIT_STOOD_DOWN: u8 = 3;

/// `render`: the dry run, printed as the nft script `apply` performs.
pub async fn render(read: &ReadArgs) -> Result<ExitCode, String> {
    let (config, inputs) = load_inputs(&read.config)?;
    let snapshot = load_snapshot(read, &config).await?;
    let ruleset = plan::plan(&snapshot, &inputs);
    log_policy_warnings(&snapshot, &inputs);
    if let Some(reason) = plan::stand_down_reason(&snapshot) {
        warn!("apply would refuse: {reason}");
    }
    print!("{}", nft::render::render_script(&ruleset));
    Ok(ExitCode::SUCCESS)
}

/// `snapshot`: everything v6guard reads, as JSON.
pub async fn snapshot(docker: &DockerArgs) -> Result<ExitCode, String> {
    let config = Config::default();
    let snapshot = take_snapshot(&docker.host(&config), docker.daemon_json.as_deref())
        .await
        .map_err(|e| e.to_string())?;
    let json = serde_json::to_string_pretty(&snapshot).map_err(|e| e.to_string())?;
    println!("{json}");
    Ok(ExitCode::SUCCESS)
}

/// `cleanup`: remove v6guard's tables and nothing else.
pub fn cleanup() -> Result<ExitCode, String> {
    let removed = nft::cleanup().map_err(|e| e.to_string())?;
    if removed.is_empty() {
        info!("no v6guard tables were installed");
    } else {
        info!(tables = ?removed, "removed");
    }
    Ok(ExitCode::SUCCESS)
}

/// `apply`: install the ruleset, unless Docker manages IPv6 itself (exit 3) or `--force`.
pub async fn apply(read: &ReadArgs, force: bool) -> Result<ExitCode, String> {
    let started = Instant::now();
    let (config, inputs) = load_inputs(&read.config)?;
    let snapshot = load_snapshot(read, &config).await?;
    if let Some(reason) = plan::stand_down_reason(&snapshot) {
        if !force {
            eprintln!("v6guard: not applying. {reason}");
            return Ok(ExitCode::from(EXIT_STOOD_DOWN));
        }
        warn!("--force: applying although {reason}");
    }
    let ruleset = plan::plan(&snapshot, &inputs);
    log_policy_warnings(&snapshot, &inputs);
    let table = ruleset.table.clone();
    // The daemon's Enforcer, so both install in the same order (see its documentation). It
    // needs dockerd's settings only for the daemon's start, before Docker is read.
    let applied = Enforcer::system(None)
        .enforce(ruleset)
        .map_err(|e| e.to_string())?;
    applied
        .ndp
        .map_err(|e| format!("the ruleset is applied, but NDP proxying is not: {e}"))?;
    info!(
        rules = applied.table.rules,
        published = applied.table.elements,
        ms = started.elapsed().as_millis() as u64,
        "applied tables ip6 and bridge {table}"
    );
    Ok(ExitCode::SUCCESS)
}

/// Malformed labels, labels narrowed by a policy file, policy names matching nothing.
pub fn log_policy_warnings(snapshot: &Snapshot, inputs: &PlanInputs) {
    for warning in plan::warnings(snapshot, inputs) {
        warn!("{warning}");
    }
}

pub async fn load_snapshot(read: &ReadArgs, config: &Config) -> Result<Snapshot, String> {
    match &read.snapshot {
        Some(path) => load_snapshot_file(path),
        None => take_snapshot(
            &read.docker.host(config),
            read.docker.daemon_json(config).as_deref(),
        )
        .await
        .map_err(|e| e.to_string()),
    }
}

pub fn load_snapshot_file(path: &Path) -> Result<Snapshot, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read snapshot {}: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| {
        format!(
            "{}:{}:{}: not a v6guard snapshot ({e}); make one with `v6guard snapshot > FILE`",
            path.display(),
            e.line(),
            e.column()
        )
    })
}
