//! The audit: which container IPv6 ports the outside world can reach, from where, through
//! what, and why, plus the published ports that are *not* reachable over IPv6 and why not.
//!
//! The list is built from the same planning steps as the ruleset (so it says what v6guard
//! enforces), and the command checks the kernel against the plan: when v6guard's table is
//! missing or differs, the report says so first, because then routed container addresses are
//! open whatever the list says.

use std::fmt::Write;
use std::net::{IpAddr, Ipv6Addr};

use ipnet::Ipv6Net;
use serde::Serialize;

use crate::plan::{self, Cause, PlanInputs, port_network};
use crate::snapshot::{Container, PortBinding, Protocol, Snapshot};

/// One reachable container port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Reachable {
    pub container: String,
    pub address: Ipv6Addr,
    pub protocol: Protocol,
    pub port: u16,
    /// `None`: anyone. `Some`: only these prefixes.
    pub sources: Option<Vec<Ipv6Net>>,
    /// Host addresses and ports that lead to it (DNAT), as `[::]:8080` or `[2001:db8::1]:80`.
    pub host_ports: Vec<String>,
    /// Reachable on the container's own address too, not only through `host_ports`.
    pub direct: bool,
    pub why: String,
}

/// One published container port that is not reachable over IPv6.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Closed {
    pub container: String,
    pub protocol: Protocol,
    pub port: u16,
    pub why: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Audit {
    pub reachable: Vec<Reachable>,
    pub closed: Vec<Closed>,
    /// Things that weaken what the lists say.
    pub warnings: Vec<String>,
}

/// Audit what `plan` enforces for this snapshot and these inputs. Pure.
pub fn audit(snapshot: &Snapshot, inputs: &PlanInputs) -> Audit {
    let resolved = plan::resolve(snapshot, inputs);
    let mut reachable: Vec<Reachable> = Vec::new();
    for exposure in plan::exposures(snapshot, &resolved) {
        let host_port = match exposure.cause {
            Cause::Published(binding) if exposure.translated => Some(host_port(binding)),
            _ => None,
        };
        // Several bindings of one container port (`::` and a host address) are one entry.
        if let Some(entry) = reachable.iter_mut().find(|r| {
            r.container == exposure.container.name
                && r.protocol == exposure.protocol
                && r.port == exposure.port
        }) {
            entry.host_ports.extend(host_port);
            entry.direct |= exposure.direct;
            continue;
        }
        let why = match exposure.cause {
            Cause::Published(_) => "published".to_string(),
            Cause::Exposed => "policy expose".to_string(),
        };
        let why = match &exposure.allow_from {
            Some(_) => format!("{why}, sources limited by policy allow_from"),
            None => why,
        };
        reachable.push(Reachable {
            container: exposure.container.name.clone(),
            address: exposure.address,
            protocol: exposure.protocol,
            port: exposure.port,
            sources: exposure.allow_from.clone(),
            host_ports: host_port.into_iter().collect(),
            direct: exposure.direct,
            why,
        });
    }
    let closed = snapshot
        .containers
        .iter()
        .flat_map(|c| closed_ports(snapshot, &resolved, c, &reachable))
        .collect();
    let mut warnings = Vec::new();
    let needs_bridge_netfilter = snapshot.networks.iter().any(|n| !resolved.network(n).icc);
    if needs_bridge_netfilter && !snapshot.engine.bridge_nf_ip6tables {
        warnings.push(
            "ICC is off on some network but net.bridge.bridge-nf-call-ip6tables is 0: containers \
             on one bridge can still talk over IPv6 (v6guard apply turns it on)"
                .to_string(),
        );
    }
    // The lists above hold ports; a nat-unprotected network opens every port of its
    // containers' addresses, which no list of ports can say.
    warnings.extend(
        snapshot
            .networks
            .iter()
            .filter(|n| !n.internal && resolved.network(n).reach().unprotected())
            .map(|n| {
                format!(
                    "network {} is in gateway mode nat-unprotected: EVERY port of its \
                     containers' IPv6 addresses is reachable from outside, listed or not",
                    n.name
                )
            }),
    );
    Audit {
        reachable,
        closed,
        warnings,
    }
}

