//! `rotateCertificates`: the kubelet's API client with a renewable certificate.
//!
//! Every part of the kubelet holds one `kube::Client` built over [`Rotating`], a service that
//! sends each request through the *current* inner client. A renewal builds an inner client
//! with the new certificate and swaps it in: requests from then on open connections with the
//! new certificate, and the old client's pooled connections close when its last in-flight
//! request (a watch) ends — as kubelet closes its connections after a rotation, since the API
//! server checks a client certificate at the handshake.
//!
//! The current pair is `<root-dir>/pki/kubelet-client-current.pem` when it exists, else the
//! kubeconfig's (kubelet's certificate store falls back the same way). After a renewal the
//! kubeconfig is rewritten too, so a kubelet restarted without rotation still starts.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};
use std::time::Duration;

use base64::Engine;
use futures_util::future::BoxFuture;
use kube::client::Body;

use super::request::{request, Want};
use super::rotation;
use super::store::{Pair, Store, CLIENT};
use super::CertificateError;

pub const SIGNER: &str = "kubernetes.io/kube-apiserver-client-kubelet";

/// A tower service sending through whichever client is current.
#[derive(Clone)]
pub struct Rotating {
    current: Arc<RwLock<kube::Client>>,
}

impl std::fmt::Debug for Rotating {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rotating").finish_non_exhaustive()
    }
}

impl tower::Service<hyper::Request<Body>> for Rotating {
    type Response = hyper::Response<Body>;
    type Error = kube::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: hyper::Request<Body>) -> Self::Future {
        let client = self.current.read().expect("client lock").clone();
        Box::pin(async move { client.send(req).await })
    }
}

/// The API server and CA (PEM) of a kubeconfig, and its client certificate and key (PEM) when
/// it has them (inline or as files).
#[derive(Debug, Clone)]
pub struct KubeconfigParts {
    pub server: String,
    pub ca_pem: String,
    pub identity: Option<(String, String)>,
}

/// Reads `path` as kube's loader does for the current context (only what the kubelet needs).
pub fn read_kubeconfig(path: &Path) -> Result<KubeconfigParts, CertificateError> {
    let bad = |message: String| CertificateError::Read {
        path: path.to_path_buf(),
        message,
    };
    let kc = kube::config::Kubeconfig::read_from(path).map_err(|e| bad(e.to_string()))?;
    let (server, ca_pem) = crate::bootstrap::cluster_of(&kc, path).map_err(bad)?;
    // The key is a secret in kube's types; the YAML gives it plainly.
    let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
    let doc: serde_yaml::Value = serde_yaml::from_str(&text).map_err(|e| bad(e.to_string()))?;
    let user_name = kc
        .contexts
        .iter()
        .find(|c| Some(&c.name) == kc.current_context.as_ref())
        .and_then(|c| c.context.as_ref())
        .and_then(|c| c.user.clone())
        .unwrap_or_default();
    let user = doc["users"]
        .as_sequence()
        .into_iter()
        .flatten()
        .find(|u| u["name"].as_str() == Some(user_name.as_str()))
        .map(|u| u["user"].clone())
        .unwrap_or_default();
    let field = |data: &str, file: &str| -> Result<Option<String>, CertificateError> {
        if let Some(d) = user[data].as_str() {
            let raw = base64::engine::general_purpose::STANDARD
                .decode(d.trim())
                .map_err(|e| bad(format!("{data}: {e}")))?;
            return String::from_utf8(raw)
                .map(Some)
                .map_err(|_| bad(format!("{data} is not PEM")));
        }
        if let Some(f) = user[file].as_str() {
            let f = path
                .parent()
                .map_or_else(|| PathBuf::from(f), |d| d.join(f));
            return std::fs::read_to_string(&f)
                .map(Some)
                .map_err(|e| bad(format!("{}: {e}", f.display())));
        }
        Ok(None)
    };
    let identity = match (
        field("client-certificate-data", "client-certificate")?,
        field("client-key-data", "client-key")?,
    ) {
        (Some(c), Some(k)) => Some((c, k)),
        _ => None,
    };
    Ok(KubeconfigParts {
        server,
        ca_pem,
        identity,
    })
}

