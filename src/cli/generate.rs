//! `v6guard generate man|bash|zsh|fish`: the man page and shell completions, generated from
//! the same clap definition the binary parses with, so they cannot drift from the real flags.
//! Hidden from `--help`: packagers run it (scripts/build-deb.sh), operators do not need it.

use std::io::{self, Write};
use std::process::ExitCode;

use clap::{CommandFactory, ValueEnum};
use clap_complete::Shell;

use super::Cli;

/// What `generate` writes to stdout.
#[derive(Clone, Copy, ValueEnum)]
pub enum Artifact {
    /// The man page (roff, section 8: a system administration command).
    Man,
    /// Completions for bash (install as /usr/share/bash-completion/completions/v6guard).
    Bash,
    /// Completions for zsh (install as /usr/share/zsh/vendor-completions/_v6guard).
    Zsh,
    /// Completions for fish (install as /usr/share/fish/vendor_completions.d/v6guard.fish).
    Fish,
}

/// Write `artifact` to stdout.
pub fn generate(artifact: Artifact) -> Result<ExitCode, String> {
    let mut out = Vec::new();
    write_artifact(artifact, &mut out).map_err(|e| format!("cannot generate: {e}"))?;
    io::stdout()
        .write_all(&out)
        .map_err(|e| format!("cannot write to stdout: {e}"))?;
    Ok(ExitCode::SUCCESS)
}

fn write_artifact(artifact: Artifact, out: &mut Vec<u8>) -> io::Result<()> {
    let mut command = Cli::command();
    let shell = match artifact {
        Artifact::Man => {
            // Section 8: v6guard configures the kernel's firewall and runs as root.
            command = command.display_name("v6guard");
            return clap_mangen::Man::new(command).section("8").render(out);
        }
        Artifact::Bash => Shell::Bash,
        Artifact::Zsh => Shell::Zsh,
        Artifact::Fish => Shell::Fish,
    };
    clap_complete::generate(shell, &mut command, "v6guard", out);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(artifact: Artifact) -> String {
        let mut out = Vec::new();
        write_artifact(artifact, &mut out).expect("generate");
        String::from_utf8(out).expect("utf-8")
    }

    #[test]
    fn man_page_is_section_8_and_lists_the_commands() {
        let man = text(Artifact::Man);
        assert!(
            man.contains(".TH v6guard 8"),
            "{}",
            &man[..200.min(man.len())]
        );
        for command in ["render", "apply", "daemon", "audit", "check\\-config"] {
            assert!(man.contains(command), "man page lacks {command}");
        }
        // A hidden command stays out of the page.
        assert!(!man.contains("generate"), "the man page shows `generate`");
    }

    #[test]
    fn completions_know_the_commands_and_their_flags() {
        for artifact in [Artifact::Bash, Artifact::Zsh, Artifact::Fish] {
            let script = text(artifact);
            for word in ["check-config", "policies-dir", "snapshot"] {
                assert!(script.contains(word), "completion lacks {word}");
            }
        }
    }
}
