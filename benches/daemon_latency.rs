//! Daemon: event to enforced, with 1,000 running containers.
//!
//!     sudo cargo bench --bench daemon_latency            (ROUNDS=2000 by default)
//!
//! What one Docker event costs the daemon once it is received: update the Snapshot with the
//! re-read container, plan the whole ruleset, diff it against what was applied, and change the
//! kernel (the netlink acknowledgement means the kernel holds the new rules). Run against the
//! real kernel in a private network namespace (unshare), so the host's ruleset is never
//! touched. A container "starts" (new address, 2 published ports) and "dies" in turn, 1,000
//! others running throughout.
//!
//! The Docker side (re-reading one container with a filtered `/containers/json`) is measured
//! separately against the running dockerd, when there is one.
//!
//! Needs root (CAP_SYS_ADMIN for unshare, CAP_NET_ADMIN for nftables); without it, says so
//! and exits 0.

use std::time::{Duration, Instant};

use v6guard::daemon::inputs::PlanInputs;
use v6guard::daemon::reconcile::{self, Netlink, Reconciler, Transaction};
use v6guard::snapshot::{Container, Snapshot};

const RUNNING: usize = 1000;
const NETWORK_ID: &str = "benchbenchbench0000";

fn main() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        println!("daemon_latency: needs root (private network namespace, nftables); skipped");
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
    let rounds: usize = std::env::var("ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(2000);
    let machine = machine();
    println!("== daemon: event to enforced ({machine})");

    let inputs = PlanInputs::default();
    let mut snapshot = base_snapshot();
    snapshot.containers = (0..RUNNING).map(container).collect();
    let mut reconciler = Reconciler::new(Netlink::default());
    let first = reconciler
        .enforce(inputs.plan(&snapshot))
        .expect("first apply in the private namespace");
    println!(
        "{RUNNING} running containers: {} rules, {} set elements; first full apply {:.2} ms",
        first.rules,
        first.elements,
        first.took.as_secs_f64() * 1e3
    );

    let mut start = Vec::with_capacity(rounds);
    let mut die = Vec::with_capacity(rounds);
    for round in 0..rounds {
        let newcomer = container(RUNNING + round % 50_000);
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
    report("container start -> enforced (element update)", &mut start);
    report("container die -> enforced (element update)", &mut die);

    let mut full = Vec::new();
    for _ in 0..rounds.min(200) {
        let t = Instant::now();
        reconciler.forget();
        reconciler.enforce(inputs.plan(&snapshot)).expect("full");
        full.push(t.elapsed());
    }
    report("full replace (fallback; network changes)", &mut full);

    let mut plan_only = Vec::new();
    for _ in 0..rounds.min(500) {
        let t = Instant::now();
        std::hint::black_box(inputs.plan(&snapshot));
        plan_only.push(t.elapsed());
    }
    report("  of which plan() alone", &mut plan_only);

    let problems = reconciler.verify().expect("verify");
    assert!(
        problems.is_empty(),
        "kernel differs from the applied ruleset: {problems:?}"
    );
    println!("check: the kernel holds exactly the applied ruleset (verify: no differences)");

    docker_read(rounds.min(300));
}

/// Re-read one container through the running dockerd (a filtered `/containers/json`), as the
/// daemon does on each event. The namespace change does not affect the Unix socket.
fn docker_read(rounds: usize) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(async {
        let Ok(reader) =
            v6guard::read::DockerReader::connect(v6guard::docker::DEFAULT_SOCKET, None).await
        else {
            println!("no dockerd reachable: Docker read not measured");
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
        report(
            &format!("docker: re-read one container ({running} running in dockerd)"),
            &mut reads,
        );
    });
}

fn report(label: &str, samples: &mut [Duration]) {
    samples.sort();
    let at = |q: f64| {
        let i = ((samples.len() as f64 - 1.0) * q).round() as usize;
        samples[i].as_secs_f64() * 1e3
    };
    println!(
        "{label:52} p50 {:7.3} ms  p90 {:7.3} ms  p99 {:7.3} ms  max {:7.3} ms  (n={})",
        at(0.5),
        at(0.9),
        at(0.99),
        at(1.0),
        samples.len()
    );
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
