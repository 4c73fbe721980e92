//! One scheduling decision, as kube-scheduler's `schedulePod`: run the filters over (an
//! adaptive share of) the nodes starting where the last cycle stopped, score the feasible
//! ones, pick the best (ties broken at random). A pod that fits nowhere gets a [`FitError`]
//! whose message is kube's "0/N nodes are available: ..." text. Pure: no I/O.

use std::collections::{BTreeMap, BTreeSet};

use crate::cache::ClusterState;
use crate::framework::{Code, CycleState, Profile, Status};
use crate::node_info::{NodeInfo, PodInfo};

/// kube's `minFeasibleNodesToFind`.
const MIN_FEASIBLE_NODES_TO_FIND: usize = 100;
/// kube's `minFeasibleNodesPercentageToFind`.
const MIN_FEASIBLE_NODES_PERCENTAGE_TO_FIND: usize = 5;

/// kube's `numFeasibleNodesToFind`: all nodes below 100, else `percentage` of them (adaptive
/// when 0: 50% minus 1% per 125 nodes, at least 5%), at least 100.
pub fn num_feasible_nodes_to_find(num_all: usize, percentage: u32) -> usize {
    if num_all < MIN_FEASIBLE_NODES_TO_FIND || percentage >= 100 {
        return num_all;
    }
    let mut pct = percentage as usize;
    if pct == 0 {
        pct = 50usize.saturating_sub(num_all / 125);
        pct = pct.max(MIN_FEASIBLE_NODES_PERCENTAGE_TO_FIND);
    }
    (num_all * pct / 100).max(MIN_FEASIBLE_NODES_TO_FIND)
}

/// Where the pod goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scheduled {
    pub node: String,
    /// Nodes the filters looked at.
    pub evaluated: usize,
    pub feasible: usize,
}

/// Why a pod fits nowhere.
#[derive(Debug, Clone, Default)]
pub struct FitError {
    pub num_all_nodes: usize,
    /// A PreFilter rejection (applies to every node).
    pub pre_filter_msg: Option<String>,
    /// The plugin whose PreFilter rejected the pod.
    pub pre_filter_plugin: Option<&'static str>,
    /// Each rejected node's status.
    pub statuses: BTreeMap<String, Status>,
    /// What preemption said ("preemption: ...").
    pub post_filter_msg: Option<String>,
}

/// "count reason" entries sorted as strings, as kube's `sortReasonsHistogram`.
pub fn reasons_histogram<'a>(statuses: impl Iterator<Item = &'a Status>) -> Vec<String> {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for st in statuses {
        for r in &st.reasons {
            *counts.entry(r.as_str()).or_default() += 1;
        }
    }
    let mut out: Vec<String> = counts
        .into_iter()
        .map(|(r, n)| format!("{n} {r}"))
        .collect();
    out.sort();
    out
}

impl FitError {
    /// kube's `FitError.Error()`: "0/N nodes are available: <prefilter>. <filters>. <postfilter>"
    pub fn message(&self) -> String {
        let mut msg = format!("0/{} nodes are available:", self.num_all_nodes);
        match &self.pre_filter_msg {
            Some(m) => msg.push_str(&format!(" {m}.")),
            None => {
                let hist = reasons_histogram(self.statuses.values());
                if !hist.is_empty() {
                    msg.push_str(&format!(" {}.", hist.join(", ")));
                }
            }
        }
        if let Some(m) = &self.post_filter_msg {
            msg.push_str(&format!(" {m}"));
        }
        msg
    }

    /// The plugins that rejected the pod somewhere (which cluster events may help it).
    pub fn rejected_by(&self) -> BTreeSet<&'static str> {
        self.statuses
            .values()
            .map(|s| s.plugin)
            .chain(self.pre_filter_plugin)
            .collect()
    }
}

#[derive(Debug, Clone)]
pub enum ScheduleError {
    /// The cluster has no nodes at all.
    NoNodes,
    Fit(FitError),
}

impl ScheduleError {
    pub fn message(&self) -> String {
        match self {
            // kube's ErrNoNodesAvailable.
            ScheduleError::NoNodes => "no nodes available to schedule pods".into(),
            ScheduleError::Fit(f) => f.message(),
        }
    }
}

/// The decision procedure with its rotating start index and tie-break randomness.
#[derive(Debug)]
pub struct Algorithm {
    pub profile: Profile,
    /// `percentageOfNodesToScore`; 0 = kube's adaptive default.
    pub percentage_of_nodes_to_score: u32,
    next_start: usize,
    rng: u64,
}

