//! plan + render + apply at 1,000 containers with 10 published ports each.
//!
//! Run with `cargo bench --bench plan_render_apply` (or `scripts/bench.sh`, which also times
//! the release CLI and `nft -f`). See docs/performance.md for the numbers.
//!
//! - `pipeline_1000x10/{parse_snapshot_json,plan,render,build_batch,audit}` need no
//!   privileges.
//! - `apply_1000x10/*`, `apply_breakdown_1000x10/*`, `apply_scale/*` and `apply_10000x10/*`
//!   (100,000 published ports) install rulesets with
//!   netlink. They need root and run inside a throwaway network namespace (`ip netns add
//!   v6g-bench-<pid>`, entered with `setns(2)` before any netlink socket is opened), so the
//!   host's own ruleset is never touched. The namespace is deleted at the end, also on panic.
//!   Without root they are skipped.
//!
//! Environment:
//! - `V6G_BENCH_NETNS=NAME`: use this namespace name instead of `v6g-bench-<pid>` (it must not
//!   exist yet; the bench creates and deletes it). `scripts/bench.sh` sets it so its trap can
//!   remove the namespace if the bench is killed.
//! - `V6G_BENCH_SNAPSHOT_OUT=FILE`: also write the 1000x10 snapshot as JSON (the format of
//!   `v6guard snapshot`), for `v6guard render|apply --snapshot FILE`.

use std::fs::File;
use std::hint::black_box;
use std::net::Ipv6Addr;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::process::Command;
use std::time::Duration;

use criterion::{BatchSize, Criterion, SamplingMode, Throughput};

use v6guard::audit;
use v6guard::listen::Listener;
use v6guard::nft;
use v6guard::nft::render::render_script;
use v6guard::nft::write::{Session, build_batch, send_batch};
use v6guard::plan::{PlanInputs, plan};
use v6guard::ruleset::Ruleset;
use v6guard::snapshot::{Protocol, Snapshot};

mod support;
use support::bench_snapshot;

/// Published ports per container in every benchmark.
const PORTS_PER_CONTAINER: usize = 10;
/// The headline size: 1,000 containers x 10 published ports = 10,000 published ports.
const CONTAINERS: usize = 1_000;
/// Published ports in the scale group; containers = ports / 10.
const SCALE_PORTS: [usize; 4] = [100, 1_000, 10_000, 20_000];
/// The large host of issue 10: 10,000 containers x 10 published ports = 100,000.
const LARGE_CONTAINERS: usize = 10_000;

fn main() {
    let mut criterion = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(30)
        .nresamples(20_000)
        .configure_from_args();

    settle_malloc();
    let snapshot = bench_snapshot(CONTAINERS, PORTS_PER_CONTAINER);
    if let Some(path) = std::env::var_os("V6G_BENCH_SNAPSHOT_OUT") {
        let json = serde_json::to_string_pretty(&snapshot).expect("snapshot serialises");
        std::fs::write(&path, json + "\n").expect("write V6G_BENCH_SNAPSHOT_OUT");
        eprintln!("wrote the 1000x10 snapshot to {}", path.to_string_lossy());
    }

    bench_pipeline(&mut criterion, &snapshot);

    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!(
            "\nv6guard bench: not root, SKIPPING the apply benchmarks (they need CAP_NET_ADMIN \
             and a throwaway network namespace). Run as root to time apply."
        );
    } else {
        match ThrowawayNetns::enter() {
            Ok(netns) => {
                bench_apply(&mut criterion, &snapshot);
                bench_apply_breakdown(&mut criterion, &snapshot);
                bench_apply_scale(&mut criterion);
                bench_apply_large(&mut criterion);
                drop(netns);
            }
            Err(error) => eprintln!(
                "\nv6guard bench: cannot set up a throwaway network namespace ({error}); \
                 SKIPPING the apply benchmarks"
            ),
        }
    }

    criterion.final_summary();
}

/// Put glibc's allocator into the state every real v6guard process reaches early.
///
/// glibc raises its mmap and trim thresholds the first time a large mmapped block is freed.
/// Until then, each allocation over 128 KiB (the rendered text, the netlink batch) is a fresh
/// mmap and the heap top is trimmed back to the kernel, and build_batch and render run 1 ms
/// slower each at 1000x10. The CLI reaches the adapted state when it frees the snapshot file
/// it read; a bench process would not, and its numbers would depend on which benchmarks ran
/// first. One 4 MiB allocation, freed, settles it.
fn settle_malloc() {
    let block = vec![1u8; 4 << 20];
    drop(black_box(block));
}

