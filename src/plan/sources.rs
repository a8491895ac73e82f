//! Source validation: a packet's source address must belong to where it came from.
//!
//! - From a Docker bridge, only the network's own prefixes, link-local (`fe80::/10`), the
//!   unspecified address (`::`, duplicate address detection), and, for a container on several
//!   networks, its own addresses on the others (its replies may leave by another network's
//!   route). A container (CAP_NET_RAW is a default capability) could otherwise send with
//!   another network's address and have that network's exposure, or its replies, work for it.
//! - From anywhere else, no source inside a prefix Docker routes to a local bridge. A LAN host
//!   spoofing a container's prefix would otherwise be masqueraded (NAT66) to the host's
//!   address and get its replies, or pass an `allow_from` that names a Docker prefix.
//!
//! The check is a base chain of its own on the prerouting hook, ahead of DNAT, so it covers
//! forwarded packets and packets for the host alike (docker-proxy's ports among them).
//! Loopback is the host talking to itself (from its own bridge addresses too) and passes.
//! Per network rules, not `fib` (rpfilter): a network's prefix is known exactly, also on a
//! LAN that proxies NDP for it.

use ipnet::Ipv6Net;

use crate::ruleset::{Action, Chain, Hook, InterfaceName, Match, Rule};
use crate::snapshot::{Container, Network, Snapshot};

/// The base chain that checks every packet's source.
pub const SOURCES_CHAIN: &str = "sources";
/// The chain that checks the source of everything leaving a Docker bridge.
pub const FROM_CONTAINER_CHAIN: &str = "from-container";

/// `fe80::/10`.
pub const LINK_LOCAL: Ipv6Net = prefix(0xfe80, 10);
/// `::/128`, the source of duplicate address detection.
const UNSPECIFIED: Ipv6Net = prefix(0, 128);

const fn prefix(first: u16, len: u8) -> Ipv6Net {
    match Ipv6Net::new(std::net::Ipv6Addr::new(first, 0, 0, 0, 0, 0, 0, 0), len) {
        Ok(net) => net,
        Err(_) => panic!("a valid prefix"),
    }
}

/// The source-checking chains: the prerouting base chain and the from-container chain.
pub fn chains(snapshot: &Snapshot) -> [Chain; 2] {
    [sources_chain(snapshot), from_container_chain(snapshot)]
}

/// Loopback passes; traffic from a known Docker bridge goes through the container check;
/// traffic from anywhere else must not claim a Docker prefix.
///
/// Only bridges of known networks are checked: a bridge v6guard has not seen yet (guarded by
/// name prefix only, or the skeleton before Docker is read) has no prefix to check against,
/// and dropping everything its containers send would cut them off from the host too (health
/// checks, the host's resolver). What enters such a bridge is still closed by the to-bridge
/// chain (fail-closed), and its sources are checked from the moment it is seen.
fn sources_chain(snapshot: &Snapshot) -> Chain {
    let mut rules = vec![Rule::new(
        vec![Match::InInterface(InterfaceName::Exact("lo".to_string()))],
        Action::Accept,
    )];
    let bridges: std::collections::BTreeSet<&str> = snapshot
        .networks
        .iter()
        .map(|n| n.bridge.as_str())
        .collect();
    rules.extend(bridges.into_iter().map(|bridge| {
        Rule::new(
            vec![Match::InInterface(InterfaceName::Exact(bridge.to_string()))],
            Action::Jump(FROM_CONTAINER_CHAIN.to_string()),
        )
    }));
    rules.extend(routed_subnets(snapshot).map(|(network, subnet)| {
        Rule::new(
            vec![
                Match::SourceIn(subnet),
                Match::InInterfaceNot(InterfaceName::Exact(network.bridge.clone())),
            ],
            Action::Drop,
        )
        .counted()
        .comment(format!(
            "spoofed source: network {}'s prefix from outside its bridge",
            network.name
        ))
    }));
    Chain {
        name: SOURCES_CHAIN.to_string(),
        hook: Some(Hook::PreroutingFilter),
        rules,
    }
}

/// Accepts every source a container may use (which ends only this source check: the
/// forward and input hooks still decide), drops the rest, so the spoof drops after the jump
/// see only traffic from elsewhere.
fn from_container_chain(snapshot: &Snapshot) -> Chain {
    let mut rules: Vec<Rule> = [LINK_LOCAL, UNSPECIFIED]
        .into_iter()
        .map(|net| Rule::new(vec![Match::SourceIn(net)], Action::Accept))
        .collect();
    rules.extend(routed_subnets(snapshot).map(|(network, subnet)| {
        Rule::new(
            vec![
                Match::InInterface(InterfaceName::Exact(network.bridge.clone())),
                Match::SourceIn(subnet),
            ],
            Action::Accept,
        )
    }));
    rules.extend(multihomed_sources(snapshot));
    rules.push(
        Rule::new(vec![], Action::Drop)
            .counted()
            .comment("source address not of the container's network"),
    );
    Chain {
        name: FROM_CONTAINER_CHAIN.to_string(),
        hook: None,
        rules,
    }
}

/// A container on several networks may send from its address on one network out of
/// another's bridge (its replies follow its routes, not the network they came in on): one
/// accept per (bridge, own address elsewhere). Rules grow only with multi-homed containers.
fn multihomed_sources(snapshot: &Snapshot) -> Vec<Rule> {
    snapshot
        .containers
        .iter()
        .flat_map(|c| multihomed_rules(snapshot, c))
        .collect()
}

/// One container's accepts for its own addresses on other networks (none unless it has IPv6
/// addresses on several known networks). The only rules a container adds: the incremental
/// planner plans the whole table when a change involves any.
pub fn multihomed_rules(snapshot: &Snapshot, container: &Container) -> Vec<Rule> {
    let mut rules = Vec::new();
    let attached: Vec<(&Network, std::net::Ipv6Addr)> = container
        .endpoints
        .iter()
        .filter_map(|e| Some((snapshot.network_by_id(&e.network_id)?, e.ipv6?)))
        .collect();
    for (from, _) in &attached {
        for (other, address) in attached.iter().filter(|(n, _)| n.id != from.id) {
            rules.push(
                Rule::new(
                    vec![
                        Match::InInterface(InterfaceName::Exact(from.bridge.clone())),
                        Match::SourceIn(Ipv6Net::from(*address)),
                    ],
                    Action::Accept,
                )
                .comment(format!(
                    "container {}: its address on network {}",
                    container.name, other.name
                )),
            );
        }
    }
    rules
}

/// Every (network, IPv6 subnet) Docker routes to a local bridge.
fn routed_subnets(snapshot: &Snapshot) -> impl Iterator<Item = (&Network, Ipv6Net)> {
    snapshot.networks.iter().flat_map(|network| {
        network
            .ipv6_subnets
            .iter()
            .filter(|subnet| subnet.prefix_len() > 0)
            .map(move |subnet| (network, subnet.trunc()))
    })
}
