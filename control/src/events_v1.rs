//! events.k8s.io/v1 Events, served over the storage of core/v1 Events as kube-apiserver does
//! (`pkg/apis/events/v1/conversion.go`): `note` is `message`, `regarding` is `involvedObject`,
//! `reportingController` is `reportingComponent`, and the core-only fields travel as
//! `deprecatedSource`, `deprecatedFirstTimestamp`, `deprecatedLastTimestamp` and
//! `deprecatedCount`. Also kube's Event validation (`pkg/apis/core/validation/events.go`): the
//! legacy checks every Event create and update passes, and the strict ones of writes through
//! events.k8s.io/v1. Checks run on the core form of the object, so their field paths are
//! kube's (`message`, `involvedObject.namespace`, `count`), as kube validates its internal
//! type.

use serde_json::{json, Map, Value};

use crate::semantic::Cause;

pub const API_VERSION: &str = "events.k8s.io/v1";

/// kube's length limits (`ReportingInstanceLengthLimit` and the rest).
const REPORTING_INSTANCE_LIMIT: usize = 128;
const ACTION_LIMIT: usize = 128;
const REASON_LIMIT: usize = 128;
const NOTE_LIMIT: usize = 1024;

/// The value at `k` unless absent, null, "" or 0 (Go's zero values, which kube omits).
fn set<'a>(obj: &'a Value, k: &str) -> Option<&'a Value> {
    obj.get(k)
        .filter(|v| !(v.is_null() || v.as_str() == Some("") || v.as_i64() == Some(0)))
}

fn put(m: &mut Map<String, Value>, k: &str, v: Option<&Value>) {
    if let Some(v) = v {
        m.insert(k.to_string(), v.clone());
    }
}

/// A struct field Go always marshals: the value, or `{}`.
fn object_or_empty(obj: &Value, k: &str) -> Value {
    obj.get(k)
        .filter(|v| v.is_object())
        .cloned()
        .unwrap_or_else(|| json!({}))
}

/// A `metav1.Time` Go always marshals: the value, or `null` for the zero time.
fn time_or_null(obj: &Value, k: &str) -> Value {
    set(obj, k).cloned().unwrap_or(Value::Null)
}

/// The stored (core/v1) Event as events.k8s.io/v1 shows it.
pub fn core_to_v1(core: &Value) -> Value {
    let mut m = Map::new();
    m.insert("apiVersion".into(), json!(API_VERSION));
    m.insert("kind".into(), json!("Event"));
    m.insert("metadata".into(), object_or_empty(core, "metadata"));
    m.insert("eventTime".into(), time_or_null(core, "eventTime"));
    put(&mut m, "series", set(core, "series"));
    put(
        &mut m,
        "reportingController",
        set(core, "reportingComponent"),
    );
    put(&mut m, "reportingInstance", set(core, "reportingInstance"));
    put(&mut m, "action", set(core, "action"));
    put(&mut m, "reason", set(core, "reason"));
    m.insert("regarding".into(), object_or_empty(core, "involvedObject"));
    put(&mut m, "related", set(core, "related"));
    put(&mut m, "note", set(core, "message"));
    put(&mut m, "type", set(core, "type"));
    m.insert("deprecatedSource".into(), object_or_empty(core, "source"));
    m.insert(
        "deprecatedFirstTimestamp".into(),
        time_or_null(core, "firstTimestamp"),
    );
    m.insert(
        "deprecatedLastTimestamp".into(),
        time_or_null(core, "lastTimestamp"),
    );
    put(&mut m, "deprecatedCount", set(core, "count"));
    Value::Object(m)
}