impl Algorithm {
    pub fn new(profile: Profile, percentage_of_nodes_to_score: u32, seed: u64) -> Self {
        Algorithm {
            profile,
            percentage_of_nodes_to_score,
            next_start: 0,
            rng: seed | 1,
        }
    }

    /// xorshift64*: tie-breaking needs no cryptographic randomness, only no bias to order.
    fn rand_below(&mut self, n: u64) -> u64 {
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d) % n.max(1)
    }

    /// Runs every filter on one node, stopping at the first rejection (as kube does); filters
    /// whose PreFilter said Skip are left out.
    pub fn run_filters(&self, pod: &PodInfo, node: &NodeInfo, state: &CycleState) -> Status {
        for (i, f) in self.profile.filters.iter().enumerate() {
            if state.filter_skipped(i) {
                continue;
            }
            let st = f.filter(pod, node, state);
            if !st.is_success() {
                return st;
            }
        }
        Status::success()
    }

    /// Runs every PreFilter; the first rejection rejects the pod on every node, a Skip
    /// leaves that plugin's Filter out of the cycle.
    pub fn pre_filter(&self, pod: &PodInfo, cluster: &ClusterState) -> Result<CycleState, Status> {
        let mut state = CycleState::default();
        for (i, f) in self.profile.filters.iter().enumerate() {
            let st = f.pre_filter(pod, cluster, &mut state);
            if st.is_skip() {
                state.skip_filter(i);
            } else if !st.is_success() {
                return Err(st);
            }
        }
        Ok(state)
    }

    /// Preemption's what-if: the plugins' view of `node` without `victim` (skipped plugins
    /// have no view to update, as kube's AddPod/RemovePod extensions).
    pub fn state_remove(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        victim: &PodInfo,
        node: &NodeInfo,
    ) {
        for (i, f) in self.profile.filters.iter().enumerate() {
            if !state.filter_skipped(i) {
                f.remove_pod(state, pod, victim, node);
            }
        }
    }

    /// Undoes [`Algorithm::state_remove`].
    pub fn state_add(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        added: &PodInfo,
        node: &NodeInfo,
    ) {
        for (i, f) in self.profile.filters.iter().enumerate() {
            if !state.filter_skipped(i) {
                f.add_pod(state, pod, added, node);
            }
        }
    }

    pub fn schedule(
        &mut self,
        pod: &PodInfo,
        cluster: &ClusterState,
    ) -> Result<Scheduled, ScheduleError> {
        let nodes = cluster.nodes();
        let n = nodes.len();
        if n == 0 {
            return Err(ScheduleError::NoNodes);
        }
        let mut state = match self.pre_filter(pod, cluster) {
            Ok(s) => s,
            Err(st) => {
                return Err(ScheduleError::Fit(FitError {
                    num_all_nodes: n,
                    pre_filter_msg: Some(st.reasons.join(", ")),
                    pre_filter_plugin: Some(st.plugin),
                    ..Default::default()
                }))
            }
        };
        // A pod that preempted before tries its nominated node first.
        if let Some(nominated) = pod
            .pod
            .status
            .as_ref()
            .and_then(|s| s.nominated_node_name.as_deref())
            .and_then(|name| cluster.node(name))
        {
            if self.run_filters(pod, nominated, &state).is_success() {
                return Ok(Scheduled {
                    node: nominated.name.clone(),
                    evaluated: 1,
                    feasible: 1,
                });
            }
        }
        let want = num_feasible_nodes_to_find(n, self.percentage_of_nodes_to_score);
        let mut feasible: Vec<&NodeInfo> = Vec::with_capacity(want.min(n));
        let mut statuses = BTreeMap::new();
        let start = self.next_start % n;
        let mut processed = 0;
        for i in 0..n {
            let node = &nodes[(start + i) % n];
            processed += 1;
            let st = self.run_filters(pod, node, &state);
            if st.is_success() {
                feasible.push(node);
                if feasible.len() >= want {
                    break;
                }
            } else {
                statuses.insert(node.name.clone(), st);
            }
        }
        self.next_start = (start + processed) % n;
        if feasible.is_empty() {
            return Err(ScheduleError::Fit(FitError {
                num_all_nodes: n,
                statuses,
                ..Default::default()
            }));
        }
        let count = feasible.len();
        if count == 1 {
            return Ok(Scheduled {
                node: feasible[0].name.clone(),
                evaluated: processed,
                feasible: 1,
            });
        }
        let totals = self.score(pod, &feasible, cluster, &mut state);
        // Reservoir sampling over the top score: each best node equally likely.
        let (mut best, mut best_score, mut ties) = (0usize, i64::MIN, 0u64);
        for (i, s) in totals.iter().enumerate() {
            if *s > best_score {
                (best, best_score, ties) = (i, *s, 1);
            } else if *s == best_score {
                ties += 1;
                if self.rand_below(ties) == 0 {
                    best = i;
                }
            }
        }
        Ok(Scheduled {
            node: feasible[best].name.clone(),
            evaluated: processed,
            feasible: count,
        })
    }

    /// Weighted sum of every score plugin's normalised scores, per feasible node. A plugin
    /// whose PreScore said Skip adds nothing (the same to every node).
    pub fn score(
        &self,
        pod: &PodInfo,
        feasible: &[&NodeInfo],
        cluster: &ClusterState,
        state: &mut CycleState,
    ) -> Vec<i64> {
        let mut totals = vec![0i64; feasible.len()];
        let mut scores = Vec::with_capacity(feasible.len());
        for (i, (plugin, weight)) in self.profile.scores.iter().enumerate() {
            if plugin.pre_score(pod, feasible, cluster, state).is_skip() {
                state.skip_score(i);
                continue;
            }
            scores.clear();
            scores.extend(
                feasible
                    .iter()
                    .map(|n| plugin.score(pod, n, cluster, state)),
            );
            plugin.normalize(&mut scores);
            for (t, s) in totals.iter_mut().zip(&scores) {
                *t += s * weight;
            }
        }
        totals
    }
}

