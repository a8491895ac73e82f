//! Operator configuration: `v6guard.yaml` (where Docker is, defaults, how the daemon runs) and
//! policy files (`policies/*.yaml`: per-network and per-container adjustments), plus the
//! per-container policy carried by labels.
//!
//! Loading is the only I/O here; parsing, validation, merging labels and checking names are
//! pure functions. Validation finds every error, not just the first, and each names its file,
//! line, column and key, and what is expected (see docs/configuration.md). A configuration
//! with any error is refused as a whole, so `apply` never installs half of what was meant.

mod error;
mod file;
mod keypath;
mod labels;
mod locate;
mod merge;
mod names;
mod policy;
mod ports;
mod values;
mod yaml;

pub use error::{ConfigError, ConfigErrors, Location, Warning};
pub use file::{Config, DEFAULT_RESYNC_INTERVAL, Defaults, LogFormat, Mode, parse_config};
pub use labels::{
    LABEL_ALLOW_FROM, LABEL_DENY, LABEL_EXPOSE, LABEL_PREFIX, LabelError,
    container_policy_from_labels,
};
pub use merge::effective_container_policy;
pub use names::{unknown_names, unknown_names_among};
pub use policy::{ContainerPolicy, NdpProxy, NetworkPolicy, Policy, combine, parse_policy_file};
pub use ports::PortSpec;
pub use values::Invalid;

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// The configuration file read when `--config` is not given.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/v6guard/v6guard.yaml";
/// The policy directory read when `--policies-dir` is not given.
pub const DEFAULT_POLICIES_DIR: &str = "/etc/v6guard/policies";

/// Read and validate `v6guard.yaml`. `None` reads [`DEFAULT_CONFIG_PATH`], whose absence
/// means all defaults; a path given explicitly must exist (a typo in `--config` must not
/// silently mean "defaults").
pub fn load_config(path: Option<&Path>) -> Result<Config, ConfigErrors> {
    let (path, required) = match path {
        Some(path) => (path.to_path_buf(), true),
        None => (PathBuf::from(DEFAULT_CONFIG_PATH), false),
    };
    match fs::read_to_string(&path) {
        Ok(text) => parse_config(&path, &text),
        Err(e) if e.kind() == io::ErrorKind::NotFound && !required => Ok(Config::default()),
        Err(source) => Err(read_error(path, source, "a readable YAML file").into()),
    }
}

/// Read and validate every policy file in `dir` (`*.yaml` and `*.yml`, in name order;
/// names starting with `.` and other files are skipped). `None` reads
/// [`DEFAULT_POLICIES_DIR`], whose absence means no policy; a directory given explicitly
/// must exist. Every file is checked even after one fails, so all errors are reported.
pub fn load_policies(dir: Option<&Path>) -> Result<Policy, ConfigErrors> {
    let (dir, required) = match dir {
        Some(dir) => (dir.to_path_buf(), true),
        None => (PathBuf::from(DEFAULT_POLICIES_DIR), false),
    };
    let files = match policy_files(&dir) {
        Ok(files) => files,
        Err(e) if e.kind() == io::ErrorKind::NotFound && !required => return Ok(Policy::default()),
        Err(source) => return Err(read_error(dir, source, "a readable directory").into()),
    };
    let mut errors = Vec::new();
    let mut policies = Vec::new();
    for file in files {
        match fs::read_to_string(&file) {
            Ok(text) => {
                let (policy, found) = policy::check_policy_file(&file, &text);
                policies.push(policy);
                errors.extend(found);
            }
            Err(source) => errors.push(read_error(file, source, "a readable YAML file")),
        }
    }
    let combined = match combine(policies) {
        Ok(policy) => Some(policy),
        Err(ConfigErrors(duplicates)) => {
            errors.extend(duplicates);
            None
        }
    };
    // Files come in name order, so this lists every error file by file, line by line.
    errors.sort_by_key(|e| e.location().map(|at| (at.file.clone(), at.line, at.column)));
    match combined {
        Some(policy) if errors.is_empty() => Ok(policy),
        _ => Err(ConfigErrors(errors)),
    }
}

/// The policy files of `dir`, in name order. Hidden files (editor and Ansible temporaries)
/// and files with other extensions (`.bak`, `.dpkg-old`, a README) are not policies.
pub fn policy_files(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        let is_policy =
            !name.starts_with('.') && (name.ends_with(".yaml") || name.ends_with(".yml"));
        if is_policy && path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

fn read_error(path: PathBuf, source: io::Error, expected: &'static str) -> ConfigError {
    ConfigError::Read {
        path,
        expected,
        source,
    }
}

#[cfg(test)]
mod tests;
