//! The command line without root or Docker: render from a saved snapshot, and the errors a
//! person meets first.

mod common;

use std::process::Command;

fn v6guard(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_v6guard"))
        .args(args)
        .env("V6GUARD_LOG", "warn")
        .output()
        .expect("run v6guard")
}

fn fixture(name: &str) -> String {
    format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn render_from_a_saved_snapshot_works_offline() {
    let out = v6guard(&["render", "--snapshot", &fixture("lab-snapshot.json")]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("#!/usr/sbin/nft -f\n"));
    assert!(text.contains("fd76:6700:0:20::2 . tcp . 80"), "{text}");
    assert!(
        text.contains(r#"iifname "v6gdemo0" oifname "v6gdemo0" counter packets 0 bytes 0 drop"#),
        "{text}"
    );
}

#[test]
fn a_broken_snapshot_file_is_named_with_line_and_column() {
    let out = v6guard(&["render", "--snapshot", &fixture("broken-snapshot.json")]);
    assert!(!out.status.success());
    let message = String::from_utf8_lossy(&out.stderr);
    assert!(message.contains("broken-snapshot.json:3:"), "{message}");
    assert!(message.contains("v6guard snapshot > FILE"), "{message}");
}

#[test]
fn a_missing_docker_socket_says_what_to_do() {
    let out = v6guard(&["render", "--docker-host", "unix:///nonexistent/docker.sock"]);
    assert!(!out.status.success());
    let message = String::from_utf8_lossy(&out.stderr);
    assert!(
        message.contains("cannot reach Docker at unix:///nonexistent/docker.sock"),
        "{message}"
    );
    assert!(message.contains("Is dockerd running"), "{message}");
}

#[test]
fn a_bad_daemon_json_is_named_with_its_path() {
    let dir = env!("CARGO_TARGET_TMPDIR");
    let path = format!("{dir}/bad-daemon.json");
    std::fs::write(&path, "{\n  \"icc\": false,,\n}").expect("write");
    let out = v6guard(&["render", "--daemon-json", &path]);
    assert!(!out.status.success());
    let message = String::from_utf8_lossy(&out.stderr);
    assert!(message.contains(&format!("{path}:2:")), "{message}");
}

#[test]
fn help_speaks_to_docker_operators() {
    let out = v6guard(&["--help"]);
    let text = String::from_utf8_lossy(&out.stdout);
    for command in ["render", "apply", "snapshot", "cleanup"] {
        assert!(text.contains(command), "{text}");
    }
    assert!(text.contains("ICC"), "{text}");
}

/// Every exit status a script may rely on is listed in `--help`.
#[test]
fn help_lists_the_exit_statuses() {
    let out = v6guard(&["--help"]);
    let text = String::from_utf8_lossy(&out.stdout);
    for line in [
        "0  ok",
        "1  unexpected error",
        "2  usage error",
        "3  stood down",
        "4  exposure found",
        "5  not enforced",
        "6  configuration error",
        "7  Docker unreachable",
        "8  the kernel refused the ruleset",
    ] {
        assert!(text.contains(line), "{line} in\n{text}");
    }
}

#[test]
fn exit_2_for_a_usage_error() {
    assert_eq!(
        v6guard(&["render", "--no-such-flag"]).status.code(),
        Some(2)
    );
    assert_eq!(v6guard(&["no-such-command"]).status.code(), Some(2));
}

#[test]
fn exit_7_when_docker_is_unreachable() {
    let out = v6guard(&[
        "render",
        "--config",
        &empty_config(),
        "--docker-host",
        "unix:///nonexistent/docker.sock",
    ]);
    assert_eq!(
        out.status.code(),
        Some(7),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn exit_6_for_a_broken_configuration_or_daemon_json() {
    let config = temp("broken-v6guard.yaml", "resync_intervall: 5\n");
    let out = v6guard(&[
        "render",
        "--config",
        &config,
        "--snapshot",
        &fixture("lab-snapshot.json"),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(6), "{stderr}");
    assert!(
        stderr.contains(&format!("{config}:1:1: resync_intervall")),
        "{stderr}"
    );

    let daemon_json = temp("broken-daemon.json", "{\n  \"icc\": false,,\n}");
    // daemon.json is read before Docker is asked anything, so even with no Docker the
    // broken file is what is reported, as a configuration error.
    let out = v6guard(&[
        "render",
        "--config",
        &empty_config(),
        "--daemon-json",
        &daemon_json,
        "--docker-host",
        "unix:///nonexistent/docker.sock",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(6), "{stderr}");
    assert!(stderr.contains(&format!("{daemon_json}:2:")), "{stderr}");
}

#[test]
fn render_json_carries_the_schema_version_and_the_plan() {
    let snapshot = fixture("lab-snapshot.json");
    for args in [&["--format", "json"][..], &["--json"][..]] {
        let mut all = vec!["render", "--snapshot", &snapshot];
        all.extend_from_slice(args);
        let out = v6guard(&all);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
        assert_eq!(json["schema_version"], 1);
        assert_eq!(json["table"], "v6guard");
        assert!(
            json["digest"]
                .as_str()
                .is_some_and(|d| d.starts_with("v6guard plan ")),
            "{json}"
        );
        let published = json["sets"]
            .as_array()
            .and_then(|sets| sets.iter().find(|s| s["name"] == "published"))
            .expect("the published set");
        assert!(
            published["elements"]
                .as_array()
                .is_some_and(|e| e.iter().any(|e| e == "fd76:6700:0:20::2 . tcp . 80")),
            "{published}"
        );
    }
}

/// `snapshot` takes docker_host from v6guard.yaml, like every other command.
#[test]
fn snapshot_reads_v6guard_yaml() {
    let config = temp(
        "snapshot-v6guard.yaml",
        "docker_host: unix:///nonexistent/from-yaml.sock\n",
    );
    let out = Command::new(env!("CARGO_BIN_EXE_v6guard"))
        .args(["snapshot", "--config", &config])
        .env("V6GUARD_LOG", "warn")
        .env_remove("DOCKER_HOST")
        .output()
        .expect("run v6guard");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(7), "{stderr}");
    assert!(stderr.contains("/nonexistent/from-yaml.sock"), "{stderr}");
}

/// Under systemd, stderr is the journal stream (`$JOURNAL_STREAM` names it); each line then
/// starts with its syslog priority, so `journalctl -p err` shows the errors.
#[test]
fn journald_sees_errors_at_priority_err() {
    let (stderr, _) = run_with_stderr_file("journal", true, &empty_config());
    let first = stderr.lines().next().unwrap_or_default();
    assert!(first.starts_with("<3>"), "{stderr}");
    assert!(first.contains("cannot reach Docker"), "{stderr}");
    assert!(
        stderr.lines().all(|l| l.starts_with('<')),
        "every line has a priority:\n{stderr}"
    );

    // Not the journal (a terminal, a file): no prefixes.
    let (stderr, _) = run_with_stderr_file("not-journal", false, &empty_config());
    assert!(
        stderr.starts_with("v6guard: cannot reach Docker"),
        "{stderr}"
    );
}

/// `log_format: json` in v6guard.yaml: one JSON object per line, level included.
#[test]
fn log_format_json_is_real() {
    let config = temp("json-v6guard.yaml", "log_format: json\n");
    let (stderr, code) = run_with_stderr_file("json", false, &config);
    assert_eq!(code, Some(7), "{stderr}");
    let lines: Vec<serde_json::Value> = stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let error = lines
        .iter()
        .find(|l| l["level"] == "ERROR")
        .unwrap_or_else(|| panic!("an error line in {stderr}"));
    assert!(
        error["message"]
            .as_str()
            .is_some_and(|m| m.contains("cannot reach Docker")),
        "{error}"
    );
    assert_eq!(error["exit_code"], 7, "{error}");
}

/// Run `render` against a missing Docker with stderr in a file, `$JOURNAL_STREAM` naming that
/// file when `journal`; stderr's text and the exit status.
fn run_with_stderr_file(name: &str, journal: bool, config: &str) -> (String, Option<i32>) {
    use std::os::unix::fs::MetadataExt;
    let path = format!("{}/stderr-{name}.txt", env!("CARGO_TARGET_TMPDIR"));
    let file = std::fs::File::create(&path).expect("create stderr file");
    let meta = file.metadata().expect("stat");
    let mut command = Command::new(env!("CARGO_BIN_EXE_v6guard"));
    command
        .args([
            "render",
            "--config",
            config,
            "--docker-host",
            "unix:///nonexistent/docker.sock",
        ])
        .env("V6GUARD_LOG", "info")
        .env_remove("NO_COLOR")
        .stderr(file);
    if journal {
        command.env("JOURNAL_STREAM", format!("{}:{}", meta.dev(), meta.ino()));
    } else {
        // Inherited from a parent under systemd, but naming some other stream.
        command.env(
            "JOURNAL_STREAM",
            format!("{}:{}", meta.dev(), meta.ino() + 1),
        );
    }
    let status = command.status().expect("run v6guard");
    let text = std::fs::read_to_string(&path).expect("read stderr");
    (text, status.code())
}

fn temp(name: &str, text: &str) -> String {
    let path = format!("{}/{name}", env!("CARGO_TARGET_TMPDIR"));
    std::fs::write(&path, text).expect("write");
    path
}

/// An empty config file, so the host's /etc/v6guard never leaks into a test.
fn empty_config() -> String {
    temp("cli-empty-v6guard.yaml", "# defaults\n")
}

/// A state file as the daemon writes it, for the process `pid`.
fn state(pid: u32, change: impl FnOnce(&mut serde_json::Value)) -> serde_json::Value {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let mut state = serde_json::json!({
        "pid": pid,
        "started_at": now - 60,
        "updated_at": now - 1,
        "loop_at": now - 1,
        "stale_after_s": 70,
        "docker": {"host": "unix:///var/run/docker.sock", "connected": true, "engine": "20.10",
                   "containers": 2, "networks": 3},
        "last_reconcile": {"at_ms": (now - 1) * 1000, "trigger": "resync", "result": "unchanged",
                           "error": null, "transaction": "none", "added": 0, "removed": 0,
                           "rules": 40, "sets": 3, "elements": 4, "ms": 1.0, "latency_ms": null},
        "stood_down": null,
        "reload_error": null,
        "totals": {"reconciles": 5, "transactions": 1, "full_transactions": 1,
                   "element_transactions": 0, "errors": 0, "events": 3, "drift_restores": 0,
                   "docker_reconnects": 0, "reloads": 0, "reload_failures": 0}
    });
    change(&mut state);
    state
}

fn write_state(name: &str, state: &serde_json::Value) -> String {
    temp(name, &state.to_string())
}

/// `status`: 0 enforcing, 3 standing down, 5 for a dead daemon or a hung loop, and never
/// a stale "docker: connected" from a daemon that is not there to say so.
#[test]
fn status_judges_the_daemon_by_its_pid_and_its_heartbeat() {
    let alive = std::process::id();
    let status = |name: &str, state: &serde_json::Value, extra: &[&str]| {
        let path = write_state(name, state);
        let mut args = vec!["status", "--state-file", &path];
        args.extend_from_slice(extra);
        let out = v6guard(&args);
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };

    let (code, text) = status("state-ok.json", &state(alive, |_| {}), &[]);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("docker: connected"), "{text}");

    let stood_down = state(alive, |s| {
        s["stood_down"] = "Docker's ip6tables is on".into()
    });
    let (code, text) = status("state-stood-down.json", &stood_down, &[]);
    assert_eq!(code, Some(3), "{text}");

    let hung = state(alive, |s| {
        s["loop_at"] = (s["loop_at"].as_u64().unwrap() - 600).into();
        s["updated_at"] = s["loop_at"].clone();
    });
    let (code, text) = status("state-hung.json", &hung, &[]);
    assert_eq!(code, Some(5), "{text}");
    assert!(text.contains("HUNG"), "{text}");
    assert!(!text.contains("docker: connected"), "{text}");

    // A pid no process has (beyond the default pid_max of 2^22).
    let (code, text) = status("state-dead.json", &state(4_999_999, |_| {}), &[]);
    assert_eq!(code, Some(5), "{text}");
    assert!(text.contains("NOT running"), "{text}");
    assert!(!text.contains("docker: connected"), "{text}");

    let (code, text) = status(
        "state-dead-json.json",
        &state(4_999_999, |_| {}),
        &["--json"],
    );
    assert_eq!(code, Some(5), "{text}");
    let json: serde_json::Value = serde_json::from_str(&text).expect("JSON");
    assert_eq!(json["schema_version"], 1);
    assert_eq!(json["health"], "not-running");
    assert_eq!(json["exit_code"], 5);
    assert_eq!(json["state"]["pid"], 4_999_999);
}

/// `reload` signals the daemon and waits for its answer in the state file: 6 when the new
/// configuration was rejected, 0 when accepted. The daemon here is a shell that answers
/// SIGHUP the way the real one does (the generation moves, the error is set or cleared).
#[test]
fn reload_waits_for_the_daemons_answer() {
    for (name, error, expected) in [
        ("rejected", Some("/etc/v6guard/v6guard.yaml:2:1: oops"), 6),
        ("accepted", None, 0),
    ] {
        let path = format!("{}/reload-{name}.json", env!("CARGO_TARGET_TMPDIR"));
        let answer_path = format!("{path}.answer");
        let mut daemon = Command::new("sh")
            .args([
                "-c",
                r#"trap 'cp "$1" "$2"' HUP; while :; do sleep 0.05; done"#,
                "sh",
                &answer_path,
                &path,
            ])
            .spawn()
            .expect("start the stand-in daemon");
        let pid = daemon.id();
        std::fs::write(&path, state(pid, |_| {}).to_string()).expect("write state");
        let answer = state(pid, |s| {
            s["totals"]["reloads"] = 1.into();
            s["reload_error"] = error.into();
        });
        std::fs::write(&answer_path, answer.to_string()).expect("write answer");
        // Let the shell install its trap before the signal comes.
        std::thread::sleep(std::time::Duration::from_millis(300));
        let out = v6guard(&["reload", "--state-file", &path, "--timeout", "10"]);
        let _ = daemon.kill();
        let _ = daemon.wait();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(expected), "{name}: {stderr}");
        if let Some(error) = error {
            assert!(stderr.contains(error), "{stderr}");
        }
    }
    // No daemon at all: 1, at once.
    let dead = write_state("reload-dead.json", &state(4_999_999, |_| {}));
    let out = v6guard(&["reload", "--state-file", &dead, "--timeout", "1"]);
    assert_eq!(out.status.code(), Some(1));
}

/// `render --diff` in a throwaway namespace: nothing to change right after apply; a changed
/// published port is exactly one element removed and one added; no table is the whole script.
#[test]
fn render_diff_shows_what_apply_would_change() {
    let Some(_lock) = common::system_lock() else {
        return;
    };
    let netns = common::Netns::new("v6gt-cli-diff");
    let applied = fixture("lab-snapshot.json");
    let config = empty_config();
    let in_netns = |args: &[&str]| {
        let out = netns.exec(common::v6guard_bin(), args);
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "{args:?}: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    };
    let diff = |snapshot: &str| {
        in_netns(&[
            "render",
            "--diff",
            "--config",
            &config,
            "--snapshot",
            snapshot,
        ])
    };

    let before = diff(&applied);
    assert!(before.contains("apply would replace tables"), "{before}");
    assert!(before.contains("table ip6 v6guard is missing"), "{before}");
    assert!(before.contains("#!/usr/sbin/nft -f"), "{before}");

    in_netns(&["apply", "--config", &config, "--snapshot", &applied]);
    let same = diff(&applied);
    assert!(same.contains("apply would change nothing"), "{same}");
    assert!(!same.contains("element"), "{same}");

    // The first container now publishes port 81 instead of 80.
    let mut changed: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&applied).expect("read")).expect("JSON");
    for port in changed["containers"][0]["ports"]
        .as_array_mut()
        .expect("ports")
    {
        port["container_port"] = 81.into();
    }
    let changed = temp("diff-snapshot.json", &changed.to_string());
    let elements = diff(&changed);
    assert!(
        elements.contains("delete element ip6 v6guard published { fd76:6700:0:20::2 . tcp . 80 }"),
        "{elements}"
    );
    assert!(
        elements.contains("add element ip6 v6guard published { fd76:6700:0:20::2 . tcp . 81 }"),
        "{elements}"
    );
    assert!(
        !elements.contains("#!/usr/sbin/nft -f"),
        "only elements: {elements}"
    );

    // 130 more containers publishing a port each: `published` outgrows its capacity, so apply
    // replaces the table with a larger size, and the diff says so.
    let mut grown: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&applied).expect("read")).expect("JSON");
    let template = grown["containers"][0].clone();
    let containers = grown["containers"].as_array_mut().expect("containers");
    for i in 0..130u16 {
        let mut c = template.clone();
        c["id"] = format!("{i:012x}{}", "c".repeat(52)).into();
        c["name"] = format!("zz-grown{i:03}").into();
        c["endpoints"][0]["ipv6"] = format!("fd76:6700:0:20::{:x}", 0x100 + i).into();
        for port in c["ports"].as_array_mut().expect("ports") {
            port["host_port"] = (30000 + i).into();
        }
        containers.push(c);
    }
    let grown = temp("diff-grown-snapshot.json", &grown.to_string());
    let resized = diff(&grown);
    assert!(resized.contains("apply would replace tables"), "{resized}");
    assert!(
        resized.contains(
            "#   set published goes from 1 to 131 elements: its size changes from 256 to 512"
        ),
        "{resized}"
    );
    assert!(resized.contains("\t\tsize 512\n"), "{resized}");
}

