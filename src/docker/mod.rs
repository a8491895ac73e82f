//! Reading Docker's networks and containers through the Engine API (bollard).
//!
//! Three API calls build the Docker part of a Snapshot: `/version`, `/networks` and
//! `/containers/json`. The container list already carries every container's addresses,
//! labels and bound ports (`-P` and random host ports included), so no per-container
//! inspect is needed however many containers run; each distinct image is inspected once
//! for its labels (`images`), and containers on the default bridge for legacy links. The audit alone inspects containers for their init PIDs
//! (`read_pids`), to read what they listen on. Conversion from the API's types is kept in
//! pure functions (`convert`) that are tested on JSON captured from Docker 20.10.

mod convert;
pub mod events;
mod images;
mod links;
mod pids;

pub use convert::{container_from_summary, network_from_api};
pub use pids::read_pids;

use std::collections::HashMap;

use bollard::Docker;
use bollard::models::ContainerSummary;
use bollard::query_parameters::{ListContainersOptionsBuilder, ListNetworksOptionsBuilder};

use crate::snapshot::{Container, Engine, Network};

/// Default Docker socket.
pub const DEFAULT_SOCKET: &str = "unix:///var/run/docker.sock";

/// Seconds to wait for any single Docker API call.
const API_TIMEOUT_SECS: u64 = 30;

#[derive(Debug, thiserror::Error)]
pub enum DockerError {
    #[error(
        "cannot reach Docker at {host}: {source}. Is dockerd running, and may this user open its \
         socket? (v6guard normally runs as root; use --docker-host to point elsewhere)"
    )]
    Connect {
        host: String,
        #[source]
        source: bollard::errors::Error,
    },
    #[error("Docker API call {call} failed: {source}")]
    Api {
        call: &'static str,
        #[source]
        source: bollard::errors::Error,
    },
}

/// A connected client with the API version negotiated (Docker 20.10 speaks 1.41).
pub async fn connect(host: &str) -> Result<Docker, DockerError> {
    let connect_error = |source| DockerError::Connect {
        host: host.to_string(),
        source,
    };
    let docker = if host.starts_with("unix://") || host.starts_with('/') {
        Docker::connect_with_unix(host, API_TIMEOUT_SECS, bollard::API_DEFAULT_VERSION)
    } else {
        Docker::connect_with_http(host, API_TIMEOUT_SECS, bollard::API_DEFAULT_VERSION)
    }
    .map_err(connect_error)?;
    docker.negotiate_version().await.map_err(connect_error)
}

/// Engine version and negotiated API version. Host facts (sysctls, nft tables) are filled in
/// by the caller.
pub async fn read_engine(docker: &Docker) -> Result<Engine, DockerError> {
    let version = docker.version().await.map_err(|source| DockerError::Api {
        call: "GET /version",
        source,
    })?;
    Ok(Engine {
        version: version.version.unwrap_or_default(),
        api_version: docker.client_version().to_string(),
        bridge_nf_ip6tables: false,
        docker_nft_ip6_table: false,
    })
}

/// Every bridge network, sorted by name.
pub async fn read_networks(docker: &Docker) -> Result<Vec<Network>, DockerError> {
    let filters = HashMap::from([("driver".to_string(), vec!["bridge".to_string()])]);
    let options = ListNetworksOptionsBuilder::new().filters(&filters).build();
    let list = docker
        .list_networks(Some(options))
        .await
        .map_err(|source| DockerError::Api {
            call: "GET /networks",
            source,
        })?;
    let mut networks: Vec<Network> = list.iter().filter_map(network_from_api).collect();
    networks.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(networks)
}

/// Every running container, sorted by name.
pub async fn read_containers(docker: &Docker) -> Result<Vec<Container>, DockerError> {
    list_containers(docker, None).await
}

/// The running containers among `ids` (full IDs), sorted by name: one `/containers/json`
/// call with an `id` filter, so the result has exactly the shape of the full list. IDs that
/// are not running (stopped, removed, never existed) are simply absent.
pub async fn read_containers_by_id(
    docker: &Docker,
    ids: &[String],
) -> Result<Vec<Container>, DockerError> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let filters = HashMap::from([("id".to_string(), ids.to_vec())]);
    let mut containers = list_containers(docker, Some(&filters)).await?;
    // dockerd matches `id` filters as patterns; keep exact matches only.
    containers.retain(|c| ids.contains(&c.id));
    Ok(containers)
}

async fn list_containers(
    docker: &Docker,
    filters: Option<&HashMap<String, Vec<String>>>,
) -> Result<Vec<Container>, DockerError> {
    let mut builder = ListContainersOptionsBuilder::new().all(false);
    if let Some(filters) = filters {
        builder = builder.filters(filters);
    }
    let options = builder.build();
    let list = docker
        .list_containers(Some(options))
        .await
        .map_err(|source| DockerError::Api {
            call: "GET /containers/json",
            source,
        })?;
    let mut listed: Vec<(Container, Option<String>)> = list
        .iter()
        .filter_map(|summary| Some((container_from_summary(summary)?, image_of(summary))))
        .collect();
    listed.sort_by(|a, b| a.0.name.cmp(&b.0.name));
    let (mut containers, images): (Vec<Container>, Vec<Option<String>>) =
        listed.into_iter().unzip();
    images::add_image_labels(docker, &mut containers, &images).await;
    links::add_links(docker, &mut containers).await?;
    Ok(containers)
}

/// The image a listed container runs: its image ID, which names exactly the image it was
/// created from even after the tag moved. `None` when Docker reports none.
fn image_of(summary: &ContainerSummary) -> Option<String> {
    summary.image_id.clone().filter(|id| !id.is_empty())
}
