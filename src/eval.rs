//! A packet evaluator of a [`Ruleset`]: what netfilter would do with one packet, read off the
//! same data both backends install.
//!
//! Tests that pin rule text or count rules break on harmless changes and miss harmful ones;
//! a test that asks "is this packet accepted?" does neither. This module answers that
//! question for the hooks v6guard uses, so tests (and later the audit) can compare the plan
//! with a reference semantics instead of with its own layout.
//!
//! What is modelled, and why it is enough for v6guard's rules:
//! - Chains run top to bottom, first matching verdict wins; `jump` runs the target and comes
//!   back on `return` or at the target's end; a base chain's end (or `return` in it) is its
//!   policy, which is accept for every v6guard base chain ([`Hook`]).
//! - Several base chains on one hook run in order; an accept ends only its own chain (as in
//!   nftables, where accept is not final across base chains), a drop ends everything.
//! - NAT statements end their chain; a map that has no element for the packet makes the rule
//!   not match (nft's lookup breaks the rule), so evaluation goes on with the next rule.
//! - NAT chains only see a connection's first packet: conntrack applies its translation to the
//!   rest, so the NAT functions return `None` for an established packet.
//! - Interfaces a hook does not have read as the empty name, as `meta iifname` / `oifname`
//!   load them: no output interface in prerouting or input, no input interface in postrouting.
//! - Sets and maps: a key is the concatenation of the packet fields the rule names; an element
//!   matches when every field is equal, a `Field::Prefix` by containment (interval sets).
//!   ICMPv6 has no `meta l4proto` value among [`Field::Protocol`]'s and no `th dport`, so it
//!   never matches a key that names either.
//! - Family bridge: the frame's outermost EtherType is its VLAN tag's when tagged, IPv6
//!   otherwise; `icmpv6 type` carries nft's `ether type ip6` dependency there (see
//!   `nft::write`), so it does not match a tagged frame.
//!
//! Everything a packet's fate depends on beyond the rules is an input: routing's choice of
//! output interface, the host's local addresses (for `fib daddr type local`), conntrack's
//! state. Pure: no I/O.

use std::net::Ipv6Addr;

use crate::nft::render::render_rule;
use crate::ruleset::{
    Action, Chain, EtherType, Field, Hook, InterfaceName, Match, PacketField, Rule, Ruleset,
};
use crate::snapshot::Protocol;

/// nftables' jump stack depth (`NFT_JUMP_STACK_SIZE`); deeper nesting cannot be loaded.
const MAX_JUMP_DEPTH: usize = 16;

/// The EtherType of an untagged IPv6 frame.
const ETH_P_IPV6: u16 = 0x86dd;

/// The layer-4 part of a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum L4 {
    /// TCP, UDP or SCTP to a destination port.
    Transport { protocol: Protocol, port: u16 },
    /// ICMPv6 with its type number (128 echo request, 135 neighbour solicitation, ...).
    Icmpv6 { icmp_type: u8 },
}

/// Conntrack's view of the packet's connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CtState {
    /// The first packet of a connection.
    New,
    /// A later packet of an accepted connection, or an ICMPv6 error about one.
    EstablishedOrRelated,
}

/// One packet as a hook sees it. Build with [`Packet::new`] and the chained setters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet {
    /// The interface it arrived on (for bridged traffic under br_netfilter, the bridge).
    pub iifname: String,
    /// The interface routing (or the bridge) sends it out of; the evaluator does not route.
    pub oifname: String,
    pub source: Ipv6Addr,
    pub destination: Ipv6Addr,
    pub l4: L4,
    /// As the hook sees it: a routed packet has already lost one at the forward hook.
    pub hop_limit: u8,
    pub ct: CtState,
    /// `ct status dnat`: the connection's destination was translated.
    pub dnatted: bool,
    /// The frame's VLAN tag, if any (family bridge only).
    pub vlan: Option<EtherType>,
    /// The bridge port a bridged frame entered on (`veth1234`); `None` for a packet that was
    /// not bridged, which never meets the bridge table.
    pub bridge_port: Option<String>,
}

impl Packet {
    /// A new TCP connection's first packet, hop limit 64, untagged.
    pub fn new(
        iifname: &str,
        oifname: &str,
        source: Ipv6Addr,
        destination: Ipv6Addr,
        l4: L4,
    ) -> Self {
        Packet {
            iifname: iifname.to_string(),
            oifname: oifname.to_string(),
            source,
            destination,
            l4,
            hop_limit: 64,
            ct: CtState::New,
            dnatted: false,
            vlan: None,
            bridge_port: None,
        }
    }

    pub fn established(mut self) -> Self {
        self.ct = CtState::EstablishedOrRelated;
        self
    }

