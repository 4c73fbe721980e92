//! A small HTTPS JSON server for webhook tests (conversion, admission): listens on a loopback
//! address with a certificate for that address signed by a CA made here (rcgen), whose PEM,
//! base64-encoded, is the caBundle to configure. Each POST body is parsed as JSON, kept (with
//! its query string), and answered with what the test's handler returns for (path, body). The
//! handler may block (a slow webhook sleeps): it runs off the server's async workers. Stopped
//! on drop.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio_rustls::rustls;

/// What answers a request: (path, parsed body) to the JSON reply.
pub type Handler = Arc<dyn Fn(&str, &Value) -> Value + Send + Sync>;

/// A request as kept: path, query string, parsed body.
type Seen = Arc<Mutex<Vec<(String, String, Value)>>>;

pub struct HttpsHook {
    pub port: u16,
    /// The loopback address it listens on.
    pub ip: String,
    /// The CA's PEM, base64 (a `caBundle` field's value).
    pub ca_bundle: String,
    seen: Seen,
    rt: Option<tokio::runtime::Runtime>,
}

impl std::fmt::Debug for HttpsHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpsHook")
            .field("port", &self.port)
            .finish()
    }
}

impl Drop for HttpsHook {
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_timeout(Duration::from_secs(2));
        }
    }
}

impl HttpsHook {
    /// Serves on 127.0.0.1 (an ephemeral port) with `handler`.
    pub fn start(handler: Handler) -> anyhow::Result<Self> {
        Self::start_at("127.0.0.1", "127.0.0.1", handler)
    }

    /// Serves on `ip` (a loopback address; an ephemeral port) with a certificate for `name`
    /// (an IP address or a DNS name such as a Service's `hook.ns.svc`).
    pub fn start_at(ip: &str, name: &str, handler: Handler) -> anyhow::Result<Self> {
        use base64::Engine;
        let ca_key = rcgen::KeyPair::generate()?;
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new())?;
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "pea-test-hook-ca");
        let ca = ca_params.self_signed(&ca_key)?;
        let issuer = rcgen::Issuer::from_ca_cert_pem(&ca.pem(), ca_key)?;
        let key = rcgen::KeyPair::generate()?;
        let cert =
            rcgen::CertificateParams::new(vec![name.to_string()])?.signed_by(&key, &issuer)?;
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        )?;
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()?;
        let listener = rt.block_on(tokio::net::TcpListener::bind((ip, 0)))?;
        let port = listener.local_addr()?.port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let kept = seen.clone();
        rt.spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let (acceptor, kept, handler) = (acceptor.clone(), kept.clone(), handler.clone());
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let svc = hyper::service::service_fn(move |req| {
                        answer(req, kept.clone(), handler.clone())
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tls), svc)
                        .await;
                });
            }
        });
        Ok(HttpsHook {
            port,
            ip: ip.to_string(),
            ca_bundle: base64::engine::general_purpose::STANDARD.encode(ca.pem()),
            seen,
            rt: Some(rt),
        })
    }

    pub fn url(&self, path: &str) -> String {
        format!("https://{}:{}{path}", self.ip, self.port)
    }

    /// The bodies POSTed to `path` so far.
    pub fn seen(&self, path: &str) -> Vec<Value> {
        self.seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|(p, _, _)| p == path)
            .map(|(_, _, b)| b.clone())
            .collect()
    }

    /// The query strings of the requests to `path` so far.
    pub fn queries(&self, path: &str) -> Vec<String> {
        self.seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|(p, _, _)| p == path)
            .map(|(_, q, _)| q.clone())
            .collect()
    }
}

async fn answer(
    req: Request<hyper::body::Incoming>,
    seen: Seen,
    handler: Handler,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    let body = Limited::new(req.into_body(), 8 << 20)
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let parsed: Value = serde_json::from_slice(&body).unwrap_or(json!(null));
    seen.lock()
        .unwrap_or_else(|p| p.into_inner())
        .push((path.clone(), query, parsed.clone()));
    let reply = tokio::task::block_in_place(|| handler(&path, &parsed));
    Ok(Response::new(Full::new(Bytes::from(reply.to_string()))))
}
