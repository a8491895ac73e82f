//! Daemon: event to enforced, with N running containers.
//!
//!     sudo V6G_BENCH_CONTAINERS=10000 cargo bench --bench daemon_latency
//!
//! `V6G_BENCH_CONTAINERS` (default 1000) containers run throughout; `ROUNDS` (default 2000)
//! events are measured per case.
//!
//! What one Docker event costs the daemon once it is received: update the Snapshot with the
//! re-read container, plan, and change the kernel (the netlink acknowledgement means the
//! kernel holds the new rules). Two engines in the same run: the incremental one the daemon
//! uses (`Reconciler::prepare` with the changed container, element changes from its
//! contribution alone) and the full plan it replaced (`plan()` of the whole host, diffed
//! against what was applied). Run against the real kernel in a private network namespace
//! (unshare), so the host's ruleset is never touched. A container "starts" (new address, 2
//! published ports) and "dies" in turn, N others running throughout.
//!
//! Output: lines starting with `#` are context; each measurement is one line
//! `result case=CASE containers=N n=SAMPLES p50_ms=X p90_ms=X p99_ms=X max_ms=X`, with CASE
//! one of `start`, `die` (incremental engine), `start-full-plan`, `die-full-plan`,
//! `full-replace`, `plan-only`, `docker-read`.
//!
//! The Docker side (re-reading one container with a filtered `/containers/json`) is measured
//! separately against the running dockerd, when there is one.
//!
//! Needs root (CAP_SYS_ADMIN for unshare, CAP_NET_ADMIN for nftables); without it, says so
//! and exits 0.

use std::time::{Duration, Instant};

use v6guard::daemon::inputs::PlanInputs;
use v6guard::daemon::reconcile::{self, Changed, Netlink, Reconciler, Transaction};
use v6guard::snapshot::{Container, Snapshot};

const NETWORK_ID: &str = "benchbenchbench0000";

fn main() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        println!("# daemon_latency: needs root (private network namespace, nftables); skipped");
        return;
    }
    // SAFETY: unshare affects only this process, which is single-threaded here.
    if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
        eprintln!(
            "daemon_latency: unshare(CLONE_NEWNET) failed: {}",
            std::io::Error::last_os_error()
        );
        std::process::exit(1);
    }
    let rounds: usize = env_number("ROUNDS").unwrap_or(2000);
    let running: usize = env_number("V6G_BENCH_CONTAINERS").unwrap_or(1000);
    let machine = machine();
    println!("# daemon: event to enforced ({machine})");

    let inputs = PlanInputs::default();
    let mut snapshot = base_snapshot();
    snapshot.containers = (0..running).map(container).collect();
    let mut reconciler = Reconciler::new(Netlink::default());
    reconciler.prepare(&snapshot, &inputs, Changed::Everything);
    let first = reconciler
        .enforce_prepared()
        .expect("first apply in the private namespace");
    println!(
        "# {running} running containers: {} rules, {} set elements; first full apply {:.2} ms",
        first.rules,
        first.elements,
        first.took.as_secs_f64() * 1e3
    );
    let out = Out { running };

    // The incremental engine, as the daemon runs it.
    let mut start = Vec::with_capacity(rounds);
    let mut die = Vec::with_capacity(rounds);
    for round in 0..rounds {
        let newcomer = container(running + round % 50_000);
        let id = vec![newcomer.id.clone()];
        let t = Instant::now();
        reconciler.replace_containers(&mut snapshot, &id, vec![newcomer]);
        reconciler.prepare(&snapshot, &inputs, Changed::Containers(&id));
        let enforced = reconciler.enforce_prepared().expect("start");
        start.push(t.elapsed());
        assert!(matches!(
            enforced.transaction,
            Transaction::Elements { removed: 0, .. }
        ));

        let t = Instant::now();
        reconciler.replace_containers(&mut snapshot, &id, vec![]);
        reconciler.prepare(&snapshot, &inputs, Changed::Containers(&id));
        let enforced = reconciler.enforce_prepared().expect("die");
        die.push(t.elapsed());
        assert!(matches!(
            enforced.transaction,
            Transaction::Elements { added: 0, .. }
        ));
    }
    out.report("start", &mut start);
    out.report("die", &mut die);
    let problems = reconciler.verify().expect("verify");
    assert!(
        problems.is_empty(),
        "kernel differs from the applied ruleset: {problems:?}"
    );
    println!("# check: after the incremental rounds the kernel holds exactly plan() (verify)");

    // The full plan of the whole host per event, diffed against what was applied.
    let mut start = Vec::new();
    let mut die = Vec::new();
    for round in 0..rounds.min(500) {
        let newcomer = container(running + round % 50_000);
        let id = vec![newcomer.id.clone()];
        let t = Instant::now();
        reconcile::replace_containers(&mut snapshot, &id, vec![newcomer]);
        let enforced = reconciler.enforce(inputs.plan(&snapshot)).expect("start");
        start.push(t.elapsed());
        assert!(matches!(
            enforced.transaction,
            Transaction::Elements { removed: 0, .. }
        ));

        let t = Instant::now();
        reconcile::replace_containers(&mut snapshot, &id, vec![]);
        let enforced = reconciler.enforce(inputs.plan(&snapshot)).expect("die");
        die.push(t.elapsed());
        assert!(matches!(
            enforced.transaction,
            Transaction::Elements { added: 0, .. }
        ));
    }
    out.report("start-full-plan", &mut start);
    out.report("die-full-plan", &mut die);

    let mut full = Vec::new();
    for _ in 0..rounds.min(200) {
        let t = Instant::now();
        reconciler.forget();
        reconciler.enforce(inputs.plan(&snapshot)).expect("full");
        full.push(t.elapsed());
    }
    out.report("full-replace", &mut full);

    let mut plan_only = Vec::new();
    for _ in 0..rounds.min(500) {
        let t = Instant::now();
        std::hint::black_box(inputs.plan(&snapshot));
        plan_only.push(t.elapsed());
    }
    out.report("plan-only", &mut plan_only);

    let problems = reconciler.verify().expect("verify");
    assert!(
        problems.is_empty(),
        "kernel differs from the applied ruleset: {problems:?}"
    );
    println!("# check: the kernel holds exactly the applied ruleset (verify: no differences)");

    docker_read(&out, rounds.min(300));
}

