//! `/metrics` (Prometheus text, kube-proxy's sync metric names) and `/healthz` (kube-proxy's
//! healthz: 200 while the rules are fresh, 503 when changes have waited for a sync longer than
//! the allowed staleness). Both are served on loopback by default.

use std::{
    fmt::Write as _,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{body::Incoming, Request, Response, StatusCode};

/// Histogram buckets in seconds (kube-proxy's sync duration buckets, exponential from 1 ms).
const BUCKETS: [f64; 15] = [
    0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256, 0.512, 1.024, 2.048, 4.096,
    8.192, 16.384,
];

#[derive(Debug, Default, Clone)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

impl Histogram {
    fn observe(&mut self, secs: f64) {
        for (i, b) in BUCKETS.iter().enumerate() {
            if secs <= *b {
                self.counts[i] += 1;
            }
        }
        self.count += 1;
        self.sum += secs;
    }
    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        for (i, b) in BUCKETS.iter().enumerate() {
            let _ = writeln!(out, "{name}_bucket{{le=\"{b}\"}} {}", self.counts[i]);
        }
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {}", self.count);
        let _ = writeln!(out, "{name}_sum {}", self.sum);
        let _ = writeln!(out, "{name}_count {}", self.count);
    }
}

#[derive(Debug, Default)]
struct Inner {
    all: Histogram,
    full: Histogram,
    partial: Histogram,
    last_sync_unix: f64,
    last_sync: Option<Instant>,
    failures: u64,
    service_changes: u64,
    endpoint_changes: u64,
    no_local_endpoints: usize,
    bad_objects: usize,
    conntrack_flushes: u64,
    /// Changes waiting since (healthz).
    pending_since: Option<Instant>,
}

/// The proxy's metrics and health, shared between the sync loop and the HTTP servers.
#[derive(Debug, Clone)]
pub struct Metrics {
    inner: Arc<Mutex<Inner>>,
    /// How long changes may wait for a sync before `/healthz` fails.
    pub healthz_timeout: Duration,
}

impl Metrics {
    pub fn new(healthz_timeout: Duration) -> Self {
        Metrics {
            inner: Arc::default(),
            healthz_timeout,
        }
    }

    pub fn observe_sync(&self, full: bool, d: Duration, conntrack_flushes: usize) {
        let mut i = self.inner.lock().expect("metrics");
        let s = d.as_secs_f64();
        i.all.observe(s);
        if full {
            i.full.observe(s);
        } else {
            i.partial.observe(s);
        }
        i.last_sync_unix = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or_default();
        i.last_sync = Some(Instant::now());
        i.pending_since = None;
        i.conntrack_flushes += conntrack_flushes as u64;
    }

    pub fn sync_failed(&self) {
        self.inner.lock().expect("metrics").failures += 1;
    }

    /// Changes arrived and wait for a sync.
    pub fn pending(&self) {
        let mut i = self.inner.lock().expect("metrics");
        i.pending_since.get_or_insert_with(Instant::now);
    }

    pub fn set_state(
        &self,
        service_changes: u64,
        endpoint_changes: u64,
        no_local: usize,
        bad: usize,
    ) {
        let mut i = self.inner.lock().expect("metrics");
        i.service_changes = service_changes;
        i.endpoint_changes = endpoint_changes;
        i.no_local_endpoints = no_local;
        i.bad_objects = bad;
    }

    /// Healthy: synced at least once and nothing has waited longer than the timeout.
    pub fn healthy(&self) -> bool {
        let i = self.inner.lock().expect("metrics");
        i.last_sync.is_some()
            && i.pending_since
                .is_none_or(|p| p.elapsed() <= self.healthz_timeout)
    }

    pub fn render(&self) -> String {
        let i = self.inner.lock().expect("metrics");
        let mut out = String::new();
        i.all.render(
            &mut out,
            "kubeproxy_sync_proxy_rules_duration_seconds",
            "SyncProxyRules latency in seconds",
        );
        i.full.render(
            &mut out,
            "kubeproxy_sync_full_proxy_rules_duration_seconds",
            "SyncProxyRules latency in seconds for full resyncs",
        );
        i.partial.render(
            &mut out,
            "kubeproxy_sync_partial_proxy_rules_duration_seconds",
            "SyncProxyRules latency in seconds for partial resyncs",
        );
        for (name, kind, help, v) in [
            (
                "kubeproxy_sync_proxy_rules_last_timestamp_seconds",
                "gauge",
                "The last time proxy rules were successfully synced",
                i.last_sync_unix,
            ),
            (
                "kubeproxy_sync_proxy_rules_nftables_sync_failures_total",
                "counter",
                "Number of nftables transactions that failed",
                i.failures as f64,
            ),
            (
                "kubeproxy_sync_proxy_rules_service_changes_total",
                "counter",
                "Cumulative service changes",
                i.service_changes as f64,
            ),
            (
                "kubeproxy_sync_proxy_rules_endpoint_changes_total",
                "counter",
                "Cumulative endpoint slice changes",
                i.endpoint_changes as f64,
            ),
            (
                "kubeproxy_sync_proxy_rules_no_local_endpoints_total",
                "gauge",
                "Service ports with a Local traffic policy and no local endpoints",
                i.no_local_endpoints as f64,
            ),
            (
                "pea_proxy_bad_objects",
                "gauge",
                "Problems found in Services and EndpointSlices (each logged)",
                i.bad_objects as f64,
            ),
            (
                "pea_proxy_conntrack_flushes_total",
                "counter",
                "conntrack deletions of stale UDP flows",
                i.conntrack_flushes as f64,
            ),
        ] {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}"
            );
        }
        out
    }

    fn healthz_body(&self) -> (StatusCode, String) {
        let ok = self.healthy();
        let i = self.inner.lock().expect("metrics");
        let body = serde_json::json!({
            "lastUpdated": i.last_sync_unix,
            "currentTime": SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or_default(),
        })
        .to_string();
        (
            if ok {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            },
            body,
        )
    }
}

fn respond(m: &Metrics, path: &str, healthz: bool) -> Response<Full<Bytes>> {
    let (status, ctype, body) = match (healthz, path) {
        (false, "/metrics") => (StatusCode::OK, "text/plain; version=0.0.4", m.render()),
        (true, "/healthz") | (true, "/livez") => {
            let (s, b) = m.healthz_body();
            (s, "application/json", b)
        }
        _ => (
            StatusCode::NOT_FOUND,
            "text/plain",
            "404 page not found\n".into(),
        ),
    };
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut()
        .insert("content-type", ctype.parse().expect("header"));
    r
}

/// Serves `/metrics` (or `/healthz` when `healthz`) on `addr` until the runtime ends.
pub async fn serve(
    addr: SocketAddr,
    metrics: Metrics,
    healthz: bool,
) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    tokio::spawn(pea_http_serve::serve_http(
        listener,
        move |req: &Request<Incoming>| respond(&metrics, req.uri().path(), healthz),
    ));
    Ok(local)
}
