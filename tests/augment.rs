//! Augment mode on a real dockerd that firewalls IPv6 itself (`ip6tables: true`): Docker
//! publishes ports, a v6guard `deny` or `allow_from` policy narrows them over IPv6, Docker's
//! own IPv4 and IPv6 behaviour is otherwise unchanged, and removing v6guard leaves Docker's
//! rules exactly as they were.
//!
//! Docker's ip6tables rules outlive dockerd (nothing removes them when it stops or switches
//! `ip6tables` off), so the lab dockerd runs for this test inside a throwaway network
//! namespace ("the host" below), with an "outside" namespace routed through it: everything
//! Docker and v6guard write there goes away with the namespace. Runs against the engine
//! scripts/test.sh selects (Docker 26.1.5 is the one the issue names; 20.10 takes
//! `ip6tables` with `experimental`, as the lab sets it).

mod common;

use common::*;

const HOST_NS: &str = "v6gt-aug-host";
const OUTSIDE_NS: &str = "v6gt-aug-out";
const HOST_IF: &str = "v6gt-aug-h";
const OUTSIDE_IF: &str = "v6gt-aug-o";
const NETWORK: &str = "v6gt-aug";
const SUBNET: &str = "fd76:6700:0:60::/64";
const WEB: &str = "v6gt-aug-web";

/// The lab dockerd restarted inside `HOST_NS` with `ip6tables: true`, and an outside namespace
/// routed through it. Dropped: dockerd back in the host's namespace as the lab runs it, both
/// namespaces removed.
struct AugmentLab {
    _host: Netns,
    outside: Netns,
}

impl AugmentLab {
    fn up() -> AugmentLab {
        let host = Netns::new(HOST_NS);
        let outside = Netns::new(OUTSIDE_NS);
        let lab = AugmentLab {
            _host: host,
            outside,
        };
        let _ = run("ip", &["link", "del", HOST_IF]);
        run_ok(
            "ip",
            &[
                "link", "add", HOST_IF, "netns", HOST_NS, "type", "veth", "peer", "name",
                OUTSIDE_IF, "netns", OUTSIDE_NS,
            ],
        );
        let setup = [
            (HOST_NS, vec!["link", "set", "lo", "up"]),
            (
                HOST_NS,
                vec![
                    "-6",
                    "addr",
                    "add",
                    "2001:db8:76::1/64",
                    "dev",
                    HOST_IF,
                    "nodad",
                ],
            ),
            (
                HOST_NS,
                vec!["-4", "addr", "add", "198.51.100.1/24", "dev", HOST_IF],
            ),
            (HOST_NS, vec!["link", "set", HOST_IF, "up"]),
            (OUTSIDE_NS, vec!["link", "set", "lo", "up"]),
            (
                OUTSIDE_NS,
                vec![
                    "-6",
                    "addr",
                    "add",
                    "2001:db8:76::2/64",
                    "dev",
                    OUTSIDE_IF,
                    "nodad",
                ],
            ),
            (
                OUTSIDE_NS,
                vec!["-4", "addr", "add", "198.51.100.2/24", "dev", OUTSIDE_IF],
            ),
            (OUTSIDE_NS, vec!["link", "set", OUTSIDE_IF, "up"]),
            (
                OUTSIDE_NS,
                vec!["-6", "route", "add", "default", "via", "2001:db8:76::1"],
            ),
            (
                OUTSIDE_NS,
                vec!["-4", "route", "add", "default", "via", "198.51.100.1"],
            ),
        ];
        for (ns, args) in setup {
            let mut all = vec!["-n", ns];
            all.extend(args);
            run_ok("ip", &all);
        }
        lib_sh(&format!(
            "V6G_IP6TABLES=true V6G_DOCKERD_NETNS={HOST_NS} v6g_restart_dockerd"
        ));
        lab
    }

    /// Whether a TCP connection from the outside namespace to `address`:`port` succeeds.
    fn reaches(&self, address: &str, port: u16) -> bool {
        tcp_probe("ip", &["netns", "exec", &self.outside.name], address, port)
    }

    /// v6guard, run in the host namespace.
    fn v6guard(&self, args: &[&str]) -> String {
        let mut all = vec!["netns", "exec", HOST_NS, v6guard_bin()];
        all.extend(args);
        run_ok("ip", &all)
    }

