//! kube's Node authorizer with the real kubectl (1.32): a node identity reads the secrets,
//! configmaps, claims, volumes and service-account tokens of the pods bound to it and nothing
//! else (kube's 403 and reason), gains access when such a pod is bound and loses it when the pod
//! goes; NodeRestriction keeps it to its own Node status.

use std::time::{Duration, Instant};

use pea_tests::control::{Backend, ControlPlane, Kubectl};

/// Polls `f` for up to 10 s.
fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("timed out waiting for {what}");
}

fn forbidden_get(node: &str, resource: &str, ns: &str, name: &str) -> String {
    let scope = if ns.is_empty() {
        "at the cluster scope".to_string()
    } else {
        format!("in the namespace \"{ns}\"")
    };
    format!(
        "Error from server (Forbidden): {resource} \"{name}\" is forbidden: User \"system:node:{node}\" cannot get resource \"{resource}\" in API group \"\" {scope}: no relationship found between node '{node}' and this object"
    )
}

fn pod(name: &str, node: Option<&str>, sa: &str, volumes: &str, env_from: &str) -> String {
    let node = node
        .map(|n| format!("  nodeName: {n}\n"))
        .unwrap_or_default();
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: app}}\nspec:\n{node}  serviceAccountName: {sa}\n  containers: [{{name: c, image: busybox{env_from}}}]\n  volumes: [{volumes}]\n"
    )
}

fn secret_volume(secret: &str) -> String {
    format!("{{name: s, secret: {{secretName: {secret}}}}}")
}

