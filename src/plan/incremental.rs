//! The plan kept up to date one container at a time, so a Docker event costs what its
//! container contributes, not what the host runs.
//!
//! A Ruleset has two parts. The skeleton (chains, rules, set declarations, NDP ownership,
//! `needs_bridge_netfilter`) depends only on the networks, the daemon's settings, the options
//! and the policy: the [`Basis`]. Each container adds set and map elements (its published,
//! restricted and translated ports, DNAT entries, host-port limits, links) and NDP entries: its
//! contribution, built from the same per-container functions `plan` uses (`exposure`,
//! `filter`, `nat`, `proxy`, `ndp`). [`PlanCache`] keeps every contribution and, per element,
//! which containers contribute it, so a container event re-plans that container (and the
//! containers linking to it by name), and the difference becomes element additions and
//! removals.
//!
//! Anything else falls back to the full plan (the caller builds a new cache): a change of the
//! basis, a container that adds rules (one multi-homed across known networks), or a change that
//! empties or first fills a set whose rule exists only while it has elements (every set but
//! `published` and the DNAT maps), or a Snapshot whose containers are not in (name, ID) order. `plan::plan` stays the reference: a property test
//! (`incremental_tests`) checks that any sequence of container changes through the cache gives
//! exactly the ruleset and NDP entries the full plan gives.
//!
//! Two rules the full plan applies across containers are kept here too: the wider exposure set
//! wins over the narrower ones (per service: address, protocol, port), and a contested DNAT key
//! goes to the first container in the Snapshot's order, (name, id), which is the order
//! `Snapshot::replace_containers` keeps.
//!
//! (Somewhat over 500 lines: adding, withdrawing and settling contributions keep one
//! invariant, the cache's ruleset equals `plan()`'s, and read best side by side.)

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::Ipv6Addr;
use std::ops::Bound;
use std::sync::Arc;

use super::exposure::ContainerExposure;
use super::policy::{self, Resolved};
use super::proxy::{HOST_ALLOWED_SET, HOST_CLOSED_SET};
use super::{PlanInputs, SetElement, filter, nat, ndp, proxy, sources};
use crate::ruleset::{
    Field, LINKS_SET, NamedSet, PUBLISHED_SET, RESTRICTED_SET, Ruleset, TRANSLATED_RESTRICTED_SET,
    TRANSLATED_SET,
};
use crate::snapshot::{Container, DaemonSettings, Engine, Network, Snapshot};

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

/// The container an element comes from, ordered as the Snapshot orders containers
/// (name, then ID), so the first owner of a contested DNAT key is the full plan's.
type Owner = Arc<(String, String)>;

/// For each key of one set or map, the containers contributing it, with the value each gives.
type Owners = BTreeMap<Vec<Field>, BTreeMap<Owner, Vec<Field>>>;

