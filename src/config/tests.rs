//! v6guard.yaml, and loading files and directories from disk.

use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::*;
use crate::snapshot::GatewayMode;

const FILE: &str = "/etc/v6guard/v6guard.yaml";

fn config(text: &str) -> Result<Config, ConfigErrors> {
    parse_config(Path::new(FILE), text)
}

fn rejected(text: &str) -> Vec<String> {
    match config(text) {
        Ok(config) => panic!("accepted: {config:?}"),
        Err(errors) => errors.iter().map(ToString::to_string).collect(),
    }
}

/// A fresh directory under the system's temp dir, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let path = std::env::temp_dir().join(format!("v6guard-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).expect("create temp dir");
        TempDir(path)
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.join(name);
        fs::write(&path, text).expect("write");
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

#[test]
fn an_empty_config_is_all_defaults() {
    let config = config("# nothing set\n").unwrap();
    assert_eq!(config, Config::default());
    assert!(config.defaults.nat66_ula && !config.defaults.nat66_gua);
    assert!(config.defaults.fail_closed);
    assert_eq!(config.resync_interval, Duration::from_secs(300));
    assert_eq!(config.log_format, LogFormat::Text);
}

#[test]
fn every_key_parses() {
    let config = config(
        "docker_host: unix:///run/docker.sock\n\
         daemon_json: /etc/docker/daemon.json\n\
         defaults:\n  nat66_ula: false\n  nat66_gua: true\n  fail_closed: false\n\
         \x20 labels_may_expose: true\n  gateway_mode: nat-unprotected\n  strict_isolation: true\n\
         resync_interval: 5m\n\
         metrics_listen: \"[::1]:9723\"\n\
         log_format: json\n",
    )
    .unwrap();
    assert_eq!(
        config.docker_host.as_deref(),
        Some("unix:///run/docker.sock")
    );
    assert_eq!(
        config.daemon_json,
        Some(PathBuf::from("/etc/docker/daemon.json"))
    );
    assert_eq!(
        config.defaults,
        Defaults {
            nat66_ula: false,
            nat66_gua: true,
            fail_closed: false,
            labels_may_expose: true,
            gateway_mode: Some(GatewayMode::NatUnprotected),
            strict_isolation: true,
            mode: crate::config::Mode::Auto,
        }
    );
    assert_eq!(config.resync_interval, Duration::from_secs(300));
    assert_eq!(
        config.metrics_listen,
        Some("[::1]:9723".parse::<SocketAddr>().unwrap())
    );
    assert_eq!(config.log_format, LogFormat::Json);
    let json = serde_json::to_value(&config).unwrap();
    assert_eq!(json["resync_interval"], 300);
    assert_eq!(json["log_format"], "json");
    assert_eq!(json["defaults"]["gateway_mode"], "nat-unprotected");
}

#[test]
fn labels_only_narrow_and_the_gateway_mode_is_v6guards_own_by_default() {
    let defaults = Config::default().defaults;
    assert!(!defaults.labels_may_expose);
    assert_eq!(defaults.gateway_mode, None);
}

#[test]
fn new_defaults_are_validated_with_their_place() {
    assert_eq!(
        rejected(
            "defaults:\n  labels_may_expose: \"yes\"\n  gateway_mode: nat_unprotected\n\
             \x20 labels_may_expos: true\n"
        ),
        [
            format!(
                "{FILE}:2:22: defaults.labels_may_expose: `yes` is not a boolean; expected true \
                 or false"
            ),
            format!(
                "{FILE}:3:17: defaults.gateway_mode: `nat_unprotected` is not a gateway mode; \
                 expected one of nat, routed, nat-unprotected, isolated (Docker's words)"
            ),
            format!(
                "{FILE}:4:3: defaults.labels_may_expos: unknown key (did you mean \
                 labels_may_expose?); expected one of nat66_ula, nat66_gua, fail_closed, \
                 labels_may_expose, gateway_mode, strict_isolation, mode"
            ),
        ]
    );
}

