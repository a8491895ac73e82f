//! What a container listens on, read from the kernel's socket tables.
//!
//! A published port only opens something when a process listens behind it; the audit uses
//! this to tell "reachable and answered" from "reachable but nothing listens", and to find
//! ports a process listens on over IPv6 although nobody published them. One container's init
//! PID is enough and nothing runs inside the container: TCP listeners come from sock_diag in
//! its network namespace (LISTEN sockets only; `/proc/PID/net/tcp*` would walk the host's
//! whole connection table on every read), UDP ones from `/proc/PID/net/{udp,udp6}`.
//!
//! The parsers ([`parse_proc_net`], the sock_diag one) are pure and tested on captured
//! bytes; [`read_listeners`] is the edge.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::snapshot::Protocol;

/// TCP's LISTEN state in the `st` column (`TCP_LISTEN` in include/net/tcp_states.h).
const TCP_LISTEN: &str = "0A";
/// An unconnected UDP socket (`TCP_CLOSE`, the state UDP reuses): it takes datagrams from
/// anyone, so it is UDP's listener. A connected one (`01`) only hears its peer.
const UDP_UNCONNECTED: &str = "07";

#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    #[error("line {line} is not a socket entry ({why}): {text:?}")]
    Malformed {
        line: usize,
        text: String,
        why: &'static str,
    },
    #[error("cannot read {}: {source}. {hint}", path.display(), hint = read_hint(source))]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{}: {source}; please report it with this file's contents", path.display())]
    InFile {
        path: PathBuf,
        #[source]
        source: Box<ListenError>,
    },
}

fn read_hint(error: &io::Error) -> &'static str {
    match error.kind() {
        io::ErrorKind::PermissionDenied => {
            "Run v6guard as root: another process's sockets are only visible to root"
        }
        io::ErrorKind::NotFound => {
            "The process is gone (the container stopped or restarted?); read its PID again"
        }
        _ => "",
    }
}

/// The socket table's address family: `tcp`/`udp` hold IPv4 sockets, `tcp6`/`udp6` IPv6
/// ones (IPv4-mapped addresses included).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    Ipv4,
    Ipv6,
}

/// One listening socket: a TCP socket in LISTEN or an unconnected UDP socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Listener {
    pub protocol: Protocol,
    pub port: u16,
    /// The local address it is bound to, as the kernel shows it: `::` or `0.0.0.0` for all
    /// addresses, an IPv4-mapped address (`::ffff:a.b.c.d`) for an IPv6 socket bound to an
    /// IPv4 address. Whether a `::` socket is IPV6_V6ONLY is not in /proc and does not
    /// matter here: either way it takes IPv6.
    pub address: IpAddr,
}

/// Where a listener can be reached over IPv6.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "address")]
pub enum ListenScope {
    /// Bound to `::`: every IPv6 address of the namespace.
    AllIpv6,
    /// Bound to this one IPv6 address.
    OneAddress(Ipv6Addr),
    /// Bound to a loopback address (`::1`, `127.0.0.0/8`, mapped or not): only the namespace
    /// itself reaches it.
    Loopback,
    /// An IPv4 socket, or an IPv6 one bound to an IPv4-mapped address: no IPv6 packet
    /// reaches it.
    Ipv4Only,
}

impl Listener {
    /// Where the listener can be reached over IPv6.
    pub fn scope(&self) -> ListenScope {
        match self.address {
            IpAddr::V4(v4) if v4.is_loopback() => ListenScope::Loopback,
            IpAddr::V4(_) => ListenScope::Ipv4Only,
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) if v4.is_loopback() => ListenScope::Loopback,
                Some(_) => ListenScope::Ipv4Only,
                None if v6.is_loopback() => ListenScope::Loopback,
                None if v6.is_unspecified() => ListenScope::AllIpv6,
                None => ListenScope::OneAddress(v6),
            },
        }
    }

    /// Whether an IPv6 packet to `address` (an address of the listener's namespace) reaches
    /// this socket.
    pub fn reachable_on(&self, address: Ipv6Addr) -> bool {
        match self.scope() {
            ListenScope::AllIpv6 => true,
            ListenScope::OneAddress(bound) => bound == address,
            ListenScope::Loopback => address.is_loopback(),
            ListenScope::Ipv4Only => false,
        }
    }
}

