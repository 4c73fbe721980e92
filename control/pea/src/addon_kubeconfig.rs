//! `pea addon-kubeconfig --component pea-proxy|pea-flanneld --kubeconfig NODE --out FILE`: a
//! joined worker's add-on gets its own identity with the node's credentials, as k3s's agent asks
//! its server for kube-proxy's client certificate. The node's kubeconfig (written by the
//! kubelet after its TLS bootstrap) posts a CSR of signer `kubernetes.io/kube-apiserver-client`
//! for the add-on's user alone (CN, no organization); pea-controllers' csrapproving approves it
//! for a node only (and denies a node anything else), csrsigning signs it, and the add-on's
//! kubeconfig (the node's server and CA, the new certificate and key) is written 0600.
//!
//! The worker's pea-proxy and pea-flanneld units run this before they start; a kubeconfig
//! whose certificate still has a fifth of its lifetime left is kept, so a start near the end
//! of its life renews it (kube's certificate manager rotates at 70-90% of the lifetime). While
//! they run, a timer `pea install` writes runs it every 10 minutes with `--restart-unit`: a
//! renewed kubeconfig restarts the add-on's unit (`systemctl try-restart`), since pea-proxy
//! and pea-flanneld read their kubeconfig once, at start.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use base64::Engine;
use serde_json::{json, Value};

use crate::identities::{self, Identity};
use crate::kubectl::kubectl;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Component {
    PeaProxy,
    PeaFlanneld,
}

impl Component {
    fn identity(self) -> Identity {
        match self {
            Component::PeaProxy => identities::PROXY,
            Component::PeaFlanneld => identities::FLANNELD,
        }
    }
}

#[derive(Debug)]
pub struct Options {
    pub component: Component,
    /// The node's own kubeconfig (system:node:NAME).
    pub kubeconfig: PathBuf,
    pub out: PathBuf,
    /// How long to wait for the node kubeconfig to appear (the kubelet's TLS bootstrap).
    pub wait: Duration,
    /// How long to wait for the CSR to be approved and signed.
    pub timeout: Duration,
    /// A systemd service to restart (`systemctl try-restart`) once a new kubeconfig is
    /// written; nothing is restarted when the existing one is kept.
    pub restart_unit: Option<String>,
}

/// A unit `--restart-unit` may name: one service, by its plain name.
fn check_unit(unit: &str) -> Result<()> {
    let ok = unit.strip_suffix(".service").is_some_and(|n| {
        !n.is_empty()
            && n.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '@'))
    });
    if !ok {
        bail!("--restart-unit {unit:?}: not a systemd service name (NAME.service)");
    }
    Ok(())
}

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;
const POLL: Duration = Duration::from_millis(500);

