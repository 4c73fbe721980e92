//! NodeResourcesBalancedAllocation: prefers nodes where cpu and memory would be used in equal
//! fractions after placing the pod: `(1 - std(fractions)) * 100`. Uses the real requests
//! (no non-zero defaults) and skips pods that request nothing (best-effort), as kube does.

use crate::cache::ClusterState;
use crate::framework::{CycleState, ScorePlugin, MAX_NODE_SCORE};
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
    let fractions: Vec<f64> = pairs
        .iter()
        .filter(|(alloc, _)| *alloc != 0)
        .map(|(alloc, req)| (*req as f64 / *alloc as f64).min(1.0))
        .collect();
    let std = match fractions.len() {
        2 => (fractions[0] - fractions[1]).abs() / 2.0,
        n if n > 2 => {
            let mean = fractions.iter().sum::<f64>() / n as f64;
            (fractions.iter().map(|f| (f - mean).powi(2)).sum::<f64>() / n as f64).sqrt()
        }
        _ => 0.0,
    };
    ((1.0 - std) * MAX_NODE_SCORE as f64) as i64
}

impl ScorePlugin for BalancedAllocation {
    fn name(&self) -> &'static str {
        NAME
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
