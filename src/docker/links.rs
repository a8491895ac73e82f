//! Legacy links (`docker run --link child:alias`). The container list does not carry them, so
//! v6guard inspects just the containers that can have links: those on the default bridge
//! (Docker only supports legacy links there). The inspects run a few at a time, so a read
//! of many containers costs a few round trips to dockerd, not one per container.

use bollard::Docker;
use futures_util::{StreamExt, stream};

use super::DockerError;
use crate::snapshot::Container;

/// The default bridge network's name.
const DEFAULT_BRIDGE: &str = "bridge";

/// Inspects in flight at once: enough to hide dockerd's per-request latency, few enough not
/// to load a busy dockerd.
const CONCURRENT_INSPECTS: usize = 8;

/// Fill in `links` for every container on the default bridge.
pub async fn add_links(docker: &Docker, containers: &mut [Container]) -> Result<(), DockerError> {
    let on_default_bridge: Vec<(usize, String)> = containers
        .iter()
        .enumerate()
        .filter(|(_, c)| c.endpoints.iter().any(|e| e.network_name == DEFAULT_BRIDGE))
        .map(|(i, c)| (i, c.id.clone()))
        .collect();
    let results: Vec<_> = stream::iter(on_default_bridge)
        .map(|(i, id)| async move { (i, links_of(docker, &id).await) })
        .buffer_unordered(CONCURRENT_INSPECTS)
        .collect()
        .await;
    for (i, result) in results {
        // `None`: gone between the list and the inspect; the next read will not list it either.
        if let Some(links) = result? {
            containers[i].links = links;
        }
    }
    Ok(())
}

/// The children a container links to, sorted; `None` when the container no longer exists.
async fn links_of(docker: &Docker, id: &str) -> Result<Option<Vec<String>>, DockerError> {
    let inspect = match docker.inspect_container(id, None).await {
        Ok(inspect) => inspect,
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 404, ..
        }) => return Ok(None),
        Err(source) => {
            return Err(DockerError::Api {
                call: "GET /containers/{id}/json",
                source,
            });
        }
    };
    let entries = inspect
        .host_config
        .and_then(|h| h.links)
        .unwrap_or_default();
    let mut links: Vec<String> = entries.iter().filter_map(|l| link_child(l)).collect();
    links.sort();
    links.dedup();
    Ok(Some(links))
}

/// The child's name in one `HostConfig.Links` entry, `/child:/parent/alias`.
fn link_child(entry: &str) -> Option<String> {
    let child = entry.split(':').next()?.trim_start_matches('/');
    (!child.is_empty()).then(|| child.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_entries_name_the_child() {
        assert_eq!(link_child("/db:/app/database").as_deref(), Some("db"));
        assert_eq!(link_child(""), None);
    }
}
