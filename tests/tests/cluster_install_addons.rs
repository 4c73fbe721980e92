//! A control plane's cluster add-ons from `pea install` (kubeadm's addon phase): pea-dns and
//! pea-ingress as host units under their own identities by default, as Deployments from an
//! image with `--addons-image`, none with `--skip-addons`; pea-shim's registry flags. The files
//! install writes are applied to a real pea-control, and pea-dns runs with the identity its
//! unit mints and answers for `kube-dns`.

use std::path::Path;
use std::process::{Command, Output};

use pea_tests::bins::workspace_binary;
use pea_tests::cluster::{file_names, pea, systemd_verify};
use pea_tests::control::{Backend, ControlPlane, Kubectl};
use pea_tests::dns::{dig, PeaDns};
use pea_tests::privileged::require_program;

fn bin_dir() -> String {
    workspace_binary("pea-shim", "PEA_SHIM")
        .parent()
        .unwrap()
        .display()
        .to_string()
}

fn install_cp(root: &Path, extra: &[&str]) -> Output {
    let r = root.display().to_string();
    let b = bin_dir();
    let mut args = vec![
        "install",
        "--role",
        "control-plane",
        "--root",
        &r,
        "--bin-dir",
        &b,
        "--node-ip",
        "10.0.0.1",
        "--node-name",
        "cp1",
    ];
    args.extend(extra);
    pea(&args)
}

fn ok(out: &Output) {
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn unit(root: &Path, name: &str) -> String {
    std::fs::read_to_string(root.join("etc/systemd/system").join(name))
        .unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn units(root: &Path) -> Vec<String> {
    file_names(&root.join("etc/systemd/system"))
}

/// A real pea-control with what install applies once its API answers (the add-ons' RBAC,
/// then the add-ons) applied by its admin.
fn api_with_install_objects(root: &Path) -> ControlPlane {
    let cp = ControlPlane::start(Backend::Embedded).unwrap();
    for f in ["etc/pea/addons-rbac.json", "etc/pea/addons.json"] {
        cp.kubectl()
            .ok(&["apply", "-f", &root.join(f).display().to_string()]);
    }
    cp
}

fn json(root: &Path, file: &str) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(root.join(file)).unwrap()).unwrap()
}

/// The words of `line`'s value (`ExecStart=` etc.) in a unit's text.
fn words<'a>(text: &'a str, key: &str) -> Vec<&'a str> {
    text.lines()
        .find_map(|l| l.strip_prefix(key))
        .unwrap_or_else(|| panic!("no {key} in {text}"))
        .split_whitespace()
        .collect()
}

/// `kubectl auth can-i` as `kc`'s user.
fn can(kc: &Path, args: &[&str]) -> bool {
    let out = Kubectl::new(kc)
        .run(&[&["auth", "can-i"][..], args].concat())
        .stdout;
    String::from_utf8_lossy(&out).trim() == "yes"
}

