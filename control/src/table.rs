//! Server-side printing: `meta.k8s.io/v1` Table responses for `kubectl get`, per kind.

use std::time::{Duration, SystemTime};

use serde_json::{json, Value};

use crate::objects::{meta_str, parse_time};

/// Whether the Accept header asks for a Table.
pub fn wants_table(accept: &str) -> bool {
    accept.split(',').any(|part| {
        let p = part.replace(' ', "");
        p.contains("as=Table")
            && p.contains("g=meta.k8s.io")
            && (p.contains("v=v1;") || p.ends_with("v=v1"))
    })
}

/// Human duration as kubectl prints ages (k8s.io/apimachinery duration.HumanDuration).
pub fn human_duration(d: Duration) -> String {
    let s = d.as_secs();
    if s < 120 {
        return format!("{s}s");
    }
    let m = s / 60;
    if m < 10 {
        return if s % 60 == 0 {
            format!("{m}m")
        } else {
            format!("{m}m{}s", s % 60)
        };
    }
    if m < 180 {
        return format!("{m}m");
    }
    let h = m / 60;
    if h < 8 {
        return if m % 60 == 0 {
            format!("{h}h")
        } else {
            format!("{h}h{}m", m % 60)
        };
    }
    if h < 48 {
        return format!("{h}h");
    }
    let days = h / 24;
    if h < 192 {
        return if h % 24 == 0 {
            format!("{days}d")
        } else {
            format!("{days}d{}h", h % 24)
        };
    }
    if days < 365 * 2 {
        return format!("{days}d");
    }
    format!("{}y", days / 365)
}

fn age(obj: &Value, now: SystemTime) -> String {
    meta_str(obj, "creationTimestamp")
        .and_then(parse_time)
        .map(|t| human_duration(now.duration_since(t).unwrap_or_default()))
        .unwrap_or_else(|| "<unknown>".into())
}

fn col(name: &str, ty: &str, priority: u32, description: &str) -> Value {
    let format = if name == "Name" { "name" } else { "" };
    json!({"name": name, "type": ty, "format": format, "description": description, "priority": priority})
}

fn s(v: Option<&Value>) -> String {
    match v {
        Some(Value::String(x)) => x.clone(),
        Some(Value::Number(n)) => n.to_string(),
        Some(Value::Bool(b)) => b.to_string(),
        _ => String::new(),
    }
}

fn or_none(x: String) -> String {
    if x.is_empty() {
        "<none>".into()
    } else {
        x
    }
}

fn count(v: Option<&Value>) -> usize {
    match v {
        Some(Value::Object(m)) => m.len(),
        Some(Value::Array(a)) => a.len(),
        _ => 0,
    }
}

/// Column definitions for `kind`.
pub fn columns(kind: &str) -> Vec<Value> {
    let name = col(
        "Name",
        "string",
        0,
        "Name must be unique within a namespace.",
    );
    let age = col("Age", "string", 0, "CreationTimestamp is a timestamp representing the server time when this object was created.");
    match kind {
        "Pod" => vec![
            name,
            col("Ready", "string", 0, "The aggregate readiness state of this pod for accepting traffic."),
            col("Status", "string", 0, "The aggregate status of the containers in this pod."),
            col("Restarts", "string", 0, "The number of times the containers in this pod have been restarted."),
            age,
            col("IP", "string", 1, "IP address allocated to the pod."),
            col("Node", "string", 1, "Name of the Node this pod is bound to."),
        ],
        "Namespace" => vec![name, col("Status", "string", 0, "The status of the namespace"), age],
        "Node" => vec![
            name,
            col("Status", "string", 0, "The status of the node"),
            col("Roles", "string", 0, "The roles of the node"),
            age,
            col("Version", "string", 0, "Kubelet Version reported by the node."),
        ],
        "ConfigMap" => vec![name, col("Data", "string", 0, "Number of data items"), age],
        "Secret" => vec![name, col("Type", "string", 0, "The type of the secret"), col("Data", "string", 0, "Number of data items"), age],
        "Deployment" => vec![
            name,
            col("Ready", "string", 0, "Number of ready replicas"),
            col("Up-to-date", "string", 0, "Total number of non-terminated pods targeted by this deployment that have the desired template spec."),
            col("Available", "string", 0, "Total number of available pods."),
            age,
        ],
        "ReplicaSet" => vec![
            name,
            col("Desired", "string", 0, "Number of desired pods."),
            col("Current", "string", 0, "Number of actual pods."),
            col("Ready", "string", 0, "Number of ready pods."),
            age,
        ],
        "Service" => vec![
            name,
            col("Type", "string", 0, "The type of the service."),
            col("Cluster-IP", "string", 0, "IP address of the service."),
            col("External-IP", "string", 0, "External IP addresses."),
            col("Port(s)", "string", 0, "Ports the service exposes."),
            age,
        ],
        "ServiceAccount" => vec![name, col("Secrets", "string", 0, "Number of secrets"), age],
        "Lease" => vec![name, col("Holder", "string", 0, "The holder of the lease"), age],
        _ => vec![name, age],
    }
}

