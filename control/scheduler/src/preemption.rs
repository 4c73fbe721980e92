//! DefaultPreemption's decision (pure): for a pod that fits nowhere, find nodes where
//! removing lower-priority pods would make it fit, keep as few victims as possible (reprieve
//! the most important first), pick the node kube would pick, and produce kube's
//! "preemption: ..." message when there is no such node. The I/O (deleting victims, setting
//! `status.nominatedNodeName`) is the scheduler loop's.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::algorithm::{resolvable, Algorithm, FitError};
use crate::cache::ClusterState;
use crate::framework::{Code, Status};
use crate::node_info::PodInfo;

pub const NOT_HELPFUL: &str = "Preemption is not helpful for scheduling";
pub const NO_VICTIMS: &str = "No preemption victims found for incoming pod";

/// Preemption's result.
#[derive(Debug, Clone)]
pub enum Preemption {
    /// Delete `victims` and nominate `node` for the pod.
    Plan {
        node: String,
        victims: Vec<Arc<PodInfo>>,
    },
    /// Nothing to do; the message goes after the fit error ("preemption: ...").
    NotPossible(String),
}

fn start_time(p: &PodInfo) -> Option<String> {
    // RFC 3339 strings sort in time order.
    p.pod
        .status
        .as_ref()
        .and_then(|s| s.start_time.as_ref())
        .map(|t| t.0.to_rfc3339())
}

