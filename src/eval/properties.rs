//! Property tests: for random small Docker hosts and random packets, the planned ruleset (run
//! by the evaluator) does what an independent reference says v6guard should do.
//!
//! The reference reads the generated Snapshot and the generated policy choices directly; it
//! calls nothing in `plan` (no `exposures`, `publications` or `port_network`), so a planner
//! bug shows up as a disagreement instead of being copied into the expectation. It is
//! written as a table of who may reach what (see [`reference`]), not as a list of rules.
//!
//! Generated: 1-4 bridge networks (random ULA or global /64, ICC on or off, some internal,
//! masquerade mostly on, some with a policy override of ICC, `nat66` or `snat_address`, bridge
//! names Docker's, `docker0` or custom), Docker 28 gateway modes (none, `nat`, `routed`,
//! `nat-unprotected`) from the policy, the network's Docker option and `defaults.gateway_mode`,
//! `defaults.strict_isolation`, `nat66_ula` and `nat66_gua` on or off, 0-6 containers on 1-2
//! networks each with random bindings (no host IP, `::`, one of the host's addresses, `127.0.0.1`,
//! `::1`; TCP or UDP), optional policies (deny, expose, allow_from), both userland-proxy modes;
//! then packets from outside (genuine or with a Docker prefix, inside or outside an `allow_from`
//! prefix) or from a container (genuine, link-local, another network's prefix, an outside address;
//! rarely VLAN-tagged), to a container address or to one of the host's addresses, TCP/UDP to likely
//! ports, echo requests, NDP, router advertisements, new or established. The outcome compared is
//! where the packet ends up: at which container address and port, dropped, or left to the host (and
//! whether the input hook admits it there); and for each container address, whether a new
//! connection to outside leaves and how postrouting translates its source (NAT66: masquerade, SNAT
//! or none).
//!
//! Not generated yet: links, SCTP, port ranges, labels, several subnets per network, bridges
//! the Snapshot does not know (fail-closed), Docker's `com.docker.network.host_ipv6`, NDP
//! proxying.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::Ipv6Net;
use proptest::prelude::*;
use proptest::test_runner::Config;

use super::*;
use crate::plan::{PlanInputs, PlanOptions, plan};
use crate::ruleset::{EtherType, Icmpv6Type};
use crate::snapshot::{Container, Endpoint, GatewayMode, Network, PortBinding, Protocol, Snapshot};
use crate::testing::{engine, network};

/// Container ports bindings, `expose` and `deny` pick from, and packets aim at.
const CONTAINER_PORTS: [u16; 4] = [80, 443, 53, 5000];
/// A host port no binding uses.
const UNUSED_HOST_PORT: u16 = 9999;
/// The host's own addresses besides the bridges' gateways.
const HOST_ADDRESSES: [Ipv6Addr; 2] = [
    Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 1),
    Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 2),
];
/// Outside sources: one inside the `allow_from` prefix the policies use, one not.
const OUTSIDE_ALLOWED: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xffff, 0, 0, 0, 0, 1);
const OUTSIDE_OTHER: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xeeee, 0, 0, 0, 0, 1);
const OUTSIDE_PREFIX: &str = "2001:db8:ffff::/48";
const UPLINK: &str = "eth0";
/// The `snat_address` network policies use.
const SNAT_ADDRESS: Ipv6Addr = HOST_ADDRESSES[1];

// ---------------------------------------------------------------------------------------
// What is generated
// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct NetSpec {
    icc: bool,
    internal: bool,
    /// Bytes 1-5 of the ULA prefix (byte 0 is 0xfd, byte 7 the network's index); for a
    /// global prefix, byte 1 picks `2001:db8:2XX?::/64` (`?` the network's index).
    prefix: [u8; 5],
    /// A global (documentation) prefix instead of a unique local one.
    gua: bool,
    /// 0: `br-` + hex (covered by the `br-*` guard), 1: a custom name, 2: `docker0`.
    bridge: u8,
    /// Policy `icc` for this network.
    icc_policy: Option<bool>,
    /// Docker's `enable_ip_masquerade`.
    masquerade: bool,
    /// Docker's `com.docker.network.bridge.gateway_mode_ipv6`.
    docker_mode: Option<GatewayMode>,
    /// Policy `gateway_mode`.
    policy_mode: Option<GatewayMode>,
    /// Policy `nat66`.
    nat66_policy: Option<bool>,
    /// Policy `snat_address: SNAT_ADDRESS` (never with `nat66: false`, which the file refuses).
    snat_policy: bool,
}

#[derive(Debug, Clone)]
enum HostIp {
    Empty,
    Unspecified,
    Host(usize),
    V4Loopback,
    V6Loopback,
}

#[derive(Debug, Clone)]
struct BindingSpec {
    protocol: Protocol,
    container_port: u16,
    host_ip: HostIp,
}

/// A container's policy: deny one port, expose one port, allow_from (0: the outside prefix,
/// 1: the first network's subnet).
#[derive(Debug, Clone, Default)]
struct PolicySpec {
    deny: Option<(Protocol, u16)>,
    expose: Option<(Protocol, u16)>,
    allow_from: Option<Vec<usize>>,
}

#[derive(Debug, Clone)]
struct ContainerSpec {
    networks: Vec<usize>,
    bindings: Vec<BindingSpec>,
    policy: Option<PolicySpec>,
}

