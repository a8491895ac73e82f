//! Real-system tests: a real dockerd (Debian's docker.io 20.10), real nftables, and an outside
//! client in its own network namespace. Each test first measures Docker's IPv6 leak without
//! v6guard (the baseline), then applies v6guard and measures again, so a pass means v6guard
//! closed something that was really open.

mod common;

use std::time::Duration;

use common::*;

const READY: Duration = Duration::from_secs(30);

/// ICC: with ICC off, containers on one bridge cannot talk over IPv6 (default bridge, and a
/// user network with a custom bridge name); a network with ICC on still talks.
#[test]
fn icc_off_blocks_ipv6_between_containers_on_one_bridge() {
    let Some(_lock) = system_lock() else { return };
    let _table = TableGuard::clean();
    let snapshot: serde_json::Value =
        serde_json::from_str(&v6guard_ok(&["snapshot"])).expect("snapshot is JSON");
    assert_eq!(
        snapshot["daemon"]["icc"]["value"], false,
        "the lab dockerd must run with icc=false (scripts/lib.sh starts it so)"
    );

    let off = Network::create(
        "v6gt-icc-off",
        "fd76:6700:0:31::/64",
        &[
            "com.docker.network.bridge.enable_icc=false",
            "com.docker.network.bridge.name=v6gticcoff0",
        ],
    );
    let on = Network::create("v6gt-icc-on", "fd76:6700:0:32::/64", &[]);
    let d1 = Container::web("v6gt-icc-d1", "bridge", &[]);
    let d2 = Container::web("v6gt-icc-d2", "bridge", &[]);
    let o1 = Container::web("v6gt-icc-o1", &off.name, &[]);
    let o2 = Container::web("v6gt-icc-o2", &off.name, &[]);
    let n1 = Container::web("v6gt-icc-n1", &on.name, &[]);
    let n2 = Container::web("v6gt-icc-n2", &on.name, &[]);
    let d1_v6 = d1.ipv6("bridge");
    let o1_v6 = o1.ipv6(&off.name);
    let n1_v6 = n1.ipv6(&on.name);

    // Baseline: Docker blocks IPv4 with ICC off, and leaks IPv6.
    assert!(
        !d2.connects(&d1.ipv4("bridge"), 80),
        "Docker blocks IPv4 ICC"
    );
    assert!(
        eventually(READY, || d2.connects(&d1_v6, 80)),
        "IPv6 leaks on docker0"
    );
    assert!(
        eventually(READY, || o2.connects(&o1_v6, 80)),
        "IPv6 leaks on v6gticcoff0"
    );
    assert!(
        eventually(READY, || n2.connects(&n1_v6, 80)),
        "ICC on talks"
    );

    v6guard_ok(&["apply"]);

    assert!(
        !d2.connects(&d1_v6, 80),
        "ICC off on docker0 must block IPv6"
    );
    assert!(
        !o2.connects(&o1_v6, 80),
        "ICC off on a custom-named bridge must block IPv6"
    );
    assert!(n2.connects(&n1_v6, 80), "ICC on must still talk over IPv6");
}

/// Isolation: IPv6 from one Docker network to another is dropped; containers keep outbound IPv6.
#[test]
fn networks_are_isolated_and_keep_outbound_ipv6() {
    let Some(_lock) = system_lock() else { return };
    let _table = TableGuard::clean();
    let _outside = Outside::up("v6gt-iso-out");
    let x = Network::create("v6gt-iso-x", "fd76:6700:0:33::/64", &[]);
    let y = Network::create("v6gt-iso-y", "fd76:6700:0:34::/64", &[]);
    let x1 = Container::web("v6gt-iso-x1", &x.name, &[]);
    let y1 = Container::web("v6gt-iso-y1", &y.name, &["-p", "18090:80"]);
    let y1_v6 = y1.ipv6(&y.name);

    assert!(!x1.connects(&y1.ipv4(&y.name), 80), "Docker isolates IPv4");
    assert!(
        eventually(READY, || x1.connects(&y1_v6, 80)),
        "IPv6 crosses networks"
    );
    assert!(
        eventually(READY, || x1.connects(OUTSIDE_ADDR, 8000)),
        "outbound works"
    );

    v6guard_ok(&["apply"]);

    assert!(!x1.connects(&y1_v6, 81), "unpublished port across networks");
    assert!(
        !x1.connects(&y1_v6, 80),
        "isolation: even a published container port is not reachable from another bridge"
    );
    assert!(
        eventually(READY, || x1.connects(OUTSIDE_ADDR, 8000)),
        "containers keep outbound IPv6"
    );
}

