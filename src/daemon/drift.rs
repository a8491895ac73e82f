//! Drift: notice when someone else changes v6guard's table (`nft flush ruleset`, a firewall
//! reload, a hand edit) and say who, so the daemon can restore it within milliseconds.
//!
//! nf_tables announces every committed change on the NFNLGRP_NFTABLES netlink group: one
//! message per object touched, then a NEWGEN message carrying the committing process's pid
//! and name. The monitor collects, per transaction, the messages about `ip6 v6guard` and, at
//! the NEWGEN, reports them unless the committer is one of this process's own threads. If the
//! socket overflows (a huge foreign transaction), the monitor cannot know what it missed and
//! asks for a verify instead. A periodic verify backs this up in case the monitor dies.
//!
//! [`RestoreLimit`] decides which differences are restored at once: two tools fighting over
//! the table must not spin, but a missing or damaged table is always put back by the
//! periodic verify.

use std::collections::VecDeque;
use std::io;
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use tokio::sync::mpsc::UnboundedSender;
use tracing::{debug, error};

/// What the monitor saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DriftReport {
    /// Another process changed the table: what it did, who it was, and when the monitor
    /// read the notification (after the kernel committed the change).
    Foreign {
        process: String,
        pid: u32,
        changes: Vec<String>,
        seen: Instant,
    },
    /// Notifications were lost; the table may or may not have changed.
    Overrun,
}

const NFNL_SUBSYS_NFTABLES: u16 = libc::NFNL_SUBSYS_NFTABLES as u16;
const NFT_MSG_NEWGEN: u16 = libc::NFT_MSG_NEWGEN as u16;
/// Attribute 1 of every table, chain, rule, set, element-list, object and flowtable message
/// is the table's name.
const ATTR_TABLE: u16 = 1;
const NFTA_GEN_PROC_PID: u16 = 2;
const NFTA_GEN_PROC_NAME: u16 = 3;
const NLMSG_HDRLEN: usize = 16;
const NFGENMSG_LEN: usize = 4;
/// Receive buffer asked for: a full replace of a large table is announced as many messages.
const RCVBUF: libc::c_int = 8 << 20;

/// Per-transaction state of the parser.
#[derive(Debug, Default)]
pub struct Scanner {
    table: String,
    /// What each message about the table did. Static text: the daemon's own full replace
    /// of a large table is announced as one message per element (145,000 at 10,000
    /// containers), all of which pass through here.
    touched: Vec<&'static str>,
}

impl Scanner {
    pub fn new(table: &str) -> Self {
        Scanner {
            table: table.to_string(),
            touched: Vec::new(),
        }
    }

    /// Feed one datagram of notifications; returns the transactions that touched the table,
    /// with the committer's pid and name. Pure: the caller decides who is foreign.
    pub fn scan(&mut self, buffer: &[u8]) -> Vec<(u32, String, Vec<&'static str>)> {
        let mut done = Vec::new();
        let mut at = 0;
        while let Some(header) = buffer.get(at..at + NLMSG_HDRLEN) {
            let len = u32::from_ne_bytes([header[0], header[1], header[2], header[3]]) as usize;
            if len < NLMSG_HDRLEN || at + len > buffer.len() {
                break;
            }
            let kind = u16::from_ne_bytes([header[4], header[5]]);
            let body = &buffer[at + NLMSG_HDRLEN..at + len];
            if kind >> 8 == NFNL_SUBSYS_NFTABLES {
                self.message(kind & 0xff, body, &mut done);
            }
            at += len.next_multiple_of(4);
        }
        done
    }

