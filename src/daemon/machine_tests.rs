//! The daemon loop against a fake Docker, a fake kernel and a fake host: no dockerd, no
//! netlink. Each test drives the machine the way `daemon/mod.rs` does (effects answered,
//! answers fed back) and checks what reached the kernel, the status and systemd.

use std::cell::RefCell;
use std::io;
use std::path::PathBuf;
use std::rc::Rc;

use super::*;
use crate::config::{ConfigError, ConfigErrors, Location};
use crate::daemon::drift::DriftReport;
use crate::daemon::enforcer::{Enforcer, Host};
use crate::daemon::reconcile::Transaction;
use crate::docker::events::Change;
use crate::ndp::{NdpChanges, NdpError};
use crate::nft::NftError;
use crate::nft::incremental::SetDelta;
use crate::ruleset::{NdpProxies, Ruleset};
use crate::settings::SettingsError;

/// Everything the fakes were asked to do, in order, shared by kernel and host.
#[derive(Default)]
struct World {
    calls: Vec<String>,
    refuse_replace: bool,
    /// What the kernel's verify reports.
    problems: Vec<String>,
    tables_present: bool,
    docker_manages_ipv6: Option<String>,
    /// The chains of the last ruleset the kernel took whole.
    last_chains: Vec<String>,
}

type Shared = Rc<RefCell<World>>;

struct FakeKernel(Shared);

impl Kernel for FakeKernel {
    fn replace(&mut self, ruleset: &Ruleset) -> Result<(), NftError> {
        let mut world = self.0.borrow_mut();
        if world.refuse_replace {
            world.calls.push("replace refused".into());
            return Err(NftError::Rejected(io::Error::from_raw_os_error(
                libc::EPERM,
            )));
        }
        world
            .calls
            .push(format!("replace {} elements", ruleset.element_count()));
        world.last_chains = ruleset.chains.iter().map(|c| c.name.clone()).collect();
        Ok(())
    }
    fn update(&mut self, _: &str, deltas: &[SetDelta]) -> Result<(), NftError> {
        let added: usize = deltas.iter().map(|d| d.added.len()).sum();
        let removed: usize = deltas.iter().map(|d| d.removed.len()).sum();
        self.0
            .borrow_mut()
            .calls
            .push(format!("update +{added} -{removed}"));
        Ok(())
    }
    fn verify(&mut self, _: &Ruleset) -> Result<Vec<String>, NftError> {
        let mut world = self.0.borrow_mut();
        world.calls.push("verify".into());
        Ok(world.problems.clone())
    }
}

struct FakeHost(Shared);

impl Host for FakeHost {
    fn prepare(&mut self, _: &Ruleset) {}
    fn sync_ndp(&mut self, _: &NdpProxies) -> Result<NdpChanges, NdpError> {
        self.0.borrow_mut().calls.push("ndp".into());
        Ok(NdpChanges::default())
    }
    fn remove_tables(&mut self) -> Result<Vec<String>, NftError> {
        self.0.borrow_mut().calls.push("remove tables".into());
        Ok(vec!["ip6 v6guard".into(), "bridge v6guard".into()])
    }
    fn tables_present(&mut self) -> Result<bool, NftError> {
        Ok(self.0.borrow().tables_present)
    }
    fn docker_manages_ipv6(&mut self) -> Option<String> {
        self.0.borrow().docker_manages_ipv6.clone()
    }
}

/// Docker as the machine sees it: a Snapshot to answer reads from, reachable or not.
struct FakeDocker {
    state: Snapshot,
    up: bool,
    /// When set, the next read fails with this (then it is cleared).
    fail_next_read: Option<ReadError>,
    reads: Vec<ReadRequest>,
}

