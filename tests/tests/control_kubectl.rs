//! The real kubectl (1.32) against pea-control, each test with its own server and HOME.

use std::io::{BufRead, BufReader};
use std::time::{Duration, Instant};

use pea_tests::control::{Backend, ControlPlane};

const POD: &str = "apiVersion: v1
kind: Pod
metadata:
  name: web
  labels: {app: web}
spec:
  containers:
  - name: c
    image: busybox:1.36
";

fn pod(name: &str, labels: &str) -> String {
    format!("apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  labels: {{{labels}}}\nspec:\n  containers:\n  - name: c\n    image: busybox:1.36\n")
}

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

fn crud_pod_lifecycle(backend: Backend) {
    let cp = ControlPlane::start(backend).unwrap();
    let k = cp.kubectl();
    let version = k.ok(&["version"]);
    assert!(version.contains("Server Version: v1.32"), "{version}");
    let ns = k.ok(&["get", "namespaces"]);
    for n in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        assert!(ns.contains(n), "{ns}");
    }
    assert!(k
        .ok_stdin(&["create", "-f", "-"], POD)
        .contains("pod/web created"));
    let table = k.ok(&["get", "pods"]);
    assert!(table.starts_with("NAME"), "{table}");
    assert!(
        table.contains("web") && table.contains("0/1") && table.contains("Pending"),
        "{table}"
    );
    let dup = k.stdin_output(&["create", "-f", "-"], POD);
    assert!(!dup.status.success());
    assert!(
        String::from_utf8_lossy(&dup.stderr).contains("AlreadyExists"),
        "{dup:?}"
    );
    k.ok(&["label", "pod", "web", "tier=front"]);
    k.ok(&["annotate", "pod", "web", "note=hi"]);
    k.ok(&[
        "patch",
        "pod",
        "web",
        "-p",
        r#"{"metadata":{"labels":{"s":"strategic"}}}"#,
    ]);
    k.ok(&[
        "patch",
        "pod",
        "web",
        "--type=merge",
        "-p",
        r#"{"metadata":{"labels":{"m":"merge"}}}"#,
    ]);
    k.ok(&[
        "patch",
        "pod",
        "web",
        "--type=json",
        "-p",
        r#"[{"op":"add","path":"/metadata/labels/j","value":"json"}]"#,
    ]);
    let labels = k.ok(&["get", "pod", "web", "-o", "jsonpath={.metadata.labels}"]);
    for l in [
        "\"tier\":\"front\"",
        "\"s\":\"strategic\"",
        "\"m\":\"merge\"",
        "\"j\":\"json\"",
    ] {
        assert!(labels.contains(l), "{labels}");
    }
    assert_eq!(
        k.ok(&[
            "get",
            "pod",
            "web",
            "-o",
            "jsonpath={.metadata.annotations.note}"
        ]),
        "hi"
    );
    // A strategic patch merges containers by name instead of replacing the list.
    k.ok(&[
        "patch",
        "pod",
        "web",
        "-p",
        r#"{"spec":{"containers":[{"name":"c","image":"busybox:1.37"}]}}"#,
    ]);
    assert_eq!(
        k.ok(&[
            "get",
            "pod",
            "web",
            "-o",
            "jsonpath={.spec.containers[0].image}"
        ]),
        "busybox:1.37"
    );
    assert_eq!(
        k.ok(&[
            "get",
            "pod",
            "web",
            "-o",
            "jsonpath={.spec.containers[0].terminationMessagePath}"
        ]),
        "/dev/termination-log"
    );
    assert!(k
        .ok(&["delete", "pod", "web"])
        .contains("pod \"web\" deleted"));
    assert!(k.fails(&["get", "pod", "web"]).contains("NotFound"));
}

#[test]
fn kubectl_crud_on_embedded_store() {
    crud_pod_lifecycle(Backend::Embedded);
}

#[test]
fn kubectl_crud_on_etcd() {
    crud_pod_lifecycle(Backend::Etcd);
}

