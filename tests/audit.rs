//! The audit matches reality: every port it lists as reachable answers from the outside
//! namespace, every published port it lists as closed does not, and before `apply` it says
//! the ruleset is not enforced.

mod common;

use std::time::Duration;

use common::*;

const READY: Duration = Duration::from_secs(30);

#[test]
fn audit_matches_what_the_outside_can_reach() {
    let Some(_lock) = system_lock() else { return };
    let _table = TableGuard::clean();
    let outside = Outside::up("v6gt-aud-out");
    let net = Network::create("v6gt-aud", "fd76:6700:0:7a::/64", &[]);
    let open = Container::web(
        "v6gt-aud-open",
        &net.name,
        &["-p", "18380:80", "-p", "127.0.0.1:18381:81"],
    );
    let denied = Container::web(
        "v6gt-aud-denied",
        &net.name,
        &["-p", "18382:80", "--label", "v6guard.deny=80/tcp"],
    );
    let open_v6 = open.ipv6(&net.name);
    assert!(eventually(READY, || outside.connects(&open_v6, 80)), "up");

    let before = v6guard(&["audit"]);
    assert_eq!(before.status.code(), Some(1), "not enforced before apply");
    let text = String::from_utf8_lossy(&before.stdout);
    assert!(
        text.starts_with("v6guard: NOT ENFORCED: table ip6 v6guard is missing"),
        "{text}"
    );

    v6guard_ok(&["apply"]);
    let report: serde_json::Value =
        serde_json::from_str(&v6guard_ok(&["audit", "--json"])).expect("audit JSON");
    assert_eq!(report["enforcement"], "Enforced", "{report:#}");

    let ours = |entry: &&serde_json::Value| {
        entry["container"]
            .as_str()
            .is_some_and(|name| name.starts_with("v6gt-aud-"))
    };
    let reachable: Vec<&serde_json::Value> = report["audit"]["reachable"]
        .as_array()
        .expect("reachable list")
        .iter()
        .filter(ours)
        .collect();
    let closed: Vec<&serde_json::Value> = report["audit"]["closed"]
        .as_array()
        .expect("closed list")
        .iter()
        .filter(ours)
        .collect();
    assert_eq!(reachable.len(), 1, "{report:#}");
    assert_eq!(
        closed.len(),
        2,
        "81 (127.0.0.1 only) and the denied port: {report:#}"
    );

    for entry in &reachable {
        let address = entry["address"].as_str().expect("address");
        let port = entry["port"].as_u64().expect("port") as u16;
        assert!(
            eventually(READY, || outside.connects(address, port)),
            "listed reachable: [{address}]:{port}"
        );
    }
    // A policy that is not applied yet: the rule count may not change, the plan does.
    let policies = policy_dir(
        "audit-policies",
        &[("10-audit.yaml", "networks:\n  v6gt-aud:\n    icc: false\n")],
    );
    let stale = v6guard(&["audit", "--policies-dir", &policies]);
    assert_eq!(
        stale.status.code(),
        Some(1),
        "a policy not applied yet is not enforced"
    );
    let text = String::from_utf8_lossy(&stale.stdout);
    assert!(text.contains("holds rules from another plan"), "{text}");

    for entry in &closed {
        let container = entry["container"].as_str().expect("container");
        let port = entry["port"].as_u64().expect("port") as u16;
        let address = if container == open.name {
            open_v6.clone()
        } else {
            denied.ipv6(&net.name)
        };
        assert!(
            !outside.connects(&address, port),
            "listed closed: [{address}]:{port}"
        );
    }

    // A rule edited by hand in place: same count, same comment, same table comment, but the
    // final drop now accepts. The audit says the kernel no longer holds the plan.
    v6guard_ok(&["apply"]);
    let listing = run_ok(
        "nft",
        &["-a", "list", "chain", "ip6", "v6guard", "to-bridge"],
    );
    let handle = listing
        .lines()
        .find(|l| l.contains("comment \"not published\""))
        .and_then(|l| l.rsplit("# handle ").next())
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|| panic!("the final drop in\n{listing}"));
    run_ok(
        "nft",
        &[
            "replace",
            "rule",
            "ip6",
            "v6guard",
            "to-bridge",
            "handle",
            &handle,
            "counter",
            "accept",
            "comment",
            "\"not published\"",
        ],
    );
    let (address, port) = (&open_v6, 81);
    assert!(
        eventually(READY, || outside.connects(address, port)),
        "the edit really opens [{address}]:{port}"
    );
    let edited = v6guard(&["audit"]);
    let text = String::from_utf8_lossy(&edited.stdout);
    let log = String::from_utf8_lossy(&edited.stderr);
    assert_eq!(edited.status.code(), Some(1), "{text}{log}");
    assert!(
        text.contains("chain to-bridge: 1 of its") && text.contains("changed since v6guard"),
        "{text}{log}"
    );

    // A dormant table keeps every rule, and no packet sees any of them.
    v6guard_ok(&["apply"]);
    run_ok(
        "nft",
        &["add", "table", "ip6", "v6guard", "{ flags dormant; }"],
    );
    let dormant = v6guard(&["audit"]);
    let text = String::from_utf8_lossy(&dormant.stdout);
    assert_eq!(dormant.status.code(), Some(1), "{text}");
    assert!(text.contains("is dormant"), "{text}");
}
