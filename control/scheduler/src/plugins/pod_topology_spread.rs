//! PodTopologySpread, as kube's plugin: hard constraints (`whenUnsatisfiable: DoNotSchedule`)
//! filter, soft ones (`ScheduleAnyway`) score.
//!
//! Filter: for each hard constraint, matching pods are counted per topology domain over the
//! nodes that carry every hard constraint's key and pass its node inclusion policies
//! (`nodeAffinityPolicy` Honor by default, `nodeTaintsPolicy` Ignore by default). A node may
//! take the pod when `pods in its domain + (1 if the pod matches itself) - global minimum <=
//! maxSkew`; with fewer eligible domains than `minDomains` the global minimum is 0.
//!
//! Score: for each soft constraint, matching pods in the feasible node's domain (hostname
//! domains counted per node) weighted by log(domains + 2), plus maxSkew - 1; fewer is
//! better, normalised as kube's NormalizeScore. Feasible nodes lacking a soft constraint's
//! key score 0.
//!
//! `matchLabelKeys` add `key In (pod's value)` to the selector. A pod with no constraints of
//! its own gets kube's system defaults (`List` defaulting): ScheduleAnyway with maxSkew 3 over
//! `kubernetes.io/hostname` and 5 over `topology.kubernetes.io/zone`, selecting what its
//! Services and controller select (kube's DefaultSelector, [`crate::spread_sources`]); nodes
//! lacking those keys are then scored too, not ignored.

use std::collections::{BTreeMap, HashMap, HashSet};

use k8s_openapi::api::core::v1::TopologySpreadConstraint;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};

use super::helpers::{selector_matches, tolerated_by_any};
use super::node_affinity::required_matches;
use crate::cache::ClusterState;
use crate::framework::{Code, CycleState, FilterPlugin, ScorePlugin, Status, MAX_NODE_SCORE};
use crate::node_info::{NodeInfo, PodInfo};

pub const NAME: &str = "PodTopologySpread";
pub const ERR_CONSTRAINTS_NOT_MATCH: &str = "node(s) didn't match pod topology spread constraints";
pub const ERR_NODE_LABEL_NOT_MATCH: &str =
    "node(s) didn't match pod topology spread constraints (missing required label)";
const HOSTNAME: &str = "kubernetes.io/hostname";
const ZONE: &str = "topology.kubernetes.io/zone";
const SCORE_STATE: &str = "PodTopologySpread/score";

#[derive(Debug, Default)]
pub struct PodTopologySpread;

/// One constraint with its selector resolved (matchLabelKeys applied).
#[derive(Debug, Clone)]
struct Constraint {
    max_skew: i64,
    topology_key: String,
    selector: LabelSelector,
    min_domains: i64,
    honor_node_affinity: bool,
    honor_taints: bool,
}

/// kube's system default constraints, with the pod's default selector (none when nothing
/// selects the pod, or for DoNotSchedule: the defaults are all ScheduleAnyway).
fn default_constraints(pod: &PodInfo, when: &str, cluster: &ClusterState) -> Vec<Constraint> {
    if when != "ScheduleAnyway" {
        return Vec::new();
    }
    let Some(selector) = cluster.spread.default_selector(&pod.pod) else {
        return Vec::new();
    };
    [(HOSTNAME, 3), (ZONE, 5)]
        .into_iter()
        .map(|(key, max_skew)| Constraint {
            max_skew,
            topology_key: key.into(),
            selector: selector.clone(),
            min_domains: 1,
            honor_node_affinity: true,
            honor_taints: false,
        })
        .collect()
}

