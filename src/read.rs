//! Assemble one Snapshot from all readers: Docker's API, dockerd's settings and host facts.
//!
//! [`DockerReader`] keeps one connected bollard client, so the daemon can re-read the whole
//! host or just what an event changed (some containers, the network list) without
//! renegotiating for every event. [`take_snapshot`] is the one-shot read the other commands use.

use std::path::{Path, PathBuf};
use std::time::Duration;

use bollard::Docker;

use crate::docker::{self, DockerError};
use crate::host;
use crate::settings::{self, SettingsError};
use crate::snapshot::{Container, DaemonSettings, Engine, Network, Snapshot};

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error(transparent)]
    Docker(#[from] DockerError),
    #[error(transparent)]
    Settings(#[from] SettingsError),
    /// The caller's deadline for the whole read passed: dockerd accepted the requests but
    /// did not finish answering (each call's own timeout only covers the response headers).
    #[error(
        "Docker did not finish answering within {} s; treating it as unreachable",
        .0.as_secs()
    )]
    Deadline(Duration),
}

/// A connected Docker client plus where dockerd's settings come from.
pub struct DockerReader {
    client: Docker,
    daemon_json: Option<PathBuf>,
}

impl DockerReader {
    /// Connect and negotiate the API version.
    pub async fn connect(
        docker_host: &str,
        daemon_json: Option<&Path>,
    ) -> Result<DockerReader, ReadError> {
        Ok(DockerReader {
            client: docker::connect(docker_host).await?,
            daemon_json: daemon_json.map(Path::to_path_buf),
        })
    }

    /// Connect, then give every later API call `timeout` (to the response headers) instead
    /// of the default 30 s: the daemon must not wait long on a stuck dockerd.
    pub async fn connect_with_timeout(
        docker_host: &str,
        daemon_json: Option<&Path>,
        timeout: Duration,
    ) -> Result<DockerReader, ReadError> {
        let mut reader = DockerReader::connect(docker_host, daemon_json).await?;
        reader.client.set_timeout(timeout);
        Ok(reader)
    }

    /// The bollard client (for the event stream).
    pub fn client(&self) -> &Docker {
        &self.client
    }

    /// Read the whole host into a Snapshot. Settings are read first: a broken daemon.json
    /// fails the read before any API call, so nothing half-read is ever planned.
    pub async fn snapshot(&self) -> Result<Snapshot, ReadError> {
        let daemon = settings::read_daemon_settings(self.daemon_json.as_deref())?;
        self.snapshot_with(daemon).await
    }

    /// Read Docker's part of the Snapshot, with dockerd's settings already read.
    async fn snapshot_with(&self, daemon: DaemonSettings) -> Result<Snapshot, ReadError> {
        let engine = self.engine().await?;
        let networks = self.networks().await?;
        let containers = docker::read_containers(&self.client).await?;
        Ok(Snapshot {
            engine,
            daemon,
            networks,
            containers,
        })
    }

    /// Engine facts, with the host facts v6guard adds to them.
    pub async fn engine(&self) -> Result<Engine, ReadError> {
        let mut engine = docker::read_engine(&self.client).await?;
        engine.bridge_nf_ip6tables = host::bridge_nf_ip6tables();
        // Listing tables needs CAP_NET_ADMIN; a dry run as an ordinary user still works.
        engine.docker_nft_ip6_table = host::docker_nft_ip6_table().unwrap_or_else(|error| {
            tracing::warn!(%error, "cannot check for Docker's ip6 docker-bridges table; assuming absent");
            false
        });
        Ok(engine)
    }

    /// Every bridge network, sorted by name.
    pub async fn networks(&self) -> Result<Vec<Network>, ReadError> {
        Ok(docker::read_networks(&self.client).await?)
    }

    /// The running containers among `ids`, sorted by name (absent ones are not running).
    pub async fn containers(&self, ids: &[String]) -> Result<Vec<Container>, ReadError> {
        Ok(docker::read_containers_by_id(&self.client, ids).await?)
    }

    /// Every running container, sorted by name.
    pub async fn all_containers(&self) -> Result<Vec<Container>, ReadError> {
        Ok(docker::read_containers(&self.client).await?)
    }
}

/// Read the whole host into a Snapshot.
pub async fn take_snapshot(
    docker_host: &str,
    daemon_json: Option<&Path>,
) -> Result<Snapshot, ReadError> {
    // Settings first: a broken daemon.json is reported even when Docker is down.
    let daemon = settings::read_daemon_settings(daemon_json)?;
    DockerReader::connect(docker_host, daemon_json)
        .await?
        .snapshot_with(daemon)
        .await
}
