//! Migrating from docker-ipv6nat, against the real host (docs/migrating-from-docker-ipv6nat.md):
//! docker-ipv6nat's ip6tables chains present and its container running -> `audit`,
//! `check-config` and the daemon's start log warn and explain -> chains removed and the
//! container gone -> v6guard applies and nothing is left to warn about.
//!
//! The test creates, in the host's ip6tables `filter` table only, the two chains
//! docker-ipv6nat creates there (`DOCKER`, `DOCKER-ISOLATION`), with rules like its own but no
//! jump to them from `FORWARD`, so no packet passes them. It refuses to start if either chain
//! exists already (Docker's own, or a real docker-ipv6nat), and a guard removes them (and the
//! ip6 `filter` table, when the test created it) even when an assertion fails. The
//! "container" is the lab image tagged `robbertkl/ipv6nat:v6guard-test`, sleeping with no
//! network.

mod common;

use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::*;

const CHAINS: [&str; 2] = ["DOCKER", "DOCKER-ISOLATION"];
const FAKE_IMAGE: &str = "robbertkl/ipv6nat:v6guard-test";
const FAKE_CONTAINER: &str = "v6g-ipv6nat";

fn ip6tables(args: &[&str]) -> Output {
    run("ip6tables", args)
}

fn chain_exists(chain: &str) -> bool {
    ip6tables(&["-t", "filter", "-S", chain]).status.success()
}

fn filter_table_exists() -> bool {
    run("nft", &["list", "table", "ip6", "filter"])
        .status
        .success()
}

/// Removes what the test created, in its own order, even on failure.
struct Ipv6natLeftovers {
    table_was_there: bool,
}

impl Ipv6natLeftovers {
    fn remove_chains(&self) {
        for chain in CHAINS {
            let _ = ip6tables(&["-t", "filter", "-F", chain]);
        }
        for chain in CHAINS {
            let _ = ip6tables(&["-t", "filter", "-X", chain]);
        }
        // ip6tables-nft created `table ip6 filter` (with its base chains) for the chains: an
        // empty one left behind would be another tool's forward chain for every later audit.
        if !self.table_was_there {
            let rules = run_ok("ip6tables", &["-t", "filter", "-S"]);
            if rules
                .lines()
                .all(|l| l.starts_with("-P ") && l.ends_with(" ACCEPT"))
            {
                let _ = run("nft", &["delete", "table", "ip6", "filter"]);
            }
        }
    }
}

impl Drop for Ipv6natLeftovers {
    fn drop(&mut self) {
        self.remove_chains();
        let _ = run(DOCKER, &["rm", "-f", FAKE_CONTAINER]);
        let _ = run(DOCKER, &["rmi", FAKE_IMAGE]);
    }
}

fn audit_json() -> (Option<i32>, serde_json::Value) {
    let out = v6guard(&["audit", "--format", "json"]);
    let report = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "audit --format json is not JSON ({e}):\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code(), report)
}

fn ipv6nat_hazard(report: &serde_json::Value) -> Option<serde_json::Value> {
    report["hazards"]
        .as_array()
        .expect("hazards")
        .iter()
        .find(|h| h["kind"] == "docker_ipv6nat")
        .cloned()
}

