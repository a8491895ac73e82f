//! `--metrics-listen ADDR`: a tiny HTTP responder for Prometheus (`GET /metrics`). Hand
//! written on tokio's TCP listener: one route, no keep-alive, bounded reads, so it needs no
//! web framework and cannot be held open by a slow client.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tracing::{debug, info};

use super::status::Status;

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
