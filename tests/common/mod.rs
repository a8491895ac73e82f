//! Harness for the real-system tests: a real dockerd, real nftables, and an "outside" client in
//! its own network namespace routed through the host.
//!
//! Every resource a test creates is held by a guard whose Drop removes it, so a failing test
//! still cleans up. Tests that share dockerd and the host's `ip6 v6guard` table take
//! [`system_lock`] first, so they never race.
//!
//! Prerequisites (root, dockerd, the lab image, nft, ip) are set up by `scripts/test.sh`. When
//! one is missing the test fails, except that a developer may run the suite without root on
//! purpose with `V6GUARD_SKIP_SYSTEM_TESTS=1` (never honoured when `CI` is set).

#![allow(dead_code)]

pub mod frames;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::thread::sleep;
use std::time::{Duration, Instant};

pub const DOCKER: &str = "/usr/bin/docker";
pub const IMAGE: &str = "v6guard-lab/busybox:latest";
/// The outside namespace's address and the host's end of its veth (see scripts/lib.sh).
pub const OUTSIDE_ADDR: &str = "2001:db8:76::2";
pub const OUTSIDE_ADDR4: &str = "198.51.100.2";
/// The host's addresses on the outside namespace's link.
pub const HOST_ADDR: &str = "2001:db8:76::1";
pub const HOST_ADDR4: &str = "198.51.100.1";

static SYSTEM: Mutex<()> = Mutex::new(());

/// Cross-process lock file: test binaries (and people running tests side by side) share one
/// dockerd and one host `ip6 v6guard` table.
const LOCK_FILE: &str = "/run/v6guard-tests.lock";

/// Holds the in-process mutex and the cross-process file lock for one real-system test.
pub struct SystemLock {
    /// `None` when the process that started the tests holds the lock for them.
    _file: Option<std::fs::File>,
    _guard: MutexGuard<'static, ()>,
}

/// Serialise real-system tests (within this binary and across processes) and check
/// prerequisites. `None` only when skipping on purpose.
pub fn system_lock() -> Option<SystemLock> {
    let guard = SYSTEM
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    // The cross-process lock comes before the prerequisite check: the process holding it may
    // be restarting dockerd (ProxyMode), and a daemon briefly down is no missing prerequisite.
    // Only root can take it (the check below reports a missing root).
    // SAFETY: geteuid has no preconditions.
    let file = (unsafe { libc::geteuid() } == 0).then(lock_file);
    let file = file.flatten();
    let missing = missing_prerequisite();
    match (missing, file) {
        (None, file) => Some(SystemLock {
            _file: file,
            _guard: guard,
        }),
        (Some(what), _) => {
            let in_ci = std::env::var_os("CI").is_some();
            let skip = std::env::var("V6GUARD_SKIP_SYSTEM_TESTS").as_deref() == Ok("1");
            if skip && !in_ci {
                eprintln!("SKIPPED on purpose (V6GUARD_SKIP_SYSTEM_TESTS=1): {what}");
                None
            } else {
                panic!(
                    "real-system test prerequisite missing: {what}. Run `sudo scripts/test.sh`, \
                     which installs and starts everything"
                );
            }
        }
    }
}

/// The cross-process lock, unless the caller already holds it for us: scripts/test.sh holds
/// it for the whole run against Docker 26, while the shared 20.10 dockerd is down
/// (`V6G_TESTS_LOCK_HELD=1`); a second flock from here would wait for it forever.
fn lock_file() -> Option<std::fs::File> {
    use std::os::fd::AsRawFd;
    if std::env::var("V6G_TESTS_LOCK_HELD").as_deref() == Ok("1") {
        return None;
    }
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(LOCK_FILE)
        .unwrap_or_else(|e| panic!("cannot open {LOCK_FILE}: {e}"));
    // SAFETY: flock on an open file descriptor; blocks until the lock is ours.
    let result = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
    assert_eq!(result, 0, "flock {LOCK_FILE}");
    Some(file)
}

/// The engine the real-system tests run against (`V6G_ENGINE`, set by scripts/test.sh):
/// Debian 12's Docker 20.10 unless it says 26. The docker client and v6guard find that
/// engine through `DOCKER_HOST`.
pub fn engine() -> &'static str {
    match std::env::var("V6G_ENGINE").as_deref() {
        Ok("26") => "26",
        _ => "20.10",
    }
}

/// The endpoint of the engine under test: `DOCKER_HOST` (scripts/test.sh sets it for Docker
/// 26), else the default socket.
pub fn docker_host() -> String {
    std::env::var("DOCKER_HOST").unwrap_or_else(|_| "unix:///var/run/docker.sock".to_string())
}