fn host_port(binding: &PortBinding) -> String {
    match binding.host_ip {
        Some(IpAddr::V6(ip)) => format!("[{ip}]:{}", binding.host_port),
        _ => format!("[::]:{}", binding.host_port),
    }
}

/// The container's published ports that are not reachable over IPv6, each with the reason.
fn closed_ports(
    snapshot: &Snapshot,
    resolved: &plan::Resolved,
    container: &Container,
    reachable: &[Reachable],
) -> Vec<Closed> {
    let mut out: Vec<Closed> = Vec::new();
    for binding in &container.ports {
        let open = reachable.iter().any(|r| {
            r.container == container.name
                && r.protocol == binding.protocol
                && r.port == binding.container_port
        });
        let listed = out
            .iter()
            .any(|c| c.protocol == binding.protocol && c.port == binding.container_port);
        if open
            || listed
            || binding.exposes_ipv6() && !closed_anyway(snapshot, resolved, container, binding)
        {
            continue;
        }
        out.push(Closed {
            container: container.name.clone(),
            protocol: binding.protocol,
            port: binding.container_port,
            why: closed_reason(snapshot, resolved, container, binding),
        });
    }
    out
}

/// A binding that asks for IPv6 but is closed all the same (denied, or no IPv6 to reach).
fn closed_anyway(
    snapshot: &Snapshot,
    resolved: &plan::Resolved,
    container: &Container,
    binding: &PortBinding,
) -> bool {
    resolved.denied(container, binding.protocol, binding.container_port)
        || !matches!(port_network(snapshot, container), Some((_, Some(_))))
}

fn closed_reason(
    snapshot: &Snapshot,
    resolved: &plan::Resolved,
    container: &Container,
    binding: &PortBinding,
) -> String {
    if resolved.denied(container, binding.protocol, binding.container_port) {
        return "denied by policy".to_string();
    }
    match port_network(snapshot, container) {
        None => return "no non-internal network carries its port mappings".to_string(),
        Some((network, None)) => {
            return format!("no IPv6 address on network {}", network.name);
        }
        Some(_) => {}
    }
    let bindings: Vec<String> = container
        .ports
        .iter()
        .filter(|b| b.protocol == binding.protocol && b.container_port == binding.container_port)
        .map(|b| match b.host_ip {
            Some(ip) => format!("{}", SocketText(ip, b.host_port)),
            None => format!("*:{}", b.host_port),
        })
        .collect();
    format!("published only on {} (not IPv6)", bindings.join(", "))
}

/// `127.0.0.1:8080` or `[::1]:8080`.
struct SocketText(IpAddr, u16);

impl std::fmt::Display for SocketText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            IpAddr::V4(ip) => write!(f, "{ip}:{}", self.1),
            IpAddr::V6(ip) => write!(f, "[{ip}]:{}", self.1),
        }
    }
}

/// Whether the kernel holds what v6guard planned, as the audit's first line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum Enforcement {
    /// v6guard's table matches the plan.
    Enforced,
    /// The table is missing or differs; each string says how.
    NotEnforced(Vec<String>),
    /// Docker manages IPv6 itself; v6guard stands down.
    StoodDown(String),
    /// Not checked (an offline snapshot describes another host).
    Unchecked,
}

