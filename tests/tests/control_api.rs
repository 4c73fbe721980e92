//! pea-control over raw HTTPS: hostile input gets Kubernetes Status errors, bookmarks, metrics
//! and health endpoints.

use std::time::Duration;

use http_body_util::BodyExt;
use pea_tests::control::{Backend, ControlPlane};
use pea_tests::control_client::{tls_connector, ApiClient};
use serde_json::Value;

fn client(cp: &ControlPlane) -> ApiClient {
    let connector = tls_connector(&cp.running().pki.ca.cert_pem).unwrap();
    cp.block_on(ApiClient::connect(
        cp.addr,
        &connector,
        &cp.running().admin_token,
    ))
    .unwrap()
}

fn status(body: &[u8]) -> Value {
    let v: Value = serde_json::from_slice(body)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(body)));
    assert_eq!(v["kind"], "Status", "{v}");
    v
}

#[test]
fn hostile_input_gets_status_errors_and_leaves_nothing() {
    let cp = ControlPlane::start(Backend::Embedded).unwrap();
    let mut c = client(&cp);
    let post = |c: &mut ApiClient, path: &str, body: Vec<u8>| {
        cp.block_on(c.call("POST", path, Some(body))).unwrap()
    };
    // Over the 3 MiB limit.
    let huge = format!(
        r#"{{"apiVersion":"v1","kind":"ConfigMap","metadata":{{"name":"huge"}},"data":{{"a":"{}"}}}}"#,
        "x".repeat(4 << 20)
    );
    let (code, body) = post(
        &mut c,
        "/api/v1/namespaces/default/configmaps",
        huge.into_bytes(),
    );
    assert_eq!(code, 413);
    assert_eq!(status(&body)["reason"], "RequestEntityTooLarge");
    // Deeply nested JSON.
    let mut c = client(&cp);
    let deep = format!(
        r#"{{"apiVersion":"v1","kind":"ConfigMap","metadata":{{"name":"deep"}},"x":{}{}}}"#,
        "[".repeat(10_000),
        "]".repeat(10_000)
    );
    let (code, body) = post(
        &mut c,
        "/api/v1/namespaces/default/configmaps",
        deep.into_bytes(),
    );
    assert_eq!(code, 400, "{}", String::from_utf8_lossy(&body));
    assert!(status(&body)["message"]
        .as_str()
        .unwrap()
        .contains("invalid JSON"));
    // Not JSON, wrong kind, bad names, bad label values, a namespace that does not exist.
    let cases: [(&str, &str, u16, &str); 6] = [
        (
            "/api/v1/namespaces/default/configmaps",
            "not json",
            400,
            "invalid JSON",
        ),
        (
            "/api/v1/namespaces/default/configmaps",
            r#"{"apiVersion":"v1","kind":"Secret","metadata":{"name":"a"}}"#,
            400,
            "does not match the expected kind",
        ),
        (
            "/api/v1/namespaces/default/configmaps",
            r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"../etc"}}"#,
            422,
            "RFC 1123",
        ),
        (
            "/api/v1/namespaces/default/configmaps",
            r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"a","labels":{"k":"bad value"}}}"#,
            422,
            "Invalid value",
        ),
        (
            "/api/v1/namespaces/nowhere/configmaps",
            r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"a"}}"#,
            404,
            "namespaces \"nowhere\" not found",
        ),
        (
            "/api/v1/namespaces/default/pods",
            r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"a"},"spec":{"containers":7}}"#,
            400,
            "invalid type",
        ),
    ];
    for (path, body, want, text) in cases {
        let (code, resp) = post(&mut c, path, body.as_bytes().to_vec());
        let s = status(&resp);
        assert_eq!(code, want, "{body}: {s}");
        assert!(s["message"].as_str().unwrap().contains(text), "{body}: {s}");
    }
    // Unknown routes and verbs.
    let (code, body) = cp
        .block_on(c.call("GET", "/apis/nope.example/v1/things", None))
        .unwrap();
    assert_eq!(
        (code, status(&body)["reason"].as_str()),
        (404, Some("NotFound"))
    );
    let (code, body) = cp
        .block_on(c.call(
            "GET",
            "/api/v1/namespaces/default/pods?labelSelector=a%20in%20b",
            None,
        ))
        .unwrap();
    assert_eq!(
        (code, status(&body)["reason"].as_str()),
        (400, Some("BadRequest"))
    );
    let (code, body) = cp
        .block_on(c.call(
            "GET",
            "/api/v1/namespaces/default/pods?continue=garbage",
            None,
        ))
        .unwrap();
    assert_eq!(
        (code, status(&body)["reason"].as_str()),
        (400, Some("BadRequest"))
    );
    // /openapi/v2 is served now (tests/control_openapi.rs); other OpenAPI paths are not.
    let (code, body) = cp.block_on(c.call("GET", "/openapi/v4", None)).unwrap();
    assert_eq!(
        (code, status(&body)["reason"].as_str()),
        (501, Some("NotImplemented"))
    );
    // None of it stored anything.
    let (_, body) = cp
        .block_on(c.call("GET", "/api/v1/configmaps", None))
        .unwrap();
    let list: Value = serde_json::from_slice(&body).unwrap();
    // kube-public/cluster-info is the server's own (kubeadm's bootstrap discovery document).
    let stored = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|cm| cm["metadata"]["namespace"] != "kube-public")
        .count();
    assert_eq!(stored, 0, "{list}");
}

