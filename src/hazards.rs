//! Host hazards: things outside Docker's API that break IPv6 for the host or its containers
//! whatever v6guard's rules say, each with a fix a person can act on.
//!
//! [`read_host_facts`] (`read`) is the edge: it reads /proc and lists nftables' tables and
//! chains into [`HostFacts`], plain data that serialises with a snapshot. [`hazards`] (here)
//! is pure and decides from the facts and the Snapshot. v6guard's own table being dormant or edited is
//! not a hazard here: `nft::verify::verify` reports it.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::net::IpAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::docker_ipv6nat::{self, Ipv6natContainer};
use crate::nft::NftError;
use crate::ruleset::TABLE_PREFIX;
use crate::snapshot::{Protocol, Snapshot};

mod read;
pub use read::{Ipv6Route, parse_docker_proxy, parse_ipv6_route, read_host_facts};

#[derive(Debug, thiserror::Error)]
pub enum HazardError {
    #[error("{}: line {line} is not a route ({why}): {text:?}", path.display())]
    Route {
        path: PathBuf,
        line: usize,
        text: String,
        why: &'static str,
    },
    #[error("cannot read {}: {source}. Run v6guard as root", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot list nftables chains: {0}")]
    Nft(#[from] NftError),
}

/// What the host says about itself, read at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostFacts {
    /// `net.ipv6.conf.all.forwarding`: dockerd turns it on for IPv6 networks.
    pub ipv6_forwarding: bool,
    /// The interfaces of the IPv6 default routes, by name.
    pub uplinks: Vec<Uplink>,
    pub bridge_netfilter: BridgeNetfilter,
    /// Running `docker-proxy` processes (userland proxy), from their command lines.
    pub docker_proxies: Vec<DockerProxy>,
    /// Every nftables table, any family.
    pub nft_tables: Vec<NftTable>,
    /// Every nftables chain, any family.
    pub nft_chains: Vec<NftChain>,
    /// Whether legacy (x_tables) ip6tables has a `filter` table
    /// (`/proc/net/ip6_tables_names`): its rules are invisible to nftables.
    pub legacy_ip6tables_filter: bool,
    /// Running containers of docker-ipv6nat's image, from Docker (the caller fills them in:
    /// [`crate::docker_ipv6nat::containers_among`]).
    #[serde(default)]
    pub ipv6nat_containers: Vec<Ipv6natContainer>,
}

/// An interface an IPv6 default route leaves through.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Uplink {
    pub interface: String,
    /// Whether a default route through it was learned from a router advertisement (it
    /// expires unless RAs keep renewing it).
    pub from_ra: bool,
    /// `net.ipv6.conf.IF.accept_ra` (0, 1 or 2); `None` when unreadable.
    pub accept_ra: Option<i64>,
    /// `net.ipv6.conf.IF.forwarding`; `None` when unreadable (then `all` decides).
    pub forwarding: Option<bool>,
}

/// Whether bridged IPv6 passes the ip6 hooks, which ICC enforcement needs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BridgeNetfilter {
    /// No /proc/sys/net/bridge: the br_netfilter module is not loaded.
    #[default]
    NotLoaded,
    /// Loaded, `net.bridge.bridge-nf-call-ip6tables` = 0.
    Off,
    On,
}

/// One `docker-proxy` process: what it listens on and where it forwards.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct DockerProxy {
    pub pid: u32,
    pub protocol: Protocol,
    /// `-host-ip`; `None` when the command line has none (the proxy binds every address).
    pub host_ip: Option<IpAddr>,
    pub host_port: u16,
    pub container_ip: Option<IpAddr>,
    pub container_port: Option<u16>,
}

impl DockerProxy {
    /// Whether it takes IPv6 connections on every address of the host.
    pub fn on_all_ipv6(&self) -> bool {
        match self.host_ip {
            None => true,
            Some(IpAddr::V6(address)) => address.is_unspecified(),
            Some(IpAddr::V4(_)) => false,
        }
    }
}

/// One nftables table.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct NftTable {
    /// nft's word for the family: `ip`, `ip6`, `inet`, `bridge`, `arp`, `netdev`.
    pub family: String,
    pub name: String,
}

/// One nftables chain; hook, priority and policy only for base chains.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct NftChain {
    pub family: String,
    pub table: String,
    pub chain: String,
    /// The hook's name (`prerouting`, `input`, `forward`, `output`, `postrouting`, ...).
    pub hook: Option<String>,
    pub priority: Option<i32>,
    /// `accept` or `drop`.
    pub policy: Option<String>,
}

