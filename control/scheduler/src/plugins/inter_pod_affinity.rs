//! InterPodAffinity: required pod affinity and anti-affinity of the incoming pod, the required
//! anti-affinity of the pods already running (symmetry), and the preferred terms as a score.
//! Counts are kept per topology pair (label key, the node's value for it), computed once per
//! cycle over the cluster (PreFilter/PreScore) and read per node.
//!
//! Namespaces: a term's `namespaces` list, else (no selector) the owning pod's namespace; a
//! `namespaceSelector` adds the namespaces whose labels it matches (`{}`: every namespace),
//! from the Namespace objects the scheduler watches, as kube's mergedNamespaces.

use std::collections::{BTreeMap, HashMap};

use k8s_openapi::api::core::v1::{PodAffinityTerm, PodSpec, WeightedPodAffinityTerm};

use super::helpers::selector_matches;
use crate::cache::{ClusterState, NamespaceLabels};
use crate::framework::{Code, CycleState, FilterPlugin, ScorePlugin, Status, MAX_NODE_SCORE};
use crate::node_info::{NodeInfo, PodInfo};

pub const NAME: &str = "InterPodAffinity";
pub const ERR_AFFINITY: &str = "node(s) didn't match pod affinity rules";
pub const ERR_ANTI_AFFINITY: &str = "node(s) didn't match pod anti-affinity rules";
pub const ERR_EXISTING_ANTI_AFFINITY: &str =
    "node(s) didn't satisfy existing pods anti-affinity rules";
/// kube's default hardPodAffinityWeight: an existing pod's required affinity counts this much
/// in the score of nodes near it.
const HARD_POD_AFFINITY_WEIGHT: i64 = 1;

#[derive(Debug, Default)]
pub struct InterPodAffinity;

type Pair = (String, String);

fn spec(p: &PodInfo) -> Option<&PodSpec> {
    p.pod.spec.as_ref()
}

fn required_affinity(p: &PodInfo) -> &[PodAffinityTerm] {
    spec(p)
        .and_then(|s| s.affinity.as_ref())
        .and_then(|a| a.pod_affinity.as_ref())
        .and_then(|a| {
            a.required_during_scheduling_ignored_during_execution
                .as_deref()
        })
        .unwrap_or(&[])
}

fn required_anti(p: &PodInfo) -> &[PodAffinityTerm] {
    spec(p)
        .and_then(|s| s.affinity.as_ref())
        .and_then(|a| a.pod_anti_affinity.as_ref())
        .and_then(|a| {
            a.required_during_scheduling_ignored_during_execution
                .as_deref()
        })
        .unwrap_or(&[])
}

fn preferred_affinity(p: &PodInfo) -> &[WeightedPodAffinityTerm] {
    spec(p)
        .and_then(|s| s.affinity.as_ref())
        .and_then(|a| a.pod_affinity.as_ref())
        .and_then(|a| {
            a.preferred_during_scheduling_ignored_during_execution
                .as_deref()
        })
        .unwrap_or(&[])
}

fn preferred_anti(p: &PodInfo) -> &[WeightedPodAffinityTerm] {
    spec(p)
        .and_then(|s| s.affinity.as_ref())
        .and_then(|a| a.pod_anti_affinity.as_ref())
        .and_then(|a| {
            a.preferred_during_scheduling_ignored_during_execution
                .as_deref()
        })
        .unwrap_or(&[])
}

/// Whether `term`, owned by a pod in `owner_ns`, selects `candidate`; `namespaces` gives the
/// labels a `namespaceSelector` matches against.
pub fn term_selects(
    term: &PodAffinityTerm,
    owner_ns: &str,
    candidate: &PodInfo,
    namespaces: &NamespaceLabels,
) -> bool {
    let listed = term.namespaces.as_deref().unwrap_or(&[]);
    let ns_ok = match &term.namespace_selector {
        None if listed.is_empty() => candidate.namespace == owner_ns,
        None => listed.contains(&candidate.namespace),
        Some(sel) => {
            let all = sel.match_labels.as_ref().is_none_or(|m| m.is_empty())
                && sel.match_expressions.as_ref().is_none_or(|e| e.is_empty());
            all || listed.contains(&candidate.namespace)
                || namespaces
                    .get(&candidate.namespace)
                    .is_some_and(|l| selector_matches(Some(sel), Some(l)))
        }
    };
    ns_ok && selector_matches(term.label_selector.as_ref(), candidate.labels())
}

