//! One model of what a container exposes over IPv6 and to whom, decided here once.
//!
//! The filter (`published`, `restricted`, `translated` sets), NAT (`dnat-*` maps), the
//! host-port policy (`proxy`) and the audit all read a [`ContainerExposure`]: which bindings
//! publish over IPv6 and on which address, what the policy denies, exposes and lets in
//! (`allow_from`), and how the port network's gateway mode lets outside traffic reach them.
//! None of them re-decides any of it. A model is built per container, so the incremental
//! planner (`incremental`) can ask for one container's share without touching the others.

use std::net::Ipv6Addr;

use ipnet::Ipv6Net;

use super::policy::{GatewayReach, Resolved};
use crate::config::ContainerPolicy;
use crate::snapshot::{Container, Network, PortBinding, Protocol, Snapshot};

/// The network that carries a container's port mappings, and the container's IPv6 address
/// there. Docker applies port mappings only on the container's first non-internal network;
/// with equal priorities libnetwork orders endpoints by network name, which is the order
/// endpoints have in the Snapshot.
pub fn port_network<'a>(
    snapshot: &'a Snapshot,
    container: &Container,
) -> Option<(&'a Network, Option<Ipv6Addr>)> {
    for endpoint in &container.endpoints {
        // A network v6guard does not know (not a bridge, or left out) may be the one Docker
        // maps ports on: do not guess another.
        let network = snapshot.network_by_id(&endpoint.network_id)?;
        if !network.internal {
            return Some((network, endpoint.ipv6));
        }
    }
    None
}

/// What one container exposes over IPv6.
#[derive(Debug, Clone)]
pub struct ContainerExposure<'a> {
    pub container: &'a Container,
    /// The network carrying the container's port mappings and the container's IPv6 address
    /// there; `None` when there is none (nothing is published or exposed over IPv6).
    pub port_network: Option<(&'a Network, Ipv6Addr)>,
    /// The container's effective policy (policy file merged with labels), if any.
    pub policy: Option<&'a ContainerPolicy>,
    /// How outside traffic reaches the port network (its gateway mode).
    reach: GatewayReach,
}

/// A container port reachable over IPv6 on the container's address, and from where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exposure<'a> {
    pub container: &'a Container,
    pub address: Ipv6Addr,
    pub protocol: Protocol,
    pub port: u16,
    /// `None`: from anywhere. `Some`: only from these prefixes (possibly none).
    pub allow_from: Option<Vec<Ipv6Net>>,
    /// Reachable on the container's own address. `false`: only through DNAT on a host
    /// address (a binding on one host address, or gateway mode `nat`).
    pub direct: bool,
    /// Reachable through DNAT on the host port of `cause` (not in gateway mode `routed`).
    pub translated: bool,
    /// Why the port is open: a published binding, or the policy's `expose`.
    pub cause: Cause<'a>,
}

/// Why a container port is reachable over IPv6.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cause<'a> {
    Published(&'a PortBinding),
    Exposed,
}

/// A published binding as the host's input hook sees it (docker-proxy's socket): the sources
/// still allowed when the policy closes or limits it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPortLimit<'a> {
    pub binding: &'a PortBinding,
    /// The prefixes still let in (none: closed).
    pub sources: Vec<Ipv6Net>,
}

impl<'a> ContainerExposure<'a> {
    /// The model of `container` under `policy` (its effective policy, if any); `resolved`
    /// gives its networks' rules.
    pub fn new(
        snapshot: &'a Snapshot,
        resolved: &Resolved,
        container: &'a Container,
        policy: Option<&'a ContainerPolicy>,
    ) -> Self {
        let port_network = match port_network(snapshot, container) {
            Some((network, Some(address))) => Some((network, address)),
            _ => None,
        };
        let reach = port_network.map_or(GatewayReach::of(None), |(network, _)| {
            resolved.network(network).reach()
        });
        ContainerExposure {
            container,
            port_network,
            policy,
            reach,
        }
    }

    /// Whether the policy keeps this container port closed over IPv6.
    pub fn denied(&self, protocol: Protocol, port: u16) -> bool {
        self.policy
            .is_some_and(|p| p.deny.iter().any(|d| d.contains(protocol, port)))
    }

