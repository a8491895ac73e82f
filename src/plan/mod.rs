//! The planner: a pure function from a Snapshot to the Ruleset that gives IPv6 the filtering
//! and NAT Docker gives IPv4. No I/O, no clock, no randomness: tests build Snapshots by hand.
//!
//! - `filter`: ICC, isolation, publish-only exposure, internal networks, links;
//! - `nat`: published ports on the host's IPv6 addresses, hairpin, NAT66;
//! - `exposure`: what each container exposes over IPv6 and to whom, decided once and read by
//!   the filter, NAT, the host-port policy (`proxy`) and the audit;
//! - `incremental`: the same plan kept up to date one container at a time (the daemon);
//! - `sources`: the source address of a packet belongs to where it came from;
//! - `layer2`: the bridge table (VLAN-tagged frames, router advertisements from containers);
//! - `standdown`: whether Docker already firewalls IPv6 here;
//! - `augment`: the drops-only ruleset for hosts where it does.

pub mod augment;
mod exposure;
mod filter;
pub mod incremental;

mod layer2;
mod nat;
mod ndp;
mod policy;
mod proxy;
mod sources;
mod standdown;

pub use exposure::{Cause, ContainerExposure, Exposure, exposures, port_network};
pub use nat::nat66_enabled;
pub use policy::{NetworkRules, Resolved, resolve, warnings};
pub use standdown::{StandDown, stand_down, stand_down_reason};

use std::collections::BTreeSet;

use crate::config::{Defaults, Mode, Policy};
use crate::ruleset::{Field, InterfaceName, Ruleset, TABLE_NAME};
use crate::snapshot::{GatewayMode, Snapshot};

/// One element a container contributes: the set (or map) it belongs to, its key and its
/// value (empty in a set).
pub type SetElement = (&'static str, Vec<Field>, Vec<Field>);

/// The base chain on the forward hook.
pub const FORWARD_CHAIN: &str = "forward";
/// The chain for traffic whose output interface is a Docker bridge.
pub const TO_BRIDGE_CHAIN: &str = "to-bridge";

/// Choices that are not part of Docker's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanOptions {
    /// Interface name prefixes treated as Docker bridges even before v6guard has seen them, so
    /// that a container started while v6guard is not running is closed, not open (fail-closed).
    pub bridge_prefixes: Vec<String>,
    /// Interface names treated as Docker bridges even when no network names them.
    pub bridge_names: Vec<String>,
    /// NAT66 for unique local (fc00::/7) subnets whose network has masquerading on.
    pub nat66_ula: bool,
    /// NAT66 for global subnets whose network has masquerading on. Off by default: global
    /// prefixes are routable and translating them hides containers' real addresses.
    pub nat66_gua: bool,
    /// Name prefixes of the bridge ports containers are plugged into (Docker's host-side
    /// veth names), for the Layer 2 guard (`layer2`).
    pub container_port_prefixes: Vec<String>,
    /// Whether a container's `v6guard.expose` label may open ports (`defaults.labels_may_expose`).
    pub labels_may_expose: bool,
    /// `defaults.gateway_mode`: the mode for networks neither Docker nor a policy sets.
    pub gateway_mode: Option<GatewayMode>,
    /// `defaults.strict_isolation`: published ports through a host address obey ICC and
    /// isolation too (Docker 20.10's IPv4 with userland-proxy off).
    pub strict_isolation: bool,
    /// `defaults.mode`: full ruleset, augment (drops only) or stand-down where Docker
    /// firewalls IPv6 (`augment::active`).
    pub mode: Mode,
    /// `--force`: the full ruleset even where Docker firewalls IPv6.
    pub force_full: bool,
}

impl Default for PlanOptions {
    fn default() -> Self {
        PlanOptions {
            bridge_prefixes: vec!["br-".to_string()],
            bridge_names: vec!["docker0".to_string()],
            nat66_ula: true,
            nat66_gua: false,
            container_port_prefixes: vec!["veth".to_string()],
            labels_may_expose: false,
            gateway_mode: None,
            strict_isolation: false,
            mode: Mode::Auto,
            force_full: false,
        }
    }
}

