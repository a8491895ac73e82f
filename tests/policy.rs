//! Policies proven with real traffic from the outside namespace, and a bad policy refused
//! without touching the kernel.

mod common;

use std::time::Duration;

use common::*;

const READY: Duration = Duration::from_secs(30);

/// deny closes a published port, allow_from admits only its prefixes, expose opens an
/// unpublished port, and a container label narrows the same way; with the proxy on, docker-proxy
/// does not reopen what the policy closed.
#[test]
fn policies_shape_what_the_outside_reaches_proxy_off() {
    let Some(_lock) = system_lock() else { return };
    let _mode = ProxyMode::set(false);
    policies_shape_what_the_outside_reaches();
}

#[test]
fn policies_shape_what_the_outside_reaches_proxy_on() {
    let Some(_lock) = system_lock() else { return };
    let _mode = ProxyMode::set(true);
    policies_shape_what_the_outside_reaches();
}

fn policies_shape_what_the_outside_reaches() {
    let _table = TableGuard::clean();
    let outside = Outside::up("v6gt-pol-out");
    let net = Network::create("v6gt-pol", "fd76:6700:0:78::/64", &[]);
    let denied = Container::web("v6gt-pol-denied", &net.name, &["-p", "18280:80"]);
    let friend = Container::web("v6gt-pol-friend", &net.name, &["-p", "18281:80"]);
    let stranger = Container::web("v6gt-pol-stranger", &net.name, &["-p", "18282:80"]);
    let extra = Container::web("v6gt-pol-extra", &net.name, &[]);
    let labelled = Container::web(
        "v6gt-pol-labelled",
        &net.name,
        &["-p", "18283:80", "--label", "v6guard.deny=80/tcp"],
    );
    let address = |c: &Container| c.ipv6(&net.name);
    let (denied_v6, friend_v6, stranger_v6) =
        (address(&denied), address(&friend), address(&stranger));
    let (extra_v6, labelled_v6) = (address(&extra), address(&labelled));
    for (addr, port) in [
        (&denied_v6, 80),
        (&friend_v6, 80),
        (&stranger_v6, 80),
        (&extra_v6, 81),
    ] {
        assert!(
            eventually(READY, || outside.connects(addr, port)),
            "baseline [{addr}]:{port}"
        );
    }
    let policies = policy_dir(
        "policies-traffic",
        &[(
            "10-test.yaml",
            "containers:\n\
             \x20 v6gt-pol-denied:\n    deny: [\"80/tcp\"]\n\
             \x20 v6gt-pol-friend:\n    allow_from: [\"2001:db8:76::2/128\"]\n\
             \x20 v6gt-pol-stranger:\n    allow_from: [\"2001:db8:99::/64\"]\n\
             \x20 v6gt-pol-extra:\n    expose: [\"81/tcp\"]\n",
        )],
    );

    v6guard_ok(&["apply", "--policies-dir", &policies]);

    assert!(
        !outside.connects(&denied_v6, 80),
        "deny closes the routed port"
    );
    assert_eq!(
        outside.fetch_ip(HOST_ADDR, 18280),
        None,
        "deny closes the host port too"
    );
    assert!(
        eventually(READY, || outside.connects(&friend_v6, 80)),
        "a source inside allow_from is served"
    );
    assert_eq!(
        answered(|| outside.fetch_ip(HOST_ADDR, 18281)).as_deref(),
        Some(OUTSIDE_ADDR),
        "and through the host address, with its own address"
    );
    assert!(
        !outside.connects(&stranger_v6, 80),
        "a source outside allow_from is refused"
    );
    assert_eq!(
        outside.fetch_ip(HOST_ADDR, 18282),
        None,
        "also through the host address"
    );
    assert!(
        eventually(READY, || outside.connects(&extra_v6, 81)),
        "expose opens an unpublished port"
    );
    assert!(!outside.connects(&extra_v6, 80), "and only that port");
    assert!(
        !outside.connects(&labelled_v6, 80),
        "a v6guard.deny label closes the port"
    );
}

/// A policy with an error is refused before anything is read or written: the kernel keeps
/// exactly the ruleset it had, byte for byte, and the message names file, line and key.
#[test]
fn a_bad_policy_changes_nothing() {
    let Some(_lock) = system_lock() else { return };
    let _table = TableGuard::clean();
    let net = Network::create("v6gt-badpol", "fd76:6700:0:79::/64", &[]);
    let _web = Container::web("v6gt-badpol-web", &net.name, &["-p", "18290:80"]);
    v6guard_ok(&["apply"]);
    let before = host_netlink_listing();

    // Something changes in Docker, so a successful apply would change the kernel.
    let _late = Container::web("v6gt-badpol-late", &net.name, &["-p", "18291:80"]);
    let policies = policy_dir(
        "policies-bad",
        &[(
            "10-typo.yaml",
            "networks:\n  v6gt-badpol:\n    iccc: false\n",
        )],
    );
    let refused = v6guard(&["apply", "--policies-dir", &policies]);
    assert!(!refused.status.success());
    let message = String::from_utf8_lossy(&refused.stderr);
    assert!(
        message.contains("10-typo.yaml:3:5"),
        "file:line:column in {message}"
    );
    assert!(message.contains("iccc"), "the key in {message}");
    assert_eq!(
        host_netlink_listing(),
        before,
        "the kernel ruleset is unchanged"
    );

    let refused_render = v6guard(&["render", "--policies-dir", &policies]);
    assert!(!refused_render.status.success(), "render refuses it too");
}

/// `nft --debug=netlink list table ip6 v6guard` on the host (every expression and element
/// byte), lines sorted, packet counters blanked: counters are traffic, not ruleset.
fn host_netlink_listing() -> String {
    let out = run(
        "nft",
        &["--debug=netlink", "list", "table", "ip6", "v6guard"],
    );
    assert!(out.status.success());
    let mut lines: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|line| match line.find("[ counter pkts") {
            Some(at) => format!("{}[ counter ]", &line[..at]),
            None => line.to_string(),
        })
        .collect();
    lines.sort();
    lines.join("\n")
}
