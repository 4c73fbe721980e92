//! `pea join --server URL --token ID.SECRET --discovery-token-ca-cert-hash sha256:HEX`, as
//! `kubeadm join`'s token discovery: fetch `kube-public/cluster-info` without credentials and
//! without trusting the server yet, take the CA from its kubeconfig and accept it only when the
//! SHA-256 of its public key (SubjectPublicKeyInfo) is one of the pins; then check the token
//! against the API server over TLS verified with that CA (a wrong, expired or deleted token
//! is refused here, with 401), write the bootstrap kubeconfig (server, CA, token) and the CA
//! to `--dir`, and either install the worker (`--node-ip`: `pea install --role worker` with
//! `--bootstrap-kubeconfig`, the kubelet then requests its own certificate) or print that
//! command.
//!
//! Not done (kubeadm does it): verifying cluster-info's JWS signature made with the token
//! (bootstrapsigner); the CA pin is what authenticates the server here.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use base64::Engine;
use sha2::Digest;

use crate::token::kubectl;

#[derive(Debug)]
pub struct Options {
    pub server: String,
    pub token: String,
    pub ca_cert_hashes: Vec<String>,
    pub unsafe_skip_ca_verification: bool,
    /// Where the bootstrap kubeconfig and the CA are written.
    pub dir: PathBuf,
    /// Install the worker right away (with these) instead of printing the command.
    pub install: Option<crate::install::Options>,
}

/// kubeadm's `--discovery-token-ca-cert-hash` of a PEM (or DER) CA certificate:
/// `sha256:` and the hex SHA-256 of its SubjectPublicKeyInfo.
pub fn ca_cert_hash(cert: &[u8]) -> Result<String> {
    let der = match x509_parser::pem::parse_x509_pem(cert) {
        Ok((_, pem)) => pem.contents,
        Err(_) => cert.to_vec(),
    };
    let (_, parsed) =
        x509_parser::parse_x509_certificate(&der).context("the CA is not an X.509 certificate")?;
    let spki = parsed.tbs_certificate.subject_pki.raw;
    let digest = sha2::Sha256::digest(spki);
    Ok(format!(
        "sha256:{}",
        digest
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    ))
}

fn check_token(t: &str) -> Result<()> {
    let ok = |s: &str, n: usize| {
        s.len() == n
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    };
    match t.split_once('.') {
        Some((id, secret)) if ok(id, 6) && ok(secret, 16) => Ok(()),
        _ => bail!(
            "--token: {t:?} is not a bootstrap token (ID.SECRET: 6 and 16 characters of a-z, 0-9)"
        ),
    }
}

fn check_pin(p: &str) -> Result<String> {
    let hex = p.strip_prefix("sha256:").with_context(|| {
        format!("--discovery-token-ca-cert-hash {p:?}: must be sha256:HEX (the only type kubeadm supports)")
    })?;
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        bail!("--discovery-token-ca-cert-hash {p:?}: expected 64 hex digits after sha256:");
    }
    Ok(format!("sha256:{}", hex.to_ascii_lowercase()))
}

/// The `certificate-authority-data` of cluster-info's kubeconfig (its only cluster).
fn ca_of_cluster_info(configmap: &str) -> Result<Vec<u8>> {
    let cm: serde_json::Value =
        serde_json::from_str(configmap).context("cluster-info is not a JSON ConfigMap")?;
    let kc = cm
        .pointer("/data/kubeconfig")
        .and_then(|v| v.as_str())
        .context("cluster-info has no data.kubeconfig")?;
    let b64 = kc
        .lines()
        .find_map(|l| l.trim().strip_prefix("certificate-authority-data:"))
        .context("cluster-info's kubeconfig has no certificate-authority-data")?;
    base64::engine::general_purpose::STANDARD
        .decode(b64.trim().trim_matches('"'))
        .context("cluster-info's certificate-authority-data is not base64")
}

/// The bootstrap kubeconfig: the pinned CA and the token.
fn kubeconfig(server: &str, ca: &[u8], token: &str) -> String {
    let cluster = format!(
        "certificate-authority-data: {}",
        base64::engine::general_purpose::STANDARD.encode(ca)
    );
    let user = format!("{{token: {token}}}");
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: kubernetes\n  cluster:\n    {cluster}\n    server: {server}\n\
         contexts:\n- name: tls-bootstrap-token-user@kubernetes\n  context:\n    cluster: kubernetes\n    user: tls-bootstrap-token-user\n\
         current-context: tls-bootstrap-token-user@kubernetes\nusers:\n- name: tls-bootstrap-token-user\n  user: {user}\n"
    )
}

