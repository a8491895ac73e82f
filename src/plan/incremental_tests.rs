//! The incremental planner against the reference, `plan::plan`: after every container change,
//! the cache's ruleset and NDP entries are exactly the full plan's, and the element changes it
//! reports turn the previous ruleset into the new one.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};

use proptest::prelude::*;
use proptest::test_runner::Config;

use super::*;
use crate::plan::plan;
use crate::snapshot::{Endpoint, ExposedPort, PortBinding, Protocol};
use crate::testing::{container, lab_snapshot};

/// `previous` with `changes` applied, as the kernel applies them (removals, then additions).
fn applied(previous: &Ruleset, changes: &[SetChange]) -> Ruleset {
    let mut out = previous.clone();
    for change in changes {
        let set = set_mut(&mut out, &change.set).expect("a change names a declared set");
        for (key, value) in &change.removed {
            assert_eq!(
                set.elements.remove(key).as_ref(),
                Some(value),
                "removes only what is there, with its value"
            );
        }
        for (key, value) in &change.added {
            assert!(
                set.elements.insert(key.clone(), value.clone()).is_none(),
                "adds only what is not there"
            );
        }
    }
    out
}

/// Follow one change: incrementally when the cache can (about half the generated steps; the
/// rest are multi-homed containers, sets first filled or emptied, and shared addresses), else
/// with a new cache. Checks the result against the full plan.
fn follow(
    cache: &mut PlanCache,
    snapshot: &Snapshot,
    inputs: &PlanInputs,
    ids: &[String],
    located: &HashMap<String, String>,
) {
    let previous = cache.ruleset().clone();
    let reference = plan(snapshot, inputs);
    match cache.update(snapshot, inputs, ids, located) {
        Some(changes) => {
            assert_eq!(
                applied(&previous, &changes).sets,
                reference.sets,
                "the reported changes lead to the full plan's elements"
            );
            assert_eq!(
                previous.comment(),
                reference.comment(),
                "element changes keep every set's declaration (capacity included)"
            );
        }
        None => *cache = PlanCache::new(snapshot, inputs),
    }
    assert_eq!(*cache.ruleset(), reference, "incremental == full plan");
}

/// The lab, its containers in the order Docker's reader gives them.
fn sorted_lab() -> Snapshot {
    let mut snapshot = lab_snapshot();
    snapshot.containers.sort_by(|a, b| a.name.cmp(&b.name));
    snapshot
}

#[test]
fn a_container_stopping_and_starting_again_changes_only_its_elements() {
    let mut snapshot = sorted_lab();
    let inputs = PlanInputs::default();
    let mut cache = PlanCache::new(&snapshot, &inputs);
    let gone = snapshot
        .containers
        .iter()
        .find(|c| c.name == "web1")
        .expect("web1 publishes ports")
        .clone();
    let ids = vec![gone.id.clone()];
    snapshot.replace_containers(&ids, vec![]);
    let previous = cache.ruleset().clone();
    let changes = cache
        .update(&snapshot, &inputs, &ids, &HashMap::new())
        .expect("incremental");
    assert!(!changes.is_empty());
    assert!(changes.iter().all(|c| c.added.is_empty()));
    assert_eq!(*cache.ruleset(), plan(&snapshot, &inputs));
    snapshot.replace_containers(&ids, vec![gone]);
    let back = cache
        .update(&snapshot, &inputs, &ids, &HashMap::new())
        .expect("incremental");
    assert_eq!(*cache.ruleset(), previous);
    assert_eq!(
        back.iter().map(|c| c.added.len()).sum::<usize>(),
        changes.iter().map(|c| c.removed.len()).sum::<usize>()
    );
}

#[test]
fn a_multi_homed_container_or_a_network_change_needs_the_full_plan() {
    let mut snapshot = sorted_lab();
    let inputs = PlanInputs::default();
    let mut cache = PlanCache::new(&snapshot, &inputs);
    let mut multi = container("multi", "n1", "fd76:6700:0:10::77", vec![]);
    multi.endpoints.push(Endpoint {
        network_id: "n2".into(),
        network_name: "custom".into(),
        ipv4: None,
        ipv6: Some("fd76:6700:0:11::77".parse().unwrap()),
    });
    let ids = vec![multi.id.clone()];
    snapshot.replace_containers(&ids, vec![multi]);
    assert!(
        cache
            .update(&snapshot, &inputs, &ids, &HashMap::new())
            .is_none()
    );

    let mut cache = PlanCache::new(&snapshot, &inputs);
    snapshot.networks[1].icc = !snapshot.networks[1].icc;
    assert!(
        cache
            .update(&snapshot, &inputs, &[], &HashMap::new())
            .is_none()
    );
}

