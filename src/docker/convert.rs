//! Pure conversions from the Engine API's types to Snapshot types. Nothing from Docker is
//! trusted to be well-formed: unparsable values are logged and skipped, never unwrapped.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use bollard::models::{ContainerSummary, Network as ApiNetwork, PortSummaryTypeEnum};
use ipnet::Ipv6Net;
use tracing::{error, warn};

use crate::snapshot::{
    Container, Endpoint, ExposedPort, GatewayMode, Network, PortBinding, Protocol,
};

const OPT_BRIDGE_NAME: &str = "com.docker.network.bridge.name";
const OPT_ENABLE_ICC: &str = "com.docker.network.bridge.enable_icc";
const OPT_ENABLE_MASQUERADE: &str = "com.docker.network.bridge.enable_ip_masquerade";
const OPT_HOST_IPV6: &str = "com.docker.network.host_ipv6";
const OPT_GATEWAY_MODE_IPV6: &str = "com.docker.network.bridge.gateway_mode_ipv6";

/// A bridge network from `GET /networks`; `None` for other drivers or a network without an ID.
pub fn network_from_api(api: &ApiNetwork) -> Option<Network> {
    if api.driver.as_deref() != Some("bridge") {
        return None;
    }
    let id = api.id.clone()?;
    let name = api.name.clone().unwrap_or_else(|| id.clone());
    let options = api.options.clone().unwrap_or_default();
    let bridge = options
        .get(OPT_BRIDGE_NAME)
        .filter(|b| !b.is_empty())
        .cloned()
        .unwrap_or_else(|| format!("br-{}", id.get(..12).unwrap_or(&id)));
    if !nft_safe_interface_name(&bridge) {
        error!(
            network = %name, bridge,
            "bridge name cannot be matched exactly by nftables (over 15 bytes, or contains * \" \\ \
             or control characters); the network is left out of the plan: its containers are \
             not published over IPv6, and only a br-* name is guarded. Rename the bridge"
        );
        return None;
    }
    let ipv6_subnets = api
        .ipam
        .iter()
        .flat_map(|ipam| ipam.config.iter().flatten())
        .filter_map(|config| config.subnet.as_deref())
        .filter(|subnet| subnet.contains(':'))
        .filter_map(|subnet| match subnet.parse::<Ipv6Net>() {
            Ok(net) => Some(net),
            Err(_) => {
                warn!(network = %name, subnet, "ignoring an IPv6 subnet Docker reports that does not parse");
                None
            }
        })
        .collect();
    let host_ipv6 = options.get(OPT_HOST_IPV6).and_then(|text| match text.parse() {
        Ok(address) => Some(address),
        Err(_) => {
            warn!(network = %name, value = %text, "ignoring {OPT_HOST_IPV6}: not an IPv6 address");
            None
        }
    });
    let gateway_mode_ipv6 = options
        .get(OPT_GATEWAY_MODE_IPV6)
        .map(|text| gateway_mode(text, &name));
    Some(Network {
        host_ipv6,
        gateway_mode_ipv6,
        icc: option_flag(&options, OPT_ENABLE_ICC, &name),
        masquerade: option_flag(&options, OPT_ENABLE_MASQUERADE, &name),
        internal: api.internal.unwrap_or(false),
        ipv6_enabled: api.enable_ipv6.unwrap_or(false),
        ipv6_subnets,
        bridge,
        id,
        name,
    })
}

/// A `gateway_mode_ipv6` option's mode. A word this v6guard does not know (a newer Docker's
/// mode, a typo Docker let through) is read as `isolated`, the most closed of Docker's
/// modes (nothing in or out), so an unknown mode never opens more than Docker's own would.
fn gateway_mode(text: &str, network: &str) -> GatewayMode {
    GatewayMode::parse(text).unwrap_or_else(|| {
        warn!(
            network,
            value = text,
            "unknown {OPT_GATEWAY_MODE_IPV6}; treating the network as `isolated`, the most \
             closed of Docker's modes (known: nat, routed, nat-unprotected, isolated)"
        );
        GatewayMode::Isolated
    })
}