/// What one container adds to the plan.
#[derive(Debug)]
struct Contribution {
    owner: Owner,
    elements: Vec<SetElement>,
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

/// What an update touched: services (address . protocol . port) of the four exposure sets,
/// which are settled together, keys of the other sets and maps, and NDP entries.
#[derive(Default)]
struct Touched {
    services: BTreeSet<Vec<Field>>,
    keys: BTreeSet<(&'static str, Vec<Field>)>,
    ndp: BTreeSet<(String, Ipv6Addr)>,
}

impl Touched {
    fn note(&mut self, set: &'static str, key: &[Field]) {
        if is_exposure_set(set) {
            self.services.insert(key[..3].to_vec());
        } else {
            self.keys.insert((set, key.to_vec()));
        }
    }
}

fn is_exposure_set(set: &str) -> bool {
    [
        PUBLISHED_SET,
        RESTRICTED_SET,
        TRANSLATED_SET,
        TRANSLATED_RESTRICTED_SET,
    ]
    .contains(&set)
}

/// The planned Ruleset of one Snapshot, with every container's contribution, ready to follow
/// container changes.
#[derive(Debug)]
pub struct PlanCache {
    basis: Basis,
    /// The policy's networks (containers' policies are resolved per contribution).
    resolved: Resolved,
    ruleset: Ruleset,
    /// By container ID.
    contributions: HashMap<String, Contribution>,
    owners: HashMap<&'static str, Owners>,
    ndp: BTreeMap<(String, Ipv6Addr), usize>,
    /// Container name -> IDs of the containers linking to it.
    linked_by: BTreeMap<String, BTreeSet<String>>,
    /// Whether the Snapshot's containers were sorted by (name, ID), as Docker's reader and
    /// `Snapshot::replace_containers` keep them. Links find children by binary search, and a
    /// contested DNAT key goes to the first by that order: without it, only full plans.
    sorted: bool,
}

impl PlanCache {
    /// The full plan of `snapshot` (`plan::plan`), and every container's contribution.
    pub fn new(snapshot: &Snapshot, inputs: &PlanInputs) -> Self {
        let mut cache = PlanCache {
            basis: Basis::of(snapshot, inputs),
            resolved: policy::resolve_networks(snapshot, inputs),
            ruleset: super::plan(snapshot, inputs),
            contributions: HashMap::with_capacity(snapshot.containers.len()),
            owners: HashMap::new(),
            ndp: BTreeMap::new(),
            linked_by: BTreeMap::new(),
            sorted: snapshot
                .containers
                .is_sorted_by(|a, b| (&a.name, &a.id) <= (&b.name, &b.id)),
        };
        for container in &snapshot.containers {
            let contribution = contribution(snapshot, &cache.resolved, inputs, container);
            cache.add(&contribution, None);
            cache
                .contributions
                .insert(container.id.clone(), contribution);
        }
        cache
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
        self.contributions.get(id).map(|c| c.owner.0.as_str())
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
        if !self.sorted
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
            .filter_map(|id| self.contributions.get(*id).map(|c| c.owner.0.as_str()))
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
        let news: Vec<Contribution> = current
            .iter()
            .map(|c| contribution(snapshot, &self.resolved, inputs, c))
            .collect();
        let wanted: Vec<String> = wanted.into_iter().map(str::to_string).collect();
        let olds: Vec<Contribution> = wanted
            .iter()
            .filter_map(|id| self.contributions.remove(id))
            .collect();
        if olds.iter().chain(&news).any(|c| c.adds_rules) {
            return None;
        }
        let shape = self.shape();
        let mut touched = Touched::default();
        for old in &olds {
            self.withdraw(old, &mut touched);
        }
        for new in news {
            self.add(&new, Some(&mut touched));
            self.contributions.insert(new.owner.1.clone(), new);
        }
        let changes = self.settle(touched);
        let complete = self.contributions.len() == snapshot.containers.len();
        if self.shape() == shape && complete {
            return Some(changes);
        }
        // Spent, but its sets keep the previous plan's elements: the caller may hold them as
        // what the kernel has (see `into_ruleset`).
        undo(&mut self.ruleset, &changes);
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

    fn add(&mut self, contribution: &Contribution, mut touched: Option<&mut Touched>) {
        for (set, key, value) in &contribution.elements {
            self.owners
                .entry(set)
                .or_default()
                .entry(key.clone())
                .or_default()
                .entry(contribution.owner.clone())
                .or_insert_with(|| value.clone());
            if let Some(touched) = touched.as_deref_mut() {
                touched.note(set, key);
            }
        }
        for entry in &contribution.ndp {
            *self.ndp.entry(entry.clone()).or_default() += 1;
            if let Some(touched) = touched.as_deref_mut() {
                touched.ndp.insert(entry.clone());
            }
        }
        for name in &contribution.links {
            self.linked_by
                .entry(name.clone())
                .or_default()
                .insert(contribution.owner.1.clone());
        }
    }

    fn withdraw(&mut self, contribution: &Contribution, touched: &mut Touched) {
        for (set, key, _) in &contribution.elements {
            if let Some(owners) = self.owners.get_mut(set) {
                if let Some(by) = owners.get_mut(key) {
                    by.remove(&contribution.owner);
                    if by.is_empty() {
                        owners.remove(key);
                    }
                }
            }
            touched.note(set, key);
        }
        for entry in &contribution.ndp {
            if let Some(count) = self.ndp.get_mut(entry) {
                *count -= 1;
                if *count == 0 {
                    self.ndp.remove(entry);
                }
            }
            touched.ndp.insert(entry.clone());
        }
        for name in &contribution.links {
            if let Some(parents) = self.linked_by.get_mut(name) {
                parents.remove(&contribution.owner.1);
                if parents.is_empty() {
                    self.linked_by.remove(name);
                }
            }
        }
    }

    /// Bring the ruleset's elements (and NDP entries) at every touched key in line with the
    /// contributions, recording what changed.
    fn settle(&mut self, touched: Touched) -> Vec<SetChange> {
        let mut changes = Changes::default();
        for service in &touched.services {
            // The wider set wins, as in `filter::exposure_sets`.
            let published = self.contributed(PUBLISHED_SET, service).is_some();
            let translated = self.contributed(TRANSLATED_SET, service).is_some();
            let open = |on: bool| on.then(Vec::new);
            self.settle_key(PUBLISHED_SET, service, open(published), &mut changes);
            self.settle_key(
                TRANSLATED_SET,
                service,
                open(translated && !published),
                &mut changes,
            );
            self.settle_range(RESTRICTED_SET, service, !published, &mut changes);
            self.settle_range(
                TRANSLATED_RESTRICTED_SET,
                service,
                !published && !translated,
                &mut changes,
            );
        }
        for (set, key) in &touched.keys {
            let value = self.contributed(set, key).cloned();
            self.settle_key(set, key, value, &mut changes);
        }
        for entry in touched.ndp {
            let entries = &mut self.ruleset.ndp.entries;
            if self.ndp.contains_key(&entry) {
                entries.insert(entry);
            } else {
                entries.remove(&entry);
            }
        }
        changes.in_order_of(&self.ruleset)
    }

    /// The value the first contributing container gives `key` in `set`, if any contributes.
    fn contributed(&self, set: &str, key: &[Field]) -> Option<&Vec<Field>> {
        let (_, value) = self.owners.get(set)?.get(key)?.first_key_value()?;
        Some(value)
    }

    fn settle_key(
        &mut self,
        set: &'static str,
        key: &[Field],
        wanted: Option<Vec<Field>>,
        changes: &mut Changes,
    ) {
        let elements = &mut set_mut(&mut self.ruleset, set).elements;
        let have = elements.get(key);
        if have == wanted.as_ref() {
            return;
        }
        if let Some(old) = elements.remove(key) {
            changes.removed(set, key.to_vec(), old);
        }
        if let Some(value) = wanted {
            elements.insert(key.to_vec(), value.clone());
            changes.added(set, key.to_vec(), value);
        }
    }

    /// The elements of a restricted set for one service: what is contributed when `allowed`
    /// (the wider sets do not already admit the service), else nothing.
    fn settle_range(
        &mut self,
        set: &'static str,
        service: &[Field],
        allowed: bool,
        changes: &mut Changes,
    ) {
        let wanted: BTreeSet<Vec<Field>> = match (allowed, self.owners.get(set)) {
            (true, Some(owners)) => with_prefix(owners, service).cloned().collect(),
            _ => BTreeSet::new(),
        };
        let elements = &mut set_mut(&mut self.ruleset, set).elements;
        let have: BTreeSet<Vec<Field>> = with_prefix(elements, service).cloned().collect();
        for key in have.difference(&wanted) {
            if let Some(old) = elements.remove(key) {
                changes.removed(set, key.clone(), old);
            }
        }
        for key in wanted.difference(&have) {
            elements.insert(key.clone(), Vec::new());
            changes.added(set, key.clone(), Vec::new());
        }
    }
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

fn set_mut<'r>(ruleset: &'r mut Ruleset, name: &str) -> &'r mut NamedSet {
    match ruleset.sets.iter().position(|s| s.name == name) {
        Some(i) => &mut ruleset.sets[i],
        // Every set a contribution names is declared by the plan.
        None => unreachable!("set {name} is not declared by the plan"),
    }
}

/// Take `changes` back: what `ruleset`'s sets held before they were made.
fn undo(ruleset: &mut Ruleset, changes: &[SetChange]) {
    for change in changes {
        let elements = &mut set_mut(ruleset, &change.set).elements;
        for (key, _) in &change.added {
            elements.remove(key);
        }
        for (key, value) in &change.removed {
            elements.insert(key.clone(), value.clone());
        }
    }
}

/// Element changes gathered per set.
#[derive(Default)]
struct Changes(BTreeMap<&'static str, (Vec<Element>, Vec<Element>)>);

impl Changes {
    fn added(&mut self, set: &'static str, key: Vec<Field>, value: Vec<Field>) {
        self.0.entry(set).or_default().0.push((key, value));
    }

    fn removed(&mut self, set: &'static str, key: Vec<Field>, value: Vec<Field>) {
        self.0.entry(set).or_default().1.push((key, value));
    }

    /// One change per set that changed, in the ruleset's set order, elements in key order.
    fn in_order_of(mut self, ruleset: &Ruleset) -> Vec<SetChange> {
        ruleset
            .sets
            .iter()
            .filter_map(|set| {
                let (mut added, mut removed) = self.0.remove(set.name.as_str())?;
                added.sort();
                removed.sort();
                Some(SetChange {
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
fn contribution(
    snapshot: &Snapshot,
    resolved: &Resolved,
    inputs: &PlanInputs,
    container: &Container,
) -> Contribution {
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
    Contribution {
        owner: Arc::new((container.name.clone(), container.id.clone())),
        elements,
        ndp: ndp::container_entries(snapshot, resolved, container),
        links: container.links.clone(),
        adds_rules: !sources::multihomed_rules(snapshot, container).is_empty(),
    }
}

#[cfg(test)]
#[path = "incremental_tests.rs"]
mod tests;
