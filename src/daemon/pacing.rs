//! Coalescing: what is waiting to be re-read, and when to reconcile it; and when to try
//! Docker again after losing it ([`Backoff`]).
//!
//! A single change after a quiet spell is reconciled at once, so it adds no latency. When
//! changes keep coming (`docker compose up` of 50 containers), transactions are spaced out,
//! doubling the gap each time up to [`MAX_HOLD`]: the events that arrive in between are read
//! and applied together, so a burst costs a handful of transactions instead of one per
//! container. Containers waiting in a burst are closed, never open (v6guard fails closed), so
//! holding them briefly delays reachability, not protection.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use crate::docker::events::Change;

/// Gap after the first change of a burst; it doubles with every further change.
pub const FIRST_HOLD: Duration = Duration::from_millis(25);
/// Longest gap between two transactions during a burst.
pub const MAX_HOLD: Duration = Duration::from_secs(2);
/// Silence after the last scheduled slot that ends a burst.
pub const QUIET: Duration = Duration::from_secs(1);
/// Above this many changed containers, one full container list is cheaper than an `id`
/// filter dockerd matches one pattern at a time.
pub const MAX_FILTERED_IDS: usize = 64;

/// Why a reconcile runs; the label on logs and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum TriggerKind {
    Startup,
    Event,
    Resync,
    Reload,
    Reconnect,
}

impl TriggerKind {
    pub fn name(self) -> &'static str {
        match self {
            TriggerKind::Startup => "startup",
            TriggerKind::Event => "event",
            TriggerKind::Resync => "resync",
            TriggerKind::Reload => "reload",
            TriggerKind::Reconnect => "reconnect",
        }
    }
}

/// Work waiting for the next reconcile.
#[derive(Debug, Default, Clone)]
pub struct Pending {
    /// Re-read everything (settings, engine, networks, containers).
    pub full: bool,
    pub networks: bool,
    /// Re-read every container (a rename: other containers' links name it too).
    pub all_containers: bool,
    pub containers: BTreeSet<String>,
    /// The strongest reason (a full resync outranks an event) and up to a few labels.
    pub kind: Option<TriggerKind>,
    pub labels: Vec<String>,
    /// How many triggers were merged.
    pub merged: usize,
    /// When the first of them arrived (for event-to-enforced latency).
    pub since: Option<Instant>,
    /// dockerd's timestamp of the earliest event (ns since the epoch).
    pub docker_time_nano: Option<i64>,
}

const MAX_LABELS: usize = 3;

impl Pending {
    /// Add a trigger that needs a full re-read.
    pub fn full(&mut self, kind: TriggerKind, label: &str, now: Instant) {
        self.full = true;
        self.note(kind, label, now);
    }

    /// Add an event's changes.
    pub fn event(&mut self, changes: &[Change], label: &str, time_nano: Option<i64>, now: Instant) {
        for change in changes {
            match change {
                Change::Container(id) => {
                    self.containers.insert(id.clone());
                }
                Change::Networks => self.networks = true,
                Change::AllContainers => self.all_containers = true,
            }
        }
        if let Some(t) = time_nano {
            self.docker_time_nano = Some(self.docker_time_nano.map_or(t, |d| d.min(t)));
        }
        self.note(TriggerKind::Event, label, now);
    }

    /// Put back work whose reconcile failed. It is retried with the next trigger (an event,
    /// the resync, SIGHUP) rather than at once: retrying a failure that needs a person (a
    /// broken daemon.json) right away would spin.
    pub fn defer(&mut self, mut failed: Pending) {
        failed.since = None;
        self.merge(failed);
    }

    /// Add another batch of work to this one.
    pub fn merge(&mut self, other: Pending) {
        self.full |= other.full;
        self.networks |= other.networks;
        self.all_containers |= other.all_containers;
        self.containers.extend(other.containers);
        self.kind = self.kind.max(other.kind);
        self.merged += other.merged;
        self.since = match (self.since, other.since) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.docker_time_nano = match (self.docker_time_nano, other.docker_time_nano) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        for label in other.labels {
            self.push_label(label);
        }
    }

    /// The trigger as logged: `event container start 3f2a9c (+4 more)`.
    pub fn describe(&self) -> String {
        let kind = self.kind.map_or("none", TriggerKind::name);
        let mut text = match self.labels.first() {
            Some(first) if self.kind == Some(TriggerKind::Event) => format!("{kind} {first}"),
            Some(first) => format!("{kind} ({first})"),
            None => kind.to_string(),
        };
        if self.merged > 1 {
            text.push_str(&format!(" (+{} more)", self.merged - 1));
        }
        text
    }

    /// Whether the container changes are read with one full list: asked for, or cheaper than
    /// an `id` filter with many IDs.
    pub fn list_all_containers(&self) -> bool {
        self.all_containers || self.containers.len() > MAX_FILTERED_IDS
    }

    fn note(&mut self, kind: TriggerKind, label: &str, now: Instant) {
        self.kind = self.kind.max(Some(kind));
        self.merged += 1;
        self.since.get_or_insert(now);
        self.push_label(label.to_string());
    }

    fn push_label(&mut self, label: String) {
        if self.labels.len() < MAX_LABELS {
            self.labels.push(label);
        }
    }
}

/// When to run the next reconcile (see the module doc).
#[derive(Debug, Default, Clone)]
pub struct Pacer {
    /// Start of the last reconcile that changed the kernel, and the burst level then.
    last_change: Option<Instant>,
    level: u32,
}

