//! The audit: which container IPv6 ports can really be reached, from where, how and why.
//!
//! It starts from what the containers listen on (their own sockets, read at the edge), not
//! from what v6guard planned, because the exposure that matters most is the listener nobody
//! published. Each (container, address, protocol, port) is then judged per source class:
//! - v6guard enforcing: the kernel-verified ruleset is evaluated packet by packet
//!   (`crate::eval`, the same evaluator the property tests check against the kernel);
//! - no v6guard table (or a dormant one): IPv6 is as open as Docker 20.10 leaves it, and the
//!   audit says so per row;
//! - a table that differs from the plan, or Docker managing IPv6 itself: no verdict is
//!   guessed; the reasons are given and the exit code says "could not evaluate".
//!
//! Pure: everything read from the host comes in as [`Facts`].

pub mod probe;
mod reach;
mod text;

use std::collections::BTreeMap;
use std::net::Ipv6Addr;

use ipnet::Ipv6Net;
use serde::Serialize;

use crate::hazards::{Hazard, HazardKind};
use crate::listen::Listener;
use crate::plan::{self, Cause, PlanInputs};
use crate::snapshot::{Container, Network, Protocol, Snapshot};

pub use text::render_text;

/// Bumped when a field changes meaning or goes away (adding one does not).
pub const SCHEMA_VERSION: u32 = 1;

/// Exit codes of `v6guard audit`, documented in its `--help`.
pub mod exit {
    /// Nothing reachable from outside beyond what was published (or opened by policy).
    pub const CLEAN: u8 = 0;
    /// Some listener is reachable from outside although nobody published it.
    pub const BEYOND_PUBLISHED: u8 = 4;
    /// Some verdict could not be evaluated (table differs, Docker manages IPv6, sockets
    /// unreadable), or `--probe` disagreed with one.
    pub const COULD_NOT_EVALUATE: u8 = 5;
}

/// What the kernel holds, as far as the audit's verdicts are concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kernel {
    /// v6guard's tables hold the plan: verdicts come from evaluating it.
    Enforced,
    /// No v6guard table filters (missing or dormant): IPv6 is open, Docker 20.10's gap.
    Open(Vec<String>),
    /// v6guard's tables exist but differ from the plan (edited, another plan).
    Differs(Vec<String>),
    /// Docker (or another tool) manages IPv6; v6guard stands down.
    StoodDown(String),
    /// Not checked: a saved snapshot of another host; the plan is evaluated as if enforced.
    Unchecked,
}

/// What a container listens on, as read from its network namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listening {
    Sockets(Vec<Listener>),
    /// Could not be read (the reason); its rows cannot say whether anything listens.
    Unknown(String),
}

/// Everything the audit needs from the host besides the Snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Facts {
    pub kernel: Kernel,
    /// By container name. Containers absent here were not read (a saved snapshot).
    pub listening: BTreeMap<String, Listening>,
    /// Host hazards, each with its fix.
    pub hazards: Vec<Hazard>,
    /// Things that weaken what the rows say (rules only counted, and so on).
    pub warnings: Vec<String>,
}

/// Where a connection comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceClass {
    /// A host beyond the uplink (the LAN, the internet).
    Outside,
    /// A container on another Docker network.
    OtherNetwork,
    /// A container on the same network.
    SameNetwork,
    /// The Docker host itself (v6guard never filters the host's own connections).
    Host,
}

/// How a connection gets there.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Via {
    /// Routed to the container's own address.
    Direct,
    /// Translated by DNAT from a host address and port (`[::]:8080` means any address).
    Dnat { host: String },
    /// Served by docker-proxy on the host, which forwards over IPv4: the container sees the
    /// proxy, not the client.
    DockerProxy { host: String },
}

/// One (container, address, protocol, port) row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Row {
    pub container: String,
    pub network: String,
    pub address: Ipv6Addr,
    pub protocol: Protocol,
    pub port: u16,
    /// Something listens there. `false`: published, nothing listening; `null`: unknown.
    pub listening: Option<bool>,
    /// Who can open a connection to it; empty when nobody can, or when not evaluated.
    pub reachable_from: Vec<SourceClass>,
    /// Outside sources are limited to these prefixes (policy `allow_from`); `null`: any.
    pub outside_sources: Option<Vec<Ipv6Net>>,
    /// Reachable from outside on the container's own address, not only through a host port
    /// (what `--probe` connects to).
    pub direct_from_outside: bool,
    pub via: Vec<Via>,
    /// Docker publishes it over IPv6, or a policy `expose` opens it.
    pub published: bool,
    pub why: String,
    /// Reachable from outside although not published: the finding that matters.
    pub beyond_published: bool,
}