fn env_number(name: &str) -> Option<usize> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

/// Re-read one container through the running dockerd (a filtered `/containers/json`), as the
/// daemon does on each event. The namespace change does not affect the Unix socket.
fn docker_read(out: &Out, rounds: usize) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(async {
        let Ok(reader) =
            v6guard::read::DockerReader::connect(v6guard::docker::DEFAULT_SOCKET, None).await
        else {
            println!("# no dockerd reachable: Docker read not measured");
            return;
        };
        let running = reader.all_containers().await.map(|c| c.len()).unwrap_or(0);
        let Ok(all) = reader.all_containers().await else {
            return;
        };
        let id = all
            .first()
            .map(|c| c.id.clone())
            .unwrap_or_else(|| "0".repeat(64));
        let mut reads = Vec::new();
        for _ in 0..rounds {
            let t = Instant::now();
            let _ = reader.containers(std::slice::from_ref(&id)).await;
            reads.push(t.elapsed());
        }
        println!("# docker-read: one container re-read, {running} running in dockerd");
        out.report("docker-read", &mut reads);
    });
}

/// Where results go: one `result` line per case.
struct Out {
    running: usize,
}

impl Out {
    fn report(&self, case: &str, samples: &mut [Duration]) {
        samples.sort();
        let at = |q: f64| {
            let i = ((samples.len() as f64 - 1.0) * q).round() as usize;
            samples[i].as_secs_f64() * 1e3
        };
        println!(
            "result case={case} containers={} n={} p50_ms={:.3} p90_ms={:.3} p99_ms={:.3} max_ms={:.3}",
            self.running,
            samples.len(),
            at(0.5),
            at(0.9),
            at(0.99),
            at(1.0),
        );
    }
}

fn base_snapshot() -> Snapshot {
    let mut snapshot: serde_json::Value =
        serde_json::from_str(include_str!("../tests/fixtures/lab-snapshot.json")).expect("fixture");
    snapshot["networks"] = serde_json::json!([{
        "id": NETWORK_ID, "name": "bench", "bridge": "br-benchbench00",
        "ipv6_enabled": true, "ipv6_subnets": ["fd76:6700:0:5f::/64"],
        "icc": false, "masquerade": true, "internal": false
    }]);
    snapshot["containers"] = serde_json::json!([]);
    serde_json::from_value(snapshot).expect("snapshot")
}

/// Container `i`: its own address, ports 80/tcp and 53/udp published on `::`.
fn container(i: usize) -> Container {
    serde_json::from_value(serde_json::json!({
        "id": format!("{i:064x}"), "name": format!("c{i:06}"), "labels": {},
        "endpoints": [{"network_id": NETWORK_ID, "network_name": "bench", "ipv4": null,
                       "ipv6": format!("fd76:6700:0:5f::{:x}:{:x}", (i + 2) >> 16, (i + 2) & 0xffff)}],
        "ports": [
            {"protocol": "tcp", "container_port": 80, "host_ip": "::", "host_port": 20000 + i % 40000},
            {"protocol": "udp", "container_port": 53, "host_ip": "::", "host_port": 20000 + i % 40000}
        ]
    }))
    .expect("container")
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_default();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!(
        "{} CPUs, {cpu}, kernel {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        kernel.trim()
    )
}
