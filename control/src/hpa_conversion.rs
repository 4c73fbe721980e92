//! autoscaling/v1 ⇄ autoscaling/v2 HorizontalPodAutoscaler, as kube-apiserver converts them
//! (`pkg/apis/autoscaling/v1/conversion.go`): the object is stored as v2; v1 carries the first
//! CPU utilization target as `targetCPUUtilizationPercentage` and the CPU utilization status as
//! `currentCPUUtilizationPercentage`. What v1 cannot express travels in kube's round-trip
//! annotations, so a v1 read-modify-write keeps it: other metrics
//! (`autoscaling.alpha.kubernetes.io/metrics`, v1 MetricSpec JSON), current metrics
//! (`.../current-metrics`), conditions (`.../conditions`) and, like v2beta1, the scaling
//! behavior (`.../behavior`). A v1 object without any target gets kube's default of 80 % CPU.

use serde_json::{json, Map, Value};

pub const METRICS_ANNOTATION: &str = "autoscaling.alpha.kubernetes.io/metrics";
pub const CURRENT_METRICS_ANNOTATION: &str = "autoscaling.alpha.kubernetes.io/current-metrics";
pub const CONDITIONS_ANNOTATION: &str = "autoscaling.alpha.kubernetes.io/conditions";
pub const BEHAVIOR_ANNOTATION: &str = "autoscaling.alpha.kubernetes.io/behavior";
const ROUND_TRIP: [&str; 4] = [
    METRICS_ANNOTATION,
    CURRENT_METRICS_ANNOTATION,
    CONDITIONS_ANNOTATION,
    BEHAVIOR_ANNOTATION,
];
/// kube's `autoscaling.DefaultCPUUtilization`.
pub const DEFAULT_CPU_UTILIZATION: i64 = 80;

fn put(m: &mut Map<String, Value>, k: &str, v: Option<&Value>) {
    if let Some(v) = v.filter(|v| !v.is_null()) {
        m.insert(k.to_string(), v.clone());
    }
}

fn is_cpu_resource(m: &Value) -> bool {
    m["type"] == "Resource" && m.pointer("/resource/name") == Some(&json!("cpu"))
}

/// Copies `meta` without the round-trip annotations (they never reach storage or v2 clients).
fn meta_without_round_trip(meta: &Value) -> (Value, Map<String, Value>) {
    let mut meta = meta.clone();
    let mut taken = Map::new();
    if let Some(a) = meta.get_mut("annotations").and_then(Value::as_object_mut) {
        for k in ROUND_TRIP {
            if let Some(v) = a.remove(k) {
                taken.insert(k.to_string(), v);
            }
        }
        if a.is_empty() {
            meta.as_object_mut().map(|m| m.remove("annotations"));
        }
    }
    (meta, taken)
}