/// parse_snapshot_json, plan, render and build_batch: pure CPU work, no privileges.
fn bench_pipeline(c: &mut Criterion, snapshot: &Snapshot) {
    let inputs = PlanInputs::default();
    let ruleset = plan(snapshot, &inputs);
    describe("pipeline_1000x10", snapshot, &ruleset);

    let json = serde_json::to_string_pretty(snapshot).expect("snapshot serialises");

    let mut group = c.benchmark_group("pipeline_1000x10");
    group.throughput(Throughput::Elements(ruleset.element_count() as u64));
    // What `--snapshot FILE` costs the CLI before planning (the daemon reads Docker instead).
    group.bench_function("parse_snapshot_json", |b| {
        b.iter(|| serde_json::from_str::<Snapshot>(black_box(&json)).expect("parse"))
    });
    group.bench_function("plan", |b| {
        b.iter(|| plan(black_box(snapshot), black_box(&inputs)))
    });
    group.bench_function("render", |b| b.iter(|| render_script(black_box(&ruleset))));
    group.bench_function("build_batch", |b| {
        b.iter(|| build_batch(black_box(&ruleset)).expect("build_batch"))
    });
    // The audit's own work for 1,000 containers (issue 9's goal: under 1 s without --probe):
    // each container listens on its 10 published ports and one more, enforced.
    let facts = audit_facts(snapshot);
    group.bench_function("audit", |b| {
        b.iter(|| audit::audit(black_box(snapshot), black_box(&inputs), black_box(&facts)))
    });
    group.finish();
}

/// Every container listening on `::` on its published container ports and on 9999.
fn audit_facts(snapshot: &Snapshot) -> audit::Facts {
    let listening = snapshot
        .containers
        .iter()
        .map(|c| {
            let ports = c.ports.iter().map(|b| b.container_port).chain([9999]);
            let sockets = ports
                .map(|port| Listener {
                    protocol: Protocol::Tcp,
                    port,
                    address: Ipv6Addr::UNSPECIFIED.into(),
                })
                .collect();
            (c.name.clone(), audit::Listening::Sockets(sockets))
        })
        .collect();
    audit::Facts {
        kernel: audit::Kernel::Enforced,
        listening,
        hazards: Vec::new(),
        warnings: Vec::new(),
    }
}

/// The 1000x10 ruleset installed into the throwaway namespace.
fn bench_apply(c: &mut Criterion, snapshot: &Snapshot) {
    let inputs = PlanInputs::default();
    let ruleset = plan(snapshot, &inputs);
    if !first_apply("apply_1000x10", &ruleset) {
        return;
    }
    let batch = build_batch(&ruleset).expect("build_batch");

    let mut group = c.benchmark_group("apply_1000x10");
    group.sampling_mode(SamplingMode::Flat);
    group.sample_size(20);
    group.throughput(Throughput::Elements(ruleset.element_count() as u64));
    // The kernel's side alone: a prebuilt batch replacing the table that is already there,
    // on a socket of its own (as the CLI: closing it waits for the kernel to free the old
    // table, an RCU grace period)...
    group.bench_function("send_batch", |b| {
        b.iter(|| send_batch(black_box(&batch)).expect("send_batch"))
    });
    // ... and on a kept socket (as the daemon): timed to the kernel's acknowledgement, when it
    // holds the new rules; the old table is freed in the background.
    let mut session = Session::open().expect("netlink socket");
    group.bench_function("send_batch_kept_socket", |b| {
        b.iter(|| session.send(black_box(&batch)).expect("send"))
    });
    group.bench_function("apply_kept_socket", |b| {
        b.iter(|| {
            let batch = build_batch(black_box(&ruleset)).expect("build_batch");
            session.send(&batch).expect("send")
        })
    });
    drop(session);
    // `nft::apply`: build_batch + send_batch, replacing the installed table (steady state:
    // every Docker event re-applies the whole ruleset over the previous one).
    group.bench_function("apply", |b| {
        b.iter(|| nft::apply(black_box(&ruleset)).expect("apply"))
    });
    // The same into a namespace without the table (first start); the removal is not timed.
    group.bench_function("apply_fresh", |b| {
        b.iter_batched(
            || {
                nft::cleanup().expect("cleanup in the bench namespace");
            },
            |()| nft::apply(black_box(&ruleset)).expect("apply"),
            BatchSize::PerIteration,
        )
    });
    // What v6guard does per Docker event, from snapshot to kernel.
    group.bench_function("plan_apply", |b| {
        b.iter(|| nft::apply(&plan(black_box(snapshot), &inputs)).expect("apply"))
    });
    group.finish();
}

