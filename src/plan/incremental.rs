//! The plan kept up to date one container at a time, so a Docker event costs what its
//! container contributes, not what the host runs.
//!
//! A Ruleset has two parts. The skeleton (chains, rules, set declarations, NDP ownership,
//! `needs_bridge_netfilter`) depends only on the networks, the daemon's settings, the options
//! and the policy: the [`Basis`]. Each container adds set and map elements (its published,
//! restricted and translated ports, DNAT entries, host-port limits, links) and NDP entries: its
//! contribution, built from the same per-container functions `plan` uses (`exposure`,
//! `filter`, `nat`, `proxy`, `ndp`). A container event re-plans that container (and the
//! containers linking to it by name): its old elements are withdrawn, its new ones added, and
//! the difference becomes element additions and removals.
//!
//! Exposure and link keys start with the contributing container's own address, and each
//! address belongs to one container, so a container's elements there are found by a range of
//! its addresses; its keys in the other sets (host ports: DNAT maps, host-port limits) are
//! kept encoded, a few bytes each. The cache holds no per-element index: at 10,000
//! containers the elements are the daemon's memory. The wider exposure set wins over the
//! narrower ones per service (address, protocol, port), which is then one container's.
//!
//! A host port two containers publish (Docker's allocator never does; the benchmarks'
//! synthetic hosts reuse host ports) is counted, and its DNAT key goes to the first container
//! by (name, ID), as in the full plan: when that one goes, a pass over the contributions'
//! keys finds the next, which is re-planned for its target. An address two containers hold
//! (IPAM prevents it; a stale Snapshot may not) is left to the full plan: an update that
//! would share one asks for the full plan, and a cache built while one is shared follows
//! nothing (every update asks for the full plan) until a full plan without it builds a new
//! one. Building checks that the contributions give exactly the plan's elements, and follows
//! nothing otherwise.
//!
//! Anything else falls back to the full plan too (the caller builds a new cache): a change of
//! the basis, a container that adds rules (one multi-homed across known networks), a change
//! that empties or first fills a set whose rule exists only while it has elements (every set
//! but `published` and the DNAT maps), a change that moves a set's element count across a
//! capacity boundary (`NamedSet::capacity`, part of the set's declaration), or a Snapshot
//! whose containers are not in (name, ID) order. `plan::plan` stays the reference: a property test (`incremental_tests`) checks that
//! any sequence of container changes through the cache gives exactly the ruleset and NDP
//! entries the full plan gives.
//!
//! (Over 500 lines: adding and withdrawing contributions keep one invariant, the cache's
//! ruleset equals `plan()`'s, and read best side by side; the key encoding is theirs.)

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::Ipv6Addr;
use std::ops::Bound;

use super::exposure::ContainerExposure;
use super::policy::{self, Resolved};
use super::proxy::{HOST_ALLOWED_SET, HOST_CLOSED_SET};
use super::{PlanInputs, SetElement, filter, nat, ndp, proxy, sources};
use crate::ruleset::{
    DNAT_ANY_MAP, DNAT_HOST_MAP, Field, LINKS_SET, NamedSet, PUBLISHED_SET, RESTRICTED_SET,
    Ruleset, TRANSLATED_RESTRICTED_SET, TRANSLATED_SET,
};
use crate::snapshot::{Container, DaemonSettings, Engine, Network, Snapshot};
use keys::{decode_key, encode, encoded_keys};

/// A set's elements, key -> value.
type Elements = BTreeMap<Vec<Field>, Vec<Field>>;

/// One set element: its key, and its value in a map (empty in a set).
pub type Element = (Vec<Field>, Vec<Field>);

/// Elements to remove from and add to one named set or map. A map element whose value
/// changed is removed and added again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetChange {
    pub set: String,
    pub added: Vec<Element>,
    pub removed: Vec<Element>,
}

