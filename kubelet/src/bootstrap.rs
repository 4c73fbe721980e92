//! Kubelet TLS bootstrap (kubelet's `--bootstrap-kubeconfig`, pkg/kubelet/certificate/bootstrap):
//! when the node's `--kubeconfig` does not exist yet, the kubelet uses the bootstrap
//! credentials (a bootstrap token) to post a CertificateSigningRequest for its own client
//! certificate — a fresh ECDSA P-256 key, subject `CN=system:node:NAME, O=system:nodes`, signer
//! `kubernetes.io/kube-apiserver-client-kubelet`, usages digital signature and client auth —
//! waits until it is issued (approved and signed by the controllers), then writes
//! `<root-dir>/pki/kubelet-client-<time>.pem` (certificate and key, 0600) with the symlink
//! `kubelet-client-current.pem`, and the kubeconfig, and the kubelet starts as usual with it.
//! A denied or failed request stops the kubelet with the reason. A kubeconfig whose client
//! certificate has expired is bootstrapped again, as kubelet's `isClientConfigStillValid`.
//! The request, wait and files are [`crate::certificate`]'s, shared with rotation.
//!
//! The kubeconfig carries the certificate and key inline (kube's points at the .pem file:
//! kube-rs reads a client-certificate file and a client-key file separately, and a combined
//! file would hand it the certificate twice).

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::certificate::request::{request, Want};
use crate::certificate::store::{write_private, Store, CLIENT};
use base64::Engine;

pub use crate::certificate::client::SIGNER;

#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    #[error("bootstrap kubeconfig {path}: {message}")]
    Kubeconfig { path: PathBuf, message: String },
    #[error(transparent)]
    Certificate(#[from] crate::certificate::CertificateError),
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
pub fn cluster_of(kc: &kube::config::Kubeconfig, path: &Path) -> Result<(String, String), String> {
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

/// Whether `kubeconfig` holds a client certificate that is still valid (kubelet's
/// `isClientConfigStillValid`); one that cannot be read counts as valid (the kubelet's own
/// start then names what is wrong with it).
fn still_valid(kubeconfig: &Path) -> bool {
    let Ok(parts) = crate::certificate::client::read_kubeconfig(kubeconfig) else {
        return true;
    };
    let Some((cert, key)) = parts.identity else {
        return true;
    };
    match crate::certificate::store::Pair::new(cert, key) {
        Ok(p) if p.expired(chrono::Utc::now()) => {
            tracing::warn!(kubeconfig = %kubeconfig.display(), not_after = %p.not_after, "the kubeconfig's client certificate has expired; bootstrapping again");
            false
        }
        _ => true,
    }
}

impl Bootstrap {
    /// Makes sure `kubeconfig` exists, bootstrapping it when it does not.
    pub async fn ensure(&self) -> Result<(), BootstrapError> {
        if self.kubeconfig.exists() && still_valid(&self.kubeconfig) {
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
        let want = Want::node_client(&self.node_name, true, self.timeout);
        let (pair, name) = request(&client, &want).await?;
        Store::new(&self.root_dir.join("pki"), CLIENT).update(&pair)?;
        write_private(
            &self.kubeconfig,
            node_kubeconfig(&server, &ca_pem, &pair.cert_pem, &pair.key_pem).as_bytes(),
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
        let n = crate::certificate::request::csr_name(b"key");
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
