//! Keeps the host's neighbour-discovery proxy entries equal to what the plan wants
//! (`Ruleset::ndp`): `proxy_ndp=1` on each interface that answers, one proxy entry per
//! container address, and removal of entries no container needs any more, on the interface and
//! inside the subnets of networks with `ndp_proxy` only. Every other entry belongs to someone
//! else and is never touched; without any `ndp_proxy` policy nothing is read or written at all.
//!
//! The entries are read and changed over rtnetlink (RTM_GETNEIGH dump, RTM_NEWNEIGH,
//! RTM_DELNEIGH, all with `NTF_PROXY`), the messages `ip -6 neigh … proxy` sends, without a
//! process per entry or parsing `ip`'s text output. Each request is acknowledged by the kernel
//! before the next one is sent, so an error names the entry it is about.

use std::collections::BTreeSet;
use std::ffi::{CStr, CString};
use std::fs;
use std::io;
use std::net::Ipv6Addr;

use netlink_packet_core::{
    NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_REPLACE, NLM_F_REQUEST, NetlinkHeader,
    NetlinkMessage, NetlinkPayload,
};
use netlink_packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage, NeighbourState,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};
use tracing::info;

use crate::ruleset::NdpProxies;

#[derive(Debug, thiserror::Error)]
pub enum NdpError {
    #[error(
        "cannot {operation}: {source}. Does the interface exist, and does v6guard run as root?"
    )]
    Netlink {
        /// What was being done, e.g. `add proxy entry 2001:db8::5 dev eth0`.
        operation: String,
        #[source]
        source: io::Error,
    },
    #[error("interface {interface} does not exist; check the `ndp_proxy` policy that names it")]
    NoInterface { interface: String },
    #[error(
        "cannot turn on net.ipv6.conf.{interface}.proxy_ndp: {source}. Does {interface} exist?"
    )]
    Sysctl {
        interface: String,
        #[source]
        source: io::Error,
    },
}

/// What a sync changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NdpChanges {
    pub added: usize,
    pub removed: usize,
}

/// Make the kernel's proxy entries match `wanted`.
pub fn sync(wanted: &NdpProxies) -> Result<NdpChanges, NdpError> {
    if wanted.entries.is_empty() && wanted.owned.is_empty() {
        return Ok(NdpChanges::default());
    }
    let mut netlink = Rtnetlink::open()?;
    let current = netlink.proxy_entries()?;
    let interfaces: BTreeSet<&str> = wanted.entries.iter().map(|(i, _)| i.as_str()).collect();
    for interface in interfaces {
        enable_proxy_ndp(interface)?;
    }
    let mut changes = NdpChanges::default();
    for (interface, address) in wanted.entries.difference(&current) {
        netlink.change(Change::Add, interface, *address)?;
        changes.added += 1;
    }
    let stale = current.iter().filter(|(interface, address)| {
        !wanted.entries.contains(&(interface.clone(), *address))
            && wanted
                .owned
                .iter()
                .any(|(owner, net)| owner == interface && net.contains(address))
    });
    for (interface, address) in stale {
        netlink.change(Change::Delete, interface, *address)?;
        changes.removed += 1;
    }
    if changes != NdpChanges::default() {
        info!(
            added = changes.added,
            removed = changes.removed,
            "NDP proxy entries updated"
        );
    }
    Ok(changes)
}

fn enable_proxy_ndp(interface: &str) -> Result<(), NdpError> {
    let path = format!("/proc/sys/net/ipv6/conf/{interface}/proxy_ndp");
    fs::write(&path, "1").map_err(|source| NdpError::Sysctl {
        interface: interface.to_string(),
        source,
    })
}

#[derive(Debug, Clone, Copy)]
enum Change {
    Add,
    Delete,
}

/// A route netlink socket for neighbour proxy requests, one request at a time.
struct Rtnetlink {
    socket: Socket,
    sequence: u32,
}

impl Rtnetlink {
    fn open() -> Result<Self, NdpError> {
        let failed = |source| NdpError::Netlink {
            operation: "open a route netlink socket".into(),
            source,
        };
        let mut socket = Socket::new(NETLINK_ROUTE).map_err(failed)?;
        socket.bind_auto().map_err(failed)?;
        socket.connect(&SocketAddr::new(0, 0)).map_err(failed)?;
        Ok(Rtnetlink {
            socket,
            sequence: 0,
        })
    }

