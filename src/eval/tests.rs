//! The planner's behaviour on hand-built Snapshots, asked packet by packet.

use std::net::{IpAddr, Ipv6Addr};

use super::*;
use crate::plan::{PlanInputs, plan};
use crate::ruleset::{EtherType, Icmpv6Type};
use crate::snapshot::{PortBinding, Protocol, Snapshot};
use crate::testing::{container, lab_snapshot};

/// The lab (docker0 ICC off, web on br-0123456789ab ICC on, custom on mybr0 ICC off) with two
/// containers on docker0 and a second one on each user network.
fn snapshot() -> Snapshot {
    let mut snapshot = lab_snapshot();
    snapshot.containers.extend([
        container("a1", "n0", "fd76:6700:0:1::2", vec![]),
        container("a2", "n0", "fd76:6700:0:1::3", vec![]),
        container("web2", "n1", "fd76:6700:0:10::3", vec![]),
        container("db2", "n2", "fd76:6700:0:11::3", vec![]),
    ]);
    snapshot
}

fn addr(text: &str) -> Ipv6Addr {
    text.parse().unwrap()
}

const A1: &str = "fd76:6700:0:1::2";
const A2: &str = "fd76:6700:0:1::3";
const WEB1: &str = "fd76:6700:0:10::2";
const WEB2: &str = "fd76:6700:0:10::3";
const DB: &str = "fd76:6700:0:11::2";
const OUTSIDE: &str = "2001:db8:ffff::1";
const HOST: &str = "2001:db8:76::1";
const HOST2: &str = "2001:db8:76::2";

/// Where the lab routes an address: its network's bridge, else the uplink.
fn route(snapshot: &Snapshot) -> impl Fn(Ipv6Addr) -> String + '_ {
    |address| {
        snapshot
            .networks
            .iter()
            .find(|n| n.ipv6_subnets.iter().any(|s| s.contains(&address)))
            .map_or_else(|| "eth0".to_string(), |n| n.bridge.clone())
    }
}

fn tcp(port: u16) -> L4 {
    L4::Transport {
        protocol: Protocol::Tcp,
        port,
    }
}

fn icmp(t: Icmpv6Type) -> L4 {
    L4::Icmpv6 {
        icmp_type: t.number(),
    }
}

/// A packet from `source` arriving on `iif`, routed (or bridged) to `destination`.
fn packet(snapshot: &Snapshot, iif: &str, source: &str, destination: &str, l4: L4) -> Packet {
    let oif = route(snapshot)(addr(destination));
    Packet::new(iif, &oif, addr(source), addr(destination), l4)
}

fn forward(snapshot: &Snapshot, packet: &Packet) -> Verdict {
    forward_verdict(&plan(snapshot, &PlanInputs::default()), packet)
}

fn accepted(snapshot: &Snapshot, packet: &Packet) -> bool {
    forward(snapshot, packet).accepted
}

#[test]
fn icc_off_drops_same_bridge_tcp() {
    let s = snapshot();
    let verdict = forward(&s, &packet(&s, "docker0", A1, A2, tcp(80)));
    assert!(!verdict.accepted);
    assert_eq!(verdict.rule.as_deref(), Some("icc off: network bridge"));
}

#[test]
fn icc_on_accepts_same_bridge_tcp() {
    let s = snapshot();
    let verdict = forward(&s, &packet(&s, "br-0123456789ab", WEB2, WEB1, tcp(5000)));
    assert!(verdict.accepted);
    assert_eq!(verdict.rule.as_deref(), Some("icc on: network web"));
}

#[test]
fn another_network_is_dropped_even_on_a_published_port() {
    let s = snapshot();
    for (iif, source, destination) in [
        ("br-0123456789ab", WEB1, DB),
        ("docker0", A1, WEB1),
        ("mybr0", DB, A1),
    ] {
        let verdict = forward(&s, &packet(&s, iif, source, destination, tcp(80)));
        assert!(!verdict.accepted, "{source} -> {destination}");
        assert_eq!(
            verdict.rule.as_deref(),
            Some("isolation between Docker networks")
        );
    }
}

