//! The Ruleset: what v6guard wants in the kernel, as plain data.
//!
//! The planner produces one Ruleset; two backends consume it: `nft::render` prints it as nft
//! text (the dry run) and `nft::write` turns it into one atomic netlink batch (apply). The
//! vocabulary is deliberately small (a handful of matches and verdicts) so that both backends
//! can express every piece identically, which is what makes the dry run honest.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv6Addr;

use ipnet::Ipv6Net;
use serde::Serialize;

use crate::snapshot::Protocol;

/// Every table v6guard owns starts with this prefix; nothing else on the host is touched.
pub const TABLE_PREFIX: &str = "v6guard";

/// The table v6guard installs today (family `ip6`).
pub const TABLE_NAME: &str = "v6guard";

/// Named sets and maps v6guard installs.
pub const PUBLISHED_SET: &str = "published";
pub const LINKS_SET: &str = "links";
pub const DNAT_ANY_MAP: &str = "dnat-any";
pub const DNAT_HOST_MAP: &str = "dnat-host";
/// Container ports reachable only from some sources (policy `allow_from`).
pub const RESTRICTED_SET: &str = "restricted";
/// Container ports reachable only through DNAT on a host address, never on the container's
/// own address: bindings on one host address (`-p [ADDR]:HP:CP`), and every binding of a
/// network in gateway mode `nat`.
pub const TRANSLATED_SET: &str = "translated";
/// As [`TRANSLATED_SET`], only from some sources (policy `allow_from`).
pub const TRANSLATED_RESTRICTED_SET: &str = "translated-restricted";

/// One nftables table of family `ip6`, replaced as a whole on every apply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Ruleset {
    pub table: String,
    pub sets: Vec<NamedSet>,
    pub chains: Vec<Chain>,
    /// The chains of v6guard's second table, `table bridge v6guard`: what must be stopped
    /// on Layer 2, before any IP hook sees it (VLAN-tagged frames and router advertisements
    /// from container ports). Replaced in the same transaction as the ip6 table.
    pub bridge_chains: Vec<Chain>,
    /// The rules filter traffic bridged between two ports of one bridge (ICC off), which the
    /// ip6 hooks only see with `net.bridge.bridge-nf-call-ip6tables=1`. Apply turns it on.
    pub needs_bridge_netfilter: bool,
    /// Neighbour-discovery proxy entries the host keeps beside the table (policy `ndp_proxy`).
    pub ndp: NdpProxies,
}

/// Proxy entries in the host's neighbour table, so a LAN that cannot route a Docker prefix
/// still reaches its containers (`ip -6 neigh add proxy ADDR dev IF`, one per container).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct NdpProxies {
    /// (interface, container address) pairs to answer for.
    pub entries: BTreeSet<(String, Ipv6Addr)>,
    /// (interface, subnet) of every network with `ndp_proxy`: proxy entries on that interface
    /// for addresses in that subnet belong to v6guard and are removed when not wanted; any
    /// other entry (a hand-made one, another interface, another prefix) is left alone.
    pub owned: BTreeSet<(String, Ipv6Net)>,
}

impl Ruleset {
    /// Number of rules across all chains (independent of the number of published ports).
    pub fn rule_count(&self) -> usize {
        self.all_chains().map(|c| c.rules.len()).sum()
    }

    /// The chains of both tables, the ip6 table's first.
    pub fn all_chains(&self) -> impl Iterator<Item = &Chain> {
        self.chains.iter().chain(&self.bridge_chains)
    }

    /// Number of elements across all sets and maps.
    pub fn element_count(&self) -> usize {
        self.sets.iter().map(|s| s.elements.len()).sum()
    }

    pub fn set(&self, name: &str) -> Option<&NamedSet> {
        self.sets.iter().find(|s| s.name == name)
    }

    /// The table's comment: names the plan the rules come from, so `verify` (and `audit`) can
    /// tell rules built from another plan (a configuration or Docker change not applied yet)
    /// even when the rule count is the same. Set elements are left out on purpose: the daemon
    /// changes them in place and they are compared one by one anyway. Each set's capacity is
    /// in (it is part of the declaration): elements that cross a capacity boundary make
    /// another plan, which the daemon installs by replacing the table.
    pub fn comment(&self) -> String {
        let structure = (
            &self.chains,
            &self.bridge_chains,
            self.sets.iter().map(set_declaration).collect::<Vec<_>>(),
        );
        let text = serde_json::to_string(&structure).unwrap_or_default();
        format!("v6guard plan {:016x}", fnv1a(text.as_bytes()))
    }
}

