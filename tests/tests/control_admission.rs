//! Admission with the real kubectl (1.32): webhooks served by the test (HTTPS on 127.0.0.1, a
//! certificate signed by a CA made here with rcgen, that CA as the caBundle) deny, mutate with
//! a JSONPatch, fail open or closed per failurePolicy, time out, are skipped by namespace and
//! object selectors and refuse dry runs when they have side effects; Pod Security admission
//! refuses a privileged pod in a restricted namespace in kube's words and warns as kubectl
//! shows it.

use std::sync::Arc;
use std::time::Duration;

use pea_tests::control::{Backend, ControlPlane, Kubectl};
use pea_tests::https_hook::HttpsHook;
use serde_json::{json, Value};

/// An admission webhook server on a loopback address (pea_tests::https_hook): `/deny`
/// refuses, `/mutate` adds the label `mutated=yes` and a warning, `/annotate` an annotation,
/// `/slow` answers after 3 s, anything else allows.
fn webhook_server(ip: &str, name: &str) -> HttpsHook {
    HttpsHook::start_at(ip, name, Arc::new(answer)).expect("webhook server")
}

/// The AdmissionReview requests `path` got so far.
fn reviews(hooks: &HttpsHook, path: &str) -> Vec<Value> {
    hooks
        .seen(path)
        .into_iter()
        .map(|r| r["request"].clone())
        .collect()
}

fn answer(path: &str, review: &Value) -> Value {
    use base64::Engine;
    let request = &review["request"];
    let uid = request["uid"].clone();
    let response = match path {
        "/deny" => json!({"uid": uid, "allowed": false, "status": {"code": 403,
            "reason": "Forbidden", "message": "configmaps labelled deny=yes are not allowed"}}),
        "/mutate" => {
            let patch = if request.pointer("/object/metadata/labels").is_some() {
                json!([{"op": "add", "path": "/metadata/labels/mutated", "value": "yes"}])
            } else {
                json!([{"op": "add", "path": "/metadata/labels", "value": {"mutated": "yes"}}])
            };
            json!({"uid": uid, "allowed": true, "patchType": "JSONPatch",
                "patch": base64::engine::general_purpose::STANDARD.encode(patch.to_string()),
                "warnings": ["mutated by the test webhook"]})
        }
        "/annotate" => {
            let patch = if request.pointer("/object/metadata/annotations").is_some() {
                json!([{"op": "add", "path": "/metadata/annotations/annotated", "value": "yes"}])
            } else {
                json!([{"op": "add", "path": "/metadata/annotations", "value": {"annotated": "yes"}}])
            };
            json!({"uid": uid, "allowed": true, "patchType": "JSONPatch",
                "patch": base64::engine::general_purpose::STANDARD.encode(patch.to_string())})
        }
        "/slow" => {
            std::thread::sleep(Duration::from_secs(3));
            json!({"uid": uid, "allowed": true})
        }
        _ => json!({"uid": uid, "allowed": true}),
    };
    json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "response": response})
}

/// A webhook entry for configmap creates, selected by `label=yes` on the object.
fn hook(name: &str, url: &str, ca: &str, label: &str) -> Value {
    json!({"name": name, "sideEffects": "None", "admissionReviewVersions": ["v1"],
        "clientConfig": {"url": url, "caBundle": ca},
        "objectSelector": {"matchLabels": {label: "yes"}},
        "rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"],
            "resources": ["configmaps"]}]})
}

fn config(kind: &str, name: &str, hooks: Vec<Value>) -> String {
    json!({"apiVersion": "admissionregistration.k8s.io/v1", "kind": kind,
        "metadata": {"name": name}, "webhooks": hooks})
    .to_string()
}

