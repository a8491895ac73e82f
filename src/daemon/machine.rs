//! The daemon's state machine: [`Input`]s in, [`Effect`]s out.
//!
//! Everything the daemon decides is decided here, on one thread, from what it is told:
//! Docker events, the results of the reads and connections it asked for, timers, signals,
//! drift reports. What it wants done with Docker (connect, read these containers or networks),
//! with systemd (notify) and with the state file comes out as [`Effect`]s, which the async
//! glue in `daemon/mod.rs` carries out, feeding the results back as inputs. Kernel and NDP
//! changes go through the [`Enforcer`], which it owns: they are synchronous and their results
//! decide what happens next. With a fake kernel and host, the whole loop runs in unit tests
//! without dockerd (see the tests at the end of this module).
//!
//! Skeleton, stand-down and drift handling live in `guard.rs`; status records and the log
//! line per reconcile in `record.rs`. Both are `impl Machine` blocks.

use std::time::{Duration, Instant};

use tracing::{debug, error, info, info_span, warn};

use super::drift::{DriftReport, RestoreLimit};
use super::enforcer::{Enforcer, Host};
use super::inputs::{InputsError, PlanInputs};
use super::pacing::{Backoff, FIRST_RETRY, MAX_RETRY, Pacer, Pending, TriggerKind};
use super::reconcile::{self, Kernel};
use super::status::{Status, unix_now};
use crate::docker::events::Classified;
use crate::plan;
use crate::read::ReadError;
use crate::snapshot::{Container, Network, Snapshot};

/// What happened: the machine's only way of learning anything.
#[derive(Debug)]
pub enum Input {
    /// The daemon starts: guard Docker's bridges before Docker is asked anything.
    Start,
    /// The reconnect delay ([`Machine::reconnect_at`]) has passed.
    ReconnectDue,
    /// The answer to [`Effect::Connect`]: connected and subscribed to events, or why not.
    Connected(Result<(), ReadError>),
    /// A Docker event that matters.
    Event(Classified),
    /// The event stream failed or ended; why.
    EventsLost(String),
    /// Pending work is due ([`Machine::due`]).
    WorkDue,
    /// The answer to [`Effect::Read`].
    Read(Result<ReadResult, ReadError>),
    /// The full resync timer.
    ResyncTick,
    /// The periodic verify timer.
    VerifyTick,
    /// SIGHUP, with the configuration it reloaded (or why it could not).
    Reload(Result<PlanInputs, InputsError>),
    /// Reports from the nftables monitor, coalesced.
    Drift(Vec<DriftReport>),
}

/// What the machine wants done outside itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Connect to Docker and subscribe to its events; answer with [`Input::Connected`].
    Connect,
    /// Drop the connection (its event stream included): Docker is treated as lost.
    Disconnect,
    /// Read from Docker; answer with [`Input::Read`].
    Read(ReadRequest),
    /// The status changed: publish it ([`Machine::status`]) and rewrite the state file.
    WriteStatus,
    /// Tell systemd (`READY=1`, `STATUS=…`).
    Notify(String),
}

/// What to read from Docker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadRequest {
    /// A whole Snapshot (engine, settings, networks, containers).
    Everything,
    /// Parts of it, to update the Snapshot already held.
    Changed {
        containers: Containers,
        networks: bool,
    },
}

/// Which containers a [`ReadRequest::Changed`] reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Containers {
    None,
    All,
    /// These, by ID; those not running any more are simply absent from the answer.
    Ids(Vec<String>),
}

/// The answer to a [`ReadRequest`], in its shape.
#[derive(Debug, Clone)]
pub enum ReadResult {
    Everything(Box<Snapshot>),
    Changed {
        containers: Option<Vec<Container>>,
        networks: Option<Vec<Network>>,
    },
}

/// The daemon flags the machine needs.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Apply even though Docker manages IPv6 itself.
    pub force: bool,
    pub resync_interval: Duration,
    pub verify_interval: Duration,
}

