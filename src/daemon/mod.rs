//! `v6guard daemon`: keep table ip6 v6guard true to what Docker is doing, at every moment.
//!
//! The daemon is a state machine ([`machine`]): inputs (Docker events, read and connect
//! results, timers, SIGHUP, drift reports) go in, effects (connect, read, status, notify) come
//! out, and one [`enforcer::Enforcer`] makes every kernel and NDP change, the same one `v6guard
//! apply` uses. This module is the async glue only: it waits for whichever input comes first,
//! hands it to the machine, and carries out the effects, feeding their results back. Work is
//! coalesced ([`pacing`]) and enforced ([`reconcile`]) by the smallest atomic transaction.
//!
//! Failure policy, everywhere: keep the last applied ruleset (fail-closed) and say so. Docker
//! going away, a broken configuration, a failed read or a refused transaction never remove
//! rules and never stop the daemon; only SIGTERM/SIGINT do. Before Docker is first read, a
//! skeleton ruleset guards every Docker bridge (see [`skeleton_snapshot`]). The daemon removes
//! its tables in two cases only: `--cleanup-on-exit`, and standing down because Docker
//! firewalls IPv6 itself (two firewalls on the same traffic would fight).

pub mod drift;
pub mod enforcer;
mod guard;
pub mod inputs;
pub mod machine;
pub mod metrics;
pub mod notify;
pub mod pacing;
pub mod reconcile;
mod record;
pub mod signals;
pub mod status;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bollard::models::EventMessage;
use futures_util::{Stream, StreamExt};
use tokio::sync::mpsc::{UnboundedReceiver, unbounded_channel};
use tokio::time::{Interval, MissedTickBehavior, interval_at, sleep_until, timeout};
use tracing::{debug, info, warn};

