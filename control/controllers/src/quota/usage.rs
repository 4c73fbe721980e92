//! What one object costs against a ResourceQuota: kube's quota evaluators (pods, services,
//! persistentvolumeclaims, and the object count of any other resource), over the object's
//! JSON so the API server's admission and the resourcequota controller share them.

use std::collections::BTreeMap;
use std::time::SystemTime;

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::quantity::Qty;

/// Resource name → quantity (kube's `ResourceList`), sorted as Go prints it.
pub type Usage = BTreeMap<String, Qty>;

/// A served resource: its group ("" for core) and plural.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupResource<'a> {
    pub group: &'a str,
    pub plural: &'a str,
}

impl GroupResource<'_> {
    /// `count/pods`, `count/deployments.apps`: the object-count resource name.
    pub fn count_name(&self) -> String {
        if self.group.is_empty() {
            format!("count/{}", self.plural)
        } else {
            format!("count/{}.{}", self.plural, self.group)
        }
    }

    /// The pre-`count/` names core kinds are also counted by.
    fn legacy_count_name(&self) -> Option<&'static str> {
        if !self.group.is_empty() {
            return None;
        }
        Some(match self.plural {
            "pods" => "pods",
            "services" => "services",
            "persistentvolumeclaims" => "persistentvolumeclaims",
            "configmaps" => "configmaps",
            "secrets" => "secrets",
            "replicationcontrollers" => "replicationcontrollers",
            "resourcequotas" => "resourcequotas",
            _ => return None,
        })
    }
}

/// Per-storage-class resource names: `<class>.storageclass.storage.k8s.io/requests.storage`.
pub const STORAGE_CLASS_SUFFIX: &str = ".storageclass.storage.k8s.io/";

/// Compute resources of pods (requests, limits and the bare request names).
const POD_COMPUTE: [&str; 9] = [
    "cpu",
    "memory",
    "ephemeral-storage",
    "requests.cpu",
    "requests.memory",
    "requests.ephemeral-storage",
    "limits.cpu",
    "limits.memory",
    "limits.ephemeral-storage",
];

/// Whether the evaluator of `gr` can count the resource `name` (kube's `MatchingResources`).
pub fn covers(gr: GroupResource<'_>, name: &str) -> bool {
    if name == gr.count_name() || gr.legacy_count_name() == Some(name) {
        return true;
    }
    match (gr.group, gr.plural) {
        ("", "pods") => {
            POD_COMPUTE.contains(&name)
                || name.starts_with("hugepages-")
                || name.starts_with("requests.")
                || name.starts_with("limits.hugepages-")
        }
        ("", "services") => matches!(name, "services.nodeports" | "services.loadbalancers"),
        ("", "persistentvolumeclaims") => {
            name == "requests.storage"
                || name.split_once(STORAGE_CLASS_SUFFIX).is_some_and(|(c, r)| {
                    !c.is_empty() && matches!(r, "requests.storage" | "persistentvolumeclaims")
                })
        }
        _ => false,
    }
}

