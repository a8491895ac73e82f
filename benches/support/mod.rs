//! What the benches share: the synthetic Docker host they plan for.

use std::net::{Ipv4Addr, Ipv6Addr};

use serde_json::{Value, json};
use v6guard::snapshot::{DaemonSettings, Setting, Snapshot};

pub const BENCH_NETWORK_ID: &str =
    "b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0";
/// The bench network's bridge: v6guard guards traffic headed into it.
#[allow(dead_code)]
pub const BENCH_BRIDGE: &str = "br-b0b0b0b0b0b0";
const BRIDGE_NETWORK_ID: &str = "d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0";
/// Distinct host ports the bench hands out (20000..64999). A host has 65,535 ports per
/// protocol, so beyond 45,000 published ports the host ports repeat: the `published` set
/// still gets one element per published port, the `dnat-any` map (keyed by host port) keeps
/// the first container of each host port, as plan() does for a snapshot that says so.
const HOST_PORTS: usize = 45_000;

/// A Docker 20.10 host (ipv6 on, ip6tables unset, so v6guard does not stand down) with
/// `containers` containers on one user bridge network, each with an address in
/// fd76:6700:0:10::/64 and `ports` ports published as Docker 20.10 reports `-p P:P`: one
/// binding on 0.0.0.0 (IPv4 only) and one on `::` (IPv6).
///
/// Besides that network: the default bridge (docker0), an internal network and a network with
/// a custom bridge name, all with ICC on (so `v6guard apply` never needs to touch the
/// br_netfilter sysctl).
///
/// Built as the JSON `v6guard snapshot` prints and parsed like `--snapshot FILE`, so that
/// fields added later with a serde default do not break the benchmark.
pub fn bench_snapshot(containers: usize, ports: usize) -> Snapshot {
    assert!(
        containers < 0xfff0,
        "container addresses must fit in the /64's last group"
    );
    let daemon = DaemonSettings {
        ipv6: Setting::default_value(true),
        fixed_cidr_v6: Setting::default_value(Some(
            "fd76:6700:0:1::/64".parse().expect("valid prefix"),
        )),
        ..DaemonSettings::default()
    };
    let snapshot = json!({
        "engine": {
            "version": "20.10.24+dfsg1",
            "api_version": "1.41",
            "bridge_nf_ip6tables": true,
            "docker_nft_ip6_table": false,
        },
        "daemon": daemon,
        "networks": [
            network(BENCH_NETWORK_ID, "bench", "br-b0b0b0b0b0b0", 0x10, false),
            network(
                "b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1",
                "bench-internal",
                "br-b1b1b1b1b1b1",
                0x11,
                true,
            ),
            network(
                "b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2",
                "bench-named",
                "v6gbench0",
                0x12,
                false,
            ),
            network(BRIDGE_NETWORK_ID, "bridge", "docker0", 0x1, false),
        ],
        "containers": (0..containers).map(|i| container(i, ports)).collect::<Vec<_>>(),
    });
    serde_json::from_value(snapshot).expect("the bench snapshot matches src/snapshot.rs")
}

fn network(id: &str, name: &str, bridge: &str, subnet: u16, internal: bool) -> Value {
    json!({
        "id": id,
        "name": name,
        "bridge": bridge,
        "ipv6_enabled": true,
        "ipv6_subnets": [format!("fd76:6700:0:{subnet:x}::/64")],
        "icc": true,
        "masquerade": true,
        "internal": internal,
    })
}

/// The IPv6 address of bench container `index` on the bench network (::1 is the gateway).
pub fn container_address(index: usize) -> Ipv6Addr {
    Ipv6Addr::new(0xfd76, 0x6700, 0, 0x10, 0, 0, 0, (index + 2) as u16)
}

fn container(index: usize, ports: usize) -> Value {
    let host = index + 2; // ::1 is the bridge's gateway
    let ipv6 = container_address(index);
    let ipv4 = Ipv4Addr::new(172, 20, (host >> 8) as u8, host as u8);
    let bindings: Vec<Value> = (0..ports)
        .flat_map(|p| {
            // Mostly TCP, the last two ports of each container UDP.
            let protocol = if p + 2 >= ports { "udp" } else { "tcp" };
            let host_port = 20_000 + (index * ports + p) % HOST_PORTS;
            let container_port = 8_000 + p;
            ["0.0.0.0", "::"].map(|host_ip| {
                json!({
                    "protocol": protocol,
                    "container_port": container_port,
                    "host_ip": host_ip,
                    "host_port": host_port,
                })
            })
        })
        .collect();
    json!({
        "id": format!("{index:064x}"),
        "name": format!("bench-{index:05}"),
        "labels": {},
        "endpoints": [{
            "network_id": BENCH_NETWORK_ID,
            "network_name": "bench",
            "ipv4": ipv4,
            "ipv6": ipv6,
        }],
        "ports": bindings,
    })
}