use crate::docker::events;
use crate::nft::{self, NftError};
use crate::read::{DockerReader, ReadError};
use crate::ruleset::TABLE_NAME;
use crate::snapshot::{DaemonSettings, Engine, Snapshot};
use drift::DriftReport;
use enforcer::{Enforcer, System};
use inputs::{InputsError, LoadInputs};
use machine::{Containers, Effect, Input, Machine, ReadRequest, ReadResult, Settings};
use reconcile::Netlink;
use signals::{Hangup, Stop, Stops};
use status::{Status, unix_now};

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
    Inputs(#[source] InputsError),
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
    crate::memory::use_one_arena();
    let inputs = loader.load().map_err(DaemonError::Inputs)?;
    let (hangup, stops) = signals::register().map_err(DaemonError::Signals)?;
    let (drift_tx, drift_rx) = unbounded_channel();
    if let Err(error) = drift::spawn_monitor(TABLE_NAME, drift_tx) {
        warn!(%error, "cannot watch nftables for changes; drift is caught by the periodic verify only");
    }
    let status = Status {
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
    };
    let shared = Arc::new(Mutex::new(status.clone()));
    if let Some(addr) = options.metrics_listen {
        metrics::serve(addr, Arc::clone(&shared))
            .await
            .map_err(|source| DaemonError::Metrics { addr, source })?;
    }
    info!(
        docker = %options.docker_host,
        resync_s = options.resync_interval.as_secs(),
        verify_s = options.verify_interval.as_secs(),
        "v6guard daemon starting"
    );
    let settings = Settings {
        force: options.force,
        resync_interval: options.resync_interval,
        verify_interval: options.verify_interval,
    };
    let enforcer = Enforcer::system(options.daemon_json.clone());
    let cleanup = options.cleanup_on_exit;
    let mut daemon = Daemon {
        machine: Machine::new(settings, inputs, enforcer, status),
        options,
        loader,
        connection: None,
        drift_rx,
        shared,
        watchdog: Watchdog::new(),
    };
    daemon.handle(Input::Start).await;
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

/// The longest the loop waits for Docker in one step: connecting, or one read however many
/// API calls it makes. Past it Docker counts as unreachable (reconnect, full resync). This
/// bounds a step, so the watchdog (pinged from the loop) only fires on a loop that really
/// hangs: see packaging/systemd/v6guard.service for the arithmetic.
pub const DOCKER_DEADLINE: Duration = Duration::from_secs(20);
/// Timeout of each API call the daemon makes (to the response headers), below the 30 s of
/// the one-shot commands: one stuck call fails on its own, well inside [`DOCKER_DEADLINE`].
const API_TIMEOUT: Duration = Duration::from_secs(10);

/// The glue: the machine, and the I/O handles it must not hold (Docker, channels, files).
struct Daemon<L> {
    machine: Machine<Netlink, System>,
    options: DaemonOptions,
    loader: L,
    connection: Option<Connection>,
    drift_rx: UnboundedReceiver<DriftReport>,
    /// What `v6guard status` and the metrics endpoint see.
    shared: Arc<Mutex<Status>>,
    watchdog: Watchdog,
}

impl<L: LoadInputs> Daemon<L> {
    async fn run(&mut self, mut hangup: Hangup, mut stops: Stops) -> Stop {
        let mut timers = Timers::new(&self.options);
        loop {
            tokio::select! {
                biased;
                stop = stops.recv() => return stop,
                () = self.step(&mut hangup, &mut timers) => {}
            }
            // After every step, not just on the timer: a stream of events must not starve it.
            self.watchdog.ping_if_due();
            // The state file's heartbeat, so `v6guard status` tells a quiet loop from a hung one.
            if self.machine.heartbeat(unix_now()) {
                self.publish_status();
            }
        }
    }

    /// Wait for the next input and handle it.
    async fn step(&mut self, hangup: &mut Hangup, timers: &mut Timers) {
        let far = Instant::now() + Duration::from_secs(86_400);
        let due = self.machine.due();
        let reconnect_at = self.machine.reconnect_at();
        let watchdog_at = self.watchdog.due();
        let input = tokio::select! {
            biased;
            Some(report) = self.drift_rx.recv() => {
                // Coalesce: one restore for a burst of reports.
                let mut reports = vec![report];
                while let Ok(more) = self.drift_rx.try_recv() {
                    reports.push(more);
                }
                Input::Drift(reports)
            }
            () = hangup.recv() => Input::Reload(self.loader.load()),
            item = next_event(&mut self.connection) => match item {
                Some(Ok(event)) => match events::classify(&event) {
                    Some(classified) => Input::Event(classified),
                    None => return,
                },
                Some(Err(error)) => Input::EventsLost(format!("the event stream failed: {error}")),
                None => Input::EventsLost(
                    "the event stream ended (dockerd stopped or restarted)".into(),
                ),
            },
            _ = sleep_until(reconnect_at.unwrap_or(far).into()), if reconnect_at.is_some() => {
                Input::ReconnectDue
            }
            _ = sleep_until(due.unwrap_or(far).into()), if due.is_some() => Input::WorkDue,
            _ = timers.resync.tick() => Input::ResyncTick,
            _ = timers.verify.tick() => Input::VerifyTick,
            // The ping itself follows the step (see `run`).
            _ = sleep_until(watchdog_at.unwrap_or(far).into()), if watchdog_at.is_some() => return,
        };
        self.handle(input).await;
    }

    /// Hand `input` to the machine and carry out the effects, feeding the answers of
    /// connects and reads back in until there is nothing left to do.
    async fn handle(&mut self, input: Input) {
        let mut queue = VecDeque::from([input]);
        while let Some(input) = queue.pop_front() {
            // Between inputs too: a read that revealed more to read waits twice for Docker.
            self.watchdog.ping_if_due();
            for effect in self.machine.handle(input, Instant::now()) {
                match effect {
                    Effect::Connect => queue.push_back(Input::Connected(self.connect().await)),
                    Effect::Disconnect => self.connection = None,
                    Effect::Read(request) => {
                        queue.push_back(Input::Read(self.read(&request).await))
                    }
                    Effect::WriteStatus => self.publish_status(),
                    Effect::Notify(message) => notify::notify(&message),
                }
            }
        }
    }

    /// Connect, then subscribe to events (before the machine's first read, so nothing that
    /// happens during it is missed; the subscription also replays a few seconds).
    async fn connect(&mut self) -> Result<(), ReadError> {
        let connecting = DockerReader::connect_with_timeout(
            &self.options.docker_host,
            self.options.daemon_json.as_deref(),
            API_TIMEOUT,
        );
        let reader = timeout(DOCKER_DEADLINE, connecting)
            .await
            .unwrap_or(Err(ReadError::Deadline(DOCKER_DEADLINE)))?;
        let events: EventStream = Box::pin(events::subscribe(reader.client()));
        self.connection = Some(Connection { reader, events });
        Ok(())
    }

    /// Carry out a [`ReadRequest`] within [`DOCKER_DEADLINE`].
    async fn read(&self, request: &ReadRequest) -> Result<ReadResult, ReadError> {
        let Some(connection) = &self.connection else {
            return Err(ReadError::Deadline(Duration::ZERO));
        };
        timeout(DOCKER_DEADLINE, read(&connection.reader, request))
            .await
            .unwrap_or(Err(ReadError::Deadline(DOCKER_DEADLINE)))
    }

    /// Publish the machine's status to `v6guard status` and the metrics, and the state file.
    fn publish_status(&self) {
        let status = self.machine.status().clone();
        if let Err(error) = status.write(&self.options.state_file) {
            debug!(%error, path = %self.options.state_file.display(), "cannot write the state file");
        }
        *self.shared.lock().unwrap_or_else(|p| p.into_inner()) = status;
    }
}

/// Read what `request` asks for.
async fn read(reader: &DockerReader, request: &ReadRequest) -> Result<ReadResult, ReadError> {
    let (containers, networks) = match request {
        ReadRequest::Everything => {
            return Ok(ReadResult::Everything(Box::new(reader.snapshot().await?)));
        }
        ReadRequest::Changed {
            containers,
            networks,
        } => (containers, *networks),
    };
    let containers = match containers {
        Containers::None => None,
        Containers::All => Some(reader.all_containers().await?),
        Containers::Ids(ids) => Some(reader.containers(ids).await?),
    };
    let networks = match networks {
        true => Some(reader.networks().await?),
        false => None,
    };
    Ok(ReadResult::Changed {
        containers,
        networks,
    })
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
        }
    }
}

/// systemd's watchdog, pinged from the loop itself (a hung loop stops pinging) every half
/// `WatchdogSec`, checked after every step and between the inputs of one. A read waits at most
/// [`DOCKER_DEADLINE`] for Docker, so a live loop pings at least every `WatchdogSec / 2 +
/// DOCKER_DEADLINE` (plus milliseconds of kernel work).
struct Watchdog {
    interval: Option<Duration>,
    last: Instant,
}

impl Watchdog {
    fn new() -> Self {
        Watchdog {
            interval: notify::watchdog_interval(),
            last: Instant::now(),
        }
    }

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
    use crate::plan::{self, PlanInputs};
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
}