impl FakeDocker {
    fn answer(&mut self, request: &ReadRequest) -> Result<ReadResult, ReadError> {
        self.reads.push(request.clone());
        if let Some(error) = self.fail_next_read.take() {
            return Err(error);
        }
        if !self.up {
            return Err(ReadError::Deadline(Duration::from_secs(20)));
        }
        Ok(match request {
            ReadRequest::Everything => ReadResult::Everything(Box::new(self.state.clone())),
            ReadRequest::Changed {
                containers,
                networks,
            } => ReadResult::Changed {
                containers: match containers {
                    Containers::None => None,
                    Containers::All => Some(self.state.containers.clone()),
                    Containers::Ids(ids) => Some(
                        self.state
                            .containers
                            .iter()
                            .filter(|c| ids.contains(&c.id))
                            .cloned()
                            .collect(),
                    ),
                },
                networks: networks.then(|| self.state.networks.clone()),
            },
        })
    }
}

/// A machine, its fakes, and a clock the test moves.
struct Rig {
    machine: Machine<FakeKernel, FakeHost>,
    world: Shared,
    docker: FakeDocker,
    now: Instant,
    /// Every effect so far.
    effects: Vec<Effect>,
}

fn lab() -> Snapshot {
    serde_json::from_str(include_str!("../../tests/fixtures/lab-snapshot.json")).unwrap()
}

/// The lab container that publishes port 8080 on IPv6.
const WEB1: &str = "a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1";

impl Rig {
    fn new(world: World, state: Snapshot) -> Rig {
        let world = Rc::new(RefCell::new(world));
        let enforcer = Enforcer::new(FakeKernel(world.clone()), FakeHost(world.clone()));
        let settings = Settings {
            force: false,
            resync_interval: Duration::from_secs(300),
            verify_interval: Duration::from_secs(10),
        };
        Rig {
            machine: Machine::new(settings, PlanInputs::default(), enforcer, Status::default()),
            world,
            docker: FakeDocker {
                state,
                up: true,
                fail_next_read: None,
                reads: Vec::new(),
            },
            now: Instant::now(),
            effects: Vec::new(),
        }
    }

    /// Started, connected, Docker read and its plan enforced.
    fn running(state: Snapshot) -> Rig {
        let mut rig = Rig::new(World::default(), state);
        rig.send(Input::Start);
        rig.settle();
        assert!(rig.machine.connected, "connected");
        rig
    }

    /// Hand the machine an input, answering its connects and reads as the glue does.
    fn send(&mut self, input: Input) {
        let mut queue = vec![input];
        while let Some(input) = queue.pop() {
            for effect in self.machine.handle(input, self.now) {
                match &effect {
                    Effect::Connect => queue.push(Input::Connected(match self.docker.up {
                        true => Ok(()),
                        false => Err(ReadError::Deadline(Duration::from_secs(20))),
                    })),
                    Effect::Read(request) => queue.push(Input::Read(self.docker.answer(request))),
                    _ => {}
                }
                self.effects.push(effect);
            }
        }
    }

    /// Let time pass until nothing is due: reconnects and pending work run.
    fn settle(&mut self) {
        for _ in 0..20 {
            if let Some(at) = self.machine.reconnect_at() {
                self.now = self.now.max(at);
                self.send(Input::ReconnectDue);
            } else if let Some(at) = self.machine.due() {
                self.now = self.now.max(at);
                self.send(Input::WorkDue);
            } else {
                return;
            }
            if !self.docker.up {
                return;
            }
        }
        panic!("the machine never settles");
    }

    fn calls(&self) -> Vec<String> {
        self.world.borrow().calls.clone()
    }

    fn clear(&mut self) {
        self.world.borrow_mut().calls.clear();
        self.effects.clear();
        self.docker.reads.clear();
    }

    fn event(&mut self, change: Change) {
        self.send(Input::Event(Classified {
            changes: vec![change],
            label: "test event".into(),
            time_nano: None,
        }));
    }
}

fn without_web1() -> Snapshot {
    let mut state = lab();
    state.containers.retain(|c| c.id != WEB1);
    state
}

