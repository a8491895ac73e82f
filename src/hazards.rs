//! Host hazards: things outside Docker's API that break IPv6 for the host or its containers
//! whatever v6guard's rules say, each with a fix a person can act on.
//!
//! [`read_host_facts`] is the edge: it reads /proc and lists nftables' tables and chains
//! into [`HostFacts`], plain data that serialises with a snapshot. [`hazards`] is pure and
//! decides from the facts and the Snapshot. v6guard's own table being dormant or edited is
//! not a hazard here: `nft::verify::verify` reports it.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io;
use std::net::{IpAddr, Ipv6Addr};
use std::path::{Path, PathBuf};

use ipnet::Ipv6Net;
use serde::{Deserialize, Serialize};

use crate::docker_ipv6nat::{self, Ipv6natContainer};
use crate::nft::{self, NftError};
use crate::ruleset::TABLE_PREFIX;
use crate::snapshot::{Protocol, Snapshot};

/// `RTF_*` route flags as /proc/net/ipv6_route prints them (include/uapi/linux/ipv6_route.h,
/// include/uapi/linux/route.h).
const RTF_UP: u32 = 0x0001;
const RTF_REJECT: u32 = 0x0200;
/// "default - learned via ND": a default router from a router advertisement.
const RTF_DEFAULT: u32 = 0x0001_0000;
/// "addrconf route - RA".
const RTF_ADDRCONF: u32 = 0x0004_0000;

/// `NF_INET_FORWARD`: the hook of a forward base chain.
const HOOK_FORWARD: u32 = 2;

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
    /// [`crate::docker_ipv6nat::find_containers`]).
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

/// One line of /proc/net/ipv6_route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ipv6Route {
    pub destination: Ipv6Net,
    pub next_hop: Ipv6Addr,
    pub metric: u32,
    /// `RTF_*` flags.
    pub flags: u32,
    pub interface: String,
}

impl Ipv6Route {
    /// A usable default route (`::/0`, up, not the kernel's unreachable one on `lo`).
    pub fn is_default(&self) -> bool {
        self.destination.prefix_len() == 0
            && self.flags & RTF_UP != 0
            && self.flags & RTF_REJECT == 0
            && self.interface != "lo"
    }

    /// Whether the kernel learned it from a router advertisement.
    pub fn from_ra(&self) -> bool {
        self.flags & (RTF_ADDRCONF | RTF_DEFAULT) != 0
    }
}

/// The routes in /proc/net/ipv6_route's text: destination, its prefix length, source and
/// its length, next hop (addresses as 32 hex digits in network order, lengths in 2), then
/// metric, reference count, use count and flags (8 hex digits each), then the interface.
/// An error names the line (from 1) and what is wrong.
pub fn parse_ipv6_route(text: &str) -> Result<Vec<Ipv6Route>, (usize, &'static str)> {
    let mut routes = Vec::new();
    for (index, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let bad = |why| (index + 1, why);
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [
            destination,
            length,
            _,
            _,
            next_hop,
            metric,
            _,
            _,
            flags,
            interface,
        ] = fields.as_slice()
        else {
            return Err(bad("not ten fields"));
        };
        let address = |hex: &str| -> Option<Ipv6Addr> {
            (hex.len() == 32)
                .then(|| u128::from_str_radix(hex, 16).ok())
                .flatten()
                .map(Ipv6Addr::from)
        };
        let word = |hex: &str| -> Option<u32> {
            (hex.len() == 8).then(|| u32::from_str_radix(hex, 16).ok())?
        };
        let length = (length.len() == 2)
            .then(|| u8::from_str_radix(length, 16).ok())
            .flatten()
            .ok_or_else(|| bad("the prefix length is not two hex digits"))?;
        let destination = address(destination)
            .and_then(|address| Ipv6Net::new(address, length).ok())
            .ok_or_else(|| bad("the destination is not an IPv6 prefix"))?;
        routes.push(Ipv6Route {
            destination,
            next_hop: address(next_hop).ok_or_else(|| bad("the next hop is not 32 hex digits"))?,
            metric: word(metric).ok_or_else(|| bad("the metric is not 8 hex digits"))?,
            flags: word(flags).ok_or_else(|| bad("the flags are not 8 hex digits"))?,
            interface: interface.to_string(),
        });
    }
    Ok(routes)
}

/// The uplinks the routes show: one entry per interface of a default route.
fn uplinks(routes: &[Ipv6Route]) -> BTreeMap<String, bool> {
    let mut uplinks: BTreeMap<String, bool> = BTreeMap::new();
    for route in routes.iter().filter(|r| r.is_default()) {
        *uplinks.entry(route.interface.clone()).or_default() |= route.from_ra();
    }
    uplinks
}

/// A `docker-proxy` command line (argv), or `None` when it is not one. Docker 20.10 runs
/// `docker-proxy -proto tcp -host-ip :: -host-port 8080 -container-ip 172.17.0.2
/// -container-port 80`.
pub fn parse_docker_proxy(pid: u32, argv: &[&str]) -> Option<DockerProxy> {
    let program = argv.first()?;
    if Path::new(program).file_name()? != "docker-proxy" {
        return None;
    }
    let value = |flag: &str| {
        argv.iter()
            .position(|arg| arg.trim_start_matches('-') == flag && arg.starts_with('-'))
            .and_then(|at| argv.get(at + 1))
            .copied()
    };
    Some(DockerProxy {
        pid,
        protocol: Protocol::parse(value("proto").unwrap_or("tcp"))?,
        host_ip: match value("host-ip") {
            None | Some("") => None,
            Some(ip) => Some(ip.parse().ok()?),
        },
        host_port: value("host-port")?.parse().ok()?,
        container_ip: value("container-ip").and_then(|ip| ip.parse().ok()),
        container_port: value("container-port").and_then(|port| port.parse().ok()),
    })
}

