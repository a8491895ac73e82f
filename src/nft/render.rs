//! Ruleset -> nft text: the dry run.
//!
//! The table block is written exactly as `nft list table ip6 v6guard` prints what `apply`
//! installed (set elements aside, which the kernel lists in hash order). Before it come the
//! two commands that make `nft -f` replace the table atomically, the same transaction `apply`
//! sends over netlink. So `v6guard render | nft -f -` and `v6guard apply` leave the same
//! kernel state, and the system tests check exactly that.

use std::fmt::Write;

use crate::ruleset::{
    Chain, Hook, InterfaceName, Match, Rule, Ruleset, Service, ServiceSet, Verdict,
};

/// The whole dry run: a script `nft -f` can load, doing what `apply` does.
pub fn render_script(ruleset: &Ruleset) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "#!/usr/sbin/nft -f");
    let _ = writeln!(
        out,
        "# v6guard: the transaction `v6guard apply` performs ({} rules, {} published services).",
        ruleset.rule_count(),
        ruleset.element_count()
    );
    let _ = writeln!(
        out,
        "# Replace the table atomically: create it if missing, delete it, write it anew."
    );
    let _ = writeln!(out, "table ip6 {}", ruleset.table);
    let _ = writeln!(out, "delete table ip6 {}", ruleset.table);
    out.push_str(&render_table(ruleset));
    out
}

/// The table block, as `nft list table` prints it.
pub fn render_table(ruleset: &Ruleset) -> String {
    let blocks: Vec<String> = ruleset
        .sets
        .iter()
        .map(render_set)
        .chain(ruleset.chains.iter().map(render_chain))
        .collect();
    format!("table ip6 {} {{\n{}}}\n", ruleset.table, blocks.join("\n"))
}

fn render_set(set: &ServiceSet) -> String {
    let mut out = format!("\tset {} {{\n", set.name);
    out.push_str("\t\ttype ipv6_addr . inet_proto . inet_service\n");
    if !set.elements.is_empty() {
        let elements: Vec<String> = set.elements.iter().map(render_service).collect();
        let _ = writeln!(
            out,
            "\t\telements = {{ {} }}",
            elements.join(",\n\t\t\t     ")
        );
    }
    out.push_str("\t}\n");
    out
}

/// One set element, as nft prints it: `fd00::2 . tcp . 80`.
pub fn render_service(service: &Service) -> String {
    format!(
        "{} . {} . {}",
        service.address, service.protocol, service.port
    )
}

fn render_chain(chain: &Chain) -> String {
    let mut out = format!("\tchain {} {{\n", chain.name);
    if let Some(hook) = chain.hook {
        let _ = writeln!(out, "\t\t{}", render_hook(hook));
    }
    for rule in &chain.rules {
        let _ = writeln!(out, "\t\t{}", render_rule(rule));
    }
    out.push_str("\t}\n");
    out
}

fn render_hook(hook: Hook) -> &'static str {
    match hook {
        Hook::ForwardFilter => "type filter hook forward priority filter; policy accept;",
    }
}

/// One rule, as nft lists it.
pub fn render_rule(rule: &Rule) -> String {
    let mut words: Vec<String> = rule.matches.iter().map(render_match).collect();
    if rule.counter {
        words.push("counter packets 0 bytes 0".to_string());
    }
    words.push(render_verdict(&rule.verdict));
    if let Some(comment) = &rule.comment {
        words.push(format!("comment \"{comment}\""));
    }
    words.join(" ")
}

fn render_match(m: &Match) -> String {
    match m {
        Match::InInterface(name) => format!("iifname {}", render_interface(name)),
        Match::OutInterface(name) => format!("oifname {}", render_interface(name)),
        Match::EstablishedOrRelated => "ct state established,related".to_string(),
        Match::Icmpv6Type(t) => format!("icmpv6 type {}", t.name()),
        Match::DestinationServiceIn(set) => {
            format!("ip6 daddr . meta l4proto . th dport @{set}")
        }
    }
}

fn render_interface(name: &InterfaceName) -> String {
    match name {
        InterfaceName::Exact(n) => format!("\"{n}\""),
        InterfaceName::Prefix(p) => format!("\"{p}*\""),
    }
}

fn render_verdict(verdict: &Verdict) -> String {
    match verdict {
        Verdict::Accept => "accept".to_string(),
        Verdict::Drop => "drop".to_string(),
        Verdict::Jump(chain) => format!("jump {chain}"),
    }
}
