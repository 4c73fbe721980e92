//! Pure helpers shared by the controllers: label selectors, controller references, pod
//! readiness and availability, and kube's ranking of pods to delete first.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use serde_json::{json, Value};

/// Whether `labels` satisfy a `metav1.LabelSelector`. An empty selector matches everything
/// (kube's LabelSelectorAsSelector); an operator kube does not know matches nothing.
pub fn selector_matches(sel: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    for (k, v) in sel.match_labels.iter().flatten() {
        if labels.get(k) != Some(v) {
            return false;
        }
    }
    for r in sel.match_expressions.iter().flatten() {
        let have = labels.get(&r.key);
        let values = r.values.as_deref().unwrap_or_default();
        let ok = match r.operator.as_str() {
            "In" => have.is_some_and(|v| values.contains(v)),
            "NotIn" => have.is_none_or(|v| !values.contains(v)),
            "Exists" => have.is_some(),
            "DoesNotExist" => have.is_none(),
            _ => false,
        };
        if !ok {
            return false;
        }
    }
    true
}

/// A JSON patch replacing ownerReferences only if the object is the same (uid) and its
/// references are still what the cache saw: adoption and release must not lose a concurrent
/// change, and a failed test makes the caller requeue.
pub fn owner_patch(meta: &ObjectMeta, refs: Vec<OwnerReference>) -> json_patch::Patch {
    let mut ops = vec![json!({"op": "test", "path": "/metadata/uid", "value": meta.uid})];
    match &meta.owner_references {
        Some(old) => {
            ops.push(json!({"op": "test", "path": "/metadata/ownerReferences", "value": old}));
            if refs.is_empty() {
                ops.push(json!({"op": "remove", "path": "/metadata/ownerReferences"}));
            } else {
                ops.push(
                    json!({"op": "replace", "path": "/metadata/ownerReferences", "value": refs}),
                );
            }
        }
        None => ops.push(json!({"op": "add", "path": "/metadata/ownerReferences", "value": refs})),
    }
    serde_json::from_value(Value::Array(ops)).expect("well-formed json patch")
}

/// A merge patch body `{"status": …}` that also clears `fields` the status omits (a zero count
/// is omitted on the wire, and a merge patch leaves omitted fields as they were).
pub fn status_patch(status: &impl serde::Serialize, fields: &[&str]) -> Value {
    let mut v = serde_json::to_value(status).unwrap_or(Value::Null);
    if let Value::Object(m) = &mut v {
        for f in fields {
            m.entry(f.to_string()).or_insert(Value::Null);
        }
    }
    json!({ "status": v })
}

/// Whether `labels` satisfy a Service's equality selector (every pair present).
pub fn map_selector_matches(
    sel: &BTreeMap<String, String>,
    labels: &BTreeMap<String, String>,
) -> bool {
    sel.iter().all(|(k, v)| labels.get(k) == Some(v))
}

pub fn labels(meta: &ObjectMeta) -> &BTreeMap<String, String> {
    static EMPTY: BTreeMap<String, String> = BTreeMap::new();
    meta.labels.as_ref().unwrap_or(&EMPTY)
}

/// The owner reference with `controller: true`, if any.
pub fn controller_of(meta: &ObjectMeta) -> Option<&OwnerReference> {
    meta.owner_references
        .iter()
        .flatten()
        .find(|r| r.controller == Some(true))
}

