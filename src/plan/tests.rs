//! Planner tests on hand-built Snapshots, and a snapshot test of the rendered text.

use std::net::Ipv6Addr;

use super::*;
use crate::config::Policy;
use crate::nft::render::render_script;
use crate::ruleset::{
    Action, DNAT_ANY_MAP, DNAT_HOST_MAP, Field, LINKS_SET, Match, PUBLISHED_SET, RESTRICTED_SET,
};
use crate::snapshot::{Endpoint, ExposedPort, Network, PortBinding, Protocol, Setting, Source};
use crate::testing::{binding, container, engine, lab_snapshot, network};

fn published(ruleset: &Ruleset) -> Vec<(Ipv6Addr, u16)> {
    ruleset
        .set(PUBLISHED_SET)
        .unwrap()
        .elements
        .keys()
        .map(|key| match key[..] {
            [Field::Address(address), _, Field::Port(port)] => (address, port),
            _ => panic!("unexpected key {key:?}"),
        })
        .collect()
}

fn rules_in<'a>(ruleset: &'a Ruleset, chain: &str) -> &'a [crate::ruleset::Rule] {
    &ruleset
        .chains
        .iter()
        .find(|c| c.name == chain)
        .unwrap()
        .rules
}

fn comments(ruleset: &Ruleset, chain: &str) -> Vec<String> {
    rules_in(ruleset, chain)
        .iter()
        .filter_map(|r| r.comment.clone())
        .collect()
}

#[test]
fn only_ipv6_bindings_are_published() {
    let ruleset = plan(&lab_snapshot(), &PlanInputs::default());
    let web1: Ipv6Addr = "fd76:6700:0:10::2".parse().unwrap();
    assert_eq!(published(&ruleset), vec![(web1, 80), (web1, 83)]);
}

#[test]
fn internal_networks_publish_nothing() {
    let mut snapshot = lab_snapshot();
    snapshot.networks[1].internal = true;
    let ruleset = plan(&snapshot, &PlanInputs::default());
    assert!(published(&ruleset).is_empty());
}

#[test]
fn custom_bridge_names_are_guarded_explicitly() {
    let ruleset = plan(&lab_snapshot(), &PlanInputs::default());
    let targets: Vec<&Match> = rules_in(&ruleset, FORWARD_CHAIN)
        .iter()
        .filter(|r| r.action == Action::Jump(TO_BRIDGE_CHAIN.to_string()))
        .map(|r| &r.matches[0])
        .collect();
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
    let small = plan(&lab_snapshot(), &PlanInputs::default());
    let mut big_snapshot = lab_snapshot();
    for i in 0..1000u16 {
        let address = format!("fd76:6700:0:10::{:x}", i + 10);
        let ports = (0..10).map(|p| binding(1000 + p, None)).collect();
        big_snapshot
            .containers
            .push(container(&format!("c{i}"), "n1", &address, ports));
    }
    let big = plan(&big_snapshot, &PlanInputs::default());
    assert_eq!(big.rule_count(), small.rule_count());
    assert_eq!(published(&big).len(), published(&small).len() + 10_000);
}

#[test]
fn icc_rules_follow_each_network() {
    let ruleset = plan(&lab_snapshot(), &PlanInputs::default());
    let same_bridge = |bridge: &str| {
        rules_in(&ruleset, TO_BRIDGE_CHAIN)
            .iter()
            .find(|r| {
                r.matches
                    == vec![
                        Match::InInterface(InterfaceName::Exact(bridge.into())),
                        Match::OutInterface(InterfaceName::Exact(bridge.into())),
                    ]
            })
            .map(|r| r.action.clone())
    };
    assert_eq!(same_bridge("docker0"), Some(Action::Drop));
    assert_eq!(same_bridge("br-0123456789ab"), Some(Action::Accept));
    assert_eq!(same_bridge("mybr0"), Some(Action::Drop));
}