/// Whether nft text and a netlink compare agree on this interface name: nft reads `*` as a
/// wildcard and needs `"` and `\` escaped, and the kernel's names are at most 15 bytes.
fn nft_safe_interface_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() < 16
        && !name
            .chars()
            .any(|c| matches!(c, '*' | '"' | '\\') || c.is_control() || c.is_whitespace())
}

/// A boolean network option; Docker treats a missing one as true.
fn option_flag(
    options: &std::collections::HashMap<String, String>,
    key: &str,
    network: &str,
) -> bool {
    match options.get(key).map(String::as_str) {
        None | Some("") => true,
        Some(value) => match value.parse::<bool>() {
            Ok(flag) => flag,
            Err(_) => {
                warn!(
                    network,
                    key, value, "network option is not true/false; assuming true as Docker does"
                );
                true
            }
        },
    }
}

/// A running container from `GET /containers/json`; `None` without an ID.
pub fn container_from_summary(api: &ContainerSummary) -> Option<Container> {
    let id = api.id.clone()?;
    let name = api
        .names
        .iter()
        .flatten()
        .next()
        .map(|n| n.trim_start_matches('/').to_string())
        .unwrap_or_else(|| id.get(..12).unwrap_or(&id).to_string());
    let labels: BTreeMap<String, String> =
        api.labels.clone().unwrap_or_default().into_iter().collect();
    let mut endpoints: Vec<Endpoint> = api
        .network_settings
        .iter()
        .flat_map(|settings| settings.networks.iter().flatten())
        .filter_map(|(network_name, endpoint)| {
            Some(Endpoint {
                network_id: endpoint.network_id.clone().filter(|id| !id.is_empty())?,
                network_name: network_name.clone(),
                ipv4: parse_address::<Ipv4Addr>(endpoint.ip_address.as_deref()),
                ipv6: parse_address::<Ipv6Addr>(endpoint.global_ipv6_address.as_deref()),
            })
        })
        .collect();
    endpoints.sort_by(|a, b| a.network_name.cmp(&b.network_name));
    let mut ports: Vec<PortBinding> = api
        .ports
        .iter()
        .flatten()
        .filter_map(|port| {
            let host_port = port.public_port?;
            let protocol = port_protocol(port.typ)?;
            let host_ip = match port.ip.as_deref() {
                None | Some("") => None,
                Some(text) => Some(text.parse::<IpAddr>().ok()?),
            };
            Some(PortBinding {
                protocol,
                container_port: port.private_port,
                host_ip,
                host_port,
            })
        })
        .collect();
    ports.sort();
    ports.dedup();
    // Kept for as long as the container runs (the daemon's Snapshot): no spare capacity, a
    // third of a container's memory with ports listed for both 0.0.0.0 and ::.
    ports.shrink_to_fit();
    // Every listed port is exposed, published or not; the list carries exposed-only ports
    // without a PublicPort.
    let mut exposed: Vec<ExposedPort> = api
        .ports
        .iter()
        .flatten()
        .filter_map(|port| {
            Some(ExposedPort {
                protocol: port_protocol(port.typ)?,
                port: port.private_port,
            })
        })
        .collect();
    exposed.sort();
    exposed.dedup();
    exposed.shrink_to_fit();
    Some(Container {
        id,
        name,
        image: api.image.clone().unwrap_or_default(),
        labels,
        // Filled in by the reader, which inspects each image once; until then unknown, so
        // no label may widen.
        image_labels: BTreeMap::new(),
        image_labels_known: false,
        endpoints,
        ports,
        exposed,
        links: Vec::new(),
        network_mode: api
            .host_config
            .as_ref()
            .and_then(|config| config.network_mode.clone())
            .unwrap_or_default(),
    })
}

fn port_protocol(typ: Option<PortSummaryTypeEnum>) -> Option<Protocol> {
    match typ {
        Some(PortSummaryTypeEnum::TCP) => Some(Protocol::Tcp),
        Some(PortSummaryTypeEnum::UDP) => Some(Protocol::Udp),
        Some(PortSummaryTypeEnum::SCTP) => Some(Protocol::Sctp),
        _ => None,
    }
}