#[derive(Debug, Clone)]
struct HostSpec {
    networks: Vec<NetSpec>,
    containers: Vec<ContainerSpec>,
    userland_proxy: bool,
    /// `defaults.gateway_mode`.
    default_mode: Option<GatewayMode>,
    /// `defaults.strict_isolation`.
    strict_isolation: bool,
    /// `defaults.nat66_ula`, `defaults.nat66_gua`.
    nat66_ula: bool,
    nat66_gua: bool,
}

/// A packet, as indices into the host it is sent on (resolved by [`resolve`]).
#[derive(Debug, Clone)]
struct ProbeSpec {
    /// 0-1: outside, in allow_from; 2: outside, not; 3: outside with a Docker prefix; 4+: a
    /// container.
    from: u8,
    container: usize,
    endpoint: usize,
    /// 0-2 genuine, 3 link-local, 4 another network's prefix, 5 an outside address.
    spoof: u8,
    to_host: bool,
    target: usize,
    target_endpoint: usize,
    /// 0-1 TCP, 2-3 UDP (0 and 2 aimed at a binding), 4 echo request, 5 NS, 6 NA, 7 RA.
    kind: u8,
    port: usize,
    hop_limit: u8,
    established: bool,
    vlan: Option<EtherType>,
}

fn protocol() -> impl Strategy<Value = Protocol> {
    prop_oneof![Just(Protocol::Tcp), Just(Protocol::Udp)]
}

fn port_of(protocol: impl Strategy<Value = Protocol>) -> impl Strategy<Value = (Protocol, u16)> {
    (protocol, prop::sample::select(CONTAINER_PORTS.to_vec()))
}

fn gateway_mode() -> impl Strategy<Value = GatewayMode> {
    prop_oneof![
        Just(GatewayMode::Nat),
        Just(GatewayMode::Routed),
        Just(GatewayMode::NatUnprotected),
        Just(GatewayMode::Isolated),
    ]
}

fn net_spec() -> impl Strategy<Value = NetSpec> {
    (
        (
            any::<bool>(),
            prop::bool::weighted(0.25),
            any::<[u8; 5]>(),
            prop::bool::weighted(0.4),
            0u8..3,
            prop::option::weighted(0.2, any::<bool>()),
        ),
        (
            prop::bool::weighted(0.85),
            prop::option::weighted(0.3, gateway_mode()),
            prop::option::weighted(0.3, gateway_mode()),
            prop::option::weighted(0.15, any::<bool>()),
            prop::bool::weighted(0.1),
        ),
    )
        .prop_map(
            |(
                (icc, internal, prefix, gua, bridge, icc_policy),
                (masquerade, docker_mode, policy_mode, nat66_policy, snat_policy),
            )| NetSpec {
                icc,
                internal,
                prefix,
                gua,
                bridge,
                icc_policy,
                masquerade,
                docker_mode,
                policy_mode,
                nat66_policy,
                // The policy file refuses `nat66: false` with an `snat_address`.
                snat_policy: snat_policy && nat66_policy != Some(false),
            },
        )
}

fn binding_spec() -> impl Strategy<Value = BindingSpec> {
    let host_ip = prop_oneof![
        3 => Just(HostIp::Empty),
        2 => Just(HostIp::Unspecified),
        2 => (0..HOST_ADDRESSES.len()).prop_map(HostIp::Host),
        1 => Just(HostIp::V4Loopback),
        1 => Just(HostIp::V6Loopback),
    ];
    (port_of(protocol()), host_ip).prop_map(|((protocol, container_port), host_ip)| BindingSpec {
        protocol,
        container_port,
        host_ip,
    })
}

fn policy_spec() -> impl Strategy<Value = PolicySpec> {
    (
        prop::option::weighted(0.4, port_of(protocol())),
        prop::option::weighted(0.4, port_of(protocol())),
        prop::option::weighted(0.6, prop::collection::vec(0usize..2, 0..=2)),
    )
        .prop_map(|(deny, expose, allow_from)| PolicySpec {
            deny,
            // The policy file refuses a port both exposed and denied.
            expose: expose.filter(|e| Some(*e) != deny),
            allow_from,
        })
}

fn container_spec() -> impl Strategy<Value = ContainerSpec> {
    (
        prop::collection::vec(0usize..4, 1..=2),
        prop::collection::vec(binding_spec(), 0..=3),
        prop::option::weighted(0.5, policy_spec()),
    )
        .prop_map(|(networks, bindings, policy)| ContainerSpec {
            networks,
            bindings,
            policy,
        })
}

fn host_spec() -> impl Strategy<Value = HostSpec> {
    (
        prop::collection::vec(net_spec(), 1..=4),
        prop::collection::vec(container_spec(), 0..=6),
        any::<bool>(),
        prop::option::weighted(0.3, gateway_mode()),
        any::<bool>(),
        prop::bool::weighted(0.85),
        prop::bool::weighted(0.15),
    )
        .prop_map(
            |(
                networks,
                containers,
                userland_proxy,
                default_mode,
                strict_isolation,
                nat66_ula,
                nat66_gua,
            )| HostSpec {
                networks,
                containers,
                userland_proxy,
                default_mode,
                strict_isolation,
                nat66_ula,
                nat66_gua,
            },
        )
}