/// What kind of hazard; stable words for JSON output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HazardKind {
    /// Forwarding on, the uplink's default route from an RA, and accept_ra not 2.
    RaDefaultRouteExpires,
    /// ICC off on a network while bridged IPv6 bypasses the ip6 hooks.
    BridgeNetfilterOff,
    /// docker-proxy bound on `::`: IPv6 clients it serves arrive with its address.
    DockerProxyOnIpv6,
    /// Docker's ip6tables chains (Docker with `ip6tables: true`).
    DockerIp6tables,
    /// docker-ipv6nat: its chains or its container (`crate::docker_ipv6nat`).
    DockerIpv6nat,
    /// Legacy ip6tables has a filter table nftables cannot show.
    LegacyIp6tables,
    /// Docker's own nftables backend (`ip6 docker-bridges`) manages IPv6.
    DockerNftables,
    /// Another tool's base chain on the IPv6 forward hook.
    ForeignForwardChain,
}

/// One hazard: what is wrong, and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hazard {
    pub kind: HazardKind,
    pub message: String,
    pub fix: String,
}

/// Every hazard the facts show, in a fixed order (by rule, then by name). Pure.
pub fn hazards(facts: &HostFacts, snapshot: &Snapshot) -> Vec<Hazard> {
    let mut found = Vec::new();
    found.extend(ra_default_routes(facts));
    found.extend(bridge_netfilter(facts, snapshot));
    found.extend(docker_proxy(facts));
    found.extend(docker_ipv6nat::hazard(
        &docker_ipv6nat::chains_found(&facts.nft_chains),
        &facts.ipv6nat_containers,
    ));
    found.extend(other_ipv6_managers(facts, snapshot));
    found
}

fn ra_default_routes(facts: &HostFacts) -> Vec<Hazard> {
    facts
        .uplinks
        .iter()
        .filter(|uplink| uplink.from_ra)
        .filter(|uplink| uplink.forwarding.unwrap_or(facts.ipv6_forwarding))
        .filter_map(|uplink| {
            let accept_ra = uplink.accept_ra.filter(|value| *value != 2)?;
            let interface = &uplink.interface;
            // sysctl's key separator is `.`: a dot in an interface name is written `/`.
            let key = format!("net.ipv6.conf.{}.accept_ra", interface.replace('.', "/"));
            Some(Hazard {
                kind: HazardKind::RaDefaultRouteExpires,
                message: format!(
                    "IPv6 forwarding is on and the default route through {interface} was \
                     learned from a router advertisement, but {interface} has accept_ra = \
                     {accept_ra}: a forwarding host ignores router advertisements unless \
                     accept_ra = 2, so the route is not renewed and the host loses its IPv6 \
                     default route when it expires"
                ),
                fix: format!(
                    "sysctl -w {key}=2, and keep it across reboots with a line `{key} = 2` in \
                     /etc/sysctl.d/90-ipv6-uplink.conf"
                ),
            })
        })
        .collect()
}

fn bridge_netfilter(facts: &HostFacts, snapshot: &Snapshot) -> Option<Hazard> {
    // The snapshot's ICC; a policy may turn it off elsewhere, which the audit's own plan knows.
    let icc_off: Vec<&str> = snapshot
        .networks
        .iter()
        .filter(|network| !network.icc)
        .map(|network| network.name.as_str())
        .collect();
    if icc_off.is_empty() {
        return None;
    }
    let state = match facts.bridge_netfilter {
        BridgeNetfilter::On => return None,
        BridgeNetfilter::NotLoaded => "the br_netfilter module is not loaded",
        BridgeNetfilter::Off => "net.bridge.bridge-nf-call-ip6tables is 0",
    };
    Some(Hazard {
        kind: HazardKind::BridgeNetfilterOff,
        message: format!(
            "ICC is off on {} but {state}: IPv6 between containers on one bridge never passes \
             the ip6 forward hook, so containers there still reach each other over IPv6",
            icc_off.join(", ")
        ),
        fix: "modprobe br_netfilter && sysctl -w net.bridge.bridge-nf-call-ip6tables=1 \
              (`v6guard apply` does this when its plan needs it); keep it with `br_netfilter` \
              in /etc/modules-load.d/ and the sysctl in /etc/sysctl.d/"
            .to_string(),
    })
}

fn docker_proxy(facts: &HostFacts) -> Option<Hazard> {
    let mut ports: Vec<String> = facts
        .docker_proxies
        .iter()
        .filter(|proxy| proxy.on_all_ipv6())
        .map(|proxy| {
            let to = match (proxy.container_ip, proxy.container_port) {
                (Some(IpAddr::V6(ip)), Some(port)) => format!(" to [{ip}]:{port}"),
                (Some(ip), Some(port)) => format!(" to {ip}:{port}"),
                _ => String::new(),
            };
            format!("[::]:{}/{}{to}", proxy.host_port, proxy.protocol)
        })
        .collect();
    ports.sort();
    ports.dedup();
    if ports.is_empty() {
        return None;
    }
    Some(Hazard {
        kind: HazardKind::DockerProxyOnIpv6,
        message: format!(
            "docker-proxy listens on {}: an IPv6 client it serves reaches the container from \
             the proxy's address, not its own, unless v6guard's DNAT catches the connection \
             first (it does for connections from outside while v6guard's table is in place, \
             not for connections the host itself makes)",
            ports.join(", ")
        ),
        fix: "Keep v6guard's table applied, or turn the proxy off with \"userland-proxy\": false \
              in daemon.json and restart dockerd (v6guard's DNAT then serves IPv6 and keeps \
              client addresses)"
            .to_string(),
    })
}

