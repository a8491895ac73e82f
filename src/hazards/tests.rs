use super::read::{read_proc_facts, uplinks};
use super::*;
use std::fs;
use std::net::Ipv6Addr;

use ipnet::Ipv6Net;

use crate::testing::lab_snapshot;

/// /proc/net/ipv6_route of the lab host (a static default route via fd00::1 on eth0, the
/// kernel's unreachable default on lo), trimmed.
const LAB_ROUTES: &str = "\
fd000000000000000000000000000000 40 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000002 00000000 00000001     eth0
fe800000000000000000000000000000 40 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000001 00000000 00000001  docker0
00000000000000000000000000000000 00 00000000000000000000000000000000 00 fd000000000000000000000000000001 00000400 00000003 00000000 00000003     eth0
00000000000000000000000000000001 80 00000000000000000000000000000000 00 00000000000000000000000000000000 00000000 00000004 00000000 80200001       lo
00000000000000000000000000000000 00 00000000000000000000000000000000 00 00000000000000000000000000000000 ffffffff 00000001 00000000 00200200       lo
";

#[test]
fn the_lab_has_one_static_default_route() {
    let routes = parse_ipv6_route(LAB_ROUTES).unwrap();
    assert_eq!(routes.len(), 5);
    let defaults: Vec<&Ipv6Route> = routes.iter().filter(|r| r.is_default()).collect();
    assert_eq!(defaults.len(), 1, "the unreachable route on lo is none");
    assert_eq!(defaults[0].interface, "eth0");
    assert_eq!(defaults[0].next_hop, "fd00::1".parse::<Ipv6Addr>().unwrap());
    assert_eq!(defaults[0].metric, 1024);
    assert!(!defaults[0].from_ra(), "added by hand");
    assert_eq!(
        routes[0].destination,
        "fd00::/64".parse::<Ipv6Net>().unwrap()
    );
    assert_eq!(
        uplinks(&routes),
        BTreeMap::from([("eth0".to_string(), false)])
    );
}

#[test]
fn routes_learned_from_router_advertisements() {
    // Captured in a network namespace after a router advertisement (lifetime 1800 s, prefix
    // 2001:db8:77::/64) from fe80::76:1 (tests/hazards.rs): the default route carries
    // RTF_UP | RTF_GATEWAY | RTF_DEFAULT | RTF_ADDRCONF | RTF_EXPIRES, the prefix route
    // RTF_ADDRCONF but is no default.
    let text = "\
20010db8007700000000000000000000 40 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000001 00000000 004c0001  v6gthz0
fe800000000000000000000000000000 40 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000001 00000000 00000001  v6gthz0
00000000000000000000000000000000 00 00000000000000000000000000000000 00 fe800000000000000000000000760001 00000400 00000001 00000000 00450003  v6gthz0
ff000000000000000000000000000000 08 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000002 00000000 00000001  v6gthz0
00000000000000000000000000000000 00 00000000000000000000000000000000 00 00000000000000000000000000000000 ffffffff 00000001 00000000 00200200       lo
";
    let routes = parse_ipv6_route(text).unwrap();
    let defaults: Vec<&Ipv6Route> = routes.iter().filter(|r| r.is_default()).collect();
    assert_eq!(defaults.len(), 1);
    assert!(defaults[0].from_ra());
    assert_eq!(
        defaults[0].next_hop,
        "fe80::76:1".parse::<Ipv6Addr>().unwrap()
    );
    assert_eq!(
        uplinks(&routes),
        BTreeMap::from([("v6gthz0".to_string(), true)])
    );
}

#[test]
fn malformed_route_lines_are_named() {
    for (line, why) in [
        ("00000000000000000000000000000000 00", "ten fields"),
        (
            "0000000000000000000000000000000G 00 00000000000000000000000000000000 00 00000000000000000000000000000000 00000400 00000001 00000000 00000003 eth0",
            "destination",
        ),
        (
            "00000000000000000000000000000000 81 00000000000000000000000000000000 00 00000000000000000000000000000000 00000400 00000001 00000000 00000003 eth0",
            "destination",
        ),
        (
            "00000000000000000000000000000000 00 00000000000000000000000000000000 00 00000000000000000000000000000000 00000400 00000001 00000000 3 eth0",
            "flags",
        ),
    ] {
        let first = LAB_ROUTES.lines().next().unwrap();
        let (number, reason) = parse_ipv6_route(&format!("{first}\n{line}\n")).unwrap_err();
        assert_eq!(number, 2, "{line}");
        assert!(reason.contains(why), "{line}: {reason}");
    }
}

