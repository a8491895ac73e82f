//! Raw Ethernet frames for the attack tests (tests/security.rs): build a frame byte by byte,
//! send it from inside one network namespace, and watch an interface in another for it.
//!
//! Why raw frames: the holes these tests reproduce are in what a firewall trusts in a header
//! (a VLAN tag, a hop limit, a source address) and in what it lets through at layer 2. An
//! ordinary socket cannot forge those; an `AF_PACKET` socket can, and every container has
//! `CAP_NET_RAW` by default, so a frame built here is exactly what a hostile neighbour sends.
//!
//! Why threads: `setns(CLONE_NEWNET)` moves only the calling thread, so every visit to a
//! namespace runs on a fresh `std::thread` that enters it, does its socket work and ends. The
//! test's own thread never changes namespace. Sockets keep the namespace they were created in.
//!
//! Why the receiver watches with `AF_PACKET` and not a UDP socket: it sees every frame that
//! reaches the victim's interface, whatever the victim's stack later does with it (a VLAN
//! tag it has no device for, a router advertisement, a routed neighbour solicitation), so
//! "arrived" means the firewall let the bytes through, which is what these tests measure.

use std::ffi::CString;
use std::fs::File;
use std::net::Ipv6Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::PathBuf;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::docker;

/// An Ethernet address.
pub type Mac = [u8; 6];

pub const ETHERTYPE_IPV6: u16 = 0x86dd;
/// A customer VLAN tag (802.1Q).
pub const TPID_8021Q: u16 = 0x8100;
/// A service VLAN tag (802.1ad, "QinQ" outer tag).
pub const TPID_8021AD: u16 = 0x88a8;

pub const NEXT_HEADER_UDP: u8 = 17;
pub const NEXT_HEADER_ICMPV6: u8 = 58;

pub const ICMPV6_ECHO_REQUEST: u8 = 128;
pub const ICMPV6_ROUTER_ADVERTISEMENT: u8 = 134;
pub const ICMPV6_NEIGHBOR_SOLICITATION: u8 = 135;
pub const ICMPV6_NEIGHBOR_ADVERTISEMENT: u8 = 136;
pub const ICMPV6_REDIRECT: u8 = 137;

/// `sll_pkttype` of a frame this host sent (linux/if_packet.h); a receiver ignores those, so a
/// namespace that both sends and watches one interface only counts what came back to it.
const PACKET_OUTGOING: u8 = 4;

/// A network namespace, named by a file that refers to it.
#[derive(Clone, Debug)]
pub struct Namespace {
    path: PathBuf,
}

impl Namespace {
    /// A running container's namespace, through its init process (`/proc/PID/ns/net`).
    pub fn container(name: &str) -> Namespace {
        let pid = docker(&["inspect", "-f", "{{.State.Pid}}", name]);
        let pid = pid.trim();
        assert!(
            !pid.is_empty() && pid != "0",
            "container {name} is not running (pid {pid:?})"
        );
        Namespace {
            path: PathBuf::from(format!("/proc/{pid}/ns/net")),
        }
    }

    /// A namespace made by `ip netns add NAME`.
    pub fn named(name: &str) -> Namespace {
        Namespace {
            path: PathBuf::from(format!("/run/netns/{name}")),
        }
    }

    fn open(&self) -> File {
        File::open(&self.path)
            .unwrap_or_else(|e| panic!("cannot open namespace {}: {e}", self.path.display()))
    }

    /// Run `work` on a thread that has entered this namespace; its result (its panic, re-raised).
    pub fn run<T: Send + 'static>(&self, work: impl FnOnce() -> T + Send + 'static) -> T {
        let file = self.open();
        let handle = thread::spawn(move || {
            enter(&file);
            work()
        });
        handle
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    }

    /// The Ethernet address of `ifname` in this namespace (what a neighbour learns by NDP).
    pub fn mac(&self, ifname: &str) -> Mac {
        let ifname = ifname.to_string();
        self.run(move || interface_mac(&ifname))
    }
}

/// Move the calling thread into the namespace `file` refers to.
fn enter(file: &File) {
    // SAFETY: setns on an open namespace file descriptor; it moves only the calling thread,
    // a thread of its own that ends when its work is done.
    let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
}

