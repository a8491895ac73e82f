//! Reading back what the kernel holds: tables, chains, rules, sets, set elements. Used by
//! `cleanup` (which tables are ours), stand-down (Docker's own table), the audit and `verify`.

use std::collections::BTreeMap;
use std::io;

use nftnl::nftnl_sys as sys;

use super::layout::decode_fields;
use super::{NftError, c_string};
use crate::ruleset::{Field, NamedSet};

mod attr;
pub mod rules;
mod sets;

pub use sets::{SetDeclaration, read_sets};

use rules::ChainRules;

/// `enum nft_table_flags` in linux/netfilter/nf_tables.h (not in the libc crate).
const NFT_TABLE_F_DORMANT: u32 = 0x1;

/// A set's elements: key -> value (empty for a set).
pub type Elements = BTreeMap<Vec<Field>, Vec<Field>>;

/// One nftables table as the kernel lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableId {
    pub family: u32,
    pub name: String,
    /// The table's comment (v6guard's names the plan it was built from).
    pub comment: Option<String>,
    /// `flags dormant`: the table is kept but none of its chains sees a packet.
    pub dormant: bool,
}

/// All tables in the current network namespace, any family.
pub fn list_tables() -> Result<Vec<TableId>, NftError> {
    let socket = mnl::Socket::new(mnl::Bus::Netfilter).map_err(NftError::Socket)?;
    let portid = socket.portid();
    let seq = 1;
    let request = nftnl::table::get_tables_nlmsg(seq);
    socket.send(&request).map_err(NftError::Send)?;

    let mut tables = Vec::new();
    let mut buffer = vec![0u8; nftnl::nft_nlmsg_maxsize() as usize];
    loop {
        let n = socket.recv_raw(&mut buffer).map_err(NftError::Receive)?;
        if n == 0 {
            break;
        }
        let result = mnl::cb_run2(&buffer[..n], seq, portid, parse_table, &mut tables)
            .map_err(NftError::Receive)?;
        if let mnl::CbResult::Stop = result {
            break;
        }
    }
    Ok(tables)
}

fn parse_table(header: &libc::nlmsghdr, tables: &mut Vec<TableId>) -> libc::c_int {
    if let Some(table) = attr::message(message_bytes(header)).and_then(table_from) {
        tables.push(table);
    }
    mnl::mnl_sys::MNL_CB_OK
}

/// `NFTA_TABLE_*` in linux/netfilter/nf_tables.h.
const NFTA_TABLE_NAME: u16 = 1;
const NFTA_TABLE_FLAGS: u16 = 2;
const NFTA_TABLE_USERDATA: u16 = 6;

/// A table from a NEWTABLE message; `None` for other messages or one without a name.
fn table_from(message: attr::Message<'_>) -> Option<TableId> {
    if message.kind != attr::NEWTABLE {
        return None;
    }
    let get = |kind| attr::find(message.attributes, kind);
    Some(TableId {
        family: u32::from(message.family),
        name: attr::text(get(NFTA_TABLE_NAME)?),
        comment: get(NFTA_TABLE_USERDATA).and_then(table_comment),
        dormant: get(NFTA_TABLE_FLAGS)
            .and_then(attr::be32)
            .is_some_and(|flags| flags & NFT_TABLE_F_DORMANT != 0),
    })
}

/// The comment in a table's userdata (a TLV: type 0 = comment, length, NUL-terminated text).
fn table_comment(data: &[u8]) -> Option<String> {
    let mut at = 0;
    while at + 2 <= data.len() {
        let (kind, length) = (data[at], usize::from(data[at + 1]));
        let value = data.get(at + 2..at + 2 + length)?;
        if u32::from(kind) == sys::NFTNL_UDATA_TABLE_COMMENT {
            return Some(attr::text(value));
        }
        at += 2 + length;
    }
    None
}

/// One chain as the kernel lists it. Base chains (attached to a hook) carry their hook,
/// priority and policy; regular chains (jump targets) carry none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainId {
    /// `NFPROTO_*`: 2 ip, 10 ip6, 1 inet, 7 bridge, ...
    pub family: u32,
    pub table: String,
    pub name: String,
    /// `NF_INET_*` hook number (2 = forward) of a base chain.
    pub hook: Option<u32>,
    pub priority: Option<i32>,
    /// `NF_DROP` (0) or `NF_ACCEPT` (1) of a base chain.
    pub policy: Option<u32>,
}

