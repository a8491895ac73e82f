//! Augment mode: where Docker firewalls IPv6 itself (`ip6tables` on; Docker 27+ by default),
//! v6guard adds only what narrows Docker's decisions and never widens one.
//!
//! Docker's own chains keep deciding ICC, isolation, publishing and NAT. v6guard's table then
//! holds a single forward base chain at priority `filter - 10`, ahead of Docker's, whose only
//! verdicts are `drop` and `return`: policy `deny` drops a published port over IPv6, policy
//! `allow_from` drops it for every other source. Every base chain on a hook runs, so neither a
//! `return` here nor the chain's accept policy can let through what Docker's chains drop; the
//! only effect v6guard's table can have is a drop. No NAT, no accepts, no ICC rules (Docker's),
//! and Docker's chains are never touched, so removing v6guard leaves them exactly as they were.
//! The Layer 2 guard (bridge table, drops only) and NDP proxy entries stay.

use std::net::Ipv6Addr;

use ipnet::Ipv6Net;

use super::exposure::{exposures, models};
use super::policy::{self, Resolved};
use super::{Guarded, PlanInputs, PlanOptions, layer2, ndp, stand_down_reason};
use crate::config::Mode;
use crate::ruleset::{
    Action, Chain, Field, FieldType, Hook, Match, NamedSet, PacketField, Rule, Ruleset, TABLE_NAME,
};
use crate::snapshot::{Protocol, Snapshot};

/// The base chain ahead of Docker's filter chains.
pub const AUGMENT_CHAIN: &str = "augment-forward";
/// Traffic headed into a Docker bridge.
pub const AUGMENT_TO_BRIDGE_CHAIN: &str = "augment-to-bridge";
/// Container ports the policy denies over IPv6 (`deny`).
pub const DENIED_SET: &str = "denied";
/// Container ports reachable only from some sources (`allow_from`): every source not in
/// [`ALLOWED_SET`] is dropped.
pub const RESTRICTED_PORTS_SET: &str = "restricted-ports";
/// (container port, allowed prefix) pairs of `allow_from`.
pub const ALLOWED_SET: &str = "allowed";

/// Whether v6guard plans only narrowing drops for this snapshot: `defaults.mode: augment`,
/// or `auto` where Docker firewalls IPv6 itself. `--force` (`options.force_full`) always
/// plans the full ruleset.
pub fn active(snapshot: &Snapshot, options: &PlanOptions) -> bool {
    if options.force_full {
        return false;
    }
    match options.mode {
        Mode::Augment => true,
        Mode::Auto => stand_down_reason(snapshot).is_some(),
        Mode::StandDown => false,
    }
}

/// The augment ruleset: drops for `deny` and `allow_from` on published ports, the Layer 2
/// guard and NDP proxy entries. Pure.
pub fn plan(snapshot: &Snapshot, inputs: &PlanInputs) -> Ruleset {
    let resolved = policy::resolve(snapshot, inputs);
    let sets = narrowing_sets(snapshot, &resolved);
    let guarded = Guarded::new(snapshot, &inputs.options);
    let chains = vec![forward_chain(&guarded), to_bridge_chain(&sets)];
    Ruleset {
        table: TABLE_NAME.to_string(),
        sets: vec![sets.denied, sets.restricted_ports, sets.allowed],
        chains,
        bridge_chains: layer2::chains(&inputs.options),
        // ICC is Docker's here: v6guard needs no bridged IPv6 in its hooks.
        needs_bridge_netfilter: false,
        ndp: ndp::proxies(snapshot, &resolved),
    }
}

/// The policy settings augment mode cannot honour, as warnings: Docker's own rules decide
/// ICC and NAT there, and v6guard never opens what Docker closes, so `icc`, `nat66`,
/// `snat_address` and `expose` would otherwise be ignored without a word. Empty when augment
/// mode is not active.
pub fn ignored_settings(snapshot: &Snapshot, inputs: &PlanInputs) -> Vec<String> {
    if !active(snapshot, &inputs.options) {
        return Vec::new();
    }
    let why = "has no effect in augment mode (Docker's own IPv6 rules decide it; \
               `defaults.mode: stand-down` or `--force` to choose otherwise)";
    let mut out = Vec::new();
    for (name, network) in &inputs.policy.networks {
        let set = [
            ("icc", network.icc.is_some()),
            ("nat66", network.nat66.is_some()),
            ("snat_address", network.snat_address.is_some()),
        ];
        for (key, _) in set.iter().filter(|(_, present)| *present) {
            out.push(format!("network {name}: `{key}` {why}"));
        }
    }
    let resolved = policy::resolve(snapshot, inputs);
    for container in &snapshot.containers {
        if resolved
            .container(container)
            .is_some_and(|policy| !policy.expose.is_empty())
        {
            out.push(format!("container {}: `expose` {why}", container.name));
        }
    }
    out
}

/// The three sets the narrowing rules look up.
struct NarrowingSets {
    denied: NamedSet,
    restricted_ports: NamedSet,
    allowed: NamedSet,
}