/// `cleanup` removes the tables and the NDP proxy entries v6guard's `ndp_proxy` policy added,
/// says what it removed, and leaves a hand-made entry outside the network's subnet alone.
#[test]
fn cleanup_removes_v6guards_ndp_proxy_entries_and_says_so() {
    use common::{Container, Netns, Network, run_ok, v6guard_ok};
    let Some(_lock) = common::system_lock() else {
        return;
    };
    let _table = common::TableGuard::clean();
    const UPLINK: &str = "v6gt-cl-h";
    let lan = Netns::with_uplink("v6gt-cl-lan", UPLINK, "v6gt-cl-n");
    let net = Network::create("v6gt-cl-ndp", "2001:db8:78:0:8000::/66", &[]);
    let web = Container::web("v6gt-cl-ndp-web", &net.name, &[]);
    let web_v6 = web.ipv6(&net.name);
    let policy = format!("networks:\n  v6gt-cl-ndp:\n    ndp_proxy:\n      interface: {UPLINK}\n");
    let policies = common::policy_dir("cleanup-ndp-policies", &[("10-ndp.yaml", &policy)]);
    let config = empty_config();
    v6guard_ok(&["apply", "--config", &config, "--policies-dir", &policies]);
    let foreign = "2001:db8:78::99";
    run_ok(
        "ip",
        &["-6", "neigh", "add", "proxy", foreign, "dev", UPLINK],
    );
    let entries = || run_ok("ip", &["-6", "neigh", "show", "proxy", "dev", UPLINK]);
    assert!(entries().contains(&web_v6), "{}", entries());

    let said = v6guard_ok(&["cleanup", "--config", &config, "--policies-dir", &policies]);
    assert!(said.contains("removed table ip6 v6guard"), "{said}");
    assert!(said.contains("removed 1 NDP proxy entries"), "{said}");
    let left = entries();
    assert!(!left.contains(&web_v6), "v6guard's entry removed: {left}");
    assert!(left.contains(foreign), "the hand-made entry stays: {left}");
    assert!(common::list_table(None).is_none(), "the table is gone");
    drop(lan);
}

/// The daemon stops with 6 on a broken configuration, before touching anything, so the
/// unit's `RestartPreventExitStatus=6` keeps it from restarting in a loop; the commands that
/// read the configuration say 6 too. (Not `cleanup`: it removes the tables before reading
/// the configuration, so it belongs to the locked system tests.)
#[test]
fn a_broken_configuration_is_exit_6_everywhere_it_is_read() {
    let config = temp("broken-everywhere.yaml", "log_format: logfmt\n");
    let state = format!("{}/never-written.json", env!("CARGO_TARGET_TMPDIR"));
    let _ = std::fs::remove_file(&state);
    for args in [
        vec!["daemon", "--config", &config, "--state-file", &state],
        vec!["apply", "--config", &config],
        vec!["audit", "--config", &config],
        vec!["check-config", "--config", &config, "--offline"],
    ] {
        let out = v6guard(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(6), "{args:?}: {stderr}");
        assert!(
            stderr.contains(&format!("{config}:1:13: log_format")),
            "{args:?}: {stderr}"
        );
    }
    assert!(
        !std::path::Path::new(&state).exists(),
        "the daemon stopped before writing anything"
    );
}