#[test]
fn unknown_bridges_end_in_the_default_drop() {
    // A bridge v6guard has never seen (no network in the snapshot) still jumps to to-bridge
    // through br-*, where the last rule drops whatever is not published.
    let ruleset = plan(&lab_snapshot(), &PlanInputs::default());
    let last = rules_in(&ruleset, TO_BRIDGE_CHAIN).last().unwrap();
    assert!(last.matches.is_empty());
    assert_eq!(last.action, Action::Drop);
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

fn dnat(ruleset: &Ruleset, map: &str) -> Vec<String> {
    ruleset
        .set(map)
        .unwrap()
        .elements
        .iter()
        .map(|(k, v)| crate::nft::render::render_element(k, v))
        .collect()
}

#[test]
fn dnat_maps_follow_host_bindings() {
    let mut snapshot = lab_snapshot();
    snapshot.containers[1].ports = vec![PortBinding {
        protocol: Protocol::Udp,
        container_port: 53,
        host_ip: Some("2001:db8:76::1".parse().unwrap()),
        host_port: 5353,
    }];
    let ruleset = plan(&snapshot, &PlanInputs::default());
    assert_eq!(
        dnat(&ruleset, DNAT_ANY_MAP),
        vec![
            "tcp . 8080 : fd76:6700:0:10::2 . 80",
            "tcp . 8083 : fd76:6700:0:10::2 . 83"
        ],
        "0.0.0.0, 127.0.0.1 and ::1 bindings are not published on IPv6; :: and empty are"
    );
    assert_eq!(
        dnat(&ruleset, DNAT_HOST_MAP),
        vec!["2001:db8:76::1 . udp . 5353 : fd76:6700:0:11::2 . 53"]
    );
}

#[test]
fn port_mappings_use_the_first_non_internal_network() {
    let mut snapshot = lab_snapshot();
    snapshot.networks.push(Network {
        internal: true,
        ..network("n3", "aaa-internal", "br-aaaaaaaaaaaa", true)
    });
    snapshot
        .networks
        .push(network("n4", "zzz-other", "br-zzzzzzzzzzzz", true));
    let web1 = &mut snapshot.containers[0];
    let endpoint = |id: &str, ipv6: &str| Endpoint {
        network_id: id.to_string(),
        network_name: id.to_string(),
        ipv4: None,
        ipv6: Some(ipv6.parse().unwrap()),
    };
    // Endpoints are in network-name order: the internal one first, then web, then zzz-other.
    web1.endpoints = vec![
        endpoint("n3", "fd76:6700:0:40::2"),
        web1.endpoints[0].clone(),
        endpoint("n4", "fd76:6700:0:41::2"),
    ];
    let ruleset = plan(&snapshot, &PlanInputs::default());
    let web1: Ipv6Addr = "fd76:6700:0:10::2".parse().unwrap();
    assert_eq!(published(&ruleset), vec![(web1, 80), (web1, 83)]);
}

#[test]
fn proxy_mode_leaves_containers_to_docker_proxy() {
    let mut snapshot = lab_snapshot();
    snapshot.daemon.userland_proxy = Setting::default_value(true);
    let proxied = plan(&snapshot, &PlanInputs::default());
    let returns = rules_in(&proxied, "published-dnat")
        .iter()
        .filter(|r| r.action == Action::Return)
        .count();
    assert_eq!(returns, 1 + 3, "link-local, then docker0, mybr0 and br-*");
    assert!(
        !comments(&proxied, "postrouting")
            .iter()
            .any(|c| c.starts_with("hairpin"))
    );

    snapshot.daemon.userland_proxy = Setting::default_value(false);
    let direct = plan(&snapshot, &PlanInputs::default());
    let returns = rules_in(&direct, "published-dnat")
        .iter()
        .filter(|r| r.action == Action::Return)
        .count();
    assert_eq!(returns, 1, "only link-local sources are left alone");
    assert_eq!(
        comments(&direct, "postrouting")
            .iter()
            .filter(|c| c.starts_with("hairpin"))
            .count(),
        3
    );
}

#[test]
fn nat66_follows_prefix_kind_and_network_options() {
    let mut snapshot = lab_snapshot();
    snapshot.networks[0].ipv6_subnets = vec!["fd76:6700:0:1::/64".parse().unwrap()];
    snapshot.networks[1].ipv6_subnets = vec!["2001:db8:10::/64".parse().unwrap()];
    snapshot.networks[2].ipv6_subnets = vec!["fd76:6700:0:11::/64".parse().unwrap()];
    snapshot.networks[2].masquerade = false;

    let ruleset = plan(&snapshot, &PlanInputs::default());
    assert_eq!(
        comments(&ruleset, "postrouting")
            .into_iter()
            .filter(|c| c.starts_with("nat66"))
            .collect::<Vec<_>>(),
        vec!["nat66 masquerade: network bridge"],
        "ULA with masquerade on only; GUA off by default; masquerade off honoured"
    );

    let gua = PlanInputs {
        options: PlanOptions {
            nat66_gua: true,
            ..PlanOptions::default()
        },
        ..PlanInputs::default()
    };
    assert_eq!(
        comments(&plan(&snapshot, &gua), "postrouting")
            .into_iter()
            .filter(|c| c.starts_with("nat66"))
            .count(),
        2
    );

    snapshot.networks[0].host_ipv6 = Some("2001:db8:76::1".parse().unwrap());
    snapshot.networks[0].internal = false;
    let snat = plan(&snapshot, &PlanInputs::default());
    let rule = rules_in(&snat, "postrouting")
        .iter()
        .find(|r| r.comment.as_deref() == Some("nat66 snat: network bridge"))
        .unwrap();
    assert_eq!(rule.action, Action::Snat("2001:db8:76::1".parse().unwrap()));

    snapshot.networks[0].internal = true;
    assert!(
        !comments(&plan(&snapshot, &PlanInputs::default()), "postrouting")
            .iter()
            .any(|c| c.contains("network bridge")),
        "internal networks are never translated"
    );
}

#[test]
fn internal_networks_keep_traffic_inside_their_bridge() {
    let mut snapshot = lab_snapshot();
    snapshot.networks[2].internal = true;
    let ruleset = plan(&snapshot, &PlanInputs::default());
    assert!(
        comments(&ruleset, FORWARD_CHAIN).contains(&"internal network custom: no egress".into())
    );
    assert!(
        comments(&ruleset, TO_BRIDGE_CHAIN).contains(&"internal network custom: no ingress".into())
    );
    let egress = rules_in(&ruleset, FORWARD_CHAIN)
        .iter()
        .find(|r| r.comment.as_deref() == Some("internal network custom: no egress"))
        .unwrap();
    assert_eq!(
        egress.matches,
        vec![
            Match::InInterface(InterfaceName::Exact("mybr0".into())),
            Match::OutInterfaceNot(InterfaceName::Exact("mybr0".into())),
        ],
        "same-bridge traffic (NDP, link-local, members) is untouched"
    );
}

/// The lab with `app` linked to `db` (exposing 5432/tcp) on the default bridge, ICC off.
fn linked_snapshot() -> Snapshot {
    let mut snapshot = lab_snapshot();
    let mut db = container("db", "n0", "fd76:6700:0:1::3", vec![]);
    db.exposed = vec![ExposedPort {
        protocol: Protocol::Tcp,
        port: 5432,
    }];
    let mut app = container("app", "n0", "fd76:6700:0:1::2", vec![]);
    app.links = vec!["db".into()];
    snapshot.containers = vec![app, db];
    snapshot
}

#[test]
fn links_open_the_childs_exposed_ports_to_the_parent_when_icc_is_off() {
    let mut snapshot = linked_snapshot();
    let ruleset = plan(&snapshot, &PlanInputs::default());
    assert_eq!(
        dnat(&ruleset, LINKS_SET),
        vec!["fd76:6700:0:1::2 . fd76:6700:0:1::3 . tcp . 5432"]
    );

    snapshot.networks[0].icc = true;
    let ruleset = plan(&snapshot, &PlanInputs::default());
    assert!(
        ruleset.set(LINKS_SET).unwrap().elements.is_empty(),
        "ICC on needs no link rules"
    );
}

/// The rendered dry run, pinned. A change here is a change in what users install.
#[test]
fn rendered_script_snapshot() {
    let text = render_script(&plan(&lab_snapshot(), &PlanInputs::default()));
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/lab-render.nft");
    if std::env::var_os("V6GUARD_BLESS").is_some() {
        std::fs::write(path, &text).unwrap();
    }
    let expected = std::fs::read_to_string(path).unwrap();
    let first_difference = text
        .lines()
        .zip(expected.lines())
        .enumerate()
        .find(|(_, (got, want))| got != want);
    assert!(
        first_difference.is_none() && text.lines().count() == expected.lines().count(),
        "render differs from tests/fixtures/lab-render.nft at {first_difference:?}; if the \
         change is intended, rerun with V6GUARD_BLESS=1 and review the diff"
    );
}

fn policy(yaml: &str) -> Policy {
    crate::config::parse_policy_file(std::path::Path::new("test.yaml"), yaml).unwrap()
}

fn with_policy(yaml: &str) -> PlanInputs {
    PlanInputs {
        policy: policy(yaml),
        ..PlanInputs::default()
    }
}

#[test]
fn policy_overrides_icc_per_network() {
    let inputs = with_policy("networks:\n  bridge:\n    icc: true\n  web:\n    icc: false\n");
    let ruleset = plan(&lab_snapshot(), &inputs);
    let comments = comments(&ruleset, TO_BRIDGE_CHAIN);
    assert!(comments.contains(&"icc on: network bridge".to_string()));
    assert!(comments.contains(&"icc off: network web".to_string()));
}

#[test]
fn policy_deny_closes_a_published_port_everywhere() {
    let inputs = with_policy("containers:\n  web1:\n    deny: [\"80/tcp\"]\n");
    let ruleset = plan(&lab_snapshot(), &inputs);
    let web1: Ipv6Addr = "fd76:6700:0:10::2".parse().unwrap();
    assert_eq!(published(&ruleset), vec![(web1, 83)]);
    assert_eq!(
        dnat(&ruleset, DNAT_ANY_MAP),
        vec!["tcp . 8083 : fd76:6700:0:10::2 . 83"],
        "no DNAT to a denied port either"
    );
}

#[test]
fn policy_expose_opens_an_unpublished_port() {
    let inputs = with_policy("containers:\n  db:\n    expose: [\"5432/tcp\", \"9000-9001/udp\"]\n");
    let ruleset = plan(&lab_snapshot(), &inputs);
    let elements: Vec<String> = dnat(&ruleset, PUBLISHED_SET);
    assert!(elements.contains(&"fd76:6700:0:11::2 . tcp . 5432".to_string()));
    assert!(elements.contains(&"fd76:6700:0:11::2 . udp . 9001".to_string()));
    assert!(
        dnat(&ruleset, DNAT_ANY_MAP)
            .iter()
            .all(|e| !e.contains("5432")),
        "expose is routed only"
    );
}

#[test]
fn policy_allow_from_restricts_sources() {
    let inputs = with_policy(
        "containers:\n  web1:\n    allow_from: [\"2001:db8:76::/64\", \"2001:db8:99::5\"]\n",
    );
    let ruleset = plan(&lab_snapshot(), &inputs);
    assert!(
        published(&ruleset).is_empty(),
        "web1's ports are no longer open to all"
    );
    assert_eq!(
        dnat(&ruleset, RESTRICTED_SET),
        vec![
            "fd76:6700:0:10::2 . tcp . 80 . 2001:db8:76::/64",
            "fd76:6700:0:10::2 . tcp . 80 . 2001:db8:99::5",
            "fd76:6700:0:10::2 . tcp . 83 . 2001:db8:76::/64",
            "fd76:6700:0:10::2 . tcp . 83 . 2001:db8:99::5",
        ]
    );
    let lookups = rules_in(&ruleset, TO_BRIDGE_CHAIN)
        .iter()
        .filter(|r| {
            r.matches
                .iter()
                .any(|m| matches!(m, Match::Lookup { set, .. } if set == RESTRICTED_SET))
        })
        .count();
    assert_eq!(lookups, 2, "direct and through a host address");
}

#[test]
fn policy_nat66_and_snat_override_defaults() {
    let mut snapshot = lab_snapshot();
    snapshot.networks[1].ipv6_subnets = vec!["2001:db8:10::/64".parse().unwrap()];
    let inputs = with_policy(
        "networks:\n  web:\n    snat_address: 2001:db8:76::53\n  bridge:\n    nat66: false\n",
    );
    let ruleset = plan(&snapshot, &inputs);
    let nat66: Vec<String> = comments(&ruleset, "postrouting")
        .into_iter()
        .filter(|c| c.starts_with("nat66"))
        .collect();
    assert_eq!(
        nat66,
        vec![
            "nat66 snat: network web",
            "nat66 masquerade: network custom"
        ],
        "snat_address turns NAT66 on for a global prefix; nat66: false turns it off"
    );
}

#[test]
fn label_policies_apply_and_malformed_labels_are_reported() {
    let mut snapshot = lab_snapshot();
    snapshot.containers[0]
        .labels
        .insert("v6guard.deny".into(), "83/tcp".into());
    snapshot.containers[1]
        .labels
        .insert("v6guard.allow_from".into(), "not-a-prefix".into());
    let ruleset = plan(&snapshot, &PlanInputs::default());
    let web1: Ipv6Addr = "fd76:6700:0:10::2".parse().unwrap();
    assert_eq!(published(&ruleset), vec![(web1, 80)]);
    let warnings = warnings(&snapshot, &PlanInputs::default());
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].starts_with("container db: label v6guard.allow_from"),
        "{warnings:?}"
    );
}

