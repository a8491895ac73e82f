//! Rules as the kernel holds them: each rule's expressions and userdata, from the messages
//! of a rule dump. Counters are the one part that changes by itself (packets and bytes), so
//! a counter is kept by name only; everything else is kept byte for byte, for `verify`.

use std::collections::BTreeMap;

/// `nfnetlink` subsystem of nftables, in the high byte of `nlmsg_type`.
const NFTABLES: u16 = (libc::NFNL_SUBSYS_NFTABLES as u16) << 8;
const NEWRULE: u16 = NFTABLES | libc::NFT_MSG_NEWRULE as u16;
const NLMSG_HDRLEN: usize = 16;
const NFGENMSG_LEN: usize = 4;
const NLA_TYPE_MASK: u16 = 0x3fff;

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
    let Some(kind) = message.get(4..6) else {
        return;
    };
    if u16::from_ne_bytes([kind[0], kind[1]]) != NEWRULE {
        return;
    }
    let Some(payload) = message.get(NLMSG_HDRLEN + NFGENMSG_LEN..) else {
        return;
    };
    // The first byte of the nfgenmsg header names the rule's family.
    let bridge = message.get(NLMSG_HDRLEN) == Some(&(libc::NFPROTO_BRIDGE as u8));
    let mut chain = None;
    let mut rule = RuleBytes {
        expressions: Vec::new(),
        userdata: Vec::new(),
    };
    for (kind, value) in attributes(payload) {
        match kind {
            NFTA_RULE_CHAIN => chain = Some(c_str(value)),
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

/// The attributes in a buffer of them: (type without flags, value).
fn attributes(mut bytes: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        let length = u16::from_ne_bytes(bytes.get(..2)?.try_into().ok()?) as usize;
        let kind = u16::from_ne_bytes(bytes.get(2..4)?.try_into().ok()?) & NLA_TYPE_MASK;
        if length < 4 || length > bytes.len() {
            return None;
        }
        let value = &bytes[4..length];
        bytes = bytes.get(align(length)..).unwrap_or_default();
        Some((kind, value))
    })
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
            .any(|(kind, value)| kind == NFTA_EXPR_NAME && c_str(value) == "counter");
        if is_counter {
            out.extend_from_slice(b"counter;");
        } else {
            out.extend_from_slice(&(element.len() as u32).to_ne_bytes());
            out.extend_from_slice(element);
        }
    }
    out
}

fn c_str(value: &[u8]) -> String {
    let end = value.iter().position(|b| *b == 0).unwrap_or(value.len());
    String::from_utf8_lossy(&value[..end]).into_owned()
}

fn align(length: usize) -> usize {
    (length + 3) & !3
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attribute(kind: u16, value: &[u8]) -> Vec<u8> {
        let mut out = ((value.len() + 4) as u16).to_ne_bytes().to_vec();
        out.extend_from_slice(&kind.to_ne_bytes());
        out.extend_from_slice(value);
        out.resize(align(out.len()), 0);
        out
    }

    fn expression(name: &str, data: &[u8]) -> Vec<u8> {
        let mut inner = attribute(NFTA_EXPR_NAME, format!("{name}\0").as_bytes());
        inner.extend(attribute(2, data));
        attribute(NFTA_LIST_ELEM, &inner)
    }

    fn rule_message(chain: &str, expressions: &[Vec<u8>], comment: &str) -> Vec<u8> {
        let mut payload = vec![0u8; NFGENMSG_LEN];
        payload.extend(attribute(NFTA_RULE_CHAIN, format!("{chain}\0").as_bytes()));
        payload.extend(attribute(NFTA_RULE_EXPRESSIONS, &expressions.concat()));
        payload.extend(attribute(NFTA_RULE_USERDATA, comment.as_bytes()));
        let mut message = ((NLMSG_HDRLEN + payload.len()) as u32)
            .to_ne_bytes()
            .to_vec();
        message.extend_from_slice(&NEWRULE.to_ne_bytes());
        message.extend_from_slice(&[0u8; 10]);
        message.extend(payload);
        message
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
