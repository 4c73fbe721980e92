//! Resource arithmetic the way kube-scheduler counts it: a pod's effective requests (regular
//! containers plus sidecars, against the largest init-container step, plus overhead) and the
//! "non-zero" variant scoring uses (a container without a cpu or memory request counts as
//! 100m / 200Mi, so many request-less pods do not pile onto one node).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, Pod};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use crate::quantity;

/// kube-scheduler's `DefaultMilliCPURequest`.
pub const DEFAULT_MILLI_CPU_REQUEST: i64 = 100;
/// kube-scheduler's `DefaultMemoryRequest` (200 MiB).
pub const DEFAULT_MEMORY_REQUEST: i64 = 200 * 1024 * 1024;

/// Compute resources as integers: cpu in millicores, the rest in units.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resource {
    pub milli_cpu: i64,
    pub memory: i64,
    pub ephemeral_storage: i64,
    pub allowed_pod_number: i64,
    /// Extended resources, hugepages and other scalar resources by name.
    pub scalar: BTreeMap<String, i64>,
}

/// Whether kube treats `name` as a scalar resource (extended, prefixed native, hugepages,
/// attachable volumes) rather than ignoring it.
pub fn is_scalar_resource_name(name: &str) -> bool {
    name.contains('/') && !name.starts_with("requests.")
        || name.starts_with("hugepages-")
        || name.starts_with("attachable-volumes-")
}

impl Resource {
    /// Builds a resource from a ResourceList; unparsable quantities count as zero (the API
    /// server validates them; a scheduler must not wedge on one bad object).
    pub fn from_list(list: Option<&BTreeMap<String, Quantity>>) -> Self {
        let mut r = Resource::default();
        r.add_list(list);
        r
    }

    pub fn add_list(&mut self, list: Option<&BTreeMap<String, Quantity>>) {
        for (name, q) in list.into_iter().flatten() {
            match name.as_str() {
                "cpu" => self.milli_cpu += quantity::milli_value(&q.0).unwrap_or(0),
                "memory" => self.memory += quantity::value(&q.0).unwrap_or(0),
                "pods" => self.allowed_pod_number += quantity::value(&q.0).unwrap_or(0),
                "ephemeral-storage" => self.ephemeral_storage += quantity::value(&q.0).unwrap_or(0),
                n if is_scalar_resource_name(n) => {
                    *self.scalar.entry(n.to_string()).or_default() +=
                        quantity::value(&q.0).unwrap_or(0)
                }
                _ => {}
            }
        }
    }

    pub fn add(&mut self, other: &Resource) {
        self.milli_cpu += other.milli_cpu;
        self.memory += other.memory;
        self.ephemeral_storage += other.ephemeral_storage;
        self.allowed_pod_number += other.allowed_pod_number;
        for (k, v) in &other.scalar {
            *self.scalar.entry(k.clone()).or_default() += v;
        }
    }

    pub fn sub(&mut self, other: &Resource) {
        self.milli_cpu -= other.milli_cpu;
        self.memory -= other.memory;
        self.ephemeral_storage -= other.ephemeral_storage;
        self.allowed_pod_number -= other.allowed_pod_number;
        for (k, v) in &other.scalar {
            *self.scalar.entry(k.clone()).or_default() -= v;
        }
    }

    /// Takes the larger value of each resource.
    pub fn set_max(&mut self, other: &Resource) {
        self.milli_cpu = self.milli_cpu.max(other.milli_cpu);
        self.memory = self.memory.max(other.memory);
        self.ephemeral_storage = self.ephemeral_storage.max(other.ephemeral_storage);
        for (k, v) in &other.scalar {
            let e = self.scalar.entry(k.clone()).or_default();
            *e = (*e).max(*v);
        }
    }

    /// Whether no resource at all is requested (then only the pod count is checked).
    pub fn is_zero(&self) -> bool {
        self.milli_cpu == 0
            && self.memory == 0
            && self.ephemeral_storage == 0
            && self.scalar.values().all(|v| *v == 0)
    }
}

fn container_requests(c: &Container, non_zero: bool) -> Resource {
    let list = c.resources.as_ref().and_then(|r| r.requests.as_ref());
    let mut r = Resource::from_list(list);
    if non_zero {
        // Only a missing request gets the default; an explicit zero stays zero (as kube).
        if !list.is_some_and(|l| l.contains_key("cpu")) {
            r.milli_cpu = DEFAULT_MILLI_CPU_REQUEST;
        }
        if !list.is_some_and(|l| l.contains_key("memory")) {
            r.memory = DEFAULT_MEMORY_REQUEST;
        }
    }
    r
}