fn parse_address<T: std::str::FromStr>(text: Option<&str>) -> Option<T> {
    text.filter(|t| !t.is_empty())?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `GET /networks` entries as Docker 20.10.24 returns them (trimmed).
    const NETWORKS_JSON: &str = r#"[
      {"Name":"bridge","Id":"5d1c0e6f0a3b9a1f2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293","Driver":"bridge",
       "EnableIPv6":true,"Internal":false,
       "IPAM":{"Driver":"default","Config":[{"Subnet":"172.17.0.0/16","Gateway":"172.17.0.1"},{"Subnet":"fd76:6700:0:1::/64"}]},
       "Options":{"com.docker.network.bridge.default_bridge":"true","com.docker.network.bridge.enable_icc":"false",
                  "com.docker.network.bridge.enable_ip_masquerade":"true","com.docker.network.bridge.name":"docker0"}},
      {"Name":"web","Id":"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef","Driver":"bridge",
       "EnableIPv6":true,"Internal":true,
       "IPAM":{"Driver":"default","Config":[{"Subnet":"fd76:6700:0:10::/64"}]},"Options":{}},
      {"Name":"host","Id":"ffff","Driver":"host","Options":{}}
    ]"#;

    fn with_gateway_mode(value: &str) -> ApiNetwork {
        serde_json::from_value(serde_json::json!({
            "Name": "routed", "Id": "89abcdef89abcdef", "Driver": "bridge", "EnableIPv6": true,
            "Options": {"com.docker.network.bridge.gateway_mode_ipv6": value}
        }))
        .unwrap()
    }

    #[test]
    fn gateway_modes_from_docker_28() {
        for (value, mode) in [
            ("nat", GatewayMode::Nat),
            ("routed", GatewayMode::Routed),
            ("nat-unprotected", GatewayMode::NatUnprotected),
            ("isolated", GatewayMode::Isolated),
        ] {
            let network = network_from_api(&with_gateway_mode(value)).unwrap();
            assert_eq!(network.gateway_mode_ipv6, Some(mode), "{value}");
        }
    }

    #[test]
    fn an_unknown_gateway_mode_is_read_as_isolated() {
        let network = network_from_api(&with_gateway_mode("bridged-someday")).unwrap();
        assert_eq!(network.gateway_mode_ipv6, Some(GatewayMode::Isolated));
    }

    #[test]
    fn bridge_names_nft_cannot_match_exactly_are_refused() {
        assert!(nft_safe_interface_name("docker0"));
        assert!(nft_safe_interface_name("br-0123456789ab"));
        assert!(!nft_safe_interface_name("br*"));
        assert!(!nft_safe_interface_name("a\"b"));
        assert!(!nft_safe_interface_name("sixteen-bytes-xx"));
    }

    #[test]
    fn networks_from_docker_20_10() {
        let api: Vec<ApiNetwork> = serde_json::from_str(NETWORKS_JSON).unwrap();
        let networks: Vec<Network> = api.iter().filter_map(network_from_api).collect();
        assert_eq!(networks.len(), 2, "the host network is not a bridge");
        let default = &networks[0];
        assert_eq!(default.bridge, "docker0");
        assert!(!default.icc);
        assert!(default.masquerade);
        assert_eq!(
            default.ipv6_subnets,
            vec!["fd76:6700:0:1::/64".parse().unwrap()]
        );
        let web = &networks[1];
        assert_eq!(web.bridge, "br-0123456789ab");
        assert!(web.icc, "a missing enable_icc means true");
        assert!(web.internal);
        assert_eq!(
            web.gateway_mode_ipv6, None,
            "Docker 20.10 has no gateway modes"
        );
    }

    /// A `GET /containers/json` entry from Docker 20.10.24 for
    /// `docker run -p 8080:80 -p 127.0.0.1:8081:81 -P --expose 90 ...` (trimmed).
    const CONTAINER_JSON: &str = r#"{
      "Id":"aaaaaaaaaaaa1111","Names":["/web1"],"Labels":{"v6guard.expose":"81/tcp"},
      "Ports":[{"IP":"0.0.0.0","PrivatePort":80,"PublicPort":8080,"Type":"tcp"},
               {"IP":"::","PrivatePort":80,"PublicPort":8080,"Type":"tcp"},
               {"IP":"127.0.0.1","PrivatePort":81,"PublicPort":8081,"Type":"tcp"},
               {"IP":"0.0.0.0","PrivatePort":90,"PublicPort":49153,"Type":"tcp"},
               {"PrivatePort":91,"Type":"udp"}],
      "NetworkSettings":{"Networks":{"bridge":{"NetworkID":"5d1c","IPAddress":"172.17.0.2",
          "GlobalIPv6Address":"fd76:6700:0:1::2","GlobalIPv6PrefixLen":64}}}
    }"#;

    #[test]
    fn container_from_docker_20_10() {
        let api: ContainerSummary = serde_json::from_str(CONTAINER_JSON).unwrap();
        let c = container_from_summary(&api).unwrap();
        assert_eq!(c.name, "web1");
        assert_eq!(c.endpoints.len(), 1);
        assert_eq!(
            c.endpoints[0].ipv6,
            Some("fd76:6700:0:1::2".parse().unwrap())
        );
        assert_eq!(c.endpoints[0].ipv4, Some("172.17.0.2".parse().unwrap()));
        assert_eq!(
            c.ports.len(),
            4,
            "the unpublished exposed port is not a binding"
        );
        let exposed: Vec<u16> = c
            .ports
            .iter()
            .filter(|p| p.exposes_ipv6())
            .map(|p| p.container_port)
            .collect();
        assert_eq!(exposed, vec![80], "only the :: binding exposes IPv6");
        assert_eq!(
            c.labels.get("v6guard.expose").map(String::as_str),
            Some("81/tcp")
        );
        assert!(
            !c.image_labels_known,
            "the image is not inspected yet: its labels are unknown"
        );
    }

    /// `GET /containers/json` entries from Docker 20.10.24 for `docker run --network host`,
    /// `--network container:<id>` and `--network none` (trimmed).
    const SHARED_NAMESPACES_JSON: &str = r#"[
      {"Id":"824adcb3b88a","Names":["/v6gt-host"],"HostConfig":{"NetworkMode":"host"},
       "NetworkSettings":{"Networks":{"host":{"NetworkID":"9e9c9f0884e0","EndpointID":"df2603d303aa",
           "Gateway":"","IPAddress":"","IPPrefixLen":0,"IPv6Gateway":"","GlobalIPv6Address":"",
           "GlobalIPv6PrefixLen":0,"MacAddress":""}}},"Ports":[]},
      {"Id":"98c16c0c3bc9","Names":["/v6gt-sidecar"],
       "HostConfig":{"NetworkMode":"container:e1c3c0d3cb4fda33b343ef8606a947955005bf29327420776dbd462aaf58ddd7"},
       "NetworkSettings":{"Networks":{}},"Ports":[]},
      {"Id":"28e59a2c4321","Names":["/v6gt-none"],"HostConfig":{"NetworkMode":"none"},
       "NetworkSettings":{"Networks":{"none":{"NetworkID":"c147afd38552","IPAddress":"",
           "GlobalIPv6Address":""}}},"Ports":[]}
    ]"#;

    #[test]
    fn containers_in_shared_namespaces_are_kept_with_their_network_mode() {
        let api: Vec<ContainerSummary> = serde_json::from_str(SHARED_NAMESPACES_JSON).unwrap();
        let containers: Vec<Container> = api.iter().filter_map(container_from_summary).collect();
        assert_eq!(containers.len(), 3, "none of them is dropped");
        let host = &containers[0];
        assert!(host.shares_host_network());
        assert_eq!(host.endpoints.len(), 1, "the host network's endpoint");
        assert_eq!(
            host.endpoints[0].ipv6, None,
            "without an address of its own"
        );
        let sidecar = &containers[1];
        assert_eq!(
            sidecar.shares_network_of(),
            Some("e1c3c0d3cb4fda33b343ef8606a947955005bf29327420776dbd462aaf58ddd7")
        );
        assert!(sidecar.endpoints.is_empty());
        assert_eq!(containers[2].network_mode, "none");
        let api: ContainerSummary = serde_json::from_str(CONTAINER_JSON).unwrap();
        assert_eq!(
            container_from_summary(&api).unwrap().network_mode,
            "",
            "a summary without HostConfig leaves the mode unknown"
        );
    }
}