    fn message(&mut self, msg: u16, body: &[u8], done: &mut Vec<(u32, String, Vec<&'static str>)>) {
        let Some(family) = body.first() else { return };
        let attrs = body.get(NFGENMSG_LEN..).unwrap_or_default();
        if msg == NFT_MSG_NEWGEN {
            if !self.touched.is_empty() {
                let pid = attribute(attrs, NFTA_GEN_PROC_PID)
                    .and_then(|v| v.try_into().ok())
                    .map(u32::from_be_bytes)
                    .unwrap_or(0);
                let name = attribute(attrs, NFTA_GEN_PROC_NAME)
                    .map(c_text)
                    .unwrap_or_default();
                done.push((pid, name, std::mem::take(&mut self.touched)));
            }
            return;
        }
        let family = i32::from(*family);
        let ours = (family == libc::NFPROTO_IPV6 || family == libc::NFPROTO_BRIDGE)
            && attribute(attrs, ATTR_TABLE).map(c_text).as_deref() == Some(self.table.as_str());
        if ours {
            self.touched.push(describe(msg));
        }
    }
}

/// The value of the first attribute of type `kind` (nested-flag bits ignored).
fn attribute(mut attrs: &[u8], kind: u16) -> Option<&[u8]> {
    while attrs.len() >= 4 {
        let len = u16::from_ne_bytes([attrs[0], attrs[1]]) as usize;
        let typ = u16::from_ne_bytes([attrs[2], attrs[3]]) & 0x3fff;
        if len < 4 || len > attrs.len() {
            return None;
        }
        if typ == kind {
            return Some(&attrs[4..len]);
        }
        attrs = attrs.get(len.next_multiple_of(4)..).unwrap_or_default();
    }
    None
}

fn c_text(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|b| *b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

fn describe(msg: u16) -> &'static str {
    match msg {
        0 => "table created",
        2 => "table deleted",
        3 => "chain added",
        5 => "chain deleted",
        6 => "rule added",
        8 => "rule deleted",
        9 => "set added",
        11 => "set deleted",
        12 => "set elements added",
        14 => "set elements deleted",
        _ => "object changed",
    }
}

/// At most this many restores per [`RESTORE_WINDOW`] answer a notification at once.
pub const MAX_RESTORES: usize = 5;
pub const RESTORE_WINDOW: Duration = Duration::from_secs(60);

/// What found a difference between the kernel and the applied ruleset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Detected {
    /// The change monitor (a foreign transaction, or lost notifications): answered at once,
    /// within the limit.
    Notification,
    /// The periodic verify: always answered.
    PeriodicVerify,
}

/// What to do about one difference.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestoreDecision {
    pub restore: bool,
    /// Log it at ERROR. While tools fight, one line per window sums it up instead.
    pub log: bool,
    /// More than [`MAX_RESTORES`] restores in the last [`RESTORE_WINDOW`].
    pub fighting: bool,
    /// Notifications left to the periodic verify since the last line logged.
    pub unanswered: usize,
}

/// The restore rate limit. Pure (the caller passes the time), so it is tested without a
/// kernel. Within the limit every difference is restored and logged. Past it (something keeps
/// changing the table), notifications are no longer answered at once, so the two tools do not
/// spin; the periodic verify still restores every time, and one line per window says so.
#[derive(Debug, Default)]
pub struct RestoreLimit {
    recent: VecDeque<Instant>,
    last_line: Option<Instant>,
    unanswered: usize,
}

impl RestoreLimit {
    pub fn decide(&mut self, detected: Detected, now: Instant) -> RestoreDecision {
        while self
            .recent
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) >= RESTORE_WINDOW)
        {
            self.recent.pop_front();
        }
        let fighting = self.recent.len() >= MAX_RESTORES;
        if !fighting {
            self.last_line = None;
            self.unanswered = 0;
            return RestoreDecision {
                restore: true,
                log: true,
                fighting,
                unanswered: 0,
            };
        }
        let restore = detected == Detected::PeriodicVerify;
        if !restore {
            self.unanswered += 1;
        }
        let log = self
            .last_line
            .is_none_or(|t| now.saturating_duration_since(t) >= RESTORE_WINDOW);
        let unanswered = self.unanswered;
        if log {
            self.last_line = Some(now);
            self.unanswered = 0;
        }
        RestoreDecision {
            restore,
            log,
            fighting,
            unanswered,
        }
    }

    /// Count a restore that was made.
    pub fn restored(&mut self, now: Instant) {
        self.recent.push_back(now);
    }

    /// Restores counted in the current window.
    pub fn recent(&self) -> usize {
        self.recent.len()
    }
}