#[test]
fn host_unit_add_ons_run_as_their_own_users_and_kube_dns_points_at_the_host() {
    require_program("systemd-analyze");
    let root = tempfile::tempdir().unwrap();
    let out = install_cp(
        root.path(),
        &[
            "--insecure-registry",
            "10.0.0.1:5000",
            "--insecure-registry",
            "registry.local",
            "--pause-image",
            "10.0.0.1:5000/pea/pause:3.10",
        ],
    );
    ok(&out);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("pea-dns.service"), "{stdout}");

    // pea-shim pulls from the plain-HTTP registries with the pause image named.
    let shim = unit(root.path(), "pea-shim.service");
    assert!(
        shim.contains(
            " --insecure-registry 10.0.0.1:5000 --insecure-registry registry.local --pause-image 10.0.0.1:5000/pea/pause:3.10\n"
        ),
        "{shim}"
    );
    // The add-ons' units: the node's address, their own kubeconfigs minted from the CA.
    let dns = unit(root.path(), "pea-dns.service");
    assert_eq!(
        words(&dns, "ExecStart=")[1..],
        [
            "--kubeconfig",
            "/etc/pea/dns.kubeconfig",
            "--listen",
            "10.0.0.1:53",
            "--http-listen",
            "10.0.0.1:9153"
        ]
    );
    let ingress = unit(root.path(), "pea-ingress.service");
    assert_eq!(
        words(&ingress, "ExecStart=")[1..],
        [
            "--kubeconfig",
            "/etc/pea/ingress.kubeconfig",
            "--http-listen",
            "10.0.0.1:80",
            "--https-listen",
            "10.0.0.1:443",
            "--metrics-listen",
            "10.0.0.1:10254",
            "--publish-address",
            "10.0.0.1"
        ]
    );
    for text in [&dns, &ingress] {
        assert!(!text.contains("admin.kubeconfig"), "{text}");
        assert!(
            text.contains("After=network-online.target pea-kubelet.service pea-control.service"),
            "{text}"
        );
    }
    let (ok_verify, text) = systemd_verify(root.path());
    assert!(ok_verify, "systemd-analyze verify: {text}");

    // What install applies once the API answers, applied to a real pea-control.
    let cp = api_with_install_objects(root.path());
    let admin = cp.kubectl();
    assert_eq!(
        admin
            .ok(&[
                "get",
                "-n",
                "kube-system",
                "service",
                "kube-dns",
                "-o",
                "jsonpath={.spec.clusterIP} {.spec.selector}"
            ])
            .trim(),
        "10.96.0.10"
    );
    assert_eq!(
        admin
            .ok(&[
                "get",
                "-n",
                "kube-system",
                "endpointslices",
                "-l",
                "kubernetes.io/service-name=kube-dns",
                "-o",
                "jsonpath={.items[*].endpoints[*].addresses[*]}"
            ])
            .trim(),
        "10.0.0.1"
    );
    assert!(admin
        .ok(&["get", "ingressclass", "pea", "-o", "yaml"])
        .contains("ingressclass.kubernetes.io/is-default-class: \"true\""));

    // The identity pea-dns's unit mints (its ExecStartPre, pointed at this control plane).
    let pre = words(&dns, "ExecStartPre=");
    let mint_at = pre.iter().position(|w| *w == "kubeconfig").unwrap();
    let mut mint: Vec<String> = pre[mint_at..]
        .iter()
        .map(|w| w.trim_end_matches('\'').to_string())
        .collect();
    let server = format!("https://{}", cp.addr);
    let kc = root.path().join("dns.kubeconfig");
    for (flag, value) in [
        ("--data-dir", cp.data_dir.display().to_string()),
        ("--server", server),
        ("--out", kc.display().to_string()),
    ] {
        let i = mint.iter().position(|w| w == flag).unwrap();
        mint[i + 1] = value;
    }
    assert_eq!(
        mint[mint.iter().position(|w| w == "--user").unwrap() + 1],
        "system:pea-dns"
    );
    let minted = Command::new(workspace_binary("pea-control", "PEA_CONTROL"))
        .args(&mint)
        .output()
        .unwrap();
    ok(&minted);
    // Least privilege: it reads what pea-dns serves from, and writes nothing.
    assert!(can(&kc, &["watch", "services", "--all-namespaces"]));
    assert!(can(
        &kc,
        &[
            "list",
            "endpointslices.discovery.k8s.io",
            "--all-namespaces"
        ]
    ));
    assert!(!can(&kc, &["create", "pods", "-n", "kube-system"]));
    assert!(!can(&kc, &["get", "secrets", "-n", "kube-system"]));
    let ingress_kc = cp.kubeconfig_for("system:pea-ingress", &[]).unwrap();
    assert!(can(
        &ingress_kc,
        &[
            "patch",
            "ingresses.networking.k8s.io",
            "--subresource=status",
            "--all-namespaces"
        ]
    ));
    assert!(!can(
        &ingress_kc,
        &["delete", "ingresses", "--all-namespaces"]
    ));

    // pea-dns under that identity (on loopback ports instead of the node's :53) answers for
    // the Service install made.
    let server = PeaDns::start(&kc, None, &[]).expect("pea-dns as system:pea-dns");
    let answer = dig(server.dns, &["kube-dns.kube-system.svc.cluster.local", "A"]).unwrap();
    assert_eq!(answer.rdata("A"), ["10.96.0.10"], "{}", answer.raw);
}