#[test]
fn start_applies_the_skeleton_then_docker_s_plan() {
    let mut rig = Rig::new(World::default(), lab());
    rig.send(Input::Start);
    assert_eq!(rig.calls(), ["replace 0 elements", "ndp"], "the skeleton");
    assert!(
        matches!(&rig.effects[..], [Effect::Notify(m), Effect::WriteStatus] if m.starts_with("READY=1")),
        "{:?}",
        rig.effects
    );
    rig.settle();
    assert_eq!(rig.docker.reads, [ReadRequest::Everything]);
    // The table, then the NDP entries (see the Enforcer's documentation).
    // No NDP sync: the skeleton's entries (none) are still what is wanted.
    assert_eq!(
        rig.calls(),
        ["replace 0 elements", "ndp", "replace 2 elements"]
    );
    let status = rig.machine.status();
    assert_eq!(status.last_reconcile.as_ref().unwrap().result, "applied");
    assert_eq!(status.docker.containers, 2);
}

#[test]
fn a_table_left_by_an_earlier_run_is_kept_until_docker_is_read() {
    let world = World {
        tables_present: true,
        ..World::default()
    };
    let mut rig = Rig::new(world, lab());
    rig.send(Input::Start);
    assert!(rig.calls().is_empty(), "{:?}", rig.calls());
    assert!(
        rig.machine
            .status()
            .at_start
            .as_ref()
            .unwrap()
            .contains("kept")
    );
}

#[test]
fn without_docker_s_firewall_known_at_start_no_skeleton_is_applied() {
    let world = World {
        docker_manages_ipv6: Some("ip6tables is on".into()),
        ..World::default()
    };
    let mut rig = Rig::new(world, lab());
    rig.machine.inputs.options.mode = crate::config::Mode::StandDown;
    rig.send(Input::Start);
    assert!(rig.calls().is_empty(), "{:?}", rig.calls());
    assert!(rig.effects.contains(&Effect::Notify(
        "READY=1\nSTATUS=standing down before Docker is read".into()
    )));
}

#[test]
fn in_auto_mode_docker_s_firewall_known_at_start_gets_augment_s_skeleton() {
    let world = World {
        docker_manages_ipv6: Some("ip6tables is on".into()),
        ..World::default()
    };
    let mut rig = Rig::new(world, lab());
    rig.send(Input::Start);
    // Augment's skeleton: its drops-only chains, not the full skeleton closing the bridges.
    assert_eq!(rig.calls(), ["replace 0 elements", "ndp"]);
    let chains = rig.world.borrow().last_chains.clone();
    assert!(
        chains.contains(&crate::plan::augment::AUGMENT_CHAIN.to_string()),
        "{chains:?}"
    );
    assert!(
        !chains.contains(&crate::plan::FORWARD_CHAIN.to_string()),
        "{chains:?}"
    );
}

#[test]
fn an_event_reads_its_container_and_adds_only_its_elements() {
    let mut rig = Rig::running(without_web1());
    rig.clear();
    rig.docker.state = lab();
    rig.event(Change::Container(WEB1.into()));
    assert!(rig.calls().is_empty(), "nothing before the pacer says so");
    rig.settle();
    assert_eq!(
        rig.docker.reads,
        [ReadRequest::Changed {
            containers: Containers::Ids(vec![WEB1.into()]),
            networks: false
        }]
    );
    assert_eq!(rig.calls(), ["update +2 -0"]);
    let status = rig.machine.status();
    assert_eq!(status.totals.events, 1);
    assert_eq!(status.totals.element_transactions, 1);
    assert_eq!(status.last_reconcile.as_ref().unwrap().added, 2);
}