#[test]
fn config_errors_name_file_line_and_key() {
    assert_eq!(
        rejected(
            "resync_intervall: 60\n\
             docker_host: docker.sock\n\
             daemon_json: daemon.json\n\
             defaults:\n  nat66_gua: \"no\"\n  failclosed: true\n\
             resync_interval: 0\n\
             metrics_listen: localhost:9723\n\
             log_format: logfmt\n"
        ),
        [
            format!(
                "{FILE}:1:1: resync_intervall: unknown key (did you mean resync_interval?); \
                 expected one of docker_host, daemon_json, defaults, resync_interval, \
                 metrics_listen, log_format"
            ),
            format!(
                "{FILE}:2:14: docker_host: `docker.sock` is not a Docker endpoint; expected \
                 unix:///PATH, tcp://HOST:PORT, http(s)://HOST:PORT or an absolute socket path"
            ),
            format!(
                "{FILE}:3:14: daemon_json: `daemon.json` is not an absolute path; expected an \
                 absolute path such as /etc/docker/daemon.json"
            ),
            format!(
                "{FILE}:5:14: defaults.nat66_gua: `no` is not a boolean; expected true or false"
            ),
            format!(
                "{FILE}:6:3: defaults.failclosed: unknown key (did you mean fail_closed?); \
                 expected one of nat66_ula, nat66_gua, fail_closed, labels_may_expose, \
                 gateway_mode, strict_isolation, mode"
            ),
            format!(
                "{FILE}:7:18: resync_interval: `0` is not a duration v6guard accepts; expected a \
                 duration from 1 second to 24 hours, such as 300 (seconds), 300s, 5m or 1h"
            ),
            format!(
                "{FILE}:8:17: metrics_listen: `localhost:9723` is not an address and port; \
                 expected an address and port such as [::1]:9723 or 127.0.0.1:9723"
            ),
            format!("{FILE}:9:13: log_format: `logfmt` is not a log format; expected text or json"),
        ]
    );
}

#[test]
fn an_explicit_config_path_must_exist_and_a_file_is_read() {
    let dir = TempDir::new("config");
    let missing = dir.0.join("missing.yaml");
    let error = load_config(Some(&missing)).unwrap_err().to_string();
    assert!(
        error.starts_with(&format!("{}: cannot read: ", missing.display())),
        "{error}"
    );
    let path = dir.write("v6guard.yaml", "log_format: json\n");
    assert_eq!(
        load_config(Some(&path)).unwrap().log_format,
        LogFormat::Json
    );
}

#[test]
fn an_explicit_policy_dir_must_exist() {
    let dir = TempDir::new("nodir");
    let missing = dir.0.join("policies");
    let error = load_policies(Some(&missing)).unwrap_err().to_string();
    assert!(
        error.starts_with(&format!("{}: cannot read: ", missing.display())),
        "{error}"
    );
    assert!(error.ends_with("expected a readable directory"), "{error}");
}

#[test]
fn policy_files_are_yaml_and_yml_in_name_order_and_nothing_else() {
    let dir = TempDir::new("order");
    dir.write("20-b.yml", "containers: {b: {}}\n");
    dir.write("10-a.yaml", "containers: {a: {}}\n");
    dir.write(".10-a.yaml.swp", "not: [yaml\n");
    dir.write("10-a.yaml.bak", "not: [yaml\n");
    dir.write("README.md", "# notes\n");
    fs::create_dir(dir.0.join("sub.yaml")).unwrap();
    let names: Vec<String> = policy_files(&dir.0)
        .unwrap()
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["10-a.yaml", "20-b.yml"]);
    let policy = load_policies(Some(&dir.0)).unwrap();
    assert_eq!(policy.containers.keys().collect::<Vec<_>>(), ["a", "b"]);
    assert_eq!(policy.containers["b"].origin.as_ref().unwrap().line, 1);
}

#[test]
fn every_error_in_every_file_is_reported() {
    let dir = TempDir::new("errors");
    let a = dir.write(
        "10-a.yaml",
        "networks:\n  web:\n    iccc: false\ncontainers:\n  db: {}\n",
    );
    let b = dir.write("20-b.yaml", "containers:\n  db: {deny: [0]}\n");
    let c = dir.write("30-c.yaml", "containers:\n  db: {}\n");
    let errors: Vec<String> = load_policies(Some(&dir.0))
        .unwrap_err()
        .iter()
        .map(ToString::to_string)
        .collect();
    let (a, b, c) = (a.display(), b.display(), c.display());
    assert_eq!(
        errors,
        [
            format!(
                "{a}:3:5: networks.web.iccc: unknown key (did you mean icc?); expected one of \
                 icc, nat66, snat_address, ndp_proxy, gateway_mode"
            ),
            format!(
                "{b}:2:3: containers.db: already defined at {a}:5:3; expected each container in \
                 one policy file only; merge the two entries"
            ),
            format!(
                "{b}:2:15: containers.db.deny[0]: `0` has port 0, outside 1 to 65535; expected \
                 PORT[-PORT][/tcp|udp|sctp] with ports from 1 to 65535, such as 80/tcp"
            ),
            format!(
                "{c}:2:3: containers.db: already defined at {a}:5:3; expected each container in \
                 one policy file only; merge the two entries"
            ),
        ]
    );
}

#[test]
fn the_example_policies_in_the_repository_are_valid() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
    let policy = match load_policies(Some(&dir)) {
        Ok(policy) => policy,
        Err(errors) => panic!("{errors}"),
    };
    assert!(!policy.containers.is_empty() && !policy.networks.is_empty());
}