/// Where the 1000x10 apply time goes: the same tables, chains and rules with no set or map
/// elements at all, then with the elements of one set or map only (each non-empty one in turn).
fn bench_apply_breakdown(c: &mut Criterion, snapshot: &Snapshot) {
    let full = plan(snapshot, &PlanInputs::default());
    let only = |keep: Option<&str>| {
        let mut ruleset = full.clone();
        for set in &mut ruleset.sets {
            if Some(set.name.as_str()) != keep {
                set.elements.clear();
            }
        }
        ruleset
    };
    let mut variants = vec![("no_elements".to_string(), only(None))];
    for set in full.sets.iter().filter(|s| !s.elements.is_empty()) {
        variants.push((format!("only_{}", set.name), only(Some(&set.name))));
    }

    let mut group = c.benchmark_group("apply_breakdown_1000x10");
    group.sampling_mode(SamplingMode::Flat);
    group.sample_size(20);
    for (name, ruleset) in &variants {
        if !first_apply(&format!("apply_breakdown_1000x10/{name}"), ruleset) {
            continue;
        }
        group.bench_function(name.as_str(), |b| {
            b.iter(|| nft::apply(black_box(ruleset)).expect("apply"))
        });
    }
    group.finish();
}

/// apply (build_batch + send_batch, replacing the table) at a growing number of published
/// ports: the cost grows with the number of set and map elements, the number of rules does not.
fn bench_apply_scale(c: &mut Criterion) {
    let inputs = PlanInputs::default();
    let mut group = c.benchmark_group("apply_scale");
    group.sampling_mode(SamplingMode::Flat);
    group.sample_size(20);
    for ports in SCALE_PORTS {
        let snapshot = bench_snapshot(ports / PORTS_PER_CONTAINER, PORTS_PER_CONTAINER);
        let ruleset = plan(&snapshot, &inputs);
        if !first_apply(&format!("apply_scale/{ports}"), &ruleset) {
            continue;
        }
        group.throughput(Throughput::Elements(ruleset.element_count() as u64));
        group.bench_function(ports.to_string(), |b| {
            b.iter(|| nft::apply(black_box(&ruleset)).expect("apply"))
        });
    }
    group.finish();
    // Leave the namespace empty before it is deleted.
    let _ = nft::cleanup();
}

/// The full apply at 10,000 containers x 10 published ports (issue 10's goal: under 250 ms
/// to the kernel's acknowledgement), split into v6guard's part (build_batch) and the kernel's
/// (send on a kept socket: sendmsg returns once the kernel has run the whole transaction,
/// then the acknowledgements are read). Replaces the installed table each time, like the
/// daemon's full replace. `plan` is timed too (what a full resync adds before the apply).
///
/// The kernel's part depends on two things outside v6guard's code: the sets' backend (v6guard
/// declares each hash set with a size, `NamedSet::capacity`, so the kernel uses its fixed-size
/// hash; without, its resizable one inserts ~3x slower), and whether any process on the host,
/// in any network namespace, listens on NFNLGRP_NFTABLES (`nft monitor`, a v6guard daemon's
/// drift monitor): then the kernel builds a notification per element at commit, which took
/// some 40% of the send in a profile here.
fn bench_apply_large(c: &mut Criterion) {
    let snapshot = bench_snapshot(LARGE_CONTAINERS, PORTS_PER_CONTAINER);
    let ruleset = plan(&snapshot, &PlanInputs::default());
    let label = format!("apply_{LARGE_CONTAINERS}x{PORTS_PER_CONTAINER}");
    describe(&label, &snapshot, &ruleset);
    if !first_apply(&label, &ruleset) {
        return;
    }
    let batch = build_batch(&ruleset).expect("build_batch");
    let mut session = Session::open().expect("netlink socket");
    let mut group = c.benchmark_group(&label);
    group.sampling_mode(SamplingMode::Flat);
    group.sample_size(10);
    group.throughput(Throughput::Elements(ruleset.element_count() as u64));
    group.bench_function("plan", |b| {
        b.iter(|| plan(black_box(&snapshot), &PlanInputs::default()))
    });
    group.bench_function("build_batch", |b| {
        b.iter(|| build_batch(black_box(&ruleset)).expect("build_batch"))
    });
    group.bench_function("send_batch_kept_socket", |b| {
        b.iter(|| session.send(black_box(&batch)).expect("send"))
    });
    group.bench_function("apply_kept_socket", |b| {
        b.iter(|| {
            let batch = build_batch(black_box(&ruleset)).expect("build_batch");
            session.send(&batch).expect("send")
        })
    });
    group.finish();
    drop(session);
    let _ = nft::cleanup();
}

