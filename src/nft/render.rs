//! Ruleset -> nft text: the dry run.
//!
//! Each table block is written exactly as `nft list table ip6 v6guard` (and `nft list table
//! bridge v6guard`) prints what `apply` installed (set elements aside, which the kernel lists
//! in hash order). Before each come the two commands that make `nft -f` replace the table, and
//! `nft -f` runs the whole file as one transaction, the same one `apply` sends over netlink. So `v6guard render | nft -f -` and `v6guard apply` leave the same
//! kernel state, and the system tests check exactly that.

use std::fmt::Write;

use crate::ruleset::{
    Action, Chain, Field, FieldType, Hook, InterfaceName, Match, NamedSet, PacketField, Rule,
    Ruleset,
};

/// The whole dry run: a script `nft -f` can load, doing what `apply` does.
pub fn render_script(ruleset: &Ruleset) -> String {
    let mut out = String::from("#!/usr/sbin/nft -f\n");
    let _ = writeln!(
        out,
        "# v6guard: the transaction `v6guard apply` performs ({} rules, {} set elements).",
        ruleset.rule_count(),
        ruleset.element_count()
    );
    if ruleset.needs_bridge_netfilter {
        out.push_str(
            "# ICC is off on some network: apply also sets net.bridge.bridge-nf-call-ip6tables=1.\n",
        );
    }
    out.push_str(
        "# Replace the tables atomically: create each if missing, delete it, write it anew.\n",
    );
    let _ = writeln!(out, "table ip6 {}", ruleset.table);
    let _ = writeln!(out, "delete table ip6 {}", ruleset.table);
    out.push_str(&render_table(ruleset));
    let _ = writeln!(out, "table bridge {}", ruleset.table);
    let _ = writeln!(out, "delete table bridge {}", ruleset.table);
    if !ruleset.bridge_chains.is_empty() {
        out.push_str(&render_bridge_table(ruleset));
    }
    if !ruleset.ndp.entries.is_empty() {
        out.push_str(
            "# Beside the table, apply keeps these neighbour-discovery proxy entries (and sets\n\
             # net.ipv6.conf.IF.proxy_ndp=1 on their interfaces):\n",
        );
        for (interface, address) in &ruleset.ndp.entries {
            let _ = writeln!(
                out,
                "#   ip -6 neigh replace proxy {address} dev {interface}"
            );
        }
    }
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
    format!(
        "table ip6 {} {{\n\tcomment \"{}\"\n{}}}\n",
        ruleset.table,
        ruleset.comment(),
        blocks.join("\n")
    )
}

/// The bridge table block, as `nft list table bridge` prints it.
pub fn render_bridge_table(ruleset: &Ruleset) -> String {
    let blocks: Vec<String> = ruleset.bridge_chains.iter().map(render_chain).collect();
    format!(
        "table bridge {} {{\n{}}}\n",
        ruleset.table,
        blocks.join("\n")
    )
}

fn render_set(set: &NamedSet) -> String {
    let kind = if set.is_map() { "map" } else { "set" };
    let mut out = format!("\t{kind} {} {{\n", set.name);
    let mut type_line = join(set.key.iter().map(|t| type_name(*t)));
    if set.is_map() {
        type_line = format!(
            "{type_line} : {}",
            join(set.value.iter().map(|t| type_name(*t)))
        );
    }
    let _ = writeln!(out, "\t\ttype {type_line}");
    if let Some(capacity) = set.capacity() {
        let _ = writeln!(out, "\t\tsize {capacity}");
    }
    if set.interval {
        out.push_str("\t\tflags interval\n");
    }
    if !set.elements.is_empty() {
        let elements: Vec<String> = set
            .elements
            .iter()
            .map(|(key, value)| render_element(key, value))
            .collect();
        let _ = writeln!(
            out,
            "\t\telements = {{ {} }}",
            elements.join(",\n\t\t\t     ")
        );
    }
    out.push_str("\t}\n");
    out
}

/// One element as nft prints it: `fd00::2 . tcp . 80`, or `tcp . 8080 : fd00::2 . 80`.
pub fn render_element(key: &[Field], value: &[Field]) -> String {
    let key = join(key.iter().map(|f| render_field(*f)));
    if value.is_empty() {
        key
    } else {
        format!("{key} : {}", join(value.iter().map(|f| render_field(*f))))
    }
}

