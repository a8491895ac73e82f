//! The main configuration file, `/etc/v6guard/v6guard.yaml`: where Docker is, the defaults
//! policies adjust, and how the daemon runs. Every key is optional.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Serialize, Serializer};
use serde_yaml_ng::Value;

use super::error::ConfigErrors;
use super::keypath::KeyPath;
use super::values::{
    Invalid, parse_absolute_path, parse_docker_host, parse_duration, parse_gateway_mode,
    parse_listen,
};
use super::yaml::{Checker, Document, Table};
use crate::snapshot::GatewayMode;

/// How often the daemon re-reads Docker even without events, in case one was missed.
pub const DEFAULT_RESYNC_INTERVAL: Duration = Duration::from_secs(300);

/// The settings of `v6guard.yaml`, with defaults for every key left out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Config {
    /// Docker API endpoint. `None`: `--docker-host`, `DOCKER_HOST`, else the default socket.
    pub docker_host: Option<String>,
    /// dockerd's config file. `None`: the one dockerd runs with, else /etc/docker/daemon.json.
    pub daemon_json: Option<PathBuf>,
    pub defaults: Defaults,
    /// Full re-read of Docker between events.
    #[serde(serialize_with = "as_seconds")]
    pub resync_interval: Duration,
    /// Where to serve Prometheus metrics. `None`: no metrics endpoint.
    pub metrics_listen: Option<SocketAddr>,
    pub log_format: LogFormat,
}

/// Behaviour for networks and containers no policy mentions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Defaults {
    /// Masquerade IPv6 from networks with unique-local (fd00::/8) subnets when the network's
    /// masquerade option is on, as Docker does for IPv4: ULA cannot be routed on the internet.
    pub nat66_ula: bool,
    /// Masquerade IPv6 from networks with global subnets too. Off: global addresses are
    /// routed as they are, which is what they are for.
    pub nat66_gua: bool,
    /// Guard `docker0` and every `br-*` interface by name, so a network created while v6guard
    /// is not running is closed rather than open.
    pub fail_closed: bool,
    /// Let a container's `v6guard.expose` label open ports. Off: labels may only narrow,
    /// because Docker copies an image's labels into its containers and an image's author must
    /// not decide what the outside reaches. Even on, a label whose value is the image's own
    /// is ignored.
    pub labels_may_expose: bool,
    /// Gateway mode for networks whose policy and Docker options name none. `None`: v6guard's
    /// own default.
    pub gateway_mode: Option<GatewayMode>,
    /// Published ports reached through a host address obey ICC and network isolation too,
    /// as Docker 20.10's IPv4 rules with userland-proxy off. Off: they are reachable from
    /// other networks, as docker-proxy makes them and as Docker 28 documents.
    pub strict_isolation: bool,
    /// What v6guard installs where Docker firewalls IPv6 itself (`ip6tables` on).
    pub mode: Mode,
}

/// `defaults.mode`: how v6guard shares IPv6 with Docker.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// The full ruleset where Docker leaves IPv6 open; augment where Docker firewalls it.
    #[default]
    Auto,
    /// Only v6guard's narrowing drops (policy `deny`, `allow_from`), whoever firewalls IPv6.
    Augment,
    /// Install nothing where Docker firewalls IPv6 (apply exits 3, the daemon removes its
    /// table), as v6guard did before augment mode.
    StandDown,
}

impl Default for Defaults {
    fn default() -> Self {
        Defaults {
            nat66_ula: true,
            nat66_gua: false,
            fail_closed: true,
            labels_may_expose: false,
            gateway_mode: None,
            strict_isolation: false,
            mode: Mode::Auto,
        }
    }
}

/// Format of the log lines v6guard writes to stderr.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// For people and journald.
    #[default]
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            docker_host: None,
            daemon_json: None,
            defaults: Defaults::default(),
            resync_interval: DEFAULT_RESYNC_INTERVAL,
            metrics_listen: None,
            log_format: LogFormat::default(),
        }
    }
}

fn as_seconds<S: Serializer>(duration: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_u64(duration.as_secs())
}

