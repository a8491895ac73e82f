//! Neighbour-discovery proxying: a LAN that puts Docker's prefix inside its own on-link /64
//! (so its hosts ask for container addresses with neighbour solicitations instead of routing
//! to the Docker host) gets answers from the host for each container address, on the
//! interface the policy names. Docker never automated this (moby#10919).

use std::net::Ipv6Addr;

use super::policy::Resolved;
use crate::ruleset::NdpProxies;
use crate::snapshot::{Container, Snapshot};

/// One proxy entry per container IPv6 address on every network with `ndp_proxy`.
pub fn proxies(snapshot: &Snapshot, resolved: &Resolved) -> NdpProxies {
    let entries = snapshot
        .containers
        .iter()
        .flat_map(|c| container_entries(snapshot, resolved, c))
        .collect();
    let owned = snapshot
        .networks
        .iter()
        .filter_map(|n| Some((resolved.network(n).ndp_proxy?, n)))
        .flat_map(|(interface, n)| n.ipv6_subnets.iter().map(move |s| (interface.clone(), *s)))
        .collect();
    NdpProxies { entries, owned }
}

/// One container's entries: (interface, address) for each of its addresses on a network with
/// `ndp_proxy`.
pub fn container_entries(
    snapshot: &Snapshot,
    resolved: &Resolved,
    container: &Container,
) -> Vec<(String, Ipv6Addr)> {
    let mut entries = Vec::new();
    for endpoint in &container.endpoints {
        let Some(network) = snapshot.network_by_id(&endpoint.network_id) else {
            continue;
        };
        let (Some(interface), Some(address)) = (resolved.network(network).ndp_proxy, endpoint.ipv6)
        else {
            continue;
        };
        entries.push((interface, address));
    }
    entries
}
