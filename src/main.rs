//! The `v6guard` binary: the command line is parsed (`cli`), logging set up from the
//! configuration it names (`v6guard::logging`), the command run, and its result turned into
//! the exit status (`cli::exit`, the one place the numbers live).

mod cli;

use std::process::ExitCode;

use clap::Parser;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    // Usage errors exit 2 (clap's own convention) before anything else runs.
    let cli = cli::Cli::parse();
    let logging = v6guard::logging::Setup::from_env(cli::log_format(&cli.command));
    logging.init();
    match cli::run(cli.command).await {
        Ok(exit) => exit.into(),
        Err(failure) => {
            // For a person: one plain line. For the journal or a log pipeline: an error
            // event, so it carries its priority (`journalctl -p err`) or its JSON fields.
            if logging.is_for_machines() {
                tracing::error!(exit_code = failure.code(), "{failure}");
            } else {
                eprintln!("v6guard: {failure}");
            }
            ExitCode::from(failure.code())
        }
    }
}