/// Containers started one by one until the sets' element counts cross a capacity boundary:
/// the cache follows with element changes while every capacity stays, and asks for the full
/// plan (a table replace with the new sizes) exactly when one changes.
#[test]
fn crossing_a_capacity_boundary_needs_the_full_plan() {
    let mut snapshot = sorted_lab();
    let inputs = PlanInputs::default();
    let mut cache = PlanCache::new(&snapshot, &inputs);
    let capacities = |r: &Ruleset| r.sets.iter().map(NamedSet::capacity).collect::<Vec<_>>();
    let (mut incremental, mut full) = (0, 0);
    for i in 0..140u16 {
        let mut bulk = container(
            &format!("zbulk{i:03}"),
            "n1",
            &format!("fd76:6700:0:10::{:x}", 0x100 + i),
            vec![crate::testing::binding(1000 + i, Some("::"))],
        );
        bulk.ports[0].host_port = 20000 + i;
        let ids = vec![bulk.id.clone()];
        let located = HashMap::from([(bulk.id.clone(), bulk.name.clone())]);
        snapshot.replace_containers(&ids, vec![bulk]);
        let before = capacities(cache.ruleset());
        let reference = plan(&snapshot, &inputs);
        match cache.update(&snapshot, &inputs, &ids, &located) {
            Some(_) => {
                assert_eq!(capacities(&reference), before, "step {i}");
                incremental += 1;
            }
            None => {
                assert_ne!(capacities(&reference), before, "step {i}: why a full plan?");
                cache = PlanCache::new(&snapshot, &inputs);
                full += 1;
            }
        }
        assert_eq!(*cache.ruleset(), reference, "step {i}");
    }
    assert!(
        full >= 1 && incremental > 100,
        "{full} full, {incremental} incremental"
    );
}

/// Two containers holding one address: the cache does not arbitrate (the full plan does),
/// and follows changes again once the contest is over.
#[test]
fn a_shared_address_is_left_to_the_full_plan() {
    let mut snapshot = sorted_lab();
    let inputs = PlanInputs::default();
    let web1 = snapshot.containers.iter().find(|c| c.name == "web1");
    let web1 = web1.expect("web1 publishes ports").clone();
    let mut twin = web1.clone();
    (twin.id, twin.name) = ("twin-id".into(), "twin".into());
    twin.ports.clear();
    let mut cache = PlanCache::new(&snapshot, &inputs);
    let before = cache.ruleset().clone();
    let ids = vec![twin.id.clone()];
    snapshot.replace_containers(&ids, vec![twin]);
    assert!(
        cache
            .update(&snapshot, &inputs, &ids, &HashMap::new())
            .is_none()
    );
    assert_eq!(cache.into_ruleset().sets, before.sets, "spent, not changed");
    let mut cache = PlanCache::new(&snapshot, &inputs);
    assert_eq!(*cache.ruleset(), plan(&snapshot, &inputs));
    assert!(!cache.incremental, "contested: full plans only");
    snapshot.replace_containers(&ids, vec![]);
    assert!(
        cache
            .update(&snapshot, &inputs, &ids, &HashMap::new())
            .is_none()
    );
    let mut cache = PlanCache::new(&snapshot, &inputs);
    assert!(cache.incremental, "the contest is over");
    let web1_ids = vec![web1.id.clone()];
    snapshot.replace_containers(&web1_ids, vec![]);
    assert!(
        cache
            .update(&snapshot, &inputs, &web1_ids, &HashMap::new())
            .is_some()
    );
}

