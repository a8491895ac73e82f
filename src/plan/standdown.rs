//! When Docker already firewalls IPv6 itself, v6guard must not fight it: two owners of the
//! same traffic drift apart, and nftables' drop-wins semantics make the result hard to reason
//! about. This decides, from the Snapshot alone, whether to stand down.

use std::fmt;

use super::PlanOptions;
use crate::config::Mode;
use crate::snapshot::{Snapshot, Source};

/// Why Docker manages IPv6 itself on this host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StandDown {
    /// `ip6tables: true` in daemon.json or `--ip6tables` on the command line.
    Ip6tablesEnabled { source: Source },
    /// Docker 27 and newer turn `ip6tables` on unless told not to.
    Ip6tablesByDefault { engine_version: String },
    /// Docker 29's nftables backend has its own `ip6 docker-bridges` table.
    DockerNftTable,
}

impl fmt::Display for StandDown {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StandDown::Ip6tablesEnabled { source } => write!(
                f,
                "Docker already firewalls IPv6: `ip6tables` is true (set in {source}). \
                 Remove it (or set it to false) and restart dockerd to let v6guard manage IPv6, \
                 or pass --force to install v6guard's rules anyway"
            ),
            StandDown::Ip6tablesByDefault { engine_version } => write!(
                f,
                "Docker {engine_version} firewalls IPv6 itself (`ip6tables` defaults to true from \
                 Docker 27). Set \"ip6tables\": false in daemon.json and restart dockerd to let \
                 v6guard manage IPv6, or pass --force"
            ),
            StandDown::DockerNftTable => write!(
                f,
                "Docker's nftables backend manages IPv6 (table ip6 docker-bridges exists). \
                 v6guard stands down; pass --force to install its rules anyway"
            ),
        }
    }
}

/// The reason to stand down, if Docker manages IPv6 itself.
pub fn stand_down_reason(snapshot: &Snapshot) -> Option<StandDown> {
    let ip6tables = &snapshot.daemon.ip6tables;
    if ip6tables.value == Some(true) {
        return Some(StandDown::Ip6tablesEnabled {
            source: ip6tables.source.clone(),
        });
    }
    if snapshot.engine.docker_nft_ip6_table {
        return Some(StandDown::DockerNftTable);
    }
    let modern = snapshot.engine.major_version().is_some_and(|v| v >= 27);
    if modern && ip6tables.value.is_none() {
        return Some(StandDown::Ip6tablesByDefault {
            engine_version: snapshot.engine.version.clone(),
        });
    }
    None
}

/// The reason to stand down, if Docker manages IPv6 and `defaults.mode` is `stand-down`. In
/// `auto` and `augment` v6guard installs its drops-only ruleset instead (`augment`).
pub fn stand_down(snapshot: &Snapshot, options: &PlanOptions) -> Option<StandDown> {
    if options.mode != Mode::StandDown {
        return None;
    }
    stand_down_reason(snapshot)
}
