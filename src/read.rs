//! Assemble one Snapshot from all readers: Docker's API, dockerd's settings and host facts.

use std::path::Path;

use crate::docker::{self, DockerError};
use crate::host;
use crate::settings::{self, SettingsError};
use crate::snapshot::Snapshot;

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error(transparent)]
    Docker(#[from] DockerError),
    #[error(transparent)]
    Settings(#[from] SettingsError),
}

/// Read the whole host into a Snapshot.
pub async fn take_snapshot(
    docker_host: &str,
    daemon_json: Option<&Path>,
) -> Result<Snapshot, ReadError> {
    let daemon = settings::read_daemon_settings(daemon_json)?;
    let client = docker::connect(docker_host).await?;
    let mut engine = docker::read_engine(&client).await?;
    engine.bridge_nf_ip6tables = host::bridge_nf_ip6tables();
    // Listing tables needs CAP_NET_ADMIN; a dry run as an ordinary user still works.
    engine.docker_nft_ip6_table = host::docker_nft_ip6_table().unwrap_or_else(|error| {
        tracing::warn!(%error, "cannot check for Docker's ip6 docker-bridges table; assuming absent");
        false
    });
    let networks = docker::read_networks(&client).await?;
    let containers = docker::read_containers(&client).await?;
    Ok(Snapshot {
        engine,
        daemon,
        networks,
        containers,
    })
}
