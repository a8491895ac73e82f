//! Prometheus metrics: the status rendered in the text exposition format
//! ([`Status::metrics`]), and `--metrics-listen ADDR`, a tiny HTTP responder for `GET
//! /metrics`. Hand written on tokio's TCP listener: one route, no keep-alive, bounded reads,
//! so it needs no web framework and cannot be held open by a slow client.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tracing::{debug, info};

use std::fmt::Write as _;

use super::status::{Histogram, Status};

const MAX_REQUEST: usize = 8 * 1024;
const CLIENT_TIMEOUT: Duration = Duration::from_secs(5);

/// Bind now (so a taken port fails the start) and serve in the background.
pub async fn serve(addr: SocketAddr, status: Arc<Mutex<Status>>) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    info!(%bound, "serving Prometheus metrics at /metrics");
    tokio::spawn(async move {
        loop {
            let Ok((stream, peer)) = listener.accept().await else {
                continue;
            };
            let status = Arc::clone(&status);
            tokio::spawn(async move {
                let result = tokio::time::timeout(CLIENT_TIMEOUT, respond(stream, &status)).await;
                if !matches!(result, Ok(Ok(()))) {
                    debug!(%peer, "metrics client dropped or timed out");
                }
            });
        }
    });
    Ok(bound)
}

async fn respond(mut stream: TcpStream, status: &Mutex<Status>) -> std::io::Result<()> {
    let mut request = Vec::new();
    let mut chunk = [0u8; 1024];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") && request.len() < MAX_REQUEST {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        request.extend_from_slice(&chunk[..n]);
    }
    let (code, body) = route(&request, status);
    let response = format!(
        "HTTP/1.1 {code}\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}

fn route(request: &[u8], status: &Mutex<Status>) -> (&'static str, String) {
    let line = request.split(|b| *b == b'\r').next().unwrap_or_default();
    let mut parts = line.split(|b| *b == b' ');
    match (parts.next(), parts.next()) {
        (Some(b"GET"), Some(b"/metrics")) => {
            let text = status
                .lock()
                .map(|s| s.metrics())
                .unwrap_or_else(|poisoned| poisoned.into_inner().metrics());
            ("200 OK", text)
        }
        (Some(b"GET"), _) => ("404 Not Found", "only /metrics is served here\n".into()),
        _ => ("405 Method Not Allowed", "GET /metrics\n".into()),
    }
}

impl Status {
    /// Prometheus text exposition format (version 0.0.4).
    pub fn metrics(&self) -> String {
        let mut out = String::new();
        let t = &self.totals;
        counter(
            &mut out,
            "v6guard_reconciles_total",
            "Reconciles run.",
            t.reconciles,
        );
        let _ = writeln!(
            out,
            "# HELP v6guard_transactions_total Kernel transactions, by kind.\n\
             # TYPE v6guard_transactions_total counter\n\
             v6guard_transactions_total{{kind=\"full\"}} {}\n\
             v6guard_transactions_total{{kind=\"elements\"}} {}",
            t.full_transactions, t.element_transactions
        );
        counter(
            &mut out,
            "v6guard_reconcile_errors_total",
            "Reconciles that failed.",
            t.errors,
        );
        counter(
            &mut out,
            "v6guard_docker_events_total",
            "Docker events that can change the ruleset.",
            t.events,
        );
        counter(
            &mut out,
            "v6guard_drift_restores_total",
            "Times the table was restored after someone else changed it.",
            t.drift_restores,
        );
        counter(
            &mut out,
            "v6guard_docker_reconnects_total",
            "Reconnections to Docker.",
            t.docker_reconnects,
        );
        counter(
            &mut out,
            "v6guard_config_reloads_total",
            "Configuration reloads (SIGHUP), successful or not.",
            t.reloads,
        );
        counter(
            &mut out,
            "v6guard_config_reload_failures_total",
            "Configuration reloads rejected (the previous configuration stayed in force).",
            t.reload_failures,
        );
        let record = self.last_reconcile.clone().unwrap_or_default();
        gauge(
            &mut out,
            "v6guard_docker_connected",
            "Whether the Docker event stream is up.",
            u64::from(self.docker.connected),
        );
        gauge(
            &mut out,
            "v6guard_set_elements",
            "Set and map elements installed (published container ports, NAT and source \
             entries): what element updates change.",
            record.elements as u64,
        );
        gauge(
            &mut out,
            "v6guard_rules",
            "Rules installed.",
            record.rules as u64,
        );
        gauge(
            &mut out,
            "v6guard_containers",
            "Running containers seen.",
            self.docker.containers as u64,
        );
        gauge(
            &mut out,
            "v6guard_networks",
            "Bridge networks seen.",
            self.docker.networks as u64,
        );
        gauge(
            &mut out,
            "v6guard_last_reconcile_timestamp_seconds",
            "When the last reconcile ran.",
            record.at_ms / 1000,
        );
        gauge(
            &mut out,
            "v6guard_last_success_timestamp_seconds",
            "When a reconcile last left the kernel holding the plan (0: never).",
            self.last_success_ms.unwrap_or(0) / 1000,
        );
        gauge(
            &mut out,
            "v6guard_enforced",
            "1 when the kernel holds the plan for what Docker runs now (connected, not standing \
             down, last reconcile succeeded).",
            u64::from(self.enforced()),
        );
        let _ = writeln!(
            out,
            "# HELP v6guard_build_info The running build (value always 1).\n\
             # TYPE v6guard_build_info gauge\n\
             v6guard_build_info{{version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        );
        gauge(
            &mut out,
            "v6guard_stood_down",
            "Whether v6guard stands down because Docker manages IPv6.",
            u64::from(self.stood_down.is_some()),
        );
        histogram(
            &mut out,
            &self.durations,
            "v6guard_reconcile_duration_seconds",
            "Time to plan and change the kernel.",
        );
        histogram(
            &mut out,
            &self.latencies,
            "v6guard_event_to_enforced_seconds",
            "From a Docker event received to the kernel holding the result.",
        );
        out
    }
}

/// One histogram, Prometheus style (cumulative buckets, sum, count).
fn histogram(out: &mut String, h: &Histogram, name: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
    for (bound, count) in h.bounds.iter().zip(&h.counts) {
        let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {count}");
    }
    let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {}", h.count);
    let _ = writeln!(out, "{name}_sum {}", h.sum);
    let _ = writeln!(out, "{name}_count {}", h.count);
}

fn counter(out: &mut String, name: &str, help: &str, value: u64) {
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
    );
}

fn gauge(out: &mut String, name: &str, help: &str, value: u64) {
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        let status = Mutex::new(Status::default());
        assert_eq!(
            route(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", &status).0,
            "200 OK"
        );
        assert_eq!(route(b"GET / HTTP/1.1\r\n\r\n", &status).0, "404 Not Found");
        assert_eq!(
            route(b"POST /metrics HTTP/1.1\r\n\r\n", &status).0,
            "405 Method Not Allowed"
        );
        assert_eq!(route(b"", &status).0, "405 Method Not Allowed");
    }
}