/// The stored (v2) object as autoscaling/v1 shows it.
pub fn v2_to_v1(obj: &Value) -> Value {
    let (mut meta, _) = meta_without_round_trip(&obj["metadata"]);
    let spec = &obj["spec"];
    let status = &obj["status"];
    let mut annotations = Map::new();
    let metrics = spec["metrics"].as_array().cloned().unwrap_or_default();
    let mut out_spec = Map::new();
    put(&mut out_spec, "scaleTargetRef", spec.get("scaleTargetRef"));
    put(&mut out_spec, "minReplicas", spec.get("minReplicas"));
    out_spec.insert(
        "maxReplicas".into(),
        spec.get("maxReplicas").cloned().unwrap_or(json!(0)),
    );
    if let Some(cpu) = metrics.iter().find(|m| is_cpu_resource(m)) {
        put(
            &mut out_spec,
            "targetCPUUtilizationPercentage",
            cpu.pointer("/resource/target/averageUtilization"),
        );
    }
    let others: Vec<Value> = metrics
        .iter()
        .filter(|m| {
            !(is_cpu_resource(m) && m.pointer("/resource/target/averageUtilization").is_some())
        })
        .map(metric_spec_to_v1)
        .collect();
    if !others.is_empty() {
        annotations.insert(
            METRICS_ANNOTATION.into(),
            json!(Value::from(others).to_string()),
        );
    }
    if let Some(b) = spec.get("behavior").filter(|b| !b.is_null()) {
        annotations.insert(BEHAVIOR_ANNOTATION.into(), json!(b.to_string()));
    }
    let mut out_status = Map::new();
    put(
        &mut out_status,
        "observedGeneration",
        status.get("observedGeneration"),
    );
    put(
        &mut out_status,
        "lastScaleTime",
        status.get("lastScaleTime"),
    );
    out_status.insert(
        "currentReplicas".into(),
        status.get("currentReplicas").cloned().unwrap_or(json!(0)),
    );
    out_status.insert(
        "desiredReplicas".into(),
        status.get("desiredReplicas").cloned().unwrap_or(json!(0)),
    );
    let current = status["currentMetrics"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    for m in &current {
        if is_cpu_resource(m) {
            put(
                &mut out_status,
                "currentCPUUtilizationPercentage",
                m.pointer("/resource/current/averageUtilization"),
            );
        }
    }
    if !current.is_empty() {
        let v1: Vec<Value> = current.iter().map(metric_status_to_v1).collect();
        annotations.insert(
            CURRENT_METRICS_ANNOTATION.into(),
            json!(Value::from(v1).to_string()),
        );
    }
    if let Some(c) = status["conditions"].as_array().filter(|c| !c.is_empty()) {
        annotations.insert(
            CONDITIONS_ANNOTATION.into(),
            json!(Value::from(c.clone()).to_string()),
        );
    }
    if !annotations.is_empty() {
        let m = meta.as_object_mut().expect("metadata object");
        let a = m.entry("annotations").or_insert_with(|| json!({}));
        if let Some(a) = a.as_object_mut() {
            a.extend(annotations);
        }
    }
    json!({"apiVersion": "autoscaling/v1", "kind": "HorizontalPodAutoscaler",
        "metadata": meta, "spec": out_spec, "status": out_status})
}

fn annotation(obj: &Value, key: &str) -> Result<Option<Value>, String> {
    match obj
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(key))
    {
        None => Ok(None),
        Some(Value::String(s)) => serde_json::from_str(s)
            .map(Some)
            .map_err(|e| format!("annotation {key}: {e}")),
        Some(_) => Err(format!("annotation {key} must be a string")),
    }
}

/// An autoscaling/v1 object as it is stored (v2).
pub fn v1_to_v2(obj: &Value) -> Result<Value, String> {
    let (meta, _) = meta_without_round_trip(&obj["metadata"]);
    let spec = &obj["spec"];
    let status = &obj["status"];
    let mut out_spec = Map::new();
    put(&mut out_spec, "scaleTargetRef", spec.get("scaleTargetRef"));
    // kube's v1 defaulting: minReplicas 1.
    out_spec.insert(
        "minReplicas".into(),
        spec.get("minReplicas")
            .filter(|m| !m.is_null())
            .cloned()
            .unwrap_or(json!(1)),
    );
    put(&mut out_spec, "maxReplicas", spec.get("maxReplicas"));
    let mut metrics: Vec<Value> = match annotation(obj, METRICS_ANNOTATION)? {
        Some(Value::Array(list)) => list.iter().map(metric_spec_from_v1).collect(),
        Some(_) => return Err(format!("annotation {METRICS_ANNOTATION} must be a list")),
        None => Vec::new(),
    };
    if let Some(t) = spec
        .get("targetCPUUtilizationPercentage")
        .filter(|t| !t.is_null())
    {
        metrics.push(cpu_utilization(t.clone()));
    }
    if metrics.is_empty() {
        metrics.push(cpu_utilization(json!(DEFAULT_CPU_UTILIZATION)));
    }
    out_spec.insert("metrics".into(), Value::from(metrics));
    if let Some(b) = annotation(obj, BEHAVIOR_ANNOTATION)? {
        out_spec.insert("behavior".into(), b);
    }
    let mut out_status = Map::new();
    put(
        &mut out_status,
        "observedGeneration",
        status.get("observedGeneration"),
    );
    put(
        &mut out_status,
        "lastScaleTime",
        status.get("lastScaleTime"),
    );
    put(
        &mut out_status,
        "currentReplicas",
        status.get("currentReplicas"),
    );
    put(
        &mut out_status,
        "desiredReplicas",
        status.get("desiredReplicas"),
    );
    match annotation(obj, CURRENT_METRICS_ANNOTATION)? {
        Some(Value::Array(list)) => {
            let v2: Vec<Value> = list.iter().map(metric_status_from_v1).collect();
            out_status.insert("currentMetrics".into(), Value::from(v2));
        }
        Some(_) => {
            return Err(format!(
                "annotation {CURRENT_METRICS_ANNOTATION} must be a list"
            ))
        }
        None => {
            if let Some(c) = status
                .get("currentCPUUtilizationPercentage")
                .filter(|c| !c.is_null())
            {
                out_status.insert(
                    "currentMetrics".into(),
                    json!([{"type": "Resource", "resource": {"name": "cpu",
                        "current": {"averageUtilization": c}}}]),
                );
            }
        }
    }
    if let Some(c) = annotation(obj, CONDITIONS_ANNOTATION)? {
        out_status.insert("conditions".into(), c);
    }
    let mut out = json!({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
        "metadata": meta, "spec": out_spec});
    if !out_status.is_empty() {
        out["status"] = Value::Object(out_status);
    }
    Ok(out)
}

