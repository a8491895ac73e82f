//! check-config: validate v6guard.yaml and the policies without changing anything.

use std::process::ExitCode;

use super::args::CheckConfigArgs;
use super::commands::load_snapshot_file;

/// `check-config`: load and validate everything, print every error and warning. Exit 1 on
/// errors. Names are checked against Docker when it can be reached; they only warn.
pub async fn check_config(args: CheckConfigArgs) -> Result<ExitCode, String> {
    use v6guard::config;
    let loaded_config = config::load_config(args.files.config.as_deref());
    let loaded_policy = config::load_policies(args.files.policies_dir.as_deref());
    let mut errors = 0;
    for found in [loaded_config.as_ref().err(), loaded_policy.as_ref().err()]
        .into_iter()
        .flatten()
    {
        eprintln!("{found}");
        errors += found.len();
    }
    if let Ok(policy) = &loaded_policy {
        let docker_host = args
            .docker_host
            .clone()
            .or_else(|| loaded_config.as_ref().ok()?.docker_host.clone())
            .unwrap_or_else(|| v6guard::docker::DEFAULT_SOCKET.to_string());
        match docker_names(&args, &docker_host).await {
            Ok((networks, containers)) => {
                for warning in config::unknown_names_among(policy, &networks, &containers) {
                    eprintln!("warning: {warning}");
                }
            }
            Err(why) => eprintln!("note: names not checked against Docker: {why}"),
        }
        if !args.offline && args.snapshot.is_none() {
            warn_about_ipv6nat(&docker_host).await;
        }
    }
    if errors > 0 {
        eprintln!(
            "v6guard: {errors} error(s) in the configuration; fix them and run check-config again"
        );
        return Ok(ExitCode::FAILURE);
    }
    if let Ok(policy) = &loaded_policy {
        println!(
            "configuration OK: {} network and {} container policies",
            policy.networks.len(),
            policy.containers.len()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Docker's bridge networks and running containers, for name checks: from a saved snapshot,
/// or from Docker itself (only the two lists; no daemon settings or host facts needed).
async fn docker_names(
    args: &CheckConfigArgs,
    docker_host: &str,
) -> Result<
    (
        Vec<v6guard::snapshot::Network>,
        Vec<v6guard::snapshot::Container>,
    ),
    String,
> {
    if let Some(path) = &args.snapshot {
        let snapshot = load_snapshot_file(path)?;
        return Ok((snapshot.networks, snapshot.containers));
    }
    if args.offline {
        return Err("--offline".to_string());
    }
    let client = v6guard::docker::connect(docker_host)
        .await
        .map_err(|e| e.to_string())?;
    let networks = v6guard::docker::read_networks(&client)
        .await
        .map_err(|e| e.to_string())?;
    let containers = v6guard::docker::read_containers(&client)
        .await
        .map_err(|e| e.to_string())?;
    Ok((networks, containers))
}

/// Warn when docker-ipv6nat is here (its chains, its container): v6guard and it must not
/// both manage IPv6. Best effort: what cannot be read (no root, no Docker) is left out.
async fn warn_about_ipv6nat(docker_host: &str) {
    use v6guard::docker_ipv6nat;
    let chains = docker_ipv6nat::read_chains().unwrap_or_default();
    let containers = docker_ipv6nat::find_containers_at(docker_host)
        .await
        .unwrap_or_default();
    if let Some(hazard) = docker_ipv6nat::hazard(&chains, &containers) {
        eprintln!(
            "warning: {}
  fix: {}",
            hazard.message, hazard.fix
        );
    }
}