    pub fn hop_limit(mut self, hop_limit: u8) -> Self {
        self.hop_limit = hop_limit;
        self
    }

    pub fn dnatted(mut self) -> Self {
        self.dnatted = true;
        self
    }

    /// A bridged frame entering on `port`, tagged with `vlan` if any.
    pub fn bridged(mut self, port: &str, vlan: Option<EtherType>) -> Self {
        self.bridge_port = Some(port.to_string());
        self.vlan = vlan;
        self
    }

    /// The destination port for TCP/UDP/SCTP, `None` for ICMPv6.
    pub fn destination_port(&self) -> Option<u16> {
        match self.l4 {
            L4::Transport { port, .. } => Some(port),
            L4::Icmpv6 { .. } => None,
        }
    }
}

/// The outcome of a filter hook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub accepted: bool,
    /// The deciding rule: its comment, or its chain and text when it has none. `None` when
    /// the packet reached the policy (accept) without an explicit verdict.
    pub rule: Option<String>,
}

/// A source translation in postrouting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Translation {
    Masquerade,
    SnatTo(Ipv6Addr),
}

/// Where an inbound packet ends up after prerouting, and what the hook there decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inbound {
    /// Still addressed to this host: delivered locally (to docker-proxy or another socket);
    /// the input hook's verdict.
    Local { verdict: Verdict },
    /// Forwarded (routed or bridged) to `destination`, translated there if `dnat` is set;
    /// the forward hook's verdict.
    Forwarded {
        destination: Ipv6Addr,
        port: Option<u16>,
        dnat: bool,
        verdict: Verdict,
    },
}

/// The verdict on a forwarded `packet` (its `oifname` is routing's decision): the
/// prerouting filter hook, then the forward hook.
pub fn forward_verdict(ruleset: &Ruleset, packet: &Packet) -> Verdict {
    let view = View::ip6(ruleset, packet, &packet.iifname, &packet.oifname, &[]);
    after_prerouting(ruleset, packet, || {
        let early = filter_hook(&view, Hook::ForwardFilterEarly);
        if early.accepted {
            filter_hook(&view, Hook::ForwardFilter)
        } else {
            early
        }
    })
}

/// The verdict on a packet addressed to this host: the prerouting filter hook, then the
/// input hook.
pub fn input_verdict(ruleset: &Ruleset, packet: &Packet) -> Verdict {
    let view = View::ip6(ruleset, packet, &packet.iifname, "", &[]);
    after_prerouting(ruleset, packet, || filter_hook(&view, Hook::InputFilter))
}

/// The prerouting filter hook's drop, if it drops the packet, else `then`'s verdict. The
/// prerouting hook has no output interface; what it checks (sources) does not depend on the
/// destination, so it reads the same before and after DNAT.
fn after_prerouting(ruleset: &Ruleset, packet: &Packet, then: impl FnOnce() -> Verdict) -> Verdict {
    let view = View::ip6(ruleset, packet, &packet.iifname, "", &[]);
    let first = filter_hook(&view, Hook::PreroutingFilter);
    if first.accepted { then() } else { first }
}

/// The destination prerouting translates `packet` to, if any. `local` is the host's own
/// addresses, what `fib daddr type local` tests against.
pub fn prerouting_dnat(
    ruleset: &Ruleset,
    local: &[Ipv6Addr],
    packet: &Packet,
) -> Option<(Ipv6Addr, u16)> {
    if packet.ct != CtState::New {
        return None;
    }
    let view = View::ip6(ruleset, packet, &packet.iifname, "", local);
    match nat_hook(&view, Hook::PreroutingNat)? {
        Stop::Dnat { address, port } => Some((address, port)),
        Stop::Verdict { .. } | Stop::Source { .. } => None,
    }
}

/// The source translation postrouting applies to `packet` (addressed as it leaves, after any
/// DNAT, with `dnatted` set if it was translated), if any.
pub fn postrouting_snat(ruleset: &Ruleset, packet: &Packet) -> Option<Translation> {
    if packet.ct != CtState::New {
        return None;
    }
    let view = View::ip6(ruleset, packet, "", &packet.oifname, &[]);
    match nat_hook(&view, Hook::PostroutingNat)? {
        Stop::Source { translation } => Some(translation),
        Stop::Verdict { .. } | Stop::Dnat { .. } => None,
    }
}

