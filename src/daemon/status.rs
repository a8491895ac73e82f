//! The daemon's health as data: written to the state file after every reconcile (read by
//! `v6guard status`, which judges it with [`Status::health`]) and rendered as Prometheus
//! metrics (`metrics.rs`).

use std::fmt::Write as _;
use std::io;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// Default state file (`--state-file`).
pub const DEFAULT_STATE_FILE: &str = "/run/v6guard/status.json";

/// Everything `v6guard status` shows.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Status {
    pub pid: u32,
    /// Unix seconds.
    pub started_at: u64,
    pub updated_at: u64,
    pub docker: DockerStatus,
    pub last_reconcile: Option<ReconcileRecord>,
    /// What guarded the bridges before Docker was first read: a skeleton ruleset applied, or
    /// a table left by an earlier run kept.
    #[serde(default)]
    pub at_start: Option<String>,
    /// Why the daemon is not applying, if it stands down.
    pub stood_down: Option<String>,
    /// What standing down did to v6guard's tables (removed, so they do not fight Docker).
    #[serde(default)]
    pub stand_down_cleanup: Option<String>,
    /// The last configuration reload that failed (kept until one succeeds).
    pub reload_error: Option<String>,
    /// Unix seconds of the loop's last turn (written at least every verify interval), so
    /// `status` can tell a hung loop from a quiet one.
    #[serde(default)]
    pub loop_at: u64,
    /// Past this many seconds without a turn, the loop counts as hung ([`stale_after`]).
    #[serde(default)]
    pub stale_after_s: u64,
    /// Unix milliseconds of the last reconcile that left the kernel holding the plan.
    #[serde(default)]
    pub last_success_ms: Option<u64>,
    pub totals: Totals,
    /// Reconcile durations (s) and event-to-enforced latencies (s), for the metrics.
    #[serde(skip)]
    pub durations: Histogram,
    #[serde(skip)]
    pub latencies: Histogram,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DockerStatus {
    pub host: String,
    pub connected: bool,
    pub engine: Option<String>,
    pub containers: usize,
    pub networks: usize,
}

/// One reconcile, as logged.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ReconcileRecord {
    /// Unix milliseconds.
    pub at_ms: u64,
    pub trigger: String,
    /// `applied`, `unchanged`, `stood-down` or `error`.
    pub result: String,
    pub error: Option<String>,
    /// `none`, `elements` or `full`.
    pub transaction: String,
    pub added: usize,
    pub removed: usize,
    pub rules: usize,
    pub sets: usize,
    pub elements: usize,
    pub ms: f64,
    /// From the first event received to the kernel holding the result.
    pub latency_ms: Option<f64>,
}

/// Counters since the daemon started.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Totals {
    pub reconciles: u64,
    /// Kernel transactions (full replaces plus element updates; no-ops not counted).
    pub transactions: u64,
    pub full_transactions: u64,
    pub element_transactions: u64,
    pub errors: u64,
    pub events: u64,
    pub drift_restores: u64,
    pub docker_reconnects: u64,
    /// Reloads answered (successful or not): the generation `v6guard reload` waits for.
    pub reloads: u64,
    #[serde(default)]
    pub reload_failures: u64,
}

/// Cumulative histogram buckets (upper bounds in seconds), Prometheus style.
#[derive(Debug, Clone, PartialEq)]
pub struct Histogram {
    pub bounds: Vec<f64>,
    pub counts: Vec<u64>,
    pub sum: f64,
    pub count: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        let bounds = vec![
            0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
        ];
        Histogram {
            counts: vec![0; bounds.len()],
            bounds,
            sum: 0.0,
            count: 0,
        }
    }
}

impl Histogram {
    pub fn observe(&mut self, value: Duration) {
        let seconds = value.as_secs_f64();
        for (bound, count) in self.bounds.iter().zip(&mut self.counts) {
            if seconds <= *bound {
                *count += 1;
            }
        }
        self.sum += seconds;
        self.count += 1;
    }
}

pub fn unix_now() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

