//! Enforce: plan a Snapshot, compare with what was applied, and change the kernel only when
//! they differ, by the smallest transaction that is still atomic.
//!
//! The engine's entry point is [`Reconciler::prepare`] then [`Reconciler::enforce_prepared`]:
//! the caller says what changed ([`Changed`]); a change of some containers is planned for
//! those containers alone (`plan::incremental::PlanCache`) and sent as element additions and
//! removals, so an event costs what its container contributes, however many run. Everything
//! else (a full re-read, a network or policy change, a container that changes rules) is
//! planned whole and diffed against what was applied.
//!
//! The Docker side (what to re-read) lives in the daemon loop; this part is synchronous and
//! takes the kernel as a trait, so it is unit-tested with a fake and benchmarked against the
//! real kernel in a throwaway namespace.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use tracing::warn;

use nftnl::FinalizedBatch;

use crate::nft::incremental::{self, Delta, SetDelta};
use crate::nft::write::Session;
use crate::nft::{self, NftError};
use crate::plan::PlanInputs;
use crate::plan::incremental::{PlanCache, SetChange};
use crate::ruleset::Ruleset;
use crate::snapshot::{Container, Snapshot};

/// The kernel operations the daemon needs. [`Netlink`] is the real one.
pub trait Kernel {
    /// Replace the table with `ruleset` in one transaction.
    fn replace(&mut self, ruleset: &Ruleset) -> Result<(), NftError>;
    /// Add and remove set elements in one transaction; fails if the sets are not as assumed.
    fn update(&mut self, table: &str, deltas: &[SetDelta]) -> Result<(), NftError>;
    /// What differs between the kernel and `ruleset` (empty: they agree).
    fn verify(&mut self, ruleset: &Ruleset) -> Result<Vec<String>, NftError>;
}

/// nf_tables over netlink, in the current network namespace (the one the first transaction
/// runs in). Transactions share one kept socket (see [`Session`] for why).
#[derive(Debug, Default)]
pub struct Netlink {
    session: Option<Session>,
}

impl Netlink {
    fn send(&mut self, batch: &FinalizedBatch) -> Result<(), NftError> {
        let session = match &mut self.session {
            Some(session) => session,
            None => self.session.insert(Session::open()?),
        };
        let sent = session.send(batch);
        if sent.is_err() {
            // A failed batch can leave acknowledgements queued; start the next one afresh.
            self.session = None;
        }
        sent
    }
}

impl Kernel for Netlink {
    fn replace(&mut self, ruleset: &Ruleset) -> Result<(), NftError> {
        self.send(&nft::write::build_batch(ruleset)?)
    }

    fn update(&mut self, table: &str, deltas: &[SetDelta]) -> Result<(), NftError> {
        self.send(&incremental::element_batch(table, deltas)?)
    }

    fn verify(&mut self, ruleset: &Ruleset) -> Result<Vec<String>, NftError> {
        let verified = crate::nft::verify::verify(ruleset, crate::nft::verify::RuleCheck::Count)
            .map(|verified| verified.problems);
        // Verify reads the whole table back: on a large host, a short-lived allocation as
        // large as the apply's, after which glibc would keep the memory.
        if ruleset.element_count() >= TRIM_AFTER_ELEMENTS {
            crate::memory::return_freed_memory();
        }
        verified
    }
}

/// A table this large (some 1.5 MiB of netlink messages, and the ruleset they are read
/// into) leaves enough freed to be worth the trim, which costs a few ms.
const TRIM_AFTER_ELEMENTS: usize = 20_000;

/// How the kernel was changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transaction {
    /// The wanted ruleset was already in place.
    None,
    /// Set elements added and removed.
    Elements { added: usize, removed: usize },
    /// The whole table replaced.
    Full,
}

impl Transaction {
    pub fn changed(self) -> bool {
        self != Transaction::None
    }

    pub fn kind(self) -> &'static str {
        match self {
            Transaction::None => "none",
            Transaction::Elements { .. } => "elements",
            Transaction::Full => "full",
        }
    }
}

/// What one enforce did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Enforced {
    pub transaction: Transaction,
    pub rules: usize,
    pub sets: usize,
    pub elements: usize,
    /// Time spent planning, diffing and in the kernel.
    pub took: Duration,
}

/// What changed in the Snapshot since the last [`Reconciler::prepare`].
#[derive(Debug, Clone, Copy)]
pub enum Changed<'a> {
    /// Anything may have (a full read, the whole container list re-read): plan everything.
    Everything,
    /// Only the containers with these IDs (started, changed or gone). Networks, settings and
    /// the plan inputs are compared anyway: if they changed, everything is planned.
    Containers(&'a [String]),
}