impl PlanOptions {
    /// The options `v6guard.yaml`'s `defaults` ask for. Without fail-closed, only bridges
    /// v6guard has seen are guarded.
    pub fn from_defaults(defaults: &Defaults) -> Self {
        let mut options = PlanOptions {
            nat66_ula: defaults.nat66_ula,
            nat66_gua: defaults.nat66_gua,
            labels_may_expose: defaults.labels_may_expose,
            gateway_mode: defaults.gateway_mode,
            strict_isolation: defaults.strict_isolation,
            mode: defaults.mode,
            ..PlanOptions::default()
        };
        if !defaults.fail_closed {
            options.bridge_prefixes.clear();
            options.bridge_names.clear();
        }
        options
    }
}

/// Everything the planner needs besides the Snapshot: the operator's choices.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PlanInputs {
    pub options: PlanOptions,
    pub policy: Policy,
}

impl PlanInputs {
    /// The ruleset for `snapshot` under these inputs.
    pub fn plan(&self, snapshot: &Snapshot) -> Ruleset {
        plan(snapshot, self)
    }
}

/// Plan the whole ruleset for one snapshot (only narrowing drops in augment mode).
pub fn plan(snapshot: &Snapshot, inputs: &PlanInputs) -> Ruleset {
    if augment::active(snapshot, &inputs.options) {
        return augment::plan(snapshot, inputs);
    }
    let options = &inputs.options;
    let resolved = policy::resolve(snapshot, inputs);
    let guarded = Guarded::new(snapshot, options);
    let models = exposure::models(snapshot, &resolved);
    let exposure = filter::exposure_sets(&models);
    let links = filter::links_set(snapshot, &resolved);
    let (dnat_any, dnat_host) = nat::dnat_maps(&models);
    let (host_closed, host_allowed) = proxy::host_port_sets(snapshot, &models);
    let mut chains = filter::chains(&filter::FilterInputs {
        snapshot,
        resolved: &resolved,
        guarded: &guarded,
        sets: &exposure,
        links: &links,
        strict_isolation: options.strict_isolation,
    });
    chains.extend(proxy::input_chain(&host_closed, &host_allowed));
    chains.extend(nat::chains(snapshot, &resolved, options, &guarded));
    let needs_bridge_netfilter = snapshot.networks.iter().any(|n| !resolved.network(n).icc);
    Ruleset {
        ndp: ndp::proxies(snapshot, &resolved),
        needs_bridge_netfilter,
        table: TABLE_NAME.to_string(),
        sets: exposure
            .into_sets()
            .into_iter()
            .chain([links, dnat_any, dnat_host, host_closed, host_allowed])
            .collect(),
        chains,
        bridge_chains: layer2::chains(options),
    }
}

/// Interface matches that cover every Docker bridge: the configured names, every known bridge
/// not already covered, then the configured prefixes.
pub struct Guarded {
    pub interfaces: Vec<InterfaceName>,
}

impl Guarded {
    fn new(snapshot: &Snapshot, options: &PlanOptions) -> Self {
        let covered = |name: &str| {
            options.bridge_names.iter().any(|n| n == name)
                || options
                    .bridge_prefixes
                    .iter()
                    .any(|p| name.starts_with(p.as_str()))
        };
        let mut names: BTreeSet<&str> = options.bridge_names.iter().map(String::as_str).collect();
        names.extend(
            snapshot
                .networks
                .iter()
                .map(|n| n.bridge.as_str())
                .filter(|b| !covered(b)),
        );
        let exact = names
            .into_iter()
            .map(|n| InterfaceName::Exact(n.to_string()));
        let prefixes = options
            .bridge_prefixes
            .iter()
            .map(|p| InterfaceName::Prefix(p.clone()));
        Guarded {
            interfaces: exact.chain(prefixes).collect(),
        }
    }
}

#[cfg(test)]
mod tests;
