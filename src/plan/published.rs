//! Which container address each published port reaches over IPv6.

use std::net::Ipv6Addr;

use crate::snapshot::{Container, Network, PortBinding, Snapshot};

/// One binding that publishes a container port over IPv6, resolved to the address it reaches.
#[derive(Debug, Clone, Copy)]
pub struct Publication<'a> {
    pub container: &'a Container,
    pub network: &'a Network,
    /// The container's IPv6 address on `network`.
    pub address: Ipv6Addr,
    pub binding: &'a PortBinding,
}

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

/// Every binding that publishes a port over IPv6 (host IP empty, `::`, or a non-loopback
/// IPv6 address) on a container whose port network has IPv6, in container-name order.
pub fn publications(snapshot: &Snapshot) -> Vec<Publication<'_>> {
    let mut out = Vec::new();
    for container in &snapshot.containers {
        let Some((network, Some(address))) = port_network(snapshot, container) else {
            continue;
        };
        out.extend(
            container
                .ports
                .iter()
                .filter(|binding| binding.exposes_ipv6())
                .map(|binding| Publication {
                    container,
                    network,
                    address,
                    binding,
                }),
        );
    }
    out
}
