//! The command line without root or Docker: render from a saved snapshot, and the errors a
//! person meets first.

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
    assert_eq!(v6guard(&["render", "--no-such-flag"]).status.code(), Some(2));
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
    assert!(stderr.contains(&format!("{config}:1:1: resync_intervall")), "{stderr}");

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
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
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
    assert!(stderr.starts_with("v6guard: cannot reach Docker"), "{stderr}");
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
        command.env("JOURNAL_STREAM", format!("{}:{}", meta.dev(), meta.ino() + 1));
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