#[test]
fn a_container_on_an_unknown_network_makes_the_networks_read_too() {
    let mut start = without_web1();
    start.networks.retain(|n| n.name != "v6g-demo");
    let mut rig = Rig::running(start);
    rig.clear();
    rig.docker.state = lab();
    rig.event(Change::Container(WEB1.into()));
    rig.settle();
    assert_eq!(
        rig.docker.reads,
        [
            ReadRequest::Changed {
                containers: Containers::Ids(vec![WEB1.into()]),
                networks: false
            },
            ReadRequest::Changed {
                containers: Containers::None,
                networks: true
            }
        ]
    );
    assert_eq!(rig.machine.snapshot.as_ref().unwrap().networks.len(), 2);
}

#[test]
fn losing_docker_keeps_the_rules_and_reconnects_with_backoff() {
    let mut rig = Rig::running(lab());
    rig.clear();
    rig.docker.up = false;
    rig.send(Input::EventsLost("the event stream ended".into()));
    assert!(rig.effects.contains(&Effect::Disconnect));
    assert!(!rig.machine.status().docker.connected);
    let mut delays = Vec::new();
    for _ in 0..4 {
        let at = rig.machine.reconnect_at().expect("a reconnect is planned");
        delays.push((at - rig.now).as_millis());
        rig.now = at;
        rig.send(Input::ReconnectDue);
    }
    assert_eq!(delays, [250, 500, 1000, 2000]);
    assert!(rig.calls().is_empty(), "the rules stay: {:?}", rig.calls());
    // Docker is back: reconnect, read everything, nothing changed in the kernel.
    rig.docker.up = true;
    rig.settle();
    assert_eq!(rig.docker.reads, [ReadRequest::Everything]);
    assert!(rig.calls().is_empty(), "{:?}", rig.calls());
    assert_eq!(rig.machine.status().totals.docker_reconnects, 1);
    // A successful read resets the backoff.
    rig.send(Input::EventsLost("again".into()));
    let at = rig.machine.reconnect_at().unwrap();
    assert_eq!(at - rig.now, FIRST_RETRY);
}

#[test]
fn a_failed_read_counts_as_losing_docker() {
    let mut rig = Rig::running(lab());
    rig.docker.fail_next_read = Some(ReadError::Deadline(Duration::from_secs(20)));
    rig.clear();
    rig.event(Change::Container(WEB1.into()));
    rig.docker.up = false;
    rig.settle();
    assert!(rig.effects.contains(&Effect::Disconnect));
    assert!(rig.machine.reconnect_at().is_some());
    assert_eq!(rig.machine.status().totals.errors, 1);
    assert!(rig.calls().is_empty(), "the rules stay: {:?}", rig.calls());
}

#[test]
fn a_broken_daemon_json_keeps_the_rules_and_the_work() {
    let mut rig = Rig::running(without_web1());
    rig.clear();
    rig.docker.fail_next_read = Some(ReadError::Settings(SettingsError::Read {
        path: PathBuf::from("/etc/docker/daemon.json"),
        source: io::Error::from_raw_os_error(libc::EACCES),
    }));
    rig.docker.state = lab();
    rig.event(Change::Container(WEB1.into()));
    let due = rig.machine.due().unwrap();
    rig.now = due;
    rig.send(Input::WorkDue);
    assert!(
        !rig.effects.contains(&Effect::Disconnect),
        "still connected"
    );
    assert!(rig.calls().is_empty(), "the rules stay: {:?}", rig.calls());
    // The work waits for the next trigger, then the container is read and enforced.
    assert!(rig.machine.pending.containers.contains(WEB1));
    rig.send(Input::ResyncTick);
    rig.settle();
    assert_eq!(rig.calls(), ["update +2 -0"]);
}