#[test]
fn kubectl_apply_is_idempotent_and_updates() {
    let cp = ControlPlane::start(Backend::Embedded).unwrap();
    let k = cp.kubectl();
    assert!(k
        .ok_stdin(&["apply", "-f", "-"], POD)
        .contains("pod/web created"));
    let rv1 = k.ok(&[
        "get",
        "pod",
        "web",
        "-o",
        "jsonpath={.metadata.resourceVersion}",
    ]);
    assert!(k
        .ok_stdin(&["apply", "-f", "-"], POD)
        .contains("pod/web unchanged"));
    let rv2 = k.ok(&[
        "get",
        "pod",
        "web",
        "-o",
        "jsonpath={.metadata.resourceVersion}",
    ]);
    assert_eq!(rv1, rv2, "an unchanged apply writes nothing");
    let changed = POD.replace("{app: web}", "{app: web, v: \"2\"}");
    assert!(k
        .ok_stdin(&["apply", "-f", "-"], &changed)
        .contains("pod/web configured"));
    assert_eq!(
        k.ok(&["get", "pod", "web", "-o", "jsonpath={.metadata.labels.v}"]),
        "2"
    );
    // Dropping the label from the manifest removes it (three-way merge via last-applied).
    assert!(k
        .ok_stdin(&["apply", "-f", "-"], POD)
        .contains("pod/web configured"));
    assert_eq!(
        k.ok(&["get", "pod", "web", "-o", "jsonpath={.metadata.labels.v}"]),
        ""
    );
    // kubectl diff runs a server-side dry-run patch and exits 1 when something would change.
    let diff = k.stdin_output(&["diff", "-f", "-"], &changed);
    assert_eq!(diff.status.code(), Some(1), "{diff:?}");
    assert!(
        String::from_utf8_lossy(&diff.stdout).contains("+    v: \"2\""),
        "{diff:?}"
    );
    assert_eq!(
        k.ok(&["get", "pod", "web", "-o", "jsonpath={.metadata.labels.v}"]),
        "",
        "diff wrote nothing"
    );
}

#[test]
fn kubectl_rejects_bad_input_with_status_errors() {
    let cp = ControlPlane::start(Backend::Embedded).unwrap();
    let k = cp.kubectl();
    let bad_label = pod("bad", "app: \"-nope-\"");
    let err = k.stdin_output(&["create", "-f", "-"], &bad_label);
    let stderr = String::from_utf8_lossy(&err.stderr);
    assert!(!err.status.success());
    assert!(
        stderr.contains("Invalid value") && stderr.contains("-nope-"),
        "{stderr}"
    );
    let bad_name = pod("Bad_Name", "a: b");
    let err = k.stdin_output(&["create", "-f", "-"], &bad_name);
    assert!(
        String::from_utf8_lossy(&err.stderr).contains("RFC 1123"),
        "{}",
        String::from_utf8_lossy(&err.stderr)
    );
    // Unknown fields fail under kubectl's default strict validation.
    let unknown = POD.replace(
        "    image: busybox:1.36\n",
        "    image: busybox:1.36\n    bogus: 1\n",
    );
    let err = k.stdin_output(&["create", "-f", "-"], &unknown);
    assert!(
        String::from_utf8_lossy(&err.stderr).contains("unknown field \"spec.containers[0].bogus\""),
        "{}",
        String::from_utf8_lossy(&err.stderr)
    );
    let sel = k.fails(&["get", "pods", "-l", "app in web"]);
    assert!(
        sel.contains("labelSelector") || sel.contains("unable to parse"),
        "{sel}"
    );
    let field = k.fails(&["get", "pods", "--field-selector", "spec.bogus=1"]);
    assert!(field.contains("field label not supported"), "{field}");
    // Nothing half-created.
    assert!(k.ok(&["get", "pods", "-o", "name"]).is_empty());
}

#[test]
fn kubectl_selectors_filter_lists() {
    let cp = ControlPlane::start(Backend::Embedded).unwrap();
    let k = cp.kubectl();
    for (name, labels) in [
        ("a", "app: web, tier: front"),
        ("b", "app: db"),
        ("c", "tier: back"),
    ] {
        k.ok_stdin(&["create", "-f", "-"], &pod(name, labels));
    }
    let names = |sel: &[&str]| {
        let mut args = vec!["get", "pods", "-o", "jsonpath={.items[*].metadata.name}"];
        args.extend_from_slice(sel);
        k.ok(&args)
    };
    assert_eq!(names(&["-l", "app=web"]), "a");
    assert_eq!(names(&["-l", "app!=web"]), "b c");
    assert_eq!(names(&["-l", "app in (web,db)"]), "a b");
    assert_eq!(names(&["-l", "app notin (web)"]), "b c");
    assert_eq!(names(&["-l", "tier"]), "a c");
    assert_eq!(names(&["-l", "!tier"]), "b");
    assert_eq!(names(&["--field-selector", "metadata.name=b"]), "b");
    assert_eq!(
        names(&["--field-selector", "status.phase=Pending,metadata.name!=a"]),
        "b c"
    );
    assert_eq!(names(&["--field-selector", "spec.nodeName="]), "a b c");
    // Pagination: kubectl pages with limit/continue and still sees all three.
    assert_eq!(names(&["--chunk-size=1"]), "a b c");
}

