//! `v6guard check-config` without root or Docker: rejected files exit 6 with file, line,
//! column and key; valid ones exit 0, and unknown names only warn.

use std::process::{Command, Output};

fn v6guard(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_v6guard"))
        .args(args)
        .env("V6GUARD_LOG", "warn")
        .env_remove("DOCKER_HOST")
        .output()
        .expect("run v6guard")
}

fn fixture(name: &str) -> String {
    format!(
        "{}/tests/fixtures/config/{name}",
        env!("CARGO_MANIFEST_DIR")
    )
}

/// An empty config file, so the host's /etc/v6guard never leaks into a test.
fn no_config() -> String {
    let path = format!("{}/empty-v6guard.yaml", env!("CARGO_TARGET_TMPDIR"));
    std::fs::write(&path, "# defaults\n").expect("write");
    path
}

/// check-config on a policy directory, offline; exit status and stderr.
fn check_policies(dir: &str) -> (Option<i32>, String) {
    let out = v6guard(&[
        "check-config",
        "--config",
        &no_config(),
        "--policies-dir",
        dir,
        "--offline",
    ]);
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_typo_in_a_key_is_rejected_with_its_place() {
    let dir = fixture("typo-key");
    let (code, stderr) = check_policies(&dir);
    assert_eq!(code, Some(6), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "{dir}/10-web.yaml:4:5: networks.v6g-demo.iccc: unknown key (did you mean icc?); \
             expected one of icc, nat66, snat_address, ndp_proxy, gateway_mode"
        )),
        "{stderr}"
    );
}

#[test]
fn a_prefix_of_129_bits_is_rejected_with_its_place() {
    let dir = fixture("prefix-129");
    let (code, stderr) = check_policies(&dir);
    assert_eq!(code, Some(6), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "{dir}/10-web.yaml:5:9: containers.v6g-demo-web1.allow_from[1]: `2001:db8::/129` has \
             prefix length 129, over 128"
        )),
        "{stderr}"
    );
}

#[test]
fn a_bad_port_is_rejected_with_its_place() {
    let dir = fixture("bad-port");
    let (code, stderr) = check_policies(&dir);
    assert_eq!(code, Some(6), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "{dir}/30-db.yaml:3:24: containers.db.deny[1]: `65536/tcp` has port 65536, outside 1 \
             to 65535"
        )),
        "{stderr}"
    );
}

#[test]
fn a_bad_config_file_reports_every_error() {
    let path = fixture("bad-config.yaml");
    let out = v6guard(&[
        "check-config",
        "--config",
        &path,
        "--policies-dir",
        &fixture("valid"),
        "--offline",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(6), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "{path}:2:1: resync_intervall: unknown key (did you mean resync_interval?)"
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "{path}:3:17: metrics_listen: `[::1]:99999` is not an address and port"
        )),
        "{stderr}"
    );
    assert!(stderr.contains("2 error(s)"), "{stderr}");
}

#[test]
fn an_explicit_config_that_does_not_exist_is_an_error() {
    let out = v6guard(&[
        "check-config",
        "--config",
        "/nonexistent/v6guard.yaml",
        "--offline",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(6), "{stderr}");
    assert!(
        stderr.contains("/nonexistent/v6guard.yaml: cannot read: "),
        "{stderr}"
    );
}

#[test]
fn a_valid_directory_passes_and_unknown_names_only_warn() {
    let out = v6guard(&[
        "check-config",
        "--config",
        &fixture("valid.yaml"),
        "--policies-dir",
        &fixture("valid"),
        "--snapshot",
        &format!(
            "{}/tests/fixtures/lab-snapshot.json",
            env!("CARGO_MANIFEST_DIR")
        ),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("configuration OK: 2 network and 2 container policies"),
        "{stdout}"
    );
    let dir = fixture("valid");
    assert!(
        stderr.contains(&format!(
            "warning: {dir}/20-more.yml:2:3: networks.v6g-dmeo: no Docker bridge network has this \
             name (did you mean v6g-demo?)"
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "warning: {dir}/10-web.yaml:8:3: containers.v6g-demo-web3: no running container has \
             this name (did you mean v6g-demo-web1?)"
        )),
        "{stderr}"
    );
    assert!(!stderr.contains("v6g-demo-web1:"), "{stderr}");
}

#[test]
fn unreachable_docker_skips_the_name_checks_with_a_note() {
    // valid.yaml points docker_host at a socket that does not exist.
    let out = v6guard(&[
        "check-config",
        "--config",
        &fixture("valid.yaml"),
        "--policies-dir",
        &fixture("valid"),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("note: names not checked against Docker: cannot reach Docker at unix:///nonexistent/docker.sock"),
        "{stderr}"
    );
}

#[test]
fn the_example_policies_pass() {
    let dir = format!("{}/policies", env!("CARGO_MANIFEST_DIR"));
    let (code, stderr) = check_policies(&dir);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(!stderr.contains("error"), "{stderr}");
}

/// `--format json` (and its alias `--json`): the same errors as data, each with file, line,
/// column and key, and the schema version; exit 6 all the same.
#[test]
fn check_config_json_locates_every_error() {
    let dir = fixture("typo-key");
    let config = no_config();
    for format in [&["--format", "json"][..], &["--json"][..]] {
        let mut args = vec![
            "check-config",
            "--config",
            &config,
            "--policies-dir",
            &dir,
            "--offline",
        ];
        args.extend_from_slice(format);
        let out = v6guard(&args);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(6), "{stdout}");
        let json: serde_json::Value = serde_json::from_str(&stdout).expect("JSON on stdout");
        assert_eq!(json["schema_version"], 1);
        assert_eq!(json["valid"], false);
        let error = &json["errors"][0];
        assert_eq!(error["file"], format!("{dir}/10-web.yaml"), "{error}");
        assert_eq!(error["line"], 4, "{error}");
        assert_eq!(error["column"], 5, "{error}");
        assert_eq!(error["key"], "networks.v6g-demo.iccc", "{error}");
        assert_eq!(json["errors"].as_array().map(Vec::len), Some(1), "{json}");
    }
}

#[test]
fn check_config_json_says_valid() {
    let out = v6guard(&[
        "check-config",
        "--config",
        &no_config(),
        "--policies-dir",
        &fixture("valid"),
        "--offline",
        "--format",
        "json",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    let json: serde_json::Value = serde_json::from_str(&stdout).expect("JSON on stdout");
    assert_eq!(json["valid"], true, "{json}");
    assert_eq!(json["errors"], serde_json::json!([]), "{json}");
    assert!(json["network_policies"].as_u64().is_some(), "{json}");
}
