//! The audit on hand-built snapshots and facts.

use std::collections::BTreeMap;
use std::net::IpAddr;

use super::*;
use crate::testing::lab_snapshot;

fn tcp(address: &str, port: u16) -> Listener {
    Listener {
        protocol: Protocol::Tcp,
        port,
        address: address.parse::<IpAddr>().unwrap(),
    }
}

/// web1 (network web, ICC on) listens on 80 (published on `::`), 81 (published on
/// 127.0.0.1 only) and 83 (published with no host IP) on `::`, and on 90 on 127.0.0.1; db
/// (network custom) listens on 5432, unpublished.
fn facts(kernel: Kernel) -> Facts {
    let mut listening = BTreeMap::new();
    listening.insert(
        "web1".to_string(),
        Listening::Sockets(vec![
            tcp("::", 80),
            tcp("::", 81),
            tcp("::", 83),
            tcp("127.0.0.1", 90),
        ]),
    );
    listening.insert("db".to_string(), Listening::Sockets(vec![tcp("::", 5432)]));
    Facts {
        kernel,
        listening,
        hazards: Vec::new(),
        warnings: Vec::new(),
    }
}

fn row<'a>(report: &'a Report, container: &str, port: u16) -> &'a Row {
    report
        .rows
        .iter()
        .find(|r| r.container == container && r.port == port)
        .unwrap_or_else(|| panic!("no row for {container}:{port}: {report:#?}"))
}

fn policy(yaml: &str) -> PlanInputs {
    PlanInputs {
        policy: crate::config::parse_policy_file(std::path::Path::new("p.yaml"), yaml).unwrap(),
        ..PlanInputs::default()
    }
}

#[test]
fn enforced_rows_follow_the_ruleset() {
    let report = audit(
        &lab_snapshot(),
        &PlanInputs::default(),
        &facts(Kernel::Enforced),
    );
    let published = row(&report, "web1", 80);
    assert!(published.published && published.listening == Some(true));
    assert!(published.reachable_from.contains(&SourceClass::Outside));
    assert!(published.via.contains(&Via::Direct));
    assert!(published.via.contains(&Via::Dnat {
        host: "[::]:8080".into()
    }));
    let unpublished = row(&report, "web1", 81);
    assert!(!unpublished.published);
    assert_eq!(
        unpublished.reachable_from,
        vec![SourceClass::SameNetwork, SourceClass::Host],
        "ICC on: neighbours and the host only"
    );
    let db = row(&report, "db", 5432);
    assert_eq!(
        db.reachable_from,
        vec![SourceClass::Host],
        "ICC off on custom"
    );
    assert!(
        report.rows.iter().all(|r| r.port != 90),
        "loopback listeners are nobody's business"
    );
    assert_eq!(report.exit_code(), exit::CLEAN);
    assert_eq!(report.enforcement.state, "enforced");
}

#[test]
fn without_a_table_every_listener_is_open_and_the_exit_code_says_so() {
    let kernel = Kernel::Open(vec!["table ip6 v6guard is missing".into()]);
    let report = audit(&lab_snapshot(), &PlanInputs::default(), &facts(kernel));
    let db = row(&report, "db", 5432);
    assert!(db.beyond_published && db.reachable_from.contains(&SourceClass::Outside));
    assert_eq!(report.exit_code(), exit::BEYOND_PUBLISHED);
    assert_eq!(report.enforcement.state, "not_enforced");
}

#[test]
fn a_table_that_differs_is_not_guessed_at() {
    let kernel = Kernel::Differs(vec!["chain forward: 1 of its 3 rules changed".into()]);
    let report = audit(&lab_snapshot(), &PlanInputs::default(), &facts(kernel));
    assert!(report.rows.iter().all(|r| r.reachable_from.is_empty()));
    assert_eq!(report.exit_code(), exit::COULD_NOT_EVALUATE);
    let stood_down = audit(
        &lab_snapshot(),
        &PlanInputs::default(),
        &facts(Kernel::StoodDown("ip6tables is true".into())),
    );
    assert_eq!(stood_down.exit_code(), exit::COULD_NOT_EVALUATE);
    assert_eq!(stood_down.enforcement.state, "stood_down");
}

