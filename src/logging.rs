//! Where log lines go and how they look: text or JSON (`log_format` in v6guard.yaml), to
//! stderr, with an sd-daemon priority prefix (`<3>` for errors) when stderr is journald's.
//!
//! Why prefixes rather than tracing-journald: journald already reads the daemon's stderr
//! (systemd's `StandardError=journal`), and with `SyslogLevelPrefix=` (on by default) it turns
//! a leading `<N>` into the entry's priority. That needs no socket, no extra dependency, keeps
//! the exact same lines for `journalctl -o cat` and for anyone piping stderr elsewhere, and can
//! be tested from the emitted stream. Prefixes are written only when stderr *is* the journal
//! stream (`$JOURNAL_STREAM` names its device and inode, as sd-daemon(3) says to check), so a
//! terminal or a redirected file never sees them.
//!
//! Colour: only on a terminal, and never when `NO_COLOR` is set (https://no-color.org).

use std::io::{self, IsTerminal, Write};
use std::os::unix::fs::MetadataExt;

use tracing::{Level, Metadata};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

use crate::config::LogFormat;

/// The environment variable holding the log filter (`info`, `v6guard=debug`, ...).
pub const FILTER_VARIABLE: &str = "V6GUARD_LOG";

/// How logging is set up, decided from the environment by [`Setup::from_env`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setup {
    pub format: LogFormat,
    /// Prefix each line with its syslog priority (`<3>`): stderr is journald's stream.
    pub priority_prefix: bool,
    pub colour: bool,
}

impl Setup {
    /// Decide from `$JOURNAL_STREAM`, `$NO_COLOR` and whether stderr is a terminal.
    pub fn from_env(format: LogFormat) -> Setup {
        let journal = std::env::var("JOURNAL_STREAM").ok();
        let stderr = stderr_identity();
        let priority_prefix = match (journal.as_deref(), stderr) {
            (Some(value), Some(identity)) => is_journal_stream(value, identity),
            _ => false,
        };
        let colour = format == LogFormat::Text
            && !priority_prefix
            && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
            && io::stderr().is_terminal();
        Setup {
            format,
            priority_prefix,
            colour,
        }
    }

    /// Whether the log lines are read by a machine (the journal, or JSON), rather than by a
    /// person at a terminal.
    pub fn is_for_machines(&self) -> bool {
        self.priority_prefix || self.format == LogFormat::Json
    }

    /// Install the global subscriber. Call once, before anything logs.
    pub fn init(&self) {
        let filter =
            EnvFilter::try_from_env(FILTER_VARIABLE).unwrap_or_else(|_| EnvFilter::new("info"));
        let writer = Stderr {
            priority_prefix: self.priority_prefix,
        };
        let builder = tracing_subscriber::fmt()
            .with_writer(writer)
            .with_ansi(self.colour)
            .with_env_filter(filter);
        let result = match self.format {
            LogFormat::Text if self.priority_prefix => {
                // journald stamps each entry itself; a second timestamp is noise.
                builder.without_time().try_init()
            }
            LogFormat::Text => builder.try_init(),
            LogFormat::Json => builder
                .json()
                .flatten_event(true)
                .with_current_span(true)
                .with_span_list(false)
                .try_init(),
        };
        if let Err(error) = result {
            eprintln!("v6guard: logging already set up: {error}");
        }
    }
}

/// The device and inode of stderr, to compare with `$JOURNAL_STREAM`.
fn stderr_identity() -> Option<(u64, u64)> {
    let metadata = std::fs::metadata("/proc/self/fd/2").ok()?;
    Some((metadata.dev(), metadata.ino()))
}

/// `$JOURNAL_STREAM` is `DEVICE:INODE` of the stream systemd connected; it is inherited by
/// children whose stderr may be something else, hence the comparison.
fn is_journal_stream(value: &str, (dev, ino): (u64, u64)) -> bool {
    let Some((device, inode)) = value.split_once(':') else {
        return false;
    };
    device.parse() == Ok(dev) && inode.parse() == Ok(ino)
}

/// syslog(3) priority of a tracing level: err, warning, info, debug.
pub fn priority(level: &Level) -> u8 {
    match *level {
        Level::ERROR => 3,
        Level::WARN => 4,
        Level::INFO => 6,
        Level::DEBUG | Level::TRACE => 7,
    }
}

/// stderr, with the event's priority in front of each event when asked to.
#[derive(Debug, Clone, Copy)]
struct Stderr {
    priority_prefix: bool,
}

impl<'a> MakeWriter<'a> for Stderr {
    type Writer = PrefixedWriter<io::Stderr>;

    fn make_writer(&'a self) -> Self::Writer {
        PrefixedWriter::new(io::stderr(), None)
    }

    fn make_writer_for(&'a self, meta: &Metadata<'_>) -> Self::Writer {
        let prefix = self.priority_prefix.then(|| priority(meta.level()));
        PrefixedWriter::new(io::stderr(), prefix)
    }
}

/// Writes `<N>` once, before the first bytes of an event (fmt writes an event in one go).
pub struct PrefixedWriter<W: Write> {
    inner: W,
    prefix: Option<u8>,
}

impl<W: Write> PrefixedWriter<W> {
    pub fn new(inner: W, prefix: Option<u8>) -> Self {
        PrefixedWriter { inner, prefix }
    }
}

impl<W: Write> Write for PrefixedWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if let Some(priority) = self.prefix.take() {
            let mut line = format!("<{priority}>").into_bytes();
            line.extend_from_slice(buf);
            self.inner.write_all(&line)?;
            return Ok(buf.len());
        }
        self.inner.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_journal_stream_must_be_stderr_itself() {
        assert!(is_journal_stream("8:1234", (8, 1234)));
        assert!(!is_journal_stream("8:1234", (8, 999)));
        assert!(!is_journal_stream("garbage", (8, 1234)));
        assert!(!is_journal_stream("", (8, 1234)));
    }

    #[test]
    fn levels_map_to_syslog_priorities() {
        assert_eq!(priority(&Level::ERROR), 3);
        assert_eq!(priority(&Level::WARN), 4);
        assert_eq!(priority(&Level::INFO), 6);
        assert_eq!(priority(&Level::DEBUG), 7);
    }

    #[test]
    fn the_prefix_goes_once_in_front_of_the_event() {
        let mut out = Vec::new();
        let mut writer = PrefixedWriter::new(&mut out, Some(3));
        writer.write_all(b"ERROR drift\n").unwrap();
        writer.write_all(b"more\n").unwrap();
        assert_eq!(out, b"<3>ERROR drift\nmore\n");
    }
}
