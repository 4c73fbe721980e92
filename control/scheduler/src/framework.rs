//! The scheduling framework's vocabulary: a plugin [`Status`], per-cycle state, the filter and
//! score plugin traits and the [`Profile`] that orders and weighs them. Plugins are pure
//! functions of the pod, the node and the cluster state; they do no I/O.

use std::any::Any;
use std::collections::HashMap;
use std::fmt::Debug;

use crate::cache::ClusterState;
use crate::node_info::{NodeInfo, PodInfo};

/// kube's `MaxNodeScore`: every score plugin's normalised result is in 0..=100.
pub const MAX_NODE_SCORE: i64 = 100;

/// How a plugin judged the pod.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    Success,
    /// Rejected, but removing pods (preemption) could help.
    Unschedulable,
    /// Rejected and preemption cannot help (taints, affinity, node name, ...).
    UnschedulableAndUnresolvable,
    /// The plugin failed (not the pod's fault).
    Error,
}

/// A plugin's verdict with kube's reason strings (these end up in FailedScheduling events).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    pub code: Code,
    pub reasons: Vec<String>,
    pub plugin: &'static str,
}

impl Status {
    pub fn success() -> Self {
        Status {
            code: Code::Success,
            reasons: Vec::new(),
            plugin: "",
        }
    }

    pub fn new(code: Code, plugin: &'static str, reason: impl Into<String>) -> Self {
        Status {
            code,
            reasons: vec![reason.into()],
            plugin,
        }
    }

    pub fn is_success(&self) -> bool {
        self.code == Code::Success
    }

    pub fn is_rejected(&self) -> bool {
        matches!(
            self.code,
            Code::Unschedulable | Code::UnschedulableAndUnresolvable
        )
    }
}

/// Data a plugin computes once per scheduling cycle (PreFilter/PreScore) and reads per node.
#[derive(Debug, Default)]
pub struct CycleState {
    data: HashMap<&'static str, Box<dyn Any + Send + Sync>>,
}

impl CycleState {
    pub fn write<T: Any + Send + Sync>(&mut self, key: &'static str, value: T) {
        self.data.insert(key, Box::new(value));
    }

    pub fn read<T: Any>(&self, key: &'static str) -> Option<&T> {
        self.data.get(key).and_then(|b| b.downcast_ref())
    }

    pub fn read_mut<T: Any>(&mut self, key: &'static str) -> Option<&mut T> {
        self.data.get_mut(key).and_then(|b| b.downcast_mut())
    }
}

/// A filter (predicate): can the pod run on this node?
pub trait FilterPlugin: Send + Sync + Debug {
    fn name(&self) -> &'static str;

    /// Per-cycle preparation; a rejection here rejects the pod on every node.
    fn pre_filter(
        &self,
        _pod: &PodInfo,
        _cluster: &ClusterState,
        _state: &mut CycleState,
    ) -> Status {
        Status::success()
    }

    fn filter(&self, pod: &PodInfo, node: &NodeInfo, state: &CycleState) -> Status;

    /// Preemption's what-if: update the cycle state as if `victim` left `node`.
    fn remove_pod(
        &self,
        _state: &mut CycleState,
        _pod: &PodInfo,
        _victim: &PodInfo,
        _node: &NodeInfo,
    ) {
    }

    /// Preemption's what-if: update the cycle state as if `added` ran on `node` again.
    fn add_pod(&self, _state: &mut CycleState, _pod: &PodInfo, _added: &PodInfo, _node: &NodeInfo) {
    }
}

/// A score (priority): how good is this feasible node? Raw scores are normalised to
/// 0..=[`MAX_NODE_SCORE`] by [`ScorePlugin::normalize`] and then multiplied by the weight.
pub trait ScorePlugin: Send + Sync + Debug {
    fn name(&self) -> &'static str;

    fn pre_score(
        &self,
        _pod: &PodInfo,
        _feasible: &[&NodeInfo],
        _cluster: &ClusterState,
        _state: &mut CycleState,
    ) {
    }

    fn score(
        &self,
        pod: &PodInfo,
        node: &NodeInfo,
        cluster: &ClusterState,
        state: &CycleState,
    ) -> i64;

    fn normalize(&self, _scores: &mut [i64]) {}
}

/// kube's `DefaultNormalizeScore`: scales raw scores so the largest becomes `max`; `reverse`
/// turns "more is worse" counts into scores.
pub fn default_normalize(max: i64, reverse: bool, scores: &mut [i64]) {
    let top = scores.iter().copied().max().unwrap_or(0).max(0);
    if top == 0 {
        if reverse {
            scores.iter_mut().for_each(|s| *s = max);
        }
        return;
    }
    for s in scores.iter_mut() {
        let v = max * *s / top;
        *s = if reverse { max - v } else { v };
    }
}

/// The plugins of one scheduler profile in the order kube runs them, with score weights.
#[derive(Debug)]
pub struct Profile {
    pub filters: Vec<Box<dyn FilterPlugin>>,
    pub scores: Vec<(Box<dyn ScorePlugin>, i64)>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_scales_to_the_maximum() {
        let mut s = [0, 5, 10];
        default_normalize(100, false, &mut s);
        assert_eq!(s, [0, 50, 100]);
        let mut s = [0, 1, 3];
        default_normalize(100, true, &mut s);
        assert_eq!(s, [100, 67, 0], "100 - 100*1/3 = 100 - 33");
        let mut s = [0, 0];
        default_normalize(100, true, &mut s);
        assert_eq!(s, [100, 100]);
        let mut s = [0, 0];
        default_normalize(100, false, &mut s);
        assert_eq!(s, [0, 0]);
    }
}
