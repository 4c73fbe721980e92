//! CRD conversion webhooks with the real kubectl 1.32: a CRD with two versions (v1 stored,
//! v2 served) and `conversion.strategy: Webhook` pointing at an HTTPS webhook this test serves
//! (tests/src/https_hook.rs, its CA as the caBundle). Objects written as v2 are converted to
//! v1 for storage; reads at v2 are converted back (a list in one ConversionReview), reads at
//! v1 are not; the webhook may change labels but not the name; a failing or unreachable
//! webhook gives kube's error; CRDs with a bad webhook configuration are refused.

use std::sync::Arc;
use std::time::{Duration, Instant};

use pea_tests::control::{Backend, ControlPlane, Kubectl};
use pea_tests::https_hook::HttpsHook;
use serde_json::{json, Value};

/// v1 `spec.replicas` <-> v2 `spec.scale.replicas`; `/fail` refuses every review.
fn convert(path: &str, review: &Value) -> Value {
    let req = &review["request"];
    let uid = req["uid"].clone();
    if path == "/fail" {
        return json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "ConversionReview",
            "response": {"uid": uid, "result": {"status": "Failure", "message": "no conversions today"}}});
    }
    let desired = req["desiredAPIVersion"].as_str().unwrap_or("").to_string();
    let objects: Vec<Value> = req["objects"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .map(|mut o| {
            let spec = o["spec"].clone();
            o["spec"] = if desired.ends_with("/v2") {
                json!({"scale": {"replicas": spec["replicas"]}})
            } else {
                json!({"replicas": spec["scale"]["replicas"]})
            };
            o["apiVersion"] = json!(desired);
            // Labels come back; a renamed object does not.
            o["metadata"]["labels"]["converted-to"] = json!(desired.replace('/', "."));
            o["metadata"]["name"] = json!("renamed-by-webhook");
            o
        })
        .collect();
    json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "ConversionReview",
        "response": {"uid": uid, "result": {"status": "Success"}, "convertedObjects": objects}})
}

fn crd(url: &str, ca: &str) -> String {
    json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.conv.example.com"},
        "spec": {"group": "conv.example.com", "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
            "conversion": {"strategy": "Webhook", "webhook": {
                "conversionReviewVersions": ["v1"],
                "clientConfig": {"url": url, "caBundle": ca}}},
            "versions": [
                {"name": "v1", "served": true, "storage": true, "schema": {"openAPIV3Schema": {
                    "type": "object", "properties": {"spec": {"type": "object",
                        "properties": {"replicas": {"type": "integer"}}}}}}},
                {"name": "v2", "served": true, "storage": false, "schema": {"openAPIV3Schema": {
                    "type": "object", "properties": {"spec": {"type": "object",
                        "properties": {"scale": {"type": "object",
                            "properties": {"replicas": {"type": "integer"}}}}}}}}}]}})
    .to_string()
}

fn widget(version: &str, name: &str, spec: Value) -> String {
    json!({"apiVersion": format!("conv.example.com/{version}"), "kind": "Widget",
        "metadata": {"name": name, "namespace": "default"}, "spec": spec})
    .to_string()
}