pub fn run(o: &Options) -> Result<()> {
    let id = o.component.identity();
    if let Some(unit) = &o.restart_unit {
        check_unit(unit)?;
    }
    if let Some(until) = still_valid(&o.out)? {
        println!(
            "pea addon-kubeconfig: {} ({}) is valid until {until}: kept",
            o.out.display(),
            id.user
        );
        return Ok(());
    }
    let started = Instant::now();
    while !o.kubeconfig.exists() {
        if started.elapsed() > o.wait {
            bail!(
                "--kubeconfig {}: not there after {} s (the kubelet writes it once its own certificate is signed)",
                o.kubeconfig.display(),
                o.wait.as_secs()
            );
        }
        std::thread::sleep(POLL);
    }
    let (server, ca) = server_and_ca(&o.kubeconfig)?;
    let key = rcgen::KeyPair::generate().context("generating the add-on's key")?;
    let mut params = rcgen::CertificateParams::default();
    let mut dn = rcgen::DistinguishedName::new();
    dn.push(rcgen::DnType::CommonName, id.user);
    params.distinguished_name = dn;
    let request = params
        .serialize_request(&key)
        .and_then(|r| r.pem())
        .context("making the certificate request")?;
    let csr = json!({
        "apiVersion": "certificates.k8s.io/v1",
        "kind": "CertificateSigningRequest",
        "metadata": {"generateName": format!("{}-", id.component)},
        "spec": {
            "request": B64.encode(request),
            "signerName": "kubernetes.io/kube-apiserver-client",
            "usages": ["digital signature", "client auth"],
        },
    });
    let name = kubectl(
        &o.kubeconfig,
        &["create", "-f", "-", "-o", "jsonpath={.metadata.name}"],
        Some(&csr.to_string()),
    )
    .context("posting the add-on's certificate signing request with the node's credentials")?
    .trim()
    .to_string();
    println!(
        "pea addon-kubeconfig: posted CSR {name} for {} ({})",
        id.user, id.component
    );
    let cert = wait_for_certificate(&o.kubeconfig, &name, o.timeout)?;
    let text = kubeconfig_text(&server, &ca, id.user, &cert, &key.serialize_pem());
    crate::install::write(&o.out, &text, 0o600)?;
    println!(
        "pea addon-kubeconfig: wrote {} ({} signed by the cluster CA)",
        o.out.display(),
        id.user
    );
    if let Some(unit) = &o.restart_unit {
        crate::proc::run("systemctl", &["try-restart", unit]).with_context(|| {
            format!(
                "{} was renewed but restarting {unit} failed: {} runs with the old certificate until it restarts",
                o.out.display(),
                id.component
            )
        })?;
        println!("pea addon-kubeconfig: restarted {unit} with the renewed kubeconfig");
    }
    Ok(())
}

/// The certificate of CSR `name` once issued; a Denied or Failed condition ends the wait with
/// its message.
fn wait_for_certificate(node: &Path, name: &str, timeout: Duration) -> Result<Vec<u8>> {
    let started = Instant::now();
    loop {
        let got: Value =
            serde_json::from_str(&kubectl(node, &["get", "csr", name, "-o", "json"], None)?)
                .context("reading the CSR")?;
        if let Some(c) = got.pointer("/status/certificate").and_then(Value::as_str) {
            return B64
                .decode(c)
                .context("the issued certificate is not base64");
        }
        let conditions = got
            .pointer("/status/conditions")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        if let Some(c) = conditions
            .iter()
            .find(|c| c["type"] == "Denied" || c["type"] == "Failed")
        {
            bail!(
                "CSR {name} was {}: {}: {}",
                c["type"].as_str().unwrap_or_default().to_lowercase(),
                c["reason"].as_str().unwrap_or_default(),
                c["message"].as_str().unwrap_or_default()
            );
        }
        if started.elapsed() > timeout {
            bail!(
                "CSR {name} was not signed within {} s: the add-on client rule approves it only when --kubeconfig is a node's own identity (system:node:NAME in system:nodes) and RBAC lets that node create certificatesigningrequests/selfaddonclient (pea-control binds it to system:nodes: ClusterRoleBinding pea:node-autoapprove-addon-client); a person may still approve it (kubectl certificate approve {name}), then run this again",
                timeout.as_secs()
            );
        }
        std::thread::sleep(POLL);
    }
}

/// The node kubeconfig's server and CA certificate (PEM).
fn server_and_ca(node: &Path) -> Result<(String, Vec<u8>)> {
    let view: Value = serde_json::from_str(&kubectl(
        node,
        &["config", "view", "--raw", "--minify", "-o", "json"],
        None,
    )?)
    .context("reading the node kubeconfig")?;
    let cluster = view
        .pointer("/clusters/0/cluster")
        .context("the node kubeconfig has no cluster")?;
    let server = cluster["server"]
        .as_str()
        .context("the node kubeconfig's cluster has no server")?
        .to_string();
    let ca = match (
        cluster["certificate-authority-data"].as_str(),
        cluster["certificate-authority"].as_str(),
    ) {
        (Some(d), _) => B64
            .decode(d)
            .context("the node kubeconfig's certificate-authority-data is not base64")?,
        (None, Some(file)) => {
            // A relative path is relative to the kubeconfig, as client-go resolves it.
            let p = node.parent().unwrap_or(Path::new("/")).join(file);
            std::fs::read(&p).with_context(|| format!("reading {}", p.display()))?
        }
        (None, None) => bail!("the node kubeconfig names no certificate authority"),
    };
    Ok((server, ca))
}

