//! Reading the host facts the hazards are judged from: /proc (IPv6 routes, sysctls,
//! docker-proxy command lines) and nftables' tables and chains. The edge of `hazards`; what
//! the facts mean is decided there.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::net::Ipv6Addr;
use std::path::Path;

use ipnet::Ipv6Net;

use super::{BridgeNetfilter, DockerProxy, HazardError, HostFacts, NftChain, NftTable, Uplink};
use crate::nft;
use crate::snapshot::Protocol;

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
pub(super) fn uplinks(routes: &[Ipv6Route]) -> BTreeMap<String, bool> {
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
pub(super) fn read_proc_facts(proc: &Path) -> Result<HostFacts, HazardError> {
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