fn pair(node: &NodeInfo, key: &str) -> Option<Pair> {
    node.labels()
        .and_then(|l| l.get(key))
        .map(|v| (key.to_string(), v.clone()))
}

/// PreFilter state: counts per topology pair.
#[derive(Debug, Default)]
struct FilterState {
    /// Existing pods' required anti-affinity terms that select the incoming pod.
    existing_anti: HashMap<Pair, i64>,
    /// Existing pods matching all of the incoming pod's required affinity terms.
    affinity: HashMap<Pair, i64>,
    /// Existing pods matching each of the incoming pod's required anti-affinity terms.
    anti: HashMap<Pair, i64>,
    /// Nothing to check at all.
    skip: bool,
    /// The cycle's namespace labels (for the what-if updates of preemption too).
    namespaces: std::sync::Arc<NamespaceLabels>,
}

fn update(state: &mut FilterState, pod: &PodInfo, existing: &PodInfo, node: &NodeInfo, delta: i64) {
    let namespaces = state.namespaces.clone();
    let selects = |t: &PodAffinityTerm, owner: &str, candidate: &PodInfo| {
        term_selects(t, owner, candidate, &namespaces)
    };
    for t in required_anti(existing) {
        if selects(t, &existing.namespace, pod) {
            if let Some(p) = pair(node, &t.topology_key) {
                *state.existing_anti.entry(p).or_default() += delta;
            }
        }
    }
    let aff = required_affinity(pod);
    if !aff.is_empty() && aff.iter().all(|t| selects(t, &pod.namespace, existing)) {
        for t in aff {
            if let Some(p) = pair(node, &t.topology_key) {
                *state.affinity.entry(p).or_default() += delta;
            }
        }
    }
    for t in required_anti(pod) {
        if selects(t, &pod.namespace, existing) {
            if let Some(p) = pair(node, &t.topology_key) {
                *state.anti.entry(p).or_default() += delta;
            }
        }
    }
}

impl FilterPlugin for InterPodAffinity {
    fn name(&self) -> &'static str {
        NAME
    }

    fn pre_filter(&self, pod: &PodInfo, cluster: &ClusterState, state: &mut CycleState) -> Status {
        let mut st = FilterState {
            namespaces: cluster.namespaces.clone(),
            ..Default::default()
        };
        if cluster.affinity_pods() == 0
            && required_affinity(pod).is_empty()
            && required_anti(pod).is_empty()
        {
            st.skip = true;
        } else {
            for node in cluster.nodes() {
                for existing in &node.pods {
                    update(&mut st, pod, existing, node, 1);
                }
            }
        }
        let skip = st.skip;
        state.write(NAME, st);
        if skip {
            // kube's Skip: no terms of its own and no running pod with required anti-affinity.
            return Status::skip(NAME);
        }
        Status::success()
    }

    fn filter(&self, pod: &PodInfo, node: &NodeInfo, state: &CycleState) -> Status {
        let Some(st) = state.read::<FilterState>(NAME) else {
            return Status::new(Code::Error, NAME, "InterPodAffinity: no PreFilter state");
        };
        if st.skip {
            return Status::success();
        }
        let labels = node.labels();
        let aff = required_affinity(pod);
        let mut pods_exist = true;
        for t in aff {
            match pair(node, &t.topology_key) {
                // Every topology key must exist on the node.
                None => return Status::new(Code::UnschedulableAndUnresolvable, NAME, ERR_AFFINITY),
                Some(p) => {
                    if st.affinity.get(&p).copied().unwrap_or(0) <= 0 {
                        pods_exist = false;
                    }
                }
            }
        }
        // The first pod of a group that has affinity to itself may go anywhere.
        let first_of_group = st.affinity.values().all(|c| *c <= 0)
            && aff
                .iter()
                .all(|t| term_selects(t, &pod.namespace, pod, &st.namespaces));
        if !pods_exist && !first_of_group {
            return Status::new(Code::UnschedulableAndUnresolvable, NAME, ERR_AFFINITY);
        }
        for t in required_anti(pod) {
            if let Some(p) = pair(node, &t.topology_key) {
                if st.anti.get(&p).copied().unwrap_or(0) > 0 {
                    return Status::new(Code::Unschedulable, NAME, ERR_ANTI_AFFINITY);
                }
            }
        }
        for (k, v) in labels.into_iter().flatten() {
            if st
                .existing_anti
                .get(&(k.clone(), v.clone()))
                .copied()
                .unwrap_or(0)
                > 0
            {
                return Status::new(Code::Unschedulable, NAME, ERR_EXISTING_ANTI_AFFINITY);
            }
        }
        Status::success()
    }

    fn remove_pod(&self, state: &mut CycleState, pod: &PodInfo, victim: &PodInfo, node: &NodeInfo) {
        if let Some(st) = state.read_mut::<FilterState>(NAME) {
            if !st.skip {
                update(st, pod, victim, node, -1);
            }
        }
    }

    fn add_pod(&self, state: &mut CycleState, pod: &PodInfo, added: &PodInfo, node: &NodeInfo) {
        if let Some(st) = state.read_mut::<FilterState>(NAME) {
            if !st.skip {
                update(st, pod, added, node, 1);
            }
        }
    }
}