/// Publish-only exposure from outside: published port open, unpublished closed, a binding only
/// on 127.0.0.1 not exposed; containers and bridges v6guard has not seen yet are closed too.
#[test]
fn outside_reaches_only_published_ports() {
    let Some(_lock) = system_lock() else { return };
    let _table = TableGuard::clean();
    let outside = Outside::up("v6gt-pub-out");
    let net = Network::create("v6gt-pub", "fd76:6700:0:35::/64", &[]);
    let web = Container::web(
        "v6gt-pub-web",
        &net.name,
        &["-p", "18080:80", "-p", "127.0.0.1:18081:81"],
    );
    let quiet = Container::web("v6gt-pub-quiet", &net.name, &[]);
    let web_v6 = web.ipv6(&net.name);
    let quiet_v6 = quiet.ipv6(&net.name);

    for (address, port) in [(&web_v6, 80), (&web_v6, 81), (&quiet_v6, 80)] {
        assert!(
            eventually(READY, || outside.connects(address, port)),
            "baseline: [{address}]:{port} is reachable from outside without v6guard"
        );
    }

    v6guard_ok(&["apply"]);

    assert!(outside.connects(&web_v6, 80), "published port stays open");
    assert!(
        !outside.connects(&web_v6, 81),
        "port bound only on 127.0.0.1 is not exposed"
    );
    assert!(
        !outside.connects(&quiet_v6, 80),
        "unpublished container is closed"
    );

    // Fail-closed: a container and a whole network created after apply, unknown to the
    // installed ruleset, are closed, not open.
    let late = Container::web("v6gt-pub-late", &net.name, &["-p", "18082:80"]);
    let late_net = Network::create("v6gt-pub-late", "fd76:6700:0:36::/64", &[]);
    let late2 = Container::web("v6gt-pub-late2", &late_net.name, &["-p", "18083:80"]);
    let late_v6 = late.ipv6(&net.name);
    let late2_v6 = late2.ipv6(&late_net.name);
    // Prove each is up (from a neighbour on its own bridge, and from the host itself, whose
    // own traffic is not forwarded) before asserting closed.
    assert!(eventually(READY, || host_connects(&late2_v6, 80)));
    assert!(eventually(READY, || web.connects(&late_v6, 80)));
    assert!(
        !outside.connects(&late_v6, 80),
        "new container is closed until v6guard sees it"
    );
    assert!(
        !outside.connects(&late2_v6, 80),
        "new bridge is closed until v6guard sees it"
    );

    v6guard_ok(&["apply"]);
    assert!(
        eventually(READY, || outside.connects(&late_v6, 80)),
        "published once v6guard has seen it"
    );
    assert!(
        eventually(READY, || outside.connects(&late2_v6, 80)),
        "published once v6guard has seen it"
    );
}