    /// Run `v6guard daemon` in the host namespace with `policies`: wait until it has read
    /// Docker and reconciled, run `check` while it runs, then stop it with SIGTERM (exit 0).
    fn daemon_keeps(&self, policies: &str, check: impl FnOnce()) {
        let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"));
        let (state, log) = (
            dir.join("augment-daemon.json"),
            dir.join("augment-daemon.log"),
        );
        let _ = std::fs::remove_file(&state);
        let log_file = std::fs::File::create(&log).expect("daemon log");
        let mut daemon = std::process::Command::new("ip")
            .args(["netns", "exec", HOST_NS, v6guard_bin(), "daemon"])
            .args(["--policies-dir", policies, "--state-file"])
            .arg(&state)
            .stderr(log_file)
            .spawn()
            .expect("start v6guard daemon");
        let read_log = || std::fs::read_to_string(&log).unwrap_or_default();
        let reconciled = eventually(std::time::Duration::from_secs(30), || {
            let now: serde_json::Value = std::fs::read_to_string(&state)
                .ok()
                .and_then(|t| serde_json::from_str(&t).ok())
                .unwrap_or_default();
            now["docker"]["connected"] == true
                && matches!(
                    now["last_reconcile"]["result"].as_str(),
                    Some("applied" | "unchanged")
                )
        });
        let running = daemon.try_wait().expect("daemon status").is_none();
        if !(reconciled && running) {
            let _ = daemon.kill();
            let _ = daemon.wait();
            panic!(
                "the daemon did not reconcile in augment mode:\n{}",
                read_log()
            );
        }
        check();
        // `ip netns exec` execs the daemon: the child is the daemon.
        // SAFETY: signalling our own child process.
        unsafe { libc::kill(daemon.id() as libc::pid_t, libc::SIGTERM) };
        let status = daemon.wait().expect("wait for the daemon");
        assert!(status.success(), "{status}:\n{}", read_log());
    }