/// All chains in the current network namespace, any family: other tools' tables and base
/// chains decide what v6guard's rules can achieve (a foreign forward chain with policy drop
/// drops what v6guard accepts), so the audit names them.
pub fn list_chains() -> Result<Vec<ChainId>, NftError> {
    let request = dump_request(
        libc::NFT_MSG_GETCHAIN as u16,
        libc::NFPROTO_UNSPEC as u16,
        |_| {},
    );
    let mut chains = Vec::new();
    run_dump(&request, parse_chain, &mut chains)?;
    Ok(chains)
}

fn parse_chain(header: &libc::nlmsghdr, chains: &mut Vec<ChainId>) -> libc::c_int {
    if let Some(chain) = attr::message(message_bytes(header)).and_then(chain_from) {
        chains.push(chain);
    }
    mnl::mnl_sys::MNL_CB_OK
}

/// `NFTA_CHAIN_*` and `NFTA_HOOK_*` in linux/netfilter/nf_tables.h.
const NFTA_CHAIN_TABLE: u16 = 1;
const NFTA_CHAIN_NAME: u16 = 3;
const NFTA_CHAIN_HOOK: u16 = 4;
const NFTA_CHAIN_POLICY: u16 = 5;
const NFTA_HOOK_HOOKNUM: u16 = 1;
const NFTA_HOOK_PRIORITY: u16 = 2;

/// A chain from a NEWCHAIN message; `None` for other messages or one without a name.
fn chain_from(message: attr::Message<'_>) -> Option<ChainId> {
    if message.kind != attr::NEWCHAIN {
        return None;
    }
    let get = |kind| attr::find(message.attributes, kind);
    let hook = get(NFTA_CHAIN_HOOK);
    let in_hook = |kind| hook.and_then(|h| attr::find(h, kind)).and_then(attr::be32);
    Some(ChainId {
        family: u32::from(message.family),
        table: attr::text(get(NFTA_CHAIN_TABLE)?),
        name: attr::text(get(NFTA_CHAIN_NAME)?),
        hook: in_hook(NFTA_HOOK_HOOKNUM),
        priority: in_hook(NFTA_HOOK_PRIORITY).map(|p| p as i32),
        policy: get(NFTA_CHAIN_POLICY).and_then(attr::be32),
    })
}

/// Every rule of tables `ip6 TABLE` and `bridge TABLE` as the kernel holds them, by chain, or
/// `None` when the ip6 table is missing. One dump per family: the kernel ends a rule dump
/// filtered by table name after the first table of that name, whatever the family.
pub fn read_rules(table: &str) -> Result<Option<ChainRules>, NftError> {
    let mut chains = ChainRules::new();
    for family in [libc::NFPROTO_IPV6, libc::NFPROTO_BRIDGE] {
        let found = dump_rules(table, family as u16, &mut chains)?;
        if !found && family == libc::NFPROTO_IPV6 {
            return Ok(None);
        }
    }
    Ok(Some(chains))
}

/// Add the rules of table `FAMILY TABLE` to `chains`; false when the table is missing.
fn dump_rules(table: &str, family: u16, chains: &mut ChainRules) -> Result<bool, NftError> {
    let name = c_string(table)?;
    let request = dump_request(libc::NFT_MSG_GETRULE as u16, family, |header| {
        // SAFETY: a fresh rule object carries only the table filter; it is freed here.
        unsafe {
            let rule = sys::nftnl_rule_alloc();
            if rule.is_null() {
                return;
            }
            sys::nftnl_rule_set_str(rule, sys::NFTNL_RULE_TABLE as u16, name.as_ptr());
            sys::nftnl_rule_set_u32(rule, sys::NFTNL_RULE_FAMILY as u16, u32::from(family));
            sys::nftnl_rule_nlmsg_build_payload(header, rule);
            sys::nftnl_rule_free(rule);
        }
    });
    match run_dump(&request, rule_message, chains) {
        Ok(()) => Ok(true),
        Err(NftError::Receive(e)) if e.raw_os_error() == Some(libc::ENOENT) => Ok(false),
        Err(e) => Err(e),
    }
}

