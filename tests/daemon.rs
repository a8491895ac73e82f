//! `v6guard daemon` against the real thing: a real dockerd, real nftables, an outside client
//! in its own namespace. The daemon runs as a child process (killed on drop) with its own
//! state file, which the tests read for counters and readiness.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use common::*;

const READY: Duration = Duration::from_secs(20);
const OUTSIDE: &str = "v6gt-dmn-out";

/// A `v6guard daemon` child process, killed (SIGKILL) on drop if still running.
struct Daemon {
    child: Option<Child>,
    name: String,
    state_file: PathBuf,
    log_file: PathBuf,
}

impl Daemon {
    fn start(name: &str, extra: &[&str]) -> Daemon {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
        let state_file = dir.join(format!("daemon-{name}.json"));
        let log_file = dir.join(format!("daemon-{name}.log"));
        let _ = std::fs::remove_file(&state_file);
        let log = std::fs::File::create(&log_file).expect("create the daemon log");
        let mut args = vec![
            "daemon".to_string(),
            "--state-file".to_string(),
            state_file.display().to_string(),
        ];
        args.extend(extra.iter().map(|a| a.to_string()));
        let child = Command::new(v6guard_bin())
            .args(&args)
            .env("V6GUARD_LOG", "info,v6guard=debug")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start v6guard daemon");
        let daemon = Daemon {
            child: Some(child),
            name: name.to_string(),
            state_file,
            log_file,
        };
        daemon.wait_ready();
        daemon
    }

    fn pid(&self) -> i32 {
        self.child.as_ref().map_or(0, |c| c.id() as i32)
    }

    /// The state file, once the daemon has written it.
    fn state(&self) -> serde_json::Value {
        std::fs::read_to_string(&self.state_file)
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or(serde_json::Value::Null)
    }

    fn total(&self, counter: &str) -> u64 {
        self.state()["totals"][counter].as_u64().unwrap_or(0)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log_file).unwrap_or_default()
    }

    fn wait_ready(&self) {
        let ready = eventually(READY, || {
            let state = self.state();
            state["docker"]["connected"] == true
                && matches!(
                    state["last_reconcile"]["result"].as_str(),
                    Some("applied" | "unchanged")
                )
        });
        assert!(ready, "daemon {} not ready:\n{}", self.name, self.log());
    }

    fn signal(&self, signal: libc::c_int) {
        // SAFETY: signalling our own child process.
        unsafe { libc::kill(self.pid(), signal) };
    }

    /// Wait up to `timeout` for the daemon to exit.
    fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let child = self.child.as_mut()?;
        let start = Instant::now();
        while start.elapsed() < timeout {
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                return Some(status);
            }
            sleep(Duration::from_millis(5));
        }
        None
    }

    fn running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Makes sure the lab dockerd runs again when a test that restarts it ends, pass or fail.
struct DockerdBack;

impl Drop for DockerdBack {
    fn drop(&mut self) {
        let lib = repo_root().join("scripts/lib.sh");
        let _ = run(
            "bash",
            &["-c", &format!(". {} && v6g_ensure_dockerd", lib.display())],
        );
    }
}

/// Whether the kernel's published set holds `address . tcp . port`.
fn published(address: &str, port: u16) -> bool {
    let out = run("nft", &["list", "set", "ip6", "v6guard", "published"]);
    let text = String::from_utf8_lossy(&out.stdout);
    let element = format!("{address} . tcp . {port}");
    text.split([',', '{', '}', '\n'])
        .any(|e| e.trim() == element)
}

/// Poll until `probe` holds; returns how long it took, or `None` after `timeout`.
fn time_until(timeout: Duration, mut probe: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if probe() {
            return Some(start.elapsed());
        }
        sleep(Duration::from_millis(1));
    }
    None
}

