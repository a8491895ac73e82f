//! Attack traffic against v6guard's ruleset (issue 8): crafted frames sent from inside a
//! container's network namespace (every container has CAP_NET_RAW by default, so any image's
//! code can send them) and from the outside namespace, observed at the victim's interface.
//!
//! Each test applies v6guard first and then sends the attack; each has a control that shows
//! the receiver sees traffic (before apply, or traffic the ruleset must keep allowing), so an
//! attack that "did not arrive" means the firewall stopped it, not that nothing was watching.
//! The frame library is tests/common/frames.rs.

mod common;

use std::net::Ipv6Addr;
use std::time::Duration;

use common::frames::*;
use common::*;

const READY: Duration = Duration::from_secs(30);
/// How long a receiver watches for one frame. A frame crosses a bridge or the host's router in
/// well under a millisecond; this only has to outlast scheduling on a busy machine.
const WINDOW: Duration = Duration::from_millis(400);

/// A container as a neighbour sees it on its one network: namespace, MAC, IPv6 address.
struct Peer {
    ns: Namespace,
    mac: Mac,
    addr: Ipv6Addr,
}

impl Peer {
    fn of(container: &Container, network: &str) -> Peer {
        let ns = Namespace::container(&container.name);
        let mac = ns.mac("eth0");
        let addr = container.ipv6(network);
        let addr = addr
            .parse()
            .unwrap_or_else(|e| panic!("{} has a bad IPv6 address {addr}: {e}", container.name));
        Peer { ns, mac, addr }
    }

    /// Send `frame` from this container's eth0; whether `marker` arrived at `to`'s eth0.
    fn reaches(&self, to: &Peer, frame: Vec<u8>, marker: &[u8]) -> bool {
        arrives(
            &self.ns,
            "eth0",
            frame,
            &to.ns,
            "eth0",
            WINDOW,
            carries(marker),
        )
    }
}

/// The outside namespace's end of its link, and the host's end (the router it sends to).
struct OutsideLink {
    ns: Namespace,
    ifname: String,
    mac: Mac,
    host_mac: Mac,
}

impl OutsideLink {
    fn of(outside: &Outside) -> OutsideLink {
        let names = lib_sh_output(&format!("v6g_outside_ifnames {}", outside.name));
        let mut names = names.split_whitespace();
        let host_if = names.next().expect("host ifname");
        let ifname = names.next().expect("namespace ifname").to_string();
        let ns = Namespace::named(&outside.name);
        let mac = ns.mac(&ifname);
        OutsideLink {
            ns,
            ifname,
            mac,
            host_mac: host_mac(host_if),
        }
    }
}

/// The host's bridge for a Docker network (`br-` and the first 12 hex digits of its id).
fn bridge(network: &str) -> String {
    let id = docker(&["network", "inspect", "-f", "{{.Id}}", network]);
    format!("br-{}", &id.trim()[..12])
}

/// The host's link-local address on `ifname`: the router's address on that link.
fn host_link_local(ifname: &str) -> Ipv6Addr {
    let json = run_ok(
        "ip",
        &["-j", "-6", "addr", "show", "dev", ifname, "scope", "link"],
    );
    let parsed: serde_json::Value = serde_json::from_str(&json).expect("ip -j is JSON");
    let local = parsed[0]["addr_info"]
        .as_array()
        .into_iter()
        .flatten()
        .find_map(|info| info["local"].as_str())
        .unwrap_or_else(|| panic!("{ifname} has no link-local address: {json}"));
    local.parse().expect("a link-local address")
}

fn addr(text: &str) -> Ipv6Addr {
    text.parse().expect("an IPv6 address")
}

/// For a control, which must arrive: up to three sends, so one frame lost on a busy machine
/// (or while the host still resolves a neighbour) does not fail the test. An attack frame is
/// sent once.
fn within_three(mut send: impl FnMut() -> bool) -> bool {
    (0..3).any(|_| send())
}

