//! The filter side: which IPv6 traffic may enter (and leave) a Docker bridge.
//!
//! The forward hook sees three kinds of IPv6 traffic entering a Docker bridge B:
//! - from B itself (container to container; bridged traffic passes the ip6 forward hook through
//!   br_netfilter): dropped when B's ICC is off, as Docker's `-i B -o B -j DROP`;
//! - from another Docker bridge: dropped, as Docker's isolation chains do;
//! - from anywhere else (outside, the host's other interfaces): only published container ports,
//!   replies and ICMPv6 echo requests pass. This is what Docker's NAT gives IPv4 by accident and
//!   IPv6 lacks on routed container addresses.
//!
//! Traffic leaving a bridge is not touched here (containers keep their outbound IPv6), except
//! from an internal (or `isolated`) network, which may not leave its bridge at all; its source
//! address was checked on the prerouting hook (`sources`). A network's gateway mode (Docker
//! 28's `nat`, `routed`, `nat-unprotected`) decides what reaches it from outside
//! (`policy::GatewayReach`).

use std::collections::BTreeMap;

use ipnet::Ipv6Net;

use super::SetElement;
use super::exposure::ContainerExposure;
use super::policy::Resolved;
use super::{FORWARD_CHAIN, Guarded, TO_BRIDGE_CHAIN, sources};
use crate::ruleset::{
    Action, Chain, Field, FieldType, Hook, Icmpv6Type, InterfaceName, LINKS_SET, Match, NamedSet,
    PUBLISHED_SET, PacketField, RESTRICTED_SET, Rule, TRANSLATED_RESTRICTED_SET, TRANSLATED_SET,
};
use crate::snapshot::{Container, Network, Snapshot};

/// Docker's default bridge network, the only one with legacy links.
const DEFAULT_NETWORK: &str = "bridge";

/// `ip6 daddr . meta l4proto . th dport`: the service a packet is headed for.
fn service_fields() -> Vec<PacketField> {
    vec![
        PacketField::DestinationAddress,
        PacketField::Protocol,
        PacketField::DestinationPort,
    ]
}

fn service_types() -> Vec<FieldType> {
    vec![FieldType::Address, FieldType::Protocol, FieldType::Port]
}

/// `ip6 daddr . meta l4proto . th dport . ip6 saddr`: the service and who asks for it.
fn restricted_fields() -> Vec<PacketField> {
    let mut fields = service_fields();
    fields.push(PacketField::SourceAddress);
    fields
}

/// `FIELDS @SET`.
fn lookup(fields: Vec<PacketField>, set: &str) -> Match {
    Match::Lookup {
        fields,
        set: set.to_string(),
    }
}

/// The lookups that let traffic reach a container port on its own address: the open
/// `published` set, and the `restricted` set (policy `allow_from`) when any container has one.
fn direct_lookups(sets: &ExposureSets) -> Vec<Match> {
    let mut lookups = vec![lookup(service_fields(), PUBLISHED_SET)];
    if !sets.restricted.elements.is_empty() {
        lookups.push(lookup(restricted_fields(), RESTRICTED_SET));
    }
    lookups
}

/// The lookups that let a connection translated by DNAT reach a container port: the direct
/// ones, and the ports reachable only through a host address.
fn translated_lookups(sets: &ExposureSets) -> Vec<Match> {
    let mut lookups = direct_lookups(sets);
    if !sets.translated.elements.is_empty() {
        lookups.push(lookup(service_fields(), TRANSLATED_SET));
    }
    if !sets.translated_restricted.elements.is_empty() {
        lookups.push(lookup(restricted_fields(), TRANSLATED_RESTRICTED_SET));
    }
    lookups
}

/// The sets that say which container ports are reachable over IPv6.
pub struct ExposureSets {
    /// On the container's address, from anywhere.
    pub published: NamedSet,
    /// On the container's address, only from the prefixes in each element (`allow_from`).
    pub restricted: NamedSet,
    /// Only through DNAT on a host address, from anywhere.
    pub translated: NamedSet,
    /// Only through DNAT on a host address, only from the prefixes in each element.
    pub translated_restricted: NamedSet,
}

impl ExposureSets {
    pub fn into_sets(self) -> [NamedSet; 4] {
        [
            self.published,
            self.restricted,
            self.translated,
            self.translated_restricted,
        ]
    }
}

/// What the filter chains are built from.
pub struct FilterInputs<'a> {
    pub snapshot: &'a Snapshot,
    pub resolved: &'a Resolved,
    pub guarded: &'a Guarded,
    pub sets: &'a ExposureSets,
    pub links: &'a NamedSet,
    /// `defaults.strict_isolation`: translated connections meet ICC and isolation first.
    pub strict_isolation: bool,
}