#[test]
fn standing_down_removes_the_tables_and_returns_when_docker_stops_managing_ipv6() {
    let mut rig = Rig::running(lab());
    rig.machine.inputs.options.mode = crate::config::Mode::StandDown;
    rig.clear();
    rig.docker.state.daemon.ip6tables.value = Some(true);
    rig.send(Input::ResyncTick);
    rig.settle();
    assert_eq!(rig.calls(), ["remove tables"]);
    let status = rig.machine.status();
    assert!(status.stood_down.is_some());
    assert!(
        status
            .stand_down_cleanup
            .as_ref()
            .unwrap()
            .contains("removed")
    );
    // Nothing is verified or restored while standing down.
    rig.send(Input::VerifyTick);
    rig.send(Input::Drift(vec![DriftReport::Overrun]));
    assert_eq!(rig.calls(), ["remove tables"]);
    // Docker stops managing IPv6: the table is installed afresh.
    rig.docker.state.daemon.ip6tables.value = Some(false);
    rig.send(Input::ResyncTick);
    rig.settle();
    assert_eq!(rig.calls(), ["remove tables", "replace 2 elements"]);
    assert!(rig.machine.status().stood_down.is_none());
}

#[test]
fn drift_is_restored_and_so_is_what_the_verify_finds() {
    let mut rig = Rig::running(lab());
    rig.clear();
    rig.send(Input::Drift(vec![DriftReport::Foreign {
        process: "nft".into(),
        pid: 42,
        changes: vec!["table deleted".into()],
        seen: rig.now,
    }]));
    assert_eq!(rig.calls(), ["replace 2 elements"]);
    rig.world.borrow_mut().problems = vec!["rule count 3, expected 19".into()];
    rig.send(Input::VerifyTick);
    assert_eq!(
        rig.calls(),
        ["replace 2 elements", "verify", "replace 2 elements"]
    );
    assert_eq!(rig.machine.status().totals.drift_restores, 2);
}

#[test]
fn a_report_seen_before_the_last_restore_is_not_restored_again() {
    let mut rig = Rig::running(lab());
    let before = Instant::now();
    rig.world.borrow_mut().problems = vec!["table missing".into()];
    rig.send(Input::VerifyTick);
    rig.clear();
    rig.send(Input::Drift(vec![DriftReport::Foreign {
        process: "nft".into(),
        pid: 42,
        changes: vec!["table deleted".into()],
        seen: before,
    }]));
    assert!(rig.calls().is_empty(), "{:?}", rig.calls());
}

#[test]
fn a_reload_with_a_broken_file_keeps_the_old_configuration_and_rules() {
    let mut rig = Rig::running(lab());
    rig.clear();
    let broken = ConfigError::Syntax {
        at: Location {
            file: PathBuf::from("/etc/v6guard/v6guard.yaml"),
            line: 3,
            column: 5,
        },
        message: "mapping values are not allowed here".into(),
    };
    rig.send(Input::Reload(Err(InputsError(ConfigErrors(vec![broken])))));
    rig.settle();
    let status = rig.machine.status();
    assert!(
        status
            .reload_error
            .as_ref()
            .unwrap()
            .contains("v6guard.yaml:3:5"),
        "{:?}",
        status.reload_error
    );
    assert_eq!(status.totals.reloads, 1);
    // Everything was re-read and planned with the old configuration: nothing to change.
    assert_eq!(rig.docker.reads, [ReadRequest::Everything]);
    assert!(rig.calls().is_empty(), "{:?}", rig.calls());
    assert_eq!(
        status.last_reconcile.as_ref().unwrap().transaction,
        Transaction::None.kind()
    );
}

#[test]
fn a_refused_transaction_changes_nothing_and_is_retried() {
    let mut rig = Rig::running(lab());
    rig.clear();
    rig.world.borrow_mut().refuse_replace = true;
    // ICC on for every network: other rules, so the whole table is replaced.
    for network in &mut rig.docker.state.networks {
        network.icc = true;
    }
    rig.send(Input::ResyncTick);
    rig.settle();
    assert_eq!(rig.calls(), ["replace refused"]);
    assert_eq!(
        rig.machine.status().last_reconcile.as_ref().unwrap().result,
        "error"
    );
    rig.world.borrow_mut().refuse_replace = false;
    rig.send(Input::ResyncTick);
    rig.settle();
    assert_eq!(rig.calls(), ["replace refused", "replace 2 elements"]);
}