/// A container the rows say nothing about, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Note {
    pub container: String,
    pub note: String,
}

/// `enforcement` in the JSON: a stable object whatever the state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Enforcement {
    pub state: &'static str,
    pub reasons: Vec<String>,
}

/// The whole audit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    pub schema_version: u32,
    pub enforcement: Enforcement,
    pub rows: Vec<Row>,
    pub notes: Vec<Note>,
    pub hazards: Vec<Hazard>,
    pub warnings: Vec<String>,
    /// Some verdict could not be evaluated.
    pub could_not_evaluate: bool,
    /// `--probe`'s real connections, when asked for.
    pub probe: Option<probe::Probed>,
}

impl Report {
    /// The exit code: could-not-evaluate wins over an exposure, which wins over clean.
    pub fn exit_code(&self) -> u8 {
        let disagreed = self
            .probe
            .as_ref()
            .is_some_and(|p| !p.disagreements.is_empty());
        if self.could_not_evaluate || disagreed {
            exit::COULD_NOT_EVALUATE
        } else if self.rows.iter().any(|r| r.beyond_published) {
            exit::BEYOND_PUBLISHED
        } else {
            exit::CLEAN
        }
    }
}

/// Audit `snapshot` under `inputs` against what the host holds (`facts`). Pure.
pub fn audit(snapshot: &Snapshot, inputs: &PlanInputs, facts: &Facts) -> Report {
    let resolved = plan::resolve(snapshot, inputs);
    let ruleset = plan::plan(snapshot, inputs);
    let judge = reach::Judge::new(snapshot, &resolved, &ruleset, &facts.kernel);
    let opened = opened_ports(snapshot, &resolved);
    let mut rows = Vec::new();
    let mut notes = Vec::new();
    let mut unknown_sockets = false;
    for container in &snapshot.containers {
        if let Some(note) = shared_namespace(container) {
            notes.push(note);
            continue;
        }
        let listening = facts.listening.get(&container.name);
        if let Some(Listening::Unknown(why)) = listening {
            // Only a container with IPv6 addresses has listeners the rows would miss.
            unknown_sockets |= addresses(snapshot, container).next().is_some();
            notes.push(Note {
                container: container.name.clone(),
                note: format!("sockets not read: {why}"),
            });
        }
        for (network, address) in addresses(snapshot, container) {
            let ports = ports_at(container, address, listening, &opened);
            for (protocol, port) in ports {
                let listens = match listening {
                    Some(Listening::Sockets(sockets)) => {
                        Some(crate::listen::listens_on(sockets, protocol, port, address))
                    }
                    Some(Listening::Unknown(_)) | None => None,
                };
                let key = (container.name.as_str(), protocol, port);
                let open_why = opened.get(&key).filter(|(a, _)| *a == address);
                let verdict = judge.verdict(container, network, address, protocol, port);
                let published = open_why.is_some();
                let beyond_published =
                    !published && verdict.reachable_from.contains(&SourceClass::Outside);
                rows.push(Row {
                    container: container.name.clone(),
                    network: network.name.clone(),
                    address,
                    protocol,
                    port,
                    listening: listens,
                    why: why(open_why.map(|(_, w)| w.as_str()), &verdict, listens),
                    reachable_from: verdict.reachable_from,
                    outside_sources: verdict.outside_sources,
                    direct_from_outside: verdict.outside_direct,
                    via: verdict.via,
                    published,
                    beyond_published,
                });
            }
        }
    }
    // Docker's own IPv6 firewalling (or docker-ipv6nat's) translates and accepts in ways the
    // plan does not model: no verdict is trusted. Another tool's forward chain can only drop
    // more (nftables' drop is final, its accept is not): "closed" stays true, "reachable" is
    // an upper bound, which the warnings say.
    let another_tool = facts.hazards.iter().any(|h| {
        matches!(
            h.kind,
            HazardKind::DockerIp6tables
                | HazardKind::DockerIpv6nat
                | HazardKind::LegacyIp6tables
                | HazardKind::DockerNftables
        )
    });
    Report {
        schema_version: SCHEMA_VERSION,
        enforcement: enforcement(&facts.kernel),
        rows,
        notes,
        hazards: facts.hazards.clone(),
        warnings: warnings(snapshot, &resolved, facts),
        could_not_evaluate: !judge.evaluates() || unknown_sockets || another_tool,
        probe: None,
    }
}