#[test]
fn outside_reaches_only_published_ports() {
    let s = snapshot();
    let from_outside = |port| accepted(&s, &packet(&s, "eth0", OUTSIDE, WEB1, tcp(port)));
    assert!(from_outside(80), "published on ::");
    assert!(from_outside(83), "published with no host IP");
    assert!(!from_outside(81), "127.0.0.1 only");
    assert!(!from_outside(82), "::1 only");
    assert!(!from_outside(22), "not published");
    let udp = L4::Transport {
        protocol: Protocol::Udp,
        port: 80,
    };
    assert!(!accepted(&s, &packet(&s, "eth0", OUTSIDE, WEB1, udp)));
    assert!(!accepted(&s, &packet(&s, "eth0", OUTSIDE, DB, tcp(80))));
    let echo = icmp(Icmpv6Type::EchoRequest);
    assert!(accepted(&s, &packet(&s, "eth0", OUTSIDE, DB, echo)));
}

#[test]
fn a_binding_on_one_host_address_is_reachable_only_through_dnat_there() {
    let mut s = snapshot();
    s.containers[1].ports = vec![PortBinding {
        protocol: Protocol::Tcp,
        container_port: 80,
        host_ip: Some(IpAddr::V6(addr(HOST))),
        host_port: 9090,
    }];
    let ruleset = plan(&s, &PlanInputs::default());
    let local = [addr(HOST), addr(HOST2)];
    let through = |host: &str| {
        inbound(
            &ruleset,
            &local,
            &packet(&s, "eth0", OUTSIDE, host, tcp(9090)),
            route(&s),
        )
    };
    match through(HOST) {
        Inbound::Forwarded {
            destination,
            port,
            dnat,
            verdict,
        } => {
            assert_eq!((destination, port, dnat), (addr(DB), Some(80), true));
            assert!(verdict.accepted, "{verdict:?}");
        }
        other => panic!("not forwarded: {other:?}"),
    }
    assert!(
        matches!(through(HOST2), Inbound::Local { .. }),
        "the host's other address does not translate"
    );
    let direct = forward_verdict(&ruleset, &packet(&s, "eth0", OUTSIDE, DB, tcp(80)));
    assert!(!direct.accepted, "not on the container's own address");
    assert_eq!(direct.rule.as_deref(), Some("not published"));
}

#[test]
fn spoofed_sources_are_dropped() {
    let s = snapshot();
    // A container on docker0 claiming web's prefix, to the outside and to a published port.
    for destination in [OUTSIDE, WEB1] {
        let verdict = forward(
            &s,
            &packet(&s, "docker0", "fd76:6700:0:10::99", destination, tcp(80)),
        );
        assert!(!verdict.accepted);
        assert_eq!(
            verdict.rule.as_deref(),
            Some("source address not of the container's network")
        );
    }
    // A container claiming an outside address.
    assert!(!accepted(
        &s,
        &packet(&s, "docker0", OUTSIDE, WEB1, tcp(80))
    ));
    // An outside host claiming a Docker prefix, even for a reply.
    let spoofed = packet(&s, "eth0", A1, WEB1, tcp(80));
    let verdict = forward(&s, &spoofed);
    assert!(!verdict.accepted);
    assert_eq!(
        verdict.rule.as_deref(),
        Some("spoofed source: network bridge's prefix from outside its bridge")
    );
    assert!(!accepted(&s, &spoofed.established()));
}

#[test]
fn neighbour_discovery_passes_only_within_a_bridge_at_hop_limit_255() {
    let s = snapshot();
    for t in [Icmpv6Type::NeighborSolicit, Icmpv6Type::NeighborAdvert] {
        let within = packet(&s, "docker0", A1, A2, icmp(t));
        assert!(accepted(&s, &within.clone().hop_limit(255)), "{t:?}");
        assert!(!accepted(&s, &within.clone().hop_limit(64)), "{t:?} routed");
        let link_local = packet(&s, "docker0", "fe80::2", A2, icmp(t)).hop_limit(255);
        assert!(accepted(&s, &link_local), "{t:?} from link-local");
        let across = packet(&s, "docker0", A1, DB, icmp(t));
        assert!(
            !accepted(&s, &across.clone().hop_limit(255)),
            "{t:?} across"
        );
        assert!(!accepted(&s, &across.hop_limit(254)), "{t:?} across");
        let from_outside = packet(&s, "eth0", OUTSIDE, A1, icmp(t)).hop_limit(255);
        assert!(!accepted(&s, &from_outside), "{t:?} from outside");
    }
    let echo = packet(&s, "docker0", A1, A2, icmp(Icmpv6Type::EchoRequest)).hop_limit(255);
    assert!(!accepted(&s, &echo), "only NDP passes ICC off");
}