/// A pod's effective requests: max(sum of regular containers and sidecars, the largest init
/// step — an init container plus the sidecars started before it), plus `spec.overhead`.
/// `non_zero` applies the scoring defaults to containers without cpu/memory requests.
pub fn pod_requests(pod: &Pod, non_zero: bool) -> Resource {
    let mut reqs = Resource::default();
    let Some(spec) = pod.spec.as_ref() else {
        return reqs;
    };
    for c in &spec.containers {
        reqs.add(&container_requests(c, non_zero));
    }
    let mut sidecars = Resource::default();
    let mut init_max = Resource::default();
    for c in spec.init_containers.iter().flatten() {
        let mut step = container_requests(c, non_zero);
        if c.restart_policy.as_deref() == Some("Always") {
            // A sidecar keeps running beside everything after it.
            reqs.add(&step);
            sidecars.add(&step);
            step = sidecars.clone();
        } else {
            step.add(&sidecars);
        }
        init_max.set_max(&step);
    }
    reqs.set_max(&init_max);
    if let Some(o) = spec.overhead.as_ref() {
        reqs.add_list(Some(o));
    }
    reqs
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn pod(v: serde_json::Value) -> Pod {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn init_containers_count_as_their_largest_step() {
        // regular: 100m + 200m = 300m, 1Gi; init: 500m/512Mi then 100m/2Gi; overhead 10m/1Mi.
        let p = pod(json!({"spec": {
            "containers": [
                {"name": "a", "resources": {"requests": {"cpu": "100m", "memory": "512Mi"}}},
                {"name": "b", "resources": {"requests": {"cpu": "200m", "memory": "512Mi"}}}],
            "initContainers": [
                {"name": "i1", "resources": {"requests": {"cpu": "500m", "memory": "512Mi"}}},
                {"name": "i2", "resources": {"requests": {"cpu": "100m", "memory": "2Gi"}}}],
            "overhead": {"cpu": "10m", "memory": "1Mi"}}}));
        let r = pod_requests(&p, false);
        assert_eq!(r.milli_cpu, 510);
        assert_eq!(r.memory, (2 << 30) + (1 << 20));
    }

    #[test]
    fn sidecars_add_to_regular_and_to_later_init_steps() {
        // sidecar 100m runs with everything; init after it: 300m + 100m = 400m; regular 200m +
        // sidecar 100m = 300m; max = 400m.
        let p = pod(json!({"spec": {
            "containers": [{"name": "a", "resources": {"requests": {"cpu": "200m"}}}],
            "initContainers": [
                {"name": "s", "restartPolicy": "Always", "resources": {"requests": {"cpu": "100m"}}},
                {"name": "i", "resources": {"requests": {"cpu": "300m"}}}]}}));
        assert_eq!(pod_requests(&p, false).milli_cpu, 400);
        // an init container before the sidecar does not see it: 350m alone vs 200+100.
        let p = pod(json!({"spec": {
            "containers": [{"name": "a", "resources": {"requests": {"cpu": "200m"}}}],
            "initContainers": [
                {"name": "i", "resources": {"requests": {"cpu": "350m"}}},
                {"name": "s", "restartPolicy": "Always", "resources": {"requests": {"cpu": "100m"}}}]}}));
        assert_eq!(pod_requests(&p, false).milli_cpu, 350);
    }

    #[test]
    fn non_zero_defaults_only_missing_requests() {
        let p = pod(json!({"spec": {"containers": [
            {"name": "a"},
            {"name": "b", "resources": {"requests": {"cpu": "0", "memory": "1Gi"}}}]}}));
        let r = pod_requests(&p, true);
        assert_eq!(r.milli_cpu, 100, "explicit zero stays zero");
        assert_eq!(r.memory, DEFAULT_MEMORY_REQUEST + (1 << 30));
        let r = pod_requests(&p, false);
        assert_eq!((r.milli_cpu, r.memory), (0, 1 << 30));
    }

    #[test]
    fn scalar_resources_are_kept_and_others_ignored() {
        let r = Resource::from_list(Some(&BTreeMap::from([
            ("example.com/gpu".to_string(), Quantity("2".into())),
            ("hugepages-2Mi".to_string(), Quantity("4Mi".into())),
            ("bogus".to_string(), Quantity("1".into())),
            ("pods".to_string(), Quantity("110".into())),
        ])));
        assert_eq!(r.scalar.get("example.com/gpu"), Some(&2));
        assert_eq!(r.scalar.get("hugepages-2Mi"), Some(&(4 << 20)));
        assert!(!r.scalar.contains_key("bogus"));
        assert_eq!(r.allowed_pod_number, 110);
    }
}