/// Whether an nft listing holds an accept verdict in a rule (a base chain's `policy accept`
/// is no rule).
pub fn has_accept_rule(listing: &str) -> bool {
    listing
        .lines()
        .any(|line| line.contains("accept") && !line.contains("policy accept;"))
}

/// The lab dockerd's daemon.json as seen from the host: /run/v6guard-lab/daemon.json for
/// 20.10, the file under the Debian 13 root for 26 (`V6G_LAB_DAEMON_JSON`).
pub fn lab_daemon_json() -> PathBuf {
    std::env::var_os("V6G_LAB_DAEMON_JSON")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/run/v6guard-lab/daemon.json"))
}

fn missing_prerequisite() -> Option<String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("root (nftables and network namespaces need it)".into());
    }
    for tool in ["nft", "ip", "nc"] {
        if !run("sh", &["-c", &format!("command -v {tool}")])
            .status
            .success()
        {
            return Some(format!("the `{tool}` command"));
        }
    }
    if !run(DOCKER, &["info", "--format", "{{.ServerVersion}}"])
        .status
        .success()
    {
        return Some("a running dockerd".into());
    }
    if !run(DOCKER, &["image", "inspect", IMAGE]).status.success() {
        return Some(format!("the lab image {IMAGE}"));
    }
    None
}

/// Run a command to completion, capturing output.
pub fn run(program: &str, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"))
}

/// Run a command that must succeed; returns its stdout.
pub fn run_ok(program: &str, args: &[&str]) -> String {
    let out = run(program, args);
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn docker(args: &[&str]) -> String {
    run_ok(DOCKER, args)
}

/// The v6guard binary under test.
pub fn v6guard_bin() -> &'static str {
    env!("CARGO_BIN_EXE_v6guard")
}

pub fn v6guard(args: &[&str]) -> Output {
    run(v6guard_bin(), args)
}

pub fn v6guard_ok(args: &[&str]) -> String {
    run_ok(v6guard_bin(), args)
}

/// A Docker network removed on drop.
pub struct Network {
    pub name: String,
}

impl Network {
    /// `docker network create --ipv6 --subnet SUBNET [-o OPT]... NAME`, replacing a leftover.
    pub fn create(name: &str, subnet: &str, options: &[&str]) -> Network {
        let _ = run(DOCKER, &["network", "rm", name]);
        let mut args = vec!["network", "create", "--ipv6", "--subnet", subnet];
        for option in options {
            args.extend(["-o", option]);
        }
        args.push(name);
        docker(&args);
        Network {
            name: name.to_string(),
        }
    }
}

impl Network {
    /// `docker network create --internal --ipv6 --subnet SUBNET NAME`, replacing a leftover.
    pub fn internal(name: &str, subnet: &str) -> Network {
        let _ = run(DOCKER, &["network", "rm", name]);
        docker(&[
            "network",
            "create",
            "--internal",
            "--ipv6",
            "--subnet",
            subnet,
            name,
        ]);
        Network {
            name: name.to_string(),
        }
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        let _ = run(DOCKER, &["network", "rm", &self.name]);
    }
}

/// A container serving HTTP on ports 80 and 81, removed on drop.
pub struct Container {
    pub name: String,
}

impl Container {
    /// Start a web container on `network` ("bridge" for the default bridge) with extra
    /// `docker run` arguments such as `-p 8080:80`.
    pub fn web(name: &str, network: &str, extra: &[&str]) -> Container {
        Container::run(
            name,
            network,
            extra,
            "httpd -p 80 -h /www && httpd -f -p 81 -h /www",
        )
    }

    /// Start a lab-image container on `network` running the shell command `command`.
    pub fn run(name: &str, network: &str, extra: &[&str], command: &str) -> Container {
        let _ = run(DOCKER, &["rm", "-f", name]);
        let mut args = vec!["run", "-d", "--name", name];
        // The default bridge is what `docker run` uses without --network; naming it
        // explicitly makes dockerd refuse legacy --link.
        if network != "bridge" {
            args.extend(["--network", network]);
        }
        args.extend(extra);
        args.extend([IMAGE, "sh", "-c", command]);
        docker(&args);
        Container {
            name: name.to_string(),
        }
    }

