//! Relaying requests to a node's kubelet, as kube-apiserver does for pods/log, pods/exec,
//! pods/attach, pods/portforward and nodes/proxy: HTTPS with pea-control's own client
//! certificate (kubeadm's `apiserver-kubelet-client`), the kubelet's serving certificate checked
//! only when a CA is configured (kube-apiserver without `--kubelet-certificate-authority` does not
//! check it either).
//!
//! Upgrade requests (WebSocket, SPDY) are passed on unchanged; when the kubelet answers 101 the
//! client gets that answer (negotiated subprotocol included) and the two connections are spliced
//! byte for byte, like kube's UpgradeAwareHandler. Anything else streams back as it arrives
//! (`kubectl logs -f`).

use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full, StreamBody};
use hyper::header::{HeaderMap, HeaderName, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer, ServerName};

use crate::pki::Pki;
use crate::server::Body;
use crate::status::ApiError;

/// How long reaching a kubelet (TCP connect, then TLS handshake) may take.
const DIAL_TIMEOUT: Duration = Duration::from_secs(10);

/// kube's `maxReadLength` for an error body a kubelet sends back.
const MAX_ERROR_BODY: usize = 50 * 1024;

/// Where a relayed request goes and how its answer is treated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KubeletRequest {
    /// The node's address (IP or name) and kubelet port.
    pub host: String,
    pub port: u16,
    /// e.g. `/containerLogs/default/web/app?follow=true`.
    pub path_and_query: String,
    /// pods/log: an error status from the kubelet becomes a `Status` (kube's
    /// GenericHttpResponseChecker); otherwise the kubelet's answer passes through as it is.
    pub check_status: bool,
    /// For error details: `pods/log`, `pods/exec`, `nodes/proxy`, …, and the object's name.
    pub resource: String,
    pub name: String,
}

impl KubeletRequest {
    pub fn url(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        format!("https://{host}:{}{}", self.port, self.path_and_query)
    }
}

/// The parts of the client's request that travel on.
#[derive(Debug)]
pub struct Forwarded {
    pub method: Method,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// Set when the client asked to upgrade (hyper hands the connection over after a 101).
    pub upgrade: Option<hyper::upgrade::OnUpgrade>,
}

#[derive(Debug, thiserror::Error)]
pub enum KubeletClientError {
    #[error("reading the kubelet certificate authority {path}: {source}")]
    ReadCa {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("kubelet certificate authority {path} holds no certificate")]
    EmptyCa { path: PathBuf },
    #[error("kubelet client tls setup: {0}")]
    Tls(String),
}

/// A TLS client for kubelets.
#[derive(Clone)]
pub struct KubeletClient {
    tls: tokio_rustls::TlsConnector,
    verifies: bool,
}

impl std::fmt::Debug for KubeletClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeletClient")
            .field("verifies_serving_cert", &self.verifies)
            .finish()
    }
}