/// Whether anything in `listeners` takes `protocol`/`port` over IPv6 on `address`.
pub fn listens_on(
    listeners: &[Listener],
    protocol: Protocol,
    port: u16,
    address: Ipv6Addr,
) -> bool {
    listeners
        .iter()
        .any(|l| l.protocol == protocol && l.port == port && l.reachable_on(address))
}

/// The listeners in one of the kernel's socket tables (`/proc/net/{tcp,tcp6,udp,udp6}`):
/// TCP sockets in LISTEN, unconnected UDP sockets. `protocol` and `family` say which table
/// `text` is; only TCP and UDP have such tables. Lines are numbered from 1, the header
/// included.
pub fn parse_proc_net(
    text: &str,
    protocol: Protocol,
    family: Family,
) -> Result<Vec<Listener>, ListenError> {
    let listening = match protocol {
        Protocol::Udp => UDP_UNCONNECTED,
        _ => TCP_LISTEN,
    };
    let mut listeners = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let number = index + 1;
        let trimmed = line.trim();
        // The header (`sl local_address ...`) and blank lines carry no socket.
        if trimmed.is_empty() || trimmed.split_whitespace().next() == Some("sl") {
            continue;
        }
        let malformed = |why| ListenError::Malformed {
            line: number,
            text: line.to_string(),
            why,
        };
        let mut fields = trimmed.split_whitespace();
        let slot = fields.next().ok_or_else(|| malformed("empty"))?;
        if !slot.ends_with(':') {
            return Err(malformed("no `N:` slot number first"));
        }
        let local = fields.next().ok_or_else(|| malformed("no local address"))?;
        let _remote = fields
            .next()
            .ok_or_else(|| malformed("no remote address"))?;
        let state = fields.next().ok_or_else(|| malformed("no state"))?;
        if state.len() != 2 || !state.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(malformed("the state is not two hex digits"));
        }
        let (address, port) = local
            .split_once(':')
            .ok_or_else(|| malformed("the local address has no `:PORT`"))?;
        let address = parse_address(address, family)
            .ok_or_else(|| malformed("the local address is not the family's hex address"))?;
        let port = (port.len() == 4)
            .then(|| u16::from_str_radix(port, 16).ok())
            .flatten()
            .ok_or_else(|| malformed("the local port is not four hex digits"))?;
        if state.eq_ignore_ascii_case(listening) {
            listeners.push(Listener {
                protocol,
                port,
                address,
            });
        }
    }
    Ok(listeners)
}

/// A socket table's address: 8 (IPv4) or 32 (IPv6) hex digits, printed as 32-bit words each
/// in the host's byte order (the kernel prints the `__be32` words with `%08X`).
fn parse_address(hex: &str, family: Family) -> Option<IpAddr> {
    let words = match family {
        Family::Ipv4 => 1,
        Family::Ipv6 => 4,
    };
    if hex.len() != words * 8 || !hex.is_ascii() {
        return None;
    }
    let mut bytes = [0u8; 16];
    for word in 0..words {
        let value = u32::from_str_radix(&hex[word * 8..word * 8 + 8], 16).ok()?;
        bytes[word * 4..word * 4 + 4].copy_from_slice(&value.to_ne_bytes());
    }
    Some(match family {
        Family::Ipv4 => IpAddr::V4(Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3])),
        Family::Ipv6 => IpAddr::V6(Ipv6Addr::from(bytes)),
    })
}

/// The four socket tables, with what each holds.
const TABLES: [(&str, Protocol, Family); 4] = [
    ("tcp", Protocol::Tcp, Family::Ipv4),
    ("tcp6", Protocol::Tcp, Family::Ipv6),
    ("udp", Protocol::Udp, Family::Ipv4),
    ("udp6", Protocol::Udp, Family::Ipv6),
];

/// Every listener in the network namespace of process `pid` (a container's init PID from
/// [`crate::docker::read_pids`]), sorted, without duplicates (SO_REUSEPORT sockets share an
/// address and port).
///
/// TCP listeners come from sock_diag inside the namespace, asking for LISTEN sockets only:
/// `/proc/PID/net/tcp` walks the host's whole established-connection hash for every read
/// (about 1.6 ms a file on the project's machine, whatever the namespace holds), which made
/// the audit cost 6 ms a container. UDP has no such table and is read from /proc.
pub fn read_listeners(pid: u32) -> Result<Vec<Listener>, ListenError> {
    let proc_net = Path::new("/proc").join(pid.to_string()).join("net");
    let mut listeners = match diag::tcp_listeners(pid) {
        Ok(tcp) => tcp,
        // sock_diag unavailable (no inet_diag module, a seccomp filter): /proc still works,
        // only slower.
        Err(error) => {
            tracing::debug!(pid, %error, "sock_diag failed; reading /proc/PID/net/tcp*");
            read_tables(&proc_net, &TABLES[..2])?
        }
    };
    listeners.extend(read_tables(&proc_net, &TABLES[2..])?);
    listeners.sort();
    listeners.dedup();
    Ok(listeners)
}