/// Sets whose keys start with the contributing container's own address (its exposure, and
/// its links as the parent): with each address held by one container, a container's elements
/// there are the ones under its addresses, found by range, never stored twice.
const BY_ADDRESS: [&str; 5] = [
    PUBLISHED_SET,
    RESTRICTED_SET,
    TRANSLATED_SET,
    TRANSLATED_RESTRICTED_SET,
    LINKS_SET,
];

/// The other sets and maps containers fill, keyed by host ports Docker's allocator keeps
/// unique: a container's keys there are kept, encoded (see [`encode`]).
const BY_KEY: [&str; 4] = [
    DNAT_ANY_MAP,
    DNAT_HOST_MAP,
    HOST_CLOSED_SET,
    HOST_ALLOWED_SET,
];

/// What one container adds to the plan, freshly planned.
#[derive(Debug)]
struct Planned {
    id: String,
    name: String,
    /// Its own addresses, sorted.
    addresses: Vec<Ipv6Addr>,
    elements: Vec<SetElement>,
    ndp: Vec<(String, Ipv6Addr)>,
    links: Vec<String>,
    adds_rules: bool,
}

/// What the cache keeps of a container's contribution: enough to withdraw it. Kept small
/// (a few dozen bytes and its name), as the daemon holds one per container.
#[derive(Debug)]
struct Contribution {
    name: String,
    /// Its elements in the [`BY_ADDRESS`] sets are the ones under these.
    addresses: Box<[Ipv6Addr]>,
    /// Its keys in the [`BY_KEY`] sets and maps, encoded.
    keys: Box<[u8]>,
    ndp: Vec<(String, Ipv6Addr)>,
    /// The names it links to (`--link`): their changes change its `links` elements.
    links: Vec<String>,
    /// Whether it adds rules (multi-homed): then only a full plan is right.
    adds_rules: bool,
}

/// What the skeleton depends on. While it stays the same, only contributions change.
#[derive(Debug, Clone, PartialEq)]
struct Basis {
    inputs: PlanInputs,
    engine: Engine,
    daemon: DaemonSettings,
    networks: Vec<Network>,
}

impl Basis {
    fn of(snapshot: &Snapshot, inputs: &PlanInputs) -> Self {
        Basis {
            inputs: inputs.clone(),
            engine: snapshot.engine.clone(),
            daemon: snapshot.daemon.clone(),
            networks: snapshot.networks.clone(),
        }
    }

    fn holds_for(&self, snapshot: &Snapshot, inputs: &PlanInputs) -> bool {
        self.networks == snapshot.networks
            && self.engine == snapshot.engine
            && self.daemon == snapshot.daemon
            && self.inputs == *inputs
    }
}

/// The planned Ruleset of one Snapshot, with what each container contributes, ready to
/// follow container changes.
#[derive(Debug)]
pub struct PlanCache {
    basis: Basis,
    /// The policy's networks (containers' policies are resolved per contribution).
    resolved: Resolved,
    ruleset: Ruleset,
    /// By container ID.
    contributions: HashMap<String, Contribution>,
    /// Every container's own addresses, each held by one container: address -> its ID.
    addresses: HashMap<Ipv6Addr, String>,
    /// Keys of the [`BY_KEY`] sets and maps more than one container contributes (one host
    /// port published twice: the benchmarks' synthetic hosts reuse host ports, Docker does
    /// not), encoded, with how many do. A DNAT key goes to the first by (name, ID).
    shared: HashMap<Box<[u8]>, u32>,
    ndp: BTreeMap<(String, Ipv6Addr), usize>,
    /// Container name -> IDs of the containers linking to it.
    linked_by: BTreeMap<String, BTreeSet<String>>,
    /// Whether the cache follows changes: the Snapshot's containers are sorted by (name, ID),
    /// as Docker's reader and `Snapshot::replace_containers` keep them (links find children
    /// by binary search), and no element is contested (see the module documentation).
    incremental: bool,
}

