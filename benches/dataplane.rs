//! The data plane: what v6guard's table costs the packets it filters.
//!
//! Three namespaces joined by veth pairs, client -> router -> server, all made here and
//! deleted at the end (also on panic): the router forwards, and only the router's ruleset
//! changes between setups, so the host's tables are never touched. The router's interface
//! toward the server is named like the bench network's bridge (`br-b0b0b0b0b0b0`) and the
//! server holds bench container 0's address, so the connections are exactly the ones v6guard
//! filters: new connections to a published port of a container, from outside.
//!
//! Setups, measured interleaved (a, b, d, c, a, b, d, c, ...) so that the shared machine's noise
//! falls on all three alike; the figures to read are the ratios to (a):
//! - (a) `none`: no ruleset in the router;
//! - (b) `v6guard`: v6guard's table planned for 10,000 containers x 10 published ports
//!   (100,000 elements in the `published` set), applied in the router;
//! - (d) `v6guard_1`: v6guard's table planned for one container (same rules, 20 elements),
//!   so that (b) / (d) is the cost of the 100,000 elements alone and (d) / (a) that of
//!   being stateful at all (conntrack and the NAT hooks, which any stateful firewall adds);
//! - (c) `docker`: Docker 20.10's own ip6tables rules for 1,000 published ports (a linear
//!   DOCKER chain of per-port ACCEPT rules, the isolation chains, the NAT chain), loaded with
//!   `ip6tables-restore` in the router. The connections go to the last container's port,
//!   the one a packet reaches after walking every other rule.
//!
//! Figures per round: new connections per second (`connect`, then close with a reset so
//! no TIME_WAIT holds the port; every connection is a new conntrack entry in the router),
//! from `V6G_DP_THREADS` client threads (default 4) for `V6G_DP_SECONDS` (default 3), and
//! established TCP throughput (`iperf3`, Debian's, same duration). `V6G_DP_ROUNDS` rounds
//! (default 3). Also checks, in each setup, that an unpublished port is dropped (b, c) or
//! refused (a), so the traffic really passes the rules being measured.
//!
//! Needs root, `ip`, `iperf3` and `ip6tables-restore`; fails (exit 1) without them.
//! Results go to stdout and, as `key value` lines, to `$BENCH_OUT/dataplane.txt`.

