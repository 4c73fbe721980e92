//! Joining a node with a bootstrap token, as kubeadm's TLS bootstrap: `pea token create` on
//! the control plane, `pea join` (cluster-info discovery pinned by the CA hash), pea-kubelet's
//! `--bootstrap-kubeconfig` posting a CSR that the csrapproving controller approves and
//! csrsigning signs, the Node registering Ready with its own `system:node:NAME` certificate;
//! bad tokens (401) and a wrong CA pin refused; `kubectl certificate approve|deny` on a CSR a
//! person has to decide.

use std::os::unix::fs::PermissionsExt;
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

/// kubectl with `kubeconfig` inside `netns` (HOME in `home`, so no cache outside the test),
/// `stdin` piped in.
fn kubectl_as(
    netns: &Path,
    home: &Path,
    kubeconfig: &Path,
    args: &[&str],
    stdin: Option<&str>,
) -> Output {
    use std::io::Write;
    use std::process::Stdio;
    let mut child = Command::new("nsenter")
        .arg(format!("--net={}", netns.display()))
        .arg("kubectl")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .env("HOME", home)
        .env_remove("KUBECONFIG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running kubectl");
    let mut pipe = child.stdin.take().expect("stdin");
    pipe.write_all(stdin.unwrap_or_default().as_bytes())
        .expect("writing kubectl's stdin");
    drop(pipe);
    child.wait_with_output().expect("running kubectl")
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
        text(&out).contains("verified against the pin")
            && text(&out).contains(&format!(
                "cluster-info signature verified with token id {id}"
            )),
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

    // The add-ons' own identities, asked for with the node's new certificate (what the
    // joined worker's pea-proxy and pea-flanneld units run before they start).
    let home = node.dir.path().join("home");
    std::fs::create_dir_all(&home)?;
    // The add-ons' ClusterRoles and bindings, as a control plane's `pea install` applies them
    // (system:kube-proxy's system:node-proxier binding is pea-control's own).
    let cp_root = node.dir.path().join("cp-root");
    std::fs::create_dir_all(&cp_root)?;
    let out = pea(
        None,
        &[
            "install",
            "--role",
            "control-plane",
            "--node-ip",
            "127.0.0.1",
            "--node-name",
            "cp",
            "--root",
            &cp_root.display().to_string(),
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    node.ok(&[
        "apply",
        "-f",
        &cp_root
            .join("etc/pea/addons-rbac.json")
            .display()
            .to_string(),
    ]);
    let node_kc = node.node_kubeconfig.display().to_string();
    for (component, user, file, allowed, refused) in [
        (
            "pea-proxy",
            "system:kube-proxy",
            "proxy.kubeconfig",
            &["list", "endpointslices.discovery.k8s.io"][..],
            &["list", "secrets"][..],
        ),
        (
            "pea-flanneld",
            "system:pea-flanneld",
            "flanneld.kubeconfig",
            &["patch", "nodes", "--subresource=status"][..],
            &["patch", "nodes"][..],
        ),
    ] {
        let out_path = node.dir.path().join(file);
        let out_arg = out_path.display().to_string();
        let addon_kubeconfig = || {
            pea(
                Some(netns.as_path()),
                &[
                    "addon-kubeconfig",
                    "--component",
                    component,
                    "--kubeconfig",
                    &node_kc,
                    "--out",
                    &out_arg,
                    "--timeout",
                    "30",
                ],
            )
        };
        let out = addon_kubeconfig();
        assert!(out.status.success(), "{component}: {}", text(&out));
        assert_eq!(
            std::fs::metadata(&out_path)?.permissions().mode() & 0o777,
            0o600
        );
        let as_addon = |args: &[&str]| kubectl_as(&netns, &home, &out_path, args, None);
        let whoami = as_addon(&["auth", "whoami", "-o", "json"]);
        assert!(whoami.status.success(), "{}", text(&whoami));
        let me: Value = serde_json::from_slice(&whoami.stdout)?;
        assert_eq!(me["status"]["userInfo"]["username"], user, "{me}");
        let groups = me["status"]["userInfo"]["groups"].to_string();
        assert!(
            !groups.contains("system:nodes") && !groups.contains("system:masters"),
            "{groups}"
        );
        let denied = as_addon(&["get", "secrets", "-A"]);
        assert!(
            text(&denied).contains(&format!("User \"{user}\" cannot list resource \"secrets\"")),
            "{}",
            text(&denied)
        );
        let can = |what: &[&str]| {
            let o = as_addon(&[&["auth", "can-i"][..], what].concat());
            String::from_utf8_lossy(&o.stdout).trim().to_string()
        };
        assert_eq!(can(allowed), "yes", "{user} {allowed:?}");
        assert_eq!(can(refused), "no", "{user} {refused:?}");
        // A second run keeps the still-valid kubeconfig (no new CSR).
        let again = addon_kubeconfig();
        assert!(text(&again).contains("kept"), "{}", text(&again));
    }
    let csrs = node.get_json(&["csr"]).context("listing CSRs")?;
    let addon_csrs: Vec<&Value> = csrs["items"]
        .as_array()
        .context("items")?
        .iter()
        .filter(|c| c["spec"]["signerName"] == "kubernetes.io/kube-apiserver-client")
        .collect();
    assert_eq!(addon_csrs.len(), 2, "{csrs}");
    for c in &addon_csrs {
        assert_eq!(c["spec"]["username"], "system:node:joiner", "{c}");
        let approved = condition(c, "Approved").context("Approved")?;
        assert_eq!(approved["reason"], "AutoApproved", "{c}");
    }

    let node_kc_path = node.node_kubeconfig.clone();
    let as_node = |yaml: &str| {
        kubectl_as(
            &netns,
            &home,
            &node_kc_path,
            &["create", "-f", "-"],
            Some(yaml),
        )
    };
    let client = "kubernetes.io/kube-apiserver-client";

    // The rule is gated by RBAC, as kube's node client approval: the node must be allowed
    // to create certificatesigningrequests/selfaddonclient. Without the binding that grants
    // it to system:nodes, a request the rule would approve is left pending; with it back, the
    // controller's retry approves it.
    let binding = "pea:node-autoapprove-addon-client";
    let can_node = || {
        let o = node.kubectl(&[
            "auth",
            "can-i",
            "create",
            "certificatesigningrequests",
            "--subresource=selfaddonclient",
            "--as=system:node:joiner",
            "--as-group=system:nodes",
        ]);
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    };
    assert_eq!(can_node(), "yes");
    node.ok(&["delete", "clusterrolebinding", binding]);
    wait_for(
        "the binding's removal in force",
        Duration::from_secs(15),
        || (can_node() == "no").then_some(()),
    )?;
    let out = as_node(&csr_yaml(
        "addon-without-rbac",
        client,
        "system:kube-proxy",
        &[],
    ));
    assert!(out.status.success(), "{}", text(&out));
    // The controller has looked at it and said why it waits (kube's message).
    wait_for(
        "csrapproving's review of addon-without-rbac",
        Duration::from_secs(30),
        || {
            let log = node.control_log();
            log.lines()
                .any(|l| {
                    l.contains("recognized csr \"addon-without-rbac\" as [\"selfaddonclient\"] but subject access review was not approved")
                })
                .then_some(())
        },
    )?;
    let pending = node
        .get_json(&["csr", "addon-without-rbac"])
        .context("addon-without-rbac")?;
    assert!(
        condition(&pending, "Approved").is_none()
            && condition(&pending, "Denied").is_none()
            && pending.pointer("/status/certificate").is_none(),
        "{pending}"
    );
    node.ok(&[
        "create",
        "clusterrolebinding",
        binding,
        "--clusterrole=pea:certificates.k8s.io:certificatesigningrequests:selfaddonclient",
        "--group=system:nodes",
    ]);
    let approved = wait_for(
        "addon-without-rbac approved once the binding is back",
        Duration::from_secs(90),
        || {
            let c = node.get_json(&["csr", "addon-without-rbac"])?;
            issued_subject(&c).map(|s| (c, s))
        },
    )?;
    assert_eq!(
        condition(&approved.0, "Approved").context("Approved")?["reason"],
        "AutoApproved"
    );
    assert_eq!(approved.1, ("system:kube-proxy".to_string(), vec![]));

    // Renewal: a kubeconfig in the last fifth of its certificate's life is replaced through a
    // new CSR (what the add-ons' renewal timers run; they also restart the add-on, which needs
    // systemd). A unit to restart must be a service.
    let proxy_out = node.dir.path().join("proxy.kubeconfig");
    let p = proxy_out.display().to_string();
    let renew = |extra: &[&str]| {
        pea(
            Some(netns.as_path()),
            &[
                &[
                    "addon-kubeconfig",
                    "--component",
                    "pea-proxy",
                    "--kubeconfig",
                    &node_kc,
                    "--out",
                    &p,
                    "--timeout",
                    "30",
                ][..],
                extra,
            ]
            .concat(),
        )
    };
    let out = renew(&["--restart-unit", "pea-proxy"]);
    assert!(
        !out.status.success()
            && text(&out).contains("--restart-unit \"pea-proxy\": not a systemd service name"),
        "{}",
        text(&out)
    );
    let now = time::OffsetDateTime::now_utc();
    let day = time::Duration::days(1);
    let key = rcgen::KeyPair::generate()?;
    let mut old = rcgen::CertificateParams::default();
    old.not_before = now - 9 * day;
    old.not_after = now + day;
    let old_pem = old.self_signed(&key)?.pem();
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    let kept_text = std::fs::read_to_string(&proxy_out)?;
    let due: String = kept_text
        .lines()
        .map(
            |l| match l.trim().strip_prefix("client-certificate-data:") {
                Some(_) => format!("    client-certificate-data: {}", b64(old_pem.as_bytes())),
                None => l.to_string(),
            },
        )
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(&proxy_out, due + "\n")?;
    let out = renew(&[]);
    assert!(
        out.status.success() && text(&out).contains("posted CSR") && text(&out).contains("wrote"),
        "{}",
        text(&out)
    );
    let whoami = kubectl_as(
        &netns,
        &home,
        &proxy_out,
        &["auth", "whoami", "-o", "json"],
        None,
    );
    assert!(whoami.status.success(), "{}", text(&whoami));
    assert!(
        String::from_utf8_lossy(&whoami.stdout).contains("system:kube-proxy"),
        "{}",
        text(&whoami)
    );

    // Abuse: the node asks for another user, for a group, for a serving usage: each is
    // denied with the reason and never signed.
    for (name, cn, orgs, why) in [
        (
            "node-wants-admin",
            "admin",
            &[][..],
            "\"admin\" is not an add-on user",
        ),
        (
            "node-wants-a-group",
            "system:kube-proxy",
            &["system:nodes"][..],
            "organization \"system:nodes\" would be a group",
        ),
        (
            "node-wants-other-node",
            "system:node:other",
            &[][..],
            "is not an add-on user",
        ),
    ] {
        let out = as_node(&csr_yaml(name, client, cn, orgs));
        assert!(out.status.success(), "{}", text(&out));
        let denied = wait_for(&format!("{name} denied"), Duration::from_secs(15), || {
            let c = node.get_json(&["csr", name])?;
            condition(&c, "Denied").map(|d| (c, d))
        })?;
        assert_eq!(denied.1["reason"], "AddOnIdentityRefused", "{}", denied.0);
        assert!(
            denied.1["message"]
                .as_str()
                .unwrap_or_default()
                .contains(why),
            "{}",
            denied.1
        );
        assert!(
            denied.0.pointer("/status/certificate").is_none(),
            "{}",
            denied.0
        );
        assert!(condition(&denied.0, "Approved").is_none(), "{}", denied.0);
    }
    // system:masters is refused before any controller sees it (kube's CSR validation).
    let out = as_node(&csr_yaml(
        "node-wants-masters",
        client,
        "system:kube-proxy",
        &["system:masters"],
    ));
    assert!(
        !out.status.success()
            && text(&out).contains("signer with system:masters group is not allowed"),
        "{}",
        text(&out)
    );
    // The same add-on user asked for by someone who is not a node waits for a person, and
    // `pea addon-kubeconfig` says so.
    let not_node = node.dir.path().join("not-a-node.kubeconfig");
    let out = pea(
        Some(netns.as_path()),
        &[
            "addon-kubeconfig",
            "--component",
            "pea-proxy",
            "--kubeconfig",
            &admin,
            "--out",
            &not_node.display().to_string(),
            "--timeout",
            "3",
        ],
    );
    assert!(!out.status.success());
    assert!(
        text(&out).contains("was not signed within 3 s")
            && text(&out).contains("only when --kubeconfig is a node's own identity"),
        "{}",
        text(&out)
    );
    assert!(!not_node.exists());

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
    token_secret_for(id, secret, expiration, &["authentication", "signing"])
}

/// A bootstrap token Secret with `usage-bootstrap-<usage>: "true"` for each of `usages`.
fn token_secret_for(id: &str, secret: &str, expiration: &str, usages: &[&str]) -> String {
    let usages: String = usages
        .iter()
        .map(|u| format!("  usage-bootstrap-{u}: \"true\"\n"))
        .collect();
    format!(
        "apiVersion: v1\nkind: Secret\ntype: bootstrap.kubernetes.io/token\nmetadata:\n  name: bootstrap-token-{id}\n  namespace: kube-system\nstringData:\n  token-id: {id}\n  token-secret: {secret}\n{usages}  auth-extra-groups: system:bootstrappers:kubeadm:default-node-token\n  expiration: \"{expiration}\"\n"
    )
}

/// pea-controllers' bootstrapsigner against `cp`, on its own runtime (stopped when dropped).
fn bootstrap_signer(cp: &ControlPlane) -> tokio::runtime::Runtime {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("signer runtime");
    let kubeconfig = cp.kubeconfig.clone();
    rt.spawn(async move {
        let client = pea_controllers::client_from_kubeconfig(&kubeconfig)
            .await
            .expect("client");
        let mut config = pea_controllers::ControllersConfig::default();
        config.set_controllers("bootstrapsigner");
        config.leader_elect = false;
        if let Err(e) = pea_controllers::run(client, config).await {
            panic!("bootstrapsigner stopped: {e}");
        }
    });
    rt
}

/// The data keys of kube-public/cluster-info.
fn cluster_info_keys(admin: &Kubectl) -> Vec<String> {
    let cm: Value = serde_json::from_str(&admin.ok(&[
        "get",
        "configmap",
        "-n",
        "kube-public",
        "cluster-info",
        "-o",
        "json",
    ]))
    .unwrap_or_default();
    cm["data"]
        .as_object()
        .map(|d| d.keys().cloned().collect())
        .unwrap_or_default()
}

#[test]
fn bad_tokens_and_a_wrong_ca_pin_are_refused() -> Result<()> {
    let cp = ControlPlane::start(Backend::Embedded)?;
    let _signer = bootstrap_signer(&cp);
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

    // cluster-info is signed with the valid token only (old001 has expired).
    wait_for(
        "cluster-info signed for good01",
        Duration::from_secs(15),
        || {
            let keys = cluster_info_keys(&admin);
            keys.contains(&"jws-kubeconfig-good01".to_string())
                .then_some(())
        },
    )?;
    let keys = cluster_info_keys(&admin);
    assert!(
        !keys.contains(&"jws-kubeconfig-old001".to_string()),
        "{keys:?}"
    );

    // pea join: the right pin and token pass; a wrong pin, an expired token, a token that may
    // not sign and one that may not authenticate are refused.
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
    assert!(
        text(&ok).contains("cluster-info signature verified with token id good01"),
        "{}",
        text(&ok)
    );
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
            "--discovery-timeout",
            "2",
            "--dir",
            &join_dir,
        ],
    );
    assert!(!out.status.success());
    assert!(
        text(&out).contains("no JWS signed token in the cluster-info ConfigMap"),
        "{}",
        text(&out)
    );
    // Right token ID, wrong secret: the signature does not match what the joiner computes.
    let out = pea(
        None,
        &[
            "join",
            "--server",
            &server,
            "--token",
            "good01.0123456789abcdex",
            "--discovery-token-ca-cert-hash",
            &pin,
            "--dir",
            &join_dir,
        ],
    );
    assert!(!out.status.success());
    assert!(
        text(&out).contains("signature for token id \"good01\" is invalid"),
        "{}",
        text(&out)
    );
    // Signing only: cluster-info is signed, the API server refuses it as a credential.
    admin.ok_stdin(
        &["apply", "-f", "-"],
        &token_secret_for(
            "sign01",
            "0123456789abcdef",
            "2099-01-01T00:00:00Z",
            &["signing"],
        ),
    );
    let out = pea(
        None,
        &[
            "join",
            "--server",
            &server,
            "--token",
            "sign01.0123456789abcdef",
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
    // A deleted token's signature goes.
    admin.ok(&[
        "delete",
        "secret",
        "-n",
        "kube-system",
        "bootstrap-token-sign01",
    ]);
    wait_for(
        "sign01's signature removed",
        Duration::from_secs(15),
        || {
            (!cluster_info_keys(&admin).contains(&"jws-kubeconfig-sign01".to_string()))
                .then_some(())
        },
    )?;
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

/// Every file under `root`, relative, sorted.
fn files_under(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                dirs.push(p);
            } else if let Ok(rel) = p.strip_prefix(root) {
                out.push(rel.display().to_string());
            }
        }
    }
    out.sort();
    out
}