/// `render` is exactly what `apply` installs: the rendered text loaded with `nft -f` in one
/// throwaway namespace and `apply` run in another leave identical tables, and the table block
/// of the rendered text is what `nft list` prints.
#[test]
fn render_is_exactly_what_apply_installs() {
    let Some(_lock) = system_lock() else { return };
    let net = Network::create(
        "v6gt-render",
        "fd76:6700:0:37::/64",
        &["com.docker.network.bridge.enable_icc=false"],
    );
    let _web = Container::web(
        "v6gt-render-web",
        &net.name,
        &["-p", "18084:80", "-p", "18085:81/udp"],
    );
    let _ranged = Container::web(
        "v6gt-render-range",
        &net.name,
        &["-p", "18100-18109:18100-18109"],
    );
    let snapshot = temp_file("render-live.json", &v6guard_ok(&["snapshot"]));
    assert_render_matches_apply(&snapshot, "live", &[]);
    // With a policy: an interval set of allowed source prefixes, an extra exposed port.
    let policies = policy_dir(
        "render-policies",
        &[(
            "10-render.yaml",
            "containers:\n  v6gt-render-web:\n    allow_from: [\"2001:db8:76::/64\", \"2001:db8:76::5\", \"fd00:1::/66\", \"2001:db8:99::5\"]\n    expose: [\"9000-9002/udp\"]\n    deny: [\"81/udp\"]\n",
        )],
    );
    assert_render_matches_apply(&snapshot, "live+policy", &["--policies-dir", &policies]);

    // Every rule shape v6guard has: links, internal networks, SNAT, one-address DNAT, hairpin,
    // the host input chain, policy overrides.
    let every = temp_file("render-every.json", &every_shape_snapshot_json());
    let every_policies = policy_dir(
        "render-every",
        &[(
            "10-every.yaml",
            "networks:\n  lab-snat:\n    icc: false\n  bridge:\n    snat_address: 2001:db8:76::53\n\
             containers:\n  web:\n    allow_from: [\"2001:db8:76::/64\"]\n    deny: [\"443/tcp\"]\n",
        )],
    );
    assert_render_matches_apply(&every, "every shape", &["--policies-dir", &every_policies]);
    // With userland-proxy on: the host input chain and its interval sets instead of hairpin.
    let every_proxy = every_shape_snapshot_json().replace(
        r#""userland_proxy":{"source":{"kind":"default"},"value":false}"#,
        r#""userland_proxy":{"source":{"kind":"default"},"value":true}"#,
    );
    assert!(
        every_proxy.contains(r#""value":true}"#),
        "proxy switched on"
    );
    let every_proxy = temp_file("render-every-proxy.json", &every_proxy);
    assert_render_matches_apply(
        &every_proxy,
        "every shape, proxy on",
        &["--policies-dir", &every_policies],
    );

    let big = temp_file("render-big.json", &big_snapshot_json(1000, 10));
    assert_render_matches_apply(&big, "1000x10", &[]);
}

fn assert_render_matches_apply(snapshot: &std::path::Path, label: &str, extra: &[&str]) {
    let snapshot = snapshot.to_str().expect("utf-8 path");
    let rendered = v6guard_ok(&[&["render", "--snapshot", snapshot], extra].concat());
    let script = temp_file(&format!("render-{label}.nft"), &rendered);

    let applied_ns = Netns::new("v6gt-applied");
    let loaded_ns = Netns::new("v6gt-loaded");
    let apply = applied_ns.exec(
        v6guard_bin(),
        &[&["apply", "--snapshot", snapshot], extra].concat(),
    );
    assert!(
        apply.status.success(),
        "apply: {}",
        String::from_utf8_lossy(&apply.stderr)
    );
    let load = loaded_ns.exec("nft", &["-f", script.to_str().expect("utf-8 path")]);
    assert!(
        load.status.success(),
        "nft -f: {}",
        String::from_utf8_lossy(&load.stderr)
    );

    let applied = list_table(Some(&applied_ns)).expect("apply installed the table");
    let loaded = list_table(Some(&loaded_ns)).expect("nft -f installed the table");
    assert_eq!(
        normalize_listing(&applied),
        normalize_listing(&loaded),
        "{label}"
    );
    // Not just the same text: the same expressions, registers and element bytes.
    assert_eq!(
        netlink_listing(&applied_ns),
        netlink_listing(&loaded_ns),
        "{label}"
    );

    let block = |start: &str, end: &str| {
        let from = rendered.find(start).expect("table block");
        let to = rendered[from..]
            .find(end)
            .map_or(rendered.len(), |at| from + at);
        normalize_listing(&rendered[from..to])
    };
    let table_block = block("table ip6 v6guard {", "table bridge v6guard\n");
    assert_eq!(table_block, normalize_listing(&applied), "{label}");
    let bridge_block = block("table bridge v6guard {", "# Beside the table");
    let applied_bridge = list_bridge_table(Some(&applied_ns)).expect("apply installed it");
    let loaded_bridge = list_bridge_table(Some(&loaded_ns)).expect("nft -f installed it");
    assert_eq!(bridge_block, normalize_listing(&applied_bridge), "{label}");
    assert_eq!(applied_bridge, loaded_bridge, "{label}");
}

/// A snapshot that makes the planner use every match and action it has.
fn every_shape_snapshot_json() -> String {
    let base: serde_json::Value =
        serde_json::from_str(&v6guard_ok(&["snapshot"])).expect("snapshot is JSON");
    let mut snapshot = base;
    snapshot["daemon"]["userland_proxy"] =
        serde_json::json!({"value": false, "source": {"kind": "default"}});
    let network = |id: &str,
                   name: &str,
                   bridge: &str,
                   subnet: &str,
                   icc: bool,
                   internal: bool,
                   snat: Option<&str>| {
        serde_json::json!({
            "id": id, "name": name, "bridge": bridge, "ipv6_enabled": true,
            "ipv6_subnets": [subnet], "icc": icc, "masquerade": true, "internal": internal,
            "host_ipv6": snat
        })
    };
    snapshot["networks"] = serde_json::json!([
        network(
            "n-bridge",
            "bridge",
            "docker0",
            "fd76:6700:0:1::/64",
            false,
            false,
            None
        ),
        network(
            "n-int",
            "lab-internal",
            "br-1111111111aa",
            "fd76:6700:0:3a::/64",
            true,
            true,
            None
        ),
        network(
            "n-snat",
            "lab-snat",
            "v6gtsnat0",
            "2001:db8:3b::/64",
            true,
            false,
            Some("2001:db8:76::54")
        ),
    ]);
    let container = |name: &str,
                     network: &str,
                     address: &str,
                     ports: serde_json::Value,
                     links: &[&str]| {
        serde_json::json!({
            "id": format!("id-{name}"), "name": name, "labels": {},
            "endpoints": [{"network_id": network, "network_name": network, "ipv4": null, "ipv6": address}],
            "ports": ports,
            "exposed": [{"protocol": "tcp", "port": 5432}, {"protocol": "udp", "port": 53}],
            "links": links
        })
    };
    snapshot["containers"] = serde_json::json!([
        container(
            "app",
            "n-bridge",
            "fd76:6700:0:1::2",
            serde_json::json!([]),
            &["db"]
        ),
        container(
            "db",
            "n-bridge",
            "fd76:6700:0:1::3",
            serde_json::json!([]),
            &[]
        ),
        container(
            "hidden",
            "n-int",
            "fd76:6700:0:3a::2",
            serde_json::json!([]),
            &[]
        ),
        container(
            "web",
            "n-snat",
            "2001:db8:3b::2",
            serde_json::json!([
                {"protocol": "tcp", "container_port": 80, "host_ip": "::", "host_port": 8080},
                {"protocol": "tcp", "container_port": 443, "host_ip": "2001:db8:76::1", "host_port": 8443},
                {"protocol": "udp", "container_port": 53, "host_ip": "2001:db8:76::1", "host_port": 5353},
                {"protocol": "sctp", "container_port": 9, "host_ip": null, "host_port": 9999}
            ]),
            &[]
        ),
    ]);
    snapshot.to_string()
}

/// A synthetic snapshot of `containers` containers with `ports` published ports each.
fn big_snapshot_json(containers: usize, ports: u16) -> String {
    let base: serde_json::Value =
        serde_json::from_str(&v6guard_ok(&["snapshot"])).expect("snapshot is JSON");
    let mut snapshot = base;
    snapshot["networks"] = serde_json::json!([{
        "id": "bigbigbigbig0000", "name": "big", "bridge": "br-bigbigbigbig",
        "ipv6_enabled": true, "ipv6_subnets": ["fd76:6700:0:38::/64"],
        "icc": false, "masquerade": true, "internal": false
    }]);
    snapshot["containers"] = (0..containers)
        .map(|i| {
            let ports: Vec<serde_json::Value> = (0..ports)
                .map(|p| {
                    let protocol = ["tcp", "udp", "sctp"][usize::from(p) % 3];
                    serde_json::json!({
                        "protocol": protocol,
                        "container_port": 8000 + p, "host_ip": "::",
                        "host_port": 20000 + i * usize::from(ports) + usize::from(p)
                    })
                })
                .collect();
            serde_json::json!({
                "id": format!("c{i}"), "name": format!("c{i:04}"), "labels": {},
                "endpoints": [{"network_id": "bigbigbigbig0000", "network_name": "big",
                               "ipv4": null, "ipv6": format!("fd76:6700:0:38::{:x}", i + 2)}],
                "ports": ports
            })
        })
        .collect();
    snapshot.to_string()
}

/// Where daemon.json turns ip6tables on: by default apply installs augment mode's drops-only
/// table; with `defaults.mode: stand-down` it refuses and changes nothing; --force installs
/// the full ruleset anyway.
#[test]
fn apply_stands_down_when_docker_manages_ipv6() {
    let Some(_lock) = system_lock() else { return };
    let _table = TableGuard::clean();
    let daemon_json = temp_file(
        "daemon-ip6tables.json",
        r#"{"ipv6": true, "ip6tables": true, "experimental": true}"#,
    );
    let path = daemon_json.to_str().expect("utf-8 path");
    let config = temp_file("stand-down.yaml", "defaults:\n  mode: stand-down\n");
    let config = config.to_str().expect("utf-8 path");

    v6guard_ok(&["apply", "--daemon-json", path]);
    let augment = list_table(None).expect("augment mode installs its table");
    assert!(
        augment.contains("augment-forward") && !has_accept_rule(&augment),
        "augment mode: drops only\n{augment}"
    );
    v6guard_ok(&["cleanup"]);

    let refused = v6guard(&["apply", "--daemon-json", path, "--config", config]);
    assert_eq!(
        refused.status.code(),
        Some(3),
        "exit code 3 means stood down"
    );
    let message = String::from_utf8_lossy(&refused.stderr);
    assert!(
        message.contains("ip6tables") && message.contains(path),
        "{message}"
    );
    assert!(list_table(None).is_none(), "nothing installed");

    v6guard_ok(&["apply", "--daemon-json", path, "--force"]);
    let full = list_table(None).expect("--force installs");
    assert!(full.contains("to-bridge"), "the full ruleset:\n{full}");
}

/// Cleanup removes exactly v6guard's ip6 tables and nothing else (checked in a throwaway
/// namespace, where foreign tables can be created safely).
#[test]
fn cleanup_removes_only_v6guard_tables() {
    let Some(_lock) = system_lock() else { return };
    let ns = Netns::new("v6gt-cleanup");
    let script = temp_file(
        "cleanup.nft",
        "table ip6 v6guard {}\ntable ip6 v6guard-old {}\ntable ip v6guard {}\ntable ip6 other {}\n",
    );
    let load = ns.exec("nft", &["-f", script.to_str().expect("utf-8 path")]);
    assert!(load.status.success());

    let out = ns.exec(v6guard_bin(), &["cleanup"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let listed = String::from_utf8_lossy(&ns.exec("nft", &["list", "tables"]).stdout).into_owned();
    let mut tables: Vec<&str> = listed.lines().collect();
    tables.sort();
    assert_eq!(tables, vec!["table ip v6guard", "table ip6 other"]);
}

/// The lab fixture snapshot (tests/fixtures/lab-snapshot.json).
fn lab_fixture() -> v6guard::snapshot::Snapshot {
    let fixture = format!(
        "{}/tests/fixtures/lab-snapshot.json",
        env!("CARGO_MANIFEST_DIR")
    );
    serde_json::from_str(&std::fs::read_to_string(fixture).expect("fixture")).expect("JSON")
}

/// Run `work` on a thread of its own in a fresh private network namespace (gone with the
/// thread), so nftables changes there never touch the host's ruleset. `nft` run from that
/// thread inherits the namespace.
fn in_private_netns(work: impl FnOnce() + Send + 'static) {
    std::thread::spawn(move || {
        // SAFETY: unshare(CLONE_NEWNET) moves only this thread into a new network namespace.
        assert_eq!(unsafe { libc::unshare(libc::CLONE_NEWNET) }, 0, "unshare");
        work()
    })
    .join()
    .expect("private-namespace thread");
}

/// Many networks mean many rules, and the kernel acknowledges every message of a batch at
/// once: 1,000 networks (3,000 rules) apply through the CLI's socket and the daemon's kept
/// one, and the kernel holds them (acknowledgements that overflow the receive buffer would
/// report a failure for a committed transaction).
#[test]
fn a_ruleset_of_thousands_of_rules_applies() {
    use v6guard::daemon::inputs::PlanInputs;
    use v6guard::daemon::reconcile::{Kernel, Netlink};

    let Some(_lock) = system_lock() else { return };
    let mut snapshot = lab_fixture();
    let template = snapshot
        .networks
        .iter()
        .find(|n| n.name == "v6g-demo")
        .expect("v6g-demo in the fixture")
        .clone();
    for i in 0..1000u32 {
        let mut network = template.clone();
        network.name = format!("v6gt-many{i:04}");
        network.id = format!("{i:012x}{}", "a".repeat(52));
        network.bridge = format!("br-{i:012x}");
        network.ipv6_subnets = vec![format!("fd76:6700:1:{i:x}::/64").parse().expect("prefix")];
        network.icc = i % 2 == 0;
        snapshot.networks.push(network);
    }
    let ruleset = PlanInputs::default().plan(&snapshot);
    assert!(ruleset.rule_count() > 3000, "{}", ruleset.rule_count());

    in_private_netns(move || {
        v6guard::nft::apply(&ruleset).expect("apply on a socket of its own");
        let mut kernel = Netlink::default();
        assert_eq!(
            kernel.verify(&ruleset).expect("verify"),
            Vec::<String>::new()
        );
        kernel
            .replace(&ruleset)
            .expect("replace on the kept socket");
        kernel
            .replace(&ruleset)
            .expect("and again on the same socket");
        assert_eq!(
            kernel.verify(&ruleset).expect("verify"),
            Vec::<String>::new()
        );
    });
}

/// The daemon's kept netlink socket: element updates and a removal go through one socket; a
/// batch the kernel refuses (a set emptied by hand, so the removal's elements are missing)
/// falls back to replacing the table, on a fresh socket, and the kernel ends up holding
/// exactly the plan. Runs in a private network namespace of its own thread.
#[test]
fn the_kept_netlink_socket_recovers_from_a_refused_batch() {
    use v6guard::daemon::inputs::PlanInputs;
    use v6guard::daemon::reconcile::{Kernel, Netlink, Reconciler, Transaction};

    let Some(_lock) = system_lock() else { return };
    let with_web = lab_fixture();
    let mut without_web = with_web.clone();
    without_web.containers.retain(|c| c.ports.is_empty());
    assert!(without_web.containers.len() < with_web.containers.len());
    let inputs = PlanInputs::default();

    in_private_netns(move || {
        let mut reconciler = Reconciler::new(Netlink::default());
        let first = reconciler.enforce(inputs.plan(&with_web)).expect("apply");
        assert_eq!(first.transaction, Transaction::Full);
        let removed = reconciler
            .enforce(inputs.plan(&without_web))
            .expect("remove");
        assert!(
            matches!(removed.transaction, Transaction::Elements { removed, .. } if removed > 0),
            "{removed:?}"
        );
        let added = reconciler
            .enforce(inputs.plan(&with_web))
            .expect("add back");
        assert!(
            matches!(added.transaction, Transaction::Elements { added, .. } if added > 0),
            "{added:?}"
        );

        run_ok("nft", &["flush", "set", "ip6", "v6guard", "published"]);
        let fallback = reconciler
            .enforce(inputs.plan(&without_web))
            .expect("fallback");
        assert_eq!(
            fallback.transaction,
            Transaction::Full,
            "refused, then replaced"
        );
        let mut kernel = Netlink::default();
        assert_eq!(
            kernel.verify(&inputs.plan(&without_web)).expect("verify"),
            Vec::<String>::new(),
            "the kernel holds exactly the plan"
        );
        let again = reconciler
            .enforce(inputs.plan(&with_web))
            .expect("after fallback");
        assert!(
            matches!(again.transaction, Transaction::Elements { .. }),
            "element updates work again: {again:?}"
        );
    });
}

/// Every set and map but the interval ones is declared with its capacity (`size N`, which
/// makes the kernel pick its fixed-size hash), and the kernel holds it as a maximum: elements
/// past it are refused. A set growing past its capacity makes the daemon replace the table
/// with the larger size, elements within it are updated in place, and verify reads the
/// declared size back. Runs in a private network namespace of its own thread.
#[test]
fn sets_are_declared_with_their_capacity() {
    use std::collections::BTreeMap;
    use v6guard::daemon::inputs::PlanInputs;
    use v6guard::daemon::reconcile::{Kernel, Netlink, Reconciler, Transaction};
    use v6guard::nft::read::read_sets;
    use v6guard::ruleset::Ruleset;

    let Some(_lock) = system_lock() else { return };
    let small = lab_fixture();
    let web = small
        .containers
        .iter()
        .find(|c| !c.ports.is_empty())
        .expect("a publishing container in the fixture")
        .clone();
    let mut big = small.clone();
    for i in 0..130u16 {
        let mut c = web.clone();
        c.name = format!("zz-capacity{i:03}");
        c.id = format!("{i:012x}{}", "c".repeat(52));
        c.endpoints[0].ipv6 = Some(
            format!("fd76:6700:0:20::{:x}", 0x100 + i)
                .parse()
                .expect("address"),
        );
        for port in &mut c.ports {
            port.host_port = 30000 + i;
        }
        big.containers.push(c);
    }
    let mut shrunk = big.clone();
    shrunk.containers.pop();
    let inputs = PlanInputs::default();
    let declared = || -> BTreeMap<String, Option<u32>> {
        read_sets("v6guard")
            .expect("read the sets")
            .into_iter()
            .map(|s| (s.name, s.size))
            .collect()
    };
    let planned = |ruleset: &Ruleset| -> BTreeMap<String, Option<u32>> {
        ruleset
            .sets
            .iter()
            .map(|s| (s.name.clone(), s.capacity()))
            .collect()
    };

    in_private_netns(move || {
        let small_plan = inputs.plan(&small);
        let big_plan = inputs.plan(&big);
        assert!(small_plan.sets.iter().any(|s| s.capacity().is_none()));
        assert_eq!(
            small_plan.set("published").and_then(|s| s.capacity()),
            Some(256)
        );
        assert_eq!(
            big_plan.set("published").and_then(|s| s.capacity()),
            Some(512)
        );

        let mut reconciler = Reconciler::new(Netlink::default());
        reconciler.enforce(small_plan.clone()).expect("apply");
        assert_eq!(declared(), planned(&small_plan));
        let listed = run_ok("nft", &["list", "set", "ip6", "v6guard", "published"]);
        assert!(listed.contains("\t\tsize 256\n"), "{listed}");

        // The size is a maximum: 300 more elements are refused, and nothing changes.
        let elements: Vec<String> = (1..=300)
            .map(|p| format!("fd76:6700:0:99::1 . tcp . {p}"))
            .collect();
        let add = format!(
            "add element ip6 v6guard published {{ {} }}\n",
            elements.join(", ")
        );
        let script = temp_file("capacity-overflow.nft", &add);
        let refused = run("nft", &["-f", script.to_str().expect("utf-8 path")]);
        assert!(!refused.status.success(), "elements past the size refused");
        let mut kernel = Netlink::default();
        assert_eq!(
            kernel.verify(&small_plan).expect("verify"),
            Vec::<String>::new()
        );

        let grown = reconciler.enforce(big_plan.clone()).expect("grow");
        assert_eq!(
            grown.transaction,
            Transaction::Full,
            "a new size: a new table"
        );
        assert_eq!(declared(), planned(&big_plan));
        assert_eq!(
            kernel.verify(&big_plan).expect("verify"),
            Vec::<String>::new()
        );
        let against_small = kernel.verify(&small_plan).expect("verify");
        assert!(
            against_small
                .iter()
                .any(|p| p == "set published is declared with size 512, the plan's has size 256"),
            "{against_small:?}"
        );

        let within = reconciler.enforce(inputs.plan(&shrunk)).expect("shrink");
        assert!(
            matches!(
                within.transaction,
                Transaction::Elements {
                    removed: 2,
                    added: 0
                }
            ),
            "same capacity: elements in place, {within:?}"
        );
        assert_eq!(declared(), planned(&big_plan));
    });
}
