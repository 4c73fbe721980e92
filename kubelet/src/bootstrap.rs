//! Kubelet TLS bootstrap (kubelet's `--bootstrap-kubeconfig`, pkg/kubelet/certificate/bootstrap):
//! when the node's `--kubeconfig` does not exist yet, the kubelet uses the bootstrap
//! credentials (a bootstrap token) to post a CertificateSigningRequest for its own client
//! certificate — a fresh ECDSA P-256 key, subject `CN=system:node:NAME, O=system:nodes`, signer
//! `kubernetes.io/kube-apiserver-client-kubelet`, usages digital signature and client auth —
//! waits until it is issued (approved and signed by the controllers), then writes
//! `<root-dir>/pki/kubelet-client-<time>.pem` (certificate and key, 0600) with the symlink
//! `kubelet-client-current.pem`, and the kubeconfig, and the kubelet starts as usual with it.
//! A denied or failed request stops the kubelet with the reason.
//!
//! The kubeconfig carries the certificate and key inline (kube's points at the .pem file:
//! kube-rs reads a client-certificate file and a client-key file separately, and a combined
//! file would hand it the certificate twice).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use base64::Engine;
use k8s_openapi::api::certificates::v1::{
    CertificateSigningRequest, CertificateSigningRequestSpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::ByteString;
use kube::api::PostParams;
use kube::Api;
use sha2::Digest;

pub const SIGNER: &str = "kubernetes.io/kube-apiserver-client-kubelet";

#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    #[error("bootstrap kubeconfig {path}: {message}")]
    Kubeconfig { path: PathBuf, message: String },
    #[error("generating the node key: {0}")]
    Key(#[from] rcgen::Error),
    #[error("creating certificate signing request {name}: {source}")]
    Create {
        name: String,
        #[source]
        source: Box<kube::Error>,
    },
    #[error("certificate signing request {name} was denied: {reason}")]
    Denied { name: String, reason: String },
    #[error("certificate signing request {name} failed: {reason}")]
    Failed { name: String, reason: String },
    #[error("certificate signing request {name} was not issued within {secs} s (is the csrapproving/csrsigning controller running, or does it wait for `kubectl certificate approve {name}`?)")]
    Timeout { name: String, secs: u64 },
    #[error("writing {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// What the bootstrap needs from the flags.
#[derive(Debug, Clone)]
pub struct Bootstrap {
    pub bootstrap_kubeconfig: PathBuf,
    pub kubeconfig: PathBuf,
    pub root_dir: PathBuf,
    pub node_name: String,
    /// How long to wait for the certificate.
    pub timeout: Duration,
}

/// The server and CA (PEM) of a kubeconfig's current context.
fn cluster_of(kc: &kube::config::Kubeconfig, path: &Path) -> Result<(String, String), String> {
    let ctx_name = kc.current_context.clone().ok_or("no current-context")?;
    let ctx = kc
        .contexts
        .iter()
        .find(|c| c.name == ctx_name)
        .and_then(|c| c.context.clone())
        .ok_or_else(|| format!("context {ctx_name:?} not found"))?;
    let cluster = kc
        .clusters
        .iter()
        .find(|c| c.name == ctx.cluster)
        .and_then(|c| c.cluster.clone())
        .ok_or_else(|| format!("cluster {:?} not found", ctx.cluster))?;
    let server = cluster.server.ok_or("the cluster names no server")?;
    let ca = match (
        cluster.certificate_authority_data,
        cluster.certificate_authority,
    ) {
        (Some(data), _) => {
            let raw = base64::engine::general_purpose::STANDARD
                .decode(data.trim())
                .map_err(|e| format!("certificate-authority-data: {e}"))?;
            String::from_utf8(raw)
                .map_err(|_| "certificate-authority-data is not PEM".to_string())?
        }
        (None, Some(file)) => {
            let file = path
                .parent()
                .map_or_else(|| PathBuf::from(&file), |d| d.join(&file));
            std::fs::read_to_string(&file).map_err(|e| format!("{}: {e}", file.display()))?
        }
        (None, None) => return Err("the cluster names no certificate authority".into()),
    };
    Ok((server, ca))
}

/// The kubeconfig kubelet writes after bootstrapping.
pub fn node_kubeconfig(server: &str, ca_pem: &str, cert_pem: &str, key_pem: &str) -> String {
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: default-cluster\n  cluster:\n    certificate-authority-data: {}\n    server: {server}\ncontexts:\n- name: default-context\n  context:\n    cluster: default-cluster\n    namespace: default\n    user: default-auth\ncurrent-context: default-context\nusers:\n- name: default-auth\n  user:\n    client-certificate-data: {}\n    client-key-data: {}\n",
        b64(ca_pem),
        b64(cert_pem),
        b64(key_pem)
    )
}

fn write(path: &Path, data: &[u8], mode: u32) -> Result<(), BootstrapError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let err = |source| BootstrapError::Write {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .map_err(err)?;
    f.write_all(data).map_err(err)?;
    f.sync_all().map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)
}

/// A CSR name from the public key (unique per key, a valid object name).
fn csr_name(public_der: &[u8]) -> String {
    let digest = sha2::Sha256::digest(public_der);
    format!("node-csr-{}", &hex::encode(digest)[..32])
}

