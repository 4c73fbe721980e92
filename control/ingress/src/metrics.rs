//! pea-ingress's `/metrics` (Prometheus text, on its own listener like ingress-nginx's :10254):
//! proxied requests by status code class and their latency to the response head. Labels are fixed strings (a status class, never a host or path from the
//! client), so the series set stays bounded.

use std::convert::Infallible;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{body::Incoming, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::state::State;

const BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];
const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

#[derive(Debug, Default, Clone)]
struct Class {
    buckets: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

#[derive(Debug, Default)]
pub struct Metrics {
    by_class: Mutex<[Class; CLASSES.len()]>,
}

impl Metrics {
    pub fn observe(&self, status: u16, took: Duration) {
        let i = usize::from(status / 100).clamp(1, 5) - 1;
        let secs = took.as_secs_f64();
        let mut m = self.by_class.lock().unwrap_or_else(|p| p.into_inner());
        let c = &mut m[i];
        for (j, b) in BUCKETS.iter().enumerate() {
            if secs <= *b {
                c.buckets[j] += 1;
            }
        }
        c.count += 1;
        c.sum += secs;
    }

    pub fn render(&self) -> String {
        let m = self
            .by_class
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let mut out = String::new();
        let _ = writeln!(out, "# HELP pea_ingress_requests_total Requests proxied, by status code class.\n# TYPE pea_ingress_requests_total counter");
        for (class, c) in CLASSES.iter().zip(&m) {
            let _ = writeln!(
                out,
                "pea_ingress_requests_total{{status=\"{class}\"}} {}",
                c.count
            );
        }
        let _ = writeln!(out, "# HELP pea_ingress_request_duration_seconds Time to the response head of proxied requests, by status code class.\n# TYPE pea_ingress_request_duration_seconds histogram");
        for (class, c) in CLASSES.iter().zip(&m) {
            for (b, n) in BUCKETS.iter().zip(c.buckets) {
                let _ = writeln!(
                    out,
                    "pea_ingress_request_duration_seconds_bucket{{status=\"{class}\",le=\"{b}\"}} {n}"
                );
            }
            let _ = writeln!(out, "pea_ingress_request_duration_seconds_bucket{{status=\"{class}\",le=\"+Inf\"}} {}\npea_ingress_request_duration_seconds_sum{{status=\"{class}\"}} {}\npea_ingress_request_duration_seconds_count{{status=\"{class}\"}} {}", c.count, c.sum, c.count);
        }
        out
    }
}

fn reply(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain; version=0.0.4"),
    );
    r
}

/// Serves `/metrics` and `/healthz` on `listener` until the task is aborted.
pub async fn serve(listener: TcpListener, state: Arc<State>) {
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let state = state.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                let state = state.clone();
                async move {
                    let r = match (req.method(), req.uri().path()) {
                        (&hyper::Method::GET, "/metrics") => {
                            reply(StatusCode::OK, state.metrics.render())
                        }
                        (&hyper::Method::GET, "/healthz") => reply(StatusCode::OK, "ok\n".into()),
                        _ => reply(StatusCode::NOT_FOUND, "404 page not found\n".into()),
                    };
                    Ok::<_, Infallible>(r)
                }
            });
            // The header timeout needs hyper's timer set, or the connection task panics.
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(Duration::from_secs(5))
                .serve_connection(TokioIo::new(tcp), service)
                .await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_are_bounded() {
        let m = Metrics::default();
        m.observe(200, Duration::from_millis(2));
        m.observe(502, Duration::from_millis(20));
        m.observe(999, Duration::ZERO);
        let text = m.render();
        for want in [
            "pea_ingress_requests_total{status=\"2xx\"} 1",
            "pea_ingress_requests_total{status=\"5xx\"} 2",
            "pea_ingress_request_duration_seconds_bucket{status=\"2xx\",le=\"0.0025\"} 1",
        ] {
            assert!(text.contains(want), "{want} in\n{text}");
        }
    }
}