/// The pod's constraints of kind `when`, or the system defaults when it has none at all;
/// and whether they are the defaults.
fn constraints(pod: &PodInfo, when: &str, cluster: &ClusterState) -> (Vec<Constraint>, bool) {
    let all: &[TopologySpreadConstraint] = pod
        .pod
        .spec
        .as_ref()
        .and_then(|s| s.topology_spread_constraints.as_deref())
        .unwrap_or(&[]);
    if all.is_empty() {
        return (default_constraints(pod, when, cluster), true);
    }
    let own = all
        .iter()
        .filter(|c| c.when_unsatisfiable == when)
        .map(|c| {
            let mut selector = c.label_selector.clone().unwrap_or_default();
            for key in c.match_label_keys.iter().flatten() {
                if let Some(v) = pod.labels().and_then(|l| l.get(key)) {
                    selector
                        .match_expressions
                        .get_or_insert_with(Vec::new)
                        .push(LabelSelectorRequirement {
                            key: key.clone(),
                            operator: "In".into(),
                            values: Some(vec![v.clone()]),
                        });
                }
            }
            Constraint {
                max_skew: i64::from(c.max_skew),
                topology_key: c.topology_key.clone(),
                // A missing selector matches nothing, as metav1.LabelSelectorAsSelector(nil).
                selector,
                min_domains: c.min_domains.map(i64::from).unwrap_or(1),
                honor_node_affinity: c.node_affinity_policy.as_deref() != Some("Ignore"),
                honor_taints: c.node_taints_policy.as_deref() == Some("Honor"),
            }
        })
        .collect();
    (own, false)
}

fn has_all_keys(node: &NodeInfo, cs: &[Constraint]) -> bool {
    let labels = node.labels();
    cs.iter()
        .all(|c| labels.is_some_and(|l| l.contains_key(&c.topology_key)))
}

/// kube's `matchNodeInclusionPolicies`.
fn node_included(c: &Constraint, pod: &PodInfo, node: &NodeInfo) -> bool {
    if c.honor_node_affinity && !required_matches(pod, node) {
        return false;
    }
    if c.honor_taints {
        let tols = pod
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.tolerations.as_deref())
            .unwrap_or(&[]);
        let taints = node
            .node
            .as_ref()
            .and_then(|n| n.spec.as_ref())
            .and_then(|s| s.taints.as_deref())
            .unwrap_or(&[]);
        if taints.iter().any(|t| {
            (t.effect == "NoSchedule" || t.effect == "NoExecute") && !tolerated_by_any(tols, t)
        }) {
            return false;
        }
    }
    true
}

/// kube's `countPodsMatchSelector`: same namespace, not terminating, selector matches.
fn count_matching(node: &NodeInfo, selector: &LabelSelector, namespace: &str) -> i64 {
    node.pods
        .iter()
        .filter(|p| counts(p, selector, namespace))
        .count() as i64
}

fn counts(p: &PodInfo, selector: &LabelSelector, namespace: &str) -> bool {
    p.namespace == namespace
        && p.pod.metadata.deletion_timestamp.is_none()
        && selector_matches(Some(selector), p.labels())
}

fn domain(node: &NodeInfo, key: &str) -> Option<String> {
    node.labels().and_then(|l| l.get(key)).cloned()
}

/// PreFilter state: matching pods per (constraint, domain) and each constraint's minimum.
#[derive(Debug, Default)]
struct FilterState {
    constraints: Vec<Constraint>,
    /// Per constraint: domain value → matching pods. Every eligible domain is present.
    counts: Vec<BTreeMap<String, i64>>,
    /// Per constraint: the smallest count over its domains (None: no eligible domain).
    minimum: Vec<Option<i64>>,
}

impl FilterState {
    fn recompute_minimum(&mut self, i: usize) {
        self.minimum[i] = self.counts[i].values().copied().min();
    }

    /// Preemption's what-if: `other` leaves (`delta` -1) or returns to `node`.
    fn update(&mut self, pod: &PodInfo, other: &PodInfo, node: &NodeInfo, delta: i64) {
        if !has_all_keys(node, &self.constraints) {
            return;
        }
        for i in 0..self.constraints.len() {
            let c = &self.constraints[i];
            if !node_included(c, pod, node) || !counts(other, &c.selector, &pod.namespace) {
                continue;
            }
            if let Some(d) = domain(node, &c.topology_key) {
                *self.counts[i].entry(d).or_default() += delta;
                self.recompute_minimum(i);
            }
        }
    }
}

