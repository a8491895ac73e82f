//! The Snapshot: everything v6guard knows about the Docker host, as plain data.
//!
//! A Snapshot is what the readers (`docker/`, `settings`) produce and the only input the
//! planner needs besides the options. It holds no handles and serialises to JSON, so a user
//! can attach one to a bug report (`v6guard snapshot > snap.json`) and anyone can render it
//! offline (`v6guard render --snapshot snap.json`).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;

use ipnet::Ipv6Net;
use serde::{Deserialize, Serialize};

/// Everything read from one Docker host at one moment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// What the engine says about itself.
    pub engine: Engine,
    /// Daemon settings that change Docker's firewalling, each with where its value came from.
    pub daemon: DaemonSettings,
    /// Bridge networks, in name order.
    pub networks: Vec<Network>,
    /// Running containers, in name order.
    pub containers: Vec<Container>,
}

/// Engine facts from `GET /version` and `GET /info`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Engine {
    /// Engine version string, e.g. `20.10.24+dfsg1`.
    pub version: String,
    /// API version the client negotiated, e.g. `1.41`.
    pub api_version: String,
    /// Whether `net.bridge.bridge-nf-call-ip6tables` was on when the snapshot was taken (read
    /// from /proc). ICC for IPv6 is only enforceable when bridged IPv6 passes the ip6 forward
    /// hook; `apply` turns it on when the plan needs it, and `audit` warns when it is off.
    pub bridge_nf_ip6tables: bool,
    /// Whether Docker's own `ip6 docker-bridges` nftables table exists (Docker 29's nftables
    /// backend manages IPv6 itself when it does).
    #[serde(default)]
    pub docker_nft_ip6_table: bool,
}

impl Engine {
    /// The engine's major version, if the version string starts with one (`20.10.24` -> 20).
    pub fn major_version(&self) -> Option<u32> {
        self.version.split('.').next()?.parse().ok()
    }
}

/// Where a daemon setting's value came from. Flags on dockerd's command line win over
/// daemon.json, which wins over Docker's built-in default.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind", content = "at")]
pub enum Source {
    /// Docker's built-in default.
    Default,
    /// A key in this daemon.json.
    DaemonJson(PathBuf),
    /// A flag on dockerd's command line.
    CommandLine,
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Default => write!(f, "Docker's default"),
            Source::DaemonJson(path) => write!(f, "{}", path.display()),
            Source::CommandLine => write!(f, "dockerd's command line"),
        }
    }
}

/// A daemon setting's value and its origin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Setting<T> {
    pub value: T,
    pub source: Source,
}

impl<T> Setting<T> {
    pub fn default_value(value: T) -> Self {
        Setting {
            value,
            source: Source::Default,
        }
    }
}

/// The dockerd settings that decide how Docker firewalls (daemon.json keys, dockerd flags).
/// `ip6tables` is `None` when neither the file nor the command line sets it: its default
/// depends on the engine version (off before 27, on from 27).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DaemonSettings {
    pub icc: Setting<bool>,
    pub userland_proxy: Setting<bool>,
    pub iptables: Setting<bool>,
    pub ip6tables: Setting<Option<bool>>,
    pub ipv6: Setting<bool>,
    pub ip_masq: Setting<bool>,
    pub experimental: Setting<bool>,
    pub fixed_cidr_v6: Setting<Option<Ipv6Net>>,
}

impl Default for DaemonSettings {
    /// Docker 20.10's defaults.
    fn default() -> Self {
        DaemonSettings {
            icc: Setting::default_value(true),
            userland_proxy: Setting::default_value(true),
            iptables: Setting::default_value(true),
            ip6tables: Setting::default_value(None),
            ipv6: Setting::default_value(false),
            ip_masq: Setting::default_value(true),
            experimental: Setting::default_value(false),
            fixed_cidr_v6: Setting::default_value(None),
        }
    }
}

/// One Docker bridge network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Network {
    pub id: String,
    pub name: String,
    /// The Linux bridge interface (`docker0`, `br-<12 hex>`, or the
    /// `com.docker.network.bridge.name` option).
    pub bridge: String,
    pub ipv6_enabled: bool,
    pub ipv6_subnets: Vec<Ipv6Net>,
    /// `com.docker.network.bridge.enable_icc` (default true; the default bridge's copy is the
    /// daemon's `icc`).
    pub icc: bool,
    /// `com.docker.network.bridge.enable_ip_masquerade` (default true).
    pub masquerade: bool,
    /// `docker network create --internal`.
    pub internal: bool,
    /// `com.docker.network.host_ipv6`: the source address for outbound IPv6 (SNAT instead of
    /// masquerade).
    #[serde(default)]
    pub host_ipv6: Option<Ipv6Addr>,
    /// `com.docker.network.bridge.gateway_mode_ipv6` (Docker 28+): how Docker itself would
    /// route IPv6 to the network's containers. `None` when Docker sets no mode (Docker before
    /// 28, or the option left out, which Docker reads as `nat`).
    #[serde(default)]
    pub gateway_mode_ipv6: Option<GatewayMode>,
}