    /// Only these sources may reach the container's ports (`None`: every source).
    pub fn allow_from(&self) -> Option<&'a Vec<Ipv6Net>> {
        self.policy?.allow_from.as_ref()
    }

    /// Every binding that publishes a port over IPv6 (host IP empty, `::`, or a non-loopback
    /// IPv6 address), when the port network gives the container an IPv6 address.
    pub fn bindings(&self) -> impl Iterator<Item = &'a PortBinding> + use<'a> {
        let ports: &'a [PortBinding] = match self.port_network {
            Some(_) => &self.container.ports,
            None => &[],
        };
        ports.iter().filter(|binding| binding.exposes_ipv6())
    }

    /// Published bindings not denied by the policy, with how they are reached.
    pub fn published(&self) -> Vec<Exposure<'a>> {
        let Some((_, address)) = self.port_network else {
            return Vec::new();
        };
        self.bindings()
            .filter(|b| !self.denied(b.protocol, b.container_port))
            .map(|binding| Exposure {
                container: self.container,
                address,
                protocol: binding.protocol,
                port: binding.container_port,
                allow_from: self.allow_from().cloned(),
                direct: self.reach.direct(Some(binding)),
                translated: self.reach.translated(),
                cause: Cause::Published(binding),
            })
            .collect()
    }

    /// The policy's `expose` ports not denied. `expose` opens a port on the container's
    /// address; in gateway mode `nat` nothing is reachable there (and no host port leads to an
    /// unpublished port).
    pub fn exposed(&self) -> Vec<Exposure<'a>> {
        let (Some(policy), Some((_, address))) = (self.policy, self.port_network) else {
            return Vec::new();
        };
        if !self.reach.direct(None) {
            return Vec::new();
        }
        let mut out = Vec::new();
        for spec in &policy.expose {
            out.extend(
                spec.ports()
                    .filter(|port| !self.denied(spec.protocol, *port))
                    .map(|port| Exposure {
                        container: self.container,
                        address,
                        protocol: spec.protocol,
                        port,
                        allow_from: policy.allow_from.clone(),
                        direct: true,
                        translated: false,
                        cause: Cause::Exposed,
                    }),
            );
        }
        out
    }

    /// Both: published ports, then `expose` ports.
    pub fn exposures(&self) -> Vec<Exposure<'a>> {
        let mut out = self.published();
        out.extend(self.exposed());
        out
    }

    /// Bindings translated (DNAT) from the host's addresses to the container, with the
    /// container address they reach: not in gateway modes without DNAT, not when the policy
    /// denies the container port.
    pub fn translated_bindings(&self) -> Vec<(&'a PortBinding, Ipv6Addr)> {
        let Some((_, address)) = self.port_network else {
            return Vec::new();
        };
        if !self.reach.translated() {
            return Vec::new();
        }
        self.bindings()
            .filter(|b| !self.denied(b.protocol, b.container_port))
            .map(|b| (b, address))
            .collect()
    }

    /// Published host ports the policy closes (a denied container port) or limits
    /// (`allow_from`), whatever the gateway mode: docker-proxy listens on them regardless.
    pub fn host_port_limits(&self) -> Vec<HostPortLimit<'a>> {
        self.bindings()
            .filter_map(|binding| {
                let sources = if self.denied(binding.protocol, binding.container_port) {
                    Vec::new()
                } else {
                    self.allow_from()?.clone()
                };
                Some(HostPortLimit { binding, sources })
            })
            .collect()
    }
}

/// The model of every container, in the Snapshot's order.
pub fn models<'a>(snapshot: &'a Snapshot, resolved: &'a Resolved) -> Vec<ContainerExposure<'a>> {
    snapshot
        .containers
        .iter()
        .map(|c| ContainerExposure::new(snapshot, resolved, c, resolved.container(c)))
        .collect()
}

/// Every exposure: published bindings of every container, then policy `expose` ports, minus
/// denied ports, with the container's `allow_from` and how its network's gateway mode lets it
/// be reached.
pub fn exposures<'a>(snapshot: &'a Snapshot, resolved: &'a Resolved) -> Vec<Exposure<'a>> {
    let models = models(snapshot, resolved);
    let mut out: Vec<Exposure> = models.iter().flat_map(|m| m.published()).collect();
    out.extend(models.iter().flat_map(|m| m.exposed()));
    out
}