/// A host port two containers publish (Docker never allocates one twice; the benchmarks'
/// synthetic hosts do): the DNAT key goes to the first by (name, ID), and passes to the other
/// when that one goes, all through the cache.
#[test]
fn a_shared_host_port_follows_the_first_container_by_name() {
    let mut snapshot = sorted_lab();
    let inputs = PlanInputs::default();
    let web1 = snapshot.containers.iter().find(|c| c.name == "web1");
    let web1 = web1.expect("web1 publishes ports").clone();
    let keyed = |ruleset: &Ruleset| -> usize {
        (ruleset.sets.iter())
            .filter(|s| BY_KEY.contains(&s.name.as_str()))
            .map(|s| s.elements.len())
            .sum()
    };
    assert!(
        keyed(&plan(&snapshot, &inputs)) > 0,
        "web1 has DNAT elements"
    );
    let mut cache = PlanCache::new(&snapshot, &inputs);
    for name in ["aaa", "zzz"] {
        let mut other = web1.clone();
        (other.id, other.name) = (format!("{name}-id"), name.to_string());
        for endpoint in &mut other.endpoints {
            endpoint.ipv6 = Some(
                format!("fd76:6700:0:10::{}", name.len() + 0xf0)
                    .parse()
                    .unwrap(),
            );
        }
        if name == "zzz" {
            for endpoint in &mut other.endpoints {
                endpoint.ipv6 = Some("fd76:6700:0:10::fe".parse().unwrap());
            }
        }
        let ids = vec![other.id.clone()];
        snapshot.replace_containers(&ids, vec![other]);
        follow_incrementally(&mut cache, &snapshot, &inputs, &ids);
    }
    for id in ["aaa-id", web1.id.as_str(), "zzz-id"] {
        let ids = vec![id.to_string()];
        snapshot.replace_containers(&ids, vec![]);
        follow_incrementally(&mut cache, &snapshot, &inputs, &ids);
    }
    assert_eq!(keyed(cache.ruleset()), 0);
}

/// One change through the cache, which must follow it, checked against the full plan.
fn follow_incrementally(
    cache: &mut PlanCache,
    snapshot: &Snapshot,
    inputs: &PlanInputs,
    ids: &[String],
) {
    let previous = cache.ruleset().clone();
    let changes = cache
        .update(snapshot, inputs, ids, &HashMap::new())
        .expect("followed by the cache");
    let reference = plan(snapshot, inputs);
    assert_eq!(applied(&previous, &changes).sets, reference.sets);
    assert_eq!(*cache.ruleset(), reference);
}

/// The keys [`encode`] wrote, with their sets. `None` if the bytes are not such keys.
fn decode(bytes: &[u8]) -> Option<Vec<(&'static str, Vec<Field>)>> {
    let keys: Vec<&[u8]> = encoded_keys(bytes).collect();
    if keys.iter().map(|k| k.len()).sum::<usize>() != bytes.len() {
        return None;
    }
    keys.into_iter().map(decode_key).collect()
}

#[test]
fn keys_encode_and_decode() {
    let keys: Vec<(&'static str, Vec<Field>)> = vec![
        (
            DNAT_ANY_MAP,
            vec![Field::Protocol(Protocol::Udp), Field::Port(65535)],
        ),
        (
            HOST_ALLOWED_SET,
            vec![
                Field::Prefix("::/0".parse().unwrap()),
                Field::Protocol(Protocol::Sctp),
                Field::Port(1),
                Field::Prefix("2001:db8:aaaa::/48".parse().unwrap()),
            ],
        ),
        (
            DNAT_HOST_MAP,
            vec![
                Field::Address("2001:db8::1".parse().unwrap()),
                Field::Protocol(Protocol::Tcp),
                Field::Port(8080),
            ],
        ),
    ];
    let mut bytes = Vec::new();
    for (set, key) in &keys {
        encode(&mut bytes, set, key).expect("a BY_KEY set");
    }
    assert_eq!(decode(&bytes), Some(keys));
    assert_eq!(decode(&bytes[..bytes.len() - 1]), None, "truncated");
    assert!(encode(&mut bytes, PUBLISHED_SET, &[]).is_none());
}