/// `docker exec NAME ip -6 ARGS...`: the container's own view of its addresses or routes.
fn ip6_in(container: &Container, args: &[&str]) -> String {
    let mut all = vec!["exec", &container.name, "ip", "-6"];
    all.extend(args);
    docker(&all)
}

/// Whether `ip -6 addr` output lists an address inside the /64 that starts with `prefix`.
fn has_address_in(listing: &str, prefix: &str) -> bool {
    let prefix = addr(prefix).segments();
    listing
        .split_whitespace()
        .filter_map(|word| word.split('/').next()?.parse::<Ipv6Addr>().ok())
        .any(|address| address.segments()[..4] == prefix[..4])
}

/// The frame library's checksums: a packet that carries its checksum sums to zero.
#[test]
fn frame_checksums_verify() {
    let src = addr("fd76:6700:0:90::2");
    let dst = addr("fd76:6700:0:90::3");
    let packet = udp(src, dst, 64, (4000, 5000), b"odd-length marker");
    assert_eq!(checksum(src, dst, NEXT_HEADER_UDP, &packet[40..]), 0);
    let packet = icmpv6(src, dst, 255, &neighbor_solicitation(dst, [2; 6], b"m"));
    assert_eq!(checksum(src, dst, NEXT_HEADER_ICMPV6, &packet[40..]), 0);
    let frame = ethernet(
        [1; 6],
        [2; 6],
        &[Tag {
            tpid: TPID_8021Q,
            vid: 5,
        }],
        &packet,
    );
    assert_eq!(&frame[12..18], &[0x81, 0x00, 0x00, 0x05, 0x86, 0xdd]);
}

/// Threat: a neighbouring container on an ICC-off network (any image author's code).
/// Hole: v6guard's ICC drop sees bridged frames only through br_netfilter, which gives
/// VLAN-tagged frames to no IPv6 hook (net.bridge.bridge-nf-filter-vlan-tagged=0), while the
/// bridge forwards them to the victim like any other frame. A priority tag (VID 0) is even
/// handed to the victim's IPv6 stack as if untagged.
#[test]
fn icc_off_drops_vlan_tagged_frames() {
    let Some(_lock) = system_lock() else { return };
    let _table = TableGuard::clean();
    let net = Network::create(
        "v6gt-sec-icc",
        "fd76:6700:0:90::/64",
        &["com.docker.network.bridge.enable_icc=false"],
    );
    let a = Container::web("v6gt-sec-icc-a", &net.name, &[]);
    let b = Container::web("v6gt-sec-icc-b", &net.name, &[]);
    let (a, b) = (Peer::of(&a, &net.name), Peer::of(&b, &net.name));
    let send = |label: &str, tags: &[Tag]| {
        let marker = marker(label);
        let packet = udp(a.addr, b.addr, 64, (40000, 9), &marker);
        a.reaches(&b, ethernet(b.mac, a.mac, tags, &packet), &marker)
    };

    assert!(
        within_three(|| send("icc-before", &[])),
        "control: before apply, an untagged UDP frame from A reaches B"
    );

    v6guard_ok(&["apply"]);

    assert!(
        !send("icc-untagged", &[]),
        "control: after apply, ICC off drops an untagged UDP frame from A to B"
    );
    let q = |vid| Tag {
        tpid: TPID_8021Q,
        vid,
    };
    let ad = |vid| Tag {
        tpid: TPID_8021AD,
        vid,
    };
    let leaks: Vec<&str> = [
        ("802.1Q VID 0", vec![q(0)]),
        ("802.1Q VID 5", vec![q(5)]),
        ("802.1ad VID 7 + 802.1Q VID 5", vec![ad(7), q(5)]),
    ]
    .into_iter()
    .filter(|(label, tags)| send(label, tags))
    .map(|(label, _)| label)
    .collect();
    assert!(
        leaks.is_empty(),
        "ICC off must drop VLAN-tagged frames too; these reached B after apply: {leaks:?}"
    );
}

/// A link-local source for forged router advertisements (RFC 4861 wants one; any will do).
const ATTACKER_LL: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0xbad, 1);