/// Docker 28's gateway modes for a bridge network (`-o
/// com.docker.network.bridge.gateway_mode_ipv6=MODE`), with Docker's own words, so a
/// snapshot, a policy file and `docker network inspect` all spell them the same way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum GatewayMode {
    /// No direct routing to container addresses from outside: published ports only through
    /// DNAT on the host's addresses, no ICMPv6 echo from outside, every prefix masqueraded
    /// (global ones too).
    Nat,
    /// Published ports reachable directly on the container's address; no DNAT on the host's
    /// addresses and no NAT66.
    Routed,
    /// Like `nat`, but every container port is directly reachable from outside.
    NatUnprotected,
    /// No gateway: nothing in or out of the bridge, no port publishing (Docker 28.1), as an
    /// `--internal` network.
    Isolated,
}

impl GatewayMode {
    /// Every mode, in Docker's order, for messages listing what is accepted.
    pub const ALL: [GatewayMode; 4] = [
        GatewayMode::Nat,
        GatewayMode::Routed,
        GatewayMode::NatUnprotected,
        GatewayMode::Isolated,
    ];

    /// Docker's word for the mode.
    pub fn as_str(self) -> &'static str {
        match self {
            GatewayMode::Nat => "nat",
            GatewayMode::Routed => "routed",
            GatewayMode::NatUnprotected => "nat-unprotected",
            GatewayMode::Isolated => "isolated",
        }
    }

    /// The mode Docker's word names; `None` for anything else (Docker's words are exact:
    /// no other case, no spaces).
    pub fn parse(text: &str) -> Option<GatewayMode> {
        GatewayMode::ALL
            .into_iter()
            .find(|mode| mode.as_str() == text)
    }
}

impl std::fmt::Display for GatewayMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Network {
    /// Whether `subnet` is a unique local prefix (fc00::/7), which is not routable on the
    /// Internet and so wants NAT66 by default.
    pub fn is_ula(subnet: &Ipv6Net) -> bool {
        (subnet.addr().octets()[0] & 0xfe) == 0xfc
    }
}

/// A transport protocol Docker can publish.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
    Udp,
    Sctp,
}

impl Protocol {
    /// The IANA protocol number, as nftables' `meta l4proto` sees it.
    pub fn number(self) -> u8 {
        match self {
            Protocol::Tcp => 6,
            Protocol::Udp => 17,
            Protocol::Sctp => 132,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Sctp => "sctp",
        }
    }

    pub fn parse(text: &str) -> Option<Protocol> {
        match text {
            "tcp" => Some(Protocol::Tcp),
            "udp" => Some(Protocol::Udp),
            "sctp" => Some(Protocol::Sctp),
            _ => None,
        }
    }
}

impl std::fmt::Display for Protocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// One host binding of a published container port, as Docker bound it
/// (`NetworkSettings.Ports`, so `-P` and random host ports are included).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct PortBinding {
    pub protocol: Protocol,
    pub container_port: u16,
    /// `None` when Docker left the host IP empty (all addresses, both families).
    pub host_ip: Option<IpAddr>,
    pub host_port: u16,
}

impl PortBinding {
    /// Whether this binding asks for the port to be reachable over routed IPv6: a binding on
    /// `::`, on no particular address, or on a non-loopback IPv6 host address. IPv4-only
    /// bindings (`0.0.0.0`, `127.0.0.1`) and `::1` do not expose anything over IPv6.
    pub fn exposes_ipv6(&self) -> bool {
        match self.host_ip {
            None => true,
            Some(IpAddr::V4(_)) => false,
            Some(IpAddr::V6(addr)) => !addr.is_loopback(),
        }
    }

    /// The one IPv6 host address the binding listens on; `None` for all addresses (no host
    /// IP, or `::`) and for IPv4 host IPs.
    pub fn host_ipv6(&self) -> Option<Ipv6Addr> {
        match self.host_ip {
            Some(IpAddr::V6(addr)) if !addr.is_unspecified() => Some(addr),
            _ => None,
        }
    }