/// One row's cells for `obj` of `kind`.
pub fn cells(kind: &str, obj: &Value, now: SystemTime) -> Vec<Value> {
    let name = json!(meta_str(obj, "name").unwrap_or(""));
    let a = json!(age(obj, now));
    match kind {
        "Pod" => {
            let total = count(obj.pointer("/spec/containers"));
            let statuses = obj
                .pointer("/status/containerStatuses")
                .and_then(Value::as_array);
            let ready = statuses
                .map(|c| c.iter().filter(|c| c["ready"] == json!(true)).count())
                .unwrap_or(0);
            let restarts: i64 = statuses
                .map(|c| c.iter().filter_map(|c| c["restartCount"].as_i64()).sum())
                .unwrap_or(0);
            let mut status = s(obj.pointer("/status/phase"));
            if let Some(r) = obj.pointer("/status/reason").and_then(Value::as_str) {
                status = r.to_string();
            }
            if obj.pointer("/metadata/deletionTimestamp").is_some() {
                status = "Terminating".into();
            }
            vec![
                name,
                json!(format!("{ready}/{total}")),
                json!(status),
                json!(restarts.to_string()),
                a,
                json!(or_none(s(obj.pointer("/status/podIP")))),
                json!(or_none(s(obj.pointer("/spec/nodeName")))),
            ]
        }
        "Namespace" => vec![name, json!(s(obj.pointer("/status/phase"))), a],
        "Node" => {
            let ready = obj
                .pointer("/status/conditions")
                .and_then(Value::as_array)
                .and_then(|c| c.iter().find(|c| c["type"] == "Ready"))
                .map(|c| {
                    if c["status"] == "True" {
                        "Ready"
                    } else {
                        "NotReady"
                    }
                })
                .unwrap_or("Unknown");
            let roles: Vec<String> = obj
                .pointer("/metadata/labels")
                .and_then(Value::as_object)
                .map(|l| {
                    l.keys()
                        .filter_map(|k| {
                            k.strip_prefix("node-role.kubernetes.io/")
                                .map(str::to_string)
                        })
                        .collect()
                })
                .unwrap_or_default();
            vec![
                name,
                json!(ready),
                json!(or_none(roles.join(","))),
                a,
                json!(s(obj.pointer("/status/nodeInfo/kubeletVersion"))),
            ]
        }
        "ConfigMap" => vec![
            name,
            json!(count(obj.get("data")) + count(obj.get("binaryData"))),
            a,
        ],
        "Secret" => vec![
            name,
            json!(s(obj.get("type"))),
            json!(count(obj.get("data"))),
            a,
        ],
        "Deployment" => {
            let want = obj
                .pointer("/spec/replicas")
                .and_then(Value::as_i64)
                .unwrap_or(1);
            let ready = obj
                .pointer("/status/readyReplicas")
                .and_then(Value::as_i64)
                .unwrap_or(0);
            vec![
                name,
                json!(format!("{ready}/{want}")),
                json!(obj
                    .pointer("/status/updatedReplicas")
                    .and_then(Value::as_i64)
                    .unwrap_or(0)),
                json!(obj
                    .pointer("/status/availableReplicas")
                    .and_then(Value::as_i64)
                    .unwrap_or(0)),
                a,
            ]
        }
        "ReplicaSet" => vec![
            name,
            json!(obj
                .pointer("/spec/replicas")
                .and_then(Value::as_i64)
                .unwrap_or(1)),
            json!(obj
                .pointer("/status/replicas")
                .and_then(Value::as_i64)
                .unwrap_or(0)),
            json!(obj
                .pointer("/status/readyReplicas")
                .and_then(Value::as_i64)
                .unwrap_or(0)),
            a,
        ],
        "Service" => {
            let ports: Vec<String> = obj
                .pointer("/spec/ports")
                .and_then(Value::as_array)
                .map(|ps| {
                    ps.iter()
                        .map(|p| match p.get("nodePort").and_then(Value::as_i64) {
                            // kubectl's printer: port:nodePort/protocol.
                            Some(n) if n != 0 => {
                                format!("{}:{n}/{}", s(p.get("port")), s(p.get("protocol")))
                            }
                            _ => format!("{}/{}", s(p.get("port")), s(p.get("protocol"))),
                        })
                        .collect()
                })
                .unwrap_or_default();
            vec![
                name,
                json!(s(obj.pointer("/spec/type"))),
                json!(or_none(s(obj.pointer("/spec/clusterIP")))),
                json!("<none>"),
                json!(or_none(ports.join(","))),
                a,
            ]
        }
        "ServiceAccount" => vec![name, json!(count(obj.get("secrets"))), a],
        "Lease" => vec![name, json!(s(obj.pointer("/spec/holderIdentity"))), a],
        _ => vec![name, a],
    }
}

