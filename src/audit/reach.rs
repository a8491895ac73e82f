//! Who can reach one container address and port, per source class: by evaluating the plan
//! (`crate::eval`) when v6guard enforces it, or by what an open host means when no table
//! filters.

use std::net::Ipv6Addr;

use ipnet::Ipv6Net;

use super::{Kernel, SourceClass, Via};
use crate::eval::{Inbound, L4, Packet, forward_verdict, inbound};
use crate::plan::{self, PlanInputs};
use crate::ruleset::Ruleset;
use crate::snapshot::{Container, Network, Protocol, Snapshot};

/// The uplink, as the evaluator sees it: a name no bridge has.
const UPLINK: &str = "(uplink)";

/// A host beyond the uplink, and "a host address" for bindings on every address: two
/// documentation addresses, replaced should a Docker network use them.
const OUTSIDE_CANDIDATES: [Ipv6Addr; 2] = [
    Ipv6Addr::new(0x2001, 0xdb8, 0xffff, 0xffff, 0, 0, 0, 1),
    Ipv6Addr::new(0x2001, 0xdb8, 0xfffe, 0xffff, 0, 0, 0, 1),
];
const HOST_CANDIDATES: [Ipv6Addr; 2] = [
    Ipv6Addr::new(0x2001, 0xdb8, 0xffff, 0xfffe, 0, 0, 0, 1),
    Ipv6Addr::new(0x2001, 0xdb8, 0xfffe, 0xfffe, 0, 0, 0, 1),
];

/// The audit's verdict on one container address and port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub reachable_from: Vec<SourceClass>,
    pub outside_sources: Option<Vec<Ipv6Net>>,
    pub via: Vec<Via>,
    /// The deciding reason, in words.
    pub because: String,
}

/// Judges reachability for one snapshot and kernel state.
pub struct Judge<'a> {
    snapshot: &'a Snapshot,
    ruleset: &'a Ruleset,
    resolved: plan::Resolved,
    kernel: &'a Kernel,
    outside: Ipv6Addr,
    host: Ipv6Addr,
}

impl<'a> Judge<'a> {
    pub fn new(
        snapshot: &'a Snapshot,
        inputs: &PlanInputs,
        ruleset: &'a Ruleset,
        kernel: &'a Kernel,
    ) -> Self {
        let unused = |candidates: [Ipv6Addr; 2]| {
            candidates
                .into_iter()
                .find(|a| network_of(snapshot, *a).is_none())
                .unwrap_or(candidates[0])
        };
        Judge {
            snapshot,
            ruleset,
            resolved: plan::resolve(snapshot, inputs),
            kernel,
            outside: unused(OUTSIDE_CANDIDATES),
            host: unused(HOST_CANDIDATES),
        }
    }

    /// Whether verdicts are evaluated at all (not when v6guard's tables differ from the plan
    /// or Docker manages IPv6).
    pub fn evaluates(&self) -> bool {
        matches!(
            self.kernel,
            Kernel::Enforced | Kernel::Open(_) | Kernel::Unchecked
        )
    }

    pub fn verdict(
        &self,
        container: &Container,
        network: &Network,
        address: Ipv6Addr,
        protocol: Protocol,
        port: u16,
    ) -> Verdict {
        match self.kernel {
            Kernel::Enforced | Kernel::Unchecked => {
                self.evaluate(container, network, address, protocol, port)
            }
            Kernel::Open(_) => open(network),
            Kernel::Differs(_) => not_evaluated("v6guard's tables differ from the plan"),
            Kernel::StoodDown(_) => not_evaluated("Docker manages IPv6 itself"),
        }
    }

    fn evaluate(
        &self,
        container: &Container,
        network: &Network,
        address: Ipv6Addr,
        protocol: Protocol,
        port: u16,
    ) -> Verdict {
        let l4 = |port| L4::Transport { protocol, port };
        let mut reachable = vec![SourceClass::Host];
        let mut via = vec![Via::Direct];
        // From outside: directly, then through every host port that leads here.
        let direct = |source| {
            let packet = Packet::new(UPLINK, &network.bridge, source, address, l4(port));
            forward_verdict(self.ruleset, &packet)
        };
        let first = direct(self.outside);
        let because = first.rule.clone().unwrap_or_else(|| "no rule".to_string());
        let mut sources = self.outside_sources(container, |s| direct(s).accepted);
        let mut outside = sources.is_some();
        let bindings: Vec<_> = container
            .ports
            .iter()
            .filter(|b| b.protocol == protocol && b.container_port == port && b.exposes_ipv6())
            .collect();
        for binding in &bindings {
            let host = binding.host_ipv6().unwrap_or(self.host);
            let shown = format!(
                "[{}]:{}",
                binding.host_ipv6().unwrap_or(Ipv6Addr::UNSPECIFIED),
                binding.host_port
            );
            let through = |iif: &str, source| {
                let packet = Packet::new(iif, "", source, host, l4(binding.host_port));
                match inbound(self.ruleset, &[host], &packet, |a| self.route(a)) {
                    Inbound::Forwarded {
                        destination,
                        verdict,
                        ..
                    } => (destination == address && verdict.accepted).then(|| Via::Dnat {
                        host: shown.clone(),
                    }),
                    Inbound::Local { verdict } => (verdict.accepted
                        && self.snapshot.daemon.userland_proxy.value)
                        .then(|| Via::DockerProxy {
                            host: shown.clone(),
                        }),
                }
            };
            if let Some(found) = self.outside_sources(container, |s| through(UPLINK, s).is_some()) {
                via.extend(through(UPLINK, self.outside).or_else(|| {
                    found
                        .first()
                        .and_then(|net| through(UPLINK, representative(*net)))
                }));
                outside = true;
                sources = merge_sources(sources, Some(found));
            }
            for (class, iif, source) in self.neighbours(network, address) {
                if let Some(how) = through(&iif, source) {
                    reachable.push(class);
                    via.push(how);
                }
            }
        }
        if outside {
            reachable.push(SourceClass::Outside);
        }
        for (class, iif, source) in self.neighbours(network, address) {
            let packet = Packet::new(&iif, &network.bridge, source, address, l4(port));
            if forward_verdict(self.ruleset, &packet).accepted {
                reachable.push(class);
            }
        }
        reachable.sort();
        reachable.dedup();
        via.sort();
        via.dedup();
        let outside_sources = sources.filter(|list| !list.is_empty());
        Verdict {
            outside_sources: outside_sources.filter(|_| outside),
            reachable_from: reachable,
            via,
            because: format!("from outside directly: {because}"),
        }
    }