#[test]
fn join_with_node_ip_installs_a_worker_that_bootstraps() -> Result<()> {
    let cp = ControlPlane::start(Backend::Embedded)?;
    let _signer = bootstrap_signer(&cp);
    let out = pea(
        None,
        &[
            "token",
            "create",
            "--kubeconfig",
            &cp.kubeconfig.display().to_string(),
            "--print-join-command",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let line = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let words: Vec<String> = line.split_whitespace().map(str::to_string).collect();
    let token = words[words
        .iter()
        .position(|w| w == "--token")
        .context("--token")?
        + 1]
    .clone();
    let bin_dir = workspace_binary("pea-kubelet", "PEA_KUBELET")
        .parent()
        .context("bin dir")?
        .display()
        .to_string();
    let tmp = tempfile::tempdir()?;
    let join = |root: &Path, dir: &Path, node_name: &str| {
        let mut args: Vec<String> = words[1..].to_vec();
        args.extend(
            [
                "--dir",
                &dir.display().to_string(),
                "--node-ip",
                "10.0.0.7",
                "--node-name",
                node_name,
                "--root",
                &root.display().to_string(),
                "--bin-dir",
                &bin_dir,
            ]
            .map(str::to_string),
        );
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        pea(None, &args)
    };

    // Bad input the installer finds (a node name that is no DNS name): refused, and the
    // credentials join had written are gone again.
    let root = tmp.path().join("root");
    let dir = tmp.path().join("join");
    std::fs::create_dir_all(&root)?;
    let out = join(&root, &dir, "Bad_Name");
    assert!(!out.status.success());
    assert!(text(&out).contains("Bad_Name"), "{}", text(&out));
    assert_eq!(files_under(&dir), Vec::<String>::new());
    assert_eq!(files_under(&root), Vec::<String>::new());

    // A file pea did not write is never overwritten: refused, nothing written, nothing kept.
    let foreign = root.join("etc/pea/kubelet.yaml");
    std::fs::create_dir_all(foreign.parent().context("parent")?)?;
    std::fs::write(&foreign, "mine\n")?;
    let out = join(&root, &dir, "w1");
    assert!(!out.status.success());
    assert!(
        text(&out).contains("exists and was not written by pea install"),
        "{}",
        text(&out)
    );
    assert_eq!(files_under(&dir), Vec::<String>::new());
    assert_eq!(files_under(&root), ["etc/pea/kubelet.yaml"]);
    std::fs::remove_file(&foreign)?;

    // The install: the kubelet unit bootstraps from the token's kubeconfig, with the pinned CA.
    let out = join(&root, &dir, "w1");
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("cluster-info signature verified"),
        "{}",
        text(&out)
    );
    let unit = std::fs::read_to_string(root.join("etc/systemd/system/pea-kubelet.service"))?;
    assert!(
        unit.contains("--bootstrap-kubeconfig /etc/pea/bootstrap-kubelet.kubeconfig")
            && unit.contains("--kubeconfig /etc/pea/kubelet.kubeconfig"),
        "{unit}"
    );
    // pea-proxy and pea-flanneld get their own identities with the node's certificate.
    for (unit_file, component, flag) in [
        (
            "pea-proxy.service",
            "pea-proxy",
            "--kubeconfig /etc/pea/proxy.kubeconfig",
        ),
        (
            "pea-flanneld.service",
            "pea-flanneld",
            "--kubeconfig-file /etc/pea/flanneld.kubeconfig",
        ),
    ] {
        let unit = std::fs::read_to_string(root.join("etc/systemd/system").join(unit_file))?;
        let start = unit
            .lines()
            .find(|l| l.starts_with("ExecStart="))
            .context("ExecStart")?;
        assert!(
            start.contains(flag) && !start.contains("kubelet.kubeconfig"),
            "{unit}"
        );
        assert!(
            unit.contains(&format!(
                "ExecStartPre={bin_dir}/pea addon-kubeconfig --component {component} --kubeconfig /etc/pea/kubelet.kubeconfig --out /etc/pea/"
            )),
            "{unit}"
        );
    }
    let boot = root.join("etc/pea/bootstrap-kubelet.kubeconfig");
    let boot_text = std::fs::read_to_string(&boot)?;
    assert!(boot_text.contains(&token), "{boot_text}");
    assert!(
        boot_text.contains(&format!("server: https://{}", cp.addr)),
        "{boot_text}"
    );
    assert_eq!(
        std::fs::metadata(&boot)?.permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(
        std::fs::read_to_string(root.join("etc/pea/pki/ca.crt"))?,
        cp.running().pki.ca.cert_pem
    );
    // The bootstrap kubeconfig works: it is the token's identity on the API server.
    Kubectl::new(&boot).ok(&[
        "get",
        "--raw",
        "/apis/certificates.k8s.io/v1/certificatesigningrequests",
    ]);
    let units = files_under(&root.join("etc/systemd/system"));
    assert_eq!(
        units,
        [
            "pea-flanneld-renew.service",
            "pea-flanneld-renew.timer",
            "pea-flanneld.service",
            "pea-kubelet.service",
            "pea-proxy-renew.service",
            "pea-proxy-renew.timer",
            "pea-proxy.service",
            "pea-shim.service"
        ]
    );
    // While they run, a timer renews each add-on's identity and restarts it with the new one.
    for (component, file) in [
        ("pea-proxy", "proxy.kubeconfig"),
        ("pea-flanneld", "flanneld.kubeconfig"),
    ] {
        let dir = root.join("etc/systemd/system");
        let service = std::fs::read_to_string(dir.join(format!("{component}-renew.service")))?;
        assert!(
            service.contains("Type=oneshot")
                && service.contains(&format!(
                    "ExecStart={bin_dir}/pea addon-kubeconfig --component {component} --kubeconfig /etc/pea/kubelet.kubeconfig --out /etc/pea/{file} "
                ))
                && service.contains(&format!("--restart-unit {component}.service")),
            "{service}"
        );
        let timer = std::fs::read_to_string(dir.join(format!("{component}-renew.timer")))?;
        assert!(
            timer.contains("OnActiveSec=10min")
                && timer.contains("OnUnitActiveSec=10min")
                && timer.contains("WantedBy=timers.target"),
            "{timer}"
        );
    }
    // What the units write once running: the kubelet's bootstrap its kubeconfig and
    // certificates, `pea addon-kubeconfig` the add-ons' kubeconfigs.
    for file in [
        "etc/pea/kubelet.kubeconfig",
        "etc/pea/proxy.kubeconfig",
        "etc/pea/flanneld.kubeconfig",
        "var/lib/pea/kubelet/pki/kubelet-client-current.pem",
    ] {
        let p = root.join(file);
        std::fs::create_dir_all(p.parent().context("parent")?)?;
        std::fs::write(&p, "written by a unit\n")?;
    }
    // uninstall removes what the join installed and its units wrote.
    let out = pea(None, &["uninstall", "--root", &root.display().to_string()]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(files_under(&root), Vec::<String>::new());
    Ok(())
}
