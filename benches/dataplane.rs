//! The data plane: what v6guard's table costs the packets it filters.
//!
//! Three namespaces joined by veth pairs, client -> router -> server, all made here and
//! deleted at the end (also on panic): the router forwards, and only the router's ruleset
//! changes between setups, so the host's tables are never touched. The router's interface
//! toward the server is named like the bench network's bridge (`br-b0b0b0b0b0b0`) and the
//! server holds bench container 0's address, so the connections are exactly the ones v6guard
//! filters: new connections to a published port of a container, from outside.
//!
//! Setups, measured interleaved (a, b, d, e, f, c, a, b, ...) so that the shared machine's
//! noise falls on all of them alike; the figures to read are the ratios to (a), and (b) to (f):
//! - (a) `none`: no ruleset in the router;
//! - (b) `v6guard`: v6guard's table planned for 10,000 containers x 10 published ports
//!   (100,000 elements in the `published` set), applied in the router;
//! - (d) `v6guard_1`: v6guard's table planned for one container (same rules, 20 elements),
//!   so that (b) / (d) is the cost of the 100,000 elements alone and (d) / (a) that of
//!   being stateful at all (conntrack and the NAT hooks, which any stateful firewall adds);
//! - (e) `stateful`: the floor of any stateful firewall, a table with nothing but a forward
//!   chain accepting `ct state established,related` (and dropping the unpublished port):
//!   every new connection now creates, confirms and later frees a conntrack entry;
//! - (f) `stateful_nat`: (e) plus empty NAT chains at prerouting and postrouting, the floor of
//!   a firewall that translates addresses (DNAT for the host's addresses, NAT66): every new
//!   connection also gets a NAT binding (a null one when no rule translates it);
//! - (c) `docker`: Docker 20.10's own ip6tables rules for 1,000 published ports (a linear
//!   DOCKER chain of per-port ACCEPT rules, the isolation chains, the NAT chain), loaded with
//!   `ip6tables-restore` in the router. The connections go to the last container's port,
//!   the one a packet reaches after walking every other rule.
//!
//! Figures per round: new connections per second (`connect`, then close with a reset so
//! no TIME_WAIT holds the port; every connection is a new conntrack entry in the router),
//! from `V6G_DP_THREADS` client threads (default 4) for `V6G_DP_SECONDS` (default 3), and
//! established TCP throughput (`iperf3`, Debian's, same duration). `V6G_DP_ROUNDS` rounds
//! (default 3). Also checks, in each setup, that an unpublished port is dropped (b to f) or
//! refused (a), so the traffic really passes the rules being measured. Before each setup the
//! router's connection tracking table is flushed (`conntrack -F` there), so no setup inherits
//! the previous one's 100,000 entries or comes near the host-wide limit.
//!
//! Needs root, `ip`, `iperf3`, `ip6tables-restore` and `conntrack`; fails (exit 1) without them.
//! Results go to stdout and, as `key value` lines, to `$BENCH_OUT/dataplane.txt`.

use std::process::{Command, Stdio};
use std::time::Duration;

use v6guard::nft;
use v6guard::plan::{PlanInputs, plan};

mod support;
use support::{BENCH_BRIDGE, bench_snapshot, container_address};

#[path = "dataplane/lab.rs"]
mod lab;
use lab::Lab;

/// A published TCP container port of every bench container (ports 8000..8007 are TCP).
const CONNECT_PORT: u16 = lab::CONNECT_PORT;
const IPERF_PORT: u16 = lab::IPERF_PORT;
/// Docker's rules cover this many containers with one published port each.
const DOCKER_PORTS: usize = 1_000;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Setup {
    None,
    V6guard,
    /// v6guard's table planned for one container: the same rules, stateful hooks and NAT
    /// chains, 20 elements instead of 145,000. (b) against (d) isolates the element count.
    V6guardSmall,
    /// Connection tracking alone: the floor of any stateful firewall.
    Stateful,
    /// Connection tracking and NAT hooks with no rule in them.
    StatefulNat,
    Docker,
}

impl Setup {
    fn name(self) -> &'static str {
        match self {
            Setup::None => "none",
            Setup::V6guard => "v6guard",
            Setup::V6guardSmall => "v6guard_1",
            Setup::Stateful => "stateful",
            Setup::StatefulNat => "stateful_nat",
            Setup::Docker => "docker",
        }
    }
}

