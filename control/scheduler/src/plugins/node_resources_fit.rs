//! NodeResourcesFit: the filter (the pod's requests must fit in allocatable minus what the
//! node's pods request; the pod count must stay within allocatable pods) and its default
//! LeastAllocated score (cpu and memory, weight 1 each: more free capacity scores higher).

use crate::cache::ClusterState;
use crate::framework::{Code, CycleState, FilterPlugin, ScorePlugin, Status, MAX_NODE_SCORE};
use crate::node_info::{NodeInfo, PodInfo};

pub const NAME: &str = "NodeResourcesFit";

#[derive(Debug, Default)]
pub struct NodeResourcesFit;

/// One resource the node lacks. `unresolvable` when the request exceeds the node's whole
/// allocatable (no preemption can make room).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Insufficient {
    pub reason: String,
    pub unresolvable: bool,
}

/// kube's `fitsRequest`: every resource the pod does not fit, in kube's order.
pub fn insufficient(pod: &PodInfo, node: &NodeInfo) -> Vec<Insufficient> {
    let mut out = Vec::new();
    let (req, alloc, used) = (&pod.requests, &node.allocatable, &node.requested);
    if node.pods.len() as i64 + 1 > alloc.allowed_pod_number {
        out.push(Insufficient {
            reason: "Too many pods".into(),
            unresolvable: false,
        });
    }
    if req.milli_cpu == 0 && req.memory == 0 && req.ephemeral_storage == 0 && req.scalar.is_empty()
    {
        return out;
    }
    let mut check = |name: &str, want: i64, have: i64, used: i64| {
        if want > 0 && want > have - used {
            out.push(Insufficient {
                reason: format!("Insufficient {name}"),
                unresolvable: want > have,
            });
        }
    };
    check("cpu", req.milli_cpu, alloc.milli_cpu, used.milli_cpu);
    check("memory", req.memory, alloc.memory, used.memory);
    check(
        "ephemeral-storage",
        req.ephemeral_storage,
        alloc.ephemeral_storage,
        used.ephemeral_storage,
    );
    for (name, want) in &req.scalar {
        let have = alloc.scalar.get(name).copied().unwrap_or(0);
        let u = used.scalar.get(name).copied().unwrap_or(0);
        check(name, *want, have, u);
    }
    out
}

impl FilterPlugin for NodeResourcesFit {
    fn name(&self) -> &'static str {
        NAME
    }

    fn filter(&self, pod: &PodInfo, node: &NodeInfo, _: &CycleState) -> Status {
        let missing = insufficient(pod, node);
        if missing.is_empty() {
            return Status::success();
        }
        let code = if missing.iter().any(|m| m.unresolvable) {
            Code::UnschedulableAndUnresolvable
        } else {
            Code::Unschedulable
        };
        Status {
            code,
            reasons: missing.into_iter().map(|m| m.reason).collect(),
            plugin: NAME,
        }
    }
}

/// `(capacity - requested) * 100 / capacity`, 0 when over capacity.
pub fn least_requested_score(requested: i64, capacity: i64) -> i64 {
    if capacity == 0 || requested > capacity {
        return 0;
    }
    (capacity - requested) * MAX_NODE_SCORE / capacity
}

/// LeastAllocated over cpu and memory (weight 1 each), with kube's non-zero defaults for
/// requests the pods leave out; resources the node has none of are skipped.
pub fn least_allocated(pod: &PodInfo, node: &NodeInfo) -> i64 {
    let pairs = [
        (
            node.allocatable.milli_cpu,
            node.non_zero_requested.milli_cpu + pod.non_zero_requests.milli_cpu,
        ),
        (
            node.allocatable.memory,
            node.non_zero_requested.memory + pod.non_zero_requests.memory,
        ),
    ];
    let (mut sum, mut weights) = (0, 0);
    for (alloc, req) in pairs {
        if alloc == 0 {
            continue;
        }
        sum += least_requested_score(req, alloc);
        weights += 1;
    }
    if weights == 0 {
        0
    } else {
        sum / weights
    }
}

impl ScorePlugin for NodeResourcesFit {
    fn name(&self) -> &'static str {
        NAME
    }

    fn score(&self, pod: &PodInfo, node: &NodeInfo, _: &ClusterState, _: &CycleState) -> i64 {
        least_allocated(pod, node)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::testutil::{node, node_with, pod, pod_req};

    #[test]
    fn filter_lists_every_missing_resource() {
        // 4 cpu / 8Gi node with 3 cpu and 6Gi requested: a 2-cpu 3Gi pod lacks both.
        let n = node_with("n", "4", "8Gi", vec![pod_req(Some("3"), Some("6Gi"))]);
        let st =
            NodeResourcesFit.filter(&pod_req(Some("2"), Some("3Gi")), &n, &CycleState::default());
        assert_eq!(st.code, Code::Unschedulable);
        assert_eq!(st.reasons, vec!["Insufficient cpu", "Insufficient memory"]);
        // Exactly the remainder fits.
        assert!(NodeResourcesFit
            .filter(&pod_req(Some("1"), Some("2Gi")), &n, &CycleState::default())
            .is_success());
        // More than the whole node: preemption cannot help.
        let st = NodeResourcesFit.filter(&pod_req(Some("5"), None), &n, &CycleState::default());
        assert_eq!(
            (st.code, st.reasons),
            (
                Code::UnschedulableAndUnresolvable,
                vec!["Insufficient cpu".to_string()]
            )
        );
    }

    #[test]
    fn pod_count_and_scalars() {
        let mut n = node(
            "n",
            json!({"status": {"allocatable": {"pods": "1", "example.com/gpu": "1"}}}),
        );
        n.add_pod(std::sync::Arc::new(pod(json!({}))));
        let gpu = pod(
            json!({"containers": [{"name": "c", "resources": {"requests": {"example.com/gpu": "2"}}}]}),
        );
        let st = NodeResourcesFit.filter(&gpu, &n, &CycleState::default());
        assert_eq!(
            st.reasons,
            vec!["Too many pods", "Insufficient example.com/gpu"]
        );
        // A pod requesting nothing is only checked against the pod count.
        let st = NodeResourcesFit.filter(&pod(json!({})), &n, &CycleState::default());
        assert_eq!(
            (st.code, st.reasons),
            (Code::Unschedulable, vec!["Too many pods".to_string()])
        );
    }

    #[test]
    fn least_allocated_by_hand() {
        // node 4000m / 8Gi, pods request 1000m / 2Gi; new pod 1000m / 2Gi:
        // cpu (4000-2000)*100/4000 = 50; mem (8-4)*100/8 = 50 -> 50.
        let n = node_with("n", "4", "8Gi", vec![pod_req(Some("1"), Some("2Gi"))]);
        assert_eq!(least_allocated(&pod_req(Some("1"), Some("2Gi")), &n), 50);
        // A request-less pod counts as 100m / 200Mi: cpu (4000-1100)*100/4000 = 72 (72.5);
        // mem (8192Mi-2048Mi-200Mi)*100/8192Mi = 72 (72.56) -> (72+72)/2 = 72.
        assert_eq!(least_allocated(&pod_req(None, None), &n), 72);
        // Over capacity scores 0 for that resource: cpu 0, mem (8-2-1)/8 -> 62 -> 31.
        assert_eq!(least_allocated(&pod_req(Some("4"), Some("1Gi")), &n), 31);
    }
}