fn service_types() -> Vec<FieldType> {
    vec![FieldType::Address, FieldType::Protocol, FieldType::Port]
}

fn service_fields() -> Vec<PacketField> {
    vec![
        PacketField::DestinationAddress,
        PacketField::Protocol,
        PacketField::DestinationPort,
    ]
}

fn service(address: Ipv6Addr, protocol: Protocol, port: u16) -> Vec<Field> {
    vec![
        Field::Address(address),
        Field::Protocol(protocol),
        Field::Port(port),
    ]
}

/// What the policy takes away from Docker's publishing. A Docker-published port is what
/// matters: Docker already drops unpublished ones. The forward hook sees a DNAT'd connection
/// with the container's address and port, so one element covers routed and translated paths.
fn narrowing_sets(snapshot: &Snapshot, resolved: &Resolved) -> NarrowingSets {
    let mut allowed_key = service_types();
    allowed_key.push(FieldType::Prefix);
    let mut sets = NarrowingSets {
        denied: NamedSet::set(DENIED_SET, service_types()),
        restricted_ports: NamedSet::set(RESTRICTED_PORTS_SET, service_types()),
        allowed: NamedSet::interval_set(ALLOWED_SET, allowed_key),
    };
    for model in models(snapshot, resolved) {
        let Some((_, address)) = model.port_network else {
            continue;
        };
        for binding in model.bindings() {
            let (protocol, port) = (binding.protocol, binding.container_port);
            if model.denied(protocol, port) {
                let key = service(address, protocol, port);
                sets.denied.elements.insert(key, Vec::new());
            }
        }
    }
    for exposure in exposures(snapshot, resolved) {
        let Some(prefixes) = &exposure.allow_from else {
            continue;
        };
        let key = service(exposure.address, exposure.protocol, exposure.port);
        for prefix in Ipv6Net::aggregate(prefixes) {
            let mut allowed = key.clone();
            allowed.push(Field::Prefix(prefix));
            sets.allowed.elements.insert(allowed, Vec::new());
        }
        sets.restricted_ports.elements.insert(key, Vec::new());
    }
    sets
}

/// Everything headed into a Docker bridge goes to the narrowing chain.
fn forward_chain(guarded: &Guarded) -> Chain {
    let rules = guarded
        .interfaces
        .iter()
        .map(|bridge| {
            Rule::new(
                vec![Match::OutInterface(bridge.clone())],
                Action::Jump(AUGMENT_TO_BRIDGE_CHAIN.to_string()),
            )
        })
        .collect();
    Chain {
        name: AUGMENT_CHAIN.to_string(),
        hook: Some(Hook::ForwardFilterEarly),
        rules,
    }
}

