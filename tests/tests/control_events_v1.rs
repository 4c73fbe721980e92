//! events.k8s.io/v1 against a real pea-control, with the real kubectl 1.32: the same Events
//! as core/v1, in kube's field names (note, regarding, reportingController, deprecated*),
//! discovery, list/watch/get/create/patch/delete, field selectors by the events.k8s.io names,
//! kube's validation of events.k8s.io/v1 writes, and `kubectl events`.

use std::time::Duration;

use futures_util::StreamExt;
use k8s_openapi::api::events::v1::Event as EventV1;
use kube::api::{ListParams, WatchEvent, WatchParams};
use kube::Api;
use pea_tests::control::{Backend, ControlPlane};
use serde_json::Value;

/// A core/v1 Event as kubelets and controllers write it.
const CORE: &str = "apiVersion: v1
kind: Event
metadata: {name: web.1, namespace: default}
involvedObject: {apiVersion: v1, kind: Pod, name: web, namespace: default, uid: u-web}
reason: Started
message: Started container c
source: {component: kubelet, host: node-1}
firstTimestamp: \"2026-12-07T10:00:00Z\"
lastTimestamp: \"2026-12-07T10:05:00Z\"
count: 3
type: Normal
";

/// An events.k8s.io/v1 Event as client-go's events API recorder writes it.
const V1: &str = "apiVersion: events.k8s.io/v1
kind: Event
metadata: {name: web.2, namespace: default}
eventTime: \"2026-12-07T10:06:00.123456Z\"
reportingController: example.com/scaler
reportingInstance: scaler-1
action: Scale
reason: Scaled
note: scaled up to 3
regarding: {apiVersion: apps/v1, kind: Deployment, name: web, namespace: default}
type: Normal
";

fn json(s: &str) -> Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("not JSON ({e}): {s}"))
}

#[test]
fn events_v1_serves_the_core_events_in_kubes_field_names() {
    let cp = ControlPlane::start(Backend::Embedded).unwrap();
    let k = cp.kubectl();
    let resources = k.ok(&["api-resources", "--api-group=events.k8s.io", "-o", "wide"]);
    assert!(
        resources.contains("events") && resources.contains("events.k8s.io/v1"),
        "{resources}"
    );
    k.ok_stdin(&["create", "-f", "-"], CORE);
    k.ok_stdin(&["create", "-f", "-"], V1);

    // The core Event through events.k8s.io/v1.
    let old = json(&k.ok(&["get", "events.v1.events.k8s.io", "web.1", "-o", "json"]));
    assert_eq!(old["apiVersion"], "events.k8s.io/v1");
    assert_eq!(old["note"], "Started container c");
    assert_eq!(old["regarding"]["name"], "web");
    assert_eq!(old["deprecatedSource"]["host"], "node-1");
    assert_eq!(old["deprecatedCount"], 3);
    assert_eq!(old["deprecatedFirstTimestamp"], "2026-12-07T10:00:00Z");
    assert_eq!(old["eventTime"], Value::Null);
    assert!(old.get("message").is_none() && old.get("involvedObject").is_none());

    // The events.k8s.io/v1 Event through core/v1.
    let new = json(&k.ok(&["get", "event", "web.2", "-o", "json"]));
    assert_eq!(new["apiVersion"], "v1");
    assert_eq!(new["message"], "scaled up to 3");
    assert_eq!(new["involvedObject"]["kind"], "Deployment");
    assert_eq!(new["reportingComponent"], "example.com/scaler");
    assert_eq!(new["reportingInstance"], "scaler-1");
    assert_eq!(new["action"], "Scale");
    assert_eq!(new["eventTime"], "2026-12-07T10:06:00.123456Z");

    // Lists, tables and field selectors by the events.k8s.io names.
    let list = json(&k.ok(&["get", "events.v1.events.k8s.io", "-o", "json"]));
    assert_eq!(list["items"].as_array().map(Vec::len), Some(2), "{list}");
    assert!(list["items"]
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["apiVersion"] == "events.k8s.io/v1" && e["note"].is_string()));
    let table = k.ok(&["get", "events.v1.events.k8s.io"]);
    assert!(
        table.contains("Scaled") && table.contains("deployment/web"),
        "{table}"
    );
    assert!(
        table.contains("Started") && table.contains("pod/web"),
        "{table}"
    );
    let by_kind = k.ok(&[
        "get",
        "events.v1.events.k8s.io",
        "--field-selector",
        "regarding.kind=Deployment",
        "-o",
        "name",
    ]);
    assert_eq!(by_kind.trim(), "event.events.k8s.io/web.2");
    let by_controller = k.ok(&[
        "get",
        "events.v1.events.k8s.io",
        "--field-selector",
        "reportingController=example.com/scaler,type=Normal",
        "-o",
        "name",
    ]);
    assert_eq!(by_controller.trim(), "event.events.k8s.io/web.2");
    let bad = k.fails(&[
        "get",
        "events.v1.events.k8s.io",
        "--field-selector",
        "involvedObject.name=web",
    ]);
    assert!(
        bad.contains("field label not supported: involvedObject.name"),
        "{bad}"
    );

    // kubectl events lists both.
    let events = k.ok(&["events"]);
    assert!(
        events.contains("Scaled") && events.contains("Started container c"),
        "{events}"
    );
    let for_pod = k.ok(&["events", "--for", "pod/web"]);
    assert!(
        for_pod.contains("Started") && !for_pod.contains("Scaled"),
        "{for_pod}"
    );

    // Patches: the series may change, the rest is immutable through events.k8s.io/v1.
    k.ok(&[
        "patch",
        "events.v1.events.k8s.io",
        "web.2",
        "--type=merge",
        "-p",
        r#"{"series":{"count":2,"lastObservedTime":"2026-12-07T10:07:00.000000Z"}}"#,
    ]);
    let patched = json(&k.ok(&["get", "event", "web.2", "-o", "json"]));
    assert_eq!(patched["series"]["count"], 2);
    let immutable = k.fails(&[
        "patch",
        "events.v1.events.k8s.io",
        "web.2",
        "--type=merge",
        "-p",
        r#"{"note":"scaled up to 4"}"#,
    ]);
    assert!(
        immutable.contains("message: Invalid value: \"scaled up to 4\": field is immutable"),
        "{immutable}"
    );

    k.ok(&["delete", "events.v1.events.k8s.io", "web.1"]);
    let gone = k.fails(&["get", "event", "web.1"]);
    assert!(
        gone.contains("NotFound") || gone.contains("not found"),
        "{gone}"
    );
}