/// Runs `kubectl get ARGS` until it fails with `want` in its error (a CRD change reaches the
/// served table asynchronously); bounded to 20 s.
fn wait_for_error(k: &Kubectl, args: &[&str], want: &str) -> String {
    let start = Instant::now();
    loop {
        let out = k.run(args);
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        if !out.status.success() && err.contains(want) {
            return err;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "kubectl {args:?} never failed with {want:?}; last: {err}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn wait_for_get(k: &Kubectl, args: &[&str]) -> String {
    let start = Instant::now();
    loop {
        let out = k.run(args);
        if out.status.success() {
            return String::from_utf8_lossy(&out.stdout).to_string();
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "kubectl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn objects_are_converted_by_the_webhook_on_write_and_read() {
    let hook = HttpsHook::start(Arc::new(convert)).unwrap();
    let cp = ControlPlane::start(Backend::Embedded).unwrap();
    let k = cp.kubectl();
    k.ok_stdin(
        &["apply", "-f", "-"],
        &crd(&hook.url("/convert"), &hook.ca_bundle),
    );
    wait_for_get(&k, &["get", "widgets.v2.conv.example.com"]);

    // Written as v2: the webhook is asked for v1, the storage version.
    k.ok_stdin(
        &["create", "-f", "-"],
        &widget("v2", "a", json!({"scale": {"replicas": 3}})),
    );
    let reviews = hook.seen("/convert");
    assert_eq!(reviews.len(), 1, "{reviews:#?}");
    assert_eq!(reviews[0]["apiVersion"], "apiextensions.k8s.io/v1");
    assert_eq!(reviews[0]["kind"], "ConversionReview");
    assert_eq!(
        reviews[0]["request"]["desiredAPIVersion"],
        "conv.example.com/v1"
    );
    assert_eq!(
        reviews[0]["request"]["objects"][0]["spec"]["scale"]["replicas"],
        3
    );

    // Read at the storage version: stored as converted, no webhook call.
    let v1: Value =
        serde_json::from_str(&k.ok(&["get", "widgets.v1.conv.example.com", "a", "-o", "json"]))
            .unwrap();
    assert_eq!(v1["apiVersion"], "conv.example.com/v1");
    assert_eq!(v1["spec"], json!({"replicas": 3}));
    assert_eq!(v1["metadata"]["name"], "a", "the webhook may not rename");
    assert_eq!(
        v1["metadata"]["labels"]["converted-to"],
        "conv.example.com.v1"
    );
    assert_eq!(hook.seen("/convert").len(), 1);

    // Read at v2: converted back.
    let v2: Value =
        serde_json::from_str(&k.ok(&["get", "widgets.v2.conv.example.com", "a", "-o", "json"]))
            .unwrap();
    assert_eq!(v2["apiVersion"], "conv.example.com/v2");
    assert_eq!(v2["spec"], json!({"scale": {"replicas": 3}}));
    assert_eq!(v2["metadata"]["name"], "a");
    assert_eq!(
        v2["metadata"]["labels"]["converted-to"],
        "conv.example.com.v2"
    );

    // Written as v1 (no conversion), then a list at v2: one review for both objects.
    k.ok_stdin(
        &["create", "-f", "-"],
        &widget("v1", "b", json!({"replicas": 5})),
    );
    let before = hook.seen("/convert").len();
    let list: Value =
        serde_json::from_str(&k.ok(&["get", "widgets.v2.conv.example.com", "-o", "json"])).unwrap();
    let replicas: Vec<&Value> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| &i["spec"]["scale"]["replicas"])
        .collect();
    assert_eq!(replicas, vec![&json!(3), &json!(5)]);
    let reviews = hook.seen("/convert");
    assert_eq!(reviews.len(), before + 1, "one review for the list");
    assert_eq!(
        reviews[before]["request"]["objects"]
            .as_array()
            .unwrap()
            .len(),
        2
    );

    // An update at v2 (patch) goes through both directions.
    k.ok(&[
        "patch",
        "widgets.v2.conv.example.com",
        "a",
        "--type=merge",
        "-p",
        r#"{"spec":{"scale":{"replicas":4}}}"#,
    ]);
    assert_eq!(
        k.ok(&[
            "get",
            "widgets.v1.conv.example.com",
            "a",
            "-o",
            "jsonpath={.spec.replicas}"
        ]),
        "4"
    );

    // The webhook refuses: kube's "returned failure".
    k.ok_stdin(
        &["apply", "-f", "-"],
        &crd(&hook.url("/fail"), &hook.ca_bundle),
    );
    let e = wait_for_error(
        &k,
        &["get", "widgets.v2.conv.example.com", "a"],
        "returned failure",
    );
    assert!(
        e.contains("conversion webhook for conv.example.com/v1, Kind=Widget returned failure: no conversions today"),
        "{e}"
    );
    // Reads at the storage version still work.
    k.ok(&["get", "widgets.v1.conv.example.com", "a"]);

    // Unreachable: kube's "failed: Post ...".
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let gone = format!("https://127.0.0.1:{closed}/convert");
    k.ok_stdin(&["apply", "-f", "-"], &crd(&gone, &hook.ca_bundle));
    let e = wait_for_error(&k, &["get", "widgets.v2.conv.example.com", "a"], "dial tcp");
    assert!(
        e.contains(&format!(
            "conversion webhook for conv.example.com/v1, Kind=Widget failed: Post \"{gone}?timeout=30s\": dial tcp 127.0.0.1:{closed}"
        )),
        "{e}"
    );
    // A write at v2 cannot be stored either, and nothing is left behind.
    let e = k.fails_stdin(
        &["create", "-f", "-"],
        &widget("v2", "c", json!({"scale": {"replicas": 1}})),
    );
    assert!(
        e.contains("conversion webhook for conv.example.com/v2, Kind=Widget failed"),
        "{e}"
    );
    assert!(k
        .fails(&["get", "widgets.v1.conv.example.com", "c"])
        .contains("NotFound"));
}

#[test]
fn bad_conversion_settings_are_refused() {
    let cp = ControlPlane::start(Backend::Embedded).unwrap();
    let k = cp.kubectl();
    let mut c: Value = serde_json::from_str(&crd("http://127.0.0.1:9/convert", "")).unwrap();
    let e = k.fails_stdin(&["apply", "-f", "-"], &c.to_string());
    assert!(
        e.contains("spec.conversion.webhook.clientConfig.url: Invalid value: \"http://127.0.0.1:9/convert\": 'https' is the only allowed URL scheme"),
        "{e}"
    );
    c["spec"]["conversion"]["webhook"]["clientConfig"] = json!({});
    let e = k.fails_stdin(&["apply", "-f", "-"], &c.to_string());
    assert!(
        e.contains("spec.conversion.webhook.clientConfig: Required value: exactly one of url or service is required"),
        "{e}"
    );
    c["spec"]["conversion"]["webhook"]["clientConfig"] = json!({"url": "https://127.0.0.1:9/"});
    c["spec"]["conversion"]["webhook"]["conversionReviewVersions"] = json!(["v9"]);
    let e = k.fails_stdin(&["apply", "-f", "-"], &c.to_string());
    assert!(
        e.contains("spec.conversion.webhook.conversionReviewVersions: Invalid value: [\"v9\"]: must include at least one of v1, v1beta1"),
        "{e}"
    );
    c["spec"]["conversion"] = json!({"strategy": "Webhook"});
    let e = k.fails_stdin(&["apply", "-f", "-"], &c.to_string());
    assert!(
        e.contains(
            "spec.conversion.webhook: Required value: must be set when strategy is set to Webhook"
        ),
        "{e}"
    );
    c["spec"]["conversion"] = json!({"strategy": "None",
        "webhook": {"conversionReviewVersions": ["v1"], "clientConfig": {"url": "https://127.0.0.1:9/"}}});
    let e = k.fails_stdin(&["apply", "-f", "-"], &c.to_string());
    assert!(
        e.contains("spec.conversion.webhook: Forbidden: should not be set when strategy is not set to Webhook"),
        "{e}"
    );
    assert!(k
        .fails(&["get", "crd", "widgets.conv.example.com"])
        .contains("NotFound"));
}
