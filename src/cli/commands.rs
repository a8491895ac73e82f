//! render, apply, snapshot, cleanup: read, plan, then print or install.

use std::path::Path;
use std::time::Instant;

use tracing::{info, warn};

use super::args::{
    CleanupArgs, ReadArgs, RenderArgs, RenderFormat, SCHEMA_VERSION, SnapshotArgs, load_inputs,
};
use super::exit::{Exit, Failure};
use v6guard::config::Config;
use v6guard::daemon::enforcer::Enforcer;
use v6guard::nft;
use v6guard::plan::{self, PlanInputs};
use v6guard::read::take_snapshot;
use v6guard::ruleset::{Chain, Ruleset};
use v6guard::snapshot::Snapshot;

/// `render`: the dry run, printed as the nft script `apply` performs, as JSON, or (`--diff`)
/// as the changes apply would make to the live table.
pub async fn render(args: &RenderArgs) -> Result<Exit, Failure> {
    let read = &args.read;
    let (config, inputs) = load_inputs(&read.config)?;
    let snapshot = load_snapshot(read, &config).await?;
    let ruleset = plan::plan(&snapshot, &inputs);
    log_policy_warnings(&snapshot, &inputs);
    let stand_down = plan::stand_down(&snapshot, &inputs.options).map(|r| r.to_string());
    if let Some(reason) = &stand_down {
        warn!("apply would refuse: {reason}");
    }
    log_augment(&snapshot, &inputs);
    if args.diff {
        print!("{}", super::diff::live_diff(&ruleset)?);
        return Ok(Exit::Ok);
    }
    match RenderFormat::from_flags(args.format, args.json) {
        RenderFormat::Nft => print!("{}", nft::render::render_script(&ruleset)),
        RenderFormat::Json => {
            let document = ruleset_json(&ruleset, stand_down.as_deref());
            println!("{}", to_json(&document)?);
        }
    }
    Ok(Exit::Ok)
}

/// The planned ruleset as data, each rule and element in the nft syntax `render` prints
/// (set keys are concatenations, which JSON objects cannot key by).
fn ruleset_json(ruleset: &Ruleset, stand_down: Option<&str>) -> serde_json::Value {
    use serde_json::json;
    let chains = |family: &str, chains: &[Chain]| -> Vec<serde_json::Value> {
        chains
            .iter()
            .map(|chain| {
                json!({
                    "family": family,
                    "name": chain.name,
                    "hook": chain.hook,
                    "rules": chain.rules.iter().map(nft::render::render_rule).collect::<Vec<_>>(),
                })
            })
            .collect()
    };
    let sets: Vec<serde_json::Value> = ruleset
        .sets
        .iter()
        .map(|set| {
            json!({
                "name": set.name,
                "map": set.is_map(),
                "interval": set.interval,
                "elements": set
                    .elements
                    .iter()
                    .map(|(key, value)| nft::render::render_element(key, value))
                    .collect::<Vec<_>>(),
            })
        })
        .collect();
    let mut all_chains = chains("ip6", &ruleset.chains);
    all_chains.extend(chains("bridge", &ruleset.bridge_chains));
    json!({
        "schema_version": SCHEMA_VERSION,
        "table": ruleset.table,
        "digest": ruleset.comment(),
        "stand_down": stand_down,
        "rule_count": ruleset.rule_count(),
        "element_count": ruleset.element_count(),
        "needs_bridge_netfilter": ruleset.needs_bridge_netfilter,
        "sets": sets,
        "chains": all_chains,
        "ndp_proxy": ruleset
            .ndp
            .entries
            .iter()
            .map(|(interface, address)| json!({"interface": interface, "address": address}))
            .collect::<Vec<_>>(),
    })
}

/// Pretty JSON, or the (unexpected) reason it cannot be made.
pub fn to_json(value: &impl serde::Serialize) -> Result<String, Failure> {
    serde_json::to_string_pretty(value).map_err(|e| Failure::Unexpected(e.to_string()))
}

/// `snapshot`: everything v6guard reads, as JSON. Where Docker and daemon.json are comes
/// from the flags, else v6guard.yaml, as for every other command.
pub async fn snapshot(args: &SnapshotArgs) -> Result<Exit, Failure> {
    let config = v6guard::config::load_config(args.config.config.as_deref())
        .map_err(|e| Failure::Config(e.to_string()))?;
    let daemon_json = args.docker.daemon_json(&config);
    let snapshot = take_snapshot(&args.docker.host(&config), daemon_json.as_deref()).await?;
    println!("{}", to_json(&snapshot)?);
    Ok(Exit::Ok)
}

