//! Writing: Ruleset -> one netlink batch (nftnl), sent on a netlink socket (`send`).
//!
//! Every expression is emitted the way `nft` itself compiles the matching text in
//! `render.rs` (same registers, same data lengths), so the kernel holds the same objects
//! whichever way the ruleset was loaded. nftnl's typed expressions always use register 1 and
//! lack fib, maps and NAT from registers, so matches are built from one small raw-expression
//! type ([`RawExpr`]) over nftnl-sys; only verdicts, counters and masquerade use nftnl's own.
//!
//! The batch replaces v6guard's tables atomically: for each (ip6, then bridge), add table (so
//! the delete cannot fail), delete table, add table, then its sets, chains and rules.

use std::ffi::{CStr, c_void};
use std::ptr::NonNull;

use nftnl::set::Set;
use nftnl::{Batch, FinalizedBatch, MsgType, ProtoFamily, Table, nftnl_sys as sys};

mod expr;
mod send;

pub use send::{Session, send_batch};

use super::layout::{Bound, Concat, concat_len, concat_type, field_len};
use super::{ConcatKey, NftError, c_string};
use crate::ruleset::{Field, Hook, NamedSet, Ruleset};
use expr::build_rule;

/// Build the batch that atomically replaces v6guard's tables with `ruleset`.
pub fn build_batch(ruleset: &Ruleset) -> Result<FinalizedBatch, NftError> {
    let table_name = c_string(&ruleset.table)?;
    let table = Table::new(&table_name, ProtoFamily::Ipv6);
    let mut batch = Batch::new();
    batch.add(&table, MsgType::Add);
    batch.add(&table, MsgType::Del);
    batch.add(
        &CommentedTable::new(&table_name, &ruleset.comment())?,
        MsgType::Add,
    );

    let mut sets = Vec::new();
    for (index, set) in ruleset.sets.iter().enumerate() {
        let id = u32::try_from(index).unwrap_or(u32::MAX);
        let nft_set = build_set(set, id, &table)?;
        batch.add(&nft_set, MsgType::Add);
        batch.add_iter(nft_set.elems_iter(), MsgType::Add);
        sets.push(SetRef {
            name: &set.name,
            id,
            interval: set.interval,
        });
    }
    add_chains(&mut batch, &table, &ruleset.chains, &sets, Family::Ip6)?;

    let bridge_table = Table::new(&table_name, ProtoFamily::Bridge);
    batch.add(&bridge_table, MsgType::Add);
    batch.add(&bridge_table, MsgType::Del);
    if !ruleset.bridge_chains.is_empty() {
        batch.add(&bridge_table, MsgType::Add);
        add_chains(
            &mut batch,
            &bridge_table,
            &ruleset.bridge_chains,
            &[],
            Family::Bridge,
        )?;
    }
    Ok(batch.finalize())
}

/// The family a rule is built for: some matches compile differently in a bridge table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Family {
    Ip6,
    Bridge,
}

