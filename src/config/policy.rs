//! Policy files (`/etc/v6guard/policies/*.yaml`): per-network and per-container adjustments
//! of the Docker behaviour v6guard mirrors.

use std::collections::BTreeMap;
use std::net::Ipv6Addr;
use std::path::Path;

use ipnet::Ipv6Net;
use serde::Serialize;
use serde_yaml_ng::Value;

use super::error::{ConfigError, ConfigErrors, Location};
use super::keypath::KeyPath;
use super::ports::PortSpec;
use super::values::{
    Invalid, check_container_name, check_network_name, parse_gateway_mode, parse_interface,
    parse_prefix, parse_snat_address,
};
use super::yaml::{Checker, Document, Table};
use crate::snapshot::GatewayMode;

/// Every policy file, combined. Each network and container is defined in one file only.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Policy {
    /// By Docker network name.
    pub networks: BTreeMap<String, NetworkPolicy>,
    /// By container name (without Docker's leading `/`).
    pub containers: BTreeMap<String, ContainerPolicy>,
}

/// Overrides for one Docker network. `None` keeps what Docker's settings say.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct NetworkPolicy {
    /// Container-to-container IPv6 on this network, instead of the network's `enable_icc`.
    pub icc: Option<bool>,
    /// Masquerade the network's IPv6 traffic leaving the host, instead of the defaults.
    pub nat66: Option<bool>,
    /// SNAT to this address instead of masquerading; implies NAT66 for the network.
    pub snat_address: Option<Ipv6Addr>,
    /// Answer neighbour solicitations for the network's containers on this interface.
    pub ndp_proxy: Option<NdpProxy>,
    /// How IPv6 reaches the network's containers (Docker 28's words), instead of the
    /// network's `gateway_mode_ipv6` option and `defaults.gateway_mode`.
    pub gateway_mode: Option<GatewayMode>,
    /// The entry's name in its policy file; `None` when built by hand.
    pub origin: Option<Location>,
}

/// NDP proxying of a network's container addresses on an uplink.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NdpProxy {
    pub interface: String,
}

/// Restrictions and additions for one container's reachability over IPv6. Deny always wins:
/// a port in `deny` stays closed whether it is published or exposed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ContainerPolicy {
    /// Only these sources may reach the container's published and exposed ports. `None`:
    /// every source (Docker's behaviour); an empty list: no source.
    pub allow_from: Option<Vec<Ipv6Net>>,
    /// Container ports opened over IPv6 although not published.
    pub expose: Vec<PortSpec>,
    /// Container ports kept closed over IPv6 although published.
    pub deny: Vec<PortSpec>,
    /// The entry's name in its policy file; `None` for labels alone or when built by hand.
    pub origin: Option<Location>,
}

const TOP_KEYS: [&str; 2] = ["networks", "containers"];
const NETWORK_KEYS: [&str; 5] = ["icc", "nat66", "snat_address", "ndp_proxy", "gateway_mode"];
const NDP_PROXY_KEYS: [&str; 1] = ["interface"];
const CONTAINER_KEYS: [&str; 3] = ["allow_from", "expose", "deny"];
const PREFIX_ITEM: &str = "IPv6 prefixes, such as 2001:db8::/32";
const PORT_ITEM: &str = "container ports, such as \"443/tcp\", \"8000-8010/udp\"";

/// Parse one policy file. Pure: `file` only names the text in messages and origins.
pub fn parse_policy_file(file: &Path, text: &str) -> Result<Policy, ConfigErrors> {
    let (policy, errors) = check_policy_file(file, text);
    ConfigErrors(errors).into_result(policy)
}

