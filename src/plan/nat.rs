//! The NAT side: published ports on the host's IPv6 addresses (DNAT), hairpin, and NAT66.
//!
//! Docker 20.10 publishes nothing on IPv6 with `userland-proxy=false`, and with the proxy on,
//! IPv6 clients arrive with the proxy's address. v6guard DNATs `host address:host port` to
//! `container address:container port` before the proxy's socket is reached, so the client's
//! real address is kept in both modes, following Docker's IPv4 rules:
//!
//! | traffic to a host address:host port | proxy on (default) | proxy off |
//! |---|---|---|
//! | from outside | DNAT | DNAT |
//! | from a container (any Docker bridge) | docker-proxy (RETURN) | DNAT, masquerade on the same bridge |
//! | from the host itself, not `::1` | DNAT | DNAT |
//! | from the host itself to `[::1]` | docker-proxy | not possible on IPv6 (no route_localnet) |
//!
//! Link-local sources are never translated (as Docker 28). Published port ranges are one map
//! element per port, so the rule count stays independent of the number of ports.

use std::net::Ipv6Addr;

use ipnet::Ipv6Net;

use super::exposure::ContainerExposure;
use super::policy::{NetworkRules, Resolved};
use super::sources::LINK_LOCAL;
use super::{Guarded, PlanOptions, SetElement};
use crate::ruleset::{
    Action, Chain, DNAT_ANY_MAP, DNAT_HOST_MAP, Field, FieldType, Hook, InterfaceName, Match,
    NamedSet, PacketField, Rule,
};
use crate::snapshot::{GatewayMode, Network, Snapshot};

pub const PREROUTING_CHAIN: &str = "prerouting";
pub const OUTPUT_CHAIN: &str = "output";
pub const DNAT_CHAIN: &str = "published-dnat";
pub const POSTROUTING_CHAIN: &str = "postrouting";

/// The DNAT maps: bindings on all addresses keyed by protocol . port, bindings on one host
/// address keyed by address . protocol . port; both map to container address . port.
pub fn dnat_maps(models: &[ContainerExposure]) -> (NamedSet, NamedSet) {
    let value = vec![FieldType::Address, FieldType::Port];
    let mut any = NamedSet::map(
        DNAT_ANY_MAP,
        vec![FieldType::Protocol, FieldType::Port],
        value.clone(),
    );
    let mut host = NamedSet::map(
        DNAT_HOST_MAP,
        vec![FieldType::Address, FieldType::Protocol, FieldType::Port],
        value,
    );
    for (map, key, target) in models.iter().flat_map(dnat_elements) {
        let map = if map == DNAT_HOST_MAP {
            &mut host
        } else {
            &mut any
        };
        // Docker never binds one host port twice; should a snapshot say so, the first
        // container (by name) keeps it and the map stays valid.
        map.elements.entry(key).or_insert(target);
    }
    (any, host)
}

/// One container's DNAT map elements, in binding order (the first binding of a host port
/// wins, here and across containers).
pub fn dnat_elements(model: &ContainerExposure) -> Vec<SetElement> {
    model
        .translated_bindings()
        .into_iter()
        .map(|(binding, address)| {
            let target = vec![Field::Address(address), Field::Port(binding.container_port)];
            let service = [
                Field::Protocol(binding.protocol),
                Field::Port(binding.host_port),
            ];
            match binding.host_ipv6() {
                Some(host_ip) => {
                    let mut key = vec![Field::Address(host_ip)];
                    key.extend(service);
                    (DNAT_HOST_MAP, key, target)
                }
                None => (DNAT_ANY_MAP, service.to_vec(), target),
            }
        })
        .collect()
}

/// The NAT chains.
pub fn chains(
    snapshot: &Snapshot,
    resolved: &Resolved,
    options: &PlanOptions,
    guarded: &Guarded,
) -> Vec<Chain> {
    vec![
        prerouting_chain(),
        output_chain(),
        dnat_chain(snapshot, guarded),
        postrouting_chain(snapshot, resolved, options),
    ]
}

fn jump_to_dnat() -> Action {
    Action::Jump(DNAT_CHAIN.to_string())
}

fn prerouting_chain() -> Chain {
    Chain {
        name: PREROUTING_CHAIN.to_string(),
        hook: Some(Hook::PreroutingNat),
        rules: vec![Rule::new(vec![Match::DestinationLocal], jump_to_dnat())],
    }
}

/// The host reaching published ports on its own addresses. `::1` cannot be translated to a
/// container (IPv6 has no route_localnet), so it is left to docker-proxy.
fn output_chain() -> Chain {
    Chain {
        name: OUTPUT_CHAIN.to_string(),
        hook: Some(Hook::OutputNat),
        rules: vec![Rule::new(
            vec![
                Match::DestinationNot(Ipv6Addr::LOCALHOST),
                Match::DestinationLocal,
            ],
            jump_to_dnat(),
        )],
    }
}