/// Every listener in the socket tables under `net` (a `/proc/PID/net` directory). A kernel
/// without IPv6 has no `tcp6`/`udp6`: nothing listens over IPv6 there, which is no error.
pub fn read_listeners_in(net: &Path) -> Result<Vec<Listener>, ListenError> {
    let mut listeners = read_tables(net, &TABLES)?;
    listeners.sort();
    listeners.dedup();
    Ok(listeners)
}

/// The listeners in some of the socket tables under `net`, unsorted.
fn read_tables(
    net: &Path,
    tables: &[(&str, Protocol, Family)],
) -> Result<Vec<Listener>, ListenError> {
    let mut listeners = Vec::new();
    for &(file, protocol, family) in tables {
        let path = net.join(file);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(error) if error.kind() == io::ErrorKind::NotFound && family == Family::Ipv6 => {
                // The IPv4 table of the pair was there (it is read first): no IPv6 in this kernel.
                continue;
            }
            Err(source) => return Err(ListenError::Read { path, source }),
        };
        let found =
            parse_proc_net(&text, protocol, family).map_err(|source| ListenError::InFile {
                path: path.clone(),
                source: Box::new(source),
            })?;
        listeners.extend(found);
    }
    Ok(listeners)
}

/// TCP listeners through sock_diag (`NETLINK_SOCK_DIAG`), in another network namespace.
mod diag {
    use std::fs::File;
    use std::io;
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

    use super::Listener;
    use crate::snapshot::Protocol;

    const NETLINK_SOCK_DIAG: libc::c_int = 4;
    const SOCK_DIAG_BY_FAMILY: u16 = 20;
    const TCP_LISTEN: u32 = 10;
    /// `NLM_F_DUMP_INTR`: the dump was interrupted by a change and may be inconsistent.
    const NLM_F_DUMP_INTR: u16 = 0x10;
    const NLMSG_HDRLEN: usize = 16;
    /// `struct inet_diag_req_v2`: family, protocol, ext, pad, states, then the 48-byte sockid.
    const REQUEST_LEN: usize = 56;
    /// `struct inet_diag_msg` up to the end of the source address.
    const MESSAGE_MIN: usize = 4 + 4 + 16;

