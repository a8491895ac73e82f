//! Enforce: plan a Snapshot, compare with what was applied, and change the kernel only when
//! they differ, by the smallest transaction that is still atomic.
//!
//! The Docker side (what to re-read) lives in the daemon loop; this part is synchronous and
//! takes the kernel as a trait, so it is unit-tested with a fake and benchmarked against the
//! real kernel in a throwaway namespace.

use std::time::{Duration, Instant};

use tracing::warn;

use nftnl::FinalizedBatch;

use crate::nft::incremental::{self, Delta, SetDelta};
use crate::nft::netlink::Session;
use crate::nft::{self, NftError};
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
        self.send(&nft::netlink::build_batch(ruleset)?)
    }

    fn update(&mut self, table: &str, deltas: &[SetDelta]) -> Result<(), NftError> {
        self.send(&incremental::element_batch(table, deltas)?)
    }

    fn verify(&mut self, ruleset: &Ruleset) -> Result<Vec<String>, NftError> {
        crate::nft::read::verify(ruleset, crate::nft::read::RuleCheck::Count)
            .map(|verified| verified.problems)
    }
}

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

/// Remembers what was applied, so each change is a diff against it.
pub struct Reconciler<K: Kernel> {
    kernel: K,
    applied: Option<Ruleset>,
}

impl<K: Kernel> Reconciler<K> {
    pub fn new(kernel: K) -> Self {
        Reconciler {
            kernel,
            applied: None,
        }
    }

    /// Make the kernel hold `wanted`. An element update the kernel refuses (its sets were not
    /// what v6guard last installed) falls back to replacing the table. On error the last
    /// applied ruleset stays in place: the transaction is atomic.
    pub fn enforce(&mut self, wanted: Ruleset) -> Result<Enforced, NftError> {
        let started = Instant::now();
        let transaction = match incremental::diff(self.applied.as_ref(), &wanted) {
            Delta::Unchanged => Transaction::None,
            Delta::Elements(deltas) => match self.kernel.update(&wanted.table, &deltas) {
                Ok(()) => Transaction::Elements {
                    added: deltas.iter().map(|d| d.added.len()).sum(),
                    removed: deltas.iter().map(|d| d.removed.len()).sum(),
                },
                Err(error) => {
                    warn!(%error, "element update refused; replacing the whole table instead");
                    self.kernel.replace(&wanted)?;
                    Transaction::Full
                }
            },
            Delta::Replace => {
                self.kernel.replace(&wanted)?;
                Transaction::Full
            }
        };
        let enforced = Enforced {
            transaction,
            rules: wanted.rule_count(),
            sets: wanted.sets.len(),
            elements: wanted.element_count(),
            took: started.elapsed(),
        };
        self.applied = Some(wanted);
        Ok(enforced)
    }

    /// Put the applied ruleset back whole (after drift).
    pub fn restore(&mut self) -> Result<bool, NftError> {
        match &self.applied {
            Some(ruleset) => self.kernel.replace(ruleset).map(|()| true),
            None => Ok(false),
        }
    }

    /// Differences between the kernel and the applied ruleset (empty when nothing applied).
    pub fn verify(&mut self) -> Result<Vec<String>, NftError> {
        match &self.applied {
            Some(ruleset) => self.kernel.verify(ruleset),
            None => Ok(Vec::new()),
        }
    }

    /// Forget what was applied, so the next enforce replaces the table and verify and restore
    /// do nothing meanwhile (the daemon removed the table on purpose: standing down).
    pub fn forget(&mut self) {
        self.applied = None;
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

    #[derive(Default)]
    struct Fake {
        calls: Vec<String>,
        refuse_updates: bool,
    }

    impl Kernel for Fake {
        fn replace(&mut self, _: &Ruleset) -> Result<(), NftError> {
            self.calls.push("replace".into());
            Ok(())
        }
        fn update(&mut self, _: &str, deltas: &[SetDelta]) -> Result<(), NftError> {
            self.calls.push(format!("update {}", deltas.len()));
            if self.refuse_updates {
                return Err(NftError::Rejected(std::io::Error::from_raw_os_error(
                    libc::ENOENT,
                )));
            }
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