/// A router advertisement from `from` to all nodes: a default router for `lifetime` seconds
/// (0: not a default router) offering `prefix`/64 for SLAAC, inside `tags`.
fn router_advertisement_frame(
    from: &Peer,
    tags: &[Tag],
    lifetime: u16,
    prefix: &str,
    marker: &[u8],
) -> Vec<u8> {
    let message = router_advertisement(lifetime, addr(prefix), from.mac, marker);
    let packet = icmpv6(ATTACKER_LL, ALL_NODES, 255, &message);
    ethernet(multicast_mac(ALL_NODES), from.mac, tags, &packet)
}

/// A redirect from `from` to `to`, forged to come from the router (`router_ll`, the host's
/// link-local address on the bridge): "reach the outside through me".
fn redirect_frame(from: &Peer, to: &Peer, router_ll: Ipv6Addr, marker: &[u8]) -> Vec<u8> {
    let message = redirect(ATTACKER_LL, addr(OUTSIDE_ADDR), from.mac, marker);
    ethernet(
        to.mac,
        from.mac,
        &[],
        &icmpv6(router_ll, to.addr, 255, &message),
    )
}

/// Refuse to send router advertisements onto `bridge` unless the host ignores them there (a
/// router, forwarding on, does unless accept_ra=2): the test must never change host routes.
fn assert_host_ignores_router_advertisements(bridge: &str) {
    let sysctl = |key: &str| {
        std::fs::read_to_string(format!("/proc/sys/net/ipv6/conf/{bridge}/{key}"))
            .unwrap_or_default()
            .trim()
            .to_string()
    };
    assert!(
        sysctl("forwarding") == "1" && sysctl("accept_ra") != "2",
        "refusing to send router advertisements: the host's {bridge} would accept them"
    );
}

