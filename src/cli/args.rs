//! Command-line arguments shared by the commands, and how they combine with v6guard.yaml.

use std::path::PathBuf;

use clap::Args;

use super::exit::Failure;
use v6guard::config::{self, Config, ConfigErrors};
use v6guard::daemon::inputs::InputsError;
use v6guard::plan::{PlanInputs, PlanOptions};

#[derive(Args)]
pub struct DockerArgs {
    /// Docker API endpoint. Default: docker_host in v6guard.yaml, else
    /// unix:///var/run/docker.sock.
    #[arg(long, env = "DOCKER_HOST")]
    pub docker_host: Option<String>,
    /// dockerd's config file. Default: the --config-file dockerd runs with, else
    /// /etc/docker/daemon.json. Flags on dockerd's command line win over it, as in dockerd.
    #[arg(long, value_name = "PATH")]
    pub daemon_json: Option<PathBuf>,
}

/// How a report is printed (`--format`, Docker's word). JSON output carries `schema_version`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Json,
}

impl Format {
    /// `--json` is kept as an alias of `--format json`.
    pub fn or_json(format: Format, json: bool) -> Format {
        if json { Format::Json } else { format }
    }
}

/// The version of every JSON document v6guard prints (render, status, check-config; audit
/// has its own in its report). Raised when a field changes meaning or goes away; adding a
/// field does not raise it.
pub const SCHEMA_VERSION: u32 = 1;

/// How `render` prints the ruleset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RenderFormat {
    /// The nft script `apply` performs (`nft -f` loads it).
    Nft,
    /// The planned ruleset as data.
    Json,
}

impl RenderFormat {
    /// `--json` is kept as an alias of `--format json`.
    pub fn from_flags(format: RenderFormat, json: bool) -> RenderFormat {
        if json { RenderFormat::Json } else { format }
    }
}

#[derive(Args)]
pub struct RenderArgs {
    #[command(flatten)]
    pub read: ReadArgs,
    /// Output format.
    #[arg(long, value_enum, default_value = "nft")]
    pub format: RenderFormat,
    /// The same as `--format json`.
    #[arg(long, conflicts_with = "diff")]
    pub json: bool,
    /// Print only what apply would change in the live tables (nft commands), reading the
    /// kernel (needs root). Exit 0 whether or not anything would change.
    #[arg(long)]
    pub diff: bool,
}

/// `cleanup`: Docker is asked for the subnets of `ndp_proxy` networks only.
#[derive(Args)]
pub struct CleanupArgs {
    #[command(flatten)]
    pub docker: DockerArgs,
    #[command(flatten)]
    pub config: ConfigArgs,
}

#[derive(Args)]
pub struct SnapshotArgs {
    #[command(flatten)]
    pub docker: DockerArgs,
    #[command(flatten)]
    pub config: ConfigArgs,
}

#[derive(Args)]
pub struct ReadArgs {
    #[command(flatten)]
    pub docker: DockerArgs,
    /// Use a saved snapshot (`v6guard snapshot > FILE`) instead of reading Docker.
    #[arg(long, value_name = "FILE")]
    pub snapshot: Option<PathBuf>,
    #[command(flatten)]
    pub config: ConfigArgs,
}

impl DockerArgs {
    /// The Docker endpoint: the flag (or DOCKER_HOST), else v6guard.yaml, else the local socket.
    pub fn host(&self, config: &Config) -> String {
        self.docker_host
            .clone()
            .or_else(|| config.docker_host.clone())
            .unwrap_or_else(|| v6guard::docker::DEFAULT_SOCKET.to_string())
    }

    /// dockerd's config file: the flag, else v6guard.yaml, else dockerd's own choice.
    pub fn daemon_json(&self, config: &Config) -> Option<PathBuf> {
        self.daemon_json
            .clone()
            .or_else(|| config.daemon_json.clone())
    }
}

/// Where v6guard's own configuration is.
#[derive(Args)]
pub struct ConfigArgs {
    /// v6guard's configuration file. Default: /etc/v6guard/v6guard.yaml (missing: defaults).
    #[arg(long, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Directory of policy files (*.yaml, *.yml). Default: /etc/v6guard/policies (missing:
    /// no policy).
    #[arg(long, value_name = "DIR")]
    pub policies_dir: Option<PathBuf>,
}

#[derive(Args)]
pub struct DaemonArgs {
    #[command(flatten)]
    pub docker: DockerArgs,
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Re-read everything from Docker and re-plan this often, as a safety net. Default:
    /// resync_interval in v6guard.yaml (300 s).
    #[arg(long, value_name = "SECS")]
    pub resync_interval: Option<u64>,
    /// Check that the kernel still holds the applied table this often (the nftables change
    /// monitor catches most drift at once; this is its backup).
    #[arg(long, value_name = "SECS", default_value_t = 10)]
    pub verify_interval: u64,
    /// Serve Prometheus metrics at http://ADDR/metrics (e.g. 127.0.0.1:9576). Default:
    /// metrics_listen in v6guard.yaml; off when neither is set.
    #[arg(long, value_name = "ADDR")]
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// Remove v6guard's tables when stopping (default: leave them in place, fail-closed).
    #[arg(long)]
    pub cleanup_on_exit: bool,
    /// Where to write the daemon's status for `v6guard status`.
    #[arg(long, value_name = "PATH", default_value = v6guard::daemon::status::DEFAULT_STATE_FILE)]
    pub state_file: PathBuf,
    /// Apply even though Docker manages IPv6 itself.
    #[arg(long)]
    pub force: bool,
}

#[derive(Args)]
pub struct CheckConfigArgs {
    #[command(flatten)]
    pub files: ConfigArgs,
    /// Docker API endpoint for the name checks. Default: docker_host in the configuration
    /// file, else the local socket.
    #[arg(long, env = "DOCKER_HOST")]
    pub docker_host: Option<String>,
    /// Output format: json prints the errors (file, line, column, key) and warnings as data.
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
    /// The same as `--format json`.
    #[arg(long)]
    pub json: bool,
    /// Check names against a saved snapshot (`v6guard snapshot > FILE`) instead of Docker.
    #[arg(long, value_name = "FILE", conflicts_with = "offline")]
    pub snapshot: Option<PathBuf>,
    /// Do not contact Docker: check the files only.
    #[arg(long)]
    pub offline: bool,
}

/// Load v6guard.yaml and the policy files, or every error found in them. Nothing may be read
/// from Docker or written to the kernel before this succeeds.
pub fn load_inputs(files: &ConfigArgs) -> Result<(Config, PlanInputs), Failure> {
    load_inputs_typed(files).map_err(|e| Failure::Config(e.to_string()))
}

/// [`load_inputs`] with every configuration and policy error kept, for the daemon's reload.
pub fn load_inputs_typed(files: &ConfigArgs) -> Result<(Config, PlanInputs), InputsError> {
    let config = config::load_config(files.config.as_deref());
    let policy = config::load_policies(files.policies_dir.as_deref());
    match (config, policy) {
        (Ok(config), Ok(policy)) => {
            let options = PlanOptions::from_defaults(&config.defaults);
            Ok((config, PlanInputs { options, policy }))
        }
        (config, policy) => {
            let errors = [config.err(), policy.err()]
                .into_iter()
                .flatten()
                .flat_map(|e| e.0)
                .collect();
            Err(InputsError(ConfigErrors(errors)))
        }
    }
}