#[test]
fn the_links_rule_only_accepts_traffic_bridged_inside_the_default_bridge() {
    let snapshot = linked_snapshot();
    let ruleset = plan(&snapshot, &PlanInputs::default());
    let rule = rules_in(&ruleset, TO_BRIDGE_CHAIN)
        .iter()
        .find(|r| r.comment.as_deref() == Some("links"))
        .unwrap();
    let docker0 = InterfaceName::Exact("docker0".into());
    assert_eq!(rule.matches[0], Match::InInterface(docker0.clone()));
    assert_eq!(
        rule.matches[1],
        Match::OutInterface(docker0),
        "no spoofing from elsewhere"
    );
}

#[test]
fn nested_allow_from_prefixes_are_merged() {
    let inputs = with_policy(
        "containers:\n  web1:\n    allow_from: [\"2001:db8:76::/64\", \"2001:db8:76::5\", \"2001:db8:76:1::/64\"]\n",
    );
    let ruleset = plan(&lab_snapshot(), &inputs);
    let port80: Vec<String> = dnat(&ruleset, RESTRICTED_SET)
        .into_iter()
        .filter(|e| e.contains(". 80 ."))
        .collect();
    assert_eq!(
        port80,
        vec!["fd76:6700:0:10::2 . tcp . 80 . 2001:db8:76::/63"],
        "the kernel refuses overlapping intervals"
    );
}