/// Threat: a neighbouring container (any image author's code) on any network, ICC on or off.
/// Hole: no RA guard. A container can advertise itself as a router (type 134) and hand its
/// neighbours a prefix to configure, or send them redirects (type 137); v6guard forwards both
/// across an ICC-on bridge. Docker's containers accept router advertisements (accept_ra=1,
/// forwarding=0), so one RA gives a neighbour a new address and a default route through the
/// attacker. A priority tag (802.1Q VID 0) is checked too: the victim's stack handles such a
/// frame as untagged, so a guard that only sees untagged frames would miss it. On an ICC-off
/// bridge the same messages are checked as well.
#[test]
fn router_advertisements_and_redirects_from_containers_are_dropped() {
    let Some(_lock) = system_lock() else { return };
    let _table = TableGuard::clean();
    let on = Network::create(
        "v6gt-sec-ra",
        "fd76:6700:0:91::/64",
        &["com.docker.network.bridge.enable_icc=true"],
    );
    let off = Network::create(
        "v6gt-sec-raoff",
        "fd76:6700:0:9b::/64",
        &["com.docker.network.bridge.enable_icc=false"],
    );
    let a = Container::web("v6gt-sec-ra-a", &on.name, &[]);
    let b_container = Container::web("v6gt-sec-ra-b", &on.name, &[]);
    let c = Container::web("v6gt-sec-ra-c", &off.name, &[]);
    let d = Container::web("v6gt-sec-ra-d", &off.name, &[]);
    let (a, b) = (Peer::of(&a, &on.name), Peer::of(&b_container, &on.name));
    let (c, d) = (Peer::of(&c, &off.name), Peer::of(&d, &off.name));
    let (on_br, off_br) = (bridge(&on.name), bridge(&off.name));
    assert_host_ignores_router_advertisements(&on_br);
    assert_host_ignores_router_advertisements(&off_br);
    let ra = |from: &Peer, to: &Peer, label: &str, tags: &[Tag], lifetime: u16, prefix: &str| {
        let marker = marker(label);
        let frame = router_advertisement_frame(from, tags, lifetime, prefix, &marker);
        from.reaches(to, frame, &marker)
    };
    let b_addresses = || ip6_in(&b_container, &["addr"]);

    // Baseline: without v6guard a neighbour's RA (router lifetime 0, prefix only) arrives
    // and B configures an address from it, so the impact checked after apply is real.
    assert!(
        within_three(|| ra(&a, &b, "ra-before", &[], 0, "2001:db8:bad:1::")),
        "control: before apply, A's router advertisement reaches B"
    );
    assert!(
        eventually(READY, || has_address_in(&b_addresses(), "2001:db8:bad:1::")),
        "baseline: B configures a SLAAC address from a neighbour's router advertisement"
    );

    v6guard_ok(&["apply"]);

    let ns_marker = marker("ra-control-ns");
    let solicitation = icmpv6(
        a.addr,
        b.addr,
        255,
        &neighbor_solicitation(b.addr, a.mac, &ns_marker),
    );
    assert!(
        within_three(|| a.reaches(&b, ethernet(b.mac, a.mac, &[], &solicitation), &ns_marker)),
        "control: after apply, a neighbour solicitation from A still reaches B (ICC on)"
    );

    let mut failures = Vec::new();
    let vid0 = [Tag {
        tpid: TPID_8021Q,
        vid: 0,
    }];
    if ra(&a, &b, "ra-after", &[], 1800, "2001:db8:bad::") {
        failures.push("ICC on: A's router advertisement reached B".to_string());
    }
    if ra(&a, &b, "ra-after-vid0", &vid0, 1800, "2001:db8:bad:2::") {
        failures.push("ICC on: A's router advertisement in a VID 0 tag reached B".to_string());
    }
    let routes = ip6_in(&b_container, &["route"]);
    if [
        "default via fe80::bad:1",
        "2001:db8:bad::/64",
        "2001:db8:bad:2::/64",
    ]
    .iter()
    .any(|route| routes.contains(route))
    {
        failures.push(format!(
            "ICC on: B took routes from A's advertisements:\n{routes}"
        ));
    }
    let addresses = b_addresses();
    if has_address_in(&addresses, "2001:db8:bad::")
        || has_address_in(&addresses, "2001:db8:bad:2::")
    {
        failures.push(format!(
            "ICC on: B configured an address from A's advertisements:\n{addresses}"
        ));
    }
    let redirect_marker = marker("ra-redirect");
    let frame = redirect_frame(&a, &b, host_link_local(&on_br), &redirect_marker);
    if a.reaches(&b, frame, &redirect_marker) {
        failures.push("ICC on: A's redirect reached B".to_string());
    }
    if ra(&c, &d, "ra-off", &[], 1800, "2001:db8:bad:3::") {
        failures.push("ICC off: C's router advertisement reached D".to_string());
    }
    let redirect_marker = marker("ra-off-redirect");
    let frame = redirect_frame(&c, &d, host_link_local(&off_br), &redirect_marker);
    if c.reaches(&d, frame, &redirect_marker) {
        failures.push("ICC off: C's redirect reached D".to_string());
    }
    assert!(
        failures.is_empty(),
        "router advertisements and redirects from a container must be dropped:\n{}",
        failures.join("\n")
    );
}

