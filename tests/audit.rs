//! The audit matches reality, port for port: every TCP row's "reachable from outside" is what
//! a real connection from the outside namespace finds, before any table (every listener,
//! published or not), after `apply` (published only), in both userland-proxy modes; a UDP
//! listener, an IPv4-only listener and a `--network host` container are reported as what they
//! are; a rule edited by hand and a dormant table are "could not evaluate" / "not enforced".

mod common;

use std::time::Duration;

use common::*;
use serde_json::Value;

const READY: Duration = Duration::from_secs(30);
/// `v6guard audit` exit codes (see its --help).
const EXIT_CLEAN: i32 = 0;
const EXIT_BEYOND_PUBLISHED: i32 = 4;
const EXIT_COULD_NOT_EVALUATE: i32 = 5;

#[test]
fn audit_matches_reality_proxy_off() {
    let Some(_lock) = system_lock() else { return };
    let _mode = ProxyMode::set(false);
    audit_matches_reality();
}

#[test]
fn audit_matches_reality_proxy_on() {
    let Some(_lock) = system_lock() else { return };
    let _mode = ProxyMode::set(true);
    audit_matches_reality();
}

/// `v6guard audit --format json`: its exit code and report.
fn audit_json(extra: &[&str]) -> (Option<i32>, Value) {
    let mut args = vec!["audit", "--format", "json"];
    args.extend(extra);
    let out = v6guard(&args);
    let report = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "audit JSON ({e}): {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code(), report)
}

/// Our containers' rows.
fn rows(report: &Value) -> Vec<Value> {
    report["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .filter(|r| {
            r["container"]
                .as_str()
                .is_some_and(|n| n.starts_with("v6gt-aud-"))
        })
        .cloned()
        .collect()
}

fn from_outside(row: &Value) -> bool {
    row["reachable_from"]
        .as_array()
        .expect("reachable_from")
        .iter()
        .any(|c| c == "outside")
}

/// Every TCP row's verdict on the container's own address from outside against a real
/// connection to it; returns the rows.
fn assert_rows_match_connections(outside: &Outside, report: &Value, when: &str) -> Vec<Value> {
    let rows = rows(report);
    for row in rows.iter().filter(|r| r["protocol"] == "tcp") {
        let address = row["address"].as_str().expect("address");
        let port = row["port"].as_u64().expect("port") as u16;
        let listed = row["direct_from_outside"] == true;
        let real = if listed {
            eventually(READY, || outside.connects(address, port))
        } else {
            outside.connects(address, port)
        };
        assert_eq!(
            listed, real,
            "{when}: [{address}]:{port} listed reachable from outside: {listed}, a real \
             connection: {real}\n{row:#}"
        );
    }
    rows
}

/// What `audit --probe` leaves when it is killed before it cleans up: its namespace, named
/// for a process that no longer exists, and the veth whose address routes the probe prefix.
fn leave_an_interrupted_probe_behind() {
    let mut gone = std::process::Command::new("true")
        .spawn()
        .expect("spawn true");
    let pid = gone.id();
    gone.wait().expect("wait for true");
    let (name, host_if) = (format!("v6g-probe-{pid}"), format!("v6gp{pid}"));
    run_ok("ip", &["netns", "add", &name]);
    run_ok(
        "ip",
        &[
            "link", "add", &host_if, "type", "veth", "peer", "name", "eth0", "netns", &name,
        ],
    );
    run_ok(
        "ip",
        &[
            "-6",
            "addr",
            "add",
            "2001:db8:ffff:ffff::1/64",
            "dev",
            &host_if,
            "nodad",
        ],
    );
    run_ok("ip", &["link", "set", &host_if, "up"]);
}

/// `audit --probe`: its real connections agree with every verdict, and its namespace is gone.
fn assert_probe_agrees(when: &str) {
    let (_, probed) = audit_json(&["--probe"]);
    let probe = &probed["probe"];
    assert!(
        probe["probed"].as_u64().is_some_and(|n| n >= 2),
        "{when}: probed our rows:\n{probe:#}"
    );
    assert_eq!(
        probe["disagreements"],
        serde_json::json!([]),
        "{when}: --probe disagrees:\n{probed:#}"
    );
    let namespaces = run_ok("ip", &["netns", "list"]);
    assert!(
        !namespaces.contains("v6g-probe-"),
        "{when}: the probe namespace was removed:\n{namespaces}"
    );
}