fn probe_spec() -> impl Strategy<Value = ProbeSpec> {
    (
        (0u8..8, any::<usize>(), any::<usize>(), 0u8..6),
        (prop::bool::weighted(0.5), any::<usize>(), any::<usize>()),
        (
            0u8..8,
            any::<usize>(),
            prop::sample::select(vec![64u8, 254, 255]),
            prop::bool::weighted(0.15),
            prop::option::weighted(
                0.05,
                prop_oneof![Just(EtherType::Vlan), Just(EtherType::ServiceVlan)],
            ),
        ),
    )
        .prop_map(
            |(
                (from, container, endpoint, spoof),
                (to_host, target, target_endpoint),
                (kind, port, hop_limit, established, vlan),
            )| ProbeSpec {
                from,
                container,
                endpoint,
                spoof,
                to_host,
                target,
                target_endpoint,
                kind,
                port,
                hop_limit,
                established,
                vlan,
            },
        )
}

// ---------------------------------------------------------------------------------------
// The generated host as a Snapshot and a policy file
// ---------------------------------------------------------------------------------------

/// A generated host: the Snapshot and plan inputs the planner gets, and the plain choices
/// the reference reads instead of the parsed policy.
struct World {
    spec: HostSpec,
    snapshot: Snapshot,
    inputs: PlanInputs,
    /// Per container (by index), its network indices, deduplicated, in name order.
    networks_of: Vec<Vec<usize>>,
    /// Every local address: the host's, and each bridge's gateway (`::1` of its subnet).
    local: Vec<Ipv6Addr>,
}

fn subnet(spec: &NetSpec, index: usize) -> Ipv6Net {
    let [a, b, c, d, e] = spec.prefix;
    let address = if spec.gua {
        // 2001:db8:2000::/36: clear of the host's, the outside sources' and the other
        // networks' prefixes (the index is the last nibble).
        let third = 0x2000 | u16::from(a) << 4 | index as u16;
        Ipv6Addr::new(0x2001, 0xdb8, third, 0, 0, 0, 0, 0)
    } else {
        Ipv6Addr::from([0xfd, a, b, c, d, e, 0, index as u8, 0, 0, 0, 0, 0, 0, 0, 0])
    };
    Ipv6Net::new(address, 64).unwrap()
}

/// The `n`th address of a subnet.
fn host_in(net: Ipv6Net, n: u16) -> Ipv6Addr {
    let mut segments = net.network().segments();
    segments[7] = n;
    Ipv6Addr::from(segments)
}

/// A container's address on a network: containers are numbered from `::2`.
fn container_address(world: &World, container: usize, net: usize) -> Ipv6Addr {
    host_in(
        world.snapshot.networks[net].ipv6_subnets[0],
        container as u16 + 2,
    )
}

fn bridge_name(spec: &NetSpec, index: usize) -> String {
    match spec.bridge {
        0 => format!("br-{:012x}", 0xabc000 + index),
        1 => format!("custom{index}"),
        // Only one docker0; a later network asking for it gets a custom name.
        _ if index == 0 => "docker0".to_string(),
        _ => format!("custom{index}"),
    }
}

fn port_text((protocol, port): (Protocol, u16)) -> String {
    format!("\"{port}/{protocol}\"")
}

fn build(spec: HostSpec) -> World {
    let networks: Vec<Network> = spec
        .networks
        .iter()
        .enumerate()
        .map(|(i, n)| Network {
            ipv6_subnets: vec![subnet(n, i)],
            internal: n.internal,
            masquerade: n.masquerade,
            gateway_mode_ipv6: n.docker_mode,
            ..network(
                &format!("n{i}"),
                &format!("net{i}"),
                &bridge_name(n, i),
                n.icc,
            )
        })
        .collect();
    let networks_of: Vec<Vec<usize>> = spec
        .containers
        .iter()
        .map(|c| {
            let mut nets: Vec<usize> = c.networks.iter().map(|n| n % networks.len()).collect();
            nets.sort_unstable();
            nets.dedup();
            nets
        })
        .collect();
    let mut next_host_port = 10_000;
    let containers: Vec<Container> = spec
        .containers
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let endpoints = networks_of[i]
                .iter()
                .map(|&n| Endpoint {
                    network_id: format!("n{n}"),
                    network_name: format!("net{n}"),
                    ipv4: None,
                    ipv6: Some(host_in(networks[n].ipv6_subnets[0], i as u16 + 2)),
                })
                .collect();
            let ports = c
                .bindings
                .iter()
                .map(|b| {
                    // Docker never binds a host port twice: each binding gets its own.
                    let host_port = next_host_port;
                    next_host_port += 1;
                    PortBinding {
                        protocol: b.protocol,
                        container_port: b.container_port,
                        host_ip: match b.host_ip {
                            HostIp::Empty => None,
                            HostIp::Unspecified => Some(IpAddr::V6(Ipv6Addr::UNSPECIFIED)),
                            HostIp::Host(h) => Some(IpAddr::V6(HOST_ADDRESSES[h])),
                            HostIp::V4Loopback => Some(IpAddr::V4(Ipv4Addr::LOCALHOST)),
                            HostIp::V6Loopback => Some(IpAddr::V6(Ipv6Addr::LOCALHOST)),
                        },
                        host_port,
                    }
                })
                .collect();
            Container {
                id: format!("c{i}-id"),
                name: format!("c{i}"),
                image: String::new(),
                labels: BTreeMap::new(),
                image_labels: BTreeMap::new(),
                image_labels_known: true,
                endpoints,
                ports,
                exposed: vec![],
                links: vec![],
                network_mode: "default".to_string(),
            }
        })
        .collect();
    let mut snapshot = Snapshot {
        engine: engine("20.10.24+dfsg1"),
        daemon: Default::default(),
        networks,
        containers,
    };
    snapshot.daemon.userland_proxy.value = spec.userland_proxy;
    let inputs = PlanInputs {
        policy: policy(&spec, &snapshot),
        options: PlanOptions {
            gateway_mode: spec.default_mode,
            strict_isolation: spec.strict_isolation,
            nat66_ula: spec.nat66_ula,
            nat66_gua: spec.nat66_gua,
            ..PlanOptions::default()
        },
    };
    let mut local = HOST_ADDRESSES.to_vec();
    local.extend(
        snapshot
            .networks
            .iter()
            .map(|n| host_in(n.ipv6_subnets[0], 1)),
    );
    World {
        spec,
        snapshot,
        inputs,
        networks_of,
        local,
    }
}