fn rule_message(header: &libc::nlmsghdr, chains: &mut ChainRules) -> libc::c_int {
    rules::add_rule(message_bytes(header), chains);
    mnl::mnl_sys::MNL_CB_OK
}

/// The bytes of the message `header` starts.
fn message_bytes(header: &libc::nlmsghdr) -> &[u8] {
    let length = header.nlmsg_len as usize;
    // SAFETY: mnl validated that the message, `nlmsg_len` bytes from its header, lies within
    // the received buffer, which outlives the callback this is called from.
    unsafe { std::slice::from_raw_parts((header as *const libc::nlmsghdr).cast(), length) }
}

/// The elements the kernel holds in `set` (decoded with its key and value types) in table
/// `ip6 TABLE`, or `None` when the table or set is missing.
pub fn read_elements(table: &str, set: &NamedSet) -> Result<Option<Elements>, NftError> {
    let mut elements = Elements::new();
    let found = dump_elements(table, set, &mut |key, value| {
        elements.insert(key, value);
    })?;
    Ok(found.then_some(elements))
}

/// How the elements the kernel holds in a set compare with the plan's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ElementMatch {
    /// Elements in the kernel's set.
    pub held: usize,
    /// Of those, the ones the plan has with the same value.
    pub matching: usize,
    /// Of those, the ones whose key the plan does not have.
    pub extra: usize,
}

/// Compare the kernel's elements of `set` with `set.elements` as they are read, without
/// collecting them: at 100,000 elements a collected copy is some 30 MiB the daemon's
/// periodic verify would allocate each time. `None` when the table or set is missing.
pub fn compare_elements(table: &str, set: &NamedSet) -> Result<Option<ElementMatch>, NftError> {
    let mut found = ElementMatch {
        held: 0,
        matching: 0,
        extra: 0,
    };
    let exists = dump_elements(table, set, &mut |key, value| {
        found.held += 1;
        match set.elements.get(&key) {
            Some(planned) if *planned == value => found.matching += 1,
            Some(_) => {}
            None => found.extra += 1,
        }
    })?;
    Ok(exists.then_some(found))
}

/// Dump the elements of `set` in table `ip6 TABLE`, handing each to `sink` decoded; false
/// when the table or set is missing.
fn dump_elements(
    table: &str,
    set: &NamedSet,
    sink: &mut dyn FnMut(Vec<Field>, Vec<Field>),
) -> Result<bool, NftError> {
    let table_name = c_string(table)?;
    let set_name = c_string(&set.name)?;
    // SAFETY: allocated here, freed by `OwnedSet`'s Drop.
    let holder = OwnedSet(unsafe { sys::nftnl_set_alloc() });
    if holder.0.is_null() {
        return Err(NftError::Receive(io::Error::from(
            io::ErrorKind::OutOfMemory,
        )));
    }
    // SAFETY: the set object is valid; the strings outlive the calls (libnftnl copies them).
    unsafe {
        sys::nftnl_set_set_str(holder.0, sys::NFTNL_SET_TABLE as u16, table_name.as_ptr());
        sys::nftnl_set_set_str(holder.0, sys::NFTNL_SET_NAME as u16, set_name.as_ptr());
        sys::nftnl_set_set_u32(
            holder.0,
            sys::NFTNL_SET_FAMILY as u16,
            libc::NFPROTO_IPV6 as u32,
        );
    }
    let request = dump_request(libc::NFT_MSG_GETSETELEM as u16, IPV6, |header| {
        // SAFETY: the set object is valid and names the set to dump.
        unsafe { sys::nftnl_set_elems_nlmsg_build_payload(header, holder.0) }
    });
    let mut dump = ElementDump {
        set,
        sink,
        unknown: 0,
    };
    match run_dump(&request, parse_elements, &mut dump) {
        Ok(()) => Ok(true),
        Err(NftError::Receive(e)) if e.raw_os_error() == Some(libc::ENOENT) => Ok(false),
        Err(e) => Err(e),
    }
}

/// The set object that names the set in a GETSETELEM request.
struct OwnedSet(*mut sys::nftnl_set);

impl Drop for OwnedSet {
    fn drop(&mut self) {
        if !self.0.is_null() {
            // SAFETY: allocated by nftnl_set_alloc and not freed elsewhere.
            unsafe { sys::nftnl_set_free(self.0) }
        }
    }
}

