//! Keeps the host's neighbour-discovery proxy entries equal to what the plan wants
//! (`Ruleset::ndp`), through iproute2: `proxy_ndp=1` on each interface that answers, one
//! `ip -6 neigh replace proxy` per container address, and removal of entries no container
//! needs any more, on the interface and inside the subnets of networks with `ndp_proxy`
//! only. Every other entry belongs to someone else and is never touched; without any
//! `ndp_proxy` policy nothing is read or written at all.

use std::collections::BTreeSet;
use std::fs;
use std::io;
use std::net::Ipv6Addr;

use tracing::info;

use crate::ruleset::NdpProxies;

#[derive(Debug, thiserror::Error)]
pub enum NdpError {
    #[error("`{command}` failed: {detail}. Is iproute2 installed, and does the interface exist?")]
    Command { command: String, detail: String },
    #[error(
        "cannot turn on net.ipv6.conf.{interface}.proxy_ndp: {source}. Does {interface} exist?"
    )]
    Sysctl {
        interface: String,
        #[source]
        source: io::Error,
    },
}

/// What a sync changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NdpChanges {
    pub added: usize,
    pub removed: usize,
}

/// Make the kernel's proxy entries match `wanted`.
pub fn sync(wanted: &NdpProxies) -> Result<NdpChanges, NdpError> {
    if wanted.entries.is_empty() && wanted.owned.is_empty() {
        return Ok(NdpChanges::default());
    }
    let current = current_entries()?;
    let interfaces: BTreeSet<&str> = wanted.entries.iter().map(|(i, _)| i.as_str()).collect();
    for interface in interfaces {
        enable_proxy_ndp(interface)?;
    }
    let mut changes = NdpChanges::default();
    for (interface, address) in wanted.entries.difference(&current) {
        ip(&[
            "-6",
            "neigh",
            "replace",
            "proxy",
            &address.to_string(),
            "dev",
            interface,
        ])?;
        changes.added += 1;
    }
    let stale = current.iter().filter(|(interface, address)| {
        !wanted.entries.contains(&(interface.clone(), *address))
            && wanted
                .owned
                .iter()
                .any(|(owner, net)| owner == interface && net.contains(address))
    });
    for (interface, address) in stale {
        ip(&[
            "-6",
            "neigh",
            "del",
            "proxy",
            &address.to_string(),
            "dev",
            interface,
        ])?;
        changes.removed += 1;
    }
    if changes != NdpChanges::default() {
        info!(
            added = changes.added,
            removed = changes.removed,
            "NDP proxy entries updated"
        );
    }
    Ok(changes)
}

fn enable_proxy_ndp(interface: &str) -> Result<(), NdpError> {
    let path = format!("/proc/sys/net/ipv6/conf/{interface}/proxy_ndp");
    fs::write(&path, "1").map_err(|source| NdpError::Sysctl {
        interface: interface.to_string(),
        source,
    })
}

/// The proxy entries the kernel holds now, from `ip -6 neigh show proxy`.
fn current_entries() -> Result<BTreeSet<(String, Ipv6Addr)>, NdpError> {
    let out = ip(&["-6", "neigh", "show", "proxy"])?;
    Ok(out.lines().filter_map(parse_entry).collect())
}

/// `2001:db8::5 dev eth0 proxy` -> (eth0, 2001:db8::5).
fn parse_entry(line: &str) -> Option<(String, Ipv6Addr)> {
    let mut words = line.split_whitespace();
    let address = words.next()?.parse().ok()?;
    let mut interface = None;
    while let Some(word) = words.next() {
        if word == "dev" {
            interface = words.next().map(str::to_string);
        }
    }
    Some((interface?, address))
}

fn ip(args: &[&str]) -> Result<String, NdpError> {
    crate::iproute::ip(args).map_err(|e| NdpError::Command {
        command: e.command,
        detail: e.detail,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxy_lines_parse() {
        assert_eq!(
            parse_entry("2001:db8:77:0:8000::2 dev v6gt-ndp-h proxy"),
            Some((
                "v6gt-ndp-h".into(),
                "2001:db8:77:0:8000::2".parse().unwrap()
            ))
        );
        assert_eq!(parse_entry("garbage"), None);
    }
}
