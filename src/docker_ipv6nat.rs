//! docker-ipv6nat (robbertkl/docker-ipv6nat), the tool most hosts that firewall Docker's IPv6
//! run today: find it and say how to move to v6guard. Both tools filtering and translating the
//! same traffic contradict each other (its FORWARD rules accept what v6guard drops and the
//! other way round; both masquerade), so `check-config`, `audit` and the daemon's start log
//! warn while any sign of it is left.
//!
//! Signs, each enough on its own:
//! - its ip6tables chains. It creates `DOCKER` and `DOCKER-ISOLATION` in the ip6 `filter`
//!   table and `DOCKER` in `nat`. `DOCKER-ISOLATION` is its fingerprint: Docker's own
//!   ip6tables code names its isolation chains `DOCKER-ISOLATION-STAGE-1`/`-2` (since 17.06),
//!   so a bare `DOCKER-ISOLATION` is docker-ipv6nat, running or left behind. With
//!   iptables-nft (Debian's default) they are nftables chains and [`crate::hazards`] lists
//!   them; legacy ip6tables is invisible to nftables and has its own hazard.
//! - a running container of its image (`robbertkl/ipv6nat`, any registry or tag).
//!
//! Pure except [`read_chains`] (the kernel).

use serde::{Deserialize, Serialize};

use crate::hazards::{Hazard, HazardError, HazardKind, NftChain};
use crate::snapshot::Container;

/// Where the migration is explained, as installed by the .deb.
pub const MIGRATION_DOC: &str = "/usr/share/doc/v6guard/migrating-from-docker-ipv6nat.md";

/// The (table, chain) pairs docker-ipv6nat creates in the ip6 family.
pub const CHAINS: [(&str, &str); 3] = [
    ("filter", "DOCKER"),
    ("filter", "DOCKER-ISOLATION"),
    ("nat", "DOCKER"),
];

/// The chain only docker-ipv6nat creates (see the module's documentation).
const FINGERPRINT: (&str, &str) = ("filter", "DOCKER-ISOLATION");

/// A running container of docker-ipv6nat's image.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Ipv6natContainer {
    pub name: String,
    /// The image as Docker lists it (`robbertkl/ipv6nat:latest`).
    pub image: String,
}

/// docker-ipv6nat's chains present among `chains` (`ip6 filter DOCKER-ISOLATION`, ...), in
/// [`CHAINS`] order; empty unless its fingerprint chain is there, so Docker's own ip6tables
/// chains alone are not taken for it.
pub fn chains_found(chains: &[NftChain]) -> Vec<String> {
    let has = |(table, chain): (&str, &str)| {
        chains
            .iter()
            .any(|c| c.family == "ip6" && c.table == table && c.chain == chain)
    };
    if !has(FINGERPRINT) {
        return Vec::new();
    }
    CHAINS
        .into_iter()
        .filter(|pair| has(*pair))
        .map(|(table, chain)| format!("ip6 {table} {chain}"))
        .collect()
}

/// Whether `image` (as `docker ps` shows it) is docker-ipv6nat's: repository
/// `robbertkl/ipv6nat` on any registry, any tag or digest.
pub fn is_ipv6nat_image(image: &str) -> bool {
    let without_digest = image.split('@').next().unwrap_or(image);
    // A tag follows the last `:` after the last `/` (a registry's port comes before a `/`).
    let repository = match without_digest.rsplit_once(':') {
        Some((repository, tag)) if !tag.contains('/') => repository,
        _ => without_digest,
    };
    repository == "robbertkl/ipv6nat" || repository.ends_with("/robbertkl/ipv6nat")
}

/// The hazard the signs make, with what to do; `None` when there are none.
pub fn hazard(chains: &[String], containers: &[Ipv6natContainer]) -> Option<Hazard> {
    if chains.is_empty() && containers.is_empty() {
        return None;
    }
    let mut signs = Vec::new();
    if !containers.is_empty() {
        let list: Vec<String> = containers
            .iter()
            .map(|c| format!("{} ({})", c.name, c.image))
            .collect();
        signs.push(format!("its container runs: {}", list.join(", ")));
    }
    if !chains.is_empty() {
        signs.push(format!("its ip6tables chains exist: {}", chains.join(", ")));
    }
    let stop = match containers.first() {
        Some(container) => format!("`docker rm -f {}`", container.name),
        None => "stop its container or service, if one still runs".to_string(),
    };
    Some(Hazard {
        kind: HazardKind::DockerIpv6nat,
        message: format!(
            "docker-ipv6nat manages containers' IPv6 on this host ({}): it and v6guard would \
             both filter and translate the same traffic, and its FORWARD rules accept what \
             v6guard drops",
            signs.join("; ")
        ),
        fix: format!(
            "Move to v6guard: {stop}; remove its chains (ip6tables: -D FORWARD -j \
             DOCKER-ISOLATION, then -F and -X DOCKER-ISOLATION and DOCKER in filter; -t nat \
             -D PREROUTING/OUTPUT rules that jump to DOCKER, then -F and -X DOCKER); then \
             `v6guard apply` or start v6guard.service. Step by step, with its flags mapped to \
             v6guard's: {MIGRATION_DOC}"
        ),
    })
}

