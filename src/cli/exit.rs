//! Exit statuses, in one place: every command ends in an [`Exit`] (its result) or a
//! [`Failure`] (a typed error), and only here do they become numbers.
//!
//! The numbers are an interface: scripts, monitoring and the systemd unit read them (the unit
//! has `RestartPreventExitStatus=6`, so a broken configuration does not restart in a loop).
//! They are listed for the operator in `--help` ([`HELP`]) and docs/troubleshooting.md; change
//! all three together, and never renumber.

use std::process::ExitCode;

/// What a command found, when it ran to the end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// 0: done; nothing to report.
    Ok,
    /// 3: `apply` (or `status` of a daemon) stands down: Docker manages IPv6 itself.
    StoodDown,
    /// 4: `audit`: a port is reachable from outside although nobody published it.
    ExposureFound,
    /// 5: `audit`, `status`: not enforced, or cannot judge (the kernel's table differs from
    /// the plan, the daemon is not running or its loop is stuck, a reconcile failed).
    NotEnforced,
}

/// Why a command could not do its job. The message is for the person at the terminal.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// 1: anything not listed below (a bug, an unreadable snapshot file, ...).
    #[error("{0}")]
    Unexpected(String),
    /// 3: Docker manages IPv6 itself, so v6guard does not install its tables (`--force`).
    #[error("not applying. {0}")]
    StoodDown(String),
    /// 6: v6guard.yaml, a policy file or dockerd's daemon.json cannot be read or is invalid.
    #[error("{0}")]
    Config(String),
    /// 7: the Docker API cannot be reached, or does not answer.
    #[error("{0}")]
    DockerUnreachable(String),
    /// 8: the kernel refused the ruleset (or netlink could not be used at all).
    #[error("{0}")]
    KernelRefused(String),
}

/// The list shown at the end of `v6guard --help`.
pub const HELP: &str = "\
Exit status:
  0  ok
  1  unexpected error
  2  usage error (bad arguments)
  3  stood down: Docker manages IPv6 itself (apply without --force, status)
  4  exposure found: a port reachable from outside that nobody published (audit)
  5  not enforced, or cannot judge (audit, status)
  6  configuration error (v6guard.yaml, policy files, daemon.json)
  7  Docker unreachable
  8  the kernel refused the ruleset";

impl Exit {
    pub fn code(self) -> u8 {
        match self {
            Exit::Ok => 0,
            Exit::StoodDown => 3,
            Exit::ExposureFound => 4,
            Exit::NotEnforced => 5,
        }
    }

    /// The audit report's own status (`v6guard::audit::exit`).
    pub fn from_audit(code: u8) -> Exit {
        use v6guard::audit::exit;
        match code {
            exit::CLEAN => Exit::Ok,
            exit::BEYOND_PUBLISHED => Exit::ExposureFound,
            _ => Exit::NotEnforced,
        }
    }
}

impl Failure {
    pub fn code(&self) -> u8 {
        match self {
            Failure::Unexpected(_) => 1,
            Failure::StoodDown(_) => 3,
            Failure::Config(_) => 6,
            Failure::DockerUnreachable(_) => 7,
            Failure::KernelRefused(_) => 8,
        }
    }
}

impl From<Exit> for ExitCode {
    fn from(exit: Exit) -> ExitCode {
        ExitCode::from(exit.code())
    }
}

impl From<v6guard::read::ReadError> for Failure {
    /// daemon.json is configuration; everything else in a read is Docker not answering.
    fn from(error: v6guard::read::ReadError) -> Failure {
        use v6guard::read::ReadError;
        match error {
            ReadError::Settings(e) => Failure::Config(e.to_string()),
            ReadError::Docker(e) => Failure::DockerUnreachable(e.to_string()),
            e @ ReadError::Deadline(_) => Failure::DockerUnreachable(e.to_string()),
        }
    }
}

impl From<v6guard::docker::DockerError> for Failure {
    fn from(error: v6guard::docker::DockerError) -> Failure {
        Failure::DockerUnreachable(error.to_string())
    }
}

impl From<v6guard::nft::NftError> for Failure {
    fn from(error: v6guard::nft::NftError) -> Failure {
        Failure::KernelRefused(error.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The help text and the codes must not drift apart.
    #[test]
    fn every_code_is_in_the_help() {
        let failures = [
            Failure::Unexpected(String::new()),
            Failure::StoodDown(String::new()),
            Failure::Config(String::new()),
            Failure::DockerUnreachable(String::new()),
            Failure::KernelRefused(String::new()),
        ];
        let exits = [
            Exit::Ok,
            Exit::StoodDown,
            Exit::ExposureFound,
            Exit::NotEnforced,
        ];
        let codes = failures
            .iter()
            .map(Failure::code)
            .chain(exits.iter().map(|e| e.code()));
        for code in codes {
            assert!(HELP.contains(&format!("\n  {code}  ")), "{code} in {HELP}");
        }
    }

    #[test]
    fn audit_statuses_keep_their_numbers() {
        use v6guard::audit::exit;
        for code in [
            exit::CLEAN,
            exit::BEYOND_PUBLISHED,
            exit::COULD_NOT_EVALUATE,
        ] {
            assert_eq!(Exit::from_audit(code).code(), code);
        }
    }
}
