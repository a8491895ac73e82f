//! nftables: the two backends of one Ruleset (text for the dry run, netlink for apply) and
//! the few read-only kernel queries v6guard needs (which tables exist, what a table holds).
//!
//! - `render`: Ruleset -> nft text (the dry run); `write`: Ruleset -> netlink batch, sent;
//!   `incremental`: element deltas, sent as one strict batch;
//! - `read`: what the kernel holds (tables, chains, rules, elements), parsed from dumps;
//! - `verify`: the kernel's table compared with the plan (uses `read`, and `write` in a
//!   private namespace for the reference rules);
//! - `layout`: the byte layout of concatenations, shared by all of them.
//!
//! Dependencies run one way: `verify` -> `read`, `write`; `incremental` ->
//! `read`, `write`; `read` and `write` -> `layout`; this module's `apply` and `cleanup` ->
//! `read`, `write`.

pub mod incremental;
mod layout;
pub mod read;
pub mod render;
pub mod verify;
pub mod write;

pub use read::{ChainId, TableId, list_chains, list_tables};

use std::io;

use crate::ruleset::{Ruleset, TABLE_PREFIX};

/// What went wrong talking to nf_tables, with what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum NftError {
    #[error("cannot open a netfilter netlink socket: {0}. {hint}", hint = socket_hint(.0))]
    Socket(#[source] io::Error),
    #[error("cannot send the ruleset to the kernel: {0}")]
    Send(#[source] io::Error),
    #[error("no answer from the kernel: {0}")]
    Receive(#[source] io::Error),
    #[error("the kernel rejected the ruleset: {0}. {hint}", hint = rejected_hint(.0))]
    Rejected(#[source] io::Error),
    #[error("`{0}` cannot be used as an nftables name (too long, or contains a NUL byte)")]
    Name(String),
    #[error(
        "the ruleset cannot be expressed in nftables: {0}; please report it with `v6guard snapshot`"
    )]
    Unexpressible(String),
}

/// A C string for libnftnl, or the error naming the offending text.
fn c_string(text: &str) -> Result<std::ffi::CString, NftError> {
    std::ffi::CString::new(text).map_err(|_| NftError::Name(text.to_string()))
}

/// nftnl's `Set` wants a compile-time key type; v6guard's keys are concatenations chosen at
/// run time, so sets are created with this placeholder and their key attributes set after
/// (element messages carry only the set's name and raw bytes).
struct ConcatKey;

impl nftnl::set::SetKey for ConcatKey {
    const TYPE: u32 = 0;
    const LEN: u32 = 0;

    fn data(&self) -> Box<[u8]> {
        Box::new([])
    }
}

fn socket_hint(error: &io::Error) -> &'static str {
    match error.raw_os_error() {
        Some(libc::EPERM) | Some(libc::EACCES) => {
            "Run v6guard as root (it needs CAP_NET_ADMIN to change nftables)"
        }
        Some(libc::EPROTONOSUPPORT) | Some(libc::EAFNOSUPPORT) => {
            "This kernel has no nf_tables support; load it with `modprobe nf_tables`"
        }
        _ => "",
    }
}

fn rejected_hint(error: &io::Error) -> &'static str {
    match error.raw_os_error() {
        Some(libc::EPERM) => "Run v6guard as root (it needs CAP_NET_ADMIN to change nftables)",
        Some(libc::ENOENT) | Some(libc::EOPNOTSUPP) => {
            "The kernel lacks an nftables module v6guard needs (nf_tables, nft_ct, nft_chain_filter)"
        }
        Some(libc::ENOBUFS) => "The ruleset is too large for one netlink batch; please report it",
        _ => "Nothing was changed (the transaction is atomic)",
    }
}

/// Replace v6guard's table with `ruleset` in one transaction.
pub fn apply(ruleset: &Ruleset) -> Result<(), NftError> {
    let batch = write::build_batch(ruleset)?;
    write::send_batch(&batch)
}

/// Remove every table v6guard owns (family ip6 or bridge, name starting with `v6guard`), in
/// one transaction. Tables of other owners are never touched. Returns the tables removed, as
/// `FAMILY NAME`.
pub fn cleanup() -> Result<Vec<String>, NftError> {
    let ours: Vec<(nftnl::ProtoFamily, &str, String)> = list_tables()?
        .into_iter()
        .filter(|t| t.name.starts_with(TABLE_PREFIX))
        .filter_map(|t| {
            let (family, word) = match t.family as i32 {
                libc::NFPROTO_IPV6 => (nftnl::ProtoFamily::Ipv6, "ip6"),
                libc::NFPROTO_BRIDGE => (nftnl::ProtoFamily::Bridge, "bridge"),
                _ => return None,
            };
            Some((family, word, t.name))
        })
        .collect();
    if ours.is_empty() {
        return Ok(Vec::new());
    }
    let mut batch = nftnl::Batch::new();
    let tables: Vec<nftnl::Table> = ours
        .iter()
        .map(|(family, _, name)| {
            let name = c_string(name)?;
            Ok(nftnl::Table::new(&name, *family))
        })
        .collect::<Result<_, NftError>>()?;
    for table in &tables {
        batch.add(table, nftnl::MsgType::Del);
    }
    write::send_batch(&batch.finalize())?;
    Ok(ours
        .into_iter()
        .map(|(_, word, name)| format!("{word} {name}"))
        .collect())
}