/// A read of Docker in progress: the work it is for.
struct Reading {
    pending: Pending,
    trigger: String,
    started: Instant,
    networks_read: bool,
}

/// All the daemon's state. See the module documentation.
pub struct Machine<K: Kernel, H: Host> {
    pub(super) settings: Settings,
    pub(super) inputs: PlanInputs,
    pub(super) enforcer: Enforcer<K, H>,
    pub(super) snapshot: Option<Snapshot>,
    pending: Pending,
    pacer: Pacer,
    reading: Option<Reading>,
    connected: bool,
    ever_connected: bool,
    /// When to try connecting again (set while disconnected and not connecting).
    reconnect_at: Option<Instant>,
    backoff: Backoff,
    pub(super) restores: RestoreLimit,
    /// When the last restore began: changes seen before it are already undone.
    pub(super) restore_started: Option<Instant>,
    pub(super) stood_down: Option<String>,
    pub(super) force_warned: bool,
    /// The last daemon.json error logged, so a broken file is not logged on every event.
    settings_error: Option<String>,
    /// The last state told to systemd (READY=1 went with the first).
    announced: Option<String>,
    pub(super) status: Status,
    status_changed: bool,
    effects: Vec<Effect>,
}

impl<K: Kernel, H: Host> Machine<K, H> {
    pub fn new(
        settings: Settings,
        inputs: PlanInputs,
        enforcer: Enforcer<K, H>,
        status: Status,
    ) -> Self {
        Machine {
            settings,
            inputs,
            enforcer,
            snapshot: None,
            pending: Pending::default(),
            pacer: Pacer::default(),
            reading: None,
            connected: false,
            ever_connected: false,
            reconnect_at: None,
            backoff: Backoff::default(),
            restores: RestoreLimit::default(),
            restore_started: None,
            stood_down: None,
            force_warned: false,
            settings_error: None,
            announced: None,
            status,
            status_changed: false,
            effects: Vec::new(),
        }
    }

    /// Take one input; the effects it calls for, in order.
    pub fn handle(&mut self, input: Input, now: Instant) -> Vec<Effect> {
        match input {
            Input::Start => {
                self.guard_at_start();
                self.reconnect_at = Some(now);
            }
            Input::ReconnectDue => {
                if !self.connected && self.reconnect_at.is_some() {
                    self.reconnect_at = None;
                    self.effects.push(Effect::Connect);
                }
            }
            Input::Connected(result) => self.on_connected(result, now),
            Input::Event(event) => {
                debug!(event = %event.label, "docker event");
                self.pending
                    .event(&event.changes, &event.label, event.time_nano, now);
                self.update_status(|s| s.totals.events += 1);
            }
            Input::EventsLost(why) => self.disconnected(&why, now),
            Input::WorkDue => self.start_reading(now),
            Input::Read(result) => self.on_read(result, now),
            Input::ResyncTick => {
                let label = format!("every {} s", self.settings.resync_interval.as_secs());
                self.pending.full(TriggerKind::Resync, &label, now);
            }
            Input::VerifyTick => self.verify(
                "periodic verify",
                super::drift::Detected::PeriodicVerify,
                now,
            ),
            Input::Reload(loaded) => self.on_reload(loaded, now),
            Input::Drift(reports) => self.on_drift(reports, now),
        }
        if std::mem::take(&mut self.status_changed) {
            self.effects.push(Effect::WriteStatus);
        }
        std::mem::take(&mut self.effects)
    }

    /// When pending work should run: only while connected (every reconcile reads Docker)
    /// and not already reading.
    pub fn due(&self) -> Option<Instant> {
        let since = self.pending.since?;
        if !self.connected || self.reading.is_some() {
            return None;
        }
        Some(self.pacer.due(since))
    }

    /// When to try connecting to Docker again (`None`: connected, or connecting).
    pub fn reconnect_at(&self) -> Option<Instant> {
        self.reconnect_at
    }