fn configmap(k: &Kubectl, ns: &str, name: &str, labels: &[&str]) -> std::process::Output {
    let labels: serde_json::Map<String, Value> = labels
        .iter()
        .map(|l| (l.to_string(), json!("yes")))
        .collect();
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": ns, "labels": labels}, "data": {"k": "v"}});
    k.stdin_output(&["create", "-f", "-"], &cm.to_string())
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn webhooks_deny_mutate_and_fail_as_their_policy_says() {
    let cp = ControlPlane::start(Backend::Embedded).unwrap();
    let k = cp.kubectl();
    let hooks = webhook_server("127.0.0.1", "127.0.0.1");
    let ca = hooks.ca_bundle.clone();
    k.ok(&["create", "namespace", "hooked"]);
    k.ok(&["label", "namespace", "hooked", "webhooks=on"]);

    // Validation of the configurations, in kube's words.
    let mut bad = hook("bad.pea.test", &hooks.url("/allow"), &ca, "x");
    bad["sideEffects"] = json!("Unknown");
    bad["timeoutSeconds"] = json!(31);
    let err = k.fails_stdin(
        &["create", "-f", "-"],
        &config("ValidatingWebhookConfiguration", "bad", vec![bad]),
    );
    assert!(
        err.contains(r#"webhooks[0].sideEffects: Unsupported value: "Unknown": supported values: "None", "NoneOnDryRun""#)
            && err.contains("webhooks[0].timeoutSeconds: Invalid value: 31: the timeout value must be between 1 and 30 seconds"),
        "{err}"
    );
    let mut plain = hook("plain.pea.test", "http://127.0.0.1:1/", &ca, "x");
    plain["clientConfig"] = json!({"url": "http://127.0.0.1:1/"});
    let err = k.fails_stdin(
        &["create", "-f", "-"],
        &config("ValidatingWebhookConfiguration", "plain", vec![plain]),
    );
    assert!(
        err.contains("'https' is the only allowed URL scheme"),
        "{err}"
    );

    // A validating webhook that denies, only in labelled namespaces and for labelled objects.
    let mut deny = hook("deny.pea.test", &hooks.url("/deny"), &ca, "deny");
    deny["namespaceSelector"] = json!({"matchLabels": {"webhooks": "on"}});
    k.ok_stdin(
        &["create", "-f", "-"],
        &config("ValidatingWebhookConfiguration", "deny", vec![deny]),
    );
    let refused = configmap(&k, "hooked", "refused", &["deny"]);
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains(r#"Error from server (Forbidden): error when creating "STDIN": admission webhook "deny.pea.test" denied the request: configmaps labelled deny=yes are not allowed"#),
        "{}",
        stderr(&refused)
    );
    let review = reviews(&hooks, "/deny")
        .pop()
        .expect("the webhook got a review");
    assert_eq!(review["operation"], "CREATE");
    assert_eq!(
        review["resource"],
        json!({"group": "", "version": "v1", "resource": "configmaps"})
    );
    assert_eq!(review["namespace"], "hooked");
    assert_eq!(review["object"]["metadata"]["name"], "refused");
    assert_eq!(review["userInfo"]["username"], "pea-admin");
    assert_eq!(review["dryRun"], false);
    assert!(hooks.queries("/deny").iter().any(|q| q == "timeout=10s"));
    // objectSelector: an unlabelled object is not sent; namespaceSelector: nor one elsewhere.
    let calls = reviews(&hooks, "/deny").len();
    assert!(configmap(&k, "hooked", "unlabelled", &[]).status.success());
    assert!(configmap(&k, "default", "elsewhere", &["deny"])
        .status
        .success());
    assert_eq!(reviews(&hooks, "/deny").len(), calls);

    // A mutating webhook: its JSONPatch lands in the stored object, its warning in kubectl's
    // output.
    k.ok_stdin(
        &["create", "-f", "-"],
        &config(
            "MutatingWebhookConfiguration",
            "mutate",
            vec![hook(
                "mutate.pea.test",
                &hooks.url("/mutate"),
                &ca,
                "mutate",
            )],
        ),
    );
    let out = configmap(&k, "hooked", "changed", &["mutate"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("Warning: mutated by the test webhook"),
        "{}",
        stderr(&out)
    );
    let label = k.ok(&[
        "get",
        "configmap",
        "changed",
        "-n",
        "hooked",
        "-o",
        "jsonpath={.metadata.labels.mutated}",
    ]);
    assert_eq!(label, "yes");
    // reinvocationPolicy IfNeeded: a later webhook's change calls the first one once more.
    let mut again = hook("mutate.pea.test", &hooks.url("/mutate"), &ca, "mutate");
    again["reinvocationPolicy"] = json!("IfNeeded");
    k.ok_stdin(
        &["apply", "-f", "-"],
        &config("MutatingWebhookConfiguration", "mutate", vec![again]),
    );
    k.ok_stdin(
        &["create", "-f", "-"],
        &config(
            "MutatingWebhookConfiguration",
            "relabel",
            vec![hook(
                "annotate.pea.test",
                &hooks.url("/annotate"),
                &ca,
                "mutate",
            )],
        ),
    );
    let before = reviews(&hooks, "/mutate").len();
    assert!(configmap(&k, "hooked", "twice", &["mutate"])
        .status
        .success());
    let mutated = reviews(&hooks, "/mutate");
    assert_eq!(mutated.len(), before + 2, "called, then re-invoked once");
    assert_eq!(
        mutated[before + 1]["object"]["metadata"]["annotations"]["annotated"],
        "yes"
    );
    let got = k.ok(&["get", "configmap", "twice", "-n", "hooked", "-o", "json"]);
    let got: Value = serde_json::from_str(&got).unwrap();
    assert_eq!(got["metadata"]["labels"]["mutated"], "yes");
    assert_eq!(got["metadata"]["annotations"]["annotated"], "yes");

    // failurePolicy: a webhook nobody answers lets requests through with Ignore ...
    let dead_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dead_url = format!("https://127.0.0.1:{dead_port}/");
    let mut dead = hook("dead.pea.test", &dead_url, &ca, "dead");
    dead["failurePolicy"] = json!("Ignore");
    k.ok_stdin(
        &["create", "-f", "-"],
        &config("ValidatingWebhookConfiguration", "dead", vec![dead.clone()]),
    );
    assert!(configmap(&k, "default", "through", &["dead"])
        .status
        .success());
    // ... and refuses them with Fail, in kube's words.
    dead["failurePolicy"] = json!("Fail");
    k.ok_stdin(
        &["apply", "-f", "-"],
        &config("ValidatingWebhookConfiguration", "dead", vec![dead]),
    );
    let failed = configmap(&k, "default", "stopped", &["dead"]);
    assert!(!failed.status.success());
    let want = format!(
        "Error from server (InternalError): error when creating \"STDIN\": Internal error occurred: failed calling webhook \"dead.pea.test\": failed to call webhook: Post \"https://127.0.0.1:{dead_port}/?timeout=10s\": dial tcp 127.0.0.1:{dead_port}: connect: "
    );
    assert!(stderr(&failed).contains(&want), "{}", stderr(&failed));

    // timeoutSeconds: a webhook slower than its timeout fails the call.
    let mut slow = hook("slow.pea.test", &hooks.url("/slow"), &ca, "slow");
    slow["timeoutSeconds"] = json!(1);
    k.ok_stdin(
        &["create", "-f", "-"],
        &config("ValidatingWebhookConfiguration", "slow", vec![slow]),
    );
    let late = configmap(&k, "default", "late", &["slow"]);
    assert!(!late.status.success());
    assert!(
        stderr(&late).contains(&format!(
            "failed calling webhook \"slow.pea.test\": failed to call webhook: Post \"https://127.0.0.1:{}/slow?timeout=1s\": context deadline exceeded",
            hooks.port
        )),
        "{}",
        stderr(&late)
    );
    assert!(k.run(&["get", "configmap", "late"]).status.code() != Some(0));

    // A dry run reaches webhooks without side effects (and says so in the review) ...
    let dry = k.run(&[
        "create",
        "configmap",
        "dry",
        "-n",
        "hooked",
        "--dry-run=server",
    ]);
    assert!(dry.status.success(), "{}", stderr(&dry));
    // ... and is refused by one with side effects (as stored by older API versions).
    let api = cp.api();
    let def = api
        .resources
        .find(
            "admissionregistration.k8s.io",
            "v1",
            "validatingwebhookconfigurations",
        )
        .unwrap()
        .clone();
    let mut effects = hook("effects.pea.test", &hooks.url("/allow"), &ca, "effects");
    effects["sideEffects"] = json!("Unknown");
    effects["rules"][0]["operations"] = json!(["*"]);
    let stored = json!({"apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": "effects", "uid": "7c1d0c55-0000-4000-8000-000000000001",
            "creationTimestamp": "2026-01-01T00:00:00Z"},
        "webhooks": [effects]});
    cp.block_on(
        api.store
            .create(&def.key(None, "effects"), stored.to_string().into_bytes()),
    )
    .unwrap();
    let refused = k.stdin_output(
        &["create", "--dry-run=server", "-f", "-"],
        &json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "dry2", "namespace": "default", "labels": {"effects": "yes"}}})
        .to_string(),
    );
    assert!(!refused.status.success());
    assert!(
        stderr(&refused)
            .contains(r#"admission webhook "effects.pea.test" does not support dry run"#),
        "{}",
        stderr(&refused)
    );
    // CONNECT: a webhook on pods/exec sees the exec options and may refuse the exec.
    let target = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "target"},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]}});
    k.ok_stdin(&["create", "-f", "-"], &target.to_string());
    let mut exec = hook("exec.pea.test", &hooks.url("/deny"), &ca, "x");
    exec["objectSelector"] = json!({});
    exec["rules"] = json!([{"operations": ["CONNECT"], "apiGroups": [""],
        "apiVersions": ["v1"], "resources": ["pods/exec"]}]);
    k.ok_stdin(
        &["create", "-f", "-"],
        &config("ValidatingWebhookConfiguration", "exec", vec![exec]),
    );
    let err = k.fails(&["exec", "target", "--", "true"]);
    assert!(
        err.contains(r#"admission webhook "exec.pea.test" denied the request"#),
        "{err}"
    );
    let review = reviews(&hooks, "/deny").pop().expect("an exec review");
    assert_eq!(review["operation"], "CONNECT");
    assert_eq!(review["subResource"], "exec");
    assert_eq!(review["kind"]["kind"], "PodExecOptions");
    assert_eq!(review["object"]["command"], json!(["true"]));
    k.ok(&[
        "delete",
        "validatingwebhookconfiguration",
        "exec",
        "effects",
        "dead",
        "slow",
        "deny",
    ]);
    k.ok(&[
        "delete",
        "mutatingwebhookconfiguration",
        "mutate",
        "relabel",
    ]);
    let listed = k.ok(&[
        "get",
        "validatingwebhookconfigurations,mutatingwebhookconfigurations",
    ]);
    assert!(
        listed.contains("No resources") || listed.trim().is_empty(),
        "{listed}"
    );
    assert!(configmap(&k, "default", "free", &["dead", "slow"])
        .status
        .success());
}

