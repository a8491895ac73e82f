//! Ruleset -> one netlink batch (nftnl + mnl): `apply`.
//!
//! Every expression is emitted the way `nft` itself compiles the matching text in
//! `render.rs` (same registers, same data lengths), so the kernel holds the same objects
//! whichever way the ruleset was loaded. nftnl's typed expressions always use register 1 and
//! lack fib, maps and NAT from registers, so matches are built from one small raw-expression
//! type ([`RawExpr`]) over nftnl-sys; only verdicts, counters and masquerade use nftnl's own.
//!
//! The batch replaces v6guard's tables atomically: for each (ip6, then bridge), add table (so
//! the delete cannot fail), delete table, add table, then its sets, chains and rules.

use std::ffi::{CStr, CString, c_void};
use std::ptr::NonNull;

use ipnet::Ipv6Net;
use nftnl::expr::{Expression, Masquerade};
use nftnl::set::Set;
use nftnl::{Batch, FinalizedBatch, MsgType, ProtoFamily, Table, nft_expr, nftnl_sys as sys};

use super::layout::{Bound, concat_bytes, concat_len, concat_type, field_len, registers};
use super::{ConcatKey, NftError, c_string};
use crate::ruleset::{
    Action, Field, FieldType, Hook, Icmpv6Type, InterfaceName, Match, NamedSet, PacketField, Rule,
    Ruleset,
};

/// Kernel interface names are at most 15 bytes plus NUL; nft compares all 16.
const IFNAMSIZ: usize = 16;

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
enum Family {
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
        Hook::ForwardFilterEarly => (nftnl::Hook::Forward, nftnl::ChainType::Filter, -10),
        Hook::InputFilter => (nftnl::Hook::In, nftnl::ChainType::Filter, 0),
        Hook::PreroutingFilter => (nftnl::Hook::PreRouting, nftnl::ChainType::Filter, -150),
        Hook::PreroutingNat => (nftnl::Hook::PreRouting, nftnl::ChainType::Nat, -100),
        Hook::OutputNat => (nftnl::Hook::Out, nftnl::ChainType::Nat, -100),
        Hook::PostroutingNat => (nftnl::Hook::PostRouting, nftnl::ChainType::Nat, 100),
        Hook::BridgePrerouting => (nftnl::Hook::PreRouting, nftnl::ChainType::Filter, -200),
    }
}

/// Send a finalized batch on a socket of its own and wait for the kernel's verdict on every
/// message (`apply`, `cleanup`: one transaction, then the process ends).
pub fn send_batch(batch: &FinalizedBatch) -> Result<(), NftError> {
    Session::open()?.send(batch)
}

/// A netfilter netlink socket kept open for many transactions (the daemon's).
///
/// Why keep it: after a transaction that deleted anything (set elements, a replaced table),
/// the kernel frees the old objects in the background once an RCU grace period has passed,
/// 10-20 ms on the project's machine. Closing a netfilter socket waits for that work, so a
/// socket per transaction makes every removal look 10-20 ms slow although the kernel acked the
/// new rules in well under a millisecond. A kept socket never waits for it.
pub struct Session {
    socket: mnl::Socket,
    /// The largest batch sent so far, in bytes: the send buffer fits it.
    largest_batch: usize,
    /// The most messages in one batch so far: the receive buffer holds their acks.
    most_messages: usize,
    /// Holds acknowledgements, reused between transactions.
    buffer: Vec<u8>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("portid", &self.socket.portid())
            .field("largest_batch", &self.largest_batch)
            .field("most_messages", &self.most_messages)
            .finish()
    }
}

impl Session {
    /// Open a socket in the current network namespace.
    pub fn open() -> Result<Session, NftError> {
        let socket = mnl::Socket::new(mnl::Bus::Netfilter).map_err(NftError::Socket)?;
        cap_acks(&socket).map_err(NftError::Socket)?;
        Ok(Session {
            socket,
            largest_batch: 0,
            most_messages: 0,
            buffer: vec![0u8; nftnl::nft_nlmsg_maxsize() as usize],
        })
    }

