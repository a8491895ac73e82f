//! Docker 28's gateway modes, asked for by name, measured with real traffic from the outside
//! namespace: `nat` (set with Docker's own network option), `routed` and `nat-unprotected`
//! (set in a policy file). Each row of docs/parity.md's gateway-mode table is one assertion.

mod common;

use std::time::Duration;

use common::*;

const READY: Duration = Duration::from_secs(30);

/// Whether one ICMPv6 echo request from the outside namespace to `address` is answered.
fn outside_pings(outside: &Outside, address: &str) -> bool {
    run(
        "ip",
        &[
            "netns",
            "exec",
            &outside.name,
            "busybox",
            "ping",
            "-c",
            "1",
            "-W",
            "2",
            address,
        ],
    )
    .status
    .success()
}

#[test]
fn gateway_modes_behave_as_docker_28_names_them() {
    let Some(_lock) = system_lock() else { return };
    let _mode = ProxyMode::set(false);
    let _table = TableGuard::clean();
    let outside = Outside::up("v6gt-gw-out");
    // A global (documentation) prefix: `nat` masquerades it too, v6guard's default would not.
    let nat = Network::create(
        "v6gt-gw-nat",
        "2001:db8:7761::/64",
        &["com.docker.network.bridge.gateway_mode_ipv6=nat"],
    );
    let routed = Network::create("v6gt-gw-routed", "fd76:6700:0:a1::/64", &[]);
    let open = Network::create("v6gt-gw-open", "fd76:6700:0:a2::/64", &[]);
    let nat_web = Container::web("v6gt-gw-nat-web", &nat.name, &["-p", "18601:80"]);
    let routed_web = Container::web("v6gt-gw-routed-web", &routed.name, &["-p", "18602:80"]);
    let open_web = Container::web("v6gt-gw-open-web", &open.name, &[]);
    let nat_v6 = nat_web.ipv6(&nat.name);
    let routed_v6 = routed_web.ipv6(&routed.name);
    let open_v6 = open_web.ipv6(&open.name);

    // Control: before v6guard every container port is routed and reachable (the gap).
    for (address, port) in [(&nat_v6, 80), (&routed_v6, 81), (&open_v6, 81)] {
        assert!(
            eventually(READY, || outside.connects(address, port)),
            "control: [{address}]:{port} reachable before apply"
        );
    }

    assert!(
        eventually(READY, || outside_pings(&outside, &nat_v6)),
        "control: echo to a container answered before apply"
    );

    let policies = policy_dir(
        "gateway-policies",
        &[(
            "10-gateway.yaml",
            "networks:\n  v6gt-gw-routed:\n    gateway_mode: routed\n  \
             v6gt-gw-open:\n    gateway_mode: nat-unprotected\n",
        )],
    );
    v6guard_ok(&["apply", "--policies-dir", &policies]);

    // nat: only through DNAT on the host's address, client address kept.
    assert!(
        !outside.connects(&nat_v6, 80),
        "nat: a published port is not reachable on the container's own address"
    );
    assert_eq!(
        answered(|| outside.fetch_ip(HOST_ADDR, 18601)).as_deref(),
        Some(OUTSIDE_ADDR),
        "nat: reachable through DNAT on the host address, client address kept"
    );
    assert!(
        !outside_pings(&outside, &nat_v6),
        "nat: no ICMPv6 echo from outside to a container"
    );
    assert_eq!(
        answered(|| nat_web.fetch_ip(OUTSIDE_ADDR, 8000)).as_deref(),
        Some(HOST_ADDR),
        "nat: a global prefix is masqueraded too"
    );

    // routed: directly, no DNAT, no NAT66.
    assert!(
        outside.connects(&routed_v6, 80),
        "routed: the published port is reachable on the container's address"
    );
    assert!(
        !outside.connects(&routed_v6, 81),
        "routed: an unpublished port stays closed"
    );
    // dockerd itself holds the host port (proxy off: a socket that never answers), so a
    // connection may open; no HTTP answer means nothing was translated to the container.
    assert_eq!(
        outside.fetch_ip(HOST_ADDR, 18602),
        None,
        "routed: no DNAT on the host's address"
    );
    assert!(outside_pings(&outside, &routed_v6), "routed: echo answered");
    assert_eq!(
        answered(|| routed_web.fetch_ip(OUTSIDE_ADDR, 8000)).as_deref(),
        Some(routed_v6.as_str()),
        "routed: no NAT66, even for a unique local prefix"
    );

    // nat-unprotected: every port directly, but networks stay isolated from each other.
    assert!(
        outside.connects(&open_v6, 81),
        "nat-unprotected: an unpublished port is reachable from outside"
    );
    assert!(
        !nat_web.connects(&open_v6, 81),
        "nat-unprotected: another Docker network is still isolated"
    );
}

/// `defaults.strict_isolation` (issue 8, item 6): with userland-proxy off, a container on
/// another network reaches a published port through the host's address by default (as
/// docker-proxy and Docker 28 allow); with the option, not (Docker 20.10's IPv4 behaviour).
/// Outside clients are unaffected either way.
#[test]
fn strict_isolation_keeps_other_networks_off_published_ports() {
    let Some(_lock) = system_lock() else { return };
    let _mode = ProxyMode::set(false);
    let _table = TableGuard::clean();
    let outside = Outside::up("v6gt-gws-out");
    let served = Network::create("v6gt-gws-a", "fd76:6700:0:a3::/64", &[]);
    let other = Network::create("v6gt-gws-b", "fd76:6700:0:a4::/64", &[]);
    let web = Container::web("v6gt-gws-web", &served.name, &["-p", "18603:80"]);
    let client = Container::web("v6gt-gws-client", &other.name, &[]);
    let _ = web.ipv6(&served.name);

    v6guard_ok(&["apply"]);
    assert!(
        answered(|| client.fetch_ip(HOST_ADDR, 18603)).is_some(),
        "default: another network reaches the published port through the host address"
    );

    let config = temp_file("strict.yaml", "defaults:\n  strict_isolation: true\n");
    v6guard_ok(&["apply", "--config", config.to_str().expect("utf-8 path")]);
    assert_eq!(
        client.fetch_ip(HOST_ADDR, 18603),
        None,
        "strict_isolation: not from another network"
    );
    assert_eq!(
        answered(|| outside.fetch_ip(HOST_ADDR, 18603)).as_deref(),
        Some(OUTSIDE_ADDR),
        "strict_isolation: outside clients still reach it, address kept"
    );
}
