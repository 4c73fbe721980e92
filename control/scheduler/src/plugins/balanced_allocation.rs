//! NodeResourcesBalancedAllocation: prefers nodes where cpu and memory would be used in equal
//! fractions after placing the pod: `(1 - std(fractions)) * 100`. Uses the real requests
//! (no non-zero defaults) and skips pods that request nothing (best-effort), as kube does.

use crate::cache::ClusterState;
use crate::framework::{CycleState, ScorePlugin, Status, MAX_NODE_SCORE};
use crate::node_info::{NodeInfo, PodInfo};

pub const NAME: &str = "NodeResourcesBalancedAllocation";

#[derive(Debug, Default)]
pub struct BalancedAllocation;

pub fn balanced_score(pod: &PodInfo, node: &NodeInfo) -> i64 {
    if pod.requests.milli_cpu == 0 && pod.requests.memory == 0 {
        // kube skips the plugin for best-effort pods; a skipped plugin adds nothing.
        return 0;
    }
    let pairs = [
        (
            node.allocatable.milli_cpu,
            node.requested.milli_cpu + pod.requests.milli_cpu,
        ),
        (
            node.allocatable.memory,
            node.requested.memory + pod.requests.memory,
        ),
    ];
    // Two resources: no allocation per node (this runs for every feasible node).
    let mut fractions = [0.0f64; 2];
    let mut n = 0;
    for (alloc, req) in pairs {
        if alloc != 0 {
            fractions[n] = (req as f64 / alloc as f64).min(1.0);
            n += 1;
        }
    }
    let std = if n == 2 {
        (fractions[0] - fractions[1]).abs() / 2.0
    } else {
        0.0
    };
    ((1.0 - std) * MAX_NODE_SCORE as f64) as i64
}

impl ScorePlugin for BalancedAllocation {
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
        if pod.requests.milli_cpu == 0 && pod.requests.memory == 0 {
            // kube's Skip for best-effort pods.
            return Status::skip(NAME);
        }
        Status::success()
    }

    fn score(&self, pod: &PodInfo, node: &NodeInfo, _: &ClusterState, _: &CycleState) -> i64 {
        balanced_score(pod, node)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{node_with, pod_req};

    #[test]
    fn balanced_by_hand() {
        // 4000m / 8Gi node, existing 1000m / 1Gi, pod 1000m / 1Gi: cpu 0.5, mem 0.25,
        // std = 0.125 -> 87 (87.5 truncated).
        let n = node_with("n", "4", "8Gi", vec![pod_req(Some("1"), Some("1Gi"))]);
        assert_eq!(balanced_score(&pod_req(Some("1"), Some("1Gi")), &n), 87);
        // Equal fractions: 0.5 / 0.5 -> 100.
        assert_eq!(balanced_score(&pod_req(Some("1"), Some("3Gi")), &n), 100);
        // Over-full fractions are capped at 1: cpu 6/4 -> 1, mem 2/8 = 0.25 -> std .375 -> 62.
        assert_eq!(balanced_score(&pod_req(Some("5"), Some("1Gi")), &n), 62);
        // Best-effort: skipped.
        assert_eq!(balanced_score(&pod_req(None, None), &n), 0);
    }
}
