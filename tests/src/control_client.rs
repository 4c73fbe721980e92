//! A small HTTPS client for pea-control benchmarks and tests: one kept-alive HTTP/1.1
//! connection per client, trusting the server's CA and authenticating with a bearer token.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::{pem::PemObject, CertificateDer, ServerName};

/// One connection to the API server.
#[derive(Debug)]
pub struct ApiClient {
    send: SendRequest<Full<Bytes>>,
    token: String,
}

/// TLS settings trusting `ca_pem`.
pub fn tls_connector(ca_pem: &str) -> Result<tokio_rustls::TlsConnector> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(c?)?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_rustls::TlsConnector::from(Arc::new(cfg)))
}

/// TLS settings trusting `ca_pem` and presenting a client certificate (`cert_pem`, `key_pem`).
pub fn tls_connector_with_cert(
    ca_pem: &str,
    cert_pem: &str,
    key_pem: &str,
) -> Result<tokio_rustls::TlsConnector> {
    use tokio_rustls::rustls::pki_types::PrivateKeyDer;
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(c?)?;
    }
    let chain =
        CertificateDer::pem_slice_iter(cert_pem.as_bytes()).collect::<Result<Vec<_>, _>>()?;
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)?;
    Ok(tokio_rustls::TlsConnector::from(Arc::new(cfg)))
}

impl ApiClient {
    /// Connects to `addr`; an empty `token` sends no credentials (an anonymous client).
    pub async fn connect(
        addr: SocketAddr,
        connector: &tokio_rustls::TlsConnector,
        token: &str,
    ) -> Result<Self> {
        let tcp = tokio::net::TcpStream::connect(addr)
            .await
            .context("connect")?;
        tcp.set_nodelay(true)?;
        let tls = connector
            .connect(ServerName::try_from("127.0.0.1")?.to_owned(), tcp)
            .await
            .context("tls")?;
        let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(Self {
            send,
            token: token.to_string(),
        })
    }

    /// Sends a request and returns the response with its body still streaming.
    pub async fn send(
        &mut self,
        method: &str,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<Response<Incoming>> {
        self.send_typed(method, path, "application/json", body)
            .await
    }

    /// Like [`ApiClient::send`] with an explicit Content-Type (e.g. a patch type).
    pub async fn send_typed(
        &mut self,
        method: &str,
        path: &str,
        content_type: &str,
        body: Option<Vec<u8>>,
    ) -> Result<Response<Incoming>> {
        self.send.ready().await?;
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header("host", "127.0.0.1");
        // An empty token makes an anonymous client.
        if !self.token.is_empty() {
            req = req.header("authorization", format!("Bearer {}", self.token));
        }
        let req = req
            .header("content-type", content_type)
            .header("accept", "application/json")
            .body(Full::new(Bytes::from(body.unwrap_or_default())))?;
        Ok(self.send.send_request(req).await?)
    }

    /// Sends a request and reads the whole response: (status, body).
    pub async fn call(
        &mut self,
        method: &str,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<(u16, Bytes)> {
        self.call_typed(method, path, "application/json", body)
            .await
    }

    /// Like [`ApiClient::call`] with an explicit Content-Type.
    pub async fn call_typed(
        &mut self,
        method: &str,
        path: &str,
        content_type: &str,
        body: Option<Vec<u8>>,
    ) -> Result<(u16, Bytes)> {
        let resp = self.send_typed(method, path, content_type, body).await?;
        let status = resp.status().as_u16();
        let body = resp.into_body().collect().await?.to_bytes();
        Ok((status, body))
    }
}