/// An events.k8s.io/v1 Event (already checked against its schema) in its stored core/v1 form.
pub fn v1_to_core(v1: &Value) -> Value {
    let mut m = Map::new();
    m.insert("apiVersion".into(), json!("v1"));
    m.insert("kind".into(), json!("Event"));
    m.insert("metadata".into(), object_or_empty(v1, "metadata"));
    m.insert("involvedObject".into(), object_or_empty(v1, "regarding"));
    put(&mut m, "reason", set(v1, "reason"));
    put(&mut m, "message", set(v1, "note"));
    m.insert("source".into(), object_or_empty(v1, "deprecatedSource"));
    m.insert(
        "firstTimestamp".into(),
        time_or_null(v1, "deprecatedFirstTimestamp"),
    );
    m.insert(
        "lastTimestamp".into(),
        time_or_null(v1, "deprecatedLastTimestamp"),
    );
    put(&mut m, "count", set(v1, "deprecatedCount"));
    put(&mut m, "type", set(v1, "type"));
    m.insert("eventTime".into(), time_or_null(v1, "eventTime"));
    put(&mut m, "series", set(v1, "series"));
    put(&mut m, "action", set(v1, "action"));
    put(&mut m, "related", set(v1, "related"));
    m.insert(
        "reportingComponent".into(),
        set(v1, "reportingController").cloned().unwrap_or(json!("")),
    );
    m.insert(
        "reportingInstance".into(),
        set(v1, "reportingInstance").cloned().unwrap_or(json!("")),
    );
    Value::Object(m)
}

/// kube's field label conversion for events.k8s.io/v1 Events: the core field a selector on
/// `label` selects, or `None` when events.k8s.io/v1 does not offer it.
pub fn field_label(label: &str) -> Option<&'static str> {
    Some(match label {
        "reason" => "reason",
        "regarding.kind" => "involvedObject.kind",
        "regarding.namespace" => "involvedObject.namespace",
        "regarding.name" => "involvedObject.name",
        "regarding.uid" => "involvedObject.uid",
        "regarding.apiVersion" => "involvedObject.apiVersion",
        "regarding.resourceVersion" => "involvedObject.resourceVersion",
        "regarding.fieldPath" => "involvedObject.fieldPath",
        "reportingController" => "reportingComponent",
        "source" => "source",
        "type" => "type",
        "metadata.namespace" => "metadata.namespace",
        "metadata.name" => "metadata.name",
        _ => return None,
    })
}

/// An events.k8s.io/v1 field selector rewritten over the core fields; the unsupported label on
/// error. Each requirement keeps its operator (`=`, `==` or `!=`).
pub fn field_selector(selector: &str) -> Result<String, String> {
    let mut out = Vec::new();
    for req in selector.split(',').map(str::trim).filter(|r| !r.is_empty()) {
        let at = req.find(['=', '!']).unwrap_or(req.len());
        let (label, rest) = req.split_at(at);
        let label = label.trim();
        let core = field_label(label).ok_or_else(|| label.to_string())?;
        out.push(format!("{core}{rest}"));
    }
    Ok(out.join(","))
}

fn text<'a>(obj: &'a Value, k: &str) -> &'a str {
    obj.get(k).and_then(Value::as_str).unwrap_or("")
}

fn is_zero_time(obj: &Value, k: &str) -> bool {
    set(obj, k).is_none()
}

fn required(field: &str) -> Cause {
    (field.into(), "Required value".into())
}

fn invalid(field: &str, value: &str, msg: &str) -> Cause {
    (field.into(), format!("Invalid value: {value:?}: {msg}"))
}

