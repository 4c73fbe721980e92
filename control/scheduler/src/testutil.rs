//! Builders for unit tests: pods and nodes from JSON, as the API would send them.

use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, Pod};
use serde_json::{json, Value};

use crate::cache::ClusterState;
use crate::node_info::{NodeInfo, PodInfo};

pub fn pod(spec: Value) -> PodInfo {
    pod_meta(
        json!({"name": "p", "namespace": "default", "uid": "uid-p"}),
        spec,
    )
}

pub fn pod_meta(meta: Value, spec: Value) -> PodInfo {
    let mut spec = spec;
    if spec.get("containers").is_none() {
        spec["containers"] = json!([{"name": "c"}]);
    }
    PodInfo::new(Arc::new(
        serde_json::from_value::<Pod>(json!({"metadata": meta, "spec": spec})).unwrap(),
    ))
}

/// A pod requesting `cpu` and `memory` (None leaves the request out).
pub fn pod_req(cpu: Option<&str>, mem: Option<&str>) -> PodInfo {
    let mut req = serde_json::Map::new();
    if let Some(c) = cpu {
        req.insert("cpu".into(), json!(c));
    }
    if let Some(m) = mem {
        req.insert("memory".into(), json!(m));
    }
    pod(json!({"containers": [{"name": "c", "resources": {"requests": req}}]}))
}

pub fn node_obj(name: &str, extra: Value) -> Node {
    let mut v = json!({"metadata": {"name": name},
        "status": {"allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"}}});
    merge(&mut v, extra);
    serde_json::from_value(v).unwrap()
}

pub fn node(name: &str, extra: Value) -> NodeInfo {
    let mut n = NodeInfo::new(name);
    n.set_node(Arc::new(node_obj(name, extra)));
    n
}

/// A node with this allocatable cpu and memory and `pods` already running on it.
pub fn node_with(name: &str, cpu: &str, mem: &str, pods: Vec<PodInfo>) -> NodeInfo {
    let mut n = node(
        name,
        json!({"status": {"allocatable": {"cpu": cpu, "memory": mem, "pods": "110"}}}),
    );
    for (i, mut p) in pods.into_iter().enumerate() {
        p.uid = format!("{name}-{i}");
        n.add_pod(Arc::new(p));
    }
    n
}

pub fn cluster(nodes: Vec<Node>) -> ClusterState {
    let mut c = ClusterState::default();
    for n in nodes {
        c.upsert_node(n);
    }
    c
}

fn merge(a: &mut Value, b: Value) {
    match (a, b) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in b {
                merge(a.entry(k).or_insert(Value::Null), v);
            }
        }
        (a, b) => *a = b,
    }
}