    /// Every table but v6guard's in the host namespace (Docker's iptables-nft tables), with
    /// counters blanked.
    fn docker_rules(&self) -> String {
        let listing = run_ok("ip", &["netns", "exec", HOST_NS, "nft", "list", "ruleset"]);
        let mut kept = Vec::new();
        let mut keep = true;
        for line in listing.lines() {
            if line.starts_with("table ") {
                let name = line.split_whitespace().nth(2).unwrap_or_default();
                keep = !name.starts_with("v6guard");
            }
            if keep {
                kept.push(line);
            }
        }
        kept.iter()
            .map(|line| without_counters(line))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for AugmentLab {
    fn drop(&mut self) {
        // Containers and networks are dropped first (declared later); then the lab dockerd
        // goes back to the host's namespace with ip6tables off.
        let lib = repo_root().join("scripts/lib.sh");
        let _ = run(
            "bash",
            &["-c", &format!(". {} && v6g_restart_dockerd", lib.display())],
        );
    }
}

/// A listing line with `counter packets N bytes M` read as `counter` (traffic counts change,
/// rules do not), whitespace collapsed.
fn without_counters(line: &str) -> String {
    let mut words = Vec::new();
    let mut rest = line.split_whitespace();
    while let Some(word) = rest.next() {
        if word == "packets" && words.last() == Some(&"counter") {
            // Skip `N bytes M`.
            rest.nth(2);
            continue;
        }
        words.push(word);
    }
    words.join(" ")
}

/// Which of the probes reach their port from outside, as `address:port open|closed` lines.
fn reach(lab: &AugmentLab, web6: &str, web4: &str) -> Vec<String> {
    let probes = [
        (web6, 80),
        (web6, 81),
        (web6, 82),
        ("2001:db8:76::1", 8080),
        ("2001:db8:76::1", 8081),
        ("198.51.100.1", 8080),
        ("198.51.100.1", 8081),
        (web4, 82),
    ];
    probes
        .iter()
        .map(|(address, port)| {
            let open = lab.reaches(address, *port);
            format!("{address}:{port} {}", if open { "open" } else { "closed" })
        })
        .collect()
}

fn expect(web6: &str, web4: &str, open: &[(&str, u16)]) -> Vec<String> {
    let all = [
        (web6, 80),
        (web6, 81),
        (web6, 82),
        ("2001:db8:76::1", 8080),
        ("2001:db8:76::1", 8081),
        ("198.51.100.1", 8080),
        ("198.51.100.1", 8081),
        (web4, 82),
    ];
    all.iter()
        .map(|probe| {
            let state = if open.contains(probe) {
                "open"
            } else {
                "closed"
            };
            format!("{}:{} {state}", probe.0, probe.1)
        })
        .collect()
}

fn policies(name: &str, yaml: &str) -> String {
    policy_dir(name, &[("web.yaml", yaml)])
}

#[test]
fn augment_mode_narrows_docker_without_touching_it() {
    let Some(_lock) = system_lock() else { return };
    let lab = AugmentLab::up();
    let network = Network::create(NETWORK, SUBNET, &[]);
    let web = Container::run(
        WEB,
        &network.name,
        &["-p", "8080:80", "-p", "8081:81"],
        "httpd -p 80 -h /www && httpd -p 81 -h /www && httpd -f -p 82 -h /www",
    );
    let (web6, web4) = (web.ipv6(NETWORK), web.ipv4(NETWORK));
    assert!(
        eventually(std::time::Duration::from_secs(10), || lab
            .reaches(&web6, 80)),
        "Docker publishes port 80 on the container's IPv6 address"
    );

    // Docker alone, firewalling IPv6 itself: published ports open on both families,
    // unpublished port 82 closed over IPv6 (over IPv4 Docker before 28 routes it to the
    // container's own address: v6guard leaves IPv4 alone, so that stays too).
    let docker_alone = expect(
        &web6,
        &web4,
        &[
            (&web6, 80),
            (&web6, 81),
            ("2001:db8:76::1", 8080),
            ("2001:db8:76::1", 8081),
            ("198.51.100.1", 8080),
            ("198.51.100.1", 8081),
            (&web4, 82),
        ],
    );
    assert_eq!(reach(&lab, &web6, &web4), docker_alone, "Docker alone");
    let docker_rules = lab.docker_rules();

    // deny 80/tcp: closed over IPv6, on the container's address and through Docker's DNAT
    // on the host's; IPv4 and everything else as Docker decides.
    let deny = policies(
        "aug-deny",
        &format!("containers:\n  {WEB}:\n    deny: [\"80/tcp\"]\n"),
    );
    lab.v6guard(&["apply", "--policies-dir", &deny]);
    let table = lab.v6guard(&["render", "--policies-dir", &deny]);
    assert!(
        table.contains("augment-forward") && !has_accept_rule(&table),
        "augment mode, drops only:\n{table}"
    );
    let denied = expect(
        &web6,
        &web4,
        &[
            (&web6, 81),
            ("2001:db8:76::1", 8081),
            ("198.51.100.1", 8080),
            ("198.51.100.1", 8081),
            (&web4, 82),
        ],
    );
    assert_eq!(reach(&lab, &web6, &web4), denied, "deny 80/tcp");
    assert_eq!(lab.docker_rules(), docker_rules, "Docker's rules untouched");

    // The daemon, in augment mode, with a container publishing ports: it reconciles and
    // keeps the deny (its plan cache once panicked on such a host), and stops cleanly.
    lab.daemon_keeps(&deny, || {
        assert_eq!(reach(&lab, &web6, &web4), denied, "deny 80/tcp, daemon");
    });
    assert_eq!(lab.docker_rules(), docker_rules, "Docker's rules untouched");

    // allow_from a prefix the outside is not in: both published ports closed over IPv6.
    let elsewhere = policies(
        "aug-elsewhere",
        &format!("containers:\n  {WEB}:\n    allow_from: [\"2001:db8:99::/64\"]\n"),
    );
    lab.v6guard(&["apply", "--policies-dir", &elsewhere]);
    let restricted = expect(
        &web6,
        &web4,
        &[("198.51.100.1", 8080), ("198.51.100.1", 8081), (&web4, 82)],
    );
    assert_eq!(
        reach(&lab, &web6, &web4),
        restricted,
        "allow_from elsewhere"
    );

    // allow_from the outside's prefix: as Docker alone (never wider: 82 stays closed).
    let outside = policies(
        "aug-outside",
        &format!("containers:\n  {WEB}:\n    allow_from: [\"2001:db8:76::/64\"]\n"),
    );
    lab.v6guard(&["apply", "--policies-dir", &outside]);
    assert_eq!(
        reach(&lab, &web6, &web4),
        docker_alone,
        "allow_from outside"
    );

    // Removing v6guard: Docker's behaviour and rules exactly as before.
    lab.v6guard(&["cleanup"]);
    assert_eq!(reach(&lab, &web6, &web4), docker_alone, "after cleanup");
    assert_eq!(
        lab.docker_rules(),
        docker_rules,
        "Docker's rules as they were"
    );
    drop(web);
    drop(network);
}