impl PlanCache {
    /// The full plan of `snapshot` (`plan::plan`), and every container's contribution.
    pub fn new(snapshot: &Snapshot, inputs: &PlanInputs) -> Self {
        let mut cache = PlanCache {
            basis: Basis::of(snapshot, inputs),
            resolved: policy::resolve_networks(snapshot, inputs),
            ruleset: super::plan(snapshot, inputs),
            contributions: HashMap::new(),
            addresses: HashMap::new(),
            shared: HashMap::new(),
            ndp: BTreeMap::new(),
            linked_by: BTreeMap::new(),
            // Augment mode's ruleset is not made of these contributions (it declares none of
            // their sets): the full plan, always.
            incremental: !super::augment::active(snapshot, &inputs.options)
                && snapshot
                    .containers
                    .is_sorted_by(|a, b| (&a.name, &a.id) <= (&b.name, &b.id)),
        };
        if cache.incremental {
            cache.incremental = cache.add_all(snapshot, inputs);
        }
        if !cache.incremental {
            // Every update asks for the full plan: nothing to keep.
            cache.contributions = HashMap::new();
            cache.addresses = HashMap::new();
            cache.shared = HashMap::new();
            cache.ndp = BTreeMap::new();
            cache.linked_by = BTreeMap::new();
        }
        for set in &mut cache.ruleset.sets {
            // Built from sorted keys, the B-tree's nodes are full: about half the memory of
            // one grown by inserts, which matters at 100,000 elements.
            set.elements = std::mem::take(&mut set.elements).into_iter().collect();
        }
        cache
    }

    /// Add every container's contribution to the plan's skeleton, and check that gives the
    /// plan's elements. `false`: some element is contested (two containers with one address,
    /// or one host port), or a contribution is not of the shape this cache follows; the plan
    /// stays as `plan::plan` made it, and only full plans follow.
    fn add_all(&mut self, snapshot: &Snapshot, inputs: &PlanInputs) -> bool {
        let reference: Vec<(usize, Elements)> = (self.ruleset.sets.iter_mut().enumerate())
            .filter(|(_, set)| is_filled_by_containers(&set.name))
            .map(|(i, set)| (i, std::mem::take(&mut set.elements)))
            .collect();
        self.contributions.reserve(snapshot.containers.len());
        let mut changes = Changes::unrecorded();
        let all_added = snapshot.containers.iter().all(|container| {
            let planned = plan_container(snapshot, &self.resolved, inputs, container);
            let id = planned.id.clone();
            self.add(planned, &mut changes)
                .map(|contribution| self.contributions.insert(id, contribution))
                .is_some()
        });
        let same = all_added
            && self.ndp.keys().eq(&self.ruleset.ndp.entries)
            && (reference.iter()).all(|(i, elements)| self.ruleset.sets[*i].elements == *elements);
        if !same {
            for (i, elements) in reference {
                self.ruleset.sets[i].elements = elements;
            }
        }
        same
    }

    /// The ruleset `plan::plan` gives for the Snapshot last seen.
    pub fn ruleset(&self) -> &Ruleset {
        &self.ruleset
    }

    /// The ruleset, for a caller that keeps it after the cache is spent: after an `update`
    /// that returned `None`, its sets still hold the elements from before that call.
    pub fn into_ruleset(self) -> Ruleset {
        self.ruleset
    }

    /// The name the container with this ID had when the cache last saw it.
    pub fn name_of(&self, id: &str) -> Option<&str> {
        self.contributions.get(id).map(|c| c.name.as_str())
    }

