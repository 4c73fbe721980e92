//! Liveness, readiness and startup probes (exec through CRI ExecSync, httpGet over HTTP or
//! HTTPS, tcpSocket, gRPC health), with kubelet's timing fields: initialDelaySeconds,
//! periodSeconds, timeoutSeconds, successThreshold, failureThreshold.

mod grpc;
mod http;

use std::time::{Duration, Instant};

use k8s_cri::v1 as cri;
use k8s_openapi::api::core::v1::{Container, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::cri::Cri;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Liveness,
    Readiness,
    Startup,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Success,
    Failure(String),
}

/// One probe's running state for one container instance.
#[derive(Debug, Clone)]
pub struct ProbeState {
    pub kind: Kind,
    pub started: Instant,
    pub next_due: Instant,
    pub successes: i32,
    pub failures: i32,
    /// The settled result: readiness starts false, liveness/startup start "not failed".
    pub ok: bool,
    pub settled: bool,
}

impl ProbeState {
    pub fn new(kind: Kind, probe: &Probe, started: Instant) -> Self {
        let delay = Duration::from_secs(probe.initial_delay_seconds.unwrap_or(0).max(0) as u64);
        Self {
            kind,
            started,
            next_due: started + delay,
            successes: 0,
            failures: 0,
            ok: kind == Kind::Liveness,
            settled: false,
        }
    }

    /// Records one result; returns true when the settled result changed.
    pub fn record(&mut self, probe: &Probe, outcome: &Outcome, now: Instant) -> bool {
        let period = Duration::from_secs(probe.period_seconds.unwrap_or(10).max(1) as u64);
        self.next_due = now + period;
        let success_threshold = probe.success_threshold.unwrap_or(1).max(1);
        let failure_threshold = probe.failure_threshold.unwrap_or(3).max(1);
        let before = (self.ok, self.settled);
        match outcome {
            Outcome::Success => {
                self.failures = 0;
                self.successes += 1;
                if self.successes >= success_threshold {
                    self.ok = true;
                    self.settled = true;
                }
            }
            Outcome::Failure(_) => {
                self.successes = 0;
                self.failures += 1;
                if self.failures >= failure_threshold {
                    self.ok = false;
                    self.settled = true;
                }
            }
        }
        before != (self.ok, self.settled)
    }
}

pub fn probe_of(c: &Container, kind: Kind) -> Option<&Probe> {
    match kind {
        Kind::Liveness => c.liveness_probe.as_ref(),
        Kind::Readiness => c.readiness_probe.as_ref(),
        Kind::Startup => c.startup_probe.as_ref(),
    }
}

/// A named port of the container or a number.
fn port(c: &Container, p: &IntOrString) -> Result<u16, String> {
    match p {
        IntOrString::Int(n) => u16::try_from(*n).map_err(|_| format!("port {n} out of range")),
        IntOrString::String(name) => c
            .ports
            .iter()
            .flatten()
            .find(|cp| cp.name.as_deref() == Some(name.as_str()))
            .and_then(|cp| u16::try_from(cp.container_port).ok())
            .ok_or_else(|| format!("container has no port named {name:?}")),
    }
}

pub async fn run(
    cri: &mut Cri,
    container_id: &str,
    c: &Container,
    probe: &Probe,
    pod_ip: Option<&str>,
) -> Outcome {
    let timeout = Duration::from_secs(probe.timeout_seconds.unwrap_or(1).max(1) as u64);
    if let Some(e) = &probe.exec {
        let cmd = e.command.clone().unwrap_or_default();
        let req = cri::ExecSyncRequest {
            container_id: container_id.to_string(),
            cmd,
            timeout: timeout.as_secs() as i64,
        };
        return match tokio::time::timeout(
            timeout + Duration::from_secs(1),
            cri.runtime.exec_sync(req),
        )
        .await
        {
            Err(_) => Outcome::Failure(format!("command timed out after {}s", timeout.as_secs())),
            Ok(Err(s)) => Outcome::Failure(format!("exec failed: {}", s.message())),
            Ok(Ok(r)) => {
                let r = r.into_inner();
                if r.exit_code == 0 {
                    Outcome::Success
                } else {
                    let out = String::from_utf8_lossy(&r.stdout).trim().to_string();
                    Outcome::Failure(format!("command exited with {}: {out}", r.exit_code))
                }
            }
        };
    }
    let host_ip = |h: Option<&String>| -> Result<String, String> {
        match h.filter(|h| !h.is_empty()) {
            Some(h) => Ok(h.clone()),
            None => pod_ip
                .map(str::to_string)
                .ok_or_else(|| "the pod has no IP yet".to_string()),
        }
    };
    if let Some(t) = &probe.tcp_socket {
        let target = match (host_ip(t.host.as_ref()), port(c, &t.port)) {
            (Ok(h), Ok(p)) => format!("{h}:{p}"),
            (Err(e), _) | (_, Err(e)) => return Outcome::Failure(e),
        };
        return match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(&target)).await {
            Ok(Ok(_)) => Outcome::Success,
            Ok(Err(e)) => Outcome::Failure(format!("dial tcp {target}: {e}")),
            Err(_) => Outcome::Failure(format!("dial tcp {target}: timeout")),
        };
    }
    if let Some(h) = &probe.http_get {
        let (host, p) = match (host_ip(h.host.as_ref()), port(c, &h.port)) {
            (Ok(h), Ok(p)) => (h, p),
            (Err(e), _) | (_, Err(e)) => return Outcome::Failure(e),
        };
        let https = match h.scheme.as_deref() {
            None | Some("HTTP") => false,
            Some("HTTPS") => true,
            Some(other) => {
                return Outcome::Failure(format!(
                    "unsupported httpGet scheme {other:?} (HTTP or HTTPS)"
                ))
            }
        };
        let url = http::Url::new(https, &host, p, h.path.as_deref().unwrap_or("/"));
        let headers: Vec<(String, String)> = h
            .http_headers
            .iter()
            .flatten()
            .map(|hh| (hh.name.clone(), hh.value.clone()))
            .collect();
        return http::probe(url, &headers, timeout).await;
    }
    if let Some(g) = &probe.grpc {
        let Some(ip) = pod_ip else {
            return Outcome::Failure("the pod has no IP yet".into());
        };
        let Ok(p) = u16::try_from(g.port) else {
            return Outcome::Failure(format!("port {} out of range", g.port));
        };
        return grpc::probe(ip, p, g.service.as_deref().unwrap_or(""), timeout).await;
    }
    Outcome::Failure("probe has no handler (exec, httpGet, tcpSocket, grpc)".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds() {
        let p: Probe = serde_json::from_value(
            serde_json::json!({"failureThreshold": 2, "successThreshold": 1, "periodSeconds": 1}),
        )
        .unwrap();
        let t0 = Instant::now();
        let mut s = ProbeState::new(Kind::Liveness, &p, t0);
        assert!(s.ok);
        assert!(!s.record(&p, &Outcome::Failure("x".into()), t0));
        assert!(s.ok, "one failure is below the threshold");
        assert!(s.record(&p, &Outcome::Failure("x".into()), t0));
        assert!(!s.ok);
        let mut r = ProbeState::new(Kind::Readiness, &p, t0);
        assert!(!r.ok);
        assert!(r.record(&p, &Outcome::Success, t0));
        assert!(r.ok);
        assert_eq!(r.next_due, t0 + Duration::from_secs(1));
    }
}