/// A set without its elements (but with the capacity they give it).
fn set_declaration(set: &NamedSet) -> (&str, &[FieldType], &[FieldType], bool, Option<u32>) {
    (
        &set.name,
        &set.key,
        &set.value,
        set.interval,
        set.capacity(),
    )
}

/// FNV-1a, 64 bits: a stable, dependency-free digest (not a security boundary: it only tells
/// plans apart).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// The types a set key or map value is concatenated from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum FieldType {
    /// `ipv6_addr`
    Address,
    /// `ipv6_addr` holding a range (a prefix); only in interval sets.
    Prefix,
    /// `inet_proto`
    Protocol,
    /// `inet_service`
    Port,
}

/// One value of a concatenated key or map value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum Field {
    Address(Ipv6Addr),
    /// A range of addresses; only in interval sets.
    Prefix(Ipv6Net),
    Protocol(Protocol),
    Port(u16),
}

impl Field {
    pub fn field_type(self) -> FieldType {
        match self {
            Field::Address(_) => FieldType::Address,
            Field::Prefix(_) => FieldType::Prefix,
            Field::Protocol(_) => FieldType::Protocol,
            Field::Port(_) => FieldType::Port,
        }
    }
}

/// A named set (no value types) or map (with value types), keyed by a concatenation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NamedSet {
    pub name: String,
    pub key: Vec<FieldType>,
    /// `flags interval`: elements may hold prefixes (`Field::Prefix`).
    pub interval: bool,
    /// Value types for a map; empty for a set.
    pub value: Vec<FieldType>,
    /// Key -> value (empty for a set). Sorted, so render output is stable; a map holds one
    /// value per key by construction.
    pub elements: BTreeMap<Vec<Field>, Vec<Field>>,
}

impl NamedSet {
    pub fn set(name: &str, key: Vec<FieldType>) -> Self {
        NamedSet {
            name: name.to_string(),
            key,
            interval: false,
            value: Vec::new(),
            elements: BTreeMap::new(),
        }
    }

    /// A set whose elements may hold prefixes.
    pub fn interval_set(name: &str, key: Vec<FieldType>) -> Self {
        NamedSet {
            interval: true,
            ..NamedSet::set(name, key)
        }
    }

    pub fn map(name: &str, key: Vec<FieldType>, value: Vec<FieldType>) -> Self {
        NamedSet {
            value,
            ..NamedSet::set(name, key)
        }
    }

    pub fn is_map(&self) -> bool {
        !self.value.is_empty()
    }

    /// The size the set is declared with (`size N`, NFTA_SET_DESC_SIZE), a pure function of
    /// its element count; `None` for an interval set, declared without one (its backend is
    /// pipapo or rbtree either way, and it is not the hot path).
    ///
    /// Why: without a size the kernel picks its resizable hash (`nft_set_rhash`); with one,
    /// the fixed-size hash (`nft_hash`), which inserts about three times faster (100,000
    /// elements: ~40 ms instead of ~115 ms in the kernel). The kernel enforces the size as a
    /// maximum (an insert past it fails with ENFILE), so the capacity leaves room to double:
    /// the daemon adds elements in place until the count crosses a power of two, and then
    /// the capacity, the declaration and the plan's digest change and the table is replaced
    /// with a new size. The floor keeps small sets cheap: nft_hash allocates its buckets up
    /// front, next_pow2(size * 4 / 3) pointers, 4 KiB at the floor.
    pub fn capacity(&self) -> Option<u32> {
        (!self.interval).then(|| capacity(self.elements.len()))
    }
}

/// Smallest capacity of a set ([`NamedSet::capacity`]).
pub const MIN_CAPACITY: u32 = 256;

/// Room for twice `elements`, rounded up to a power of two, at least [`MIN_CAPACITY`].
pub fn capacity(elements: usize) -> u32 {
    let wanted = elements
        .saturating_mul(2)
        .checked_next_power_of_two()
        .unwrap_or(usize::MAX);
    u32::try_from(wanted).unwrap_or(u32::MAX).max(MIN_CAPACITY)
}

/// A packet field a lookup or a NAT map reads, in concatenation order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum PacketField {
    /// `ip6 saddr`
    SourceAddress,
    /// `ip6 daddr`
    DestinationAddress,
    /// `meta l4proto`
    Protocol,
    /// `th dport`
    DestinationPort,
}

