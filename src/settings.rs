//! dockerd's firewall-relevant settings, from daemon.json and dockerd's command line.
//!
//! Docker 20.10's API does not report `icc`, `userland-proxy` or `ip6tables`, so v6guard reads
//! them where dockerd does: the config file (`--config-file`, default
//! /etc/docker/daemon.json) and the flags of the running dockerd, flags winning. Each value
//! remembers where it came from so messages can point at the right place.
//!
//! Paths are read as dockerd sees them: a dockerd in a chroot, a container or a snap has its
//! own root (`/proc/PID/root`) and working directory (`/proc/PID/cwd`), so its
//! `/etc/docker/daemon.json` is not the host's.

use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use ipnet::Ipv6Net;
use serde_json::Value;

use crate::snapshot::{DaemonSettings, Setting, Source};

/// dockerd's default config file.
pub const DEFAULT_DAEMON_JSON: &str = "/etc/docker/daemon.json";

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "{path}:{line}:{column}: not valid JSON ({message}); dockerd would refuse it too, fix the file"
    )]
    Json {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("{path}: the top level must be a JSON object")]
    NotAnObject { path: PathBuf },
    #[error("`{key}` in {origin} is {found}, expected {expected}")]
    BadValue {
        key: String,
        origin: Source,
        found: String,
        expected: &'static str,
    },
}

/// The running dockerd as seen in /proc.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DockerdProcess {
    pub pid: u32,
    /// argv without the program name.
    pub args: Vec<String>,
}

/// Read the settings of the running dockerd. `explicit_json` (`--daemon-json`) wins over the
/// `--config-file` dockerd was started with, which wins over /etc/docker/daemon.json. A
/// missing default file means Docker's defaults; a missing explicit file is an error.
pub fn read_daemon_settings(explicit_json: Option<&Path>) -> Result<DaemonSettings, SettingsError> {
    let process = find_dockerd();
    let args = process.as_ref().map(|p| p.args.clone()).unwrap_or_default();
    let (path, required) = match explicit_json {
        Some(path) => (path.to_path_buf(), true),
        None => {
            let (path, required) = match flag_value(&args, "config-file") {
                Some(path) => (PathBuf::from(path), true),
                None => (PathBuf::from(DEFAULT_DAEMON_JSON), false),
            };
            let view = process.as_ref().map(|p| ProcessView::of(p.pid));
            (view.unwrap_or_default().host_path(&path), required)
        }
    };
    let text = match fs::read_to_string(&path) {
        Ok(text) => Some(text),
        Err(e) if e.kind() == io::ErrorKind::NotFound && !required => None,
        Err(source) => return Err(SettingsError::Read { path, source }),
    };
    resolve(text.as_deref().map(|t| (path.as_path(), t)), &args)
}

/// Where a process's root and working directory are, seen from here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessView {
    /// Its `/` on this host: `/` for a process sharing our root, else `/proc/PID/root`.
    pub root: PathBuf,
    /// Its working directory on this host, for relative paths in its arguments.
    pub cwd: PathBuf,
}

impl Default for ProcessView {
    fn default() -> Self {
        ProcessView {
            root: PathBuf::from("/"),
            cwd: PathBuf::from("/"),
        }
    }
}

impl ProcessView {
    /// The view of process `pid`. A process whose root is ours keeps plain paths, so
    /// messages name /etc/docker/daemon.json rather than /proc/PID/root/etc/docker/daemon.json.
    pub fn of(pid: u32) -> ProcessView {
        let proc_root = PathBuf::from(format!("/proc/{pid}/root"));
        let proc_cwd = PathBuf::from(format!("/proc/{pid}/cwd"));
        // By device and inode, not by path: a process that pivoted into another root in its
        // own mount namespace (dockerd in a container) reads back as `/` through the link.
        let identity = |path: &Path| fs::metadata(path).map(|m| (m.dev(), m.ino()));
        let shares_root = match (identity(&proc_root), identity(Path::new("/proc/self/root"))) {
            (Ok(theirs), Ok(ours)) => theirs == ours,
            // Unreadable (no permission, or the process is gone): assume the host's root.
            _ => true,
        };
        if shares_root {
            let cwd = fs::read_link(&proc_cwd).unwrap_or_else(|_| PathBuf::from("/"));
            ProcessView {
                root: PathBuf::from("/"),
                cwd,
            }
        } else {
            ProcessView {
                root: proc_root,
                cwd: proc_cwd,
            }
        }
    }