/// Add `chains` and their rules to `table`. Regular chains must exist before a rule jumps to
/// them, so all chains come first.
fn add_chains(
    batch: &mut Batch,
    table: &Table,
    chains: &[crate::ruleset::Chain],
    sets: &[SetRef<'_>],
    family: Family,
) -> Result<(), NftError> {
    let mut nft_chains = Vec::new();
    for chain in chains {
        let mut nft_chain = nftnl::Chain::new(c_string(&chain.name)?, table);
        if let Some(hook) = chain.hook {
            let (nft_hook, chain_type, priority) = hook_parts(hook);
            nft_chain.set_hook(nft_hook, priority);
            nft_chain.set_type(chain_type);
            nft_chain.set_policy(nftnl::Policy::Accept);
        }
        batch.add(&nft_chain, MsgType::Add);
        nft_chains.push(nft_chain);
    }
    for (chain, nft_chain) in chains.iter().zip(&nft_chains) {
        for rule in &chain.rules {
            let nft_rule = build_rule(rule, nft_chain, sets, family)?;
            batch.add(&nft_rule, MsgType::Add);
        }
    }
    Ok(())
}

/// A table with a comment (nftnl's `Table` cannot carry one): the comment names the plan the
/// table was built from (`Ruleset::comment`), as `render` prints it.
struct CommentedTable(NonNull<sys::nftnl_table>);

impl CommentedTable {
    fn new(name: &CStr, comment: &str) -> Result<Self, NftError> {
        let comment = c_string(comment)?;
        // SAFETY: both objects are allocated here; the udata buffer is freed after libnftnl
        // has copied its bytes into the table, which CommentedTable's Drop frees.
        unsafe {
            let Some(table) = NonNull::new(sys::nftnl_table_alloc()) else {
                std::process::abort();
            };
            // Owned from here on, so every return below frees it.
            let owned = CommentedTable(table);
            sys::nftnl_table_set_u32(
                table.as_ptr(),
                sys::NFTNL_TABLE_FAMILY as u16,
                libc::NFPROTO_IPV6 as u32,
            );
            sys::nftnl_table_set_str(table.as_ptr(), sys::NFTNL_TABLE_NAME as u16, name.as_ptr());
            let udata = sys::nftnl_udata_buf_alloc(sys::NFTNL_UDATA_COMMENT_MAXLEN);
            if udata.is_null() {
                std::process::abort();
            }
            let fits = sys::nftnl_udata_put_strz(
                udata,
                sys::NFTNL_UDATA_TABLE_COMMENT as u8,
                comment.as_ptr(),
            );
            if fits {
                sys::nftnl_table_set_data(
                    table.as_ptr(),
                    sys::NFTNL_TABLE_USERDATA as u16,
                    sys::nftnl_udata_buf_data(udata),
                    sys::nftnl_udata_buf_len(udata),
                );
            }
            sys::nftnl_udata_buf_free(udata);
            if !fits {
                return Err(NftError::Unexpressible(format!(
                    "table comment `{}` is too long",
                    comment.to_string_lossy()
                )));
            }
            Ok(owned)
        }
    }
}

// SAFETY: `write` builds one NEWTABLE message into a buffer nftnl's batch sized for it.
unsafe impl nftnl::NlMsg for CommentedTable {
    unsafe fn write(&self, buf: *mut c_void, seq: u32, _msg_type: MsgType) {
        // SAFETY: per the trait's contract `buf` holds a whole message.
        unsafe {
            let header = sys::nftnl_nlmsg_build_hdr(
                buf.cast(),
                libc::NFT_MSG_NEWTABLE as u16,
                libc::NFPROTO_IPV6 as u16,
                libc::NLM_F_ACK as u16,
                seq,
            );
            sys::nftnl_table_nlmsg_build_payload(header, self.0.as_ptr());
        }
    }
}

impl Drop for CommentedTable {
    fn drop(&mut self) {
        // SAFETY: allocated in `new`, freed once.
        unsafe { sys::nftnl_table_free(self.0.as_ptr()) }
    }
}

/// Hook, chain type and priority, as nft's `priority filter` (0; -200 in family bridge),
/// `mangle` (-150), `dstnat` (-100) and `srcnat` (100).
fn hook_parts(hook: Hook) -> (nftnl::Hook, nftnl::ChainType, i32) {
    match hook {
        Hook::ForwardFilter => (nftnl::Hook::Forward, nftnl::ChainType::Filter, 0),
        Hook::InputFilter => (nftnl::Hook::In, nftnl::ChainType::Filter, 0),
        Hook::ForwardFilterEarly => (nftnl::Hook::Forward, nftnl::ChainType::Filter, -10),
        Hook::PreroutingFilter => (nftnl::Hook::PreRouting, nftnl::ChainType::Filter, -150),
        Hook::PreroutingNat => (nftnl::Hook::PreRouting, nftnl::ChainType::Nat, -100),
        Hook::OutputNat => (nftnl::Hook::Out, nftnl::ChainType::Nat, -100),
        Hook::PostroutingNat => (nftnl::Hook::PostRouting, nftnl::ChainType::Nat, 100),
        Hook::BridgePrerouting => (nftnl::Hook::PreRouting, nftnl::ChainType::Filter, -200),
    }
}

/// What a rule needs to know about a set it looks up.
pub(super) struct SetRef<'a> {
    name: &'a str,
    /// The set's id within this batch (a lookup may name a set created in the same batch).
    id: u32,
    interval: bool,
}