impl PacketField {
    pub fn field_type(self) -> FieldType {
        match self {
            PacketField::SourceAddress | PacketField::DestinationAddress => FieldType::Address,
            PacketField::Protocol => FieldType::Protocol,
            PacketField::DestinationPort => FieldType::Port,
        }
    }
}

/// A chain; base chains are attached to a netfilter hook.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Chain {
    pub name: String,
    pub hook: Option<Hook>,
    pub rules: Vec<Rule>,
}

/// The netfilter hook of a base chain. Every base chain has policy accept: v6guard's filter
/// only ever drops (its accepts just end its own evaluation), and its NAT chains only
/// translate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Hook {
    /// `type filter hook forward priority filter; policy accept;`
    ForwardFilter,
    /// `type filter hook forward priority filter - 10; policy accept;`: ahead of Docker's own
    /// filter chains (augment mode).
    ForwardFilterEarly,
    /// `type filter hook input priority filter; policy accept;`
    InputFilter,
    /// `type filter hook prerouting priority mangle; policy accept;`: every packet entering
    /// the host, forwarded or not, before DNAT (-150, ahead of dstnat's -100).
    PreroutingFilter,
    /// `type nat hook prerouting priority dstnat; policy accept;`
    PreroutingNat,
    /// `type nat hook output priority -100; policy accept;`
    OutputNat,
    /// `type nat hook postrouting priority srcnat; policy accept;`
    PostroutingNat,
    /// Family bridge: `type filter hook prerouting priority filter; policy accept;`, every
    /// frame entering a bridge from one of its ports.
    BridgePrerouting,
}

/// One rule: all matches must hold, then the optional counter, then the action.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rule {
    pub matches: Vec<Match>,
    pub counter: bool,
    pub action: Action,
    /// Shown by `nft list` and `render`; says why the rule exists.
    pub comment: Option<String>,
}

impl Rule {
    pub fn new(matches: Vec<Match>, action: Action) -> Self {
        Rule {
            matches,
            counter: false,
            action,
            comment: None,
        }
    }

    /// Count packets hitting this rule (used on drops, so operators can see what is blocked).
    pub fn counted(mut self) -> Self {
        self.counter = true;
        self
    }

    /// Attach a comment. Characters nft cannot quote are replaced and the text is cut to fit
    /// the kernel's 128-byte comment limit, so both backends always agree on it.
    pub fn comment(mut self, comment: impl Into<String>) -> Self {
        self.comment = Some(sanitize_comment(&comment.into()));
        self
    }
}

/// The matches both backends know how to express.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum Match {
    /// `iifname NAME` (exact) or `iifname "PREFIX*"`.
    InInterface(InterfaceName),
    /// `oifname NAME` (exact) or `oifname "PREFIX*"`.
    OutInterface(InterfaceName),
    /// `oifname != NAME`.
    OutInterfaceNot(InterfaceName),
    /// `iifname != NAME`.
    InInterfaceNot(InterfaceName),
    /// `ip6 hoplimit N`: 255 proves a neighbour-discovery message was not routed (RFC 4861).
    HopLimit(u8),
    /// `ether type T` (family bridge only): the frame's outermost EtherType, a VLAN tag's
    /// included.
    EtherType(EtherType),
    /// `ct state established,related`.
    EstablishedOrRelated,
    /// `ct status dnat`: the connection's destination was translated.
    Dnatted,
    /// `icmpv6 type T`.
    Icmpv6Type(Icmpv6Type),
    /// `ip6 saddr PREFIX`.
    SourceIn(Ipv6Net),
    /// `ip6 daddr != ADDR`.
    DestinationNot(Ipv6Addr),
    /// `fib daddr type local`: addressed to this host.
    DestinationLocal,
    /// `FIELD . FIELD ... @SET`.
    Lookup {
        fields: Vec<PacketField>,
        set: String,
    },
}

/// An interface name match; `Prefix` is nft's trailing-`*` wildcard.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum InterfaceName {
    Exact(String),
    Prefix(String),
}

/// The ICMPv6 types v6guard names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Icmpv6Type {
    EchoRequest,
    RouterAdvert,
    NeighborSolicit,
    NeighborAdvert,
    Redirect,
}

impl Icmpv6Type {
    pub fn number(self) -> u8 {
        match self {
            Icmpv6Type::EchoRequest => 128,
            Icmpv6Type::RouterAdvert => 134,
            Icmpv6Type::NeighborSolicit => 135,
            Icmpv6Type::NeighborAdvert => 136,
            Icmpv6Type::Redirect => 137,
        }
    }