    /// The IPv6 proxy entries the kernel holds now, as (interface, address).
    fn proxy_entries(&mut self) -> Result<BTreeSet<(String, Ipv6Addr)>, NdpError> {
        let operation = "list the IPv6 neighbour proxy entries";
        // NTF_PROXY in the dump request selects the proxy table (pneigh), not the cache.
        let request = RouteNetlinkMessage::GetNeighbour(proxy_message(0, None));
        let mut entries = BTreeSet::new();
        self.request(request, NLM_F_DUMP, operation, |message| {
            if let RouteNetlinkMessage::NewNeighbour(entry) = message {
                if let Some(parsed) = parse_entry(&entry) {
                    entries.insert(parsed);
                }
            }
        })?;
        Ok(entries)
    }

    fn change(
        &mut self,
        change: Change,
        interface: &str,
        address: Ipv6Addr,
    ) -> Result<(), NdpError> {
        let index = interface_index(interface)?;
        let message = proxy_message(index, Some(address));
        let (request, flags, verb) = match change {
            Change::Add => (
                RouteNetlinkMessage::NewNeighbour(message),
                NLM_F_CREATE | NLM_F_REPLACE,
                "add",
            ),
            Change::Delete => (RouteNetlinkMessage::DelNeighbour(message), 0, "delete"),
        };
        let operation = format!("{verb} proxy entry {address} dev {interface}");
        self.request(request, flags | NLM_F_ACK, &operation, |_| {})
    }

    /// Send one request and read its answers until the acknowledgement or the end of the
    /// dump, handing every message to `each`.
    fn request(
        &mut self,
        message: RouteNetlinkMessage,
        flags: u16,
        operation: &str,
        mut each: impl FnMut(RouteNetlinkMessage),
    ) -> Result<(), NdpError> {
        let failed = |source| NdpError::Netlink {
            operation: operation.to_string(),
            source,
        };
        self.sequence = self.sequence.wrapping_add(1);
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | flags;
        header.sequence_number = self.sequence;
        let mut request = NetlinkMessage::new(header, NetlinkPayload::from(message));
        request.finalize();
        let mut buffer = vec![0; request.buffer_len()];
        request.serialize(&mut buffer);
        self.socket.send(&buffer, 0).map_err(failed)?;
        loop {
            let (received, _) = self.socket.recv_from_full().map_err(failed)?;
            let mut offset = 0;
            while offset < received.len() {
                let reply: NetlinkMessage<RouteNetlinkMessage> =
                    NetlinkMessage::deserialize(&received[offset..]).map_err(|e| {
                        failed(io::Error::new(io::ErrorKind::InvalidData, e.to_string()))
                    })?;
                let length = reply.header.length as usize;
                if reply.header.sequence_number == self.sequence {
                    match reply.payload {
                        NetlinkPayload::Done(_) => return Ok(()),
                        NetlinkPayload::Error(error) => {
                            return match error.code {
                                None => Ok(()),
                                Some(_) => Err(failed(error.to_io())),
                            };
                        }
                        NetlinkPayload::InnerMessage(inner) => each(inner),
                        _ => {}
                    }
                }
                if length == 0 {
                    break;
                }
                offset += length;
            }
        }
    }
}

/// An IPv6 proxy neighbour message: on interface `index` for `address` (none: a dump request).
fn proxy_message(index: u32, address: Option<Ipv6Addr>) -> NeighbourMessage {
    let mut message = NeighbourMessage::default();
    message.header.family = AddressFamily::Inet6;
    message.header.ifindex = index;
    message.header.flags = NeighbourFlags::Proxy;
    if let Some(address) = address {
        // What `ip neigh replace` asks for: a permanent entry.
        message.header.state = NeighbourState::Permanent;
        message
            .attributes
            .push(NeighbourAttribute::Destination(NeighbourAddress::Inet6(
                address,
            )));
    }
    message
}

