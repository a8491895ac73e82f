//! Planner tests on hand-built Snapshots, and a snapshot test of the rendered text.

use std::net::Ipv6Addr;

use super::*;
use crate::nft::render::render_script;
use crate::ruleset::Service;
use crate::snapshot::{
    Container, DaemonSettings, Endpoint, Engine, Network, PortBinding, Protocol, Setting, Source,
};

fn engine(version: &str) -> Engine {
    Engine {
        version: version.to_string(),
        api_version: "1.41".to_string(),
        bridge_nf_ip6tables: true,
        docker_nft_ip6_table: false,
    }
}

fn network(id: &str, name: &str, bridge: &str, icc: bool) -> Network {
    Network {
        id: id.to_string(),
        name: name.to_string(),
        bridge: bridge.to_string(),
        ipv6_enabled: true,
        ipv6_subnets: vec![],
        icc,
        masquerade: true,
        internal: false,
    }
}

fn binding(port: u16, host_ip: Option<&str>) -> PortBinding {
    PortBinding {
        protocol: Protocol::Tcp,
        container_port: port,
        host_ip: host_ip.map(|ip| ip.parse().unwrap()),
        host_port: port + 8000,
    }
}

fn container(name: &str, network_id: &str, ipv6: &str, ports: Vec<PortBinding>) -> Container {
    Container {
        id: format!("{name}-id"),
        name: name.to_string(),
        labels: Default::default(),
        endpoints: vec![Endpoint {
            network_id: network_id.to_string(),
            network_name: network_id.to_string(),
            ipv4: None,
            ipv6: Some(ipv6.parse().unwrap()),
        }],
        ports,
    }
}

/// The default bridge with ICC off, a user network with ICC on, one with a custom bridge name.
fn lab_snapshot() -> Snapshot {
    Snapshot {
        engine: engine("20.10.24+dfsg1"),
        daemon: DaemonSettings::default(),
        networks: vec![
            network("n0", "bridge", "docker0", false),
            network("n1", "web", "br-0123456789ab", true),
            network("n2", "custom", "mybr0", false),
        ],
        containers: vec![
            container(
                "web1",
                "n1",
                "fd76:6700:0:10::2",
                vec![
                    binding(80, Some("0.0.0.0")),
                    binding(80, Some("::")),
                    binding(81, Some("127.0.0.1")),
                    binding(82, Some("::1")),
                    binding(83, None),
                ],
            ),
            container("db", "n2", "fd76:6700:0:11::2", vec![]),
        ],
    }
}

fn published(ruleset: &Ruleset) -> Vec<(Ipv6Addr, u16)> {
    ruleset.sets[0]
        .elements
        .iter()
        .map(|s: &Service| (s.address, s.port))
        .collect()
}

#[test]
fn only_ipv6_bindings_are_published() {
    let ruleset = plan(&lab_snapshot(), &PlanOptions::default());
    let web1: Ipv6Addr = "fd76:6700:0:10::2".parse().unwrap();
    assert_eq!(published(&ruleset), vec![(web1, 80), (web1, 83)]);
}

#[test]
fn internal_networks_publish_nothing() {
    let mut snapshot = lab_snapshot();
    snapshot.networks[1].internal = true;
    let ruleset = plan(&snapshot, &PlanOptions::default());
    assert!(published(&ruleset).is_empty());
}

#[test]
fn custom_bridge_names_are_guarded_explicitly() {
    let ruleset = plan(&lab_snapshot(), &PlanOptions::default());
    let forward = &ruleset.chains[0];
    let targets: Vec<&Match> = forward.rules.iter().map(|r| &r.matches[0]).collect();
    assert_eq!(
        targets,
        vec![
            &Match::OutInterface(InterfaceName::Exact("docker0".into())),
            &Match::OutInterface(InterfaceName::Exact("mybr0".into())),
            &Match::OutInterface(InterfaceName::Prefix("br-".into())),
        ],
        "br-0123456789ab is covered by br-*; mybr0 is not"
    );
}

#[test]
fn rule_count_does_not_grow_with_ports_or_containers() {
    let small = plan(&lab_snapshot(), &PlanOptions::default());
    let mut big_snapshot = lab_snapshot();
    for i in 0..1000u16 {
        let address = format!("fd76:6700:0:10::{:x}", i + 10);
        let ports = (0..10).map(|p| binding(1000 + p, None)).collect();
        big_snapshot
            .containers
            .push(container(&format!("c{i}"), "n1", &address, ports));
    }
    let big = plan(&big_snapshot, &PlanOptions::default());
    assert_eq!(big.rule_count(), small.rule_count());
    assert_eq!(big.element_count(), small.element_count() + 10_000);
}

