//! The `v6guard` binary: logging, then the command line (`cli`).

mod cli;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;

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
    let cli = cli::Cli::parse();
    match cli::run(cli.command).await {
        Ok(code) => code,
        Err(message) => {
            eprintln!("v6guard: {message}");
            ExitCode::FAILURE
        }
    }
}