    /// Follow a change of the containers with IDs `ids` (started, changed or gone) in
    /// `snapshot`: re-plan them and the containers linking to them, and return the element
    /// changes that turn the previous ruleset into the new one (which [`Self::ruleset`] then
    /// holds). `located` names containers the caller just put into the Snapshot (ID ->
    /// name), so they are found by binary search. `None`: the change needs the full plan;
    /// this cache is then spent (build a new one), but its sets still hold the elements they
    /// held before the call.
    pub fn update(
        &mut self,
        snapshot: &Snapshot,
        inputs: &PlanInputs,
        ids: &[String],
        located: &HashMap<String, String>,
    ) -> Option<Vec<SetChange>> {
        // Augment mode's ruleset is not made of these contributions: always the full plan
        // there (it holds only the policy's narrowing drops, a few elements).
        if !self.incremental
            || !self.basis.holds_for(snapshot, inputs)
            || super::augment::active(snapshot, &inputs.options)
        {
            return None;
        }
        let mut wanted: BTreeSet<&str> = ids.iter().map(String::as_str).collect();
        let mut current = self.locate(snapshot, &wanted, located);
        // Containers linking to a changed one, by its old name or its new one.
        let names: BTreeSet<&str> = wanted
            .iter()
            .filter_map(|id| self.contributions.get(*id).map(|c| c.name.as_str()))
            .chain(current.iter().map(|c| c.name.as_str()))
            .collect();
        let parents: BTreeSet<&str> = names
            .iter()
            .filter_map(|name| self.linked_by.get(*name))
            .flatten()
            .map(String::as_str)
            .filter(|id| !wanted.contains(id))
            .collect();
        if !parents.is_empty() {
            current.extend(self.locate(snapshot, &parents, located));
            wanted.extend(parents);
        }
        let news: Vec<Planned> = current
            .iter()
            .map(|c| plan_container(snapshot, &self.resolved, inputs, c))
            .collect();
        let wanted: Vec<String> = wanted.into_iter().map(str::to_string).collect();
        let olds: Vec<(String, Contribution)> = wanted
            .iter()
            .filter_map(|id| self.contributions.remove_entry(id))
            .collect();
        if olds.iter().any(|(_, c)| c.adds_rules) || news.iter().any(|c| c.adds_rules) {
            return None;
        }
        let shape = self.shape();
        let capacities = self.capacities();
        let mut changes = Changes::default();
        let followed = self.follow(snapshot, inputs, &olds, news, &mut changes);
        let complete = self.contributions.len() == snapshot.containers.len();
        if followed && self.shape() == shape && self.capacities() == capacities && complete {
            self.settle_ndp(&changes.ndp);
            return Some(changes.in_order_of(&self.ruleset));
        }
        // Spent, but its sets (and NDP entries, never touched on this path) keep the previous
        // plan's: the caller may hold them as what the kernel has (see `into_ruleset`).
        changes.undo(&mut self.ruleset);
        None
    }

