//! Who can reach one container address and port, per source class: by evaluating the plan
//! (`crate::eval`) when v6guard enforces it, or by what an open host means when no table
//! filters.

use std::net::Ipv6Addr;

use ipnet::Ipv6Net;

use super::{Kernel, SourceClass, Via};
use crate::eval::{Inbound, L4, Packet, forward_verdict, inbound};
use crate::plan;
use crate::ruleset::Ruleset;
use crate::snapshot::{Container, Network, PortBinding, Protocol, Snapshot};

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
    /// From outside to the container's own address (not only through a host port).
    pub outside_direct: bool,
    pub via: Vec<Via>,
    /// The deciding reason, in words.
    pub because: String,
}

/// Judges reachability for one snapshot and kernel state.
pub struct Judge<'a> {
    snapshot: &'a Snapshot,
    ruleset: &'a Ruleset,
    resolved: &'a plan::Resolved,
    kernel: &'a Kernel,
    outside: Ipv6Addr,
    host: Ipv6Addr,
}

impl<'a> Judge<'a> {
    pub fn new(
        snapshot: &'a Snapshot,
        resolved: &'a plan::Resolved,
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
            resolved,
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
        let target = Target {
            container,
            network,
            address,
            protocol,
            port,
        };
        match self.kernel {
            Kernel::Enforced | Kernel::Unchecked => self.evaluate(&target),
            Kernel::Open(_) => open(),
            Kernel::Differs(_) => not_evaluated("v6guard's tables differ from the plan"),
            Kernel::StoodDown(_) => not_evaluated("Docker manages IPv6 itself"),
        }
    }

    /// Evaluate the plan for every source class and path.
    fn evaluate(&self, target: &Target) -> Verdict {
        let mut found = Found::default();
        // The host reaches its containers directly: v6guard never filters its own output.
        found.reach(SourceClass::Host, None);
        let (outside_direct, because) = self.outside_direct(target, &mut found);
        for binding in target.container.ports.iter().filter(|b| {
            b.protocol == target.protocol && b.container_port == target.port && b.exposes_ipv6()
        }) {
            self.through_host_port(target, binding, &mut found);
        }
        self.neighbours_direct(target, &mut found);
        let because = match (
            outside_direct,
            found.classes.contains(&SourceClass::Outside),
        ) {
            (false, true) => format!("from outside only through a host port (directly: {because})"),
            _ => format!("from outside directly: {because}"),
        };
        found.into_verdict(outside_direct, because)
    }

    /// From outside to the container's own address; whether it passes, and the deciding rule.
    fn outside_direct(&self, target: &Target, found: &mut Found) -> (bool, String) {
        let direct = |source| {
            let packet = Packet::new(
                UPLINK,
                &target.network.bridge,
                source,
                target.address,
                target.l4(target.port),
            );
            forward_verdict(self.ruleset, &packet)
        };
        let first = direct(self.outside);
        let because = first.rule.clone().unwrap_or_else(|| "no rule".to_string());
        let sources = self.outside_sources(target.container, |s| direct(s).accepted);
        let passes = sources.is_some();
        if let Some(sources) = sources {
            found.reach(SourceClass::Outside, Some(Via::Direct));
            found.outside_sources(sources);
        }
        (passes, because)
    }

    /// Through one published host port: from outside, and from containers (DNAT, or
    /// docker-proxy with userland-proxy on).
    fn through_host_port(&self, target: &Target, binding: &PortBinding, found: &mut Found) {
        let host = binding.host_ipv6().unwrap_or(self.host);
        let shown = format!(
            "[{}]:{}",
            binding.host_ipv6().unwrap_or(Ipv6Addr::UNSPECIFIED),
            binding.host_port
        );
        let through = |iif: &str, source| {
            let packet = Packet::new(iif, "", source, host, target.l4(binding.host_port));
            match inbound(self.ruleset, &[host], &packet, |a| self.route(a)) {
                Inbound::Forwarded {
                    destination,
                    verdict,
                    ..
                } => (destination == target.address && verdict.accepted).then(|| Via::Dnat {
                    host: shown.clone(),
                }),
                // docker-proxy listens on the port network's host port only.
                Inbound::Local { verdict } => (verdict.accepted
                    && self.snapshot.daemon.userland_proxy.value
                    && self.is_port_address(target))
                .then(|| Via::DockerProxy {
                    host: shown.clone(),
                }),
            }
        };
        if let Some(sources) =
            self.outside_sources(target.container, |s| through(UPLINK, s).is_some())
        {
            let source = sources
                .first()
                .map_or(self.outside, |net| representative(*net));
            found.reach(SourceClass::Outside, through(UPLINK, source));
            found.outside_sources(sources);
        }
        for (class, iif, source) in self.neighbours(target.network, target.address) {
            if let Some(how) = through(&iif, source) {
                found.reach(class, Some(how));
            }
        }
    }