const SCORE_KEY: &str = "InterPodAffinity/score";

/// Weighted affinity per topology pair, kube's `processExistingPod` over the cluster.
fn topology_scores(pod: &PodInfo, cluster: &ClusterState) -> HashMap<Pair, i64> {
    let mut scores: HashMap<Pair, i64> = HashMap::new();
    let term_selects = |t: &PodAffinityTerm, owner: &str, candidate: &PodInfo| {
        term_selects(t, owner, candidate, &cluster.namespaces)
    };
    let mut add = |node: &NodeInfo, key: &str, w: i64| {
        if let Some(p) = pair(node, key) {
            *scores.entry(p).or_default() += w;
        }
    };
    for node in cluster.nodes() {
        for existing in &node.pods {
            for t in preferred_affinity(pod) {
                if term_selects(&t.pod_affinity_term, &pod.namespace, existing) {
                    add(node, &t.pod_affinity_term.topology_key, i64::from(t.weight));
                }
            }
            for t in preferred_anti(pod) {
                if term_selects(&t.pod_affinity_term, &pod.namespace, existing) {
                    add(
                        node,
                        &t.pod_affinity_term.topology_key,
                        -i64::from(t.weight),
                    );
                }
            }
            if !existing.has_affinity {
                continue;
            }
            // Symmetry: what the running pods want of (or against) pods like this one.
            for t in required_affinity(existing) {
                if term_selects(t, &existing.namespace, pod) {
                    add(node, &t.topology_key, HARD_POD_AFFINITY_WEIGHT);
                }
            }
            for t in preferred_affinity(existing) {
                if term_selects(&t.pod_affinity_term, &existing.namespace, pod) {
                    add(node, &t.pod_affinity_term.topology_key, i64::from(t.weight));
                }
            }
            for t in preferred_anti(existing) {
                if term_selects(&t.pod_affinity_term, &existing.namespace, pod) {
                    add(
                        node,
                        &t.pod_affinity_term.topology_key,
                        -i64::from(t.weight),
                    );
                }
            }
        }
    }
    scores
}