/// The generated policy as a policy file's text, parsed as a user's would be.
fn policy(spec: &HostSpec, snapshot: &Snapshot) -> crate::config::Policy {
    let mut networks = String::new();
    for (i, n) in spec.networks.iter().enumerate() {
        let mut entry = String::new();
        if let Some(icc) = n.icc_policy {
            entry += &format!("    icc: {icc}\n");
        }
        if let Some(mode) = n.policy_mode {
            entry += &format!("    gateway_mode: {}\n", mode.as_str());
        }
        if let Some(nat66) = n.nat66_policy {
            entry += &format!("    nat66: {nat66}\n");
        }
        if n.snat_policy {
            entry += &format!("    snat_address: \"{SNAT_ADDRESS}\"\n");
        }
        if !entry.is_empty() {
            networks += &format!("  net{i}:\n{entry}");
        }
    }
    let mut containers = String::new();
    for (i, c) in spec.containers.iter().enumerate() {
        let Some(p) = &c.policy else { continue };
        containers += &format!("  c{i}:\n");
        if let Some(deny) = p.deny {
            containers += &format!("    deny: [{}]\n", port_text(deny));
        }
        if let Some(expose) = p.expose {
            containers += &format!("    expose: [{}]\n", port_text(expose));
        }
        if let Some(allow) = &p.allow_from {
            let prefixes: Vec<String> = allow
                .iter()
                .map(|&a| format!("\"{}\"", allow_prefix(snapshot, a)))
                .collect();
            containers += &format!("    allow_from: [{}]\n", prefixes.join(", "));
        }
    }
    let mut text = String::new();
    if !networks.is_empty() {
        text += &format!("networks:\n{networks}");
    }
    if !containers.is_empty() {
        text += &format!("containers:\n{containers}");
    }
    if text.is_empty() {
        return crate::config::Policy::default();
    }
    crate::config::parse_policy_file(std::path::Path::new("generated.yaml"), &text)
        .unwrap_or_else(|e| panic!("generated policy does not parse: {e}\n{text}"))
}

/// The `allow_from` prefixes policies pick from: the outside prefix, the first network's.
fn allow_prefix(snapshot: &Snapshot, which: usize) -> Ipv6Net {
    match which {
        0 => OUTSIDE_PREFIX.parse().unwrap(),
        _ => snapshot.networks[0].ipv6_subnets[0],
    }
}

// ---------------------------------------------------------------------------------------
// Packets
// ---------------------------------------------------------------------------------------

/// A concrete packet: where it enters, from and to which address, and what it carries.
#[derive(Debug, Clone)]
struct Probe {
    /// The network whose bridge it enters from (a container's), `None` from the uplink.
    from_network: Option<usize>,
    source: Ipv6Addr,
    destination: Ipv6Addr,
    l4: L4,
    hop_limit: u8,
    established: bool,
    vlan: Option<EtherType>,
}