/// How long the loop may go without a turn before `status` calls it hung: three verify
/// intervals (the verify timer wakes it at least that often) plus two of the longest steps
/// (one Docker read, [`super::DOCKER_DEADLINE`], each), and never less than systemd's
/// `WatchdogSec` (twice the ping interval), after which systemd itself restarts it.
pub fn stale_after(verify: Duration, watchdog_ping: Option<Duration>) -> Duration {
    let by_loop = verify * 3 + super::DOCKER_DEADLINE * 2;
    by_loop.max(watchdog_ping.map_or(Duration::ZERO, |ping| ping * 2))
}

/// What `v6guard status` concludes, most serious first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Health {
    /// No process with the state file's pid.
    NotRunning,
    /// The process lives but its loop has not turned within `stale_after_s`.
    Hung,
    /// v6guard stands down because Docker manages IPv6 itself.
    StoodDown,
    /// The last reconcile failed (the last applied ruleset stays in place).
    Failing,
    /// The Docker connection is down (the last applied ruleset stays in place).
    Disconnected,
    /// No reconcile has completed yet.
    Starting,
    /// The kernel holds the plan for what Docker runs now.
    Enforcing,
}

impl Status {
    /// Record a finished reconcile.
    pub fn note_reconcile(&mut self, record: ReconcileRecord) {
        if matches!(record.result.as_str(), "applied" | "unchanged") {
            self.last_success_ms = Some(record.at_ms);
        }
        self.last_reconcile = Some(record);
    }

    /// Record the answer to a reload request (SIGHUP): `v6guard reload` waits for
    /// `totals.reloads` to move, then reads `reload_error`.
    pub fn note_reload(&mut self, result: Result<(), String>) {
        self.totals.reloads += 1;
        match result {
            Ok(()) => self.reload_error = None,
            Err(message) => {
                self.totals.reload_failures += 1;
                self.reload_error = Some(message);
            }
        }
    }

    /// The loop's heartbeat: note a turn, and say whether the file is due a rewrite (at
    /// most every `every`, so a busy loop does not write on every event).
    pub fn beat(&mut self, now: Duration, every: Duration) -> bool {
        let due = now.as_secs() >= self.loop_at + every.as_secs().max(1);
        if due {
            self.loop_at = now.as_secs();
        }
        due
    }

    /// Whether the kernel holds the current plan, as far as the daemon knows.
    pub fn enforced(&self) -> bool {
        self.stood_down.is_none()
            && self.docker.connected
            && self
                .last_reconcile
                .as_ref()
                .is_some_and(|r| matches!(r.result.as_str(), "applied" | "unchanged"))
    }

    /// Whether the loop has gone longer without a turn than it allows itself. Files from
    /// before the heartbeat (no `stale_after_s`) are never called hung.
    pub fn hung(&self, now: Duration) -> bool {
        let last = self.loop_at.max(self.updated_at);
        self.stale_after_s > 0 && now.as_secs() > last + self.stale_after_s
    }

    /// `v6guard status`'s conclusion from the file, the clock and whether the pid lives.
    pub fn health(&self, now: Duration, running: bool) -> Health {
        if !running {
            Health::NotRunning
        } else if self.hung(now) {
            Health::Hung
        } else if self.stood_down.is_some() {
            Health::StoodDown
        } else if self
            .last_reconcile
            .as_ref()
            .is_some_and(|r| r.result == "error")
        {
            Health::Failing
        } else if !self.docker.connected {
            Health::Disconnected
        } else if self.enforced() {
            Health::Enforcing
        } else {
            Health::Starting
        }
    }

