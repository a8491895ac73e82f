//! `audit --probe`, the pure half: which rows a real connection can confirm, and how to
//! compare. The connections themselves are made at the edge (`v6guard audit --probe` runs
//! them from a temporary network namespace attached to the host like an outside host).

use std::net::Ipv6Addr;

use super::{Report, Row};
use crate::snapshot::Protocol;

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

/// Connect to every TCP row that has a listener with `connect_all` (from an outside host in
/// no `allow_from` prefix; one result per target, in order) and compare with the row's
/// verdict on the container's own address.
pub fn probe<E>(
    report: &Report,
    connect_all: impl FnOnce(&[(Ipv6Addr, u16)]) -> Result<Vec<bool>, E>,
) -> Result<Probed, E> {
    let rows: Vec<&Row> = report.rows.iter().filter(|r| testable(r)).collect();
    let targets: Vec<(Ipv6Addr, u16)> = rows.iter().map(|r| (r.address, r.port)).collect();
    let results = connect_all(&targets)?;
    let mut disagreements = Vec::new();
    for (row, connected) in rows.iter().zip(results) {
        let expected = open_to_anyone_outside(row);
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
        probed: rows.len(),
        disagreements,
    })
}

/// A TCP row with a listener and a verdict (a row the audit could not evaluate has no
/// source class at all, not even the host, and nothing to compare with).
fn testable(row: &Row) -> bool {
    row.protocol == Protocol::Tcp && row.listening == Some(true) && !row.reachable_from.is_empty()
}

/// What a connection from the probe (an outside host in no `allow_from` prefix) to the
/// container's own address should find.
fn open_to_anyone_outside(row: &Row) -> bool {
    row.direct_from_outside && row.outside_sources.is_none()
}
