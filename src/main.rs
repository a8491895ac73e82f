//! The `v6guard` command line.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use clap::{Args, Parser, Subcommand};
use tracing::{info, warn};

use v6guard::nft;
use v6guard::plan::{self, PlanOptions};
use v6guard::read::take_snapshot;
use v6guard::snapshot::Snapshot;

/// Gives Docker's IPv6 the firewall Docker gives IPv4: ICC blocking, isolation between
/// networks and publish-only exposure, as one nftables table (ip6 v6guard) replaced atomically.
#[derive(Parser)]
#[command(name = "v6guard", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the ruleset `apply` would install, as an nft script (the dry run; changes nothing).
    Render(ReadArgs),
    /// Install the ruleset: replace table ip6 v6guard in one atomic transaction.
    Apply {
        #[command(flatten)]
        read: ReadArgs,
        /// Install even though Docker manages IPv6 itself (ip6tables on, Docker >= 27, or
        /// Docker's nftables backend).
        #[arg(long)]
        force: bool,
    },
    /// Print everything v6guard reads from Docker and dockerd's settings, as JSON. Attach it to
    /// bug reports; `render --snapshot FILE` reproduces the ruleset from it without Docker.
    Snapshot(DockerArgs),
    /// Remove every nftables table v6guard owns (ip6 tables named v6guard*). Nothing else is touched.
    Cleanup,
}

#[derive(Args)]
struct DockerArgs {
    /// Docker API endpoint.
    #[arg(long, env = "DOCKER_HOST", default_value = v6guard::docker::DEFAULT_SOCKET)]
    docker_host: String,
    /// dockerd's config file. Default: the --config-file dockerd runs with, else
    /// /etc/docker/daemon.json. Flags on dockerd's command line win over it, as in dockerd.
    #[arg(long, value_name = "PATH")]
    daemon_json: Option<PathBuf>,
}

#[derive(Args)]
struct ReadArgs {
    #[command(flatten)]
    docker: DockerArgs,
    /// Use a saved snapshot (`v6guard snapshot > FILE`) instead of reading Docker.
    #[arg(long, value_name = "FILE")]
    snapshot: Option<PathBuf>,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("V6GUARD_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let cli = Cli::parse();
    match run(cli.command).await {
        Ok(code) => code,
        Err(message) => {
            eprintln!("v6guard: {message}");
            ExitCode::FAILURE
        }
    }
}

/// Exit code when `apply` stands down because Docker manages IPv6 itself.
const EXIT_STOOD_DOWN: u8 = 3;

async fn run(command: Command) -> Result<ExitCode, String> {
    match command {
        Command::Render(read) => {
            let snapshot = load_snapshot(&read).await?;
            let ruleset = plan::plan(&snapshot, &PlanOptions::default());
            if let Some(reason) = plan::stand_down_reason(&snapshot) {
                warn!("apply would refuse: {reason}");
            }
            print!("{}", nft::render::render_script(&ruleset));
            Ok(ExitCode::SUCCESS)
        }
        Command::Apply { read, force } => apply(&read, force).await,
        Command::Snapshot(docker) => {
            let snapshot = take_snapshot(&docker.docker_host, docker.daemon_json.as_deref())
                .await
                .map_err(|e| e.to_string())?;
            let json = serde_json::to_string_pretty(&snapshot).map_err(|e| e.to_string())?;
            println!("{json}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Cleanup => {
            let removed = nft::cleanup().map_err(|e| e.to_string())?;
            if removed.is_empty() {
                info!("no v6guard tables were installed");
            } else {
                info!(tables = ?removed, "removed");
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn apply(read: &ReadArgs, force: bool) -> Result<ExitCode, String> {
    let started = Instant::now();
    let snapshot = load_snapshot(read).await?;
    if let Some(reason) = plan::stand_down_reason(&snapshot) {
        if !force {
            eprintln!("v6guard: not applying. {reason}");
            return Ok(ExitCode::from(EXIT_STOOD_DOWN));
        }
        warn!("--force: applying although {reason}");
    }
    let ruleset = plan::plan(&snapshot, &PlanOptions::default());
    ensure_icc_enforceable(&snapshot);
    nft::apply(&ruleset).map_err(|e| e.to_string())?;
    info!(
        rules = ruleset.rule_count(),
        published = ruleset.element_count(),
        ms = started.elapsed().as_millis() as u64,
        "applied table ip6 {}",
        ruleset.table
    );
    Ok(ExitCode::SUCCESS)
}

/// ICC on IPv6 needs bridged IPv6 to reach the ip6 forward hook. Docker turns the matching
/// IPv4 sysctl on itself; v6guard does the same for IPv6 when some network has ICC off.
fn ensure_icc_enforceable(snapshot: &Snapshot) {
    let icc_off = snapshot.networks.iter().any(|n| !n.icc);
    if icc_off && !v6guard::host::bridge_nf_ip6tables() {
        if let Err(error) = v6guard::host::enable_bridge_nf_ip6tables() {
            warn!(
                %error,
                "ICC is off on some network but net.bridge.bridge-nf-call-ip6tables could not be \
                 turned on: containers on one bridge can still talk over IPv6"
            );
        }
    }
}

async fn load_snapshot(read: &ReadArgs) -> Result<Snapshot, String> {
    match &read.snapshot {
        Some(path) => load_snapshot_file(path),
        None => take_snapshot(&read.docker.docker_host, read.docker.daemon_json.as_deref())
            .await
            .map_err(|e| e.to_string()),
    }
}

fn load_snapshot_file(path: &Path) -> Result<Snapshot, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read snapshot {}: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| {
        format!(
            "{}:{}:{}: not a v6guard snapshot ({e}); make one with `v6guard snapshot > FILE`",
            path.display(),
            e.line(),
            e.column()
        )
    })
}
