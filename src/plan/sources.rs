//! Source validation: a packet's source address must belong to where it came from.
//!
//! - From a Docker bridge, only the network's own prefixes, link-local (`fe80::/10`) and the
//!   unspecified address (`::`, duplicate address detection). A container (CAP_NET_RAW is a
//!   default capability) could otherwise send with another network's address and have the
//!   replies, or that network's exposure, work for it.
//! - From anywhere else, no source inside a prefix Docker routes to a local bridge. A LAN host
//!   spoofing a container's prefix would otherwise be masqueraded (NAT66) to the host's address
//!   and get its replies, or pass for a container of that network.
//!
//! Both run first on the forward hook, before any accept. Per network rules, not `fib`
//! (rpfilter): a network's prefix is known exactly, also on a LAN that proxies NDP for it.

use ipnet::Ipv6Net;

use super::Guarded;
use crate::ruleset::{Action, Chain, InterfaceName, Match, Rule};
use crate::snapshot::{Network, Snapshot};

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

/// The forward chain's first rules: traffic from a Docker bridge goes through the source
/// check; traffic from anywhere else must not claim a Docker prefix.
pub fn forward_rules(snapshot: &Snapshot, guarded: &Guarded) -> Vec<Rule> {
    let mut rules: Vec<Rule> = guarded
        .interfaces
        .iter()
        .map(|name| {
            Rule::new(
                vec![Match::InInterface(name.clone())],
                Action::Jump(FROM_CONTAINER_CHAIN.to_string()),
            )
        })
        .collect();
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
    rules
}

/// Returns for every source a container may use; drops the rest. A bridge v6guard has not
/// seen yet (guarded by prefix only) has no prefix here, so nothing its containers send from
/// a global address is forwarded until it is seen (and what they send each other meets the
/// isolation drop): fail-closed.
pub fn from_container_chain(snapshot: &Snapshot) -> Chain {
    let mut rules: Vec<Rule> = [LINK_LOCAL, UNSPECIFIED]
        .into_iter()
        .map(|net| Rule::new(vec![Match::SourceIn(net)], Action::Return))
        .collect();
    rules.extend(routed_subnets(snapshot).map(|(network, subnet)| {
        Rule::new(
            vec![
                Match::InInterface(InterfaceName::Exact(network.bridge.clone())),
                Match::SourceIn(subnet),
            ],
            Action::Return,
        )
    }));
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
