//! What kube's `DefaultSelector` reads for PodTopologySpread's system default constraints:
//! the selectors of Services, ReplicationControllers, ReplicaSets and StatefulSets, kept by
//! informers in [`crate::cache::ClusterState`]. A pod with no spread constraints of its own is
//! spread, softly, among the pods its Services and its controller select. Pure data.

use std::collections::{BTreeMap, HashMap, HashSet};

use k8s_openapi::api::apps::v1::{ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::{Pod, ReplicationController, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};

use crate::cache::ClusterState;
use crate::informer::Cached;
use crate::queue::ClusterEvent;

type Labels = BTreeMap<String, String>;

/// Selectors by namespace, then name.
#[derive(Debug, Default)]
pub struct SpreadSources {
    services: HashMap<String, HashMap<String, Labels>>,
    replication_controllers: HashMap<String, HashMap<String, Labels>>,
    replica_sets: HashMap<String, HashMap<String, LabelSelector>>,
    stateful_sets: HashMap<String, HashMap<String, LabelSelector>>,
}

/// A LabelSelector's requirements as expressions (matchLabels as `In [value]`), so that they
/// add to a selector instead of overwriting its labels (kube's `selector.Add(r...)`).
fn requirements(sel: &LabelSelector) -> Vec<LabelSelectorRequirement> {
    let mut out: Vec<LabelSelectorRequirement> = sel
        .match_labels
        .iter()
        .flatten()
        .map(|(k, v)| LabelSelectorRequirement {
            key: k.clone(),
            operator: "In".into(),
            values: Some(vec![v.clone()]),
        })
        .collect();
    out.extend(sel.match_expressions.iter().flatten().cloned());
    out
}

impl SpreadSources {
    /// kube's DefaultSelector: the labels of every Service in the pod's namespace whose
    /// (non-empty) selector matches the pod, merged with its ReplicationController's selector,
    /// plus the requirements of its ReplicaSet's or StatefulSet's selector (the controller
    /// found by its owner reference). None when that selects nothing in particular.
    pub fn default_selector(&self, pod: &Pod) -> Option<LabelSelector> {
        let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
        let empty = Labels::new();
        let labels = pod.metadata.labels.as_ref().unwrap_or(&empty);
        let mut set = Labels::new();
        for sel in self.services.get(ns).into_iter().flat_map(HashMap::values) {
            if !sel.is_empty() && sel.iter().all(|(k, v)| labels.get(k) == Some(v)) {
                set.extend(sel.iter().map(|(k, v)| (k.clone(), v.clone())));
            }
        }
        let mut exprs = Vec::new();
        let owner = pod
            .metadata
            .owner_references
            .iter()
            .flatten()
            .find(|r| r.controller == Some(true));
        if let Some(o) = owner {
            let by_name = |m: &HashMap<String, HashMap<String, LabelSelector>>| {
                m.get(ns).and_then(|s| s.get(&o.name)).map(requirements)
            };
            match (o.api_version.as_str(), o.kind.as_str()) {
                ("v1", "ReplicationController") => {
                    if let Some(sel) = self
                        .replication_controllers
                        .get(ns)
                        .and_then(|s| s.get(&o.name))
                    {
                        set.extend(sel.iter().map(|(k, v)| (k.clone(), v.clone())));
                    }
                }
                ("apps/v1", "ReplicaSet") => {
                    exprs = by_name(&self.replica_sets).unwrap_or_default()
                }
                ("apps/v1", "StatefulSet") => {
                    exprs = by_name(&self.stateful_sets).unwrap_or_default()
                }
                _ => {}
            }
        }
        if set.is_empty() && exprs.is_empty() {
            return None;
        }
        Some(LabelSelector {
            match_labels: (!set.is_empty()).then_some(set),
            match_expressions: (!exprs.is_empty()).then_some(exprs),
        })
    }
}

fn ns_name(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> (String, String) {
    (
        meta.namespace.clone().unwrap_or_default(),
        meta.name.clone().unwrap_or_default(),
    )
}

fn retain<T>(m: &mut HashMap<String, HashMap<String, T>>, keep: &HashSet<String>) {
    for (ns, by_name) in m.iter_mut() {
        by_name.retain(|name, _| keep.contains(&format!("{ns}/{name}")));
    }
    m.retain(|_, by_name| !by_name.is_empty());
}

fn remove<T>(m: &mut HashMap<String, HashMap<String, T>>, ns: &str, name: &str) {
    if let Some(by_name) = m.get_mut(ns) {
        by_name.remove(name);
        if by_name.is_empty() {
            m.remove(ns);
        }
    }
}

/// One source kind: where its selector lives in [`SpreadSources`].
macro_rules! spread_source {
    ($kind:ty, $field:ident, $selector:expr) => {
        impl Cached for $kind {
            // Scoring only: no pod waits on these.
            const EVENT: Option<ClusterEvent> = None;
            fn cache_key(&self) -> String {
                let (ns, name) = ns_name(&self.metadata);
                format!("{ns}/{name}")
            }
            fn upsert(self, cache: &mut ClusterState) {
                let (ns, name) = ns_name(&self.metadata);
                #[allow(clippy::redundant_closure_call)]
                match ($selector)(self) {
                    Some(sel) => {
                        cache.spread.$field.entry(ns).or_default().insert(name, sel);
                    }
                    None => remove(&mut cache.spread.$field, &ns, &name),
                }
            }
            fn remove(&self, cache: &mut ClusterState) {
                let (ns, name) = ns_name(&self.metadata);
                remove(&mut cache.spread.$field, &ns, &name);
            }
            fn retain(cache: &mut ClusterState, keep: &HashSet<String>) {
                retain(&mut cache.spread.$field, keep);
            }
        }
    };
}

// A Service with no selector selects nothing (kube's GetPodServices skips it).
spread_source!(Service, services, |s: Service| s
    .spec
    .and_then(|s| s.selector));
spread_source!(
    ReplicationController,
    replication_controllers,
    |r: ReplicationController| { r.spec.and_then(|s| s.selector) }
);
spread_source!(ReplicaSet, replica_sets, |r: ReplicaSet| r
    .spec
    .map(|s| s.selector));
spread_source!(StatefulSet, stateful_sets, |r: StatefulSet| r
    .spec
    .map(|s| s.selector));

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn obj<T: serde::de::DeserializeOwned>(v: serde_json::Value) -> T {
        serde_json::from_value(v).unwrap()
    }

    fn pod(labels: serde_json::Value, owner: Option<(&str, &str, &str)>) -> Pod {
        let owners = owner.map(|(api, kind, name)| {
            json!([{"apiVersion": api, "kind": kind, "name": name, "uid": "u", "controller": true}])
        });
        obj(
            json!({"metadata": {"name": "p", "namespace": "default", "labels": labels,
            "ownerReferences": owners}}),
        )
    }

    fn cache() -> ClusterState {
        let mut c = ClusterState::default();
        obj::<Service>(json!({"metadata": {"name": "web", "namespace": "default"},
            "spec": {"selector": {"app": "web"}}}))
        .upsert(&mut c);
        obj::<Service>(json!({"metadata": {"name": "all", "namespace": "default"},
            "spec": {"selector": {}}}))
        .upsert(&mut c);
        obj::<Service>(
            json!({"metadata": {"name": "elsewhere", "namespace": "other"},
            "spec": {"selector": {"tier": "x"}}}),
        )
        .upsert(&mut c);
        obj::<ReplicaSet>(
            json!({"metadata": {"name": "web-1", "namespace": "default"},
            "spec": {"selector": {"matchLabels": {"app": "web", "hash": "1"}}, "template": {}}}),
        )
        .upsert(&mut c);
        c
    }

    #[test]
    fn services_and_the_controllers_selector_make_the_default_selector() {
        let c = cache();
        let sel = c
            .spread
            .default_selector(&pod(
                json!({"app": "web", "hash": "1", "tier": "x"}),
                Some(("apps/v1", "ReplicaSet", "web-1")),
            ))
            .unwrap();
        assert_eq!(
            sel.match_labels,
            Some([("app".into(), "web".into())].into())
        );
        let exprs = sel.match_expressions.unwrap();
        assert_eq!(exprs.len(), 2);
        assert!(exprs
            .iter()
            .any(|e| e.key == "hash" && e.operator == "In" && e.values == Some(vec!["1".into()])));
    }

    #[test]
    fn a_pod_nothing_selects_gets_no_default_constraints() {
        let c = cache();
        // Only the empty-selector Service "selects" it, and another namespace's does not count.
        assert_eq!(
            c.spread.default_selector(&pod(json!({"tier": "x"}), None)),
            None
        );
        // An owner kind DefaultSelector does not know, or a ReplicaSet not (yet) cached.
        assert_eq!(
            c.spread
                .default_selector(&pod(json!({}), Some(("batch/v1", "Job", "j")))),
            None
        );
        assert_eq!(
            c.spread
                .default_selector(&pod(json!({}), Some(("apps/v1", "ReplicaSet", "gone")))),
            None
        );
    }

    #[test]
    fn a_removed_or_relisted_source_is_forgotten() {
        let mut c = cache();
        let web = pod(json!({"app": "web"}), None);
        assert!(c.spread.default_selector(&web).is_some());
        Service::retain(&mut c, &["default/all".to_string()].into());
        assert_eq!(c.spread.default_selector(&web), None);
        let rs: ReplicaSet = obj(
            json!({"metadata": {"name": "web-1", "namespace": "default"},
            "spec": {"selector": {"matchLabels": {"app": "web"}}, "template": {}}}),
        );
        let owned = pod(
            json!({"app": "web"}),
            Some(("apps/v1", "ReplicaSet", "web-1")),
        );
        assert!(c.spread.default_selector(&owned).is_some());
        rs.remove(&mut c);
        assert_eq!(c.spread.default_selector(&owned), None);
    }
}