fn uplink(interface: &str, from_ra: bool, accept_ra: i64) -> Uplink {
    Uplink {
        interface: interface.to_string(),
        from_ra,
        accept_ra: Some(accept_ra),
        forwarding: None,
    }
}

/// Facts under which nothing is wrong with the lab snapshot.
fn quiet() -> HostFacts {
    HostFacts {
        ipv6_forwarding: true,
        uplinks: vec![uplink("eth0", false, 1)],
        bridge_netfilter: BridgeNetfilter::On,
        ..HostFacts::default()
    }
}

fn kinds(facts: &HostFacts) -> Vec<HazardKind> {
    hazards(facts, &lab_snapshot())
        .iter()
        .map(|h| h.kind)
        .collect()
}

#[test]
fn a_quiet_host_has_no_hazards() {
    assert_eq!(kinds(&quiet()), vec![]);
}

#[test]
fn an_ra_default_route_on_a_forwarding_host_needs_accept_ra_2() {
    let mut facts = quiet();
    facts.uplinks = vec![uplink("eth0.100", true, 1)];
    let found = hazards(&facts, &lab_snapshot());
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].kind, HazardKind::RaDefaultRouteExpires);
    assert!(
        found[0].message.contains("eth0.100"),
        "{}",
        found[0].message
    );
    assert!(
        found[0]
            .fix
            .contains("sysctl -w net.ipv6.conf.eth0/100.accept_ra=2"),
        "a dot in the name is a slash in the key: {}",
        found[0].fix
    );
    facts.uplinks = vec![uplink("eth0", true, 0)];
    assert_eq!(
        kinds(&facts),
        vec![HazardKind::RaDefaultRouteExpires],
        "0 ignores RAs too"
    );
    facts.uplinks = vec![uplink("eth0", true, 2)];
    assert_eq!(kinds(&facts), vec![], "accept_ra 2 keeps renewing it");
    facts.uplinks = vec![uplink("eth0", true, 1)];
    facts.ipv6_forwarding = false;
    assert_eq!(
        kinds(&facts),
        vec![],
        "a host that does not forward accepts RAs"
    );
    facts.uplinks[0].forwarding = Some(true);
    assert_eq!(
        kinds(&facts),
        vec![HazardKind::RaDefaultRouteExpires],
        "the interface's own forwarding decides"
    );
    facts.uplinks[0].accept_ra = None;
    assert_eq!(kinds(&facts), vec![], "unreadable: nothing to say");
}

#[test]
fn icc_off_without_bridged_ipv6_filtering() {
    let snapshot = lab_snapshot();
    assert!(
        snapshot.networks.iter().any(|n| !n.icc),
        "the lab has ICC off"
    );
    for (state, words) in [
        (
            BridgeNetfilter::NotLoaded,
            "br_netfilter module is not loaded",
        ),
        (BridgeNetfilter::Off, "bridge-nf-call-ip6tables is 0"),
    ] {
        let facts = HostFacts {
            bridge_netfilter: state,
            ..quiet()
        };
        let found = hazards(&facts, &snapshot);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].kind, HazardKind::BridgeNetfilterOff);
        assert!(found[0].message.contains(words), "{}", found[0].message);
        let off: Vec<&str> = snapshot
            .networks
            .iter()
            .filter(|n| !n.icc)
            .map(|n| n.name.as_str())
            .collect();
        assert!(found[0].message.contains(off[0]), "names the network");
    }
    let mut all_icc = snapshot.clone();
    for network in &mut all_icc.networks {
        network.icc = true;
    }
    let facts = HostFacts {
        bridge_netfilter: BridgeNetfilter::NotLoaded,
        ..quiet()
    };
    assert!(hazards(&facts, &all_icc).is_empty(), "nothing needs it");
}

fn proxy(host_ip: Option<&str>, port: u16) -> DockerProxy {
    DockerProxy {
        pid: u32::from(port),
        protocol: Protocol::Tcp,
        host_ip: host_ip.map(|ip| ip.parse().unwrap()),
        host_port: port,
        container_ip: Some("172.17.0.2".parse().unwrap()),
        container_port: Some(80),
    }
}