fn dnat_chain(snapshot: &Snapshot, guarded: &Guarded) -> Chain {
    let mut rules = vec![
        Rule::new(vec![Match::SourceIn(LINK_LOCAL)], Action::Return)
            .comment("link-local sources are not translated"),
    ];
    if snapshot.daemon.userland_proxy.value {
        rules.extend(guarded.interfaces.iter().map(|name| {
            Rule::new(vec![Match::InInterface(name.clone())], Action::Return)
                .comment("userland-proxy on: containers use docker-proxy")
        }));
    }
    rules.push(Rule::new(
        vec![],
        Action::DnatMap {
            fields: vec![
                PacketField::DestinationAddress,
                PacketField::Protocol,
                PacketField::DestinationPort,
            ],
            map: DNAT_HOST_MAP.to_string(),
        },
    ));
    rules.push(Rule::new(
        vec![],
        Action::DnatMap {
            fields: vec![PacketField::Protocol, PacketField::DestinationPort],
            map: DNAT_ANY_MAP.to_string(),
        },
    ));
    Chain {
        name: DNAT_CHAIN.to_string(),
        hook: None,
        rules,
    }
}

/// Hairpin masquerade (proxy off) and NAT66 per network.
fn postrouting_chain(snapshot: &Snapshot, resolved: &Resolved, options: &PlanOptions) -> Chain {
    let mut rules = Vec::new();
    if !snapshot.daemon.userland_proxy.value {
        rules.extend(
            snapshot
                .networks
                .iter()
                .filter(|n| !n.internal)
                .flat_map(hairpin_rules),
        );
    }
    for network in &snapshot.networks {
        rules.extend(nat66_rules(network, &resolved.network(network), options));
    }
    Chain {
        name: POSTROUTING_CHAIN.to_string(),
        hook: Some(Hook::PostroutingNat),
        rules,
    }
}

/// A container reaching a published port through a host address and translated back into
/// its own bridge (possibly to itself) must see replies from the host address: masquerade,
/// as Docker's `-s C -d C --dport P -j MASQUERADE` does for IPv4. The postrouting hook has
/// no input interface for IPv6, so "from this bridge" is "from this bridge's subnet".
fn hairpin_rules(network: &Network) -> Vec<Rule> {
    let bridge = InterfaceName::Exact(network.bridge.clone());
    network
        .ipv6_subnets
        .iter()
        .filter(|subnet| subnet.prefix_len() > 0)
        .map(|subnet| {
            Rule::new(
                vec![
                    Match::SourceIn(*subnet),
                    Match::OutInterface(bridge.clone()),
                    Match::Dnatted,
                ],
                Action::Masquerade,
            )
            .comment(format!("hairpin: network {}", network.name))
        })
        .collect()
}

/// Whether outbound IPv6 from this subnet is translated. Internal networks never; a policy
/// `nat66` (or `snat_address`) decides when set; a network without `enable_ip_masquerade`
/// (default bridge: the daemon's `ip-masq`) never; a gateway mode decides as Docker 28 does;
/// otherwise Docker's `com.docker.network.host_ipv6` (an explicit request for translation to
/// that address) turns it on, a unique local prefix is translated and a global prefix,
/// routable as it is, only when the operator asks (`nat66_gua`).
pub fn nat66_enabled(
    network: &Network,
    rules: &NetworkRules,
    subnet: &Ipv6Net,
    options: &PlanOptions,
) -> bool {
    if network.internal || rules.reach().isolated() {
        return false;
    }
    if let Some(forced) = rules.nat66 {
        return forced;
    }
    if !network.masquerade {
        return false;
    }
    match rules.gateway_mode {
        // Docker 28: `nat` masquerades every prefix, global ones too; `routed` none.
        Some(GatewayMode::Nat) | Some(GatewayMode::NatUnprotected) => true,
        Some(GatewayMode::Routed | GatewayMode::Isolated) => false,
        None if network.host_ipv6.is_some() => true,
        None if Network::is_ula(subnet) => options.nat66_ula,
        None => options.nat66_gua,
    }
}

fn nat66_rules(network: &Network, rules: &NetworkRules, options: &PlanOptions) -> Vec<Rule> {
    let bridge = InterfaceName::Exact(network.bridge.clone());
    network
        .ipv6_subnets
        .iter()
        .filter(|subnet| subnet.prefix_len() > 0 && nat66_enabled(network, rules, subnet, options))
        .map(|subnet| {
            let (action, what) = match rules.snat {
                Some(address) => (Action::Snat(address), "snat"),
                None => (Action::Masquerade, "masquerade"),
            };
            Rule::new(
                vec![
                    Match::SourceIn(*subnet),
                    Match::OutInterfaceNot(bridge.clone()),
                ],
                action,
            )
            .comment(format!("nat66 {what}: network {}", network.name))
        })
        .collect()
}