impl ScorePlugin for InterPodAffinity {
    fn name(&self) -> &'static str {
        NAME
    }

    fn pre_score(
        &self,
        pod: &PodInfo,
        _: &[&NodeInfo],
        cluster: &ClusterState,
        state: &mut CycleState,
    ) -> Status {
        let has_preferred = !preferred_affinity(pod).is_empty() || !preferred_anti(pod).is_empty();
        let scores = if has_preferred || cluster.affinity_pods() > 0 {
            topology_scores(pod, cluster)
        } else {
            HashMap::new()
        };
        let skip = scores.is_empty();
        state.write(SCORE_KEY, scores);
        if skip {
            // Every node would score 0.
            return Status::skip(NAME);
        }
        Status::success()
    }

    fn score(&self, _: &PodInfo, node: &NodeInfo, _: &ClusterState, state: &CycleState) -> i64 {
        let Some(scores) = state.read::<HashMap<Pair, i64>>(SCORE_KEY) else {
            return 0;
        };
        if scores.is_empty() {
            return 0;
        }
        let labels: BTreeMap<&String, &String> = node.labels().into_iter().flatten().collect();
        labels
            .into_iter()
            .filter_map(|(k, v)| scores.get(&(k.clone(), v.clone())))
            .sum()
    }

    /// kube's min-max normalisation (scores may be negative).
    fn normalize(&self, scores: &mut [i64]) {
        let (min, max) = (
            scores.iter().copied().min().unwrap_or(0),
            scores.iter().copied().max().unwrap_or(0),
        );
        let diff = max - min;
        for s in scores.iter_mut() {
            *s = if diff > 0 {
                (MAX_NODE_SCORE as f64 * ((*s - min) as f64 / diff as f64)) as i64
            } else {
                0
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::json;

    use super::*;
    use crate::testutil::{cluster, node_obj, pod_meta};

    fn bound(
        c: &mut ClusterState,
        name: &str,
        node: &str,
        labels: serde_json::Value,
        affinity: serde_json::Value,
    ) {
        let pod: k8s_openapi::api::core::v1::Pod = serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "d", "uid": name, "labels": labels},
            "spec": {"nodeName": node, "affinity": affinity, "containers": [{"name": "c"}]}}))
        .unwrap();
        c.upsert_bound_pod(Arc::new(pod));
    }

    fn incoming(labels: serde_json::Value, affinity: serde_json::Value) -> PodInfo {
        pod_meta(
            json!({"name": "new", "namespace": "d", "uid": "new", "labels": labels}),
            json!({"affinity": affinity}),
        )
    }

    fn zones() -> ClusterState {
        cluster(vec![
            node_obj(
                "a1",
                json!({"metadata": {"labels": {"zone": "a", "kubernetes.io/hostname": "a1"}}}),
            ),
            node_obj(
                "a2",
                json!({"metadata": {"labels": {"zone": "a", "kubernetes.io/hostname": "a2"}}}),
            ),
            node_obj(
                "b1",
                json!({"metadata": {"labels": {"zone": "b", "kubernetes.io/hostname": "b1"}}}),
            ),
            node_obj(
                "nozone",
                json!({"metadata": {"labels": {"kubernetes.io/hostname": "nozone"}}}),
            ),
        ])
    }

    fn verdicts(c: &ClusterState, p: &PodInfo) -> Vec<(String, Option<String>)> {
        let mut state = CycleState::default();
        InterPodAffinity.pre_filter(p, c, &mut state);
        c.nodes()
            .iter()
            .map(|n| {
                let st = InterPodAffinity.filter(p, n, &state);
                (n.name.clone(), st.reasons.first().cloned())
            })
            .collect()
    }

    #[test]
    fn required_affinity_by_zone_and_first_of_group() {
        let mut c = zones();
        let aff = json!({"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
            {"labelSelector": {"matchLabels": {"app": "db"}}, "topologyKey": "zone"}]}});
        // No db pod anywhere and the pod is not a db: nowhere.
        let web = incoming(json!({"app": "web"}), aff.clone());
        assert!(verdicts(&c, &web)
            .iter()
            .all(|(_, r)| r.as_deref() == Some(ERR_AFFINITY)));
        // A db pod is its own first: anywhere with the key (not "nozone").
        let db = incoming(json!({"app": "db"}), aff.clone());
        let v = verdicts(&c, &db);
        assert_eq!(v.iter().filter(|(_, r)| r.is_none()).count(), 3, "{v:?}");
        // A db runs on a2: web fits in zone a (a1, a2) only.
        bound(&mut c, "db-0", "a2", json!({"app": "db"}), json!(null));
        let v = verdicts(&c, &web);
        let ok: Vec<&str> = v
            .iter()
            .filter(|(_, r)| r.is_none())
            .map(|(n, _)| n.as_str())
            .collect();
        assert_eq!(ok, ["a1", "a2"]);
    }

    #[test]
    fn anti_affinity_both_ways() {
        let mut c = zones();
        let anti = json!({"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
            {"labelSelector": {"matchLabels": {"app": "web"}}, "topologyKey": "kubernetes.io/hostname"}]}});
        bound(&mut c, "web-0", "a1", json!({"app": "web"}), anti.clone());
        // The incoming web's own anti-affinity keeps it off a1.
        let v = verdicts(&c, &incoming(json!({"app": "web"}), anti));
        assert_eq!(
            v[0],
            ("a1".to_string(), Some(ERR_ANTI_AFFINITY.to_string()))
        );
        assert!(v[1..].iter().all(|(_, r)| r.is_none()));
        // A web pod without terms is still kept off a1 by web-0's anti-affinity (symmetry).
        let v = verdicts(&c, &incoming(json!({"app": "web"}), json!(null)));
        assert_eq!(
            v[0],
            (
                "a1".to_string(),
                Some(ERR_EXISTING_ANTI_AFFINITY.to_string())
            )
        );
        // Other namespaces are not selected by default.
        let other = pod_meta(
            json!({"name": "x", "namespace": "other", "uid": "x", "labels": {"app": "web"}}),
            json!({}),
        );
        assert!(verdicts(&c, &other).iter().all(|(_, r)| r.is_none()));
    }

    #[test]
    fn a_namespace_selector_matches_namespaces_by_their_labels() {
        use crate::informer::Cached;
        let mut c = zones();
        // web-0 runs in namespace d on a1 with anti-affinity to app=web pods in namespaces
        // labelled team=shop.
        let anti = json!({"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
            {"labelSelector": {"matchLabels": {"app": "web"}}, "topologyKey": "kubernetes.io/hostname",
             "namespaceSelector": {"matchLabels": {"team": "shop"}}}]}});
        bound(&mut c, "web-0", "a1", json!({"app": "web"}), anti);
        let other = pod_meta(
            json!({"name": "x", "namespace": "other", "uid": "x", "labels": {"app": "web"}}),
            json!({}),
        );
        // Namespace "other" not (yet) known, or without the label: not selected.
        assert!(verdicts(&c, &other).iter().all(|(_, r)| r.is_none()));
        let ns = |labels: serde_json::Value| -> k8s_openapi::api::core::v1::Namespace {
            serde_json::from_value(json!({"metadata": {"name": "other", "labels": labels}}))
                .unwrap()
        };
        ns(json!({"team": "ads"})).upsert(&mut c);
        assert!(verdicts(&c, &other).iter().all(|(_, r)| r.is_none()));
        // Labelled team=shop: web-0's anti-affinity now keeps it off a1 (symmetry).
        ns(json!({"team": "shop"})).upsert(&mut c);
        let v = verdicts(&c, &other);
        assert_eq!(
            v[0],
            (
                "a1".to_string(),
                Some(ERR_EXISTING_ANTI_AFFINITY.to_string())
            )
        );
        assert!(v[1..].iter().all(|(_, r)| r.is_none()));
    }

    #[test]
    fn preferred_scores_by_topology() {
        let mut c = zones();
        bound(
            &mut c,
            "cache-0",
            "a1",
            json!({"app": "cache"}),
            json!(null),
        );
        bound(
            &mut c,
            "noisy-0",
            "b1",
            json!({"app": "noisy"}),
            json!(null),
        );
        let p = incoming(
            json!({}),
            json!({
            "podAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
                {"weight": 10, "podAffinityTerm": {"labelSelector": {"matchLabels": {"app": "cache"}}, "topologyKey": "zone"}}]},
            "podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
                {"weight": 5, "podAffinityTerm": {"labelSelector": {"matchLabels": {"app": "noisy"}}, "topologyKey": "zone"}}]}}),
        );
        let mut state = CycleState::default();
        let nodes: Vec<&NodeInfo> = c.nodes().iter().collect();
        InterPodAffinity.pre_score(&p, &nodes, &c, &mut state);
        let mut s: Vec<i64> = nodes
            .iter()
            .map(|n| InterPodAffinity.score(&p, n, &c, &state))
            .collect();
        assert_eq!(s, [10, 10, -5, 0]);
        InterPodAffinity.normalize(&mut s);
        // (x - (-5)) * 100 / 15: 100, 100, 0, 33
        assert_eq!(s, [100, 100, 0, 33]);
    }
}