/// An API client for `server` trusting `ca_pem`, authenticating with `pair`.
pub async fn build(
    server: &str,
    ca_pem: &str,
    pair: &Pair,
) -> Result<kube::Client, CertificateError> {
    let text = crate::bootstrap::node_kubeconfig(server, ca_pem, &pair.cert_pem, &pair.key_pem);
    let kc = kube::config::Kubeconfig::from_yaml(&text)
        .map_err(|e| CertificateError::Client(e.to_string()))?;
    let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .map_err(|e| CertificateError::Client(e.to_string()))?;
    kube::Client::try_from(cfg).map_err(|e| CertificateError::Client(e.to_string()))
}

/// The rotating client and its renewal loop.
pub struct ClientCertificates {
    node_name: String,
    kubeconfig: PathBuf,
    parts: KubeconfigParts,
    store: Store,
    pair: Pair,
    current: Arc<RwLock<kube::Client>>,
    client: kube::Client,
}

impl std::fmt::Debug for ClientCertificates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientCertificates")
            .field("node_name", &self.node_name)
            .field("not_after", &self.pair.not_after)
            .finish_non_exhaustive()
    }
}

impl ClientCertificates {
    /// The current pair (the pki dir's, else the kubeconfig's) and a client over it.
    pub async fn load(
        kubeconfig: &Path,
        root_dir: &Path,
        node_name: &str,
    ) -> Result<Self, CertificateError> {
        let parts = read_kubeconfig(kubeconfig)?;
        let store = Store::new(&root_dir.join("pki"), CLIENT);
        let pair = match store.current()? {
            Some(p) => p,
            None => {
                let (c, k) = parts.identity.clone().ok_or_else(|| CertificateError::Read {
                    path: kubeconfig.to_path_buf(),
                    message: "rotateCertificates needs a client certificate and key in the kubeconfig or pki/kubelet-client-current.pem".into(),
                })?;
                Pair::new(c, k).map_err(|message| CertificateError::Read {
                    path: kubeconfig.to_path_buf(),
                    message,
                })?
            }
        };
        let inner = build(&parts.server, &parts.ca_pem, &pair).await?;
        let current = Arc::new(RwLock::new(inner));
        let client = kube::Client::new(
            Rotating {
                current: current.clone(),
            },
            "default",
        );
        Ok(Self {
            node_name: node_name.to_string(),
            kubeconfig: kubeconfig.to_path_buf(),
            parts,
            store,
            pair,
            current,
            client,
        })
    }

    /// The client every part of the kubelet shares.
    pub fn client(&self) -> kube::Client {
        self.client.clone()
    }

    pub fn pair(&self) -> &Pair {
        &self.pair
    }

    /// Renews before each deadline, forever (a spawned task).
    pub async fn run(mut self) {
        let mut failures = 0u32;
        loop {
            let wait = if failures > 0 {
                rotation::backoff(failures - 1)
            } else {
                let at = rotation::next_deadline(&self.pair);
                tracing::info!(not_after = %self.pair.not_after, rotate_at = %at, "client certificate rotation scheduled");
                rotation::until(at, chrono::Utc::now())
            };
            tokio::time::sleep(wait).await;
            match self.renew().await {
                Ok(()) => failures = 0,
                Err(e) => {
                    failures += 1;
                    tracing::warn!(error = %e, retry_in = ?rotation::backoff(failures - 1), not_after = %self.pair.not_after, "client certificate renewal failed");
                }
            }
        }
    }

    /// One renewal: CSR with the same subject, stored, the kubeconfig rewritten, the client
    /// swapped.
    pub async fn renew(&mut self) -> Result<(), CertificateError> {
        // kubelet's certificate manager waits at most 15 min for one request.
        let want = Want::node_client(&self.node_name, false, Duration::from_secs(900));
        let (pair, csr) = request(&self.client, &want).await?;
        let file = self.store.update(&pair)?;
        super::store::write_private(
            &self.kubeconfig,
            crate::bootstrap::node_kubeconfig(
                &self.parts.server,
                &self.parts.ca_pem,
                &pair.cert_pem,
                &pair.key_pem,
            )
            .as_bytes(),
        )?;
        let inner = build(&self.parts.server, &self.parts.ca_pem, &pair).await?;
        *self.current.write().expect("client lock") = inner;
        tracing::info!(%csr, file = %file.display(), not_after = %pair.not_after, "rotated the client certificate");
        self.pair = pair;
        Ok(())
    }
}
