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

/// The two sets, filled from the published bindings the policy closes or limits.
pub fn host_port_sets(snapshot: &Snapshot, resolved: &Resolved) -> (NamedSet, NamedSet) {
    let mut closed = NamedSet::set(HOST_CLOSED_SET, vec![FieldType::Protocol, FieldType::Port]);
    let mut allowed = NamedSet::interval_set(
        HOST_ALLOWED_SET,
        vec![FieldType::Protocol, FieldType::Port, FieldType::Prefix],
    );
    for publication in publications(snapshot) {
        let binding = publication.binding;
        let host_port = vec![
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

/// The input chain, only when some host port is closed or limited.
pub fn input_chain(closed: &NamedSet, allowed: &NamedSet) -> Option<Chain> {
    if closed.elements.is_empty() {
        return None;
    }
    let mut rules = vec![Rule::new(
        vec![Match::InInterface(InterfaceName::Exact("lo".to_string()))],
        Action::Accept,
    )];
    if !allowed.elements.is_empty() {
        rules.push(
            Rule::new(
                vec![Match::Lookup {
                    fields: vec![
                        PacketField::Protocol,
                        PacketField::DestinationPort,
                        PacketField::SourceAddress,
                    ],
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
                fields: vec![PacketField::Protocol, PacketField::DestinationPort],
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