fn render_field(field: Field) -> String {
    match field {
        Field::Address(address) => address.to_string(),
        Field::Prefix(net) => render_prefix(&net),
        Field::Protocol(protocol) => protocol.name().to_string(),
        Field::Port(port) => port.to_string(),
    }
}

fn type_name(field: FieldType) -> &'static str {
    match field {
        FieldType::Address | FieldType::Prefix => "ipv6_addr",
        FieldType::Protocol => "inet_proto",
        FieldType::Port => "inet_service",
    }
}

fn packet_field(field: PacketField) -> &'static str {
    match field {
        PacketField::SourceAddress => "ip6 saddr",
        PacketField::DestinationAddress => "ip6 daddr",
        PacketField::Protocol => "meta l4proto",
        PacketField::DestinationPort => "th dport",
    }
}

/// `a . b . c`, nft's concatenation.
fn join(parts: impl Iterator<Item = impl AsRef<str>>) -> String {
    parts
        .map(|p| p.as_ref().to_string())
        .collect::<Vec<_>>()
        .join(" . ")
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
        Hook::ForwardFilterEarly => "type filter hook forward priority filter - 10; policy accept;",
        Hook::InputFilter => "type filter hook input priority filter; policy accept;",
        Hook::PreroutingFilter => "type filter hook prerouting priority mangle; policy accept;",
        Hook::PreroutingNat => "type nat hook prerouting priority dstnat; policy accept;",
        Hook::OutputNat => "type nat hook output priority -100; policy accept;",
        Hook::PostroutingNat => "type nat hook postrouting priority srcnat; policy accept;",
        Hook::BridgePrerouting => "type filter hook prerouting priority filter; policy accept;",
    }
}

/// One rule, as nft lists it.
pub fn render_rule(rule: &Rule) -> String {
    let mut words: Vec<String> = rule.matches.iter().map(render_match).collect();
    if rule.counter {
        words.push("counter packets 0 bytes 0".to_string());
    }
    words.push(render_action(&rule.action));
    if let Some(comment) = &rule.comment {
        words.push(format!("comment \"{comment}\""));
    }
    words.join(" ")
}

fn render_match(m: &Match) -> String {
    match m {
        Match::InInterface(name) => format!("iifname {}", render_interface(name)),
        Match::OutInterface(name) => format!("oifname {}", render_interface(name)),
        Match::OutInterfaceNot(name) => format!("oifname != {}", render_interface(name)),
        Match::InInterfaceNot(name) => format!("iifname != {}", render_interface(name)),
        Match::HopLimit(limit) => format!("ip6 hoplimit {limit}"),
        Match::EtherType(ether_type) => format!("ether type {}", ether_type.name()),
        Match::EstablishedOrRelated => "ct state established,related".to_string(),
        Match::Dnatted => "ct status dnat".to_string(),
        Match::Icmpv6Type(t) => format!("icmpv6 type {}", t.name()),
        Match::SourceIn(net) => format!("ip6 saddr {}", render_prefix(net)),
        Match::DestinationNot(address) => format!("ip6 daddr != {address}"),
        Match::DestinationLocal => "fib daddr type local".to_string(),
        Match::Lookup { fields, set } => {
            format!("{} @{set}", join(fields.iter().map(|f| packet_field(*f))))
        }
    }
}

/// nft prints a prefix with its host bits cleared, and a /128 as a bare address.
fn render_prefix(net: &ipnet::Ipv6Net) -> String {
    let net = net.trunc();
    if net.prefix_len() == 128 {
        net.addr().to_string()
    } else {
        net.to_string()
    }
}

fn render_interface(name: &InterfaceName) -> String {
    match name {
        InterfaceName::Exact(n) => format!("\"{n}\""),
        InterfaceName::Prefix(p) => format!("\"{p}*\""),
    }
}

fn render_action(action: &Action) -> String {
    match action {
        Action::Accept => "accept".to_string(),
        Action::Drop => "drop".to_string(),
        Action::Jump(chain) => format!("jump {chain}"),
        Action::Return => "return".to_string(),
        Action::Masquerade => "masquerade".to_string(),
        Action::Snat(address) => format!("snat to {address}"),
        Action::DnatMap { fields, map } => format!(
            "dnat ip6 to {} map @{map}",
            join(fields.iter().map(|f| packet_field(*f)))
        ),
    }
}