fn check_config_stderr(dir: &std::path::Path) -> String {
    let out = v6guard(&[
        "check-config",
        "--config",
        &dir.join("v6guard.yaml").display().to_string(),
        "--policies-dir",
        &dir.join("policies").display().to_string(),
    ]);
    assert!(out.status.success(), "check-config failed: {out:?}");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The first seconds of a daemon's log: it warns at start, then is stopped.
fn daemon_start_log(dir: &std::path::Path) -> String {
    let log_path = dir.join("daemon.log");
    let log = std::fs::File::create(&log_path).expect("log");
    let mut child = Command::new(v6guard_bin())
        .args(["daemon", "--config"])
        .arg(dir.join("v6guard.yaml"))
        .arg("--policies-dir")
        .arg(dir.join("policies"))
        .arg("--state-file")
        .arg(dir.join("state.json"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start the daemon");
    let read = || std::fs::read_to_string(&log_path).unwrap_or_default();
    let started = eventually(Duration::from_secs(20), || dir.join("state.json").exists());
    // SAFETY: signalling our own child process.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let _ = child.wait();
    assert!(started, "the daemon did not start:\n{}", read());
    read()
}

#[test]
fn migration_from_docker_ipv6nat_is_detected_explained_and_ends_clean() {
    let Some(_lock) = system_lock() else { return };
    for chain in CHAINS {
        assert!(
            !chain_exists(chain),
            "ip6tables filter chain {chain} exists already (Docker's ip6tables or a real \
             docker-ipv6nat): this test creates and removes it, so it does not run here"
        );
    }
    let _tables = TableGuard::clean();
    let leftovers = Ipv6natLeftovers {
        table_was_there: filter_table_exists(),
    };
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("docker-ipv6nat");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("policies")).expect("scratch");
    std::fs::write(dir.join("v6guard.yaml"), "").expect("config");

    // 1. docker-ipv6nat's state: its chains with rules like its own, and its container.
    for chain in CHAINS {
        run_ok("ip6tables", &["-t", "filter", "-N", chain]);
    }
    run_ok(
        "ip6tables",
        &["-t", "filter", "-A", "DOCKER-ISOLATION", "-j", "RETURN"],
    );
    run_ok(
        "ip6tables",
        &[
            "-t",
            "filter",
            "-A",
            "DOCKER",
            "-d",
            "fd00:6b8:12::2/128",
            "!",
            "-i",
            "br-v6gipv6nat",
            "-o",
            "br-v6gipv6nat",
            "-p",
            "tcp",
            "-m",
            "tcp",
            "--dport",
            "80",
            "-j",
            "ACCEPT",
        ],
    );
    docker(&["tag", IMAGE, FAKE_IMAGE]);
    let _ = run(DOCKER, &["rm", "-f", FAKE_CONTAINER]);
    docker(&[
        "run",
        "-d",
        "--name",
        FAKE_CONTAINER,
        "--network",
        "none",
        FAKE_IMAGE,
        "sleep",
        "600",
    ]);

    // 2. v6guard warns and explains, in audit, check-config and the daemon's start log.
    let (code, report) = audit_json();
    let hazard = ipv6nat_hazard(&report)
        .unwrap_or_else(|| panic!("no docker_ipv6nat hazard: {:#}", report["hazards"]));
    let message = hazard["message"].as_str().unwrap_or_default();
    let fix = hazard["fix"].as_str().unwrap_or_default();
    for words in [
        "ip6 filter DOCKER-ISOLATION",
        "ip6 filter DOCKER,",
        &format!("{FAKE_CONTAINER} ({FAKE_IMAGE})"),
    ] {
        assert!(message.contains(words), "`{words}` not in: {message}");
    }
    for words in [
        &format!("docker rm -f {FAKE_CONTAINER}"),
        "DOCKER-ISOLATION",
        "migrating-from-docker-ipv6nat.md",
    ] {
        assert!(fix.contains(words), "`{words}` not in the fix: {fix}");
    }
    assert_eq!(code, Some(5), "audit with docker-ipv6nat present");
    assert!(
        report["hazards"]
            .as_array()
            .expect("hazards")
            .iter()
            .all(|h| h["kind"] != "docker_ip6tables"),
        "docker-ipv6nat's chains also reported as Docker's own: {:#}",
        report["hazards"]
    );
    let warned = check_config_stderr(&dir);
    assert!(
        warned.contains("warning: docker-ipv6nat manages")
            && warned.contains(FAKE_CONTAINER)
            && warned.contains("fix: Move to v6guard"),
        "check-config:\n{warned}"
    );
    let log = daemon_start_log(&dir);
    assert!(
        log.contains("docker-ipv6nat manages") && log.contains("DOCKER-ISOLATION"),
        "the daemon's start log:\n{log}"
    );

    // 3. the migration: its container stopped, its chains removed.
    run_ok(DOCKER, &["rm", "-f", FAKE_CONTAINER]);
    leftovers.remove_chains();
    for chain in CHAINS {
        assert!(!chain_exists(chain), "{chain} is still there");
    }

    // 4. clean: v6guard applies, and nothing is left to warn about.
    v6guard_ok(&["apply"]);
    let (_, report) = audit_json();
    assert_eq!(
        ipv6nat_hazard(&report),
        None,
        "docker-ipv6nat still reported after the migration"
    );
    assert!(
        !report["hazards"]
            .as_array()
            .expect("hazards")
            .iter()
            .any(|h| h["kind"] == "foreign_forward_chain" && !leftovers.table_was_there),
        "the test left a forward chain behind: {:#}",
        report["hazards"]
    );
    let quiet = check_config_stderr(&dir);
    assert!(
        !quiet.contains("docker-ipv6nat"),
        "check-config still warns:\n{quiet}"
    );
}
