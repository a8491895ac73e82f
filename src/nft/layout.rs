//! How nftables lays out concatenated keys and values in bytes and registers. Pure; shared by
//! the batch builder (`netlink`), the element deltas (`incremental`) and the kernel reader
//! (`read`), so all three agree with `nft` byte for byte.

use std::net::Ipv6Addr;

use ipnet::Ipv6Net;

use crate::ruleset::{Field, FieldType};
use crate::snapshot::Protocol;

/// nft's datatype ids: ipv6_addr 8, inet_proto 12, inet_service 13.
pub fn type_id(field: FieldType) -> u32 {
    match field {
        FieldType::Address | FieldType::Prefix => 8,
        FieldType::Protocol => 12,
        FieldType::Port => 13,
    }
}

/// Bytes a field occupies in a register or key (before padding).
pub fn field_len(field: FieldType) -> usize {
    match field {
        FieldType::Address | FieldType::Prefix => 16,
        FieldType::Protocol => 1,
        FieldType::Port => 2,
    }
}

/// 32-bit register slots a field takes: concatenations pad each field to 4 bytes.
pub fn field_slots(field: FieldType) -> usize {
    field_len(field).div_ceil(4)
}

/// nft's concatenated type id: each component shifted in 6 bits at a time.
pub fn concat_type(fields: &[FieldType]) -> u32 {
    fields.iter().fold(0, |acc, f| (acc << 6) | type_id(*f))
}

/// Bytes of a concatenated key or value.
pub fn concat_len(fields: &[FieldType]) -> u32 {
    let slots: usize = fields.iter().map(|f| field_slots(*f)).sum();
    (slots * 4) as u32
}

/// The registers nft loads a concatenation into: fields take consecutive 32-bit slots;
/// a field starting on a 16-byte boundary is named by its 128-bit register (NFT_REG_1..4),
/// any other by its 32-bit register (NFT_REG32_00..15).
pub fn registers(fields: &[FieldType]) -> Vec<u32> {
    let mut slot = 0usize;
    fields
        .iter()
        .map(|field| {
            let register = if slot % 4 == 0 {
                libc::NFT_REG_1 as u32 + (slot / 4) as u32
            } else {
                libc::NFT_REG32_00 as u32 + slot as u32
            };
            slot += field_slots(*field);
            register
        })
        .collect()
}

/// Which end of a range a key describes (interval sets store both).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bound {
    Start,
    End,
}

/// The longest key or value nftables holds (`NFT_DATA_VALUE_MAXLEN`); v6guard's longest is 40.
const MAX_CONCAT: usize = 64;

/// A concatenated key or value: each field in network byte order, padded to 4 bytes. A
/// prefix is its first address at the start bound and its last at the end bound.
///
/// Built on the stack: a full apply encodes one or two per element (145,000 elements at
/// 10,000 containers), and a heap buffer each was a good part of `build_batch`'s time.
/// Fields past [`MAX_CONCAT`] bytes, which no nftables key can hold, are left out (the
/// kernel then refuses the element for its length: an error, not a panic).
pub struct Concat {
    bytes: [u8; MAX_CONCAT],
    len: usize,
}

