//! A template rendered for one member: the template without its server-set fields and status,
//! with its Divided replica share, the member-specific overrides, and labels carrying the
//! template's identity.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use crate::overrides::{self, OverridePolicy};
use crate::{MANAGED_LABEL, TEMPLATE_ANNOTATION, TEMPLATE_UID_LABEL};

/// Renders `template` for member `cluster`.
pub fn render(
    template: &Value,
    replicas: Option<i64>,
    overrides: &[&OverridePolicy],
    cluster: &str,
    cluster_labels: &BTreeMap<String, String>,
) -> Result<Value, String> {
    let meta = &template["metadata"];
    let mut out = json!({
        "apiVersion": template["apiVersion"],
        "kind": template["kind"],
        "metadata": {"name": meta["name"]},
    });
    if let Some(ns) = meta["namespace"].as_str() {
        out["metadata"]["namespace"] = json!(ns);
    }
    for field in ["labels", "annotations"] {
        if let Some(m) = meta[field].as_object().filter(|m| !m.is_empty()) {
            out["metadata"][field] = Value::Object(m.clone());
        }
    }
    if let Some(a) = out["metadata"]["annotations"].as_object_mut() {
        a.remove("kubectl.kubernetes.io/last-applied-configuration");
        a.remove("deployment.kubernetes.io/revision");
    }
    if let Some(obj) = template.as_object() {
        for (k, v) in obj {
            if !matches!(k.as_str(), "apiVersion" | "kind" | "metadata" | "status") {
                out[k] = v.clone();
            }
        }
    }
    if template["kind"] == "Service" && template["apiVersion"] == "v1" {
        // The federation API allocated these from its own range; each member allocates its own.
        if out["spec"]["clusterIP"] != "None" {
            if let Some(s) = out["spec"].as_object_mut() {
                s.remove("clusterIP");
                s.remove("clusterIPs");
            }
        }
    }
    if let Some(n) = replicas {
        out["spec"]["replicas"] = json!(n);
    }
    for p in overrides {
        overrides::apply(p, cluster, cluster_labels, &mut out)?;
    }
    let uid = meta["uid"].as_str().unwrap_or_default();
    if !out["metadata"]["labels"].is_object() {
        out["metadata"]["labels"] = json!({});
    }
    out["metadata"]["labels"][MANAGED_LABEL] = json!("true");
    out["metadata"]["labels"][TEMPLATE_UID_LABEL] = json!(uid);
    if !out["metadata"]["annotations"].is_object() {
        out["metadata"]["annotations"] = json!({});
    }
    out["metadata"]["annotations"][TEMPLATE_ANNOTATION] = json!(identity(template));
    Ok(out)
}

/// `Kind namespace/name` (or `Kind name`) of an object.
pub fn identity(o: &Value) -> String {
    let m = &o["metadata"];
    match m["namespace"].as_str() {
        Some(ns) => format!(
            "{} {ns}/{}",
            o["kind"].as_str().unwrap_or(""),
            m["name"].as_str().unwrap_or("")
        ),
        None => format!(
            "{} {}",
            o["kind"].as_str().unwrap_or(""),
            m["name"].as_str().unwrap_or("")
        ),
    }
}

/// Whether every field `want` sets has the same value in `live` (lists element by element, same
/// length): fields the member's API server defaulted do not count as drift.
pub fn contained(want: &Value, live: &Value) -> bool {
    match (want, live) {
        (Value::Object(w), Value::Object(l)) => w.iter().all(|(k, v)| {
            l.get(k).is_some_and(|lv| contained(v, lv)) || (v.is_null() && !l.contains_key(k))
        }),
        (Value::Array(w), Value::Array(l)) => {
            w.len() == l.len() && w.iter().zip(l).all(|(a, b)| contained(a, b))
        }
        (a, b) => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_fields_go_and_identity_comes() {
        let t = json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "w", "namespace": "default", "uid": "u1", "resourceVersion": "5",
                "finalizers": ["x"], "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}"}},
            "spec": {"replicas": 3}, "status": {"replicas": 3}});
        let r = render(&t, Some(2), &[], "m1", &BTreeMap::new()).unwrap();
        assert_eq!(r["spec"]["replicas"], 2);
        assert!(r.get("status").is_none());
        assert!(r["metadata"].get("resourceVersion").is_none());
        assert!(r["metadata"].get("finalizers").is_none());
        assert_eq!(r["metadata"]["labels"][TEMPLATE_UID_LABEL], "u1");
        assert_eq!(
            r["metadata"]["annotations"][TEMPLATE_ANNOTATION],
            "Deployment default/w"
        );
        assert!(contained(&r, &{
            let mut l = r.clone();
            l["spec"]["strategy"] = json!({"type": "RollingUpdate"});
            l
        }));
        let mut drifted = r.clone();
        drifted["spec"]["replicas"] = json!(5);
        assert!(!contained(&r, &drifted));
    }
}