    /// `path` as the process means it, made readable from here. Pure.
    pub fn host_path(&self, path: &Path) -> PathBuf {
        match path.strip_prefix("/") {
            Ok(relative) => self.root.join(relative),
            Err(_) => self.cwd.join(path),
        }
    }
}

/// Find dockerd among the running processes (the first one, by pid, that is not a zombie).
pub fn find_dockerd() -> Option<DockerdProcess> {
    let mut pids: Vec<u32> = fs::read_dir("/proc")
        .ok()?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    pids.sort_unstable();
    pids.into_iter().find_map(|pid| {
        let comm = fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
        if comm.trim() != "dockerd" {
            return None;
        }
        let raw = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        // A zombie (an exited dockerd its parent has not reaped yet) has no command line,
        // and no settings: the running dockerd is another process.
        if raw.is_empty() {
            return None;
        }
        let args = raw
            .split(|b| *b == 0)
            .skip(1)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        Some(DockerdProcess { pid, args })
    })
}

/// Combine daemon.json (path and text, if any) and dockerd's arguments. Pure.
pub fn resolve(
    json: Option<(&Path, &str)>,
    args: &[String],
) -> Result<DaemonSettings, SettingsError> {
    let mut settings = DaemonSettings::default();
    if let Some((path, text)) = json {
        apply_json(&mut settings, path, text)?;
    }
    apply_flags(&mut settings, args)?;
    Ok(settings)
}

fn apply_json(settings: &mut DaemonSettings, path: &Path, text: &str) -> Result<(), SettingsError> {
    let value: Value = serde_json::from_str(text).map_err(|e| SettingsError::Json {
        path: path.to_path_buf(),
        line: e.line(),
        column: e.column(),
        message: e.to_string(),
    })?;
    let Value::Object(map) = value else {
        return Err(SettingsError::NotAnObject {
            path: path.to_path_buf(),
        });
    };
    let source = Source::DaemonJson(path.to_path_buf());
    for (key, value) in &map {
        let text = match value {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        set_value(settings, key, &text, &source)?;
    }
    Ok(())
}

fn apply_flags(settings: &mut DaemonSettings, args: &[String]) -> Result<(), SettingsError> {
    let mut iter = args.iter().peekable();
    while let Some(arg) = iter.next() {
        let Some(flag) = arg.strip_prefix("--") else {
            continue;
        };
        let (name, value) = match flag.split_once('=') {
            Some((name, value)) => (name, value.to_string()),
            // Boolean flags stand alone; string flags take the next argument.
            None if is_bool_key(flag) => (flag, "true".to_string()),
            None => match iter.next_if(|next| !next.starts_with("--")) {
                Some(next) => (flag, next.clone()),
                None => continue,
            },
        };
        set_value(settings, name, &value, &Source::CommandLine)?;
    }
    Ok(())
}

fn is_bool_key(key: &str) -> bool {
    matches!(
        key,
        "icc" | "userland-proxy" | "iptables" | "ip6tables" | "ipv6" | "ip-masq" | "experimental"
    )
}

/// Set one known key; unknown keys are dockerd's business, not ours.
fn set_value(
    settings: &mut DaemonSettings,
    key: &str,
    value: &str,
    source: &Source,
) -> Result<(), SettingsError> {
    let boolean = || parse_bool(key, value, source);
    match key {
        "icc" => settings.icc = setting(boolean()?, source),
        "userland-proxy" => settings.userland_proxy = setting(boolean()?, source),
        "iptables" => settings.iptables = setting(boolean()?, source),
        "ip6tables" => settings.ip6tables = setting(Some(boolean()?), source),
        "ipv6" => settings.ipv6 = setting(boolean()?, source),
        "ip-masq" => settings.ip_masq = setting(boolean()?, source),
        "experimental" => settings.experimental = setting(boolean()?, source),
        "fixed-cidr-v6" => {
            let net: Ipv6Net = value.parse().map_err(|_| SettingsError::BadValue {
                key: key.to_string(),
                origin: source.clone(),
                found: value.to_string(),
                expected: "an IPv6 prefix such as fd00:1::/64",
            })?;
            settings.fixed_cidr_v6 = setting(Some(net), source);
        }
        _ => {}
    }
    Ok(())
}

fn setting<T>(value: T, source: &Source) -> Setting<T> {
    Setting {
        value,
        source: source.clone(),
    }
}

fn parse_bool(key: &str, value: &str, source: &Source) -> Result<bool, SettingsError> {
    match value {
        "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        _ => Err(SettingsError::BadValue {
            key: key.to_string(),
            origin: source.clone(),
            found: value.to_string(),
            expected: "true or false",
        }),
    }
}