#[test]
fn watch_sends_bookmarks_when_allowed() {
    let cp = ControlPlane::start_with(Backend::Embedded, |c| c.bookmark_interval_secs = 1).unwrap();
    let mut c = client(&cp);
    let lines = cp.block_on(async {
        let resp = c
            .send(
                "GET",
                "/api/v1/namespaces/default/pods?watch=1&allowWatchBookmarks=true&timeoutSeconds=3",
                None,
            )
            .await
            .unwrap();
        let body = tokio::time::timeout(Duration::from_secs(10), resp.into_body().collect())
            .await
            .unwrap()
            .unwrap()
            .to_bytes();
        String::from_utf8(body.to_vec()).unwrap()
    });
    let bookmarks: Vec<Value> = lines
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|e| e["type"] == "BOOKMARK")
        .collect();
    assert!(!bookmarks.is_empty(), "{lines}");
    assert!(
        bookmarks[0]["object"]["metadata"]["resourceVersion"]
            .as_str()
            .unwrap()
            .parse::<i64>()
            .unwrap()
            > 0
    );
    // Without allowWatchBookmarks there are none.
    let lines = cp.block_on(async {
        let resp = c
            .send(
                "GET",
                "/api/v1/namespaces/default/pods?watch=1&timeoutSeconds=2",
                None,
            )
            .await
            .unwrap();
        resp.into_body().collect().await.unwrap().to_bytes()
    });
    assert!(!String::from_utf8_lossy(&lines).contains("BOOKMARK"));
}