    /// Whether the binding narrows the port to one IPv6 host address (`-p [ADDR]:HP:CP`).
    pub fn on_one_host_address(&self) -> bool {
        self.host_ipv6().is_some()
    }
}

/// A container's attachment to one network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    pub network_id: String,
    pub network_name: String,
    pub ipv4: Option<Ipv4Addr>,
    pub ipv6: Option<Ipv6Addr>,
}

/// One running container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Container {
    pub id: String,
    /// Name without Docker's leading `/`.
    pub name: String,
    /// The image as Docker lists it (`Image` of `/containers/json`: the name it was run
    /// with, such as `robbertkl/ipv6nat:latest`, or an ID). Empty in a snapshot saved before
    /// it was read.
    #[serde(default)]
    pub image: String,
    #[serde(default)]
    pub labels: std::collections::BTreeMap<String, String>,
    /// The `v6guard.*` labels of the container's image (`Config.Labels` of its image
    /// inspect). Docker copies an image's labels into every container made from it, so a
    /// container label with the image's value may have been chosen by the image's author,
    /// not by whoever ran the container; such a label may narrow but never widen.
    #[serde(default)]
    pub image_labels: std::collections::BTreeMap<String, String>,
    /// Whether `image_labels` is what the image holds. False when the image could not be
    /// inspected, or the snapshot was saved before image labels were read: then every
    /// `v6guard.*` label counts as possibly the image's (fail closed).
    #[serde(default)]
    pub image_labels_known: bool,
    pub endpoints: Vec<Endpoint>,
    pub ports: Vec<PortBinding>,
    /// Every port the container exposes (`EXPOSE`, `--expose`, and published ones).
    #[serde(default)]
    pub exposed: Vec<ExposedPort>,
    /// Containers this one links to (`--link`), by name: with ICC off, the parent may reach
    /// each child's exposed ports.
    #[serde(default)]
    pub links: Vec<String>,
    /// `HostConfig.NetworkMode`: `default`, `bridge` or a network's name for a container with
    /// its own network namespace; `host` for one in the host's (no endpoint on any bridge:
    /// its ports are the host's, and no v6guard rule stands between them and the outside);
    /// `container:<id>` for one sharing another container's namespace (its listeners are
    /// that container's); `none`. Empty when unknown (a snapshot saved before it was read).
    #[serde(default)]
    pub network_mode: String,
}

impl Container {
    /// Whether the container runs in the host's network namespace (`--network host`).
    pub fn shares_host_network(&self) -> bool {
        self.network_mode == "host"
    }

    /// The ID (or name, as the user gave it) of the container whose network namespace this
    /// one shares (`--network container:X`), if any.
    pub fn shares_network_of(&self) -> Option<&str> {
        self.network_mode
            .strip_prefix("container:")
            .filter(|other| !other.is_empty())
    }
}

/// A port a container exposes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ExposedPort {
    pub protocol: Protocol,
    pub port: u16,
}

impl Snapshot {
    pub fn network_by_id(&self, id: &str) -> Option<&Network> {
        self.networks.iter().find(|n| n.id == id)
    }

    /// Replace the containers with these IDs by `fresh` (the ones among them still running),
    /// keeping the list sorted by (name, ID), as a full read is, without sorting it again: a
    /// container found again under its name is replaced in place, a gone (or renamed) one is
    /// removed where it is, a new one is inserted where a binary search puts it.
    pub fn replace_containers(&mut self, ids: &[String], fresh: Vec<Container>) {
        self.replace_containers_with(ids, fresh, |_| None);
    }

