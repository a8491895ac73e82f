//! `v6guard daemon` against the real thing: a real dockerd, real nftables, an outside client
//! in its own namespace. The daemon runs as a child process (killed on drop) with its own
//! state file, which the tests read for counters and readiness.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use common::*;

const READY: Duration = Duration::from_secs(30);
const OUTSIDE: &str = "v6gt-dmn-out";
/// A Docker endpoint nothing listens on.
const NO_DOCKER: &str = "unix:///nonexistent.sock";

/// A `v6guard daemon` child process, killed (SIGKILL) on drop if still running.
struct Daemon {
    child: Option<Child>,
    name: String,
    state_file: PathBuf,
    log_file: PathBuf,
}

impl Daemon {
    /// Start a daemon and wait until it has read Docker and applied its ruleset.
    fn start(name: &str, extra: &[&str]) -> Daemon {
        let daemon = Daemon::spawn(name, extra, &[]);
        daemon.wait_ready();
        daemon
    }

    /// Start a daemon with extra environment variables; do not wait for anything.
    fn spawn(name: &str, extra: &[&str], env: &[(&str, &str)]) -> Daemon {
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
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start v6guard daemon");
        Daemon {
            child: Some(child),
            name: name.to_string(),
            state_file,
            log_file,
        }
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

    /// `v6guard reload` against this daemon: its exit code and stderr.
    fn reload(&self) -> (Option<i32>, String) {
        let out = Command::new(v6guard_bin())
            .args(["reload", "--timeout", "30", "--state-file"])
            .arg(&self.state_file)
            .output()
            .expect("run v6guard reload");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Send `signal`; returns the moment just before it was sent.
    fn signal(&self, signal: libc::c_int) -> Instant {
        let sent = Instant::now();
        // SAFETY: signalling our own child process.
        let result = unsafe { libc::kill(self.pid(), signal) };
        assert_eq!(result, 0, "kill {} {signal}", self.pid());
        sent
    }

    /// Wait until `deadline` for the daemon to exit: its exit status and when the exit was
    /// seen (polled every millisecond).
    fn wait_exit(&mut self, deadline: Instant) -> Option<(ExitStatus, Instant)> {
        let child = self.child.as_mut()?;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                let seen = Instant::now();
                self.child = None;
                return Some((status, seen));
            }
            if Instant::now() >= deadline {
                return None;
            }
            sleep(Duration::from_millis(1));
        }
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

/// The elements of the kernel's published set (`address . tcp . port`), empty when the set
/// or table is missing.
fn published_elements() -> Vec<String> {
    let out = run("nft", &["list", "set", "ip6", "v6guard", "published"]);
    let text = String::from_utf8_lossy(&out.stdout);
    let Some((_, elements)) = text.split_once("elements = {") else {
        return Vec::new();
    };
    let elements = elements.split('}').next().unwrap_or_default();
    elements
        .split([',', '\n'])
        .map(|e| e.trim().to_string())
        .filter(|e| !e.is_empty())
        .collect()
}

/// Whether the kernel's published set holds `address . tcp . port`.
fn published(address: &str, port: u16) -> bool {
    let element = format!("{address} . tcp . {port}");
    published_elements().contains(&element)
}

/// The rules of `chain` in an `nft list table` listing, trimmed, in order.
fn chain_rules(listing: &str, chain: &str) -> Vec<String> {
    let header = format!("chain {chain} {{");
    listing
        .lines()
        .skip_while(|l| l.trim() != header)
        .skip(1)
        .take_while(|l| l.trim() != "}")
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty() && !l.starts_with("type "))
        .collect()
}

/// systemd's side of `Type=notify`: a datagram socket the daemon is pointed at with
/// `NOTIFY_SOCKET`. Removed on drop.
struct NotifySocket {
    path: PathBuf,
    socket: UnixDatagram,
}

impl NotifySocket {
    fn bind(name: &str) -> NotifySocket {
        let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("notify-{name}.sock"));
        let _ = std::fs::remove_file(&path);
        let socket = UnixDatagram::bind(&path).expect("bind the notify socket");
        socket
            .set_read_timeout(Some(Duration::from_millis(100)))
            .expect("timeout");
        NotifySocket { path, socket }
    }

