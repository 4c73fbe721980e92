//! Kubeconfig files for client certificates the cluster CA signs: the admin's (written at
//! start) and any user's, as `kubeadm kubeconfig user` writes them
//! (`pea-control kubeconfig --user system:node:NAME --group system:nodes`).

use std::path::Path;

use base64::Engine;

use crate::pki::{write_atomic, CertPair, Pki, PkiError};

/// A kubeconfig with one cluster (`server`, trusting `ca_pem`) and one user authenticating
/// with `client`.
pub fn render(server: &str, ca_pem: &str, user: &str, client: &CertPair) -> String {
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: pea\n  cluster:\n    server: {server}\n    certificate-authority-data: {}\nusers:\n- name: {user:?}\n  user:\n    client-certificate-data: {}\n    client-key-data: {}\ncontexts:\n- name: pea\n  context:\n    cluster: pea\n    user: {user:?}\ncurrent-context: pea\n",
        b64(ca_pem),
        b64(&client.cert_pem),
        b64(&client.key_pem)
    )
}

#[derive(Debug, thiserror::Error)]
pub enum KubeconfigError {
    #[error("the PKI under {dir} has no CA yet (start pea-control once with this --data-dir)")]
    NoCa { dir: String },
    #[error("user name must not be empty")]
    EmptyUser,
    #[error("server URL {0:?} must start with https://")]
    Server(String),
    #[error(transparent)]
    Pki(#[from] PkiError),
}

/// Issues a client certificate for `user` in `groups` from the CA under `data_dir/pki` and
/// renders its kubeconfig for `server`. The CA must already exist: issuing never creates one.
pub fn for_user(
    data_dir: &Path,
    server: &str,
    user: &str,
    groups: &[&str],
) -> Result<(String, String), KubeconfigError> {
    if user.is_empty() {
        return Err(KubeconfigError::EmptyUser);
    }
    if !server.starts_with("https://") {
        return Err(KubeconfigError::Server(server.into()));
    }
    let pki_dir = data_dir.join("pki");
    if !pki_dir.join("ca.crt").exists() || !pki_dir.join("ca.key").exists() {
        return Err(KubeconfigError::NoCa {
            dir: pki_dir.display().to_string(),
        });
    }
    let pki = Pki::load_or_create(&pki_dir, &[])?;
    let pair = pki.issue_client(user, groups)?;
    Ok((
        render(server, &pki.ca.cert_pem, user, &pair),
        pki.ca.cert_pem.clone(),
    ))
}

/// Writes `text` to `path` (0600: it holds a private key).
pub fn write(path: &Path, text: &str) -> Result<(), PkiError> {
    write_atomic(path, text.as_bytes(), 0o600)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_kubeconfigs_carry_the_node_identity() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            for_user(
                dir.path(),
                "https://127.0.0.1:6443",
                "system:node:n1",
                &["system:nodes"]
            ),
            Err(KubeconfigError::NoCa { .. })
        ));
        Pki::load_or_create(&dir.path().join("pki"), &[]).unwrap();
        let (text, ca) = for_user(
            dir.path(),
            "https://127.0.0.1:6443",
            "system:node:n1",
            &["system:nodes"],
        )
        .unwrap();
        assert!(ca.contains("BEGIN CERTIFICATE"));
        assert!(text.contains("server: https://127.0.0.1:6443"));
        let cert_b64 = text
            .lines()
            .find_map(|l| l.trim().strip_prefix("client-certificate-data: "))
            .unwrap();
        let pem = base64::engine::general_purpose::STANDARD
            .decode(cert_b64)
            .unwrap();
        let (_, pem) = x509_parser::pem::parse_x509_pem(&pem).unwrap();
        let user = crate::auth::user_from_cert(&pem.contents).unwrap();
        assert_eq!(user.name, "system:node:n1");
        assert_eq!(user.groups, ["system:nodes"]);
        assert!(matches!(
            for_user(dir.path(), "http://x", "u", &[]),
            Err(KubeconfigError::Server(_))
        ));
    }
}