#[test]
fn the_bridge_table_drops_tagged_frames_and_router_advertisements_from_containers() {
    let ruleset = plan(&snapshot(), &PlanInputs::default());
    let frame = |l4, port: &str, vlan| {
        Packet::new("docker0", "docker0", addr("fe80::2"), addr("ff02::1"), l4)
            .hop_limit(255)
            .bridged(port, vlan)
    };
    let ns = icmp(Icmpv6Type::NeighborSolicit);
    for vlan in [EtherType::Vlan, EtherType::ServiceVlan] {
        let verdict = bridge_verdict(&ruleset, &frame(ns, "veth12ab", Some(vlan)));
        assert!(!verdict.accepted, "{vlan:?}");
        assert_eq!(
            verdict.rule.as_deref(),
            Some("VLAN-tagged frame from a container")
        );
    }
    for t in [Icmpv6Type::RouterAdvert, Icmpv6Type::Redirect] {
        let verdict = bridge_verdict(&ruleset, &frame(icmp(t), "veth12ab", None));
        assert!(!verdict.accepted, "{t:?}");
    }
    assert!(bridge_verdict(&ruleset, &frame(ns, "veth12ab", None)).accepted);
    assert!(bridge_verdict(&ruleset, &frame(tcp(80), "veth12ab", None)).accepted);
    let ra = icmp(Icmpv6Type::RouterAdvert);
    assert!(
        bridge_verdict(&ruleset, &frame(ra, "eth1", None)).accepted,
        "a port that is not a container's (an uplink enslaved to the bridge) may advertise"
    );
}

#[test]
fn established_replies_are_accepted() {
    let s = snapshot();
    assert!(accepted(
        &s,
        &packet(&s, "eth0", OUTSIDE, DB, tcp(40000)).established()
    ));
    assert!(accepted(
        &s,
        &packet(&s, "docker0", A1, A2, tcp(40000)).established()
    ));
    assert!(
        accepted(&s, &packet(&s, "docker0", A1, DB, tcp(40000)).established()),
        "a reply into another network (the connection was accepted one way)"
    );
}

#[test]
fn internal_networks_are_sealed() {
    let mut s = snapshot();
    s.networks[2].internal = true;
    assert!(!accepted(&s, &packet(&s, "mybr0", DB, OUTSIDE, tcp(443))));
    let echo = icmp(Icmpv6Type::EchoRequest);
    assert!(!accepted(&s, &packet(&s, "eth0", OUTSIDE, DB, echo)));
    let ns = icmp(Icmpv6Type::NeighborSolicit);
    let inside = packet(&s, "mybr0", DB, "fd76:6700:0:11::3", ns).hop_limit(255);
    assert!(accepted(&s, &inside), "NDP inside the bridge");
}

#[test]
fn outbound_translation_follows_the_network() {
    let mut s = snapshot();
    s.networks[1].host_ipv6 = Some(addr(HOST2));
    s.networks[2].internal = true;
    let ruleset = plan(&s, &PlanInputs::default());
    let out = |source: &str| {
        let p = Packet::new("", "eth0", addr(source), addr(OUTSIDE), tcp(443));
        postrouting_snat(&ruleset, &p)
    };
    assert_eq!(out(A1), Some(Translation::Masquerade));
    assert_eq!(out(WEB1), Some(Translation::SnatTo(addr(HOST2))));
    assert_eq!(out(DB), None, "internal");
    let p = Packet::new("", "eth0", addr(A1), addr(OUTSIDE), tcp(443)).established();
    assert_eq!(postrouting_snat(&ruleset, &p), None, "conntrack's business");
}