#[test]
fn kubectl_get_watch_streams_changes() {
    get_watch_streams_changes(Backend::Embedded);
}

#[test]
fn kubectl_get_watch_streams_changes_on_etcd() {
    get_watch_streams_changes(Backend::Etcd);
}

fn get_watch_streams_changes(backend: Backend) {
    let cp = ControlPlane::start(backend).unwrap();
    let k = cp.kubectl();
    k.ok_stdin(&["create", "-f", "-"], &pod("first", "app: w"));
    let mut watch = k.spawn(&["get", "pods", "-w", "--output-watch-events"]);
    let stdout = watch.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut seen = Vec::new();
    let mut wait_for = |needle: &str| {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if seen.iter().any(|l: &String| l.contains(needle)) {
                return;
            }
            if let Ok(l) = rx.recv_timeout(Duration::from_millis(200)) {
                seen.push(l);
            }
        }
        panic!("no watch line with {needle:?}; saw {seen:?}");
    };
    wait_for("first");
    k.ok_stdin(&["create", "-f", "-"], &pod("second", "app: w"));
    wait_for("second");
    k.ok(&["delete", "pod", "first"]);
    wait_for("DELETED");
    let _ = watch.kill();
    let _ = watch.wait();
}

#[test]
fn watch_resumes_from_resource_version_and_410_after_compaction() {
    let cp = ControlPlane::start(Backend::Embedded).unwrap();
    let k = cp.kubectl();
    k.ok_stdin(&["create", "-f", "-"], &pod("a", "x: \"1\""));
    let rv = k.ok(&[
        "get",
        "pod",
        "a",
        "-o",
        "jsonpath={.metadata.resourceVersion}",
    ]);
    k.ok_stdin(&["create", "-f", "-"], &pod("b", "x: \"1\""));
    k.ok(&["label", "pod", "a", "y=2"]);
    let out = k.ok(&[
        "get",
        "--raw",
        &format!("/api/v1/namespaces/default/pods?watch=1&resourceVersion={rv}&timeoutSeconds=1"),
    ]);
    let events: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let summary: Vec<(String, String)> = events
        .iter()
        .map(|e| {
            (
                e["type"].as_str().unwrap().to_string(),
                e["object"]["metadata"]["name"]
                    .as_str()
                    .unwrap()
                    .to_string(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("ADDED".to_string(), "b".to_string()),
            ("MODIFIED".to_string(), "a".to_string())
        ]
    );
    // Without a resourceVersion the watch starts with the current state.
    let out = k.ok(&[
        "get",
        "--raw",
        "/api/v1/namespaces/default/pods?watch=1&timeoutSeconds=1",
    ]);
    assert_eq!(
        out.lines().filter(|l| l.contains("\"ADDED\"")).count(),
        2,
        "{out}"
    );
    // After compaction the old resourceVersion is gone: an ERROR event with a 410 Status.
    let api = cp.api();
    let head = cp.block_on(api.store.current_revision()).unwrap();
    cp.block_on(api.store.compact(head)).unwrap();
    let out = k.ok(&[
        "get",
        "--raw",
        &format!("/api/v1/namespaces/default/pods?watch=1&resourceVersion={rv}&timeoutSeconds=1"),
    ]);
    let ev: serde_json::Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    assert_eq!(ev["type"], "ERROR");
    assert_eq!(ev["object"]["code"], 410);
    // A list at an exact compacted revision is 410 too.
    let err = k.fails(&[
        "get",
        "--raw",
        &format!("/api/v1/namespaces/default/pods?resourceVersion={rv}&resourceVersionMatch=Exact"),
    ]);
    assert!(
        err.contains("Expired")
            || err.contains("too old")
            || err.contains("410")
            || err.contains("Gone"),
        "{err}"
    );
}

#[test]
fn discovery_explain_and_api_resources() {
    let cp = ControlPlane::start(Backend::Embedded).unwrap();
    let k = cp.kubectl();
    let res = k.ok(&["api-resources"]);
    for r in [
        "pods",
        "deployments",
        "leases",
        "endpointslices",
        "horizontalpodautoscalers",
        "ingresses",
        "cronjobs",
    ] {
        assert!(res.contains(r), "{res}");
    }
    let explain = k.ok(&["explain", "deployment.spec.replicas"]);
    assert!(explain.contains("FIELD: replicas <integer>"), "{explain}");
    let explain = k.ok(&["explain", "pods.spec.containers"]);
    assert!(
        explain.contains("image") && explain.contains("<[]Container>"),
        "{explain}"
    );
}

#[test]
fn anonymous_refused_and_node_identity_confined() {
    let cp = ControlPlane::start(Backend::Embedded).unwrap();
    // No credentials at all (kubectl would prompt for a password, so curl asks).
    pea_tests::privileged::require_program("curl");
    let ca = cp.data_dir.join("pki/ca.crt");
    let out = std::process::Command::new("curl")
        .args([
            "-sS",
            "--cacert",
            ca.to_str().unwrap(),
            &format!("https://{}/api/v1/namespaces/default/pods", cp.addr),
        ])
        .output()
        .unwrap();
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (status["kind"].as_str(), status["code"].as_i64()),
        (Some("Status"), Some(401)),
        "{status}"
    );
    // A wrong bearer token is refused even though the CA is trusted.
    let anon = pea_tests::control::Kubectl::new(&cp.anonymous_kubeconfig().unwrap());
    let err = anon.fails(&["get", "pods", "--token=not-a-token"]);
    assert!(
        err.contains("Unauthorized") || err.contains("must be logged in"),
        "{err}"
    );
    // The generated admin token works.
    let token = cp.running().admin_token.clone();
    assert!(anon
        .ok(&["get", "namespaces", "--token", &token])
        .contains("kube-system"));
    let admin = cp.kubectl();
    let node = |n: &str| format!("apiVersion: v1\nkind: Node\nmetadata:\n  name: {n}\n");
    let n1 = pea_tests::control::Kubectl::new(
        &cp.kubeconfig_for("system:node:n1", &["system:nodes"])
            .unwrap(),
    );
    n1.ok_stdin(&["create", "-f", "-"], &node("n1"));
    admin.ok_stdin(&["create", "-f", "-"], &node("n2"));
    n1.ok(&["label", "node", "n1", "pea/ok=yes"]);
    let out = n1.stdin_output(&["create", "-f", "-"], &node("n3"));
    assert!(
        !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("Forbidden"),
        "a node creates only itself: {out:?}"
    );
    let err = n1.fails(&["label", "node", "n2", "pea/ok=no"]);
    assert!(
        err.contains("Forbidden") || err.contains("forbidden") || err.contains("cannot"),
        "{err}"
    );
    let err = n1.fails(&[
        "create",
        "configmap",
        "x",
        "--from-literal=a=b",
        "--dry-run=server",
        "-o",
        "name",
    ]);
    assert!(
        err.contains(r#"User "system:node:n1" cannot create resource "configmaps" in API group "" in the namespace "default""#),
        "{err}"
    );
    // Its own Lease and events, yes; another node's Lease, no.
    let lease = |n: &str| {
        format!("apiVersion: coordination.k8s.io/v1\nkind: Lease\nmetadata: {{name: {n}, namespace: kube-node-lease}}\nspec: {{holderIdentity: {n}, leaseDurationSeconds: 40}}\n")
    };
    n1.ok_stdin(&["create", "-f", "-"], &lease("n1"));
    n1.ok(&[
        "annotate",
        "lease",
        "n1",
        "-n",
        "kube-node-lease",
        "renewed=yes",
    ]);
    let err = n1.fails_stdin(&["create", "-f", "-"], &lease("n2"));
    assert!(
        err.contains(r#"User "system:node:n1" cannot create resource "leases" in API group "coordination.k8s.io" in the namespace "kube-node-lease""#),
        "{err}"
    );
    admin.ok_stdin(&["create", "-f", "-"], &lease("n2"));
    let err = n1.fails(&[
        "annotate",
        "lease",
        "n2",
        "-n",
        "kube-node-lease",
        "renewed=yes",
    ]);
    // kube's node authorizer refuses even the read of another node's Lease.
    assert!(
        err.contains(r#"User "system:node:n1" cannot get resource "leases" in API group "coordination.k8s.io" in the namespace "kube-node-lease": can only access node lease with the same name as the requesting node"#),
        "{err}"
    );
    n1.ok_stdin(
        &["create", "-f", "-"],
        "apiVersion: v1\nkind: Event\nmetadata: {name: n1.started}\ninvolvedObject: {kind: Node, name: n1}\nreason: Starting\nmessage: kubelet started\ntype: Normal\nsource: {component: kubelet, host: n1}\n",
    );
    let err = n1.fails(&["delete", "node", "n2"]);
    assert!(err.contains("cannot delete"), "{err}");
    // Reads are allowed.
    assert!(n1.ok(&["get", "nodes", "-o", "name"]).contains("node/n2"));
}

#[test]
fn deletion_cascades_through_owner_references_and_namespaces() {
    let cp = ControlPlane::start(Backend::Embedded).unwrap();
    let k = cp.kubectl();
    let cm = |name: &str| {
        format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\ndata: {{a: b}}\n")
    };
    k.ok_stdin(&["create", "-f", "-"], &cm("owner"));
    let uid = k.ok(&["get", "cm", "owner", "-o", "jsonpath={.metadata.uid}"]);
    let dependent = |name: &str| {
        format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n  ownerReferences:\n  - {{apiVersion: v1, kind: ConfigMap, name: owner, uid: {uid}}}\n"
    )
    };
    k.ok_stdin(&["create", "-f", "-"], &dependent("dep"));
    k.ok(&["delete", "cm", "owner"]);
    eventually("dependent deleted in background", || {
        k.run(&["get", "cm", "dep"]).status.code() == Some(1)
    });
    // Orphan keeps the dependent and drops its owner reference.
    k.ok_stdin(&["create", "-f", "-"], &cm("owner"));
    let uid2 = k.ok(&["get", "cm", "owner", "-o", "jsonpath={.metadata.uid}"]);
    k.ok_stdin(
        &["create", "-f", "-"],
        &dependent("dep2").replace(&uid, &uid2),
    );
    k.ok(&["delete", "cm", "owner", "--cascade=orphan"]);
    eventually("owner reference dropped", || {
        k.ok(&[
            "get",
            "cm",
            "dep2",
            "-o",
            "jsonpath={.metadata.ownerReferences}",
        ])
        .is_empty()
    });
    // Foreground: the owner waits for its dependents.
    k.ok_stdin(&["create", "-f", "-"], &cm("owner"));
    let uid3 = k.ok(&["get", "cm", "owner", "-o", "jsonpath={.metadata.uid}"]);
    k.ok_stdin(
        &["create", "-f", "-"],
        &dependent("dep3").replace(&uid, &uid3),
    );
    k.ok(&["delete", "cm", "owner", "--cascade=foreground"]);
    eventually("foreground deletion finished", || {
        k.run(&["get", "cm", "owner"]).status.code() == Some(1)
            && k.run(&["get", "cm", "dep3"]).status.code() == Some(1)
    });
    // Deleting a namespace deletes what is in it.
    k.ok_stdin(
        &["create", "-f", "-"],
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: doomed\n",
    );
    k.ok_stdin(&["create", "-n", "doomed", "-f", "-"], &cm("inside"));
    k.ok(&["delete", "namespace", "doomed"]);
    assert!(k.run(&["get", "namespace", "doomed"]).status.code() == Some(1));
    let err = k.fails(&["get", "cm", "inside", "-n", "doomed"]);
    assert!(err.contains("NotFound"), "{err}");
}

#[test]
fn dry_run_and_conflicts() {
    let cp = ControlPlane::start(Backend::Embedded).unwrap();
    let k = cp.kubectl();
    assert!(k
        .ok_stdin(&["create", "--dry-run=server", "-f", "-"], POD)
        .contains("pod/web created (server dry run)"));
    assert!(k.fails(&["get", "pod", "web"]).contains("NotFound"));
    k.ok_stdin(&["create", "-f", "-"], POD);
    let stale = k.ok(&["get", "pod", "web", "-o", "json"]);
    k.ok(&["label", "pod", "web", "bump=1"]);
    let err = k.stdin_output(&["replace", "-f", "-"], &stale);
    assert!(!err.status.success());
    let stderr = String::from_utf8_lossy(&err.stderr);
    assert!(stderr.contains("the object has been modified"), "{stderr}");
    // kubectl sends a dry-run delete's dryRun in the DeleteOptions body, not the query.
    assert!(k
        .ok(&["delete", "pod", "web", "--dry-run=server"])
        .contains("(server dry run)"));
    k.ok(&["get", "pod", "web"]);
}

#[test]
fn kubectl_create_generators_send_protobuf() {
    let cp = ControlPlane::start(Backend::Embedded).unwrap();
    let k = cp.kubectl();
    assert!(k
        .ok(&["create", "namespace", "gen"])
        .contains("namespace/gen created"));
    assert_eq!(
        k.ok(&["get", "ns", "gen", "-o", "jsonpath={.status.phase}"]),
        "Active"
    );
    k.ok(&[
        "create",
        "configmap",
        "cm",
        "-n",
        "gen",
        "--from-literal=a=b",
        "--from-literal=c=d",
    ]);
    assert_eq!(
        k.ok(&[
            "get",
            "cm",
            "cm",
            "-n",
            "gen",
            "-o",
            "jsonpath={.data.a}{.data.c}"
        ]),
        "bd"
    );
    k.ok(&[
        "create",
        "secret",
        "generic",
        "s",
        "-n",
        "gen",
        "--from-literal=pw=hunter2",
    ]);
    assert_eq!(
        k.ok(&[
            "get",
            "secret",
            "s",
            "-n",
            "gen",
            "-o",
            "jsonpath={.data.pw} {.type}"
        ]),
        "aHVudGVyMg== Opaque"
    );
    k.ok(&["create", "serviceaccount", "robot", "-n", "gen"]);
    assert_eq!(
        k.ok(&[
            "get",
            "sa",
            "robot",
            "-n",
            "gen",
            "-o",
            "jsonpath={.metadata.name}"
        ]),
        "robot"
    );
    // PodSpec-bearing kinds decode too (tests/tests/control_protobuf.rs checks them in full).
    assert!(k
        .ok(&["create", "deployment", "d", "--image=busybox"])
        .contains("deployment.apps/d created"));
    assert_eq!(
        k.ok(&[
            "get",
            "deployment",
            "d",
            "-o",
            "jsonpath={.spec.template.spec.containers[0].image}"
        ]),
        "busybox"
    );
}

const DEPLOY: &str = "apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: c
        image: busybox:1.36
";

#[test]
fn kubectl_server_side_apply_tracks_owners_and_conflicts() {
    let cp = ControlPlane::start(Backend::Embedded).unwrap();
    let k = cp.kubectl();
    assert!(k
        .ok_stdin(&["apply", "--server-side", "-f", "-"], DEPLOY)
        .contains("serverside-applied"));
    let managers = k.ok(&[
        "get",
        "deploy",
        "web",
        "--show-managed-fields",
        "-o",
        "jsonpath={.metadata.managedFields[*].manager}/{.metadata.managedFields[*].operation}",
    ]);
    assert_eq!(managers, "kubectl/Apply");
    // Another writer takes spec.replicas: applying a different value now conflicts.
    k.ok(&["scale", "deployment", "web", "--replicas=7"]);
    let out = k.stdin_output(&["apply", "--server-side", "-f", "-"], DEPLOY);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success()
            && err.contains("Apply failed with 1 conflict")
            && err.contains(".spec.replicas"),
        "{err}"
    );
    assert_eq!(
        k.ok(&["get", "deploy", "web", "-o", "jsonpath={.spec.replicas}"]),
        "7"
    );
    k.ok_stdin(
        &["apply", "--server-side", "--force-conflicts", "-f", "-"],
        DEPLOY,
    );
    assert_eq!(
        k.ok(&["get", "deploy", "web", "-o", "jsonpath={.spec.replicas}"]),
        "2"
    );
    // A field the manager stops applying is removed.
    let with_min = DEPLOY.replace("  replicas: 2\n", "  replicas: 2\n  minReadySeconds: 5\n");
    k.ok_stdin(&["apply", "--server-side", "-f", "-"], &with_min);
    assert_eq!(
        k.ok(&[
            "get",
            "deploy",
            "web",
            "-o",
            "jsonpath={.spec.minReadySeconds}"
        ]),
        "5"
    );
    k.ok_stdin(&["apply", "--server-side", "-f", "-"], DEPLOY);
    assert_eq!(
        k.ok(&[
            "get",
            "deploy",
            "web",
            "-o",
            "jsonpath={.spec.minReadySeconds}"
        ]),
        ""
    );
}

#[test]
fn kubectl_scale_edit_describe_and_generation() {
    let cp = ControlPlane::start(Backend::Embedded).unwrap();
    let k = cp.kubectl();
    k.ok_stdin(&["create", "-f", "-"], DEPLOY);
    assert_eq!(
        k.ok(&[
            "get",
            "deploy",
            "web",
            "-o",
            "jsonpath={.metadata.generation}"
        ]),
        "1"
    );
    k.ok(&["scale", "deployment", "web", "--replicas=5"]);
    assert_eq!(
        k.ok(&[
            "get",
            "deploy",
            "web",
            "-o",
            "jsonpath={.spec.replicas} {.metadata.generation}"
        ]),
        "5 2"
    );
    let table = k.ok(&["get", "deploy"]);
    assert!(table.contains("0/5"), "{table}");
    // A status write does not bump the generation.
    k.ok(&[
        "patch",
        "deploy",
        "web",
        "--subresource=status",
        "--type=merge",
        "-p",
        r#"{"status":{"readyReplicas":3,"observedGeneration":2}}"#,
    ]);
    assert_eq!(
        k.ok(&[
            "get",
            "deploy",
            "web",
            "-o",
            "jsonpath={.status.readyReplicas} {.metadata.generation}"
        ]),
        "3 2"
    );
    // kubectl edit through an EDITOR that rewrites the image.
    let out = k
        .command(&["edit", "deploy", "web"])
        .env("EDITOR", "sed -i s/busybox:1.36/busybox:1.37/")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        k.ok(&[
            "get",
            "deploy",
            "web",
            "-o",
            "jsonpath={.spec.template.spec.containers[0].image} {.metadata.generation}"
        ]),
        "busybox:1.37 3"
    );
    let described = k.ok(&["describe", "deployment", "web"]);
    assert!(
        described.contains("5 desired") && described.contains("busybox:1.37"),
        "{described}"
    );
}

#[test]
fn kubectl_apply_strategy_switch_get_all_and_wait() {
    let cp = ControlPlane::start(Backend::Embedded).unwrap();
    let k = cp.kubectl();
    k.ok_stdin(&["apply", "-f", "-"], DEPLOY);
    assert_eq!(
        k.ok(&[
            "get",
            "deploy",
            "web",
            "-o",
            "jsonpath={.spec.strategy.type}"
        ]),
        "RollingUpdate"
    );
    // kubectl sends $retainKeys so the rollingUpdate block goes with the type change.
    let recreate = DEPLOY.replace(
        "  replicas: 2\n",
        "  replicas: 2\n  strategy:\n    type: Recreate\n",
    );
    k.ok_stdin(&["apply", "-f", "-"], &recreate);
    assert_eq!(
        k.ok(&["get", "deploy", "web", "-o", "jsonpath={.spec.strategy}"]),
        r#"{"type":"Recreate"}"#
    );
    k.ok_stdin(&["create", "-f", "-"], POD);
    let all = k.ok(&["get", "all"]);
    assert!(
        all.contains("pod/web") && all.contains("deployment.apps/web"),
        "{all}"
    );
    let wait = k.spawn(&["wait", "--for=delete", "pod/web", "--timeout=20s"]);
    std::thread::sleep(Duration::from_millis(500));
    k.ok(&["delete", "pod", "web"]);
    let out = wait.wait_with_output().unwrap();
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("condition met"),
        "{out:?}"
    );
}

