//! A pod's QoS class, computed as kube-apiserver does when a pod is created (`qos.ComputePodQOS`:
//! only cpu and memory count, summed over containers and init containers):
//! no request or limit anywhere → BestEffort; every container limits cpu and memory and the
//! summed requests equal the summed limits → Guaranteed; anything else → Burstable.
//! Requests missing where a limit is set were already defaulted to the limit (see defaults.rs).

use std::collections::BTreeMap;

use serde_json::Value;

/// The resources QoS looks at.
const QOS_RESOURCES: [&str; 2] = ["cpu", "memory"];

/// A Kubernetes quantity as an exact count of nano-units (`1` = 10⁻⁹), enough for comparing
/// requests with limits: `500m`, `0.5`, `1Gi`, `1e3`, `2Ki`. `None` for what is not a quantity.
pub fn nano_units(q: &str) -> Option<i128> {
    pea_quantity::nano_units(q).ok().flatten()
}

/// The pod's QoS class: "Guaranteed", "Burstable" or "BestEffort".
pub fn pod_qos_class(pod: &Value) -> &'static str {
    let mut requests: BTreeMap<&str, i128> = BTreeMap::new();
    let mut limits: BTreeMap<&str, i128> = BTreeMap::new();
    let mut guaranteed = true;
    let spec = &pod["spec"];
    let containers = ["containers", "initContainers"]
        .into_iter()
        .flat_map(|list| spec[list].as_array().into_iter().flatten());
    for c in containers {
        let amounts = |field: &str| -> Vec<(&'static str, i128)> {
            QOS_RESOURCES
                .into_iter()
                .filter_map(|r| {
                    let n = c["resources"][field][r].as_str().and_then(nano_units)?;
                    (n != 0).then_some((r, n))
                })
                .collect()
        };
        for (r, n) in amounts("requests") {
            *requests.entry(r).or_default() += n;
        }
        let container_limits = amounts("limits");
        if container_limits.len() != QOS_RESOURCES.len() {
            guaranteed = false;
        }
        for (r, n) in container_limits {
            *limits.entry(r).or_default() += n;
        }
    }
    if requests.is_empty() && limits.is_empty() {
        return "BestEffort";
    }
    if guaranteed && requests == limits {
        return "Guaranteed";
    }
    "Burstable"
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn quantities_compare_exactly() {
        assert_eq!(nano_units("500m"), nano_units("0.5"));
        assert_eq!(nano_units("1"), Some(1_000_000_000));
        assert_eq!(nano_units("1Ki"), Some(1024 * 1_000_000_000));
        assert_eq!(nano_units("1Ei"), Some((1i128 << 60) * 1_000_000_000));
        assert_eq!(nano_units("2E"), nano_units("2e18"));
        assert_eq!(nano_units("1Gi"), nano_units("1024Mi"));
        assert_eq!(nano_units("1e3"), nano_units("1k"));
        assert_eq!(nano_units("1.5G"), nano_units("1500M"));
        assert_eq!(nano_units("0.1n"), Some(1), "rounds up");
        assert_eq!(nano_units("100"), nano_units("+100"));
        for bad in ["", "abc", "1Xi", "1.2.3", "m", "1e", "--1"] {
            assert_eq!(nano_units(bad), None, "{bad}");
        }
    }

    fn pod(containers: Value) -> Value {
        json!({"spec": {"containers": containers}})
    }

    #[test]
    fn classes_follow_kube() {
        assert_eq!(pod_qos_class(&pod(json!([{"name": "a"}]))), "BestEffort");
        // Limits on cpu and memory, requests equal (or defaulted from the limits).
        let g = json!({"name": "a", "resources": {
            "limits": {"cpu": "500m", "memory": "1Gi"},
            "requests": {"cpu": "0.5", "memory": "1024Mi"}}});
        assert_eq!(
            pod_qos_class(&pod(json!([g.clone(), g.clone()]))),
            "Guaranteed"
        );
        // One container without a memory limit makes the pod Burstable.
        let b =
            json!({"name": "b", "resources": {"limits": {"cpu": "1"}, "requests": {"cpu": "1"}}});
        assert_eq!(pod_qos_class(&pod(json!([g.clone(), b]))), "Burstable");
        // Requests below limits.
        let r = json!({"name": "r", "resources": {
            "limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "500m", "memory": "1Gi"}}});
        assert_eq!(pod_qos_class(&pod(json!([r]))), "Burstable");
        // Only a request.
        let q = json!({"name": "q", "resources": {"requests": {"memory": "64Mi"}}});
        assert_eq!(pod_qos_class(&pod(json!([q]))), "Burstable");
        // Other resources do not count; zero quantities do not count.
        let e = json!({"name": "e", "resources": {
            "limits": {"ephemeral-storage": "1Gi"}, "requests": {"cpu": "0"}}});
        assert_eq!(pod_qos_class(&pod(json!([e]))), "BestEffort");
        // Init containers count too.
        let p = json!({"spec": {"containers": [g], "initContainers": [
            {"name": "i", "resources": {"requests": {"cpu": "100m"}}}]}});
        assert_eq!(pod_qos_class(&p), "Burstable");
    }
}
