//! The kubelet's certificates after the bootstrap, as kubelet's `rotateCertificates` and
//! `serverTLSBootstrap`: with pea-control's `--cluster-signing-duration` at 30 s, a kubelet
//! renews its client certificate through a CSR of its own (approved by csrapproving) before it
//! expires, switches to it without a restart, and keeps renewing its Lease past the first
//! certificate's expiry even when every connection is cut; and it asks for a serving
//! certificate from the `kubernetes.io/kubelet-serving` signer, which waits for `kubectl
//! certificate approve`, is then served by the HTTPS server, and is renewed the same way.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use base64::Engine;
use pea_tests::kubelet_node::{tail, KubeletNode, NodeOptions, API_PORT, KUBELET_PORT};
use serde_json::Value;

const SIGNING: &str = "30s";

fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Result<T> {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return Ok(v);
        }
        if start.elapsed() > timeout {
            bail!("{what}: not within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// A node whose certificates pea-control signs for 30 s, with `extra` in its kubelet config.
fn node(name: &str, extra: &str) -> Result<KubeletNode> {
    let node = KubeletNode::with(
        name,
        &NodeOptions {
            control_args: vec!["--cluster-signing-duration".into(), SIGNING.into()],
            ..Default::default()
        },
    )?;
    let mut config = std::fs::read_to_string(&node.kubelet_config)?;
    config.push_str(extra);
    std::fs::write(&node.kubelet_config, config)?;
    Ok(node)
}

fn wait_ready(node: &KubeletNode, name: &str) -> Result<()> {
    let ready = wait_for(
        &format!("node {name} Ready"),
        Duration::from_secs(45),
        || {
            let n = node.get_json(&["node", name])?;
            n["status"]["conditions"]
                .as_array()?
                .iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
                .then_some(())
        },
    );
    if let Err(e) = ready {
        bail!("{e}\nkubelet log:\n{}", tail(&node.kubelet_log(), 40));
    }
    Ok(())
}

fn csrs(node: &KubeletNode, signer: &str) -> Vec<Value> {
    node.get_json(&["csr"])
        .and_then(|l| l["items"].as_array().cloned())
        .unwrap_or_default()
        .into_iter()
        .filter(|c| c["spec"]["signerName"] == signer)
        .collect()
}

fn condition(csr: &Value, kind: &str) -> Option<Value> {
    csr.pointer("/status/conditions")?
        .as_array()?
        .iter()
        .find(|c| c["type"] == kind)
        .cloned()
}

/// `openssl x509 ARGS` on a PEM text; stdout.
fn x509(pem: &str, args: &[&str]) -> Option<String> {
    let mut child = Command::new("openssl")
        .arg("x509")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    use std::io::Write;
    child.stdin.take()?.write_all(pem.as_bytes()).ok()?;
    let out = child.wait_with_output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Whether the certificate in `pem` is still valid now (`openssl x509 -checkend 0`).
fn still_valid(pem: &str) -> bool {
    x509(pem, &["-noout", "-checkend", "0"]).is_some()
}

fn lease_renew_time(node: &KubeletNode, name: &str) -> Option<String> {
    let l = node.get_json(&["-n", "kube-node-lease", "lease", name])?;
    l["spec"]["renewTime"].as_str().map(str::to_string)
}

#[test]
fn the_kubelet_renews_its_client_certificate_and_keeps_reporting_past_the_first_expiry(
) -> Result<()> {
    pea_tests::privileged::require_root();
    let mut node = node("rotator", "rotateCertificates: true\n")?;
    // The first certificate comes from the TLS bootstrap, signed for 30 s too.
    node.apply("apiVersion: v1\nkind: Secret\ntype: bootstrap.kubernetes.io/token\nmetadata:\n  name: bootstrap-token-rot001\n  namespace: kube-system\nstringData:\n  token-id: rot001\n  token-secret: 0123456789abcdef\n  usage-bootstrap-authentication: \"true\"\n  auth-extra-groups: system:bootstrappers:kubeadm:default-node-token\n");
    let ca = std::fs::read_to_string(node.dir.path().join("ca.crt"))?;
    let boot = node.dir.path().join("bootstrap.kubeconfig");
    std::fs::write(
        &boot,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: https://127.0.0.1:{API_PORT}\n    certificate-authority-data: {}\nusers:\n- name: u\n  user:\n    token: rot001.0123456789abcdef\ncontexts:\n- name: c\n  context: {{cluster: c, user: u}}\ncurrent-context: c\n",
            base64::engine::general_purpose::STANDARD.encode(&ca)
        ),
    )?;
    node.node_kubeconfig = node.dir.path().join("kubelet.kubeconfig");
    node.kubelet_args = vec!["--bootstrap-kubeconfig".into(), boot.display().to_string()];
    node.start_kubelet()?;
    wait_ready(&node, "rotator")?;
    let current = node.root_dir.join("pki/kubelet-client-current.pem");
    let first: PathBuf = std::fs::read_link(&current).context("the bootstrap's symlink")?;
    let first_pem = std::fs::read_to_string(&first)?;
    assert!(
        still_valid(&first_pem),
        "the first certificate is valid now"
    );

    // The renewal, at 70-90 % of the first certificate's life: a new file and symlink.
    let second = wait_for("a renewed certificate", Duration::from_secs(40), || {
        std::fs::read_link(&current).ok().filter(|p| *p != first)
    })
    .map_err(|e| anyhow::anyhow!("{e}\nkubelet log:\n{}", tail(&node.kubelet_log(), 30)))?;
    assert!(
        first.exists(),
        "the earlier certificate file stays, as kubelet's store keeps them"
    );
    assert!(second
        .file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with("kubelet-client-20") && n.ends_with(".pem")));
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&second)?.permissions().mode() & 0o777,
        0o600
    );
    // Asked for by the node itself (not the bootstrap token), same subject, auto-approved.
    let renewals: Vec<Value> = csrs(&node, "kubernetes.io/kube-apiserver-client-kubelet")
        .into_iter()
        .filter(|c| c["spec"]["username"] == "system:node:rotator")
        .collect();
    let renewal = renewals
        .first()
        .context("a renewal CSR from system:node:rotator")?;
    assert!(
        renewal["metadata"]["name"]
            .as_str()
            .is_some_and(|n| n.starts_with("csr-")),
        "{renewal}"
    );
    let approved = condition(renewal, "Approved").context("Approved")?;
    assert_eq!(approved["reason"], "AutoApproved", "{renewal}");
    let second_pem = std::fs::read_to_string(&second)?;
    let subject = x509(&second_pem, &["-noout", "-subject"]).context("subject")?;
    assert!(
        subject.contains("O = system:nodes") && subject.contains("CN = system:node:rotator"),
        "{subject}"
    );
    // The kubeconfig follows (a kubelet restarted without rotation still starts).
    let kc = std::fs::read_to_string(&node.node_kubeconfig)?;
    let b64 = base64::engine::general_purpose::STANDARD;
    let in_kc = kc
        .lines()
        .find_map(|l| l.trim().strip_prefix("client-certificate-data:"))
        .and_then(|d| b64.decode(d.trim()).ok())
        .map(|d| String::from_utf8_lossy(&d).into_owned())
        .context("client-certificate-data")?;
    assert_ne!(
        x509(&in_kc, &["-noout", "-serial"]),
        x509(&first_pem, &["-noout", "-serial"]),
        "the kubeconfig carries a renewed certificate"
    );

    // Past the first certificate's expiry, with every connection cut (pea-control restarted),
    // the node still renews its Lease: it authenticates with a renewed certificate.
    wait_for(
        "the first certificate expired",
        Duration::from_secs(40),
        || (!still_valid(&first_pem)).then_some(()),
    )?;
    node.restart_control()?;
    let t0 = lease_renew_time(&node, "rotator").context("the node's Lease")?;
    wait_for(
        "the Lease renewed after the restart",
        Duration::from_secs(25),
        || lease_renew_time(&node, "rotator").filter(|t| *t != t0),
    )
    .map_err(|e| anyhow::anyhow!("{e}\nkubelet log:\n{}", tail(&node.kubelet_log(), 30)))?;
    assert!(
        !node.kubelet_log().contains("Unauthorized"),
        "{}",
        tail(&node.kubelet_log(), 30)
    );
    Ok(())
}