fn resolve(world: &World, spec: &ProbeSpec) -> Probe {
    let nets = &world.snapshot.networks;
    let containers = world.networks_of.len();
    let outside_spoof = || host_in(nets[spec.endpoint % nets.len()].ipv6_subnets[0], 0x99);
    let (from_network, source) = if spec.from < 4 || containers == 0 {
        match spec.from {
            0 | 1 => (None, OUTSIDE_ALLOWED),
            2 => (None, OUTSIDE_OTHER),
            _ => (None, outside_spoof()),
        }
    } else {
        let c = spec.container % containers;
        let on = &world.networks_of[c];
        let net = on[spec.endpoint % on.len()];
        let other = (net + 1) % nets.len();
        let source = match spec.spoof {
            0..=2 => container_address(world, c, net),
            3 => "fe80::99".parse().unwrap(),
            4 if other != net => host_in(nets[other].ipv6_subnets[0], 0x99),
            _ => OUTSIDE_OTHER,
        };
        (Some(net), source)
    };
    let to_host = spec.to_host || containers == 0;
    // Half the TCP/UDP packets aim at a binding (its container, or its host port on an
    // address it may be translated at), so published paths are exercised as often as
    // closed ones.
    let bindings: Vec<(usize, &PortBinding)> = world
        .snapshot
        .containers
        .iter()
        .enumerate()
        .flat_map(|(c, container)| container.ports.iter().map(move |b| (c, b)))
        .collect();
    let aimed = matches!(spec.kind, 0 | 2)
        .then(|| bindings.get(spec.port % bindings.len().max(1)))
        .flatten();
    // Half the other TCP/UDP packets to containers aim at a policy `expose` port, if any
    // container has one (gateway modes treat it apart from published ones).
    let with_expose: Vec<(usize, (Protocol, u16))> = (0..containers)
        .filter_map(|c| Some((c, policy_of(world, c)?.expose?)))
        .collect();
    let exposed = (!to_host && matches!(spec.kind, 1 | 3) && spec.port % 2 == 0)
        .then(|| with_expose.get(spec.target % with_expose.len().max(1)))
        .flatten();
    let destination = if to_host {
        match aimed.map(|(_, b)| b.host_ip) {
            Some(Some(IpAddr::V6(address)))
                if world.local.contains(&address) && spec.target % 4 != 0 =>
            {
                address
            }
            _ => world.local[spec.target % world.local.len()],
        }
    } else {
        let c = match (aimed, exposed) {
            (Some((c, _)), _) | (None, Some((c, _))) => *c,
            (None, None) => spec.target % containers,
        };
        let on = &world.networks_of[c];
        container_address(world, c, on[spec.target_endpoint % on.len()])
    };
    let exposed = exposed.map(|(_, expose)| *expose);
    let transport = |protocol| {
        let port = match (aimed, to_host, exposed) {
            (Some((_, b)), true, _) => b.host_port,
            (Some((_, b)), false, _) => b.container_port,
            (None, true, _) => UNUSED_HOST_PORT,
            (None, false, Some((_, port))) => port,
            (None, false, None) => CONTAINER_PORTS[spec.port % CONTAINER_PORTS.len()],
        };
        L4::Transport { protocol, port }
    };
    let protocol = |otherwise| {
        aimed.map_or(
            exposed.map_or(otherwise, |(protocol, _)| protocol),
            |(_, b)| b.protocol,
        )
    };
    let icmp = |t: Icmpv6Type| L4::Icmpv6 {
        icmp_type: t.number(),
    };
    let l4 = match spec.kind {
        0 | 1 => transport(protocol(Protocol::Tcp)),
        2 | 3 => transport(protocol(Protocol::Udp)),
        4 => icmp(Icmpv6Type::EchoRequest),
        5 => icmp(Icmpv6Type::NeighborSolicit),
        6 => icmp(Icmpv6Type::NeighborAdvert),
        _ => icmp(Icmpv6Type::RouterAdvert),
    };
    Probe {
        from_network,
        source,
        destination,
        l4,
        hop_limit: spec.hop_limit,
        established: spec.established,
        vlan: from_network.and(spec.vlan),
    }
}

/// What happens to a packet, in terms both sides can state.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    /// Delivered to this container address and port.
    Reached {
        destination: Ipv6Addr,
        port: Option<u16>,
    },
    /// Dropped on the way.
    Dropped,
    /// Still addressed to the host after prerouting: a host socket's business (docker-proxy,
    /// or nothing), not a container's; `admitted` when the input hook lets it through.
    Local { admitted: bool },
}

/// The network whose subnet holds `address`.
fn network_of(world: &World, address: Ipv6Addr) -> Option<usize> {
    world
        .snapshot
        .networks
        .iter()
        .position(|n| n.ipv6_subnets.iter().any(|s| s.contains(&address)))
}