    /// The container's global IPv6 address on `network`.
    pub fn ipv6(&self, network: &str) -> String {
        let format = format!(
            "{{{{with index .NetworkSettings.Networks \"{network}\"}}}}{{{{.GlobalIPv6Address}}}}{{{{end}}}}"
        );
        let address = docker(&["inspect", "--format", &format, &self.name])
            .trim()
            .to_string();
        assert!(
            !address.is_empty(),
            "{} has no IPv6 address on {network}",
            self.name
        );
        address
    }

    /// The container's IPv4 address on `network`.
    pub fn ipv4(&self, network: &str) -> String {
        let format = format!(
            "{{{{with index .NetworkSettings.Networks \"{network}\"}}}}{{{{.IPAddress}}}}{{{{end}}}}"
        );
        docker(&["inspect", "--format", &format, &self.name])
            .trim()
            .to_string()
    }

    /// Whether a TCP connection from this container to `address`:`port` succeeds (2 s timeout).
    pub fn connects(&self, address: &str, port: u16) -> bool {
        tcp_probe(DOCKER, &["exec", &self.name], address, port)
    }
}

impl Container {
    /// The client address an HTTP server at `address`:`port` saw for a request from this
    /// container, or `None` when no answer came within 3 s.
    pub fn fetch_ip(&self, address: &str, port: u16) -> Option<String> {
        let url = ip_url(address, port);
        answer(&run(
            DOCKER,
            &[
                "exec", &self.name, "timeout", "3", "wget", "-q", "-O-", &url,
            ],
        ))
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = run(DOCKER, &["rm", "-f", &self.name]);
    }
}

/// The outside world: a namespace routed through the host over a veth, with an HTTP server
/// on port 8000 so containers' outbound traffic can be checked. Removed on drop.
pub struct Outside {
    pub name: String,
    server: Option<Child>,
}