    /// From containers on the same and on other networks, to the container's own address.
    /// Without br_netfilter, same-bridge traffic never meets an ip6 hook: nothing filters it.
    fn neighbours_direct(&self, target: &Target, found: &mut Found) {
        for (class, iif, source) in self.neighbours(target.network, target.address) {
            let packet = Packet::new(
                &iif,
                &target.network.bridge,
                source,
                target.address,
                target.l4(target.port),
            );
            let unfiltered =
                class == SourceClass::SameNetwork && !self.snapshot.engine.bridge_nf_ip6tables;
            if unfiltered || forward_verdict(self.ruleset, &packet).accepted {
                found.reach(class, Some(Via::Direct));
            }
        }
    }

    /// Whether the target is the container's address on the network carrying its ports.
    fn is_port_address(&self, target: &Target) -> bool {
        plan::port_network(self.snapshot, target.container).is_some_and(|(network, address)| {
            network.id == target.network.id && address == Some(target.address)
        })
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
        let model = plan::ContainerExposure::new(
            self.snapshot,
            self.resolved,
            container,
            self.resolved.container(container),
        );
        let allowed = model.allow_from()?.clone();
        let admitted: Vec<Ipv6Net> = allowed
            .into_iter()
            .filter(|net| check(representative(*net)))
            .collect();
        (!admitted.is_empty()).then_some(admitted)
    }

    /// A container on every other network and one on the same network, as (class, input
    /// interface, source address): "other networks" is reachable when any of them reaches.
    fn neighbours(
        &self,
        network: &Network,
        address: Ipv6Addr,
    ) -> Vec<(SourceClass, String, Ipv6Addr)> {
        let mut out: Vec<(SourceClass, String, Ipv6Addr)> = self
            .snapshot
            .networks
            .iter()
            .filter(|n| n.id != network.id)
            .filter_map(|other| {
                let subnet = other.ipv6_subnets.iter().find(|s| s.prefix_len() > 0)?;
                Some((
                    SourceClass::OtherNetwork,
                    other.bridge.clone(),
                    neighbour_in(*subnet, address),
                ))
            })
            .collect();
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

/// No table filters: routed IPv6 reaches every listener, from everywhere. (A container on an
/// internal network alone has no route back off its bridge, but one also attached to another
/// network answers through it: no class is ruled out.)
fn open() -> Verdict {
    Verdict {
        reachable_from: vec![
            SourceClass::Outside,
            SourceClass::OtherNetwork,
            SourceClass::SameNetwork,
            SourceClass::Host,
        ],
        outside_sources: None,
        outside_direct: true,
        via: vec![Via::Direct],
        because: "no v6guard table: Docker leaves IPv6 unfiltered".to_string(),
    }
}

fn not_evaluated(why: &str) -> Verdict {
    Verdict {
        reachable_from: Vec::new(),
        outside_sources: None,
        outside_direct: false,
        via: Vec::new(),
        because: format!("not evaluated: {why}"),
    }
}

/// The container address and port a verdict is about.
struct Target<'a> {
    container: &'a Container,
    network: &'a Network,
    address: Ipv6Addr,
    protocol: Protocol,
    port: u16,
}

impl Target<'_> {
    fn l4(&self, port: u16) -> L4 {
        L4::Transport {
            protocol: self.protocol,
            port,
        }
    }
}

/// What the checks found so far.
#[derive(Default)]
struct Found {
    classes: Vec<SourceClass>,
    via: Vec<Via>,
    /// `Some(vec![])`: any outside source; `Some(list)`: only these; `None`: none yet.
    outside_sources: Option<Vec<Ipv6Net>>,
}

impl Found {
    fn reach(&mut self, class: SourceClass, via: Option<Via>) {
        self.classes.push(class);
        self.via.extend(via);
    }

    /// Outside sources that got through one path; any source on any path means anyone.
    fn outside_sources(&mut self, sources: Vec<Ipv6Net>) {
        self.outside_sources = match self.outside_sources.take() {
            Some(known) if known.is_empty() => Some(known),
            _ if sources.is_empty() => Some(sources),
            Some(mut known) => {
                known.extend(sources);
                known.sort();
                known.dedup();
                Some(known)
            }
            None => Some(sources),
        };
    }

    fn into_verdict(mut self, outside_direct: bool, because: String) -> Verdict {
        self.classes.sort();
        self.classes.dedup();
        self.via.sort();
        self.via.dedup();
        Verdict {
            outside_sources: self.outside_sources.filter(|list| !list.is_empty()),
            outside_direct,
            reachable_from: self.classes,
            via: self.via,
            because,
        }
    }
}

/// An address inside `net` to stand for its sources: a little way in, never outside it.
fn representative(net: Ipv6Net) -> Ipv6Addr {
    let host_bits = u128::MAX
        .checked_shr(u32::from(net.prefix_len()))
        .unwrap_or(0);
    Ipv6Addr::from(u128::from(net.network()) | (0x1234 & host_bits))
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