/// A controller reference to `owner` (kind and apiVersion given by the caller), with
/// blockOwnerDeletion as kube's controllers set it.
pub fn controller_ref(owner: &ObjectMeta, api_version: &str, kind: &str) -> OwnerReference {
    OwnerReference {
        api_version: api_version.to_string(),
        kind: kind.to_string(),
        name: owner.name.clone().unwrap_or_default(),
        uid: owner.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// kube's FilterActivePods: not finished and not being deleted.
pub fn is_active(pod: &Pod) -> bool {
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    phase != Some("Succeeded")
        && phase != Some("Failed")
        && pod.metadata.deletion_timestamp.is_none()
}

fn ready_condition(pod: &Pod) -> Option<&k8s_openapi::api::core::v1::PodCondition> {
    pod.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready")
}

pub fn is_ready(pod: &Pod) -> bool {
    ready_condition(pod).is_some_and(|c| c.status == "True")
}

/// When the pod last became ready, if it is ready.
pub fn ready_since(pod: &Pod) -> Option<DateTime<Utc>> {
    let c = ready_condition(pod).filter(|c| c.status == "True")?;
    c.last_transition_time.as_ref().map(|t| t.0)
}

/// kube's IsPodAvailable: ready for at least `min_ready_seconds` at `now`.
pub fn is_available(pod: &Pod, min_ready_seconds: i32, now: DateTime<Utc>) -> bool {
    if !is_ready(pod) {
        return false;
    }
    if min_ready_seconds <= 0 {
        return true;
    }
    match ready_since(pod) {
        Some(t) => t + chrono::Duration::seconds(min_ready_seconds.into()) < now,
        None => false,
    }
}

pub fn pod_ip(pod: &Pod) -> Option<&str> {
    pod.status
        .as_ref()?
        .pod_ip
        .as_deref()
        .filter(|s| !s.is_empty())
}

pub fn node_name(pod: &Pod) -> &str {
    pod.spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .unwrap_or("")
}

fn phase_rank(pod: &Pod) -> u8 {
    match pod.status.as_ref().and_then(|s| s.phase.as_deref()) {
        Some("Pending") | None => 0,
        Some("Unknown") => 1,
        Some("Running") => 2,
        _ => 3,
    }
}

fn deletion_cost(pod: &Pod) -> i32 {
    pod.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get("controller.kubernetes.io/pod-deletion-cost"))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn max_restarts(pod: &Pod) -> i32 {
    let Some(st) = pod.status.as_ref() else {
        return 0;
    };
    st.container_statuses
        .iter()
        .flatten()
        .chain(st.init_container_statuses.iter().flatten())
        .map(|c| c.restart_count)
        .max()
        .unwrap_or(0)
}

/// kube's logarithmicRankDiff: compares how long ago two instants were on a log2 scale of
/// nanoseconds, so pods of similar age count as equally old (LogarithmicScaleDown, on by default).
fn log_rank_diff(t1: DateTime<Utc>, t2: DateTime<Utc>, now: DateTime<Utc>) -> i64 {
    let rank = |t: DateTime<Utc>| {
        let d = (now - t).num_nanoseconds().unwrap_or(i64::MAX);
        if d > 0 {
            (d as f64).log2() as i64
        } else {
            -1
        }
    };
    rank(t1) - rank(t2)
}

/// A pod to rank for deletion, with the number of related pods on its node.
#[derive(Debug, Clone, Copy)]
pub struct Ranked<'a> {
    pub pod: &'a Pod,
    pub rank: usize,
}

/// kube's ActivePodsWithRanks.Less: `Less` means "delete earlier". Unscheduled < scheduled,
/// pending < unknown < running, not ready < ready, lower deletion cost first, more pods of the
/// same family on the node first, recently ready < long ready, more restarts first, newer first
/// (ages compared on kube's log2 scale), then the uid.
///
/// Compared as one key per pod, so the order is total: kube's Less falls back to the uid only
/// when two times differ within a log2 bucket and goes on to the next criterion when they are
/// equal, which is not transitive (Go's sort tolerates that; Rust's sort panics on it, which
/// killed the ReplicaSet controller's worker mid scale-down under a 30-pod rollout).
pub fn delete_first(a: &Ranked, b: &Ranked, now: DateTime<Utc>) -> Ordering {
    delete_key(a, now).cmp(&delete_key(b, now))
}

type DeleteKey<'a> = (
    bool,
    u8,
    bool,
    i32,
    std::cmp::Reverse<usize>,
    Option<i64>,
    std::cmp::Reverse<i32>,
    Option<i64>,
    Option<&'a String>,
);

