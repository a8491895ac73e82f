//! Ruleset -> one netlink batch (nftnl + mnl): `apply`.
//!
//! Every expression is emitted the way `nft` itself compiles the matching text in
//! `render.rs` (same registers, same data lengths), so the kernel holds the same objects
//! whichever way the ruleset was loaded. The batch replaces v6guard's table atomically:
//! add table (so the delete cannot fail), delete table, add table, then its contents.

use std::ffi::{CStr, CString};
use std::ptr::NonNull;

use nftnl::expr::{Cmp, CmpOp, Expression, Meta, Payload, TransportHeaderField};
use nftnl::set::{Set, SetKey};
use nftnl::{Batch, FinalizedBatch, MsgType, ProtoFamily, Table, nft_expr, nftnl_sys as sys};

use super::NftError;
use crate::ruleset::{
    Hook, Icmpv6Type, InterfaceName, Match, Rule, Ruleset, Service, ServiceSet, Verdict,
};

/// Kernel interface names are at most 15 bytes plus NUL; nft compares all 16.
const IFNAMSIZ: usize = 16;

/// Build the batch that atomically replaces v6guard's table with `ruleset`.
pub fn build_batch(ruleset: &Ruleset) -> Result<FinalizedBatch, NftError> {
    let table_name = c_string(&ruleset.table)?;
    let table = Table::new(&table_name, ProtoFamily::Ipv6);
    let mut batch = Batch::new();
    batch.add(&table, MsgType::Add);
    batch.add(&table, MsgType::Del);
    batch.add(&table, MsgType::Add);

    let mut sets = Vec::new();
    for (index, set) in ruleset.sets.iter().enumerate() {
        let name = c_string(&set.name)?;
        let id = u32::try_from(index).unwrap_or(u32::MAX);
        let mut nft_set = Set::<ServiceKey>::new_named(&name, id, &table, ProtoFamily::Ipv6);
        add_elements(&mut nft_set, set);
        batch.add(&nft_set, MsgType::Add);
        batch.add_iter(nft_set.elems_iter(), MsgType::Add);
        sets.push(nft_set);
    }

    // Regular chains must exist before a rule jumps to them: add all chains first.
    let mut chains = Vec::new();
    for chain in &ruleset.chains {
        let mut nft_chain = nftnl::Chain::new(c_string(&chain.name)?, &table);
        if let Some(Hook::ForwardFilter) = chain.hook {
            nft_chain.set_hook(nftnl::Hook::Forward, 0);
            nft_chain.set_type(nftnl::ChainType::Filter);
            nft_chain.set_policy(nftnl::Policy::Accept);
        }
        batch.add(&nft_chain, MsgType::Add);
        chains.push(nft_chain);
    }
    for (chain, nft_chain) in ruleset.chains.iter().zip(&chains) {
        for rule in &chain.rules {
            let nft_rule = build_rule(rule, nft_chain, &sets)?;
            batch.add(&nft_rule, MsgType::Add);
        }
    }
    Ok(batch.finalize())
}