fn enforcement(kernel: &Kernel) -> Enforcement {
    let (state, reasons) = match kernel {
        Kernel::Enforced => ("enforced", Vec::new()),
        Kernel::Open(reasons) | Kernel::Differs(reasons) => ("not_enforced", reasons.clone()),
        Kernel::StoodDown(reason) => ("stood_down", vec![reason.clone()]),
        Kernel::Unchecked => (
            "unchecked",
            vec!["a saved snapshot: the plan is evaluated as if enforced".to_string()],
        ),
    };
    Enforcement { state, reasons }
}

/// A container without a network namespace of its own: what to say instead of rows.
fn shared_namespace(container: &Container) -> Option<Note> {
    let note = if container.shares_host_network() {
        "host network: its sockets are the host's own, reachable as the host's services are; \
         no v6guard rule stands between them and the outside"
            .to_string()
    } else {
        let other = container.shares_network_of()?;
        format!("shares the network namespace of container {other}: see its rows")
    };
    Some(Note {
        container: container.name.clone(),
        note,
    })
}

/// The container's IPv6 addresses, with their networks.
fn addresses<'a>(
    snapshot: &'a Snapshot,
    container: &'a Container,
) -> impl Iterator<Item = (&'a Network, Ipv6Addr)> + 'a {
    container
        .endpoints
        .iter()
        .filter_map(|e| Some((snapshot.network_by_id(&e.network_id)?, e.ipv6?)))
}

/// Ports Docker publishes over IPv6 or a policy opens, by (container, protocol, port): the
/// address they are opened on and why.
type Opened<'a> = BTreeMap<(&'a str, Protocol, u16), (Ipv6Addr, String)>;

fn opened_ports<'a>(snapshot: &'a Snapshot, resolved: &'a plan::Resolved) -> Opened<'a> {
    let mut opened = Opened::new();
    for exposure in plan::exposures(snapshot, resolved) {
        let why = match exposure.cause {
            Cause::Published(_) => "published",
            Cause::Exposed => "policy expose",
        };
        opened
            .entry((
                exposure.container.name.as_str(),
                exposure.protocol,
                exposure.port,
            ))
            .or_insert((exposure.address, why.to_string()));
    }
    opened
}

/// The ports worth a row at `address`: every listener reachable there over IPv6, and every
/// port opened there (published) even with nothing listening.
fn ports_at(
    container: &Container,
    address: Ipv6Addr,
    listening: Option<&Listening>,
    opened: &Opened,
) -> Vec<(Protocol, u16)> {
    let mut ports: Vec<(Protocol, u16)> = match listening {
        Some(Listening::Sockets(sockets)) => sockets
            .iter()
            .filter(|l| l.reachable_on(address) && !address.is_loopback())
            .map(|l| (l.protocol, l.port))
            .collect(),
        Some(Listening::Unknown(_)) | None => Vec::new(),
    };
    ports.extend(
        opened
            .iter()
            .filter(|((name, _, _), (at, _))| *name == container.name && *at == address)
            .map(|((_, protocol, port), _)| (*protocol, *port)),
    );
    ports.sort();
    ports.dedup();
    ports
}

/// Why a row is what it is, in words.
fn why(opened: Option<&str>, verdict: &reach::Verdict, listens: Option<bool>) -> String {
    let mut parts = Vec::new();
    match opened {
        Some(reason) => parts.push(reason.to_string()),
        None => parts.push("not published".to_string()),
    }
    parts.push(verdict.because.clone());
    if listens == Some(false) {
        parts.push("nothing listens".to_string());
    }
    parts.join("; ")
}

/// The facts' warnings, and gateway modes no row can describe: a nat-unprotected network
/// opens every port of its containers' addresses, listening now or later.
fn warnings(snapshot: &Snapshot, resolved: &plan::Resolved, facts: &Facts) -> Vec<String> {
    let mut out = facts.warnings.clone();
    if facts
        .hazards
        .iter()
        .any(|h| h.kind == HazardKind::ForeignForwardChain)
    {
        out.push(
            "another tool has a base chain on the IPv6 forward hook (see the hazards): what \
             the rows call reachable may be dropped there; what they call closed is closed"
                .to_string(),
        );
    }
    out.extend(
        snapshot
            .networks
            .iter()
            .filter(|n| !n.internal && resolved.network(n).reach().unprotected())
            .map(|n| {
                format!(
                    "network {} is in gateway mode nat-unprotected: EVERY port of its \
                     containers' IPv6 addresses is reachable from outside",
                    n.name
                )
            }),
    );
    out
}

#[cfg(test)]
mod tests;