    /// The containers with these IDs in `snapshot`: by binary search under the name the
    /// caller gives or the cache knows; by a pass over the list for IDs known by neither. A
    /// container not under any of those names is taken as gone; should it be in the Snapshot
    /// under another (a rename the caller did not report), the contribution count no longer
    /// matches the Snapshot's and `update` asks for the full plan.
    fn locate<'s>(
        &self,
        snapshot: &'s Snapshot,
        ids: &BTreeSet<&str>,
        located: &HashMap<String, String>,
    ) -> Vec<&'s Container> {
        let mut found = Vec::new();
        let mut unknown = BTreeSet::new();
        for id in ids {
            let names = [located.get(*id).map(String::as_str), self.name_of(id)];
            if names.iter().all(Option::is_none) {
                unknown.insert(*id);
                continue;
            }
            let at = names
                .into_iter()
                .flatten()
                .find_map(|name| snapshot.container_position(name, id).ok());
            found.extend(at.map(|at| &snapshot.containers[at]));
        }
        if !unknown.is_empty() {
            found.extend(find_by_id(snapshot, &unknown));
        }
        found
    }

    /// Which of the sets whose rule exists only while they hold elements are empty.
    fn shape(&self) -> [bool; 6] {
        [
            RESTRICTED_SET,
            TRANSLATED_SET,
            TRANSLATED_RESTRICTED_SET,
            LINKS_SET,
            HOST_CLOSED_SET,
            HOST_ALLOWED_SET,
        ]
        .map(|name| self.ruleset.set(name).is_none_or(|s| s.elements.is_empty()))
    }

    /// Every set's capacity: one that changes changes the set's declaration, which only a
    /// full replace can install.
    fn capacities(&self) -> Vec<Option<u32>> {
        self.ruleset.sets.iter().map(NamedSet::capacity).collect()
    }

    /// Withdraw `olds`, then add `news`. `false` when that would contest an element: the
    /// full plan decides those.
    fn follow(
        &mut self,
        snapshot: &Snapshot,
        inputs: &PlanInputs,
        olds: &[(String, Contribution)],
        news: Vec<Planned>,
        changes: &mut Changes,
    ) -> bool {
        for (id, old) in olds {
            if self.withdraw(snapshot, inputs, id, old, changes).is_none() {
                return false;
            }
        }
        for new in news {
            let id = new.id.clone();
            match self.add(new, changes) {
                Some(contribution) => self.contributions.insert(id, contribution),
                None => return false,
            };
        }
        true
    }

    /// Put `new`'s elements into the ruleset, as `plan` would: the wider exposure set wins
    /// per service, a key twice in one contribution keeps its first value, and a DNAT key
    /// two containers contribute goes to the first by (name, ID). `None` when an address is
    /// another container's, or an element is not where this cache looks for it: the caller
    /// falls back to the full plan.
    fn add(&mut self, new: Planned, changes: &mut Changes) -> Option<Contribution> {
        if new.addresses.iter().any(|a| self.addresses.contains_key(a)) {
            return None;
        }
        let mut keys = Vec::new();
        for (set, key, value) in settled(first_of_each_key(new.elements)) {
            let current = set_mut(&mut self.ruleset, set)?.elements.get(&key).cloned();
            if BY_ADDRESS.contains(&set) {
                let own = matches!(key.first(), Some(Field::Address(a)) if new.addresses.binary_search(a).is_ok());
                if !own || current.is_some() {
                    return None;
                }
            } else {
                let start = keys.len();
                encode(&mut keys, set, &key)?;
                if let Some(current) = current {
                    // A host port another container publishes too.
                    let first = !value.is_empty() && self.precedes(&new.name, &new.id, &current)?;
                    *self.shared.entry(keys[start..].into()).or_insert(1) += 1;
                    if !first {
                        continue;
                    }
                }
            }
            let elements = &mut set_mut(&mut self.ruleset, set)?.elements;
            let was = elements.insert(key.clone(), value.clone());
            changes.note(set, key, was, Some(value));
        }
        let owner = || new.id.clone();
        self.addresses
            .extend(new.addresses.iter().map(|a| (*a, owner())));
        for entry in &new.ndp {
            *self.ndp.entry(entry.clone()).or_default() += 1;
            changes.ndp.insert(entry.clone());
        }
        for name in &new.links {
            self.linked_by
                .entry(name.clone())
                .or_default()
                .insert(new.id.clone());
        }
        Some(Contribution {
            name: new.name,
            addresses: new.addresses.into_boxed_slice(),
            keys: keys.into_boxed_slice(),
            ndp: new.ndp,
            links: new.links,
            adds_rules: new.adds_rules,
        })
    }

    /// Whether the container (`name`, `id`) comes before the one whose DNAT target is
    /// `current` (its address first). `None` if that one is unknown (never: every target
    /// address is a contributing container's).
    fn precedes(&self, name: &str, id: &str, current: &[Field]) -> Option<bool> {
        let Some(Field::Address(address)) = current.first() else {
            return None;
        };
        let holder = self.addresses.get(address)?;
        let holder_name = &self.contributions.get(holder)?.name;
        Some((name, id) < (holder_name.as_str(), holder.as_str()))
    }

    /// The value the first other contributor (by name, ID) gives a shared DNAT key: found by
    /// a pass over the contributions' keys (a few bytes each), and that container re-planned.
    /// Only when the container holding a shared key goes. `Some(None)`: no other contributor
    /// is in the cache (the rest are being withdrawn too). `None`: there is one, but it is not
    /// where the cache knows it or no longer gives the key (a change no event reported):
    /// the caller falls back to the full plan rather than drop a key someone holds.
    fn next_holder_value(
        &self,
        snapshot: &Snapshot,
        inputs: &PlanInputs,
        encoded: &[u8],
        set: &str,
        key: &[Field],
    ) -> Option<Option<Vec<Field>>> {
        let Some((id, next)) = (self.contributions.iter())
            .filter(|(_, c)| encoded_keys(&c.keys).any(|k| k == encoded))
            .min_by(|(ia, a), (ib, b)| (&a.name, ia).cmp(&(&b.name, ib)))
        else {
            return Some(None);
        };
        let at = snapshot.container_position(&next.name, id).ok()?;
        let planned = plan_container(snapshot, &self.resolved, inputs, &snapshot.containers[at]);
        let value = (first_of_each_key(planned.elements).into_iter())
            .find(|(s, k, _)| *s == set && k == key)
            .map(|(_, _, value)| value)?;
        Some(Some(value))
    }

    /// Take `old`'s elements out of the ruleset: everything under its addresses, and its
    /// keys (a shared DNAT key it held passes to the next contributor). `None` if its keys
    /// do not decode (never: the cache encoded them).
    fn withdraw(
        &mut self,
        snapshot: &Snapshot,
        inputs: &PlanInputs,
        id: &str,
        old: &Contribution,
        changes: &mut Changes,
    ) -> Option<()> {
        for address in &old.addresses {
            self.addresses.remove(address);
            let prefix = [Field::Address(*address)];
            for set in BY_ADDRESS {
                let elements = &mut set_mut(&mut self.ruleset, set)?.elements;
                let under: Vec<Vec<Field>> = with_prefix(elements, &prefix).cloned().collect();
                for key in under {
                    let value = elements.remove(&key);
                    changes.note(set, key, value, None);
                }
            }
        }
        for encoded in encoded_keys(&old.keys) {
            let (set, key) = decode_key(encoded)?;
            let now = match self.shared.get_mut(encoded) {
                Some(count) => {
                    *count -= 1;
                    if *count == 1 {
                        self.shared.remove(encoded);
                    }
                    let current = set_mut(&mut self.ruleset, set)?.elements.get(&key);
                    let held = matches!(current.and_then(|v| v.first()),
                        Some(Field::Address(a)) if old.addresses.contains(a));
                    if !held {
                        continue;
                    }
                    self.next_holder_value(snapshot, inputs, encoded, set, &key)?
                }
                None => None,
            };
            let elements = &mut set_mut(&mut self.ruleset, set)?.elements;
            let was = match &now {
                Some(value) => elements.insert(key.clone(), value.clone()),
                None => elements.remove(&key),
            };
            changes.note(set, key, was, now);
        }
        for entry in &old.ndp {
            if let Some(count) = self.ndp.get_mut(entry) {
                *count -= 1;
                if *count == 0 {
                    self.ndp.remove(entry);
                }
            }
            changes.ndp.insert(entry.clone());
        }
        for name in &old.links {
            if let Some(parents) = self.linked_by.get_mut(name) {
                parents.remove(id);
                if parents.is_empty() {
                    self.linked_by.remove(name);
                }
            }
        }
        Some(())
    }

    /// Bring the ruleset's NDP entries in line with the contributions at `touched`.
    fn settle_ndp(&mut self, touched: &BTreeSet<(String, Ipv6Addr)>) {
        for entry in touched {
            let entries = &mut self.ruleset.ndp.entries;
            if self.ndp.contains_key(entry) {
                entries.insert(entry.clone());
            } else {
                entries.remove(entry);
            }
        }
    }
}

