//! The evaluator kept honest: for real connections against a real dockerd and the kernel's
//! ruleset, `v6guard::eval` must predict exactly what the kernel did. The unit and property
//! tests trust the evaluator; this test is why they may.

mod common;

use std::net::Ipv6Addr;
use std::time::Duration;

use common::*;
use v6guard::eval::{Inbound, L4, Packet, forward_verdict, inbound};
use v6guard::plan::{PlanInputs, plan};
use v6guard::ruleset::Ruleset;
use v6guard::snapshot::{Protocol, Snapshot};

const READY: Duration = Duration::from_secs(30);

/// Where a connection starts: the outside namespace or a container.
enum From<'a> {
    Outside,
    Container(&'a Container, &'a str),
}

/// One probe: a TCP connection from `from` to `[to]:port`.
struct Probe<'a> {
    what: &'static str,
    from: From<'a>,
    to: String,
    port: u16,
}

#[test]
fn the_evaluator_predicts_what_the_kernel_does() {
    let Some(_lock) = system_lock() else { return };
    let _mode = ProxyMode::set(false);
    let _table = TableGuard::clean();
    let outside = Outside::up("v6gt-evk-out");
    let off = Network::create(
        "v6gt-evk-off",
        "fd76:6700:0:b1::/64",
        &["com.docker.network.bridge.enable_icc=false"],
    );
    let on = Network::create("v6gt-evk-on", "fd76:6700:0:b2::/64", &[]);
    let web = Container::web(
        "v6gt-evk-web",
        &off.name,
        &["-p", "18701:80", "-p", &format!("[{HOST_ADDR}]:18702:81")],
    );
    let peer = Container::web("v6gt-evk-peer", &off.name, &[]);
    let left = Container::web("v6gt-evk-left", &on.name, &[]);
    let right = Container::web("v6gt-evk-right", &on.name, &[]);
    let web_v6 = web.ipv6(&off.name);
    let peer_v6 = peer.ipv6(&off.name);
    let right_v6 = right.ipv6(&on.name);
    assert!(
        eventually(READY, || outside.connects(&web_v6, 81)),
        "control: the gap is open before apply"
    );
    v6guard_ok(&["apply"]);

    let snapshot: Snapshot =
        serde_json::from_str(&v6guard_ok(&["snapshot"])).expect("snapshot JSON");
    let ruleset = plan(&snapshot, &PlanInputs::default());
    let uplink = lib_sh_output(&format!("v6g_outside_ifnames {}", outside.name));
    let uplink = uplink.split_whitespace().next().expect("host-side ifname");

    let outside_to = |what, to: &str, port| Probe {
        what,
        from: From::Outside,
        to: to.to_string(),
        port,
    };
    let container_to = |what, c, net, to: &str, port| Probe {
        what,
        from: From::Container(c, net),
        to: to.to_string(),
        port,
    };
    let probes = [
        outside_to("outside to a published port", &web_v6, 80),
        outside_to(
            "outside to a port published on one host address",
            &web_v6,
            81,
        ),
        outside_to(
            "outside through the host, published on ::",
            HOST_ADDR,
            18701,
        ),
        outside_to(
            "outside through the host address it is bound to",
            HOST_ADDR,
            18702,
        ),
        outside_to("outside to an unpublished port", &peer_v6, 80),
        container_to("ICC off: same bridge", &peer, &off.name, &web_v6, 80),
        container_to("ICC on: same bridge", &left, &on.name, &right_v6, 80),
        container_to("another network, directly", &left, &on.name, &web_v6, 80),
        container_to(
            "another network, through the host",
            &left,
            &on.name,
            HOST_ADDR,
            18701,
        ),
    ];

    let mut disagreements = Vec::new();
    for probe in &probes {
        let (predicted, rule) = predict(&ruleset, &snapshot, uplink, probe);
        let happened = match probe.from {
            From::Outside => outside.connects(&probe.to, probe.port),
            From::Container(c, _) => c.connects(&probe.to, probe.port),
        };
        println!(
            "{:<55} evaluator: {:<8} kernel: {:<8} ({})",
            probe.what,
            verdict(predicted),
            verdict(happened),
            rule.as_deref().unwrap_or("policy")
        );
        if predicted != happened {
            disagreements.push(probe.what);
        }
    }
    assert!(
        disagreements.is_empty(),
        "the evaluator and the kernel disagree on: {disagreements:?}"
    );
    assert!(
        probes
            .iter()
            .any(|p| predict(&ruleset, &snapshot, uplink, p).0)
            && probes
                .iter()
                .any(|p| !predict(&ruleset, &snapshot, uplink, p).0),
        "the probes cover both verdicts"
    );
}

fn verdict(accepted: bool) -> &'static str {
    if accepted { "accepted" } else { "dropped" }
}

/// The evaluator's verdict on the probe's first packet, and the deciding rule.
fn predict(
    ruleset: &Ruleset,
    snapshot: &Snapshot,
    uplink: &str,
    probe: &Probe,
) -> (bool, Option<String>) {
    let destination: Ipv6Addr = probe.to.parse().expect("an IPv6 address");
    let (iif, source) = match probe.from {
        From::Outside => (uplink.to_string(), OUTSIDE_ADDR.parse().expect("address")),
        From::Container(c, network) => (
            bridge_of(snapshot, network),
            c.ipv6(network).parse().expect("address"),
        ),
    };
    let l4 = L4::Transport {
        protocol: Protocol::Tcp,
        port: probe.port,
    };
    let route = |address: Ipv6Addr| {
        snapshot
            .networks
            .iter()
            .find(|n| n.ipv6_subnets.iter().any(|s| s.contains(&address)))
            .map_or_else(|| uplink.to_string(), |n| n.bridge.clone())
    };
    let packet = Packet::new(&iif, &route(destination), source, destination, l4);
    let local = [HOST_ADDR.parse().expect("address")];
    if local.contains(&destination) {
        match inbound(ruleset, &local, &packet, route) {
            Inbound::Forwarded { verdict, .. } => (verdict.accepted, verdict.rule),
            Inbound::Local { .. } => panic!("{}: not translated, nothing to compare", probe.what),
        }
    } else {
        let verdict = forward_verdict(ruleset, &packet);
        (verdict.accepted, verdict.rule)
    }
}

fn bridge_of(snapshot: &Snapshot, network: &str) -> String {
    snapshot
        .networks
        .iter()
        .find(|n| n.name == network)
        .map(|n| n.bridge.clone())
        .expect("the network is in the snapshot")
}