/// Whether `pid` (as the kernel reports it: a thread id) is one of this process's threads.
fn is_own_thread(pid: u32) -> bool {
    Path::new(&format!("/proc/self/task/{pid}")).exists()
}

/// Start the monitor on its own thread. Fails only when the socket cannot be opened (no
/// CAP_NET_ADMIN or no nf_tables); the daemon then relies on the periodic verify.
pub fn spawn_monitor(table: &str, reports: UnboundedSender<DriftReport>) -> io::Result<()> {
    let table = table.to_string();
    let (opened_tx, opened_rx) = std::sync::mpsc::channel();
    // The socket is not Send: open it on the monitor's own thread and report how that went.
    thread::Builder::new()
        .name("nft-monitor".into())
        .spawn(move || match open_socket() {
            Ok(socket) => {
                let _ = opened_tx.send(Ok(()));
                monitor(socket, &table, &reports);
            }
            Err(error) => {
                let _ = opened_tx.send(Err(error));
            }
        })?;
    opened_rx
        .recv()
        .unwrap_or_else(|_| Err(io::Error::other("the monitor thread ended before starting")))
}

fn open_socket() -> io::Result<mnl::Socket> {
    let socket = mnl::Socket::open(mnl::Bus::Netfilter)?;
    socket.bind(
        1 << (libc::NFNLGRP_NFTABLES - 1),
        mnl::mnl_sys::MNL_SOCKET_AUTOPID as libc::pid_t,
    )?;
    // SAFETY: the fd belongs to the open socket; the option value outlives the call. A
    // failure only leaves the default buffer (overruns then trigger verifies).
    unsafe {
        let fd = mnl::mnl_sys::mnl_socket_get_fd(socket.as_raw_socket());
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            &RCVBUF as *const libc::c_int as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
    Ok(socket)
}

fn monitor(socket: mnl::Socket, table: &str, reports: &UnboundedSender<DriftReport>) {
    let mut scanner = Scanner::new(table);
    let mut buffer = vec![0u8; 1 << 18];
    loop {
        let n = match socket.recv_raw(&mut buffer) {
            Ok(n) => n,
            Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                scanner = Scanner::new(table);
                if reports.send(DriftReport::Overrun).is_err() {
                    return;
                }
                continue;
            }
            Err(e) => {
                error!(error = %e, "nftables change monitor failed; relying on the periodic verify");
                thread::sleep(Duration::from_secs(1));
                continue;
            }
        };
        let transactions = scanner.scan(&buffer[..n]);
        let large =
            (transactions.iter()).any(|(_, _, changes)| changes.len() >= TRIM_AFTER_MESSAGES);
        for (pid, process, changes) in transactions {
            if is_own_thread(pid) {
                debug!(pid, "own transaction");
                continue;
            }
            let report = DriftReport::Foreign {
                process,
                pid,
                changes: changes.into_iter().map(str::to_string).collect(),
                seen: Instant::now(),
            };
            if reports.send(report).is_err() {
                return;
            }
        }
        if large {
            crate::memory::return_freed_memory();
        }
    }
}

/// A transaction announced in this many messages (one per set element) is a full replace
/// of a large table: what reading it cost is handed back to the kernel.
const TRIM_AFTER_MESSAGES: usize = 20_000;

#[cfg(test)]
mod tests {
    use super::*;