/// Whether containers' contributions fill this set or map.
fn is_filled_by_containers(set: &str) -> bool {
    BY_ADDRESS.contains(&set) || BY_KEY.contains(&set)
}

/// The first element of each (set, key), in their order: `plan` keeps a DNAT key's first
/// target, and a set holds a key once.
fn first_of_each_key(elements: Vec<SetElement>) -> Vec<SetElement> {
    let mut order: Vec<usize> = (0..elements.len()).collect();
    order.sort_by(|&a, &b| {
        let (ea, eb) = (&elements[a], &elements[b]);
        (ea.0, &ea.1, a).cmp(&(eb.0, &eb.1, b))
    });
    let mut keep = vec![false; elements.len()];
    for (n, &i) in order.iter().enumerate() {
        let first = n == 0 || {
            let previous = &elements[order[n - 1]];
            (previous.0, &previous.1) != (elements[i].0, &elements[i].1)
        };
        keep[i] = first;
    }
    elements
        .into_iter()
        .zip(keep)
        .filter_map(|(element, keep)| keep.then_some(element))
        .collect()
}

/// One container's elements with what its wider exposure sets admit left out of the
/// narrower ones, as `filter::exposure_sets` does over all containers (per service: the
/// container's address, protocol and port, which no other container shares).
fn settled(elements: Vec<SetElement>) -> Vec<SetElement> {
    let services = |name: &str| -> BTreeSet<Vec<Field>> {
        (elements.iter())
            .filter(|(set, _, _)| *set == name)
            .map(|(_, key, _)| key.clone())
            .collect()
    };
    let (published, translated) = (services(PUBLISHED_SET), services(TRANSLATED_SET));
    let kept = |set: &str, key: &[Field]| -> bool {
        let service = &key[..key.len().min(3)];
        match set {
            TRANSLATED_SET => !published.contains(key),
            RESTRICTED_SET => !published.contains(service),
            TRANSLATED_RESTRICTED_SET => {
                !published.contains(service) && !translated.contains(service)
            }
            _ => true,
        }
    };
    let kept: Vec<bool> = (elements.iter())
        .map(|(set, key, _)| kept(set, key))
        .collect();
    elements
        .into_iter()
        .zip(kept)
        .filter_map(|(element, kept)| kept.then_some(element))
        .collect()
}