#[test]
fn events_v1_creates_are_validated_as_kube_does() {
    let cp = ControlPlane::start(Backend::Embedded).unwrap();
    let k = cp.kubectl();
    let bare = "apiVersion: events.k8s.io/v1
kind: Event
metadata: {name: bare, namespace: default}
eventTime: \"2026-12-07T10:06:00.000000Z\"
type: Normal
regarding: {kind: Pod, name: p, namespace: default}
";
    let err = k.fails_stdin(&["create", "-f", "-"], bare);
    for want in [
        "reportingController: Required value",
        "reportingInstance: Required value",
        "action: Required value",
        "reason: Required value",
    ] {
        assert!(err.contains(want), "{want:?} missing from: {err}");
    }
    assert!(err.contains("\"bare\" is invalid"), "{err}");
    let long_note = V1
        .replace("web.2", "long")
        .replace("scaled up to 3", &"n".repeat(1025));
    let err = k.fails_stdin(&["create", "-f", "-"], &long_note);
    assert!(
        err.contains("message: Invalid value: \"\": can have at most 1024 characters"),
        "{err}"
    );
    // The core fields may not be set through events.k8s.io/v1.
    let counted = V1.replace("web.2", "counted") + "deprecatedCount: 2\n";
    let err = k.fails_stdin(&["create", "-f", "-"], &counted);
    assert!(
        err.contains("count: Invalid value: \"\": needs to be unset"),
        "{err}"
    );
    let untimed = V1
        .replace("web.2", "untimed")
        .replace("eventTime: \"2026-12-07T10:06:00.123456Z\"\n", "");
    let err = k.fails_stdin(&["create", "-f", "-"], &untimed);
    assert!(err.contains("eventTime: Required value"), "{err}");
    // Nothing was stored.
    let left = k.ok(&["get", "events", "-o", "name"]);
    assert_eq!(left.trim(), "", "{left}");
    // core/v1 keeps kube's legacy check: an Event in another namespace than its object's.
    let elsewhere = CORE.replace(
        "namespace: default}\ninvolvedObject",
        "namespace: kube-system}\ninvolvedObject",
    );
    let err = k.fails_stdin(&["create", "-f", "-"], &elsewhere);
    assert!(
        err.contains(
            "involvedObject.namespace: Invalid value: \"default\": does not match event.namespace"
        ),
        "{err}"
    );
}

#[test]
fn events_v1_watch_sees_core_writes_in_v1_form() {
    let cp = ControlPlane::start(Backend::Embedded).unwrap();
    let k = cp.kubectl();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let client = rt
        .block_on(pea_controllers::client_from_kubeconfig(&cp.kubeconfig))
        .expect("client");
    let api: Api<EventV1> = Api::namespaced(client, "default");
    let listed = rt.block_on(api.list(&ListParams::default())).expect("list");
    let rv = listed.metadata.resource_version.clone().unwrap_or_default();
    let mut stream = rt
        .block_on(api.watch(&WatchParams::default().timeout(20), &rv))
        .expect("watch")
        .boxed();
    k.ok_stdin(&["create", "-f", "-"], CORE);
    let seen = rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(20), async {
            while let Some(ev) = stream.next().await {
                if let Ok(WatchEvent::Added(e)) = ev {
                    return Some(e);
                }
            }
            None
        })
        .await
    });
    let e = seen.expect("watch within 20 s").expect("an ADDED event");
    assert_eq!(e.note.as_deref(), Some("Started container c"));
    assert_eq!(e.regarding.and_then(|r| r.name).as_deref(), Some("web"));
    assert_eq!(e.deprecated_count, Some(3));
    // A typed get through events.k8s.io/v1.
    let got = rt.block_on(api.get("web.1")).expect("get");
    assert_eq!(got.reason.as_deref(), Some("Started"));
}
