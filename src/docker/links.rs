//! Legacy links (`docker run --link child:alias`). The container list does not carry them, so
//! v6guard inspects just the containers that can have links: those on the default bridge
//! (Docker only supports legacy links there).

use bollard::Docker;

use super::DockerError;
use crate::snapshot::Container;

/// The default bridge network's name.
const DEFAULT_BRIDGE: &str = "bridge";

/// Fill in `links` for every container on the default bridge.
pub async fn add_links(docker: &Docker, containers: &mut [Container]) -> Result<(), DockerError> {
    for container in containers
        .iter_mut()
        .filter(|c| c.endpoints.iter().any(|e| e.network_name == DEFAULT_BRIDGE))
    {
        let inspect = match docker.inspect_container(&container.id, None).await {
            Ok(inspect) => inspect,
            // Gone between the list and the inspect: the next read will not list it either.
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => continue,
            Err(source) => {
                return Err(DockerError::Api {
                    call: "GET /containers/{id}/json",
                    source,
                });
            }
        };
        let links = inspect
            .host_config
            .and_then(|h| h.links)
            .unwrap_or_default();
        container.links = links.iter().filter_map(|l| link_child(l)).collect();
        container.links.sort();
        container.links.dedup();
    }
    Ok(())
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