fn audit_matches_reality() {
    let _table = TableGuard::clean();
    let outside = Outside::up("v6gt-aud-out");
    let net = Network::create(
        "v6gt-aud",
        "fd76:6700:0:7a::/64",
        &["com.docker.network.bridge.enable_icc=false"],
    );
    let web = Container::web(
        "v6gt-aud-web",
        &net.name,
        &["-p", "18380:80", "-p", "127.0.0.1:18381:81"],
    );
    let udp = Container::run(
        "v6gt-aud-udp",
        &net.name,
        &[],
        // /bin/nc is OpenBSD netcat; a bare `nc` in busybox sh is its own applet.
        "exec /bin/nc -6 -u -l 5353",
    );
    let ipv4 = Container::run(
        "v6gt-aud-ipv4",
        &net.name,
        &[],
        "httpd -f -p 0.0.0.0:82 -h /www",
    );
    let host = Container::run("v6gt-aud-host", "host", &[], "sleep 600");
    // Published on one host address only: reachable through it, never on its own address.
    let bound = Container::web(
        "v6gt-aud-bound",
        &net.name,
        &["-p", &format!("[{HOST_ADDR}]:18383:80")],
    );
    let bound_v6 = bound.ipv6(&net.name);
    let web_v6 = web.ipv6(&net.name);
    let udp_v6 = udp.ipv6(&net.name);
    let ipv4_v6 = ipv4.ipv6(&net.name);
    assert!(eventually(READY, || outside.connects(&web_v6, 81)), "up");

    // No table: every IPv6 listener is open, published or not (Docker's gap).
    let (code, before) = audit_json(&[]);
    assert_eq!(code, Some(EXIT_BEYOND_PUBLISHED), "{before:#}");
    assert_eq!(before["enforcement"]["state"], "not_enforced");
    let listed = assert_rows_match_connections(&outside, &before, "before apply");
    let port_of = |rows: &[Value], address: &str, port: u16| {
        rows.iter()
            .find(|r| r["address"] == address && r["port"] == port)
            .cloned()
    };
    let unpublished = port_of(&listed, &web_v6, 81).expect("the unpublished listener");
    assert_eq!(unpublished["beyond_published"], true, "{unpublished:#}");
    let udp_row = port_of(&listed, &udp_v6, 5353).expect("the UDP listener");
    assert_eq!(udp_row["protocol"], "udp");
    assert!(from_outside(&udp_row), "{udp_row:#}");
    assert!(
        rows(&before)
            .iter()
            .all(|r| r["address"] != ipv4_v6.as_str()),
        "an IPv4-only listener has no IPv6 row:\n{before:#}"
    );
    assert_probe_agrees("before apply");
    let notes = before["notes"].as_array().expect("notes");
    assert!(
        notes.iter().any(|n| n["container"] == host.name.as_str()
            && n["note"]
                .as_str()
                .is_some_and(|t| t.starts_with("host network"))),
        "{notes:#?}"
    );

    // Enforced: only what was published.
    v6guard_ok(&["apply"]);
    let (code, after) = audit_json(&[]);
    assert_eq!(after["enforcement"]["state"], "enforced", "{after:#}");
    assert_eq!(code, Some(EXIT_CLEAN), "{after:#}");
    let listed = assert_rows_match_connections(&outside, &after, "after apply");
    let published = port_of(&listed, &web_v6, 80).expect("the published port");
    assert!(from_outside(&published) && published["published"] == true);
    let udp_row = port_of(&listed, &udp_v6, 5353).expect("the UDP listener");
    assert!(!from_outside(&udp_row), "{udp_row:#}");
    let only_through_host = port_of(&listed, &bound_v6, 80).expect("the host-address binding");
    assert!(
        from_outside(&only_through_host) && only_through_host["direct_from_outside"] == false,
        "{only_through_host:#}"
    );
    assert!(
        only_through_host["via"]
            .to_string()
            .contains(&format!("[{HOST_ADDR}]:18383")),
        "{only_through_host:#}"
    );
    assert!(
        eventually(READY, || outside.connects(HOST_ADDR, 18383)),
        "and a real connection through the host address gets there"
    );

    // --probe confirms it from a namespace of its own, and leaves nothing behind; what a
    // killed probe left (its namespace, its veth routing the probe prefix) does not block it.
    leave_an_interrupted_probe_behind();
    assert_probe_agrees("after apply");

    // The text report says the same, grouped by container.
    let text = v6guard_ok(&["audit"]);
    assert!(text.starts_with("v6guard: enforced"), "{text}");
    assert!(text.contains("\nv6gt-aud-web\n"), "{text}");

    // A rule edited by hand in place: the kernel no longer holds the plan, and the audit does
    // not guess what it does now.
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
    assert!(
        eventually(READY, || outside.connects(&web_v6, 81)),
        "the edit really opens [{web_v6}]:81"
    );
    let (code, edited) = audit_json(&[]);
    assert_eq!(code, Some(EXIT_COULD_NOT_EVALUATE), "{edited:#}");
    let reasons = edited["enforcement"]["reasons"].to_string();
    assert!(reasons.contains("changed since v6guard"), "{reasons}");

    // A dormant table keeps every rule and no packet sees any: open, as without a table.
    v6guard_ok(&["apply"]);
    run_ok(
        "nft",
        &["add", "table", "ip6", "v6guard", "{ flags dormant; }"],
    );
    let (code, dormant) = audit_json(&[]);
    assert_eq!(code, Some(EXIT_BEYOND_PUBLISHED), "{dormant:#}");
    assert!(
        dormant["enforcement"]["reasons"]
            .to_string()
            .contains("is dormant")
    );
    assert_rows_match_connections(&outside, &dormant, "dormant table");
}