impl FilterPlugin for PodTopologySpread {
    fn name(&self) -> &'static str {
        NAME
    }

    fn pre_filter(&self, pod: &PodInfo, cluster: &ClusterState, state: &mut CycleState) -> Status {
        let (cs, _) = constraints(pod, "DoNotSchedule", cluster);
        let mut st = FilterState {
            counts: vec![BTreeMap::new(); cs.len()],
            minimum: vec![None; cs.len()],
            constraints: Vec::new(),
        };
        if !cs.is_empty() {
            for node in cluster.nodes() {
                if !has_all_keys(node, &cs) {
                    continue;
                }
                for (i, c) in cs.iter().enumerate() {
                    if !node_included(c, pod, node) {
                        continue;
                    }
                    if let Some(d) = domain(node, &c.topology_key) {
                        *st.counts[i].entry(d).or_default() +=
                            count_matching(node, &c.selector, &pod.namespace);
                    }
                }
            }
            st.constraints = cs;
            for i in 0..st.constraints.len() {
                st.recompute_minimum(i);
            }
        }
        let skip = st.constraints.is_empty();
        state.write(NAME, st);
        if skip {
            // kube's Skip: no DoNotSchedule constraint, every node passes.
            return Status::skip(NAME);
        }
        Status::success()
    }

    fn filter(&self, pod: &PodInfo, node: &NodeInfo, state: &CycleState) -> Status {
        let Some(st) = state.read::<FilterState>(NAME) else {
            return Status::new(Code::Error, NAME, "PodTopologySpread: no PreFilter state");
        };
        for (i, c) in st.constraints.iter().enumerate() {
            let Some(d) = domain(node, &c.topology_key) else {
                return Status::new(
                    Code::UnschedulableAndUnresolvable,
                    NAME,
                    ERR_NODE_LABEL_NOT_MATCH,
                );
            };
            // No eligible domain at all: kube's critical paths stay at MaxInt32, so it passes.
            let Some(mut min) = st.minimum[i] else {
                continue;
            };
            if (st.counts[i].len() as i64) < c.min_domains {
                min = 0;
            }
            let own = i64::from(selector_matches(Some(&c.selector), pod.labels()));
            let here = st.counts[i].get(&d).copied().unwrap_or(0);
            if here + own - min > c.max_skew {
                return Status::new(Code::Unschedulable, NAME, ERR_CONSTRAINTS_NOT_MATCH);
            }
        }
        Status::success()
    }

    fn remove_pod(&self, state: &mut CycleState, pod: &PodInfo, victim: &PodInfo, node: &NodeInfo) {
        if let Some(st) = state.read_mut::<FilterState>(NAME) {
            st.update(pod, victim, node, -1);
        }
    }

    fn add_pod(&self, state: &mut CycleState, pod: &PodInfo, added: &PodInfo, node: &NodeInfo) {
        if let Some(st) = state.read_mut::<FilterState>(NAME) {
            st.update(pod, added, node, 1);
        }
    }
}

/// PreScore state for the soft constraints.
#[derive(Debug, Default)]
struct ScoreState {
    constraints: Vec<Constraint>,
    /// Feasible nodes lacking a constraint's key: they score 0.
    ignored: HashSet<String>,
    /// Per constraint (non-hostname keys): domain → matching pods over all nodes.
    counts: Vec<HashMap<String, i64>>,
    /// Per constraint: log(domains among feasible nodes + 2).
    weights: Vec<f64>,
}

/// Raw score of a node kube never scores (lacks a key); `normalize` turns it into 0.
const IGNORED: i64 = -1;