/// What `obj` (a `gr` object) uses, at `now` (kube's `Usage`).
pub fn usage(gr: GroupResource<'_>, obj: &Value, now: SystemTime) -> Usage {
    let mut out = Usage::new();
    let one = Qty::parse("1").unwrap_or_default();
    out.insert(gr.count_name(), one);
    match (gr.group, gr.plural) {
        ("", "pods") => {
            // `count/pods` counts every stored pod; `pods` and compute only live ones.
            if counts_against_quota(obj, now) {
                pod_compute_usage(obj, &mut out);
            }
        }
        ("", "services") => {
            out.insert("services".into(), one);
            let ports = obj
                .pointer("/spec/ports")
                .and_then(Value::as_array)
                .map_or(0, Vec::len);
            let (node_ports, lbs) = match obj.pointer("/spec/type").and_then(Value::as_str) {
                Some("NodePort") => (ports, 0),
                Some("LoadBalancer") => {
                    let allocate = obj
                        .pointer("/spec/allocateLoadBalancerNodePorts")
                        .and_then(Value::as_bool)
                        .unwrap_or(true);
                    let with_node_port = obj
                        .pointer("/spec/ports")
                        .and_then(Value::as_array)
                        .map_or(0, |p| {
                            p.iter()
                                .filter(|p| p["nodePort"].as_i64().unwrap_or(0) != 0)
                                .count()
                        });
                    (if allocate { ports } else { with_node_port }, 1)
                }
                _ => (0, 0),
            };
            out.insert("services.nodeports".into(), count(node_ports));
            out.insert("services.loadbalancers".into(), count(lbs));
        }
        ("", "persistentvolumeclaims") => {
            out.insert("persistentvolumeclaims".into(), one);
            let class = claim_class(obj);
            if !class.is_empty() {
                out.insert(
                    format!("{class}{STORAGE_CLASS_SUFFIX}persistentvolumeclaims"),
                    one,
                );
            }
            // The larger of what is asked and what was allocated (an expansion in flight).
            let requested = obj
                .pointer("/spec/resources/requests/storage")
                .and_then(Qty::from_json);
            let allocated = obj
                .pointer("/status/allocatedResources/storage")
                .and_then(Qty::from_json);
            let storage = match (requested, allocated) {
                (Some(r), Some(a)) if a.nano > r.nano => Some(a),
                (Some(r), _) => Some(r),
                (None, a) => a,
            };
            if let Some(s) = storage {
                out.insert("requests.storage".into(), s);
                if !class.is_empty() {
                    out.insert(format!("{class}{STORAGE_CLASS_SUFFIX}requests.storage"), s);
                }
            }
        }
        _ => {
            if let Some(legacy) = gr.legacy_count_name() {
                out.insert(legacy.into(), one);
            }
        }
    }
    out
}

fn count(n: usize) -> Qty {
    Qty {
        nano: n as i128 * 1_000_000_000,
        binary: false,
    }
}

/// The claim's class: the beta annotation wins over the field, as kube's helper.
fn claim_class(obj: &Value) -> String {
    obj.pointer("/metadata/annotations/volume.beta.kubernetes.io~1storage-class")
        .or_else(|| obj.pointer("/spec/storageClassName"))
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string()
}

/// kube's `QuotaV1Pod`: terminal pods, and pods stuck terminating past their grace period,
/// are not charged.
pub fn counts_against_quota(pod: &Value, now: SystemTime) -> bool {
    let now = DateTime::<Utc>::from(now);
    if matches!(
        pod.pointer("/status/phase").and_then(Value::as_str),
        Some("Succeeded" | "Failed")
    ) {
        return false;
    }
    let deleted = pod
        .pointer("/metadata/deletionTimestamp")
        .and_then(Value::as_str)
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok());
    let grace = pod
        .pointer("/metadata/deletionGracePeriodSeconds")
        .and_then(Value::as_i64);
    if let (Some(at), Some(grace)) = (deleted, grace) {
        if now > at.with_timezone(&Utc) + chrono::Duration::seconds(grace) {
            return false;
        }
    }
    true
}

/// kube's `podComputeUsageHelper` over the pod's effective requests and limits.
fn pod_compute_usage(pod: &Value, out: &mut Usage) {
    out.insert("pods".into(), Qty::parse("1").unwrap_or_default());
    let requests = pod_resources(pod, "requests");
    let limits = pod_resources(pod, "limits");
    for (r, q) in &requests {
        match r.as_str() {
            "cpu" | "memory" | "ephemeral-storage" => {
                out.insert(r.clone(), *q);
                out.insert(format!("requests.{r}"), *q);
            }
            r if r.starts_with("hugepages-") => {
                out.insert(r.to_string(), *q);
                out.insert(format!("requests.{r}"), *q);
            }
            // Extended resources (a domain-prefixed name) are quota'd as requests.NAME only.
            r if r.contains('/') => {
                out.insert(format!("requests.{r}"), *q);
            }
            _ => {}
        }
    }
    for (r, q) in &limits {
        if matches!(r.as_str(), "cpu" | "memory" | "ephemeral-storage") {
            out.insert(format!("limits.{r}"), *q);
        }
    }
}

