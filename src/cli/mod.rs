//! The `v6guard` command line: arguments (`args`) and one module per group of commands.

mod args;
mod audit;
mod check_config;
mod commands;
mod daemon;
mod diff;
mod exit;
mod generate;
mod probe;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use args::{CheckConfigArgs, CleanupArgs, DaemonArgs, Format, ReadArgs, RenderArgs, SnapshotArgs};
pub use exit::{Exit, Failure};
use v6guard::config::LogFormat;

/// Gives Docker's IPv6 the firewall Docker gives IPv4: ICC blocking, isolation between
/// networks and publish-only exposure, as nftables tables (ip6 v6guard, and bridge v6guard for
/// Layer 2) replaced atomically.
#[derive(Parser)]
#[command(name = "v6guard", version, about, long_about = None, after_help = exit::HELP)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Print the ruleset `apply` would install, as an nft script (the dry run; changes nothing),
    /// or as JSON, or (`--diff`) only what apply would change in the live table.
    Render(RenderArgs),
    /// Install the ruleset: replace tables ip6 v6guard and bridge v6guard in one atomic
    /// transaction.
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
    Snapshot(SnapshotArgs),
    /// Remove every nftables table v6guard owns (ip6 and bridge tables named v6guard*) and the
    /// NDP proxy entries its policies add. Nothing else is touched.
    Cleanup(CleanupArgs),
    /// Run as a service: follow Docker's events and keep the table true to them, restore it
    /// when someone else changes it. Rules stay in place when the daemon stops (fail-closed).
    Daemon(DaemonArgs),
    /// Show the running daemon's last reconcile and counters (from its state file).
    ///
    /// Exit status: 0 enforcing; 3 standing down (Docker manages IPv6); 5 not enforced (the
    /// daemon is not running, its loop has not reported within its own deadline, or the last
    /// reconcile failed).
    #[command(verbatim_doc_comment)]
    Status {
        /// The daemon's state file.
        #[arg(long, value_name = "PATH", default_value = v6guard::daemon::status::DEFAULT_STATE_FILE)]
        state_file: PathBuf,
        /// Output format (json: the state file plus the judgement, with schema_version).
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
        /// The same as `--format json`.
        #[arg(long)]
        json: bool,
    },
    /// Make the running daemon re-read its configuration (SIGHUP) and wait for its answer:
    /// exit 0 when the new configuration is in force, 6 when it was rejected (the old one
    /// stays), 1 when the daemon does not answer. For systemd's ExecReload.
    Reload {
        /// The daemon's state file (it names the daemon's pid and carries its answer).
        #[arg(long, value_name = "PATH", default_value = v6guard::daemon::status::DEFAULT_STATE_FILE)]
        state_file: PathBuf,
        /// How long to wait for the answer.
        #[arg(long, value_name = "SECS", default_value_t = 30)]
        timeout: u64,
    },
    /// What can really reach each container's IPv6 ports: every listening socket (read from
    /// the containers themselves) and every published port, per source (outside, other
    /// networks, the same network, the host), how (directly, DNAT, docker-proxy) and why,
    /// after checking the kernel holds the plan; plus the host's hazards, each with its fix.
    ///
    /// Exit status: 0 nothing reachable from outside beyond what was published; 4 a port is
    /// reachable from outside although nobody published it; 5 some verdict could not be
    /// evaluated (v6guard's tables differ from the plan, Docker manages IPv6, sockets
    /// unreadable) or `--probe` disagreed with one; 6, 7 as below.
    #[command(verbatim_doc_comment)]
    Audit {
        #[command(flatten)]
        read: ReadArgs,
        /// Output format.
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
        /// The same as `--format json`.
        #[arg(long)]
        json: bool,
        /// Confirm each TCP verdict from outside with a real connection, from a temporary
        /// network namespace attached to the host like an outside host (created and removed
        /// by the audit; needs root and `ip`). Disagreements are listed, exit status 5.
        #[arg(long)]
        probe: bool,
    },
    /// Check v6guard.yaml and the policy files, changing nothing: every error with its file,
    /// line, column and key (exit 6), and warnings for names Docker does not know.
    CheckConfig(CheckConfigArgs),
    /// Write the man page or a shell's completions to stdout (for packagers).
    #[command(hide = true)]
    Generate {
        #[arg(value_enum)]
        artifact: generate::Artifact,
        /// Write the man pages (v6guard.8, v6guard-COMMAND.8) into this directory.
        #[arg(long, value_name = "DIR")]
        out_dir: Option<PathBuf>,
    },
}

/// Run one command: what it found, or why it could not do its job.
pub async fn run(command: Command) -> Result<Exit, Failure> {
    match command {
        Command::Render(args) => commands::render(&args).await,
        Command::Apply { read, force } => commands::apply(&read, force).await,
        Command::Snapshot(args) => commands::snapshot(&args).await,
        Command::Cleanup(args) => commands::cleanup(&args).await,
        Command::Audit {
            read,
            format,
            json,
            probe,
        } => audit::audit(&read, Format::or_json(format, json), probe).await,
        Command::Daemon(args) => daemon::daemon(args).await,
        Command::Status {
            state_file,
            format,
            json,
        } => daemon::status(&state_file, Format::or_json(format, json)),
        Command::Reload {
            state_file,
            timeout,
        } => daemon::reload(&state_file, std::time::Duration::from_secs(timeout)),
        Command::CheckConfig(args) => check_config::check_config(args).await,
        Command::Generate { artifact, out_dir } => generate::generate(artifact, out_dir.as_deref()),
    }
}

/// `log_format` from the v6guard.yaml this command reads, so logging can be set up before
/// the command runs. A file that does not load gives text: the command itself then reports
/// the file's errors.
pub fn log_format(command: &Command) -> LogFormat {
    let files = match command {
        Command::Render(args) => &args.read.config,
        Command::Apply { read, .. } | Command::Audit { read, .. } => &read.config,
        Command::Snapshot(args) => &args.config,
        Command::Cleanup(args) => &args.config,
        Command::Daemon(args) => &args.config,
        Command::CheckConfig(args) => &args.files,
        Command::Status { .. } | Command::Reload { .. } | Command::Generate { .. } => {
            return LogFormat::Text;
        }
    };
    v6guard::config::load_config(files.config.as_deref())
        .map(|config| config.log_format)
        .unwrap_or_default()
}