    /// Send a finalized batch and wait for the kernel's verdict on every message. After an
    /// error, acknowledgements of the failed batch may still be queued: drop the session.
    pub fn send(&mut self, batch: &FinalizedBatch) -> Result<(), NftError> {
        // The kernel only accepts a batch that arrives in one message, begin to end: nftnl
        // splits large batches into pages, so join them and send once (as `nft` does).
        let bytes: Vec<u8> = batch.iter().flatten().copied().collect();
        if bytes.len() > self.largest_batch {
            grow_buffer(
                &self.socket,
                libc::SO_SNDBUFFORCE,
                bytes.len().saturating_mul(2),
            )
            .map_err(NftError::Socket)?;
            self.largest_batch = bytes.len();
        }
        let messages = batch.sequence_numbers().len();
        if messages > self.most_messages {
            grow_buffer(
                &self.socket,
                libc::SO_RCVBUFFORCE,
                messages
                    .saturating_mul(ACK_BUFFER_SHARE)
                    .max(DEFAULT_RCVBUF),
            )
            .map_err(NftError::Socket)?;
            self.most_messages = messages;
        }
        let portid = self.socket.portid();
        let sent = self.socket.send(&bytes).map_err(NftError::Send)?;
        if sent < bytes.len() {
            return Err(NftError::Send(std::io::Error::other(
                "netlink sent a partial batch",
            )));
        }

        let mut expected = batch.sequence_numbers();
        while !expected.is_empty() {
            let messages = self
                .socket
                .recv(&mut self.buffer)
                .map_err(NftError::Receive)?;
            for message in messages {
                let message = message.map_err(NftError::Receive)?;
                let seq = expected.next().unwrap_or(0);
                mnl::cb_run(message, seq, portid).map_err(NftError::Rejected)?;
            }
        }
        Ok(())
    }
}