/// Threat: a container on one network (any image author's code) reaching a container on
/// another network, or on an `--internal` one. Hole: the isolation rules accept neighbour
/// solicitations and advertisements before they drop cross-network traffic, whatever their
/// hop limit and wherever they are routed, so a container can push NDP messages (with any
/// payload in their options) through the host into a network it must not reach. NDP is
/// link-local by nature: one the host routes is never legitimate.
#[test]
fn ndp_does_not_cross_network_isolation() {
    let Some(_lock) = system_lock() else { return };
    let _table = TableGuard::clean();
    let n1 = Network::create("v6gt-sec-ndp1", "fd76:6700:0:92::/64", &[]);
    let n2 = Network::create("v6gt-sec-ndp2", "fd76:6700:0:93::/64", &[]);
    let n3 = Network::internal("v6gt-sec-ndp3", "fd76:6700:0:94::/64");
    let off = Network::create(
        "v6gt-sec-ndpoff",
        "fd76:6700:0:95::/64",
        &["com.docker.network.bridge.enable_icc=false"],
    );
    let attacker = Container::web("v6gt-sec-ndp-a", &n1.name, &[]);
    let friend = Container::web("v6gt-sec-ndp-f", &n1.name, &[]);
    let victim2 = Container::web("v6gt-sec-ndp-v2", &n2.name, &[]);
    let victim3 = Container::web("v6gt-sec-ndp-v3", &n3.name, &[]);
    let c1 = Container::web("v6gt-sec-ndp-c1", &off.name, &[]);
    let c2 = Container::web("v6gt-sec-ndp-c2", &off.name, &[]);
    let a = Peer::of(&attacker, &n1.name);
    let friend_v6 = friend.ipv6(&n1.name);
    let v2 = Peer::of(&victim2, &n2.name);
    let v3 = Peer::of(&victim3, &n3.name);
    let (c1, c2) = (Peer::of(&c1, &off.name), Peer::of(&c2, &off.name));
    // Routed frames need the host to reach each victim: prove them up first.
    for victim in [&v2, &v3] {
        let address = victim.addr.to_string();
        assert!(
            eventually(READY, || host_connects(&address, 80)),
            "{address} is up"
        );
    }
    let router = host_mac(&bridge(&n1.name));

    v6guard_ok(&["apply"]);

    let ns_marker = marker("ndp-control-ns");
    let solicitation = icmpv6(
        c1.addr,
        c2.addr,
        255,
        &neighbor_solicitation(c2.addr, c1.mac, &ns_marker),
    );
    assert!(
        within_three(|| c1.reaches(
            &c2,
            ethernet(c2.mac, c1.mac, &[], &solicitation),
            &ns_marker
        )),
        "control: NDP within one ICC-off network still works after apply"
    );
    // (Retried: on Docker 26 the friend's address may still be finishing setup.)
    assert!(
        eventually(READY, || run(
            DOCKER,
            &[
                "exec",
                &attacker.name,
                "ping",
                "-c",
                "1",
                "-W",
                "2",
                &friend_v6
            ]
        )
        .status
        .success()),
        "control: ping6 within an ICC-on network works after apply"
    );

    let mut leaks = Vec::new();
    for (victim, network) in [(&v2, "another network"), (&v3, "an internal network")] {
        for hop_limit in [64, 255] {
            let ns_marker = marker("ndp-ns");
            let message = neighbor_solicitation(victim.addr, a.mac, &ns_marker);
            let packet = icmpv6(a.addr, victim.addr, hop_limit, &message);
            if a.reaches(victim, ethernet(router, a.mac, &[], &packet), &ns_marker) {
                leaks.push(format!("NS, hop limit {hop_limit}, to {network}"));
            }
            let na_marker = marker("ndp-na");
            let message = neighbor_advertisement(a.addr, a.mac, &na_marker);
            let packet = icmpv6(a.addr, victim.addr, hop_limit, &message);
            if a.reaches(victim, ethernet(router, a.mac, &[], &packet), &na_marker) {
                leaks.push(format!("NA, hop limit {hop_limit}, to {network}"));
            }
        }
    }
    assert!(
        leaks.is_empty(),
        "NDP routed through the host must not cross isolation; these arrived: {leaks:?}"
    );
}