#[test]
fn containers_are_replaced_in_order_without_sorting() {
    let mut snapshot = sorted_lab();
    let names =
        |s: &Snapshot| -> Vec<String> { s.containers.iter().map(|c| c.name.clone()).collect() };
    let before = names(&snapshot);
    let newcomer = container("aaa", "n1", "fd76:6700:0:10::99", vec![]);
    snapshot.replace_containers(&["aaa-id".into()], vec![newcomer]);
    assert_eq!(names(&snapshot)[0], "aaa");
    let mut changed = snapshot.containers[1].clone();
    changed.ports.clear();
    let id = changed.id.clone();
    snapshot.replace_containers(std::slice::from_ref(&id), vec![changed.clone()]);
    assert_eq!(snapshot.containers[1], changed, "replaced in place");
    snapshot.replace_containers(&["aaa-id".into()], vec![]);
    assert_eq!(names(&snapshot), before);
}

// ---------------------------------------------------------------------------------------
// Random sequences of container changes
// ---------------------------------------------------------------------------------------

/// Containers come from a small pool (names `p0`..), each in two versions, so a change of a
/// running container is a real change. Addresses and host ports come from small ranges, so
/// two containers may share an address (the cache then leaves it to the full plan) or a
/// host port (the first by name keeps the DNAT key); about half the steps go through the
/// cache.
#[derive(Debug, Clone)]
struct Version {
    /// Networks (0-2) in order; two make the container multi-homed (a full plan).
    networks: Vec<usize>,
    address: u16,
    /// (protocol, container port, host port, host address: 0 none, 1 `::`, 2 one address,
    /// 3 `127.0.0.1`).
    bindings: Vec<(Protocol, u16, u16, u8)>,
    exposed: Vec<u16>,
    /// Pool indices it links to.
    links: Vec<usize>,
}

const POOL: usize = 6;
const PORTS: [u16; 3] = [80, 443, 53];

fn version() -> impl Strategy<Value = Version> {
    (
        prop_oneof![
            6 => (0usize..3).prop_map(|n| vec![n]),
            1 => Just(vec![0usize, 1]),
        ],
        0u16..10,
        prop::collection::vec(
            (
                prop_oneof![Just(Protocol::Tcp), Just(Protocol::Udp)],
                prop::sample::select(PORTS.to_vec()),
                8000u16..8012,
                0u8..4,
            ),
            0..=3,
        ),
        prop::collection::vec(prop::sample::select(PORTS.to_vec()), 0..=2),
        prop::collection::vec(0usize..POOL, 0..=1),
    )
        .prop_map(|(networks, address, bindings, exposed, links)| Version {
            networks,
            address,
            bindings,
            exposed,
            links,
        })
}

fn build(index: usize, version: &Version) -> Container {
    let subnets = ["fd00:0:0:1", "fd00:0:0:2", "2001:db8:0:3"];
    let mut c = container(
        &format!("p{index}"),
        "n0",
        "fd00:0:0:1::1",
        version
            .bindings
            .iter()
            .map(|&(protocol, container_port, host_port, host)| PortBinding {
                protocol,
                container_port,
                host_ip: match host {
                    0 => None,
                    1 => Some(IpAddr::V6(Ipv6Addr::UNSPECIFIED)),
                    2 => Some("2001:db8:ffff::1".parse().unwrap()),
                    _ => Some("127.0.0.1".parse().unwrap()),
                },
                host_port,
            })
            .collect(),
    );
    c.endpoints = version
        .networks
        .iter()
        .map(|&n| Endpoint {
            network_id: format!("n{n}"),
            network_name: format!("net{n}"),
            ipv4: None,
            ipv6: Some(
                format!("{}::{:x}", subnets[n], version.address + 2)
                    .parse()
                    .unwrap(),
            ),
        })
        .collect();
    c.exposed = version
        .exposed
        .iter()
        .map(|&port| ExposedPort {
            protocol: Protocol::Tcp,
            port,
        })
        .collect();
    c.links = version.links.iter().map(|l| format!("p{l}")).collect();
    c
}

