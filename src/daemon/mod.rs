//! `v6guard daemon`: keep table ip6 v6guard true to what Docker is doing, at every moment.
//!
//! One loop on one thread owns all state (the Snapshot, the applied Ruleset, pending work) and
//! waits for whichever comes first: a Docker event, a drift report, a signal, a timer. Work is
//! coalesced ([`pacing`]) and enforced ([`reconcile`]) by the smallest atomic transaction.
//!
//! Failure policy, everywhere: keep the last applied ruleset (fail-closed) and say so. Docker
//! going away, a broken configuration, a failed read or a refused transaction never remove
//! rules and never stop the daemon; only SIGTERM/SIGINT do. Before Docker is first read, a
//! skeleton ruleset guards every Docker bridge (see [`skeleton_snapshot`]). The daemon removes
//! its tables in two cases only: `--cleanup-on-exit`, and standing down because Docker
//! firewalls IPv6 itself (two firewalls on the same traffic would fight).

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
use tokio::time::{Interval, MissedTickBehavior, interval_at, sleep_until, timeout};
use tracing::{Instrument, debug, error, info, info_span, warn};

use crate::docker::events;
use crate::nft::{self, NftError};
use crate::plan;
use crate::read::{DockerReader, ReadError};
use crate::ruleset::TABLE_NAME;
use crate::snapshot::{DaemonSettings, Engine, Snapshot};
use drift::{Detected, DriftReport, RESTORE_WINDOW, RestoreLimit};
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
        loop_at: unix_now().as_secs(),
        stale_after_s: status::stale_after(options.verify_interval, notify::watchdog_interval())
            .as_secs(),
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
    daemon.guard_at_start();
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

