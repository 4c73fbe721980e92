//! Each member's capacity the way Karmada's general estimator sees it: the Cluster's
//! `status.resourceSummary` (the sum of its Nodes' allocatable; `allocated`, the requests of pods
//! bound to a node and not finished; `allocating`, the requests of pods not yet bound), and from it
//! how many replicas of a template's pod fit: the allowed pod count (allocatable − allocated −
//! allocating pods), then for each resource the pod requests, `(allocatable − allocated −
//! allocating) / request`, the smallest of them. A member without a summary fits 0 (Karmada's
//! rule). Quantities are kept in milli-units, so CPU is compared in millicores as Karmada does
//! (other resources are compared exactly instead of after rounding the request up).

use std::collections::BTreeMap;

use serde_json::{json, Value};

/// Resource name → quantity in milli-units.
pub type Resources = BTreeMap<String, i64>;

/// Karmada's `ResourceSummary`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    pub allocatable: Resources,
    pub allocated: Resources,
    pub allocating: Resources,
}

/// A Kubernetes quantity (`500m`, `2`, `1.5Gi`, `1e3`, `128974848`) in milli-units, rounded up
/// as apimachinery's `MilliValue`; `None` when it is not one.
pub fn parse_quantity(s: &str) -> Option<i64> {
    pea_quantity::milli_value(s).ok()
}

/// Milli-units back to a quantity string (`500m`, `4`).
pub fn format_quantity(milli: i64) -> String {
    if milli % 1000 == 0 {
        (milli / 1000).to_string()
    } else {
        format!("{milli}m")
    }
}

fn add(into: &mut Resources, from: &Resources) {
    for (k, v) in from {
        *into.entry(k.clone()).or_default() += v;
    }
}

fn resource_list(v: &Value) -> Resources {
    v.as_object()
        .into_iter()
        .flatten()
        .filter_map(|(k, q)| Some((k.clone(), parse_quantity(q.as_str()?)?)))
        .collect()
}

/// A pod spec's requests as the scheduler counts them: the containers' requests summed (a
/// container's limits stand in for requests it does not set, as the API server defaults them),
/// the larger of that and each init container's, plus `overhead`.
pub fn pod_requests(spec: &Value) -> Resources {
    let requests = |c: &Value| {
        let mut r = resource_list(&c["resources"]["limits"]);
        r.extend(resource_list(&c["resources"]["requests"]));
        r
    };
    let mut sum = Resources::new();
    for c in spec["containers"].as_array().into_iter().flatten() {
        add(&mut sum, &requests(c));
    }
    for c in spec["initContainers"].as_array().into_iter().flatten() {
        for (k, v) in requests(c) {
            let e = sum.entry(k).or_default();
            *e = (*e).max(v);
        }
    }
    add(&mut sum, &resource_list(&spec["overhead"]));
    sum
}

/// The replica requirements of a template: its pod template's requests, `None` for a kind
/// without `spec.template.spec`.
pub fn replica_requirements(template: &Value) -> Option<Resources> {
    let spec = &template["spec"]["template"]["spec"];
    spec.is_object().then(|| pod_requests(spec))
}

/// The summary of a member's Nodes and Pods (as JSON, as listed).
pub fn summarize(nodes: &[Value], pods: &[Value]) -> Summary {
    let mut s = Summary::default();
    for n in nodes {
        add(
            &mut s.allocatable,
            &resource_list(&n["status"]["allocatable"]),
        );
    }
    for p in pods {
        let phase = p["status"]["phase"].as_str().unwrap_or_default();
        if phase == "Succeeded" || phase == "Failed" {
            continue;
        }
        let mut r = pod_requests(&p["spec"]);
        r.insert("pods".into(), 1000);
        let bound = p["spec"]["nodeName"]
            .as_str()
            .is_some_and(|n| !n.is_empty());
        add(
            if bound {
                &mut s.allocated
            } else {
                &mut s.allocating
            },
            &r,
        );
    }
    s
}

impl Summary {
    /// The summary a Cluster's `status.resourceSummary` holds (a Pull cluster's agent writes
    /// it); `None` when there is none.
    pub fn from_json(v: &Value) -> Option<Self> {
        v.as_object()?;
        Some(Self {
            allocatable: resource_list(&v["allocatable"]),
            allocated: resource_list(&v["allocated"]),
            allocating: resource_list(&v["allocating"]),
        })
    }