/// Every error in one policy file, and the entries it defines even so (each as well as it
/// could be read), so that names defined twice are found across files that also have other
/// errors.
pub(crate) fn check_policy_file(file: &Path, text: &str) -> (Policy, Vec<ConfigError>) {
    let doc = match Document::parse(file, text) {
        Ok(doc) => doc,
        Err(error) => return (Policy::default(), vec![error]),
    };
    let mut checker = Checker::new(&doc);
    let root = KeyPath::default();
    let mut policy = Policy::default();
    if let Some(top) = checker.fields(doc.root(), &root, &TOP_KEYS) {
        if let Some(networks) = top.get("networks") {
            policy.networks = read_networks(&mut checker, networks, &root.key("networks"));
        }
        if let Some(containers) = top.get("containers") {
            policy.containers = read_containers(&mut checker, containers, &root.key("containers"));
        }
    }
    (policy, checker.finish())
}

/// Combine files read in name order. A network or container defined in two files is an
/// error naming both places: which file should win is not something to guess.
pub fn combine(files: Vec<Policy>) -> Result<Policy, ConfigErrors> {
    let mut combined = Policy::default();
    let mut errors = Vec::new();
    for file in files {
        for (name, entry) in file.networks {
            let origin = entry.origin.clone();
            if let Some(first) = combined.networks.get(&name) {
                errors.push(duplicate(
                    "networks",
                    &name,
                    &first.origin,
                    origin,
                    "network",
                ));
            } else {
                combined.networks.insert(name, entry);
            }
        }
        for (name, entry) in file.containers {
            let origin = entry.origin.clone();
            if let Some(first) = combined.containers.get(&name) {
                errors.push(duplicate(
                    "containers",
                    &name,
                    &first.origin,
                    origin,
                    "container",
                ));
            } else {
                combined.containers.insert(name, entry);
            }
        }
    }
    ConfigErrors(errors).into_result(combined)
}

fn duplicate(
    section: &str,
    name: &str,
    first: &Option<Location>,
    second: Option<Location>,
    kind: &str,
) -> ConfigError {
    let unknown = || Location {
        file: "(unknown)".into(),
        line: 0,
        column: 0,
    };
    let first = first.clone().unwrap_or_else(unknown);
    ConfigError::Invalid {
        at: second.unwrap_or_else(unknown),
        key: KeyPath::default().key(section).key(name).to_string(),
        problem: format!("already defined at {first}"),
        expected: format!("each {kind} in one policy file only; merge the two entries"),
    }
}

fn read_networks(
    checker: &mut Checker,
    value: &Value,
    path: &KeyPath,
) -> BTreeMap<String, NetworkPolicy> {
    let names = checker.names(value, path, "a mapping of network names to settings");
    let mut networks = BTreeMap::new();
    for (name, entry) in names.entries() {
        let path = path.key(name);
        if let Err(invalid) = check_network_name(name) {
            checker.invalid(&path, invalid.problem, invalid.expected);
            continue;
        }
        if let Some(network) = read_network(checker, entry, &path) {
            networks.insert(name.to_string(), network);
        }
    }
    networks
}

fn read_network(checker: &mut Checker, value: &Value, path: &KeyPath) -> Option<NetworkPolicy> {
    let fields = checker.fields(value, path, &NETWORK_KEYS)?;
    let mut network = NetworkPolicy {
        origin: Some(checker.locate(path)),
        ..NetworkPolicy::default()
    };
    if let Some(value) = fields.get("icc") {
        network.icc = checker.bool(value, &path.key("icc"));
    }
    if let Some(value) = fields.get("nat66") {
        network.nat66 = checker.bool(value, &path.key("nat66"));
    }
    if let Some(value) = fields.get("snat_address") {
        network.snat_address = checker.parsed(value, &path.key("snat_address"), parse_snat_address);
    }
    if let Some(value) = fields.get("ndp_proxy") {
        network.ndp_proxy = read_ndp_proxy(checker, value, &path.key("ndp_proxy"));
    }
    if let Some(value) = fields.get("gateway_mode") {
        network.gateway_mode = checker.parsed(value, &path.key("gateway_mode"), parse_gateway_mode);
    }
    if network.nat66 == Some(false) && network.snat_address.is_some() {
        checker.invalid(
            &path.key("snat_address"),
            "SNAT is set but nat66 is false",
            "either nat66: false or an snat_address, not both",
        );
    }
    Some(network)
}