/// Reconnect delays: 250 ms doubling to 10 s, back to 250 ms once a read of Docker succeeds
/// (not on connect: a dockerd that accepts connections but fails reads must not be hammered).
const FIRST_RETRY: Duration = Duration::from_millis(250);
const MAX_RETRY: Duration = Duration::from_secs(10);
/// The longest the loop waits for Docker in one step: connecting, or one re-read however many
/// API calls it makes. Past it Docker counts as unreachable (reconnect, full resync). This
/// bounds a step, so the watchdog (pinged from the loop) only fires on a loop that really
/// hangs: see packaging/systemd/v6guard.service for the arithmetic.
pub const DOCKER_DEADLINE: Duration = Duration::from_secs(20);
/// Timeout of each API call the daemon makes (to the response headers), below the 30 s of
/// the one-shot commands: one stuck call fails on its own, well inside [`DOCKER_DEADLINE`].
const API_TIMEOUT: Duration = Duration::from_secs(10);

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
    backoff: Backoff,
    ever_connected: bool,
    drift_rx: UnboundedReceiver<DriftReport>,
    restores: RestoreLimit,
    /// When the last restore began: changes seen before it are already undone.
    restore_started: Option<Instant>,
    status: Arc<Mutex<Status>>,
    /// The last state told to systemd (READY=1 went with the first).
    announced: Option<String>,
    stood_down: Option<String>,
    force_warned: bool,
    /// The NDP proxy entries last synced (`None`: not yet, or the last sync failed).
    ndp_synced: Option<crate::ruleset::NdpProxies>,
    /// The last daemon.json error logged, so a broken file is not logged on every event.
    settings_error: Option<String>,
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
            reconciler: Reconciler::new(Netlink::default()),
            pending: Pending::default(),
            pacer: Pacer::default(),
            reconnect_at: Some(Instant::now()),
            backoff: Backoff::default(),
            ever_connected: false,
            drift_rx,
            restores: RestoreLimit::default(),
            restore_started: None,
            status,
            announced: None,
            stood_down: None,
            force_warned: false,
            ndp_synced: None,
            settings_error: None,
        }
    }

    /// Before Docker is asked anything (at boot, dockerd restarts containers as soon as it
    /// runs, and it may not run for a while): make sure a table guards Docker's bridges. A
    /// table left by an earlier run is kept (it holds more than the skeleton); without one,
    /// the skeleton ruleset is applied. Either way systemd hears READY, so dockerd, ordered
    /// after v6guard, starts with its bridges guarded.
    fn guard_at_start(&mut self) {
        // Both tables: a kept ip6 table without the bridge table (an upgrade from a version
        // without it, or a deletion while v6guard was down) would leave VLAN tags and router
        // advertisements unguarded until Docker is read.
        let present = match nft::list_tables() {
            Ok(tables) => [libc::NFPROTO_IPV6, libc::NFPROTO_BRIDGE]
                .iter()
                .all(|family| {
                    tables
                        .iter()
                        .any(|t| t.family == *family as u32 && t.name == TABLE_NAME && !t.dormant)
                }),
            Err(error) => {
                error!(%error, "cannot list nftables tables, so no skeleton ruleset; nothing guards Docker's bridges until Docker is read");
                return;
            }
        };
        if present {
            info!(
                "table ip6 {TABLE_NAME} from an earlier run is in place; kept until Docker is read"
            );
            self.update_status(|s| {
                s.at_start = Some(format!(
                    "kept table ip6 {TABLE_NAME} left by an earlier run"
                ))
            });
            self.announce("guarding with the table left by an earlier run; waiting for Docker");
            return;
        }
        match self.apply_skeleton("no table ip6 v6guard yet") {
            Skeleton::Applied(rules) => {
                self.update_status(|s| {
                    s.at_start = Some(format!(
                        "applied the skeleton ruleset ({rules} rules) before Docker was read"
                    ));
                    s.totals.transactions += 1;
                    s.totals.full_transactions += 1;
                });
                self.announce("skeleton ruleset in place; waiting for Docker");
            }
            Skeleton::StandingDown => self.announce("standing down before Docker is read"),
            Skeleton::FailClosedOff => self.announce("fail_closed off; waiting for Docker"),
            Skeleton::Failed => {}
        }
    }

    /// Guard every Docker bridge by name with the skeleton ruleset (before Docker is read),
    /// unless Docker manages IPv6 itself or `fail_closed` is off. Logs what it did and `why`.
    fn apply_skeleton(&mut self, why: &str) -> Skeleton {
        let host = self.host_without_docker();
        if let Some(reason) = self.stand_down_without_docker(host.as_ref()) {
            info!("{why}; no skeleton ruleset: {reason}");
            return Skeleton::StandingDown;
        }
        if self.inputs.options.bridge_names.is_empty()
            && self.inputs.options.bridge_prefixes.is_empty()
        {
            info!(
                "{why}; no skeleton ruleset: fail_closed is off, so nothing is guarded until \
                 Docker is read"
            );
            return Skeleton::FailClosedOff;
        }
        // Where Docker firewalls IPv6 (augment mode), the skeleton is augment's: no drops
        // until Docker is read, instead of closing Docker's bridges against Docker's rules.
        let augment = host
            .as_ref()
            .filter(|host| plan::augment::active(host, &self.inputs.options));
        let skeleton = self.inputs.plan(augment.unwrap_or(&skeleton_snapshot()));
        match self.reconciler.enforce(skeleton) {
            Ok(enforced) => {
                info!(
                    rules = enforced.rules,
                    ms = ms(enforced.took),
                    "{why}: applied the skeleton ruleset (Docker's bridges closed by name, except \
                     replies, neighbour discovery and echo) until Docker is read"
                );
                Skeleton::Applied(enforced.rules)
            }
            Err(error) => {
                error!(
                    %error,
                    "{why}; cannot apply the skeleton ruleset: nothing guards Docker's bridges \
                     until Docker is read and its ruleset applied"
                );
                Skeleton::Failed
            }
        }
    }

    /// Docker's own stand-down rule ([`plan::stand_down_reason`]) applied to what is known
    /// before its API answers: daemon.json and dockerd's flags, Docker's `ip6 docker-bridges`
    /// table, and, while `ip6tables` is unset (the version decides its default), the installed
    /// dockerd's version from `dockerd --version`, with `defaults.mode: stand-down`. Unless
    /// `--force`.
    fn stand_down_without_docker(&self, host: Option<&Snapshot>) -> Option<String> {
        if self.options.force {
            return None;
        }
        plan::stand_down(host?, &self.inputs.options).map(|reason| reason.to_string())
    }

    /// What is known of the host before Docker's API answers (see
    /// [`Self::stand_down_without_docker`]); `None` when dockerd's settings cannot be read.
    fn host_without_docker(&self) -> Option<Snapshot> {
        let mut host = skeleton_snapshot();
        host.daemon =
            crate::settings::read_daemon_settings(self.options.daemon_json.as_deref()).ok()?;
        host.engine.docker_nft_ip6_table = crate::host::docker_nft_ip6_table().unwrap_or(false);
        if host.daemon.ip6tables.value.is_none() {
            if let Some(version) = crate::host::installed_dockerd_version() {
                debug!("installed dockerd {version} (`dockerd --version`)");
                host.engine.version = version;
            }
        }
        Some(host)
    }

    async fn run(&mut self, mut hangup: Hangup, mut stops: Stops) -> Stop {
        let mut timers = Timers::new(&self.options);
        loop {
            tokio::select! {
                biased;
                stop = stops.recv() => return stop,
                () = self.step(&mut hangup, &mut timers) => {}
            }
            // After every step, not just on the timer: a stream of events must not starve it.
            timers.watchdog.ping_if_due();
            self.heartbeat();
        }
    }

    /// Tell systemd how things stand: READY=1 the first time (a table guards Docker's
    /// bridges, or v6guard stands down), then STATUS= whenever it changes.
    fn announce(&mut self, state: &str) {
        if self.announced.as_deref() == Some(state) {
            return;
        }
        if self.announced.is_none() {
            notify::notify(&format!("READY=1\nSTATUS={state}"));
            info!(state, "ready");
        } else {
            notify::notify(&format!("STATUS={state}"));
        }
        self.announced = Some(state.to_string());
    }

    /// Wait for the next thing to happen and handle it.
    async fn step(&mut self, hangup: &mut Hangup, timers: &mut Timers) {
        let far = Instant::now() + Duration::from_secs(86_400);
        let due = self.due();
        let reconnect_at = self.reconnect_at;
        let watchdog_at = timers.watchdog.due();
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
            _ = timers.verify.tick() => self.verify("periodic verify", Detected::PeriodicVerify),
            // The ping itself follows the step (see `run`).
            _ = sleep_until(watchdog_at.unwrap_or(far).into()), if watchdog_at.is_some() => {}
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
        self.connection = None;
        let delay = self.schedule_reconnect();
        warn!(
            retry_s = delay.as_secs_f32(),
            "lost Docker: {why}. Keeping the last applied ruleset in place (fail-closed); reconnecting"
        );
        self.update_status(|s| s.docker.connected = false);
    }

    /// Plan the next connection attempt, backing off; returns the delay.
    fn schedule_reconnect(&mut self) -> Duration {
        let delay = self.backoff.next_delay();
        self.reconnect_at = Some(Instant::now() + delay);
        delay
    }

    /// Connect, subscribe to events, then queue a full read: subscribing first means nothing
    /// that happens during the read is missed (the subscription also replays a few seconds).
    async fn reconnect(&mut self) {
        let connecting = DockerReader::connect_with_timeout(
            &self.options.docker_host,
            self.options.daemon_json.as_deref(),
            API_TIMEOUT,
        );
        let connected = timeout(DOCKER_DEADLINE, connecting)
            .await
            .unwrap_or(Err(ReadError::Deadline(DOCKER_DEADLINE)));
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
                let delay = self.schedule_reconnect();
                // The first failure, then only once the delay has reached its maximum.
                let first = !self.ever_connected && delay == FIRST_RETRY;
                if first || delay >= MAX_RETRY {
                    warn!(%error, retry_s = delay.as_secs_f32(), "Docker is not reachable; retrying");
                } else {
                    debug!(%error, "Docker is not reachable; retrying");
                }
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
            let read = timeout(DOCKER_DEADLINE, self.refresh(&pending))
                .await
                .unwrap_or(Err(ReadError::Deadline(DOCKER_DEADLINE)));
            match read {
                Ok(()) => {
                    // Docker answers: the next lost connection starts retrying quickly again.
                    self.backoff.reset();
                    self.enforce(&pending, &trigger, started)
                }
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
            self.reconciler.replace_containers(snapshot, &ids, fresh);
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
        self.record(trigger, Err(&message));
        match error {
            // Docker trouble: reconnect, which re-reads everything.
            ReadError::Docker(_) | ReadError::Deadline(_) => self.disconnected(&message),
            // A broken daemon.json: keep the rules, and keep the work: it runs again with the
            // next trigger (an event, the resync, SIGHUP), which reads the file again.
            ReadError::Settings(_) => {
                if self.settings_error.as_deref() == Some(message.as_str()) {
                    debug!(error = %message, "dockerd's settings still unreadable");
                } else {
                    error!(
                        error = %message,
                        "cannot read dockerd's settings; keeping the last applied ruleset. The \
                         work is retried with the next event, resync or SIGHUP"
                    );
                    self.settings_error = Some(message);
                }
                self.pending.defer(pending);
            }
        }
    }

    fn enforce(&mut self, pending: &Pending, trigger: &str, started: Instant) {
        let Some(snapshot) = &self.snapshot else {
            return;
        };
        let reason = plan::stand_down(snapshot, &self.inputs.options).map(|r| r.to_string());
        if self.stand_down(reason).is_some() {
            self.record(trigger, Ok(None));
            return;
        }
        let Some(snapshot) = &self.snapshot else {
            return;
        };
        let ids: Vec<String> = pending.containers.iter().cloned().collect();
        let changed = if pending.full || pending.list_all_containers() {
            reconcile::Changed::Everything
        } else {
            reconcile::Changed::Containers(&ids)
        };
        let wanted = self.reconciler.prepare(snapshot, &self.inputs, changed);
        crate::host::ensure_prerequisites(wanted);
        let ndp = (self.ndp_synced.as_ref() != Some(&wanted.ndp)).then(|| wanted.ndp.clone());
        if let Some(ndp) = ndp {
            self.sync_ndp(&ndp);
        }
        match self.reconciler.enforce_prepared() {
            Ok(enforced) => {
                self.pacer.record(started, enforced.transaction.changed());
                let latency = (pending.kind == Some(TriggerKind::Event))
                    .then(|| pending.since.map(|s| s.elapsed()))
                    .flatten();
                log_enforced(&enforced, latency, pending.docker_time_nano);
                self.settings_error = None;
                self.record(trigger, Ok(Some((&enforced, latency))));
                self.announce("enforcing Docker's state");
            }
            Err(error) => {
                let message = format!("{error}");
                error!(error = %message, "apply failed; the last applied ruleset stays in place");
                self.record(trigger, Err(&message));
            }
        }
    }

    /// Keep the NDP proxy entries beside the table, only when what is wanted changed. A failure
    /// is logged and retried at the next reconcile; the table does not wait for it.
    fn sync_ndp(&mut self, wanted: &crate::ruleset::NdpProxies) {
        if self.ndp_synced.as_ref() == Some(wanted) {
            return;
        }
        // What was ours at the last sync stays ours for this one, so entries of a network that
        // just went away (compose down) are removed with it.
        let mut effective = wanted.clone();
        if let Some(previous) = &self.ndp_synced {
            effective.owned.extend(previous.owned.iter().cloned());
        }
        match crate::ndp::sync(&effective) {
            Ok(_) => self.ndp_synced = Some(wanted.clone()),
            Err(error) => {
                error!(%error, "NDP proxy entries could not be updated; retrying at the next reconcile");
                self.ndp_synced = None;
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
        match (&reason, &self.stood_down) {
            (Some(why), None) => {
                error!(
                    reason = why.as_str(),
                    "standing down: not changing the ruleset (run with --force to override)"
                );
                self.remove_tables_standing_down(why);
            }
            (Some(why), Some(before)) if why != before => error!(
                reason = why.as_str(),
                "still standing down, for another reason (run with --force to override)"
            ),
            (None, Some(_)) => {
                info!("Docker no longer manages IPv6 itself; v6guard enforces again");
                self.update_status(|s| s.stand_down_cleanup = None);
            }
            _ => {}
        }
        self.stood_down = reason.clone();
        if reason.is_some() {
            self.announce("standing down: Docker manages IPv6 itself");
        }
        reason
    }

    /// Standing down: v6guard's table would fight Docker's own IPv6 firewall (a frozen
    /// published set dropping what Docker allows), so it goes, loudly. The next enforce (once
    /// Docker stops managing IPv6) installs the table afresh.
    fn remove_tables_standing_down(&mut self, why: &str) {
        self.reconciler.forget();
        let outcome = match nft::cleanup() {
            Ok(removed) if removed.is_empty() => return,
            Ok(removed) => {
                let tables = removed.join(", ");
                warn!(
                    "standing down: REMOVED v6guard's table(s) {tables}, so they do not fight \
                     Docker's own IPv6 firewall. Why: {why}"
                );
                format!("removed table(s) {tables} on standing down")
            }
            Err(error) => {
                error!(%error, "standing down: could not remove v6guard's tables; they may fight Docker's own IPv6 firewall. Remove them with `v6guard cleanup`");
                format!("could not remove v6guard's tables: {error}")
            }
        };
        self.update_status(|s| s.stand_down_cleanup = Some(outcome));
    }

    fn on_drift(&mut self, report: DriftReport) {
        // Coalesce: one restore for a burst of reports.
        let mut reports = vec![report];
        while let Ok(more) = self.drift_rx.try_recv() {
            reports.push(more);
        }
        // A change read before our last restore began is already overwritten by it (the
        // periodic verify got there first): restoring again would only spend the restore limit.
        let superseded = |seen: &Instant| self.restore_started.is_some_and(|r| *seen < r);
        let foreign = reports.iter().find_map(|r| match r {
            DriftReport::Foreign {
                process,
                pid,
                changes,
                seen,
            } if !superseded(seen) => Some((process.clone(), *pid, summarize(changes))),
            _ => None,
        });
        let overrun = reports.contains(&DriftReport::Overrun);
        match foreign {
            Some((process, pid, changes)) => {
                let what = format!(
                    "`{process}` (pid {pid}) changed table ip6 or bridge {TABLE_NAME}: {changes}"
                );
                self.restore(&what, Detected::Notification);
            }
            None if overrun => {
                self.verify("nftables notifications were lost", Detected::Notification)
            }
            None => debug!("table change already undone by the last restore"),
        }
    }

    /// Compare the kernel with the applied ruleset; restore on any difference.
    fn verify(&mut self, why: &str, detected: Detected) {
        if self.stood_down.is_some() {
            return;
        }
        match self.reconciler.verify() {
            Ok(problems) if problems.is_empty() => {
                debug!(why, "kernel matches the applied ruleset")
            }
            Ok(problems) => self.restore(&format!("{why}: {}", problems.join("; ")), detected),
            Err(error) => warn!(%error, why, "cannot verify the table"),
        }
    }

    /// Put the applied ruleset back. Notifications are answered at once up to the restore
    /// limit; the periodic verify always restores (see [`RestoreLimit`]).
    fn restore(&mut self, what: &str, detected: Detected) {
        if self.stood_down.is_some() {
            warn!("{what}; not restoring while standing down");
            return;
        }
        let now = Instant::now();
        let decision = self.restores.decide(detected, now);
        let window_s = RESTORE_WINDOW.as_secs();
        let verify_s = self.options.verify_interval.as_secs();
        if !decision.restore {
            if decision.log {
                error!(
                    "DRIFT: {what}. Something keeps changing v6guard's table ({} restores in \
                     {window_s} s): not restoring at once any more, the periodic verify (every \
                     {verify_s} s) restores it. Summed up once every {window_s} s from now on",
                    self.restores.recent()
                );
            } else {
                debug!("DRIFT: {what}; left to the periodic verify");
            }
            return;
        }
        let started = Instant::now();
        match self.reconciler.restore() {
            Ok(true) => {
                self.restore_started = Some(started);
                self.restores.restored(now);
                let took = ms(started.elapsed());
                if decision.log && decision.fighting {
                    error!(
                        ms = took,
                        "DRIFT: {what}. Restored v6guard's ruleset. Something keeps changing the \
                         table: {} restores in {window_s} s, {} changes left to the periodic \
                         verify (every {verify_s} s) since the last such line",
                        self.restores.recent(),
                        decision.unanswered
                    );
                } else if decision.log {
                    error!(ms = took, "DRIFT: {what}. Restored v6guard's ruleset");
                } else {
                    debug!(ms = took, "DRIFT: {what}. Restored v6guard's ruleset");
                }
                self.update_status(|s| s.totals.drift_restores += 1);
            }
            // Nothing applied yet: a table kept from an earlier run was changed before this
            // daemon applied anything. Counted against the restore limit whatever follows, so
            // a fight over it is not answered at full speed either.
            Ok(false) => {
                self.restores.restored(now);
                self.replace_unknown_table(what, started);
            }
            Err(error) => error!(%error, "DRIFT: {what}. Restoring FAILED"),
        }
    }

    /// The table changed before this daemon applied anything, so there is nothing of its own
    /// to put back. With Docker read already (its first apply failed), apply the real plan at
    /// once; before that, guard the bridges with the skeleton.
    fn replace_unknown_table(&mut self, what: &str, started: Instant) {
        if self.snapshot.is_some() {
            error!("DRIFT: {what}. Nothing applied yet; applying the plan from Docker's state");
            self.pending.full(
                TriggerKind::Resync,
                "drift before the first apply",
                Instant::now(),
            );
            return;
        }
        error!("DRIFT: {what}. Nothing applied yet and Docker not read: installing the skeleton");
        if let Skeleton::Applied(_) = self.apply_skeleton("drift before Docker was read") {
            self.restore_started = Some(started);
            self.update_status(|s| s.totals.drift_restores += 1);
            self.announce("skeleton ruleset in place; waiting for Docker");
        }
    }

    /// SIGHUP: reload the configuration (keeping the old one if the new one is broken), then
    /// re-read everything, daemon.json included.
    fn on_reload(&mut self) {
        let result = match self.loader.load() {
            Ok(inputs) => {
                info!("SIGHUP: configuration reloaded");
                self.inputs = inputs;
                Ok(())
            }
            Err(message) => {
                error!(error = %message, "SIGHUP: configuration reload failed; keeping the previous configuration");
                Err(message)
            }
        };
        // One write: `v6guard reload` reads the answer when the generation moves.
        self.update_status(|s| s.note_reload(result));
        self.pending
            .full(TriggerKind::Reload, "SIGHUP", Instant::now());
    }

    /// Record a reconcile in the status (and state file, and metrics). `Ok(None)`: stood
    /// down.
    fn record(
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

    /// Note a turn of the loop; rewrite the state file at most once per verify interval, so
    /// `v6guard status` can tell a quiet loop from a hung one.
    fn heartbeat(&self) {
        let due = {
            let mut status = self.status.lock().unwrap_or_else(|p| p.into_inner());
            status.beat(unix_now(), self.options.verify_interval)
        };
        if due {
            self.update_status(|_| {});
        }
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
    watchdog: Watchdog,
}

impl Timers {
    fn new(options: &DaemonOptions) -> Self {
        let every = |period: Duration| {
            let period = period.max(Duration::from_millis(100));
            let mut interval = interval_at(tokio::time::Instant::now() + period, period);
            interval.set_missed_tick_behavior(MissedTickBehavior::Delay);
            interval
        };
        Timers {
            resync: every(options.resync_interval),
            verify: every(options.verify_interval),
            watchdog: Watchdog {
                interval: notify::watchdog_interval(),
                last: Instant::now(),
            },
        }
    }
}

/// Reconnect delays: [`FIRST_RETRY`] doubling to [`MAX_RETRY`]. Reset only by a successful
/// read of Docker, not by connecting: a dockerd that accepts connections but fails every
/// read is retried ever more slowly, not every 250 ms.
#[derive(Debug)]
struct Backoff {
    next: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff { next: FIRST_RETRY }
    }
}

impl Backoff {
    /// The delay before the next attempt; the one after it doubles.
    fn next_delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = (self.next * 2).min(MAX_RETRY);
        delay
    }

    fn reset(&mut self) {
        self.next = FIRST_RETRY;
    }
}

/// systemd's watchdog, pinged from the loop itself (a hung loop stops pinging) every half
/// `WatchdogSec`. A step waits at most [`DOCKER_DEADLINE`] for Docker, so a live loop pings
/// at least every `WatchdogSec / 2 + DOCKER_DEADLINE` (plus milliseconds of kernel work).
struct Watchdog {
    interval: Option<Duration>,
    last: Instant,
}

impl Watchdog {
    /// When the next ping is due (never without a watchdog).
    fn due(&self) -> Option<Instant> {
        self.interval.map(|interval| self.last + interval)
    }

    fn ping_if_due(&mut self) {
        if self.due().is_some_and(|due| Instant::now() >= due) {
            notify::notify("WATCHDOG=1");
            self.last = Instant::now();
        }
    }
}

/// What [`Daemon::apply_skeleton`] did.
enum Skeleton {
    /// Installed, with this many rules.
    Applied(usize),
    /// Docker manages IPv6 itself (known without Docker): nothing installed.
    StandingDown,
    /// `fail_closed` is off: nothing installed.
    FailClosedOff,
    /// The kernel refused it (logged).
    Failed,
}

/// What the skeleton ruleset is planned from: a host with no networks and no containers, and
/// Docker's default settings. With the default (fail-closed) options its plan guards docker0
/// and every `br-*` bridge by name and drops everything entering them except replies,
/// neighbour discovery and echo requests: containers that dockerd restarts before v6guard has
/// read Docker are closed, not open.
pub fn skeleton_snapshot() -> Snapshot {
    Snapshot {
        engine: Engine {
            version: String::new(),
            api_version: String::new(),
            bridge_nf_ip6tables: false,
            docker_nft_ip6_table: false,
        },
        daemon: DaemonSettings::default(),
        networks: Vec::new(),
        containers: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ruleset::{Action, InterfaceName, Match, Rule, Ruleset};

    /// Whether a rule only lets through replies, neighbour discovery, echo, or what a set
    /// holds that is empty here.
    fn harmless(rule: &Rule, ruleset: &Ruleset) -> bool {
        rule.matches.iter().any(|m| match m {
            Match::EstablishedOrRelated | Match::Icmpv6Type(_) => true,
            Match::Lookup { set, .. } => ruleset.set(set).is_some_and(|s| s.elements.is_empty()),
            _ => false,
        })
    }

    #[test]
    fn the_skeleton_closes_every_docker_bridge() {
        let skeleton = PlanInputs::default().plan(&skeleton_snapshot());
        assert_eq!(skeleton.table, TABLE_NAME);
        assert_eq!(skeleton.element_count(), 0);
        let chain = |name: &str| {
            skeleton
                .chains
                .iter()
                .find(|c| c.name == name)
                .unwrap_or_else(|| panic!("chain {name}"))
        };
        let forward = chain(plan::FORWARD_CHAIN);
        for bridge in [
            InterfaceName::Exact("docker0".into()),
            InterfaceName::Prefix("br-".into()),
        ] {
            assert!(
                forward
                    .rules
                    .iter()
                    .any(|r| r.matches == vec![Match::OutInterface(bridge.clone())]
                        && r.action == Action::Jump(plan::TO_BRIDGE_CHAIN.into())),
                "{bridge:?} is guarded"
            );
        }
        for rule in &forward.rules {
            if matches!(rule.action, Action::Accept | Action::Return) {
                assert!(harmless(rule, &skeleton), "forward lets through {rule:?}");
            }
        }
        let to_bridge = chain(plan::TO_BRIDGE_CHAIN);
        let last = to_bridge.rules.last().expect("rules");
        assert!(
            last.matches.is_empty() && last.action == Action::Drop,
            "ends with an unconditional drop: {last:?}"
        );
        for rule in &to_bridge.rules {
            assert!(
                rule.action == Action::Drop || harmless(rule, &skeleton),
                "to-bridge lets through {rule:?}"
            );
        }
    }

    #[test]
    fn reconnects_back_off_until_a_read_succeeds() {
        let mut backoff = Backoff::default();
        let delays: Vec<u128> = (0..8).map(|_| backoff.next_delay().as_millis()).collect();
        assert_eq!(delays, [250, 500, 1000, 2000, 4000, 8000, 10_000, 10_000]);
        backoff.reset();
        assert_eq!(backoff.next_delay(), FIRST_RETRY);
    }

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
