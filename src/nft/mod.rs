//! nftables: the two backends of one Ruleset (text for the dry run, netlink for apply) and
//! the few read-only kernel queries v6guard needs (which tables exist).

pub mod netlink;
pub mod render;

use std::ffi::CStr;
use std::io;

use nftnl::nftnl_sys as sys;

use crate::ruleset::{Ruleset, TABLE_NAME, TABLE_PREFIX};

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
    let batch = netlink::build_batch(ruleset)?;
    netlink::send_batch(&batch)
}

/// Remove every table v6guard owns (family ip6, name starting with `v6guard`), in one
/// transaction. Tables of other owners are never touched. Returns the names removed.
pub fn cleanup() -> Result<Vec<String>, NftError> {
    let ours: Vec<String> = list_tables()?
        .into_iter()
        .filter(|t| t.family == libc::NFPROTO_IPV6 as u32 && t.name.starts_with(TABLE_PREFIX))
        .map(|t| t.name)
        .collect();
    if ours.is_empty() {
        return Ok(ours);
    }
    let mut batch = nftnl::Batch::new();
    let tables: Vec<nftnl::Table> = ours
        .iter()
        .map(|name| {
            let name =
                std::ffi::CString::new(name.as_str()).map_err(|_| NftError::Name(name.clone()))?;
            Ok(nftnl::Table::new(&name, nftnl::ProtoFamily::Ipv6))
        })
        .collect::<Result<_, NftError>>()?;
    for table in &tables {
        batch.add(table, nftnl::MsgType::Del);
    }
    netlink::send_batch(&batch.finalize())?;
    Ok(ours)
}

/// Whether v6guard's main table is present in the kernel.
pub fn table_installed() -> Result<bool, NftError> {
    Ok(list_tables()?
        .iter()
        .any(|t| t.family == libc::NFPROTO_IPV6 as u32 && t.name == TABLE_NAME))
}

/// One nftables table as the kernel lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableId {
    pub family: u32,
    pub name: String,
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
            });
        }
        sys::nftnl_table_free(table);
    }
    mnl::mnl_sys::MNL_CB_OK
}