use std::fs::File;
use std::io::Write;
use std::net::{Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use v6guard::nft;
use v6guard::plan::{PlanInputs, plan};

mod support;
use support::{BENCH_BRIDGE, bench_snapshot, container_address};

const CLIENT_ADDR: &str = "2001:db8:d0::2";
const CLIENT_GW: &str = "2001:db8:d0::1";
const SERVER_GW: &str = "fd76:6700:0:10::1";
/// A published TCP container port of every bench container (ports 8000..8007 are TCP).
const CONNECT_PORT: u16 = 8000;
const IPERF_PORT: u16 = 8001;
const UNPUBLISHED_PORT: u16 = 9999;
/// Docker's rules cover this many containers with one published port each.
const DOCKER_PORTS: usize = 1_000;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Setup {
    None,
    V6guard,
    /// v6guard's table planned for one container: the same rules, stateful hooks and NAT
    /// chains, 20 elements instead of 145,000. (b) against (d) isolates the element count.
    V6guardSmall,
    Docker,
}

impl Setup {
    fn name(self) -> &'static str {
        match self {
            Setup::None => "none",
            Setup::V6guard => "v6guard",
            Setup::V6guardSmall => "v6guard_1",
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
    for tool in ["ip", "iperf3", "ip6tables-restore"] {
        if Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .stdout(Stdio::null())
            .status()
            .map(|s| !s.success())
            .unwrap_or(true)
        {
            return Err(format!(
                "`{tool}` is missing (apt-get install iperf3 iptables)"
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

/// The three namespaces; dropping it deletes them (and with them the veths and rules).
struct Lab {
    client: String,
    router: String,
    server: String,
}

impl Lab {
    fn create() -> Result<Lab, String> {
        let id = std::process::id();
        let lab = Lab {
            client: format!("v6g-dp-{id}-c"),
            router: format!("v6g-dp-{id}-r"),
            server: format!("v6g-dp-{id}-s"),
        };
        for ns in [&lab.client, &lab.router, &lab.server] {
            cmd("ip", &["netns", "add", ns])?;
        }
        // From here on, Drop removes whatever was made.
        let (c, r, s) = (&lab.client, &lab.router, &lab.server);
        cmd(
            "ip",
            &[
                "-n", r, "link", "add", "cli0", "type", "veth", "peer", "name", "eth0", "netns", c,
            ],
        )?;
        cmd(
            "ip",
            &[
                "-n",
                r,
                "link",
                "add",
                BENCH_BRIDGE,
                "type",
                "veth",
                "peer",
                "name",
                "eth0",
                "netns",
                s,
            ],
        )?;
        let client_net = format!("{CLIENT_ADDR}/64");
        let client_gw = format!("{CLIENT_GW}/64");
        let server_gw = format!("{SERVER_GW}/64");
        let server_net = format!("{}/64", container_address(0));
        for (ns, dev, addr) in [
            (c, "eth0", client_net.as_str()),
            (r, "cli0", client_gw.as_str()),
            (r, BENCH_BRIDGE, server_gw.as_str()),
            (s, "eth0", server_net.as_str()),
        ] {
            cmd("ip", &["-n", ns, "addr", "add", addr, "dev", dev, "nodad"])?;
            cmd("ip", &["-n", ns, "link", "set", dev, "up"])?;
        }
        for ns in [c, r, s] {
            cmd("ip", &["-n", ns, "link", "set", "lo", "up"])?;
        }
        cmd(
            "ip",
            &["-n", c, "-6", "route", "add", "default", "via", CLIENT_GW],
        )?;
        cmd(
            "ip",
            &["-n", s, "-6", "route", "add", "default", "via", SERVER_GW],
        )?;
        sysctl(r, "net.ipv6.conf.all.forwarding=1")?;
        sysctl(c, "net.ipv4.ip_local_port_range=1024 65535")?;
        sysctl(s, "net.core.somaxconn=4096")?;
        sysctl(s, "net.ipv4.tcp_max_syn_backlog=4096")?;
        Ok(lab)
    }

    fn add_server_address(&self, addr: Ipv6Addr) -> Result<(), String> {
        let addr = format!("{addr}/128");
        cmd(
            "ip",
            &[
                "-n",
                &self.server,
                "addr",
                "add",
                &addr,
                "dev",
                "eth0",
                "nodad",
            ],
        )
    }

    fn in_router<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> Result<T, String> + Send + 'static,
    ) -> Result<T, String> {
        in_ns(&self.router, f)
    }

    /// Remove v6guard's table and Docker's ip6tables tables from the router (its own
    /// namespace: nothing else is there).
    fn clear(&self) -> Result<(), String> {
        self.in_router(|| nft::cleanup().map(|_| ()).map_err(|e| e.to_string()))?;
        for table in ["filter", "nat"] {
            // Absent in setups (a) and (b): the error is expected there.
            let _ = Command::new("ip")
                .args([
                    "netns",
                    "exec",
                    &self.router,
                    "nft",
                    "delete",
                    "table",
                    "ip6",
                    table,
                ])
                .stderr(Stdio::null())
                .status();
        }
        Ok(())
    }

    fn ip6tables_restore(&self, rules: &str) -> Result<(), String> {
        let mut child = Command::new("ip")
            .args(["netns", "exec", &self.router, "ip6tables-restore"])
            .stdin(Stdio::piped())
            .spawn()
            .map_err(|e| format!("ip6tables-restore: {e}"))?;
        child
            .stdin
            .take()
            .ok_or("no stdin")?
            .write_all(rules.as_bytes())
            .map_err(|e| format!("ip6tables-restore: {e}"))?;
        let status = child.wait().map_err(|e| e.to_string())?;
        if !status.success() {
            return Err(format!("ip6tables-restore failed ({status})"));
        }
        Ok(())
    }

    /// Accept-and-close listeners on the published port of both server addresses, on
    /// threads in the server namespace (they end with the process).
    fn serve(&self, first: Ipv6Addr, second: Ipv6Addr) -> Result<(), String> {
        for addr in [first, second] {
            let listener = in_ns(&self.server, move || {
                TcpListener::bind(SocketAddr::new(addr.into(), CONNECT_PORT))
                    .map_err(|e| format!("bind [{addr}]:{CONNECT_PORT}: {e}"))
            })?;
            // A deep accept queue (std listens with 128) and two accepting threads: a full
            // queue drops SYNs, and each drop stalls a client for a 1 s retransmission.
            // SAFETY: re-listening on a listening socket only changes its backlog.
            unsafe { libc::listen(listener.as_raw_fd(), 4096) };
            let listener = Arc::new(listener);
            for _ in 0..2 {
                let listener = listener.clone();
                std::thread::spawn(move || {
                    for stream in listener.incoming() {
                        drop(stream);
                    }
                });
            }
        }
        Ok(())
    }

    fn iperf_server(&self) -> Result<KillOnDrop, String> {
        let child = Command::new("ip")
            .args(["netns", "exec", &self.server, "iperf3", "-s", "-p"])
            .arg(IPERF_PORT.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("iperf3 -s: {e}"))?;
        Ok(KillOnDrop(child))
    }

    /// Wait (up to 10 s) until the client reaches the server through the router: fresh veths
    /// drop the first packets while their link-local addresses finish DAD.
    fn wait_until_routed(&self, dest: Ipv6Addr) -> Result<(), String> {
        let target = SocketAddr::new(dest.into(), CONNECT_PORT);
        in_ns(&self.client, move || {
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                match TcpStream::connect_timeout(&target, Duration::from_millis(300)) {
                    Ok(_) => return Ok(()),
                    Err(e) if Instant::now() > deadline => {
                        return Err(format!(
                            "no route from client to [{dest}]:{CONNECT_PORT}: {e}"
                        ));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(100)),
                }
            }
        })
    }

    /// The unpublished port must be dropped where rules are loaded, refused where none are:
    /// proof that the connections pass the ruleset being measured.
    fn check_filtering(&self, setup: Setup, dest: Ipv6Addr) -> Result<(), String> {
        let probe = SocketAddr::new(dest.into(), UNPUBLISHED_PORT);
        let result = in_ns(&self.client, move || {
            Ok(TcpStream::connect_timeout(
                &probe,
                Duration::from_millis(500),
            ))
        })?;
        let dropped = matches!(&result, Err(e) if e.kind() == std::io::ErrorKind::TimedOut);
        let refused =
            matches!(&result, Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused);
        let ok = match setup {
            Setup::None => refused,
            Setup::V6guard | Setup::V6guardSmall | Setup::Docker => dropped,
        };
        if !ok {
            return Err(format!(
                "setup {}: port {UNPUBLISHED_PORT} gave {result:?}; the router's rules are not in the path",
                setup.name()
            ));
        }
        let published = SocketAddr::new(dest.into(), CONNECT_PORT);
        in_ns(&self.client, move || {
            TcpStream::connect_timeout(&published, Duration::from_secs(1))
                .map(drop)
                .map_err(|e| {
                    format!("the published port [{dest}]:{CONNECT_PORT} is not reachable: {e}")
                })
        })
    }

    /// New connections per second from `threads` client threads over `duration`.
    fn connection_rate(
        &self,
        dest: Ipv6Addr,
        threads: usize,
        duration: Duration,
    ) -> Result<f64, String> {
        let count = Arc::new(AtomicU64::new(0));
        let failures = Arc::new(AtomicU64::new(0));
        let start = Instant::now();
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                let (count, failures) = (count.clone(), failures.clone());
                let client = self.client.clone();
                std::thread::spawn(move || {
                    in_ns(&client, move || {
                        let target = SocketAddr::new(dest.into(), CONNECT_PORT);
                        while start.elapsed() < duration {
                            match TcpStream::connect_timeout(&target, Duration::from_secs(1)) {
                                Ok(stream) => {
                                    reset_on_close(&stream);
                                    count.fetch_add(1, Ordering::Relaxed);
                                }
                                Err(_) => {
                                    failures.fetch_add(1, Ordering::Relaxed);
                                }
                            }
                        }
                        Ok(())
                    })
                })
            })
            .collect();
        for worker in workers {
            worker.join().map_err(|_| "a client thread panicked")??;
        }
        let elapsed = start.elapsed().as_secs_f64();
        let failed = failures.load(Ordering::Relaxed);
        if failed > 0 {
            eprintln!("  ({failed} connections failed)");
        }
        Ok(count.load(Ordering::Relaxed) as f64 / elapsed)
    }

    /// Established TCP throughput in bits per second (iperf3, one stream, receiver side).
    fn throughput(&self, dest: Ipv6Addr, seconds: u64) -> Result<f64, String> {
        let output = Command::new("ip")
            .args(["netns", "exec", &self.client, "iperf3", "-J", "-c"])
            .arg(dest.to_string())
            .args(["-p", &IPERF_PORT.to_string(), "-t", &seconds.to_string()])
            .output()
            .map_err(|e| format!("iperf3 -c: {e}"))?;
        let json: serde_json::Value =
            serde_json::from_slice(&output.stdout).map_err(|e| format!("iperf3 output: {e}"))?;
        json["end"]["sum_received"]["bits_per_second"]
            .as_f64()
            .ok_or_else(|| format!("iperf3 gave no result: {}", json["error"]))
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for ns in [&self.client, &self.router, &self.server] {
            if let Err(error) = cmd("ip", &["netns", "del", ns]) {
                eprintln!("dataplane bench: {error}; remove namespace {ns} by hand");
            }
        }
    }
}

struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Close with a reset (SO_LINGER 0): no TIME_WAIT, so the client's ports do not run out.
fn reset_on_close(stream: &TcpStream) {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: a valid socket fd and a linger struct that outlives the call.
    unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
}

/// Run `f` on a new thread that has entered namespace `ns` (checked), and wait for it.
/// Sockets it opens stay in that namespace.
fn in_ns<T: Send + 'static>(
    ns: &str,
    f: impl FnOnce() -> Result<T, String> + Send + 'static,
) -> Result<T, String> {
    let path = format!("/run/netns/{ns}");
    std::thread::spawn(move || {
        let target = File::open(&path).map_err(|e| format!("open {path}: {e}"))?;
        // SAFETY: a valid namespace fd; CLONE_NEWNET changes only this thread's namespace.
        if unsafe { libc::setns(target.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            return Err(format!("setns {path}: {}", std::io::Error::last_os_error()));
        }
        let now = std::fs::metadata("/proc/thread-self/ns/net").map_err(|e| e.to_string())?;
        let want = target.metadata().map_err(|e| e.to_string())?;
        if now.ino() != want.ino() {
            return Err(format!("setns did not enter {path}"));
        }
        f()
    })
    .join()
    .map_err(|_| "a namespace thread panicked".to_string())?
}

/// Set a sysctl in namespace `ns`.
fn sysctl(ns: &str, setting: &str) -> Result<(), String> {
    cmd("ip", &["netns", "exec", ns, "sysctl", "-qw", setting])
}

fn cmd(program: &str, args: &[&str]) -> Result<(), String> {
    let status = Command::new(program)
        .args(args)
        .status()
        .map_err(|e| format!("{program}: {e}"))?;
    if !status.success() {
        return Err(format!("`{program} {}` failed ({status})", args.join(" ")));
    }
    Ok(())
}