/// The audit as a table for people.
pub fn render_text(audit: &Audit, enforcement: &Enforcement) -> String {
    let mut out = String::new();
    match enforcement {
        Enforcement::Enforced => {
            out.push_str("v6guard: enforced (the kernel holds the planned ruleset)\n")
        }
        Enforcement::NotEnforced(problems) => {
            let _ = writeln!(
                out,
                "v6guard: NOT ENFORCED: {}. Until `v6guard apply` runs, every port listening on a \
                 routed container IPv6 address is reachable.",
                problems.join("; ")
            );
        }
        Enforcement::StoodDown(reason) => {
            let _ = writeln!(out, "v6guard: standing down: {reason}");
        }
        Enforcement::Unchecked => {
            out.push_str("v6guard: enforcement not checked (audit of a saved snapshot)\n")
        }
    }
    for warning in &audit.warnings {
        let _ = writeln!(out, "warning: {warning}");
    }
    out.push_str("\nReachable over IPv6:\n");
    if audit.reachable.is_empty() {
        out.push_str("  (nothing)\n");
    }
    for r in &audit.reachable {
        let sources = match &r.sources {
            None => "anyone".to_string(),
            Some(list) if list.is_empty() => "no one".to_string(),
            Some(list) => list
                .iter()
                .map(|n| n.to_string())
                .collect::<Vec<_>>()
                .join(", "),
        };
        let via = match (r.direct, r.host_ports.is_empty()) {
            (true, true) => "its own address".to_string(),
            (true, false) => format!("its own address and host {}", r.host_ports.join(", ")),
            (false, _) => format!("host {} only", r.host_ports.join(", ")),
        };
        let _ = writeln!(
            out,
            "  {:<24} [{}]:{}/{}  from {sources}  via {via}  ({})",
            r.container, r.address, r.port, r.protocol, r.why
        );
    }
    if !audit.closed.is_empty() {
        out.push_str("\nPublished but closed over IPv6:\n");
        for c in &audit.closed {
            let _ = writeln!(
                out,
                "  {:<24} {}/{}  {}",
                c.container, c.port, c.protocol, c.why
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::lab_snapshot;

    fn policy(yaml: &str) -> PlanInputs {
        PlanInputs {
            policy: crate::config::parse_policy_file(std::path::Path::new("p.yaml"), yaml).unwrap(),
            ..PlanInputs::default()
        }
    }

    #[test]
    fn reachable_ports_say_from_where_and_through_what() {
        let report = audit(&lab_snapshot(), &PlanInputs::default());
        let ports: Vec<(u16, Vec<String>)> = report
            .reachable
            .iter()
            .map(|r| (r.port, r.host_ports.clone()))
            .collect();
        assert_eq!(
            ports,
            vec![
                (80, vec!["[::]:8080".into()]),
                (83, vec!["[::]:8083".into()])
            ]
        );
        assert!(report.reachable.iter().all(|r| r.sources.is_none()));
    }

    #[test]
    fn a_nat_unprotected_network_is_called_out() {
        let report = audit(
            &lab_snapshot(),
            &policy("networks:\n  web:\n    gateway_mode: nat-unprotected\n"),
        );
        assert!(
            report
                .warnings
                .iter()
                .any(|w| w.starts_with("network web is in gateway mode nat-unprotected: EVERY")),
            "{:?}",
            report.warnings
        );
    }

    #[test]
    fn closed_ports_say_why() {
        let report = audit(
            &lab_snapshot(),
            &policy("containers:\n  web1:\n    deny: [\"83/tcp\"]\n"),
        );
        let closed: Vec<(u16, &str)> = report
            .closed
            .iter()
            .map(|c| (c.port, c.why.as_str()))
            .collect();
        assert_eq!(
            closed,
            vec![
                (81, "published only on 127.0.0.1:8081 (not IPv6)"),
                (82, "published only on [::1]:8082 (not IPv6)"),
                (83, "denied by policy"),
            ]
        );
    }

    #[test]
    fn the_text_warns_first_when_not_enforced() {
        let report = audit(&lab_snapshot(), &PlanInputs::default());
        let text = render_text(
            &report,
            &Enforcement::NotEnforced(vec!["table ip6 v6guard is missing".into()]),
        );
        assert!(text.starts_with("v6guard: NOT ENFORCED: table ip6 v6guard is missing."));
        assert!(
            text.contains("[fd76:6700:0:10::2]:80/tcp  from anyone"),
            "{text}"
        );
    }
}
