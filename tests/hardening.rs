//! The systemd unit's sandbox (packaging/systemd/v6guard.service), checked two ways:
//!
//! - `systemd-analyze security --offline=true` rates the unit file at 3.5 or less;
//! - the daemon does its job under the unit's own process restrictions, read from the unit
//!   file: the capability bounding set (`CapabilityBoundingSet=`), `NoNewPrivileges=`, the
//!   system-call filter (`SystemCallFilter=`, groups expanded by `systemd-analyze
//!   syscall-filter`, killing the process on any other call as systemd does, and
//!   `SystemCallArchitectures=native`) and `RestrictAddressFamilies=` (socket() of any other
//!   family fails with EAFNOSUPPORT, as systemd's filter makes it). This machine's PID 1 is
//!   not systemd, so the test applies them itself to the daemon's process before exec (the
//!   same kernel mechanisms systemd uses: prctl and a seccomp filter). The daemon runs in a
//!   throwaway network namespace, so its tables land there, not on the host.
//!
//! Not covered here (systemd builds them from a mount namespace, which needs systemd): the
//! file-system settings (ProtectSystem, ReadWritePaths, PrivateDevices, ProtectKernel*,
//! ProtectProc, PrivateTmp, ...) and RestrictNamespaces/MemoryDenyWriteExecute/LockPersonality
//! (seccomp rules systemd adds for them). docs/daemon.md says so too.

mod common;

use std::collections::BTreeSet;
use std::io::Error;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::*;

const UNIT: &str = "packaging/systemd/v6guard.service";
const MAX_EXPOSURE: f64 = 3.5;

/// The unit file's `Key=value` lines under [Service], in order.
fn service_settings() -> Vec<(String, String)> {
    let path = repo_root().join(UNIT);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{UNIT}: {e}"));
    let mut section = String::new();
    let mut settings = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') {
            section = line.to_string();
        } else if section == "[Service]" && !line.starts_with('#') {
            if let Some((key, value)) = line.split_once('=') {
                settings.push((key.to_string(), value.to_string()));
            }
        }
    }
    settings
}

fn values<'a>(settings: &'a [(String, String)], key: &str) -> Vec<&'a str> {
    settings
        .iter()
        .filter(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .collect()
}

fn require_tool(tool: &str, package: &str) {
    assert!(
        run("sh", &["-c", &format!("command -v {tool}")])
            .status
            .success(),
        "{tool} not found: apt-get install {package} (scripts/test.sh installs it); this test \
         does not skip"
    );
}