/// What [`Reconciler::prepare`] planned, waiting for [`Reconciler::enforce_prepared`].
enum Prepared {
    /// The cache holds a full plan: diff it against what was applied.
    Full { started: Instant },
    /// The cache's ruleset is the applied one with these changes.
    Elements {
        started: Instant,
        deltas: Vec<SetDelta>,
    },
}

/// What the kernel holds, as far as the reconciler knows.
enum Applied {
    /// Nothing applied yet, or forgotten on purpose.
    Nothing,
    /// This ruleset; no cache describes the kernel.
    Own(Ruleset),
    /// The cache's ruleset (less the prepared element changes, between `prepare` and
    /// `enforce_prepared`). The elements are the bulk of the daemon's memory at scale
    /// (145,000 at 10,000 containers), so they are kept once, in the cache, not twice.
    InCache,
}

/// Remembers what was applied, so each change is a diff against it, and the plan's cache
/// (each container's contribution), so a container change is planned alone.
///
/// `applied` is `InCache` only while `cache` is set; anything that makes the cache stop
/// describing the kernel (a failed transaction, `enforce` of another ruleset, a spent cache)
/// takes its ruleset back as `Own`, with the prepared changes undone ([`Self::drop_cache`]).
pub struct Reconciler<K: Kernel> {
    kernel: K,
    applied: Applied,
    cache: Option<PlanCache>,
    prepared: Option<Prepared>,
    /// Containers put into the Snapshot by [`Self::replace_containers`] since the last
    /// prepare (ID -> name), so the cache finds them without a pass over the list.
    located: HashMap<String, String>,
}

impl Applied {
    /// The applied ruleset, given the cache it may be kept in.
    fn ruleset<'a>(&'a self, cache: Option<&'a PlanCache>) -> Option<&'a Ruleset> {
        match self {
            Applied::Nothing => None,
            Applied::Own(ruleset) => Some(ruleset),
            Applied::InCache => cache.map(PlanCache::ruleset),
        }
    }
}

impl<K: Kernel> Reconciler<K> {
    pub fn new(kernel: K) -> Self {
        Reconciler {
            kernel,
            applied: Applied::Nothing,
            cache: None,
            prepared: None,
            located: HashMap::new(),
        }
    }

    /// Replace the containers with these IDs in `snapshot` by `fresh` (the ones still
    /// running), as [`Snapshot::replace_containers`], finding gone ones under the name the
    /// cache knows and noting the fresh ones' names for the next [`Self::prepare`]: an event
    /// then costs binary searches, not passes over every container.
    pub fn replace_containers(
        &mut self,
        snapshot: &mut Snapshot,
        ids: &[String],
        fresh: Vec<Container>,
    ) {
        self.located
            .extend(fresh.iter().map(|c| (c.id.clone(), c.name.clone())));
        let cache = self.cache.as_ref();
        snapshot.replace_containers_with(ids, fresh, |id| cache.and_then(|c| c.name_of(id)));
    }

    /// Plan `snapshot` under `inputs`, only for the changed containers when that is enough,
    /// and return the wanted ruleset (for what must be in place before it: the bridge
    /// netfilter sysctl, NDP proxy entries). [`Self::enforce_prepared`] then changes the
    /// kernel.
    pub fn prepare(
        &mut self,
        snapshot: &Snapshot,
        inputs: &PlanInputs,
        changed: Changed,
    ) -> &Ruleset {
        let started = Instant::now();
        if self.prepared.is_some() || matches!(self.applied, Applied::Nothing) {
            // A plan never enforced, or nothing applied: the cache is not the kernel's.
            self.drop_cache();
        }
        let located = std::mem::take(&mut self.located);
        let changes = match (&mut self.cache, changed) {
            (Some(cache), Changed::Containers(ids)) => {
                cache.update(snapshot, inputs, ids, &located)
            }
            _ => None,
        };
        let cache = match (changes, self.cache.take()) {
            (Some(changes), Some(cache)) => {
                let deltas = deltas(cache.ruleset(), changes);
                self.prepared = Some(Prepared::Elements { started, deltas });
                self.cache.insert(cache)
            }
            (_, spent) => {
                // A spent cache's ruleset is still what was applied.
                self.cache = spent;
                self.drop_cache();
                self.prepared = Some(Prepared::Full { started });
                self.cache.insert(PlanCache::new(snapshot, inputs))
            }
        };
        cache.ruleset()
    }

