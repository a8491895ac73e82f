//! Reading back what the kernel holds: tables, chains, rules, set elements. Used by `cleanup`
//! (which tables are ours), stand-down (Docker's own table), the audit and `verify`.

use std::collections::BTreeMap;
use std::ffi::CStr;
use std::io;

use nftnl::nftnl_sys as sys;

use super::layout::decode_fields;
use super::{NftError, c_string};
use crate::ruleset::{Field, NamedSet};

pub mod rules;

use rules::ChainRules;

/// The paths from before `verify` had a module of its own, for callers not moved yet
/// (src/daemon, changed on another branch); import `crate::nft::verify` instead.
pub use super::verify::{RuleCheck, verify};

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
    // SAFETY: `header` is a complete NEWTABLE message from the kernel (mnl validated it);
    // the nftnl_table is allocated and freed here.
    unsafe {
        let table = sys::nftnl_table_alloc();
        if table.is_null() {
            return mnl::mnl_sys::MNL_CB_ERROR;
        }
        if sys::nftnl_table_nlmsg_parse(header as *const _ as *const _, table) < 0 {
            sys::nftnl_table_free(table);
            return mnl::mnl_sys::MNL_CB_ERROR;
        }
        let name = sys::nftnl_table_get_str(table, sys::NFTNL_TABLE_NAME as u16);
        if !name.is_null() {
            tables.push(TableId {
                family: sys::nftnl_table_get_u32(table, sys::NFTNL_TABLE_FAMILY as u16),
                name: CStr::from_ptr(name).to_string_lossy().into_owned(),
                comment: table_comment(table),
                dormant: sys::nftnl_table_get_u32(table, sys::NFTNL_TABLE_FLAGS as u16)
                    & NFT_TABLE_F_DORMANT
                    != 0,
            });
        }
        sys::nftnl_table_free(table);
    }
    mnl::mnl_sys::MNL_CB_OK
}

