//! `serverTLSBootstrap`: the HTTPS server's certificate from the cluster CA instead of a
//! self-signed one (kubelet's pkg/kubelet/certificate `NewKubeletServerCertificateManager`).
//!
//! The kubelet asks for `CN=system:node:NAME, O=system:nodes` with its hostname and addresses as
//! subject alternative names, signer `kubernetes.io/kubelet-serving`, usages digital
//! signature and server auth. As in kube, no controller approves such a request (a node could
//! claim any address): an administrator runs `kubectl certificate approve`. Until then the
//! server has no certificate and refuses handshakes, as kubelet's does ("no serving
//! certificate available"); once issued it is used for the next handshake, and renewed at
//! 70–90 % of its lifetime like the client certificate.

use std::net::IpAddr;
use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::sign::CertifiedKey;

use super::request::{request, Want};
use super::rotation;
use super::store::{Pair, Store, SERVER};
use super::CertificateError;

pub const SIGNER: &str = "kubernetes.io/kubelet-serving";

/// The server's certificate as a rustls resolver: whatever is current at the handshake.
#[derive(Debug, Default)]
pub struct ServingCert {
    current: RwLock<Option<Arc<CertifiedKey>>>,
}

impl ServingCert {
    pub fn set(&self, pair: &Pair) -> Result<(), CertificateError> {
        let bad = |e: &dyn std::fmt::Display| CertificateError::Certificate(e.to_string());
        let certs: Vec<CertificateDer<'static>> =
            CertificateDer::pem_slice_iter(pair.cert_pem.as_bytes())
                .collect::<Result<_, _>>()
                .map_err(|e| bad(&e))?;
        let key = PrivateKeyDer::from_pem_slice(pair.key_pem.as_bytes()).map_err(|e| bad(&e))?;
        let provider = rustls::crypto::ring::default_provider();
        let ck = CertifiedKey::from_der(certs, key, &provider).map_err(|e| bad(&e))?;
        *self.current.write().expect("serving lock") = Some(Arc::new(ck));
        Ok(())
    }

    pub fn is_set(&self) -> bool {
        self.current.read().expect("serving lock").is_some()
    }
}

impl rustls::server::ResolvesServerCert for ServingCert {
    fn resolve(&self, _: rustls::server::ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let c = self.current.read().expect("serving lock").clone();
        if c.is_none() {
            tracing::debug!(
                "no serving certificate available for the kubelet (its CSR waits for approval)"
            );
        }
        c
    }
}

/// The serving certificate's manager: loads the stored one, requests and renews.
pub struct ServingCertificates {
    client: kube::Client,
    store: Store,
    node_name: String,
    ips: Vec<IpAddr>,
    cert: Arc<ServingCert>,
}

impl std::fmt::Debug for ServingCertificates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServingCertificates")
            .field("node_name", &self.node_name)
            .field("ips", &self.ips)
            .finish_non_exhaustive()
    }
}

impl ServingCertificates {
    /// The manager with the stored certificate loaded when it is still valid.
    pub fn load(
        client: kube::Client,
        root_dir: &Path,
        node_name: &str,
        ips: Vec<IpAddr>,
    ) -> Result<(Self, Option<Pair>), CertificateError> {
        let store = Store::new(&root_dir.join("pki"), SERVER);
        let cert = Arc::new(ServingCert::default());
        let stored = store.current()?.filter(|p| !p.expired(chrono::Utc::now()));
        if let Some(p) = &stored {
            cert.set(p)?;
        }
        Ok((
            Self {
                client,
                store,
                node_name: node_name.to_string(),
                ips,
                cert,
            },
            stored,
        ))
    }

    /// The resolver the HTTPS server uses.
    pub fn resolver(&self) -> Arc<ServingCert> {
        self.cert.clone()
    }

    /// What the CSR asks for: the node's name as DNS name, its addresses as IP names.
    pub fn want(&self) -> Want {
        Want {
            key_named: false,
            signer: SIGNER,
            common_name: format!("system:node:{}", self.node_name),
            organizations: vec!["system:nodes".into()],
            dns_names: vec![self.node_name.clone()],
            ips: self.ips.clone(),
            usages: vec!["digital signature".into(), "server auth".into()],
            timeout: Duration::from_secs(900),
        }
    }

    /// Requests a certificate when there is none, then renews before each deadline (a
    /// spawned task).
    pub async fn run(self, mut current: Option<Pair>) {
        let mut failures = 0u32;
        loop {
            let wait = match (&current, failures) {
                (_, f) if f > 0 => rotation::backoff(f - 1),
                (Some(p), _) => {
                    let at = rotation::next_deadline(p);
                    tracing::info!(not_after = %p.not_after, rotate_at = %at, "serving certificate rotation scheduled");
                    rotation::until(at, chrono::Utc::now())
                }
                (None, _) => Duration::ZERO,
            };
            tokio::time::sleep(wait).await;
            match self.renew().await {
                Ok(p) => {
                    failures = 0;
                    current = Some(p);
                }
                Err(e) => {
                    failures += 1;
                    tracing::warn!(error = %e, retry_in = ?rotation::backoff(failures - 1), "serving certificate request failed");
                }
            }
        }
    }

    async fn renew(&self) -> Result<Pair, CertificateError> {
        let (pair, csr) = request(&self.client, &self.want()).await?;
        let file = self.store.update(&pair)?;
        self.cert.set(&pair)?;
        tracing::info!(%csr, file = %file.display(), not_after = %pair.not_after, "serving certificate issued and in use");
        Ok(pair)
    }
}