/// Read the host's facts: /proc and the kernel's nftables tables and chains, in the calling
/// thread's network namespace (/proc/thread-self/net and /proc/sys/net both follow it, so a
/// test can read a throwaway namespace from a thread that entered it).
pub fn read_host_facts() -> Result<HostFacts, HazardError> {
    let mut facts = read_proc_facts(Path::new("/proc"))?;
    facts.nft_tables = nft::list_tables()?
        .into_iter()
        .map(|t| NftTable {
            family: family_name(t.family).to_string(),
            name: t.name,
        })
        .collect();
    facts.nft_tables.sort();
    facts.nft_chains = nft::list_chains()?
        .into_iter()
        .map(|c| NftChain {
            family: family_name(c.family).to_string(),
            hook: c.hook.map(|hook| hook_name(c.family, hook).to_string()),
            policy: c.policy.map(|policy| {
                match policy {
                    0 => "drop",
                    _ => "accept",
                }
                .to_string()
            }),
            priority: c.priority,
            table: c.table,
            chain: c.name,
        })
        .collect();
    facts.nft_chains.sort();
    Ok(facts)
}

/// The facts /proc holds, under `proc` (a fake tree in tests).
fn read_proc_facts(proc: &Path) -> Result<HostFacts, HazardError> {
    let conf = proc.join("sys/net/ipv6/conf");
    // Absent when the kernel runs without IPv6: no forwarding, no routes.
    let ipv6_forwarding = read_optional(&conf.join("all/forwarding"))?.as_deref() == Some("1");
    let route_path = proc.join("thread-self/net/ipv6_route");
    let routes = match read_optional(&route_path)? {
        None => Vec::new(),
        Some(text) => parse_ipv6_route(&text).map_err(|(line, why)| HazardError::Route {
            path: route_path.clone(),
            line,
            text: text.lines().nth(line - 1).unwrap_or_default().to_string(),
            why,
        })?,
    };
    let mut facts = HostFacts {
        ipv6_forwarding,
        ..HostFacts::default()
    };
    for (interface, from_ra) in uplinks(&routes) {
        let sysctl = |key: &str| -> Result<Option<String>, HazardError> {
            read_optional(&conf.join(&interface).join(key))
        };
        facts.uplinks.push(Uplink {
            from_ra,
            accept_ra: sysctl("accept_ra")?.and_then(|v| v.parse().ok()),
            forwarding: sysctl("forwarding")?.map(|v| v == "1"),
            interface,
        });
    }
    let bridge = proc.join("sys/net/bridge");
    facts.bridge_netfilter = if !bridge.exists() {
        BridgeNetfilter::NotLoaded
    } else if read_optional(&bridge.join("bridge-nf-call-ip6tables"))?.as_deref() == Some("1") {
        BridgeNetfilter::On
    } else {
        BridgeNetfilter::Off
    };
    facts.legacy_ip6tables_filter = read_optional(&proc.join("thread-self/net/ip6_tables_names"))?
        .is_some_and(|names| names.lines().any(|name| name.trim() == "filter"));
    facts.docker_proxies = docker_proxies(proc)?;
    Ok(facts)
}

/// Every `docker-proxy` process in `proc`. Processes come and go during the scan: one that
/// vanishes is skipped.
fn docker_proxies(proc: &Path) -> Result<Vec<DockerProxy>, HazardError> {
    let entries = fs::read_dir(proc).map_err(|source| HazardError::Read {
        path: proc.to_path_buf(),
        source,
    })?;
    let mut proxies = Vec::new();
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(cmdline) = fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let text = String::from_utf8_lossy(&cmdline);
        let argv: Vec<&str> = text.split('\0').filter(|a| !a.is_empty()).collect();
        proxies.extend(parse_docker_proxy(pid, &argv));
    }
    proxies.sort();
    Ok(proxies)
}

/// A file's trimmed text; `None` when it does not exist.
fn read_optional(path: &Path) -> Result<Option<String>, HazardError> {
    match fs::read_to_string(path) {
        Ok(text) => Ok(Some(text.trim().to_string())),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(HazardError::Read {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// nft's word for an `NFPROTO_*` family.
fn family_name(family: u32) -> &'static str {
    match family as i32 {
        libc::NFPROTO_INET => "inet",
        libc::NFPROTO_IPV4 => "ip",
        libc::NFPROTO_ARP => "arp",
        libc::NFPROTO_NETDEV => "netdev",
        libc::NFPROTO_BRIDGE => "bridge",
        libc::NFPROTO_IPV6 => "ip6",
        _ => "unknown",
    }
}

/// nft's word for a hook number in `family` (netdev's and arp's hooks are numbered apart).
fn hook_name(family: u32, hook: u32) -> &'static str {
    match (family as i32, hook) {
        (libc::NFPROTO_NETDEV, 0) => "ingress",
        (libc::NFPROTO_NETDEV, 1) => "egress",
        (libc::NFPROTO_ARP, 0) => "input",
        (libc::NFPROTO_ARP, 1) => "output",
        (libc::NFPROTO_ARP, 2) => "forward",
        (_, 0) => "prerouting",
        (_, 1) => "input",
        (_, HOOK_FORWARD) => "forward",
        (_, 3) => "output",
        (_, 4) => "postrouting",
        (_, 5) => "ingress",
        _ => "unknown",
    }
}

#[cfg(test)]
mod tests;