/// The row for one object, carrying its metadata as a PartialObjectMetadata (or the object).
pub fn row(kind: &str, obj: &Value, now: SystemTime, include_object: &str) -> Value {
    let object = match include_object {
        "None" => Value::Null,
        "Object" => obj.clone(),
        _ => json!({
            "kind": "PartialObjectMetadata",
            "apiVersion": "meta.k8s.io/v1",
            "metadata": obj.get("metadata").cloned().unwrap_or(json!({})),
        }),
    };
    json!({"cells": cells(kind, obj, now), "object": object})
}

/// A Table for a list (or a single object, or one watch event).
pub fn table(
    kind: &str,
    objs: &[Value],
    rv: Option<String>,
    cont: Option<String>,
    now: SystemTime,
    include_object: &str,
) -> Value {
    let mut meta = json!({});
    if let Some(rv) = rv {
        meta["resourceVersion"] = json!(rv);
    }
    if let Some(c) = cont {
        meta["continue"] = json!(c);
    }
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": meta,
        "columnDefinitions": columns(kind),
        "rows": objs.iter().map(|o| row(kind, o, now, include_object)).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_read_like_kubectl() {
        assert_eq!(human_duration(Duration::from_secs(5)), "5s");
        assert_eq!(human_duration(Duration::from_secs(150)), "2m30s");
        assert_eq!(human_duration(Duration::from_secs(3600)), "60m");
        assert_eq!(human_duration(Duration::from_secs(5 * 3600 + 60)), "5h1m");
        assert_eq!(human_duration(Duration::from_secs(3 * 86400)), "3d");
    }

    #[test]
    fn table_accept_detection() {
        assert!(wants_table("application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json"));
        assert!(!wants_table("application/json"));
    }

    #[test]
    fn pod_row() {
        let p = json!({"metadata": {"name": "web"}, "spec": {"containers": [{}, {}], "nodeName": "n1"},
            "status": {"phase": "Running", "containerStatuses": [{"ready": true, "restartCount": 2}, {"ready": false, "restartCount": 1}]}});
        let c = cells("Pod", &p, SystemTime::now());
        assert_eq!(c[1], "1/2");
        assert_eq!(c[2], "Running");
        assert_eq!(c[3], "3");
        assert_eq!(c[6], "n1");
    }
}