    /// Make the kernel hold what [`Self::prepare`] planned: the element changes alone when
    /// only containers changed, else the difference from what was applied. As
    /// [`Self::enforce`], a refused element update falls back to replacing the table, and on
    /// error the last applied ruleset stays in place.
    /// Without a prepared plan there is nothing to do (`Transaction::None`).
    pub fn enforce_prepared(&mut self) -> Result<Enforced, NftError> {
        let (Some(prepared), Some(cache)) = (&self.prepared, &self.cache) else {
            return Ok(self.nothing_done());
        };
        let wanted = cache.ruleset();
        let (started, transaction) = match prepared {
            Prepared::Full { started } => {
                let applied = match &self.applied {
                    Applied::Own(ruleset) => Some(ruleset),
                    Applied::Nothing | Applied::InCache => None,
                };
                let transaction = send_difference(&mut self.kernel, applied, wanted);
                (*started, transaction)
            }
            Prepared::Elements { started, deltas } => {
                (*started, send_deltas(&mut self.kernel, wanted, deltas))
            }
        };
        let counts = Enforced {
            transaction: Transaction::None,
            rules: wanted.rule_count(),
            sets: wanted.sets.len(),
            elements: wanted.element_count(),
            took: Duration::ZERO,
        };
        match transaction {
            Ok(transaction) => {
                self.prepared = None;
                self.applied = Applied::InCache;
                Ok(Enforced {
                    transaction,
                    took: started.elapsed(),
                    ..counts
                })
            }
            Err(error) => {
                // The kernel holds what it held: the cache no longer describes it.
                self.drop_cache();
                Err(error)
            }
        }
    }

    /// The cache stops describing the kernel (and a prepared plan is dropped): when the
    /// applied ruleset was kept in the cache, take it back, undoing the prepared changes.
    fn drop_cache(&mut self) {
        let cache = self.cache.take();
        let prepared = self.prepared.take();
        if !matches!(self.applied, Applied::InCache) {
            return;
        }
        self.applied = match cache {
            Some(cache) => {
                let mut ruleset = cache.into_ruleset();
                if let Some(Prepared::Elements { deltas, .. }) = &prepared {
                    undo(&mut ruleset, deltas);
                }
                Applied::Own(ruleset)
            }
            // `InCache` always has a cache; without one, nothing is known.
            None => Applied::Nothing,
        };
    }

    /// The applied ruleset. Between `prepare` and `enforce_prepared` of element changes, the
    /// callers ([`Self::restore`], [`Self::verify`]) drop the prepared plan first.
    fn applied(&self) -> Option<&Ruleset> {
        self.applied.ruleset(self.cache.as_ref())
    }

    /// An enforce that changed nothing, with the applied ruleset's counts.
    fn nothing_done(&self) -> Enforced {
        let applied = self.applied();
        Enforced {
            transaction: Transaction::None,
            rules: applied.map_or(0, Ruleset::rule_count),
            sets: applied.map_or(0, |r| r.sets.len()),
            elements: applied.map_or(0, Ruleset::element_count),
            took: Duration::ZERO,
        }
    }

    /// Make the kernel hold `wanted`. An element update the kernel refuses (its sets were not
    /// what v6guard last installed) falls back to replacing the table. On error the last
    /// applied ruleset stays in place: the transaction is atomic.
    pub fn enforce(&mut self, wanted: Ruleset) -> Result<Enforced, NftError> {
        let started = Instant::now();
        // Another ruleset than the cache's (the skeleton): the next prepare plans afresh.
        self.drop_cache();
        let applied = self.applied.ruleset(self.cache.as_ref());
        let transaction = send_difference(&mut self.kernel, applied, &wanted)?;
        let enforced = Enforced {
            transaction,
            rules: wanted.rule_count(),
            sets: wanted.sets.len(),
            elements: wanted.element_count(),
            took: started.elapsed(),
        };
        self.applied = Applied::Own(wanted);
        Ok(enforced)
    }

    /// Put the applied ruleset back whole (after drift).
    pub fn restore(&mut self) -> Result<bool, NftError> {
        self.drop_prepared();
        match self.applied.ruleset(self.cache.as_ref()) {
            Some(ruleset) => self.kernel.replace(ruleset).map(|()| true),
            None => Ok(false),
        }
    }