#[test]
fn hairpin_through_a_host_address_follows_the_proxy_mode() {
    let mut s = snapshot();
    let local = [addr(HOST)];
    let from_a1 = packet(&s, "docker0", A1, HOST, tcp(8080));
    let ruleset = plan(&s, &PlanInputs::default());
    assert!(
        matches!(inbound(&ruleset, &local, &from_a1, route(&s)), Inbound::Local { verdict } if verdict.accepted),
        "userland-proxy on: docker-proxy answers"
    );
    s.daemon.userland_proxy.value = false;
    let ruleset = plan(&s, &PlanInputs::default());
    match inbound(&ruleset, &local, &from_a1, route(&s)) {
        Inbound::Forwarded {
            destination,
            verdict,
            ..
        } => {
            assert_eq!(destination, addr(WEB1));
            assert!(verdict.accepted, "{verdict:?}");
            let leaving = Packet::new("", "br-0123456789ab", addr(A1), addr(WEB1), tcp(80));
            assert_eq!(
                postrouting_snat(&ruleset, &leaving.dnatted()),
                Some(Translation::Masquerade),
                "NAT66 of docker0's ULA prefix into another bridge"
            );
        }
        other => panic!("not forwarded: {other:?}"),
    }
}

/// The plan with `web`'s gateway mode set by a policy file, and the options given.
fn plan_with(s: &Snapshot, policy: &str, options: crate::plan::PlanOptions) -> Ruleset {
    let policy = crate::config::parse_policy_file(std::path::Path::new("p.yaml"), policy).unwrap();
    plan(s, &PlanInputs { options, policy })
}

fn web_mode(mode: &str) -> String {
    format!("networks:\n  web:\n    gateway_mode: {mode}\n")
}

/// Where a connection from outside to `host`:`port` ends up, and whether it is let in.
fn through_host(ruleset: &Ruleset, s: &Snapshot, port: u16) -> Option<(Ipv6Addr, bool)> {
    let arriving = packet(s, "eth0", OUTSIDE, HOST, tcp(port));
    match inbound(ruleset, &[addr(HOST)], &arriving, route(s)) {
        Inbound::Forwarded {
            destination,
            verdict,
            ..
        } => Some((destination, verdict.accepted)),
        Inbound::Local { .. } => None,
    }
}

#[test]
fn gateway_mode_nat_reaches_containers_only_through_host_addresses() {
    let mut s = snapshot();
    // A global prefix: `nat` masquerades it too, v6guard's default does not.
    s.networks[1].ipv6_subnets = vec!["2001:db8:7761::/64".parse().unwrap()];
    s.containers[0].endpoints[0].ipv6 = Some(addr("2001:db8:7761::2"));
    let web1 = "2001:db8:7761::2";
    let default = plan(&s, &PlanInputs::default());
    let nat = plan_with(&s, &web_mode("nat"), Default::default());
    let direct = |r: &Ruleset, l4| forward_verdict(r, &packet(&s, "eth0", OUTSIDE, web1, l4));
    let echo = icmp(Icmpv6Type::EchoRequest);

    assert!(direct(&default, tcp(80)).accepted && direct(&default, echo).accepted);
    for l4 in [tcp(80), echo] {
        let verdict = direct(&nat, l4);
        assert!(!verdict.accepted, "{l4:?}");
        assert_eq!(
            verdict.rule.as_deref(),
            Some("gateway mode nat: network web: only through a host address")
        );
    }
    assert_eq!(through_host(&nat, &s, 8080), Some((addr(web1), true)));
    let leaving = Packet::new(
        "br-0123456789ab",
        "eth0",
        addr(web1),
        addr(OUTSIDE),
        tcp(443),
    );
    assert_eq!(
        postrouting_snat(&default, &leaving),
        None,
        "GUA routed as is"
    );
    assert_eq!(
        postrouting_snat(&nat, &leaving),
        Some(Translation::Masquerade),
        "nat masquerades every prefix"
    );
}

