//! `v6guard daemon`: keep table ip6 v6guard true to what Docker is doing, at every moment.
//!
//! One loop on one thread owns all state (the Snapshot, the applied Ruleset, pending work) and
//! waits for whichever comes first: a Docker event, a drift report, a signal, a timer. Work is
//! coalesced ([`pacing`]) and enforced ([`reconcile`]) by the smallest atomic transaction.
//!
//! Failure policy, everywhere: keep the last applied ruleset (fail-closed) and say so. Docker
//! going away, a broken configuration, a failed read or a refused transaction never remove
//! rules and never stop the daemon; only SIGTERM/SIGINT do (and `--cleanup-on-exit` is the
//! only way the daemon removes its table).

pub mod drift;
pub mod inputs;
pub mod metrics;
pub mod notify;
pub mod pacing;
pub mod reconcile;
pub mod signals;
pub mod status;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bollard::models::EventMessage;
use futures_util::{Stream, StreamExt};
use tokio::sync::mpsc::{UnboundedReceiver, unbounded_channel};
use tokio::time::{Interval, MissedTickBehavior, interval_at, sleep_until};
use tracing::{Instrument, debug, error, info, info_span, warn};

use crate::docker::events;
use crate::nft::{self, NftError};
use crate::plan;
use crate::read::{DockerReader, ReadError};
use crate::ruleset::TABLE_NAME;
use crate::snapshot::Snapshot;
use drift::DriftReport;
use inputs::{LoadInputs, PlanInputs};
use pacing::{Pacer, Pending, TriggerKind};
use reconcile::{Enforced, Netlink, Reconciler, Transaction};
use signals::{Hangup, Stop, Stops};
use status::{ReconcileRecord, Status, unix_now};