/// A packet arriving from `packet.iifname`: prerouting's DNAT, then either local delivery
/// (input hook) or forwarding out of `route(destination)` (forward hook) with the translated
/// destination and `ct status dnat` set. `packet.oifname` is ignored: routing happens after
/// prerouting, so the output interface depends on the translation.
pub fn inbound(
    ruleset: &Ruleset,
    local: &[Ipv6Addr],
    packet: &Packet,
    route: impl Fn(Ipv6Addr) -> String,
) -> Inbound {
    let mut packet = packet.clone();
    let dnat = prerouting_dnat(ruleset, local, &packet);
    if let Some((address, port)) = dnat {
        packet.destination = address;
        packet.dnatted = true;
        if let L4::Transport { protocol, .. } = packet.l4 {
            packet.l4 = L4::Transport { protocol, port };
        }
    }
    if local.contains(&packet.destination) {
        return Inbound::Local {
            verdict: input_verdict(ruleset, &packet),
        };
    }
    packet.oifname = route(packet.destination);
    Inbound::Forwarded {
        destination: packet.destination,
        port: packet.destination_port(),
        dnat: dnat.is_some(),
        verdict: forward_verdict(ruleset, &packet),
    }
}

/// The bridge table's verdict on a frame entering a bridge on `packet.bridge_port`. A packet
/// with no bridge port was not bridged and never meets this hook: accepted, by no rule.
pub fn bridge_verdict(ruleset: &Ruleset, packet: &Packet) -> Verdict {
    let Some(port) = packet.bridge_port.as_deref() else {
        return Verdict {
            accepted: true,
            rule: None,
        };
    };
    let view = View {
        ruleset,
        chains: &ruleset.bridge_chains,
        family: Family::Bridge,
        packet,
        iifname: port,
        oifname: "",
        local: &[],
    };
    filter_hook(&view, Hook::BridgePrerouting)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    Ip6,
    Bridge,
}

/// One packet as one hook of one table sees it.
struct View<'a> {
    ruleset: &'a Ruleset,
    chains: &'a [Chain],
    family: Family,
    packet: &'a Packet,
    iifname: &'a str,
    oifname: &'a str,
    local: &'a [Ipv6Addr],
}

impl<'a> View<'a> {
    fn ip6(
        ruleset: &'a Ruleset,
        packet: &'a Packet,
        iifname: &'a str,
        oifname: &'a str,
        local: &'a [Ipv6Addr],
    ) -> Self {
        View {
            ruleset,
            chains: &ruleset.chains,
            family: Family::Ip6,
            packet,
            iifname,
            oifname,
            local,
        }
    }
}

/// What ended a chain's evaluation early.
enum Stop {
    Verdict { accept: bool, rule: String },
    Dnat { address: Ipv6Addr, port: u16 },
    Source { translation: Translation },
}

/// Every base chain on `hook`, in order: the first drop decides; otherwise accepted, by the
/// last explicit accept if any. A NAT statement (which nft only loads in NAT chains) ends its
/// chain with an accept.
fn filter_hook(view: &View<'_>, hook: Hook) -> Verdict {
    let mut verdict = Verdict {
        accepted: true,
        rule: None,
    };
    for chain in view.chains.iter().filter(|c| c.hook == Some(hook)) {
        match run_chain(view, chain, 0) {
            Some(Stop::Verdict {
                accept: false,
                rule,
            }) => {
                return Verdict {
                    accepted: false,
                    rule: Some(rule),
                };
            }
            Some(Stop::Verdict { accept: true, rule }) => verdict.rule = Some(rule),
            Some(Stop::Dnat { .. } | Stop::Source { .. }) | None => {}
        }
    }
    verdict
}

/// The first translation any base chain on `hook` makes. A drop in a NAT chain (v6guard
/// writes none) reads as no translation.
fn nat_hook(view: &View<'_>, hook: Hook) -> Option<Stop> {
    view.chains
        .iter()
        .filter(|c| c.hook == Some(hook))
        .find_map(|chain| match run_chain(view, chain, 0) {
            Some(stop @ (Stop::Dnat { .. } | Stop::Source { .. })) => Some(stop),
            Some(Stop::Verdict { .. }) | None => None,
        })
}

/// Run one chain; `None` when it ran to its end or returned.
fn run_chain(view: &View<'_>, chain: &Chain, depth: usize) -> Option<Stop> {
    for rule in &chain.rules {
        if !rule.matches.iter().all(|m| holds(view, m)) {
            continue;
        }
        match &rule.action {
            Action::Accept => return Some(verdict(true, chain, rule)),
            Action::Drop => return Some(verdict(false, chain, rule)),
            Action::Return => return None,
            Action::Jump(target) => {
                let target = view.chains.iter().find(|c| &c.name == target);
                match target {
                    // nft refuses to load a jump to a missing chain or a loop; should a
                    // hand-built ruleset have one, fail closed rather than guess.
                    Some(target) if depth < MAX_JUMP_DEPTH => {
                        if let Some(stop) = run_chain(view, target, depth + 1) {
                            return Some(stop);
                        }
                    }
                    _ => return Some(verdict(false, chain, rule)),
                }
            }
            Action::Masquerade => {
                return Some(Stop::Source {
                    translation: Translation::Masquerade,
                });
            }
            Action::Snat(address) => {
                return Some(Stop::Source {
                    translation: Translation::SnatTo(*address),
                });
            }
            Action::DnatMap { fields, map } => {
                if let Some([Field::Address(address), Field::Port(port)]) =
                    lookup(view, fields, map).as_deref()
                {
                    return Some(Stop::Dnat {
                        address: *address,
                        port: *port,
                    });
                }
            }
        }
    }
    None
}