impl ScorePlugin for PodTopologySpread {
    fn name(&self) -> &'static str {
        NAME
    }

    fn pre_score(
        &self,
        pod: &PodInfo,
        feasible: &[&NodeInfo],
        cluster: &ClusterState,
        state: &mut CycleState,
    ) -> Status {
        let (cs, system_defaulted) = constraints(pod, "ScheduleAnyway", cluster);
        // kube's requireAllTopologies: the pod's own constraints ignore nodes lacking a key.
        let require_all = !system_defaulted;
        let mut st = ScoreState {
            counts: vec![HashMap::new(); cs.len()],
            weights: vec![0.0; cs.len()],
            ..Default::default()
        };
        if !cs.is_empty() {
            let mut sizes = vec![0usize; cs.len()];
            for node in feasible {
                if require_all && !has_all_keys(node, &cs) {
                    st.ignored.insert(node.name.clone());
                    continue;
                }
                for (i, c) in cs.iter().enumerate() {
                    if c.topology_key == HOSTNAME {
                        continue;
                    }
                    if let Some(d) = domain(node, &c.topology_key) {
                        if st.counts[i].insert(d, 0).is_none() {
                            sizes[i] += 1;
                        }
                    }
                }
            }
            let scored = feasible.len() - st.ignored.len();
            for (i, c) in cs.iter().enumerate() {
                let size = if c.topology_key == HOSTNAME {
                    scored
                } else {
                    sizes[i]
                };
                st.weights[i] = ((size + 2) as f64).ln();
            }
            for node in cluster.nodes() {
                if require_all && !has_all_keys(node, &cs) {
                    continue;
                }
                for (i, c) in cs.iter().enumerate() {
                    if c.topology_key == HOSTNAME || !node_included(c, pod, node) {
                        continue;
                    }
                    let Some(d) = domain(node, &c.topology_key) else {
                        continue;
                    };
                    // Only domains of feasible nodes are scored.
                    if let Some(n) = st.counts[i].get_mut(&d) {
                        *n += count_matching(node, &c.selector, &pod.namespace);
                    }
                }
            }
            st.constraints = cs;
        }
        let skip = st.constraints.is_empty();
        state.write(SCORE_STATE, st);
        if skip {
            // kube's Skip: no ScheduleAnyway constraint, every node would score the same.
            return Status::skip(NAME);
        }
        Status::success()
    }

    fn score(&self, pod: &PodInfo, node: &NodeInfo, _: &ClusterState, state: &CycleState) -> i64 {
        let Some(st) = state.read::<ScoreState>(SCORE_STATE) else {
            return 0;
        };
        if st.constraints.is_empty() {
            return 0;
        }
        if st.ignored.contains(&node.name) {
            return IGNORED;
        }
        let mut score = 0.0;
        for (i, c) in st.constraints.iter().enumerate() {
            let Some(d) = domain(node, &c.topology_key) else {
                continue;
            };
            let n = if c.topology_key == HOSTNAME {
                count_matching(node, &c.selector, &pod.namespace)
            } else {
                st.counts[i].get(&d).copied().unwrap_or(0)
            };
            score += n as f64 * st.weights[i] + (c.max_skew - 1) as f64;
        }
        score.round() as i64
    }

    /// kube's NormalizeScore: `100 * (max + min - s) / max` over the scored nodes; all 100
    /// when the maximum is 0; ignored nodes 0.
    fn normalize(&self, scores: &mut [i64]) {
        let scored = scores.iter().copied().filter(|s| *s != IGNORED);
        let (min, max) = scored.fold((i64::MAX, 0), |(lo, hi), s| (lo.min(s), hi.max(s)));
        for s in scores.iter_mut() {
            *s = if *s == IGNORED {
                0
            } else if max == 0 {
                MAX_NODE_SCORE
            } else {
                MAX_NODE_SCORE * (max + min - *s) / max
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::{json, Value};

    use super::*;
    use crate::algorithm::Algorithm;
    use crate::plugins::default_profile;
    use crate::testutil::{cluster, node_obj, pod_meta};

    fn labelled(name: &str, zone: &str) -> k8s_openapi::api::core::v1::Node {
        node_obj(
            name,
            json!({"metadata": {"labels": {"zone": zone, "kubernetes.io/hostname": name}}}),
        )
    }

    fn app_pod(name: &str, spec: Value) -> PodInfo {
        pod_meta(
            json!({"name": name, "namespace": "default", "uid": name, "labels": {"app": "web"}}),
            spec,
        )
    }

    fn spread(key: &str, skew: i32, when: &str) -> Value {
        json!({"topologySpreadConstraints": [{"maxSkew": skew, "topologyKey": key,
            "whenUnsatisfiable": when, "labelSelector": {"matchLabels": {"app": "web"}}}]})
    }

    /// zone a: n1 (2 web pods), n2 (0); zone b: n3 (1 web pod); n4 has no zone label.
    fn zones() -> ClusterState {
        let mut c = cluster(vec![
            labelled("n1", "a"),
            labelled("n2", "a"),
            labelled("n3", "b"),
            node_obj("n4", json!({})),
        ]);
        for (i, node) in ["n1", "n1", "n3"].iter().enumerate() {
            let mut p = app_pod(&format!("e{i}"), json!({}));
            p.uid = format!("e{i}");
            c.assume(Arc::new(p), node);
        }
        c
    }

    fn filter_all(c: &ClusterState, p: &PodInfo) -> Vec<(String, Status)> {
        let mut state = CycleState::default();
        assert!(PodTopologySpread.pre_filter(p, c, &mut state).is_success());
        c.nodes()
            .iter()
            .map(|n| (n.name.clone(), PodTopologySpread.filter(p, n, &state)))
            .collect()
    }

    #[test]
    fn hard_zone_spread_skew_is_counted_per_domain() {
        // a = 2, b = 1, min 1. Zone a: 2 + 1 - 1 = 2 > 1 refused; zone b: 1 + 1 - 1 = 1 ok.
        let c = zones();
        let p = app_pod("new", spread("zone", 1, "DoNotSchedule"));
        let r = filter_all(&c, &p);
        assert_eq!(r[0].1.reasons, vec![ERR_CONSTRAINTS_NOT_MATCH]);
        assert_eq!(r[0].1.code, Code::Unschedulable);
        assert_eq!(r[1].1.reasons, vec![ERR_CONSTRAINTS_NOT_MATCH]);
        assert!(r[2].1.is_success());
        assert_eq!(r[3].1.reasons, vec![ERR_NODE_LABEL_NOT_MATCH]);
        assert_eq!(r[3].1.code, Code::UnschedulableAndUnresolvable);
        // maxSkew 2: zone a is 2 + 1 - 1 = 2, allowed.
        let p = app_pod("new", spread("zone", 2, "DoNotSchedule"));
        assert!(filter_all(&c, &p)[0].1.is_success());
    }

    #[test]
    fn a_pod_that_does_not_match_its_own_selector_adds_nothing() {
        let c = zones();
        let p = pod_meta(
            json!({"name": "other", "namespace": "default", "uid": "o", "labels": {"app": "db"}}),
            spread("zone", 1, "DoNotSchedule"),
        );
        // Zone a: 2 + 0 - 1 = 1, allowed.
        assert!(filter_all(&c, &p)[0].1.is_success());
    }

    #[test]
    fn min_domains_above_the_domain_count_makes_the_minimum_zero() {
        // Two zones < minDomains 3: min 0; zone b: 1 + 1 - 0 = 2 > 1 refused.
        let c = zones();
        let mut spec = spread("zone", 1, "DoNotSchedule");
        spec["topologySpreadConstraints"][0]["minDomains"] = json!(3);
        let r = filter_all(&c, &app_pod("new", spec));
        assert_eq!(r[2].1.reasons, vec![ERR_CONSTRAINTS_NOT_MATCH]);
    }

    #[test]
    fn node_affinity_policy_decides_which_domains_count() {
        // The pod may only go to zone a nodes. Honor (default): zone b is not a domain, so the
        // minimum is zone a's 2: n2 takes 2 + 1 - 2 = 1. Ignore: min 1 (zone b), n2 refused.
        let c = zones();
        let mut spec = spread("zone", 1, "DoNotSchedule");
        spec["nodeSelector"] = json!({"zone": "a"});
        assert!(filter_all(&c, &app_pod("new", spec.clone()))[1]
            .1
            .is_success());
        spec["topologySpreadConstraints"][0]["nodeAffinityPolicy"] = json!("Ignore");
        assert!(!filter_all(&c, &app_pod("new", spec))[1].1.is_success());
    }

    #[test]
    fn taints_policy_honor_drops_untolerated_domains() {
        // Zone b's only node is tainted. Ignore (default): min 1, n2 refused; Honor: zone b is
        // not a domain, min 2, n2 allowed.
        let mut c = zones();
        c.upsert_node(node_obj(
            "n3",
            json!({"metadata": {"labels": {"zone": "b", "kubernetes.io/hostname": "n3"}},
                   "spec": {"taints": [{"key": "k", "effect": "NoSchedule"}]}}),
        ));
        let mut spec = spread("zone", 1, "DoNotSchedule");
        assert!(!filter_all(&c, &app_pod("new", spec.clone()))[1]
            .1
            .is_success());
        spec["topologySpreadConstraints"][0]["nodeTaintsPolicy"] = json!("Honor");
        assert!(filter_all(&c, &app_pod("new", spec))[1].1.is_success());
    }

    #[test]
    fn match_label_keys_narrow_the_selector_to_the_pods_revision() {
        // Existing pods have no "rev" label, so with matchLabelKeys [rev] nothing matches:
        // every zone counts 0 and n1 is fine.
        let c = zones();
        let mut spec = spread("zone", 1, "DoNotSchedule");
        spec["topologySpreadConstraints"][0]["matchLabelKeys"] = json!(["rev"]);
        let p = pod_meta(
            json!({"name": "new", "namespace": "default", "uid": "new",
                   "labels": {"app": "web", "rev": "2"}}),
            spec,
        );
        assert!(filter_all(&c, &p)[0].1.is_success());
    }

    #[test]
    fn terminating_and_other_namespace_pods_are_not_counted() {
        let mut c = zones();
        let mut p = pod_meta(
            json!({"name": "x", "namespace": "other", "uid": "x", "labels": {"app": "web"}}),
            json!({}),
        );
        p.uid = "x".into();
        c.assume(Arc::new(p), "n3");
        let mut t = pod_meta(
            json!({"name": "t", "namespace": "default", "uid": "t", "labels": {"app": "web"},
                   "deletionTimestamp": "2026-01-01T00:00:00Z"}),
            json!({}),
        );
        t.uid = "t".into();
        c.assume(Arc::new(t), "n3");
        // Zone b still counts 1: 1 + 1 - 1 = 1 ok.
        let r = filter_all(&c, &app_pod("new", spread("zone", 1, "DoNotSchedule")));
        assert!(r[2].1.is_success());
    }

    #[test]
    fn preemption_what_if_updates_the_counts() {
        let c = zones();
        let p = app_pod("new", spread("zone", 1, "DoNotSchedule"));
        let mut state = CycleState::default();
        PodTopologySpread.pre_filter(&p, &c, &mut state);
        let n1 = c.node("n1").unwrap();
        assert!(!PodTopologySpread.filter(&p, n1, &state).is_success());
        let victim = n1.pods[0].clone();
        PodTopologySpread.remove_pod(&mut state, &p, &victim, n1);
        // a = 1, b = 1: 1 + 1 - 1 = 1.
        assert!(PodTopologySpread.filter(&p, n1, &state).is_success());
        PodTopologySpread.add_pod(&mut state, &p, &victim, n1);
        assert!(!PodTopologySpread.filter(&p, n1, &state).is_success());
    }

    #[test]
    fn soft_spread_scores_emptier_domains_higher() {
        // Zone counts a = 2, b = 1; 2 zones among feasible nodes: weight ln(4) = 1.386.
        // Raw: n1, n2 = round(2 * 1.386 + 0) = 3; n3 = round(1.386) = 1; n4 lacks the key.
        // Normalised with max 3, min 1: n1, n2 = 100 * (3 + 1 - 3) / 3 = 33; n3 = 100; n4 0.
        let c = zones();
        let p = app_pod("new", spread("zone", 1, "ScheduleAnyway"));
        let feasible: Vec<&NodeInfo> = c.nodes().iter().collect();
        let mut state = CycleState::default();
        PodTopologySpread.pre_score(&p, &feasible, &c, &mut state);
        let mut scores: Vec<i64> = feasible
            .iter()
            .map(|n| PodTopologySpread.score(&p, n, &c, &state))
            .collect();
        assert_eq!(scores, vec![3, 3, 1, IGNORED]);
        PodTopologySpread.normalize(&mut scores);
        assert_eq!(scores, vec![33, 33, 100, 0]);
    }

    #[test]
    fn pods_a_service_selects_get_the_system_default_constraints() {
        use crate::informer::Cached;
        let mut c = zones();
        let p = app_pod("new", json!({}));
        let feasible: Vec<&NodeInfo> = c.nodes().iter().collect();
        let mut state = CycleState::default();
        // Nothing selects the pod yet: no constraint, kube's Skip.
        assert!(PodTopologySpread
            .pre_score(&p, &feasible, &c, &mut state)
            .is_skip());
        let svc: k8s_openapi::api::core::v1::Service = serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {"selector": {"app": "web"}}}))
        .unwrap();
        svc.upsert(&mut c);
        let feasible: Vec<&NodeInfo> = c.nodes().iter().collect();
        let mut state = CycleState::default();
        assert!(!PodTopologySpread
            .pre_score(&p, &feasible, &c, &mut state)
            .is_skip());
        // Hostname, maxSkew 3, over 4 scored nodes (n4 lacks the key but is not ignored under
        // the defaults): weight ln(6) = 1.792; the zone default finds no
        // topology.kubernetes.io/zone label anywhere and adds nothing.
        // n1 = round(2 * 1.792 + 2) = 6, n2 = 2, n3 = round(1.792 + 2) = 4, n4 = 0.
        let mut scores: Vec<i64> = feasible
            .iter()
            .map(|n| PodTopologySpread.score(&p, n, &c, &state))
            .collect();
        assert_eq!(scores, vec![6, 2, 4, 0]);
        PodTopologySpread.normalize(&mut scores);
        assert_eq!(scores, vec![0, 66, 33, 100]);
        // A pod with constraints of its own keeps them: no defaults added.
        let own = app_pod("own", spread("zone", 1, "DoNotSchedule"));
        let mut state = CycleState::default();
        assert!(PodTopologySpread
            .pre_score(&own, &feasible, &c, &mut state)
            .is_skip());
    }

    #[test]
    fn soft_hostname_spread_counts_each_node() {
        // Hostname key: 3 scored nodes (n4 lacks the label... it has none, so it is ignored):
        // weight ln(3 + 2) = 1.609; n1 = round(2 * 1.609) = 3, n2 = 0, n3 = round(1.609) = 2.
        let c = zones();
        let p = app_pod("new", spread(HOSTNAME, 1, "ScheduleAnyway"));
        let feasible: Vec<&NodeInfo> = c.nodes().iter().collect();
        let mut state = CycleState::default();
        PodTopologySpread.pre_score(&p, &feasible, &c, &mut state);
        let scores: Vec<i64> = feasible
            .iter()
            .map(|n| PodTopologySpread.score(&p, n, &c, &state))
            .collect();
        assert_eq!(scores, vec![3, 0, 2, IGNORED]);
    }

    #[test]
    fn the_default_profile_spreads_replicas_across_zones() {
        // Six pods with a hard zone spread of 1 land 3 and 3 over zones a and b.
        let mut c = cluster(vec![
            labelled("a1", "a"),
            labelled("a2", "a"),
            labelled("b1", "b"),
        ]);
        let mut alg = Algorithm::new(default_profile(), 0, 3);
        let mut per_zone: BTreeMap<String, i32> = BTreeMap::new();
        for i in 0..6 {
            let mut p = app_pod(&format!("r{i}"), spread("zone", 1, "DoNotSchedule"));
            p.uid = format!("r{i}");
            let node = alg.schedule(&p, &c).unwrap().node;
            let zone = domain(c.node(&node).unwrap(), "zone").unwrap();
            *per_zone.entry(zone).or_default() += 1;
            c.assume(Arc::new(p), &node);
        }
        assert_eq!(per_zone, BTreeMap::from([("a".into(), 3), ("b".into(), 3)]));
    }
}