/// docker-ipv6nat's containers among `containers` (a Snapshot's: the running ones), by
/// image, sorted by name.
pub fn containers_among(containers: &[Container]) -> Vec<Ipv6natContainer> {
    let mut found: Vec<Ipv6natContainer> = containers
        .iter()
        .filter(|c| is_ipv6nat_image(&c.image))
        .map(|c| Ipv6natContainer {
            name: c.name.clone(),
            image: c.image.clone(),
        })
        .collect();
    found.sort();
    found
}

/// docker-ipv6nat's chains in the kernel (as [`chains_found`]); needs CAP_NET_ADMIN.
pub fn read_chains() -> Result<Vec<String>, HazardError> {
    let facts = crate::hazards::read_host_facts()?;
    Ok(chains_found(&facts.nft_chains))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(family: &str, table: &str, name: &str) -> NftChain {
        NftChain {
            family: family.to_string(),
            table: table.to_string(),
            chain: name.to_string(),
            hook: None,
            priority: None,
            policy: None,
        }
    }

    #[test]
    fn its_chains_are_told_from_dockers_own() {
        let docker = vec![
            chain("ip6", "filter", "DOCKER"),
            chain("ip6", "filter", "DOCKER-ISOLATION-STAGE-1"),
            chain("ip6", "filter", "DOCKER-ISOLATION-STAGE-2"),
            chain("ip6", "filter", "DOCKER-USER"),
            chain("ip6", "nat", "DOCKER"),
        ];
        assert!(chains_found(&docker).is_empty(), "Docker's own chains");
        // The same names in IPv4 are Docker's IPv4 firewall, not docker-ipv6nat.
        let ipv4 = vec![chain("ip", "filter", "DOCKER-ISOLATION")];
        assert!(chains_found(&ipv4).is_empty());

        let ipv6nat = vec![
            chain("ip6", "filter", "DOCKER"),
            chain("ip6", "filter", "DOCKER-ISOLATION"),
            chain("ip6", "nat", "DOCKER"),
            chain("ip6", "filter", "FORWARD"),
        ];
        assert_eq!(
            chains_found(&ipv6nat),
            [
                "ip6 filter DOCKER",
                "ip6 filter DOCKER-ISOLATION",
                "ip6 nat DOCKER"
            ]
        );
    }

    #[test]
    fn its_image_is_recognised_on_any_registry_and_tag() {
        for image in [
            "robbertkl/ipv6nat",
            "robbertkl/ipv6nat:latest",
            "robbertkl/ipv6nat:0.4.4",
            "docker.io/robbertkl/ipv6nat",
            "registry.example:5000/robbertkl/ipv6nat:0.4.4",
            "robbertkl/ipv6nat@sha256:0123abcd",
        ] {
            assert!(is_ipv6nat_image(image), "{image}");
        }
        for image in [
            "busybox",
            "robbertkl/ipv6nat-fork",
            "someone/ipv6nat",
            "registry.example:5000/other:1",
        ] {
            assert!(!is_ipv6nat_image(image), "{image}");
        }
    }

    #[test]
    fn the_hazard_names_every_sign_and_the_way_out() {
        assert_eq!(hazard(&[], &[]), None);
        let container = Ipv6natContainer {
            name: "ipv6nat".to_string(),
            image: "robbertkl/ipv6nat".to_string(),
        };
        let found =
            hazard(&["ip6 filter DOCKER-ISOLATION".to_string()], &[container]).expect("a hazard");
        assert_eq!(found.kind, HazardKind::DockerIpv6nat);
        assert!(found.message.contains("ipv6nat (robbertkl/ipv6nat)"));
        assert!(found.message.contains("ip6 filter DOCKER-ISOLATION"));
        assert!(found.fix.contains("docker rm -f ipv6nat"));
        assert!(found.fix.contains(MIGRATION_DOC));
    }
}