fn build_set<'a>(
    set: &NamedSet,
    id: u32,
    table: &'a Table,
) -> Result<Set<'a, ConcatKey>, NftError> {
    let name = c_string(&set.name)?;
    let nft_set = Set::<ConcatKey>::new_named(&name, id, table, ProtoFamily::Ipv6);
    let raw = nft_set.as_ptr().as_ptr();
    // An interval concatenation (nft's pipapo sets) is flagged as such, with each field's
    // length, as nft describes it.
    const NFT_SET_CONCAT: u32 = 0x80;
    let mut flags = 0;
    if set.interval {
        flags |= libc::NFT_SET_INTERVAL as u32 | NFT_SET_CONCAT;
    }
    if set.is_map() {
        flags |= libc::NFT_SET_MAP as u32;
    }
    let field_lengths: Vec<u8> = set.key.iter().map(|f| field_len(*f) as u8).collect();
    // SAFETY: `raw` is the live nftnl_set owned by `nft_set`; the attributes are ones libnftnl
    // defines for sets, and it copies the data.
    unsafe {
        sys::nftnl_set_set_u32(raw, sys::NFTNL_SET_KEY_TYPE as u16, concat_type(&set.key));
        sys::nftnl_set_set_u32(raw, sys::NFTNL_SET_KEY_LEN as u16, concat_len(&set.key));
        if flags != 0 {
            sys::nftnl_set_set_u32(raw, sys::NFTNL_SET_FLAGS as u16, flags);
        }
        // The capacity picks the kernel's fixed-size hash, which loads much faster than
        // the resizable one it picks without (see `NamedSet::capacity`).
        if let Some(capacity) = set.capacity() {
            sys::nftnl_set_set_u32(raw, sys::NFTNL_SET_DESC_SIZE as u16, capacity);
        }
        if set.interval {
            sys::nftnl_set_set_data(
                raw,
                sys::NFTNL_SET_DESC_CONCAT as u16,
                field_lengths.as_ptr() as *const c_void,
                field_lengths.len() as u32,
            );
        }
        if set.is_map() {
            sys::nftnl_set_set_u32(
                raw,
                sys::NFTNL_SET_DATA_TYPE as u16,
                concat_type(&set.value),
            );
            sys::nftnl_set_set_u32(raw, sys::NFTNL_SET_DATA_LEN as u16, concat_len(&set.value));
        }
    }
    attach_elements(
        &nft_set,
        set.interval,
        set.elements
            .iter()
            .map(|(key, value)| (key, Some(value).filter(|v| !v.is_empty()))),
    );
    Ok(nft_set)
}

/// Put elements (key, and value for maps) into an nftnl set object, as nft encodes them: an
/// interval set's elements carry their range's end too. Shared with `incremental`, whose
/// element deltas must be encoded exactly like a full apply's.
pub(in crate::nft) fn attach_elements<'e, K>(
    set: &Set<'_, K>,
    interval: bool,
    elements: impl Iterator<Item = (&'e Vec<Field>, Option<&'e Vec<Field>>)>,
) {
    let raw = set.as_ptr().as_ptr();
    for (key, value) in elements {
        // SAFETY: `raw` is the live set owned by `set`; the element is allocated here and
        // handed to the set, which frees it; libnftnl copies the attribute bytes.
        unsafe {
            let elem = sys::nftnl_set_elem_alloc();
            if elem.is_null() {
                std::process::abort();
            }
            let put = |attribute: u32, bytes: &Concat| {
                let bytes = bytes.as_bytes();
                sys::nftnl_set_elem_set(
                    elem,
                    attribute as u16,
                    bytes.as_ptr() as *const c_void,
                    bytes.len() as u32,
                );
            };
            put(sys::NFTNL_SET_ELEM_KEY, &Concat::new(key, Bound::Start));
            if interval {
                put(sys::NFTNL_SET_ELEM_KEY_END, &Concat::new(key, Bound::End));
            }
            if let Some(value) = value {
                put(sys::NFTNL_SET_ELEM_DATA, &Concat::new(value, Bound::Start));
            }
            sys::nftnl_set_elem_add(raw, elem);
        }
    }
}