#[test]
fn docker_proxies_on_all_ipv6_addresses_are_listed() {
    let mut facts = quiet();
    facts.docker_proxies = vec![
        proxy(Some("0.0.0.0"), 8080),
        proxy(Some("::1"), 8082),
        proxy(Some("2001:db8::1"), 8083),
    ];
    assert_eq!(
        kinds(&facts),
        vec![],
        "IPv4, loopback and one address are not `::`"
    );
    facts.docker_proxies.push(proxy(Some("::"), 8080));
    facts.docker_proxies.push(proxy(None, 8081));
    let found = hazards(&facts, &lab_snapshot());
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].kind, HazardKind::DockerProxyOnIpv6);
    assert!(
        found[0]
            .message
            .contains("[::]:8080/tcp to 172.17.0.2:80, [::]:8081/tcp to 172.17.0.2:80"),
        "{}",
        found[0].message
    );
}

#[test]
fn docker_proxy_command_lines() {
    let argv = [
        "/usr/bin/docker-proxy",
        "-proto",
        "udp",
        "-host-ip",
        "::",
        "-host-port",
        "5353",
        "-container-ip",
        "fd76:6700:0:1::2",
        "-container-port",
        "53",
    ];
    let proxy = parse_docker_proxy(7, &argv).unwrap();
    assert_eq!(proxy.protocol, Protocol::Udp);
    assert!(proxy.on_all_ipv6());
    assert_eq!(proxy.host_port, 5353);
    assert_eq!(proxy.container_port, Some(53));
    let no_host_ip = ["docker-proxy", "-proto", "tcp", "-host-port", "80"];
    assert_eq!(parse_docker_proxy(7, &no_host_ip).unwrap().host_ip, None);
    assert_eq!(
        parse_docker_proxy(7, &["/usr/sbin/dockerd", "-H", "fd://"]),
        None
    );
    assert_eq!(
        parse_docker_proxy(7, &["docker-proxy", "-host-port", "x"]),
        None
    );
    assert_eq!(parse_docker_proxy(7, &[]), None);
}

fn chain(family: &str, table: &str, name: &str, base: Option<(&str, i32, &str)>) -> NftChain {
    NftChain {
        family: family.to_string(),
        table: table.to_string(),
        chain: name.to_string(),
        hook: base.map(|(hook, _, _)| hook.to_string()),
        priority: base.map(|(_, priority, _)| priority),
        policy: base.map(|(_, _, policy)| policy.to_string()),
    }
}

#[test]
fn docker_ip6tables_chains_name_their_tables() {
    let mut facts = quiet();
    facts.nft_chains = vec![
        chain("ip", "filter", "DOCKER", None),
        chain("ip6", "filter", "DOCKER", None),
        chain("ip6", "filter", "DOCKER-ISOLATION-STAGE-1", None),
        chain("ip6", "nat", "DOCKER", None),
    ];
    let found = hazards(&facts, &lab_snapshot());
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].kind, HazardKind::DockerIp6tables);
    assert!(
        found[0].message.starts_with(
            "table ip6 filter (DOCKER, DOCKER-ISOLATION-STAGE-1) and table ip6 nat (DOCKER)"
        ),
        "{}",
        found[0].message
    );
    facts.nft_chains = vec![chain("ip", "filter", "DOCKER-USER", None)];
    assert_eq!(
        kinds(&facts),
        vec![],
        "Docker's IPv4 chains are Docker's job"
    );
}

#[test]
fn legacy_ip6tables_and_dockers_nftables() {
    let mut facts = quiet();
    facts.legacy_ip6tables_filter = true;
    assert_eq!(kinds(&facts), vec![HazardKind::LegacyIp6tables]);
    let mut facts = quiet();
    facts.nft_tables = vec![NftTable {
        family: "ip6".into(),
        name: "docker-bridges".into(),
    }];
    assert_eq!(kinds(&facts), vec![HazardKind::DockerNftables]);
    facts.nft_tables[0].family = "ip".into();
    assert_eq!(kinds(&facts), vec![], "Docker's IPv4 table");
    let mut snapshot = lab_snapshot();
    snapshot.engine.docker_nft_ip6_table = true;
    let found = hazards(&quiet(), &snapshot);
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].kind, HazardKind::DockerNftables);
}

