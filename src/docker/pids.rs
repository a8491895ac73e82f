//! Containers' init PIDs, which `/containers/json` does not carry. The audit reads what a
//! container listens on from `/proc/PID/net/*`, which shows the sockets of PID's network
//! namespace; only an inspect names the PID. Inspects run a few at a time, as for images.

use std::collections::BTreeMap;

use bollard::Docker;
use bollard::models::ContainerInspectResponse;
use futures_util::{StreamExt, stream};
use tracing::warn;

use super::DockerError;

/// Inspects in flight at once, as for images and links.
const CONCURRENT_INSPECTS: usize = 8;

/// The init PID of each running container among `ids`, by ID. A container that is gone
/// (removed between the list and the inspect) or not running has no PID and is left out.
pub async fn read_pids(
    docker: &Docker,
    ids: &[String],
) -> Result<BTreeMap<String, u32>, DockerError> {
    let results: Vec<(String, Result<Option<u32>, DockerError>)> = stream::iter(ids)
        .map(|id| async move { (id.clone(), pid_of_container(docker, id).await) })
        .buffer_unordered(CONCURRENT_INSPECTS)
        .collect()
        .await;
    let mut pids = BTreeMap::new();
    for (id, result) in results {
        if let Some(pid) = result? {
            pids.insert(id, pid);
        }
    }
    Ok(pids)
}

async fn pid_of_container(docker: &Docker, id: &str) -> Result<Option<u32>, DockerError> {
    match docker.inspect_container(id, None).await {
        Ok(inspect) => Ok(pid(&inspect)),
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 404, ..
        }) => Ok(None),
        Err(source) => Err(DockerError::Api {
            call: "GET /containers/{id}/json",
            source,
        }),
    }
}

/// `State.Pid` of an inspect, when the container runs. Docker reports 0 for a stopped
/// container; anything that is not a positive 32-bit PID is no PID (with a warning).
pub fn pid(inspect: &ContainerInspectResponse) -> Option<u32> {
    let state = inspect.state.as_ref()?;
    let raw = state.pid?;
    if raw == 0 || state.running == Some(false) {
        return None;
    }
    match u32::try_from(raw) {
        Ok(pid) => Some(pid),
        Err(_) => {
            warn!(
                container = inspect.id.as_deref().unwrap_or_default(),
                pid = raw,
                "Docker reports a PID that is not one; the container's listeners cannot be read"
            );
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inspect(state: &str) -> ContainerInspectResponse {
        serde_json::from_str(&format!(r#"{{"Id":"e1c3c0d3cb4f","State":{state}}}"#)).unwrap()
    }

    #[test]
    fn a_running_container_has_its_init_pid() {
        // `GET /containers/{id}/json` from Docker 20.10.24 (State, trimmed).
        let running = inspect(
            r#"{"Status":"running","Running":true,"Paused":false,"Restarting":false,
                "OOMKilled":false,"Dead":false,"Pid":41733,"ExitCode":0}"#,
        );
        assert_eq!(pid(&running), Some(41733));
    }

    #[test]
    fn stopped_and_odd_containers_have_none() {
        let stopped = inspect(r#"{"Status":"exited","Running":false,"Pid":0,"ExitCode":0}"#);
        assert_eq!(pid(&stopped), None);
        assert_eq!(pid(&inspect(r#"{"Running":true,"Pid":-1}"#)), None);
        assert_eq!(pid(&inspect(r#"{"Running":true}"#)), None);
        let no_state: ContainerInspectResponse = serde_json::from_str(r#"{"Id":"x"}"#).unwrap();
        assert_eq!(pid(&no_state), None);
    }
}