#[test]
fn icc_rules_follow_each_network() {
    let ruleset = plan(&lab_snapshot(), &PlanOptions::default());
    let to_bridge = &ruleset.chains[1];
    let same_bridge = |bridge: &str| {
        to_bridge
            .rules
            .iter()
            .find(|r| {
                r.matches
                    == vec![
                        Match::InInterface(InterfaceName::Exact(bridge.into())),
                        Match::OutInterface(InterfaceName::Exact(bridge.into())),
                    ]
            })
            .map(|r| r.verdict.clone())
    };
    assert_eq!(same_bridge("docker0"), Some(Verdict::Drop));
    assert_eq!(same_bridge("br-0123456789ab"), Some(Verdict::Accept));
    assert_eq!(same_bridge("mybr0"), Some(Verdict::Drop));
}

#[test]
fn unknown_bridges_end_in_the_default_drop() {
    // A bridge v6guard has never seen (no network in the snapshot) still jumps to to-bridge
    // through br-*, where the last rule drops whatever is not published.
    let ruleset = plan(&lab_snapshot(), &PlanOptions::default());
    let last = ruleset.chains[1].rules.last().unwrap();
    assert!(last.matches.is_empty());
    assert_eq!(last.verdict, Verdict::Drop);
}

#[test]
fn stand_down_when_docker_manages_ipv6() {
    let mut snapshot = lab_snapshot();
    assert_eq!(stand_down_reason(&snapshot), None);

    snapshot.daemon.ip6tables = Setting {
        value: Some(true),
        source: Source::DaemonJson("/etc/docker/daemon.json".into()),
    };
    let reason = stand_down_reason(&snapshot).unwrap();
    assert!(
        reason.to_string().contains("/etc/docker/daemon.json"),
        "{reason}"
    );

    snapshot.daemon.ip6tables = Setting::default_value(None);
    snapshot.engine = engine("27.3.1");
    assert!(matches!(
        stand_down_reason(&snapshot),
        Some(StandDown::Ip6tablesByDefault { .. })
    ));

    snapshot.daemon.ip6tables = Setting {
        value: Some(false),
        source: Source::CommandLine,
    };
    assert_eq!(stand_down_reason(&snapshot), None, "ip6tables=false on 27+");

    snapshot.engine.docker_nft_ip6_table = true;
    assert_eq!(
        stand_down_reason(&snapshot),
        Some(StandDown::DockerNftTable)
    );
}

/// The rendered dry run, pinned. A change here is a change in what users install.
#[test]
fn rendered_script_snapshot() {
    let text = render_script(&plan(&lab_snapshot(), &PlanOptions::default()));
    let expected = r#"#!/usr/sbin/nft -f
# v6guard: the transaction `v6guard apply` performs (15 rules, 2 published services).
# Replace the table atomically: create it if missing, delete it, write it anew.
table ip6 v6guard
delete table ip6 v6guard
table ip6 v6guard {
	set published {
		type ipv6_addr . inet_proto . inet_service
		elements = { fd76:6700:0:10::2 . tcp . 80,
			     fd76:6700:0:10::2 . tcp . 83 }
	}

	chain forward {
		type filter hook forward priority filter; policy accept;
		oifname "docker0" jump to-bridge
		oifname "mybr0" jump to-bridge
		oifname "br-*" jump to-bridge
	}

	chain to-bridge {
		ct state established,related accept
		icmpv6 type nd-neighbor-solicit accept
		icmpv6 type nd-neighbor-advert accept
		iifname "br-0123456789ab" oifname "br-0123456789ab" accept comment "icc on: network web"
		iifname "docker0" oifname "docker0" counter packets 0 bytes 0 drop comment "icc off: network bridge"
		iifname "mybr0" oifname "mybr0" counter packets 0 bytes 0 drop comment "icc off: network custom"
		iifname "docker0" counter packets 0 bytes 0 drop comment "isolation between Docker networks"
		iifname "mybr0" counter packets 0 bytes 0 drop comment "isolation between Docker networks"
		iifname "br-*" counter packets 0 bytes 0 drop comment "isolation between Docker networks"
		ip6 daddr . meta l4proto . th dport @published accept comment "published container ports"
		icmpv6 type echo-request accept
		counter packets 0 bytes 0 drop comment "not published"
	}
}
"#;
    assert_eq!(text, expected);
}