fn cpu_utilization(percent: Value) -> Value {
    json!({"type": "Resource", "resource": {"name": "cpu",
        "target": {"type": "Utilization", "averageUtilization": percent}}})
}

/// One v2 MetricSpec in v1's (v2beta1-shaped) form.
fn metric_spec_to_v1(m: &Value) -> Value {
    let mut out = json!({"type": m["type"]});
    let t = |src: &str, f: &str| m.pointer(&format!("/{src}/target/{f}")).cloned();
    match m["type"].as_str().unwrap_or("") {
        "Resource" | "ContainerResource" => {
            let key = if m["type"] == "Resource" {
                "resource"
            } else {
                "containerResource"
            };
            let mut r = Map::new();
            put(&mut r, "name", m.pointer(&format!("/{key}/name")));
            put(&mut r, "container", m.pointer(&format!("/{key}/container")));
            put(
                &mut r,
                "targetAverageUtilization",
                t(key, "averageUtilization").as_ref(),
            );
            put(
                &mut r,
                "targetAverageValue",
                t(key, "averageValue").as_ref(),
            );
            out[key] = Value::Object(r);
        }
        "Pods" => {
            let mut r = Map::new();
            put(&mut r, "metricName", m.pointer("/pods/metric/name"));
            put(&mut r, "selector", m.pointer("/pods/metric/selector"));
            r.insert(
                "targetAverageValue".into(),
                t("pods", "averageValue").unwrap_or(json!("0")),
            );
            out["pods"] = Value::Object(r);
        }
        "Object" => {
            let mut r = Map::new();
            put(&mut r, "target", m.pointer("/object/describedObject"));
            put(&mut r, "metricName", m.pointer("/object/metric/name"));
            put(&mut r, "selector", m.pointer("/object/metric/selector"));
            r.insert(
                "targetValue".into(),
                t("object", "value").unwrap_or(json!("0")),
            );
            put(&mut r, "averageValue", t("object", "averageValue").as_ref());
            out["object"] = Value::Object(r);
        }
        "External" => {
            let mut r = Map::new();
            put(&mut r, "metricName", m.pointer("/external/metric/name"));
            put(
                &mut r,
                "metricSelector",
                m.pointer("/external/metric/selector"),
            );
            put(&mut r, "targetValue", t("external", "value").as_ref());
            put(
                &mut r,
                "targetAverageValue",
                t("external", "averageValue").as_ref(),
            );
            out["external"] = Value::Object(r);
        }
        _ => {}
    }
    out
}