/// Send `frame` out of `from_if` in `from` while watching `to_if` in `to` for `window`: whether
/// a frame `to` did not send itself arrived there and satisfied `matches`. The receiver is
/// listening before the frame leaves.
pub fn arrives(
    from: &Namespace,
    from_if: &str,
    frame: Vec<u8>,
    to: &Namespace,
    to_if: &str,
    window: Duration,
    matches: impl Fn(&[u8]) -> bool + Send + 'static,
) -> bool {
    let to_file = to.open();
    let to_if = to_if.to_string();
    let (ready, listening) = mpsc::channel();
    let receiver = thread::spawn(move || {
        enter(&to_file);
        let socket = PacketSocket::open(&to_if);
        socket.listen();
        let _ = ready.send(());
        socket.watch(window, &matches)
    });
    // A receiver that failed before listening drops `ready`; its panic comes out of join.
    if listening.recv().is_ok() {
        let from_if = from_if.to_string();
        from.run(move || PacketSocket::open(&from_if).send(&frame));
    }
    receiver
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

/// Send `frame` out of `from_if` in `from`, watching nothing: for receivers that are real
/// sockets (what the host's own stack delivers, after its firewall) rather than a capture.
pub fn send(from: &Namespace, from_if: &str, frame: Vec<u8>) {
    let from_if = from_if.to_string();
    from.run(move || PacketSocket::open(&from_if).send(&frame));
}

/// A predicate for [`arrives`]: the frame carries `marker` somewhere.
pub fn carries(marker: &[u8]) -> impl Fn(&[u8]) -> bool + Send + 'static {
    let marker = marker.to_vec();
    move |frame| frame.windows(marker.len()).any(|w| w == marker.as_slice())
}

/// Bytes no other traffic carries: `label`, this process and the time, so a frame left over
/// from an earlier send is never mistaken for this one.
pub fn marker(label: &str) -> Vec<u8> {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("v6gt-sec:{label}:{}:{nanos}", std::process::id()).into_bytes()
}

/// An `AF_PACKET` raw socket on one interface of the namespace it was created in.
struct PacketSocket {
    fd: OwnedFd,
    ifindex: i32,
}

impl PacketSocket {
    fn open(ifname: &str) -> PacketSocket {
        // Protocol 0: the socket receives nothing until `listen` binds it, so no frame from
        // another interface slips in between socket() and bind().
        // SAFETY: socket(2) with constant arguments.
        let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        assert!(
            fd >= 0,
            "AF_PACKET socket: {}",
            std::io::Error::last_os_error()
        );
        // SAFETY: fd is a fresh descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        PacketSocket {
            fd,
            ifindex: ifindex(ifname),
        }
    }

    fn address(&self, protocol: u16, dst: Option<Mac>) -> libc::sockaddr_ll {
        // SAFETY: sockaddr_ll is plain data; all zeroes is a valid value.
        let mut address: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        address.sll_family = libc::AF_PACKET as u16;
        address.sll_protocol = protocol.to_be();
        address.sll_ifindex = self.ifindex;
        if let Some(dst) = dst {
            address.sll_halen = 6;
            address.sll_addr[..6].copy_from_slice(&dst);
        }
        address
    }

    /// Receive every frame on the interface, with a short timeout per read.
    fn listen(&self) {
        let address = self.address(libc::ETH_P_ALL as u16, None);
        // SAFETY: bind with a valid sockaddr_ll and its size.
        let rc = unsafe {
            libc::bind(
                self.fd.as_raw_fd(),
                (&raw const address).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        assert_eq!(rc, 0, "bind AF_PACKET: {}", std::io::Error::last_os_error());
        let timeout = libc::timeval {
            tv_sec: 0,
            tv_usec: 50_000,
        };
        // SAFETY: setsockopt with a valid timeval and its size.
        let rc = unsafe {
            libc::setsockopt(
                self.fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&raw const timeout).cast(),
                std::mem::size_of::<libc::timeval>() as libc::socklen_t,
            )
        };
        assert_eq!(rc, 0, "SO_RCVTIMEO: {}", std::io::Error::last_os_error());
    }

    /// Read frames until one that this namespace did not send satisfies `matches`, or `window`
    /// has passed.
    fn watch(&self, window: Duration, matches: &dyn Fn(&[u8]) -> bool) -> bool {
        let deadline = Instant::now() + window;
        let mut buffer = vec![0u8; 65536];
        while Instant::now() < deadline {
            // SAFETY: sockaddr_ll is plain data; all zeroes is a valid value.
            let mut from: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
            let mut from_len = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
            // SAFETY: recvfrom into a buffer of the stated length and a sockaddr_ll of the
            // stated size.
            let n = unsafe {
                libc::recvfrom(
                    self.fd.as_raw_fd(),
                    buffer.as_mut_ptr().cast(),
                    buffer.len(),
                    0,
                    (&raw mut from).cast(),
                    &mut from_len,
                )
            };
            if n < 0 {
                let error = std::io::Error::last_os_error();
                match error.kind() {
                    std::io::ErrorKind::WouldBlock
                    | std::io::ErrorKind::TimedOut
                    | std::io::ErrorKind::Interrupted => continue,
                    _ => panic!("recvfrom AF_PACKET: {error}"),
                }
            }
            if from.sll_pkttype != PACKET_OUTGOING && matches(&buffer[..n as usize]) {
                return true;
            }
        }
        false
    }

    /// Send one whole Ethernet frame (header included) as it is.
    fn send(&self, frame: &[u8]) {
        let ethertype = u16::from_be_bytes([frame[12], frame[13]]);
        let mut dst = [0u8; 6];
        dst.copy_from_slice(&frame[..6]);
        let address = self.address(ethertype, Some(dst));
        // SAFETY: sendto from a buffer of the stated length to a valid sockaddr_ll.
        let n = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                frame.as_ptr().cast(),
                frame.len(),
                0,
                (&raw const address).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        assert_eq!(
            n,
            frame.len() as isize,
            "sendto AF_PACKET: {}",
            std::io::Error::last_os_error()
        );
    }
}

