//! Container labels may narrow what the outside reaches, never widen it on their own: proven
//! with real traffic from the outside namespace against an image that carries
//! `LABEL v6guard.expose=1-65535/tcp` (issue 8, hole 1) and a container run with
//! `--label v6guard.expose=81/tcp`.

mod common;

use std::time::Duration;

use common::*;

const READY: Duration = Duration::from_secs(30);
const NETWORK: &str = "v6gt-lbl";
const SUBNET: &str = "fd76:6700:0:c1::/64";
/// An image derived from the lab image whose author asks for every TCP port to be open.
const EXPOSING_IMAGE: &str = "v6gt-lbl/exposing:latest";
const IMAGE_LABEL: &str = "v6guard.expose=1-65535/tcp";

/// A locally built image, removed on drop (after the containers using it, which are
/// declared later and so dropped first).
struct Image {
    name: &'static str,
}

impl Image {
    /// The lab image with one more `LABEL`, committed from a stopped container: `docker
    /// import` needs no registry but cannot add labels by itself.
    fn with_label(name: &'static str, label: &str) -> Image {
        let base = "v6gt-lbl-base";
        let _ = run(DOCKER, &["rm", "-f", base]);
        let _ = run(DOCKER, &["rmi", "-f", name]);
        docker(&["create", "--name", base, IMAGE, "true"]);
        let change = format!("LABEL {label}");
        let committed = run(DOCKER, &["commit", "--change", &change, base, name]);
        let _ = run(DOCKER, &["rm", "-f", base]);
        assert!(
            committed.status.success(),
            "docker commit: {}",
            String::from_utf8_lossy(&committed.stderr)
        );
        Image { name }
    }
}

impl Drop for Image {
    fn drop(&mut self) {
        let _ = run(DOCKER, &["rmi", "-f", self.name]);
    }
}

/// Like `Container::web`, from `image`.
fn web_from(image: &str, name: &str, extra: &[&str]) -> Container {
    let _ = run(DOCKER, &["rm", "-f", name]);
    let mut args = vec!["run", "-d", "--name", name, "--network", NETWORK];
    args.extend(extra);
    args.extend([
        image,
        "sh",
        "-c",
        "httpd -p 80 -h /www && httpd -f -p 81 -h /www",
    ]);
    docker(&args);
    Container {
        name: name.to_string(),
    }
}

/// `v6guard apply ARGS`, which must succeed; its stderr (where warnings go).
fn apply(args: &[&str]) -> String {
    let mut all = vec!["apply"];
    all.extend(args);
    let out = v6guard(&all);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "v6guard {all:?} failed: {stderr}");
    stderr
}

#[test]
fn labels_only_narrow_and_an_image_never_widens() {
    let Some(_lock) = system_lock() else { return };
    let _mode = ProxyMode::set(false);
    let _table = TableGuard::clean();
    let outside = Outside::up("v6gt-lbl-out");
    let image = Image::with_label(EXPOSING_IMAGE, IMAGE_LABEL);
    let net = Network::create(NETWORK, SUBNET, &[]);
    let from_image = web_from(image.name, "v6gt-lbl-image", &["-p", "18480:80"]);
    let run_label = web_from(
        IMAGE,
        "v6gt-lbl-run",
        &["-p", "18481:80", "--label", "v6guard.expose=81/tcp"],
    );
    let from_image_v6 = from_image.ipv6(&net.name);
    let run_label_v6 = run_label.ipv6(&net.name);
    let label = docker(&[
        "inspect",
        "--format",
        "{{index .Config.Labels \"v6guard.expose\"}}",
        &from_image.name,
    ]);
    assert_eq!(
        label.trim(),
        "1-65535/tcp",
        "Docker copies the image's label into the container"
    );

    // Control: without v6guard, IPv6 is routed to every port, so the probes can see traffic.
    for address in [&from_image_v6, &run_label_v6] {
        assert!(
            eventually(READY, || outside.connects(address, 81)),
            "baseline: [{address}]:81 is open before v6guard"
        );
    }

    let stderr = apply(&[]);
    for address in [&from_image_v6, &run_label_v6] {
        assert!(
            eventually(READY, || outside.connects(address, 80)),
            "control: the published port [{address}]:80 stays reachable"
        );
        assert!(
            !outside.connects(address, 81),
            "a label alone does not open the unpublished [{address}]:81"
        );
    }
    assert!(
        stderr.contains("container v6gt-lbl-run: label v6guard.expose")
            && stderr.contains("labels_may_expose"),
        "the ignored label is reported with its container and how to enable it:\n{stderr}"
    );

    let config = temp_file(
        "labels-may-expose.yaml",
        "defaults:\n  labels_may_expose: true\n",
    );
    let config = config.to_str().expect("utf-8 path");
    let stderr = apply(&["--config", config]);
    assert!(
        eventually(READY, || outside.connects(&run_label_v6, 81)),
        "with labels_may_expose, a `docker run --label` opens its port"
    );
    assert!(
        eventually(READY, || outside.connects(&from_image_v6, 80)),
        "control: the image-labelled container is up and its published port reachable"
    );
    assert!(
        !outside.connects(&from_image_v6, 81),
        "the image's own label never opens a port, even with labels_may_expose"
    );
    assert!(
        stderr.contains("container v6gt-lbl-image: label v6guard.expose")
            && stderr.contains("set by the image, not by whoever ran the container"),
        "the image's label is reported as ignored:\n{stderr}"
    );
}