#[test]
fn metrics_and_health_endpoints() {
    let cp = ControlPlane::start(Backend::Embedded).unwrap();
    let k = cp.kubectl();
    k.ok(&["get", "pods"]);
    k.fails(&["get", "pod", "missing"]);
    for h in ["/healthz", "/readyz", "/livez"] {
        assert_eq!(k.ok(&["get", "--raw", h]), "ok");
    }
    let metrics = k.ok(&["get", "--raw", "/metrics"]);
    assert!(
        metrics.contains("apiserver_request_total{verb=\"list\",resource=\"pods\",code=\"200\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("apiserver_request_total{verb=\"get\",resource=\"pods\",code=\"404\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("apiserver_request_duration_seconds_bucket{verb=\"list\",resource=\"pods\",le=\"+Inf\"}"), "{metrics}");
}

#[test]
fn binding_sets_node_once_and_nodes_write_only_their_pods_status() {
    let cp = ControlPlane::start(Backend::Embedded).unwrap();
    let mut c = client(&cp);
    let pod = |name: &str| {
        serde_json::json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
        "spec": {"containers": [{"name": "c", "image": "busybox:1.36"}]}})
        .to_string()
        .into_bytes()
    };
    for p in ["on-n1", "on-n2"] {
        let (code, _) = cp
            .block_on(c.call("POST", "/api/v1/namespaces/default/pods", Some(pod(p))))
            .unwrap();
        assert_eq!(code, 201);
    }
    let bind = |c: &mut ApiClient, pod: &str, node: &str| {
        let body = serde_json::json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": pod}, "target": {"apiVersion": "v1", "kind": "Node", "name": node}});
        cp.block_on(c.call(
            "POST",
            &format!("/api/v1/namespaces/default/pods/{pod}/binding"),
            Some(body.to_string().into_bytes()),
        ))
        .unwrap()
    };
    assert_eq!(bind(&mut c, "on-n1", "n1").0, 201);
    assert_eq!(bind(&mut c, "on-n2", "n2").0, 201);
    let (code, body) = bind(&mut c, "on-n1", "n2");
    assert_eq!(code, 409, "a bound pod cannot be bound again");
    assert!(status(&body)["message"]
        .as_str()
        .unwrap()
        .contains("already assigned to node \"n1\""));
    // The node identity n1 may write status only for its own pods.
    let n1 = pea_tests::control::Kubectl::new(
        &cp.kubeconfig_for("system:node:n1", &["system:nodes"])
            .unwrap(),
    );
    // A status write as the kubelet makes it (kubectl patch --subresource=status would read
    // pods/status first, which kube's node rules do not allow).
    let running = |pod: &str| {
        let admin = cp.kubectl();
        let mut p: Value =
            serde_json::from_str(&admin.ok(&["get", "pod", pod, "-o", "json"])).unwrap();
        p["status"]["phase"] = "Running".into();
        n1.stdin_output(
            &[
                "replace",
                "--raw",
                &format!("/api/v1/namespaces/default/pods/{pod}/status"),
                "-f",
                "-",
            ],
            &p.to_string(),
        )
    };
    let out = running("on-n1");
    assert!(out.status.success(), "{out:?}");
    let out = running("on-n2");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success()
            && err.contains(
                r#"node "n1" can only update pod status for pods with spec.nodeName set to itself"#
            ),
        "{err}"
    );
    let err = n1.fails(&[
        "patch",
        "pod",
        "on-n1",
        "--type=merge",
        "-p",
        r#"{"metadata":{"labels":{"x":"y"}}}"#,
    ]);
    assert!(
        err.contains("Forbidden") || err.contains("cannot patch"),
        "{err}"
    );
    let admin = cp.kubectl();
    assert_eq!(
        admin
            .ok(&[
                "get",
                "pods",
                "--field-selector",
                "spec.nodeName=n1,status.phase=Running",
                "-o",
                "name"
            ])
            .trim(),
        "pod/on-n1"
    );
}

#[test]
fn watch_cache_replays_recent_events_and_filters_namespaces() {
    let cp = ControlPlane::start(Backend::Embedded).unwrap();
    let k = cp.kubectl();
    k.ok(&["create", "namespace", "other"]);
    // The first watch starts the shared watch source for configmaps.
    k.ok(&[
        "get",
        "--raw",
        "/api/v1/namespaces/default/configmaps?watch=1&timeoutSeconds=1",
    ]);
    let mut revs = Vec::new();
    for (ns, name) in [
        ("default", "a"),
        ("other", "x"),
        ("default", "b"),
        ("default", "c"),
    ] {
        k.ok(&["create", "configmap", name, "-n", ns, "--from-literal=k=v"]);
        revs.push(k.ok(&[
            "get",
            "cm",
            name,
            "-n",
            ns,
            "-o",
            "jsonpath={.metadata.resourceVersion}",
        ]));
    }
    k.ok(&["delete", "cm", "b"]);
    let out = k.ok(&[
        "get",
        "--raw",
        &format!(
            "/api/v1/namespaces/default/configmaps?watch=1&timeoutSeconds=1&resourceVersion={}",
            revs[0]
        ),
    ]);
    let events: Vec<(String, String, String)> = out
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .map(|e| {
            (
                e["type"].as_str().unwrap().into(),
                e["object"]["metadata"]["name"].as_str().unwrap().into(),
                e["object"]["metadata"]["resourceVersion"]
                    .as_str()
                    .unwrap()
                    .into(),
            )
        })
        .collect();
    let summary: Vec<(&str, &str)> = events
        .iter()
        .map(|(t, n, _)| (t.as_str(), n.as_str()))
        .collect();
    assert_eq!(summary, [("ADDED", "b"), ("ADDED", "c"), ("DELETED", "b")]);
    assert_eq!(
        events[0].2, revs[2],
        "events carry their own resourceVersion"
    );
}

