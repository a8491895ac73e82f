//! The planner: a pure function from a Snapshot to the Ruleset that gives IPv6 the filtering
//! Docker gives IPv4. No I/O, no clock, no randomness: tests build Snapshots by hand.
//!
//! The forward hook sees three kinds of IPv6 traffic entering a Docker bridge B:
//! - from B itself (container to container; bridged traffic passes the ip6 forward hook through
//!   br_netfilter): dropped when B's ICC is off, as Docker's `-i B -o B -j DROP`;
//! - from another Docker bridge: dropped, as Docker's isolation chains do;
//! - from anywhere else (outside, the host's other interfaces): only published container ports,
//!   replies and ICMPv6 echo requests pass. This is what Docker's NAT gives IPv4 by accident and
//!   IPv6 lacks on routed container addresses.
//!
//! Traffic leaving a bridge is not touched, so containers keep their outbound IPv6.

mod standdown;

pub use standdown::{StandDown, stand_down_reason};

use std::collections::BTreeSet;

use crate::ruleset::{
    Chain, Hook, Icmpv6Type, InterfaceName, Match, PUBLISHED_SET, Rule, Ruleset, Service,
    ServiceSet, TABLE_NAME, Verdict,
};
use crate::snapshot::{Network, Snapshot};

/// The base chain on the forward hook.
pub const FORWARD_CHAIN: &str = "forward";
/// The chain for traffic whose output interface is a Docker bridge.
pub const TO_BRIDGE_CHAIN: &str = "to-bridge";

/// Choices that are not part of Docker's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanOptions {
    /// Interface name prefixes treated as Docker bridges even before v6guard has seen them, so
    /// that a container started while v6guard is not running is closed, not open (fail-closed).
    pub bridge_prefixes: Vec<String>,
    /// Interface names treated as Docker bridges even when no network names them.
    pub bridge_names: Vec<String>,
}

impl Default for PlanOptions {
    fn default() -> Self {
        PlanOptions {
            bridge_prefixes: vec!["br-".to_string()],
            bridge_names: vec!["docker0".to_string()],
        }
    }
}

/// Plan the whole ruleset for one snapshot.
pub fn plan(snapshot: &Snapshot, options: &PlanOptions) -> Ruleset {
    let guarded = guarded_interfaces(snapshot, options);
    Ruleset {
        table: TABLE_NAME.to_string(),
        sets: vec![published_set(snapshot)],
        chains: vec![forward_chain(&guarded), to_bridge_chain(snapshot, &guarded)],
    }
}

/// Interface matches that cover every Docker bridge: the configured names and prefixes, plus
/// every known bridge not already covered by one of them.
fn guarded_interfaces(snapshot: &Snapshot, options: &PlanOptions) -> Vec<InterfaceName> {
    let covered = |name: &str| {
        options.bridge_names.iter().any(|n| n == name)
            || options
                .bridge_prefixes
                .iter()
                .any(|p| name.starts_with(p.as_str()))
    };
    let mut names: BTreeSet<&str> = options.bridge_names.iter().map(String::as_str).collect();
    names.extend(
        snapshot
            .networks
            .iter()
            .map(|n| n.bridge.as_str())
            .filter(|b| !covered(b)),
    );
    let exact = names
        .into_iter()
        .map(|n| InterfaceName::Exact(n.to_string()));
    let prefixes = options
        .bridge_prefixes
        .iter()
        .map(|p| InterfaceName::Prefix(p.clone()));
    exact.chain(prefixes).collect()
}

/// The base chain: send everything headed into a Docker bridge to the to-bridge chain.
fn forward_chain(guarded: &[InterfaceName]) -> Chain {
    let rules = guarded
        .iter()
        .map(|name| {
            Rule::new(
                vec![Match::OutInterface(name.clone())],
                Verdict::Jump(TO_BRIDGE_CHAIN.to_string()),
            )
        })
        .collect();
    Chain {
        name: FORWARD_CHAIN.to_string(),
        hook: Some(Hook::ForwardFilter),
        rules,
    }
}