fn write(path: &Path, text: &[u8], mode: u32) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
    }
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .with_context(|| format!("writing {}", tmp.display()))?;
    f.write_all(text)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
}

pub fn join(o: Options) -> Result<()> {
    if !o.server.starts_with("https://") {
        bail!("--server {:?}: must be an https:// URL", o.server);
    }
    check_token(&o.token)?;
    let pins = o
        .ca_cert_hashes
        .iter()
        .map(|p| check_pin(p))
        .collect::<Result<Vec<_>>>()?;
    if pins.is_empty() && !o.unsafe_skip_ca_verification {
        bail!("--discovery-token-ca-cert-hash is required (print it with `pea token create --print-join-command` on the control plane), or pass --discovery-token-unsafe-skip-ca-verification");
    }
    let work = tempfile_dir()?;
    let result = (|| {
        // Discovery: nothing is trusted yet, so TLS is not verified (the pin decides), and no
        // credentials are sent. curl, because kubectl prompts for a user name when a
        // kubeconfig has none.
        let url = format!(
            "{}/api/v1/namespaces/kube-public/configmaps/cluster-info",
            o.server.trim_end_matches('/')
        );
        let cm = crate::proc::run(
            "curl",
            &[
                "--silent",
                "--show-error",
                "--fail",
                "--insecure",
                "--max-time",
                "15",
                &url,
            ],
        )
        .context("fetching the cluster-info ConfigMap from kube-public")?;
        let ca = ca_of_cluster_info(&cm)?;
        let hash = ca_cert_hash(&ca)?;
        if !o.unsafe_skip_ca_verification && !pins.contains(&hash) {
            bail!(
                "cluster CA found in cluster-info ConfigMap is invalid: none of the public keys \"{hash}\" are pinned (--discovery-token-ca-cert-hash {}): refusing to join this server",
                pins.join(",")
            );
        }
        println!("pea join: cluster CA {hash} verified against the pin");
        // The token, over TLS verified with that CA.
        let boot = work.join("bootstrap.kubeconfig");
        let text = kubeconfig(&o.server, &ca, &o.token);
        write(&boot, text.as_bytes(), 0o600)?;
        if let Err(e) = kubectl(
            &boot,
            &[
                "get",
                "--raw",
                "/apis/certificates.k8s.io/v1/certificatesigningrequests?limit=1",
            ],
            None,
        ) {
            let msg = e.to_string();
            if msg.contains("Unauthorized") || msg.contains("401") {
                bail!("the API server refused the bootstrap token (401 Unauthorized): it is wrong, has expired or was deleted; create one with `pea token create` on the control plane");
            }
            return Err(e.context("checking the bootstrap token"));
        }
        println!("pea join: bootstrap token accepted by {}", o.server);
        let kc_path = o.dir.join("bootstrap-kubelet.kubeconfig");
        let ca_path = o.dir.join("ca.crt");
        write(&kc_path, text.as_bytes(), 0o600)?;
        write(&ca_path, &ca, 0o644)?;
        println!(
            "pea join: wrote {} and {}",
            kc_path.display(),
            ca_path.display()
        );
        match o.install {
            Some(mut inst) => {
                inst.server = Some(o.server.clone());
                inst.bootstrap_kubeconfig = Some(kc_path.clone());
                inst.client_ca = Some(ca_path.clone());
                let installed = crate::install::install(&inst);
                if installed.is_err() {
                    // A join that did not install leaves no credentials behind.
                    let _ = std::fs::remove_file(&kc_path);
                    let _ = std::fs::remove_file(&ca_path);
                }
                installed
            }
            None => {
                println!(
                    "pea join: now install the node: pea install --role worker --server {} --node-ip NODE_IP --bootstrap-kubeconfig {} --client-ca {}",
                    o.server,
                    kc_path.display(),
                    ca_path.display()
                );
                Ok(())
            }
        }
    })();
    let _ = std::fs::remove_dir_all(&work);
    result
}

fn tempfile_dir() -> Result<PathBuf> {
    let d = std::env::temp_dir().join(format!("pea-join-{}", std::process::id()));
    std::fs::create_dir_all(&d).with_context(|| format!("creating {}", d.display()))?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o700))?;
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_are_checked_before_anything_happens() {
        assert!(check_token("abcdef.0123456789abcdef").is_ok());
        assert!(check_token("abcdef0123456789abcdef").is_err());
        assert!(check_pin("md5:00").is_err());
        assert!(check_pin(&format!("sha256:{}", "A".repeat(64))).is_ok());
        let cm =
            serde_json::json!({"data": {"kubeconfig": kubeconfig("https://x:6443", b"PEM", "t")}});
        assert_eq!(ca_of_cluster_info(&cm.to_string()).unwrap(), b"PEM");
    }
}