/// What preemption would do for `pod` given the filter statuses of `fit`.
pub fn preempt(
    alg: &Algorithm,
    pod: &PodInfo,
    cluster: &ClusterState,
    fit: &FitError,
) -> Preemption {
    let policy = pod
        .pod
        .spec
        .as_ref()
        .and_then(|s| s.preemption_policy.as_deref());
    if policy == Some("Never") {
        return Preemption::NotPossible(
            "preemption: not eligible due to preemptionPolicy=Never.".into(),
        );
    }
    let Ok(mut state) = alg.pre_filter(pod, cluster) else {
        return Preemption::NotPossible(format!(
            "preemption: 0/{} nodes are available: {} {NOT_HELPFUL}.",
            cluster.num_nodes(),
            cluster.num_nodes()
        ));
    };
    let mut statuses: BTreeMap<String, Status> = BTreeMap::new();
    // (node, victims, how many of them violate a PodDisruptionBudget)
    let mut candidates: Vec<(String, Vec<Arc<PodInfo>>, usize)> = Vec::new();
    for node in cluster.nodes() {
        match fit.statuses.get(&node.name) {
            Some(st) if resolvable(st) => {}
            // Rejected for a reason removing pods cannot cure, or not evaluated at all.
            _ => {
                statuses.insert(
                    node.name.clone(),
                    Status::new(
                        Code::UnschedulableAndUnresolvable,
                        "DefaultPreemption",
                        NOT_HELPFUL,
                    ),
                );
                continue;
            }
        }
        let mut lower: Vec<Arc<PodInfo>> = node
            .pods
            .iter()
            .filter(|p| p.priority < pod.priority)
            .cloned()
            .collect();
        if lower.is_empty() {
            statuses.insert(
                node.name.clone(),
                Status::new(
                    Code::UnschedulableAndUnresolvable,
                    "DefaultPreemption",
                    NO_VICTIMS,
                ),
            );
            continue;
        }
        let mut what_if = node.clone();
        for v in &lower {
            what_if.remove_pod(&v.uid);
            alg.state_remove(&mut state, pod, v, node);
        }
        let st = alg.run_filters(pod, &what_if, &state);
        if !st.is_success() {
            for v in &lower {
                alg.state_add(&mut state, pod, v, node);
            }
            statuses.insert(node.name.clone(), st);
            continue;
        }
        // Reprieve the most important pods first: higher priority, then longer running.
        lower.sort_by(|a, b| {
            b.priority
                .cmp(&a.priority)
                .then_with(|| start_time(a).cmp(&start_time(b)))
        });
        // Pods whose eviction would break a PodDisruptionBudget are reprieved first (kube's
        // selectVictimsOnNode).
        let (violating, others) = cluster.budgets.split_violating(lower);
        let mut victims = Vec::new();
        let mut violations = 0;
        for (v, violates) in violating
            .into_iter()
            .map(|v| (v, true))
            .chain(others.into_iter().map(|v| (v, false)))
        {
            what_if.add_pod(v.clone());
            alg.state_add(&mut state, pod, &v, node);
            if !alg.run_filters(pod, &what_if, &state).is_success() {
                what_if.remove_pod(&v.uid);
                alg.state_remove(&mut state, pod, &v, node);
                victims.push(v);
                violations += usize::from(violates);
            }
        }
        // Back to the real cluster for the next node.
        for v in &victims {
            alg.state_add(&mut state, pod, v, node);
        }
        if victims.is_empty() {
            continue;
        }
        candidates.push((node.name.clone(), victims, violations));
    }
    if candidates.is_empty() {
        let msg = FitError {
            num_all_nodes: cluster.num_nodes(),
            statuses,
            ..Default::default()
        }
        .message();
        return Preemption::NotPossible(format!("preemption: {}", msg.trim_start()));
    }
    // kube's pickOneNodeForPreemption: fewest PodDisruptionBudget violations, then lowest
    // highest-victim priority, then lowest sum of priorities (shifted to be positive), then
    // fewest victims, then the first.
    let key = |(_, v, violations): &(String, Vec<Arc<PodInfo>>, usize)| {
        let highest = v.iter().map(|p| p.priority).max().unwrap_or(i32::MIN);
        let sum: i64 = v
            .iter()
            .map(|p| i64::from(p.priority) + i64::from(i32::MAX) + 1)
            .sum();
        (*violations, highest, sum, v.len())
    };
    let best = candidates
        .iter()
        .enumerate()
        .min_by_key(|(i, c)| (key(c), *i))
        .map(|(i, _)| i)
        .unwrap_or(0);
    let (node, victims, _) = candidates.swap_remove(best);
    Preemption::Plan { node, victims }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::json;

    use super::*;
    use crate::algorithm::ScheduleError;
    use crate::plugins::default_profile;
    use crate::testutil::{cluster, node_obj, pod, pod_meta};

    fn prio_pod(
        uid: &str,
        node: &str,
        cpu: &str,
        prio: i32,
    ) -> Arc<k8s_openapi::api::core::v1::Pod> {
        Arc::new(
            serde_json::from_value(json!({"metadata": {"name": uid, "namespace": "d", "uid": uid},
                "spec": {"nodeName": node, "priority": prio, "containers": [{"name": "c", "resources": {"requests": {"cpu": cpu}}}]}}))
            .unwrap(),
        )
    }

    fn fit(alg: &mut Algorithm, p: &PodInfo, c: &ClusterState) -> FitError {
        match alg.schedule(p, c) {
            Err(ScheduleError::Fit(f)) => f,
            other => panic!("expected a fit error, got {other:?}"),
        }
    }

    #[test]
    fn evicts_the_fewest_lowest_priority_pods() {
        // n1 (4 cpu) is full: low (1 cpu, prio 1), mid (2 cpu, prio 5), filler (1 cpu, prio
        // 100). n2 (4 cpu) is full: high (3 cpu, prio 50), low2 (1 cpu, prio 1). n3 is tainted.
        // A 2-cpu pod of priority 10: on n2 removing low2 frees only 1 cpu; on n1 removing low
        // and mid frees 3, then mid is reprieved first (higher priority) but leaves 1 free ->
        // victim; low is reprieved and 2 cpu stay free -> only mid goes.
        let mut c = cluster(vec![
            node_obj("n1", json!({})),
            node_obj("n2", json!({})),
            node_obj(
                "n3",
                json!({"spec": {"taints": [{"key": "k", "effect": "NoSchedule"}]}}),
            ),
        ]);
        c.upsert_bound_pod(prio_pod("low", "n1", "1", 1));
        c.upsert_bound_pod(prio_pod("mid", "n1", "2", 5));
        c.upsert_bound_pod(prio_pod("filler", "n1", "1", 100));
        c.upsert_bound_pod(prio_pod("high", "n2", "3", 50));
        c.upsert_bound_pod(prio_pod("low2", "n2", "1", 1));
        let p = pod(
            json!({"priority": 10, "containers": [{"name": "c", "resources": {"requests": {"cpu": "2"}}}]}),
        );
        let mut alg = Algorithm::new(default_profile(), 0, 3);
        let f = fit(&mut alg, &p, &c);
        match preempt(&alg, &p, &c, &f) {
            Preemption::Plan { node, victims } => {
                assert_eq!(node, "n1");
                let names: Vec<&str> = victims.iter().map(|v| v.name()).collect();
                assert_eq!(names, vec!["mid"]);
            }
            other => panic!("expected a plan, got {other:?}"),
        }
    }

    #[test]
    fn a_node_whose_victims_break_no_disruption_budget_is_preferred() {
        use crate::informer::Cached;
        // n1 and n2 (4 cpu each) are full with one 4-cpu pod of priority 1 each: a tie, which
        // goes to the first node, until n1's pod is under a budget that allows no disruption.
        let mut c = cluster(vec![node_obj("n1", json!({})), node_obj("n2", json!({}))]);
        for (name, node, app) in [("db-0", "n1", "db"), ("web-0", "n2", "web")] {
            let mut p = (*prio_pod(name, node, "4", 1)).clone();
            p.metadata.labels = Some([("app".to_string(), app.to_string())].into());
            c.upsert_bound_pod(Arc::new(p));
        }
        let p = pod(
            json!({"priority": 10, "containers": [{"name": "c", "resources": {"requests": {"cpu": "2"}}}]}),
        );
        let mut alg = Algorithm::new(default_profile(), 0, 3);
        let f = fit(&mut alg, &p, &c);
        let node_of = |plan: Preemption| match plan {
            Preemption::Plan { node, .. } => node,
            other => panic!("expected a plan, got {other:?}"),
        };
        assert_eq!(node_of(preempt(&alg, &p, &c, &f)), "n1");
        let pdb: k8s_openapi::api::policy::v1::PodDisruptionBudget =
            serde_json::from_value(json!({
            "metadata": {"name": "db", "namespace": "d"},
            "spec": {"selector": {"matchLabels": {"app": "db"}}},
            "status": {"disruptionsAllowed": 0, "currentHealthy": 1, "desiredHealthy": 1,
                "expectedPods": 1}}))
            .unwrap();
        pdb.upsert(&mut c);
        assert_eq!(node_of(preempt(&alg, &p, &c, &f)), "n2");
    }

    #[test]
    fn messages_when_preemption_cannot_help() {
        let mut c = cluster(vec![
            node_obj(
                "n1",
                json!({"status": {"allocatable": {"cpu": "1", "pods": "110"}}}),
            ),
            node_obj(
                "n2",
                json!({"spec": {"taints": [{"key": "k", "value": "v", "effect": "NoSchedule"}]}}),
            ),
        ]);
        c.upsert_bound_pod(prio_pod("same", "n1", "1", 0));
        let p = pod_meta(
            json!({"name": "p", "namespace": "d", "uid": "p"}),
            json!({"containers": [{"name": "c", "resources": {"requests": {"cpu": "500m"}}}]}),
        );
        let mut alg = Algorithm::new(default_profile(), 0, 3);
        let f = fit(&mut alg, &p, &c);
        let Preemption::NotPossible(msg) = preempt(&alg, &p, &c, &f) else {
            panic!("plan")
        };
        assert_eq!(msg, "preemption: 0/2 nodes are available: 1 No preemption victims found for incoming pod, 1 Preemption is not helpful for scheduling.");
        let never = pod(
            json!({"preemptionPolicy": "Never", "containers": [{"name": "c", "resources": {"requests": {"cpu": "500m"}}}]}),
        );
        let Preemption::NotPossible(msg) = preempt(&alg, &never, &c, &f) else {
            panic!("plan")
        };
        assert_eq!(
            msg,
            "preemption: not eligible due to preemptionPolicy=Never."
        );
    }
}
