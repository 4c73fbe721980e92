//! pea-flanneld's `/metrics` (Prometheus text): reconcile rounds by result, their duration, and
//! the peers programmed by the last round. Served by a small HTTP/1 responder (this crate links
//! no HTTP server): one GET per connection, the request head bounded in size and time.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Reconcile duration buckets in seconds.
const BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];
/// The longest request head read, and how long a client may take to send it.
const MAX_HEAD: usize = 8 * 1024;
const HEAD_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Default)]
struct Inner {
    ok: u64,
    failed: u64,
    buckets: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
    peers: usize,
}

#[derive(Debug, Default)]
pub struct Metrics(Mutex<Inner>);

impl Metrics {
    /// One reconcile round: how long it took, whether it failed, the peers it left programmed.
    pub fn observe(&self, took: Duration, failed: bool, peers: Option<usize>) {
        let mut m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let secs = took.as_secs_f64();
        for (i, b) in BUCKETS.iter().enumerate() {
            if secs <= *b {
                m.buckets[i] += 1;
            }
        }
        m.count += 1;
        m.sum += secs;
        if failed {
            m.failed += 1;
        } else {
            m.ok += 1;
        }
        if let Some(p) = peers {
            m.peers = p;
        }
    }

    pub fn render(&self) -> String {
        let m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = String::new();
        let _ = writeln!(out, "# HELP pea_flanneld_reconciles_total Reconcile rounds of the overlay, by result.\n# TYPE pea_flanneld_reconciles_total counter");
        let _ = writeln!(
            out,
            "pea_flanneld_reconciles_total{{result=\"success\"}} {}",
            m.ok
        );
        let _ = writeln!(
            out,
            "pea_flanneld_reconciles_total{{result=\"error\"}} {}",
            m.failed
        );
        let _ = writeln!(out, "# HELP pea_flanneld_reconcile_duration_seconds Duration of a reconcile round (routes, neighbours, FDB entries).\n# TYPE pea_flanneld_reconcile_duration_seconds histogram");
        for (b, n) in BUCKETS.iter().zip(m.buckets) {
            let _ = writeln!(
                out,
                "pea_flanneld_reconcile_duration_seconds_bucket{{le=\"{b}\"}} {n}"
            );
        }
        let _ = writeln!(
            out,
            "pea_flanneld_reconcile_duration_seconds_bucket{{le=\"+Inf\"}} {}",
            m.count
        );
        let _ = writeln!(
            out,
            "pea_flanneld_reconcile_duration_seconds_sum {}\npea_flanneld_reconcile_duration_seconds_count {}",
            m.sum, m.count
        );
        let _ = writeln!(out, "# HELP pea_flanneld_peers Remote nodes the overlay reaches after the last reconcile.\n# TYPE pea_flanneld_peers gauge\npea_flanneld_peers {}", m.peers);
        out
    }
}

/// Binds `addr` now (so a bad address fails at start) and serves `/metrics` and `/healthz`.
pub async fn serve(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let listener = TcpListener::bind(addr).await?;
    tracing::info!(%addr, "serving /metrics");
    Ok(tokio::spawn(async move {
        loop {
            let Ok((mut conn, _)) = listener.accept().await else {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            let metrics = metrics.clone();
            tokio::spawn(async move {
                let head = match tokio::time::timeout(HEAD_TIMEOUT, read_head(&mut conn)).await {
                    Ok(Ok(h)) => h,
                    _ => return,
                };
                let (status, body) = answer(&head, &metrics);
                let reply = format!(
                    "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = conn.write_all(reply.as_bytes()).await;
                let _ = conn.shutdown().await;
            });
        }
    }))
}

async fn read_head(conn: &mut tokio::net::TcpStream) -> std::io::Result<String> {
    let mut buf = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        if buf.len() >= MAX_HEAD {
            break;
        }
        let n = conn.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

fn answer(head: &str, metrics: &Metrics) -> (&'static str, String) {
    let mut words = head.lines().next().unwrap_or("").split(' ');
    let (method, path) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    let path = path.split('?').next().unwrap_or("");
    match (method, path) {
        ("GET", "/metrics") => ("200 OK", metrics.render()),
        ("GET", "/healthz") => ("200 OK", "ok\n".into()),
        ("GET", _) => ("404 Not Found", "404 page not found\n".into()),
        _ => ("405 Method Not Allowed", "only GET\n".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounds_are_counted_and_paths_answered() {
        let m = Metrics::default();
        m.observe(Duration::from_millis(3), false, Some(2));
        m.observe(Duration::from_millis(30), true, None);
        let text = m.render();
        for want in [
            "pea_flanneld_reconciles_total{result=\"success\"} 1",
            "pea_flanneld_reconciles_total{result=\"error\"} 1",
            "pea_flanneld_reconcile_duration_seconds_bucket{le=\"0.005\"} 1",
            "pea_flanneld_reconcile_duration_seconds_count 2",
            "pea_flanneld_peers 2",
        ] {
            assert!(text.contains(want), "{want} in\n{text}");
        }
        assert_eq!(answer("GET /metrics HTTP/1.1\r\n", &m).0, "200 OK");
        assert_eq!(answer("GET /x HTTP/1.1\r\n", &m).0, "404 Not Found");
        assert_eq!(
            answer("POST /metrics HTTP/1.1\r\n", &m).0,
            "405 Method Not Allowed"
        );
        assert_eq!(answer("", &m).0, "405 Method Not Allowed");
    }
}
