//! The dump parsers against messages laid out as the kernel sends them.

use std::net::Ipv6Addr;

use super::attr::{self, build};
use super::*;
use crate::nft::layout::{Bound, Concat};
use crate::ruleset::FieldType;
use crate::snapshot::Protocol;

fn parsed(bytes: &[u8]) -> attr::Message<'_> {
    attr::message(bytes).expect("a whole message")
}

#[test]
fn a_table_with_its_comment_and_flags() {
    let comment = b"\x00\x0fv6guard plan 1\x00";
    let bytes = build::message(
        attr::NEWTABLE,
        libc::NFPROTO_IPV6 as u8,
        &[
            build::text(NFTA_TABLE_NAME, "v6guard"),
            build::attribute(NFTA_TABLE_FLAGS, &NFT_TABLE_F_DORMANT.to_be_bytes()),
            build::attribute(NFTA_TABLE_USERDATA, comment),
        ],
    );
    assert_eq!(
        table_from(parsed(&bytes)),
        Some(TableId {
            family: libc::NFPROTO_IPV6 as u32,
            name: "v6guard".into(),
            comment: Some("v6guard plan 1".into()),
            dormant: true,
        })
    );
    let nameless = build::message(attr::NEWTABLE, 10, &[]);
    assert_eq!(table_from(parsed(&nameless)), None);
    let other = build::message(attr::NEWCHAIN, 10, &[build::text(NFTA_TABLE_NAME, "x")]);
    assert_eq!(table_from(parsed(&other)), None);
}

#[test]
fn a_base_chain_and_a_regular_chain() {
    let mut hook = build::attribute(NFTA_HOOK_HOOKNUM, &2u32.to_be_bytes());
    hook.extend(build::attribute(
        NFTA_HOOK_PRIORITY,
        &(-150i32).to_be_bytes(),
    ));
    let base = build::message(
        attr::NEWCHAIN,
        libc::NFPROTO_INET as u8,
        &[
            build::text(NFTA_CHAIN_TABLE, "filter"),
            build::text(NFTA_CHAIN_NAME, "forward"),
            build::attribute(NFTA_CHAIN_HOOK, &hook),
            build::attribute(NFTA_CHAIN_POLICY, &0u32.to_be_bytes()),
        ],
    );
    assert_eq!(
        chain_from(parsed(&base)),
        Some(ChainId {
            family: libc::NFPROTO_INET as u32,
            table: "filter".into(),
            name: "forward".into(),
            hook: Some(2),
            priority: Some(-150),
            policy: Some(0),
        })
    );
    let regular = build::message(
        attr::NEWCHAIN,
        10,
        &[
            build::text(NFTA_CHAIN_TABLE, "v6guard"),
            build::text(NFTA_CHAIN_NAME, "to-bridge"),
        ],
    );
    let chain = chain_from(parsed(&regular)).expect("chain");
    assert_eq!(
        (chain.hook, chain.priority, chain.policy),
        (None, None, None)
    );
}

fn element(key: &[Field], value: Option<&[Field]>) -> Vec<u8> {
    let data = |fields: &[Field]| {
        build::attribute(
            NFTA_DATA_VALUE,
            Concat::new(fields, Bound::Start).as_bytes(),
        )
    };
    let mut inner = build::attribute(NFTA_SET_ELEM_KEY, &data(key));
    if let Some(value) = value {
        inner.extend(build::attribute(NFTA_SET_ELEM_DATA, &data(value)));
    }
    build::attribute(NFTA_LIST_ELEM, &inner)
}

#[test]
fn map_elements_decode_and_unknown_ones_still_count() {
    let set = NamedSet::map(
        "dnat-any",
        vec![FieldType::Protocol, FieldType::Port],
        vec![FieldType::Address, FieldType::Port],
    );
    let key = [Field::Protocol(Protocol::Tcp), Field::Port(8080)];
    let value = [Field::Address(Ipv6Addr::LOCALHOST), Field::Port(80)];
    let mut list = element(&key, Some(&value));
    // A key of the wrong length: not an element v6guard wrote.
    let mut odd = build::attribute(
        NFTA_SET_ELEM_KEY,
        &build::attribute(NFTA_DATA_VALUE, &[1, 2, 3]),
    );
    odd = build::attribute(NFTA_LIST_ELEM, &{
        odd.extend(build::attribute(NFTA_SET_ELEM_DATA, &[]));
        odd
    });
    list.extend(odd);
    let bytes = build::message(
        attr::NEWSETELEM,
        10,
        &[build::attribute(NFTA_SET_ELEM_LIST_ELEMENTS, &list)],
    );
    let mut elements = Elements::new();
    let mut sink = |key, value| {
        elements.insert(key, value);
    };
    let mut dump = ElementDump {
        set: &set,
        sink: &mut sink,
        unknown: 0,
    };
    add_elements(parsed(&bytes), &mut dump);
    assert_eq!(dump.unknown, 1);
    assert_eq!(elements.len(), 2);
    assert_eq!(elements.get(key.as_slice()), Some(&value.to_vec()));
}