#[test]
fn a_service_webhook_is_called_at_its_cluster_ip() {
    // Service IPs from a loopback range, so the API server's host reaches the ClusterIP the
    // way a host running pea-proxy reaches a real one.
    let cp = ControlPlane::start_with(Backend::Embedded, |c| {
        c.service_cidr = "127.77.0.0/16".into();
    })
    .unwrap();
    let k = cp.kubectl();
    let hooks = webhook_server("127.77.0.10", "hook.webhooks.svc");
    k.ok(&["create", "namespace", "webhooks"]);
    let svc = json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "hook", "namespace": "webhooks"},
        "spec": {"clusterIP": "127.77.0.10", "ports": [{"port": hooks.port, "targetPort": 8443}]}});
    k.ok_stdin(&["create", "-f", "-"], &svc.to_string());
    let mut deny = hook("svc.pea.test", "", &hooks.ca_bundle, "deny");
    deny["clientConfig"] = json!({"caBundle": hooks.ca_bundle,
        "service": {"name": "hook", "namespace": "webhooks", "port": hooks.port, "path": "/deny"}});
    k.ok_stdin(
        &["create", "-f", "-"],
        &config("ValidatingWebhookConfiguration", "svc", vec![deny]),
    );
    let refused = configmap(&k, "default", "refused", &["deny"]);
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains(
            r#"admission webhook "svc.pea.test" denied the request: configmaps labelled deny=yes are not allowed"#
        ),
        "{}",
        stderr(&refused)
    );
    assert_eq!(reviews(&hooks, "/deny").len(), 1);
    // A missing Service is a failed call.
    k.ok(&["delete", "service", "hook", "-n", "webhooks"]);
    let failed = configmap(&k, "default", "orphan", &["deny"]);
    assert!(
        stderr(&failed).contains(&format!(
            r#"failed calling webhook "svc.pea.test": failed to call webhook: Post "https://hook.webhooks.svc:{}/deny?timeout=10s": service "hook" not found"#,
            hooks.port
        )),
        "{}",
        stderr(&failed)
    );
}

