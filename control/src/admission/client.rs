//! One HTTPS POST of an AdmissionReview to a webhook: TCP, TLS verified against the webhook's
//! `caBundle` (the host's trust store when it has none), HTTP/1.1, all within the webhook's
//! timeout, and the answer read up to a size limit.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::{pem::PemObject, CertificateDer, ServerName};

/// Largest AdmissionReview answer read (kube's webhook client reads at most 3 MiB too).
pub const MAX_RESPONSE: usize = 3 * 1024 * 1024;

/// Where the host's trust store is on Debian, used for webhooks without a caBundle.
const SYSTEM_ROOTS: &str = "/etc/ssl/certs/ca-certificates.crt";

/// Where to send one review.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// What to dial: an IP address or a host name.
    pub host: String,
    pub port: u16,
    /// The name the serving certificate must carry (the URL's host, or `svc.ns.svc`).
    pub server_name: String,
    /// Path and query, e.g. `/validate?timeout=10s`.
    pub path: String,
    /// The URL as kube prints it in errors.
    pub url: String,
}

/// Builds the TLS client trusting `ca_bundle` (PEM), or the host's roots if it is empty.
fn tls_config(ca_bundle: &[u8]) -> Result<rustls::ClientConfig, String> {
    let pem = if ca_bundle.is_empty() {
        std::fs::read(SYSTEM_ROOTS)
            .map_err(|e| format!("no caBundle given and reading {SYSTEM_ROOTS}: {e}"))?
    } else {
        ca_bundle.to_vec()
    };
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(&pem) {
        let c = c.map_err(|e| format!("caBundle: {e}"))?;
        // The host's store may hold certificates rustls cannot use; a caBundle may not.
        if let Err(e) = roots.add(c) {
            if !ca_bundle.is_empty() {
                return Err(format!("caBundle: {e}"));
            }
        }
    }
    if roots.is_empty() {
        return Err("caBundle holds no PEM certificate".into());
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(cfg)
}

/// POSTs `body` to `to` and returns the HTTP status and answer; every failure is the text kube
/// puts after `failed to call webhook: `.
pub async fn post(
    to: &Endpoint,
    ca_bundle: &[u8],
    body: Vec<u8>,
    timeout: Duration,
) -> Result<(u16, Vec<u8>), String> {
    let cfg = tls_config(ca_bundle)?;
    let post = |e: &dyn std::fmt::Display| format!("Post {:?}: {e}", to.url);
    let call = async {
        let addr = format!("{}:{}", bracket(&to.host), to.port);
        let tcp = tokio::net::TcpStream::connect((to.host.as_str(), to.port))
            .await
            .map_err(|e| post(&format!("dial tcp {addr}: connect: {e}")))?;
        let _ = tcp.set_nodelay(true);
        let name = ServerName::try_from(to.server_name.clone()).map_err(|e| post(&e))?;
        let tls = tokio_rustls::TlsConnector::from(Arc::new(cfg))
            .connect(name, tcp)
            .await
            .map_err(|e| post(&format!("tls: {e}")))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|e| post(&e))?;
        let driver = tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "webhook connection ended");
            }
        });
        let req = Request::builder()
            .method(Method::POST)
            .uri(&to.path)
            .header(
                hyper::header::HOST,
                format!("{}:{}", to.server_name, to.port),
            )
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .header(hyper::header::ACCEPT, "application/json")
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| post(&e))?;
        let resp = sender.send_request(req).await.map_err(|e| post(&e))?;
        let status = resp.status().as_u16();
        let mut incoming = resp.into_body();
        let mut out = Vec::new();
        while let Some(frame) = incoming.frame().await {
            let frame = frame.map_err(|e| post(&e))?;
            if let Ok(data) = frame.into_data() {
                if out.len() + data.len() > MAX_RESPONSE {
                    driver.abort();
                    return Err(post(&format!(
                        "the response is larger than {MAX_RESPONSE} bytes"
                    )));
                }
                out.extend_from_slice(&data);
            }
        }
        driver.abort();
        Ok((status, out))
    };
    tokio::time::timeout(timeout, call)
        .await
        .map_err(|_| post(&"context deadline exceeded"))?
}

fn bracket(host: &str) -> String {
    if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_string()
    }
}

/// Reads a caBundle field: base64 of PEM in JSON.
pub fn decode_ca_bundle(v: Option<&serde_json::Value>) -> Result<Vec<u8>, String> {
    use base64::Engine;
    match v.and_then(serde_json::Value::as_str) {
        None | Some("") => Ok(Vec::new()),
        Some(b) => base64::engine::general_purpose::STANDARD
            .decode(b)
            .map_err(|e| format!("caBundle is not base64: {e}")),
    }
}