    /// nft's name for the type.
    pub fn name(self) -> &'static str {
        match self {
            Icmpv6Type::EchoRequest => "echo-request",
            Icmpv6Type::RouterAdvert => "nd-router-advert",
            Icmpv6Type::NeighborSolicit => "nd-neighbor-solicit",
            Icmpv6Type::NeighborAdvert => "nd-neighbor-advert",
            Icmpv6Type::Redirect => "nd-redirect",
        }
    }
}

/// The EtherTypes v6guard names (family bridge).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum EtherType {
    /// 802.1Q VLAN tag, 0x8100 (`8021q`).
    Vlan,
    /// 802.1ad service tag (QinQ), 0x88a8 (`8021ad`).
    ServiceVlan,
}

impl EtherType {
    pub fn number(self) -> u16 {
        match self {
            EtherType::Vlan => 0x8100,
            EtherType::ServiceVlan => 0x88a8,
        }
    }

    /// nft's name for the type.
    pub fn name(self) -> &'static str {
        match self {
            EtherType::Vlan => "8021q",
            EtherType::ServiceVlan => "8021ad",
        }
    }
}

/// What a rule does when it matches: a verdict or a NAT statement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum Action {
    Accept,
    Drop,
    Jump(String),
    Return,
    /// `masquerade`
    Masquerade,
    /// `snat to ADDR`
    Snat(Ipv6Addr),
    /// `dnat ip6 to FIELD . FIELD ... map @MAP` (the map's values are address . port).
    DnatMap {
        fields: Vec<PacketField>,
        map: String,
    },
}

/// Longest comment kept, in bytes (the kernel's limit is 128 including the final NUL).
const MAX_COMMENT_BYTES: usize = 120;

fn sanitize_comment(text: &str) -> String {
    let mut out = String::new();
    for c in text.chars() {
        let c = if c == '"' || c == '\\' || c.is_control() {
            '_'
        } else {
            c
        };
        if out.len() + c.len_utf8() > MAX_COMMENT_BYTES {
            break;
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capacity_leaves_room_to_double_and_has_a_floor() {
        assert_eq!(capacity(0), MIN_CAPACITY);
        assert_eq!(capacity(128), MIN_CAPACITY);
        assert_eq!(capacity(129), 512);
        assert_eq!(capacity(100_000), 262_144);
        assert_eq!(capacity(145_000), 524_288);
        for n in [0, 1, 127, 128, 129, 1000, 65_536, 65_537, 1 << 30] {
            let c = capacity(n) as usize;
            assert!(c >= 2 * n && c.is_power_of_two(), "{n} -> {c}");
            assert!(c == MIN_CAPACITY as usize || c < 4 * n, "{n} -> {c}: tight");
        }
        assert_eq!(capacity(usize::MAX), u32::MAX, "saturates");
    }

    #[test]
    fn interval_sets_have_no_capacity_and_capacity_is_in_the_digest() {
        let key = vec![FieldType::Port];
        assert_eq!(NamedSet::interval_set("s", key.clone()).capacity(), None);
        let mut set = NamedSet::set("s", key);
        assert_eq!(set.capacity(), Some(MIN_CAPACITY));
        let ruleset = |set: &NamedSet| Ruleset {
            table: TABLE_NAME.into(),
            sets: vec![set.clone()],
            chains: vec![],
            bridge_chains: vec![],
            needs_bridge_netfilter: false,
            ndp: NdpProxies::default(),
        };
        let small = ruleset(&set).comment();
        set.elements.insert(vec![Field::Port(1)], vec![]);
        assert_eq!(ruleset(&set).comment(), small, "same capacity, same plan");
        set.elements = (0..129).map(|p| (vec![Field::Port(p)], vec![])).collect();
        assert_ne!(
            ruleset(&set).comment(),
            small,
            "a new capacity is another plan"
        );
    }

    #[test]
    fn comments_are_quoted_safely_and_bounded() {
        let rule = Rule::new(vec![], Action::Accept).comment("a \"quoted\"\nname");
        assert_eq!(rule.comment.as_deref(), Some("a _quoted__name"));
        let long = Rule::new(vec![], Action::Accept).comment("x".repeat(500));
        assert_eq!(long.comment.map(|c| c.len()), Some(MAX_COMMENT_BYTES));
    }
}