    /// Differences between the kernel and the applied ruleset (empty when nothing applied).
    pub fn verify(&mut self) -> Result<Vec<String>, NftError> {
        self.drop_prepared();
        match self.applied.ruleset(self.cache.as_ref()) {
            Some(ruleset) => self.kernel.verify(ruleset),
            None => Ok(Vec::new()),
        }
    }

    /// A plan prepared and not enforced is dropped (with the cache it changed).
    fn drop_prepared(&mut self) {
        if self.prepared.is_some() {
            self.drop_cache();
        }
    }

    /// Forget what was applied, so the next enforce replaces the table and verify and restore
    /// do nothing meanwhile (the daemon removed the table on purpose: standing down).
    pub fn forget(&mut self) {
        self.applied = Applied::Nothing;
        self.cache = None;
        self.prepared = None;
    }
}

/// The cache's element changes as the kernel takes them.
fn deltas(wanted: &Ruleset, changes: Vec<SetChange>) -> Vec<SetDelta> {
    changes
        .into_iter()
        .map(|c| SetDelta {
            interval: wanted.set(&c.set).is_some_and(|s| s.interval),
            set: c.set,
            added: c.added,
            removed: c.removed,
        })
        .collect()
}

/// Send the element changes that lead from the applied ruleset to `wanted`; should the
/// kernel refuse them (its sets are not what v6guard last installed), replace the table.
fn send_deltas<K: Kernel>(
    kernel: &mut K,
    wanted: &Ruleset,
    deltas: &[SetDelta],
) -> Result<Transaction, NftError> {
    if deltas.is_empty() {
        return Ok(Transaction::None);
    }
    match kernel.update(&wanted.table, deltas) {
        Ok(()) => Ok(Transaction::Elements {
            added: deltas.iter().map(|d| d.added.len()).sum(),
            removed: deltas.iter().map(|d| d.removed.len()).sum(),
        }),
        Err(error) => {
            warn!(%error, "element update refused; replacing the whole table instead");
            kernel.replace(wanted)?;
            Ok(Transaction::Full)
        }
    }
}

/// Diff `wanted` against what was applied and send the smallest transaction.
fn send_difference<K: Kernel>(
    kernel: &mut K,
    applied: Option<&Ruleset>,
    wanted: &Ruleset,
) -> Result<Transaction, NftError> {
    match incremental::diff(applied, wanted) {
        Delta::Unchanged => Ok(Transaction::None),
        Delta::Elements(deltas) => send_deltas(kernel, wanted, &deltas),
        Delta::Replace => kernel.replace(wanted).map(|()| Transaction::Full),
    }
}

/// Take element changes back: what `ruleset` held before they were made.
fn undo(ruleset: &mut Ruleset, deltas: &[SetDelta]) {
    for delta in deltas {
        let Some(set) = ruleset.sets.iter_mut().find(|s| s.name == delta.set) else {
            continue;
        };
        for (key, _) in &delta.added {
            set.elements.remove(key);
        }
        for (key, value) in &delta.removed {
            set.elements.insert(key.clone(), value.clone());
        }
    }
}