/// Whether a status could be cured by removing pods (preemption's "potential node").
pub fn resolvable(st: &Status) -> bool {
    st.code == Code::Unschedulable
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::plugins::default_profile;
    use crate::testutil::{cluster, node_obj, pod, pod_req};

    #[test]
    fn feasible_node_counts_follow_kube() {
        assert_eq!(num_feasible_nodes_to_find(50, 0), 50);
        assert_eq!(
            num_feasible_nodes_to_find(100, 0),
            100,
            "50% of 100 is below the floor"
        );
        assert_eq!(num_feasible_nodes_to_find(1000, 0), 420, "50 - 8 = 42%");
        assert_eq!(num_feasible_nodes_to_find(5000, 0), 500, "50 - 40 = 10%");
        assert_eq!(num_feasible_nodes_to_find(6000, 0), 300, "floor of 5%");
        assert_eq!(num_feasible_nodes_to_find(1000, 30), 300);
        assert_eq!(num_feasible_nodes_to_find(1000, 100), 1000);
    }

    #[test]
    fn fit_error_message_is_kubes() {
        // 3 nodes short of cpu, 2 tainted: kube's histogram, sorted as strings.
        let mut c = cluster(vec![]);
        for i in 0..3 {
            c.upsert_node(node_obj(
                &format!("small-{i}"),
                json!({"status": {"allocatable": {"cpu": "1"}}}),
            ));
        }
        for i in 0..2 {
            c.upsert_node(node_obj(
                &format!("tainted-{i}"),
                json!({"spec": {"taints": [{"key": "k", "value": "v", "effect": "NoSchedule"}]}}),
            ));
        }
        let mut alg = Algorithm::new(default_profile(), 0, 7);
        let err = alg.schedule(&pod_req(Some("2"), None), &c).unwrap_err();
        let ScheduleError::Fit(mut fit) = err else {
            panic!("no fit error")
        };
        assert_eq!(
            fit.message(),
            "0/5 nodes are available: 2 node(s) had untolerated taint {k: v}, 3 Insufficient cpu."
        );
        fit.post_filter_msg = Some(
            "preemption: 0/5 nodes are available: 5 Preemption is not helpful for scheduling."
                .into(),
        );
        assert_eq!(fit.message(), "0/5 nodes are available: 2 node(s) had untolerated taint {k: v}, 3 Insufficient cpu. preemption: 0/5 nodes are available: 5 Preemption is not helpful for scheduling.");
        assert_eq!(
            ScheduleError::NoNodes.message(),
            "no nodes available to schedule pods"
        );
    }

    #[test]
    fn picks_the_highest_weighted_score() {
        // Same resources; "pref" matches a preferred term (NodeAffinity weight 2 x 100).
        let c = cluster(vec![
            node_obj("plain", json!({})),
            node_obj("pref", json!({"metadata": {"labels": {"zone": "a"}}})),
            node_obj(
                "soft-tainted",
                json!({"metadata": {"labels": {"zone": "a"}}, "spec": {"taints": [{"key": "x", "effect": "PreferNoSchedule"}]}}),
            ),
        ]);
        let p = pod(
            json!({"affinity": {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
            {"weight": 5, "preference": {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}}]}}}),
        );
        let mut alg = Algorithm::new(default_profile(), 0, 1);
        for _ in 0..10 {
            assert_eq!(alg.schedule(&p, &c).unwrap().node, "pref");
        }
    }

    /// A plugin that skips itself in PreFilter and PreScore, and fails loudly if run anyway.
    #[derive(Debug)]
    struct SkipsItself;

    impl crate::framework::FilterPlugin for SkipsItself {
        fn name(&self) -> &'static str {
            "SkipsItself"
        }
        fn pre_filter(&self, _: &PodInfo, _: &ClusterState, _: &mut CycleState) -> Status {
            Status::skip("SkipsItself")
        }
        fn filter(&self, _: &PodInfo, _: &NodeInfo, _: &CycleState) -> Status {
            Status::new(
                Code::UnschedulableAndUnresolvable,
                "SkipsItself",
                "filter ran",
            )
        }
        fn remove_pod(&self, _: &mut CycleState, _: &PodInfo, _: &PodInfo, _: &NodeInfo) {
            panic!("RemovePod of a skipped filter ran");
        }
    }

    impl crate::framework::ScorePlugin for SkipsItself {
        fn name(&self) -> &'static str {
            "SkipsItself"
        }
        fn pre_score(
            &self,
            _: &PodInfo,
            _: &[&NodeInfo],
            _: &ClusterState,
            _: &mut CycleState,
        ) -> Status {
            Status::skip("SkipsItself")
        }
        fn score(&self, _: &PodInfo, _: &NodeInfo, _: &ClusterState, _: &CycleState) -> i64 {
            panic!("Score of a skipped plugin ran");
        }
    }

    #[test]
    fn skipped_plugins_are_not_run() {
        let c = cluster(vec![node_obj("a", json!({})), node_obj("b", json!({}))]);
        let mut profile = default_profile();
        profile.filters.push(Box::new(SkipsItself));
        profile.scores.push((Box::new(SkipsItself), 1));
        let mut alg = Algorithm::new(profile, 0, 3);
        let p = pod_req(Some("1"), None);
        let s = alg
            .schedule(&p, &c)
            .expect("the skipped filter would reject every node");
        assert_eq!(s.feasible, 2);
        let mut state = alg.pre_filter(&p, &c).unwrap();
        let last = alg.profile.filters.len() - 1;
        assert!(state.filter_skipped(last));
        // Preemption's what-if leaves the skipped plugin alone too.
        let victim = pod_req(Some("1"), None);
        alg.state_remove(&mut state, &p, &victim, c.node("a").unwrap());
    }

    #[test]
    fn default_plugins_skip_what_a_plain_pod_does_not_use() {
        // A pod with requests only: the affinity, spread, ports and volume plugins skip, and
        // with no node reporting images, so does ImageLocality.
        let c = cluster(vec![node_obj("a", json!({})), node_obj("b", json!({}))]);
        let alg = Algorithm::new(default_profile(), 0, 3);
        let p = pod_req(Some("1"), None);
        let mut state = alg.pre_filter(&p, &c).unwrap();
        let skipped: Vec<&str> = alg
            .profile
            .filters
            .iter()
            .enumerate()
            .filter(|(i, _)| state.filter_skipped(*i))
            .map(|(_, f)| f.name())
            .collect();
        assert_eq!(
            skipped,
            [
                "NodeAffinity",
                "NodePorts",
                "VolumeBinding",
                "PodTopologySpread",
                "InterPodAffinity"
            ]
        );
        let nodes: Vec<&NodeInfo> = c.nodes().iter().collect();
        alg.score(&p, &nodes, &c, &mut state);
        let skipped: Vec<&str> = alg
            .profile
            .scores
            .iter()
            .enumerate()
            .filter(|(i, _)| state.score_skipped(*i))
            .map(|(_, (p, _))| p.name())
            .collect();
        assert_eq!(
            skipped,
            [
                "NodeAffinity",
                "PodTopologySpread",
                "InterPodAffinity",
                "ImageLocality"
            ]
        );
    }

    #[test]
    fn start_index_rotates_and_ties_spread() {
        let c = cluster(
            (0..4)
                .map(|i| node_obj(&format!("n{i}"), json!({})))
                .collect(),
        );
        let mut alg = Algorithm::new(default_profile(), 0, 42);
        let mut seen = BTreeSet::new();
        for _ in 0..64 {
            seen.insert(alg.schedule(&pod_req(Some("1"), None), &c).unwrap().node);
        }
        assert_eq!(seen.len(), 4, "equal nodes all get picked: {seen:?}");
    }
}