impl KubeletClient {
    /// A client presenting `pki.kubelet_client`, verifying kubelets against `ca_file` if given.
    pub fn new(pki: &Pki, ca_file: Option<&Path>) -> Result<Self, KubeletClientError> {
        let tls = |e: &dyn std::fmt::Display| KubeletClientError::Tls(e.to_string());
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| tls(&e))?;
        let builder = match ca_file {
            Some(path) => {
                let pem = std::fs::read(path).map_err(|source| KubeletClientError::ReadCa {
                    path: path.to_path_buf(),
                    source,
                })?;
                let mut roots = rustls::RootCertStore::empty();
                for c in CertificateDer::pem_slice_iter(&pem) {
                    roots.add(c.map_err(|e| tls(&e))?).map_err(|e| tls(&e))?;
                }
                if roots.is_empty() {
                    return Err(KubeletClientError::EmptyCa {
                        path: path.to_path_buf(),
                    });
                }
                builder.with_root_certificates(roots)
            }
            None => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(
                    // kube-apiserver's default: any kubelet serving certificate.
                    pea_insecure_tls::AnyServerCertificate::new(provider),
                )),
        };
        let certs: Vec<CertificateDer<'static>> =
            CertificateDer::pem_slice_iter(pki.kubelet_client.cert_pem.as_bytes())
                .collect::<Result<_, _>>()
                .map_err(|e| tls(&e))?;
        let key = PrivateKeyDer::from_pem_slice(pki.kubelet_client.key_pem.as_bytes())
            .map_err(|e| tls(&e))?;
        let mut cfg = builder
            .with_client_auth_cert(certs, key)
            .map_err(|e| tls(&e))?;
        // Upgrades (WebSocket, SPDY) exist only in HTTP/1.1.
        cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Self {
            tls: tokio_rustls::TlsConnector::from(Arc::new(cfg)),
            verifies: ca_file.is_some(),
        })
    }

    /// An HTTP/1.1 connection to the kubelet at `host:port` (TCP, then TLS, each bounded).
    async fn dial(
        &self,
        host: &str,
        port: u16,
        url: &str,
        method: &str,
    ) -> Result<hyper::client::conn::http1::SendRequest<Full<Bytes>>, ApiError> {
        let unreachable = |e: &dyn std::fmt::Display| {
            ApiError::BackendUnreachable(format!("{method} {url}: {e}"))
        };
        let tcp = tokio::time::timeout(DIAL_TIMEOUT, tokio::net::TcpStream::connect((host, port)))
            .await
            .map_err(|_| unreachable(&"timed out connecting"))?
            .map_err(|e| unreachable(&e))?;
        let _ = tcp.set_nodelay(true);
        let name = ServerName::try_from(host.to_string()).map_err(|e| unreachable(&e))?;
        let tls = tokio::time::timeout(DIAL_TIMEOUT, self.tls.connect(name, tcp))
            .await
            .map_err(|_| unreachable(&"timed out in the tls handshake"))?
            .map_err(|e| unreachable(&e))?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|e| unreachable(&e))?;
        tokio::spawn(async move {
            if let Err(e) = conn.with_upgrades().await {
                tracing::debug!(error = %e, "kubelet connection ended");
            }
        });
        Ok(sender)
    }

    /// GETs `path` from a kubelet (the resource metrics scraper): the body of a 200 answer, at
    /// most `limit` bytes (more is an error, not a truncation).
    pub async fn fetch(
        &self,
        host: &str,
        port: u16,
        path: &str,
        limit: usize,
    ) -> Result<Vec<u8>, ApiError> {
        let to = KubeletRequest {
            host: host.to_string(),
            port,
            path_and_query: path.to_string(),
            check_status: true,
            resource: "nodes/proxy".into(),
            name: host.to_string(),
        };
        let url = to.url();
        let mut sender = self.dial(host, port, &url, "GET").await?;
        let mut req = Request::builder()
            .method(Method::GET)
            .uri(path)
            .body(Full::new(Bytes::new()))
            .map_err(|e| ApiError::BadRequest(format!("GET {url}: {e}")))?;
        if let Ok(v) = HeaderValue::from_str(&host_header(host, port)) {
            req.headers_mut().insert(hyper::header::HOST, v);
        }
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| ApiError::BackendUnreachable(format!("GET {url}: {e}")))?;
        let status = resp.status();
        let mut body = resp.into_body();
        let mut out = Vec::new();
        while let Some(frame) = body.frame().await {
            let frame =
                frame.map_err(|e| ApiError::BackendUnreachable(format!("GET {url}: {e}")))?;
            if let Ok(data) = frame.into_data() {
                if out.len() + data.len() > limit {
                    return Err(ApiError::BackendUnreachable(format!(
                        "GET {url}: answer larger than {limit} bytes"
                    )));
                }
                out.extend_from_slice(&data);
            }
        }
        if status != StatusCode::OK {
            return Err(ApiError::BackendUnreachable(format!(
                "GET {url}: {status}: {}",
                String::from_utf8_lossy(&out[..out.len().min(512)]).trim_end()
            )));
        }
        Ok(out)
    }

    /// Sends `req` to the kubelet `to` names and answers the client with what comes back.
    pub async fn forward(
        &self,
        to: &KubeletRequest,
        req: Forwarded,
    ) -> Result<Response<Body>, ApiError> {
        let url = to.url();
        let unreachable = |e: &dyn std::fmt::Display| {
            ApiError::BackendUnreachable(format!("{} {url}: {e}", req.method))
        };
        let mut sender = self
            .dial(&to.host, to.port, &url, req.method.as_str())
            .await?;
        let upgrading = req.upgrade.is_some();
        let mut out = Request::builder()
            .method(req.method.clone())
            .uri(to.path_and_query.as_str())
            .body(Full::new(req.body))
            .map_err(|e| ApiError::BadRequest(format!("relaying to {url}: {e}")))?;
        copy_request_headers(&req.headers, out.headers_mut(), upgrading);
        if let Ok(v) = HeaderValue::from_str(&host_header(&to.host, to.port)) {
            out.headers_mut().insert(hyper::header::HOST, v);
        }
        let resp = sender
            .send_request(out)
            .await
            .map_err(|e| unreachable(&e))?;
        let status = resp.status();
        if let (Some(client_upgrade), StatusCode::SWITCHING_PROTOCOLS) = (req.upgrade, status) {
            let mut answer = Response::new(Empty::<Bytes>::new().map_err(|n| match n {}).boxed());
            *answer.status_mut() = status;
            *answer.headers_mut() = resp.headers().clone();
            let backend_upgrade = hyper::upgrade::on(resp);
            let what = format!("{} {}", to.resource, to.name);
            tokio::spawn(async move {
                let (backend, client) = tokio::join!(backend_upgrade, client_upgrade);
                match (backend, client) {
                    (Ok(backend), Ok(client)) => {
                        let (mut b, mut c) = (TokioIo::new(backend), TokioIo::new(client));
                        match tokio::io::copy_bidirectional(&mut c, &mut b).await {
                            Ok((up, down)) => {
                                tracing::debug!(%what, up, down, "upgraded stream closed")
                            }
                            Err(e) => tracing::debug!(%what, error = %e, "upgraded stream ended"),
                        }
                    }
                    (b, c) => tracing::warn!(
                        %what,
                        backend = ?b.err(),
                        client = ?c.err(),
                        "upgrade did not complete"
                    ),
                }
            });
            return Ok(answer);
        }
        if to.check_status && !(200..=206).contains(&status.as_u16()) {
            let body = read_bounded(resp.into_body(), MAX_ERROR_BODY).await;
            return Err(ApiError::from_backend(
                status.as_u16(),
                String::from_utf8_lossy(&body).trim_end().to_string(),
                &to.resource,
                &to.name,
            ));
        }
        let mut answer_headers = HeaderMap::new();
        for (k, v) in resp.headers() {
            if !is_hop_by_hop(k) {
                answer_headers.append(k.clone(), v.clone());
            }
        }
        let body = resp.into_body();
        let stream = futures_util::stream::unfold(body, |mut b| async move {
            // A broken kubelet stream ends the client's body: what arrived stays delivered.
            match b.frame().await {
                Some(Ok(frame)) => Some((Ok::<_, Infallible>(frame), b)),
                _ => None,
            }
        });
        let mut answer = Response::new(BodyExt::boxed(StreamBody::new(stream)));
        *answer.status_mut() = status;
        *answer.headers_mut() = answer_headers;
        Ok(answer)
    }
}