const TOP_KEYS: [&str; 6] = [
    "docker_host",
    "daemon_json",
    "defaults",
    "resync_interval",
    "metrics_listen",
    "log_format",
];
const DEFAULTS_KEYS: [&str; 7] = [
    "nat66_ula",
    "nat66_gua",
    "fail_closed",
    "labels_may_expose",
    "gateway_mode",
    "strict_isolation",
    "mode",
];

/// Parse `v6guard.yaml`. Pure: `file` only names the text in messages. An empty file (or one
/// of comments only) is all defaults.
pub fn parse_config(file: &Path, text: &str) -> Result<Config, ConfigErrors> {
    let doc = Document::parse(file, text)?;
    let mut checker = Checker::new(&doc);
    let root = KeyPath::default();
    let mut config = Config::default();
    if let Some(top) = checker.fields(doc.root(), &root, &TOP_KEYS) {
        read_top(&mut checker, &top, &root, &mut config);
    }
    ConfigErrors(checker.finish()).into_result(config)
}

fn read_top(checker: &mut Checker, top: &Table, root: &KeyPath, config: &mut Config) {
    config.docker_host = scalar(checker, top, root, "docker_host", parse_docker_host);
    config.daemon_json = scalar(checker, top, root, "daemon_json", parse_absolute_path);
    config.metrics_listen = scalar(checker, top, root, "metrics_listen", parse_listen);
    if let Some(interval) = scalar(checker, top, root, "resync_interval", parse_duration) {
        config.resync_interval = interval;
    }
    if let Some(format) = scalar(checker, top, root, "log_format", parse_log_format) {
        config.log_format = format;
    }
    if let Some(value) = top.get("defaults") {
        read_defaults(checker, value, &root.key("defaults"), &mut config.defaults);
    }
}

/// The value under `key`, parsed; `None` when absent or (after reporting) invalid.
fn scalar<T>(
    checker: &mut Checker,
    top: &Table,
    root: &KeyPath,
    key: &str,
    parse: impl FnOnce(&str) -> Result<T, Invalid>,
) -> Option<T> {
    let value = top.get(key)?;
    checker.parsed(value, &root.key(key), parse)
}

fn read_defaults(checker: &mut Checker, value: &Value, path: &KeyPath, defaults: &mut Defaults) {
    let Some(fields) = checker.fields(value, path, &DEFAULTS_KEYS) else {
        return;
    };
    let targets = [
        ("nat66_ula", &mut defaults.nat66_ula),
        ("nat66_gua", &mut defaults.nat66_gua),
        ("fail_closed", &mut defaults.fail_closed),
        ("labels_may_expose", &mut defaults.labels_may_expose),
        ("strict_isolation", &mut defaults.strict_isolation),
    ];
    for (key, target) in targets {
        if let Some(value) = fields.get(key) {
            if let Some(flag) = checker.bool(value, &path.key(key)) {
                *target = flag;
            }
        }
    }
    if let Some(value) = fields.get("gateway_mode") {
        defaults.gateway_mode =
            checker.parsed(value, &path.key("gateway_mode"), parse_gateway_mode);
    }
    if let Some(value) = fields.get("mode") {
        if let Some(mode) = checker.parsed(value, &path.key("mode"), parse_mode) {
            defaults.mode = mode;
        }
    }
}

fn parse_mode(text: &str) -> Result<Mode, Invalid> {
    match text {
        "auto" => Ok(Mode::Auto),
        "augment" => Ok(Mode::Augment),
        "stand-down" => Ok(Mode::StandDown),
        _ => Err(Invalid::new(
            format!("`{text}` is not a mode"),
            "auto, augment or stand-down",
        )),
    }
}

fn parse_log_format(text: &str) -> Result<LogFormat, Invalid> {
    match text {
        "text" => Ok(LogFormat::Text),
        "json" => Ok(LogFormat::Json),
        _ => Err(Invalid::new(
            format!("`{text}` is not a log format"),
            "text or json",
        )),
    }
}