/// Print the ruleset's shape and install it once, so that the timed applies replace an
/// existing table and a kernel rejection is reported (and the size skipped) instead of
/// panicking inside criterion.
fn first_apply(label: &str, ruleset: &Ruleset) -> bool {
    let batch_bytes: usize = build_batch(ruleset)
        .map(|b| b.iter().map(<[u8]>::len).sum())
        .unwrap_or(0);
    eprintln!(
        "{label}: {} rules, {} set/map elements ({}), netlink batch {} bytes",
        ruleset.rule_count(),
        ruleset.element_count(),
        set_sizes(ruleset),
        batch_bytes
    );
    if let Err(error) = nft::cleanup() {
        eprintln!("{label}: SKIPPED, cleanup failed: {error}");
        return false;
    }
    let installed = || -> Result<bool, nft::NftError> {
        Ok(nft::list_tables()?
            .iter()
            .any(|t| t.family == libc::NFPROTO_IPV6 as u32 && t.name == ruleset.table))
    };
    match nft::apply(ruleset) {
        Ok(()) => match installed() {
            Ok(true) => true,
            Ok(false) => {
                eprintln!(
                    "{label}: SKIPPED, apply returned Ok but table ip6 {} is missing",
                    ruleset.table
                );
                false
            }
            Err(error) => {
                eprintln!("{label}: SKIPPED, cannot list tables after apply: {error}");
                false
            }
        },
        Err(error) => {
            eprintln!("{label}: SKIPPED, apply failed: {error} ({error:?})");
            false
        }
    }
}

fn describe(label: &str, snapshot: &Snapshot, ruleset: &Ruleset) {
    eprintln!(
        "{label}: {} containers, {} networks, {} rules, {} set/map elements ({})",
        snapshot.containers.len(),
        snapshot.networks.len(),
        ruleset.rule_count(),
        ruleset.element_count(),
        set_sizes(ruleset)
    );
}

/// `published 10000, links 0, ...`
fn set_sizes(ruleset: &Ruleset) -> String {
    let sizes: Vec<String> = ruleset
        .sets
        .iter()
        .map(|set| format!("{} {}", set.name, set.elements.len()))
        .collect();
    sizes.join(", ")
}

/// A network namespace created for this run and entered by the calling thread (criterion runs
/// every benchmark on it). Dropping it moves the thread back to its original namespace and
/// deletes the throwaway one.
struct ThrowawayNetns {
    name: String,
    home: File,
}

impl ThrowawayNetns {
    fn enter() -> Result<Self, String> {
        let name = std::env::var("V6G_BENCH_NETNS")
            .unwrap_or_else(|_| format!("v6g-bench-{}", std::process::id()));
        let home = File::open("/proc/thread-self/ns/net")
            .map_err(|e| format!("open /proc/thread-self/ns/net: {e}"))?;
        let home_ino = home
            .metadata()
            .map_err(|e| format!("stat own netns: {e}"))?
            .ino();

        let status = Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .map_err(|e| format!("run `ip netns add {name}`: {e}"))?;
        if !status.success() {
            return Err(format!("`ip netns add {name}` failed ({status})"));
        }
        // From here on, Drop deletes the namespace whatever happens.
        let guard = ThrowawayNetns { name, home };

        let path = format!("/run/netns/{}", guard.name);
        let target = File::open(&path).map_err(|e| format!("open {path}: {e}"))?;
        // SAFETY: both are valid open fds; CLONE_NEWNET only changes this thread's namespace.
        if unsafe { libc::setns(target.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            return Err(format!(
                "setns({path}): {}",
                std::io::Error::last_os_error()
            ));
        }
        let now_ino = std::fs::metadata("/proc/thread-self/ns/net")
            .map_err(|e| format!("stat netns after setns: {e}"))?
            .ino();
        let target_ino = target.metadata().map_err(|e| e.to_string())?.ino();
        if now_ino == home_ino || now_ino != target_ino {
            return Err("setns did not move this thread into the new namespace".to_string());
        }
        eprintln!(
            "apply benchmarks run in the throwaway network namespace {}",
            guard.name
        );
        Ok(guard)
    }
}

impl Drop for ThrowawayNetns {
    fn drop(&mut self) {
        // SAFETY: `home` is an open namespace fd owned by self.
        if unsafe { libc::setns(self.home.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            eprintln!(
                "v6guard bench: could not return to the original network namespace: {}",
                std::io::Error::last_os_error()
            );
        }
        match Command::new("ip")
            .args(["netns", "del", &self.name])
            .status()
        {
            Ok(status) if status.success() => {}
            other => eprintln!(
                "v6guard bench: `ip netns del {}` failed ({other:?}); remove it by hand",
                self.name
            ),
        }
    }
}