    /// The TCP sockets in LISTEN in the network namespace of `pid`, asked from a short-lived
    /// thread that enters it (only that thread moves).
    pub fn tcp_listeners(pid: u32) -> io::Result<Vec<Listener>> {
        let netns = File::open(format!("/proc/{pid}/ns/net"))?;
        std::thread::spawn(move || {
            // SAFETY: setns on an open namespace file; it moves only this thread, which ends
            // when the dump is read.
            if unsafe { libc::setns(netns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                return Err(io::Error::last_os_error());
            }
            let mut all = dump(libc::AF_INET as u8)?;
            all.extend(dump(libc::AF_INET6 as u8)?);
            Ok(all)
        })
        .join()
        .unwrap_or_else(|_| Err(io::Error::other("the sock_diag thread panicked")))
    }

    /// One dump of TCP LISTEN sockets of `family`.
    fn dump(family: u8) -> io::Result<Vec<Listener>> {
        // SAFETY: a plain socket(2) call; the descriptor is owned right away.
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                NETLINK_SOCK_DIAG,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a fresh descriptor nobody else owns.
        let socket = unsafe { OwnedFd::from_raw_fd(fd) };
        let request = request(family);
        // SAFETY: sending a buffer we own on our socket; the kernel is the default peer.
        let sent = unsafe {
            libc::send(
                socket.as_raw_fd(),
                request.as_ptr().cast(),
                request.len(),
                0,
            )
        };
        if sent < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut listeners = Vec::new();
        let mut buffer = vec![0u8; 32 * 1024];
        loop {
            // SAFETY: receiving into a buffer we own, at most its length.
            let n = unsafe {
                libc::recv(
                    socket.as_raw_fd(),
                    buffer.as_mut_ptr().cast(),
                    buffer.len(),
                    0,
                )
            };
            if n < 0 {
                let error = io::Error::last_os_error();
                if error.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(error);
            }
            match parse(&buffer[..n as usize], &mut listeners)? {
                Parsed::More => {}
                Parsed::Done => return Ok(listeners),
            }
        }
    }

    fn request(family: u8) -> Vec<u8> {
        let len = (NLMSG_HDRLEN + REQUEST_LEN) as u32;
        let flags = (libc::NLM_F_REQUEST | libc::NLM_F_DUMP) as u16;
        let mut out = Vec::with_capacity(len as usize);
        out.extend_from_slice(&len.to_ne_bytes());
        out.extend_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
        out.extend_from_slice(&flags.to_ne_bytes());
        out.extend_from_slice(&1u32.to_ne_bytes()); // sequence
        out.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel fills it in
        out.extend_from_slice(&[family, libc::IPPROTO_TCP as u8, 0, 0]);
        out.extend_from_slice(&(1u32 << TCP_LISTEN).to_ne_bytes());
        out.resize(len as usize, 0); // the socket id: all zero, match everything
        out
    }

    enum Parsed {
        More,
        Done,
    }

    /// The messages in one datagram of the dump.
    fn parse(mut bytes: &[u8], listeners: &mut Vec<Listener>) -> io::Result<Parsed> {
        while bytes.len() >= NLMSG_HDRLEN {
            let len = u32::from_ne_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize;
            let kind = u16::from_ne_bytes([bytes[4], bytes[5]]);
            let flags = u16::from_ne_bytes([bytes[6], bytes[7]]);
            if len < NLMSG_HDRLEN || len > bytes.len() {
                return Err(io::Error::other("a truncated sock_diag message"));
            }
            if flags & NLM_F_DUMP_INTR != 0 {
                // Sockets changed during the dump: its answer may miss one. Say so rather
                // than report a partial list.
                return Err(io::Error::other("the socket list changed during the dump"));
            }
            match i32::from(kind) {
                libc::NLMSG_DONE => return Ok(Parsed::Done),
                libc::NLMSG_ERROR => {
                    let code = bytes
                        .get(NLMSG_HDRLEN..NLMSG_HDRLEN + 4)
                        .map(|b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
                        .and_then(i32::checked_neg)
                        .filter(|code| *code > 0)
                        .unwrap_or(libc::EIO);
                    return Err(io::Error::from_raw_os_error(code));
                }
                _ if kind == SOCK_DIAG_BY_FAMILY => {
                    if let Some(listener) = message(&bytes[NLMSG_HDRLEN..len]) {
                        listeners.push(listener);
                    }
                }
                _ => {}
            }
            bytes = bytes.get((len + 3) & !3..).unwrap_or_default();
        }
        Ok(Parsed::More)
    }

    /// An `inet_diag_msg`: family, state, timer, retrans, then the socket id (source port
    /// and destination port in network order, then the source address).
    fn message(body: &[u8]) -> Option<Listener> {
        if body.len() < MESSAGE_MIN {
            return None;
        }
        let port = u16::from_be_bytes([body[4], body[5]]);
        let source = &body[8..24];
        let address = match i32::from(body[0]) {
            libc::AF_INET => IpAddr::V4(Ipv4Addr::new(source[0], source[1], source[2], source[3])),
            libc::AF_INET6 => IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(source).ok()?)),
            _ => return None,
        };
        Some(Listener {
            protocol: Protocol::Tcp,
            port,
            address,
        })
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        fn header(len: usize, kind: u16) -> Vec<u8> {
            let mut out = (len as u32).to_ne_bytes().to_vec();
            out.extend_from_slice(&kind.to_ne_bytes());
            out.extend_from_slice(&[0u8; 10]);
            out
        }

        #[test]
        fn a_dump_datagram_decodes_and_ends_at_done() {
            // inet_diag_msg: AF_INET6, LISTEN, timer, retrans; sport 80, dport 0; src ::1.
            let mut body = vec![libc::AF_INET6 as u8, 10, 0, 0, 0, 80, 0, 0];
            body.extend_from_slice(&Ipv6Addr::LOCALHOST.octets());
            body.resize(72, 0);
            let mut datagram = header(NLMSG_HDRLEN + body.len(), 20);
            datagram.extend_from_slice(&body);
            let mut listeners = Vec::new();
            assert!(matches!(parse(&datagram, &mut listeners), Ok(Parsed::More)));
            assert_eq!(
                listeners,
                vec![Listener {
                    protocol: Protocol::Tcp,
                    port: 80,
                    address: IpAddr::V6(Ipv6Addr::LOCALHOST),
                }]
            );
            let mut done = header(NLMSG_HDRLEN + 4, libc::NLMSG_DONE as u16);
            done.extend_from_slice(&[0u8; 4]);
            assert!(matches!(parse(&done, &mut listeners), Ok(Parsed::Done)));
            assert!(parse(&datagram[..20], &mut listeners).is_err(), "truncated");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listener(protocol: Protocol, port: u16, address: &str) -> Listener {
        Listener {
            protocol,
            port,
            address: address.parse().unwrap(),
        }
    }

    // Captured on x86_64 from a lab container running `httpd -p 80`, `httpd -p
    // 127.0.0.1:83`, `httpd -p [::1]:84`, `httpd -p 0.0.0.0:82`, `httpd -p
    // [::ffff:127.0.0.1]:86`, `nc -l fd76:6700:0:1:0:242:ac11:2 85` and UDP `nc -u -l`s
    // (`cat /proc/PID/net/...`); the connected sockets (state 01) are added by hand. The words are in the host's byte order, so the captures only
    // read back right on a little-endian machine.
    const TCP: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode                                                     
   0: 0100007F:0053 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 286035 1 00000000167dd206 100 0 0 10 0                    
   1: 00000000:0052 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 286043 1 000000001183a56e 100 0 0 10 0                    
";
    const TCP6: &str = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000001000000:0054 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 286039 1 0000000098d5420f 100 0 0 10 0
   1: 0000000000000000FFFF00000100007F:0056 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 286344 1 00000000559b55a9 100 0 0 10 0
   2: 00000000000000000000000000000000:0050 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 286032 1 000000001fd75f31 100 0 0 10 0
   3: 006776FD0100000042020000020011AC:0055 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 287033 1 0000000021c911e8 100 0 0 10 0
   4: 006776FD0100000042020000020011AC:0050 006776FD0100000042020000010011AC:A3F2 01 00000000:00000000 00:00000000 00000000     0        0 287100 1 0000000021c911e9 20 4 30 10 -1
";
    const UDP: &str = "   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops            
 7077: 00000000:14E9 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 286183 2 000000004e392340 0        
";
    const UDP6: &str = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
 7079: 006776FD0100000042020000020011AC:14EB 00000000000000000000000000000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 286257 2 000000000ce2ee4f 0
 7080: 00000000000000000000000000000000:14EC 00000000000000000000000000000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 287246 2 0000000060383237 0
 7090: 006776FD0100000042020000020011AC:9C40 20010DB8007600000000000000000002:0035 01 00000000:00000000 00:00000000 00000000     0        0 287250 2 0000000060383238 0
";

    const CONTAINER: &str = "fd76:6700:0:1:0:242:ac11:2";

    #[cfg(target_endian = "little")]
    #[test]
    fn tcp_listeners_of_every_kind() {
        let v4 = parse_proc_net(TCP, Protocol::Tcp, Family::Ipv4).unwrap();
        assert_eq!(
            v4,
            vec![
                listener(Protocol::Tcp, 83, "127.0.0.1"),
                listener(Protocol::Tcp, 82, "0.0.0.0"),
            ]
        );
        let v6 = parse_proc_net(TCP6, Protocol::Tcp, Family::Ipv6).unwrap();
        assert_eq!(
            v6,
            vec![
                listener(Protocol::Tcp, 84, "::1"),
                listener(Protocol::Tcp, 86, "::ffff:127.0.0.1"),
                listener(Protocol::Tcp, 80, "::"),
                listener(Protocol::Tcp, 85, CONTAINER),
            ],
            "the established connection (state 01) is no listener"
        );
        let scopes: Vec<ListenScope> = v4.iter().chain(&v6).map(Listener::scope).collect();
        assert_eq!(
            scopes,
            vec![
                ListenScope::Loopback,
                ListenScope::Ipv4Only,
                ListenScope::Loopback,
                ListenScope::Loopback,
                ListenScope::AllIpv6,
                ListenScope::OneAddress(CONTAINER.parse().unwrap()),
            ]
        );
    }

    #[cfg(target_endian = "little")]
    #[test]
    fn udp_listeners_are_the_unconnected_sockets() {
        let v4 = parse_proc_net(UDP, Protocol::Udp, Family::Ipv4).unwrap();
        assert_eq!(v4, vec![listener(Protocol::Udp, 5353, "0.0.0.0")]);
        let v6 = parse_proc_net(UDP6, Protocol::Udp, Family::Ipv6).unwrap();
        assert_eq!(
            v6,
            vec![
                listener(Protocol::Udp, 5355, CONTAINER),
                listener(Protocol::Udp, 5356, "::"),
            ],
            "the connected socket (state 01) hears only its peer"
        );
    }

    #[test]
    fn reachability_on_a_container_address() {
        let here: Ipv6Addr = CONTAINER.parse().unwrap();
        let elsewhere: Ipv6Addr = "fd76:6700:0:1:0:242:ac11:3".parse().unwrap();
        let all = listener(Protocol::Tcp, 80, "::");
        assert!(all.reachable_on(here) && all.reachable_on(elsewhere));
        let one = listener(Protocol::Tcp, 85, CONTAINER);
        assert!(one.reachable_on(here) && !one.reachable_on(elsewhere));
        for closed in [
            "::1",
            "127.0.0.1",
            "::ffff:127.0.0.1",
            "0.0.0.0",
            "::ffff:172.17.0.2",
        ] {
            let closed = listener(Protocol::Tcp, 80, closed);
            assert!(!closed.reachable_on(here), "{closed:?}");
        }
        assert_eq!(
            listener(Protocol::Tcp, 80, "::ffff:172.17.0.2").scope(),
            ListenScope::Ipv4Only
        );
        let listeners = [all, one];
        assert!(listens_on(&listeners, Protocol::Tcp, 85, here));
        assert!(!listens_on(&listeners, Protocol::Tcp, 85, elsewhere));
        assert!(!listens_on(&listeners, Protocol::Udp, 80, here), "TCP only");
    }

    #[test]
    fn malformed_lines_are_named() {
        let header = "  sl  local_address rem_address   st\n";
        for (line, why) in [
            ("   0: 0100007F 00000000:0000 0A", "no `:PORT`"),
            ("   0: 0100007F:53 00000000:0000 0A", "four hex digits"),
            ("   0: 0100007G:0053 00000000:0000 0A", "hex address"),
            (
                "   0: 00000000000000000000000000000000:0050 0 0A",
                "hex address",
            ),
            ("   0: 0100007F:0053 00000000:0000", "no state"),
            ("   0: 0100007F:0053 00000000:0000 LISTEN", "two hex digits"),
            ("garbage", "slot"),
        ] {
            let error = parse_proc_net(&format!("{header}{line}\n"), Protocol::Tcp, Family::Ipv4)
                .unwrap_err();
            let message = error.to_string();
            assert!(message.starts_with("line 2 "), "{message}");
            assert!(message.contains(why), "{line}: {message}");
        }
    }

    #[test]
    fn an_empty_table_has_no_listeners() {
        let header = "  sl  local_address rem_address   st tx_queue\n";
        assert!(
            parse_proc_net(header, Protocol::Udp, Family::Ipv4)
                .unwrap()
                .is_empty()
        );
        assert!(
            parse_proc_net("", Protocol::Udp, Family::Ipv6)
                .unwrap()
                .is_empty()
        );
    }

    #[cfg(target_endian = "little")]
    #[test]
    fn read_from_a_net_directory_sorted_and_deduplicated() {
        let dir = std::env::temp_dir().join(format!("v6guard-listen-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        // Two SO_REUSEPORT sockets on one port show as two lines.
        let doubled = format!("{TCP6}{}", TCP6.lines().nth(3).unwrap());
        std::fs::write(dir.join("tcp"), TCP).unwrap();
        std::fs::write(dir.join("tcp6"), doubled).unwrap();
        std::fs::write(dir.join("udp"), UDP).unwrap();
        // No udp6: a kernel without IPv6.
        let listeners = read_listeners_in(&dir).unwrap();
        let mut expected = listeners.clone();
        expected.sort();
        expected.dedup();
        assert_eq!(listeners, expected);
        assert_eq!(listeners.len(), 7);
        std::fs::write(dir.join("udp"), "  sl\n 1: zz\n").unwrap();
        let message = read_listeners_in(&dir).unwrap_err().to_string();
        assert!(message.contains("/udp: line 2"), "{message}");
        std::fs::remove_dir_all(&dir).unwrap();
        let message = read_listeners_in(&dir).unwrap_err().to_string();
        assert!(
            message.contains("/tcp") && message.contains("process is gone"),
            "{message}"
        );
    }
}
