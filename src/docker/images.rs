//! The `v6guard.*` labels of each container's image. Docker copies an image's `LABEL`s into
//! every container made from it, so the container list alone cannot tell a label chosen by
//! whoever ran the container from one chosen by the image's author; the planner compares the
//! two so that an image can never open its container's ports (see config/labels.rs).
//!
//! Each image is inspected once per read, however many containers run it, a few at a time.
//! An image that cannot be inspected (removed with `docker rmi -f` while its containers run,
//! or any API error) leaves its containers' image labels unknown, which fails closed: none of
//! their labels may widen.

use std::collections::{BTreeMap, HashMap};

use bollard::Docker;
use bollard::models::ImageInspect;
use futures_util::{StreamExt, stream};
use tracing::warn;

use crate::config::LABEL_PREFIX;
use crate::snapshot::Container;

/// Inspects in flight at once, as for links: hides dockerd's latency without loading it.
const CONCURRENT_INSPECTS: usize = 8;

/// Fill in `image_labels` (and `image_labels_known`) of each container from its image, given
/// as `images[i]` for `containers[i]` (the image ID from the container list; `None` when
/// Docker did not say, which leaves the labels unknown).
pub async fn add_image_labels(
    docker: &Docker,
    containers: &mut [Container],
    images: &[Option<String>],
) {
    let mut unique: Vec<&str> = images.iter().flatten().map(String::as_str).collect();
    unique.sort_unstable();
    unique.dedup();
    let labels: HashMap<&str, Option<BTreeMap<String, String>>> = stream::iter(unique)
        .map(|image| async move { (image, image_labels(docker, image).await) })
        .buffer_unordered(CONCURRENT_INSPECTS)
        .collect()
        .await;
    for (container, image) in containers.iter_mut().zip(images) {
        let known = image
            .as_deref()
            .and_then(|image| labels.get(image)?.as_ref());
        match known {
            Some(labels) => {
                container.image_labels = labels.clone();
                container.image_labels_known = true;
            }
            None => {
                container.image_labels.clear();
                container.image_labels_known = false;
            }
        }
    }
}

/// The image's `v6guard.*` labels, `None` (after a warning) when it cannot be inspected.
async fn image_labels(docker: &Docker, image: &str) -> Option<BTreeMap<String, String>> {
    match docker.inspect_image(image).await {
        Ok(inspect) => Some(v6guard_labels(&inspect)),
        Err(error) => {
            warn!(
                image,
                %error,
                "cannot inspect the image; its containers' v6guard.* labels count as the \
                 image's, so none of them may open a port"
            );
            None
        }
    }
}

/// `Config.Labels` of an image inspect, only the `v6guard.*` ones: the only labels v6guard
/// compares, and keeping the others would copy every image's metadata into each snapshot.
pub fn v6guard_labels(inspect: &ImageInspect) -> BTreeMap<String, String> {
    inspect
        .config
        .as_ref()
        .and_then(|config| config.labels.as_ref())
        .into_iter()
        .flatten()
        .filter(|(key, _)| key.starts_with(LABEL_PREFIX))
        .map(|(key, value)| (key.clone(), value.clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_v6guard_labels_of_the_image_config_are_kept() {
        // `GET /images/{id}/json` from Docker 20.10.24 (trimmed) for an image built with
        // `docker commit --change 'LABEL v6guard.expose=1-65535/tcp'`.
        let inspect: ImageInspect = serde_json::from_str(
            r#"{"Id":"sha256:5e3b","Config":{"Labels":{"v6guard.expose":"1-65535/tcp",
                "v6guard-lab.rev":"4","org.opencontainers.image.title":"lab"}}}"#,
        )
        .unwrap();
        assert_eq!(
            v6guard_labels(&inspect),
            BTreeMap::from([("v6guard.expose".to_string(), "1-65535/tcp".to_string())])
        );
    }

    #[test]
    fn an_image_without_labels_has_none() {
        let inspect: ImageInspect =
            serde_json::from_str(r#"{"Id":"sha256:5e3b","Config":{"Labels":null}}"#).unwrap();
        assert!(v6guard_labels(&inspect).is_empty());
        let inspect: ImageInspect = serde_json::from_str(r#"{"Id":"sha256:5e3b"}"#).unwrap();
        assert!(v6guard_labels(&inspect).is_empty());
    }
}
