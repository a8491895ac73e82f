//! The NAT side against a real dockerd, in both userland-proxy modes: published ports on the
//! host's IPv6 address (DNAT, client address kept), hairpin, NAT66 masquerade on and off,
//! SNAT to a chosen address, internal networks, and links. Each check measures Docker's IPv4
//! result and v6guard's IPv6 result in the same run, and Docker's IPv6 result before v6guard.

mod common;

use std::time::Duration;

use common::*;

const READY: Duration = Duration::from_secs(30);

/// One line of the side-by-side report each test prints.
fn report(what: &str, ipv4: &Option<String>, before: &Option<String>, after: &Option<String>) {
    let show = |v: &Option<String>| v.clone().unwrap_or_else(|| "no answer".to_string());
    println!(
        "{what:<48} IPv4/Docker: {:<22} IPv6 before: {:<24} IPv6/v6guard: {}",
        show(ipv4),
        show(before),
        show(after)
    );
}

/// Every NAT-side behaviour with userland-proxy off (the lab's default)...
#[test]
fn nat_with_userland_proxy_off() {
    let Some(_lock) = system_lock() else { return };
    let _mode = ProxyMode::set(false);
    published_ports_hairpin_and_nat66(false);
    internal_network_is_sealed();
    links_open_exposed_ports_with_icc_off();
}

/// ...and the same with it on (one dockerd restart for all of them).
#[test]
fn nat_with_userland_proxy_on() {
    let Some(_lock) = system_lock() else { return };
    let _mode = ProxyMode::set(true);
    published_ports_hairpin_and_nat66(true);
    internal_network_is_sealed();
    links_open_exposed_ports_with_icc_off();
}

fn published_ports_hairpin_and_nat66(proxy: bool) {
    let _table = TableGuard::clean();
    let outside = Outside::up("v6gt-nat-out");
    outside.add_host_address("2001:db8:76::53");
    outside.add_host_address("198.51.100.53");
    let net = Network::create("v6gt-nat", "fd76:6700:0:70::/64", &[]);
    let nomasq = Network::create(
        "v6gt-nat-nomasq",
        "fd76:6700:0:71::/64",
        &["com.docker.network.bridge.enable_ip_masquerade=false"],
    );
    let snat = Network::create(
        "v6gt-nat-snat",
        "fd76:6700:0:72::/64",
        &[
            "com.docker.network.host_ipv6=2001:db8:76::53",
            "com.docker.network.host_ipv4=198.51.100.53",
        ],
    );
    let web = Container::web("v6gt-nat-web", &net.name, &["-p", "18180:80"]);
    let peer = Container::web("v6gt-nat-peer", &net.name, &[]);
    let plain = Container::web("v6gt-nat-plain", &nomasq.name, &[]);
    let snatted = Container::web("v6gt-nat-snatted", &snat.name, &[]);
    let web_v6 = web.ipv6(&net.name);
    let plain_v6 = plain.ipv6(&nomasq.name);
    let plain_v4 = plain.ipv4(&nomasq.name);
    assert!(
        eventually(READY, || peer.connects(&web_v6, 80)),
        "web is up"
    );
    assert!(
        eventually(READY, || web.fetch_ip(OUTSIDE_ADDR, 8000).is_some()),
        "outside is up"
    );

    // Docker alone (IPv4 results do not change when v6guard applies). Requests that should
    // be served are tried up to three times (`answered`); those that may go unanswered once.
    let dnat4 = answered(|| outside.fetch_ip(HOST_ADDR4, 18180));
    let dnat6_before = outside.fetch_ip(HOST_ADDR, 18180);
    let hairpin4 = answered(|| peer.fetch_ip(HOST_ADDR4, 18180));
    let hairpin6_before = peer.fetch_ip(HOST_ADDR, 18180);
    let self4 = answered(|| web.fetch_ip(HOST_ADDR4, 18180));
    let host4 = answered(|| host_fetch_ip(HOST_ADDR4, 18180));
    let masq4 = answered(|| web.fetch_ip(OUTSIDE_ADDR4, 8000));
    let masq6_before = answered(|| web.fetch_ip(OUTSIDE_ADDR, 8000));
    let nomasq4 = answered(|| plain.fetch_ip(OUTSIDE_ADDR4, 8000));
    let snat4 = answered(|| snatted.fetch_ip(OUTSIDE_ADDR4, 8000));

    v6guard_ok(&["apply"]);

    let dnat6 = answered(|| outside.fetch_ip(HOST_ADDR, 18180));
    let hairpin6 = answered(|| peer.fetch_ip(HOST_ADDR, 18180));
    let self6 = answered(|| web.fetch_ip(HOST_ADDR, 18180));
    let host6 = answered(|| host_fetch_ip(HOST_ADDR, 18180));
    let loopback6 = match proxy {
        true => answered(|| host_fetch_ip("::1", 18180)),
        false => host_fetch_ip("::1", 18180),
    };
    let masq6 = answered(|| web.fetch_ip(OUTSIDE_ADDR, 8000));
    let nomasq6 = answered(|| plain.fetch_ip(OUTSIDE_ADDR, 8000));
    let snat6 = answered(|| snatted.fetch_ip(OUTSIDE_ADDR, 8000));

    println!("userland-proxy={proxy}");
    report(
        "outside -> host:18180 (client address seen)",
        &dnat4,
        &dnat6_before,
        &dnat6,
    );
    report(
        "peer container -> host:18180 (hairpin)",
        &hairpin4,
        &hairpin6_before,
        &hairpin6,
    );
    report("container -> its own port via host", &self4, &None, &self6);
    report("host -> its own address:18180", &host4, &None, &host6);
    report(
        "container -> outside, masquerade on",
        &masq4,
        &masq6_before,
        &masq6,
    );
    report(
        "container -> outside, masquerade off",
        &nomasq4,
        &None,
        &nomasq6,
    );
    report(
        "container -> outside, host_ipv4/6 SNAT",
        &snat4,
        &None,
        &snat6,
    );

    // Published on the host's IPv6 address, with the client's real address.
    assert_eq!(
        dnat4.as_deref(),
        Some(OUTSIDE_ADDR4),
        "Docker keeps the IPv4 client address"
    );
    assert_eq!(
        dnat6.as_deref(),
        Some(OUTSIDE_ADDR),
        "v6guard keeps the IPv6 client address"
    );
    if !proxy {
        assert_eq!(
            dnat6_before, None,
            "without the proxy Docker publishes nothing on IPv6"
        );
    } else {
        assert_ne!(
            dnat6_before.as_deref(),
            Some(OUTSIDE_ADDR),
            "docker-proxy hides the IPv6 client address"
        );
    }
    assert!(
        !outside.connects(HOST_ADDR, 18181),
        "an unpublished host port stays closed"
    );

    // Hairpin: another container, the container itself, and the host itself.
    assert!(
        hairpin4.is_some() && hairpin6.is_some(),
        "hairpin from a peer"
    );
    assert!(self4.is_some() && self6.is_some(), "hairpin to itself");
    assert!(
        host4.is_some() && host6.is_some(),
        "the host reaches its own published port"
    );
    // [::1] can only be served by docker-proxy: IPv6 cannot route loopback to a container.
    assert_eq!(
        loopback6.is_some(),
        proxy,
        "[::1]:18180 answers only through docker-proxy"
    );

    // NAT66: masquerade on a ULA network, none when the network turns masquerading off, and
    // SNAT to the network's chosen host_ipv6.
    assert_eq!(masq4.as_deref(), Some(HOST_ADDR4));
    assert_eq!(
        masq6_before.as_deref(),
        Some(web_v6.as_str()),
        "no NAT66 without v6guard"
    );
    assert_eq!(masq6.as_deref(), Some(HOST_ADDR), "NAT66 masquerade");
    assert_eq!(nomasq4.as_deref(), Some(plain_v4.as_str()));
    assert_eq!(
        nomasq6.as_deref(),
        Some(plain_v6.as_str()),
        "masquerade off is honoured"
    );
    assert_eq!(
        snat6.as_deref(),
        Some("2001:db8:76::53"),
        "SNAT to host_ipv6"
    );
    assert_eq!(
        snat4.as_deref(),
        Some("198.51.100.53"),
        "Docker's SNAT to host_ipv4"
    );
}