/// The filter chains: the base chain on the forward hook, the source check and the
/// to-bridge chain.
pub fn chains(inputs: &FilterInputs) -> Vec<Chain> {
    let mut chains = sources::chains(inputs.snapshot).to_vec();
    chains.push(forward_chain(inputs));
    chains.push(to_bridge_chain(inputs));
    chains
}

/// Keep internal networks' traffic inside their bridge; send everything headed into a Docker
/// bridge to the to-bridge chain. (Sources were checked on the prerouting hook.)
fn forward_chain(inputs: &FilterInputs) -> Chain {
    let (snapshot, guarded) = (inputs.snapshot, inputs.guarded);
    let mut rules: Vec<Rule> = snapshot
        .networks
        .iter()
        .filter(|n| sealed(n, inputs.resolved))
        .map(internal_egress_rule)
        .collect();
    rules.extend(guarded.interfaces.iter().map(|name| {
        Rule::new(
            vec![Match::OutInterface(name.clone())],
            Action::Jump(TO_BRIDGE_CHAIN.to_string()),
        )
    }));
    Chain {
        name: FORWARD_CHAIN.to_string(),
        hook: Some(Hook::ForwardFilter),
        rules,
    }
}

/// Whether nothing may enter or leave the network's bridge: `--internal`, or gateway mode
/// `isolated`.
fn sealed(network: &Network, resolved: &Resolved) -> bool {
    network.internal || resolved.network(network).reach().isolated()
}

/// Nothing leaves an internal network's bridge (Docker's IPv6-safe form, moby#46214: same-bridge
/// traffic, NDP and link-local inside the bridge are untouched).
fn internal_egress_rule(network: &Network) -> Rule {
    let bridge = InterfaceName::Exact(network.bridge.clone());
    Rule::new(
        vec![
            Match::InInterface(bridge.clone()),
            Match::OutInterfaceNot(bridge),
        ],
        Action::Drop,
    )
    .counted()
    .comment(format!("internal network {}: no egress", network.name))
}

/// Decide traffic entering a Docker bridge, first match wins.
///
/// A connection translated to a published port through a host address is accepted before
/// ICC and isolation (reachable from other networks, as docker-proxy and Docker 28 make it),
/// or, with `strict_isolation`, right after them (as Docker 20.10's IPv4 with the proxy off).
fn to_bridge_chain(inputs: &FilterInputs) -> Chain {
    let FilterInputs {
        snapshot,
        resolved,
        guarded,
        sets,
        links,
        strict_isolation,
    } = *inputs;
    let translated = || {
        translated_lookups(sets)
            .into_iter()
            .map(translated_exposure_rule)
    };
    let mut rules = vec![Rule::new(vec![Match::EstablishedOrRelated], Action::Accept)];
    let networks = sorted_networks(snapshot);
    rules.extend(
        networks
            .iter()
            .filter(|n| !resolved.network(n).icc)
            .flat_map(|n| neighbour_discovery_rules(n)),
    );
    rules.extend(links_rule(snapshot, links));
    if !strict_isolation {
        rules.extend(translated());
    }
    rules.extend(networks.iter().map(|n| icc_rule(n, resolved)));
    rules.extend(
        networks
            .iter()
            .filter(|n| sealed(n, resolved))
            .map(|n| internal_ingress_rule(n)),
    );
    rules.extend(guarded.interfaces.iter().map(isolation_rule));
    if strict_isolation {
        rules.extend(translated());
    }
    rules.extend(
        networks
            .iter()
            .filter(|n| !sealed(n, resolved))
            .filter_map(|n| gateway_mode_rule(n, resolved)),
    );
    rules.extend(direct_lookups(sets).into_iter().map(|lookup| {
        Rule::new(vec![lookup], Action::Accept).comment("published container ports")
    }));
    rules.push(Rule::new(
        vec![Match::Icmpv6Type(Icmpv6Type::EchoRequest)],
        Action::Accept,
    ));
    rules.push(
        Rule::new(vec![], Action::Drop)
            .counted()
            .comment("not published"),
    );
    Chain {
        name: TO_BRIDGE_CHAIN.to_string(),
        hook: None,
        rules,
    }
}

/// Neighbour solicitations and advertisements between containers on one bridge pass even
/// with ICC off: dropping them breaks nothing ICC protects but would break links
/// (libnetwork#2626 is what dropping NDP did to Docker's own IPv6 rules). Only within the
/// bridge and only with hop limit 255, which a routed packet can no longer carry (RFC 4861):
/// NDP is not a channel into another network or an internal one. (With ICC on, the ICC
/// accept lets the bridge's own traffic through anyway.)
fn neighbour_discovery_rules(network: &Network) -> Vec<Rule> {
    let bridge = InterfaceName::Exact(network.bridge.clone());
    [Icmpv6Type::NeighborSolicit, Icmpv6Type::NeighborAdvert]
        .into_iter()
        .map(|t| {
            Rule::new(
                vec![
                    Match::InInterface(bridge.clone()),
                    Match::OutInterface(bridge.clone()),
                    Match::HopLimit(255),
                    Match::Icmpv6Type(t),
                ],
                Action::Accept,
            )
        })
        .collect()
}

