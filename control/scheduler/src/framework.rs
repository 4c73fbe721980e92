//! The scheduling framework's vocabulary: a plugin [`Status`], per-cycle state, the filter and
//! score plugin traits and the [`Profile`] that orders and weighs them. Plugins are pure
//! functions of the pod, the node and the cluster state; they do no I/O.

use std::any::Any;
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
    /// From PreFilter or PreScore: the plugin has nothing to check or score for this pod, so
    /// its Filter or Score is not run this cycle (kube's `Skip`). Only for plugins whose
    /// Filter would pass every node, or whose Score would give every node the same value.
    Skip,
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

    /// kube's `Skip` status (see [`Code::Skip`]).
    pub fn skip(plugin: &'static str) -> Self {
        Status {
            code: Code::Skip,
            reasons: Vec::new(),
            plugin,
        }
    }

    pub fn is_success(&self) -> bool {
        self.code == Code::Success
    }

    pub fn is_skip(&self) -> bool {
        self.code == Code::Skip
    }

    pub fn is_rejected(&self) -> bool {
        matches!(
            self.code,
            Code::Unschedulable | Code::UnschedulableAndUnresolvable
        )
    }
}

/// Data a plugin computes once per scheduling cycle (PreFilter/PreScore) and reads per node,
/// and which plugins skip this cycle.
#[derive(Debug, Default)]
pub struct CycleState {
    /// A handful of entries read once per plugin per node: a linear scan beats hashing the
    /// key (SipHash of the key was a third of a cycle's time at 5000 nodes).
    data: Vec<(&'static str, Box<dyn Any + Send + Sync>)>,
    /// Bit i: filter plugin i of the profile returned Skip from PreFilter.
    skip_filters: u64,
    /// Bit i: score plugin i of the profile returned Skip from PreScore.
    skip_scores: u64,
}

/// The bit of plugin `i`; profiles have far fewer than 64 plugins, and a plugin past that is
/// never skipped (run, which is always correct).
fn bit(i: usize) -> u64 {
    if i < 64 {
        1 << i
    } else {
        0
    }
}

impl CycleState {
    pub fn write<T: Any + Send + Sync>(&mut self, key: &'static str, value: T) {
        let value: Box<dyn Any + Send + Sync> = Box::new(value);
        match self.data.iter_mut().find(|(k, _)| *k == key) {
            Some(slot) => slot.1 = value,
            None => self.data.push((key, value)),
        }
    }

    pub fn read<T: Any>(&self, key: &'static str) -> Option<&T> {
        self.data
            .iter()
            .find(|(k, _)| *k == key)
            .and_then(|(_, b)| b.downcast_ref())
    }

    pub fn read_mut<T: Any>(&mut self, key: &'static str) -> Option<&mut T> {
        self.data
            .iter_mut()
            .find(|(k, _)| *k == key)
            .and_then(|(_, b)| b.downcast_mut())
    }

    /// Marks filter plugin `i` (its index in the profile) as skipped this cycle.
    pub fn skip_filter(&mut self, i: usize) {
        self.skip_filters |= bit(i);
    }

    pub fn filter_skipped(&self, i: usize) -> bool {
        self.skip_filters & bit(i) != 0
    }

    /// Marks score plugin `i` (its index in the profile) as skipped this cycle.
    pub fn skip_score(&mut self, i: usize) {
        self.skip_scores |= bit(i);
    }

    pub fn score_skipped(&self, i: usize) -> bool {
        self.skip_scores & bit(i) != 0
    }
}

/// A filter (predicate): can the pod run on this node?
pub trait FilterPlugin: Send + Sync + Debug {
    fn name(&self) -> &'static str;

    /// Per-cycle preparation; a rejection here rejects the pod on every node, a
    /// [`Status::skip`] leaves the plugin's Filter out of this cycle.
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

    /// Per-cycle preparation; [`Status::skip`] leaves the plugin's Score out of this cycle
    /// (it then adds 0 to every node, which ranks them as any uniform score would).
    fn pre_score(
        &self,
        _pod: &PodInfo,
        _feasible: &[&NodeInfo],
        _cluster: &ClusterState,
        _state: &mut CycleState,
    ) -> Status {
        Status::success()
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

    #[test]
    fn cycle_state_reads_what_was_written_and_tracks_skips() {
        let mut st = CycleState::default();
        st.write("a", 1u32);
        st.write("b", String::from("x"));
        st.write("a", 2u32);
        assert_eq!(
            st.read::<u32>("a"),
            Some(&2),
            "a second write replaces the first"
        );
        assert_eq!(st.read::<String>("b").map(String::as_str), Some("x"));
        assert_eq!(st.read::<u64>("a"), None, "wrong type");
        assert_eq!(st.read::<u32>("c"), None);
        *st.read_mut::<u32>("a").unwrap() += 1;
        assert_eq!(st.read::<u32>("a"), Some(&3));
        st.skip_filter(3);
        st.skip_score(0);
        st.skip_filter(70);
        assert!(st.filter_skipped(3) && !st.filter_skipped(2) && !st.filter_skipped(70));
        assert!(st.score_skipped(0) && !st.score_skipped(3));
    }
}