#[test]
fn denied_and_restricted_host_ports_are_closed_on_the_host_too() {
    let mut inputs = with_policy(
        "containers:\n  web1:\n    deny: [\"83/tcp\"]\n    allow_from: [\"2001:db8:76::/64\"]\n",
    );
    let mut snapshot = lab_snapshot();
    snapshot.daemon.userland_proxy = Setting::default_value(true);
    snapshot.containers[1].ports = vec![PortBinding {
        protocol: Protocol::Tcp,
        container_port: 22,
        host_ip: Some("2001:db8:76::1".parse().unwrap()),
        host_port: 2222,
    }];
    inputs.policy.containers.insert(
        "db".into(),
        crate::config::ContainerPolicy {
            allow_from: Some(vec!["2001:db8:99::/64".parse().unwrap()]),
            ..Default::default()
        },
    );
    let ruleset = plan(&snapshot, &inputs);
    assert_eq!(
        dnat(&ruleset, "host-closed"),
        vec![
            "::/0 . tcp . 8080",
            "::/0 . tcp . 8083",
            "2001:db8:76::1 . tcp . 2222"
        ],
        "docker-proxy must not serve them to link-local sources or containers; a binding on \
         one address is keyed by it, so the host's other addresses keep their own services"
    );
    assert_eq!(
        dnat(&ruleset, "host-allowed"),
        vec![
            "::/0 . tcp . 8080 . 2001:db8:76::/64",
            "2001:db8:76::1 . tcp . 2222 . 2001:db8:99::/64"
        ]
    );
    let input = rules_in(&ruleset, "input");
    assert_eq!(input.len(), 4, "lo, replies, allowed sources, then drop");
    assert_eq!(input[1].matches, vec![Match::EstablishedOrRelated]);

    snapshot.daemon.userland_proxy = Setting::default_value(false);
    assert!(
        plan(&snapshot, &inputs)
            .chains
            .iter()
            .all(|c| c.name != "input"),
        "without docker-proxy nothing serves an untranslated host port"
    );
    assert!(
        plan(&lab_snapshot(), &PlanInputs::default())
            .chains
            .iter()
            .all(|c| c.name != "input"),
        "no input chain without such a policy"
    );
}

#[test]
fn ndp_proxy_entries_follow_the_policy_and_the_containers() {
    let inputs = with_policy("networks:\n  web:\n    ndp_proxy:\n      interface: eth1\n");
    let ruleset = plan(&lab_snapshot(), &inputs);
    let web1: Ipv6Addr = "fd76:6700:0:10::2".parse().unwrap();
    assert_eq!(
        ruleset.ndp.entries.iter().cloned().collect::<Vec<_>>(),
        vec![("eth1".to_string(), web1)]
    );
    assert_eq!(
        ruleset.ndp.owned.iter().cloned().collect::<Vec<_>>(),
        vec![("eth1".to_string(), "fd76:6700:0:10::/64".parse().unwrap())],
        "only the proxied network's subnet on its interface is v6guard's to clean"
    );
    assert!(
        plan(&lab_snapshot(), &PlanInputs::default())
            .ndp
            .entries
            .is_empty()
    );
    let text = render_script(&ruleset);
    assert!(
        text.contains("#   ip -6 neigh replace proxy fd76:6700:0:10::2 dev eth1"),
        "{text}"
    );
}