    /// Write the state file atomically (write a sibling, then rename).
    pub fn write(&self, path: &Path) -> io::Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let json = serde_json::to_vec_pretty(self).map_err(io::Error::other)?;
        let temp = path.with_extension("json.tmp");
        std::fs::write(&temp, json)?;
        std::fs::rename(&temp, path)
    }

    /// Read a state file.
    pub fn read(path: &Path) -> Result<Status, String> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            format!(
                "cannot read {}: {e}. Is `v6guard daemon` running (with --state-file {})?",
                path.display(),
                path.display()
            )
        })?;
        serde_json::from_str(&text).map_err(|e| {
            format!(
                "{}:{}: not a v6guard state file: {e}",
                path.display(),
                e.line()
            )
        })
    }

    /// Human-readable summary for `v6guard status`.
    pub fn summary(&self, now: Duration, running: bool) -> String {
        let mut out = String::new();
        let health = self.health(now, running);
        let state = match health {
            Health::NotRunning => "NOT running".to_string(),
            Health::Hung => format!(
                "HUNG: its loop last reported {} (allowed: {} s)",
                ago(now, self.loop_at.max(self.updated_at) * 1000, " ago"),
                self.stale_after_s
            ),
            _ => "running".to_string(),
        };
        let _ = writeln!(
            out,
            "v6guard daemon: {state} (pid {}, started {})",
            self.pid,
            ago(now, self.started_at * 1000, " ago")
        );
        // A dead or hung daemon's view of Docker is history, not a fact.
        let docker = match (health, self.docker.connected) {
            (Health::NotRunning | Health::Hung, true) => format!(
                "unknown (connected when last reported, {})",
                ago(now, self.updated_at * 1000, " ago")
            ),
            (Health::NotRunning | Health::Hung, false) => {
                "unknown (disconnected when last reported)".to_string()
            }
            (_, true) => "connected".to_string(),
            (_, false) => "DISCONNECTED (last ruleset kept in place)".to_string(),
        };
        let engine = self.docker.engine.as_deref().unwrap_or("unknown engine");
        let _ = writeln!(
            out,
            "docker: {docker} ({}, {engine}; {} containers, {} networks)",
            self.docker.host, self.docker.containers, self.docker.networks
        );
        if let Some(reason) = &self.stood_down {
            let _ = writeln!(out, "STANDING DOWN: {reason}");
            if let Some(cleanup) = &self.stand_down_cleanup {
                let _ = writeln!(out, "  {cleanup}");
            }
        }
        if let Some(at_start) = &self.at_start {
            let _ = writeln!(out, "at start: {at_start}");
        }
        match &self.last_reconcile {
            Some(r) => {
                let _ = writeln!(
                    out,
                    "last reconcile: {}, trigger: {}, result: {}{}",
                    ago(now, r.at_ms, " ago"),
                    r.trigger,
                    r.result,
                    r.error
                        .as_deref()
                        .map(|e| format!(" ({e})"))
                        .unwrap_or_default()
                );
                let _ = writeln!(
                    out,
                    "  transaction: {} (+{} -{} elements) in {:.2} ms",
                    r.transaction, r.added, r.removed, r.ms
                );
                let _ = writeln!(
                    out,
                    "  ruleset: {} rules, {} sets, {} elements",
                    r.rules, r.sets, r.elements
                );
            }
            None => {
                let _ = writeln!(out, "last reconcile: none yet");
            }
        }
        if let Some(at) = self.last_success_ms {
            let _ = writeln!(out, "last success: {}", ago(now, at, " ago"));
        }
        if let Some(error) = &self.reload_error {
            let _ = writeln!(out, "last reload FAILED (old configuration kept): {error}");
        }
        let t = &self.totals;
        let _ = writeln!(
            out,
            "totals: {} reconciles, {} transactions ({} full, {} element updates), {} errors, {} events, {} drift restores, {} Docker reconnects",
            t.reconciles,
            t.transactions,
            t.full_transactions,
            t.element_transactions,
            t.errors,
            t.events,
            t.drift_restores,
            t.docker_reconnects
        );
        out
    }
}

fn ago(now: Duration, then_ms: u64, suffix: &str) -> String {
    let seconds = now.as_millis().saturating_sub(u128::from(then_ms)) / 1000;
    match seconds {
        0..=119 => format!("{seconds} s{suffix}"),
        120..=7199 => format!("{} min{suffix}", seconds / 60),
        _ => format!("{} h{suffix}", seconds / 3600),
    }
}
#[cfg(test)]
#[path = "status_tests.rs"]
mod tests;
