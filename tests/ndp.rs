//! NDP proxying with real neighbour discovery: a LAN namespace whose on-link /64 contains the
//! Docker network's /66 cannot reach a container until v6guard answers for it on the uplink.

mod common;

use std::time::Duration;

use common::*;

const READY: Duration = Duration::from_secs(30);
const LAN: &str = "v6gt-ndp-lan";
const UPLINK: &str = "v6gt-ndp-h";

/// The LAN: its hosts see 2001:db8:77::/64 as on-link, with no route to the Docker host.
fn lan() -> Netns {
    let lan = Netns::with_uplink(LAN, UPLINK, "v6gt-ndp-n");
    run_ok(
        "ip",
        &[
            "-6",
            "addr",
            "add",
            "2001:db8:77::1/64",
            "dev",
            UPLINK,
            "nodad",
        ],
    );
    for args in [
        vec!["link", "set", "lo", "up"],
        vec![
            "-6",
            "addr",
            "add",
            "2001:db8:77::2/64",
            "dev",
            "v6gt-ndp-n",
            "nodad",
        ],
        vec!["link", "set", "v6gt-ndp-n", "up"],
    ] {
        let out = lan.exec("ip", &args);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    lan
}

fn lan_connects(lan: &Netns, address: &str, port: u16) -> bool {
    lan.exec("nc", &["-z", "-w", "2", address, &port.to_string()])
        .status
        .success()
}

/// A policy directory that proxies the test network on the uplink.
fn ndp_policies(name: &str) -> String {
    let policy = format!("networks:\n  v6gt-ndp:\n    ndp_proxy:\n      interface: {UPLINK}\n");
    policy_dir(name, &[("10-ndp.yaml", &policy)])
}

fn proxy_entries() -> String {
    run_ok("ip", &["-6", "neigh", "show", "proxy"])
}

#[test]
fn ndp_proxy_makes_containers_reachable_from_a_lan_that_cannot_route_docker() {
    let Some(_lock) = system_lock() else { return };
    let _table = TableGuard::clean();
    let lan = lan();
    let net = Network::create("v6gt-ndp", "2001:db8:77:0:8000::/66", &[]);
    let web = Container::web("v6gt-ndp-web", &net.name, &["-p", "18480:80"]);
    let web_v6 = web.ipv6(&net.name);
    assert!(
        eventually(READY, || host_connects(&web_v6, 80)),
        "the container is up"
    );
    assert!(
        !lan_connects(&lan, &web_v6, 80),
        "before: nobody answers neighbour solicitations for the container on the LAN"
    );

    let policies = ndp_policies("ndp-policies");
    let policies = policies.as_str();

    let rendered = v6guard_ok(&["render", "--policies-dir", policies]);
    assert!(
        rendered.contains(&format!("ip -6 neigh replace proxy {web_v6} dev {UPLINK}")),
        "render says what apply will do:\n{rendered}"
    );
    v6guard_ok(&["apply", "--policies-dir", policies]);
    assert!(proxy_entries().contains(&web_v6), "{}", proxy_entries());
    assert!(
        eventually(READY, || lan_connects(&lan, &web_v6, 80)),
        "the LAN reaches the published port"
    );
    assert!(
        !lan_connects(&lan, &web_v6, 81),
        "and only that: the filter still applies"
    );

    drop(web);
    v6guard_ok(&["apply", "--policies-dir", policies]);
    assert!(
        !proxy_entries().contains(&web_v6),
        "the entry goes with its container: {}",
        proxy_entries()
    );
}

/// The daemon keeps the entries as containers come and go.
#[test]
fn the_daemon_keeps_ndp_proxy_entries_in_step_with_containers() {
    let Some(_lock) = system_lock() else { return };
    let _table = TableGuard::clean();
    let _lan = lan();
    let net = Network::create("v6gt-ndp", "2001:db8:77:0:8000::/66", &[]);
    let policies = ndp_policies("ndp-daemon-policies");
    let tmp = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"));
    let state = tmp.join("ndp-daemon.json");
    let log_file = tmp.join("ndp-daemon.log");
    let log = std::fs::File::create(&log_file).expect("daemon log file");
    let daemon_log = || std::fs::read_to_string(&log_file).unwrap_or_default();
    let daemon = DaemonProcess(
        std::process::Command::new(v6guard_bin())
            .args(["daemon", "--policies-dir", &policies])
            .args(["--state-file", state.to_str().expect("utf-8")])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start the daemon"),
    );

    let web = Container::web("v6gt-ndp-web", &net.name, &["-p", "18481:80"]);
    let web_v6 = web.ipv6(&net.name);
    assert!(
        eventually(READY, || proxy_entries().contains(&web_v6)),
        "the daemon adds the entry for a new container: {}\n{}",
        proxy_entries(),
        daemon_log()
    );
    drop(web);
    assert!(
        eventually(READY, || !proxy_entries().contains(&web_v6)),
        "and removes it when the container goes: {}\n{}",
        proxy_entries(),
        daemon_log()
    );
    drop(daemon);
}

/// Kills the daemon on drop, so a failing test does not leave it running.
struct DaemonProcess(std::process::Child);

impl Drop for DaemonProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
