//! Small changes without replacing the table: set-element deltas, and reading back what the
//! kernel holds so the daemon can tell drift from its own state.
//!
//! Most Docker events (a container starts or stops) change only the `published` set. Sending
//! just the added and removed elements keeps the transaction small and the latency flat
//! however many containers run. It is only safe while the kernel's set is exactly what v6guard
//! last installed, so the batch is strict: adding an element that exists (NLM_F_EXCL) or
//! deleting one that does not fails the whole transaction, and the caller falls back to a full
//! replace. Either way the kernel ends up holding exactly `render` of the wanted ruleset.

use std::ffi::CString;

use nftnl::set::Set;
use nftnl::{Batch, FinalizedBatch, MsgType, ProtoFamily, Table};

use super::read::Elements;
use super::{ConcatKey, NftError, c_string};
use crate::ruleset::{Field, Ruleset};

/// One set element: its key, and its value in a map (empty in a set).
pub type Element = (Vec<Field>, Vec<Field>);

/// How the kernel must change to go from the applied ruleset to the wanted one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delta {
    /// Nothing to do.
    Unchanged,
    /// Only set elements differ: add and remove them in one transaction.
    Elements(Vec<SetDelta>),
    /// Chains, rules or the sets themselves differ (or nothing was applied yet): replace the
    /// table.
    Replace,
}

/// Elements to remove from and add to one named set or map. A map element whose value
/// changed is removed and added again (both in the same transaction).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetDelta {
    pub set: String,
    /// Whether the set holds ranges (its elements carry an end too).
    pub interval: bool,
    pub added: Vec<Element>,
    pub removed: Vec<Element>,
}

impl Delta {
    /// Number of elements added plus removed (0 for `Unchanged` and `Replace`).
    pub fn element_changes(&self) -> usize {
        match self {
            Delta::Elements(sets) => sets.iter().map(|s| s.added.len() + s.removed.len()).sum(),
            _ => 0,
        }
    }
}

/// Compare what was applied with what is wanted. Pure.
pub fn diff(applied: Option<&Ruleset>, wanted: &Ruleset) -> Delta {
    let Some(applied) = applied else {
        return Delta::Replace;
    };
    // A set's capacity is part of its declaration: the kernel cannot resize a set in place,
    // and an insert past the applied capacity would fail (ENFILE).
    let same_sets = applied.sets.len() == wanted.sets.len()
        && applied.sets.iter().zip(&wanted.sets).all(|(a, w)| {
            a.name == w.name
                && a.key == w.key
                && a.value == w.value
                && a.interval == w.interval
                && a.capacity() == w.capacity()
        });
    let same_chains =
        applied.chains == wanted.chains && applied.bridge_chains == wanted.bridge_chains;
    if applied.table != wanted.table || !same_chains || !same_sets {
        return Delta::Replace;
    }
    let deltas: Vec<SetDelta> = applied
        .sets
        .iter()
        .zip(&wanted.sets)
        .map(|(a, w)| SetDelta {
            set: w.name.clone(),
            interval: w.interval,
            added: missing_from(&w.elements, &a.elements),
            removed: missing_from(&a.elements, &w.elements),
        })
        .filter(|d| !d.added.is_empty() || !d.removed.is_empty())
        .collect();
    if deltas.is_empty() {
        Delta::Unchanged
    } else {
        Delta::Elements(deltas)
    }
}

/// Elements of `from` that `other` lacks or holds with another value.
pub(super) fn missing_from(from: &Elements, other: &Elements) -> Vec<Element> {
    from.iter()
        .filter(|(key, value)| other.get(*key) != Some(*value))
        .map(|(key, value)| (key.clone(), value.clone()))
        .collect()
}

/// The transaction that removes then adds the delta's elements. The kernel refuses it
/// (changing nothing) when its sets are not what the delta assumes.
pub fn element_batch(table: &str, deltas: &[SetDelta]) -> Result<FinalizedBatch, NftError> {
    let table_name = c_string(table)?;
    let table = Table::new(&table_name, ProtoFamily::Ipv6);
    let mut batch = Batch::new();
    let mut sets = Vec::new();
    for delta in deltas {
        let name = c_string(&delta.set)?;
        // Deleting needs only the key: the kernel finds the element by it.
        let removed = element_set(
            &name,
            &table,
            delta.interval,
            delta.removed.iter().map(|(k, _)| (k, None)),
        );
        let added = element_set(
            &name,
            &table,
            delta.interval,
            delta
                .added
                .iter()
                .map(|(k, v)| (k, Some(v).filter(|v| !v.is_empty()))),
        );
        sets.push((removed, added));
    }
    for (removed, added) in &sets {
        batch.add_iter(removed.elems_iter(), MsgType::Del);
        batch.add_iter(added.elems_iter(), MsgType::Add);
    }
    Ok(batch.finalize())
}