#[test]
fn unit_exposure_is_at_most_3_5() {
    require_tool("systemd-analyze", "systemd");
    let unit = repo_root().join(UNIT);
    let out = run(
        "systemd-analyze",
        &[
            "security",
            "--offline=true",
            "--no-pager",
            &unit.display().to_string(),
        ],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let level: f64 = text
        .lines()
        .find_map(|l| {
            l.split("Overall exposure level for v6guard.service: ")
                .nth(1)
        })
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| {
            panic!(
                "no exposure level in:\n{text}\n{}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    eprintln!("systemd-analyze security: exposure {level}");
    assert!(
        level <= MAX_EXPOSURE,
        "exposure {level} > {MAX_EXPOSURE}:\n{text}"
    );

    // The restart policy the lead decided: a configuration error (exit 6) does not loop.
    let settings = service_settings();
    assert_eq!(values(&settings, "RestartPreventExitStatus"), ["6"]);
    assert_eq!(values(&settings, "NoNewPrivileges"), ["yes"]);
}

/// Capability names in number order (include/uapi/linux/capability.h).
const CAPABILITIES: [&str; 41] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// The capability numbers `CapabilityBoundingSet=` keeps.
fn kept_capabilities(settings: &[(String, String)]) -> BTreeSet<u32> {
    let mut kept = BTreeSet::new();
    for value in values(settings, "CapabilityBoundingSet") {
        for name in value.split_whitespace() {
            let number = CAPABILITIES
                .iter()
                .position(|c| *c == name)
                .unwrap_or_else(|| panic!("unknown capability {name} in {UNIT}"));
            kept.insert(number as u32);
        }
    }
    assert!(!kept.is_empty(), "{UNIT} has no CapabilityBoundingSet=");
    kept
}

/// The address families `RestrictAddressFamilies=` allows.
fn allowed_families(settings: &[(String, String)]) -> Vec<u32> {
    let families: Vec<u32> = values(settings, "RestrictAddressFamilies")
        .iter()
        .flat_map(|v| v.split_whitespace())
        .map(|name| match name {
            "AF_UNIX" => libc::AF_UNIX as u32,
            "AF_INET" => libc::AF_INET as u32,
            "AF_INET6" => libc::AF_INET6 as u32,
            "AF_NETLINK" => libc::AF_NETLINK as u32,
            "AF_PACKET" => libc::AF_PACKET as u32,
            other => panic!("{UNIT}: add {other} to this test's table"),
        })
        .collect();
    assert!(
        !families.is_empty(),
        "{UNIT} has no RestrictAddressFamilies="
    );
    families
}

/// The system calls a systemd group (or a single call) stands for.
fn expand(name: &str, seen: &mut BTreeSet<String>, into: &mut BTreeSet<String>) {
    if !name.starts_with('@') {
        into.insert(name.to_string());
        return;
    }
    if !seen.insert(name.to_string()) {
        return;
    }
    let listing = run_ok("systemd-analyze", &["syscall-filter", "--no-pager", name]);
    for item in listing
        .lines()
        .skip(1)
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        expand(item, seen, into);
    }
}

/// The system calls `SystemCallFilter=` lines allow, as systemd reads them: an allow list
/// (which always includes @default), then `~` lines removing from it.
fn allowed_syscalls(settings: &[(String, String)]) -> BTreeSet<String> {
    let lines = values(settings, "SystemCallFilter");
    assert!(
        lines.first().is_some_and(|l| !l.starts_with('~')),
        "{UNIT}: this test expects an allow list first, then ~ lines"
    );
    let mut allowed = BTreeSet::new();
    expand("@default", &mut BTreeSet::new(), &mut allowed);
    for line in lines {
        let (deny, list) = match line.strip_prefix('~') {
            Some(list) => (true, list),
            None => (false, line),
        };
        let mut names = BTreeSet::new();
        for item in list.split_whitespace() {
            expand(item, &mut BTreeSet::new(), &mut names);
        }
        if deny {
            allowed.retain(|n| !names.contains(n));
        } else {
            allowed.extend(names);
        }
    }
    allowed
}

/// x86_64 system-call numbers by name, from the kernel headers (linux-libc-dev).
fn syscall_numbers() -> Vec<(String, u32)> {
    let header = "/usr/include/x86_64-linux-gnu/asm/unistd_64.h";
    let text = std::fs::read_to_string(header)
        .unwrap_or_else(|e| panic!("{header}: {e} (apt-get install linux-libc-dev)"));
    text.lines()
        .filter_map(|l| {
            let rest = l.strip_prefix("#define __NR_")?;
            let (name, number) = rest.split_once(' ')?;
            Some((name.to_string(), number.trim().parse().ok()?))
        })
        .collect()
}

fn statement(code: u16, k: u32) -> libc::sock_filter {
    libc::sock_filter {
        code,
        jt: 0,
        jf: 0,
        k,
    }
}

fn jump(k: u32, jt: u8, jf: u8) -> libc::sock_filter {
    libc::sock_filter {
        code: (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16,
        jt,
        jf,
        k,
    }
}

const LOAD: u16 = (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16;
const RETURN: u16 = (libc::BPF_RET | libc::BPF_K) as u16;
const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
const ALLOW: u32 = 0x7fff_0000;
const KILL_PROCESS: u32 = 0x8000_0000;
const ERRNO: u32 = 0x0005_0000;

/// A seccomp program: native architecture only; socket() only in `families` (else
/// EAFNOSUPPORT); only the `allowed` calls; anything else kills the process (systemd's
/// default action for a SystemCallFilter= allow list).
fn seccomp_program(allowed: &BTreeSet<u32>, families: &[u32]) -> Vec<libc::sock_filter> {
    assert!(families.len() < 200);
    let n = families.len() as u8;
    let mut program = vec![
        statement(LOAD, 4), // seccomp_data.arch
        jump(AUDIT_ARCH_X86_64, 1, 0),
        statement(RETURN, KILL_PROCESS),
        statement(LOAD, 0), // seccomp_data.nr
        // not socket(): skip the family checks, their two returns and the load below
        jump(libc::SYS_socket as u32, 0, n + 3),
        statement(LOAD, 16), // seccomp_data.args[0], low half: the family
    ];
    for (i, family) in families.iter().enumerate() {
        program.push(jump(*family, n - i as u8, 0));
    }
    program.push(statement(RETURN, ERRNO | libc::EAFNOSUPPORT as u32));
    program.push(statement(RETURN, ALLOW));
    program.push(statement(LOAD, 0));
    for number in allowed {
        program.push(jump(*number, 0, 1));
        program.push(statement(RETURN, ALLOW));
    }
    program.push(statement(RETURN, KILL_PROCESS));
    program
}

/// Make `command` exec in the network namespace `netns` (an open /run/netns file; `None`:
/// this one), under the bounding set `kept`, no_new_privs and `program`.
fn restrict(
    command: &mut Command,
    netns: Option<std::fs::File>,
    kept: BTreeSet<u32>,
    program: Vec<libc::sock_filter>,
) {
    use std::os::fd::AsRawFd;
    let last_cap: u32 = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .expect("cap_last_cap")
        .trim()
        .parse()
        .expect("a number");
    // SAFETY: the closure runs in the forked child before exec and only makes system calls
    // (prctl) on memory allocated before the fork.
    unsafe {
        command.pre_exec(move || {
            // First, while the capabilities are all still there.
            if let Some(netns) = &netns {
                if libc::setns(netns.as_raw_fd(), libc::CLONE_NEWNET) != 0 {
                    return Err(Error::last_os_error());
                }
            }
            for cap in 0..=last_cap {
                if !kept.contains(&cap)
                    && libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) != 0
                {
                    return Err(Error::last_os_error());
                }
            }
            if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
                return Err(Error::last_os_error());
            }
            let fprog = libc::sock_fprog {
                len: program.len() as u16,
                filter: program.as_ptr() as *mut libc::sock_filter,
            };
            if libc::prctl(
                libc::PR_SET_SECCOMP,
                libc::SECCOMP_MODE_FILTER,
                &fprog as *const libc::sock_fprog,
                0,
                0,
            ) != 0
            {
                return Err(Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// The unit's restrictions, as this test applies them: bounding set, seccomp program.
fn unit_restrictions() -> (BTreeSet<u32>, Vec<libc::sock_filter>) {
    let settings = service_settings();
    let kept = kept_capabilities(&settings);
    let families = allowed_families(&settings);
    let names = allowed_syscalls(&settings);
    let numbers: BTreeSet<u32> = syscall_numbers()
        .into_iter()
        .filter(|(name, _)| names.contains(name))
        .map(|(_, number)| number)
        .collect();
    assert!(
        numbers.len() > 200 && !numbers.contains(&(libc::SYS_init_module as u32)),
        "{} calls allowed",
        numbers.len()
    );
    (kept, seccomp_program(&numbers, &families))
}

/// Run `program ARGS` under the unit's restrictions.
fn run_restricted(program: &str, args: &[&str]) -> Output {
    let (kept, filter) = unit_restrictions();
    let mut command = Command::new(program);
    command.args(args);
    restrict(&mut command, None, kept, filter);
    command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"))
}

/// The restrictions hold and refuse what the unit refuses (no dockerd needed, only root):
/// the process has the unit's capabilities, no_new_privs and a filter; a packet socket fails
/// with EAFNOSUPPORT; a call outside the filter (chroot, in @privileged) kills with SIGSYS.
#[test]
fn the_units_restrictions_apply_and_refuse() {
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(std::env::consts::ARCH, "x86_64");
    require_tool("systemd-analyze", "systemd");
    // SAFETY: geteuid has no preconditions.
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "run as root (scripts/test.sh)"
    );
    let (kept, _) = unit_restrictions();
    let mask: u64 = kept.iter().map(|cap| 1u64 << cap).sum();

    let status = run_restricted("cat", &["/proc/self/status"]);
    assert!(status.status.success(), "{status:?}");
    let text = String::from_utf8_lossy(&status.stdout);
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}:")))
            .unwrap_or_default()
            .trim()
            .to_string()
    };
    assert_eq!(field("CapBnd"), format!("{mask:016x}"));
    assert_eq!(field("CapEff"), format!("{mask:016x}"));
    assert_eq!(field("NoNewPrivs"), "1");
    assert_eq!(field("Seccomp"), "2");

    let packet = run_restricted(
        "python3",
        &[
            "-c",
            "import socket, sys\ntry:\n    socket.socket(socket.AF_PACKET, socket.SOCK_RAW)\n\
             except OSError as e:\n    sys.exit(e.errno)",
        ],
    );
    assert_eq!(
        packet.status.code(),
        Some(libc::EAFNOSUPPORT),
        "AF_PACKET: {packet:?}"
    );
    let netlink = run_restricted(
        "python3",
        &[
            "-c",
            "import socket; socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0)",
        ],
    );
    assert!(netlink.status.success(), "AF_NETLINK: {netlink:?}");

    let chroot = run_restricted("chroot", &["/", "true"]);
    assert_eq!(
        chroot.status.signal(),
        Some(libc::SIGSYS),
        "chroot: {chroot:?}"
    );
}

/// A field of /proc/PID/status.
fn status_field(pid: u32, field: &str) -> String {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .unwrap_or_default()
        .trim()
        .to_string()
}

fn state(path: &Path) -> serde_json::Value {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or(serde_json::Value::Null)
}

/// Kills the daemon if the test ends early.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn daemon_enforces_under_the_units_restrictions() {
    assert_eq!(
        std::env::consts::ARCH,
        "x86_64",
        "this test builds an x86_64 seccomp filter"
    );
    require_tool("systemd-analyze", "systemd");
    let Some(_lock) = system_lock() else { return };
    let netns = Netns::new("v6g-hard");
    let netns_file =
        std::fs::File::open(format!("/run/netns/{}", netns.name)).expect("the namespace's file");

    let (kept, program) = unit_restrictions();

    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("hardening");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("policies")).expect("scratch directory");
    let config = dir.join("v6guard.yaml");
    std::fs::write(&config, "resync_interval: 60\n").expect("config");
    let state_file = dir.join("state.json");
    let log_file = dir.join("daemon.log");
    let log = std::fs::File::create(&log_file).expect("log");

    let mut command = Command::new(v6guard_bin());
    command
        .args(["daemon", "--config"])
        .arg(&config)
        .arg("--policies-dir")
        .arg(dir.join("policies"))
        .arg("--state-file")
        .arg(&state_file)
        .env("V6GUARD_LOG", "info,v6guard=debug")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log);
    restrict(&mut command, Some(netns_file), kept.clone(), program);
    let mut daemon = Child(command.spawn().expect("start the restricted daemon"));
    let pid = daemon.0.id();
    let read_log = || std::fs::read_to_string(&log_file).unwrap_or_default();

    // The restrictions really apply to the daemon's process.
    let mask: u64 = kept.iter().map(|cap| 1u64 << cap).sum();
    assert!(
        eventually(Duration::from_secs(5), || status_field(pid, "CapBnd")
            == format!("{mask:016x}")),
        "CapBnd {} (want {mask:016x})",
        status_field(pid, "CapBnd")
    );
    assert_eq!(status_field(pid, "CapEff"), format!("{mask:016x}"));
    assert_eq!(status_field(pid, "NoNewPrivs"), "1");
    assert_eq!(status_field(pid, "Seccomp"), "2");

    let ready = eventually(Duration::from_secs(30), || {
        let state = state(&state_file);
        matches!(
            state["last_reconcile"]["result"].as_str(),
            Some("applied" | "unchanged")
        )
    });
    assert!(
        ready,
        "the restricted daemon did not apply:\n{}",
        read_log()
    );

    // It follows Docker: a new network and a published container reach its table.
    let network = Network::create("v6g-hard-net", "fd00:6b8:11::/64", &[]);
    let web = Container::web("v6g-hard-web", &network.name, &["-p", "18081:80"]);
    let address = web.ipv6(&network.name);
    let followed = eventually(Duration::from_secs(20), || {
        list_table(Some(&netns)).is_some_and(|t| t.contains(&address))
    });
    assert!(
        followed,
        "the restricted daemon did not add {address}:\n{}\n{}",
        list_table(Some(&netns)).unwrap_or_default(),
        read_log()
    );
    drop(web);
    drop(network);

    // Nothing it needed was refused, and it stops cleanly (SIGSYS would have killed it).
    assert!(
        matches!(daemon.0.try_wait(), Ok(None)),
        "the daemon died:\n{}",
        read_log()
    );
    // SAFETY: signalling our own child process.
    assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGTERM) }, 0);
    let status = daemon.0.wait().expect("wait");
    let log = read_log();
    assert!(status.success(), "exit {status}:\n{log}");
    for refused in ["Operation not permitted", "Address family not supported"] {
        assert!(!log.contains(refused), "`{refused}` in the log:\n{log}");
    }
}
