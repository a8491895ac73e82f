//! One rule's expressions, emitted exactly as `nft` compiles the matching text (same
//! registers, same data lengths): matches as [`RawExpr`] over nftnl-sys, verdicts, counters
//! and masquerade with nftnl's own.

use std::ffi::{CStr, CString, c_void};
use std::ptr::NonNull;

use ipnet::Ipv6Net;
use nftnl::expr::{Expression, Masquerade};
use nftnl::{nft_expr, nftnl_sys as sys};

use super::{Family, SetRef};
use crate::nft::layout::registers;
use crate::nft::{NftError, c_string};
use crate::ruleset::{Action, FieldType, Icmpv6Type, InterfaceName, Match, PacketField, Rule};

/// Kernel interface names are at most 15 bytes plus NUL; nft compares all 16.
const IFNAMSIZ: usize = 16;

pub(super) fn build_rule<'a>(
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
