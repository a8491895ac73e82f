//! Rules as the kernel holds them: each rule's expressions and userdata, from the messages
//! of a rule dump. Counters are the one part that changes by itself (packets and bytes), so
//! a counter is kept by name only; everything else is kept byte for byte, for `verify`.

use std::collections::BTreeMap;

use super::attr::{self, NEWRULE, attributes};

const NFTA_RULE_CHAIN: u16 = 2;
const NFTA_RULE_EXPRESSIONS: u16 = 4;
const NFTA_RULE_USERDATA: u16 = 7;
const NFTA_LIST_ELEM: u16 = 1;
const NFTA_EXPR_NAME: u16 = 1;

/// One rule as the kernel holds it: its expressions (counters without their values) and its
/// userdata (the comment).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleBytes {
    pub expressions: Vec<u8>,
    pub userdata: Vec<u8>,
}

/// Rules by chain name (a bridge table's chains as `bridge NAME`), each chain's rules in
/// order.
pub type ChainRules = BTreeMap<String, Vec<RuleBytes>>;

/// Add the rule in one `NEWRULE` message of a dump to `chains`; other messages are ignored.
pub fn add_rule(message: &[u8], chains: &mut ChainRules) {
    let Some(message) = attr::message(message).filter(|m| m.kind == NEWRULE) else {
        return;
    };
    let bridge = message.family == libc::NFPROTO_BRIDGE as u8;
    let mut chain = None;
    let mut rule = RuleBytes {
        expressions: Vec::new(),
        userdata: Vec::new(),
    };
    for (kind, value) in attributes(message.attributes) {
        match kind {
            NFTA_RULE_CHAIN => chain = Some(attr::text(value)),
            NFTA_RULE_EXPRESSIONS => rule.expressions = without_counter_values(value),
            NFTA_RULE_USERDATA => rule.userdata = value.to_vec(),
            _ => {}
        }
    }
    if let Some(chain) = chain {
        let key = if bridge {
            format!("bridge {chain}")
        } else {
            chain
        };
        chains.entry(key).or_default().push(rule);
    }
}

/// The expression list with each counter reduced to its name: packets and bytes change with
/// traffic (and start at zero after a restore).
fn without_counter_values(list: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(list.len());
    for (kind, element) in attributes(list) {
        if kind != NFTA_LIST_ELEM {
            continue;
        }
        let is_counter = attributes(element)
            .any(|(kind, value)| kind == NFTA_EXPR_NAME && attr::text(value) == "counter");
        if is_counter {
            out.extend_from_slice(b"counter;");
        } else {
            out.extend_from_slice(&(element.len() as u32).to_ne_bytes());
            out.extend_from_slice(element);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::attr::build;
    use super::*;

    fn expression(name: &str, data: &[u8]) -> Vec<u8> {
        let mut inner = build::text(NFTA_EXPR_NAME, name);
        inner.extend(build::attribute(2, data));
        build::attribute(NFTA_LIST_ELEM, &inner)
    }

    fn rule_message(chain: &str, expressions: &[Vec<u8>], comment: &str) -> Vec<u8> {
        build::message(
            NEWRULE,
            libc::NFPROTO_IPV6 as u8,
            &[
                build::text(NFTA_RULE_CHAIN, chain),
                build::attribute(NFTA_RULE_EXPRESSIONS, &expressions.concat()),
                build::attribute(NFTA_RULE_USERDATA, comment.as_bytes()),
            ],
        )
    }

    fn read(messages: &[Vec<u8>]) -> ChainRules {
        let mut chains = ChainRules::new();
        for message in messages {
            add_rule(message, &mut chains);
        }
        chains
    }

    fn drop_rule(meta: &[u8], counted: u8, comment: &str) -> Vec<u8> {
        rule_message(
            "forward",
            &[
                expression("meta", meta),
                expression("counter", &[counted; 8]),
            ],
            comment,
        )
    }

    #[test]
    fn counters_are_kept_by_name_and_everything_else_by_bytes() {
        let planned = read(&[drop_rule(&[1, 2], 0, "drop it")]);
        assert_eq!(planned["forward"].len(), 1);
        assert_eq!(read(&[drop_rule(&[1, 2], 7, "drop it")]), planned);
        assert_ne!(read(&[drop_rule(&[1, 3], 0, "drop it")]), planned);
        assert_ne!(read(&[drop_rule(&[1, 2], 0, "accept it")]), planned);
        let mut elsewhere = drop_rule(&[1, 2], 0, "drop it");
        let at = elsewhere
            .windows(7)
            .position(|w| w == b"forward")
            .expect("chain name");
        elsewhere[at..at + 7].copy_from_slice(b"inputxx");
        let moved = read(&[elsewhere]);
        assert_eq!(moved.keys().collect::<Vec<_>>(), ["inputxx"]);
        assert_eq!(moved["inputxx"], planned["forward"]);
    }

    #[test]
    fn truncated_input_is_ignored_not_a_panic() {
        let message = drop_rule(&[1], 0, "x");
        let mut chains = ChainRules::new();
        for cut in 0..message.len() {
            add_rule(&message[..cut], &mut chains);
        }
    }
}