/// (interface, address) of an IPv6 proxy entry from a dump; `None` for anything else (an
/// interface that vanished meanwhile, another family).
fn parse_entry(entry: &NeighbourMessage) -> Option<(String, Ipv6Addr)> {
    if entry.header.family != AddressFamily::Inet6
        || !entry.header.flags.contains(NeighbourFlags::Proxy)
    {
        return None;
    }
    let address = entry.attributes.iter().find_map(|a| match a {
        NeighbourAttribute::Destination(NeighbourAddress::Inet6(address)) => Some(*address),
        _ => None,
    })?;
    Some((interface_name(entry.header.ifindex)?, address))
}

fn interface_index(interface: &str) -> Result<u32, NdpError> {
    let missing = || NdpError::NoInterface {
        interface: interface.to_string(),
    };
    let name = CString::new(interface).map_err(|_| missing())?;
    // SAFETY: `name` is a valid NUL-terminated string that outlives the call.
    match unsafe { libc::if_nametoindex(name.as_ptr()) } {
        0 => Err(missing()),
        index => Ok(index),
    }
}

fn interface_name(index: u32) -> Option<String> {
    let mut buffer = [0 as libc::c_char; libc::IF_NAMESIZE];
    // SAFETY: the buffer holds IF_NAMESIZE bytes, as if_indextoname requires; on success it
    // holds a NUL-terminated name.
    let name = unsafe { libc::if_indextoname(index, buffer.as_mut_ptr()) };
    if name.is_null() {
        return None;
    }
    // SAFETY: if_indextoname succeeded, so `buffer` is NUL-terminated.
    let name = unsafe { CStr::from_ptr(buffer.as_ptr()) };
    Some(name.to_string_lossy().into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxy_entries_parse_only_ipv6_proxies() {
        let address: Ipv6Addr = "2001:db8:77:0:8000::2".parse().unwrap();
        // The loopback interface always exists, with index 1.
        let entry = proxy_message(1, Some(address));
        assert_eq!(parse_entry(&entry), Some(("lo".into(), address)));
        let mut cache_entry = entry.clone();
        cache_entry.header.flags = NeighbourFlags::empty();
        assert_eq!(parse_entry(&cache_entry), None);
        assert_eq!(parse_entry(&proxy_message(1, None)), None, "no address");
    }

    /// The real kernel, in a network namespace of this test's own (needs root, as the
    /// daemon does): entries are added, kept, and removed only inside what is owned.
    #[test]
    fn sync_adds_and_removes_only_owned_entries_in_a_private_namespace() {
        std::thread::spawn(|| {
            // SAFETY: unshare changes only this thread's network namespace; the thread ends
            // with the test, so nothing else ever runs in it.
            let unshared = unsafe { libc::unshare(libc::CLONE_NEWNET) };
            assert_eq!(unshared, 0, "unshare: {}", io::Error::last_os_error());
            let entry = |a: &str| ("lo".to_string(), a.parse::<Ipv6Addr>().unwrap());
            let mut netlink = Rtnetlink::open().unwrap();
            // Someone else's entry, outside what v6guard owns.
            netlink
                .change(Change::Add, "lo", "2001:db8:1::9".parse().unwrap())
                .unwrap();
            let mut wanted = NdpProxies::default();
            wanted
                .owned
                .insert(("lo".into(), "2001:db8::/64".parse().unwrap()));
            wanted.entries.insert(entry("2001:db8::5"));
            wanted.entries.insert(entry("2001:db8::6"));
            assert_eq!(
                sync(&wanted).unwrap(),
                NdpChanges {
                    added: 2,
                    removed: 0
                }
            );
            assert_eq!(
                sync(&wanted).unwrap(),
                NdpChanges::default(),
                "already in place"
            );
            wanted.entries.remove(&entry("2001:db8::6"));
            assert_eq!(
                sync(&wanted).unwrap(),
                NdpChanges {
                    added: 0,
                    removed: 1
                }
            );
            let held = netlink.proxy_entries().unwrap();
            let expected: BTreeSet<_> = [entry("2001:db8::5"), entry("2001:db8:1::9")].into();
            assert_eq!(held, expected);
            assert!(
                fs::read_to_string("/proc/sys/net/ipv6/conf/lo/proxy_ndp")
                    .unwrap()
                    .trim()
                    == "1"
            );
        })
        .join()
        .expect("the namespace test passed");
    }

    #[test]
    fn a_missing_interface_is_named() {
        let error = interface_index("v6g-no-such-if").unwrap_err();
        assert!(error.to_string().contains("v6g-no-such-if"), "{error}");
    }
}
