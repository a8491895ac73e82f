//! `audit --probe`, the edge: a temporary network namespace attached to the host like an
//! outside host, from which the audit's verdicts are confirmed with real connections.
//!
//! The namespace gets a veth to the host with documentation addresses (`2001:db8:ffff:ffff::1`
//! on the host side, `::2` inside, routed by the host like any uplink), so its packets meet
//! exactly the rules a host beyond the uplink meets. Probes go only to the host's own
//! containers (the audit's rows), TCP only, one short connect each. The host's sysctls are
//! not touched: if the host does not forward IPv6, nothing from outside reaches a container,
//! and the probe says so.

use std::net::{Ipv6Addr, SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::time::Duration;

const PREFIX: &str = "2001:db8:ffff:ffff::/64";
const HOST_SIDE: &str = "2001:db8:ffff:ffff::1";
const PROBE_SIDE: &str = "2001:db8:ffff:ffff::2";
const CONNECT_TIMEOUT: Duration = Duration::from_millis(1500);
/// Threads connecting at once.
const PROBERS: usize = 64;

/// What went wrong setting up or removing the probe namespace.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("`{command}` failed: {detail}. `--probe` needs root and iproute2's `ip`")]
    Command { command: String, detail: String },
    #[error(
        "{PREFIX} is already routed on this host; the probe will not shadow it. Remove the \
         route (`ip -6 route show match {PREFIX}` names its interface), or audit without --probe"
    )]
    PrefixInUse,
    #[error("cannot enter the probe namespace: {0}")]
    Enter(std::io::Error),
}

/// A network namespace attached to the host like an outside host; removed on drop.
pub struct ProbeNamespace {
    name: String,
    host_if: String,
}

impl ProbeNamespace {
    /// Create it, or explain why not (and leave nothing behind).
    pub fn create() -> Result<ProbeNamespace, ProbeError> {
        remove_leftovers()?;
        let routed = ip(&["-6", "route", "show", "match", PREFIX])?;
        if routed.lines().any(|l| !l.starts_with("default")) {
            return Err(ProbeError::PrefixInUse);
        }
        let pid = std::process::id();
        let name = format!("v6g-probe-{pid}");
        ip(&["netns", "add", &name])?;
        // From here on, Drop removes whatever was made (the veth goes with the namespace).
        let probe = ProbeNamespace {
            name,
            host_if: format!("v6gp{pid}"),
        };
        let (name, host_if) = (probe.name.as_str(), probe.host_if.as_str());
        let host_addr = format!("{HOST_SIDE}/64");
        let probe_addr = format!("{PROBE_SIDE}/64");
        let steps: [&[&str]; 7] = [
            &[
                "link", "add", host_if, "type", "veth", "peer", "name", "eth0", "netns", name,
            ],
            &["-6", "addr", "add", &host_addr, "dev", host_if, "nodad"],
            &["link", "set", host_if, "up"],
            &["-n", name, "link", "set", "lo", "up"],
            &[
                "-n",
                name,
                "-6",
                "addr",
                "add",
                &probe_addr,
                "dev",
                "eth0",
                "nodad",
            ],
            &["-n", name, "link", "set", "eth0", "up"],
            &[
                "-n", name, "-6", "route", "add", "default", "via", HOST_SIDE, "dev", "eth0",
            ],
        ];
        for step in steps {
            ip(step)?;
        }
        Ok(probe)
    }

    /// Whether a TCP connection from the namespace succeeds, for each target, in order. A
    /// dropped connection waits out its timeout, so [`PROBERS`] threads connect side by side
    /// (1,000 closed ports: about 25 s rather than 25 minutes).
    pub fn connect_all(&self, targets: &[(Ipv6Addr, u16)]) -> Result<Vec<bool>, ProbeError> {
        let path = format!("/run/netns/{}", self.name);
        let chunk = targets.len().div_ceil(PROBERS).max(1);
        std::thread::scope(|scope| {
            let workers: Vec<_> = targets
                .chunks(chunk)
                .map(|part| {
                    let netns = std::fs::File::open(&path).map_err(ProbeError::Enter);
                    scope.spawn(move || -> Result<Vec<bool>, ProbeError> {
                        let netns = netns?;
                        // SAFETY: setns on an open namespace file moves only this thread,
                        // which ends when its part is probed.
                        if unsafe { libc::setns(netns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                            return Err(ProbeError::Enter(std::io::Error::last_os_error()));
                        }
                        Ok(part
                            .iter()
                            .map(|(address, port)| {
                                let target = SocketAddr::from((*address, *port));
                                TcpStream::connect_timeout(&target, CONNECT_TIMEOUT).is_ok()
                            })
                            .collect())
                    })
                })
                .collect();
            let mut results = Vec::with_capacity(targets.len());
            for worker in workers {
                let part = worker.join().unwrap_or_else(|_| {
                    Err(ProbeError::Enter(std::io::Error::other(
                        "a probe thread panicked",
                    )))
                })?;
                results.extend(part);
            }
            Ok(results)
        })
    }
}

impl Drop for ProbeNamespace {
    fn drop(&mut self) {
        // Deleting the namespace deletes the veth pair with it.
        if let Err(error) = ip(&["netns", "del", &self.name]) {
            tracing::error!(%error, namespace = %self.name, "cannot remove the probe namespace; remove it with `ip netns del`");
        }
    }
}

/// Remove what an interrupted probe left behind (killed before its Drop ran): a
/// `v6g-probe-PID` namespace whose process is gone, and its veth, whose address routes the
/// probe prefix and would block every later probe. A namespace whose PID is alive, or with a
/// process inside, belongs to a probe still running (or to a reused PID: left alone either
/// way).
fn remove_leftovers() -> Result<(), ProbeError> {
    let listed = ip(&["netns", "list"])?;
    for name in listed.lines().filter_map(|l| l.split_whitespace().next()) {
        let Some(pid) = name
            .strip_prefix("v6g-probe-")
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        // Its process, or any process inside it (a probe run from another PID namespace
        // shows its threads there): still in use.
        let in_use = ip(&["netns", "pids", name]).is_ok_and(|pids| !pids.trim().is_empty());
        if in_use || std::path::Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        tracing::warn!(
            namespace = name,
            "removing the probe namespace of an audit that was interrupted"
        );
        // The host side first: deleting a veth is immediate, the namespace's own teardown
        // is not, and the route check comes next. Already gone is fine.
        let _ = ip(&["link", "del", &format!("v6gp{pid}")]);
        ip(&["netns", "del", name])?;
    }
    Ok(())
}

/// Run `ip ARGS` (iproute2).
fn ip(args: &[&str]) -> Result<String, ProbeError> {
    v6guard::iproute::ip(args).map_err(|e| ProbeError::Command {
        command: e.command,
        detail: e.detail,
    })
}