/// Three networks (net0 ICC off with NDP proxying, net1 in gateway mode nat by policy, net2
/// global and routed), and policies for some pool containers: deny, expose, allow_from.
fn world(userland_proxy: bool) -> (Snapshot, PlanInputs) {
    let mut snapshot = lab_snapshot();
    snapshot.daemon.userland_proxy.value = userland_proxy;
    snapshot.containers.clear();
    snapshot.networks = vec![
        crate::snapshot::Network {
            ipv6_subnets: vec!["fd00:0:0:1::/64".parse().unwrap()],
            ..crate::testing::network("n0", "bridge", "docker0", false)
        },
        crate::snapshot::Network {
            ipv6_subnets: vec!["fd00:0:0:2::/64".parse().unwrap()],
            ..crate::testing::network("n1", "net1", "br-000000000001", true)
        },
        crate::snapshot::Network {
            ipv6_subnets: vec!["2001:db8:0:3::/64".parse().unwrap()],
            gateway_mode_ipv6: Some(crate::snapshot::GatewayMode::Routed),
            ..crate::testing::network("n2", "net2", "br-000000000002", false)
        },
    ];
    let text = "networks:\n  bridge:\n    ndp_proxy:\n      interface: eth9\n  net1:\n    \
                gateway_mode: nat\ncontainers:\n  p0:\n    deny: [\"80/tcp\"]\n  p1:\n    \
                allow_from: [\"2001:db8:aaaa::/48\", \"fd00:0:0:2::/64\"]\n    expose: \
                [\"8080/tcp\"]\n  p2:\n    allow_from: []\n";
    let policy = crate::config::parse_policy_file(std::path::Path::new("test.yaml"), text)
        .expect("test policy parses");
    (
        snapshot,
        PlanInputs {
            policy,
            ..PlanInputs::default()
        },
    )
}

proptest! {
    #![proptest_config(Config { cases: 256, ..Config::default() })]

    #[test]
    fn container_changes_through_the_cache_give_the_full_plan(
        versions in prop::collection::vec((version(), version()), POOL),
        userland_proxy in any::<bool>(),
        start in prop::collection::vec(any::<bool>(), POOL),
        steps in prop::collection::vec((0usize..POOL, 0u8..3), 1..30),
    ) {
        let (mut snapshot, inputs) = world(userland_proxy);
        let initial: Vec<Container> = (0..POOL)
            .filter(|&i| start[i])
            .map(|i| build(i, &versions[i].0))
            .collect();
        let ids: Vec<String> = initial.iter().map(|c| c.id.clone()).collect();
        snapshot.replace_containers(&ids, initial);
        let mut cache = PlanCache::new(&snapshot, &inputs);
        prop_assert_eq!(cache.ruleset(), &plan(&snapshot, &inputs));
        for (i, action) in steps {
            let id = format!("p{i}-id");
            // 0: stop, 1: run the first version, 2: run the second.
            let fresh = match action {
                0 => vec![],
                1 => vec![build(i, &versions[i].0)],
                _ => vec![build(i, &versions[i].1)],
            };
            // As the daemon's reconciler does: gone containers found under the name the cache
            // knows, fresh ones located by name for the update.
            let located: HashMap<String, String> =
                fresh.iter().map(|c| (c.id.clone(), c.name.clone())).collect();
            snapshot.replace_containers_with(std::slice::from_ref(&id), fresh, |id| {
                cache.name_of(id)
            });
            let mut sorted = snapshot.containers.clone();
            sorted.sort_by(|a, b| (&a.name, &a.id).cmp(&(&b.name, &b.id)));
            prop_assert_eq!(&sorted, &snapshot.containers);
            follow(&mut cache, &snapshot, &inputs, &[id], &located);
        }
    }
}

/// Where Docker firewalls IPv6 itself (augment mode), the plan declares none of the sets
/// containers fill: building the cache of a host whose containers publish ports must not
/// look for them (it panicked: `set published is not declared`), and every change is left
/// to the full plan.
#[test]
fn in_augment_mode_the_cache_follows_nothing() {
    let mut snapshot = sorted_lab();
    snapshot.daemon.ip6tables = crate::snapshot::Setting {
        value: Some(true),
        ..snapshot.daemon.ip6tables
    };
    let inputs = PlanInputs::default();
    assert!(crate::plan::augment::active(&snapshot, &inputs.options));
    assert!(
        snapshot.containers.iter().any(|c| !c.ports.is_empty()),
        "the lab publishes ports"
    );
    let mut cache = PlanCache::new(&snapshot, &inputs);
    assert_eq!(*cache.ruleset(), plan(&snapshot, &inputs));
    let web1 = snapshot.containers.iter().find(|c| c.name == "web1");
    let ids = vec![web1.expect("web1").id.clone()];
    snapshot.replace_containers(&ids, vec![]);
    assert!(
        cache
            .update(&snapshot, &inputs, &ids, &HashMap::new())
            .is_none()
    );
}
