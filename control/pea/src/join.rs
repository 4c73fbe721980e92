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
//! Before the pin, the kubeconfig in cluster-info must carry a valid signature made with the
//! token (`jws-kubeconfig-<token-id>`, a detached HS256 JWS that pea-controllers'
//! bootstrapsigner adds, as kubeadm's token discovery checks): it proves the cluster-info came
//! from someone holding the token. Discovery waits for it up to `--discovery-timeout`, as the
//! signer adds it a moment after the token is created. With
//! `--discovery-token-unsafe-skip-ca-verification` the signature is all that authenticates the
//! server.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use base64::Engine;
use sha2::Digest;

use crate::kubectl::kubectl;

#[derive(Debug)]
pub struct Options {
    pub server: String,
    pub token: String,
    pub ca_cert_hashes: Vec<String>,
    pub unsafe_skip_ca_verification: bool,
    /// How long discovery waits for cluster-info to be signed with the token.
    pub discovery_timeout: std::time::Duration,
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

/// cluster-info's kubeconfig and the signature made with token `id`, if there is one yet.
fn cluster_info_parts(configmap: &str, id: &str) -> Result<(String, Option<String>)> {
    let cm: serde_json::Value =
        serde_json::from_str(configmap).context("cluster-info is not a JSON ConfigMap")?;
    let kc = cm
        .pointer("/data/kubeconfig")
        .and_then(|v| v.as_str())
        .context("cluster-info has no data.kubeconfig")?;
    let sig = cm
        .pointer(&format!("/data/jws-kubeconfig-{id}"))
        .and_then(|v| v.as_str())
        .map(str::to_string);
    Ok((kc.to_string(), sig))
}

/// kube's `DetachedTokenIsValid`: `sig` is `HEADER..SIGNATURE`, the protected header says
/// HS256 and names token `id`, and the HMAC-SHA256 keyed with the token secret over
/// `HEADER.base64url(content)` matches (compared in constant time).
pub fn verify_detached_signature(content: &str, sig: &str, id: &str, secret: &str) -> Result<()> {
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let (header, tag) = sig
        .split_once("..")
        .context("the signature is not a detached JWS (HEADER..SIGNATURE)")?;
    let header_json: serde_json::Value = b64
        .decode(header)
        .ok()
        .and_then(|h| serde_json::from_slice(&h).ok())
        .context("the signature's header is not base64url JSON")?;
    if header_json["alg"] != "HS256" {
        bail!(
            "the signature's algorithm is {}, not HS256",
            header_json["alg"]
        );
    }
    if header_json["kid"] != id {
        bail!(
            "the signature's key ID is {}, not the token's {id:?}",
            header_json["kid"]
        );
    }
    let tag = b64.decode(tag).context("the signature is not base64url")?;
    let input = format!("{header}.{}", b64.encode(content.as_bytes()));
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
    ring::hmac::verify(&key, input.as_bytes(), &tag)
        .map_err(|_| anyhow::anyhow!("the signature does not match the token"))
}

/// The `certificate-authority-data` of cluster-info's kubeconfig (its only cluster).
fn ca_of_kubeconfig(kc: &str) -> Result<Vec<u8>> {
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
        let (id, secret) = o.token.split_once('.').unwrap_or_default();
        let started = std::time::Instant::now();
        let (info_kubeconfig, sig) = loop {
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
            match cluster_info_parts(&cm, id)? {
                (kc, Some(sig)) => break (kc, sig),
                _ if started.elapsed() < o.discovery_timeout => {
                    std::thread::sleep(std::time::Duration::from_millis(500))
                }
                _ => bail!(
                    "there is no JWS signed token in the cluster-info ConfigMap after {} s: token id {id:?} is invalid for this cluster, has expired or may not sign (usage-bootstrap-signing), or the bootstrapsigner controller is not running; create a token with `pea token create` on the control plane",
                    o.discovery_timeout.as_secs()
                ),
            }
        };
        verify_detached_signature(&info_kubeconfig, &sig, id, secret).with_context(|| {
            format!("cluster-info's JWS signature for token id {id:?} is invalid: refusing to join this server")
        })?;
        println!("pea join: cluster-info signature verified with token id {id}");
        let ca = ca_of_kubeconfig(&info_kubeconfig)?;
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
        let kc = kubeconfig("https://x:6443", b"PEM", "t");
        let cm = serde_json::json!({"data": {"kubeconfig": kc, "jws-kubeconfig-abcdef": "S"}});
        let (got, sig) = cluster_info_parts(&cm.to_string(), "abcdef").unwrap();
        assert_eq!(sig.as_deref(), Some("S"));
        assert_eq!(ca_of_kubeconfig(&got).unwrap(), b"PEM");
        assert_eq!(
            cluster_info_parts(&cm.to_string(), "zzzzzz").unwrap().1,
            None
        );
    }

    #[test]
    fn signatures_are_checked_against_the_token() {
        // Made by hand: HS256 over `HEADER.base64url("content")` keyed "0123456789abcdef".
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let header = b64.encode(br#"{"alg":"HS256","kid":"abcdef"}"#);
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, b"0123456789abcdef");
        let tag = ring::hmac::sign(
            &key,
            format!("{header}.{}", b64.encode("content")).as_bytes(),
        );
        let sig = format!("{header}..{}", b64.encode(tag.as_ref()));
        verify_detached_signature("content", &sig, "abcdef", "0123456789abcdef").unwrap();
        assert!(verify_detached_signature("content!", &sig, "abcdef", "0123456789abcdef").is_err());
        assert!(verify_detached_signature("content", &sig, "abcdef", "0123456789abcdeX").is_err());
        assert!(verify_detached_signature("content", &sig, "other0", "0123456789abcdef").is_err());
        // kube's cluster-bootstrap test vector (token/jws/jws_test.go).
        verify_detached_signature(
            "Hello from the other side. I must have called a thousand times.",
            "eyJhbGciOiJIUzI1NiIsImtpZCI6Impvc2h1YSJ9..VShe2taLd-YTrmWuRkcL_8QTNDHYxQIEBsAYYiIj1_8",
            "joshua",
            "my voice is my passcode",
        )
        .unwrap();
        let none = format!("{}..", b64.encode(br#"{"alg":"none","kid":"abcdef"}"#));
        assert!(verify_detached_signature("content", &none, "abcdef", "0123456789abcdef").is_err());
    }
}