    /// Karmada's shape: three resource lists of quantity strings.
    pub fn to_json(&self) -> Value {
        let list = |r: &Resources| -> Value {
            r.iter()
                .map(|(k, v)| (k.clone(), json!(format_quantity(*v))))
                .collect::<serde_json::Map<_, _>>()
                .into()
        };
        json!({"allocatable": list(&self.allocatable), "allocated": list(&self.allocated),
            "allocating": list(&self.allocating)})
    }

    fn free(&self, resource: &str) -> i64 {
        self.allocatable.get(resource).copied().unwrap_or(0)
            - self.allocated.get(resource).copied().unwrap_or(0)
            - self.allocating.get(resource).copied().unwrap_or(0)
    }
}

/// How many replicas with `requirements` (per pod) fit in the member (Karmada's general
/// estimator over the resource summary).
pub fn max_replicas(summary: Option<&Summary>, requirements: Option<&Resources>) -> i64 {
    let Some(s) = summary else {
        return 0;
    };
    let pods = s.free("pods") / 1000;
    if pods <= 0 {
        return 0;
    }
    let mut max = pods;
    for (k, &want) in requirements.into_iter().flatten() {
        if want <= 0 || k == "pods" {
            continue;
        }
        if !s.allocatable.contains_key(k) {
            return 0;
        }
        let free = s.free(k);
        if free <= 0 {
            return 0;
        }
        max = max.min(free / want);
    }
    max
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities() {
        assert_eq!(parse_quantity("500m"), Some(500));
        assert_eq!(parse_quantity("2"), Some(2000));
        assert_eq!(parse_quantity("1.5"), Some(1500));
        assert_eq!(parse_quantity("1Gi"), Some(1000 << 30));
        assert_eq!(parse_quantity("1e3"), Some(1_000_000));
        assert_eq!(parse_quantity("0.1m"), Some(1));
        assert_eq!(parse_quantity("12x"), None);
        assert_eq!(parse_quantity(""), None);
        assert_eq!(format_quantity(4000), "4");
        assert_eq!(format_quantity(500), "500m");
    }

    #[test]
    fn summary_and_estimate() {
        let nodes = vec![
            json!({"status": {"allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"}}}),
            json!({"status": {"allocatable": {"cpu": "2", "memory": "4Gi", "pods": "110"}}}),
        ];
        let pods = vec![
            json!({"spec": {"nodeName": "n1", "containers": [{"resources": {"requests": {"cpu": "1"}}}]},
                "status": {"phase": "Running"}}),
            json!({"spec": {"containers": [{"resources": {"limits": {"cpu": "500m", "memory": "1Gi"}}}]},
                "status": {"phase": "Pending"}}),
            json!({"spec": {"nodeName": "n1", "containers": [{"resources": {"requests": {"cpu": "3"}}}]},
                "status": {"phase": "Succeeded"}}),
        ];
        let s = summarize(&nodes, &pods);
        assert_eq!(s.allocatable["cpu"], 6000);
        assert_eq!(s.allocated["cpu"], 1000);
        assert_eq!(s.allocating["cpu"], 500);
        assert_eq!(s.allocating["pods"], 1000);
        assert_eq!(
            s.to_json()["allocatable"],
            json!({"cpu": "6", "memory": "12884901888", "pods": "220"})
        );
        // 4.5 CPUs free: four 1-CPU pods; memory caps 3Gi pods at 3 (11Gi free).
        let one_cpu = Resources::from([("cpu".into(), 1000)]);
        assert_eq!(max_replicas(Some(&s), Some(&one_cpu)), 4);
        let big = Resources::from([("memory".into(), 3000 << 30)]);
        assert_eq!(max_replicas(Some(&s), Some(&big)), 3);
        let gpu = Resources::from([("nvidia.com/gpu".into(), 1000)]);
        assert_eq!(max_replicas(Some(&s), Some(&gpu)), 0);
        assert_eq!(max_replicas(Some(&s), None), 218);
        assert_eq!(max_replicas(None, None), 0);
        let t = json!({"spec": {"template": {"spec": {
            "initContainers": [{"resources": {"requests": {"cpu": "2"}}}],
            "containers": [{"resources": {"requests": {"cpu": "250m"}}}, {"resources": {"requests": {"cpu": "250m", "memory": "64Mi"}}}]}}}});
        assert_eq!(
            replica_requirements(&t).unwrap(),
            Resources::from([("cpu".into(), 2000), ("memory".into(), 64000 << 20)])
        );
        assert_eq!(replica_requirements(&json!({"data": {}})), None);
    }
}