/// The inverse of [`metric_spec_to_v1`], with kube's choice of target type.
fn metric_spec_from_v1(m: &Value) -> Value {
    let mut out = json!({"type": m["type"]});
    match m["type"].as_str().unwrap_or("") {
        "Resource" | "ContainerResource" => {
            let key = if m["type"] == "Resource" {
                "resource"
            } else {
                "containerResource"
            };
            let src = &m[key];
            let mut target = Map::new();
            let util = src.get("targetAverageUtilization").filter(|v| !v.is_null());
            target.insert(
                "type".into(),
                json!(if util.is_some() {
                    "Utilization"
                } else {
                    "AverageValue"
                }),
            );
            put(&mut target, "averageUtilization", util);
            put(&mut target, "averageValue", src.get("targetAverageValue"));
            let mut r = Map::new();
            put(&mut r, "name", src.get("name"));
            put(&mut r, "container", src.get("container"));
            r.insert("target".into(), Value::Object(target));
            out[key] = Value::Object(r);
        }
        "Pods" => {
            let src = &m["pods"];
            out["pods"] = json!({"metric": metric_id(src.get("metricName"), src.get("selector")),
                "target": {"type": "AverageValue", "averageValue": src["targetAverageValue"]}});
        }
        "Object" => {
            let src = &m["object"];
            let avg = src.get("averageValue").filter(|v| !v.is_null());
            let mut target = Map::new();
            target.insert(
                "type".into(),
                json!(if avg.is_some() {
                    "AverageValue"
                } else {
                    "Value"
                }),
            );
            put(&mut target, "value", src.get("targetValue"));
            put(&mut target, "averageValue", avg);
            out["object"] = json!({"describedObject": src["target"],
                "metric": metric_id(src.get("metricName"), src.get("selector")),
                "target": target});
        }
        "External" => {
            let src = &m["external"];
            let value = src.get("targetValue").filter(|v| !v.is_null());
            let mut target = Map::new();
            target.insert(
                "type".into(),
                json!(if value.is_some() {
                    "Value"
                } else {
                    "AverageValue"
                }),
            );
            put(&mut target, "value", value);
            put(&mut target, "averageValue", src.get("targetAverageValue"));
            out["external"] = json!({
                "metric": metric_id(src.get("metricName"), src.get("metricSelector")),
                "target": target});
        }
        _ => {}
    }
    out
}

fn metric_id(name: Option<&Value>, selector: Option<&Value>) -> Value {
    let mut m = Map::new();
    put(&mut m, "name", name);
    put(&mut m, "selector", selector);
    Value::Object(m)
}

/// One v2 MetricStatus in v1's form.
fn metric_status_to_v1(m: &Value) -> Value {
    let mut out = json!({"type": m["type"]});
    let c = |src: &str, f: &str| m.pointer(&format!("/{src}/current/{f}")).cloned();
    match m["type"].as_str().unwrap_or("") {
        "Resource" | "ContainerResource" => {
            let key = if m["type"] == "Resource" {
                "resource"
            } else {
                "containerResource"
            };
            let mut r = Map::new();
            put(&mut r, "name", m.pointer(&format!("/{key}/name")));
            put(&mut r, "container", m.pointer(&format!("/{key}/container")));
            put(
                &mut r,
                "currentAverageUtilization",
                c(key, "averageUtilization").as_ref(),
            );
            r.insert(
                "currentAverageValue".into(),
                c(key, "averageValue").unwrap_or(json!("0")),
            );
            out[key] = Value::Object(r);
        }
        "Pods" => {
            let mut r = Map::new();
            put(&mut r, "metricName", m.pointer("/pods/metric/name"));
            put(&mut r, "selector", m.pointer("/pods/metric/selector"));
            r.insert(
                "currentAverageValue".into(),
                c("pods", "averageValue").unwrap_or(json!("0")),
            );
            out["pods"] = Value::Object(r);
        }
        "Object" => {
            let mut r = Map::new();
            put(&mut r, "target", m.pointer("/object/describedObject"));
            put(&mut r, "metricName", m.pointer("/object/metric/name"));
            put(&mut r, "selector", m.pointer("/object/metric/selector"));
            r.insert(
                "currentValue".into(),
                c("object", "value").unwrap_or(json!("0")),
            );
            put(&mut r, "averageValue", c("object", "averageValue").as_ref());
            out["object"] = Value::Object(r);
        }
        "External" => {
            let mut r = Map::new();
            put(&mut r, "metricName", m.pointer("/external/metric/name"));
            put(
                &mut r,
                "metricSelector",
                m.pointer("/external/metric/selector"),
            );
            r.insert(
                "currentValue".into(),
                c("external", "value").unwrap_or(json!("0")),
            );
            put(
                &mut r,
                "currentAverageValue",
                c("external", "averageValue").as_ref(),
            );
            out["external"] = Value::Object(r);
        }
        _ => {}
    }
    out
}

