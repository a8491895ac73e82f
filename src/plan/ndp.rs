//! Neighbour-discovery proxying: a LAN that puts Docker's prefix inside its own on-link /64
//! (so its hosts ask for container addresses with neighbour solicitations instead of routing
//! to the Docker host) gets answers from the host for each container address, on the
//! interface the policy names. Docker never automated this (moby#10919).

use std::collections::BTreeSet;

use super::policy::Resolved;
use crate::ruleset::NdpProxies;
use crate::snapshot::Snapshot;

/// One proxy entry per container IPv6 address on every network with `ndp_proxy`.
pub fn proxies(snapshot: &Snapshot, resolved: &Resolved) -> NdpProxies {
    let mut entries = BTreeSet::new();
    for container in &snapshot.containers {
        for endpoint in &container.endpoints {
            let Some(network) = snapshot.network_by_id(&endpoint.network_id) else {
                continue;
            };
            let (Some(interface), Some(address)) =
                (resolved.network(network).ndp_proxy, endpoint.ipv6)
            else {
                continue;
            };
            entries.insert((interface, address));
        }
    }
    let owned = snapshot
        .networks
        .iter()
        .filter_map(|n| Some((resolved.network(n).ndp_proxy?, n)))
        .flat_map(|(interface, n)| n.ipv6_subnets.iter().map(move |s| (interface.clone(), *s)))
        .collect();
    NdpProxies { entries, owned }
}