/// The index of `ifname` in the calling thread's namespace.
fn ifindex(ifname: &str) -> i32 {
    let name = CString::new(ifname).expect("interface name without NUL");
    // SAFETY: if_nametoindex reads a NUL-terminated string; it asks the kernel through a
    // socket of its own, created in the calling thread's namespace.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    assert!(index != 0, "no interface {ifname} in this namespace");
    index as i32
}

/// The Ethernet address of `ifname` in the calling thread's namespace. Not read from
/// /sys/class/net: sysfs shows the namespace it was mounted in, not the thread's.
fn interface_mac(ifname: &str) -> Mac {
    // SAFETY: socket(2) with constant arguments.
    let fd = unsafe { libc::socket(libc::AF_INET6, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
    // SAFETY: fd is a fresh descriptor that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: ifreq is plain data; all zeroes is a valid value.
    let mut request: libc::ifreq = unsafe { std::mem::zeroed() };
    assert!(
        ifname.len() < request.ifr_name.len(),
        "interface name too long"
    );
    for (slot, byte) in request.ifr_name.iter_mut().zip(ifname.bytes()) {
        *slot = byte as libc::c_char;
    }
    // SAFETY: SIOCGIFHWADDR fills the ifreq it is given.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), libc::SIOCGIFHWADDR, &raw mut request) };
    assert_eq!(
        rc,
        0,
        "SIOCGIFHWADDR {ifname}: {}",
        std::io::Error::last_os_error()
    );
    // SAFETY: SIOCGIFHWADDR succeeded, so the union holds the hardware address.
    let data = unsafe { request.ifr_ifru.ifru_hwaddr.sa_data };
    let mut mac = [0u8; 6];
    for (slot, byte) in mac.iter_mut().zip(data) {
        *slot = byte as u8;
    }
    mac
}

/// The Ethernet address the host itself has on `ifname` (a bridge, a veth end): the router
/// a container or the outside sends routed traffic to.
pub fn host_mac(ifname: &str) -> Mac {
    let text = std::fs::read_to_string(format!("/sys/class/net/{ifname}/address"))
        .unwrap_or_else(|e| panic!("no host interface {ifname}: {e}"));
    parse_mac(text.trim())
}

pub fn parse_mac(text: &str) -> Mac {
    let mut mac = [0u8; 6];
    let parts: Vec<&str> = text.split(':').collect();
    assert_eq!(parts.len(), 6, "not an Ethernet address: {text}");
    for (slot, part) in mac.iter_mut().zip(parts) {
        *slot = u8::from_str_radix(part, 16)
            .unwrap_or_else(|_| panic!("not an Ethernet address: {text}"));
    }
    mac
}

/// The Ethernet group address an IPv6 multicast address maps to (33:33 + its last 32 bits).
pub fn multicast_mac(group: Ipv6Addr) -> Mac {
    let o = group.octets();
    [0x33, 0x33, o[12], o[13], o[14], o[15]]
}

/// ff02::1: all nodes on the link.
pub const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);

/// One VLAN tag: its TPID and VLAN id (priority 0).
#[derive(Clone, Copy, Debug)]
pub struct Tag {
    pub tpid: u16,
    pub vid: u16,
}

/// An Ethernet frame: destination, source, the tags outermost first, then the IPv6 packet.
pub fn ethernet(dst: Mac, src: Mac, tags: &[Tag], ipv6_packet: &[u8]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(14 + 4 * tags.len() + ipv6_packet.len());
    frame.extend_from_slice(&dst);
    frame.extend_from_slice(&src);
    for tag in tags {
        frame.extend_from_slice(&tag.tpid.to_be_bytes());
        frame.extend_from_slice(&(tag.vid & 0x0fff).to_be_bytes());
    }
    frame.extend_from_slice(&ETHERTYPE_IPV6.to_be_bytes());
    frame.extend_from_slice(ipv6_packet);
    frame
}

/// An IPv6 packet around `payload` (no extension headers).
pub fn ipv6(
    src: Ipv6Addr,
    dst: Ipv6Addr,
    hop_limit: u8,
    next_header: u8,
    payload: &[u8],
) -> Vec<u8> {
    let length = u16::try_from(payload.len()).expect("payload fits one packet");
    let mut packet = Vec::with_capacity(40 + payload.len());
    packet.extend_from_slice(&[0x60, 0, 0, 0]);
    packet.extend_from_slice(&length.to_be_bytes());
    packet.push(next_header);
    packet.push(hop_limit);
    packet.extend_from_slice(&src.octets());
    packet.extend_from_slice(&dst.octets());
    packet.extend_from_slice(payload);
    packet
}

/// An IPv6 packet carrying a UDP datagram with `data`, checksum filled in.
pub fn udp(src: Ipv6Addr, dst: Ipv6Addr, hop_limit: u8, ports: (u16, u16), data: &[u8]) -> Vec<u8> {
    let length = u16::try_from(8 + data.len()).expect("datagram fits one packet");
    let mut datagram = Vec::with_capacity(8 + data.len());
    datagram.extend_from_slice(&ports.0.to_be_bytes());
    datagram.extend_from_slice(&ports.1.to_be_bytes());
    datagram.extend_from_slice(&length.to_be_bytes());
    datagram.extend_from_slice(&[0, 0]);
    datagram.extend_from_slice(data);
    let mut sum = checksum(src, dst, NEXT_HEADER_UDP, &datagram);
    // RFC 8200 8.1: a UDP checksum that computes to zero is sent as all ones.
    if sum == 0 {
        sum = 0xffff;
    }
    datagram[6..8].copy_from_slice(&sum.to_be_bytes());
    ipv6(src, dst, hop_limit, NEXT_HEADER_UDP, &datagram)
}

/// An IPv6 packet carrying the ICMPv6 `message` (type, code, two checksum bytes, body), its
/// checksum filled in.
pub fn icmpv6(src: Ipv6Addr, dst: Ipv6Addr, hop_limit: u8, message: &[u8]) -> Vec<u8> {
    let mut message = message.to_vec();
    message[2..4].copy_from_slice(&[0, 0]);
    let sum = checksum(src, dst, NEXT_HEADER_ICMPV6, &message);
    message[2..4].copy_from_slice(&sum.to_be_bytes());
    ipv6(src, dst, hop_limit, NEXT_HEADER_ICMPV6, &message)
}

/// The Internet checksum over the IPv6 pseudo-header and an upper-layer packet.
pub fn checksum(src: Ipv6Addr, dst: Ipv6Addr, next_header: u8, upper: &[u8]) -> u16 {
    let mut bytes = Vec::with_capacity(40 + upper.len() + 1);
    bytes.extend_from_slice(&src.octets());
    bytes.extend_from_slice(&dst.octets());
    bytes.extend_from_slice(&(upper.len() as u32).to_be_bytes());
    bytes.extend_from_slice(&[0, 0, 0, next_header]);
    bytes.extend_from_slice(upper);
    if bytes.len() % 2 == 1 {
        bytes.push(0);
    }
    let mut sum: u32 = bytes
        .chunks(2)
        .map(|pair| u32::from(u16::from_be_bytes([pair[0], pair[1]])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// ICMPv6 type, code and a zero checksum, then `body`.
fn message(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut message = vec![kind, 0, 0, 0];
    message.extend_from_slice(body);
    message
}

/// An NDP option: type, length in units of 8 octets, `value` zero-padded to fit.
fn option(kind: u8, value: &[u8]) -> Vec<u8> {
    let units = (2 + value.len()).div_ceil(8);
    let mut option = vec![kind, u8::try_from(units).expect("option fits")];
    option.extend_from_slice(value);
    option.resize(units * 8, 0);
    option
}

/// An NDP option of the experimental type 253 (RFC 4727) carrying `marker`: receivers skip
/// options they do not know (RFC 4861 4.6), so it changes nothing but lets a receiver tell
/// this message from every other.
fn marker_option(marker: &[u8]) -> Vec<u8> {
    option(253, marker)
}

/// ICMPv6 echo request (`data` as its payload).
pub fn echo_request(id: u16, sequence: u16, data: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&id.to_be_bytes());
    body.extend_from_slice(&sequence.to_be_bytes());
    body.extend_from_slice(data);
    message(ICMPV6_ECHO_REQUEST, &body)
}

/// Neighbour solicitation for `target`, with the sender's link-layer address.
pub fn neighbor_solicitation(target: Ipv6Addr, source_mac: Mac, marker: &[u8]) -> Vec<u8> {
    let mut body = vec![0; 4];
    body.extend_from_slice(&target.octets());
    body.extend(option(1, &source_mac));
    body.extend(marker_option(marker));
    message(ICMPV6_NEIGHBOR_SOLICITATION, &body)
}

/// Unsolicited neighbour advertisement (override flag set): "`target` is at `target_mac`".
pub fn neighbor_advertisement(target: Ipv6Addr, target_mac: Mac, marker: &[u8]) -> Vec<u8> {
    let mut body = vec![0x20, 0, 0, 0];
    body.extend_from_slice(&target.octets());
    body.extend(option(2, &target_mac));
    body.extend(marker_option(marker));
    message(ICMPV6_NEIGHBOR_ADVERTISEMENT, &body)
}

/// Router advertisement: "I am a default router for `router_lifetime` seconds" (0: not a
/// default router), with a prefix information option for `prefix`/64, on-link and
/// autonomous (SLAAC), valid for 300 s, and the sender's link-layer address.
pub fn router_advertisement(
    router_lifetime: u16,
    prefix: Ipv6Addr,
    source_mac: Mac,
    marker: &[u8],
) -> Vec<u8> {
    // Current hop limit 64, no M/O flags, router lifetime, reachable time 0, retrans timer 0.
    let mut body = vec![64, 0];
    body.extend_from_slice(&router_lifetime.to_be_bytes());
    body.extend_from_slice(&[0; 8]);
    // Prefix information: length 64, flags L|A, valid 300 s, preferred 300 s, reserved.
    let mut information = vec![64, 0xc0];
    information.extend_from_slice(&300u32.to_be_bytes());
    information.extend_from_slice(&300u32.to_be_bytes());
    information.extend_from_slice(&[0; 4]);
    information.extend_from_slice(&prefix.octets());
    body.extend(option(3, &information));
    body.extend(option(1, &source_mac));
    body.extend(marker_option(marker));
    message(ICMPV6_ROUTER_ADVERTISEMENT, &body)
}

/// Redirect: "to reach `destination`, use `target` (at `target_mac`)".
pub fn redirect(
    target: Ipv6Addr,
    destination: Ipv6Addr,
    target_mac: Mac,
    marker: &[u8],
) -> Vec<u8> {
    let mut body = vec![0; 4];
    body.extend_from_slice(&target.octets());
    body.extend_from_slice(&destination.octets());
    body.extend(option(2, &target_mac));
    body.extend(marker_option(marker));
    message(ICMPV6_REDIRECT, &body)
}
