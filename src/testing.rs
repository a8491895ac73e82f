//! Hand-built Snapshots for unit tests: a small lab that exercises every planner branch.

use crate::snapshot::{
    Container, DaemonSettings, Endpoint, Engine, Network, PortBinding, Protocol, Snapshot,
};

pub fn engine(version: &str) -> Engine {
    Engine {
        version: version.to_string(),
        api_version: "1.41".to_string(),
        bridge_nf_ip6tables: true,
        docker_nft_ip6_table: false,
    }
}

pub fn network(id: &str, name: &str, bridge: &str, icc: bool) -> Network {
    Network {
        id: id.to_string(),
        name: name.to_string(),
        bridge: bridge.to_string(),
        ipv6_enabled: true,
        ipv6_subnets: vec![],
        icc,
        masquerade: true,
        internal: false,
        host_ipv6: None,
        gateway_mode_ipv6: None,
    }
}

pub fn binding(port: u16, host_ip: Option<&str>) -> PortBinding {
    PortBinding {
        protocol: Protocol::Tcp,
        container_port: port,
        host_ip: host_ip.map(|ip| ip.parse().unwrap()),
        host_port: port + 8000,
    }
}

pub fn container(name: &str, network_id: &str, ipv6: &str, ports: Vec<PortBinding>) -> Container {
    Container {
        id: format!("{name}-id"),
        name: name.to_string(),
        image: String::new(),
        labels: Default::default(),
        image_labels: Default::default(),
        image_labels_known: true,
        endpoints: vec![Endpoint {
            network_id: network_id.to_string(),
            network_name: network_id.to_string(),
            ipv4: None,
            ipv6: Some(ipv6.parse().unwrap()),
        }],
        ports,
        exposed: vec![],
        links: vec![],
        network_mode: "default".to_string(),
    }
}

/// The default bridge with ICC off, a user network with ICC on, one with a custom bridge name.
pub fn lab_snapshot() -> Snapshot {
    Snapshot {
        engine: engine("20.10.24+dfsg1"),
        daemon: DaemonSettings::default(),
        networks: vec![
            Network {
                ipv6_subnets: vec!["fd76:6700:0:1::/64".parse().unwrap()],
                ..network("n0", "bridge", "docker0", false)
            },
            Network {
                ipv6_subnets: vec!["fd76:6700:0:10::/64".parse().unwrap()],
                ..network("n1", "web", "br-0123456789ab", true)
            },
            Network {
                ipv6_subnets: vec!["fd76:6700:0:11::/64".parse().unwrap()],
                ..network("n2", "custom", "mybr0", false)
            },
        ],
        containers: vec![
            container(
                "web1",
                "n1",
                "fd76:6700:0:10::2",
                vec![
                    binding(80, Some("0.0.0.0")),
                    binding(80, Some("::")),
                    binding(81, Some("127.0.0.1")),
                    binding(82, Some("::1")),
                    binding(83, None),
                ],
            ),
            container("db", "n2", "fd76:6700:0:11::2", vec![]),
        ],
    }
}