/// A set object naming `ip6 TABLE NAME` that holds the given elements, encoded exactly as a
/// full apply encodes them (interval ends included).
fn element_set<'a, 'e>(
    name: &CString,
    table: &'a Table,
    interval: bool,
    elements: impl Iterator<Item = (&'e Vec<Field>, Option<&'e Vec<Field>>)>,
) -> Set<'a, ConcatKey> {
    let set = Set::<ConcatKey>::new_named(name, 0, table, ProtoFamily::Ipv6);
    super::write::attach_elements(&set, interval, elements);
    set
}

#[cfg(test)]
mod tests {
    use std::net::Ipv6Addr;

    use super::*;
    use crate::ruleset::{Chain, FieldType, NamedSet};
    use crate::snapshot::Protocol;

    fn key(last: u16, port: u16) -> Vec<Field> {
        vec![
            Field::Address(Ipv6Addr::new(0xfd76, 0x6700, 0, 0x50, 0, 0, 0, last)),
            Field::Protocol(Protocol::Tcp),
            Field::Port(port),
        ]
    }

    fn ruleset(elements: &[Vec<Field>], chain: &str) -> Ruleset {
        let mut set = NamedSet::set(
            "published",
            vec![FieldType::Address, FieldType::Protocol, FieldType::Port],
        );
        set.elements = elements.iter().map(|k| (k.clone(), Vec::new())).collect();
        Ruleset {
            needs_bridge_netfilter: false,
            ndp: Default::default(),
            table: "v6guard".into(),
            sets: vec![set],
            chains: vec![Chain {
                name: chain.into(),
                hook: None,
                rules: vec![],
            }],
            bridge_chains: vec![],
        }
    }

    #[test]
    fn first_apply_and_structural_changes_replace_the_table() {
        let a = ruleset(&[key(2, 80)], "forward");
        assert_eq!(diff(None, &a), Delta::Replace);
        assert_eq!(
            diff(Some(&a), &ruleset(&[key(2, 80)], "other")),
            Delta::Replace
        );
    }

    #[test]
    fn crossing_a_capacity_boundary_replaces_the_table() {
        let keys = |n: u16| (0..n).map(|i| key(2, i)).collect::<Vec<_>>();
        let at_floor = ruleset(&keys(128), "forward");
        let above = ruleset(&keys(129), "forward");
        assert_ne!(at_floor.sets[0].capacity(), above.sets[0].capacity());
        assert_eq!(diff(Some(&at_floor), &above), Delta::Replace);
        assert_eq!(diff(Some(&above), &at_floor), Delta::Replace);
        assert!(matches!(
            diff(Some(&ruleset(&keys(127), "forward")), &at_floor),
            Delta::Elements(_)
        ));
    }

    #[test]
    fn element_changes_become_a_delta() {
        let a = ruleset(&[key(2, 80), key(3, 80)], "forward");
        let b = ruleset(&[key(3, 80), key(4, 443)], "forward");
        assert_eq!(diff(Some(&a), &a.clone()), Delta::Unchanged);
        let delta = diff(Some(&a), &b);
        assert_eq!(
            delta,
            Delta::Elements(vec![SetDelta {
                set: "published".into(),
                interval: false,
                added: vec![(key(4, 443), vec![])],
                removed: vec![(key(2, 80), vec![])],
            }])
        );
        assert_eq!(delta.element_changes(), 2);
    }

    #[test]
    fn a_changed_map_value_is_removed_and_added() {
        let types = vec![FieldType::Address, FieldType::Port];
        let mut a = ruleset(&[], "forward");
        a.sets = vec![NamedSet::map("dnat", vec![FieldType::Port], types)];
        let mut b = a.clone();
        a.sets[0].elements.insert(
            vec![Field::Port(80)],
            key(2, 80)[..1]
                .iter()
                .copied()
                .chain([Field::Port(8080)])
                .collect(),
        );
        b.sets[0].elements.insert(
            vec![Field::Port(80)],
            key(3, 80)[..1]
                .iter()
                .copied()
                .chain([Field::Port(8080)])
                .collect(),
        );
        let Delta::Elements(sets) = diff(Some(&a), &b) else {
            panic!("a value change is an element delta");
        };
        assert_eq!((sets[0].added.len(), sets[0].removed.len()), (1, 1));
    }
}
