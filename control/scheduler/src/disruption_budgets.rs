//! PodDisruptionBudgets as preemption reads them (kube's `filterPodsWithPDBViolation`): a
//! victim whose eviction would take a budget below zero "violates" it; preemption reprieves
//! such victims first and prefers the node with the fewest violations. Kept by an informer in
//! [`crate::cache::ClusterState`]. Pure data.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use crate::cache::ClusterState;
use crate::informer::Cached;
use crate::node_info::PodInfo;
use crate::plugins::helpers::selector_matches;
use crate::queue::ClusterEvent;

/// What preemption needs of one budget.
#[derive(Debug, Clone, PartialEq)]
pub struct Budget {
    selector: LabelSelector,
    disruptions_allowed: i32,
    /// Pods the API server already counted as disrupted (not counted again).
    disrupted: HashSet<String>,
}

/// Budgets by namespace, then name.
#[derive(Debug, Default)]
pub struct DisruptionBudgets(HashMap<String, HashMap<String, Budget>>);

impl DisruptionBudgets {
    /// kube's filterPodsWithPDBViolation over `victims` (in the order given): (violating,
    /// non-violating), each keeping that order.
    pub fn split_violating(
        &self,
        victims: Vec<Arc<PodInfo>>,
    ) -> (Vec<Arc<PodInfo>>, Vec<Arc<PodInfo>>) {
        let mut allowed: HashMap<(&str, &str), i32> = HashMap::new();
        let (mut violating, mut fine) = (Vec::new(), Vec::new());
        for v in victims {
            let mut violated = false;
            // A pod without labels matches no budget.
            let labels = v.labels().filter(|l| !l.is_empty());
            let budgets = self
                .0
                .get_key_value(&v.namespace)
                .filter(|_| labels.is_some());
            let budgets = budgets
                .into_iter()
                .flat_map(|(ns, m)| m.iter().map(move |(name, b)| (ns, name, b)));
            for (ns, name, b) in budgets {
                // A budget with an empty selector matches nothing.
                let empty = b
                    .selector
                    .match_labels
                    .as_ref()
                    .is_none_or(|m| m.is_empty())
                    && b.selector
                        .match_expressions
                        .as_ref()
                        .is_none_or(|e| e.is_empty());
                if empty || !selector_matches(Some(&b.selector), labels) {
                    continue;
                }
                if b.disrupted.contains(v.name()) {
                    continue;
                }
                let left = allowed
                    .entry((ns.as_str(), name.as_str()))
                    .or_insert(b.disruptions_allowed);
                *left -= 1;
                if *left < 0 {
                    violated = true;
                }
            }
            if violated {
                violating.push(v);
            } else {
                fine.push(v);
            }
        }
        (violating, fine)
    }
}

impl Cached for PodDisruptionBudget {
    // Preemption only: no pod waits on a budget.
    const EVENT: Option<ClusterEvent> = None;
    fn cache_key(&self) -> String {
        let m = &self.metadata;
        format!(
            "{}/{}",
            m.namespace.as_deref().unwrap_or_default(),
            m.name.as_deref().unwrap_or_default()
        )
    }
    fn upsert(self, cache: &mut ClusterState) {
        let ns = self.metadata.namespace.clone().unwrap_or_default();
        let name = self.metadata.name.clone().unwrap_or_default();
        let status = self.status.unwrap_or_default();
        let budget = Budget {
            selector: self.spec.and_then(|s| s.selector).unwrap_or_default(),
            disruptions_allowed: status.disruptions_allowed,
            disrupted: status
                .disrupted_pods
                .map(|d| d.into_keys().collect())
                .unwrap_or_default(),
        };
        cache.budgets.0.entry(ns).or_default().insert(name, budget);
    }
    fn remove(&self, cache: &mut ClusterState) {
        let ns = self.metadata.namespace.as_deref().unwrap_or_default();
        let name = self.metadata.name.as_deref().unwrap_or_default();
        if let Some(by_name) = cache.budgets.0.get_mut(ns) {
            by_name.remove(name);
        }
    }
    fn retain(cache: &mut ClusterState, keep: &HashSet<String>) {
        for (ns, by_name) in cache.budgets.0.iter_mut() {
            by_name.retain(|name, _| keep.contains(&format!("{ns}/{name}")));
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::testutil::pod_meta;

    fn victim(name: &str, labels: serde_json::Value) -> Arc<PodInfo> {
        Arc::new(pod_meta(
            json!({"name": name, "namespace": "d", "uid": name, "labels": labels}),
            json!({}),
        ))
    }

    fn budget(name: &str, app: &str, allowed: i32, disrupted: &[&str]) -> PodDisruptionBudget {
        let d: serde_json::Map<String, serde_json::Value> = disrupted
            .iter()
            .map(|p| (p.to_string(), json!("2026-01-01T00:00:00Z")))
            .collect();
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "d"},
            "spec": {"selector": {"matchLabels": {"app": app}}},
            "status": {"disruptionsAllowed": allowed, "disruptedPods": d,
                "currentHealthy": 0, "desiredHealthy": 0, "expectedPods": 0}}))
        .unwrap()
    }

    #[test]
    fn victims_past_their_budget_violate_it() {
        let mut c = ClusterState::default();
        budget("web", "web", 1, &["web-2"]).upsert(&mut c);
        let v = vec![
            victim("web-0", json!({"app": "web"})),
            victim("web-1", json!({"app": "web"})),
            victim("web-2", json!({"app": "web"})),
            victim("db-0", json!({"app": "db"})),
            victim("bare", json!({})),
        ];
        let (bad, ok) = c.budgets.split_violating(v);
        let names = |v: &[Arc<PodInfo>]| v.iter().map(|p| p.name().to_string()).collect::<Vec<_>>();
        // web-0 takes the one allowed disruption; web-1 goes below zero; web-2 was already
        // counted by the API server.
        assert_eq!(names(&bad), ["web-1"]);
        assert_eq!(names(&ok), ["web-0", "web-2", "db-0", "bare"]);
        budget("web", "web", 1, &["web-2"]).remove(&mut c);
        let (bad, _) = c.budgets.split_violating(vec![
            victim("web-0", json!({"app": "web"})),
            victim("web-1", json!({"app": "web"})),
        ]);
        assert!(bad.is_empty());
    }
}