/// What the planned ruleset does: the bridge table for a frame from a container's port, then
/// prerouting, then forward or local delivery.
fn observed(world: &World, ruleset: &Ruleset, probe: &Probe) -> Outcome {
    let nets = &world.snapshot.networks;
    let iif = probe
        .from_network
        .map_or(UPLINK.to_string(), |n| nets[n].bridge.clone());
    let mut packet =
        Packet::new(&iif, "", probe.source, probe.destination, probe.l4).hop_limit(probe.hop_limit);
    if probe.established {
        packet = packet.established();
    }
    if probe.from_network.is_some() {
        packet = packet.bridged("veth0a1b2c3", probe.vlan);
        if !bridge_verdict(ruleset, &packet).accepted {
            return Outcome::Dropped;
        }
    }
    let route =
        |address| network_of(world, address).map_or(UPLINK.to_string(), |n| nets[n].bridge.clone());
    match inbound(ruleset, &world.local, &packet, route) {
        Inbound::Local { verdict } => Outcome::Local {
            admitted: verdict.accepted,
        },
        Inbound::Forwarded {
            destination,
            port,
            verdict,
            ..
        } => {
            if verdict.accepted {
                Outcome::Reached { destination, port }
            } else {
                Outcome::Dropped
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// The reference
// ---------------------------------------------------------------------------------------

/// A network's gateway mode: the policy's `gateway_mode`, else Docker's option, else
/// `defaults.gateway_mode`; `None` is v6guard's default.
fn mode(world: &World, net: usize) -> Option<GatewayMode> {
    let spec = &world.spec.networks[net];
    spec.policy_mode
        .or(spec.docker_mode)
        .or(world.spec.default_mode)
}

/// Whether a published binding on a network in gateway mode `mode` makes its container port
/// reachable on the container's own address, from outside:
/// - v6guard's default: bindings on all addresses (no host IP, `::`) are; a binding on one
///   host address is not (the operator narrowed the port to that address, reachable through
///   DNAT there);
/// - `routed`: every binding that publishes over IPv6 (no host IP, `::`, a non-loopback IPv6
///   address): there is no host-address path, so the container port itself opens;
/// - `nat`: none (only through DNAT);
/// - `nat-unprotected`: none by itself; every port is open anyway ([`reference`]).
///
/// IPv4 and `::1` bindings publish nothing over IPv6 in any mode.
fn reachable_directly(mode: Option<GatewayMode>, binding: &PortBinding) -> bool {
    match (mode, binding.host_ip) {
        (_, Some(IpAddr::V4(_))) => false,
        (None, None) => true,
        (None, Some(IpAddr::V6(address))) => address.is_unspecified(),
        (Some(GatewayMode::Routed), None) => true,
        (Some(GatewayMode::Routed), Some(IpAddr::V6(address))) => !address.is_loopback(),
        (Some(GatewayMode::Nat | GatewayMode::NatUnprotected | GatewayMode::Isolated), _) => false,
    }
}

/// Whether Docker's host port for a binding is at `destination`, one of the host's
/// addresses: all addresses for an empty host IP or `::`, that address for an IPv6 one.
/// IPv4 and loopback bindings are never on an IPv6 host address from outside.
fn listens_at(binding: &PortBinding, destination: Ipv6Addr) -> bool {
    match binding.host_ip {
        None => true,
        Some(IpAddr::V6(address)) if address.is_unspecified() => true,
        Some(IpAddr::V6(address)) => !address.is_loopback() && address == destination,
        Some(IpAddr::V4(_)) => false,
    }
}

/// Whether a binding is translated (DNAT) when a packet reaches `destination` on its host
/// port: where it listens, except in gateway mode `routed`, which has no DNAT (traffic to a
/// host address stays the host's).
fn translated_at(mode: Option<GatewayMode>, binding: &PortBinding, destination: Ipv6Addr) -> bool {
    !matches!(mode, Some(GatewayMode::Routed | GatewayMode::Isolated))
        && listens_at(binding, destination)
}

/// The network a container's ports are published on (Docker: its first non-internal
/// network, endpoints in network-name order) and its address there.
fn port_home(world: &World, container: usize) -> Option<(usize, Ipv6Addr)> {
    let net = *world.networks_of[container]
        .iter()
        .find(|&&n| !world.spec.networks[n].internal)?;
    Some((net, container_address(world, container, net)))
}

fn policy_of(world: &World, container: usize) -> Option<&PolicySpec> {
    world.spec.containers[container].policy.as_ref()
}

fn denied(world: &World, container: usize, protocol: Protocol, port: u16) -> bool {
    policy_of(world, container).is_some_and(|p| p.deny == Some((protocol, port)))
}

/// Whether the container's `allow_from` (if any) admits `source`.
fn admits(world: &World, container: usize, source: Ipv6Addr) -> bool {
    match policy_of(world, container).and_then(|p| p.allow_from.as_ref()) {
        None => true,
        Some(prefixes) => prefixes
            .iter()
            .any(|&a| allow_prefix(&world.snapshot, a).contains(&source)),
    }
}

fn icc(world: &World, net: usize) -> bool {
    let spec = &world.spec.networks[net];
    spec.icc_policy.unwrap_or(spec.icc)
}

/// Where DNAT on a host address sends a packet: the binding with its protocol and host port
/// that is translated at that address, to its container's address on the port network and
/// the container port; not when the policy denies the container port.
fn dnat_target(world: &World, probe: &Probe) -> Option<(Ipv6Addr, u16)> {
    let L4::Transport { protocol, port } = probe.l4 else {
        return None;
    };
    for (c, container) in world.snapshot.containers.iter().enumerate() {
        let Some((net, address)) = port_home(world, c) else {
            continue;
        };
        for binding in &container.ports {
            if binding.protocol == protocol
                && binding.host_port == port
                && translated_at(mode(world, net), binding, probe.destination)
                && !denied(world, c, protocol, binding.container_port)
            {
                return Some((address, binding.container_port));
            }
        }
    }
    None
}

/// Whether a container port is open on the container's own address to `source`: a direct
/// binding or a policy `expose` (which opens nothing in gateway mode `nat`), not denied,
/// and admitted by `allow_from`.
fn exposed_directly(world: &World, destination: Ipv6Addr, probe: &Probe) -> bool {
    let L4::Transport { protocol, port } = probe.l4 else {
        return false;
    };
    (0..world.snapshot.containers.len()).any(|c| {
        let Some((net, address)) = port_home(world, c) else {
            return false;
        };
        let mode = mode(world, net);
        let published = world.snapshot.containers[c].ports.iter().any(|b| {
            b.protocol == protocol && b.container_port == port && reachable_directly(mode, b)
        });
        let expose = !matches!(mode, Some(GatewayMode::Nat | GatewayMode::Isolated))
            && policy_of(world, c).is_some_and(|p| p.expose == Some((protocol, port)));
        address == destination
            && (published || expose)
            && !denied(world, c, protocol, port)
            && admits(world, c, probe.source)
    })
}

/// The container whose address (on any network) `address` is.
fn owner(world: &World, address: Ipv6Addr) -> Option<usize> {
    (0..world.networks_of.len()).find(|&c| {
        world.networks_of[c]
            .iter()
            .any(|&n| container_address(world, c, n) == address)
    })
}

fn is_icmp(probe: &Probe, types: &[Icmpv6Type]) -> bool {
    types.iter().any(|t| {
        probe.l4
            == L4::Icmpv6 {
                icmp_type: t.number(),
            }
    })
}

/// Who may reach what, read off the Snapshot:
///
/// | from \ to a container on network N | outcome |
/// |---|---|
/// | a container's port, VLAN-tagged or a router advertisement | dropped (Layer 2 guard) |
/// | a source that does not belong where it entered | dropped, replies too |
/// | a container on an internal network, to another network | dropped, replies too |
/// | a reply (established) | reached |
/// | N's own bridge | reached iff N's ICC is on, or NDP at hop limit 255, or through DNAT (not with `strict_isolation`) |
/// | anything else, N internal | dropped |
/// | outside, through DNAT on a host address | reached iff `allow_from` admits the source |
/// | another Docker network, through DNAT | as from outside; dropped with `strict_isolation` |
/// | another Docker network, directly | dropped |
/// | outside, directly, N in gateway mode `nat` | dropped |
/// | outside, directly, N in gateway mode `nat-unprotected` | reached (every port) |
/// | outside, directly, otherwise | published ([`reachable_directly`]) or exposed, not denied, admitted; or echo |
///
/// To a host address: DNAT when a binding is translated there ([`translated_at`]; never for
/// link-local sources, nor for containers while docker-proxy serves them), else the host's
/// own, where docker-proxy's ports admit only what the policy would let reach the container
/// ([`served_locally`]).
/// Whether `source` is the address, on another network, of a container attached to
/// network `n`.
fn own_address_elsewhere(world: &World, n: usize, source: Ipv6Addr) -> bool {
    let id = &world.snapshot.networks[n].id;
    world.snapshot.containers.iter().any(|c| {
        c.endpoints.iter().any(|e| &e.network_id == id)
            && c.endpoints
                .iter()
                .any(|e| &e.network_id != id && e.ipv6 == Some(source))
    })
}

/// Whether nothing may enter or leave network `n`'s bridge: `--internal`, or gateway mode
/// `isolated` (Docker 28.1: no gateway at all).
fn sealed(world: &World, n: usize) -> bool {
    world.spec.networks[n].internal || mode(world, n) == Some(GatewayMode::Isolated)
}

fn reference(world: &World, probe: &Probe) -> Outcome {
    let nets = &world.snapshot.networks;
    let from = probe.from_network;
    if from.is_some()
        && (probe.vlan.is_some()
            || is_icmp(probe, &[Icmpv6Type::RouterAdvert, Icmpv6Type::Redirect]))
    {
        return Outcome::Dropped;
    }
    let link_local = probe.source.segments()[0] & 0xffc0 == 0xfe80;
    // Sources are checked before anything else, for the host's own addresses too: a
    // container may use its network's prefix (or, on several networks, its own address on
    // another one), link-local or `::`; the outside no Docker prefix.
    let genuine = match from {
        Some(n) => {
            nets[n].ipv6_subnets[0].contains(&probe.source)
                || link_local
                || probe.source.is_unspecified()
                || own_address_elsewhere(world, n, probe.source)
        }
        None => network_of(world, probe.source).is_none(),
    };
    let (destination, port, translated) = if world.local.contains(&probe.destination) {
        let proxied = from.is_some() && world.spec.userland_proxy;
        let target = match probe.established || link_local || proxied {
            true => None,
            false => dnat_target(world, probe),
        };
        match target {
            Some((address, port)) => (address, Some(port), true),
            None => {
                return Outcome::Local {
                    admitted: genuine && served_locally(world, probe),
                };
            }
        }
    } else {
        (probe.destination, probe_port(probe), false)
    };
    let reached = Outcome::Reached { destination, port };
    let Some(to) = network_of(world, destination) else {
        unreachable!("packets are aimed at containers or the host");
    };
    if !genuine {
        return Outcome::Dropped;
    }
    if from.is_some_and(|n| sealed(world, n) && n != to) {
        return Outcome::Dropped;
    }
    // A reply is let in wherever its connection was accepted: conntrack only confirms a
    // connection whose first packet passed (a spoofed or internal-egress one never did, and
    // those checks come first). So "established" here means an accepted connection's reply,
    // even into an internal network (the host may have opened it).
    if probe.established {
        return reached;
    }
    let via_dnat =
        translated && owner(world, destination).is_some_and(|c| admits(world, c, probe.source));
    let ndp = probe.hop_limit == 255
        && is_icmp(
            probe,
            &[Icmpv6Type::NeighborSolicit, Icmpv6Type::NeighborAdvert],
        );
    let outcome = |reachable: bool| match reachable {
        true => reached.clone(),
        false => Outcome::Dropped,
    };
    // `strict_isolation`: a translated connection from a Docker network meets ICC and
    // isolation like any other (Docker 20.10's IPv4 with the proxy off).
    let strict = world.spec.strict_isolation;
    if from == Some(to) {
        // Hairpin through a host address with ICC off is let in, as docker-proxy does and
        // Docker 28 documents (docs/parity.md); Docker 20.10 without the proxy would drop it,
        // and so does `strict_isolation`.
        return outcome(icc(world, to) || ndp || (via_dnat && !strict));
    }
    if sealed(world, to) {
        return Outcome::Dropped;
    }
    if via_dnat && (from.is_none() || !strict) {
        return reached;
    }
    if from.is_some() {
        return Outcome::Dropped;
    }
    match mode(world, to) {
        Some(GatewayMode::Nat | GatewayMode::Isolated) => Outcome::Dropped,
        Some(GatewayMode::NatUnprotected) => reached,
        Some(GatewayMode::Routed) | None => outcome(
            exposed_directly(world, destination, probe)
                || is_icmp(probe, &[Icmpv6Type::EchoRequest]),
        ),
    }
}

/// Whether a packet left to the host reaches its socket. With userland-proxy on, docker-proxy
/// listens on every published host port and would forward what it gets over IPv4, past
/// every IPv6 rule: so a host port whose container port is denied, or limited by
/// `allow_from`, admits only what could have reached the container. Replies always pass;
/// without the proxy nothing serves an untranslated host port, so nothing needs closing.
/// Whatever the gateway mode: v6guard cannot tell whether docker-proxy listens on a
/// `routed` network's host port, and closing one nothing serves costs nothing.
fn served_locally(world: &World, probe: &Probe) -> bool {
    let L4::Transport { protocol, port } = probe.l4 else {
        return true;
    };
    if probe.established || !world.spec.userland_proxy {
        return true;
    }
    for (c, container) in world.snapshot.containers.iter().enumerate() {
        if port_home(world, c).is_none() {
            continue;
        }
        for binding in &container.ports {
            if binding.protocol == protocol
                && binding.host_port == port
                && listens_at(binding, probe.destination)
            {
                return !denied(world, c, protocol, binding.container_port)
                    && admits(world, c, probe.source);
            }
        }
    }
    true
}

/// A container's new connection to outside, from its address on `net`: whether it may
/// leave, and how postrouting translates its source.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Outbound {
    accepted: bool,
    translation: Option<Translation>,
}

/// What the planned ruleset does with a container's first packet to outside.
fn observed_outbound(world: &World, ruleset: &Ruleset, source: Ipv6Addr, net: usize) -> Outbound {
    let bridge = &world.snapshot.networks[net].bridge;
    let l4 = L4::Transport {
        protocol: Protocol::Tcp,
        port: 443,
    };
    let packet = Packet::new(bridge, UPLINK, source, OUTSIDE_OTHER, l4);
    Outbound {
        accepted: forward_verdict(ruleset, &packet).accepted,
        translation: postrouting_snat(ruleset, &packet),
    }
}

/// Outbound IPv6 from a container on `net`: an internal network's never leaves nor is
/// translated. Otherwise NAT66, read in this order:
/// - the policy's `nat66: true|false`, else its `snat_address` (which implies NAT66);
/// - Docker's masquerade option off: none;
/// - gateway mode `nat` and `nat-unprotected`: every prefix (global ones too); `routed`:
///   none;
/// - v6guard's default: a unique local prefix per `defaults.nat66_ula` (default on), a
///   global one per `defaults.nat66_gua` (default off).
///
/// Translated to the policy's `snat_address` when set, else masqueraded.
fn reference_outbound(world: &World, net: usize) -> Outbound {
    let spec = &world.spec.networks[net];
    if sealed(world, net) {
        return Outbound {
            accepted: false,
            translation: None,
        };
    }
    let nat66 = match (spec.nat66_policy, spec.snat_policy) {
        (Some(forced), _) => forced,
        (None, true) => true,
        (None, false) if !spec.masquerade => false,
        (None, false) => match mode(world, net) {
            Some(GatewayMode::Nat | GatewayMode::NatUnprotected) => true,
            Some(GatewayMode::Routed | GatewayMode::Isolated) => false,
            None if spec.gua => world.spec.nat66_gua,
            None => world.spec.nat66_ula,
        },
    };
    let translation = match spec.snat_policy {
        true => Translation::SnatTo(SNAT_ADDRESS),
        false => Translation::Masquerade,
    };
    Outbound {
        accepted: true,
        translation: nat66.then_some(translation),
    }
}

fn probe_port(probe: &Probe) -> Option<u16> {
    match probe.l4 {
        L4::Transport { port, .. } => Some(port),
        L4::Icmpv6 { .. } => None,
    }
}

proptest! {
    #![proptest_config(Config {
        cases: 256,
        // Minimal failing cases are printed; no regression files in the tree.
        failure_persistence: None,
        ..Config::default()
    })]

    /// Every generated packet fares in the planned ruleset as the reference says, and every
    /// container's outbound connection is let out and translated as the reference says.
    #[test]
    fn the_plan_does_what_the_reference_says(
        host in host_spec(),
        probes in prop::collection::vec(probe_spec(), 1..=48),
    ) {
        let world = build(host);
        let ruleset = plan(&world.snapshot, &world.inputs);
        for spec in &probes {
            let probe = resolve(&world, spec);
            let expected = reference(&world, &probe);
            let got = observed(&world, &ruleset, &probe);
            prop_assert_eq!(
                &got,
                &expected,
                "probe {:?}\nnetworks {:?}\ncontainers {:?}\nuserland-proxy {}\noptions {:?}\npolicy {:?}",
                probe,
                world.snapshot.networks,
                world.snapshot.containers,
                world.spec.userland_proxy,
                world.inputs.options,
                world.inputs.policy
            );
        }
        for (c, nets) in world.networks_of.iter().enumerate() {
            for &net in nets {
                let source = container_address(&world, c, net);
                prop_assert_eq!(
                    observed_outbound(&world, &ruleset, source, net),
                    reference_outbound(&world, net),
                    "outbound from {} on net{}\nnetworks {:?}\noptions {:?}\npolicy {:?}",
                    source,
                    net,
                    world.snapshot.networks,
                    world.inputs.options,
                    world.inputs.policy
                );
            }
        }
    }
}