/// Keys of `map` that start with `prefix` (contiguous: a prefix sorts before its extensions).
fn with_prefix<'m, V>(
    map: &'m BTreeMap<Vec<Field>, V>,
    prefix: &[Field],
) -> impl Iterator<Item = &'m Vec<Field>> {
    map.range::<[Field], _>((Bound::Included(prefix), Bound::Unbounded))
        .map(|(key, _)| key)
        .take_while(move |key| key.starts_with(prefix))
}

/// The set named `name`. `None` if the plan does not declare it: then this cache cannot
/// follow the change, and the caller falls back to the full plan.
fn set_mut<'r>(ruleset: &'r mut Ruleset, name: &str) -> Option<&'r mut NamedSet> {
    ruleset.sets.iter_mut().find(|s| s.name == name)
}

/// What a key held before a change and holds after it (`None`: absent).
type Transition = (Option<Vec<Field>>, Option<Vec<Field>>);

/// Element changes gathered per set and key: what the key held before the first change and
/// what it holds now, so an element withdrawn and added back unchanged is no change.
#[derive(Default)]
struct Changes {
    elements: BTreeMap<&'static str, BTreeMap<Vec<Field>, Transition>>,
    /// NDP entries whose contributions changed.
    ndp: BTreeSet<(String, Ipv6Addr)>,
    /// Building a cache records nothing: nothing is sent, nothing undone.
    unrecorded: bool,
}

impl Changes {
    fn unrecorded() -> Self {
        Changes {
            unrecorded: true,
            ..Changes::default()
        }
    }