/// The elements of one set as its dump's messages arrive.
struct ElementDump<'s> {
    set: &'s NamedSet,
    sink: &'s mut dyn FnMut(Vec<Field>, Vec<Field>),
    /// Elements v6guard never writes (undecodable): each kept as a distinct marker.
    unknown: u16,
}

/// `NFTA_SET_ELEM_LIST_*`, `NFTA_SET_ELEM_*` and `NFTA_DATA_VALUE` in nf_tables.h.
const NFTA_SET_ELEM_LIST_ELEMENTS: u16 = 3;
const NFTA_LIST_ELEM: u16 = 1;
const NFTA_SET_ELEM_KEY: u16 = 1;
const NFTA_SET_ELEM_DATA: u16 = 2;
const NFTA_SET_ELEM_KEY_END: u16 = 10;
const NFTA_DATA_VALUE: u16 = 1;

fn parse_elements(header: &libc::nlmsghdr, dump: &mut ElementDump<'_>) -> libc::c_int {
    if let Some(message) = attr::message(message_bytes(header)) {
        add_elements(message, dump);
    }
    mnl::mnl_sys::MNL_CB_OK
}

/// Decode the elements of one NEWSETELEM message into `dump`.
fn add_elements(message: attr::Message<'_>, dump: &mut ElementDump<'_>) {
    if message.kind != attr::NEWSETELEM {
        return;
    }
    let Some(list) = attr::find(message.attributes, NFTA_SET_ELEM_LIST_ELEMENTS) else {
        return;
    };
    let set = dump.set;
    for (kind, element) in attr::attributes(list) {
        if kind != NFTA_LIST_ELEM {
            continue;
        }
        // A value attribute's bytes (empty when absent, as v6guard's sets never hold that).
        let value_of = |kind| {
            attr::find(element, kind)
                .and_then(|data| attr::find(data, NFTA_DATA_VALUE))
                .unwrap_or_default()
        };
        let key_end = set.interval.then(|| value_of(NFTA_SET_ELEM_KEY_END));
        let decoded =
            decode_fields(&set.key, value_of(NFTA_SET_ELEM_KEY), key_end).zip(if set.is_map() {
                decode_fields(&set.value, value_of(NFTA_SET_ELEM_DATA), None)
            } else {
                Some(Vec::new())
            });
        // An element v6guard never writes still counts: keep a marker that matches nothing.
        let (key, value) = decoded.unwrap_or_else(|| {
            dump.unknown += 1;
            (vec![Field::Port(dump.unknown)], vec![Field::Port(0)])
        });
        (dump.sink)(key, value);
    }
}

const IPV6: u16 = libc::NFPROTO_IPV6 as u16;

/// A dump request (`NLM_F_DUMP`) of `msg_type` for `family`, its payload written by `payload`.
fn dump_request(msg_type: u16, family: u16, payload: impl FnOnce(*mut libc::nlmsghdr)) -> Vec<u8> {
    let mut buffer = vec![0u8; nftnl::nft_nlmsg_maxsize() as usize];
    // SAFETY: the buffer is nft_nlmsg_maxsize bytes, enough for one header and payload.
    let length = unsafe {
        let header = sys::nftnl_nlmsg_build_hdr(
            buffer.as_mut_ptr().cast(),
            msg_type,
            family,
            libc::NLM_F_DUMP as u16,
            1,
        );
        payload(header.cast());
        (*header).nlmsg_len as usize
    };
    buffer.truncate(length);
    buffer
}

fn run_dump<T>(request: &[u8], callback: mnl::Callback<T>, data: &mut T) -> Result<(), NftError> {
    let socket = mnl::Socket::new(mnl::Bus::Netfilter).map_err(NftError::Socket)?;
    socket.send(request).map_err(NftError::Send)?;
    let portid = socket.portid();
    let mut buffer = vec![0u8; nftnl::nft_nlmsg_maxsize() as usize];
    loop {
        let n = socket.recv_raw(&mut buffer).map_err(NftError::Receive)?;
        if n == 0 {
            return Ok(());
        }
        match mnl::cb_run2(&buffer[..n], 1, portid, callback, data).map_err(NftError::Receive)? {
            mnl::CbResult::Stop => return Ok(()),
            mnl::CbResult::Ok => {}
        }
    }
}

#[cfg(test)]
mod tests;