fn read_ndp_proxy(checker: &mut Checker, value: &Value, path: &KeyPath) -> Option<NdpProxy> {
    let expected = "ndp_proxy: {interface: IFNAME}";
    if value.is_null() {
        checker.invalid(path, "the interface is missing", expected);
        return None;
    }
    let fields = checker.fields(value, path, &NDP_PROXY_KEYS)?;
    let Some(interface) = fields.get("interface") else {
        checker.invalid(path, "the interface is missing", expected);
        return None;
    };
    let interface = checker.parsed(interface, &path.key("interface"), parse_interface)?;
    Some(NdpProxy { interface })
}

fn read_containers(
    checker: &mut Checker,
    value: &Value,
    path: &KeyPath,
) -> BTreeMap<String, ContainerPolicy> {
    let names = checker.names(value, path, "a mapping of container names to settings");
    let mut containers = BTreeMap::new();
    for (name, entry) in names.entries() {
        let path = path.key(name);
        if let Err(invalid) = check_container_name(name) {
            checker.invalid(&path, invalid.problem, invalid.expected);
            continue;
        }
        if let Some(container) = read_container(checker, entry, &path) {
            containers.insert(name.to_string(), container);
        }
    }
    containers
}

fn read_container(checker: &mut Checker, value: &Value, path: &KeyPath) -> Option<ContainerPolicy> {
    let fields = checker.fields(value, path, &CONTAINER_KEYS)?;
    let allow_from = read_key(
        checker,
        &fields,
        path,
        "allow_from",
        PREFIX_ITEM,
        parse_prefix,
    );
    let expose = read_key(checker, &fields, path, "expose", PORT_ITEM, str::parse);
    let deny = read_key(checker, &fields, path, "deny", PORT_ITEM, str::parse);
    let (expose, deny) = (expose.unwrap_or_default(), deny.unwrap_or_default());
    check_expose_deny(checker, &expose, &deny, path);
    Some(ContainerPolicy {
        allow_from: allow_from.map(without_index),
        expose: without_index(expose),
        deny: without_index(deny),
        origin: Some(checker.locate(path)),
    })
}

/// The list under `key`, when the key is present.
fn read_key<T>(
    checker: &mut Checker,
    fields: &Table,
    path: &KeyPath,
    key: &str,
    item: &str,
    parse: impl Fn(&str) -> Result<T, Invalid>,
) -> Option<Vec<(usize, T)>> {
    let value = fields.get(key)?;
    read_list(checker, value, &path.key(key), item, parse)
}

/// A list's items that parse, each with its index (for messages); `None` (after reporting)
/// when the value is not a list. Bad items are reported each and left out.
fn read_list<T>(
    checker: &mut Checker,
    value: &Value,
    path: &KeyPath,
    item: &str,
    parse: impl Fn(&str) -> Result<T, Invalid>,
) -> Option<Vec<(usize, T)>> {
    let items = checker.list(value, path, item)?;
    let parsed = items
        .iter()
        .enumerate()
        .filter_map(|(i, value)| Some((i, checker.parsed(value, &path.index(i), &parse)?)))
        .collect();
    Some(parsed)
}

fn without_index<T>(items: Vec<(usize, T)>) -> Vec<T> {
    items.into_iter().map(|(_, item)| item).collect()
}

/// A port both exposed and denied is a contradiction the author should resolve.
fn check_expose_deny(
    checker: &mut Checker,
    expose: &[(usize, PortSpec)],
    deny: &[(usize, PortSpec)],
    path: &KeyPath,
) {
    for (i, exposed) in expose {
        if let Some((j, denied)) = deny.iter().find(|(_, d)| d.overlaps(exposed)) {
            checker.invalid(
                &path.key("expose").index(*i),
                format!("{exposed} overlaps {denied} in deny[{j}]"),
                "each port either exposed or denied, not both",
            );
        }
    }
}

#[cfg(test)]
#[path = "policy_tests.rs"]
mod tests;