#[test]
fn periodic_compaction_expires_old_resource_versions() {
    let cp =
        ControlPlane::start_with(Backend::Embedded, |c| c.compaction_interval_secs = 1).unwrap();
    let k = cp.kubectl();
    k.ok(&["create", "configmap", "a", "--from-literal=k=v"]);
    let old = k.ok(&[
        "get",
        "cm",
        "a",
        "-o",
        "jsonpath={.metadata.resourceVersion}",
    ]);
    k.ok(&["create", "configmap", "b", "--from-literal=k=v"]);
    // One interval records the revision, the next compacts to it.
    std::thread::sleep(Duration::from_millis(3200));
    let out = k.ok(&[
        "get",
        "--raw",
        &format!(
            "/api/v1/namespaces/default/configmaps?watch=1&timeoutSeconds=1&resourceVersion={old}"
        ),
    ]);
    let first: Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    assert_eq!(
        (first["type"].as_str(), first["object"]["code"].as_i64()),
        (Some("ERROR"), Some(410)),
        "{out}"
    );
    // Current state is intact.
    assert_eq!(
        k.ok(&["get", "cm", "-o", "jsonpath={.items[*].metadata.name}"]),
        "a b"
    );
}

#[test]
fn streaming_list_sends_initial_events_then_an_end_bookmark() {
    let cp = ControlPlane::start(Backend::Embedded).unwrap();
    let k = cp.kubectl();
    for n in ["a", "b"] {
        k.ok(&["create", "configmap", n, "--from-literal=k=v"]);
    }
    let out = k.ok(&["get", "--raw", "/api/v1/namespaces/default/configmaps?watch=1&sendInitialEvents=true&allowWatchBookmarks=true&resourceVersionMatch=NotOlderThan&timeoutSeconds=1"]);
    let events: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let types: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(types, ["ADDED", "ADDED", "BOOKMARK"], "{out}");
    assert_eq!(
        events[2]["object"]["metadata"]["annotations"]["k8s.io/initial-events-end"],
        "true"
    );
    let err = k.fails(&[
        "get",
        "--raw",
        "/api/v1/namespaces/default/configmaps?watch=1&sendInitialEvents=true&timeoutSeconds=1",
    ]);
    assert!(err.contains("allowWatchBookmarks"), "{err}");
}

#[test]
fn server_side_apply_to_status_changes_only_status() {
    let cp = ControlPlane::start(Backend::Embedded).unwrap();
    let mut c = client(&cp);
    let apply = "application/apply-patch+yaml";
    let node = serde_json::json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1", "labels": {"a": "1"}}});
    let (code, body) = cp
        .block_on(c.call_typed(
            "PATCH",
            "/api/v1/nodes/n1?fieldManager=admin",
            apply,
            Some(node.to_string().into_bytes()),
        ))
        .unwrap();
    assert_eq!(code, 201, "{}", String::from_utf8_lossy(&body));
    // The kubelet applies conditions to status; labels in the same body are ignored there.
    let status = serde_json::json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1", "labels": {"a": "2"}},
        "status": {"conditions": [{"type": "Ready", "status": "True"}]}});
    let (code, body) = cp
        .block_on(c.call_typed(
            "PATCH",
            "/api/v1/nodes/n1/status?fieldManager=kubelet",
            apply,
            Some(status.to_string().into_bytes()),
        ))
        .unwrap();
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["status"]["conditions"][0]["type"], "Ready");
    assert_eq!(v["metadata"]["labels"]["a"], "1");
    let entries: Vec<(String, String)> = v["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["manager"].as_str().unwrap().into(),
                e["subresource"].as_str().unwrap_or("").into(),
            )
        })
        .collect();
    assert_eq!(
        entries,
        [
            ("admin".to_string(), String::new()),
            ("kubelet".to_string(), "status".to_string())
        ]
    );
    // Applying status to an object that does not exist is a 404, not a create.
    let (code, _) = cp
        .block_on(c.call_typed(
            "PATCH",
            "/api/v1/nodes/n2/status?fieldManager=kubelet",
            apply,
            Some(status.to_string().replace("n1", "n2").into_bytes()),
        ))
        .unwrap();
    assert_eq!(code, 404);
    // An apply without a field manager is refused.
    let (code, _) = cp
        .block_on(c.call_typed(
            "PATCH",
            "/api/v1/nodes/n1",
            apply,
            Some(node.to_string().into_bytes()),
        ))
        .unwrap();
    assert_eq!(code, 400);
}

