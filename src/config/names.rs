//! Policy entries that match nothing Docker has. Warnings, not errors: policies are pushed
//! before the containers they describe exist, and a stopped container is still expected.

use super::error::Warning;
use super::keypath::KeyPath;
use super::policy::Policy;
use super::yaml::closest;
use crate::snapshot::{Container, Network, Snapshot};

/// A warning for each network no bridge network has the name of (or that has IPv6 off), and
/// for each container no running container has the name of.
pub fn unknown_names(policy: &Policy, snapshot: &Snapshot) -> Vec<Warning> {
    unknown_names_among(policy, &snapshot.networks, &snapshot.containers)
}

/// [`unknown_names`] against lists read from Docker without a whole Snapshot
/// (`check-config` needs no daemon settings or host facts).
pub fn unknown_names_among(
    policy: &Policy,
    docker_networks: &[Network],
    docker_containers: &[Container],
) -> Vec<Warning> {
    let networks: Vec<&str> = docker_networks.iter().map(|n| n.name.as_str()).collect();
    let containers: Vec<&str> = docker_containers.iter().map(|c| c.name.as_str()).collect();
    let mut warnings = Vec::new();
    for (name, entry) in &policy.networks {
        let message = match docker_networks.iter().find(|n| n.name == *name) {
            Some(network) if !network.ipv6_enabled => {
                "the network has IPv6 off, so this entry changes nothing".to_string()
            }
            Some(_) => continue,
            None => missing(
                "no Docker bridge network",
                name,
                &networks,
                "one is created",
            ),
        };
        warnings.push(Warning {
            at: entry.origin.clone(),
            subject: KeyPath::default().key("networks").key(name).to_string(),
            message,
        });
    }
    for (name, entry) in &policy.containers {
        if containers.contains(&name.as_str()) {
            continue;
        }
        warnings.push(Warning {
            at: entry.origin.clone(),
            subject: KeyPath::default().key("containers").key(name).to_string(),
            message: missing("no running container", name, &containers, "one runs"),
        });
    }
    // In file order, like errors.
    warnings.sort_by(|a, b| a.at.cmp(&b.at));
    warnings
}

/// "no X has this name", with the closest existing name when it looks like a typo.
fn missing(what: &str, name: &str, known: &[&str], when: &str) -> String {
    match closest(name, known) {
        Some(candidate) => format!(
            "{what} has this name (did you mean {candidate}?); the entry applies once {when}"
        ),
        None => format!("{what} has this name; the entry applies once {when}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ContainerPolicy, Location, NetworkPolicy};
    use crate::snapshot::DaemonSettings;

    /// Built from JSON so that fields other engineers add (with serde defaults) need no edit.
    fn snapshot() -> Snapshot {
        let network = |name: &str, ipv6_enabled: bool| {
            serde_json::json!({
                "id": format!("id-{name}"), "name": name, "bridge": format!("br-{name}"),
                "ipv6_enabled": ipv6_enabled, "ipv6_subnets": [], "icc": true,
                "masquerade": true, "internal": false,
            })
        };
        let json = serde_json::json!({
            "engine": {"version": "20.10.24", "api_version": "1.41", "bridge_nf_ip6tables": true},
            "daemon": DaemonSettings::default(),
            "networks": [network("frontend", true), network("legacy", false)],
            "containers": [{"id": "c1", "name": "web", "endpoints": [], "ports": []}],
        });
        serde_json::from_value(json).expect("test snapshot")
    }

    fn at(line: usize) -> Option<Location> {
        Some(Location {
            file: "p.yaml".into(),
            line,
            column: 3,
        })
    }

    #[test]
    fn unknown_names_are_warnings_with_their_place() {
        let mut policy = Policy::default();
        for (name, line) in [("frontend", 2), ("frontnd", 3), ("legacy", 4)] {
            let entry = NetworkPolicy {
                origin: at(line),
                ..NetworkPolicy::default()
            };
            policy.networks.insert(name.into(), entry);
        }
        for (name, line) in [("web", 6), ("db", 7)] {
            let entry = ContainerPolicy {
                origin: at(line),
                ..ContainerPolicy::default()
            };
            policy.containers.insert(name.into(), entry);
        }
        let texts: Vec<String> = unknown_names(&policy, &snapshot())
            .iter()
            .map(Warning::to_string)
            .collect();
        assert_eq!(
            texts,
            [
                "p.yaml:3:3: networks.frontnd: no Docker bridge network has this name (did you \
                 mean frontend?); the entry applies once one is created",
                "p.yaml:4:3: networks.legacy: the network has IPv6 off, so this entry changes \
                 nothing",
                "p.yaml:7:3: containers.db: no running container has this name; the entry applies \
                 once one runs",
            ]
        );
    }
}
