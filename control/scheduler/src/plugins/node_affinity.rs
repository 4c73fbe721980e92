//! NodeAffinity: the filter (`spec.nodeSelector` and required node affinity terms — any term
//! may match, all of a term's expressions must) and the score (sum of the weights of the
//! matching preferred terms, normalised so the best node gets 100).

use k8s_openapi::api::core::v1::{NodeAffinity as ApiNodeAffinity, PodSpec};

use super::helpers::term_matches;
use crate::cache::ClusterState;
use crate::framework::{
    default_normalize, Code, CycleState, FilterPlugin, ScorePlugin, Status, MAX_NODE_SCORE,
};
use crate::node_info::{NodeInfo, PodInfo};

pub const NAME: &str = "NodeAffinity";
pub const REASON: &str = "node(s) didn't match Pod's node affinity/selector";

#[derive(Debug, Default)]
pub struct NodeAffinity;

fn node_affinity(spec: &PodSpec) -> Option<&ApiNodeAffinity> {
    spec.affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
}

/// Whether the node satisfies the pod's nodeSelector and required node affinity.
pub fn required_matches(pod: &PodInfo, node: &NodeInfo) -> bool {
    let Some(spec) = pod.pod.spec.as_ref() else {
        return true;
    };
    let labels = node.labels();
    for (k, v) in spec.node_selector.iter().flatten() {
        if labels.and_then(|l| l.get(k)) != Some(v) {
            return false;
        }
    }
    match node_affinity(spec).and_then(|a| {
        a.required_during_scheduling_ignored_during_execution
            .as_ref()
    }) {
        Some(sel) => sel
            .node_selector_terms
            .iter()
            .any(|t| term_matches(t, &node.name, labels)),
        None => true,
    }
}

impl FilterPlugin for NodeAffinity {
    fn name(&self) -> &'static str {
        NAME
    }

    fn pre_filter(&self, pod: &PodInfo, _: &ClusterState, _: &mut CycleState) -> Status {
        let Some(spec) = pod.pod.spec.as_ref() else {
            return Status::skip(NAME);
        };
        let required = node_affinity(spec).is_some_and(|a| {
            a.required_during_scheduling_ignored_during_execution
                .is_some()
        });
        if !required && spec.node_selector.as_ref().is_none_or(|s| s.is_empty()) {
            // kube's Skip: nothing to match, every node passes.
            return Status::skip(NAME);
        }
        Status::success()
    }

    fn filter(&self, pod: &PodInfo, node: &NodeInfo, _: &CycleState) -> Status {
        if required_matches(pod, node) {
            Status::success()
        } else {
            Status::new(Code::UnschedulableAndUnresolvable, NAME, REASON)
        }
    }
}

/// Sum of the weights of the preferred terms the node matches.
pub fn preferred_weight(pod: &PodInfo, node: &NodeInfo) -> i64 {
    let Some(a) = pod.pod.spec.as_ref().and_then(node_affinity) else {
        return 0;
    };
    a.preferred_during_scheduling_ignored_during_execution
        .iter()
        .flatten()
        .filter(|t| t.weight != 0 && term_matches(&t.preference, &node.name, node.labels()))
        .map(|t| i64::from(t.weight))
        .sum()
}

impl ScorePlugin for NodeAffinity {
    fn name(&self) -> &'static str {
        NAME
    }

    fn pre_score(
        &self,
        pod: &PodInfo,
        _: &[&NodeInfo],
        _: &ClusterState,
        _: &mut CycleState,
    ) -> Status {
        let preferred = pod
            .pod
            .spec
            .as_ref()
            .and_then(node_affinity)
            .is_some_and(|a| {
                a.preferred_during_scheduling_ignored_during_execution
                    .as_ref()
                    .is_some_and(|p| !p.is_empty())
            });
        if !preferred {
            // kube's Skip: every node would score 0.
            return Status::skip(NAME);
        }
        Status::success()
    }

    fn score(&self, pod: &PodInfo, node: &NodeInfo, _: &ClusterState, _: &CycleState) -> i64 {
        preferred_weight(pod, node)
    }

    fn normalize(&self, scores: &mut [i64]) {
        default_normalize(MAX_NODE_SCORE, false, scores);
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::testutil::{node, pod};

    #[test]
    fn selector_and_required_terms() {
        let a = node(
            "a",
            json!({"metadata": {"labels": {"zone": "z1", "disk": "ssd"}}}),
        );
        let b = node("b", json!({"metadata": {"labels": {"zone": "z2"}}}));
        let cs = CycleState::default();
        let sel = pod(json!({"nodeSelector": {"disk": "ssd"}}));
        assert!(NodeAffinity.filter(&sel, &a, &cs).is_success());
        assert_eq!(
            NodeAffinity.filter(&sel, &b, &cs),
            Status::new(Code::UnschedulableAndUnresolvable, NAME, REASON)
        );
        // Two terms ORed; the second matches b only.
        let req = pod(
            json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["z9"]}]},
            {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["z2"]}, {"key": "disk", "operator": "DoesNotExist"}]}]}}}}),
        );
        assert!(!NodeAffinity.filter(&req, &a, &cs).is_success());
        assert!(NodeAffinity.filter(&req, &b, &cs).is_success());
        // Selector and affinity must both hold.
        let both = pod(
            json!({"nodeSelector": {"disk": "ssd"}, "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["z2"]}]}]}}}}),
        );
        assert!(!NodeAffinity.filter(&both, &a, &cs).is_success());
        assert!(!NodeAffinity.filter(&both, &b, &cs).is_success());
    }

    #[test]
    fn preferred_weights_normalised() {
        let p = pod(
            json!({"affinity": {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
            {"weight": 30, "preference": {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["z1"]}]}},
            {"weight": 10, "preference": {"matchExpressions": [{"key": "disk", "operator": "Exists"}]}}]}}}),
        );
        let a = node(
            "a",
            json!({"metadata": {"labels": {"zone": "z1", "disk": "ssd"}}}),
        );
        let b = node("b", json!({"metadata": {"labels": {"disk": "hdd"}}}));
        let c = node("c", json!({}));
        let mut s = [
            preferred_weight(&p, &a),
            preferred_weight(&p, &b),
            preferred_weight(&p, &c),
        ];
        assert_eq!(s, [40, 10, 0]);
        NodeAffinity.normalize(&mut s);
        assert_eq!(s, [100, 25, 0]);
    }
}