impl Outside {
    pub fn up(name: &str) -> Outside {
        lib_sh(&format!("v6g_outside_up {name}"));
        let www = lib_sh_output("v6g_www_dir").trim().to_string();
        let server = Command::new("ip")
            .args([
                "netns",
                "exec",
                name,
                "busybox",
                "httpd",
                "-f",
                "-p",
                "[::]:8000",
                "-h",
                &www,
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the outside HTTP server");
        Outside {
            name: name.to_string(),
            server: Some(server),
        }
    }

    /// Whether a TCP connection from outside to `address`:`port` succeeds (2 s timeout).
    pub fn connects(&self, address: &str, port: u16) -> bool {
        tcp_probe("ip", &["netns", "exec", &self.name], address, port)
    }
}

impl Outside {
    /// The client address an HTTP server at `address`:`port` saw for a request from outside
    /// (its `/cgi-bin/ip`), or `None` when no answer came within 3 s.
    pub fn fetch_ip(&self, address: &str, port: u16) -> Option<String> {
        let url = ip_url(address, port);
        let out = run(
            "ip",
            &[
                "netns", "exec", &self.name, "curl", "-g", "-s", "-m", "3", &url,
            ],
        );
        answer(&out)
    }

    /// Add another host address on the outside link (for SNAT targets), removed with the link.
    /// An IPv6 one is added deprecated (preferred_lft 0) and an IPv4 one as secondary, so the
    /// kernel never picks it as a source by itself: seeing it proves SNAT chose it.
    pub fn add_host_address(&self, address: &str) {
        let host_if = lib_sh_output(&format!("v6g_outside_ifnames {}", self.name));
        let host_if = host_if.split_whitespace().next().expect("host ifname");
        let with_prefix = if address.contains(':') {
            format!("{address}/64")
        } else {
            format!("{address}/24")
        };
        let mut args = vec!["addr", "add", &with_prefix, "dev", host_if];
        if address.contains(':') {
            args.extend(["nodad", "preferred_lft", "0"]);
        }
        run_ok("ip", &args);
    }
}

/// `http://[v6]:port/cgi-bin/ip` or `http://v4:port/cgi-bin/ip`.
pub fn ip_url(address: &str, port: u16) -> String {
    if address.contains(':') {
        format!("http://[{address}]:{port}/cgi-bin/ip")
    } else {
        format!("http://{address}:{port}/cgi-bin/ip")
    }
}

/// The address a `/cgi-bin/ip` answer names, without busybox httpd's brackets.
fn answer(out: &Output) -> Option<String> {
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().last()?.trim();
    let address = line.trim_start_matches('[').trim_end_matches(']');
    // A dual-stack server reports IPv4 clients as IPv4-mapped IPv6 addresses.
    let address = address.strip_prefix("::ffff:").unwrap_or(address);
    (!address.is_empty()).then(|| address.to_string())
}

/// Whether a TCP connection from the host itself to `address`:`port` succeeds (2 s timeout).
/// The host's own traffic is not forwarded, so this proves a container is up without going
/// through v6guard's filter.
pub fn host_connects(address: &str, port: u16) -> bool {
    tcp_probe("nc", &[], address, port)
}

/// `PROGRAM ARGS... nc -z -w 2 ADDRESS PORT` (or plain `nc ...` when PROGRAM is nc): whether a
/// TCP connection succeeds within 2 s.
pub fn tcp_probe(program: &str, prefix: &[&str], address: &str, port: u16) -> bool {
    let port = port.to_string();
    let probe = ["-z", "-w", "2", address, &port];
    let mut args: Vec<&str> = prefix.to_vec();
    if program != "nc" {
        args.push("nc");
    }
    args.extend(probe);
    run(program, &args).status.success()
}

/// The first answer of up to three tries of `fetch`. For requests that should be served: one
/// slow CGI fork or a lost SYN on a loaded machine must not fail a test, while a request that
/// is refused still fails fast (three quick refusals).
pub fn answered(mut fetch: impl FnMut() -> Option<String>) -> Option<String> {
    (0..3).find_map(|_| fetch())
}

/// The client address seen by `/cgi-bin/ip` for a request made from the host itself.
pub fn host_fetch_ip(address: &str, port: u16) -> Option<String> {
    answer(&run(
        "curl",
        &["-g", "-s", "-m", "3", &ip_url(address, port)],
    ))
}

impl Drop for Outside {
    fn drop(&mut self) {
        if let Some(mut server) = self.server.take() {
            let _ = server.kill();
            let _ = server.wait();
        }
        lib_sh(&format!("v6g_outside_down {}", self.name));
    }
}

/// A throwaway network namespace with nothing in it, removed on drop.
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new(name: &str) -> Netns {
        let _ = run("ip", &["netns", "del", name]);
        run_ok("ip", &["netns", "add", name]);
        Netns {
            name: name.to_string(),
        }
    }

    /// A namespace joined to the host by a veth: `host_end` here (up), `ns_end` inside it
    /// (down, for the caller to number). Deleting the namespace (on drop) removes both ends.
    pub fn with_uplink(name: &str, host_end: &str, ns_end: &str) -> Netns {
        let netns = Netns::new(name);
        let _ = run("ip", &["link", "del", host_end]);
        run_ok(
            "ip",
            &[
                "link", "add", host_end, "type", "veth", "peer", "name", ns_end, "netns", name,
            ],
        );
        run_ok("ip", &["link", "set", host_end, "up"]);
        netns
    }

    /// Run a command inside the namespace.
    pub fn exec(&self, program: &str, args: &[&str]) -> Output {
        let mut all = vec!["netns", "exec", &self.name, program];
        all.extend(args);
        run("ip", &all)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = run("ip", &["netns", "del", &self.name]);
    }
}

/// Removes v6guard's tables from the host when dropped, so every test ends clean.
pub struct TableGuard;

impl TableGuard {
    /// Start from a host without v6guard's tables.
    pub fn clean() -> TableGuard {
        v6guard_ok(&["cleanup"]);
        TableGuard
    }
}

impl Drop for TableGuard {
    fn drop(&mut self) {
        let _ = v6guard(&["cleanup"]);
    }
}

/// Run a snippet with scripts/lib.sh sourced.
pub fn lib_sh(snippet: &str) {
    lib_sh_output(snippet);
}

/// Run a snippet with scripts/lib.sh sourced; its stdout.
pub fn lib_sh_output(snippet: &str) -> String {
    let lib = repo_root().join("scripts/lib.sh");
    run_ok(
        "bash",
        &["-c", &format!(". {} && {snippet}", lib.display())],
    )
}

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Retry `probe` until it returns true or `timeout` passes. For things that must become
/// reachable (a container's address finishing setup); never used to prove something closed.
pub fn eventually(timeout: Duration, mut probe: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    loop {
        if probe() {
            return true;
        }
        if start.elapsed() > timeout {
            return false;
        }
        sleep(Duration::from_millis(300));
    }
}

/// `nft list table ip6 v6guard` in the current namespace, if the table exists.
pub fn list_table(netns: Option<&Netns>) -> Option<String> {
    list_family_table(netns, "ip6")
}

/// `nft list table bridge v6guard` (the Layer 2 guard), if the table exists.
pub fn list_bridge_table(netns: Option<&Netns>) -> Option<String> {
    list_family_table(netns, "bridge")
}

fn list_family_table(netns: Option<&Netns>, family: &str) -> Option<String> {
    let args = ["list", "table", family, "v6guard"];
    let out = match netns {
        Some(ns) => ns.exec("nft", &args),
        None => run("nft", &args),
    };
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The kernel's own bytes for v6guard's tables (ip6, then bridge): `nft --debug=netlink list
/// table` prints every expression with its registers and data, and every set element's key
/// and value bytes. Element lines are sorted (hash order differs between two equal sets).
pub fn netlink_listing(netns: &Netns) -> String {
    ["ip6", "bridge"]
        .map(|family| family_netlink_listing(netns, family))
        .join("\n")
}

fn family_netlink_listing(netns: &Netns, family: &str) -> String {
    let out = netns.exec(
        "nft",
        &["--debug=netlink", "list", "table", family, "v6guard"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut lines: Vec<String> = Vec::new();
    let mut elements: Vec<String> = Vec::new();
    for line in text.lines() {
        if line.starts_with("\telement ") {
            elements.push(line.to_string());
            continue;
        }
        elements.sort();
        lines.append(&mut elements);
        lines.push(line.to_string());
    }
    elements.sort();
    lines.append(&mut elements);
    lines.join("\n")
}

/// A table listing with its set elements sorted (the kernel lists a hash set in hash order,
/// which differs between two tables holding the same elements) and its counters blanked
/// (they count traffic, and a restored table starts again from zero).
pub fn normalize_listing(text: &str) -> String {
    let mut out = Vec::new();
    let mut elements: Option<Vec<String>> = None;
    for line in text.lines() {
        let trimmed = line.trim();
        if let Some(rest) = trimmed.strip_prefix("elements = { ") {
            elements = Some(Vec::new());
            push_elements(rest, &mut elements, &mut out);
        } else if elements.is_some() {
            push_elements(trimmed, &mut elements, &mut out);
        } else {
            out.push(without_counts(line.trim_end()));
        }
    }
    out.join("\n")
}

/// `counter packets 12 bytes 960 drop` becomes `counter drop`.
fn without_counts(line: &str) -> String {
    let mut words: Vec<&str> = Vec::new();
    let mut rest = line.split(' ').peekable();
    while let Some(word) = rest.next() {
        words.push(word);
        if word == "counter" && rest.peek() == Some(&"packets") {
            // Skip `packets N bytes M`.
            for _ in 0..4 {
                rest.next();
            }
        }
    }
    words.join(" ")
}

fn push_elements(part: &str, elements: &mut Option<Vec<String>>, out: &mut Vec<String>) {
    let (body, closed) = match part.strip_suffix(" }") {
        Some(body) => (body, true),
        None => (part, false),
    };
    if let Some(list) = elements.as_mut() {
        list.extend(
            body.split(',')
                .map(str::trim)
                .filter(|e| !e.is_empty())
                .map(String::from),
        );
    }
    if closed {
        let mut list = elements.take().unwrap_or_default();
        list.sort();
        out.push(format!("\t\telements = {{ {} }}", list.join(", ")));
    }
}

/// Write `text` to a fresh file under the target directory and return its path.
pub fn temp_file(name: &str, text: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write temp file");
    path
}

/// Puts the lab dockerd in one userland-proxy mode; restores the lab default (proxy off) on
/// drop, so later tests find the daemon as scripts/lib.sh starts it.
pub struct ProxyMode {
    changed: bool,
}

impl ProxyMode {
    pub fn set(on: bool) -> ProxyMode {
        let changed = current_proxy() != on;
        if changed {
            lib_sh(&format!("V6G_USERLAND_PROXY={on} v6g_restart_dockerd"));
        }
        assert_eq!(current_proxy(), on, "dockerd runs with userland-proxy={on}");
        ProxyMode { changed }
    }
}

impl Drop for ProxyMode {
    fn drop(&mut self) {
        if self.changed && current_proxy() {
            lib_sh("V6G_USERLAND_PROXY=false v6g_restart_dockerd");
        }
    }
}

fn current_proxy() -> bool {
    let snapshot: serde_json::Value =
        serde_json::from_str(&v6guard_ok(&["snapshot"])).expect("snapshot is JSON");
    snapshot["daemon"]["userland_proxy"]["value"]
        .as_bool()
        .expect("userland_proxy is a bool")
}

/// A fresh policy directory under the target dir holding `files` (name, YAML); its path.
pub fn policy_dir(name: &str, files: &[(&str, &str)]) -> String {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create policy dir");
    for (file, text) in files {
        std::fs::write(dir.join(file), text).expect("write policy");
    }
    dir.to_str().expect("utf-8 path").to_string()
}
