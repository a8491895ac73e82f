//! The daemon's health as data: written to the state file after every reconcile (read by
//! `v6guard status`) and rendered as Prometheus metrics.

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
    pub reloads: u64,
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

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        for (bound, count) in self.bounds.iter().zip(&self.counts) {
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {count}");
        }
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {}", self.count);
        let _ = writeln!(out, "{name}_sum {}", self.sum);
        let _ = writeln!(out, "{name}_count {}", self.count);
    }
}

pub fn unix_now() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

impl Status {
    /// Prometheus text exposition format (version 0.0.4).
    pub fn metrics(&self) -> String {
        let mut out = String::new();
        let t = &self.totals;
        counter(
            &mut out,
            "v6guard_reconciles_total",
            "Reconciles run.",
            t.reconciles,
        );
        let _ = writeln!(
            out,
            "# HELP v6guard_transactions_total Kernel transactions, by kind.\n\
             # TYPE v6guard_transactions_total counter\n\
             v6guard_transactions_total{{kind=\"full\"}} {}\n\
             v6guard_transactions_total{{kind=\"elements\"}} {}",
            t.full_transactions, t.element_transactions
        );
        counter(
            &mut out,
            "v6guard_reconcile_errors_total",
            "Reconciles that failed.",
            t.errors,
        );
        counter(
            &mut out,
            "v6guard_docker_events_total",
            "Docker events that can change the ruleset.",
            t.events,
        );
        counter(
            &mut out,
            "v6guard_drift_restores_total",
            "Times the table was restored after someone else changed it.",
            t.drift_restores,
        );
        counter(
            &mut out,
            "v6guard_docker_reconnects_total",
            "Reconnections to Docker.",
            t.docker_reconnects,
        );
        counter(
            &mut out,
            "v6guard_config_reloads_total",
            "Configuration reloads (SIGHUP).",
            t.reloads,
        );
        let record = self.last_reconcile.clone().unwrap_or_default();
        gauge(
            &mut out,
            "v6guard_docker_connected",
            "Whether the Docker event stream is up.",
            u64::from(self.docker.connected),
        );
        gauge(
            &mut out,
            "v6guard_exposed_services",
            "Set and map elements installed (published container ports and NAT entries).",
            record.elements as u64,
        );
        gauge(
            &mut out,
            "v6guard_rules",
            "Rules installed.",
            record.rules as u64,
        );
        gauge(
            &mut out,
            "v6guard_containers",
            "Running containers seen.",
            self.docker.containers as u64,
        );
        gauge(
            &mut out,
            "v6guard_networks",
            "Bridge networks seen.",
            self.docker.networks as u64,
        );
        gauge(
            &mut out,
            "v6guard_last_reconcile_timestamp_seconds",
            "When the last reconcile ran.",
            record.at_ms / 1000,
        );
        gauge(
            &mut out,
            "v6guard_stood_down",
            "Whether v6guard stands down because Docker manages IPv6.",
            u64::from(self.stood_down.is_some()),
        );
        self.durations.render(
            &mut out,
            "v6guard_reconcile_duration_seconds",
            "Time to plan and change the kernel.",
        );
        self.latencies.render(
            &mut out,
            "v6guard_event_to_enforced_seconds",
            "From a Docker event received to the kernel holding the result.",
        );
        out
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
        let state = if running { "running" } else { "NOT running" };
        let _ = writeln!(
            out,
            "v6guard daemon: {state} (pid {}, up {})",
            self.pid,
            ago(now, self.started_at * 1000, "")
        );
        let docker = if self.docker.connected {
            "connected"
        } else {
            "DISCONNECTED (last ruleset kept in place)"
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

fn counter(out: &mut String, name: &str, help: &str, value: u64) {
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
    );
}

fn gauge(out: &mut String, name: &str, help: &str, value: u64) {
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
    );
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
mod tests {
    use super::*;

    #[test]
    fn histogram_is_cumulative() {
        let mut h = Histogram::default();
        h.observe(Duration::from_micros(800));
        h.observe(Duration::from_millis(30));
        assert_eq!(h.counts[0], 1, "le 1 ms");
        assert_eq!(h.counts[5], 2, "le 50 ms");
        assert_eq!(h.count, 2);
    }

    #[test]
    fn metrics_name_the_essentials_and_the_state_file_round_trips() {
        let mut status = Status {
            pid: 7,
            ..Status::default()
        };
        status.totals.full_transactions = 2;
        status.latencies.observe(Duration::from_millis(3));
        let text = status.metrics();
        for needle in [
            "v6guard_transactions_total{kind=\"full\"} 2",
            "v6guard_event_to_enforced_seconds_bucket{le=\"0.005\"} 1",
            "v6guard_exposed_services 0",
        ] {
            assert!(text.contains(needle), "{needle} in\n{text}");
        }
        let path = std::env::temp_dir().join(format!("v6guard-status-{}.json", std::process::id()));
        status.write(&path).unwrap();
        let back = Status::read(&path).unwrap();
        assert_eq!(back.pid, 7);
        assert_eq!(back.totals.full_transactions, 2);
        let _ = std::fs::remove_file(path);
        assert!(back.summary(unix_now(), true).contains("running (pid 7"));
    }
}
