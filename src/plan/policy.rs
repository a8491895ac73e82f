//! The operator's policy (policy files and container labels) laid over Docker's state: what
//! each network and container gets once overrides are applied. Pure.

use std::collections::BTreeMap;
use std::net::Ipv6Addr;

use super::PlanInputs;
use super::exposure::port_network;
use crate::config::{
    ContainerPolicy, container_policy_from_labels, effective_container_policy, unknown_names,
};
use crate::snapshot::{Container, GatewayMode, Network, PortBinding, Snapshot};

/// A network's behaviour after policy overrides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkRules {
    /// Container-to-container IPv6 on the bridge.
    pub icc: bool,
    /// The policy's `nat66` (or its `snat_address`, which means on); `None` follows the
    /// gateway mode, Docker's options and the defaults (see `nat::nat66_enabled`).
    pub nat66: Option<bool>,
    /// SNAT source instead of masquerade: the policy's `snat_address`, else Docker's
    /// `com.docker.network.host_ipv6`.
    pub snat: Option<Ipv6Addr>,
    /// Answer neighbour solicitations for the network's container addresses on this
    /// interface (policy `ndp_proxy`).
    pub ndp_proxy: Option<String>,
    /// Docker 28's gateway mode, by name: the policy's, else the network's Docker option,
    /// else `defaults.gateway_mode`. `None`: v6guard's default (see [`GatewayReach`]).
    pub gateway_mode: Option<GatewayMode>,
}

impl NetworkRules {
    /// How outside traffic reaches this network's containers.
    pub fn reach(&self) -> GatewayReach {
        GatewayReach::of(self.gateway_mode)
    }
}

/// What a gateway mode means for traffic from outside, decided once here and read by the
/// filter, NAT and audit code.
///
/// | mode | direct to published ports | other ports directly | DNAT on host addresses | echo from outside | NAT66 |
/// |---|---|---|---|---|---|
/// | v6guard's default | yes (not bindings on one host address) | no | yes | yes | ULA (`nat66_ula`), GUA on request |
/// | `nat` | no | no | yes | no | every prefix |
/// | `routed` | yes (any binding) | no | no | yes | none |
/// | `nat-unprotected` | yes (every port) | yes | yes | yes | every prefix |
/// | `isolated` | no (nothing in or out, as `--internal`) | no | no | no | none |
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GatewayReach {
    pub mode: Option<GatewayMode>,
}

impl GatewayReach {
    pub fn of(mode: Option<GatewayMode>) -> Self {
        GatewayReach { mode }
    }

    /// Whether a published binding is reachable on the container's own address (outside the
    /// `nat-unprotected` blanket accept). A binding on one host address narrows exposure to
    /// that address in v6guard's default; `routed` has no host-address path, so it opens the
    /// container port itself, as Docker 28 does.
    pub fn direct(self, binding: Option<&PortBinding>) -> bool {
        match self.mode {
            None => binding.is_none_or(|b| !b.on_one_host_address()),
            Some(GatewayMode::Routed) => true,
            Some(GatewayMode::Nat | GatewayMode::NatUnprotected | GatewayMode::Isolated) => false,
        }
    }

    /// Whether published ports are translated (DNAT) from the host's addresses.
    pub fn translated(self) -> bool {
        !matches!(self.mode, Some(GatewayMode::Routed | GatewayMode::Isolated))
    }

    /// Whether the network is sealed like an `--internal` one: nothing in, nothing out.
    pub fn isolated(self) -> bool {
        self.mode == Some(GatewayMode::Isolated)
    }

    /// Whether everything from outside is kept off the containers' own addresses except
    /// through DNAT (echo requests included).
    pub fn sealed(self) -> bool {
        self.mode == Some(GatewayMode::Nat)
    }

    /// Whether every container port is open from outside, published or not.
    pub fn unprotected(self) -> bool {
        self.mode == Some(GatewayMode::NatUnprotected)
    }
}

/// Policy resolved against one snapshot.
///
/// What each container exposes under it is decided in `exposure`.
#[derive(Debug, Clone, Default)]
pub struct Resolved {
    /// By network ID.
    networks: BTreeMap<String, NetworkRules>,
    /// By container name; containers without any policy are absent.
    containers: BTreeMap<String, ContainerPolicy>,
    /// `defaults.gateway_mode`, for networks no policy names.
    default_gateway_mode: Option<GatewayMode>,
}

impl Resolved {
    /// The rules for `network` (Docker's own settings when no policy names it).
    pub fn network(&self, network: &Network) -> NetworkRules {
        self.networks
            .get(&network.id)
            .cloned()
            .unwrap_or_else(|| docker_rules(network, self.default_gateway_mode))
    }

    /// The container's policy, if any.
    pub fn container(&self, container: &Container) -> Option<&ContainerPolicy> {
        self.containers.get(&container.name)
    }
}