impl Pacer {
    /// When work that became pending at `since` should run.
    pub fn due(&self, since: Instant) -> Instant {
        match self.last_change {
            Some(last) if !self.burst_over(last, since) => (last + hold(self.level)).max(since),
            _ => since,
        }
    }

    /// Record a reconcile that started at `started`; only ones that changed the kernel
    /// count towards a burst.
    pub fn record(&mut self, started: Instant, changed: bool) {
        if !changed {
            return;
        }
        self.level = match self.last_change {
            Some(last) if !self.burst_over(last, started) => self.level.saturating_add(1),
            _ => 0,
        };
        self.last_change = Some(started);
    }

    fn burst_over(&self, last: Instant, now: Instant) -> bool {
        now.saturating_duration_since(last) > hold(self.level) + QUIET
    }
}

fn hold(level: u32) -> Duration {
    FIRST_HOLD
        .checked_mul(1u32.checked_shl(level).unwrap_or(u32::MAX))
        .unwrap_or(MAX_HOLD)
        .min(MAX_HOLD)
}

/// Reconnect delays: 250 ms doubling to 10 s, back to 250 ms once a read of Docker succeeds
/// (not on connect: a dockerd that accepts connections but fails reads must not be hammered).
pub const FIRST_RETRY: Duration = Duration::from_millis(250);
pub const MAX_RETRY: Duration = Duration::from_secs(10);

/// Reconnect delays: [`FIRST_RETRY`] doubling to [`MAX_RETRY`]. Reset only by a successful
/// read of Docker, not by connecting: a dockerd that accepts connections but fails every
/// read is retried ever more slowly, not every 250 ms.
#[derive(Debug)]
pub struct Backoff {
    next: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff { next: FIRST_RETRY }
    }
}

impl Backoff {
    /// The delay before the next attempt; the one after it doubles.
    pub fn next_delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = (self.next * 2).min(MAX_RETRY);
        delay
    }

    pub fn reset(&mut self) {
        self.next = FIRST_RETRY;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn a_single_change_runs_at_once() {
        let t0 = Instant::now();
        let pacer = Pacer::default();
        assert_eq!(pacer.due(t0), t0);
        let mut pacer = pacer;
        pacer.record(t0, true);
        // Long after, still at once.
        let later = t0 + Duration::from_secs(5);
        assert_eq!(pacer.due(later), later);
    }

    #[test]
    fn a_reconcile_that_changed_nothing_does_not_start_a_burst() {
        let t0 = Instant::now();
        let mut pacer = Pacer::default();
        pacer.record(t0, false);
        assert_eq!(pacer.due(t0 + ms(10)), t0 + ms(10));
    }

    #[test]
    fn a_burst_is_spaced_out_with_growing_gaps() {
        // Events arrive every 10 ms for 10 s; count the transactions the pacer allows.
        let t0 = Instant::now();
        let mut pacer = Pacer::default();
        let mut next_free = t0;
        let mut transactions = 0;
        let mut pending_since: Option<Instant> = None;
        for step in 0..=1000u64 {
            let now = t0 + ms(step * 10);
            pending_since.get_or_insert(now);
            if let Some(since) = pending_since {
                if pacer.due(since) <= now && now >= next_free {
                    pacer.record(now, true);
                    transactions += 1;
                    pending_since = None;
                    next_free = now;
                }
            }
        }
        assert!(
            transactions <= 12,
            "{transactions} transactions for a 10 s burst"
        );
        assert!(transactions >= 5, "still converges while the burst lasts");
    }

    #[test]
    fn pending_describes_and_merges() {
        let t0 = Instant::now();
        let mut p = Pending::default();
        assert_eq!(p.describe(), "none");
        p.event(
            &[Change::Container("a".into())],
            "container start a",
            Some(5),
            t0,
        );
        p.event(&[Change::Networks], "network create n", Some(3), t0 + ms(1));
        assert_eq!(p.describe(), "event container start a (+1 more)");
        assert_eq!(p.docker_time_nano, Some(3));
        let mut q = Pending::default();
        q.full(TriggerKind::Resync, "every 300 s", t0 + ms(2));
        q.merge(p);
        assert!(q.full && q.networks && q.containers.contains("a"));
        assert_eq!(q.kind, Some(TriggerKind::Resync));
        assert_eq!(q.since, Some(t0));
        assert_eq!(q.docker_time_nano, Some(3));
    }

    #[test]
    fn deferred_work_waits_for_the_next_trigger() {
        let t0 = Instant::now();
        let mut failed = Pending::default();
        failed.full(TriggerKind::Reload, "SIGHUP", t0);
        failed.event(&[Change::AllContainers], "container rename a", None, t0);
        let mut pending = Pending::default();
        pending.defer(failed);
        assert!(pending.full && pending.list_all_containers());
        assert_eq!(pending.since, None, "not due by itself");
        pending.event(
            &[Change::Container("b".into())],
            "container start b",
            None,
            t0 + ms(5),
        );
        assert_eq!(pending.since, Some(t0 + ms(5)));
        assert!(pending.full && pending.containers.contains("b"));
        assert_eq!(pending.kind, Some(TriggerKind::Reload));
    }

    #[test]
    fn backoff_doubles_to_its_maximum_and_resets() {
        let mut backoff = Backoff::default();
        let delays: Vec<u128> = (0..8).map(|_| backoff.next_delay().as_millis()).collect();
        assert_eq!(delays, [250, 500, 1000, 2000, 4000, 8000, 10_000, 10_000]);
        backoff.reset();
        assert_eq!(backoff.next_delay(), FIRST_RETRY);
    }
}