fn delete_key<'a>(r: &Ranked<'a>, now: DateTime<Utc>) -> DeleteKey<'a> {
    let p = r.pod;
    let bucket = |t: DateTime<Utc>| log_rank_diff(t, now, now);
    (
        !node_name(p).is_empty(),
        phase_rank(p),
        is_ready(p),
        deletion_cost(p),
        std::cmp::Reverse(r.rank),
        // kube's afterOrZero: a zero time (None) sorts first.
        if is_ready(p) {
            ready_since(p).map(bucket)
        } else {
            None
        },
        std::cmp::Reverse(max_restarts(p)),
        p.metadata.creation_timestamp.as_ref().map(|t| bucket(t.0)),
        p.metadata.uid.as_ref(),
    )
}

/// The `diff` pods to delete out of `pods`, ranked as kube does; `related` are the active pods of
/// the whole family (all ReplicaSets of the same Deployment) used to spot doubled-up nodes.
pub fn pods_to_delete<'a>(
    pods: &[&'a Pod],
    related: &[&Pod],
    diff: usize,
    now: DateTime<Utc>,
) -> Vec<&'a Pod> {
    if diff >= pods.len() {
        return pods.to_vec();
    }
    let mut on_node: BTreeMap<&str, usize> = BTreeMap::new();
    for p in related {
        if is_active(p) && !node_name(p).is_empty() {
            *on_node.entry(node_name(p)).or_default() += 1;
        }
    }
    let mut ranked: Vec<Ranked> = pods
        .iter()
        .map(|p| Ranked {
            pod: p,
            rank: if node_name(p).is_empty() {
                0
            } else {
                on_node.get(node_name(p)).copied().unwrap_or(0)
            },
        })
        .collect();
    ranked.sort_by(|a, b| delete_first(a, b, now));
    ranked.into_iter().take(diff).map(|r| r.pod).collect()
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{PodCondition, PodSpec, PodStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelectorRequirement, Time};

    use super::*;

    fn t(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + secs, 0).unwrap()
    }

    fn pod(name: &str, node: &str, phase: &str, ready_at: Option<i64>, created: i64) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                uid: Some(format!("uid-{name}")),
                creation_timestamp: Some(Time(t(created))),
                ..Default::default()
            },
            spec: Some(PodSpec {
                node_name: (!node.is_empty()).then(|| node.to_string()),
                ..Default::default()
            }),
            status: Some(PodStatus {
                phase: Some(phase.into()),
                conditions: ready_at.map(|r| {
                    vec![PodCondition {
                        type_: "Ready".into(),
                        status: "True".into(),
                        last_transition_time: Some(Time(t(r))),
                        ..Default::default()
                    }]
                }),
                ..Default::default()
            }),
        }
    }

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn set_based_selectors() {
        let sel = LabelSelector {
            match_labels: Some(labels(&[("app", "web")])),
            match_expressions: Some(vec![
                LabelSelectorRequirement {
                    key: "tier".into(),
                    operator: "In".into(),
                    values: Some(vec!["a".into(), "b".into()]),
                },
                LabelSelectorRequirement {
                    key: "canary".into(),
                    operator: "DoesNotExist".into(),
                    values: None,
                },
                LabelSelectorRequirement {
                    key: "env".into(),
                    operator: "NotIn".into(),
                    values: Some(vec!["prod".into()]),
                },
            ]),
        };
        assert!(selector_matches(
            &sel,
            &labels(&[("app", "web"), ("tier", "b")])
        ));
        assert!(selector_matches(
            &sel,
            &labels(&[("app", "web"), ("tier", "a"), ("env", "dev")])
        ));
        assert!(!selector_matches(&sel, &labels(&[("app", "web")])));
        assert!(!selector_matches(
            &sel,
            &labels(&[("app", "web"), ("tier", "a"), ("canary", "")])
        ));
        assert!(!selector_matches(
            &sel,
            &labels(&[("app", "web"), ("tier", "a"), ("env", "prod")])
        ));
        assert!(selector_matches(&LabelSelector::default(), &labels(&[])));
    }

    #[test]
    fn availability_waits_min_ready_seconds() {
        let p = pod("a", "n1", "Running", Some(0), 0);
        assert!(is_available(&p, 0, t(0)));
        assert!(
            !is_available(&p, 10, t(10)),
            "needs strictly more than 10 s"
        );
        assert!(is_available(&p, 10, t(11)));
        let not_ready = pod("b", "n1", "Running", None, 0);
        assert!(!is_available(&not_ready, 0, t(100)));
    }

    #[test]
    fn deletion_ranking_follows_kube() {
        let now = t(10_000);
        let unscheduled = pod("unscheduled", "", "Pending", None, 0);
        let pending = pod("pending", "n1", "Pending", None, 0);
        let running_not_ready = pod("running-not-ready", "n1", "Running", None, 0);
        // Ready 10 s ago vs 5000 s ago: different log2 buckets, the recent one goes first.
        let recently_ready = pod("recently-ready", "n2", "Running", Some(9_990), 0);
        let long_ready = pod("long-ready", "n2", "Running", Some(5_000), 0);
        let pods = vec![
            &long_ready,
            &recently_ready,
            &running_not_ready,
            &pending,
            &unscheduled,
        ];
        let order: Vec<&str> = pods_to_delete(&pods, &pods, 4, now)
            .iter()
            .map(|p| p.metadata.name.as_deref().unwrap())
            .collect();
        assert_eq!(
            order,
            [
                "unscheduled",
                "pending",
                "running-not-ready",
                "recently-ready"
            ]
        );
    }

    #[test]
    fn doubled_up_nodes_lose_pods_first() {
        let now = t(10_000);
        let a = pod("a", "busy", "Running", Some(0), 0);
        let b = pod("b", "busy", "Running", Some(0), 0);
        let c = pod("c", "quiet", "Running", Some(0), 0);
        let pods = vec![&c, &a, &b];
        let chosen = pods_to_delete(&pods, &pods, 1, now);
        assert_eq!(node_name(chosen[0]), "busy");
    }

    #[test]
    fn the_deletion_order_is_total_on_pods_kube_would_not_order_consistently() {
        // Ready times equal for a/b (kube goes on to restarts/creation) but differing within
        // a bucket for b/c (kube compares uids): with kube's Less this is not transitive.
        let now = t(10_000);
        let mut pods = Vec::new();
        for i in 0..40 {
            let mut p = pod(
                &format!("p{i}"),
                "n",
                "Running",
                Some(9_000 + i % 3),
                8_990 - i * 100,
            );
            p.metadata.uid = Some(format!("uid-{}", (i * 7919) % 41));
            pods.push(p);
        }
        let ranked: Vec<Ranked> = pods.iter().map(|p| Ranked { pod: p, rank: 1 }).collect();
        for a in &ranked {
            for b in &ranked {
                for c in &ranked {
                    let (ab, bc) = (delete_first(a, b, now), delete_first(b, c, now));
                    if ab == bc && ab != Ordering::Equal {
                        assert_eq!(delete_first(a, c, now), ab, "not transitive");
                    }
                }
            }
        }
        let refs: Vec<&Pod> = pods.iter().collect();
        assert_eq!(pods_to_delete(&refs, &refs, 10, now).len(), 10);
    }

    #[test]
    fn similar_ages_fall_back_to_uid_and_newer_goes_first() {
        let now = t(10_000);
        // Created 1000 s and 1001 s ago: same log2 bucket, so the uid decides.
        let x = pod("x", "n", "Running", None, 9_000);
        let y = pod("y", "n", "Running", None, 8_999);
        let r = |p| Ranked { pod: p, rank: 1 };
        assert_eq!(delete_first(&r(&x), &r(&y), now), Ordering::Less);
        // Created 10 s ago vs 5000 s ago: the newer one goes first.
        let young = pod("z-young", "n", "Running", None, 9_990);
        let old = pod("a-old", "n", "Running", None, 5_000);
        assert_eq!(delete_first(&r(&young), &r(&old), now), Ordering::Less);
    }
}
