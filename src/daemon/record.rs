//! The record of each reconcile: the status (state file, metrics) and the log line, in the
//! words docs/daemon.md shows. Part of the [`Machine`].

use std::time::Duration;

use tracing::info;

use super::enforcer::Host;
use super::machine::Machine;
use super::reconcile::{Enforced, Kernel, Transaction};
use super::status::{ReconcileRecord, Status, unix_now};

impl<K: Kernel, H: Host> Machine<K, H> {
    /// Record a reconcile in the status (and state file, and metrics). `Ok(None)`: stood
    /// down.
    pub(super) fn record(
        &mut self,
        trigger: &str,
        outcome: Result<Option<(&Enforced, Option<Duration>)>, &str>,
    ) {
        let stood_down = self.stood_down.clone();
        let mut record = ReconcileRecord {
            at_ms: unix_now().as_millis() as u64,
            trigger: trigger.to_string(),
            ..Default::default()
        };
        let (containers, networks) = self
            .snapshot
            .as_ref()
            .map_or((0, 0), |s| (s.containers.len(), s.networks.len()));
        let engine = self.snapshot.as_ref().map(|s| s.engine.version.clone());
        self.update_status(|s| {
            s.totals.reconciles += 1;
            s.docker.containers = containers;
            s.docker.networks = networks;
            s.docker.engine = engine;
            s.stood_down = stood_down.clone();
            match outcome {
                Err(message) => {
                    s.totals.errors += 1;
                    record.result = "error".into();
                    record.error = Some(message.to_string());
                    record.transaction = "none".into();
                    if let Some(last) = &s.last_reconcile {
                        (record.rules, record.sets, record.elements) =
                            (last.rules, last.sets, last.elements);
                    }
                }
                Ok(None) => {
                    record.result = "stood-down".into();
                    record.transaction = "none".into();
                }
                Ok(Some((enforced, latency))) => fill_record(s, &mut record, enforced, latency),
            }
            s.note_reconcile(record);
        });
    }
}

fn fill_record(
    status: &mut Status,
    record: &mut ReconcileRecord,
    enforced: &Enforced,
    latency: Option<Duration>,
) {
    let (added, removed) = match enforced.transaction {
        Transaction::Elements { added, removed } => (added, removed),
        _ => (0, 0),
    };
    record.result = if enforced.transaction.changed() {
        "applied"
    } else {
        "unchanged"
    }
    .into();
    record.transaction = enforced.transaction.kind().into();
    (record.added, record.removed) = (added, removed);
    (record.rules, record.sets, record.elements) =
        (enforced.rules, enforced.sets, enforced.elements);
    record.ms = ms(enforced.took);
    record.latency_ms = latency.map(ms);
    match enforced.transaction {
        Transaction::None => {}
        Transaction::Elements { .. } => status.totals.element_transactions += 1,
        Transaction::Full => status.totals.full_transactions += 1,
    }
    if enforced.transaction.changed() {
        status.totals.transactions += 1;
    }
    status.durations.observe(enforced.took);
    if let Some(latency) = latency {
        status.latencies.observe(latency);
    }
}

pub(super) fn log_enforced(
    enforced: &Enforced,
    latency: Option<Duration>,
    docker_time_nano: Option<i64>,
) {
    let (added, removed) = match enforced.transaction {
        Transaction::Elements { added, removed } => (added, removed),
        _ => (0, 0),
    };
    // From dockerd's own timestamp of the event (same host clock) to enforced.
    let since_docker_ms = docker_time_nano.map(|t| {
        let now = unix_now().as_nanos() as i64;
        (now.saturating_sub(t) / 1000) as f64 / 1e3
    });
    info!(
        result = if enforced.transaction.changed() {
            "applied"
        } else {
            "unchanged"
        },
        transaction = enforced.transaction.kind(),
        added,
        removed,
        rules = enforced.rules,
        sets = enforced.sets,
        elements = enforced.elements,
        ms = ms(enforced.took),
        latency_ms = latency.map(ms),
        since_docker_event_ms = since_docker_ms,
        "reconciled"
    );
}

/// `rule deleted ×19, table deleted`: each kind of change once, with its count, in order.
pub(super) fn summarize(changes: &[String]) -> String {
    let mut counted: Vec<(&str, usize)> = Vec::new();
    for change in changes {
        match counted.iter_mut().find(|(c, _)| c == change) {
            Some((_, n)) => *n += 1,
            None => counted.push((change, 1)),
        }
    }
    let parts: Vec<String> = counted
        .into_iter()
        .map(|(c, n)| {
            if n > 1 {
                format!("{c} ×{n}")
            } else {
                c.to_string()
            }
        })
        .collect();
    parts.join(", ")
}

/// Milliseconds with microsecond precision, for logs and the state file.
pub(super) fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drift_changes_are_summarized() {
        let changes: Vec<String> = ["rule deleted", "rule deleted", "table deleted"]
            .into_iter()
            .map(String::from)
            .collect();
        assert_eq!(summarize(&changes), "rule deleted ×2, table deleted");
        assert_eq!(ms(Duration::from_nanos(1_234_567)), 1.235);
    }
}