#[test]
fn gateway_mode_routed_opens_published_ports_directly_without_nat() {
    let s = snapshot();
    let routed = plan_with(&s, &web_mode("routed"), Default::default());
    let from_outside =
        |port| forward_verdict(&routed, &packet(&s, "eth0", OUTSIDE, WEB1, tcp(port)));
    assert!(from_outside(80).accepted && from_outside(83).accepted);
    assert!(!from_outside(22).accepted, "unpublished stays closed");
    assert_eq!(through_host(&routed, &s, 8080), None, "no DNAT on the host");
    let leaving = Packet::new(
        "br-0123456789ab",
        "eth0",
        addr(WEB1),
        addr(OUTSIDE),
        tcp(443),
    );
    assert_eq!(
        postrouting_snat(&routed, &leaving),
        None,
        "no NAT66, even for ULA"
    );
}

#[test]
fn gateway_mode_nat_unprotected_opens_every_port_but_keeps_isolation() {
    let s = snapshot();
    let open = plan_with(&s, &web_mode("nat-unprotected"), Default::default());
    let outside = forward_verdict(&open, &packet(&s, "eth0", OUTSIDE, WEB1, tcp(22)));
    assert!(outside.accepted, "{outside:?}");
    assert_eq!(through_host(&open, &s, 8080), Some((addr(WEB1), true)));
    let neighbour = forward_verdict(&open, &packet(&s, "docker0", A1, WEB1, tcp(22)));
    assert!(!neighbour.accepted, "another network stays isolated");
}

#[test]
fn the_mode_comes_from_the_policy_then_dockers_option_then_the_defaults() {
    let mut s = snapshot();
    let direct_80 = |r: &Ruleset, s: &Snapshot| {
        forward_verdict(r, &packet(s, "eth0", OUTSIDE, WEB1, tcp(80))).accepted
    };
    let routed_default = crate::plan::PlanOptions {
        gateway_mode: Some(crate::snapshot::GatewayMode::Routed),
        ..Default::default()
    };
    let nat_default = crate::plan::PlanOptions {
        gateway_mode: Some(crate::snapshot::GatewayMode::Nat),
        ..Default::default()
    };
    assert!(
        !direct_80(&plan_with(&s, "", nat_default.clone()), &s),
        "defaults"
    );
    s.networks[1].gateway_mode_ipv6 = Some(crate::snapshot::GatewayMode::Nat);
    assert!(
        !direct_80(&plan_with(&s, "", routed_default), &s),
        "Docker's option"
    );
    assert!(
        direct_80(&plan_with(&s, &web_mode("routed"), nat_default), &s),
        "the policy wins"
    );
}

#[test]
fn strict_isolation_keeps_other_networks_and_icc_off_peers_off_published_ports() {
    let mut s = snapshot();
    s.daemon.userland_proxy.value = false;
    s.containers.push(container(
        "a3",
        "n0",
        "fd76:6700:0:1::4",
        vec![crate::testing::binding(90, None)],
    ));
    let strict = crate::plan::PlanOptions {
        strict_isolation: true,
        ..Default::default()
    };
    let local = [addr(HOST)];
    // a1 (docker0) to web1's port 80 (another network) and to a3's port 90 (same bridge,
    // ICC off), both through the host address.
    for (port, destination, strict_rule) in [
        (8080, WEB1, "isolation between Docker networks"),
        (8090, "fd76:6700:0:1::4", "icc off: network bridge"),
    ] {
        let arriving = packet(&s, "docker0", A1, HOST, tcp(port));
        for (options, allowed) in [(Default::default(), true), (strict.clone(), false)] {
            let ruleset = plan_with(&s, "", options);
            match inbound(&ruleset, &local, &arriving, route(&s)) {
                Inbound::Forwarded {
                    destination: to,
                    verdict,
                    ..
                } => {
                    assert_eq!(to, addr(destination));
                    assert_eq!(verdict.accepted, allowed, "{port}: {verdict:?}");
                    if !allowed {
                        assert_eq!(verdict.rule.as_deref(), Some(strict_rule));
                    }
                }
                other => panic!("not forwarded: {other:?}"),
            }
        }
    }
    // From outside, strict changes nothing.
    let ruleset = plan_with(&s, "", strict);
    assert_eq!(through_host(&ruleset, &s, 8080), Some((addr(WEB1), true)));
}

