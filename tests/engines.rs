//! The engine under test (scripts/test.sh's `V6G_ENGINE`) is the one v6guard reads, and its
//! settings are read where that dockerd reads them: Debian 13's dockerd runs in its own root, so
//! its /etc/docker/daemon.json is the file under its own root, not the host's.

mod common;

use common::*;

#[test]
fn settings_are_read_where_the_engine_reads_them() {
    let Some(_lock) = system_lock() else { return };
    let snapshot: serde_json::Value =
        serde_json::from_str(&v6guard_ok(&["snapshot"])).expect("snapshot is JSON");
    let version = snapshot["engine"]["version"].as_str().unwrap_or_default();
    let expected = if engine() == "26" { "26.1.5" } else { "20.10." };
    assert!(version.starts_with(expected), "engine {version}");

    let icc = &snapshot["daemon"]["icc"];
    assert_eq!(icc["value"], false, "the lab's icc: false, {icc}");
    let source = icc["source"]["at"].as_str().expect("read from a file");
    let read = std::fs::read_to_string(source).expect("the file v6guard names");
    let lab = std::fs::read_to_string(lab_daemon_json()).expect("the lab's daemon.json");
    assert_eq!(read, lab, "{source} is the lab's daemon.json");
    if engine() == "26" {
        assert!(
            source.starts_with("/proc/") && source.ends_with("/root/etc/docker/daemon.json"),
            "read under dockerd's own root: {source}"
        );
    } else {
        assert_eq!(source, "/run/v6guard-lab/daemon.json");
    }
}