    /// The status as last changed (what [`Effect::WriteStatus`] publishes).
    pub fn status(&self) -> &Status {
        &self.status
    }

    /// Note a turn of the loop at `now` (since the epoch); `true` when the state file is due
    /// a rewrite (at most once per verify interval).
    pub fn heartbeat(&mut self, now: std::time::Duration) -> bool {
        self.status.beat(now, self.settings.verify_interval)
    }

    fn on_connected(&mut self, result: Result<(), ReadError>, now: Instant) {
        match result {
            Ok(()) => {
                self.connected = true;
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
                // Subscribed first, so nothing that happens during this read is missed.
                self.pending.full(kind, "connected to Docker", now);
            }
            Err(error) => {
                let delay = self.schedule_reconnect(now);
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

    fn disconnected(&mut self, why: &str, now: Instant) {
        self.connected = false;
        self.reading = None;
        self.effects.push(Effect::Disconnect);
        let delay = self.schedule_reconnect(now);
        warn!(
            retry_s = delay.as_secs_f32(),
            "lost Docker: {why}. Keeping the last applied ruleset in place (fail-closed); reconnecting"
        );
        self.update_status(|s| s.docker.connected = false);
    }

    /// Plan the next connection attempt, backing off; returns the delay.
    fn schedule_reconnect(&mut self, now: Instant) -> Duration {
        let delay = self.backoff.next_delay();
        self.reconnect_at = Some(now + delay);
        delay
    }

    /// Take the pending work and ask for what it needs read: everything on a full trigger
    /// (or before the first read), else just the changed parts.
    fn start_reading(&mut self, now: Instant) {
        if self.due().is_none_or(|due| due > now) {
            return;
        }
        let pending = std::mem::take(&mut self.pending);
        let request = if pending.full || self.snapshot.is_none() {
            ReadRequest::Everything
        } else {
            let containers = if pending.list_all_containers() {
                Containers::All
            } else if pending.containers.is_empty() {
                Containers::None
            } else {
                Containers::Ids(pending.containers.iter().cloned().collect())
            };
            ReadRequest::Changed {
                containers,
                networks: pending.networks,
            }
        };
        let networks_read = matches!(request, ReadRequest::Changed { networks: true, .. });
        self.reading = Some(Reading {
            trigger: pending.describe(),
            pending,
            started: now,
            networks_read,
        });
        self.effects.push(Effect::Read(request));
    }

    fn on_read(&mut self, result: Result<ReadResult, ReadError>, now: Instant) {
        let Some(mut reading) = self.reading.take() else {
            return;
        };
        let span = info_span!("reconcile", trigger = %reading.trigger);
        let _entered = span.enter();
        let fresh = match result {
            Ok(fresh) => fresh,
            Err(error) => return self.read_failed(reading, error, now),
        };
        match (fresh, &mut self.snapshot) {
            (ReadResult::Everything(snapshot), _) => self.snapshot = Some(*snapshot),
            (
                ReadResult::Changed {
                    containers,
                    networks,
                },
                Some(snapshot),
            ) => {
                if let Some(fresh) = containers {
                    if reading.pending.list_all_containers() {
                        snapshot.containers = fresh;
                    } else {
                        let ids: Vec<String> = reading.pending.containers.iter().cloned().collect();
                        self.enforcer.replace_containers(snapshot, &ids, fresh);
                    }
                }
                if let Some(networks) = networks {
                    snapshot.networks = networks;
                }
                // A container on a network the Snapshot does not know yet (its create event
                // still queued, or lost): read the networks too, so it is not left closed.
                if !reading.networks_read && has_unknown_network(snapshot) {
                    reading.networks_read = true;
                    self.reading = Some(reading);
                    self.effects.push(Effect::Read(ReadRequest::Changed {
                        containers: Containers::None,
                        networks: true,
                    }));
                    return;
                }
            }
            // A partial answer without a Snapshot to apply it to: read everything next time.
            (ReadResult::Changed { .. }, None) => {
                self.pending.defer(reading.pending);
                self.pending
                    .full(TriggerKind::Resync, "incomplete read", now);
                return;
            }
        }
        // Docker answers: the next lost connection starts retrying quickly again.
        self.backoff.reset();
        self.enforce(&reading.pending, &reading.trigger, reading.started);
    }

    fn read_failed(&mut self, reading: Reading, error: ReadError, now: Instant) {
        let message = error.to_string();
        self.record(&reading.trigger, Err(&message));
        match error {
            // Docker trouble: reconnect, which re-reads everything.
            ReadError::Docker(_) | ReadError::Deadline(_) => self.disconnected(&message, now),
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
                self.pending.defer(reading.pending);
            }
        }
    }

    /// Plan the Snapshot and enforce it, unless Docker manages IPv6 itself.
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
        match self
            .enforcer
            .enforce_changes(snapshot, &self.inputs, changed)
        {
            Ok(applied) => {
                if let Err(error) = applied.ndp {
                    error!(%error, "NDP proxy entries could not be updated; retrying at the next reconcile");
                }
                let enforced = applied.table;
                self.pacer.record(started, enforced.transaction.changed());
                let latency = (pending.kind == Some(TriggerKind::Event))
                    .then(|| pending.since.map(|s| s.elapsed()))
                    .flatten();
                super::record::log_enforced(&enforced, latency, pending.docker_time_nano);
                self.settings_error = None;
                self.record(trigger, Ok(Some((&enforced, latency))));
                self.announce("enforcing Docker's state");
            }
            Err(error) => {
                let message = error.to_string();
                error!(error = %message, "apply failed; the last applied ruleset stays in place");
                self.record(trigger, Err(&message));
            }
        }
    }

    /// SIGHUP: take the reloaded configuration (keeping the old one if the new one is
    /// broken), then re-read everything, daemon.json included.
    fn on_reload(&mut self, loaded: Result<PlanInputs, InputsError>, now: Instant) {
        let result = match loaded {
            Ok(inputs) => {
                info!("SIGHUP: configuration reloaded");
                self.inputs = inputs;
                Ok(())
            }
            Err(error) => {
                error!(%error, "SIGHUP: configuration reload failed; keeping the previous configuration");
                Err(error.to_string())
            }
        };
        // One write: `v6guard reload` reads the answer when the generation moves.
        self.update_status(|s| s.note_reload(result));
        self.pending.full(TriggerKind::Reload, "SIGHUP", now);
    }

    /// Tell systemd how things stand: READY=1 the first time (a table guards Docker's
    /// bridges, or v6guard stands down), then STATUS= whenever it changes.
    pub(super) fn announce(&mut self, state: &str) {
        if self.announced.as_deref() == Some(state) {
            return;
        }
        if self.announced.is_none() {
            self.effects
                .push(Effect::Notify(format!("READY=1\nSTATUS={state}")));
            info!(state, "ready");
        } else {
            self.effects.push(Effect::Notify(format!("STATUS={state}")));
        }
        self.announced = Some(state.to_string());
    }

    /// Queue a full re-read and re-plan (e.g. drift before the first apply).
    pub(super) fn queue_full(&mut self, kind: TriggerKind, label: &str, now: Instant) {
        self.pending.full(kind, label, now);
    }

    /// Change the status; [`Effect::WriteStatus`] follows at the end of the input.
    pub(super) fn update_status(&mut self, change: impl FnOnce(&mut Status)) {
        change(&mut self.status);
        self.status.updated_at = unix_now().as_secs();
        self.status_changed = true;
    }
}

/// Whether a container is attached to a network the Snapshot does not hold.
fn has_unknown_network(snapshot: &Snapshot) -> bool {
    snapshot
        .containers
        .iter()
        .flat_map(|c| &c.endpoints)
        .any(|e| snapshot.network_by_id(&e.network_id).is_none())
}

#[cfg(test)]
#[path = "machine_tests.rs"]
mod tests;