/// kube's Node status strategy resets only spec: metadata written through nodes/status is
/// kept (flannel publishes its annotations that way with `patch nodes/status` alone), spec is
/// not; the main resource still cannot change status.
#[test]
fn node_status_writes_keep_metadata_and_never_spec() {
    let cp = ControlPlane::start(Backend::Embedded).unwrap();
    let admin = cp.kubectl();
    admin.ok_stdin(
        &["apply", "-f", "-"],
        r#"{"apiVersion": "v1", "kind": "Node", "metadata": {"name": "st1", "labels": {"a": "1"}}, "spec": {"podCIDR": "10.244.7.0/24"}}"#,
    );
    // A user allowed only flannel's rules: get/list/watch nodes, patch nodes/status.
    admin.ok_stdin(
        &["apply", "-f", "-"],
        r#"{"apiVersion": "v1", "kind": "List", "items": [
          {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": "flannel-like"},
           "rules": [{"apiGroups": [""], "resources": ["nodes"], "verbs": ["get", "list", "watch"]},
                     {"apiGroups": [""], "resources": ["nodes/status"], "verbs": ["patch"]}]},
          {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding", "metadata": {"name": "flannel-like"},
           "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "flannel-like"},
           "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "flannel-like"}]}]}"#,
    );
    // As flannel writes (client-go's Patch of nodes/status; kubectl would GET nodes/status
    // first, which flannel's role does not allow).
    let flannel_kc = cp.kubeconfig_for("flannel-like", &[]).unwrap();
    let patch = serde_json::json!({
        "metadata": {"annotations": {"flannel.alpha.coreos.com/public-ip": "10.0.0.5"}, "labels": {"b": "2"}},
        "spec": {"unschedulable": true, "podCIDR": "10.244.9.0/24"},
        "status": {"capacity": {"cpu": "2"}}});
    cp.block_on(async {
        let client = pea_controllers::client_from_kubeconfig(&flannel_kc)
            .await
            .unwrap();
        kube::Api::<k8s_openapi::api::core::v1::Node>::all(client)
            .patch_status(
                "st1",
                &kube::api::PatchParams::default(),
                &kube::api::Patch::Merge(&patch),
            )
            .await
            .unwrap();
    });
    let flannel = pea_tests::control::Kubectl::new(&flannel_kc);
    let node: Value =
        serde_json::from_str(&admin.ok(&["get", "node", "st1", "-o", "json"])).unwrap();
    assert_eq!(
        node["metadata"]["annotations"]["flannel.alpha.coreos.com/public-ip"], "10.0.0.5",
        "{node}"
    );
    assert_eq!(node["metadata"]["labels"]["a"], "1", "{node}");
    assert_eq!(node["metadata"]["labels"]["b"], "2", "{node}");
    assert_eq!(node["status"]["capacity"]["cpu"], "2", "{node}");
    assert_eq!(node["spec"]["podCIDR"], "10.244.7.0/24", "{node}");
    assert!(node["spec"].get("unschedulable").is_none(), "{node}");
    // The main resource stays out of reach of that role.
    let err = flannel.fails(&[
        "patch",
        "node",
        "st1",
        "--type=merge",
        "-p",
        r#"{"metadata":{"annotations":{"x":"y"}}}"#,
    ]);
    assert!(
        err.contains("User \"flannel-like\" cannot patch resource \"nodes\""),
        "{err}"
    );
    // A PUT of the whole Node to nodes/status: a changed spec is dropped, metadata kept.
    let mut put = node.clone();
    put["spec"]["podCIDR"] = "10.244.99.0/24".into();
    put["metadata"]["annotations"]["c"] = "3".into();
    let stored: Value = serde_json::from_str(&admin.ok_stdin(
        &["replace", "--subresource=status", "-f", "-", "-o", "json"],
        &put.to_string(),
    ))
    .unwrap();
    assert_eq!(stored["spec"]["podCIDR"], "10.244.7.0/24", "{stored}");
    assert_eq!(stored["metadata"]["annotations"]["c"], "3", "{stored}");
    assert_eq!(stored["metadata"]["uid"], node["metadata"]["uid"]);
    // Through the main resource, status is still the stored one.
    let stored: Value = serde_json::from_str(&admin.ok(&[
        "patch",
        "node",
        "st1",
        "--type=merge",
        "-o",
        "json",
        "-p",
        r#"{"status":{"capacity":{"cpu":"64"}}}"#,
    ]))
    .unwrap();
    assert_eq!(stored["status"]["capacity"]["cpu"], "2", "{stored}");
}

/// Patches and deletes built to exhaust memory, nest the stored object too deep or hit a panic
/// get Status errors on a connection that stays usable, and leave every object readable.
#[test]
fn hostile_patches_and_deletes_get_status_errors() {
    let cp = ControlPlane::start(Backend::Embedded).unwrap();
    let mut c = client(&cp);
    let json_patch = "application/json-patch+json";
    let merge_patch = "application/merge-patch+json";
    let cm = r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"cm"},"data":{"k":"v"}}"#;
    let (code, _) = cp
        .block_on(c.call(
            "POST",
            "/api/v1/namespaces/default/configmaps",
            Some(cm.as_bytes().to_vec()),
        ))
        .unwrap();
    assert_eq!(code, 201);
    let cm_path = "/api/v1/namespaces/default/configmaps/cm";
    let patch = |c: &mut ApiClient, path: &str, ty: &str, body: String| {
        cp.block_on(c.call_typed("PATCH", path, ty, Some(body.into_bytes())))
            .unwrap()
    };
    // Each copy of the root doubles the document (2^40 bytes without a cap).
    let bomb: Vec<Value> = (0..40)
        .map(|i| serde_json::json!({"op": "copy", "from": "", "path": format!("/c{i}")}))
        .collect();
    let (code, body) = patch(&mut c, cm_path, json_patch, Value::from(bomb).to_string());
    assert_eq!(code, 422, "{}", String::from_utf8_lossy(&body));
    assert!(status(&body)["message"]
        .as_str()
        .unwrap()
        .contains("copy operations"));
    // A value nested deeper than the store can read back: managedFields' fieldsV1 is free-form
    // JSON, and a second op nests it further than any one body may.
    let nested = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
    let deep = format!(
        r#"[{{"op":"add","path":"/metadata/managedFields","value":[{{"manager":"m","operation":"Update","fieldsType":"FieldsV1","fieldsV1":{{"f:a":{}}}}}]}},
            {{"op":"add","path":"/metadata/managedFields/0/fieldsV1/f:a{}","value":{}}}]"#,
        nested(100),
        "/0".repeat(99),
        nested(100)
    );
    let (code, body) = patch(&mut c, cm_path, json_patch, deep);
    assert_eq!(code, 422, "{}", String::from_utf8_lossy(&body));
    assert!(status(&body)["message"]
        .as_str()
        .unwrap()
        .contains("levels deep"));
    // The root replaced by a number.
    let (code, body) = patch(
        &mut c,
        cm_path,
        json_patch,
        r#"[{"op":"replace","path":"","value":1}]"#.into(),
    );
    assert_eq!(code, 422, "{}", String::from_utf8_lossy(&body));
    assert_eq!(status(&body)["reason"], "Invalid");
    // Pods have a status subresource: the same patch on one must not panic either.
    let pod = serde_json::json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
        "spec": {"nodeName": "n1", "terminationGracePeriodSeconds": i64::MAX,
            "containers": [{"name": "c", "image": "busybox"}]}});
    let (code, body) = cp
        .block_on(c.call(
            "POST",
            "/api/v1/namespaces/default/pods",
            Some(pod.to_string().into_bytes()),
        ))
        .unwrap();
    assert_eq!(code, 201, "{}", String::from_utf8_lossy(&body));
    let (code, body) = patch(
        &mut c,
        "/api/v1/namespaces/default/pods/p",
        json_patch,
        r#"[{"op":"replace","path":"","value":[]}]"#.into(),
    );
    assert_eq!(code, 422, "{}", String::from_utf8_lossy(&body));
    // A NodePort Service updated with ports that are not objects.
    let svc = r#"{"apiVersion":"v1","kind":"Service","metadata":{"name":"np"},"spec":{"type":"NodePort","ports":[{"port":80}]}}"#;
    let (code, _) = cp
        .block_on(c.call(
            "POST",
            "/api/v1/namespaces/default/services",
            Some(svc.as_bytes().to_vec()),
        ))
        .unwrap();
    assert_eq!(code, 201);
    let (code, body) = patch(
        &mut c,
        "/api/v1/namespaces/default/services/np",
        merge_patch,
        r#"{"spec":{"ports":[1]}}"#.into(),
    );
    assert_eq!(code, 400, "{}", String::from_utf8_lossy(&body));
    assert_eq!(status(&body)["reason"], "BadRequest");
    // Managed fields in the body of a non-apply write (no field manager, no User-Agent) are
    // not taken as given.
    let forged = r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"cm","managedFields":[{"manager":"forged","operation":"Apply","fieldsType":"FieldsV1","fieldsV1":{"f:data":{}}}]},"data":{"k":"w"}}"#;
    let (code, body) = cp
        .block_on(c.call("PUT", cm_path, Some(forged.as_bytes().to_vec())))
        .unwrap();
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
    let (_, body) = cp.block_on(c.call("GET", cm_path, None)).unwrap();
    let got: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(got["data"]["k"], "w");
    assert!(!got.to_string().contains("forged"), "{got}");
    // Huge grace periods, from the query, the body and the pod spec.
    for (query, body) in [
        ("?gracePeriodSeconds=9223372036854775807", None),
        (
            "",
            Some(
                r#"{"kind":"DeleteOptions","apiVersion":"v1","gracePeriodSeconds":9223372036854775807}"#,
            ),
        ),
        ("", None),
    ] {
        let (code, resp) = cp
            .block_on(c.call(
                "DELETE",
                &format!("/api/v1/namespaces/default/pods/p{query}"),
                body.map(|b| b.as_bytes().to_vec()),
            ))
            .unwrap();
        assert_eq!(
            code,
            200,
            "{query} {body:?}: {}",
            String::from_utf8_lossy(&resp)
        );
        let pod: Value = serde_json::from_slice(&resp).unwrap();
        assert!(
            pod["metadata"]["deletionTimestamp"]
                .as_str()
                .is_some_and(|t| t.ends_with('Z')),
            "{pod}"
        );
        // Delete with grace 0 (what the kubelet sends last) and recreate for the next case.
        let (code, _) = cp
            .block_on(c.call(
                "DELETE",
                "/api/v1/namespaces/default/pods/p?gracePeriodSeconds=0",
                None,
            ))
            .unwrap();
        assert_eq!(code, 200);
        let (code, _) = cp
            .block_on(c.call(
                "POST",
                "/api/v1/namespaces/default/pods",
                Some(pod_body(&pod)),
            ))
            .unwrap();
        assert_eq!(code, 201);
    }
    // Everything is still readable, listable and deletable on the same connection.
    for path in [
        cm_path,
        "/api/v1/namespaces/default/configmaps",
        "/api/v1/namespaces/default/pods/p",
        "/api/v1/namespaces/default/services/np",
    ] {
        let (code, body) = cp.block_on(c.call("GET", path, None)).unwrap();
        assert_eq!(code, 200, "{path}: {}", String::from_utf8_lossy(&body));
    }
    let (code, _) = cp.block_on(c.call("DELETE", cm_path, None)).unwrap();
    assert_eq!(code, 200);
}