fn main() {
    // `cargo bench` passes `--bench`; the filters criterion would take mean nothing here.
    if let Err(error) = run() {
        eprintln!("dataplane bench FAILED: {error}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err("needs root (namespaces, veth, nftables in the router namespace)".into());
    }
    for tool in ["ip", "iperf3", "ip6tables-restore", "conntrack"] {
        if Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .stdout(Stdio::null())
            .status()
            .map(|s| !s.success())
            .unwrap_or(true)
        {
            return Err(format!(
                "`{tool}` is missing (apt-get install iperf3 iptables conntrack)"
            ));
        }
    }
    let rounds = env_number("V6G_DP_ROUNDS", 3);
    let seconds = env_number("V6G_DP_SECONDS", 3) as u64;
    let threads = env_number("V6G_DP_THREADS", 4);

    let lab = Lab::create()?;
    let server = container_address(0);
    let target = container_address(DOCKER_PORTS - 1);
    lab.add_server_address(target)?;

    eprintln!("planning 10,000 containers x 10 published ports ...");
    let ruleset = plan(&bench_snapshot(10_000, 10), &PlanInputs::default());
    let published = ruleset
        .sets
        .iter()
        .find(|s| s.name == "published")
        .map_or(0, |s| s.elements.len());
    eprintln!(
        "v6guard ruleset: {} rules, {} elements ({published} in `published`)",
        ruleset.rule_count(),
        ruleset.element_count()
    );
    let small = plan(&bench_snapshot(1, 10), &PlanInputs::default());
    let docker_rules = docker_ip6tables(DOCKER_PORTS);

    lab.serve(server, target)?;
    let _iperf = lab.iperf_server()?;
    lab.wait_until_routed(server)?;

    let setups = [
        Setup::None,
        Setup::V6guard,
        Setup::V6guardSmall,
        Setup::Stateful,
        Setup::StatefulNat,
        Setup::Docker,
    ];
    let mut rates: Vec<(Setup, f64)> = Vec::new();
    let mut gbits: Vec<(Setup, f64)> = Vec::new();
    for round in 1..=rounds {
        for setup in setups {
            lab.clear()?;
            // Docker's rules send the connections to the last container's port (the end of
            // its linear chain); the others to container 0's. Both are published.
            let dest = match setup {
                Setup::None => server,
                Setup::V6guard => {
                    let ruleset = ruleset.clone();
                    lab.in_router(move || nft::apply(&ruleset).map_err(|e| e.to_string()))?;
                    server
                }
                Setup::V6guardSmall => {
                    let ruleset = small.clone();
                    lab.in_router(move || nft::apply(&ruleset).map_err(|e| e.to_string()))?;
                    server
                }
                Setup::Stateful => {
                    lab.nft(&lab::floor_ruleset(false))?;
                    server
                }
                Setup::StatefulNat => {
                    lab.nft(&lab::floor_ruleset(true))?;
                    server
                }
                Setup::Docker => {
                    lab.ip6tables_restore(&docker_rules)?;
                    target
                }
            };
            lab.check_filtering(setup, dest)?;
            let rate = lab.connection_rate(dest, threads, Duration::from_secs(seconds))?;
            let bits = lab.throughput(dest, seconds)?;
            println!(
                "round {round} {:8} new connections/s {rate:10.0}   throughput {:7.2} Gbit/s",
                setup.name(),
                bits / 1e9
            );
            rates.push((setup, rate));
            gbits.push((setup, bits / 1e9));
        }
    }
    lab.clear()?;

    let mut report = String::new();
    report += &format!(
        "v6guard_rules {}\nv6guard_elements {}\nv6guard_published {published}\ndocker_ports {DOCKER_PORTS}\nrounds {rounds}\nseconds {seconds}\nthreads {threads}\n",
        ruleset.rule_count(),
        ruleset.element_count()
    );
    for (what, values) in [("conn_per_s", &rates), ("gbit_per_s", &gbits)] {
        let base = median(values, Setup::None);
        for setup in setups {
            let m = median(values, setup);
            report += &format!("{what}_{} {m:.2}\n", setup.name());
            report += &format!("{what}_ratio_{} {:.3}\n", setup.name(), m / base);
        }
        // v6guard against the floor of a stateful, translating firewall.
        let floor = median(values, Setup::StatefulNat);
        for setup in [Setup::V6guard, Setup::V6guardSmall] {
            report += &format!(
                "{what}_ratio_{}_to_stateful_nat {:.3}\n",
                setup.name(),
                median(values, setup) / floor
            );
        }
    }
    print!("{report}");
    let out = std::env::var("BENCH_OUT").unwrap_or_else(|_| "target/v6guard-bench".into());
    std::fs::create_dir_all(&out).map_err(|e| format!("create {out}: {e}"))?;
    std::fs::write(format!("{out}/dataplane.txt"), report)
        .map_err(|e| format!("write {out}/dataplane.txt: {e}"))?;
    Ok(())
}

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn median(values: &[(Setup, f64)], setup: Setup) -> f64 {
    let mut of: Vec<f64> = values
        .iter()
        .filter(|(s, _)| *s == setup)
        .map(|(_, v)| *v)
        .collect();
    of.sort_by(f64::total_cmp);
    match of.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => of[n / 2],
        n => (of[n / 2 - 1] + of[n / 2]) / 2.0,
    }
}

