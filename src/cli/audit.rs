//! `audit`: read what the host holds (the kernel's tables, each container's sockets, the
//! host's hazards), hand it to the pure `v6guard::audit`, print the report.

use std::collections::BTreeMap;
use std::io::IsTerminal;

use tracing::warn;

use super::args::{Format, ReadArgs, load_inputs};
use super::commands::{load_snapshot, to_json};
use super::exit::{Exit, Failure};
use super::probe::ProbeNamespace;
use v6guard::audit::{self, Facts, Kernel, Listening};
use v6guard::config::Config;
use v6guard::plan::{self, PlanInputs};
use v6guard::snapshot::Snapshot;
use v6guard::{docker, docker_ipv6nat, hazards, listen, nft};

pub async fn audit(read: &ReadArgs, format: Format, probe: bool) -> Result<Exit, Failure> {
    let offline = read.snapshot.is_some();
    if probe && offline {
        return Err(Failure::Unexpected(
            "--probe tests this host; it cannot go with --snapshot".to_string(),
        ));
    }
    let (config, inputs) = load_inputs(&read.config)?;
    let snapshot = load_snapshot(read, &config).await?;
    let (kernel, warnings) = kernel_state(&snapshot, &inputs, offline);
    let mut facts = Facts {
        kernel,
        listening: BTreeMap::new(),
        hazards: Vec::new(),
        warnings,
    };
    if !offline {
        facts.listening = listening(read, &config, &snapshot).await;
        match hazards::read_host_facts() {
            Ok(mut host) => {
                host.ipv6nat_containers = docker_ipv6nat::containers_among(&snapshot.containers);
                facts.hazards = hazards::hazards(&host, &snapshot)
            }
            Err(error) => facts
                .warnings
                .push(format!("host hazards not checked: {error}")),
        }
    }
    let mut report = audit::audit(&snapshot, &inputs, &facts);
    if probe {
        let unexpected = |e: &dyn std::fmt::Display| Failure::Unexpected(e.to_string());
        let namespace = ProbeNamespace::create().map_err(|e| unexpected(&e))?;
        let probed = audit::probe::probe(&report, |targets| namespace.connect_all(targets));
        report.probe = Some(probed.map_err(|e| unexpected(&e))?);
    }
    match format {
        Format::Json => {
            println!("{}", to_json(&report)?);
        }
        Format::Table => {
            let colour = std::io::stdout().is_terminal()
                && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
            print!("{}", audit::render_text(&report, colour));
        }
    }
    Ok(Exit::from_audit(report.exit_code()))
}

/// What the kernel holds, as the audit's verdicts need it, and what weakens that reading.
fn kernel_state(snapshot: &Snapshot, inputs: &PlanInputs, offline: bool) -> (Kernel, Vec<String>) {
    if let Some(reason) = plan::stand_down_reason(snapshot) {
        return (Kernel::StoodDown(reason.to_string()), Vec::new());
    }
    if offline {
        return (Kernel::Unchecked, Vec::new());
    }
    let ruleset = plan::plan(snapshot, inputs);
    let verified = match nft::verify::verify(&ruleset, nft::verify::RuleCheck::Exact) {
        Ok(verified) => verified,
        Err(error) => {
            let why = format!("cannot read the kernel's ruleset ({error})");
            return (Kernel::Differs(vec![why]), Vec::new());
        }
    };
    let warnings = verified
        .counted_only
        .iter()
        .map(|why| {
            format!(
                "rules were only counted, not compared byte for byte ({why}): a rule edited in \
                 place would go unnoticed"
            )
        })
        .collect();
    let kernel = if verified.problems.is_empty() {
        Kernel::Enforced
    } else if !verified.filtering {
        Kernel::Open(verified.problems)
    } else {
        Kernel::Differs(verified.problems)
    };
    (kernel, warnings)
}

/// Every container's listeners, read through its init process. A container sharing the
/// host's or another container's namespace is left out (the audit notes it).
async fn listening(
    read: &ReadArgs,
    config: &Config,
    snapshot: &Snapshot,
) -> BTreeMap<String, Listening> {
    let own: Vec<&v6guard::snapshot::Container> = snapshot
        .containers
        .iter()
        .filter(|c| !c.shares_host_network() && c.shares_network_of().is_none())
        .collect();
    let unknown = |why: String| {
        own.iter()
            .map(|c| (c.name.clone(), Listening::Unknown(why.clone())))
            .collect()
    };
    let client = match docker::connect(&read.docker.host(config)).await {
        Ok(client) => client,
        Err(error) => return unknown(error.to_string()),
    };
    let ids: Vec<String> = own.iter().map(|c| c.id.clone()).collect();
    let pids = match docker::read_pids(&client, &ids).await {
        Ok(pids) => pids,
        Err(error) => return unknown(error.to_string()),
    };
    // A container that stopped since the list has no sockets to read: no entry.
    let targets: Vec<(String, u32)> = own
        .iter()
        .filter_map(|c| Some((c.name.clone(), *pids.get(&c.id)?)))
        .collect();
    read_all_listeners(&targets)
}

/// Threads reading sockets side by side: each read enters a namespace and waits on the
/// kernel, so a few at once keep 1,000 containers well under a second.
const SOCKET_READERS: usize = 4;

/// Every container's listeners, read by [`SOCKET_READERS`] threads.
fn read_all_listeners(targets: &[(String, u32)]) -> BTreeMap<String, Listening> {
    let chunk = targets.len().div_ceil(SOCKET_READERS).max(1);
    std::thread::scope(|scope| {
        let workers: Vec<_> = targets
            .chunks(chunk)
            .map(|part| {
                scope.spawn(move || {
                    part.iter()
                        .map(|(name, pid)| (name.clone(), listening_of(name, *pid)))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|worker| worker.join().unwrap_or_default())
            .collect()
    })
}

fn listening_of(name: &str, pid: u32) -> Listening {
    match listen::read_listeners(pid) {
        Ok(sockets) => Listening::Sockets(sockets),
        Err(error) => {
            warn!(container = %name, %error, "cannot read its sockets");
            Listening::Unknown(error.to_string())
        }
    }
}