impl Concat {
    pub fn new(fields: &[Field], bound: Bound) -> Self {
        let mut out = Concat {
            bytes: [0; MAX_CONCAT],
            len: 0,
        };
        for field in fields {
            let width = field_slots(field.field_type()) * 4;
            let Some(slot) = out.bytes.get_mut(out.len..out.len + width) else {
                break;
            };
            match field {
                Field::Address(address) => slot.copy_from_slice(&address.octets()),
                Field::Prefix(net) => {
                    let address = match bound {
                        Bound::Start => net.network(),
                        Bound::End => net.broadcast(),
                    };
                    slot.copy_from_slice(&address.octets());
                }
                Field::Protocol(protocol) => slot[0] = protocol.number(),
                Field::Port(port) => slot[..2].copy_from_slice(&port.to_be_bytes()),
            }
            out.len += width;
        }
        out
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

/// The inverse of [`Concat`]: decode a key (and, for interval sets, its end) into fields
/// of the given types. `None` for bytes v6guard never writes (a range that is not a prefix, an
/// unknown protocol, a wrong length), which callers count as a difference.
pub fn decode_fields(types: &[FieldType], start: &[u8], end: Option<&[u8]>) -> Option<Vec<Field>> {
    let end = end.unwrap_or(start);
    if start.len() != concat_len(types) as usize || end.len() != start.len() {
        return None;
    }
    let mut fields = Vec::new();
    let mut at = 0;
    for field in types {
        let len = field_len(*field);
        let first = &start[at..at + len];
        let last = &end[at..at + len];
        fields.push(match field {
            FieldType::Prefix => Field::Prefix(prefix_of(address(first)?, address(last)?)?),
            _ if first != last => return None,
            FieldType::Address => Field::Address(address(first)?),
            FieldType::Protocol => Field::Protocol(protocol(first[0])?),
            FieldType::Port => Field::Port(u16::from_be_bytes([first[0], first[1]])),
        });
        at += field_slots(*field) * 4;
    }
    Some(fields)
}

fn address(bytes: &[u8]) -> Option<Ipv6Addr> {
    Some(Ipv6Addr::from(<[u8; 16]>::try_from(bytes).ok()?))
}

fn protocol(number: u8) -> Option<Protocol> {
    [Protocol::Tcp, Protocol::Udp, Protocol::Sctp]
        .into_iter()
        .find(|p| p.number() == number)
}

/// The prefix whose first and last addresses are `first` and `last`, if the range is one.
fn prefix_of(first: Ipv6Addr, last: Ipv6Addr) -> Option<Ipv6Net> {
    let host_bits = (u128::from(first) ^ u128::from(last)).count_ones() as u8;
    let net = Ipv6Net::new(first, 128 - host_bits).ok()?;
    (net.network() == first && net.broadcast() == last).then_some(net)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn concat_bytes(fields: &[Field], bound: Bound) -> Vec<u8> {
        Concat::new(fields, bound).as_bytes().to_vec()
    }

    #[test]
    fn a_concatenation_longer_than_nftables_allows_is_cut_not_a_panic() {
        let address = Field::Address("fd76:6700:0:1::2".parse().unwrap());
        assert_eq!(concat_bytes(&[address; 5], Bound::Start).len(), MAX_CONCAT);
    }

    #[test]
    fn concatenation_layout_matches_nft() {
        let key = concat_bytes(
            &[
                Field::Address("fd76:6700:0:1::2".parse().unwrap()),
                Field::Protocol(Protocol::Tcp),
                Field::Port(80),
            ],
            Bound::Start,
        );
        assert_eq!(key.len(), 24);
        // protocol byte then 3 bytes padding; port big-endian then 2 bytes padding
        assert_eq!(&key[16..24], &[6, 0, 0, 0, 0, 80, 0, 0]);
    }

    #[test]
    fn concatenated_type_ids_match_nft() {
        use FieldType::*;
        assert_eq!(
            concat_type(&[Address, Protocol, Port]),
            (8 << 12) | (12 << 6) | 13
        );
        assert_eq!(concat_len(&[Address, Protocol, Port]), 24);
        assert_eq!(concat_len(&[Address, Address, Protocol, Port]), 40);
    }

    #[test]
    fn registers_follow_nft_allocation() {
        use FieldType::*;
        let reg = |n: i32| n as u32;
        // Seen in `nft --debug=netlink`: daddr reg 1, l4proto reg 2, dport reg 13.
        assert_eq!(
            registers(&[Address, Protocol, Port]),
            vec![
                reg(libc::NFT_REG_1),
                reg(libc::NFT_REG_2),
                reg(libc::NFT_REG32_05)
            ]
        );
        // l4proto reg 1, dport reg 9.
        assert_eq!(
            registers(&[Protocol, Port]),
            vec![reg(libc::NFT_REG_1), reg(libc::NFT_REG32_01)]
        );
        // saddr reg 1, daddr reg 2, l4proto reg 3, dport reg 17.
        assert_eq!(
            registers(&[Address, Address, Protocol, Port]),
            vec![
                reg(libc::NFT_REG_1),
                reg(libc::NFT_REG_2),
                reg(libc::NFT_REG_3),
                reg(libc::NFT_REG32_09)
            ]
        );
    }

    #[test]
    fn keys_round_trip_including_prefixes() {
        let types = [
            FieldType::Address,
            FieldType::Protocol,
            FieldType::Port,
            FieldType::Prefix,
        ];
        for (protocol, prefix) in [
            (Protocol::Tcp, "2001:db8:76::/64"),
            (Protocol::Udp, "fd00:1::/66"),
            (Protocol::Sctp, "2001:db8:99::5/128"),
        ] {
            let fields = vec![
                Field::Address("fd76:6700:0:50::2".parse().unwrap()),
                Field::Protocol(protocol),
                Field::Port(65535),
                Field::Prefix(prefix.parse().unwrap()),
            ];
            let start = concat_bytes(&fields, Bound::Start);
            let end = concat_bytes(&fields, Bound::End);
            assert_eq!(decode_fields(&types, &start, Some(&end)), Some(fields));
        }
        assert_eq!(decode_fields(&types, &[0u8; 7], None), None);
    }

    #[test]
    fn a_range_that_is_not_a_prefix_does_not_decode() {
        let first: Ipv6Addr = "2001:db8::1".parse().unwrap();
        let last: Ipv6Addr = "2001:db8::6".parse().unwrap();
        assert_eq!(prefix_of(first, last), None);
    }
}
