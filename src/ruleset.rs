//! The Ruleset: what v6guard wants in the kernel, as plain data.
//!
//! The planner produces one Ruleset; two backends consume it: `nft::render` prints it as nft
//! text (the dry run) and `nft::netlink` turns it into one atomic netlink batch (apply). The
//! vocabulary is deliberately small (a handful of matches and verdicts) so that both backends
//! can express every piece identically, which is what makes the dry run honest.

use std::collections::BTreeSet;
use std::net::Ipv6Addr;

use serde::Serialize;

use crate::snapshot::Protocol;

/// Every table v6guard owns starts with this prefix; nothing else on the host is touched.
pub const TABLE_PREFIX: &str = "v6guard";

/// The table v6guard installs today (family `ip6`).
pub const TABLE_NAME: &str = "v6guard";

/// The named set of (container IPv6 address, protocol, container port) reachable from outside.
pub const PUBLISHED_SET: &str = "published";

/// One nftables table of family `ip6`, replaced as a whole on every apply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Ruleset {
    pub table: String,
    pub sets: Vec<ServiceSet>,
    pub chains: Vec<Chain>,
}

impl Ruleset {
    /// Number of rules across all chains (independent of the number of published ports).
    pub fn rule_count(&self) -> usize {
        self.chains.iter().map(|c| c.rules.len()).sum()
    }

    /// Number of set elements across all sets.
    pub fn element_count(&self) -> usize {
        self.sets.iter().map(|s| s.elements.len()).sum()
    }
}

/// A named set keyed by `ipv6_addr . inet_proto . inet_service`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServiceSet {
    pub name: String,
    /// Sorted, so that render output is stable.
    pub elements: BTreeSet<Service>,
}

/// One (address, protocol, port) key: a container port reachable on a container address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Service {
    pub address: Ipv6Addr,
    pub protocol: Protocol,
    pub port: u16,
}

/// A chain; base chains are attached to a netfilter hook.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Chain {
    pub name: String,
    pub hook: Option<Hook>,
    pub rules: Vec<Rule>,
}

/// The netfilter hook of a base chain. Only `filter` chains on `forward` with policy accept
/// are used today: v6guard only ever drops; its accepts just end its own evaluation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Hook {
    /// `type filter hook forward priority filter; policy accept;`
    ForwardFilter,
}

/// One rule: all matches must hold, then the optional counter, then the verdict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rule {
    pub matches: Vec<Match>,
    pub counter: bool,
    pub verdict: Verdict,
    /// Shown by `nft list` and `render`; says why the rule exists.
    pub comment: Option<String>,
}

impl Rule {
    pub fn new(matches: Vec<Match>, verdict: Verdict) -> Self {
        Rule {
            matches,
            counter: false,
            verdict,
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
    /// `ct state established,related`.
    EstablishedOrRelated,
    /// `icmpv6 type T`.
    Icmpv6Type(Icmpv6Type),
    /// `ip6 daddr . meta l4proto . th dport @SET`.
    DestinationServiceIn(String),
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
    NeighborSolicit,
    NeighborAdvert,
}

impl Icmpv6Type {
    pub fn number(self) -> u8 {
        match self {
            Icmpv6Type::EchoRequest => 128,
            Icmpv6Type::NeighborSolicit => 135,
            Icmpv6Type::NeighborAdvert => 136,
        }
    }

    /// nft's name for the type.
    pub fn name(self) -> &'static str {
        match self {
            Icmpv6Type::EchoRequest => "echo-request",
            Icmpv6Type::NeighborSolicit => "nd-neighbor-solicit",
            Icmpv6Type::NeighborAdvert => "nd-neighbor-advert",
        }
    }
}

/// What happens when a rule matches.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum Verdict {
    Accept,
    Drop,
    Jump(String),
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
    fn comments_are_quoted_safely_and_bounded() {
        let rule = Rule::new(vec![], Verdict::Accept).comment("a \"quoted\"\nname");
        assert_eq!(rule.comment.as_deref(), Some("a _quoted__name"));
        let long = Rule::new(vec![], Verdict::Accept).comment("x".repeat(500));
        assert_eq!(long.comment.map(|c| c.len()), Some(MAX_COMMENT_BYTES));
    }
}
