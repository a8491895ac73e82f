//! The `v6guard` command line: arguments (`args`) and one module per group of commands.

mod args;
mod audit;
mod check_config;
mod commands;
mod daemon;
mod generate;
mod probe;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use args::{CheckConfigArgs, DaemonArgs, DockerArgs, ReadArgs};

/// Gives Docker's IPv6 the firewall Docker gives IPv4: ICC blocking, isolation between
/// networks and publish-only exposure, as nftables tables (ip6 v6guard, and bridge v6guard for
/// Layer 2) replaced atomically.
#[derive(Parser)]
#[command(name = "v6guard", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Print the ruleset `apply` would install, as an nft script (the dry run; changes nothing).
    Render(ReadArgs),
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
    Snapshot(DockerArgs),
    /// Remove every nftables table v6guard owns (ip6 and bridge tables named v6guard*). Nothing
    /// else is touched.
    Cleanup,
    /// Run as a service: follow Docker's events and keep the table true to them, restore it
    /// when someone else changes it. Rules stay in place when the daemon stops (fail-closed).
    Daemon(DaemonArgs),
    /// Show the running daemon's last reconcile and counters (from its state file).
    Status {
        /// The daemon's state file.
        #[arg(long, value_name = "PATH", default_value = v6guard::daemon::status::DEFAULT_STATE_FILE)]
        state_file: PathBuf,
        /// Print the state file's JSON instead of a summary.
        #[arg(long)]
        json: bool,
    },
    /// What can really reach each container's IPv6 ports: every listening socket (read from
    /// the containers themselves) and every published port, per source (outside, other
    /// networks, the same network, the host), how (directly, DNAT, docker-proxy) and why,
    /// after checking the kernel holds the plan; plus the host's hazards, each with its fix.
    ///
    /// Exit status: 0 nothing reachable from outside beyond what was published; 4 a port is
    /// reachable from outside although nobody published it; 5 some verdict could not be
    /// evaluated (v6guard's tables differ from the plan, Docker manages IPv6, sockets
    /// unreadable) or `--probe` disagreed with one; 1 an error.
    #[command(verbatim_doc_comment)]
    Audit {
        #[command(flatten)]
        read: ReadArgs,
        /// Output format.
        #[arg(long, value_enum, default_value = "table")]
        format: audit::Format,
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
    /// line, column and key (exit 1), and warnings for names Docker does not know.
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

/// Run one command; `Err` is a message for the person at the terminal.
pub async fn run(command: Command) -> Result<ExitCode, String> {
    match command {
        Command::Render(read) => commands::render(&read).await,
        Command::Apply { read, force } => commands::apply(&read, force).await,
        Command::Snapshot(docker) => commands::snapshot(&docker).await,
        Command::Cleanup => commands::cleanup(),
        Command::Audit {
            read,
            format,
            json,
            probe,
        } => {
            let format = if json { audit::Format::Json } else { format };
            audit::audit(&read, format, probe).await
        }
        Command::Daemon(args) => daemon::daemon(args).await,
        Command::Status { state_file, json } => daemon::status(&state_file, json),
        Command::CheckConfig(args) => check_config::check_config(args).await,
        Command::Generate { artifact, out_dir } => generate::generate(artifact, out_dir.as_deref()),
    }
}