fn http_get(addr: &str, path: &str) -> String {
    let mut stream = TcpStream::connect(addr).expect("connect to the metrics endpoint");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    write!(stream, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").expect("send");
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    response
}

/// Containers and networks created after the daemon started are enforced: published port
/// open from outside, unpublished closed; a new network with ICC off blocks ICC. Prints the
/// time from `docker run` returning to the kernel holding the container's element. Also
/// checks `v6guard status` and the metrics endpoint.
#[test]
fn daemon_enforces_what_starts_after_it() {
    let Some(_lock) = system_lock() else { return };
    let _table = TableGuard::clean();
    let outside = Outside::up(OUTSIDE);
    let net = Network::create("v6gt-dmn-pub", "fd76:6700:0:50::/64", &[]);
    let daemon = Daemon::start("enforce", &["--metrics-listen", "127.0.0.1:19576"]);

    let started = Instant::now();
    let web = Container::web("v6gt-dmn-web", &net.name, &["-p", "18400:80"]);
    let run_returned = started.elapsed();
    let web_v6 = web.ipv6(&net.name);
    let enforced = time_until(Duration::from_secs(5), || published(&web_v6, 80))
        .expect("the new container's published port is enforced");
    println!(
        "docker run took {} ms; from its return to the kernel holding the rule: {:.1} ms \
         (daemon's own event-to-enforced: {} ms)",
        run_returned.as_millis(),
        enforced.as_secs_f64() * 1e3,
        daemon.state()["last_reconcile"]["latency_ms"]
    );
    let neighbour = Container::web("v6gt-dmn-nbr", &net.name, &[]);
    assert!(
        eventually(READY, || neighbour.connects(&web_v6, 81)),
        "port 81 serves (ICC on)"
    );
    assert!(
        eventually(READY, || outside.connects(&web_v6, 80)),
        "published port open from outside"
    );
    assert!(!outside.connects(&web_v6, 81), "unpublished port closed");

    // A network created now, with ICC off and its own bridge name (not covered by br-*).
    let icc = Network::create(
        "v6gt-dmn-icc",
        "fd76:6700:0:51::/64",
        &[
            "com.docker.network.bridge.enable_icc=false",
            "com.docker.network.bridge.name=v6gtdmnicc0",
        ],
    );
    let a = Container::web("v6gt-dmn-icc-a", &icc.name, &["-p", "18401:80"]);
    let b = Container::web("v6gt-dmn-icc-b", &icc.name, &[]);
    let a_v6 = a.ipv6(&icc.name);
    assert!(
        eventually(READY, || outside.connects(&a_v6, 80)),
        "published port on the new network open from outside (so `a` is up)"
    );
    assert!(
        !b.connects(&a_v6, 80),
        "ICC off on the new network blocks IPv6"
    );

    let status = v6guard(&[
        "status",
        "--state-file",
        &daemon.state_file.display().to_string(),
    ]);
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(status.status.success(), "{text}");
    assert!(
        text.contains("running") && text.contains("last reconcile"),
        "{text}"
    );
    let metrics = http_get("127.0.0.1:19576", "/metrics");
    assert!(metrics.starts_with("HTTP/1.1 200"), "{metrics}");
    assert!(metrics.contains("v6guard_reconciles_total"), "{metrics}");
    assert!(
        metrics.contains("v6guard_event_to_enforced_seconds_bucket"),
        "{metrics}"
    );
}

/// dockerd restarts under the daemon: the rules stay, the daemon reconnects and resyncs, and
/// containers started afterwards are enforced.
#[test]
fn daemon_survives_a_dockerd_restart() {
    let Some(_lock) = system_lock() else { return };
    let _table = TableGuard::clean();
    let outside = Outside::up(OUTSIDE);
    let net = Network::create("v6gt-dmn-rst", "fd76:6700:0:53::/64", &[]);
    let daemon = Daemon::start("restart", &[]);
    let _back = DockerdBack;

    lib_sh("v6g_stop_dockerd");
    assert!(
        eventually(READY, || daemon.state()["docker"]["connected"] == false),
        "the daemon notices Docker went away:\n{}",
        daemon.log()
    );
    assert!(
        list_table(None).is_some(),
        "rules stay in place while Docker is down"
    );
    lib_sh("v6g_ensure_dockerd");
    daemon.wait_ready();
    assert!(
        eventually(READY, || daemon.total("docker_reconnects") >= 1),
        "reconnected:\n{}",
        daemon.log()
    );

    let web = Container::web("v6gt-dmn-rst-web", &net.name, &["-p", "18402:80"]);
    let web_v6 = web.ipv6(&net.name);
    assert!(
        eventually(READY, || outside.connects(&web_v6, 80)),
        "a container started after the restart is published:\n{}",
        daemon.log()
    );
    assert!(
        !outside.connects(&web_v6, 81),
        "and its unpublished port closed"
    );
}

/// Someone deletes the table by hand: it comes back within seconds, loudly.
#[test]
fn a_deleted_table_comes_back() {
    let Some(_lock) = system_lock() else { return };
    let _table = TableGuard::clean();
    let daemon = Daemon::start("drift", &[]);
    let before = list_table(None).expect("table installed");

    run_ok("nft", &["delete", "table", "ip6", "v6guard"]);
    let restored = time_until(Duration::from_secs(5), || list_table(None).is_some())
        .expect("the table comes back");
    println!(
        "table restored {:.1} ms after `nft delete table`",
        restored.as_secs_f64() * 1e3
    );
    assert_eq!(
        normalize_listing(&list_table(None).expect("table")),
        normalize_listing(&before),
        "restored exactly"
    );
    assert!(
        eventually(READY, || daemon.log().contains("DRIFT")),
        "logged loudly:\n{}",
        daemon.log()
    );
    assert!(daemon.total("drift_restores") >= 1);
}

/// SIGHUP with a broken daemon.json keeps the old rules and names the file and line; a fixed
/// file is picked up by the next SIGHUP.
#[test]
fn sighup_with_broken_settings_keeps_the_rules() {
    let Some(_lock) = system_lock() else { return };
    let _table = TableGuard::clean();
    let good = std::fs::read_to_string("/run/v6guard-lab/daemon.json").expect("lab daemon.json");
    let json = temp_file("sighup-daemon.json", &good);
    let json_arg = json.display().to_string();
    let mut daemon = Daemon::start("sighup", &["--daemon-json", &json_arg]);
    let before = list_table(None).expect("table installed");
    let errors = daemon.total("errors");

    std::fs::write(&json, "{\n  \"icc\": false,,\n}\n").expect("break daemon.json");
    daemon.signal(libc::SIGHUP);
    assert!(
        eventually(READY, || daemon.total("errors") > errors),
        "the reload fails:\n{}",
        daemon.log()
    );
    assert!(
        daemon.log().contains(&format!("{json_arg}:2:")),
        "the error names file:line:\n{}",
        daemon.log()
    );
    assert!(daemon.running(), "still running");
    assert_eq!(
        normalize_listing(&list_table(None).expect("table")),
        normalize_listing(&before),
        "old rules kept"
    );

    std::fs::write(&json, &good).expect("fix daemon.json");
    daemon.signal(libc::SIGHUP);
    assert!(
        eventually(READY, || daemon.state()["last_reconcile"]["result"]
            != "error"),
        "a fixed file is picked up:\n{}",
        daemon.log()
    );
}

/// SIGHUP with a broken policy file keeps the old rules and names file, line and key; the fixed
/// policy is applied on the next SIGHUP.
#[test]
fn sighup_with_a_broken_policy_keeps_the_rules() {
    let Some(_lock) = system_lock() else { return };
    let _table = TableGuard::clean();
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("sighup-policies");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("policy dir");
    let file = dir.join("10-sighup.yaml");
    std::fs::write(&file, "networks:\n  bridge:\n    icc: false\n").expect("policy");
    let dir_arg = dir.display().to_string();
    let mut daemon = Daemon::start("sighup-policy", &["--policies-dir", &dir_arg]);
    let before = list_table(None).expect("table installed");

    std::fs::write(&file, "networks:\n  bridge:\n    iccc: true\n").expect("break the policy");
    daemon.signal(libc::SIGHUP);
    assert!(
        eventually(READY, || daemon.log().contains("reload failed")),
        "the reload fails:\n{}",
        daemon.log()
    );
    let log = daemon.log();
    assert!(
        log.contains("10-sighup.yaml:3:5") && log.contains("iccc"),
        "the error names file:line:column and the key:\n{log}"
    );
    assert!(daemon.running(), "still running");
    assert_eq!(
        normalize_listing(&list_table(None).expect("table")),
        normalize_listing(&before),
        "old rules kept"
    );

    std::fs::write(&file, "networks:\n  bridge:\n    icc: true\n").expect("fix the policy");
    daemon.signal(libc::SIGHUP);
    assert!(
        eventually(READY, || list_table(None)
            .is_some_and(|t| t.contains("icc on: network bridge"))),
        "the fixed policy is applied:\n{}",
        daemon.log()
    );
}

/// SIGTERM stops within a second, exit 0, rules left in place; `--cleanup-on-exit` removes them.
#[test]
fn sigterm_stops_cleanly() {
    let Some(_lock) = system_lock() else { return };
    let _table = TableGuard::clean();
    let mut daemon = Daemon::start("sigterm", &[]);
    let start = Instant::now();
    daemon.signal(libc::SIGTERM);
    let status = daemon.wait_exit(Duration::from_secs(1));
    let took = start.elapsed();
    println!("SIGTERM to exit: {:.1} ms", took.as_secs_f64() * 1e3);
    assert_eq!(status.and_then(|s| s.code()), Some(0), "{}", daemon.log());
    assert!(list_table(None).is_some(), "rules stay (fail-closed)");

    let mut daemon = Daemon::start("sigterm-cleanup", &["--cleanup-on-exit"]);
    daemon.signal(libc::SIGINT);
    let status = daemon.wait_exit(Duration::from_secs(1));
    assert_eq!(status.and_then(|s| s.code()), Some(0), "{}", daemon.log());
    assert!(
        list_table(None).is_none(),
        "--cleanup-on-exit removes the table"
    );
}

/// Upper bound on transactions for a burst lasting `burst`: the pacer's ramp (25 ms doubling
/// to 2 s: 8 slots in the first 3.2 s) then one per 2 s, plus a few for stragglers.
fn burst_bound(burst: Duration) -> u64 {
    let after_ramp = burst.as_secs_f64() - 3.2;
    8 + after_ramp.max(0.0).div_euclid(2.0) as u64 + 3
}

/// 50 containers started at once converge in a bounded number of transactions.
#[test]
fn a_burst_of_50_starts_is_coalesced() {
    let Some(_lock) = system_lock() else { return };
    let _table = TableGuard::clean();
    let net = Network::create("v6gt-dmn-burst", "fd76:6700:0:52::/64", &[]);
    let daemon = Daemon::start("burst", &[]);
    let names: Vec<String> = (0..50).map(|i| format!("v6gt-dmn-b{i:02}")).collect();
    let _cleanup = BurstCleanup(names.clone());
    let before = daemon.total("transactions");

    let start = Instant::now();
    let runs: Vec<Child> = names
        .iter()
        .map(|name| {
            Command::new(DOCKER)
                .args([
                    "run",
                    "-d",
                    "--name",
                    name,
                    "--network",
                    &net.name,
                    "-p",
                    "80",
                ])
                .args([IMAGE, "sleep", "600"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("docker run")
        })
        .collect();
    for mut child in runs {
        assert!(child.wait().expect("docker run").success());
    }
    let burst = start.elapsed();
    let converged = time_until(Duration::from_secs(30), || {
        daemon.state()["last_reconcile"]["elements"].as_u64() >= Some(50)
            && daemon.total("transactions") > before
    });
    let elapsed = start.elapsed();
    assert!(converged.is_some(), "converged:\n{}", daemon.log());
    // Let stragglers land, then count.
    sleep(Duration::from_secs(3));
    let transactions = daemon.total("transactions") - before;
    let bound = burst_bound(burst);
    println!(
        "50 containers: docker runs took {:.1} s, converged after {:.1} s in {transactions} \
         transactions (bound {bound})",
        burst.as_secs_f64(),
        elapsed.as_secs_f64()
    );
    assert!(
        transactions <= bound && transactions < 50,
        "{transactions} transactions for 50 starts (bound {bound})"
    );
}

struct BurstCleanup(Vec<String>);

impl Drop for BurstCleanup {
    fn drop(&mut self) {
        let mut args = vec!["rm", "-f"];
        args.extend(self.0.iter().map(String::as_str));
        let _ = run(DOCKER, &args);
    }
}