/// Chains Docker's ip6tables code (and docker-ipv6nat, which copies it) creates.
fn is_docker_chain(name: &str) -> bool {
    name == "DOCKER" || name == "DOCKER-USER" || name.starts_with("DOCKER-ISOLATION")
}

fn is_v6guards(family: &str, table: &str) -> bool {
    matches!(family, "ip6" | "bridge") && table.starts_with(TABLE_PREFIX)
}

fn other_ipv6_managers(facts: &HostFacts, snapshot: &Snapshot) -> Vec<Hazard> {
    let mut found = Vec::new();
    let mut docker_chains: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for chain in &facts.nft_chains {
        if chain.family == "ip6" && is_docker_chain(&chain.chain) {
            docker_chains
                .entry(chain.table.as_str())
                .or_default()
                .insert(chain.chain.as_str());
        }
    }
    // docker-ipv6nat's chains carry Docker's names; its own hazard says what to do.
    if !docker_chains.is_empty() && docker_ipv6nat::chains_found(&facts.nft_chains).is_empty() {
        let tables: Vec<String> = docker_chains
            .iter()
            .map(|(table, chains)| {
                let chains: Vec<&str> = chains.iter().copied().collect();
                format!("table ip6 {table} ({})", chains.join(", "))
            })
            .collect();
        found.push(Hazard {
            kind: HazardKind::DockerIp6tables,
            message: format!(
                "{} holds Docker's ip6tables chains: Docker itself (\"ip6tables\": true) or \
                 docker-ipv6nat manages IPv6 too, and two tools filtering and translating the \
                 same traffic contradict each other",
                tables.join(" and ")
            ),
            fix: "Keep one tool for IPv6: stop docker-ipv6nat, or set \"ip6tables\": false in \
                  daemon.json and restart dockerd; then remove the leftover chains \
                  (`ip6tables -S` shows them)"
                .to_string(),
        });
    }
    if facts.legacy_ip6tables_filter {
        found.push(Hazard {
            kind: HazardKind::LegacyIp6tables,
            message: "legacy ip6tables has a filter table (/proc/net/ip6_tables_names): its \
                      rules run beside v6guard's and cannot be seen through nftables, so this \
                      audit cannot say what they drop or accept"
                .to_string(),
            fix: "Look at them with `ip6tables-legacy -S`; remove what you do not need, or \
                  move it to nftables"
                .to_string(),
        });
    }
    let docker_bridges = snapshot.engine.docker_nft_ip6_table
        || facts
            .nft_tables
            .iter()
            .any(|t| t.family == "ip6" && t.name == "docker-bridges");
    if docker_bridges {
        found.push(Hazard {
            kind: HazardKind::DockerNftables,
            message: "Docker's own nftables table `ip6 docker-bridges` exists: Docker's \
                      nftables backend manages IPv6 here, and v6guard stands down"
                .to_string(),
            fix: "Let Docker firewall IPv6 (remove v6guard), or run dockerd with \
                  \"ip6tables\": false so v6guard does it"
                .to_string(),
        });
    }
    let mut foreign: Vec<&NftChain> = facts
        .nft_chains
        .iter()
        .filter(|c| matches!(c.family.as_str(), "ip6" | "inet"))
        .filter(|c| c.hook.as_deref() == Some("forward"))
        .filter(|c| !is_v6guards(&c.family, &c.table))
        .collect();
    foreign.sort();
    for chain in foreign {
        let policy = chain.policy.as_deref().unwrap_or("accept");
        let priority = chain
            .priority
            .map_or_else(|| "?".to_string(), |p| p.to_string());
        let effect = if policy == "drop" {
            "its drop policy drops every IPv6 packet its own rules do not accept, whatever \
             v6guard accepts"
        } else {
            "its rules can drop what v6guard accepts"
        };
        found.push(Hazard {
            kind: HazardKind::ForeignForwardChain,
            message: format!(
                "table {} {} has base chain {} on the forward hook (priority {priority}, \
                 policy {policy}): a forwarded packet must pass every base chain on the hook, \
                 and {effect}",
                chain.family, chain.table, chain.chain
            ),
            fix: format!(
                "If you meant it, make it accept what v6guard publishes (`nft list chain {} \
                 {} {}`); if a tool you no longer use left it, remove it with `nft delete \
                 table {} {}`",
                chain.family, chain.table, chain.chain, chain.family, chain.table
            ),
        });
    }
    found
}

#[cfg(test)]
mod tests;
