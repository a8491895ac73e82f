//! Tests of the status: histogram, metrics, health, heartbeat, reload answers.

use super::*;

#[test]
fn histogram_is_cumulative() {
    let mut h = Histogram::default();
    h.observe(Duration::from_micros(800));
    h.observe(Duration::from_millis(30));
    assert_eq!(h.counts[0], 1, "le 1 ms");
    assert_eq!(h.counts[5], 2, "le 50 ms");
    assert_eq!(h.count, 2);
}

#[test]
fn metrics_name_the_essentials_and_the_state_file_round_trips() {
    let mut status = Status {
        pid: 7,
        ..Status::default()
    };
    status.totals.full_transactions = 2;
    status.latencies.observe(Duration::from_millis(3));
    let text = status.metrics();
    for needle in [
        "v6guard_transactions_total{kind=\"full\"} 2",
        "v6guard_event_to_enforced_seconds_bucket{le=\"0.005\"} 1",
        "v6guard_set_elements 0",
        "v6guard_enforced 0",
        "v6guard_build_info{version=",
    ] {
        assert!(text.contains(needle), "{needle} in\n{text}");
    }
    let path = std::env::temp_dir().join(format!("v6guard-status-{}.json", std::process::id()));
    status.write(&path).unwrap();
    let back = Status::read(&path).unwrap();
    assert_eq!(back.pid, 7);
    assert_eq!(back.totals.full_transactions, 2);
    let _ = std::fs::remove_file(path);
    assert!(back.summary(unix_now(), true).contains("running (pid 7"));
}

fn enforcing_at(now_s: u64) -> Status {
    let mut status = Status {
        pid: 7,
        started_at: now_s - 100,
        updated_at: now_s - 5,
        loop_at: now_s - 5,
        stale_after_s: 70,
        ..Status::default()
    };
    status.docker.connected = true;
    status.note_reconcile(ReconcileRecord {
        at_ms: (now_s - 5) * 1000,
        result: "unchanged".into(),
        ..Default::default()
    });
    status
}

#[test]
fn a_loop_silent_past_its_deadline_is_hung_and_its_docker_view_is_not_shown_as_fact() {
    let now = Duration::from_secs(1_000_000);
    let status = enforcing_at(now.as_secs());
    assert_eq!(status.health(now, true), Health::Enforcing);
    let later = now + Duration::from_secs(100);
    assert_eq!(status.health(later, true), Health::Hung);
    let text = status.summary(later, true);
    assert!(text.contains("HUNG"), "{text}");
    assert!(!text.contains("docker: connected"), "{text}");
    assert!(
        text.contains("docker: unknown (connected when last reported"),
        "{text}"
    );
    let dead = status.summary(now, false);
    assert!(dead.contains("NOT running"), "{dead}");
    assert!(!dead.contains("docker: connected"), "{dead}");
    assert_eq!(status.health(now, false), Health::NotRunning);
}

#[test]
fn health_follows_the_last_reconcile_and_the_connection() {
    let now = Duration::from_secs(1_000_000);
    let mut status = enforcing_at(now.as_secs());
    status.docker.connected = false;
    assert_eq!(status.health(now, true), Health::Disconnected);
    assert!(!status.enforced());
    status.docker.connected = true;
    status.note_reconcile(ReconcileRecord {
        result: "error".into(),
        ..Default::default()
    });
    assert_eq!(status.health(now, true), Health::Failing);
    assert!(
        status.last_success_ms.is_some(),
        "the earlier success is kept"
    );
    status.stood_down = Some("ip6tables".into());
    assert_eq!(status.health(now, true), Health::StoodDown);
}

#[test]
fn reloads_count_generations_and_failures() {
    let mut status = Status::default();
    status.note_reload(Err("bad.yaml:1:1: oops".into()));
    assert_eq!(
        (status.totals.reloads, status.totals.reload_failures),
        (1, 1)
    );
    assert!(status.reload_error.is_some());
    status.note_reload(Ok(()));
    assert_eq!(
        (status.totals.reloads, status.totals.reload_failures),
        (2, 1)
    );
    assert!(status.reload_error.is_none());
    assert!(
        status
            .metrics()
            .contains("v6guard_config_reload_failures_total 1")
    );
}

#[test]
fn the_heartbeat_writes_at_most_once_per_interval() {
    let mut status = Status::default();
    let every = Duration::from_secs(10);
    assert!(status.beat(Duration::from_secs(100), every));
    assert!(!status.beat(Duration::from_secs(105), every));
    assert!(status.beat(Duration::from_secs(110), every));
    assert_eq!(status.loop_at, 110);
}

#[test]
fn staleness_allows_the_loop_its_longest_steps_and_the_watchdog() {
    let verify = Duration::from_secs(10);
    assert_eq!(stale_after(verify, None), Duration::from_secs(70));
    assert_eq!(
        stale_after(verify, Some(Duration::from_secs(60))),
        Duration::from_secs(120)
    );
}