#[test]
fn foreign_forward_chains_are_named() {
    let mut facts = quiet();
    facts.nft_chains = vec![
        chain("ip6", "v6guard", "forward", Some(("forward", 0, "accept"))),
        chain("ip6", "v6guard", "input", Some(("input", 0, "accept"))),
        chain("ip", "filter", "FORWARD", Some(("forward", 0, "drop"))),
        chain(
            "inet",
            "firewalld",
            "filter_FORWARD",
            Some(("forward", 10, "accept")),
        ),
        chain("ip6", "filter", "FORWARD", Some(("forward", 0, "drop"))),
        chain("ip6", "filter", "INPUT", Some(("input", 0, "drop"))),
        chain("ip6", "filter", "mine", None),
    ];
    let found = hazards(&facts, &lab_snapshot());
    let messages: Vec<&str> = found.iter().map(|h| h.message.as_str()).collect();
    assert!(
        found
            .iter()
            .all(|h| h.kind == HazardKind::ForeignForwardChain),
        "{found:?}"
    );
    assert_eq!(
        found.len(),
        2,
        "v6guard's own, IPv4 and input chains are not: {messages:?}"
    );
    assert!(messages[0].starts_with(
        "table inet firewalld has base chain filter_FORWARD on the forward hook (priority 10, policy accept)"
    ));
    assert!(messages[1].starts_with(
        "table ip6 filter has base chain FORWARD on the forward hook (priority 0, policy drop)"
    ));
    assert!(messages[1].contains("drop policy"));
    assert!(found[1].fix.contains("nft delete table ip6 filter"));
}

#[test]
fn facts_and_hazards_serialise_with_stable_words() {
    let mut facts = quiet();
    facts.bridge_netfilter = BridgeNetfilter::NotLoaded;
    let json = serde_json::to_value(&facts).unwrap();
    assert_eq!(json["bridge_netfilter"], "not_loaded");
    let back: HostFacts = serde_json::from_value(json).unwrap();
    assert_eq!(back, facts);
    let hazard = &hazards(&facts, &lab_snapshot())[0];
    assert_eq!(
        serde_json::to_value(hazard).unwrap()["kind"],
        "bridge_netfilter_off"
    );
}

/// A fake /proc: sysctls, routes, a docker-proxy and a process that is not one.
#[test]
fn proc_facts_from_a_fake_tree() {
    let root = std::env::temp_dir().join(format!("v6guard-hazards-{}", std::process::id()));
    let write = |path: &str, text: &str| {
        let path = root.join(path);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, text).unwrap();
    };
    write("sys/net/ipv6/conf/all/forwarding", "1\n");
    write("sys/net/ipv6/conf/uplink0/accept_ra", "1\n");
    write("sys/net/ipv6/conf/uplink0/forwarding", "1\n");
    write(
        "thread-self/net/ipv6_route",
        "00000000000000000000000000000000 00 00000000000000000000000000000000 00 fe800000000000000000000000000001 00000400 00000001 00000000 00450003  uplink0\n",
    );
    write("thread-self/net/ip6_tables_names", "mangle\nfilter\n");
    write("sys/net/bridge/bridge-nf-call-ip6tables", "0\n");
    write(
        "4242/cmdline",
        "/usr/bin/docker-proxy\0-proto\0tcp\0-host-ip\0::\0-host-port\x008080\0-container-ip\x00172.17.0.2\0-container-port\x0080\0",
    );
    write("4243/cmdline", "/usr/sbin/dockerd\0-H\0fd://\0");
    let facts = read_proc_facts(&root).unwrap();
    assert!(facts.ipv6_forwarding);
    assert_eq!(
        facts.uplinks,
        vec![Uplink {
            interface: "uplink0".into(),
            from_ra: true,
            accept_ra: Some(1),
            forwarding: Some(true),
        }]
    );
    assert_eq!(facts.bridge_netfilter, BridgeNetfilter::Off);
    assert!(facts.legacy_ip6tables_filter);
    assert_eq!(facts.docker_proxies.len(), 1);
    assert_eq!(facts.docker_proxies[0].pid, 4242);
    assert_eq!(
        kinds(&facts),
        vec![
            HazardKind::RaDefaultRouteExpires,
            HazardKind::BridgeNetfilterOff,
            HazardKind::DockerProxyOnIpv6,
            HazardKind::LegacyIp6tables,
        ]
    );
    write("thread-self/net/ipv6_route", "garbage\n");
    let message = read_proc_facts(&root).unwrap_err().to_string();
    assert!(message.contains("ipv6_route: line 1"), "{message}");
    fs::remove_dir_all(&root).unwrap();
    let empty = root.join("empty");
    fs::create_dir_all(&empty).unwrap();
    let facts = read_proc_facts(&empty).unwrap();
    assert_eq!(facts.bridge_netfilter, BridgeNetfilter::NotLoaded);
    assert!(
        !facts.ipv6_forwarding && facts.uplinks.is_empty(),
        "a kernel without IPv6"
    );
    fs::remove_dir_all(&root).unwrap();
}
