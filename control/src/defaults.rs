//! Defaulting for new objects: the fields kube-apiserver fills in that clients rely on.

use serde_json::{json, Value};

fn set_if_absent(obj: &mut Value, pointer: &str, value: Value) {
    if obj.pointer(pointer).is_some() {
        return;
    }
    let mut cur = obj;
    let parts: Vec<&str> = pointer.trim_start_matches('/').split('/').collect();
    for (i, p) in parts.iter().enumerate() {
        let Some(map) = cur.as_object_mut() else {
            return;
        };
        if i == parts.len() - 1 {
            map.insert(p.to_string(), value);
            return;
        }
        cur = map.entry(p.to_string()).or_insert_with(|| json!({}));
    }
}

fn default_containers(spec: &mut Value) {
    for list in ["containers", "initContainers"] {
        if let Some(cs) = spec.get_mut(list).and_then(Value::as_array_mut) {
            for c in cs {
                let image = c.get("image").and_then(Value::as_str).unwrap_or("");
                let latest = !image.contains(':') || image.ends_with(":latest");
                set_if_absent(
                    c,
                    "/imagePullPolicy",
                    json!(if latest { "Always" } else { "IfNotPresent" }),
                );
                set_if_absent(c, "/terminationMessagePath", json!("/dev/termination-log"));
                set_if_absent(c, "/terminationMessagePolicy", json!("File"));
                set_if_absent(c, "/resources", json!({}));
            }
        }
    }
}

fn default_pod_spec(spec: &mut Value) {
    set_if_absent(spec, "/restartPolicy", json!("Always"));
    set_if_absent(spec, "/dnsPolicy", json!("ClusterFirst"));
    set_if_absent(spec, "/terminationGracePeriodSeconds", json!(30));
    set_if_absent(spec, "/schedulerName", json!("default-scheduler"));
    set_if_absent(spec, "/securityContext", json!({}));
    set_if_absent(spec, "/enableServiceLinks", json!(true));
    default_containers(spec);
}

/// Fills defaults into a new object of `kind`.
pub fn apply(kind: &str, obj: &mut Value) {
    match kind {
        "Namespace" => {
            set_if_absent(obj, "/spec/finalizers", json!(["kubernetes"]));
            set_if_absent(obj, "/status/phase", json!("Active"));
        }
        "Pod" => {
            if let Some(spec) = obj.get_mut("spec") {
                default_pod_spec(spec);
            }
            set_if_absent(obj, "/status/phase", json!("Pending"));
            set_if_absent(obj, "/status/qosClass", json!("BestEffort"));
        }
        "Deployment" | "ReplicaSet" | "StatefulSet" | "DaemonSet" | "Job" => {
            if kind != "DaemonSet" && kind != "Job" {
                set_if_absent(obj, "/spec/replicas", json!(1));
            }
            if kind == "Deployment" {
                set_if_absent(obj, "/spec/revisionHistoryLimit", json!(10));
                set_if_absent(obj, "/spec/progressDeadlineSeconds", json!(600));
                set_if_absent(
                    obj,
                    "/spec/strategy",
                    json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}}),
                );
            }
            if let Some(spec) = obj.pointer_mut("/spec/template/spec") {
                default_pod_spec(spec);
            }
        }
        "Service" => {
            set_if_absent(obj, "/spec/type", json!("ClusterIP"));
            set_if_absent(obj, "/spec/sessionAffinity", json!("None"));
            if let Some(ports) = obj.pointer_mut("/spec/ports").and_then(Value::as_array_mut) {
                for p in ports {
                    set_if_absent(p, "/protocol", json!("TCP"));
                    if p.get("targetPort").is_none() {
                        let port = p.get("port").cloned().unwrap_or(json!(0));
                        p["targetPort"] = port;
                    }
                }
            }
        }
        "Secret" => {
            set_if_absent(obj, "/type", json!("Opaque"));
            fold_string_data(obj);
        }
        _ => {}
    }
}

/// Moves a Secret's write-only `stringData` into `data` (base64), as kube-apiserver does on
/// every write; `stringData` wins over `data` for the same key and is never stored.
pub fn fold_string_data(obj: &mut Value) {
    use base64::Engine;
    let Some(string_data) = obj.as_object_mut().and_then(|m| m.remove("stringData")) else {
        return;
    };
    let Some(entries) = string_data.as_object() else {
        return;
    };
    if entries.is_empty() {
        return;
    }
    let data = obj
        .as_object_mut()
        .map(|m| m.entry("data").or_insert_with(|| json!({})));
    if let Some(Value::Object(d)) = data {
        for (k, v) in entries {
            let text = v.as_str().unwrap_or_default();
            d.insert(
                k.clone(),
                json!(base64::engine::general_purpose::STANDARD.encode(text)),
            );
        }
    }
}

/// Whether `kind` tracks `metadata.generation` (objects with a spec users change).
pub fn has_generation(kind: &str) -> bool {
    !matches!(
        kind,
        "ConfigMap"
            | "Secret"
            | "Event"
            | "Endpoints"
            | "EndpointSlice"
            | "ServiceAccount"
            | "Lease"
            | "Namespace"
            | "Node"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_string_data_folds_into_data() {
        let mut s = json!({"data": {"a": "eA=="}, "stringData": {"b": "hunter2", "a": "y"}});
        apply("Secret", &mut s);
        assert_eq!(
            s,
            json!({"type": "Opaque", "data": {"a": "eQ==", "b": "aHVudGVyMg=="}})
        );
    }

    #[test]
    fn pod_defaults_fill_only_missing_fields() {
        let mut p = json!({"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox:1"}, {"name": "d", "image": "x"}]}});
        apply("Pod", &mut p);
        assert_eq!(p["spec"]["restartPolicy"], "Never");
        assert_eq!(p["spec"]["dnsPolicy"], "ClusterFirst");
        assert_eq!(
            p["spec"]["containers"][0]["imagePullPolicy"],
            "IfNotPresent"
        );
        assert_eq!(p["spec"]["containers"][1]["imagePullPolicy"], "Always");
        assert_eq!(p["status"]["phase"], "Pending");
    }
}
