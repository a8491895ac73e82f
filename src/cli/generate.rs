//! `v6guard generate man|bash|zsh|fish`: the man page and shell completions, generated from
//! the same clap definition the binary parses with, so they cannot drift from the real flags.
//! Hidden from `--help`: packagers run it (scripts/build-deb.sh), operators do not need it.
//! `man --out-dir DIR` writes v6guard.8 and one page per command (v6guard-render.8, ...), which
//! the main page's COMMANDS section names, as git's pages do.

use std::io::{self, Write};
use std::path::Path;

use clap::{CommandFactory, ValueEnum};
use clap_complete::Shell;

use super::Cli;
use super::exit::{Exit, Failure};

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

/// Write `artifact` to stdout, or the man pages into `out_dir`.
pub fn generate(artifact: Artifact, out_dir: Option<&Path>) -> Result<Exit, Failure> {
    if let Some(dir) = out_dir {
        let Artifact::Man = artifact else {
            return Err(Failure::Unexpected(
                "--out-dir is for `generate man`; completions go to stdout".to_string(),
            ));
        };
        for (name, page) in
            man_pages().map_err(|e| Failure::Unexpected(format!("cannot generate: {e}")))?
        {
            let path = dir.join(format!("{name}.8"));
            std::fs::write(&path, page).map_err(|e| {
                Failure::Unexpected(format!("cannot write {}: {e}", path.display()))
            })?;
        }
        return Ok(Exit::Ok);
    }
    let mut out = Vec::new();
    write_artifact(artifact, &mut out)
        .map_err(|e| Failure::Unexpected(format!("cannot generate: {e}")))?;
    io::stdout()
        .write_all(&out)
        .map_err(|e| Failure::Unexpected(format!("cannot write to stdout: {e}")))?;
    Ok(Exit::Ok)
}

/// The main page and one per visible command: (page name, roff text).
fn man_pages() -> io::Result<Vec<(String, Vec<u8>)>> {
    let mut command = Cli::command().display_name("v6guard");
    command.build();
    let mut main = Vec::new();
    clap_mangen::Man::new(command.clone())
        .section("8")
        .render(&mut main)?;
    let mut pages = vec![("v6guard".to_string(), main)];
    // `help` is clap's own; `v6guard help COMMAND` is `v6guard COMMAND --help`.
    for sub in command
        .get_subcommands()
        .filter(|c| !c.is_hide_set() && c.get_name() != "help")
    {
        let name = format!("v6guard-{}", sub.get_name());
        let mut page = Vec::new();
        let sub = sub
            .clone()
            .display_name(name.clone())
            .version(env!("CARGO_PKG_VERSION"));
        clap_mangen::Man::new(sub).section("8").render(&mut page)?;
        pages.push((name, page));
    }
    Ok(pages)
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
    fn every_command_has_its_page_with_its_flags() {
        let pages = man_pages().expect("pages");
        let names: Vec<&str> = pages.iter().map(|(n, _)| n.as_str()).collect();
        for name in [
            "v6guard",
            "v6guard-render",
            "v6guard-audit",
            "v6guard-check-config",
        ] {
            assert!(names.contains(&name), "{names:?}");
        }
        assert!(!names.contains(&"v6guard-generate"), "{names:?}");
        assert!(!names.contains(&"v6guard-help"), "{names:?}");
        let (_, audit) = pages
            .iter()
            .find(|(n, _)| n == "v6guard-audit")
            .expect("audit page");
        let audit = String::from_utf8_lossy(audit);
        assert!(audit.contains(".TH v6guard-audit 8"), "{audit}");
        assert!(audit.contains("\\-\\-probe"), "{audit}");
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