fn host_header(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Headers that describe one hop, not the message (RFC 9110 §7.6.1).
fn is_hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
    )
}

/// The client's headers as the kubelet should see them: hop-by-hop ones dropped (but an
/// upgrade keeps `Connection`/`Upgrade`, which are the request), the client's credentials for
/// pea-control never passed on, Host set by the caller.
fn copy_request_headers(from: &HeaderMap, to: &mut HeaderMap, upgrading: bool) {
    for (k, v) in from {
        let keep = match k.as_str() {
            "authorization" | "host" | "content-length" => false,
            "connection" | "upgrade" => upgrading,
            _ => !is_hop_by_hop(k) && !k.as_str().starts_with("impersonate-"),
        };
        if keep {
            to.append(k.clone(), v.clone());
        }
    }
}

async fn read_bounded(mut body: hyper::body::Incoming, limit: usize) -> Vec<u8> {
    let mut out = Vec::new();
    let read = async {
        while let Some(Ok(frame)) = body.frame().await {
            if let Ok(data) = frame.into_data() {
                let room = limit.saturating_sub(out.len());
                out.extend_from_slice(&data[..data.len().min(room)]);
                if out.len() >= limit {
                    break;
                }
            }
        }
    };
    let _ = tokio::time::timeout(DIAL_TIMEOUT, read).await;
    out
}

/// Whether a request asks to switch protocols (`Connection: upgrade` plus `Upgrade`).
pub fn is_upgrade_request(headers: &HeaderMap) -> bool {
    headers.contains_key(hyper::header::UPGRADE)
        && headers
            .get_all(hyper::header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn upgrades_keep_their_handshake_and_lose_credentials() {
        let client = headers(&[
            ("Connection", "Upgrade"),
            ("Upgrade", "websocket"),
            ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
            ("Sec-WebSocket-Protocol", "v5.channel.k8s.io"),
            ("Authorization", "Bearer secret"),
            ("Impersonate-User", "someone"),
            ("Host", "127.0.0.1:6443"),
        ]);
        assert!(is_upgrade_request(&client));
        let mut out = HeaderMap::new();
        copy_request_headers(&client, &mut out, true);
        assert_eq!(out["connection"], "Upgrade");
        assert_eq!(out["upgrade"], "websocket");
        assert_eq!(out["sec-websocket-protocol"], "v5.channel.k8s.io");
        assert_eq!(out["sec-websocket-key"], "dGhlIHNhbXBsZSBub25jZQ==");
        for gone in ["authorization", "impersonate-user", "host"] {
            assert!(!out.contains_key(gone), "{gone} passed on");
        }
        // A plain request drops hop-by-hop headers.
        let plain = headers(&[
            ("Connection", "keep-alive"),
            ("Accept", "*/*"),
            ("TE", "trailers"),
        ]);
        assert!(!is_upgrade_request(&plain));
        let mut out = HeaderMap::new();
        copy_request_headers(&plain, &mut out, false);
        assert_eq!(out.len(), 1);
        assert_eq!(out["accept"], "*/*");
        assert!(is_upgrade_request(&headers(&[
            ("Connection", "keep-alive, upgrade"),
            ("Upgrade", "SPDY/3.1")
        ])));
    }

    #[test]
    fn urls_bracket_ipv6() {
        let mut r = KubeletRequest {
            host: "10.0.0.1".into(),
            port: 10250,
            path_and_query: "/containerLogs/d/p/c".into(),
            check_status: true,
            resource: "pods/log".into(),
            name: "p".into(),
        };
        assert_eq!(r.url(), "https://10.0.0.1:10250/containerLogs/d/p/c");
        r.host = "fd00::1".into();
        assert_eq!(r.url(), "https://[fd00::1]:10250/containerLogs/d/p/c");
        assert_eq!(host_header("fd00::1", 1), "[fd00::1]:1");
    }
}