/// kube's legacyValidateEvent, on a core/v1 Event: every Event create and update passes it.
pub fn check_legacy(ev: &Value) -> Vec<Cause> {
    let mut out = Vec::new();
    let ns = ev.pointer("/metadata/namespace").and_then(Value::as_str);
    let ns = ns.unwrap_or("");
    let involved_ns = ev
        .pointer("/involvedObject/namespace")
        .and_then(Value::as_str)
        .unwrap_or("");
    let mismatch = || {
        invalid(
            "involvedObject.namespace",
            involved_ns,
            "does not match event.namespace",
        )
    };
    if is_zero_time(ev, "eventTime") {
        // An old-style event: its namespace is its object's ("default" or none for
        // cluster-scoped objects, for old clients).
        let fine = if involved_ns.is_empty() {
            ns.is_empty() || ns == "default"
        } else {
            ns == involved_ns
        };
        if !fine {
            out.push(mismatch());
        }
        return out;
    }
    if involved_ns.is_empty() && ns != "default" && ns != "kube-system" {
        out.push(mismatch());
    }
    let controller = text(ev, "reportingComponent");
    if controller.is_empty() {
        out.push(required("reportingController"));
    }
    for msg in crate::cel::format::qualified_name(controller) {
        out.push(invalid("reportingController", controller, &msg));
    }
    let instance = text(ev, "reportingInstance");
    if instance.is_empty() {
        out.push(required("reportingInstance"));
    }
    if instance.len() > REPORTING_INSTANCE_LIMIT {
        out.push(invalid(
            "reportingInstance",
            "",
            &format!("can have at most {REPORTING_INSTANCE_LIMIT} characters"),
        ));
    }
    for (field, limit) in [("action", ACTION_LIMIT), ("reason", REASON_LIMIT)] {
        let v = text(ev, field);
        if v.is_empty() {
            out.push(required(field));
        }
        if v.len() > limit {
            out.push(invalid(
                field,
                "",
                &format!("can have at most {limit} characters"),
            ));
        }
    }
    if text(ev, "message").len() > NOTE_LIMIT {
        out.push(invalid(
            "message",
            "",
            &format!("can have at most {NOTE_LIMIT} characters"),
        ));
    }
    out
}

/// kube's validateV1EventSeries.
fn check_series(ev: &Value, out: &mut Vec<Cause>) {
    let Some(series) = set(ev, "series") else {
        return;
    };
    if series.get("count").and_then(Value::as_i64).unwrap_or(0) < 2 {
        out.push(invalid("series.count", "", "should be at least 2"));
    }
    if is_zero_time(series, "lastObservedTime") {
        out.push(required("series.lastObservedTime"));
    }
}

/// kube's ValidateEventCreate for a create through events.k8s.io/v1, on the core form: the
/// legacy checks, then the strict ones.
pub fn check_v1_create(ev: &Value) -> Vec<Cause> {
    let mut out = check_legacy(ev);
    check_series(ev, &mut out);
    if is_zero_time(ev, "eventTime") {
        out.push(required("eventTime"));
    }
    let type_ = text(ev, "type");
    if type_ != "Normal" && type_ != "Warning" {
        out.push(invalid("type", "", &format!("has invalid value: {type_}")));
    }
    for field in ["firstTimestamp", "lastTimestamp", "count"] {
        if set(ev, field).is_some() {
            out.push(invalid(field, "", "needs to be unset"));
        }
    }
    let source = ev.get("source");
    let src = |k: &str| source.and_then(|s| s.get(k)).and_then(Value::as_str);
    if !src("component").unwrap_or("").is_empty() || !src("host").unwrap_or("").is_empty() {
        out.push(invalid("source", "", "needs to be unset"));
    }
    out
}

/// The fields an update through events.k8s.io/v1 may not change (kube's ValidateEventUpdate),
/// by their core names.
const IMMUTABLE: [&str; 13] = [
    "involvedObject",
    "reason",
    "message",
    "source",
    "firstTimestamp",
    "lastTimestamp",
    "count",
    "type",
    "eventTime",
    "action",
    "related",
    "reportingComponent",
    "reportingInstance",
];

