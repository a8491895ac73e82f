//! The keys a container contributes to the sets and maps keyed by host ports
//! (`incremental::BY_KEY`), as the cache keeps them: a few bytes each instead of a
//! `Vec<Field>` (about 100 bytes with its allocation), since the daemon keeps one set per
//! container.

use std::net::Ipv6Addr;

use ipnet::Ipv6Net;

use super::BY_KEY;
use crate::ruleset::Field;
use crate::snapshot::Protocol;

/// Append `key` of `set` (one of [`super::BY_KEY`]): the set's index, the field count, then each
/// field as a tag and its bytes. `None` for another set. A DNAT key takes 7 bytes this way,
/// against about 100 as a `Vec<Field>`.
pub(super) fn encode(out: &mut Vec<u8>, set: &str, key: &[Field]) -> Option<()> {
    let index = BY_KEY.iter().position(|s| *s == set)?;
    out.push(u8::try_from(index).ok()?);
    out.push(u8::try_from(key.len()).ok()?);
    for field in key {
        match field {
            Field::Address(address) => {
                out.push(0);
                out.extend(address.octets());
            }
            Field::Prefix(prefix) => {
                out.push(1);
                out.extend(prefix.addr().octets());
                out.push(prefix.prefix_len());
            }
            Field::Protocol(protocol) => {
                out.push(2);
                out.push(match protocol {
                    Protocol::Tcp => 0,
                    Protocol::Udp => 1,
                    Protocol::Sctp => 2,
                });
            }
            Field::Port(port) => {
                out.push(3);
                out.extend(port.to_be_bytes());
            }
        }
    }
    Some(())
}

/// The encoded keys in `bytes`, one slice each; stops at anything malformed.
pub(super) fn encoded_keys(mut bytes: &[u8]) -> impl Iterator<Item = &[u8]> {
    std::iter::from_fn(move || {
        let [_, count, ..] = bytes else {
            return None;
        };
        let mut len = 2;
        for _ in 0..*count {
            len += match bytes.get(len)? {
                0 => 17,
                1 => 18,
                2 => 2,
                3 => 3,
                _ => return None,
            };
        }
        let (key, rest) = bytes.split_at_checked(len)?;
        bytes = rest;
        Some(key)
    })
}

/// One key [`encode`] wrote, with its set.
pub(super) fn decode_key(bytes: &[u8]) -> Option<(&'static str, Vec<Field>)> {
    let [set, count, fields @ ..] = bytes else {
        return None;
    };
    let mut rest = fields;
    let set = *BY_KEY.get(usize::from(*set))?;
    let mut key = Vec::with_capacity(usize::from(*count));
    for _ in 0..*count {
        let (field, after) = decode_field(rest)?;
        key.push(field);
        rest = after;
    }
    rest.is_empty().then_some((set, key))
}

fn decode_field(bytes: &[u8]) -> Option<(Field, &[u8])> {
    let address = |b: &[u8]| -> Option<Ipv6Addr> {
        Some(Ipv6Addr::from(<[u8; 16]>::try_from(b.get(..16)?).ok()?))
    };
    match bytes {
        [0, rest @ ..] => Some((Field::Address(address(rest)?), rest.get(16..)?)),
        [1, rest @ ..] => {
            let net = Ipv6Net::new(address(rest)?, *rest.get(16)?).ok()?;
            Some((Field::Prefix(net), rest.get(17..)?))
        }
        [2, protocol, rest @ ..] => {
            let protocol = match protocol {
                0 => Protocol::Tcp,
                1 => Protocol::Udp,
                2 => Protocol::Sctp,
                _ => return None,
            };
            Some((Field::Protocol(protocol), rest))
        }
        [3, high, low, rest @ ..] => Some((Field::Port(u16::from_be_bytes([*high, *low])), rest)),
        _ => None,
    }
}