fn pod(name: &str, container: Value, pod_security: Value) -> String {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
        "spec": {"securityContext": pod_security,
            "containers": [container]}})
    .to_string()
}

#[test]
fn pod_security_enforces_warns_and_checks_namespace_labels() {
    let cp = ControlPlane::start(Backend::Embedded).unwrap();
    let k = cp.kubectl();
    k.ok(&["create", "namespace", "locked"]);
    k.ok(&[
        "label",
        "namespace",
        "locked",
        "pod-security.kubernetes.io/enforce=restricted",
    ]);
    let privileged = pod(
        "priv",
        json!({"name": "c", "image": "busybox", "securityContext": {"privileged": true}}),
        json!({}),
    );
    let err = k.fails_stdin(&["create", "-n", "locked", "-f", "-"], &privileged);
    assert!(
        err.contains(r#"Error from server (Forbidden): error when creating "STDIN": pods "priv" is forbidden: violates PodSecurity "restricted:latest": privileged (container "c" must not set securityContext.privileged=true), allowPrivilegeEscalation != false (container "c" must set securityContext.allowPrivilegeEscalation=false), unrestricted capabilities (container "c" must set securityContext.capabilities.drop=["ALL"]), runAsNonRoot != true (pod or container "c" must set securityContext.runAsNonRoot=true), seccompProfile (pod or container "c" must set securityContext.seccompProfile.type to "RuntimeDefault" or "Localhost")"#),
        "{err}"
    );
    let compliant = pod(
        "fine",
        json!({"name": "c", "image": "busybox", "securityContext": {
            "allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}}}),
        json!({"runAsNonRoot": true, "runAsUser": 1000,
            "seccompProfile": {"type": "RuntimeDefault"}}),
    );
    let out = k.stdin_output(&["create", "-n", "locked", "-f", "-"], &compliant);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!stderr(&out).contains("Warning"), "{}", stderr(&out));

    // warn: allowed, with kubectl's Warning line; for workload templates too.
    k.ok(&["create", "namespace", "watched"]);
    k.ok(&[
        "label",
        "namespace",
        "watched",
        "pod-security.kubernetes.io/warn=baseline",
    ]);
    let hostnet = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "hostnet"},
        "spec": {"hostNetwork": true, "containers": [{"name": "c", "image": "busybox"}]}});
    let out = k.stdin_output(
        &["create", "-n", "watched", "-f", "-"],
        &hostnet.to_string(),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(
            r#"Warning: would violate PodSecurity "baseline:latest": host namespaces (hostNetwork=true)"#
        ),
        "{}",
        stderr(&out)
    );
    let out = k.run(&[
        "create",
        "deployment",
        "web",
        "-n",
        "watched",
        "--image=busybox",
        "--port=80",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!stderr(&out).contains("Warning"), "{}", stderr(&out));
    let privileged_deploy = json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "root"},
        "spec": {"selector": {"matchLabels": {"app": "root"}},
            "template": {"metadata": {"labels": {"app": "root"}},
                "spec": {"containers": [{"name": "c", "image": "busybox",
                    "securityContext": {"privileged": true}}]}}}});
    let out = k.stdin_output(
        &["create", "-n", "watched", "-f", "-"],
        &privileged_deploy.to_string(),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(r#"Warning: would violate PodSecurity "baseline:latest": privileged (container "c" must not set securityContext.privileged=true)"#),
        "{}",
        stderr(&out)
    );

    // Enforcing on a namespace with violating pods warns about them (and is allowed).
    let out = k.run(&[
        "label",
        "namespace",
        "watched",
        "pod-security.kubernetes.io/enforce=baseline",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let warned = stderr(&out);
    assert!(
        warned.contains(r#"Warning: existing pods in namespace "watched" violate the new PodSecurity enforce level "baseline:latest""#)
            && warned.contains("Warning: hostnet: host namespaces"),
        "{warned}"
    );
    // Invalid labels are refused.
    let err = k.fails(&[
        "label",
        "namespace",
        "watched",
        "--overwrite",
        "pod-security.kubernetes.io/enforce=strict",
    ]);
    assert!(
        err.contains(r#"metadata.labels[pod-security.kubernetes.io/enforce]: Invalid value: "strict": must be one of privileged, baseline, restricted"#),
        "{err}"
    );
    let odd = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "odd",
        "labels": {"pod-security.kubernetes.io/warn-version": "1.30"}}});
    let err = k.fails_stdin(&["create", "-f", "-"], &odd.to_string());
    assert!(
        err.contains(r#"metadata.labels[pod-security.kubernetes.io/warn-version]: Invalid value: "1.30": must be "latest" or "v1.x""#),
        "{err}"
    );
}