/// An internal network: members talk, nothing crosses its boundary, either way.
fn internal_network_is_sealed() {
    let _table = TableGuard::clean();
    let outside = Outside::up("v6gt-int-out");
    let net = Network::internal("v6gt-int", "fd76:6700:0:73::/64");
    // Docker gives internal containers no default route; give `a` one by hand, as a
    // compromised container could, so the egress rule is really tested.
    let a = Container::web("v6gt-int-a", &net.name, &["--cap-add", "NET_ADMIN"]);
    let b = Container::web("v6gt-int-b", &net.name, &[]);
    let a_v6 = a.ipv6(&net.name);
    let a_v4 = a.ipv4(&net.name);
    docker(&[
        "exec",
        &a.name,
        "ip",
        "-6",
        "route",
        "replace",
        "default",
        "via",
        "fd76:6700:0:73::1",
    ]);

    assert!(eventually(READY, || b.connects(&a_v6, 80)), "members talk");
    assert!(!outside.connects(&a_v4, 80), "Docker seals IPv4");
    assert!(
        eventually(READY, || outside.connects(&a_v6, 80)),
        "baseline: the outside reaches an internal container over IPv6"
    );
    assert!(
        eventually(READY, || a.fetch_ip(OUTSIDE_ADDR, 8000).is_some()),
        "baseline: and it reaches out"
    );

    v6guard_ok(&["apply"]);

    assert!(
        eventually(READY, || b.connects(&a_v6, 80)),
        "members still talk over IPv6 (NDP intact)"
    );
    assert!(!outside.connects(&a_v6, 80), "nothing gets in");
    assert!(a.fetch_ip(OUTSIDE_ADDR, 8000).is_none(), "nothing gets out");
}

/// `--link` with ICC off on the default bridge: the parent reaches the child's exposed port over
/// IPv6 (as Docker does for IPv4); an unlinked container does not.
fn links_open_exposed_ports_with_icc_off() {
    let _table = TableGuard::clean();
    let child = Container::web("v6gt-link-child", "bridge", &["--expose", "80"]);
    let parent = Container::web(
        "v6gt-link-parent",
        "bridge",
        &["--link", "v6gt-link-child:child"],
    );
    let other = Container::web("v6gt-link-other", "bridge", &[]);
    let child_v6 = child.ipv6("bridge");
    let child_v4 = child.ipv4("bridge");

    assert!(
        eventually(READY, || parent.connects(&child_v4, 80)),
        "Docker opens the link over IPv4"
    );
    assert!(!other.connects(&child_v4, 80), "ICC off over IPv4");
    assert!(
        eventually(READY, || other.connects(&child_v6, 80)),
        "baseline IPv6 leak"
    );

    v6guard_ok(&["apply"]);

    assert!(
        eventually(READY, || parent.connects(&child_v6, 80)),
        "the link works over IPv6"
    );
    assert!(
        !parent.connects(&child_v6, 81),
        "only the child's exposed ports"
    );
    assert!(
        !other.connects(&child_v6, 80),
        "ICC off still applies to the rest"
    );
}