/// Docker's `com.docker.network.host_ipv6` asks for translation to that address; a policy
/// entry for the network that says nothing about NAT66 (here only `icc`) must not undo it.
#[test]
fn dockers_host_ipv6_survives_an_unrelated_policy_entry() {
    let mut s = snapshot();
    s.networks[1].ipv6_subnets = vec!["2001:db8:7761::/64".parse().unwrap()];
    s.networks[1].host_ipv6 = Some(addr(HOST2));
    s.containers[0].endpoints[0].ipv6 = Some(addr("2001:db8:7761::2"));
    let leaving = Packet::new(
        "br-0123456789ab",
        "eth0",
        addr("2001:db8:7761::2"),
        addr(OUTSIDE),
        tcp(443),
    );
    for policy in ["", "networks:\n  web:\n    icc: false\n"] {
        let ruleset = plan_with(&s, policy, Default::default());
        assert_eq!(
            postrouting_snat(&ruleset, &leaving),
            Some(Translation::SnatTo(addr(HOST2))),
            "policy {policy:?}"
        );
    }
    let routed = plan_with(&s, &web_mode("routed"), Default::default());
    assert_eq!(
        postrouting_snat(&routed, &leaving),
        None,
        "routed: no NAT66"
    );
}

/// A container on two networks may answer from its address on one network out of the
/// other's bridge (its replies follow its own routes); nobody else may use that address.
#[test]
fn a_multihomed_container_may_send_from_its_other_address() {
    let mut s = snapshot();
    // a1 is on docker0 (n0) and on web (n1).
    s.containers[2].endpoints.push(crate::snapshot::Endpoint {
        network_id: "n1".into(),
        network_name: "web".into(),
        ipv4: None,
        ipv6: Some(addr("fd76:6700:0:10::7")),
    });
    let reply = packet(&s, "docker0", "fd76:6700:0:10::7", OUTSIDE, tcp(40000));
    assert!(
        accepted(&s, &reply),
        "its own address on web, out of docker0"
    );
    let spoof = packet(&s, "docker0", "fd76:6700:0:10::8", OUTSIDE, tcp(40000));
    assert!(!accepted(&s, &spoof), "another address of web's prefix");
    let elsewhere = packet(&s, "mybr0", "fd76:6700:0:10::7", OUTSIDE, tcp(40000));
    assert!(!accepted(&s, &elsewhere), "from a network it is not on");
}

/// Sources are checked for packets to the host too (docker-proxy's ports with userland-proxy
/// on, whose `allow_from` limit is a source check on the input hook).
#[test]
fn spoofed_sources_to_the_host_itself_are_dropped() {
    let mut s = snapshot();
    s.daemon.userland_proxy.value = true;
    let inputs = with_policy("containers:\n  web1:\n    allow_from: [\"fd76:6700:0:11::/64\"]\n");
    let ruleset = plan(&s, &inputs);
    // A LAN host claiming the allowed Docker prefix, to the published host port.
    let forged = packet(&s, "eth0", "fd76:6700:0:11::99", HOST, tcp(8080));
    let verdict = input_verdict(&ruleset, &forged);
    assert!(!verdict.accepted);
    assert_eq!(
        verdict.rule.as_deref(),
        Some("spoofed source: network custom's prefix from outside its bridge")
    );
    // The same source from its own bridge reaches docker-proxy: allow_from admits it.
    let genuine = packet(&s, "mybr0", "fd76:6700:0:11::99", HOST, tcp(8080));
    assert!(input_verdict(&ruleset, &genuine).accepted);
    // The host talking to itself from a Docker prefix (its bridge address) is not spoofing.
    let own = packet(&s, "lo", "fd76:6700:0:11::1", HOST, tcp(8080));
    assert!(input_verdict(&ruleset, &own).accepted);
}

fn with_policy(yaml: &str) -> PlanInputs {
    PlanInputs {
        policy: crate::config::parse_policy_file(std::path::Path::new("p.yaml"), yaml).unwrap(),
        ..PlanInputs::default()
    }
}