    /// `key` in `set` went from `was` to `now`.
    fn note(
        &mut self,
        set: &'static str,
        key: Vec<Field>,
        was: Option<Vec<Field>>,
        now: Option<Vec<Field>>,
    ) {
        if self.unrecorded {
            return;
        }
        let entry = self.elements.entry(set).or_default().entry(key);
        entry.or_insert((was, None)).1 = now;
    }

    /// Put back what each changed key held before.
    fn undo(self, ruleset: &mut Ruleset) {
        for (set, keys) in self.elements {
            // A change was recorded only on a set the ruleset declares.
            let Some(declared) = set_mut(ruleset, set) else {
                continue;
            };
            let elements = &mut declared.elements;
            for (key, (was, _)) in keys {
                match was {
                    Some(value) => elements.insert(key, value),
                    None => elements.remove(&key),
                };
            }
        }
    }

    /// One change per set that changed, in the ruleset's set order, elements in key order;
    /// a map element whose value changed is removed and added again.
    fn in_order_of(mut self, ruleset: &Ruleset) -> Vec<SetChange> {
        ruleset
            .sets
            .iter()
            .filter_map(|set| {
                let keys = self.elements.remove(set.name.as_str())?;
                let (mut added, mut removed) = (Vec::new(), Vec::new());
                for (key, (was, now)) in keys {
                    if was == now {
                        continue;
                    }
                    if let Some(value) = was {
                        removed.push((key.clone(), value));
                    }
                    if let Some(value) = now {
                        added.push((key, value));
                    }
                }
                let changed = !added.is_empty() || !removed.is_empty();
                changed.then(|| SetChange {
                    set: set.name.clone(),
                    added,
                    removed,
                })
            })
            .collect()
    }
}

/// The containers with these IDs, in the Snapshot's order: one pass over the list (a string
/// comparison per container).
fn find_by_id<'s>(snapshot: &'s Snapshot, ids: &BTreeSet<&str>) -> Vec<&'s Container> {
    snapshot
        .containers
        .iter()
        .filter(|c| ids.contains(c.id.as_str()))
        .collect()
}

/// The last container named `name` (the full plan's links look children up in a map built
/// in Snapshot order, where the last of a name wins), found by binary search: the Snapshot is
/// sorted by name.
fn by_name<'s>(snapshot: &'s Snapshot, name: &str) -> Option<&'s Container> {
    let end = snapshot
        .containers
        .partition_point(|c| c.name.as_str() <= name);
    snapshot.containers[..end].last().filter(|c| c.name == name)
}

/// What `container` contributes, from the same per-container functions `plan` uses.
fn plan_container(
    snapshot: &Snapshot,
    resolved: &Resolved,
    inputs: &PlanInputs,
    container: &Container,
) -> Planned {
    let (policy, _) = policy::container_policy(container, inputs);
    let model = ContainerExposure::new(snapshot, resolved, container, policy.as_ref());
    let mut elements = filter::exposure_elements(&model);
    elements.extend(nat::dnat_elements(&model));
    elements.extend(proxy::host_port_elements(snapshot, &model));
    elements.extend(filter::link_elements(
        snapshot,
        resolved,
        container,
        |name| by_name(snapshot, name),
    ));
    let mut addresses: Vec<Ipv6Addr> = container.endpoints.iter().filter_map(|e| e.ipv6).collect();
    addresses.sort_unstable();
    addresses.dedup();
    Planned {
        id: container.id.clone(),
        name: container.name.clone(),
        addresses,
        elements,
        ndp: ndp::container_entries(snapshot, resolved, container),
        links: container.links.clone(),
        adds_rules: !sources::multihomed_rules(snapshot, container).is_empty(),
    }
}

#[path = "incremental_keys.rs"]
mod keys;

#[cfg(test)]
#[path = "incremental_tests.rs"]
mod tests;