fn kubeconfig_text(server: &str, ca: &[u8], user: &str, cert: &[u8], key_pem: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: kubernetes\n  cluster:\n    server: {server}\n    certificate-authority-data: {}\n\
         users:\n- name: {user}\n  user:\n    client-certificate-data: {}\n    client-key-data: {}\n\
         contexts:\n- name: {user}@kubernetes\n  context:\n    cluster: kubernetes\n    user: {user}\n\
         current-context: {user}@kubernetes\n",
        B64.encode(ca),
        B64.encode(cert),
        B64.encode(key_pem)
    )
}

/// When the certificate of an existing add-on kubeconfig still has a fifth of its lifetime
/// left: its expiry (kept); otherwise (none, unreadable, near its end) `None`.
fn still_valid(out: &Path) -> Result<Option<String>> {
    let Ok(text) = std::fs::read_to_string(out) else {
        return Ok(None);
    };
    let Some(data) = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("client-certificate-data:"))
    else {
        return Ok(None);
    };
    let Ok(pem) = B64.decode(data.trim()) else {
        return Ok(None);
    };
    let Ok((_, pem)) = x509_parser::pem::parse_x509_pem(&pem) else {
        return Ok(None);
    };
    let Ok(cert) = pem.parse_x509() else {
        return Ok(None);
    };
    let v = cert.validity();
    let (from, to) = (v.not_before.timestamp(), v.not_after.timestamp());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default();
    Ok((to - now > (to - from) / 5).then(|| v.not_after.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert_valid(from: time::OffsetDateTime, to: time::OffsetDateTime) -> Vec<u8> {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut p = rcgen::CertificateParams::default();
        p.not_before = from;
        p.not_after = to;
        p.self_signed(&key).unwrap().pem().into_bytes()
    }

    #[test]
    fn a_kubeconfig_is_renewed_in_the_last_fifth_of_its_life() {
        let dir = std::env::temp_dir().join(format!("pea-addon-kc-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let out = dir.join("proxy.kubeconfig");
        assert_eq!(still_valid(&out).unwrap(), None, "no file");
        let now = time::OffsetDateTime::now_utc();
        let day = time::Duration::days(1);
        let fresh = cert_valid(now - day, now + 9 * day);
        crate::install::write(
            &out,
            &kubeconfig_text("https://x:6443", b"CA", "system:kube-proxy", &fresh, "KEY"),
            0o600,
        )
        .unwrap();
        assert!(still_valid(&out).unwrap().is_some(), "9 of 10 days left");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&out).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let old = cert_valid(now - 9 * day, now + day);
        crate::install::write(
            &out,
            &kubeconfig_text("https://x:6443", b"CA", "system:kube-proxy", &old, "KEY"),
            0o600,
        )
        .unwrap();
        assert_eq!(still_valid(&out).unwrap(), None, "1 of 10 days left");
        std::fs::write(&out, "garbage").unwrap();
        assert_eq!(still_valid(&out).unwrap(), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn only_a_service_may_be_restarted() {
        for ok in ["pea-proxy.service", "pea-flanneld.service", "a@b.service"] {
            check_unit(ok).unwrap();
        }
        for bad in [
            ".service",
            "pea-proxy",
            "pea-proxy.timer",
            "a b.service",
            "../x.service",
        ] {
            let e = check_unit(bad).unwrap_err().to_string();
            assert!(e.contains("--restart-unit") && e.contains(bad), "{e}");
        }
    }
}