/// Threat: a container (any image author's code) sending with a forged source address.
/// Hole: nothing checks the source of what a container sends, so it can spoof another
/// network's addresses (and the masquerade rule for that network then launders the packet
/// into the host's own address) or any address at all, to attack or frame others outside.
#[test]
fn containers_cannot_send_with_forged_sources() {
    let Some(_lock) = system_lock() else { return };
    let _table = TableGuard::clean();
    let outside = Outside::up("v6gt-sec-out");
    let n1 = Network::create("v6gt-sec-spf1", "fd76:6700:0:96::/64", &[]);
    let _n2 = Network::create("v6gt-sec-spf2", "fd76:6700:0:97::/64", &[]);
    let sender = Container::web("v6gt-sec-spf-a", &n1.name, &[]);
    assert!(
        eventually(READY, || sender.fetch_ip(OUTSIDE_ADDR, 8000).is_some()),
        "the container reaches the outside"
    );
    let a = Peer::of(&sender, &n1.name);
    let link = OutsideLink::of(&outside);
    let router = host_mac(&bridge(&n1.name));
    let send = |label: &str, source: Ipv6Addr| {
        let marker = marker(label);
        let packet = udp(source, addr(OUTSIDE_ADDR), 64, (40000, 9), &marker);
        arrives(
            &a.ns,
            "eth0",
            ethernet(router, a.mac, &[], &packet),
            &link.ns,
            &link.ifname,
            WINDOW,
            carries(&marker),
        )
    };

    v6guard_ok(&["apply"]);

    assert!(
        within_three(|| send("spoof-control", a.addr)),
        "control: UDP from the container's own address reaches the outside"
    );
    let leaks: Vec<&str> = [
        ("a source in another Docker network", "fd76:6700:0:97::99"),
        ("a source outside every Docker network", "2001:db8:99::1"),
    ]
    .into_iter()
    .filter(|(label, source)| send(label, addr(source)))
    .map(|(label, _)| label)
    .collect();
    assert!(
        leaks.is_empty(),
        "a container's forged source must be dropped; these reached the outside: {leaks:?}"
    );
}

/// Threat: a LAN host (anyone routed to the Docker host) forging a source address inside a
/// Docker network's prefix. Hole: nothing checks that a packet claiming a Docker network's
/// address came from that network's bridge. So (1) an outside host can reach a published
/// port as if it were a container of a Docker network (replies then go to that network, not
/// to the sender), (2) the NAT66 masquerade rule for that prefix rewrites a forged packet
/// the host routes back out into one from the host's own address: the host launders it, and
/// (3) a socket of the host itself (docker-proxy's, whose `allow_from` is a source check)
/// takes the forged source at its word.
#[test]
fn outside_cannot_forge_docker_sources() {
    let Some(_lock) = system_lock() else { return };
    let _table = TableGuard::clean();
    let outside = Outside::up("v6gt-sec-out");
    let net = Network::create("v6gt-sec-fwd", "fd76:6700:0:98::/64", &[]);
    let _other = Network::create("v6gt-sec-fwd2", "fd76:6700:0:99::/64", &[]);
    let server = Container::web("v6gt-sec-fwd-web", &net.name, &["-p", "18491:9999/udp"]);
    let web = Peer::of(&server, &net.name);
    let web_v6 = web.addr.to_string();
    assert!(
        eventually(READY, || outside.connects(&web_v6, 80)),
        "the container is up and routed"
    );
    let link = OutsideLink::of(&outside);
    // From outside to the container's published UDP port, directly or through the host's
    // address (DNAT); whether it reaches the container.
    let to_web = |label: &str, source: &str, destination: &str, port: u16| {
        let marker = marker(label);
        let packet = udp(addr(source), addr(destination), 64, (40000, port), &marker);
        arrives(
            &link.ns,
            &link.ifname,
            ethernet(link.host_mac, link.mac, &[], &packet),
            &web.ns,
            "eth0",
            WINDOW,
            carries(&marker),
        )
    };
    // From outside through the host back to the outside namespace itself; whether it comes
    // back from `returned_from` (the receiver ignores the copy it sent).
    let reflected = |label: &str, source: &str, returned_from: &str| {
        let marker = marker(label);
        let packet = udp(addr(source), addr(OUTSIDE_ADDR), 64, (40000, 9), &marker);
        let has_marker = carries(&marker);
        let returned_from = addr(returned_from).octets();
        arrives(
            &link.ns,
            &link.ifname,
            ethernet(link.host_mac, link.mac, &[], &packet),
            &link.ns,
            &link.ifname,
            WINDOW,
            move |frame| frame.get(22..38) == Some(&returned_from[..]) && has_marker(frame),
        )
    };

    v6guard_ok(&["apply"]);

    assert!(
        within_three(|| to_web("fwd-control", OUTSIDE_ADDR, &web_v6, 9999)),
        "control: the outside's real address reaches the published UDP port on the container"
    );
    assert!(
        within_three(|| to_web("fwd-control-dnat", OUTSIDE_ADDR, HOST_ADDR, 18491)),
        "control: the outside's real address reaches the published UDP port via the host"
    );
    assert!(
        within_three(|| reflected("fwd-control-reflect", OUTSIDE_ADDR, OUTSIDE_ADDR)),
        "control: the host routes a packet from the outside back to the outside, untouched"
    );
    // To a UDP socket of the host itself (docker-proxy's ports, whose allow_from is a source
    // check, are such sockets): whether the host's stack delivers it.
    let host_socket = std::net::UdpSocket::bind(format!("[{HOST_ADDR}]:18493")).expect("bind");
    host_socket
        .set_read_timeout(Some(WINDOW))
        .expect("read timeout");
    let to_host = |label: &str, source: &str| {
        let marker = marker(label);
        let packet = udp(addr(source), addr(HOST_ADDR), 64, (40000, 18493), &marker);
        send(
            &link.ns,
            &link.ifname,
            ethernet(link.host_mac, link.mac, &[], &packet),
        );
        let mut buffer = [0u8; 512];
        while let Ok(n) = host_socket.recv(&mut buffer) {
            if carries(&marker)(&buffer[..n]) {
                return true;
            }
        }
        false
    };
    assert!(
        within_three(|| to_host("host-control", OUTSIDE_ADDR)),
        "control: the outside's real address reaches a UDP socket of the host"
    );
    let mut leaks = Vec::new();
    for (prefix, source) in [
        ("its own network", "fd76:6700:0:98::99"),
        ("another Docker network", "fd76:6700:0:99::99"),
    ] {
        if to_host("host", source) {
            leaks.push(format!(
                "outside, source in {prefix}, reached a socket of the host itself"
            ));
        }
        if to_web("fwd-direct", source, &web_v6, 9999) {
            leaks.push(format!(
                "outside, source in {prefix}, reached the container directly"
            ));
        }
        if to_web("fwd-dnat", source, HOST_ADDR, 18491) {
            leaks.push(format!(
                "outside, source in {prefix}, reached the container via DNAT"
            ));
        }
        if reflected("fwd-reflect", source, HOST_ADDR) {
            leaks.push(format!(
                "outside, source in {prefix}, came back masqueraded to {HOST_ADDR}"
            ));
        }
    }
    assert!(
        leaks.is_empty(),
        "a Docker network's source arriving from outside must be dropped:\n{}",
        leaks.join("\n")
    );
}