#[test]
fn addons_image_makes_deployments_and_skip_addons_makes_none() {
    let root = tempfile::tempdir().unwrap();
    let image = "10.0.0.1:5000/pea/addons:0.1.0";
    ok(&install_cp(root.path(), &["--addons-image", image]));
    let names = units(root.path());
    assert!(
        !names
            .iter()
            .any(|u| u.starts_with("pea-dns") || u.starts_with("pea-ingress")),
        "{names:?}"
    );
    let list = json(root.path(), "etc/pea/addons.json");
    let items = list["items"].as_array().unwrap();
    let deployments: Vec<&serde_json::Value> =
        items.iter().filter(|i| i["kind"] == "Deployment").collect();
    assert_eq!(deployments.len(), 2);
    for d in &deployments {
        let pod = &d["spec"]["template"]["spec"];
        assert_eq!(pod["containers"][0]["image"], image);
        assert_eq!(pod["nodeSelector"]["kubernetes.io/hostname"], "cp1");
        assert_eq!(pod["hostNetwork"], true);
    }
    // The API takes them (server-side validation of every object).
    let cp = api_with_install_objects(root.path());
    let admin = cp.kubectl();
    assert_eq!(
        admin
            .ok(&[
                "get",
                "-n",
                "kube-system",
                "deployments",
                "-o",
                "jsonpath={.items[*].metadata.name}"
            ])
            .trim(),
        "pea-dns pea-ingress"
    );
    assert_eq!(
        admin
            .ok(&[
                "get",
                "-n",
                "kube-system",
                "service",
                "kube-dns",
                "-o",
                "jsonpath={.spec.selector.k8s-app}"
            ])
            .trim(),
        "kube-dns"
    );

    // Installed again with --skip-addons: the add-ons' files go.
    ok(&install_cp(root.path(), &["--skip-addons"]));
    assert!(!root.path().join("etc/pea/addons.json").exists());
    // And again as host units, then uninstalled: nothing of the add-ons stays.
    ok(&install_cp(root.path(), &[]));
    assert!(units(root.path()).contains(&"pea-dns.service".to_string()));
    ok(&pea(&[
        "uninstall",
        "--root",
        &root.path().display().to_string(),
    ]));
    assert!(!root.path().join("etc/pea").exists());
    assert!(!root
        .path()
        .join("etc/systemd/system/pea-dns.service")
        .exists());
}

#[test]
fn bad_add_on_and_registry_flags_are_named_and_write_nothing() {
    let root = tempfile::tempdir().unwrap();
    for (extra, said) in [
        (
            &["--insecure-registry", "http://10.0.0.1:5000"][..],
            "--insecure-registry \"http://10.0.0.1:5000\": must be HOST[:PORT]",
        ),
        (
            &["--insecure-registry", "10.0.0.1:5000/v2"],
            "must be HOST[:PORT] (no scheme, no path)",
        ),
        (
            &["--pause-image", "pause 3.10"],
            "--pause-image \"pause 3.10\": must be one word",
        ),
        (
            &["--addons-image", "img:%n"],
            "--addons-image \"img:%n\": must be one word",
        ),
        (
            &["--addons-image", "img:1", "--skip-addons"],
            "cannot be used with",
        ),
    ] {
        let out = install_cp(root.path(), extra);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains(said),
            "{extra:?}: {err}"
        );
        assert_eq!(
            std::fs::read_dir(root.path()).unwrap().count(),
            0,
            "{extra:?}"
        );
    }
    // The add-ons are a control plane's.
    let r = root.path().display().to_string();
    let out = pea(&[
        "install",
        "--role",
        "worker",
        "--root",
        &r,
        "--node-ip",
        "10.0.0.2",
        "--server",
        "https://10.0.0.1:6443",
        "--addons-image",
        "img:1",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success()
            && err.contains("--addons-image and --skip-addons are a control plane's"),
        "{err}"
    );
    assert_eq!(std::fs::read_dir(root.path()).unwrap().count(), 0);
    // A join without --node-ip installs nothing, so registry flags there would be lost.
    let out = pea(&[
        "join",
        "--server",
        "https://127.0.0.1:1",
        "--token",
        "abcdef.0123456789abcdef",
        "--insecure-registry",
        "10.0.0.1:5000",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("give --node-ip too"),
        "{err}"
    );
}