/// A pod's create body from a returned pod (server-owned metadata dropped).
fn pod_body(pod: &Value) -> Vec<u8> {
    serde_json::json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": pod["metadata"]["name"]}, "spec": pod["spec"]})
    .to_string()
    .into_bytes()
}

/// Anonymous requests with made-up paths and methods, and oversized bodies, are counted
/// without minting series or breaking the text format.
#[test]
fn metrics_labels_are_bounded_and_escaped() {
    let cp = ControlPlane::start(Backend::Embedded).unwrap();
    let connector = tls_connector(&cp.running().pki.ca.cert_pem).unwrap();
    let mut anon = cp
        .block_on(ApiClient::connect(cp.addr, &connector, ""))
        .unwrap();
    for (method, path) in [
        ("GET", r#"/api/v1/namespaces/default/x"{}y"#),
        ("GET", r#"/apis/evil"{le="1"}/v1/things"#),
        ("BREW", "/api/v1/pods"),
    ] {
        let (code, body) = cp.block_on(anon.call(method, path, None)).unwrap();
        assert_eq!(
            code,
            401,
            "{method} {path}: {}",
            String::from_utf8_lossy(&body)
        );
    }
    let mut c = client(&cp);
    let huge = vec![b' '; 4 << 20];
    let (code, _) = cp
        .block_on(c.call("POST", "/api/v1/namespaces/default/configmaps", Some(huge)))
        .unwrap();
    assert_eq!(code, 413);
    let (code, body) = cp.block_on(c.call("GET", "/metrics", None)).unwrap();
    assert_eq!(code, 200);
    let text = String::from_utf8(body.to_vec()).unwrap();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let (series, value) = line.rsplit_once(' ').unwrap();
        value
            .parse::<f64>()
            .unwrap_or_else(|e| panic!("{line}: {e}"));
        let labels = series
            .split_once('{')
            .and_then(|(_, l)| l.strip_suffix('}'))
            .unwrap_or_else(|| panic!("no labels: {line}"));
        for pair in labels.split(',') {
            let (k, v) = pair.split_once('=').unwrap_or_else(|| panic!("{line}"));
            assert!(["verb", "resource", "code", "le"].contains(&k), "{line}");
            assert!(v.starts_with('"') && v.ends_with('"'), "{line}");
        }
        assert!(
            !line.contains("evil")
                && !line.contains("x\\\"")
                && !line.to_lowercase().contains("brew"),
            "{line}"
        );
    }
    assert!(
        text.contains(r#"apiserver_request_total{verb="list",resource="",code="401"} 2"#),
        "{text}"
    );
    assert!(
        text.contains(r#"apiserver_request_total{verb="other",resource="pods",code="401"} 1"#),
        "{text}"
    );
    assert!(
        text.contains(r#"apiserver_request_total{verb="post",resource="",code="413"} 1"#),
        "{text}"
    );
}

/// Unsupported `dryRun` and `fieldValidation` values are refused naming the value (like
/// kube-apiserver's CreateOptions validation), not read as a default; a DeleteOptions body's
/// dryRun is honoured.
#[test]
fn unsupported_write_options_are_refused() {
    let cp = ControlPlane::start(Backend::Embedded).unwrap();
    let mut c = client(&cp);
    let cm = r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"cm"}}"#;
    let cms = "/api/v1/namespaces/default/configmaps";
    for (query, text) in [
        ("dryRun=Bogus", r#"dryRun: Unsupported value: "Bogus""#),
        (
            "fieldValidation=strict",
            r#"fieldValidation: Unsupported value: "strict""#,
        ),
    ] {
        let (code, body) = cp
            .block_on(c.call(
                "POST",
                &format!("{cms}?{query}"),
                Some(cm.as_bytes().to_vec()),
            ))
            .unwrap();
        let s = status(&body);
        assert_eq!((code, s["reason"].as_str()), (422, Some("Invalid")), "{s}");
        assert!(s["message"].as_str().unwrap().contains(text), "{s}");
    }
    let (code, _) = cp
        .block_on(c.call("GET", &format!("{cms}/cm"), None))
        .unwrap();
    assert_eq!(code, 404, "nothing was stored");
    let (code, _) = cp
        .block_on(c.call(
            "POST",
            &format!("{cms}?fieldValidation=Strict&dryRun=All"),
            Some(cm.as_bytes().to_vec()),
        ))
        .unwrap();
    assert_eq!(code, 201);
    let (code, _) = cp
        .block_on(c.call("POST", cms, Some(cm.as_bytes().to_vec())))
        .unwrap();
    assert_eq!(code, 201);
    let (code, body) = cp
        .block_on(c.call("DELETE", &format!("{cms}/cm?dryRun=yes"), None))
        .unwrap();
    assert_eq!(code, 422, "{}", String::from_utf8_lossy(&body));
    let (code, body) = cp
        .block_on(c.call(
            "DELETE",
            &format!("{cms}/cm"),
            Some(br#"{"kind":"DeleteOptions","apiVersion":"v1","dryRun":["All"]}"#.to_vec()),
        ))
        .unwrap();
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
    let (code, _) = cp
        .block_on(c.call("GET", &format!("{cms}/cm"), None))
        .unwrap();
    assert_eq!(code, 200, "a dry-run delete keeps the object");
}