/// Drops only; `return` hands the packet back to Docker's chains, which decide the rest.
/// Replies pass, so a container's outbound connections keep working whatever its policy.
fn to_bridge_chain(sets: &NarrowingSets) -> Chain {
    let lookup = |fields: Vec<PacketField>, set: &str| Match::Lookup {
        fields,
        set: set.to_string(),
    };
    let mut rules = vec![Rule::new(vec![Match::EstablishedOrRelated], Action::Return)];
    if !sets.denied.elements.is_empty() {
        rules.push(
            Rule::new(vec![lookup(service_fields(), DENIED_SET)], Action::Drop)
                .counted()
                .comment("policy deny"),
        );
    }
    if !sets.restricted_ports.elements.is_empty() {
        let mut allowed_fields = service_fields();
        allowed_fields.push(PacketField::SourceAddress);
        rules.push(
            Rule::new(vec![lookup(allowed_fields, ALLOWED_SET)], Action::Return)
                .comment("policy allow_from: an allowed source, Docker decides"),
        );
        rules.push(
            Rule::new(
                vec![lookup(service_fields(), RESTRICTED_PORTS_SET)],
                Action::Drop,
            )
            .counted()
            .comment("policy allow_from: any other source"),
        );
    }
    Chain {
        name: AUGMENT_TO_BRIDGE_CHAIN.to_string(),
        hook: None,
        rules,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eval::{L4, Packet, forward_verdict};
    use crate::snapshot::Setting;
    use crate::testing::lab_snapshot;

    const WEB1: &str = "fd76:6700:0:10::2";
    const WEB_BRIDGE: &str = "br-0123456789ab";

    /// The lab snapshot on a host where Docker firewalls IPv6 (`ip6tables: true`).
    fn docker_owns_ipv6() -> Snapshot {
        let mut snapshot = lab_snapshot();
        snapshot.daemon.ip6tables = Setting {
            value: Some(true),
            ..snapshot.daemon.ip6tables
        };
        snapshot
    }

    fn with_policy(yaml: &str) -> PlanInputs {
        PlanInputs {
            policy: crate::config::parse_policy_file(std::path::Path::new("t.yaml"), yaml).unwrap(),
            ..PlanInputs::default()
        }
    }

    fn from(source: &str, iifname: &str, port: u16) -> Packet {
        Packet::new(
            iifname,
            WEB_BRIDGE,
            source.parse().unwrap(),
            WEB1.parse().unwrap(),
            L4::Transport {
                protocol: Protocol::Tcp,
                port,
            },
        )
    }

    fn dropped(ruleset: &Ruleset, packet: &Packet) -> bool {
        !forward_verdict(ruleset, packet).accepted
    }

    #[test]
    fn chosen_where_docker_owns_ipv6_or_when_asked() {
        let options = PlanOptions::default();
        assert!(active(&docker_owns_ipv6(), &options));
        assert!(
            !active(&lab_snapshot(), &options),
            "20.10 without ip6tables"
        );
        let augment = PlanOptions {
            mode: Mode::Augment,
            ..PlanOptions::default()
        };
        assert!(active(&lab_snapshot(), &augment));
        let stand_down = PlanOptions {
            mode: Mode::StandDown,
            ..PlanOptions::default()
        };
        assert!(!active(&docker_owns_ipv6(), &stand_down));
        let forced = PlanOptions {
            force_full: true,
            ..PlanOptions::default()
        };
        assert!(!active(&docker_owns_ipv6(), &forced));
    }

    #[test]
    fn settings_augment_cannot_honour_are_warned_about() {
        let inputs = with_policy(
            "networks:\n  web:\n    icc: false\n    nat66: true\n\
             containers:\n  web1:\n    expose: [\"81/tcp\"]\n    deny: [\"80/tcp\"]\n",
        );
        let warned = super::super::warnings(&docker_owns_ipv6(), &inputs);
        for expected in [
            "network web: `icc` has no effect in augment mode",
            "network web: `nat66` has no effect in augment mode",
            "container web1: `expose` has no effect in augment mode",
        ] {
            assert!(
                warned.iter().any(|w| w.starts_with(expected)),
                "{expected} missing from {warned:?}"
            );
        }
        assert!(
            !warned.iter().any(|w| w.contains("deny")),
            "deny is honoured: {warned:?}"
        );
        assert!(
            ignored_settings(&lab_snapshot(), &inputs).is_empty(),
            "the full ruleset honours them all"
        );
    }

    #[test]
    fn the_plan_dispatches_to_augment() {
        let ruleset = super::super::plan(&docker_owns_ipv6(), &PlanInputs::default());
        assert!(ruleset.chains.iter().any(|c| c.name == AUGMENT_CHAIN));
    }

    #[test]
    fn only_drops_no_accept_and_no_nat() {
        let inputs = with_policy(
            "containers:\n  web1:\n    deny: [\"80/tcp\"]\n    allow_from: [\"2001:db8:76::/64\"]\n",
        );
        let ruleset = plan(&docker_owns_ipv6(), &inputs);
        for chain in ruleset.all_chains() {
            assert!(
                matches!(
                    chain.hook,
                    None | Some(Hook::ForwardFilterEarly | Hook::BridgePrerouting)
                ),
                "{}: no NAT, input or prerouting hooks",
                chain.name
            );
            for rule in &chain.rules {
                assert!(
                    matches!(rule.action, Action::Drop | Action::Return | Action::Jump(_)),
                    "{}: {rule:?}",
                    chain.name
                );
            }
        }
        assert!(!ruleset.needs_bridge_netfilter);
    }

    #[test]
    fn without_a_policy_nothing_is_dropped() {
        let ruleset = plan(&docker_owns_ipv6(), &PlanInputs::default());
        for port in [80, 83, 9999] {
            assert!(!dropped(&ruleset, &from("2001:db8:76::2", "eth0", port)));
        }
    }

    #[test]
    fn deny_drops_a_published_port_from_outside_only() {
        let inputs = with_policy("containers:\n  web1:\n    deny: [\"80/tcp\"]\n");
        let ruleset = plan(&docker_owns_ipv6(), &inputs);
        assert!(dropped(&ruleset, &from("2001:db8:76::2", "eth0", 80)));
        assert!(
            !dropped(&ruleset, &from("2001:db8:76::2", "eth0", 83)),
            "83 is not denied"
        );
        assert!(
            !dropped(&ruleset, &from("2001:db8:76::2", "eth0", 80).established()),
            "replies and established connections are Docker's"
        );
    }

    #[test]
    fn allow_from_drops_other_sources() {
        let inputs = with_policy(
            "containers:\n  web1:\n    allow_from: [\"2001:db8:76::/64\", \"2001:db8:99::5\"]\n",
        );
        let ruleset = plan(&docker_owns_ipv6(), &inputs);
        assert!(!dropped(&ruleset, &from("2001:db8:76::2", "eth0", 80)));
        assert!(!dropped(&ruleset, &from("2001:db8:99::5", "eth0", 83)));
        assert!(dropped(&ruleset, &from("2001:db8:77::2", "eth0", 80)));
        assert!(dropped(&ruleset, &from("2001:db8:99::6", "eth0", 83)));
    }
}