/// Send a finalized batch and wait for the kernel's verdict on every message.
pub fn send_batch(batch: &FinalizedBatch) -> Result<(), NftError> {
    // The kernel only accepts a batch that arrives in one message, begin to end: nftnl
    // splits large batches into pages, so join them and send once (as `nft` does).
    let bytes: Vec<u8> = batch.iter().flatten().copied().collect();
    let socket = mnl::Socket::new(mnl::Bus::Netfilter).map_err(NftError::Socket)?;
    cap_acks(&socket).map_err(NftError::Socket)?;
    grow_send_buffer(&socket, bytes.len()).map_err(NftError::Socket)?;
    let portid = socket.portid();
    let sent = socket.send(&bytes).map_err(NftError::Send)?;
    if sent < bytes.len() {
        return Err(NftError::Send(std::io::Error::other(
            "netlink sent a partial batch",
        )));
    }

    let mut buffer = vec![0u8; nftnl::nft_nlmsg_maxsize() as usize];
    let mut expected = batch.sequence_numbers();
    while !expected.is_empty() {
        let messages = socket.recv(&mut buffer).map_err(NftError::Receive)?;
        for message in messages {
            let message = message.map_err(NftError::Receive)?;
            let seq = expected.next().unwrap_or(0);
            mnl::cb_run(message, seq, portid).map_err(NftError::Rejected)?;
        }
    }
    Ok(())
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

/// A netlink message larger than the socket's send buffer is refused (EMSGSIZE); the default
/// (about 208 KiB) holds roughly 5,000 set elements. Grow it to fit the batch, as `nft` does.
fn grow_send_buffer(socket: &mnl::Socket, batch_len: usize) -> std::io::Result<()> {
    let wanted = libc::c_int::try_from(batch_len.saturating_mul(2)).unwrap_or(libc::c_int::MAX);
    // SAFETY: the fd belongs to the open socket; the option value outlives the call.
    let result = unsafe {
        let fd = mnl::mnl_sys::mnl_socket_get_fd(socket.as_raw_socket());
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_SNDBUFFORCE,
            &wanted as *const libc::c_int as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if result < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Key of the `published` set: `ipv6_addr . inet_proto . inet_service`. Each field is padded
/// to a 4-byte register boundary, as nft lays out concatenations.
struct ServiceKey(Service);

impl SetKey for ServiceKey {
    /// nft's concatenated type id: (ipv6_addr = 8) << 12 | (inet_proto = 12) << 6 | (inet_service = 13).
    const TYPE: u32 = (8 << 12) | (12 << 6) | 13;
    const LEN: u32 = 24;

    fn data(&self) -> Box<[u8]> {
        service_key_bytes(&self.0).to_vec().into_boxed_slice()
    }
}

fn service_key_bytes(service: &Service) -> [u8; 24] {
    let mut key = [0u8; 24];
    key[..16].copy_from_slice(&service.address.octets());
    key[16] = service.protocol.number();
    key[20..22].copy_from_slice(&service.port.to_be_bytes());
    key
}

fn add_elements(nft_set: &mut Set<'_, ServiceKey>, set: &ServiceSet) {
    for service in &set.elements {
        nft_set.add(&ServiceKey(*service));
    }
}

fn build_rule<'a>(
    rule: &Rule,
    chain: &'a nftnl::Chain<'a>,
    sets: &[Set<'_, ServiceKey>],
) -> Result<nftnl::Rule<'a>, NftError> {
    let mut nft_rule = nftnl::Rule::new(chain);
    for m in &rule.matches {
        add_match(&mut nft_rule, m, sets)?;
    }
    if rule.counter {
        nft_rule.add_expr(&nft_expr!(counter));
    }
    match &rule.verdict {
        Verdict::Accept => nft_rule.add_expr(&nft_expr!(verdict accept)),
        Verdict::Drop => nft_rule.add_expr(&nft_expr!(verdict drop)),
        Verdict::Jump(target) => {
            nft_rule.add_expr(&nftnl::expr::Verdict::Jump {
                chain: c_string(target)?,
            });
        }
    }
    if let Some(comment) = &rule.comment {
        nft_rule
            .set_comment(c_string(comment)?)
            .map_err(|_| NftError::Name(comment.clone()))?;
    }
    Ok(nft_rule)
}

fn add_match(
    rule: &mut nftnl::Rule<'_>,
    m: &Match,
    sets: &[Set<'_, ServiceKey>],
) -> Result<(), NftError> {
    match m {
        Match::InInterface(name) => {
            rule.add_expr(&Meta::IifName);
            rule.add_expr(&interface_cmp(name)?);
        }
        Match::OutInterface(name) => {
            rule.add_expr(&Meta::OifName);
            rule.add_expr(&interface_cmp(name)?);
        }
        Match::EstablishedOrRelated => {
            let states = nftnl::expr::ct::States::ESTABLISHED | nftnl::expr::ct::States::RELATED;
            rule.add_expr(&nft_expr!(ct state));
            rule.add_expr(&nft_expr!(bitwise mask states.bits(), xor 0u32));
            rule.add_expr(&nft_expr!(cmp != 0u32));
        }
        Match::Icmpv6Type(t) => add_icmpv6_type(rule, *t),
        Match::DestinationServiceIn(set_name) => {
            let set = sets
                .iter()
                .find(|s| s.get_name().to_bytes() == set_name.as_bytes())
                .ok_or_else(|| NftError::Name(set_name.clone()))?;
            add_service_lookup(rule, set);
        }
    }
    Ok(())
}

/// `iifname "docker0"` compares all 16 bytes (name NUL-padded); `iifname "br-*"` compares
/// only the prefix bytes.
fn interface_cmp(name: &InterfaceName) -> Result<Cmp<PrefixBytes>, NftError> {
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
    Ok(Cmp::new(CmpOp::Eq, PrefixBytes { data, len }))
}

/// `icmpv6 type T`: nft adds the implicit `meta l4proto ipv6-icmp` dependency.
fn add_icmpv6_type(rule: &mut nftnl::Rule<'_>, t: Icmpv6Type) {
    rule.add_expr(&Meta::L4Proto);
    rule.add_expr(&nft_expr!(cmp == libc::IPPROTO_ICMPV6 as u8));
    rule.add_expr(&Payload::Transport(TransportHeaderField::Icmpv6(
        nftnl::expr::Icmpv6HeaderField::Type,
    )));
    rule.add_expr(&nft_expr!(cmp == t.number()));
}

/// `ip6 daddr . meta l4proto . th dport @set`, with nft's register layout: the address in
/// register 1 (16 bytes), the protocol in register 2, the port in 32-bit register 13.
fn add_service_lookup(rule: &mut nftnl::Rule<'_>, set: &Set<'_, ServiceKey>) {
    const IPV6_DADDR_OFFSET: u32 = 24;
    const TH_DPORT_OFFSET: u32 = 2;
    rule.add_expr(&RegisterLoad::payload(
        libc::NFT_PAYLOAD_NETWORK_HEADER as u32,
        IPV6_DADDR_OFFSET,
        16,
        libc::NFT_REG_1 as u32,
    ));
    rule.add_expr(&RegisterLoad::meta(
        libc::NFT_META_L4PROTO as u32,
        libc::NFT_REG_2 as u32,
    ));
    rule.add_expr(&RegisterLoad::payload(
        libc::NFT_PAYLOAD_TRANSPORT_HEADER as u32,
        TH_DPORT_OFFSET,
        2,
        libc::NFT_REG32_05 as u32,
    ));
    rule.add_expr(&nft_expr!(lookup set));
}

/// Comparison data that is the first `len` bytes of `data`.
struct PrefixBytes {
    data: [u8; IFNAMSIZ],
    len: usize,
}

impl nftnl::expr::ToSlice for PrefixBytes {
    fn to_slice(&self) -> std::borrow::Cow<'_, [u8]> {
        std::borrow::Cow::Borrowed(&self.data[..self.len])
    }
}

/// A meta or payload load into a chosen register. nftnl's own expressions always load into
/// register 1, which cannot build a concatenated set key.
enum RegisterLoad {
    Meta {
        key: u32,
        dreg: u32,
    },
    Payload {
        base: u32,
        offset: u32,
        len: u32,
        dreg: u32,
    },
}

impl RegisterLoad {
    fn meta(key: u32, dreg: u32) -> Self {
        RegisterLoad::Meta { key, dreg }
    }

    fn payload(base: u32, offset: u32, len: u32, dreg: u32) -> Self {
        RegisterLoad::Payload {
            base,
            offset,
            len,
            dreg,
        }
    }
}

impl Expression for RegisterLoad {
    fn to_expr(&self, _rule: &nftnl::Rule) -> NonNull<sys::nftnl_expr> {
        let (kind, attrs): (&CStr, Vec<(u32, u32)>) = match *self {
            RegisterLoad::Meta { key, dreg } => (
                c"meta",
                vec![
                    (sys::NFTNL_EXPR_META_KEY, key),
                    (sys::NFTNL_EXPR_META_DREG, dreg),
                ],
            ),
            RegisterLoad::Payload {
                base,
                offset,
                len,
                dreg,
            } => (
                c"payload",
                vec![
                    (sys::NFTNL_EXPR_PAYLOAD_BASE, base),
                    (sys::NFTNL_EXPR_PAYLOAD_OFFSET, offset),
                    (sys::NFTNL_EXPR_PAYLOAD_LEN, len),
                    (sys::NFTNL_EXPR_PAYLOAD_DREG, dreg),
                ],
            ),
        };
        // SAFETY: nftnl_expr_alloc returns a fresh expression or NULL; the attributes set are
        // the u32 attributes libnftnl defines for this expression kind.
        unsafe {
            let expr = sys::nftnl_expr_alloc(kind.as_ptr());
            let Some(expr) = NonNull::new(expr) else {
                // Same policy as nftnl itself: out of memory is not recoverable here.
                std::process::abort();
            };
            for (attr, value) in attrs {
                sys::nftnl_expr_set_u32(expr.as_ptr(), attr as u16, value);
            }
            expr
        }
    }
}

fn c_string(text: &str) -> Result<CString, NftError> {
    CString::new(text).map_err(|_| NftError::Name(text.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::Protocol;

    #[test]
    fn service_key_layout_matches_nft() {
        let service = Service {
            address: "fd76:6700:0:1::2".parse().unwrap(),
            protocol: Protocol::Tcp,
            port: 80,
        };
        let key = service_key_bytes(&service);
        assert_eq!(&key[..16], &service.address.octets());
        // protocol byte then 3 bytes padding; port big-endian then 2 bytes padding
        assert_eq!(&key[16..24], &[6, 0, 0, 0, 0, 80, 0, 0]);
    }
}
