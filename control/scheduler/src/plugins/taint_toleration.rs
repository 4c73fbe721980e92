//! TaintToleration: the filter (every NoSchedule/NoExecute taint must be tolerated; the first
//! one that is not names the reason) and the score (fewer untolerated PreferNoSchedule taints
//! is better, normalised in reverse so the node with the most gets 0).

use super::helpers::tolerated_by_any;
use crate::cache::ClusterState;
use crate::framework::{
    default_normalize, Code, CycleState, FilterPlugin, ScorePlugin, Status, MAX_NODE_SCORE,
};
use crate::node_info::{NodeInfo, PodInfo};

pub const NAME: &str = "TaintToleration";

#[derive(Debug, Default)]
pub struct TaintToleration;

fn taints(node: &NodeInfo) -> &[k8s_openapi::api::core::v1::Taint] {
    node.node
        .as_ref()
        .and_then(|n| n.spec.as_ref())
        .and_then(|s| s.taints.as_deref())
        .unwrap_or(&[])
}

fn tolerations(pod: &PodInfo) -> &[k8s_openapi::api::core::v1::Toleration] {
    pod.pod
        .spec
        .as_ref()
        .and_then(|s| s.tolerations.as_deref())
        .unwrap_or(&[])
}

impl FilterPlugin for TaintToleration {
    fn name(&self) -> &'static str {
        NAME
    }

    fn filter(&self, pod: &PodInfo, node: &NodeInfo, _: &CycleState) -> Status {
        let tols = tolerations(pod);
        let untolerated = taints(node).iter().find(|t| {
            (t.effect == "NoSchedule" || t.effect == "NoExecute") && !tolerated_by_any(tols, t)
        });
        match untolerated {
            None => Status::success(),
            Some(t) => Status::new(
                Code::UnschedulableAndUnresolvable,
                NAME,
                format!(
                    "node(s) had untolerated taint {{{}: {}}}",
                    t.key,
                    t.value.as_deref().unwrap_or("")
                ),
            ),
        }
    }
}

/// The number of PreferNoSchedule taints the pod's (empty-effect or PreferNoSchedule)
/// tolerations do not cover.
pub fn intolerable_prefer_no_schedule(pod: &PodInfo, node: &NodeInfo) -> i64 {
    let tols: Vec<_> = tolerations(pod)
        .iter()
        .filter(|t| {
            matches!(
                t.effect.as_deref(),
                None | Some("") | Some("PreferNoSchedule")
            )
        })
        .cloned()
        .collect();
    taints(node)
        .iter()
        .filter(|t| t.effect == "PreferNoSchedule" && !tolerated_by_any(&tols, t))
        .count() as i64
}

impl ScorePlugin for TaintToleration {
    fn name(&self) -> &'static str {
        NAME
    }

    fn score(&self, pod: &PodInfo, node: &NodeInfo, _: &ClusterState, _: &CycleState) -> i64 {
        intolerable_prefer_no_schedule(pod, node)
    }

    fn normalize(&self, scores: &mut [i64]) {
        default_normalize(MAX_NODE_SCORE, true, scores);
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::testutil::{node, pod};

    #[test]
    fn filter_names_the_first_untolerated_taint() {
        let n = node(
            "n",
            json!({"spec": {"taints": [
            {"key": "soft", "value": "x", "effect": "PreferNoSchedule"},
            {"key": "dedicated", "value": "gpu", "effect": "NoSchedule"},
            {"key": "gone", "effect": "NoExecute"}]}}),
        );
        let cs = CycleState::default();
        let st = TaintToleration.filter(&pod(json!({})), &n, &cs);
        assert_eq!(
            st,
            Status::new(
                Code::UnschedulableAndUnresolvable,
                NAME,
                "node(s) had untolerated taint {dedicated: gpu}"
            )
        );
        let one = pod(
            json!({"tolerations": [{"key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}]}),
        );
        assert_eq!(
            TaintToleration.filter(&one, &n, &cs).reasons,
            vec!["node(s) had untolerated taint {gone: }"]
        );
        let all = pod(
            json!({"tolerations": [{"key": "dedicated", "value": "gpu"}, {"key": "gone", "operator": "Exists"}]}),
        );
        assert!(
            TaintToleration.filter(&all, &n, &cs).is_success(),
            "PreferNoSchedule never filters"
        );
    }

    #[test]
    fn score_counts_prefer_no_schedule() {
        let a = node("a", json!({}));
        let b = node(
            "b",
            json!({"spec": {"taints": [{"key": "x", "effect": "PreferNoSchedule"}]}}),
        );
        let c = node(
            "c",
            json!({"spec": {"taints": [{"key": "x", "effect": "PreferNoSchedule"}, {"key": "y", "effect": "PreferNoSchedule"}]}}),
        );
        let p = pod(json!({}));
        let mut s = [&a, &b, &c].map(|n| intolerable_prefer_no_schedule(&p, n));
        assert_eq!(s, [0, 1, 2]);
        TaintToleration.normalize(&mut s);
        assert_eq!(s, [100, 50, 0]);
        // A NoSchedule toleration does not count for scoring; a PreferNoSchedule one does.
        let p = pod(
            json!({"tolerations": [{"key": "x", "operator": "Exists", "effect": "NoSchedule"}, {"key": "y", "operator": "Exists", "effect": "PreferNoSchedule"}]}),
        );
        assert_eq!(intolerable_prefer_no_schedule(&p, &c), 1);
    }
}
