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
