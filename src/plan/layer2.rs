//! What must be stopped on Layer 2, in v6guard's `bridge` table, before any IP hook sees it.
//!
//! - VLAN-tagged frames from container ports. br_netfilter hands a tagged frame to the ip6
//!   hooks only with `bridge-nf-filter-vlan-tagged` (and never a double-tagged one), so a
//!   container could tag a frame (VLAN ID 0, which the receiver strips, or 802.1ad + 802.1Q)
//!   and reach an ICC-off peer past every ip6 rule. Docker's IPv4 rules have the same hole.
//! - Router advertisements and redirects from container ports (an RA guard, RFC 6105): a
//!   container must not become its neighbours' default router or hand them addresses.
//!
//! Ports are matched by name (`veth*`, Docker's host-side names) because this kernel family
//! cannot match the bridge a port belongs to without `nft_meta_bridge`, which Debian's and
//! many cloud kernels lack; the name matches every Docker container port, also of bridges
//! v6guard has not seen yet (fail-closed).

use super::PlanOptions;
use crate::ruleset::{Action, Chain, EtherType, Hook, Icmpv6Type, InterfaceName, Match, Rule};

/// The bridge table's only chain.
pub const CONTAINER_PORTS_CHAIN: &str = "container-ports";

/// The bridge table's chains.
pub fn chains(options: &PlanOptions) -> Vec<Chain> {
    let mut rules = Vec::new();
    for prefix in &options.container_port_prefixes {
        let port = || Match::InInterface(InterfaceName::Prefix(prefix.clone()));
        for tag in [EtherType::Vlan, EtherType::ServiceVlan] {
            rules.push(
                Rule::new(vec![port(), Match::EtherType(tag)], Action::Drop)
                    .counted()
                    .comment("VLAN-tagged frame from a container"),
            );
        }
        for message in [Icmpv6Type::RouterAdvert, Icmpv6Type::Redirect] {
            rules.push(
                Rule::new(vec![port(), Match::Icmpv6Type(message)], Action::Drop)
                    .counted()
                    .comment("router advertisement or redirect from a container"),
            );
        }
    }
    if rules.is_empty() {
        return Vec::new();
    }
    vec![Chain {
        name: CONTAINER_PORTS_CHAIN.to_string(),
        hook: Some(Hook::BridgePrerouting),
        rules,
    }]
}