    fn attr(kind: u16, value: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&((4 + value.len()) as u16).to_ne_bytes());
        out.extend_from_slice(&kind.to_ne_bytes());
        out.extend_from_slice(value);
        out.resize(out.len().next_multiple_of(4), 0);
        out
    }

    fn message(msg: u16, family: u8, attrs: &[Vec<u8>]) -> Vec<u8> {
        let mut body = vec![family, 0, 0, 0];
        attrs.iter().for_each(|a| body.extend_from_slice(a));
        let mut out = Vec::new();
        out.extend_from_slice(&((NLMSG_HDRLEN + body.len()) as u32).to_ne_bytes());
        out.extend_from_slice(&((NFNL_SUBSYS_NFTABLES << 8) | msg).to_ne_bytes());
        out.extend_from_slice(&[0u8; 10]);
        out.extend_from_slice(&body);
        out
    }

    fn newgen(pid: u32, name: &str) -> Vec<u8> {
        message(
            NFT_MSG_NEWGEN,
            0,
            &[
                attr(1, &7u32.to_be_bytes()),
                attr(NFTA_GEN_PROC_PID, &pid.to_be_bytes()),
                attr(NFTA_GEN_PROC_NAME, format!("{name}\0").as_bytes()),
            ],
        )
    }

    const IP6: u8 = libc::NFPROTO_IPV6 as u8;
    const IP4: u8 = libc::NFPROTO_IPV4 as u8;

    #[test]
    fn a_flush_that_deletes_our_table_is_reported_with_its_committer() {
        let mut datagram = message(2, IP4, &[attr(1, b"nat\0")]);
        datagram.extend(message(2, IP6, &[attr(1, b"v6guard\0")]));
        datagram.extend(newgen(4242, "nft"));
        let mut scanner = Scanner::new("v6guard");
        assert_eq!(
            scanner.scan(&datagram),
            vec![(4242, "nft".to_string(), vec!["table deleted"])]
        );
    }

    #[test]
    fn transactions_on_other_tables_are_ignored_even_across_datagrams() {
        let mut scanner = Scanner::new("v6guard");
        let rule_elsewhere = message(6, IP6, &[attr(1, b"v6guard-other\0")]);
        assert!(scanner.scan(&rule_elsewhere).is_empty());
        assert!(scanner.scan(&newgen(1, "dockerd")).is_empty());
        // A message in one datagram and its NEWGEN in the next still pair up.
        let rule_ours = message(8, IP6, &[attr(1, b"v6guard\0")]);
        assert!(scanner.scan(&rule_ours).is_empty());
        assert_eq!(scanner.scan(&newgen(9, "firewalld")).len(), 1);
    }

    #[test]
    fn truncated_input_is_not_trusted() {
        let mut scanner = Scanner::new("v6guard");
        let mut datagram = message(2, IP6, &[attr(1, b"v6guard\0")]);
        datagram.truncate(datagram.len() - 3);
        assert!(scanner.scan(&datagram).is_empty());
        assert!(scanner.scan(&[1, 2, 3]).is_empty());
    }

    #[test]
    fn past_the_limit_only_the_periodic_verify_restores_and_logging_is_summed_up() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut limit = RestoreLimit::default();
        for i in 0..MAX_RESTORES as u64 {
            let d = limit.decide(Detected::Notification, t0 + s(i));
            assert!(d.restore && d.log && !d.fighting, "restore {i}");
            limit.restored(t0 + s(i));
        }
        // The sixth notification within the minute: left to the periodic verify, logged once.
        let d = limit.decide(Detected::Notification, t0 + s(6));
        assert_eq!(
            (d.restore, d.log, d.fighting, d.unanswered),
            (false, true, true, 1)
        );
        let d = limit.decide(Detected::Notification, t0 + s(7));
        assert_eq!((d.restore, d.log), (false, false));
        // The periodic verify restores a missing table however many restores came before,
        // without a line each time.
        for i in 1..=6u64 {
            let d = limit.decide(Detected::PeriodicVerify, t0 + s(i * 10));
            assert_eq!(
                (d.restore, d.log, d.fighting),
                (true, false, true),
                "verify {i}"
            );
            limit.restored(t0 + s(i * 10));
        }
        // A minute after the first summary line, another one, counting what was left.
        let d = limit.decide(Detected::PeriodicVerify, t0 + s(66));
        assert_eq!((d.restore, d.log, d.unanswered), (true, true, 1));
        limit.restored(t0 + s(66));
        // Once the window holds fewer restores, notifications are answered at once again.
        let d = limit.decide(Detected::Notification, t0 + s(130));
        assert!(d.restore && d.log && !d.fighting);
        assert_eq!(limit.recent(), 0);
    }

    #[test]
    fn own_threads_are_recognised() {
        assert!(is_own_thread(std::process::id()));
        assert!(!is_own_thread(u32::MAX));
    }
}