    fn env(&self) -> (&'static str, String) {
        ("NOTIFY_SOCKET", self.path.display().to_string())
    }

    /// The first message holding `line` within `timeout`, with when it arrived.
    fn wait_for(&self, line: &str, timeout: Duration) -> Option<(String, Instant)> {
        let start = Instant::now();
        let mut buffer = [0u8; 1024];
        while start.elapsed() < timeout {
            if let Ok(n) = self.socket.recv(&mut buffer) {
                let message = String::from_utf8_lossy(&buffer[..n]).into_owned();
                if message.lines().any(|l| l == line) {
                    return Some((message, Instant::now()));
                }
            }
        }
        None
    }
}

impl Drop for NotifySocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Poll until `probe` holds; returns how long it took, or `None` after `timeout`.
fn time_until(timeout: Duration, mut probe: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if probe() {
            return Some(start.elapsed());
        }
        // Each probe spawns `nft` or a client; 5 ms keeps the printed latencies meaningful
        // without loading the machine the daemon under test runs on.
        sleep(Duration::from_millis(5));
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
    let enforced = time_until(READY, || published(&web_v6, 80))
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
    let b_v6 = b.ipv6(&icc.name);
    assert!(
        eventually(READY, || outside.connects(&a_v6, 80)),
        "published port on the new network open from outside (so `a` is up)"
    );
    // The host's own traffic is not forwarded, so this proves `b` is up and its IPv6
    // address usable without going through v6guard's filter.
    assert!(
        eventually(READY, || host_connects(&b_v6, 80)),
        "`b` answers the host over IPv6 (so `b` is up)"
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
    // The reconnect backoff reaches 10 s while dockerd is down, so allow two READY periods.
    // (The checks below wait for the resync's effects themselves.)
    assert!(
        eventually(2 * READY, || daemon.total("docker_reconnects") >= 1),
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
    let restored = time_until(READY, || list_table(None).is_some()).expect("the table comes back");
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
    // The counter is written to the state file after the restoring transaction, so the table
    // can be back a moment before the count is.
    assert!(
        eventually(READY, || daemon.total("drift_restores") >= 1),
        "counted:\n{}",
        daemon.state()
    );
}

/// The Layer 2 guard is the second table: deleting it alone (an attacker with the host's
/// nft, a careless script) is drift too, and it comes back.
#[test]
fn a_deleted_bridge_table_comes_back() {
    let Some(_lock) = system_lock() else { return };
    let _table = TableGuard::clean();
    let daemon = Daemon::start("drift-l2", &[]);
    let before = list_bridge_table(None).expect("bridge table installed");

    run_ok("nft", &["delete", "table", "bridge", "v6guard"]);
    assert!(
        eventually(READY, || list_bridge_table(None).is_some()),
        "the bridge table comes back:\n{}",
        daemon.log()
    );
    assert_eq!(
        normalize_listing(&list_bridge_table(None).expect("table")),
        normalize_listing(&before),
        "restored exactly"
    );
    assert!(
        list_table(None).is_some(),
        "the ip6 table stayed throughout"
    );
}

/// Something keeps deleting the table: past the restore limit (5 a minute) the daemon stops
/// answering each deletion at once, so two tools do not spin, but the periodic verify still
/// puts the table back every time.
#[test]
fn past_the_restore_limit_the_periodic_verify_still_restores() {
    let Some(_lock) = system_lock() else { return };
    let _table = TableGuard::clean();
    let daemon = Daemon::start("fight", &["--verify-interval", "1"]);
    let mut times = Vec::new();
    for _ in 0..7 {
        run_ok("nft", &["delete", "table", "ip6", "v6guard"]);
        let restored = time_until(READY, || list_table(None).is_some())
            .unwrap_or_else(|| panic!("the table comes back:\n{}", daemon.log()));
        times.push(restored);
    }
    let ms: Vec<String> = times
        .iter()
        .map(|t| format!("{:.0}", t.as_secs_f64() * 1e3))
        .collect();
    println!("7 deletions restored after (ms): {}", ms.join(", "));
    assert!(
        times[..5].iter().all(|t| *t < Duration::from_millis(900)),
        "the first five are answered at once: {ms:?}"
    );
    assert!(
        daemon.log().contains("keeps changing"),
        "the fight is logged:\n{}",
        daemon.log()
    );
    // The table is back a moment before the state file counts the restore.
    assert!(
        eventually(READY, || daemon.total("drift_restores") >= 7),
        "every restore counted:\n{}",
        daemon.state()
    );
}

/// SIGHUP with a broken daemon.json keeps the old rules and names the file and line; a fixed
/// file is picked up by the next SIGHUP.
#[test]
fn sighup_with_broken_settings_keeps_the_rules() {
    let Some(_lock) = system_lock() else { return };
    let _table = TableGuard::clean();
    let good = std::fs::read_to_string(lab_daemon_json()).expect("lab daemon.json");
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
        eventually(READY, || daemon.log().contains(&format!("{json_arg}:2:"))),
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

/// The work a broken daemon.json held up is kept, not dropped: the next trigger (here a
/// container event, no SIGHUP) runs it, reading the file in full again. The file is fixed
/// with `"userland-proxy": true` meanwhile, which only a full read can see (Docker's API does
/// not report it): the NAT chain's proxy-mode returns appear.
#[test]
fn work_held_up_by_a_broken_daemon_json_runs_with_the_next_event() {
    let Some(_lock) = system_lock() else { return };
    let _table = TableGuard::clean();
    let (good, proxy_on) = lab_daemon_json_with("userland-proxy");
    let json = temp_file("deferred-daemon.json", &good);
    let json_arg = json.display().to_string();
    let daemon = Daemon::start("deferred", &["--daemon-json", &json_arg]);
    let proxy_rule = "userland-proxy on";
    assert!(
        list_table(None).is_some_and(|t| !t.contains(proxy_rule)),
        "no proxy-mode rules to begin with"
    );
    let errors = daemon.total("errors");

    std::fs::write(&json, "{\n  \"icc\": false,,\n}\n").expect("break daemon.json");
    daemon.signal(libc::SIGHUP);
    assert!(
        eventually(READY, || daemon.total("errors") > errors),
        "the reload fails:\n{}",
        daemon.log()
    );
    std::fs::write(&json, &proxy_on).expect("fix daemon.json, userland-proxy on");
    let _web = Container::web("v6gt-dmn-deferred", "bridge", &[]);
    assert!(
        eventually(READY, || list_table(None)
            .is_some_and(|t| t.contains(proxy_rule))),
        "the next event re-reads daemon.json:\n{}",
        daemon.log()
    );
}

/// A reload with a broken policy file keeps the old rules and names file, line and key; the
/// fixed policy is applied on the next reload. Both through `v6guard reload` (the unit's
/// ExecReload), which signals this daemon and waits for its answer: 6 with the reason, then 0.
#[test]
fn reload_with_a_broken_policy_keeps_the_rules() {
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
    let (code, stderr) = daemon.reload();
    assert_eq!(code, Some(6), "a rejected configuration:\n{stderr}");
    assert!(
        stderr.contains("10-sighup.yaml:3:5"),
        "reload names where:\n{stderr}"
    );
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
    let (code, stderr) = daemon.reload();
    assert_eq!(code, Some(0), "an accepted configuration:\n{stderr}");
    assert!(
        eventually(READY, || list_table(None)
            .is_some_and(|t| t.contains("icc on: network bridge"))),
        "the fixed policy is applied:\n{}",
        daemon.log()
    );
}

/// SIGTERM stops within a second, exit 0, rules left in place; `--cleanup-on-exit` removes them.
/// The second is counted from the moment the signal is sent to the moment the exit is seen.
#[test]
fn sigterm_stops_cleanly() {
    let Some(_lock) = system_lock() else { return };
    let _table = TableGuard::clean();
    let limit = Duration::from_secs(1);
    let mut daemon = Daemon::start("sigterm", &[]);
    let sent = daemon.signal(libc::SIGTERM);
    let exited = daemon.wait_exit(sent + limit);
    let (status, seen) =
        exited.unwrap_or_else(|| panic!("no exit within {limit:?} of SIGTERM:\n{}", daemon.log()));
    let took = seen - sent;
    println!("SIGTERM to exit: {:.1} ms", took.as_secs_f64() * 1e3);
    assert!(took <= limit, "{took:?}");
    assert_eq!(status.code(), Some(0), "{}", daemon.log());
    assert!(list_table(None).is_some(), "rules stay (fail-closed)");

    // Removing the table is a kernel transaction; only SIGTERM carries the one-second promise.
    let cleanup_limit = Duration::from_secs(5);
    let mut daemon = Daemon::start("sigterm-cleanup", &["--cleanup-on-exit"]);
    let sent = daemon.signal(libc::SIGINT);
    let exited = daemon.wait_exit(sent + cleanup_limit);
    let (status, seen) = exited.unwrap_or_else(|| {
        panic!(
            "no exit within {cleanup_limit:?} of SIGINT:\n{}",
            daemon.log()
        )
    });
    println!(
        "SIGINT with --cleanup-on-exit to exit: {:.1} ms",
        (seen - sent).as_secs_f64() * 1e3
    );
    assert_eq!(status.code(), Some(0), "{}", daemon.log());
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
    // Every one of the 50 containers' addresses, port 80, in the published set.
    let format = format!(
        "{{{{with index .NetworkSettings.Networks \"{}\"}}}}{{{{.GlobalIPv6Address}}}}{{{{end}}}}",
        net.name
    );
    let mut inspect = vec!["inspect", "--format", &format];
    inspect.extend(names.iter().map(String::as_str));
    let addresses: Vec<String> = docker(&inspect)
        .lines()
        .map(|a| a.trim().to_string())
        .collect();
    assert!(
        addresses.len() == 50 && addresses.iter().all(|a| !a.is_empty()),
        "every container has an IPv6 address: {addresses:?}"
    );
    let wanted: Vec<String> = addresses
        .iter()
        .map(|a| format!("{a} . tcp . 80"))
        .collect();
    let mut missing = wanted.clone();
    let converged = time_until(Duration::from_secs(30), || {
        let held = published_elements();
        missing = wanted
            .iter()
            .filter(|w| !held.contains(w))
            .cloned()
            .collect();
        missing.is_empty()
    });
    let elapsed = start.elapsed();
    assert!(
        converged.is_some(),
        "not published after 30 s: {missing:?}\n{}",
        daemon.log()
    );
    // Let stragglers land, then count.
    sleep(Duration::from_secs(3));
    let transactions = daemon.total("transactions") - before;
    // The pacer's own bound, with slack for dockerd pausing more than a pacing window between
    // starts (which restarts the ramp); and always fewer than one per start.
    let bound = burst_bound(burst) + 6;
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

/// Docker unreachable at start (at boot dockerd starts after v6guard): the daemon installs the
/// skeleton ruleset at once, tells systemd it is ready, and keeps trying to reach Docker. The
/// skeleton closes a container that was open without v6guard. Restarted while Docker is still
/// unreachable, the daemon keeps the (fuller) table it finds instead, and puts the skeleton
/// in its place if that table is deleted before Docker is read.
#[test]
fn without_docker_a_skeleton_guards_the_bridges() {
    let Some(_lock) = system_lock() else { return };
    let _table = TableGuard::clean();
    let outside = Outside::up(OUTSIDE);
    let net = Network::create("v6gt-dmn-skel", "fd76:6700:0:54::/64", &[]);
    let web = Container::web("v6gt-dmn-skel-web", &net.name, &["-p", "18404:80"]);
    let web_v6 = web.ipv6(&net.name);
    assert!(
        eventually(READY, || outside.connects(&web_v6, 80)),
        "without any v6guard table the container is open from outside (the lab's dockerd \
         leaves IPv6 unfiltered), so it is up"
    );

    let notify = NotifySocket::bind("skeleton");
    let (key, value) = notify.env();
    let spawned = Instant::now();
    let mut daemon = Daemon::spawn(
        "skeleton",
        &["--docker-host", NO_DOCKER],
        &[(key, value.as_str())],
    );
    let (message, at) = notify
        .wait_for("READY=1", Duration::from_secs(10))
        .unwrap_or_else(|| panic!("no READY=1 without Docker:\n{}", daemon.log()));
    println!(
        "READY {:.1} ms after the daemon started, Docker unreachable ({message:?})",
        (at - spawned).as_secs_f64() * 1e3
    );
    let table = list_table(None).expect("the skeleton table is installed");
    let forward = chain_rules(&table, "forward");
    for jump in [
        "oifname \"docker0\" jump to-bridge",
        "oifname \"br-*\" jump to-bridge",
    ] {
        assert!(forward.iter().any(|r| r == jump), "{jump} in\n{table}");
    }
    let to_bridge = chain_rules(&table, "to-bridge");
    let last = to_bridge.last().expect("to-bridge has rules");
    assert!(
        (last.starts_with("counter ") || last.starts_with("drop")) && last.contains("drop"),
        "to-bridge ends with an unconditional drop:\n{table}"
    );
    assert!(
        !table.contains(&web_v6),
        "the skeleton knows no container:\n{table}"
    );
    assert!(
        host_connects(&web_v6, 80),
        "the container still answers the host (so it is up)"
    );
    assert!(
        !outside.connects(&web_v6, 80),
        "the skeleton closes the container to the outside"
    );
    sleep(Duration::from_secs(1));
    assert!(daemon.running(), "keeps running without Docker");
    let state = daemon.state();
    assert_eq!(state["docker"]["connected"], false);
    assert!(
        state["at_start"]
            .as_str()
            .is_some_and(|s| s.contains("skeleton")),
        "{state}"
    );
    assert!(
        daemon.log().contains("Docker is not reachable"),
        "{}",
        daemon.log()
    );
    drop(daemon);

    // A table from an earlier run (here `v6guard apply`, which publishes the container) is
    // kept by a daemon that starts while Docker is unreachable.
    v6guard_ok(&["apply"]);
    let before = list_table(None).expect("applied");
    assert!(
        eventually(READY, || outside.connects(&web_v6, 80)),
        "published by `v6guard apply`"
    );
    let notify = NotifySocket::bind("skeleton-kept");
    let (key, value) = notify.env();
    let daemon = Daemon::spawn(
        "skeleton-kept",
        &["--docker-host", NO_DOCKER, "--verify-interval", "1"],
        &[(key, value.as_str())],
    );
    notify
        .wait_for("READY=1", Duration::from_secs(10))
        .unwrap_or_else(|| panic!("no READY=1 with a table in place:\n{}", daemon.log()));
    sleep(Duration::from_millis(1500));
    assert_eq!(
        normalize_listing(&list_table(None).expect("table")),
        normalize_listing(&before),
        "the table found at start is kept"
    );
    assert!(outside.connects(&web_v6, 80), "still published");
    assert!(
        daemon.state()["at_start"]
            .as_str()
            .is_some_and(|s| s.contains("kept")),
        "{}",
        daemon.state()
    );

    // Deleted before Docker could be read (say, a firewall reload at boot): the kept content
    // was never planned by this daemon, so the skeleton takes its place.
    run_ok("nft", &["delete", "table", "ip6", "v6guard"]);
    assert!(
        eventually(READY, || list_table(None)
            .is_some_and(|t| t.contains("oifname \"br-*\" jump to-bridge"))),
        "the skeleton guards the bridges again:\n{}",
        daemon.log()
    );
    assert!(
        !outside.connects(&web_v6, 80),
        "and closes the container it does not know"
    );
    assert!(
        eventually(READY, || daemon.total("drift_restores") >= 1),
        "counted as a drift restore:\n{}",
        daemon.log()
    );
}

/// At boot, before Docker can be asked: the dockerd installed is 27 or newer (here a stand-in
/// `dockerd` first on PATH that answers `--version` as Docker 28 does) and `ip6tables` is not
/// set, so Docker will firewall IPv6 itself. With `defaults.mode: stand-down` the daemon
/// installs no skeleton (it would block Docker's own published IPv6 ports until the first
/// read) and says why.
#[test]
fn an_installed_docker_27_means_no_skeleton() {
    let Some(_lock) = system_lock() else { return };
    let _table = TableGuard::clean();
    let _back = DockerdBack;
    // A running dockerd is asked first (its own binary); stop the lab's 20.10.
    lib_sh("v6g_stop_dockerd");
    let bin = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("fake-dockerd-28");
    std::fs::create_dir_all(&bin).expect("bin dir");
    let fake = bin.join("dockerd");
    std::fs::write(
        &fake,
        "#!/bin/sh\necho 'Docker version 28.0.0, build v6gtest'\n",
    )
    .expect("fake dockerd");
    std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod");
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let (good, _) = lab_daemon_json_with("ip6tables");
    let mut unset: serde_json::Value = serde_json::from_str(&good).expect("lab daemon.json");
    unset.as_object_mut().expect("object").remove("ip6tables");
    let json = temp_file("docker28-daemon.json", &unset.to_string());
    let json_arg = json.display().to_string();

    let notify = NotifySocket::bind("docker28");
    let (key, value) = notify.env();
    let config = temp_file(
        "docker28-stand-down.yaml",
        "defaults:\n  mode: stand-down\n",
    );
    let config_arg = config.display().to_string();
    let daemon = Daemon::spawn(
        "docker28",
        &[
            "--docker-host",
            NO_DOCKER,
            "--daemon-json",
            &json_arg,
            "--config",
            &config_arg,
        ],
        &[(key, value.as_str()), ("PATH", path.as_str())],
    );
    let (message, _) = notify
        .wait_for("READY=1", Duration::from_secs(10))
        .unwrap_or_else(|| panic!("no READY=1:\n{}", daemon.log()));
    assert!(
        message.contains("standing down before Docker is read"),
        "{message:?}\n{}",
        daemon.log()
    );
    sleep(Duration::from_millis(500));
    assert!(list_table(None).is_none(), "no skeleton:\n{}", daemon.log());
    assert!(
        daemon.log().contains("dockerd 28.0.0"),
        "the reason names the version:\n{}",
        daemon.log()
    );
}

/// With `defaults.mode: stand-down`, Docker starts managing IPv6 itself (here: daemon.json
/// switched to `"ip6tables": true`, then SIGHUP): the daemon stands down and removes its table, which would otherwise fight
/// Docker's own rules with a frozen published set; the periodic verify does not bring it
/// back. Switched back, the daemon installs its table again.
#[test]
fn standing_down_removes_the_table() {
    let Some(_lock) = system_lock() else { return };
    let _table = TableGuard::clean();
    let (good, managed) = lab_daemon_json_with("ip6tables");
    let json = temp_file("standdown-daemon.json", &good);
    let json_arg = json.display().to_string();
    let config = temp_file("standdown.yaml", "defaults:\n  mode: stand-down\n");
    let config_arg = config.display().to_string();
    let daemon = Daemon::start(
        "standdown",
        &[
            "--daemon-json",
            &json_arg,
            "--verify-interval",
            "1",
            "--config",
            &config_arg,
        ],
    );
    assert!(list_table(None).is_some(), "table installed");

    std::fs::write(&json, &managed).expect("ip6tables on");
    daemon.signal(libc::SIGHUP);
    // `stood_down` is written last, after the table is removed and the removal logged.
    assert!(
        eventually(READY, || list_table(None).is_none()
            && daemon.state()["stood_down"].is_string()),
        "standing down removes the table:\n{}",
        daemon.log()
    );
    let state = daemon.state();
    assert!(state["stood_down"].is_string(), "{state}");
    assert!(
        state["stand_down_cleanup"]
            .as_str()
            .is_some_and(|s| s.contains("removed")),
        "{state}"
    );
    let log = daemon.log();
    assert!(
        log.lines()
            .any(|l| l.contains("WARN") && l.contains("REMOVED") && l.contains("ip6tables")),
        "logged at WARN with the reason:\n{log}"
    );
    sleep(Duration::from_millis(2500));
    assert!(
        list_table(None).is_none(),
        "not restored while standing down:\n{}",
        daemon.log()
    );

    std::fs::write(&json, &good).expect("ip6tables off");
    daemon.signal(libc::SIGHUP);
    assert!(
        eventually(READY, || list_table(None).is_some()),
        "installed again once Docker no longer manages IPv6:\n{}",
        daemon.log()
    );
    assert!(
        eventually(READY, || daemon.state()["stood_down"].is_null()),
        "{}",
        daemon.state()
    );
}

/// Policies are keyed by container name, so a rename can open (or close) a container: the
/// daemon follows `rename` events. A policy exposes port 81 of `v6gt-dmn-renamed`; a
/// container renamed to that becomes reachable on 81 from outside.
#[test]
fn a_renamed_container_gets_its_new_names_policy() {
    let Some(_lock) = system_lock() else { return };
    let _table = TableGuard::clean();
    let outside = Outside::up(OUTSIDE);
    let net = Network::create("v6gt-dmn-ren", "fd76:6700:0:55::/64", &[]);
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("rename-policies");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("policy dir");
    std::fs::write(
        dir.join("10-rename.yaml"),
        "containers:\n  v6gt-dmn-renamed:\n    expose: [\"81/tcp\"]\n",
    )
    .expect("policy");
    let dir_arg = dir.display().to_string();
    let _ = run(DOCKER, &["rm", "-f", "v6gt-dmn-renamed"]);
    let daemon = Daemon::start("rename", &["--policies-dir", &dir_arg]);

    let web = Container::web("v6gt-dmn-ren-old", &net.name, &[]);
    let web_v6 = web.ipv6(&net.name);
    assert!(
        eventually(READY, || host_connects(&web_v6, 81)),
        "the container answers the host on 81 (so it is up)"
    );
    assert!(
        !outside.connects(&web_v6, 81),
        "closed from outside under its old name"
    );

    docker(&["rename", &web.name, "v6gt-dmn-renamed"]);
    let renamed = Container {
        name: "v6gt-dmn-renamed".to_string(),
    };
    let opened = time_until(READY, || published(&web_v6, 81));
    assert!(
        opened.is_some(),
        "the new name's policy is enforced:\n{}",
        daemon.log()
    );
    println!(
        "rename to the kernel holding the exposed port: {:.1} ms",
        opened.unwrap_or_default().as_secs_f64() * 1e3
    );
    assert!(
        eventually(READY, || outside.connects(&web_v6, 81)),
        "open from outside under its new name"
    );
    assert!(
        daemon.log().contains("container rename"),
        "{}",
        daemon.log()
    );
    drop(renamed);
}

/// The lab's daemon.json as it is, and the same with `key` switched from false to true.
fn lab_daemon_json_with(key: &str) -> (String, String) {
    let good = std::fs::read_to_string(lab_daemon_json()).expect("lab daemon.json");
    let mut settings: serde_json::Value = serde_json::from_str(&good).expect("lab daemon.json");
    assert_eq!(settings[key], false, "the lab runs with {key} off");
    settings[key] = serde_json::Value::Bool(true);
    (good, serde_json::to_string_pretty(&settings).expect("json"))
}
