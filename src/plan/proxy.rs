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

use super::policy::{Resolved, dnat_allowed};
use super::published::publications;
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
pub fn host_port_sets(snapshot: &Snapshot, resolved: &Resolved) -> (NamedSet, NamedSet) {
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
    if !snapshot.daemon.userland_proxy.value {
        // Without docker-proxy nothing serves a host port that is not translated: dockerd only
        // holds it. Nothing to close on the host.
        return (closed, allowed);
    }
    for publication in publications(snapshot) {
        let binding = publication.binding;
        let host_port = vec![
            Field::Prefix(
                binding
                    .host_ipv6()
                    .map_or_else(Ipv6Net::default, Ipv6Net::from),
            ),
            Field::Protocol(binding.protocol),
            Field::Port(binding.host_port),
        ];
        let sources = if dnat_allowed(resolved, publication.container, binding) {
            match resolved.container(publication.container) {
                Some(policy) => match &policy.allow_from {
                    Some(prefixes) => prefixes.clone(),
                    None => continue,
                },
                None => continue,
            }
        } else {
            Vec::new()
        };
        for prefix in Ipv6Net::aggregate(&sources) {
            let mut key = host_port.clone();
            key.push(Field::Prefix(prefix));
            allowed.elements.insert(key, Vec::new());
        }
        closed.elements.insert(host_port, Vec::new());
    }
    (closed, allowed)
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
