//! Liveness, readiness and startup probes (exec through CRI ExecSync, httpGet, tcpSocket), with
//! kubelet's timing fields: initialDelaySeconds, periodSeconds, timeoutSeconds,
//! successThreshold, failureThreshold. gRPC probes answer a clear "not implemented" failure.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use k8s_cri::v1 as cri;
use k8s_openapi::api::core::v1::{Container, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

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
        if h.scheme.as_deref() == Some("HTTPS") {
            return Outcome::Failure("HTTPS probes are not implemented in pea-kubelet".into());
        }
        let path = h.path.clone().unwrap_or_else(|| "/".into());
        let mut headers = String::new();
        for hh in h.http_headers.iter().flatten() {
            headers.push_str(&format!("{}: {}\r\n", hh.name, hh.value));
        }
        return match tokio::time::timeout(timeout, http_get(&host, p, &path, &headers)).await {
            Err(_) => Outcome::Failure(format!("Get http://{host}:{p}{path}: timeout")),
            Ok(Err(e)) => Outcome::Failure(format!("Get http://{host}:{p}{path}: {e}")),
            Ok(Ok(code)) if (200..400).contains(&code) => Outcome::Success,
            Ok(Ok(code)) => Outcome::Failure(format!("HTTP probe failed with statuscode: {code}")),
        };
    }
    if probe.grpc.is_some() {
        return Outcome::Failure("gRPC probes are not implemented in pea-kubelet".into());
    }
    Outcome::Failure("probe has no handler (exec, httpGet, tcpSocket)".into())
}

/// A minimal HTTP/1.1 GET: kubelet's probe only looks at the status code.
async fn http_get(host: &str, port: u16, path: &str, headers: &str) -> std::io::Result<u16> {
    let addr: SocketAddr = format!("{host}:{port}")
        .parse()
        .or_else(|_| format!("[{host}]:{port}").parse())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("{e}")))?;
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    let host_header = if headers.to_ascii_lowercase().contains("host:") {
        String::new()
    } else {
        format!("Host: {host}:{port}\r\n")
    };
    let req = format!(
        "GET {path} HTTP/1.1\r\n{host_header}User-Agent: kube-probe/1.32\r\nAccept: */*\r\nConnection: close\r\n{headers}\r\n"
    );
    s.write_all(req.as_bytes()).await?;
    let mut buf = vec![0u8; 1024];
    let mut n = 0;
    while n < 12 {
        let r = s.read(&mut buf[n..]).await?;
        if r == 0 {
            break;
        }
        n += r;
    }
    let head = String::from_utf8_lossy(&buf[..n]);
    head.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::InvalidData, "malformed HTTP response")
        })
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
