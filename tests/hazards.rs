//! Host hazards read from a real kernel: the host's own facts (read only), and a throwaway
//! pair of network namespaces where a router advertisement teaches an "uplink" its default
//! route, so forwarding and accept_ra can be changed without touching the host's.

mod common;

use std::time::Duration;

use common::frames::{
    self, Namespace, arrives, carries, icmpv6, marker, multicast_mac, router_advertisement,
};
use common::{Netns, eventually, system_lock};
use std::net::Ipv6Addr;
use v6guard::hazards::{BridgeNetfilter, HazardKind, HostFacts, hazards, read_host_facts};
use v6guard::snapshot::Snapshot;

fn lab_snapshot() -> Snapshot {
    serde_json::from_str(include_str!("fixtures/lab-snapshot.json")).expect("lab snapshot")
}

#[test]
fn the_hosts_facts_read_and_agree_with_proc() {
    let Some(_lock) = system_lock() else { return };
    let facts = read_host_facts().expect("read the host's facts");
    let sysctl = std::fs::read_to_string("/proc/sys/net/bridge/bridge-nf-call-ip6tables");
    let expected = match sysctl.as_deref().map(str::trim) {
        Err(_) => BridgeNetfilter::NotLoaded,
        Ok("1") => BridgeNetfilter::On,
        Ok(_) => BridgeNetfilter::Off,
    };
    assert_eq!(facts.bridge_netfilter, expected);
    let forwarding = std::fs::read_to_string("/proc/sys/net/ipv6/conf/all/forwarding")
        .is_ok_and(|v| v.trim() == "1");
    assert_eq!(facts.ipv6_forwarding, forwarding);
    assert!(
        !facts.nft_tables.is_empty() || facts.nft_chains.is_empty(),
        "chains live in tables"
    );
    // Whatever the host holds, judging it must work.
    let _ = hazards(&facts, &lab_snapshot());
}

/// The router's link-local source address for the advertisement.
const ROUTER_LL: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0x76, 1);
const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);

fn sysctl(netns: &Netns, assignment: &str) {
    let out = netns.exec("sysctl", &["-qw", assignment]);
    assert!(
        out.status.success(),
        "sysctl -w {assignment} in {}",
        netns.name
    );
}

fn ip(netns: &Netns, args: &[&str]) {
    let out = netns.exec("ip", args);
    assert!(
        out.status.success(),
        "ip {args:?} in {}: {}",
        netns.name,
        String::from_utf8_lossy(&out.stderr)
    );
}

fn facts_in(netns: &Netns) -> HostFacts {
    Namespace::named(&netns.name).run(|| read_host_facts().expect("read facts in the namespace"))
}

fn kinds(facts: &HostFacts) -> Vec<HazardKind> {
    hazards(facts, &lab_snapshot())
        .iter()
        .map(|h| h.kind)
        .collect()
}

#[test]
fn an_ra_default_route_on_a_forwarding_uplink() {
    let Some(_lock) = system_lock() else { return };
    let uplink = Netns::new("v6gt-hz-up");
    let router = Netns::new("v6gt-hz-rtr");
    ip(
        &uplink,
        &[
            "link",
            "add",
            "v6gthz0",
            "type",
            "veth",
            "peer",
            "name",
            "v6gthz1",
            "netns",
            &router.name,
        ],
    );
    // A router that keeps the RA route: forwarding on, accept_ra 2.
    sysctl(&uplink, "net.ipv6.conf.all.forwarding=1");
    sysctl(&uplink, "net.ipv6.conf.v6gthz0.accept_ra=2");
    ip(&uplink, &["link", "set", "v6gthz0", "up"]);
    ip(&router, &["link", "set", "v6gthz1", "up"]);

    let router_ns = Namespace::named(&router.name);
    let uplink_ns = Namespace::named(&uplink.name);
    let router_mac = router_ns.mac("v6gthz1");
    let mark = marker("hazards-ra");
    let message = router_advertisement(1800, "2001:db8:77::".parse().unwrap(), router_mac, &mark);
    let frame = frames::ethernet(
        multicast_mac(ALL_NODES),
        router_mac,
        &[],
        &icmpv6(ROUTER_LL, ALL_NODES, 255, &message),
    );
    let learned = eventually(Duration::from_secs(10), || {
        arrives(
            &router_ns,
            "v6gthz1",
            frame.clone(),
            &uplink_ns,
            "v6gthz0",
            Duration::from_millis(500),
            carries(&mark),
        );
        facts_in(&uplink)
            .uplinks
            .iter()
            .any(|u| u.interface == "v6gthz0" && u.from_ra)
    });
    assert!(learned, "the uplink learned its default route from the RA");

    let facts = facts_in(&uplink);
    assert!(facts.ipv6_forwarding);
    assert!(
        !kinds(&facts).contains(&HazardKind::RaDefaultRouteExpires),
        "accept_ra 2 renews it: {facts:?}"
    );

    sysctl(&uplink, "net.ipv6.conf.v6gthz0.accept_ra=1");
    let found = hazards(&facts_in(&uplink), &lab_snapshot());
    let ra: Vec<_> = found
        .iter()
        .filter(|h| h.kind == HazardKind::RaDefaultRouteExpires)
        .collect();
    assert_eq!(ra.len(), 1, "{found:?}");
    assert!(ra[0].fix.contains("net.ipv6.conf.v6gthz0.accept_ra=2"));
}

#[test]
fn a_foreign_forward_chain_is_named() {
    let Some(_lock) = system_lock() else { return };
    let netns = Netns::new("v6gt-hz-nft");
    let out = netns.exec(
        "nft",
        &[
            "add table ip6 other; add chain ip6 other gate { type filter hook forward priority 5; policy drop; }; \
             add table ip6 v6guard; add chain ip6 v6guard forward { type filter hook forward priority 0; policy accept; }",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let found = hazards(&facts_in(&netns), &lab_snapshot());
    let foreign: Vec<&str> = found
        .iter()
        .filter(|h| h.kind == HazardKind::ForeignForwardChain)
        .map(|h| h.message.as_str())
        .collect();
    assert_eq!(
        foreign.len(),
        1,
        "v6guard's own chain is not foreign: {foreign:?}"
    );
    assert!(
        foreign[0].starts_with(
            "table ip6 other has base chain gate on the forward hook (priority 5, policy drop)"
        ),
        "{}",
        foreign[0]
    );
}
