//! Joining a node with a bootstrap token, as kubeadm's TLS bootstrap: `pea token create` on
//! the control plane, `pea join` (cluster-info discovery pinned by the CA hash), pea-kubelet's
//! `--bootstrap-kubeconfig` posting a CSR that the csrapproving controller approves and
//! csrsigning signs, the Node registering Ready with its own `system:node:NAME` certificate;
//! bad tokens (401) and a wrong CA pin refused; `kubectl certificate approve|deny` on a CSR a
//! person has to decide.

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use base64::Engine;
use pea_tests::bins::workspace_binary;
use pea_tests::control::{Backend, ControlPlane, Kubectl};
use pea_tests::kubelet_node::{tail, KubeletNode, API_PORT};
use serde_json::Value;

/// `pea ARGS` inside `netns` (the node's namespace, where the API listens on 127.0.0.1).
fn pea(netns: Option<&Path>, args: &[&str]) -> Output {
    let mut c = match netns {
        Some(ns) => {
            let mut c = Command::new("nsenter");
            c.arg(format!("--net={}", ns.display()))
                .arg(workspace_binary("pea", "PEA_CLI"));
            c
        }
        None => Command::new(workspace_binary("pea", "PEA_CLI")),
    };
    c.args(args)
        .env_remove("KUBECONFIG")
        .output()
        .expect("running pea")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A PEM CSR for `cn` in `orgs` and its base64 for `spec.request`.
fn csr_request(cn: &str, orgs: &[&str]) -> String {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut p = rcgen::CertificateParams::default();
    let mut dn = rcgen::DistinguishedName::new();
    for o in orgs {
        dn.push(rcgen::DnType::OrganizationName, *o);
    }
    dn.push(rcgen::DnType::CommonName, cn);
    p.distinguished_name = dn;
    let pem = p.serialize_request(&key).unwrap().pem().unwrap();
    base64::engine::general_purpose::STANDARD.encode(pem)
}

fn csr_yaml(name: &str, signer: &str, cn: &str, orgs: &[&str]) -> String {
    format!(
        "apiVersion: certificates.k8s.io/v1\nkind: CertificateSigningRequest\nmetadata:\n  name: {name}\nspec:\n  request: {}\n  signerName: {signer}\n  usages: [digital signature, client auth]\n",
        csr_request(cn, orgs)
    )
}

/// The subject (CN, O) of the certificate a CSR was issued, read as the API server reads a
/// client certificate.
fn issued_subject(csr: &Value) -> Option<(String, Vec<String>)> {
    let std = base64::engine::general_purpose::STANDARD;
    let b64 = csr.pointer("/status/certificate")?.as_str()?;
    let pem = String::from_utf8(std.decode(b64).ok()?).ok()?;
    let body: String = pem
        .lines()
        .skip_while(|l| !l.starts_with("-----BEGIN CERTIFICATE"))
        .skip(1)
        .take_while(|l| !l.starts_with("-----END"))
        .collect();
    let user = pea_control::auth::user_from_cert(&std.decode(body).ok()?)?;
    Some((user.name, user.groups))
}

fn condition(csr: &Value, kind: &str) -> Option<Value> {
    csr.pointer("/status/conditions")?
        .as_array()?
        .iter()
        .find(|c| c["type"] == kind)
        .cloned()
}

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

#[test]
fn a_node_joins_with_a_token_and_registers_with_its_own_certificate() -> Result<()> {
    pea_tests::privileged::require_root();
    let mut node = KubeletNode::new("joiner")?;
    let netns = node.node.netns.path();
    let admin = node.admin.display().to_string();
    // The control plane's side: a token and the whole join command.
    let out = pea(
        Some(netns.as_path()),
        &[
            "token",
            "create",
            "--kubeconfig",
            &admin,
            "--ttl",
            "1h",
            "--print-join-command",
        ],
    );
    assert!(out.status.success(), "pea token create: {}", text(&out));
    let join_line = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let words: Vec<&str> = join_line.split_whitespace().collect();
    assert_eq!(&words[..2], ["pea", "join"], "{join_line}");
    assert!(
        join_line.contains(&format!("--server https://127.0.0.1:{API_PORT}")),
        "{join_line}"
    );
    let token = words[words
        .iter()
        .position(|w| *w == "--token")
        .context("--token")?
        + 1];
    let id = token.split('.').next().unwrap_or_default().to_string();
    // The node's side: discovery pinned by the CA hash, the bootstrap kubeconfig written.
    let join_dir = node.dir.path().join("join");
    let mut args: Vec<&str> = words[2..].to_vec();
    let dir = join_dir.display().to_string();
    args.extend(["--dir", &dir]);
    let out = pea(Some(netns.as_path()), &[&["join"][..], &args[..]].concat());
    assert!(out.status.success(), "pea join: {}", text(&out));
    assert!(
        text(&out).contains("verified against the pin"),
        "{}",
        text(&out)
    );
    let bootstrap = join_dir.join("bootstrap-kubelet.kubeconfig");
    assert!(bootstrap.exists());
    // The kubelet bootstraps: no kubeconfig yet, only the token's.
    node.node_kubeconfig = node.dir.path().join("kubelet.kubeconfig");
    node.kubelet_args = vec![
        "--bootstrap-kubeconfig".into(),
        bootstrap.display().to_string(),
    ];
    node.start_kubelet()?;
    let ready = wait_for("node joiner Ready", Duration::from_secs(45), || {
        let n = node.get_json(&["node", "joiner"])?;
        let ready = n["status"]["conditions"]
            .as_array()?
            .iter()
            .any(|c| c["type"] == "Ready" && c["status"] == "True");
        ready.then_some(n)
    });
    if let Err(e) = ready {
        bail!("{e}\nkubelet log:\n{}", tail(&node.kubelet_log(), 40));
    }
    // One CSR, from the token's user, auto-approved and signed for system:node:joiner.
    let csrs = node.get_json(&["csr"]).context("listing CSRs")?;
    let items = csrs["items"].as_array().context("items")?;
    assert_eq!(items.len(), 1, "{csrs}");
    let csr = &items[0];
    assert_eq!(csr["spec"]["username"], format!("system:bootstrap:{id}"));
    assert_eq!(
        csr["spec"]["signerName"],
        "kubernetes.io/kube-apiserver-client-kubelet"
    );
    let groups = csr["spec"]["groups"].to_string();
    assert!(
        groups.contains("system:bootstrappers:kubeadm:default-node-token"),
        "{groups}"
    );
    let approved = condition(csr, "Approved").context("Approved condition")?;
    assert_eq!(approved["reason"], "AutoApproved");
    assert_eq!(
        issued_subject(csr),
        Some((
            "system:node:joiner".to_string(),
            vec!["system:nodes".to_string()]
        ))
    );
    assert!(
        node.node_kubeconfig.exists(),
        "the kubelet wrote its kubeconfig"
    );
    let current = node
        .node
        .path("kubelet")
        .join("pki/kubelet-client-current.pem");
    assert!(std::fs::read_to_string(&current)?.contains("BEGIN CERTIFICATE"));
    // kubectl's table of CSRs names the requestor and the condition.
    let table = node.ok(&["get", "csr"]);
    assert!(
        table.contains("Approved,Issued") && table.contains(&format!("system:bootstrap:{id}")),
        "{table}"
    );

    // A CSR no controller may approve waits for a person: deny stops it, approve signs one.
    node.apply(&csr_yaml(
        "manual-deny",
        "kubernetes.io/kube-apiserver-client",
        "alice",
        &["dev"],
    ));
    node.apply(&csr_yaml(
        "manual-approve",
        "kubernetes.io/kube-apiserver-client",
        "bob",
        &["dev"],
    ));
    node.ok(&["certificate", "deny", "manual-deny"]);
    node.ok(&["certificate", "approve", "manual-approve"]);
    let signed = wait_for("manual-approve signed", Duration::from_secs(15), || {
        let c = node.get_json(&["csr", "manual-approve"])?;
        issued_subject(&c)
    })?;
    assert_eq!(signed, ("bob".to_string(), vec!["dev".to_string()]));
    std::thread::sleep(Duration::from_secs(1));
    let denied = node
        .get_json(&["csr", "manual-deny"])
        .context("manual-deny")?;
    assert!(condition(&denied, "Denied").is_some(), "{denied}");
    assert!(
        denied.pointer("/status/certificate").is_none(),
        "a denied CSR is never signed: {denied}"
    );
    // Once denied, approval is refused by the server (Approved and Denied are exclusive).
    let out = node.kubectl(&["certificate", "approve", "manual-deny", "--force"]);
    assert!(
        !out.status.success(),
        "approving a denied CSR must fail: {}",
        text(&out)
    );

    // The token cleaner deletes an expired token.
    let expired = "apiVersion: v1\nkind: Secret\ntype: bootstrap.kubernetes.io/token\nmetadata:\n  name: bootstrap-token-old000\n  namespace: kube-system\nstringData:\n  token-id: old000\n  token-secret: 0123456789abcdef\n  usage-bootstrap-authentication: \"true\"\n  expiration: \"2020-01-01T00:00:00Z\"\n";
    node.apply(expired);
    wait_for("expired token deleted", Duration::from_secs(15), || {
        let out = node.kubectl(&[
            "get",
            "secret",
            "-n",
            "kube-system",
            "bootstrap-token-old000",
        ]);
        (!out.status.success()).then_some(())
    })?;
    Ok(())
}

/// A kubeconfig for `server` trusting `ca_pem` with bearer `token`.
fn token_kubeconfig(
    dir: &Path,
    server: &str,
    ca_pem: &str,
    token: &str,
) -> Result<std::path::PathBuf> {
    let path = dir.join(format!("token-{}.kubeconfig", token.replace('.', "-")));
    std::fs::write(
        &path,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: {server}\n    certificate-authority-data: {}\nusers:\n- name: u\n  user:\n    token: {token}\ncontexts:\n- name: c\n  context: {{cluster: c, user: u}}\ncurrent-context: c\n",
            base64::engine::general_purpose::STANDARD.encode(ca_pem)
        ),
    )?;
    Ok(path)
}