    /// `Some(vec![])` when any outside source gets through (`check` with the default source),
    /// `Some(prefixes)` when only sources in some of the container's `allow_from` prefixes
    /// do, `None` when no outside source does.
    fn outside_sources(
        &self,
        container: &Container,
        check: impl Fn(Ipv6Addr) -> bool,
    ) -> Option<Vec<Ipv6Net>> {
        if check(self.outside) {
            return Some(Vec::new());
        }
        let allowed = self.resolved.container(container)?.allow_from.clone()?;
        let admitted: Vec<Ipv6Net> = allowed
            .into_iter()
            .filter(|net| check(representative(*net)))
            .collect();
        (!admitted.is_empty()).then_some(admitted)
    }

    /// A container on another network and one on the same network, as (class, input
    /// interface, source address); a class without such a network is left out.
    fn neighbours(
        &self,
        network: &Network,
        address: Ipv6Addr,
    ) -> Vec<(SourceClass, String, Ipv6Addr)> {
        let mut out = Vec::new();
        let other = self
            .snapshot
            .networks
            .iter()
            .find(|n| n.id != network.id && n.ipv6_subnets.iter().any(|s| s.prefix_len() > 0));
        if let Some(other) = other {
            if let Some(subnet) = other.ipv6_subnets.iter().find(|s| s.prefix_len() > 0) {
                out.push((
                    SourceClass::OtherNetwork,
                    other.bridge.clone(),
                    neighbour_in(*subnet, address),
                ));
            }
        }
        if let Some(subnet) = network.ipv6_subnets.iter().find(|s| s.contains(&address)) {
            out.push((
                SourceClass::SameNetwork,
                network.bridge.clone(),
                neighbour_in(*subnet, address),
            ));
        }
        out
    }

    fn route(&self, address: Ipv6Addr) -> String {
        network_of(self.snapshot, address).map_or_else(|| UPLINK.to_string(), |n| n.bridge.clone())
    }
}

/// No table filters: routed IPv6 reaches every listener (an internal network's containers
/// have no route off their bridge, so only their neighbours and the host get answers).
fn open(network: &Network) -> Verdict {
    let reachable_from = if network.internal {
        vec![SourceClass::SameNetwork, SourceClass::Host]
    } else {
        vec![
            SourceClass::Outside,
            SourceClass::OtherNetwork,
            SourceClass::SameNetwork,
            SourceClass::Host,
        ]
    };
    Verdict {
        reachable_from,
        outside_sources: None,
        via: vec![Via::Direct],
        because: "no v6guard table: Docker leaves IPv6 unfiltered".to_string(),
    }
}

fn not_evaluated(why: &str) -> Verdict {
    Verdict {
        reachable_from: Vec::new(),
        outside_sources: None,
        via: Vec::new(),
        because: format!("not evaluated: {why}"),
    }
}

fn merge_sources(a: Option<Vec<Ipv6Net>>, b: Option<Vec<Ipv6Net>>) -> Option<Vec<Ipv6Net>> {
    match (a, b) {
        (Some(a), _) if a.is_empty() => Some(a),
        (_, Some(b)) if b.is_empty() => Some(b),
        (Some(mut a), Some(b)) => {
            a.extend(b);
            a.sort();
            a.dedup();
            Some(a)
        }
        (a, b) => a.or(b),
    }
}

/// An address inside `net` to stand for its sources.
fn representative(net: Ipv6Net) -> Ipv6Addr {
    let first = u128::from(net.network());
    if net.prefix_len() >= 127 {
        net.network()
    } else {
        Ipv6Addr::from(first + 0x1234)
    }
}

/// An address in `subnet` other than `address` (and than the gateway's `::1`).
fn neighbour_in(subnet: Ipv6Net, address: Ipv6Addr) -> Ipv6Addr {
    let base = u128::from(subnet.network());
    let candidate = Ipv6Addr::from(base + 0xfffe);
    if candidate == address {
        Ipv6Addr::from(base + 0xfffd)
    } else {
        candidate
    }
}

fn network_of(snapshot: &Snapshot, address: Ipv6Addr) -> Option<&Network> {
    snapshot
        .networks
        .iter()
        .find(|n| n.ipv6_subnets.iter().any(|s| s.contains(&address)))
}