#[test]
fn secret_string_data_is_stored_as_data() {
    let cp = ControlPlane::start(Backend::Embedded).unwrap();
    let k = cp.kubectl();
    let secret = "apiVersion: v1\nkind: Secret\nmetadata:\n  name: s\nstringData:\n  pw: hunter2\n";
    k.ok_stdin(&["apply", "-f", "-"], secret);
    assert_eq!(
        k.ok(&[
            "get",
            "secret",
            "s",
            "-o",
            "jsonpath={.data.pw}|{.stringData}|{.type}"
        ]),
        "aHVudGVyMg==||Opaque"
    );
    k.ok_stdin(&["apply", "-f", "-"], &secret.replace("hunter2", "hunter3"));
    assert_eq!(
        k.ok(&["get", "secret", "s", "-o", "jsonpath={.data.pw}"]),
        "aHVudGVyMw=="
    );
}

fn service(name: &str, cluster_ip: Option<&str>) -> String {
    let ip = cluster_ip
        .map(|i| format!("  clusterIP: \"{i}\"\n"))
        .unwrap_or_default();
    format!("apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\nspec:\n{ip}  selector: {{app: web}}\n  ports:\n  - port: 80\n")
}

#[test]
fn services_get_cluster_ips_that_are_unique_and_released() {
    let cp = ControlPlane::start(Backend::Embedded).unwrap();
    let k = cp.kubectl();
    let allocated = || cp.allocations("/registry/ranges/serviceips/").len();
    k.ok_stdin(&["create", "-f", "-"], &service("a", None));
    let ip = k.ok(&["get", "svc", "a", "-o", "jsonpath={.spec.clusterIP}"]);
    let octets: Vec<u8> = ip.split('.').map(|o| o.parse().unwrap()).collect();
    assert!(
        octets[0] == 10 && (96..112).contains(&octets[1]),
        "{ip} in 10.96.0.0/12"
    );
    assert!(k.ok(&["get", "svc", "a"]).contains(&ip));
    // The same address twice is refused, and the failed create leaves nothing.
    let out = k.stdin_output(&["create", "-f", "-"], &service("b", Some(&ip)));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("provided IP is already allocated"),
        "{out:?}"
    );
    let out = k.stdin_output(&["create", "-f", "-"], &service("a", None));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("AlreadyExists"),
        "{out:?}"
    );
    assert_eq!(allocated(), 1, "a failed create gives its address back");
    k.ok_stdin(&["create", "-f", "-"], &service("headless", Some("None")));
    assert_eq!(
        k.ok(&["get", "svc", "headless", "-o", "jsonpath={.spec.clusterIP}"]),
        "None"
    );
    // Updates keep the address; changing it is refused.
    k.ok(&["label", "svc", "a", "x=y"]);
    assert_eq!(
        k.ok(&["get", "svc", "a", "-o", "jsonpath={.spec.clusterIP}"]),
        ip
    );
    let err = k.fails(&[
        "patch",
        "svc",
        "a",
        "--type=merge",
        "-p",
        r#"{"spec":{"clusterIP":"10.96.0.9"}}"#,
    ]);
    assert!(err.contains("field is immutable"), "{err}");
    // Deleting the Service frees the address for the next one.
    k.ok(&["delete", "svc", "a"]);
    eventually("the address released", || allocated() == 0);
    k.ok_stdin(&["create", "-f", "-"], &service("c", Some(&ip)));
    assert_eq!(
        k.ok(&["get", "svc", "c", "-o", "jsonpath={.spec.clusterIP}"]),
        ip
    );
}