/// `--link` with ICC off: the parent may reach the child's exposed ports. Legacy links exist
/// only on the default bridge, and the rule only accepts traffic bridged inside it: a
/// container elsewhere (or a host outside) spoofing the parent's address gets nothing.
fn links_rule(snapshot: &Snapshot, links: &NamedSet) -> Option<Rule> {
    if links.elements.is_empty() {
        return None;
    }
    let default_bridge = snapshot
        .networks
        .iter()
        .find(|n| n.name == DEFAULT_NETWORK)?;
    let bridge = InterfaceName::Exact(default_bridge.bridge.clone());
    Some(
        Rule::new(
            vec![
                Match::InInterface(bridge.clone()),
                Match::OutInterface(bridge),
                Match::Lookup {
                    fields: vec![
                        PacketField::SourceAddress,
                        PacketField::DestinationAddress,
                        PacketField::Protocol,
                        PacketField::DestinationPort,
                    ],
                    set: LINKS_SET.to_string(),
                },
            ],
            Action::Accept,
        )
        .comment("links"),
    )
}

/// A connection v6guard translated to a published port (through a host address) is let in
/// from anywhere, other Docker networks included, as Docker's proxy does for IPv4 and as
/// Docker 28 documents ("published ports are reachable from other bridge networks").
fn translated_exposure_rule(lookup: Match) -> Rule {
    Rule::new(vec![Match::Dnatted, lookup], Action::Accept)
        .comment("published ports through a host address")
}

fn sorted_networks(snapshot: &Snapshot) -> Vec<&Network> {
    let mut networks: Vec<&Network> = snapshot.networks.iter().collect();
    networks.sort_by(|a, b| a.bridge.cmp(&b.bridge));
    networks
}

/// Same-bridge traffic: drop when the network's ICC is off, accept (before the isolation drop
/// below catches it) when on.
fn icc_rule(network: &Network, resolved: &Resolved) -> Rule {
    let bridge = InterfaceName::Exact(network.bridge.clone());
    let matches = vec![
        Match::InInterface(bridge.clone()),
        Match::OutInterface(bridge),
    ];
    if resolved.network(network).icc {
        Rule::new(matches, Action::Accept).comment(format!("icc on: network {}", network.name))
    } else {
        Rule::new(matches, Action::Drop)
            .counted()
            .comment(format!("icc off: network {}", network.name))
    }
}

/// Nothing from outside an internal network's bridge gets in (not even ICMPv6 echo).
fn internal_ingress_rule(network: &Network) -> Rule {
    Rule::new(
        vec![Match::OutInterface(InterfaceName::Exact(
            network.bridge.clone(),
        ))],
        Action::Drop,
    )
    .counted()
    .comment(format!("internal network {}: no ingress", network.name))
}

/// What a gateway mode decides for traffic from outside before the published sets are
/// consulted: `nat` lets nothing reach the containers' own addresses (published ports are
/// reached through DNAT, accepted above), `nat-unprotected` lets everything in.
fn gateway_mode_rule(network: &Network, resolved: &Resolved) -> Option<Rule> {
    let reach = resolved.network(network).reach();
    let bridge = vec![Match::OutInterface(InterfaceName::Exact(
        network.bridge.clone(),
    ))];
    if reach.sealed() {
        Some(Rule::new(bridge, Action::Drop).counted().comment(format!(
            "gateway mode nat: network {}: only through a host address",
            network.name
        )))
    } else if reach.unprotected() {
        Some(Rule::new(bridge, Action::Accept).comment(format!(
            "gateway mode nat-unprotected: network {}: every port",
            network.name
        )))
    } else {
        None
    }
}

/// Traffic from one Docker bridge into another is dropped (Docker's isolation chains).
fn isolation_rule(from: &InterfaceName) -> Rule {
    Rule::new(vec![Match::InInterface(from.clone())], Action::Drop)
        .counted()
        .comment("isolation between Docker networks")
}