/// A pod's effective requests or limits (kube's `PodRequests`/`PodLimits`): the containers'
/// sum plus sidecars (restartable init containers), at least any one-shot init container
/// (with the sidecars started before it), plus the pod's overhead.
pub fn pod_resources(pod: &Value, field: &str) -> Usage {
    let of = |c: &Value| -> Usage {
        c.pointer(&format!("/resources/{field}"))
            .and_then(Value::as_object)
            .map(|m| {
                m.iter()
                    .filter_map(|(k, v)| Some((k.clone(), Qty::from_json(v)?)))
                    .collect()
            })
            .unwrap_or_default()
    };
    let spec = &pod["spec"];
    let mut total = Usage::new();
    for c in spec["containers"].as_array().into_iter().flatten() {
        add_into(&mut total, &of(c));
    }
    let mut sidecars = Usage::new();
    let mut init_max = Usage::new();
    for c in spec["initContainers"].as_array().into_iter().flatten() {
        let r = of(c);
        if c["restartPolicy"].as_str() == Some("Always") {
            add_into(&mut sidecars, &r);
            add_into(&mut total, &r);
            max_into(&mut init_max, &sidecars);
        } else {
            let mut with = sidecars.clone();
            add_into(&mut with, &r);
            max_into(&mut init_max, &with);
        }
    }
    max_into(&mut total, &init_max);
    if let Some(overhead) = spec["overhead"].as_object() {
        // Overhead only adds to what the containers set (kube's PodLimits skips unset).
        for (k, v) in overhead {
            if let Some(q) = Qty::from_json(v) {
                if field == "requests" || total.contains_key(k) {
                    let e = total.entry(k.clone()).or_insert(Qty::ZERO);
                    *e = *e + q;
                }
            }
        }
    }
    total
}

/// `into += other`, name by name.
pub fn add_into(into: &mut Usage, other: &Usage) {
    for (k, v) in other {
        let e = into.entry(k.clone()).or_insert(Qty::ZERO);
        *e = *e + *v;
    }
}

fn max_into(into: &mut Usage, other: &Usage) {
    for (k, v) in other {
        match into.get_mut(k) {
            Some(e) if e.nano >= v.nano => {}
            Some(e) => *e = *v,
            None => {
                into.insert(k.clone(), *v);
            }
        }
    }
}