/// Decide traffic entering a Docker bridge: replies, ICC, isolation, published ports, drop.
fn to_bridge_chain(snapshot: &Snapshot, guarded: &[InterfaceName]) -> Chain {
    let mut rules = vec![Rule::new(
        vec![Match::EstablishedOrRelated],
        Verdict::Accept,
    )];
    rules.extend(neighbour_discovery_rules());
    rules.extend(sorted_networks(snapshot).into_iter().map(icc_rule));
    rules.extend(guarded.iter().map(isolation_rule));
    rules.push(
        Rule::new(
            vec![Match::DestinationServiceIn(PUBLISHED_SET.to_string())],
            Verdict::Accept,
        )
        .comment("published container ports"),
    );
    rules.push(Rule::new(
        vec![Match::Icmpv6Type(Icmpv6Type::EchoRequest)],
        Verdict::Accept,
    ));
    rules.push(
        Rule::new(vec![], Verdict::Drop)
            .counted()
            .comment("not published"),
    );
    Chain {
        name: TO_BRIDGE_CHAIN.to_string(),
        hook: None,
        rules,
    }
}

/// Neighbour solicitations and advertisements between containers on one bridge always pass,
/// even with ICC off: dropping them breaks nothing ICC protects but would break links
/// (libnetwork#2626 is what dropping NDP did to Docker's own IPv6 rules).
fn neighbour_discovery_rules() -> Vec<Rule> {
    [Icmpv6Type::NeighborSolicit, Icmpv6Type::NeighborAdvert]
        .into_iter()
        .map(|t| Rule::new(vec![Match::Icmpv6Type(t)], Verdict::Accept))
        .collect()
}

fn sorted_networks(snapshot: &Snapshot) -> Vec<&Network> {
    let mut networks: Vec<&Network> = snapshot.networks.iter().collect();
    networks.sort_by(|a, b| a.bridge.cmp(&b.bridge));
    networks
}

/// Same-bridge traffic: drop when the network's ICC is off, accept (before the isolation drop
/// below catches it) when on.
fn icc_rule(network: &Network) -> Rule {
    let bridge = InterfaceName::Exact(network.bridge.clone());
    let matches = vec![
        Match::InInterface(bridge.clone()),
        Match::OutInterface(bridge),
    ];
    if network.icc {
        Rule::new(matches, Verdict::Accept).comment(format!("icc on: network {}", network.name))
    } else {
        Rule::new(matches, Verdict::Drop)
            .counted()
            .comment(format!("icc off: network {}", network.name))
    }
}

/// Traffic from one Docker bridge into another is dropped (Docker's isolation chains).
fn isolation_rule(from: &InterfaceName) -> Rule {
    Rule::new(vec![Match::InInterface(from.clone())], Verdict::Drop)
        .counted()
        .comment("isolation between Docker networks")
}

/// Every (container IPv6 address, protocol, container port) that a binding publishes over
/// IPv6. Internal networks never carry published ports.
fn published_set(snapshot: &Snapshot) -> ServiceSet {
    let mut elements = BTreeSet::new();
    for container in &snapshot.containers {
        for endpoint in &container.endpoints {
            let Some(address) = endpoint.ipv6 else {
                continue;
            };
            match snapshot.network_by_id(&endpoint.network_id) {
                Some(network) if !network.internal => {}
                _ => continue,
            }
            elements.extend(
                container
                    .ports
                    .iter()
                    .filter(|binding| binding.exposes_ipv6())
                    .map(|binding| Service {
                        address,
                        protocol: binding.protocol,
                        port: binding.container_port,
                    }),
            );
        }
    }
    ServiceSet {
        name: PUBLISHED_SET.to_string(),
        elements,
    }
}

#[cfg(test)]
mod tests;