/// Ask the kernel not to echo each request inside its acknowledgement. Without this, a
/// batch of large set-element messages (10,000 elements is about 7 messages of 64 KiB) is
/// answered with as many 64 KiB acks, overflowing the socket's receive buffer (ENOBUFS).
fn cap_acks(socket: &mnl::Socket) -> std::io::Result<()> {
    const NETLINK_CAP_ACK: libc::c_int = 10;
    // SAFETY: the socket is open; the option value is a c_int that outlives the call.
    let result = unsafe {
        mnl::mnl_sys::mnl_socket_setsockopt(
            socket.as_raw_socket(),
            NETLINK_CAP_ACK,
            &1 as *const libc::c_int as *mut libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if result < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// The kernel answers every message of a batch at once, after the commit, and each
/// acknowledgement occupies some 800-900 bytes of the receive buffer (measured: with the
/// default 208 KiB, acks were lost between 60 networks, 204 rules, and 80 networks, 264
/// rules). Room for 2 KiB each.
const ACK_BUFFER_SHARE: usize = 2048;
/// Linux's default socket buffer (`net.core.rmem_default`); never asked to shrink below it.
const DEFAULT_RCVBUF: usize = 212_992;

/// Grow a socket buffer (`SO_SNDBUFFORCE` or `SO_RCVBUFFORCE`, which need CAP_NET_ADMIN, as
/// `nft` does) to `bytes`. A netlink message larger than the send buffer is refused
/// (EMSGSIZE; the default holds roughly 5,000 set elements), and acknowledgements that
/// overflow the receive buffer are lost (ENOBUFS) although the transaction was committed.
fn grow_buffer(socket: &mnl::Socket, option: libc::c_int, bytes: usize) -> std::io::Result<()> {
    let wanted = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    // SAFETY: the fd belongs to the open socket; the option value outlives the call.
    let result = unsafe {
        let fd = mnl::mnl_sys::mnl_socket_get_fd(socket.as_raw_socket());
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            option,
            &wanted as *const libc::c_int as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if result < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// What a rule needs to know about a set it looks up.
struct SetRef<'a> {
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
pub(super) fn attach_elements<'e, K>(
    set: &Set<'_, K>,
    interval: bool,
    elements: impl Iterator<Item = (&'e Vec<Field>, Option<&'e Vec<Field>>)>,
) {
    let raw = set.as_ptr().as_ptr();
    for (key, value) in elements {
        let mut attributes = vec![(sys::NFTNL_SET_ELEM_KEY, concat_bytes(key, Bound::Start))];
        if interval {
            attributes.push((sys::NFTNL_SET_ELEM_KEY_END, concat_bytes(key, Bound::End)));
        }
        if let Some(value) = value {
            attributes.push((sys::NFTNL_SET_ELEM_DATA, concat_bytes(value, Bound::Start)));
        }
        // SAFETY: `raw` is the live set owned by `set`; the element is allocated here and
        // handed to the set, which frees it; libnftnl copies the attribute bytes.
        unsafe {
            let elem = sys::nftnl_set_elem_alloc();
            if elem.is_null() {
                std::process::abort();
            }
            for (attribute, bytes) in &attributes {
                sys::nftnl_set_elem_set(
                    elem,
                    *attribute as u16,
                    bytes.as_ptr() as *const c_void,
                    bytes.len() as u32,
                );
            }
            sys::nftnl_set_elem_add(raw, elem);
        }
    }
}

fn build_rule<'a>(
    rule: &Rule,
    chain: &'a nftnl::Chain<'a>,
    sets: &[SetRef<'_>],
    family: Family,
) -> Result<nftnl::Rule<'a>, NftError> {
    let mut nft_rule = nftnl::Rule::new(chain);
    for m in &rule.matches {
        for expr in match_exprs(m, sets, family)? {
            nft_rule.add_expr(&expr);
        }
    }
    if rule.counter {
        nft_rule.add_expr(&nft_expr!(counter));
    }
    add_action(&mut nft_rule, &rule.action, sets)?;
    if let Some(comment) = &rule.comment {
        nft_rule
            .set_comment(c_string(comment)?)
            .map_err(|_| NftError::Unexpressible(format!("comment `{comment}` is too long")))?;
    }
    Ok(nft_rule)
}

fn add_action(
    rule: &mut nftnl::Rule<'_>,
    action: &Action,
    sets: &[SetRef<'_>],
) -> Result<(), NftError> {
    use nftnl::expr::Verdict;
    match action {
        Action::Accept => rule.add_expr(&Verdict::Accept),
        Action::Drop => rule.add_expr(&Verdict::Drop),
        Action::Return => rule.add_expr(&Verdict::Return),
        Action::Jump(target) => rule.add_expr(&Verdict::Jump {
            chain: c_string(target)?,
        }),
        Action::Masquerade => rule.add_expr(&Masquerade),
        Action::Snat(address) => {
            rule.add_expr(&RawExpr::immediate(
                libc::NFT_REG_1 as u32,
                &address.octets(),
            ));
            rule.add_expr(&RawExpr::nat(
                libc::NFT_NAT_SNAT as u32,
                libc::NFT_REG_1 as u32,
                None,
            ));
        }
        Action::DnatMap { fields, map } => {
            for expr in lookup_exprs(fields, map, sets, Some(libc::NFT_REG_1 as u32))? {
                rule.add_expr(&expr);
            }
            // The map's value is address . port: the address lands in register 1, the port
            // in the next slot (register 2), as nft lays it out.
            let value = registers(&[FieldType::Address, FieldType::Port]);
            rule.add_expr(&RawExpr::nat(
                libc::NFT_NAT_DNAT as u32,
                value[0],
                Some(value[1]),
            ));
        }
    }
    Ok(())
}

fn match_exprs(m: &Match, sets: &[SetRef<'_>], family: Family) -> Result<Vec<RawExpr>, NftError> {
    let reg1 = libc::NFT_REG_1 as u32;
    // In a bridge table nft puts an `ether type ip6` dependency before any IPv6 header match;
    // only `icmpv6 type` is built with it here, so refuse the rest rather than install rules
    // `render` would print differently.
    let ip6_header = matches!(
        m,
        Match::HopLimit(_)
            | Match::SourceIn(_)
            | Match::DestinationNot(_)
            | Match::DestinationLocal
            | Match::Lookup { .. }
    );
    if family == Family::Bridge && ip6_header {
        return Err(NftError::Unexpressible(format!(
            "{m:?} in a bridge table (only interface, ether type and icmpv6 type matches are built there)"
        )));
    }
    Ok(match m {
        Match::InInterface(name) => vec![
            RawExpr::meta(libc::NFT_META_IIFNAME as u32, reg1),
            interface_cmp(libc::NFT_CMP_EQ as u32, name)?,
        ],
        Match::OutInterface(name) => vec![
            RawExpr::meta(libc::NFT_META_OIFNAME as u32, reg1),
            interface_cmp(libc::NFT_CMP_EQ as u32, name)?,
        ],
        Match::OutInterfaceNot(name) => vec![
            RawExpr::meta(libc::NFT_META_OIFNAME as u32, reg1),
            interface_cmp(libc::NFT_CMP_NEQ as u32, name)?,
        ],
        Match::InInterfaceNot(name) => vec![
            RawExpr::meta(libc::NFT_META_IIFNAME as u32, reg1),
            interface_cmp(libc::NFT_CMP_NEQ as u32, name)?,
        ],
        Match::HopLimit(limit) => vec![
            RawExpr::payload(
                libc::NFT_PAYLOAD_NETWORK_HEADER as u32,
                IPV6_HOPLIMIT_OFFSET,
                1,
                reg1,
            ),
            RawExpr::cmp(libc::NFT_CMP_EQ as u32, &[*limit]),
        ],
        Match::EtherType(ether_type) => ether_type_exprs(ether_type.number()),
        Match::EstablishedOrRelated => {
            let states = nftnl::expr::ct::States::ESTABLISHED | nftnl::expr::ct::States::RELATED;
            ct_bits(libc::NFT_CT_STATE as u32, states.bits())
        }
        Match::Dnatted => ct_bits(
            libc::NFT_CT_STATUS as u32,
            nftnl::expr::ct::ConntrackStatus::DST_NAT.bits(),
        ),
        Match::Icmpv6Type(t) => {
            // In a bridge table nft first checks that the frame carries IPv6 at all.
            let mut exprs = match family {
                Family::Ip6 => Vec::new(),
                Family::Bridge => ether_type_exprs(ETH_P_IPV6),
            };
            exprs.extend(icmpv6_type(*t));
            exprs
        }
        Match::SourceIn(net) => source_prefix(net)?,
        Match::DestinationNot(address) => vec![
            RawExpr::payload(
                libc::NFT_PAYLOAD_NETWORK_HEADER as u32,
                IPV6_DADDR_OFFSET,
                16,
                reg1,
            ),
            RawExpr::cmp(libc::NFT_CMP_NEQ as u32, &address.octets()),
        ],
        Match::DestinationLocal => vec![
            RawExpr::fib_daddr_type(reg1),
            RawExpr::cmp(libc::NFT_CMP_EQ as u32, &RTN_LOCAL.to_ne_bytes()),
        ],
        Match::Lookup { fields, set } => lookup_exprs(fields, set, sets, None)?,
    })
}

const IPV6_HOPLIMIT_OFFSET: u32 = 7;
const IPV6_SADDR_OFFSET: u32 = 8;
/// `ether type`: two bytes at offset 12 of the link-layer header (with a VLAN tag the kernel
/// keeps aside, nft reads the tag's EtherType there, as on the wire).
const ETHER_TYPE_OFFSET: u32 = 12;
const ETH_P_IPV6: u16 = 0x86dd;
const IPV6_DADDR_OFFSET: u32 = 24;
const TH_DPORT_OFFSET: u32 = 2;
/// The route type of an address assigned to this host.
const RTN_LOCAL: u32 = 2;

/// `iifname "docker0"` compares all 16 bytes (name NUL-padded); `iifname "br-*"` compares
/// only the prefix bytes.
fn interface_cmp(op: u32, name: &InterfaceName) -> Result<RawExpr, NftError> {
    let (text, exact) = match name {
        InterfaceName::Exact(n) => (n, true),
        InterfaceName::Prefix(p) => (p, false),
    };
    if text.len() >= IFNAMSIZ || text.contains('\0') {
        return Err(NftError::Name(text.clone()));
    }
    let mut data = [0u8; IFNAMSIZ];
    data[..text.len()].copy_from_slice(text.as_bytes());
    let len = if exact { IFNAMSIZ } else { text.len() };
    Ok(RawExpr::cmp(op, &data[..len]))
}

/// `ether type T`: the link-layer header's EtherType, in network byte order.
fn ether_type_exprs(number: u16) -> Vec<RawExpr> {
    vec![
        RawExpr::payload(
            libc::NFT_PAYLOAD_LL_HEADER as u32,
            ETHER_TYPE_OFFSET,
            2,
            libc::NFT_REG_1 as u32,
        ),
        RawExpr::cmp(libc::NFT_CMP_EQ as u32, &number.to_be_bytes()),
    ]
}

/// `ct state ...` / `ct status ...`: load, mask the bits, compare with zero.
fn ct_bits(key: u32, bits: u32) -> Vec<RawExpr> {
    let reg1 = libc::NFT_REG_1 as u32;
    vec![
        RawExpr::ct(key, reg1),
        RawExpr::bitwise(&bits.to_ne_bytes(), &0u32.to_ne_bytes()),
        RawExpr::cmp(libc::NFT_CMP_NEQ as u32, &0u32.to_ne_bytes()),
    ]
}

/// `icmpv6 type T`: nft adds the implicit `meta l4proto ipv6-icmp` dependency.
fn icmpv6_type(t: Icmpv6Type) -> Vec<RawExpr> {
    let reg1 = libc::NFT_REG_1 as u32;
    vec![
        RawExpr::meta(libc::NFT_META_L4PROTO as u32, reg1),
        RawExpr::cmp(libc::NFT_CMP_EQ as u32, &[libc::IPPROTO_ICMPV6 as u8]),
        RawExpr::payload(libc::NFT_PAYLOAD_TRANSPORT_HEADER as u32, 0, 1, reg1),
        RawExpr::cmp(libc::NFT_CMP_EQ as u32, &[t.number()]),
    ]
}

/// `ip6 saddr PREFIX`, compiled as nft does: a byte-aligned prefix loads and compares just
/// its bytes; any other loads the whole address and masks it.
fn source_prefix(net: &Ipv6Net) -> Result<Vec<RawExpr>, NftError> {
    let net = net.trunc();
    let len = net.prefix_len();
    let octets = net.addr().octets();
    let reg1 = libc::NFT_REG_1 as u32;
    let network = libc::NFT_PAYLOAD_NETWORK_HEADER as u32;
    let eq = libc::NFT_CMP_EQ as u32;
    if len == 0 {
        return Err(NftError::Unexpressible(format!(
            "prefix {net} matches everything"
        )));
    }
    if len % 8 == 0 {
        let bytes = usize::from(len / 8);
        return Ok(vec![
            RawExpr::payload(network, IPV6_SADDR_OFFSET, bytes as u32, reg1),
            RawExpr::cmp(eq, &octets[..bytes]),
        ]);
    }
    Ok(vec![
        RawExpr::payload(network, IPV6_SADDR_OFFSET, 16, reg1),
        RawExpr::bitwise(&net.netmask().octets(), &[0u8; 16]),
        RawExpr::cmp(eq, &octets),
    ])
}

/// Load each packet field into nft's register for its place in the concatenation, then look
/// the concatenation up in `set` (writing the map's value to `dreg` for maps).
fn lookup_exprs(
    fields: &[PacketField],
    set: &str,
    sets: &[SetRef<'_>],
    dreg: Option<u32>,
) -> Result<Vec<RawExpr>, NftError> {
    let target = sets.iter().find(|s| s.name == set).ok_or_else(|| {
        NftError::Unexpressible(format!(
            "a rule looks up set `{set}`, which the ruleset lacks"
        ))
    })?;
    let types: Vec<FieldType> = fields.iter().map(|f| f.field_type()).collect();
    let mut exprs = Vec::new();
    for (field, register) in fields.iter().zip(registers(&types)) {
        exprs.push(load_field(*field, register));
        // Interval sets compare keys as big-endian numbers; `meta l4proto` is loaded in host
        // order, so nft converts it in place.
        if target.interval && *field == PacketField::Protocol {
            exprs.push(RawExpr::hton(register, 2, 1));
        }
    }
    exprs.push(RawExpr::lookup(
        c_string(set)?,
        target.id,
        libc::NFT_REG_1 as u32,
        dreg,
    ));
    Ok(exprs)
}

fn load_field(field: PacketField, register: u32) -> RawExpr {
    let network = libc::NFT_PAYLOAD_NETWORK_HEADER as u32;
    match field {
        PacketField::SourceAddress => RawExpr::payload(network, IPV6_SADDR_OFFSET, 16, register),
        PacketField::DestinationAddress => {
            RawExpr::payload(network, IPV6_DADDR_OFFSET, 16, register)
        }
        PacketField::Protocol => RawExpr::meta(libc::NFT_META_L4PROTO as u32, register),
        PacketField::DestinationPort => RawExpr::payload(
            libc::NFT_PAYLOAD_TRANSPORT_HEADER as u32,
            TH_DPORT_OFFSET,
            2,
            register,
        ),
    }
}

/// One nftables expression as libnftnl attributes: its kind plus u32, string and byte
/// attributes. Enough to express every match v6guard uses with exactly nft's registers.
struct RawExpr {
    kind: &'static CStr,
    numbers: Vec<(u32, u32)>,
    strings: Vec<(u32, CString)>,
    bytes: Vec<(u32, Vec<u8>)>,
}

impl RawExpr {
    fn new(kind: &'static CStr) -> Self {
        RawExpr {
            kind,
            numbers: Vec::new(),
            strings: Vec::new(),
            bytes: Vec::new(),
        }
    }

    fn number(mut self, attr: u32, value: u32) -> Self {
        self.numbers.push((attr, value));
        self
    }

    fn data(mut self, attr: u32, value: &[u8]) -> Self {
        self.bytes.push((attr, value.to_vec()));
        self
    }

    fn meta(key: u32, dreg: u32) -> Self {
        RawExpr::new(c"meta")
            .number(sys::NFTNL_EXPR_META_KEY, key)
            .number(sys::NFTNL_EXPR_META_DREG, dreg)
    }

    fn ct(key: u32, dreg: u32) -> Self {
        RawExpr::new(c"ct")
            .number(sys::NFTNL_EXPR_CT_KEY, key)
            .number(sys::NFTNL_EXPR_CT_DREG, dreg)
    }

    fn payload(base: u32, offset: u32, len: u32, dreg: u32) -> Self {
        RawExpr::new(c"payload")
            .number(sys::NFTNL_EXPR_PAYLOAD_BASE, base)
            .number(sys::NFTNL_EXPR_PAYLOAD_OFFSET, offset)
            .number(sys::NFTNL_EXPR_PAYLOAD_LEN, len)
            .number(sys::NFTNL_EXPR_PAYLOAD_DREG, dreg)
    }

    /// Compare register 1 with `data`.
    fn cmp(op: u32, data: &[u8]) -> Self {
        RawExpr::new(c"cmp")
            .number(sys::NFTNL_EXPR_CMP_SREG, libc::NFT_REG_1 as u32)
            .number(sys::NFTNL_EXPR_CMP_OP, op)
            .data(sys::NFTNL_EXPR_CMP_DATA, data)
    }

    /// Register 1 = (register 1 & mask) ^ xor.
    fn bitwise(mask: &[u8], xor: &[u8]) -> Self {
        let reg1 = libc::NFT_REG_1 as u32;
        RawExpr::new(c"bitwise")
            .number(sys::NFTNL_EXPR_BITWISE_SREG, reg1)
            .number(sys::NFTNL_EXPR_BITWISE_DREG, reg1)
            .number(sys::NFTNL_EXPR_BITWISE_LEN, mask.len() as u32)
            .data(sys::NFTNL_EXPR_BITWISE_MASK, mask)
            .data(sys::NFTNL_EXPR_BITWISE_XOR, xor)
    }

    /// `fib daddr type`: the route type of the destination address.
    fn fib_daddr_type(dreg: u32) -> Self {
        const NFTA_FIB_F_DADDR: u32 = 1 << 1;
        const NFT_FIB_RESULT_ADDRTYPE: u32 = 3;
        RawExpr::new(c"fib")
            .number(sys::NFTNL_EXPR_FIB_FLAGS, NFTA_FIB_F_DADDR)
            .number(sys::NFTNL_EXPR_FIB_RESULT, NFT_FIB_RESULT_ADDRTYPE)
            .number(sys::NFTNL_EXPR_FIB_DREG, dreg)
    }

    fn lookup(set: CString, set_id: u32, sreg: u32, dreg: Option<u32>) -> Self {
        let mut expr = RawExpr::new(c"lookup")
            .number(sys::NFTNL_EXPR_LOOKUP_SREG, sreg)
            .number(sys::NFTNL_EXPR_LOOKUP_SET_ID, set_id);
        if let Some(dreg) = dreg {
            expr = expr.number(sys::NFTNL_EXPR_LOOKUP_DREG, dreg);
        }
        expr.strings.push((sys::NFTNL_EXPR_LOOKUP_SET, set));
        expr
    }

    /// Convert a register to network byte order in place: `size`-byte words over `len` bytes.
    fn hton(register: u32, size: u32, len: u32) -> Self {
        RawExpr::new(c"byteorder")
            .number(sys::NFTNL_EXPR_BYTEORDER_SREG, register)
            .number(sys::NFTNL_EXPR_BYTEORDER_DREG, register)
            .number(
                sys::NFTNL_EXPR_BYTEORDER_OP,
                libc::NFT_BYTEORDER_HTON as u32,
            )
            .number(sys::NFTNL_EXPR_BYTEORDER_SIZE, size)
            .number(sys::NFTNL_EXPR_BYTEORDER_LEN, len)
    }

    fn immediate(dreg: u32, data: &[u8]) -> Self {
        RawExpr::new(c"immediate")
            .number(sys::NFTNL_EXPR_IMM_DREG, dreg)
            .data(sys::NFTNL_EXPR_IMM_DATA, data)
    }

    fn nat(nat_type: u32, address_reg: u32, port_reg: Option<u32>) -> Self {
        let mut expr = RawExpr::new(c"nat")
            .number(sys::NFTNL_EXPR_NAT_TYPE, nat_type)
            .number(sys::NFTNL_EXPR_NAT_FAMILY, libc::NFPROTO_IPV6 as u32)
            .number(sys::NFTNL_EXPR_NAT_REG_ADDR_MIN, address_reg);
        if let Some(port_reg) = port_reg {
            expr = expr.number(sys::NFTNL_EXPR_NAT_REG_PROTO_MIN, port_reg);
        }
        expr
    }
}

impl Expression for RawExpr {
    fn to_expr(&self, _rule: &nftnl::Rule) -> NonNull<sys::nftnl_expr> {
        // SAFETY: nftnl_expr_alloc returns a fresh expression or NULL; every attribute set is
        // one libnftnl defines for this expression kind, and libnftnl copies the data.
        unsafe {
            let Some(expr) = NonNull::new(sys::nftnl_expr_alloc(self.kind.as_ptr())) else {
                // Same policy as nftnl itself: out of memory is not recoverable here.
                std::process::abort();
            };
            for (attr, value) in &self.numbers {
                sys::nftnl_expr_set_u32(expr.as_ptr(), *attr as u16, *value);
            }
            for (attr, value) in &self.strings {
                sys::nftnl_expr_set_str(expr.as_ptr(), *attr as u16, value.as_ptr());
            }
            for (attr, value) in &self.bytes {
                sys::nftnl_expr_set(
                    expr.as_ptr(),
                    *attr as u16,
                    value.as_ptr() as *const c_void,
                    value.len() as u32,
                );
            }
            expr
        }
    }
}
