//! Ingress fixtures: pea-ingress as a process, and small HTTP backends on loopback addresses that
//! answer with their name and what they were sent (and echo bytes back after an upgrade).

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};

use crate::bins::workspace_binary;
use crate::dns::http_get;
use crate::fixtures::registry::free_port;

/// A running pea-ingress process.
#[derive(Debug)]
pub struct PeaIngress {
    child: Child,
    pub http: SocketAddr,
    pub https: SocketAddr,
    pub log: std::path::PathBuf,
}

impl PeaIngress {
    /// Starts pea-ingress on free loopback ports; waits until its HTTP port answers.
    pub fn start(kubeconfig: &Path, log_dir: &Path, extra: &[&str]) -> Result<Self> {
        let bin = workspace_binary("pea-ingress", "PEA_INGRESS");
        let http = SocketAddr::from(([127, 0, 0, 1], free_port()?));
        let https = SocketAddr::from(([127, 0, 0, 1], free_port()?));
        // Its own metrics port too: the default 127.0.0.1:10254 would collide between tests.
        let metrics = SocketAddr::from(([127, 0, 0, 1], free_port()?));
        let log = log_dir.join("pea-ingress.log");
        let child = Command::new(&bin)
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .args([
                "--http-listen",
                &http.to_string(),
                "--https-listen",
                &https.to_string(),
                "--metrics-listen",
                &metrics.to_string(),
            ])
            .args(extra)
            .stdin(Stdio::null())
            .stderr(std::fs::File::create(&log)?)
            .spawn()
            .with_context(|| format!("spawn {}", bin.display()))?;
        let mut me = Self {
            child,
            http,
            https,
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(s) = me.child.try_wait()? {
                bail!("pea-ingress exited: {s}: {}", me.log_text());
            }
            if std::fs::read_to_string(&me.log).is_ok_and(|l| l.contains("routes synced"))
                && http_get(http, "/").is_ok()
            {
                return Ok(me);
            }
            if Instant::now() > deadline {
                bail!("pea-ingress not ready in 20 s: {}", me.log_text());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for PeaIngress {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// HTTP backends on their own tokio runtime; stopped with it on drop.
#[derive(Debug)]
pub struct Backends {
    rt: Option<tokio::runtime::Runtime>,
    pub addrs: Vec<SocketAddr>,
}

async fn answer(
    name: String,
    mut req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, hyper::Error> {
    let h = |k: &str| {
        req.headers()
            .get(k)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-")
            .to_string()
    };
    if req.headers().contains_key(hyper::header::UPGRADE) {
        let proto = h("upgrade");
        let on = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            if let Ok(up) = on.await {
                let mut io = TokioIo::new(up);
                let (mut r, mut w) = tokio::io::split(&mut io);
                let _ = tokio::io::copy(&mut r, &mut w).await;
            }
        });
        let mut r = Response::new(Full::new(Bytes::new()));
        *r.status_mut() = hyper::StatusCode::SWITCHING_PROTOCOLS;
        r.headers_mut()
            .insert("connection", "upgrade".parse().unwrap());
        r.headers_mut().insert("upgrade", proto.parse().unwrap());
        return Ok(r);
    }
    let body = format!(
        "backend={name} path={} host={} xff={} xfproto={} xfhost={}\n",
        req.uri().path(),
        h("host"),
        h("x-forwarded-for"),
        h("x-forwarded-proto"),
        h("x-forwarded-host"),
    );
    Ok(Response::new(Full::new(Bytes::from(body))))
}

impl Backends {
    /// One backend per `(name, address)`; port 0 picks a free one.
    pub fn start(list: &[(&str, SocketAddr)]) -> Result<Self> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()?;
        let mut addrs = Vec::new();
        for (name, addr) in list {
            let listener = rt.block_on(tokio::net::TcpListener::bind(addr))?;
            addrs.push(listener.local_addr()?);
            let name = name.to_string();
            rt.spawn(async move {
                while let Ok((tcp, _)) = listener.accept().await {
                    let name = name.clone();
                    tokio::spawn(async move {
                        let svc = hyper::service::service_fn(move |req| answer(name.clone(), req));
                        let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                            .serve_connection_with_upgrades(TokioIo::new(tcp), svc)
                            .await;
                    });
                }
            });
        }
        Ok(Self {
            rt: Some(rt),
            addrs,
        })
    }
}

impl Drop for Backends {
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_timeout(Duration::from_secs(2));
        }
    }
}