/// `cleanup`: remove v6guard's tables, then the NDP proxy entries its policies own, and
/// nothing else. Each removal is reported on stdout.
pub async fn cleanup(args: &CleanupArgs) -> Result<Exit, Failure> {
    let removed = nft::cleanup()?;
    if removed.is_empty() {
        println!("no v6guard tables were installed");
    }
    for table in &removed {
        println!("removed table {table}");
    }
    let ndp = cleanup_ndp(args).await.map_err(|failure| {
        let tables = if removed.is_empty() {
            "no tables to remove".to_string()
        } else {
            format!("tables removed: {}", removed.join(", "))
        };
        with_context(failure, &format!("{tables}; NDP proxy entries NOT removed"))
    })?;
    match ndp {
        None => println!("no NDP proxy policy: no proxy entries to remove"),
        Some(0) => println!("no NDP proxy entries of v6guard's were present"),
        Some(count) => println!("removed {count} NDP proxy entries (policy ndp_proxy)"),
    }
    Ok(Exit::Ok)
}

/// Remove the proxy entries on every `ndp_proxy` network's interface inside its subnets
/// (what `ndp::sync` treats as v6guard's), keeping nothing. `None`: no policy asks for NDP
/// proxying, so nothing was read (Docker is only asked for the networks' subnets when one
/// does).
async fn cleanup_ndp(args: &CleanupArgs) -> Result<Option<usize>, Failure> {
    let (config, inputs) = load_inputs(&args.config)?;
    if !inputs
        .policy
        .networks
        .values()
        .any(|n| n.ndp_proxy.is_some())
    {
        return Ok(None);
    }
    let docker = &args.docker;
    let snapshot = take_snapshot(
        &docker.host(&config),
        docker.daemon_json(&config).as_deref(),
    )
    .await?;
    let mut owned = plan::plan(&snapshot, &inputs).ndp;
    owned.entries.clear();
    let changes = v6guard::ndp::sync(&owned).map_err(|e| Failure::Unexpected(e.to_string()))?;
    Ok(Some(changes.removed))
}

/// The same failure (same exit status), its message preceded by `context`.
fn with_context(failure: Failure, context: &str) -> Failure {
    let message = format!("{context}: {failure}");
    match failure {
        Failure::Unexpected(_) => Failure::Unexpected(message),
        Failure::StoodDown(_) => Failure::StoodDown(message),
        Failure::Config(_) => Failure::Config(message),
        Failure::DockerUnreachable(_) => Failure::DockerUnreachable(message),
        Failure::KernelRefused(_) => Failure::KernelRefused(message),
    }
}

/// `apply`: install the ruleset (drops only where Docker manages IPv6 itself, augment mode),
/// unless `defaults.mode: stand-down` says to stand down there (exit 3); `--force`: the full
/// ruleset anyway.
pub async fn apply(read: &ReadArgs, force: bool) -> Result<Exit, Failure> {
    let started = Instant::now();
    let (config, mut inputs) = load_inputs(&read.config)?;
    inputs.options.force_full = force;
    let snapshot = load_snapshot(read, &config).await?;
    if let Some(reason) = plan::stand_down_reason(&snapshot) {
        if force {
            warn!("--force: applying the full ruleset although {reason}");
        } else if plan::stand_down(&snapshot, &inputs.options).is_some() {
            return Err(Failure::StoodDown(reason.to_string()));
        }
    }
    let ruleset = plan::plan(&snapshot, &inputs);
    log_policy_warnings(&snapshot, &inputs);
    log_augment(&snapshot, &inputs);
    let table = ruleset.table.clone();
    // The daemon's Enforcer, so both install in the same order (see its documentation). It
    // needs dockerd's settings only for the daemon's start, before Docker is read.
    let applied = Enforcer::system(None).enforce(ruleset)?;
    applied.ndp.map_err(|e| {
        Failure::Unexpected(format!(
            "the ruleset is applied, but NDP proxying is not: {e}"
        ))
    })?;
    info!(
        rules = applied.table.rules,
        published = applied.table.elements,
        ms = started.elapsed().as_millis() as u64,
        "applied tables ip6 and bridge {table}"
    );
    Ok(Exit::Ok)
}

/// Say so when the plan is augment mode's drops only.
fn log_augment(snapshot: &Snapshot, inputs: &PlanInputs) {
    if plan::augment::active(snapshot, &inputs.options) {
        info!(
            "augment mode: Docker's own rules decide IPv6; v6guard adds only the drops its \
             policies ask for (deny, allow_from)"
        );
    }
}

/// Malformed labels, labels narrowed by a policy file, policy names matching nothing.
pub fn log_policy_warnings(snapshot: &Snapshot, inputs: &PlanInputs) {
    for warning in plan::warnings(snapshot, inputs) {
        warn!("{warning}");
    }
}

pub async fn load_snapshot(read: &ReadArgs, config: &Config) -> Result<Snapshot, Failure> {
    match &read.snapshot {
        Some(path) => load_snapshot_file(path).map_err(Failure::Unexpected),
        None => Ok(take_snapshot(
            &read.docker.host(config),
            read.docker.daemon_json(config).as_deref(),
        )
        .await?),
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