/// The value of `--NAME VALUE` or `--NAME=VALUE` in dockerd's arguments.
fn flag_value(args: &[String], name: &str) -> Option<String> {
    let long = format!("--{name}");
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        if *arg == long {
            return iter.next().cloned();
        }
        if let Some(value) = arg.strip_prefix(&long).and_then(|v| v.strip_prefix('=')) {
            return Some(value.to_string());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn defaults_without_file_or_flags() {
        let s = resolve(None, &[]).unwrap();
        assert!(s.icc.value && s.userland_proxy.value && s.iptables.value);
        assert_eq!(s.ip6tables.value, None);
        assert_eq!(s.icc.source, Source::Default);
    }

    #[test]
    fn file_values_carry_their_path() {
        let path = Path::new("/etc/docker/daemon.json");
        let text = r#"{"icc": false, "userland-proxy": false, "ipv6": true,
                       "fixed-cidr-v6": "fd76:6700:0:1::/64", "log-level": "debug"}"#;
        let s = resolve(Some((path, text)), &[]).unwrap();
        assert!(!s.icc.value);
        assert_eq!(s.icc.source, Source::DaemonJson(path.to_path_buf()));
        assert!(!s.userland_proxy.value);
        assert_eq!(
            s.fixed_cidr_v6.value,
            Some("fd76:6700:0:1::/64".parse().unwrap())
        );
    }

    #[test]
    fn flags_win_over_the_file() {
        let path = Path::new("/x/daemon.json");
        let s = resolve(
            Some((path, r#"{"icc": false, "ip6tables": false}"#)),
            &args(&[
                "--icc=true",
                "--ip6tables",
                "--fixed-cidr-v6",
                "fd00:1::/64",
                "-H",
                "fd://",
            ]),
        )
        .unwrap();
        assert!(s.icc.value);
        assert_eq!(s.icc.source, Source::CommandLine);
        assert_eq!(s.ip6tables.value, Some(true));
        assert_eq!(s.fixed_cidr_v6.source, Source::CommandLine);
    }

    #[test]
    fn bad_json_names_file_line_and_column() {
        let path = Path::new("/etc/docker/daemon.json");
        let err = resolve(Some((path, "{\n  \"icc\": false,\n}")), &[]).unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with("/etc/docker/daemon.json:3:1:"), "{text}");
    }

    #[test]
    fn bad_value_names_key_and_source() {
        let path = Path::new("/d.json");
        let err = resolve(Some((path, r#"{"icc": "maybe"}"#)), &[]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "`icc` in /d.json is maybe, expected true or false"
        );
    }

    #[test]
    fn paths_are_read_under_the_process_root() {
        let chrooted = ProcessView {
            root: PathBuf::from("/proc/42/root"),
            cwd: PathBuf::from("/proc/42/cwd"),
        };
        assert_eq!(
            chrooted.host_path(Path::new("/etc/docker/daemon.json")),
            Path::new("/proc/42/root/etc/docker/daemon.json")
        );
        assert_eq!(
            chrooted.host_path(Path::new("conf/daemon.json")),
            Path::new("/proc/42/cwd/conf/daemon.json")
        );
        let host = ProcessView::default();
        assert_eq!(
            host.host_path(Path::new("/run/v6guard-lab/daemon.json")),
            Path::new("/run/v6guard-lab/daemon.json")
        );
    }

    #[test]
    fn our_own_process_shares_our_root() {
        let view = ProcessView::of(std::process::id());
        assert_eq!(view.root, Path::new("/"));
        assert_eq!(view.cwd, std::env::current_dir().unwrap());
    }

    #[test]
    fn config_file_flag_is_found_in_both_forms() {
        assert_eq!(
            flag_value(&args(&["--config-file", "/run/x.json"]), "config-file").as_deref(),
            Some("/run/x.json")
        );
        assert_eq!(
            flag_value(&args(&["--config-file=/run/y.json"]), "config-file").as_deref(),
            Some("/run/y.json")
        );
    }
}