/// How the daemon runs (the `v6guard daemon` flags).
#[derive(Debug, Clone)]
pub struct DaemonOptions {
    pub docker_host: String,
    pub daemon_json: Option<PathBuf>,
    /// Full re-read of Docker and re-plan, as a safety net for anything events missed.
    pub resync_interval: Duration,
    /// Compare the kernel's table with the applied ruleset, as a backup for the monitor.
    pub verify_interval: Duration,
    pub metrics_listen: Option<SocketAddr>,
    pub cleanup_on_exit: bool,
    pub state_file: PathBuf,
    /// Apply even though Docker manages IPv6 itself.
    pub force: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("cannot load the configuration: {0}")]
    Inputs(String),
    #[error(
        "cannot serve metrics on {addr}: {source}. Choose a free address with --metrics-listen"
    )]
    Metrics {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot register signal handlers: {0}")]
    Signals(#[source] std::io::Error),
    #[error("--cleanup-on-exit: could not remove v6guard's tables: {0}")]
    Cleanup(#[source] NftError),
}

/// Run until SIGTERM or SIGINT. Returns an error only for what makes starting impossible
/// (no usable configuration, metrics address taken) or a failed `--cleanup-on-exit`.
pub async fn run(options: DaemonOptions, mut loader: impl LoadInputs) -> Result<(), DaemonError> {
    let inputs = loader.load().map_err(DaemonError::Inputs)?;
    let (hangup, stops) = signals::register().map_err(DaemonError::Signals)?;
    let (drift_tx, drift_rx) = unbounded_channel();
    if let Err(error) = drift::spawn_monitor(TABLE_NAME, drift_tx) {
        warn!(%error, "cannot watch nftables for changes; drift is caught by the periodic verify only");
    }
    let status = Arc::new(Mutex::new(Status {
        pid: std::process::id(),
        started_at: unix_now().as_secs(),
        docker: status::DockerStatus {
            host: options.docker_host.clone(),
            ..Default::default()
        },
        ..Default::default()
    }));
    if let Some(addr) = options.metrics_listen {
        metrics::serve(addr, Arc::clone(&status))
            .await
            .map_err(|source| DaemonError::Metrics { addr, source })?;
    }
    info!(
        docker = %options.docker_host,
        resync_s = options.resync_interval.as_secs(),
        verify_s = options.verify_interval.as_secs(),
        "v6guard daemon starting"
    );
    let cleanup = options.cleanup_on_exit;
    let mut daemon = Daemon::new(options, loader, inputs, drift_rx, status);
    let stop = daemon.run(hangup, stops).await;
    notify::notify("STOPPING=1");
    if cleanup {
        let removed = nft::cleanup().map_err(DaemonError::Cleanup)?;
        info!(?stop, tables = ?removed, "stopped; --cleanup-on-exit removed v6guard's tables");
    } else {
        info!(
            ?stop,
            "stopped; table ip6 {TABLE_NAME} stays in place (fail-closed). `v6guard cleanup` removes it"
        );
    }
    Ok(())
}

type EventStream = Pin<Box<dyn Stream<Item = Result<EventMessage, bollard::errors::Error>>>>;

/// A live Docker connection: the reader and the event stream opened with it.
struct Connection {
    reader: DockerReader,
    events: EventStream,
}

/// Reconnect delays: 250 ms doubling to 10 s.
const FIRST_RETRY: Duration = Duration::from_millis(250);
const MAX_RETRY: Duration = Duration::from_secs(10);
/// At most this many drift restores per [`RESTORE_WINDOW`]; beyond, the periodic verify
/// restores, so two tools fighting over the table do not spin.
const MAX_RESTORES: usize = 5;
const RESTORE_WINDOW: Duration = Duration::from_secs(60);

struct Daemon<L> {
    options: DaemonOptions,
    loader: L,
    inputs: PlanInputs,
    connection: Option<Connection>,
    snapshot: Option<Snapshot>,
    reconciler: Reconciler<Netlink>,
    pending: Pending,
    pacer: Pacer,
    /// When to try connecting again (set while disconnected).
    reconnect_at: Option<Instant>,
    retry: Duration,
    ever_connected: bool,
    drift_rx: UnboundedReceiver<DriftReport>,
    restores: Vec<Instant>,
    status: Arc<Mutex<Status>>,
    ready: bool,
    stood_down: Option<String>,
    force_warned: bool,
}

impl<L: LoadInputs> Daemon<L> {
    fn new(
        options: DaemonOptions,
        loader: L,
        inputs: PlanInputs,
        drift_rx: UnboundedReceiver<DriftReport>,
        status: Arc<Mutex<Status>>,
    ) -> Self {
        Daemon {
            options,
            loader,
            inputs,
            connection: None,
            snapshot: None,
            reconciler: Reconciler::new(Netlink),
            pending: Pending::default(),
            pacer: Pacer::default(),
            reconnect_at: Some(Instant::now()),
            retry: FIRST_RETRY,
            ever_connected: false,
            drift_rx,
            restores: Vec::new(),
            status,
            ready: false,
            stood_down: None,
            force_warned: false,
        }
    }

    async fn run(&mut self, mut hangup: Hangup, mut stops: Stops) -> Stop {
        let mut timers = Timers::new(&self.options);
        loop {
            tokio::select! {
                biased;
                stop = stops.recv() => return stop,
                () = self.step(&mut hangup, &mut timers) => {}
            }
        }
    }

    /// Wait for the next thing to happen and handle it.
    async fn step(&mut self, hangup: &mut Hangup, timers: &mut Timers) {
        let far = Instant::now() + Duration::from_secs(86_400);
        let due = self.due();
        let reconnect_at = self.reconnect_at;
        tokio::select! {
            biased;
            Some(report) = self.drift_rx.recv() => self.on_drift(report),
            () = hangup.recv() => self.on_reload(),
            item = next_event(&mut self.connection) => self.on_event(item),
            _ = sleep_until(reconnect_at.unwrap_or(far).into()), if reconnect_at.is_some() => {
                self.reconnect().await;
            }
            _ = sleep_until(due.unwrap_or(far).into()), if due.is_some() => self.reconcile().await,
            _ = timers.resync.tick() => {
                let label = format!("every {} s", self.options.resync_interval.as_secs());
                self.pending.full(TriggerKind::Resync, &label, Instant::now());
            }
            _ = timers.verify.tick() => self.verify("periodic verify"),
            _ = timers.watchdog.tick(), if timers.watchdog_on => notify::notify("WATCHDOG=1"),
        }
    }

    /// When pending work should run: only while connected (every reconcile reads Docker).
    fn due(&self) -> Option<Instant> {
        let since = self.pending.since?;
        self.connection.as_ref()?;
        Some(self.pacer.due(since))
    }

    fn on_event(&mut self, item: Option<Result<EventMessage, bollard::errors::Error>>) {
        match item {
            Some(Ok(event)) => {
                let Some(classified) = events::classify(&event) else {
                    return;
                };
                debug!(event = %classified.label, "docker event");
                self.pending.event(
                    &classified.changes,
                    &classified.label,
                    classified.time_nano,
                    Instant::now(),
                );
                self.update_status(|s| s.totals.events += 1);
            }
            Some(Err(error)) => self.disconnected(&format!("the event stream failed: {error}")),
            None => self.disconnected("the event stream ended (dockerd stopped or restarted)"),
        }
    }

    fn disconnected(&mut self, why: &str) {
        warn!(
            "lost Docker: {why}. Keeping the last applied ruleset in place (fail-closed); reconnecting"
        );
        self.connection = None;
        self.retry = FIRST_RETRY;
        self.reconnect_at = Some(Instant::now() + self.retry);
        self.update_status(|s| s.docker.connected = false);
    }

    /// Connect, subscribe to events, then queue a full read: subscribing first means nothing
    /// that happens during the read is missed (the subscription also replays a few seconds).
    async fn reconnect(&mut self) {
        let connected = DockerReader::connect(
            &self.options.docker_host,
            self.options.daemon_json.as_deref(),
        )
        .await;
        match connected {
            Ok(reader) => {
                let events: EventStream = Box::pin(events::subscribe(reader.client()));
                self.connection = Some(Connection { reader, events });
                self.reconnect_at = None;
                let kind = if self.ever_connected {
                    info!("reconnected to Docker; resyncing");
                    self.update_status(|s| s.totals.docker_reconnects += 1);
                    TriggerKind::Reconnect
                } else {
                    TriggerKind::Startup
                };
                self.ever_connected = true;
                self.update_status(|s| s.docker.connected = true);
                self.pending
                    .full(kind, "connected to Docker", Instant::now());
            }
            Err(error) => {
                let log =
                    self.retry >= MAX_RETRY || !self.ever_connected && self.retry == FIRST_RETRY;
                if log {
                    warn!(%error, retry_s = self.retry.as_secs_f32(), "Docker is not reachable; retrying");
                } else {
                    debug!(%error, "Docker is not reachable; retrying");
                }
                self.reconnect_at = Some(Instant::now() + self.retry);
                self.retry = (self.retry * 2).min(MAX_RETRY);
            }
        }
    }

    /// Re-read what changed, re-plan, and enforce.
    async fn reconcile(&mut self) {
        let pending = std::mem::take(&mut self.pending);
        let trigger = pending.describe();
        let span = info_span!("reconcile", trigger = %trigger);
        async {
            let started = Instant::now();
            match self.refresh(&pending).await {
                Ok(()) => self.enforce(&pending, &trigger, started),
                Err(error) => self.read_failed(pending, &trigger, error),
            }
        }
        .instrument(span)
        .await
    }

    /// Update the Snapshot: everything on a full trigger, else just the changed parts.
    async fn refresh(&mut self, pending: &Pending) -> Result<(), ReadError> {
        let Some(connection) = &self.connection else {
            return Ok(());
        };
        let reader = &connection.reader;
        let snapshot = match &mut self.snapshot {
            Some(snapshot) if !pending.full => snapshot,
            _ => {
                self.snapshot = Some(reader.snapshot().await?);
                return Ok(());
            }
        };
        if pending.list_all_containers() {
            snapshot.containers = reader.all_containers().await?;
        } else if !pending.containers.is_empty() {
            let ids: Vec<String> = pending.containers.iter().cloned().collect();
            let fresh = reader.containers(&ids).await?;
            reconcile::replace_containers(snapshot, &ids, fresh);
        }
        // A container on a network the Snapshot does not know yet (its create event still
        // queued, or lost): read the networks too, so the container is not left closed.
        let unknown_network = snapshot
            .containers
            .iter()
            .flat_map(|c| &c.endpoints)
            .any(|e| snapshot.network_by_id(&e.network_id).is_none());
        if pending.networks || unknown_network {
            snapshot.networks = reader.networks().await?;
        }
        Ok(())
    }

    fn read_failed(&mut self, pending: Pending, trigger: &str, error: ReadError) {
        let message = error.to_string();
        self.record(trigger, Err(&message), None);
        match error {
            // Docker trouble: reconnect, which re-reads everything.
            ReadError::Docker(_) => self.disconnected(&message),
            // A broken daemon.json: keep the rules; the next resync or SIGHUP reads it again.
            ReadError::Settings(_) => {
                error!(error = %message, "cannot read dockerd's settings; keeping the last applied ruleset");
                drop(pending);
            }
        }
    }

    fn enforce(&mut self, pending: &Pending, trigger: &str, started: Instant) {
        let Some(snapshot) = &self.snapshot else {
            return;
        };
        let reason = plan::stand_down_reason(snapshot).map(|r| r.to_string());
        if let Some(reason) = self.stand_down(reason) {
            self.record(trigger, Ok(None), Some(reason));
            return;
        }
        let Some(snapshot) = &self.snapshot else {
            return;
        };
        let wanted = self.inputs.plan(snapshot);
        crate::host::ensure_prerequisites(&wanted);
        match self.reconciler.enforce(wanted) {
            Ok(enforced) => {
                self.pacer.record(started, enforced.transaction.changed());
                let latency = (pending.kind == Some(TriggerKind::Event))
                    .then(|| pending.since.map(|s| s.elapsed()))
                    .flatten();
                log_enforced(&enforced, latency, pending.docker_time_nano);
                self.record(trigger, Ok(Some((&enforced, latency))), None);
                if !self.ready {
                    self.ready = true;
                    notify::notify("READY=1");
                    info!("ready: first ruleset applied");
                }
            }
            Err(error) => {
                let message = format!("{error}");
                error!(error = %message, "apply failed; the last applied ruleset stays in place");
                self.record(trigger, Err(&message), None);
            }
        }
    }

    /// Why not to apply (Docker manages IPv6 itself), logged when it first appears.
    /// With `--force` the reason is logged once and ignored.
    fn stand_down(&mut self, reason: Option<String>) -> Option<String> {
        if self.options.force {
            if let Some(reason) = &reason {
                if !self.force_warned {
                    warn!("--force: applying although {reason}");
                    self.force_warned = true;
                }
            }
            return None;
        }
        if reason.is_some() && reason != self.stood_down {
            error!(
                reason = reason.as_deref().unwrap_or_default(),
                "standing down: not changing the ruleset (run with --force to override)"
            );
        }
        self.stood_down = reason.clone();
        if reason.is_some() && !self.ready {
            self.ready = true;
            notify::notify("READY=1\nSTATUS=standing down: Docker manages IPv6");
        }
        reason
    }

    fn on_drift(&mut self, report: DriftReport) {
        // Coalesce: one restore for a burst of reports.
        let mut reports = vec![report];
        while let Ok(more) = self.drift_rx.try_recv() {
            reports.push(more);
        }
        let foreign = reports.iter().find_map(|r| match r {
            DriftReport::Foreign {
                process,
                pid,
                changes,
            } => Some((process.clone(), *pid, summarize(changes))),
            DriftReport::Overrun => None,
        });
        match foreign {
            Some((process, pid, changes)) => {
                let what =
                    format!("`{process}` (pid {pid}) changed table ip6 {TABLE_NAME}: {changes}");
                self.restore(&what);
            }
            None => self.verify("nftables notifications were lost"),
        }
    }

    /// Compare the kernel with the applied ruleset; restore on any difference.
    fn verify(&mut self, why: &str) {
        if self.stood_down.is_some() {
            return;
        }
        match self.reconciler.verify() {
            Ok(problems) if problems.is_empty() => {
                debug!(why, "kernel matches the applied ruleset")
            }
            Ok(problems) => self.restore(&format!("{why}: {}", problems.join("; "))),
            Err(error) => warn!(%error, why, "cannot verify the table"),
        }
    }

    fn restore(&mut self, what: &str) {
        if self.stood_down.is_some() {
            warn!("{what}; not restoring while standing down");
            return;
        }
        let now = Instant::now();
        self.restores
            .retain(|t| now.duration_since(*t) < RESTORE_WINDOW);
        if self.restores.len() >= MAX_RESTORES {
            error!(
                "DRIFT: {what}. Something keeps changing v6guard's table ({} restores in {} s); \
                 the periodic verify will restore it",
                self.restores.len(),
                RESTORE_WINDOW.as_secs()
            );
            return;
        }
        let started = Instant::now();
        match self.reconciler.restore() {
            Ok(true) => {
                self.restores.push(now);
                error!(
                    ms = ms(started.elapsed()),
                    "DRIFT: {what}. Restored v6guard's ruleset"
                );
                self.update_status(|s| s.totals.drift_restores += 1);
            }
            Ok(false) => warn!("{what}; nothing applied yet, nothing to restore"),
            Err(error) => error!(%error, "DRIFT: {what}. Restoring FAILED"),
        }
    }

    /// SIGHUP: reload the configuration (keeping the old one if the new one is broken), then
    /// re-read everything, daemon.json included.
    fn on_reload(&mut self) {
        match self.loader.load() {
            Ok(inputs) => {
                info!("SIGHUP: configuration reloaded");
                self.inputs = inputs;
                self.update_status(|s| s.reload_error = None);
            }
            Err(message) => {
                error!(error = %message, "SIGHUP: configuration reload failed; keeping the previous configuration");
                self.update_status(|s| s.reload_error = Some(message));
            }
        }
        self.update_status(|s| s.totals.reloads += 1);
        self.pending
            .full(TriggerKind::Reload, "SIGHUP", Instant::now());
    }

    /// Record a reconcile in the status (and state file, and metrics).
    fn record(
        &mut self,
        trigger: &str,
        outcome: Result<Option<(&Enforced, Option<Duration>)>, &str>,
        stood_down: Option<String>,
    ) {
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
            s.last_reconcile = Some(record);
        });
    }

    /// Change the shared status and rewrite the state file.
    fn update_status(&self, change: impl FnOnce(&mut Status)) {
        let snapshot = {
            let mut status = self.status.lock().unwrap_or_else(|p| p.into_inner());
            change(&mut status);
            status.updated_at = unix_now().as_secs();
            status.clone()
        };
        if let Err(error) = snapshot.write(&self.options.state_file) {
            debug!(%error, path = %self.options.state_file.display(), "cannot write the state file");
        }
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

fn log_enforced(enforced: &Enforced, latency: Option<Duration>, docker_time_nano: Option<i64>) {
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
fn summarize(changes: &[String]) -> String {
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
fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

/// The next event, or never when disconnected.
async fn next_event(
    connection: &mut Option<Connection>,
) -> Option<Result<EventMessage, bollard::errors::Error>> {
    match connection {
        Some(c) => c.events.next().await,
        None => std::future::pending().await,
    }
}

struct Timers {
    resync: Interval,
    verify: Interval,
    watchdog: Interval,
    watchdog_on: bool,
}

impl Timers {
    fn new(options: &DaemonOptions) -> Self {
        let every = |period: Duration| {
            let period = period.max(Duration::from_millis(100));
            let mut interval = interval_at(tokio::time::Instant::now() + period, period);
            interval.set_missed_tick_behavior(MissedTickBehavior::Delay);
            interval
        };
        let watchdog = notify::watchdog_interval();
        Timers {
            resync: every(options.resync_interval),
            verify: every(options.verify_interval),
            watchdog: every(watchdog.unwrap_or(Duration::from_secs(3600))),
            watchdog_on: watchdog.is_some(),
        }
    }
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
