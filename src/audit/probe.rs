//! `audit --probe`: confirm the verdicts with real connections from a temporary network
//! namespace attached to the host like an outside host, then removed.
//!
//! The namespace gets a veth to the host with documentation addresses (`2001:db8:ffff:ffff::1`
//! on the host side, `::2` inside, routed by the host like any uplink), so its packets meet
//! exactly the rules a host beyond the uplink meets. Probes go only to the host's own
//! containers (the audit's rows), TCP only (a UDP "connection" proves nothing), one short
//! connect each. The host's sysctls are not touched: if the host does not forward IPv6,
//! nothing from outside reaches a container, and the probe says so.

use std::net::{Ipv6Addr, SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::time::Duration;

use super::{Report, Row, SourceClass};
use crate::snapshot::Protocol;

/// The probe's link: the host side and the namespace side.
const PREFIX: &str = "2001:db8:ffff:ffff::/64";
const HOST_SIDE: &str = "2001:db8:ffff:ffff::1";
const PROBE_SIDE: &str = "2001:db8:ffff:ffff::2";
const CONNECT_TIMEOUT: Duration = Duration::from_millis(1500);

/// What went wrong setting up or removing the probe namespace.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("`{command}` failed: {detail}. `--probe` needs root and iproute2's `ip`")]
    Command { command: String, detail: String },
    #[error(
        "{PREFIX} is already routed on this host; the probe will not shadow it (remove the \
         route, or audit without --probe)"
    )]
    PrefixInUse,
    #[error("cannot enter the probe namespace: {0}")]
    Enter(std::io::Error),
}

/// One disagreement between a row and the connection that tested it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Disagreement {
    pub container: String,
    pub address: Ipv6Addr,
    pub port: u16,
    pub audit_says_reachable: bool,
    pub connection_succeeded: bool,
}

/// What `--probe` found.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Probed {
    /// Rows tested (TCP, something listening).
    pub probed: usize,
    pub disagreements: Vec<Disagreement>,
}

/// A network namespace attached to the host like an outside host; removed on drop.
pub struct ProbeNamespace {
    name: String,
    host_if: String,
}

impl ProbeNamespace {
    /// Create it, or explain why not (and leave nothing behind).
    pub fn create() -> Result<ProbeNamespace, ProbeError> {
        let routed = ip(&["-6", "route", "show", "match", PREFIX])?;
        if routed.lines().any(|l| !l.starts_with("default")) {
            return Err(ProbeError::PrefixInUse);
        }
        let pid = std::process::id();
        let probe = ProbeNamespace {
            name: format!("v6g-probe-{pid}"),
            host_if: format!("v6gp{pid}"),
        };
        ip(&["netns", "add", &probe.name])?;
        // From here on, Drop removes whatever was made.
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

    /// Whether a TCP connection from the namespace to `[address]:port` succeeds.
    pub fn connects(&self, address: Ipv6Addr, port: u16) -> Result<bool, ProbeError> {
        let path = format!("/run/netns/{}", self.name);
        let netns = std::fs::File::open(&path).map_err(ProbeError::Enter)?;
        let target = SocketAddr::from((address, port));
        std::thread::spawn(move || {
            // SAFETY: setns on an open namespace file moves only this short-lived thread.
            if unsafe { libc::setns(netns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                return Err(ProbeError::Enter(std::io::Error::last_os_error()));
            }
            Ok(TcpStream::connect_timeout(&target, CONNECT_TIMEOUT).is_ok())
        })
        .join()
        .unwrap_or_else(|_| Err(ProbeError::Enter(std::io::Error::other("probe thread"))))
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

/// Probe every TCP row with a listener from `namespace`, against what the row says about
/// the outside (a row limited to `allow_from` prefixes counts as closed to the probe, whose
/// address is in none of them).
pub fn probe(report: &Report, namespace: &ProbeNamespace) -> Result<Probed, ProbeError> {
    let mut probed = 0;
    let mut disagreements = Vec::new();
    for row in report.rows.iter().filter(|r| testable(r)) {
        probed += 1;
        let expected = open_to_anyone_outside(row);
        let connected = namespace.connects(row.address, row.port)?;
        if expected != connected {
            disagreements.push(Disagreement {
                container: row.container.clone(),
                address: row.address,
                port: row.port,
                audit_says_reachable: expected,
                connection_succeeded: connected,
            });
        }
    }
    Ok(Probed {
        probed,
        disagreements,
    })
}

fn testable(row: &Row) -> bool {
    row.protocol == Protocol::Tcp && row.listening == Some(true)
}

fn open_to_anyone_outside(row: &Row) -> bool {
    row.reachable_from.contains(&SourceClass::Outside) && row.outside_sources.is_none()
}

/// Run `ip ARGS` (iproute2).
fn ip(args: &[&str]) -> Result<String, ProbeError> {
    crate::iproute::ip(args).map_err(|e| ProbeError::Command {
        command: e.command,
        detail: e.detail,
    })
}