/// The certificate the kubelet serves (PEM), verified against `ca` for the IP 127.0.0.1;
/// `Err` with openssl's words when there is none or it does not verify.
fn served(netns: &Path, ca: &Path) -> Result<String, String> {
    let out = Command::new("nsenter")
        .arg(format!("--net={}", netns.display()))
        .args(["openssl", "s_client", "-connect"])
        .arg(format!("127.0.0.1:{KUBELET_PORT}"))
        .arg("-CAfile")
        .arg(ca)
        .args(["-verify_ip", "127.0.0.1", "-verify_return_error"])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let begin = text.find("-----BEGIN CERTIFICATE-----");
    let end = text.find("-----END CERTIFICATE-----");
    match (out.status.success(), begin, end) {
        (true, Some(b), Some(e)) => Ok(text[b..e + 25].to_string()),
        _ => Err(format!(
            "{}{}",
            text.lines().take(5).collect::<Vec<_>>().join("\n"),
            String::from_utf8_lossy(&out.stderr)
        )),
    }
}

#[test]
fn a_serving_certificate_waits_for_approval_then_is_served_and_renewed() -> Result<()> {
    pea_tests::privileged::require_root();
    let mut node = node("server", "serverTLSBootstrap: true\n")?;
    node.start_kubelet()?;
    wait_ready(&node, "server")?;
    let signer = "kubernetes.io/kubelet-serving";
    let csr = wait_for("the serving CSR", Duration::from_secs(20), || {
        csrs(&node, signer).into_iter().next()
    })?;
    let name = csr["metadata"]["name"]
        .as_str()
        .context("name")?
        .to_string();
    assert_eq!(csr["spec"]["username"], "system:node:server", "{csr}");
    let usages = csr["spec"]["usages"].to_string();
    assert!(
        usages.contains("server auth") && usages.contains("digital signature"),
        "{usages}"
    );
    // Nothing approves it: a node could name any address.
    std::thread::sleep(Duration::from_secs(3));
    let waiting = node.get_json(&["csr", &name]).context("the CSR")?;
    assert!(condition(&waiting, "Approved").is_none(), "{waiting}");
    assert!(
        waiting.pointer("/status/certificate").is_none(),
        "{waiting}"
    );
    let ca = node.dir.path().join("ca.crt");
    let netns = node.node.netns.path();
    let refused = served(&netns, &ca);
    assert!(refused.is_err(), "no certificate is served before approval");

    node.ok(&["certificate", "approve", &name]);
    let pem = wait_for(
        "the approved certificate served",
        Duration::from_secs(20),
        || served(&netns, &ca).ok(),
    )
    .map_err(|e| {
        anyhow::anyhow!(
            "{e}: {:?}\nkubelet log:\n{}",
            served(&netns, &ca),
            tail(&node.kubelet_log(), 30)
        )
    })?;
    let text = x509(
        &pem,
        &["-noout", "-subject", "-serial", "-ext", "subjectAltName"],
    )
    .context("openssl x509")?;
    assert!(
        text.contains("CN = system:node:server")
            && text.contains("DNS:server")
            && text.contains("IP Address:127.0.0.1"),
        "{text}"
    );
    let serial = x509(&pem, &["-noout", "-serial"]);
    let current = node.root_dir.join("pki/kubelet-server-current.pem");
    assert!(std::fs::read_link(&current)?
        .to_string_lossy()
        .contains("kubelet-server-20"));

    // Renewed at 70-90 % of its life: a second CSR, which again waits for a person.
    let second = wait_for("the renewal CSR", Duration::from_secs(40), || {
        csrs(&node, signer)
            .into_iter()
            .find(|c| c["metadata"]["name"] != name.as_str())
    })?;
    let second_name = second["metadata"]["name"]
        .as_str()
        .context("name")?
        .to_string();
    node.ok(&["certificate", "approve", &second_name]);
    wait_for(
        "the renewed certificate served",
        Duration::from_secs(20),
        || {
            served(&netns, &ca)
                .ok()
                .filter(|p| x509(p, &["-noout", "-serial"]) != serial)
        },
    )?;
    Ok(())
}