/// kube's ValidateEventUpdate for an update through events.k8s.io/v1, on the core forms: the
/// legacy checks, a changed series checked again, and the rest immutable. Fields compare as
/// Go's zero values do (absent, null, "" and 0 are the same).
pub fn check_v1_update(new: &Value, old: &Value) -> Vec<Cause> {
    let mut out = check_legacy(new);
    if set(new, "series") != set(old, "series") {
        check_series(new, &mut out);
    }
    for field in IMMUTABLE {
        let (n, o) = (set(new, field), set(old, field));
        let empty_obj =
            |v: Option<&Value>| v.is_some_and(|v| v.as_object().is_some_and(|m| m.is_empty()));
        let same = n == o || (n.is_none() && empty_obj(o)) || (o.is_none() && empty_obj(n));
        if !same {
            let shown = match n {
                Some(Value::String(s)) => s.clone(),
                Some(v) => v.to_string(),
                None => String::new(),
            };
            // kube names the reporting fields by their internal (events.k8s.io) names.
            let name = match field {
                "reportingComponent" => "reportingController",
                f => f,
            };
            out.push(invalid(name, &shown, "field is immutable"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn core_event() -> Value {
        json!({
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"name": "web.1", "namespace": "d", "resourceVersion": "7"},
            "involvedObject": {"kind": "Pod", "name": "web", "namespace": "d", "uid": "u1"},
            "reason": "Started", "message": "Started container c",
            "source": {"component": "kubelet", "host": "n1"},
            "firstTimestamp": "2026-12-07T10:00:00Z", "lastTimestamp": "2026-12-07T10:05:00Z",
            "count": 3, "type": "Normal", "eventTime": null,
            "reportingComponent": "kubelet", "reportingInstance": "n1"
        })
    }

    #[test]
    fn core_events_show_with_kubes_field_names() {
        let v1 = core_to_v1(&core_event());
        assert_eq!(v1["apiVersion"], "events.k8s.io/v1");
        assert_eq!(v1["note"], "Started container c");
        assert_eq!(v1["regarding"]["name"], "web");
        assert_eq!(v1["reportingController"], "kubelet");
        assert_eq!(v1["reportingInstance"], "n1");
        assert_eq!(v1["deprecatedSource"]["host"], "n1");
        assert_eq!(v1["deprecatedFirstTimestamp"], "2026-12-07T10:00:00Z");
        assert_eq!(v1["deprecatedLastTimestamp"], "2026-12-07T10:05:00Z");
        assert_eq!(v1["deprecatedCount"], 3);
        // Go marshals a zero MicroTime as null and omits what is empty.
        assert_eq!(v1["eventTime"], Value::Null);
        assert!(v1.get("series").is_none() && v1.get("message").is_none());
        assert!(v1.get("involvedObject").is_none() && v1.get("count").is_none());
    }

    #[test]
    fn a_v1_event_round_trips_through_its_stored_form() {
        let v1 = json!({
            "apiVersion": "events.k8s.io/v1", "kind": "Event",
            "metadata": {"name": "x", "namespace": "d"},
            "eventTime": "2026-12-07T10:00:00.123456Z",
            "series": {"count": 2, "lastObservedTime": "2026-12-07T10:01:00.000000Z"},
            "reportingController": "example.com/ctl", "reportingInstance": "ctl-1",
            "action": "Scale", "reason": "Scaled", "note": "up",
            "regarding": {"kind": "Deployment", "name": "web", "namespace": "d"},
            "related": {"kind": "ReplicaSet", "name": "web-1", "namespace": "d"},
            "type": "Normal",
            "deprecatedSource": {}, "deprecatedFirstTimestamp": null,
            "deprecatedLastTimestamp": null
        });
        let core = v1_to_core(&v1);
        assert_eq!(core["message"], "up");
        assert_eq!(core["reportingComponent"], "example.com/ctl");
        assert_eq!(core["involvedObject"]["kind"], "Deployment");
        assert_eq!(core["related"]["name"], "web-1");
        assert_eq!(core["source"], json!({}));
        assert!(
            check_v1_create(&core).is_empty(),
            "{:?}",
            check_v1_create(&core)
        );
        assert_eq!(core_to_v1(&core), v1);
    }

    #[test]
    fn field_selectors_map_to_the_core_fields() {
        assert_eq!(
            field_selector("regarding.name=web,reportingController!=kubelet,type==Normal").unwrap(),
            "involvedObject.name=web,reportingComponent!=kubelet,type==Normal"
        );
        assert_eq!(field_selector("").unwrap(), "");
        // The core names are not events.k8s.io/v1's.
        assert_eq!(
            field_selector("involvedObject.name=web").unwrap_err(),
            "involvedObject.name"
        );
    }

    fn fields(causes: &[Cause]) -> Vec<&str> {
        causes.iter().map(|(f, _)| f.as_str()).collect()
    }

    #[test]
    fn strict_creates_need_kubes_fields() {
        let bare = v1_to_core(&json!({"metadata": {"name": "x", "namespace": "d"},
            "regarding": {"kind": "Pod", "name": "p", "namespace": "d"}}));
        // Without an eventTime the legacy checks take it for an old-style event.
        assert_eq!(fields(&check_v1_create(&bare)), ["eventTime", "type"]);
        let mut timed = bare.clone();
        timed["eventTime"] = json!("2026-12-07T10:00:00.000000Z");
        timed["type"] = json!("Normal");
        let causes = check_v1_create(&timed);
        // An empty controller is also not a qualified name (kube says so twice more).
        assert_eq!(
            fields(&causes),
            [
                "reportingController",
                "reportingController",
                "reportingController",
                "reportingInstance",
                "action",
                "reason"
            ],
            "{causes:?}"
        );
        assert_eq!(causes[0].1, "Required value");
        let mut long = v1_to_core(&json!({"metadata": {"name": "x", "namespace": "d"},
            "eventTime": "2026-12-07T10:00:00.000000Z", "reportingController": "bad name!",
            "reportingInstance": "i", "action": "A", "reason": "R", "type": "Loud",
            "note": "n".repeat(1025), "deprecatedCount": 2,
            "deprecatedSource": {"component": "c"},
            "series": {"count": 1, "lastObservedTime": "2026-12-07T10:00:00.000000Z"},
            "regarding": {"kind": "Node", "name": "n1"}}));
        let causes = check_v1_create(&long);
        assert_eq!(
            fields(&causes),
            [
                "involvedObject.namespace",
                "reportingController",
                "message",
                "series.count",
                "type",
                "count",
                "source"
            ],
            "{causes:?}"
        );
        assert_eq!(
            causes[2].1,
            "Invalid value: \"\": can have at most 1024 characters"
        );
        assert_eq!(causes[4].1, "Invalid value: \"\": has invalid value: Loud");
        // A cluster-scoped object's events belong in default or kube-system.
        long["metadata"]["namespace"] = json!("default");
        assert!(!fields(&check_v1_create(&long)).contains(&"involvedObject.namespace"));
    }

    #[test]
    fn legacy_events_keep_their_objects_namespace() {
        let mut ev = core_event();
        assert!(check_legacy(&ev).is_empty());
        ev["metadata"]["namespace"] = json!("other");
        assert_eq!(
            check_legacy(&ev),
            [(
                "involvedObject.namespace".to_string(),
                "Invalid value: \"d\": does not match event.namespace".to_string()
            )]
        );
        // A cluster-scoped object's old-style event: none or default.
        ev["involvedObject"]["namespace"] = json!("");
        ev["metadata"]["namespace"] = json!("default");
        assert!(check_legacy(&ev).is_empty());
        ev["metadata"]["namespace"] = json!("kube-system");
        assert_eq!(fields(&check_legacy(&ev)), ["involvedObject.namespace"]);
    }

    #[test]
    fn strict_updates_change_only_the_series() {
        let old = v1_to_core(&json!({"metadata": {"name": "x", "namespace": "d"},
            "eventTime": "2026-12-07T10:00:00.000000Z", "reportingController": "c",
            "reportingInstance": "i", "action": "A", "reason": "R", "type": "Normal",
            "note": "n", "regarding": {"kind": "Pod", "name": "p", "namespace": "d"}}));
        let mut new = old.clone();
        new["series"] = json!({"count": 2, "lastObservedTime": "2026-12-07T10:01:00.000000Z"});
        assert!(check_v1_update(&new, &old).is_empty());
        new["series"]["count"] = json!(1);
        new["message"] = json!("other");
        new["reportingComponent"] = json!("d");
        let causes = check_v1_update(&new, &old);
        assert_eq!(
            fields(&causes),
            ["series.count", "message", "reportingController"]
        );
        assert_eq!(causes[1].1, "Invalid value: \"other\": field is immutable");
    }
}