    /// As [`Self::replace_containers`], with `last_name` telling the name a container had when
    /// the caller last saw it, so a gone one is found by binary search. A wrong or missing
    /// name costs a pass of ID comparisons over the list (as does a new container, which must
    /// not already be there under another name), never a wrong result.
    pub fn replace_containers_with<'h>(
        &mut self,
        ids: &[String],
        fresh: Vec<Container>,
        last_name: impl Fn(&str) -> Option<&'h str>,
    ) {
        let mut replaced: Vec<String> = Vec::new();
        let mut new = Vec::new();
        for container in fresh {
            match self.container_position(&container.name, &container.id) {
                Ok(at) => {
                    replaced.push(container.id.clone());
                    self.containers[at] = container;
                }
                Err(_) => new.push(container),
            }
        }
        let mut unknown: Vec<&String> = Vec::new();
        for id in ids.iter().filter(|id| !replaced.contains(id)) {
            let at = last_name(id).and_then(|name| self.container_position(name, id).ok());
            match at {
                Some(at) => {
                    self.containers.remove(at);
                }
                None => unknown.push(id),
            }
        }
        unknown.extend(new.iter().map(|c| &c.id).filter(|id| !ids.contains(id)));
        if !unknown.is_empty() {
            self.containers.retain(|c| !unknown.contains(&&c.id));
        }
        for container in new {
            let at = self
                .container_position(&container.name, &container.id)
                .unwrap_or_else(|at| at);
            self.containers.insert(at, container);
        }
    }

    /// Where the container named `name` with ID `id` is (`Ok`) or belongs (`Err`) in the
    /// list sorted by (name, ID).
    pub fn container_position(&self, name: &str, id: &str) -> Result<usize, usize> {
        self.containers
            .binary_search_by(|c| (c.name.as_str(), c.id.as_str()).cmp(&(name, id)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binding(host_ip: Option<&str>) -> PortBinding {
        PortBinding {
            protocol: Protocol::Tcp,
            container_port: 80,
            host_ip: host_ip.map(|ip| ip.parse().unwrap()),
            host_port: 8080,
        }
    }

    #[test]
    fn only_ipv6_non_loopback_bindings_expose_ipv6() {
        assert!(binding(None).exposes_ipv6());
        assert!(binding(Some("::")).exposes_ipv6());
        assert!(binding(Some("2001:db8::1")).exposes_ipv6());
        assert!(!binding(Some("::1")).exposes_ipv6());
        assert!(!binding(Some("0.0.0.0")).exposes_ipv6());
        assert!(!binding(Some("127.0.0.1")).exposes_ipv6());
    }

    #[test]
    fn gateway_modes_use_dockers_words() {
        for mode in GatewayMode::ALL {
            assert_eq!(GatewayMode::parse(mode.as_str()), Some(mode));
            let json = serde_json::to_string(&mode).unwrap();
            assert_eq!(json, format!("\"{mode}\""));
            assert_eq!(serde_json::from_str::<GatewayMode>(&json).unwrap(), mode);
        }
        assert_eq!(
            GatewayMode::NatUnprotected.as_str(),
            "nat-unprotected",
            "kebab-case as Docker writes it"
        );
        assert_eq!(GatewayMode::parse("NAT"), None);
        assert_eq!(GatewayMode::parse("nat_unprotected"), None);
        assert_eq!(GatewayMode::parse("isolated"), Some(GatewayMode::Isolated));
        assert_eq!(GatewayMode::parse("bridged"), None);
    }

    #[test]
    fn snapshots_saved_before_gateway_modes_still_load() {
        let network: Network = serde_json::from_value(serde_json::json!({
            "id": "n", "name": "web", "bridge": "br-n", "ipv6_enabled": true,
            "ipv6_subnets": [], "icc": true, "masquerade": true, "internal": false
        }))
        .unwrap();
        assert_eq!(network.gateway_mode_ipv6, None);
    }

    #[test]
    fn snapshots_saved_before_image_labels_load_with_them_unknown() {
        let container: Container = serde_json::from_value(serde_json::json!({
            "id": "c", "name": "web", "labels": {"v6guard.expose": "81"},
            "endpoints": [], "ports": []
        }))
        .unwrap();
        assert!(container.image_labels.is_empty());
        assert!(
            !container.image_labels_known,
            "unknown image labels fail closed"
        );
        assert_eq!(container.network_mode, "", "unknown network mode");
        assert!(!container.shares_host_network());
        assert_eq!(container.shares_network_of(), None);
    }

    #[test]
    fn network_modes_name_shared_namespaces() {
        let mode = |network_mode: &str| -> Container {
            serde_json::from_value(serde_json::json!({
                "id": "c", "name": "web", "endpoints": [], "ports": [],
                "network_mode": network_mode
            }))
            .unwrap()
        };
        assert!(mode("host").shares_host_network());
        assert!(!mode("default").shares_host_network());
        assert!(
            !mode("hostile").shares_host_network(),
            "a network named hostile"
        );
        assert_eq!(
            mode("container:e1c3c0d3").shares_network_of(),
            Some("e1c3c0d3")
        );
        assert_eq!(mode("container:").shares_network_of(), None);
        assert_eq!(mode("bridge").shares_network_of(), None);
    }

    #[test]
    fn engine_major_version() {
        let mut engine = Engine {
            version: "20.10.24+dfsg1".into(),
            api_version: "1.41".into(),
            bridge_nf_ip6tables: true,
            docker_nft_ip6_table: false,
        };
        assert_eq!(engine.major_version(), Some(20));
        engine.version = "garbage".into();
        assert_eq!(engine.major_version(), None);
    }
}