/// Replace the containers named in `ids` by `fresh` (the ones among them still running).
/// Containers not in `ids` are untouched; the result stays sorted by name, as a full read
/// (see [`Snapshot::replace_containers`]).
pub fn replace_containers(snapshot: &mut Snapshot, ids: &[String], fresh: Vec<Container>) {
    snapshot.replace_containers(ids, fresh);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ruleset::{Field, FieldType, NamedSet};

    /// A kernel that holds what it is sent, and refuses element updates that do not fit
    /// (adding what is there, removing what is not), as the real one's strict batch does.
    #[derive(Default)]
    struct Fake {
        calls: Vec<String>,
        refuse_updates: bool,
        refuse_replace: bool,
        holds: Option<Ruleset>,
    }

    fn refused() -> NftError {
        NftError::Rejected(std::io::Error::from_raw_os_error(libc::ENOENT))
    }

    impl Kernel for Fake {
        fn replace(&mut self, ruleset: &Ruleset) -> Result<(), NftError> {
            self.calls.push("replace".into());
            if self.refuse_replace {
                return Err(refused());
            }
            self.holds = Some(ruleset.clone());
            Ok(())
        }
        fn update(&mut self, _: &str, deltas: &[SetDelta]) -> Result<(), NftError> {
            self.calls.push(format!("update {}", deltas.len()));
            if self.refuse_updates {
                return Err(refused());
            }
            let mut next = self.holds.clone().ok_or_else(refused)?;
            for delta in deltas {
                let set = next
                    .sets
                    .iter_mut()
                    .find(|s| s.name == delta.set)
                    .ok_or_else(refused)?;
                for (key, _) in &delta.removed {
                    set.elements.remove(key).ok_or_else(refused)?;
                }
                for (key, value) in &delta.added {
                    if set.elements.insert(key.clone(), value.clone()).is_some() {
                        return Err(refused());
                    }
                }
            }
            self.holds = Some(next);
            Ok(())
        }
        fn verify(&mut self, _: &Ruleset) -> Result<Vec<String>, NftError> {
            Ok(vec![])
        }
    }

    fn ruleset(ports: &[u16]) -> Ruleset {
        let mut set = NamedSet::set("published", vec![FieldType::Port]);
        set.elements = ports
            .iter()
            .map(|p| (vec![Field::Port(*p)], vec![]))
            .collect();
        Ruleset {
            needs_bridge_netfilter: false,
            ndp: Default::default(),
            table: "v6guard".into(),
            sets: vec![set],
            chains: vec![],
            bridge_chains: vec![],
        }
    }

    #[test]
    fn first_full_then_elements_then_nothing() {
        let mut r = Reconciler::new(Fake::default());
        assert_eq!(
            r.enforce(ruleset(&[80])).unwrap().transaction,
            Transaction::Full
        );
        assert_eq!(
            r.enforce(ruleset(&[80, 443])).unwrap().transaction,
            Transaction::Elements {
                added: 1,
                removed: 0
            }
        );
        assert_eq!(
            r.enforce(ruleset(&[80, 443])).unwrap().transaction,
            Transaction::None
        );
        assert_eq!(r.kernel.calls, vec!["replace", "update 1"]);
    }

    #[test]
    fn a_refused_update_falls_back_to_a_full_replace() {
        let mut r = Reconciler::new(Fake::default());
        r.enforce(ruleset(&[80])).unwrap();
        r.kernel.refuse_updates = true;
        assert_eq!(
            r.enforce(ruleset(&[81])).unwrap().transaction,
            Transaction::Full
        );
        assert_eq!(r.kernel.calls, vec!["replace", "update 1", "replace"]);
        // What was installed by the fallback is what the next diff starts from.
        assert_eq!(
            r.enforce(ruleset(&[81])).unwrap().transaction,
            Transaction::None
        );
    }

    #[test]
    fn after_forget_nothing_is_restored_and_the_next_enforce_replaces() {
        let mut r = Reconciler::new(Fake::default());
        r.enforce(ruleset(&[80])).unwrap();
        r.forget();
        assert!(!r.restore().unwrap(), "nothing to restore");
        assert_eq!(
            r.enforce(ruleset(&[80])).unwrap().transaction,
            Transaction::Full
        );
        assert_eq!(r.kernel.calls, vec!["replace", "replace"]);
    }

    fn lab() -> Snapshot {
        let mut snapshot = crate::testing::lab_snapshot();
        snapshot.containers.sort_by(|a, b| a.name.cmp(&b.name));
        snapshot
    }

    fn reconcile(r: &mut Reconciler<Fake>, snapshot: &Snapshot, changed: Changed) -> Transaction {
        let inputs = PlanInputs::default();
        let wanted = r.prepare(snapshot, &inputs, changed).clone();
        assert_eq!(wanted, crate::plan::plan(snapshot, &inputs));
        let enforced = r.enforce_prepared().unwrap();
        assert_eq!(
            r.kernel.holds.as_ref(),
            Some(&wanted),
            "the kernel holds the plan"
        );
        enforced.transaction
    }

    #[test]
    fn a_container_event_is_planned_alone_and_sent_as_elements() {
        let mut r = Reconciler::new(Fake::default());
        let mut snapshot = lab();
        assert_eq!(
            reconcile(&mut r, &snapshot, Changed::Everything),
            Transaction::Full
        );
        let web1 = snapshot
            .containers
            .iter()
            .find(|c| c.name == "web1")
            .unwrap()
            .clone();
        let ids = vec![web1.id.clone()];
        r.replace_containers(&mut snapshot, &ids, vec![]);
        let stop = reconcile(&mut r, &snapshot, Changed::Containers(&ids));
        assert!(matches!(stop, Transaction::Elements { added: 0, removed } if removed > 0));
        r.replace_containers(&mut snapshot, &ids, vec![web1]);
        let start = reconcile(&mut r, &snapshot, Changed::Containers(&ids));
        assert!(matches!(start, Transaction::Elements { added, removed: 0 } if added > 0));
        assert_eq!(
            reconcile(&mut r, &snapshot, Changed::Containers(&ids)),
            Transaction::None
        );
        assert_eq!(r.kernel.calls, vec!["replace", "update 2", "update 2"]);
    }

    #[test]
    fn after_another_ruleset_or_a_refused_update_the_engine_plans_whole() {
        let mut r = Reconciler::new(Fake::default());
        let mut snapshot = lab();
        reconcile(&mut r, &snapshot, Changed::Everything);
        // The skeleton (or any ruleset enforced directly) replaces the cache's.
        r.enforce(ruleset(&[80])).unwrap();
        let ids = vec![snapshot.containers[0].id.clone()];
        assert_eq!(
            reconcile(&mut r, &snapshot, Changed::Containers(&ids)),
            Transaction::Full
        );
        r.kernel.refuse_updates = true;
        snapshot.replace_containers(&ids, vec![]);
        let web1 = snapshot
            .containers
            .iter()
            .find(|c| c.name == "web1")
            .unwrap();
        let ids = vec![web1.id.clone()];
        snapshot.replace_containers(&ids, vec![]);
        assert_eq!(
            reconcile(&mut r, &snapshot, Changed::Containers(&ids)),
            Transaction::Full,
            "a refused update falls back to replacing the table"
        );
        r.kernel.refuse_updates = false;
        assert_eq!(
            reconcile(&mut r, &snapshot, Changed::Containers(&ids)),
            Transaction::None
        );
        assert!(r.verify().unwrap().is_empty());
    }

    /// The applied elements are kept once, in the cache: whatever stops the cache describing
    /// the kernel must leave `restore` putting back what the kernel last accepted.
    #[test]
    fn a_refused_or_unenforced_plan_is_never_taken_as_applied() {
        let mut r = Reconciler::new(Fake::default());
        let mut snapshot = lab();
        let inputs = PlanInputs::default();
        reconcile(&mut r, &snapshot, Changed::Everything);
        let accepted = r.kernel.holds.clone();
        let web1 = snapshot.containers.iter().find(|c| c.name == "web1");
        let web1 = web1.expect("the lab runs web1").clone();
        let ids = vec![web1.id.clone()];
        r.replace_containers(&mut snapshot, &ids, vec![]);
        (r.kernel.refuse_updates, r.kernel.refuse_replace) = (true, true);
        r.prepare(&snapshot, &inputs, Changed::Containers(&ids));
        assert!(r.enforce_prepared().is_err());
        (r.kernel.refuse_updates, r.kernel.refuse_replace) = (false, false);
        r.kernel.holds = None;
        assert!(r.restore().unwrap());
        assert_eq!(r.kernel.holds, accepted, "the refused plan is not restored");

        reconcile(&mut r, &snapshot, Changed::Everything);
        let accepted = r.kernel.holds.clone().expect("applied");
        r.replace_containers(&mut snapshot, &ids, vec![web1]);
        r.prepare(&snapshot, &inputs, Changed::Containers(&ids));
        r.kernel.holds = None;
        assert!(r.restore().unwrap());
        assert_eq!(
            r.kernel.holds.as_ref(),
            Some(&accepted),
            "a prepared plan is not applied yet"
        );
        let dropped = r.enforce_prepared().unwrap();
        assert_eq!(dropped.transaction, Transaction::None, "restore dropped it");
        let again = reconcile(&mut r, &snapshot, Changed::Containers(&ids));
        assert!(
            matches!(again, Transaction::Elements { added, removed: 0 } if added > 0),
            "diffed against what the kernel holds: {again:?}"
        );
    }

    #[test]
    fn containers_are_replaced_by_id() {
        let container = |id: &str, name: &str| -> Container {
            serde_json::from_value(serde_json::json!(
                {"id": id, "name": name, "endpoints": [], "ports": []}
            ))
            .unwrap()
        };
        let mut snapshot: Snapshot =
            serde_json::from_str(include_str!("../../tests/fixtures/lab-snapshot.json")).unwrap();
        snapshot.containers = vec![container("a", "alpha"), container("b", "bravo")];
        replace_containers(
            &mut snapshot,
            &["a".into(), "c".into()],
            vec![container("c", "charlie")],
        );
        let names: Vec<&str> = snapshot
            .containers
            .iter()
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(names, vec!["bravo", "charlie"]);
    }
}