/// What Docker's own options ask for (and the default gateway mode). Docker's
/// `com.docker.network.host_ipv6` is not a policy choice: `nat::nat66_enabled` weighs it.
fn docker_rules(network: &Network, default_gateway_mode: Option<GatewayMode>) -> NetworkRules {
    NetworkRules {
        icc: network.icc,
        nat66: None,
        snat: network.host_ipv6,
        ndp_proxy: None,
        gateway_mode: network.gateway_mode_ipv6.or(default_gateway_mode),
    }
}

/// Apply the policy (and the containers' labels) to `snapshot`.
pub fn resolve(snapshot: &Snapshot, inputs: &PlanInputs) -> Resolved {
    let containers = snapshot
        .containers
        .iter()
        .filter_map(|container| {
            let (effective, _) = container_policy(container, inputs);
            effective.map(|p| (container.name.clone(), p))
        })
        .collect();
    Resolved {
        containers,
        ..resolve_networks(snapshot, inputs)
    }
}

/// The policy's networks alone (no container entries): what the incremental planner keeps
/// between events, resolving each changed container's policy itself
/// ([`container_policy`]).
pub fn resolve_networks(snapshot: &Snapshot, inputs: &PlanInputs) -> Resolved {
    let policy = &inputs.policy;
    let networks = snapshot
        .networks
        .iter()
        .filter_map(|network| {
            let overrides = policy.networks.get(&network.name)?;
            let docker = docker_rules(network, inputs.options.gateway_mode);
            let rules = NetworkRules {
                icc: overrides.icc.unwrap_or(docker.icc),
                nat66: overrides.nat66.or(overrides.snat_address.map(|_| true)),
                snat: overrides.snat_address.or(docker.snat),
                ndp_proxy: overrides.ndp_proxy.as_ref().map(|p| p.interface.clone()),
                gateway_mode: overrides.gateway_mode.or(docker.gateway_mode),
            };
            Some((network.id.clone(), rules))
        })
        .collect();
    Resolved {
        networks,
        containers: BTreeMap::new(),
        default_gateway_mode: inputs.options.gateway_mode,
    }
}

/// The container's effective policy (file entry merged with labels) and what was wrong or
/// narrowed on the way, as messages naming the container.
pub(super) fn container_policy(
    container: &Container,
    inputs: &PlanInputs,
) -> (Option<ContainerPolicy>, Vec<String>) {
    let policy = &inputs.policy;
    let (labels, label_errors) = container_policy_from_labels(
        &container.labels,
        container
            .image_labels_known
            .then_some(&container.image_labels),
        inputs.options.labels_may_expose,
    );
    let mut messages: Vec<String> = label_errors
        .iter()
        .map(|e| format!("container {}: {e} (label ignored)", container.name))
        .collect();
    let file = policy.containers.get(&container.name);
    if file.is_none() && labels.is_none() {
        return (None, messages);
    }
    let (effective, warnings) = effective_container_policy(file, labels.as_ref());
    messages.extend(
        warnings
            .iter()
            .map(|w| format!("container {}: {w}", container.name)),
    );
    (Some(effective), messages)
}

/// Everything worth telling the operator about the policy against this snapshot: malformed
/// labels, expose labels that may not widen, label values narrowed by a policy file, names
/// that match nothing, settings augment mode cannot honour.
pub fn warnings(snapshot: &Snapshot, inputs: &PlanInputs) -> Vec<String> {
    let mut out: Vec<String> = snapshot
        .containers
        .iter()
        .flat_map(|c| container_policy(c, inputs).1)
        .collect();
    out.extend(
        unknown_names(&inputs.policy, snapshot)
            .iter()
            .map(|w| w.to_string()),
    );
    out.extend(unprotected_policies(snapshot, &resolve(snapshot, inputs)));
    out.extend(super::augment::ignored_settings(snapshot, inputs));
    out
}

/// Containers whose `deny` or `allow_from` cannot hold on their container address because
/// their network is in gateway mode `nat-unprotected`, which opens every port there.
fn unprotected_policies(snapshot: &Snapshot, resolved: &Resolved) -> Vec<String> {
    snapshot
        .containers
        .iter()
        .filter_map(|container| {
            let policy = resolved.container(container)?;
            let (network, _) = port_network(snapshot, container)?;
            let narrows = !policy.deny.is_empty() || policy.allow_from.is_some();
            (narrows && resolved.network(network).reach().unprotected()).then(|| {
                format!(
                    "container {}: network {} is in gateway mode nat-unprotected, which opens \
                     every port on container addresses; its deny and allow_from hold only \
                     through host addresses (use gateway mode nat, or v6guard's default)",
                    container.name, network.name
                )
            })
        })
        .collect()
}