/// The condition that ends a wait: Denied or Failed, with its reason and message.
fn refusal(csr: &CertificateSigningRequest) -> Option<(String, String)> {
    csr.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find_map(|c| {
            matches!(c.type_.as_str(), "Denied" | "Failed").then(|| {
                (
                    c.type_.clone(),
                    format!(
                        "{}: {}",
                        c.reason.clone().unwrap_or_default(),
                        c.message.clone().unwrap_or_default()
                    ),
                )
            })
        })
}

impl Bootstrap {
    /// Makes sure `kubeconfig` exists, bootstrapping it when it does not.
    pub async fn ensure(&self) -> Result<(), BootstrapError> {
        if self.kubeconfig.exists() {
            tracing::info!(kubeconfig = %self.kubeconfig.display(), "kubeconfig exists; no bootstrap");
            return Ok(());
        }
        let bad = |message: String| BootstrapError::Kubeconfig {
            path: self.bootstrap_kubeconfig.clone(),
            message,
        };
        let kc = kube::config::Kubeconfig::read_from(&self.bootstrap_kubeconfig)
            .map_err(|e| bad(e.to_string()))?;
        let (server, ca_pem) = cluster_of(&kc, &self.bootstrap_kubeconfig).map_err(bad)?;
        let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default())
            .await
            .map_err(|e| bad(e.to_string()))?;
        let client = kube::Client::try_from(cfg).map_err(|e| bad(e.to_string()))?;
        let key = rcgen::KeyPair::generate()?;
        let mut params = rcgen::CertificateParams::default();
        let mut dn = rcgen::DistinguishedName::new();
        dn.push(rcgen::DnType::OrganizationName, "system:nodes");
        dn.push(
            rcgen::DnType::CommonName,
            format!("system:node:{}", self.node_name),
        );
        params.distinguished_name = dn;
        let request = params.serialize_request(&key)?.pem()?;
        let name = csr_name(key.public_key_raw());
        let api: Api<CertificateSigningRequest> = Api::all(client);
        let csr = CertificateSigningRequest {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                ..Default::default()
            },
            spec: CertificateSigningRequestSpec {
                request: ByteString(request.into_bytes()),
                signer_name: SIGNER.into(),
                usages: Some(vec!["digital signature".into(), "client auth".into()]),
                ..Default::default()
            },
            status: None,
        };
        match api.create(&PostParams::default(), &csr).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 409 => {}
            Err(source) => {
                return Err(BootstrapError::Create {
                    name: name.clone(),
                    source: Box::new(source),
                })
            }
        }
        tracing::info!(csr = %name, node = %self.node_name, "posted certificate signing request; waiting for it to be issued");
        let started = Instant::now();
        let cert = loop {
            if let Ok(Some(current)) = api.get_opt(&name).await {
                if let Some((kind, reason)) = refusal(&current) {
                    return Err(if kind == "Denied" {
                        BootstrapError::Denied { name, reason }
                    } else {
                        BootstrapError::Failed { name, reason }
                    });
                }
                if let Some(c) = current
                    .status
                    .and_then(|s| s.certificate)
                    .filter(|c| !c.0.is_empty())
                {
                    break String::from_utf8_lossy(&c.0).into_owned();
                }
            }
            if started.elapsed() > self.timeout {
                return Err(BootstrapError::Timeout {
                    name,
                    secs: self.timeout.as_secs(),
                });
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        };
        let key_pem = key.serialize_pem();
        let pki = self.root_dir.join("pki");
        let stamp = chrono::Utc::now().format("%Y-%m-%d-%H-%M-%S");
        let pem_path = pki.join(format!("kubelet-client-{stamp}.pem"));
        write(&pem_path, format!("{cert}{key_pem}").as_bytes(), 0o600)?;
        let current = pki.join("kubelet-client-current.pem");
        let link_tmp = pki.join("kubelet-client-current.pem.tmp-link");
        let _ = std::fs::remove_file(&link_tmp);
        std::os::unix::fs::symlink(&pem_path, &link_tmp)
            .and_then(|()| std::fs::rename(&link_tmp, &current))
            .map_err(|source| BootstrapError::Write {
                path: current.clone(),
                source,
            })?;
        write(
            &self.kubeconfig,
            node_kubeconfig(&server, &ca_pem, &cert, &key_pem).as_bytes(),
            0o600,
        )?;
        tracing::info!(csr = %name, kubeconfig = %self.kubeconfig.display(), "client certificate issued; kubeconfig written");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_kubeconfig_are_kubes() {
        let n = csr_name(b"key");
        assert!(n.starts_with("node-csr-") && n.len() == 9 + 32);
        let kc = node_kubeconfig("https://10.0.0.1:6443", "CA", "CERT", "KEY");
        let parsed: kube::config::Kubeconfig = serde_yaml::from_str(&kc).unwrap();
        let (server, ca) = cluster_of(&parsed, Path::new("/x")).unwrap();
        assert_eq!(
            (server.as_str(), ca.as_str()),
            ("https://10.0.0.1:6443", "CA")
        );
    }
}