/// The comment in a table's userdata (a TLV: type 0 = comment, length, NUL-terminated text).
///
/// # Safety
/// `table` must be a live, parsed nftnl_table.
unsafe fn table_comment(table: *mut sys::nftnl_table) -> Option<String> {
    let mut len = 0u32;
    // SAFETY: per this function's contract; the pointer is valid for `len` bytes.
    let data = unsafe {
        let data = sys::nftnl_table_get_data(table, sys::NFTNL_TABLE_USERDATA as u16, &mut len);
        if data.is_null() {
            return None;
        }
        std::slice::from_raw_parts(data as *const u8, len as usize)
    };
    let mut at = 0;
    while at + 2 <= data.len() {
        let (kind, length) = (data[at], usize::from(data[at + 1]));
        let value = data.get(at + 2..at + 2 + length)?;
        if u32::from(kind) == sys::NFTNL_UDATA_TABLE_COMMENT {
            let text = value.split(|b| *b == 0).next().unwrap_or_default();
            return Some(String::from_utf8_lossy(text).into_owned());
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
    // SAFETY: `header` is a complete NEWCHAIN message from the kernel (mnl validated it);
    // the nftnl_chain is allocated and freed here, and its strings are copied before.
    unsafe {
        let chain = sys::nftnl_chain_alloc();
        if chain.is_null() {
            return mnl::mnl_sys::MNL_CB_ERROR;
        }
        if sys::nftnl_chain_nlmsg_parse(header as *const _ as *const _, chain) < 0 {
            sys::nftnl_chain_free(chain);
            return mnl::mnl_sys::MNL_CB_ERROR;
        }
        let text = |attr: u32| {
            let value = sys::nftnl_chain_get_str(chain, attr as u16);
            (!value.is_null()).then(|| CStr::from_ptr(value).to_string_lossy().into_owned())
        };
        let is_set = |attr: u32| sys::nftnl_chain_is_set(chain, attr as u16);
        if let (Some(name), Some(table)) =
            (text(sys::NFTNL_CHAIN_NAME), text(sys::NFTNL_CHAIN_TABLE))
        {
            chains.push(ChainId {
                family: sys::nftnl_chain_get_u32(chain, sys::NFTNL_CHAIN_FAMILY as u16),
                table,
                name,
                hook: is_set(sys::NFTNL_CHAIN_HOOKNUM)
                    .then(|| sys::nftnl_chain_get_u32(chain, sys::NFTNL_CHAIN_HOOKNUM as u16)),
                priority: is_set(sys::NFTNL_CHAIN_PRIO)
                    .then(|| sys::nftnl_chain_get_s32(chain, sys::NFTNL_CHAIN_PRIO as u16)),
                policy: is_set(sys::NFTNL_CHAIN_POLICY)
                    .then(|| sys::nftnl_chain_get_u32(chain, sys::NFTNL_CHAIN_POLICY as u16)),
            });
        }
        sys::nftnl_chain_free(chain);
    }
    mnl::mnl_sys::MNL_CB_OK
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
    let length = header.nlmsg_len as usize;
    // SAFETY: mnl validated that the message, `nlmsg_len` bytes from its header, lies within
    // the received buffer.
    let message =
        unsafe { std::slice::from_raw_parts((header as *const libc::nlmsghdr).cast(), length) };
    rules::add_rule(message, chains);
    mnl::mnl_sys::MNL_CB_OK
}

/// The elements the kernel holds in `set` (decoded with its key and value types) in table
/// `ip6 TABLE`, or `None` when the table or set is missing.
pub fn read_elements(table: &str, set: &NamedSet) -> Result<Option<Elements>, NftError> {
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
    let mut target = holder.0;
    match run_dump(&request, parse_elements, &mut target) {
        Ok(()) => Ok(Some(collect_elements(&holder, set))),
        Err(NftError::Receive(e)) if e.raw_os_error() == Some(libc::ENOENT) => Ok(None),
        Err(e) => Err(e),
    }
}

struct OwnedSet(*mut sys::nftnl_set);

impl Drop for OwnedSet {
    fn drop(&mut self) {
        if !self.0.is_null() {
            // SAFETY: allocated by nftnl_set_alloc and not freed elsewhere.
            unsafe { sys::nftnl_set_free(self.0) }
        }
    }
}

fn collect_elements(holder: &OwnedSet, set: &NamedSet) -> Elements {
    let mut out = BTreeMap::new();
    // SAFETY: the iterator walks the set's own element list and is destroyed before return;
    // each key and data pointer is valid for its length while the set lives.
    unsafe {
        let iter = sys::nftnl_set_elems_iter_create(holder.0);
        if iter.is_null() {
            return out;
        }
        let mut elem = sys::nftnl_set_elems_iter_cur(iter);
        let mut unknown = 0u16;
        while !elem.is_null() {
            let key = elem_bytes(elem, sys::NFTNL_SET_ELEM_KEY);
            let key_end = set
                .interval
                .then(|| elem_bytes(elem, sys::NFTNL_SET_ELEM_KEY_END));
            let value = elem_bytes(elem, sys::NFTNL_SET_ELEM_DATA);
            let decoded = decode_fields(&set.key, &key, key_end.as_deref()).zip(if set.is_map() {
                decode_fields(&set.value, &value, None)
            } else {
                Some(Vec::new())
            });
            // An element v6guard never writes still counts: keep a marker that matches nothing.
            let (key, value) = decoded.unwrap_or_else(|| {
                unknown += 1;
                (vec![Field::Port(unknown)], vec![Field::Port(0)])
            });
            out.insert(key, value);
            elem = sys::nftnl_set_elems_iter_next(iter);
        }
        sys::nftnl_set_elems_iter_destroy(iter);
    }
    out
}

/// An element attribute's bytes (empty when absent).
///
/// # Safety
/// `elem` must be a live element.
unsafe fn elem_bytes(elem: *mut sys::nftnl_set_elem, attr: u32) -> Vec<u8> {
    let mut len = 0u32;
    // SAFETY: per this function's contract; the pointer is valid for `len` bytes.
    unsafe {
        let data = sys::nftnl_set_elem_get(elem, attr as u16, &mut len);
        if data.is_null() {
            return Vec::new();
        }
        std::slice::from_raw_parts(data as *const u8, len as usize).to_vec()
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

fn parse_elements(header: &libc::nlmsghdr, set: &mut *mut sys::nftnl_set) -> libc::c_int {
    // SAFETY: `header` is a complete NEWSETELEM message (mnl validated it); the set is valid.
    let result =
        unsafe { sys::nftnl_set_elems_nlmsg_parse((header as *const libc::nlmsghdr).cast(), *set) };
    if result < 0 {
        mnl::mnl_sys::MNL_CB_ERROR
    } else {
        mnl::mnl_sys::MNL_CB_OK
    }
}