fn verdict(accept: bool, chain: &Chain, rule: &Rule) -> Stop {
    Stop::Verdict {
        accept,
        rule: describe(chain, rule),
    }
}

/// The rule's comment, or `chain: rule text`.
fn describe(chain: &Chain, rule: &Rule) -> String {
    rule.comment
        .clone()
        .unwrap_or_else(|| format!("{}: {}", chain.name, render_rule(rule)))
}

/// Whether one match holds for the packet.
fn holds(view: &View<'_>, m: &Match) -> bool {
    let packet = view.packet;
    match m {
        Match::InInterface(name) => name_matches(name, view.iifname),
        Match::OutInterface(name) => name_matches(name, view.oifname),
        Match::OutInterfaceNot(name) => !name_matches(name, view.oifname),
        Match::InInterfaceNot(name) => !name_matches(name, view.iifname),
        Match::HopLimit(limit) => packet.hop_limit == *limit,
        Match::EtherType(ether_type) => outer_ether_type(packet) == ether_type.number(),
        Match::EstablishedOrRelated => packet.ct == CtState::EstablishedOrRelated,
        Match::Dnatted => packet.dnatted,
        Match::Icmpv6Type(t) => {
            let carries_ipv6 = match view.family {
                Family::Ip6 => true,
                Family::Bridge => outer_ether_type(packet) == ETH_P_IPV6,
            };
            carries_ipv6
                && packet.l4
                    == L4::Icmpv6 {
                        icmp_type: t.number(),
                    }
        }
        Match::SourceIn(net) => net.contains(&packet.source),
        Match::DestinationNot(address) => packet.destination != *address,
        Match::DestinationLocal => view.local.contains(&packet.destination),
        Match::Lookup { fields, set } => lookup(view, fields, set).is_some(),
    }
}

/// `iifname "docker0"` is equality; `iifname "br-*"` a prefix.
fn name_matches(name: &InterfaceName, interface: &str) -> bool {
    match name {
        InterfaceName::Exact(exact) => interface == exact,
        InterfaceName::Prefix(prefix) => interface.starts_with(prefix.as_str()),
    }
}

fn outer_ether_type(packet: &Packet) -> u16 {
    packet.vlan.map_or(ETH_P_IPV6, EtherType::number)
}

/// The value of the element of set or map `name` that the packet's `fields` match (empty for
/// a set); `None` when none does, the set does not exist (nft would refuse the rule), or the
/// packet lacks a field (no port or transport protocol in ICMPv6).
fn lookup(view: &View<'_>, fields: &[PacketField], name: &str) -> Option<Vec<Field>> {
    let key: Vec<Field> = fields
        .iter()
        .map(|f| packet_field(view.packet, *f))
        .collect::<Option<_>>()?;
    let set = view.ruleset.set(name)?;
    if !set.interval {
        // Keys of a set without intervals are exact: one ordered-map look-up, so evaluating
        // thousands of packets against 100,000 elements (the audit) stays cheap.
        return set.elements.get(&key).cloned();
    }
    set.elements
        .iter()
        .find(|(element, _)| {
            element.len() == key.len() && element.iter().zip(&key).all(|(e, k)| contains(e, k))
        })
        .map(|(_, value)| value.clone())
}

fn packet_field(packet: &Packet, field: PacketField) -> Option<Field> {
    match (field, packet.l4) {
        (PacketField::SourceAddress, _) => Some(Field::Address(packet.source)),
        (PacketField::DestinationAddress, _) => Some(Field::Address(packet.destination)),
        (PacketField::Protocol, L4::Transport { protocol, .. }) => Some(Field::Protocol(protocol)),
        (PacketField::DestinationPort, L4::Transport { port, .. }) => Some(Field::Port(port)),
        (PacketField::Protocol | PacketField::DestinationPort, L4::Icmpv6 { .. }) => None,
    }
}

/// Whether an element's field admits the packet's: a prefix by containment, the rest by
/// equality.
fn contains(element: &Field, packet: &Field) -> bool {
    match (element, packet) {
        (Field::Prefix(net), Field::Address(address)) => net.contains(address),
        _ => element == packet,
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod properties;
