//! The data plane bench's namespaces: client -> router -> server over veth pairs, the
//! router forwarding, and what runs in them (listeners, iperf3, the connection generator).

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

use super::Setup;
use super::support::{BENCH_BRIDGE, container_address};

const CLIENT_ADDR: &str = "2001:db8:d0::2";
const CLIENT_GW: &str = "2001:db8:d0::1";
const SERVER_GW: &str = "fd76:6700:0:10::1";
/// A published TCP container port of every bench container (ports 8000..8007 are TCP).
pub const CONNECT_PORT: u16 = 8000;
pub const IPERF_PORT: u16 = 8001;
const UNPUBLISHED_PORT: u16 = 9999;
/// The floor setups' table (`v6guard-` so that it is one of the tables this project may touch).
const FLOOR_TABLE: &str = "v6guard-floor";

/// The floor of a stateful firewall: connection tracking (and with `nat`, the NAT hooks) and
/// the one drop `check_filtering` looks for, nothing else.
pub fn floor_ruleset(nat: bool) -> String {
    let mut script = format!(
        "table ip6 {FLOOR_TABLE} {{\n\
         \tchain forward {{\n\
         \t\ttype filter hook forward priority filter; policy accept;\n\
         \t\tct state established,related accept\n\
         \t\ttcp dport {UNPUBLISHED_PORT} drop\n\
         \t}}\n"
    );
    if nat {
        script += "\tchain prerouting {\n\t\ttype nat hook prerouting priority dstnat; policy accept;\n\t}\n";
        script += "\tchain postrouting {\n\t\ttype nat hook postrouting priority srcnat; policy accept;\n\t}\n";
    }
    script + "}\n"
}

/// The three namespaces; dropping it deletes them (and with them the veths and rules).
pub struct Lab {
    client: String,
    router: String,
    server: String,
}

impl Lab {
    pub fn create() -> Result<Lab, String> {
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

    pub fn add_server_address(&self, addr: Ipv6Addr) -> Result<(), String> {
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

    pub fn in_router<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> Result<T, String> + Send + 'static,
    ) -> Result<T, String> {
        in_ns(&self.router, f)
    }

    /// Remove v6guard's table, the floor table and Docker's ip6tables tables from the router
    /// (its own namespace: nothing else is there), and flush its connection tracking table.
    pub fn clear(&self) -> Result<(), String> {
        self.in_router(|| nft::cleanup().map(|_| ()).map_err(|e| e.to_string()))?;
        for table in ["filter", "nat", FLOOR_TABLE] {
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
        self.flush_conntrack()
    }

    /// Entries left by the previous setup's connections (closed by a reset, or a FIN where
    /// the server closed first: TIME_WAIT lasts 120 s) would make the next setup's table
    /// larger and can reach the host-wide `nf_conntrack_max`, which drops new connections:
    /// flush the router's table (`conntrack -F`, its namespace only).
    fn flush_conntrack(&self) -> Result<(), String> {
        let output = Command::new("ip")
            .args(["netns", "exec", &self.router, "conntrack", "-F"])
            .output()
            .map_err(|e| format!("conntrack -F: {e}"))?;
        // Before a setup first loads connection tracking in the router there is no table,
        // and conntrack says so; anything else is a failure.
        let stderr = String::from_utf8_lossy(&output.stderr);
        if !output.status.success() && !stderr.contains("have been deleted") {
            return Err(format!("conntrack -F in the router failed: {stderr}"));
        }
        Ok(())
    }

    /// Load an nft script in the router.
    pub fn nft(&self, script: &str) -> Result<(), String> {
        self.feed(&["nft", "-f", "-"], script)
    }

    /// Load ip6tables-save text in the router.
    pub fn ip6tables_restore(&self, rules: &str) -> Result<(), String> {
        self.feed(&["ip6tables-restore"], rules)
    }

    /// Run `command` in the router with `input` on its stdin.
    fn feed(&self, command: &[&str], input: &str) -> Result<(), String> {
        let what = command.join(" ");
        let mut child = Command::new("ip")
            .args(["netns", "exec", &self.router])
            .args(command)
            .stdin(Stdio::piped())
            .spawn()
            .map_err(|e| format!("{what}: {e}"))?;
        child
            .stdin
            .take()
            .ok_or("no stdin")?
            .write_all(input.as_bytes())
            .map_err(|e| format!("{what}: {e}"))?;
        let status = child.wait().map_err(|e| e.to_string())?;
        if !status.success() {
            return Err(format!("{what} failed ({status})"));
        }
        Ok(())
    }

    /// Accept-and-close listeners on the published port of both server addresses, on
    /// threads in the server namespace (they end with the process).
    pub fn serve(&self, first: Ipv6Addr, second: Ipv6Addr) -> Result<(), String> {
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

    pub fn iperf_server(&self) -> Result<KillOnDrop, String> {
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
    pub fn wait_until_routed(&self, dest: Ipv6Addr) -> Result<(), String> {
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
    pub fn check_filtering(&self, setup: Setup, dest: Ipv6Addr) -> Result<(), String> {
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
            _ => dropped,
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
    pub fn connection_rate(
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
    pub fn throughput(&self, dest: Ipv6Addr, seconds: u64) -> Result<f64, String> {
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

pub struct KillOnDrop(Child);

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