#[test]
fn writes_are_defaulted_so_a_dropped_default_does_not_bump_the_generation() {
    let cp = ControlPlane::start(Backend::Embedded).unwrap();
    let k = cp.kubectl();
    k.ok(&["create", "deployment", "d", "--image=localhost:5000/app"]);
    let mut d: serde_json::Value =
        serde_json::from_str(&k.ok(&["get", "deployment", "d", "-o", "json"])).unwrap();
    // A registry port is not a tag: no tag means pull Always.
    assert_eq!(
        d["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"],
        "Always"
    );
    let spec = d["spec"]["template"]["spec"].as_object_mut().unwrap();
    assert_eq!(spec.remove("dnsPolicy").unwrap(), "ClusterFirst");
    k.ok_stdin(&["replace", "-f", "-"], &d.to_string());
    let after: serde_json::Value =
        serde_json::from_str(&k.ok(&["get", "deployment", "d", "-o", "json"])).unwrap();
    assert_eq!(
        after["spec"]["template"]["spec"]["dnsPolicy"],
        "ClusterFirst"
    );
    assert_eq!(after["metadata"]["generation"], 1);

    k.ok(&["create", "job", "j", "--image=busybox:1.36", "--", "true"]);
    let j: serde_json::Value =
        serde_json::from_str(&k.ok(&["get", "job", "j", "-o", "json"])).unwrap();
    let uid = j["metadata"]["uid"].as_str().unwrap();
    assert_eq!(
        j["spec"]["selector"]["matchLabels"]["batch.kubernetes.io/controller-uid"],
        uid
    );
    assert_eq!(j["spec"]["template"]["metadata"]["labels"]["job-name"], "j");
    assert_eq!(j["spec"]["backoffLimit"], 6);
}