/// kube's BestEffort QoS: no container sets a non-zero cpu or memory request or limit.
pub fn is_best_effort(pod: &Value) -> bool {
    let spec = &pod["spec"];
    !["containers", "initContainers"]
        .into_iter()
        .flat_map(|l| spec[l].as_array().into_iter().flatten())
        .any(|c| {
            ["requests", "limits"].into_iter().any(|f| {
                ["cpu", "memory"].into_iter().any(|r| {
                    c.pointer(&format!("/resources/{f}/{r}"))
                        .and_then(Qty::from_json)
                        .is_some_and(|q| q.nano != 0)
                })
            })
        })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const PODS: GroupResource = GroupResource {
        group: "",
        plural: "pods",
    };

    fn show(u: &Usage) -> Vec<String> {
        u.iter().map(|(k, v)| format!("{k}={v}")).collect()
    }

    #[test]
    fn pods_count_requests_limits_and_init_containers() {
        let pod = json!({"metadata": {"name": "p"}, "spec": {
            "initContainers": [
                {"name": "i", "resources": {"requests": {"cpu": "2", "memory": "64Mi"}}},
                {"name": "side", "restartPolicy": "Always", "resources": {"requests": {"cpu": "100m"}}}],
            "containers": [
                {"name": "a", "resources": {"requests": {"cpu": "250m", "memory": "128Mi"},
                                             "limits": {"cpu": "500m", "memory": "128Mi"}}},
                {"name": "b", "resources": {"requests": {"cpu": "250m", "example.com/gpu": "1"}}}]}});
        let u = usage(PODS, &pod, SystemTime::now());
        assert_eq!(
            show(&u),
            [
                "count/pods=1",
                "cpu=2",
                "limits.cpu=500m",
                "limits.memory=128Mi",
                "memory=128Mi",
                "pods=1",
                "requests.cpu=2",
                "requests.example.com/gpu=1",
                "requests.memory=128Mi",
            ]
        );
        // Without the big init container, sidecar and containers add up.
        let mut small = pod.clone();
        small["spec"]["initContainers"][0]["resources"]["requests"]["cpu"] = json!("10m");
        assert_eq!(
            usage(PODS, &small, SystemTime::now())["requests.cpu"].to_string(),
            "600m"
        );
    }

    #[test]
    fn finished_or_long_deleted_pods_cost_only_their_count() {
        let now = Utc::now();
        let pod =
            json!({"spec": {"containers": [{"name": "a"}]}, "status": {"phase": "Succeeded"}});
        assert_eq!(show(&usage(PODS, &pod, now.into())), ["count/pods=1"]);
        let gone = (now - chrono::Duration::seconds(40)).to_rfc3339();
        let stuck = json!({"metadata": {"deletionTimestamp": gone, "deletionGracePeriodSeconds": 30},
            "spec": {"containers": [{"name": "a"}]}});
        assert_eq!(show(&usage(PODS, &stuck, now.into())), ["count/pods=1"]);
        let fresh = json!({"metadata": {"deletionTimestamp": now.to_rfc3339(), "deletionGracePeriodSeconds": 30},
            "spec": {"containers": [{"name": "a"}]}});
        assert_eq!(
            show(&usage(PODS, &fresh, now.into())),
            ["count/pods=1", "pods=1"]
        );
    }

    #[test]
    fn services_claims_and_generic_counts() {
        let svc = GroupResource {
            group: "",
            plural: "services",
        };
        let np = json!({"spec": {"type": "NodePort", "ports": [{"port": 80}, {"port": 443}]}});
        assert_eq!(
            show(&usage(svc, &np, SystemTime::now())),
            [
                "count/services=1",
                "services=1",
                "services.loadbalancers=0",
                "services.nodeports=2"
            ]
        );
        let pvc = GroupResource {
            group: "",
            plural: "persistentvolumeclaims",
        };
        let claim = json!({"spec": {"storageClassName": "fast", "resources": {"requests": {"storage": "1Gi"}}}});
        assert_eq!(
            show(&usage(pvc, &claim, SystemTime::now())),
            [
                "count/persistentvolumeclaims=1",
                "fast.storageclass.storage.k8s.io/persistentvolumeclaims=1",
                "fast.storageclass.storage.k8s.io/requests.storage=1Gi",
                "persistentvolumeclaims=1",
                "requests.storage=1Gi",
            ]
        );
        assert!(covers(
            pvc,
            "fast.storageclass.storage.k8s.io/requests.storage"
        ));
        let deploy = GroupResource {
            group: "apps",
            plural: "deployments",
        };
        assert_eq!(
            show(&usage(deploy, &json!({}), SystemTime::now())),
            ["count/deployments.apps=1"]
        );
        let cm = GroupResource {
            group: "",
            plural: "configmaps",
        };
        assert_eq!(
            show(&usage(cm, &json!({}), SystemTime::now())),
            ["configmaps=1", "count/configmaps=1"]
        );
        assert!(covers(PODS, "limits.memory") && !covers(PODS, "services"));
    }
}