/// Docker 20.10's ip6tables rules (`ip6tables: true`, userland proxy off) for `ports`
/// containers on one network, each publishing one TCP port: the filter table's FORWARD jumps
/// and isolation chains and one ACCEPT per port in DOCKER, the nat table's DNAT per port and
/// masquerade, as `ip6tables-save` shows them on such a host.
fn docker_ip6tables(ports: usize) -> String {
    let br = BENCH_BRIDGE;
    let mut filter = format!(
        "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n\
         :DOCKER - [0:0]\n:DOCKER-ISOLATION-STAGE-1 - [0:0]\n:DOCKER-ISOLATION-STAGE-2 - [0:0]\n\
         :DOCKER-USER - [0:0]\n\
         -A FORWARD -j DOCKER-USER\n-A FORWARD -j DOCKER-ISOLATION-STAGE-1\n\
         -A FORWARD -o {br} -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n\
         -A FORWARD -o {br} -j DOCKER\n-A FORWARD -i {br} ! -o {br} -j ACCEPT\n\
         -A FORWARD -i {br} -o {br} -j ACCEPT\n\
         -A FORWARD -o docker0 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n\
         -A FORWARD -o docker0 -j DOCKER\n-A FORWARD -i docker0 ! -o docker0 -j ACCEPT\n\
         -A FORWARD -i docker0 -o docker0 -j ACCEPT\n"
    );
    let mut nat = format!(
        "*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n\
         :POSTROUTING ACCEPT [0:0]\n:DOCKER - [0:0]\n\
         -A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER\n\
         -A OUTPUT ! -d ::1/128 -m addrtype --dst-type LOCAL -j DOCKER\n\
         -A POSTROUTING -s fd76:6700:0:10::/64 ! -o {br} -j MASQUERADE\n\
         -A DOCKER -i {br} -j RETURN\n"
    );
    for index in 0..ports {
        let addr = container_address(index);
        let host_port = 20_000 + index;
        filter += &format!(
            "-A DOCKER -d {addr}/128 ! -i {br} -o {br} -p tcp -m tcp --dport {CONNECT_PORT} -j ACCEPT\n"
        );
        nat += &format!(
            "-A POSTROUTING -s {addr}/128 -d {addr}/128 -p tcp -m tcp --dport {CONNECT_PORT} -j MASQUERADE\n\
             -A DOCKER ! -i {br} -p tcp -m tcp --dport {host_port} -j DNAT --to-destination [{addr}]:{CONNECT_PORT}\n"
        );
    }
    // iperf3's port, published on the connections' target as well.
    let target = container_address(ports - 1);
    filter += &format!(
        "-A DOCKER -d {target}/128 ! -i {br} -o {br} -p tcp -m tcp --dport {IPERF_PORT} -j ACCEPT\n"
    );
    filter += "-A DOCKER-ISOLATION-STAGE-1 -i docker0 ! -o docker0 -j DOCKER-ISOLATION-STAGE-2\n";
    filter +=
        &format!("-A DOCKER-ISOLATION-STAGE-1 -i {br} ! -o {br} -j DOCKER-ISOLATION-STAGE-2\n");
    filter += "-A DOCKER-ISOLATION-STAGE-1 -j RETURN\n";
    filter += "-A DOCKER-ISOLATION-STAGE-2 -o docker0 -j DROP\n";
    filter += &format!("-A DOCKER-ISOLATION-STAGE-2 -o {br} -j DROP\n");
    filter += "-A DOCKER-ISOLATION-STAGE-2 -j RETURN\n-A DOCKER-USER -j RETURN\nCOMMIT\n";
    nat += "COMMIT\n";
    filter + &nat
}