#[test]
fn nodes_reach_only_what_their_pods_use() {
    let cp = ControlPlane::start(Backend::Embedded).unwrap();
    let admin = cp.kubectl();
    let node = |n: &str| {
        Kubectl::new(
            &cp.kubeconfig_for(&format!("system:node:{n}"), &["system:nodes"])
                .unwrap(),
        )
    };
    let (n1, n2) = (node("n1"), node("n2"));
    admin.ok(&["create", "namespace", "app"]);
    for s in ["s1", "s2", "s3", "s4"] {
        admin.ok(&[
            "create",
            "secret",
            "generic",
            s,
            "-n",
            "app",
            "--from-literal=k=v",
        ]);
    }
    admin.ok(&[
        "create",
        "configmap",
        "cm1",
        "-n",
        "app",
        "--from-literal=k=v",
    ]);
    admin.ok(&["create", "serviceaccount", "bot", "-n", "app"]);
    admin.ok(&["create", "serviceaccount", "other", "-n", "app"]);
    admin.ok_stdin(
        &["create", "-f", "-"],
        "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {name: c1, namespace: app}\nspec:\n  accessModes: [ReadWriteOnce]\n  resources: {requests: {storage: 1Gi}}\n  volumeName: v1\n---\napiVersion: v1\nkind: PersistentVolume\nmetadata: {name: v1}\nspec:\n  capacity: {storage: 1Gi}\n  accessModes: [ReadWriteOnce]\n  hostPath: {path: /tmp/v1}\n  claimRef: {namespace: app, name: c1}\n---\napiVersion: v1\nkind: PersistentVolume\nmetadata: {name: v2}\nspec:\n  capacity: {storage: 1Gi}\n  accessModes: [ReadWriteOnce]\n  hostPath: {path: /tmp/v2}\n",
    );
    // p1 on n1: s1 as a volume, cm1 through envFrom, claim c1; p2 on n2: s2 only.
    admin.ok_stdin(
        &["create", "-f", "-"],
        &pod(
            "p1",
            Some("n1"),
            "bot",
            &format!(
                "{}, {{name: d, persistentVolumeClaim: {{claimName: c1}}}}",
                secret_volume("s1")
            ),
            ", envFrom: [{configMapRef: {name: cm1}}]",
        ),
    );
    admin.ok_stdin(
        &["create", "-f", "-"],
        &pod("p2", Some("n2"), "other", &secret_volume("s2"), ""),
    );

    // Secrets: only through a pod bound to the node, in kube's words otherwise.
    n1.ok(&["get", "secret", "s1", "-n", "app"]);
    let err = n1.fails(&["get", "secret", "s2", "-n", "app"]);
    assert_eq!(err.trim(), forbidden_get("n1", "secrets", "app", "s2"));
    n2.ok(&["get", "secret", "s2", "-n", "app"]);
    assert_eq!(
        n2.fails(&["get", "secret", "s1", "-n", "app"]).trim(),
        forbidden_get("n2", "secrets", "app", "s1")
    );
    // A missing secret a pod names is reachable (the kubelet sees the 404).
    let err = n1.fails(&["get", "secret", "s1", "-n", "other"]);
    assert!(err.contains("no relationship found"), "{err}");
    // No list or watch of secrets; one secret named by a field selector is a read of it.
    let err = n1.fails(&["get", "secrets", "-n", "app"]);
    assert_eq!(
        err.trim(),
        r#"Error from server (Forbidden): secrets is forbidden: User "system:node:n1" cannot list resource "secrets" in API group "" in the namespace "app": No Object name found"#
    );
    let one = n1.ok(&[
        "get",
        "secrets",
        "-n",
        "app",
        "--field-selector=metadata.name=s1",
        "-o",
        "name",
    ]);
    assert_eq!(one.trim(), "secret/s1");
    assert!(!n1
        .run(&[
            "get",
            "secrets",
            "-n",
            "app",
            "--field-selector=metadata.name=s2"
        ])
        .status
        .success());
    // Never a write, even of its own pods' secrets.
    let err = n1.fails(&["label", "secret", "s1", "-n", "app", "x=y"]);
    assert!(
        err.contains("can only read resources of this type"),
        "{err}"
    );

    // Access comes with a pod using the secret bound to the node (created bound, or bound
    // later through pods/binding), and goes with the pod.
    assert!(!n1
        .run(&["get", "secret", "s3", "-n", "app"])
        .status
        .success());
    admin.ok_stdin(
        &["create", "-f", "-"],
        &pod("p3", Some("n1"), "bot", &secret_volume("s3"), ""),
    );
    n1.ok(&["get", "secret", "s3", "-n", "app"]);
    admin.ok_stdin(
        &["create", "-f", "-"],
        &pod("p4", None, "bot", &secret_volume("s4"), ""),
    );
    assert!(!n1
        .run(&["get", "secret", "s4", "-n", "app"])
        .status
        .success());
    admin.ok_stdin(
        &[
            "create",
            "--raw",
            "/api/v1/namespaces/app/pods/p4/binding",
            "-f",
            "-",
        ],
        r#"{"apiVersion":"v1","kind":"Binding","metadata":{"name":"p4","namespace":"app"},"target":{"kind":"Node","name":"n1"}}"#,
    );
    n1.ok(&["get", "secret", "s4", "-n", "app"]);
    assert!(!n2
        .run(&["get", "secret", "s4", "-n", "app"])
        .status
        .success());
    admin.ok(&[
        "delete",
        "pod",
        "p3",
        "-n",
        "app",
        "--grace-period=0",
        "--force",
    ]);
    eventually("s3 to be out of n1's reach", || {
        !n1.run(&["get", "secret", "s3", "-n", "app"])
            .status
            .success()
    });
    assert_eq!(
        n1.fails(&["get", "secret", "s3", "-n", "app"]).trim(),
        forbidden_get("n1", "secrets", "app", "s3")
    );
    n1.ok(&["get", "secret", "s4", "-n", "app"]);

    // A configmap through envFrom; a claim and the volume bound to it.
    n1.ok(&["get", "configmap", "cm1", "-n", "app"]);
    assert_eq!(
        n2.fails(&["get", "configmap", "cm1", "-n", "app"]).trim(),
        forbidden_get("n2", "configmaps", "app", "cm1")
    );
    n1.ok(&["get", "pvc", "c1", "-n", "app"]);
    n1.ok(&["get", "pv", "v1"]);
    assert_eq!(
        n2.fails(&["get", "pvc", "c1", "-n", "app"]).trim(),
        forbidden_get("n2", "persistentvolumeclaims", "app", "c1")
    );
    assert_eq!(
        n2.fails(&["get", "pv", "v1"]).trim(),
        forbidden_get("n2", "persistentvolumes", "", "v1")
    );
    assert_eq!(
        n1.fails(&["get", "pv", "v2"]).trim(),
        forbidden_get("n1", "persistentvolumes", "", "v2")
    );
    let err = n1.fails(&["get", "pv"]);
    assert!(
        err.contains("can only get individual resources of this type"),
        "{err}"
    );

    // Tokens: for its pod's account, bound to its pod.
    let token = |k: &Kubectl, sa: &str, pod: &str| {
        k.run(&[
            "create",
            "token",
            sa,
            "-n",
            "app",
            "--bound-object-kind",
            "Pod",
            "--bound-object-name",
            pod,
        ])
    };
    assert!(token(&n1, "bot", "p1").status.success());
    let out = token(&n1, "other", "p2");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(r#"User "system:node:n1" cannot create resource "serviceaccounts/token""#)
            && err.contains("no relationship found between node 'n1' and this object"),
        "{err}"
    );
    let out = token(&n1, "bot", "p2");
    assert!(!out.status.success(), "p2 runs as another account on n2");
    let err = n1.fails(&["create", "token", "bot", "-n", "app"]);
    assert!(
        err.contains("node requested token not bound to a pod"),
        "{err}"
    );
    assert!(token(&n2, "other", "p2").status.success());

    // NodeRestriction: its own Node status only.
    for n in ["n1", "n2"] {
        admin.ok_stdin(
            &["create", "-f", "-"],
            &format!("apiVersion: v1\nkind: Node\nmetadata: {{name: {n}}}\n"),
        );
    }
    // As kube, a node may not read a status subresource (kubectl patch --subresource=status
    // reads it first): the kubelet writes status straight away, here with a PUT.
    let err = n1.fails(&[
        "patch",
        "node",
        "n1",
        "--subresource=status",
        "--type=merge",
        "-p",
        "{}",
    ]);
    assert!(
        err.contains(r#"User "system:node:n1" cannot get resource "nodes/status""#),
        "{err}"
    );
    let ready = |n: &str| {
        let mut node: serde_json::Value =
            serde_json::from_str(&admin.ok(&["get", "node", n, "-o", "json"])).unwrap();
        node["status"]["conditions"] = serde_json::json!([{"type": "Ready", "status": "True",
            "reason": "KubeletReady", "message": "ok"}]);
        node.to_string()
    };
    let put_status = |k: &Kubectl, n: &str| {
        k.stdin_output(
            &[
                "replace",
                "--raw",
                &format!("/api/v1/nodes/{n}/status"),
                "-f",
                "-",
            ],
            &ready(n),
        )
    };
    let out = put_status(&n1, "n1");
    assert!(out.status.success(), "{out:?}");
    let out = put_status(&n1, "n2");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(r#"nodes "n2" is forbidden: User "system:node:n1" cannot update resource "nodes/status" in API group "" at the cluster scope: node "n1" is not allowed to modify node "n2""#),
        "{err}"
    );
    let n2_status = admin.ok(&["get", "node", "n2", "-o", "jsonpath={.status.conditions}"]);
    assert!(!n2_status.contains("KubeletReady"), "{n2_status}");

    // An administrator impersonating the node gets the same answers.
    let as_n1 = ["--as=system:node:n1", "--as-group=system:nodes"];
    let args = |a: &[&str]| -> Vec<String> {
        a.iter()
            .chain(as_n1.iter())
            .map(|s| s.to_string())
            .collect()
    };
    let run = |a: &[&str]| {
        let v = args(a);
        admin.run(&v.iter().map(String::as_str).collect::<Vec<_>>())
    };
    assert!(run(&["get", "secret", "s1", "-n", "app"]).status.success());
    let out = run(&["get", "secret", "s2", "-n", "app"]);
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim(),
        forbidden_get("n1", "secrets", "app", "s2")
    );
    // And `kubectl auth can-i` agrees (its review goes through the same graph).
    let can = |what: &[&str]| {
        let mut v = vec!["auth", "can-i"];
        v.extend_from_slice(what);
        let out = n1.run(&v);
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    assert_eq!(can(&["get", "secret/s1", "-n", "app"]), "yes");
    assert!(can(&["get", "secret/s2", "-n", "app"]).starts_with("no"));
}

/// NodeRestriction's checks of a node's own Node object, through real kubectl: it registers
/// with kubelet labels and taints but no restricted label, and afterwards may relabel itself
/// only within the kubelet's labels, never touch its taints; an administrator may do both.
#[test]
fn a_node_cannot_label_itself_into_workloads_or_drop_its_taints() {
    let cp = ControlPlane::start(Backend::Embedded).unwrap();
    let admin = cp.kubectl();
    let n1 = Kubectl::new(
        &cp.kubeconfig_for("system:node:n1", &["system:nodes"])
            .unwrap(),
    );
    let node = |labels: &str| {
        format!(
            "apiVersion: v1\nkind: Node\nmetadata:\n  name: n1\n  labels: {{{labels}}}\nspec:\n  taints: [{{key: dedicated, value: db, effect: NoSchedule}}]\n"
        )
    };
    let err = n1.fails_stdin(
        &["create", "-f", "-"],
        &node("kubernetes.io/hostname: n1, node-role.kubernetes.io/control-plane: \"\", node-restriction.kubernetes.io/pci: \"yes\""),
    );
    assert_eq!(
        err.trim(),
        "Error from server (Forbidden): error when creating \"STDIN\": nodes \"n1\" is forbidden: node \"n1\" is not allowed to set the following labels: node-restriction.kubernetes.io/pci, node-role.kubernetes.io/control-plane"
    );
    assert!(admin.run(&["get", "node", "n1"]).status.code() != Some(0));
    // The kubelet's labels, its own domain's and its registration taints are fine.
    n1.ok_stdin(
        &["create", "-f", "-"],
        &node("kubernetes.io/hostname: n1, kubernetes.io/os: linux, node.kubernetes.io/instance-type: vm, example.com/rack: r1"),
    );
    n1.ok(&["label", "node", "n1", "example.com/rack=r2", "--overwrite"]);
    n1.ok(&["label", "node", "n1", "topology.kubernetes.io/zone=z1"]);
    let err = n1.fails(&["label", "node", "n1", "node-role.kubernetes.io/worker="]);
    assert_eq!(
        err.trim(),
        "Error from server (Forbidden): nodes \"n1\" is forbidden: is not allowed to modify labels: node-role.kubernetes.io/worker"
    );
    let err = n1.fails(&["taint", "node", "n1", "dedicated:NoSchedule-"]);
    assert!(
        err.contains("nodes \"n1\" is forbidden: node \"n1\" is not allowed to modify taints"),
        "{err}"
    );
    // An administrator sets what steers workloads; the node keeps it then.
    admin.ok(&[
        "label",
        "node",
        "n1",
        "node-restriction.kubernetes.io/pci=yes",
    ]);
    admin.ok(&["taint", "node", "n1", "gpu=yes:NoSchedule"]);
    let err = n1.fails(&["label", "node", "n1", "node-restriction.kubernetes.io/pci-"]);
    assert!(
        err.contains("is not allowed to modify labels: node-restriction.kubernetes.io/pci"),
        "{err}"
    );
    // Its mirror pods are its own (owned by its Node, with its UID) and reference nothing.
    let uid = admin.ok(&["get", "node", "n1", "-o", "jsonpath={.metadata.uid}"]);
    let mirror = |owner: &str, extra: &str| {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: static-n1\n  namespace: default\n  annotations: {{kubernetes.io/config.mirror: h}}\n{owner}spec:\n  nodeName: n1\n  containers: [{{name: c, image: busybox{extra}}}]\n"
        )
    };
    let owned = format!(
        "  ownerReferences: [{{apiVersion: v1, kind: Node, name: n1, uid: {uid}, controller: true}}]\n"
    );
    let err = n1.fails_stdin(&["create", "-f", "-"], &mirror("", ""));
    assert!(
        err.contains("pods \"static-n1\" is forbidden: node \"n1\" can only create pods with an owner reference set to itself"),
        "{err}"
    );
    let err = n1.fails_stdin(
        &["create", "-f", "-"],
        &mirror(&owned, ", envFrom: [{secretRef: {name: s1}}]"),
    );
    assert!(
        err.contains("node \"n1\" can not create pods that reference secrets"),
        "{err}"
    );
    n1.ok_stdin(&["create", "-f", "-"], &mirror(&owned, ""));
    assert_eq!(
        admin
            .ok(&["get", "node", "n1", "-o", "jsonpath={.spec.taints[*].key} {.metadata.labels.node-restriction\\.kubernetes\\.io/pci} {.metadata.labels.example\\.com/rack}"])
            .trim(),
        "gpu dedicated yes r2"
    );
}