fn token_secret(id: &str, secret: &str, expiration: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Secret\ntype: bootstrap.kubernetes.io/token\nmetadata:\n  name: bootstrap-token-{id}\n  namespace: kube-system\nstringData:\n  token-id: {id}\n  token-secret: {secret}\n  usage-bootstrap-authentication: \"true\"\n  auth-extra-groups: system:bootstrappers:kubeadm:default-node-token\n  expiration: \"{expiration}\"\n"
    )
}

#[test]
fn bad_tokens_and_a_wrong_ca_pin_are_refused() -> Result<()> {
    let cp = ControlPlane::start(Backend::Embedded)?;
    let admin = cp.kubectl();
    let dir = tempfile::tempdir()?;
    let server = format!("https://{}", cp.addr);
    let ca = cp.running().pki.ca.cert_pem.clone();
    admin.ok_stdin(
        &["apply", "-f", "-"],
        &token_secret("good01", "0123456789abcdef", "2099-01-01T00:00:00Z"),
    );
    admin.ok_stdin(
        &["apply", "-f", "-"],
        &token_secret("old001", "0123456789abcdef", "2020-01-01T00:00:00Z"),
    );
    // A valid token is system:bootstrap:ID: it may post CSRs, nothing else.
    let good = Kubectl::new(&token_kubeconfig(
        dir.path(),
        &server,
        &ca,
        "good01.0123456789abcdef",
    )?);
    let yaml = csr_yaml(
        "by-token",
        "kubernetes.io/kube-apiserver-client-kubelet",
        "system:node:n9",
        &["system:nodes"],
    );
    good.ok_stdin(&["create", "-f", "-"], &yaml);
    let created: Value =
        serde_json::from_str(&admin.ok(&["get", "csr", "by-token", "-o", "json"]))?;
    assert_eq!(created["spec"]["username"], "system:bootstrap:good01");
    let forbidden = good.fails(&["get", "pods", "-A"]);
    assert!(
        forbidden.contains("Forbidden") || forbidden.contains("forbidden"),
        "{forbidden}"
    );
    // Expired, wrong secret, unknown id: 401.
    for bad in [
        "old001.0123456789abcdef",
        "good01.0123456789abcdeX",
        "nope00.0123456789abcdef",
    ] {
        let k = Kubectl::new(&token_kubeconfig(dir.path(), &server, &ca, bad)?);
        let err = k.fails(&[
            "get",
            "--raw",
            "/apis/certificates.k8s.io/v1/certificatesigningrequests",
        ]);
        assert!(err.contains("Unauthorized"), "{bad}: {err}");
    }
    // kube's CSR validation: a garbage request and the legacy signer are refused.
    let bad_csr = "apiVersion: certificates.k8s.io/v1\nkind: CertificateSigningRequest\nmetadata:\n  name: junk\nspec:\n  request: bm90IGEgY3Ny\n  signerName: kubernetes.io/kube-apiserver-client\n  usages: [client auth]\n";
    let err = admin.fails_stdin(&["create", "-f", "-"], bad_csr);
    assert!(err.contains("spec.request"), "{err}");
    let legacy = csr_yaml("legacy", "kubernetes.io/legacy-unknown", "x", &[]);
    let err = admin.fails_stdin(&["create", "-f", "-"], &legacy);
    assert!(err.contains("spec.signerName"), "{err}");

    // pea join: the right pin and token pass; a wrong pin and an expired token are refused.
    let good_out = pea(
        None,
        &[
            "token",
            "create",
            "--kubeconfig",
            &cp.kubeconfig.display().to_string(),
            "--print-join-command",
        ],
    );
    assert!(good_out.status.success(), "{}", text(&good_out));
    let line = String::from_utf8_lossy(&good_out.stdout).trim().to_string();
    let pin = line.split_whitespace().last().context("pin")?.to_string();
    assert!(pin.starts_with("sha256:") && pin.len() == 71, "{line}");
    let join_dir = dir.path().join("join").display().to_string();
    let ok = pea(
        None,
        &[
            "join",
            "--server",
            &server,
            "--token",
            "good01.0123456789abcdef",
            "--discovery-token-ca-cert-hash",
            &pin,
            "--dir",
            &join_dir,
        ],
    );
    assert!(ok.status.success(), "{}", text(&ok));
    let wrong_pin = format!("sha256:{}", "0".repeat(64));
    let out = pea(
        None,
        &[
            "join",
            "--server",
            &server,
            "--token",
            "good01.0123456789abcdef",
            "--discovery-token-ca-cert-hash",
            &wrong_pin,
            "--dir",
            &join_dir,
        ],
    );
    assert!(!out.status.success());
    assert!(
        text(&out).contains("none of the public keys"),
        "{}",
        text(&out)
    );
    let out = pea(
        None,
        &[
            "join",
            "--server",
            &server,
            "--token",
            "old001.0123456789abcdef",
            "--discovery-token-ca-cert-hash",
            &pin,
            "--dir",
            &join_dir,
        ],
    );
    assert!(!out.status.success());
    assert!(
        text(&out).contains("refused the bootstrap token (401"),
        "{}",
        text(&out)
    );
    // With bootstrap token auth off, even a valid token is refused.
    drop(cp);
    let off =
        ControlPlane::start_with(Backend::Embedded, |c| c.enable_bootstrap_token_auth = false)?;
    off.kubectl().ok_stdin(
        &["apply", "-f", "-"],
        &token_secret("good01", "0123456789abcdef", "2099-01-01T00:00:00Z"),
    );
    let k = Kubectl::new(&token_kubeconfig(
        dir.path(),
        &format!("https://{}", off.addr),
        &off.running().pki.ca.cert_pem,
        "good01.0123456789abcdef",
    )?);
    let err = k.fails(&[
        "get",
        "--raw",
        "/apis/certificates.k8s.io/v1/certificatesigningrequests",
    ]);
    assert!(err.contains("Unauthorized"), "{err}");
    Ok(())
}
