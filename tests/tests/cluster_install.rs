//! `pea install` / `pea uninstall` under a temporary `--root` (never the host's /etc): the units
//! of each role pass `systemd-analyze verify` with the real binaries, bad input is named and
//! writes nothing, a file pea did not write (or that its units would use) is never overwritten,
//! and uninstall removes exactly what install and its units wrote, never a file someone else
//! put there.

use std::path::Path;
use std::process::Command;

use pea_tests::bins::workspace_binary;
use pea_tests::cluster::{file_names as names, pea, systemd_verify as verify};
use pea_tests::privileged::require_program;

/// No unit hands a component the cluster admin's credentials.
fn assert_no_admin_credentials(units: &Path) {
    for e in std::fs::read_dir(units).unwrap().flatten() {
        let text = std::fs::read_to_string(e.path()).unwrap();
        assert!(!text.contains("admin.kubeconfig"), "{text}");
    }
}

#[test]
fn install_writes_units_systemd_accepts_and_uninstall_removes_them() {
    require_program("systemd-analyze");
    let bin_dir = workspace_binary("pea-shim", "PEA_SHIM")
        .parent()
        .unwrap()
        .display()
        .to_string();
    let tmp = tempfile::tempdir().unwrap();
    let kc = tmp.path().join("node.kubeconfig");
    let ca = tmp.path().join("ca.crt");
    std::fs::write(&kc, "apiVersion: v1\nkind: Config\n").unwrap();
    std::fs::write(&ca, "-----BEGIN CERTIFICATE-----\n").unwrap();
    let (kc, ca) = (kc.display().to_string(), ca.display().to_string());
    // pea-proxy's and pea-flanneld's own identities (distinct text: the copies are checked).
    let proxy_kc = tmp.path().join("proxy.kubeconfig");
    let flanneld_kc = tmp.path().join("flanneld.kubeconfig");
    std::fs::write(&proxy_kc, "# system:kube-proxy\n").unwrap();
    std::fs::write(&flanneld_kc, "# system:pea-flanneld\n").unwrap();
    let (pkc, fkc) = (
        proxy_kc.display().to_string(),
        flanneld_kc.display().to_string(),
    );
    let identities = [
        "--proxy-kubeconfig",
        pkc.as_str(),
        "--flanneld-kubeconfig",
        fkc.as_str(),
    ];

    // A worker.
    let root = tempfile::tempdir().unwrap();
    let r = root.path().display().to_string();
    let worker = |extra: &[&str]| {
        let mut a = vec![
            "install",
            "--role",
            "worker",
            "--root",
            &r,
            "--bin-dir",
            &bin_dir,
            "--node-ip",
            "10.0.0.2",
            "--server",
            "https://10.0.0.1:6443",
        ];
        a.extend_from_slice(extra);
        pea(&a)
    };
    // Bad input first: each named, nothing written.
    for (extra, want) in [
        (
            &["--node-name", "w1"][..],
            "a worker needs --kubeconfig FILE",
        ),
        (
            &[
                "--node-name",
                "Bad_Name",
                "--kubeconfig",
                &kc,
                "--client-ca",
                &ca,
            ][..],
            "--node-name \"Bad_Name\"",
        ),
        (
            &[
                "--node-name",
                "w1",
                "--kubeconfig",
                "/nonexistent/kc",
                "--client-ca",
                &ca,
            ][..],
            "reading /nonexistent/kc",
        ),
        // The add-ons never run as the node (nor as the admin) when the node's identity is given.
        (
            &["--node-name", "w1", "--kubeconfig", &kc, "--client-ca", &ca][..],
            "also needs --proxy-kubeconfig FILE (system:kube-proxy) and --flanneld-kubeconfig FILE (system:pea-flanneld)",
        ),
    ] {
        let out = worker(extra);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains(want),
            "{extra:?}: {err}"
        );
        assert!(names(root.path()).is_empty(), "{extra:?} wrote files");
    }
    assert!(
        String::from_utf8_lossy(&worker(&["--node-name", "w1"]).stderr)
            .contains("or --bootstrap-kubeconfig FILE (written by `pea join`)")
    );

    let mut args = vec!["--node-name", "w1", "--kubeconfig", &kc, "--client-ca", &ca];
    args.extend(identities);
    let out = worker(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let units = root.path().join("etc/systemd/system");
    assert_eq!(
        names(&units),
        [
            "pea-flanneld.service",
            "pea-kubelet.service",
            "pea-proxy.service",
            "pea-shim.service"
        ]
    );
    let kubelet = std::fs::read_to_string(units.join("pea-kubelet.service")).unwrap();
    assert!(
        kubelet.contains(&format!(
            "ExecStart={bin_dir}/pea-kubelet --config /etc/pea/kubelet.yaml --kubeconfig /etc/pea/kubelet.kubeconfig"
        )) && kubelet.contains("--hostname-override w1 --node-ip 10.0.0.2")
            && kubelet.contains("Requires=pea-shim.service"),
        "{kubelet}"
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(root.path().join("etc/pea/kubelet.kubeconfig"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "the node credentials are private");
    // pea-proxy and pea-flanneld run as themselves, from private copies of their identities.
    let proxy = std::fs::read_to_string(units.join("pea-proxy.service")).unwrap();
    let flanneld = std::fs::read_to_string(units.join("pea-flanneld.service")).unwrap();
    assert!(
        proxy.contains("--kubeconfig /etc/pea/proxy.kubeconfig "),
        "{proxy}"
    );
    assert!(
        flanneld.contains("--kubeconfig-file /etc/pea/flanneld.kubeconfig "),
        "{flanneld}"
    );
    // The overlay runs over the node IP's interface (flannel's --iface by address).
    assert!(flanneld.contains(" --iface 10.0.0.2"), "{flanneld}");
    // pea-flanneld accepts the config and flags as written: run as its unit would (paths under
    // the install root, in a network namespace of its own), it gets past them to the
    // kubeconfig, which here is a placeholder. (A config missing a required key once kept
    // every installed node's overlay down.)
    let exec = flanneld
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .unwrap();
    let rooted = exec.replace(
        " /etc/pea/",
        &format!(" {}/etc/pea/", root.path().display()),
    );
    let mut words = rooted.split_whitespace();
    words.next();
    let out = Command::new("unshare")
        .arg("--net")
        .arg(workspace_binary("pea-flanneld", "PEA_FLANNELD"))
        .args(words)
        .arg("--once")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("flanneld.kubeconfig") && !err.contains("flanneld.json"),
        "{err}"
    );
    for (file, text) in [
        ("proxy.kubeconfig", "# system:kube-proxy\n"),
        ("flanneld.kubeconfig", "# system:pea-flanneld\n"),
    ] {
        let p = root.path().join("etc/pea").join(file);
        assert_eq!(std::fs::read_to_string(&p).unwrap(), text);
        let mode = std::fs::metadata(&p).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{file} is private");
    }
    assert_no_admin_credentials(&units);
    let (ok, text) = verify(root.path());
    assert!(ok, "systemd-analyze verify: {text}");

    // Again: the same files, no conflict.
    let out = worker(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // A unit pea did not write is never overwritten.
    let other = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(other.path().join("etc/systemd/system")).unwrap();
    std::fs::write(
        other.path().join("etc/systemd/system/pea-proxy.service"),
        "[Unit]\n",
    )
    .unwrap();
    let o = other.path().display().to_string();
    let out = pea(&[
        "install",
        "--role",
        "worker",
        "--root",
        &o,
        "--bin-dir",
        &bin_dir,
        "--node-ip",
        "10.0.0.3",
        "--server",
        "https://10.0.0.1:6443",
        "--node-name",
        "w2",
        "--kubeconfig",
        &kc,
        "--client-ca",
        &ca,
        "--proxy-kubeconfig",
        &pkc,
        "--flanneld-kubeconfig",
        &fkc,
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success()
            && err.contains("pea-proxy.service exists and was not written by pea install"),
        "{err}"
    );
    assert_eq!(
        names(&other.path().join("etc/systemd/system")),
        ["pea-proxy.service"]
    );
    assert!(!other.path().join("etc/pea").exists());

    // systemd-analyze does fail a unit whose program is missing (the check can fail).
    let broken = tempfile::tempdir().unwrap();
    let b = broken.path().display().to_string();
    let out = pea(&[
        "install",
        "--role",
        "worker",
        "--root",
        &b,
        "--bin-dir",
        "/nonexistent/bin",
        "--node-ip",
        "10.0.0.3",
        "--server",
        "https://10.0.0.1:6443",
        "--node-name",
        "w3",
        "--kubeconfig",
        &kc,
        "--client-ca",
        &ca,
        "--proxy-kubeconfig",
        &pkc,
        "--flanneld-kubeconfig",
        &fkc,
    ]);
    assert!(out.status.success());
    let (ok, text) = verify(broken.path());
    assert!(!ok && text.contains("/nonexistent/bin/pea-"), "{text}");

    // A control plane: pea-control too, and the kubelet issues its identity on first start.
    let cp = tempfile::tempdir().unwrap();
    let c = cp.path().display().to_string();
    let out = pea(&[
        "install",
        "--role",
        "control-plane",
        "--root",
        &c,
        "--bin-dir",
        &bin_dir,
        "--node-ip",
        "10.0.0.1",
        "--node-name",
        "cp1",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cpu = cp.path().join("etc/systemd/system");
    assert!(names(&cpu).contains(&"pea-control.service".to_string()));
    let control = std::fs::read_to_string(cpu.join("pea-control.service")).unwrap();
    assert!(
        control.contains("--data-dir /var/lib/pea/control --listen 10.0.0.1:6443"),
        "{control}"
    );
    let kubelet = std::fs::read_to_string(cpu.join("pea-kubelet.service")).unwrap();
    assert!(
        kubelet
            .contains("--user system:node:cp1 --group system:nodes --server https://10.0.0.1:6443"),
        "{kubelet}"
    );
    // The control plane mints pea-proxy's and pea-flanneld's identities from its CA, as the
    // kubelet's, and carries the add-ons' RBAC for the API.
    for (unit, user, flag) in [
        (
            "pea-proxy.service",
            "system:kube-proxy",
            "--kubeconfig /etc/pea/proxy.kubeconfig ",
        ),
        (
            "pea-flanneld.service",
            "system:pea-flanneld",
            "--kubeconfig-file /etc/pea/flanneld.kubeconfig ",
        ),
    ] {
        let text = std::fs::read_to_string(cpu.join(unit)).unwrap();
        assert!(
            text.contains(&format!(
                "kubeconfig --data-dir /var/lib/pea/control --user {user} --server https://10.0.0.1:6443 --out /etc/pea/"
            )) && text.contains(flag),
            "{text}"
        );
    }
    assert_no_admin_credentials(&cpu);
    let rbac: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(cp.path().join("etc/pea/addons-rbac.json")).unwrap(),
    )
    .unwrap();
    let bound: Vec<&str> = rbac["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["kind"] == "ClusterRoleBinding")
        .map(|i| i["subjects"][0]["name"].as_str().unwrap())
        .collect();
    assert_eq!(bound, ["system:pea-flanneld", "pea-dns", "pea-ingress"]);
    let (ok, text) = verify(cp.path());
    assert!(ok, "systemd-analyze verify (control plane): {text}");

    // What the units write at run time, as they would write it: on the control plane the
    // kubelet's unit issues the node's identity and the CA file, the add-ons' units theirs, the
    // kubelet fills its certificate directory (a symlink to the current pair, as kube's).
    let cert_dir = cp.path().join("var/lib/pea/kubelet/pki");
    for (file, text) in [
        ("etc/pea/kubelet.kubeconfig", "# system:node:cp1\n"),
        ("etc/pea/pki/ca.crt", "-----BEGIN CERTIFICATE-----\n"),
        ("etc/pea/proxy.kubeconfig", "# system:kube-proxy\n"),
        ("etc/pea/flanneld.kubeconfig", "# system:pea-flanneld\n"),
        ("var/lib/pea/kubelet/pki/kubelet.crt", "serving\n"),
        (
            "var/lib/pea/kubelet/pki/kubelet-client-2026-12-07-15-00-00.pem",
            "client\n",
        ),
    ] {
        let p = cp.path().join(file);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, text).unwrap();
    }
    std::os::unix::fs::symlink(
        "kubelet-client-2026-12-07-15-00-00.pem",
        cert_dir.join("kubelet-client-current.pem"),
    )
    .unwrap();
    // Files a person put next to them are theirs.
    let foreign = [
        cp.path().join("etc/pea/notes.txt"),
        cp.path().join("var/lib/pea/kubelet/pods/keep"),
    ];
    for f in &foreign {
        std::fs::create_dir_all(f.parent().unwrap()).unwrap();
        std::fs::write(f, "mine\n").unwrap();
    }
    // Installing again over what the units wrote is no conflict: they are pea's.
    let again = pea(&[
        "install",
        "--role",
        "control-plane",
        "--root",
        &c,
        "--bin-dir",
        &bin_dir,
        "--node-ip",
        "10.0.0.1",
        "--node-name",
        "cp1",
    ]);
    assert!(
        again.status.success(),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    // A file the units would write that pea did not is refused (its unit would use it), and
    // a kubelet certificate directory that was there before install stays its owner's.
    let fresh = tempfile::tempdir().unwrap();
    let f = fresh.path().display().to_string();
    std::fs::create_dir_all(fresh.path().join("etc/pea")).unwrap();
    std::fs::write(fresh.path().join("etc/pea/proxy.kubeconfig"), "mine\n").unwrap();
    let cp_install = |root: &str| {
        pea(&[
            "install",
            "--role",
            "control-plane",
            "--root",
            root,
            "--bin-dir",
            &bin_dir,
            "--node-ip",
            "10.0.0.1",
            "--node-name",
            "cp1",
        ])
    };
    let out = cp_install(&f);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success()
            && err.contains("proxy.kubeconfig exists and was not written by pea: the units pea installs would use it"),
        "{err}"
    );
    assert_eq!(names(&fresh.path().join("etc/pea")), ["proxy.kubeconfig"]);
    assert!(!fresh.path().join("etc/systemd").exists());
    std::fs::remove_file(fresh.path().join("etc/pea/proxy.kubeconfig")).unwrap();
    let theirs = fresh.path().join("var/lib/pea/kubelet/pki/kubelet.crt");
    std::fs::create_dir_all(theirs.parent().unwrap()).unwrap();
    std::fs::write(&theirs, "an earlier kubelet's\n").unwrap();
    let out = cp_install(&f);
    assert!(
        out.status.success()
            && String::from_utf8_lossy(&out.stdout).contains("was there before install"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // A worker joined with a token: its add-ons ask for their identities, and renewal timers
    // keep them valid while they run; systemd accepts the timers and their services.
    let joined = tempfile::tempdir().unwrap();
    let out = pea(&[
        "install",
        "--role",
        "worker",
        "--root",
        &joined.path().display().to_string(),
        "--bin-dir",
        &bin_dir,
        "--node-ip",
        "10.0.0.4",
        "--server",
        "https://10.0.0.1:6443",
        "--node-name",
        "w4",
        "--bootstrap-kubeconfig",
        &kc,
        "--client-ca",
        &ca,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ju = joined.path().join("etc/systemd/system");
    assert_eq!(
        names(&ju),
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
    let renew = std::fs::read_to_string(ju.join("pea-proxy-renew.service")).unwrap();
    assert!(
        renew.contains(&format!(
            "ExecStart={bin_dir}/pea addon-kubeconfig --component pea-proxy"
        )) && renew.contains("--restart-unit pea-proxy.service"),
        "{renew}"
    );
    let (ok, text) = verify(joined.path());
    assert!(ok, "systemd-analyze verify (joined worker): {text}");
    // A worker given its add-ons' kubeconfigs has no renewal timers (they are its admin's).
    assert!(!names(&units).iter().any(|u| u.contains("renew")));

    // Uninstall removes exactly what install and its units wrote.
    for root in [root.path(), cp.path(), fresh.path(), joined.path()] {
        let out = pea(&["uninstall", "--root", &root.display().to_string()]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(names(&root.join("etc/systemd/system")).is_empty());
    }
    assert!(!root.path().join("etc/pea").exists());
    assert!(!root.path().join("var").exists());
    assert!(
        !cert_dir.exists(),
        "the kubelet's certificates pea's units made"
    );
    assert_eq!(names(&cp.path().join("etc/pea")), ["notes.txt"]);
    for f in &foreign {
        assert_eq!(std::fs::read_to_string(f).unwrap(), "mine\n");
    }
    assert!(!fresh.path().join("etc/pea").exists());
    assert!(!joined.path().join("etc/pea").exists());
    assert_eq!(
        std::fs::read_to_string(&theirs).unwrap(),
        "an earlier kubelet's\n"
    );
    let out = pea(&["uninstall", "--root", &r]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("nothing installed"));
}
