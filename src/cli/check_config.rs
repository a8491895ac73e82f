//! check-config: validate v6guard.yaml and the policies without changing anything.

use serde_json::{Value, json};

use super::args::{CheckConfigArgs, Format, SCHEMA_VERSION};
use super::commands::{load_snapshot_file, to_json};
use super::exit::{Exit, Failure};
use v6guard::config::{self, ConfigError, Warning};

/// `check-config`: load and validate everything, print every error and warning (stderr for
/// the table, one JSON document on stdout for `--format json`). Exit 6 on errors. Names are
/// checked against Docker when it can be reached; they only warn.
pub async fn check_config(args: CheckConfigArgs) -> Result<Exit, Failure> {
    let format = Format::or_json(args.format, args.json);
    let loaded_config = config::load_config(args.files.config.as_deref());
    let loaded_policy = config::load_policies(args.files.policies_dir.as_deref());
    let errors: Vec<&ConfigError> = [loaded_config.as_ref().err(), loaded_policy.as_ref().err()]
        .into_iter()
        .flatten()
        .flat_map(|found| found.iter())
        .collect();
    let mut warnings = Vec::new();
    let mut names_unchecked = None;
    if let Ok(policy) = &loaded_policy {
        let docker_host = args
            .docker_host
            .clone()
            .or_else(|| loaded_config.as_ref().ok()?.docker_host.clone())
            .unwrap_or_else(|| v6guard::docker::DEFAULT_SOCKET.to_string());
        let mut containers = Vec::new();
        match docker_names(&args, &docker_host).await {
            Ok((networks, listed)) => {
                warnings = config::unknown_names_among(policy, &networks, &listed);
                containers = listed;
            }
            Err(why) => names_unchecked = Some(why),
        }
        if !args.offline && args.snapshot.is_none() {
            warn_about_ipv6nat(&containers);
        }
    }
    let counts = loaded_policy
        .as_ref()
        .ok()
        .map(|p| (p.networks.len(), p.containers.len()));
    match format {
        Format::Json => {
            let document = json!({
                "schema_version": SCHEMA_VERSION,
                "valid": errors.is_empty(),
                "errors": errors.iter().map(|e| error_json(e)).collect::<Vec<_>>(),
                "warnings": warnings.iter().map(warning_json).collect::<Vec<_>>(),
                "names_unchecked": names_unchecked,
                "network_policies": counts.map(|c| c.0),
                "container_policies": counts.map(|c| c.1),
            });
            println!("{}", to_json(&document)?);
        }
        Format::Table => {
            for error in &errors {
                eprintln!("{error}");
            }
            for warning in &warnings {
                eprintln!("warning: {warning}");
            }
            if let Some(why) = &names_unchecked {
                eprintln!("note: names not checked against Docker: {why}");
            }
        }
    }
    if !errors.is_empty() {
        return Err(Failure::Config(format!(
            "{} error(s) in the configuration; fix them and run check-config again",
            errors.len()
        )));
    }
    if let (Format::Table, Some((networks, containers))) = (format, counts) {
        println!("configuration OK: {networks} network and {containers} container policies");
    }
    Ok(Exit::Ok)
}

/// One error as data: where (file, line, column), which key, what is wrong, and the line a
/// person reads.
fn error_json(error: &ConfigError) -> Value {
    let mut value = match error {
        ConfigError::Read { path, expected, .. } => json!({
            "kind": "read",
            "file": path,
            "expected": expected,
        }),
        ConfigError::Syntax { at, .. } => json!({
            "kind": "syntax",
            "file": at.file,
            "line": at.line,
            "column": at.column,
        }),
        ConfigError::Invalid {
            at,
            key,
            problem,
            expected,
        } => json!({
            "kind": "invalid",
            "file": at.file,
            "line": at.line,
            "column": at.column,
            "key": key,
            "problem": problem,
            "expected": expected,
        }),
    };
    value["message"] = Value::String(error.to_string());
    value
}

fn warning_json(warning: &Warning) -> Value {
    json!({
        "file": warning.at.as_ref().map(|at| &at.file),
        "line": warning.at.as_ref().map(|at| at.line),
        "column": warning.at.as_ref().map(|at| at.column),
        "subject": warning.subject,
        "message": warning.to_string(),
    })
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

/// Warn when docker-ipv6nat is here (its chains, its container among Docker's running
/// `containers`): v6guard and it must not both manage IPv6. Best effort: what cannot be read
/// (no root, no Docker) is left out.
fn warn_about_ipv6nat(containers: &[v6guard::snapshot::Container]) {
    use v6guard::docker_ipv6nat;
    let chains = docker_ipv6nat::read_chains().unwrap_or_default();
    let containers = docker_ipv6nat::containers_among(containers);
    if let Some(hazard) = docker_ipv6nat::hazard(&chains, &containers) {
        eprintln!(
            "warning: {}
  fix: {}",
            hazard.message, hazard.fix
        );
    }
}
