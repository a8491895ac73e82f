//! v6guard: gives Docker's IPv6 the firewalling Docker gives IPv4.
//!
//! Data flows one way: `docker` and `settings` read the host into a [`snapshot::Snapshot`];
//! [`plan::plan`] turns it into a [`ruleset::Ruleset`] without any I/O; `nft::render` prints
//! that ruleset (the dry run) and `nft::write` installs it atomically (apply).

pub mod audit;
pub mod config;
pub mod daemon;
pub mod docker;
pub mod docker_ipv6nat;
pub mod eval;
pub mod hazards;
pub mod host;
pub mod iproute;
pub mod listen;
pub mod logging;
pub mod memory;
pub mod ndp;
pub mod nft;
pub mod plan;
pub mod read;
pub mod ruleset;
pub mod settings;
pub mod snapshot;

#[cfg(test)]
mod testing;