fn metric_status_from_v1(m: &Value) -> Value {
    let mut out = json!({"type": m["type"]});
    match m["type"].as_str().unwrap_or("") {
        "Resource" | "ContainerResource" => {
            let key = if m["type"] == "Resource" {
                "resource"
            } else {
                "containerResource"
            };
            let src = &m[key];
            let mut current = Map::new();
            put(&mut current, "averageValue", src.get("currentAverageValue"));
            put(
                &mut current,
                "averageUtilization",
                src.get("currentAverageUtilization"),
            );
            let mut r = Map::new();
            put(&mut r, "name", src.get("name"));
            put(&mut r, "container", src.get("container"));
            r.insert("current".into(), Value::Object(current));
            out[key] = Value::Object(r);
        }
        "Pods" => {
            let src = &m["pods"];
            out["pods"] = json!({"metric": metric_id(src.get("metricName"), src.get("selector")),
                "current": {"averageValue": src["currentAverageValue"]}});
        }
        "Object" => {
            let src = &m["object"];
            let mut current = Map::new();
            put(&mut current, "value", src.get("currentValue"));
            put(&mut current, "averageValue", src.get("averageValue"));
            out["object"] = json!({"describedObject": src["target"],
                "metric": metric_id(src.get("metricName"), src.get("selector")),
                "current": current});
        }
        "External" => {
            let src = &m["external"];
            let mut current = Map::new();
            put(&mut current, "value", src.get("currentValue"));
            put(&mut current, "averageValue", src.get("currentAverageValue"));
            out["external"] = json!({
                "metric": metric_id(src.get("metricName"), src.get("metricSelector")),
                "current": current});
        }
        _ => {}
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubectl_autoscale_v1_becomes_a_cpu_metric_and_back() {
        let v1 = json!({"apiVersion": "autoscaling/v1", "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "web", "namespace": "d"},
            "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                "minReplicas": 1, "maxReplicas": 3, "targetCPUUtilizationPercentage": 50}});
        let v2 = v1_to_v2(&v1).unwrap();
        assert_eq!(
            v2["spec"]["metrics"],
            json!([{"type": "Resource", "resource": {"name": "cpu",
            "target": {"type": "Utilization", "averageUtilization": 50}}}])
        );
        assert!(v2.get("status").is_none());
        let back = v2_to_v1(&v2);
        assert_eq!(back["spec"], v1["spec"]);
        assert_eq!(
            back["status"],
            json!({"currentReplicas": 0, "desiredReplicas": 0})
        );
        assert!(back["metadata"].get("annotations").is_none());
        // No target at all: kube's 80 % CPU.
        let mut bare = v1.clone();
        bare["spec"]
            .as_object_mut()
            .unwrap()
            .remove("targetCPUUtilizationPercentage");
        assert_eq!(
            v1_to_v2(&bare).unwrap()["spec"]["metrics"][0]["resource"]["target"]
                ["averageUtilization"],
            80
        );
    }

    #[test]
    fn what_v1_cannot_carry_round_trips_through_annotations() {
        let v2 = json!({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "web", "annotations": {"keep": "me"}},
            "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "web"}, "minReplicas": 1, "maxReplicas": 5,
                "metrics": [
                    {"type": "Resource", "resource": {"name": "memory", "target": {"type": "AverageValue", "averageValue": "100Mi"}}},
                    {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 60}}}],
                "behavior": {"scaleDown": {"stabilizationWindowSeconds": 30}}},
            "status": {"currentReplicas": 2, "desiredReplicas": 3,
                "currentMetrics": [
                    {"type": "Resource", "resource": {"name": "memory", "current": {"averageValue": "80Mi"}}},
                    {"type": "Resource", "resource": {"name": "cpu", "current": {"averageValue": "120m", "averageUtilization": 120}}}],
                "conditions": [{"type": "AbleToScale", "status": "True", "reason": "SucceededRescale"}]}});
        let v1 = v2_to_v1(&v2);
        assert_eq!(v1["spec"]["targetCPUUtilizationPercentage"], 60);
        assert_eq!(v1["status"]["currentCPUUtilizationPercentage"], 120);
        let a = &v1["metadata"]["annotations"];
        assert_eq!(a["keep"], "me");
        let others: Value = serde_json::from_str(a[METRICS_ANNOTATION].as_str().unwrap()).unwrap();
        assert_eq!(
            others,
            json!([{"type": "Resource", "resource": {"name": "memory", "targetAverageValue": "100Mi"}}])
        );
        let back = v1_to_v2(&v1).unwrap();
        assert_eq!(back["spec"], v2["spec"]);
        assert_eq!(back["status"], v2["status"]);
        assert_eq!(back["metadata"], v2["metadata"]);
        let mut broken = v1.clone();
        broken["metadata"]["annotations"][CONDITIONS_ANNOTATION] = json!("{not json");
        assert!(v1_to_v2(&broken)
            .unwrap_err()
            .contains(CONDITIONS_ANNOTATION));
    }
}