/// Threat: a LAN host. Hole 2: a port published only on one host address
/// (`-p [HOST_IP]:PORT:80`) must be reachable only there, through DNAT; v6guard also opens
/// the container's own address on the container port, so the LAN reaches the container
/// directly, bypassing the binding the user chose.
#[test]
fn host_ip_binding_does_not_open_the_container_address() {
    let Some(_lock) = system_lock() else { return };
    let _table = TableGuard::clean();
    let outside = Outside::up("v6gt-sec-out");
    let net = Network::create("v6gt-sec-hip", "fd76:6700:0:9a::/64", &[]);
    let binding = format!("[{HOST_ADDR}]:18490:80");
    let web = Container::web("v6gt-sec-hip-web", &net.name, &["-p", &binding]);
    let web_v6 = web.ipv6(&net.name);
    assert!(
        eventually(READY, || host_connects(&web_v6, 80)),
        "the container is up"
    );

    v6guard_ok(&["apply"]);

    assert_eq!(
        answered(|| outside.fetch_ip(HOST_ADDR, 18490)).as_deref(),
        Some(OUTSIDE_ADDR),
        "control: the outside reaches [{HOST_ADDR}]:18490 through DNAT, client address kept"
    );
    assert!(
        !outside.connects(&web_v6, 80),
        "a port published only on {HOST_ADDR} must not open [{web_v6}]:80 to the outside"
    );
}