#[test]
fn another_tool_on_the_forward_path_means_no_verdict_is_trusted() {
    let mut with_hazard = facts(Kernel::Enforced);
    with_hazard.hazards.push(crate::hazards::Hazard {
        kind: HazardKind::DockerIp6tables,
        message: "ip6 filter has DOCKER chains".into(),
        fix: "remove them".into(),
    });
    let report = audit(&lab_snapshot(), &PlanInputs::default(), &with_hazard);
    assert_eq!(report.exit_code(), exit::COULD_NOT_EVALUATE);
    // Another tool's plain forward chain can only drop more: verdicts stand, with a warning.
    let mut foreign = facts(Kernel::Enforced);
    foreign.hazards.push(crate::hazards::Hazard {
        kind: HazardKind::ForeignForwardChain,
        message: "inet filter forward, policy accept".into(),
        fix: "-".into(),
    });
    let report = audit(&lab_snapshot(), &PlanInputs::default(), &foreign);
    assert_eq!(report.exit_code(), exit::CLEAN);
    assert!(
        report
            .warnings
            .iter()
            .any(|w| w.contains("upper") || w.contains("may be dropped"))
    );
}

#[test]
fn nat_unprotected_exposure_is_found_port_by_port() {
    let report = audit(
        &lab_snapshot(),
        &policy("networks:\n  web:\n    gateway_mode: nat-unprotected\n"),
        &facts(Kernel::Enforced),
    );
    let unpublished = row(&report, "web1", 81);
    assert!(unpublished.beyond_published, "{unpublished:?}");
    assert_eq!(report.exit_code(), exit::BEYOND_PUBLISHED);
}

#[test]
fn allow_from_limits_the_outside_sources() {
    let report = audit(
        &lab_snapshot(),
        &policy("containers:\n  web1:\n    allow_from: [\"2001:db8:1::/48\"]\n"),
        &facts(Kernel::Enforced),
    );
    let published = row(&report, "web1", 80);
    assert!(published.reachable_from.contains(&SourceClass::Outside));
    assert_eq!(
        published.outside_sources,
        Some(vec!["2001:db8:1::/48".parse().unwrap()])
    );
}

#[test]
fn shared_namespaces_get_a_note_not_rows() {
    let mut snapshot = lab_snapshot();
    snapshot.containers[1].network_mode = "host".into();
    let report = audit(&snapshot, &PlanInputs::default(), &facts(Kernel::Enforced));
    assert!(report.rows.iter().all(|r| r.container != "db"));
    assert!(
        report
            .notes
            .iter()
            .any(|n| n.container == "db" && n.note.starts_with("host network"))
    );
}

#[test]
fn unreadable_sockets_mean_could_not_evaluate() {
    let mut unread = facts(Kernel::Enforced);
    unread
        .listening
        .insert("db".into(), Listening::Unknown("permission denied".into()));
    let report = audit(&lab_snapshot(), &PlanInputs::default(), &unread);
    assert_eq!(report.exit_code(), exit::COULD_NOT_EVALUATE);
}

/// The JSON contract: these keys, these types. A change here is a change for every script
/// that reads `v6guard audit --format json`; bump SCHEMA_VERSION when one goes or changes.
#[test]
fn the_json_contract() {
    let report = audit(
        &lab_snapshot(),
        &PlanInputs::default(),
        &facts(Kernel::Enforced),
    );
    let json = serde_json::to_value(&report).unwrap();
    let keys = |value: &serde_json::Value| -> Vec<String> {
        let mut keys: Vec<String> = value.as_object().unwrap().keys().cloned().collect();
        keys.sort();
        keys
    };
    assert_eq!(
        keys(&json),
        [
            "could_not_evaluate",
            "enforcement",
            "hazards",
            "notes",
            "probe",
            "rows",
            "schema_version",
            "warnings"
        ]
    );
    assert_eq!(json["schema_version"], 1);
    assert_eq!(keys(&json["enforcement"]), ["reasons", "state"]);
    let web = json["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["port"] == 80)
        .unwrap();
    assert_eq!(
        keys(web),
        [
            "address",
            "beyond_published",
            "container",
            "direct_from_outside",
            "listening",
            "network",
            "outside_sources",
            "port",
            "protocol",
            "published",
            "reachable_from",
            "via",
            "why"
        ]
    );
    assert_eq!(web["protocol"], "tcp");
    assert_eq!(web["address"], "fd76:6700:0:10::2");
    assert_eq!(web["reachable_from"][0], "outside");
    assert_eq!(web["via"][0], serde_json::json!({"kind": "direct"}));
}