/// Every (container IPv6 address, protocol, container port) reachable over IPv6 on the
/// network that carries the container's port mappings: published bindings and policy
/// `expose` ports, minus policy `deny`. Ports with an `allow_from` go to the restricted sets,
/// one element per allowed prefix; ports reachable only through a host address go to the
/// translated sets.
pub fn exposure_sets(models: &[ContainerExposure]) -> ExposureSets {
    let mut restricted_key = service_types();
    restricted_key.push(FieldType::Prefix);
    let mut sets = ExposureSets {
        published: NamedSet::set(PUBLISHED_SET, service_types()),
        restricted: NamedSet::interval_set(RESTRICTED_SET, restricted_key.clone()),
        translated: NamedSet::set(TRANSLATED_SET, service_types()),
        translated_restricted: NamedSet::interval_set(TRANSLATED_RESTRICTED_SET, restricted_key),
    };
    for (set, key, _) in models.iter().flat_map(exposure_elements) {
        let set = match set {
            PUBLISHED_SET => &mut sets.published,
            RESTRICTED_SET => &mut sets.restricted,
            TRANSLATED_SET => &mut sets.translated,
            _ => &mut sets.translated_restricted,
        };
        set.elements.insert(key, Vec::new());
    }
    // What a wider set admits is left out of the narrower ones (the wider set's rule comes
    // first, so this changes no verdict, only the element count): a port both published
    // openly and restricted (two bindings of one port) is open, and a port reachable directly
    // is reachable through a host address too.
    let service = |key: &Vec<Field>| key[..3].to_vec();
    let published = &sets.published.elements;
    let translated = &mut sets.translated.elements;
    sets.restricted
        .elements
        .retain(|key, _| !published.contains_key(&service(key)));
    translated.retain(|key, _| !published.contains_key(key));
    sets.translated_restricted.elements.retain(|key, _| {
        !published.contains_key(&service(key)) && !translated.contains_key(&service(key))
    });
    sets
}

/// One container's elements in the exposure sets, before the wider sets are subtracted from
/// the narrower ones (`exposure_sets` does that over all containers; the incremental planner
/// per service).
pub fn exposure_elements(model: &ContainerExposure) -> Vec<SetElement> {
    let mut out = Vec::new();
    for exposure in model.exposures() {
        let service = vec![
            Field::Address(exposure.address),
            Field::Protocol(exposure.protocol),
            Field::Port(exposure.port),
        ];
        let (open, restricted) = if exposure.direct {
            (PUBLISHED_SET, RESTRICTED_SET)
        } else {
            (TRANSLATED_SET, TRANSLATED_RESTRICTED_SET)
        };
        match &exposure.allow_from {
            None => out.push((open, service, Vec::new())),
            Some(prefixes) => {
                // Nested or adjacent prefixes would overlap in the interval set, which the
                // kernel refuses: merge them first.
                for prefix in Ipv6Net::aggregate(prefixes) {
                    let mut key = service.clone();
                    key.push(Field::Prefix(prefix));
                    out.push((restricted, key, Vec::new()));
                }
            }
        }
    }
    out
}

/// (parent address, child address, protocol, port) for every `--link` on a bridge with ICC
/// off, per exposed port of the child, as Docker's IPv4 link rules (which Docker never wrote
/// for IPv6).
pub fn links_set(snapshot: &Snapshot, resolved: &Resolved) -> NamedSet {
    let mut set = NamedSet::set(
        LINKS_SET,
        vec![
            FieldType::Address,
            FieldType::Address,
            FieldType::Protocol,
            FieldType::Port,
        ],
    );
    let by_name: BTreeMap<&str, _> = snapshot
        .containers
        .iter()
        .map(|c| (c.name.as_str(), c))
        .collect();
    for parent in &snapshot.containers {
        let elements = link_elements(snapshot, resolved, parent, |name| {
            by_name.get(name).copied()
        });
        set.elements
            .extend(elements.into_iter().map(|(_, key, value)| (key, value)));
    }
    set
}

/// The `links` elements `parent`'s `--link`s make, finding each child by name with `child`.
pub fn link_elements<'a>(
    snapshot: &Snapshot,
    resolved: &Resolved,
    parent: &Container,
    child: impl Fn(&str) -> Option<&'a Container>,
) -> Vec<SetElement> {
    let mut out = Vec::new();
    for child in parent.links.iter().filter_map(|n| child(n)) {
        for (network_id, parent_address, child_address) in shared_addresses(parent, child) {
            let icc_off = snapshot
                .network_by_id(network_id)
                .is_some_and(|n| !resolved.network(n).icc);
            if !icc_off {
                continue;
            }
            for exposed in &child.exposed {
                let key = vec![
                    Field::Address(parent_address),
                    Field::Address(child_address),
                    Field::Protocol(exposed.protocol),
                    Field::Port(exposed.port),
                ];
                out.push((LINKS_SET, key, Vec::new()));
            }
        }
    }
    out
}

/// Networks two containers share, with each one's IPv6 address there.
fn shared_addresses<'a>(
    a: &'a Container,
    b: &'a Container,
) -> impl Iterator<Item = (&'a str, std::net::Ipv6Addr, std::net::Ipv6Addr)> {
    a.endpoints.iter().filter_map(move |ea| {
        let eb = b.endpoints.iter().find(|e| e.network_id == ea.network_id)?;
        Some((ea.network_id.as_str(), ea.ipv6?, eb.ipv6?))
    })
}
