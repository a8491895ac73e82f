//! Policy on the host ports Docker publishes, for traffic that reaches them on the host
//! itself instead of being translated to the container.
//!
//! With `userland-proxy=true` docker-proxy listens on `[::]:PORT`. v6guard's DNAT catches
//! outside traffic first, but link-local sources and containers (which Docker leaves to the
//! proxy) still reach the proxy's socket, and the proxy forwards them over IPv4, past every
//! IPv6 filter. So a host port whose container port is denied, or limited by `allow_from`, is
//! also closed (or limited) on the host's input hook. Loopback stays open: the host's own
//! health checks on `[::1]` are not "over IPv6 from somewhere".

use ipnet::Ipv6Net;

use super::SetElement;
use super::exposure::ContainerExposure;
use crate::ruleset::{
    Action, Chain, Field, FieldType, Hook, InterfaceName, Match, NamedSet, PacketField, Rule,
};
use crate::snapshot::Snapshot;

pub const INPUT_CHAIN: &str = "input";
/// Host ports (protocol . port) closed or limited by policy.
pub const HOST_CLOSED_SET: &str = "host-closed";
/// Host ports open to some sources (protocol . port . source prefix).
pub const HOST_ALLOWED_SET: &str = "host-allowed";

/// The two sets, filled from the published bindings the policy closes or limits. Keys start
/// with the host address range the binding listens on (`::/0` for all addresses, a /128 for
/// one), so a limit on `[::b]:22` never touches the host's own service on `[::a]:22`.
pub fn host_port_sets(snapshot: &Snapshot, models: &[ContainerExposure]) -> (NamedSet, NamedSet) {
    let mut closed = NamedSet::interval_set(
        HOST_CLOSED_SET,
        vec![FieldType::Prefix, FieldType::Protocol, FieldType::Port],
    );
    let mut allowed = NamedSet::interval_set(
        HOST_ALLOWED_SET,
        vec![
            FieldType::Prefix,
            FieldType::Protocol,
            FieldType::Port,
            FieldType::Prefix,
        ],
    );
    for (set, key, _) in models.iter().flat_map(|m| host_port_elements(snapshot, m)) {
        let set = if set == HOST_CLOSED_SET {
            &mut closed
        } else {
            &mut allowed
        };
        set.elements.insert(key, Vec::new());
    }
    (closed, allowed)
}

/// One container's elements in the two sets.
pub fn host_port_elements(snapshot: &Snapshot, model: &ContainerExposure) -> Vec<SetElement> {
    if !snapshot.daemon.userland_proxy.value {
        // Without docker-proxy nothing serves a host port that is not translated: dockerd only
        // holds it. Nothing to close on the host.
        return Vec::new();
    }
    let mut out = Vec::new();
    for limit in model.host_port_limits() {
        let binding = limit.binding;
        let host_port = vec![
            Field::Prefix(
                binding
                    .host_ipv6()
                    .map_or_else(Ipv6Net::default, Ipv6Net::from),
            ),
            Field::Protocol(binding.protocol),
            Field::Port(binding.host_port),
        ];
        for prefix in Ipv6Net::aggregate(&limit.sources) {
            let mut key = host_port.clone();
            key.push(Field::Prefix(prefix));
            out.push((HOST_ALLOWED_SET, key, Vec::new()));
        }
        out.push((HOST_CLOSED_SET, host_port, Vec::new()));
    }
    out
}

/// The input chain, only when some host port is closed or limited: loopback and replies to
/// the host's own connections pass, then sources in `allow_from`, then the drop.
pub fn input_chain(closed: &NamedSet, allowed: &NamedSet) -> Option<Chain> {
    if closed.elements.is_empty() {
        return None;
    }
    let service = vec![
        PacketField::DestinationAddress,
        PacketField::Protocol,
        PacketField::DestinationPort,
    ];
    let mut rules = vec![
        Rule::new(
            vec![Match::InInterface(InterfaceName::Exact("lo".to_string()))],
            Action::Accept,
        ),
        Rule::new(vec![Match::EstablishedOrRelated], Action::Accept),
    ];
    if !allowed.elements.is_empty() {
        let mut fields = service.clone();
        fields.push(PacketField::SourceAddress);
        rules.push(
            Rule::new(
                vec![Match::Lookup {
                    fields,
                    set: HOST_ALLOWED_SET.to_string(),
                }],
                Action::Accept,
            )
            .comment("published host ports: sources in allow_from"),
        );
    }
    rules.push(
        Rule::new(
            vec![Match::Lookup {
                fields: service,
                set: HOST_CLOSED_SET.to_string(),
            }],
            Action::Drop,
        )
        .counted()
        .comment("published host ports closed by policy"),
    );
    Some(Chain {
        name: INPUT_CHAIN.to_string(),
        hook: Some(Hook::InputFilter),
        rules,
    })
}
