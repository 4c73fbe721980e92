//! The DaemonSet controller (kube's `pkg/controller/daemon`): one pod per eligible Node —
//! eligible when the template's nodeSelector and required node affinity match the Node and
//! every NoSchedule/NoExecute taint is tolerated (with the tolerations kube adds to daemon pods).
//! Pods are created with a required node affinity on `metadata.name` so the scheduler places
//! them (kube's ReplaceDaemonSetPodNodeNameNodeAffinity); pods on nodes that are no longer
//! eligible or gone, and duplicates, are deleted. Template changes roll out with
//! `RollingUpdate` (old pods deleted while at most maxUnavailable nodes lack an available
//! daemon pod) or wait for manual deletion with `OnDelete`. The template version is the
//! `controller-revision-hash` label, computed like the Deployment hash (no ControllerRevision
//! objects: pea-control does not serve them).

use std::collections::BTreeMap;
use std::sync::Arc;

use futures_util::future::join_all;
use k8s_openapi::api::apps::v1::{DaemonSet, DaemonSetStatus};
use k8s_openapi::api::core::v1::{
    Affinity, Node, NodeAffinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, Pod,
    Taint, Toleration,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use tracing::Instrument;

use crate::deployment_util::{compute_hash, scaled_value};
use crate::events::{reference, Recorder};
use crate::expectations::Expectations;
use crate::informer::{Cache, Change};
use crate::podutil::{self, controller_of, labels};
use crate::queue::{run_workers, Queue, Requeue};
use crate::{is_not_found, key, split_key, Clock, Informers};

pub const HASH_LABEL: &str = "controller-revision-hash";

const STATUS_FIELDS: &[&str] = &[
    "currentNumberScheduled",
    "desiredNumberScheduled",
    "numberMisscheduled",
    "numberReady",
    "numberAvailable",
    "numberUnavailable",
    "updatedNumberScheduled",
    "observedGeneration",
];

#[derive(Debug, thiserror::Error)]
pub enum DaemonSetError {
    #[error("daemonset {key}: {what}: {source}")]
    Api {
        key: String,
        what: String,
        #[source]
        source: kube::Error,
    },
}

/// kube's daemon pod tolerations (AddOrUpdateDaemonPodTolerations).
pub fn default_tolerations(host_network: bool) -> Vec<Toleration> {
    let t = |key: &str, effect: &str| Toleration {
        key: Some(key.into()),
        operator: Some("Exists".into()),
        effect: Some(effect.into()),
        ..Default::default()
    };
    let mut v = vec![
        t("node.kubernetes.io/not-ready", "NoExecute"),
        t("node.kubernetes.io/unreachable", "NoExecute"),
        t("node.kubernetes.io/disk-pressure", "NoSchedule"),
        t("node.kubernetes.io/memory-pressure", "NoSchedule"),
        t("node.kubernetes.io/pid-pressure", "NoSchedule"),
        t("node.kubernetes.io/unschedulable", "NoSchedule"),
    ];
    if host_network {
        v.push(t("node.kubernetes.io/network-unavailable", "NoSchedule"));
    }
    v
}

pub(crate) fn tolerates(tol: &Toleration, taint: &Taint) -> bool {
    if let Some(e) = tol.effect.as_deref().filter(|e| !e.is_empty()) {
        if e != taint.effect {
            return false;
        }
    }
    match tol.operator.as_deref().unwrap_or("Equal") {
        "Exists" => tol
            .key
            .as_deref()
            .is_none_or(|k| k.is_empty() || k == taint.key),
        _ => {
            tol.key.as_deref() == Some(taint.key.as_str())
                && tol.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or("")
        }
    }
}

fn requirement_matches(r: &NodeSelectorRequirement, value: Option<&str>) -> bool {
    let values = r.values.as_deref().unwrap_or_default();
    match r.operator.as_str() {
        "In" => value.is_some_and(|v| values.iter().any(|x| x == v)),
        "NotIn" => value.is_none_or(|v| !values.iter().any(|x| x == v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        "Gt" | "Lt" => {
            let (Some(v), Some(bound)) = (
                value.and_then(|v| v.parse::<i64>().ok()),
                values.first().and_then(|b| b.parse::<i64>().ok()),
            ) else {
                return false;
            };
            if r.operator == "Gt" {
                v > bound
            } else {
                v < bound
            }
        }
        _ => false,
    }
}

fn term_matches(term: &NodeSelectorTerm, node: &Node) -> bool {
    let l = labels(&node.metadata);
    let name = node.name_any();
    let exprs = term.match_expressions.iter().flatten();
    let fields = term.match_fields.iter().flatten();
    if term.match_expressions.as_ref().is_none_or(|e| e.is_empty())
        && term.match_fields.as_ref().is_none_or(|f| f.is_empty())
    {
        return false;
    }
    exprs
        .into_iter()
        .all(|r| requirement_matches(r, l.get(&r.key).map(String::as_str)))
        && fields
            .into_iter()
            .all(|r| requirement_matches(r, (r.key == "metadata.name").then_some(name.as_str())))
}

/// Whether a daemon pod of `ds` should run on `node` (kube's NodeShouldRunDaemonPod, without
/// resource fit: the scheduler decides that).
pub fn should_run(ds: &DaemonSet, node: &Node) -> bool {
    let Some(spec) = ds.spec.as_ref().and_then(|s| s.template.spec.as_ref()) else {
        return false;
    };
    let l = labels(&node.metadata);
    if !spec
        .node_selector
        .iter()
        .flatten()
        .all(|(k, v)| l.get(k) == Some(v))
    {
        return false;
    }
    let required = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|a| {
            a.required_during_scheduling_ignored_during_execution
                .as_ref()
        });
    if let Some(req) = required {
        if !req
            .node_selector_terms
            .iter()
            .any(|t| term_matches(t, node))
        {
            return false;
        }
    }
    let mut tolerations = spec.tolerations.clone().unwrap_or_default();
    tolerations.extend(default_tolerations(spec.host_network == Some(true)));
    node.spec
        .as_ref()
        .and_then(|s| s.taints.as_ref())
        .into_iter()
        .flatten()
        .filter(|t| t.effect == "NoSchedule" || t.effect == "NoExecute")
        .all(|taint| tolerations.iter().any(|tol| tolerates(tol, taint)))
}

/// The node a daemon pod is for: its nodeName, or the node its required affinity names.
fn target_node(pod: &Pod) -> Option<String> {
    let n = podutil::node_name(pod);
    if !n.is_empty() {
        return Some(n.to_string());
    }
    pod.spec
        .as_ref()?
        .affinity
        .as_ref()?
        .node_affinity
        .as_ref()?
        .required_during_scheduling_ignored_during_execution
        .as_ref()?
        .node_selector_terms
        .iter()
        .flat_map(|t| t.match_fields.iter().flatten())
        .find(|r| r.key == "metadata.name" && r.operator == "In")
        .and_then(|r| r.values.as_ref()?.first().cloned())
}

pub struct DaemonSetController {
    client: Client,
    sets: Arc<Cache<DaemonSet>>,
    nodes: Arc<Cache<Node>>,
    pods: Arc<Cache<Pod>>,
    queue: Arc<Queue>,
    expectations: Arc<Expectations>,
    clock: Clock,
    events: Recorder,
}

impl std::fmt::Debug for DaemonSetController {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DaemonSetController")
            .finish_non_exhaustive()
    }
}

impl DaemonSetController {
    pub fn register(
        informers: &Informers,
        client: Client,
        clock: Clock,
        events: Recorder,
    ) -> Arc<Self> {
        let c = Arc::new(Self {
            client,
            sets: informers.daemonsets.cache(),
            nodes: informers.nodes.cache(),
            pods: informers.pods.cache(),
            queue: Queue::new(),
            expectations: Arc::new(Expectations::default()),
            clock,
            events,
        });
        let q = c.queue.clone();
        let exp = c.expectations.clone();
        informers.daemonsets.add_handler(move |ch| {
            let (ds, deleted) = match ch {
                Change::Added(d) | Change::Updated { new: d, .. } => (d, false),
                Change::Deleted(d) => (d, true),
            };
            let k = key(&ds.namespace().unwrap_or_default(), &ds.name_any());
            if deleted {
                exp.forget(&k);
            }
            q.add(k);
        });
        let weak = Arc::downgrade(&c);
        informers.nodes.add_handler(move |ch| {
            let Some(c) = weak.upgrade() else { return };
            if let Change::Updated { old, new } = ch {
                let same = old.metadata.labels == new.metadata.labels
                    && old.spec.as_ref().map(|s| &s.taints) == new.spec.as_ref().map(|s| &s.taints);
                if same {
                    return;
                }
            }
            for ds in c.sets.list() {
                c.queue
                    .add(key(&ds.namespace().unwrap_or_default(), &ds.name_any()));
            }
        });
        let weak = Arc::downgrade(&c);
        informers.pods.add_handler(move |ch| {
            let Some(c) = weak.upgrade() else { return };
            let (pod, added, gone) = match ch {
                Change::Added(p) => (
                    p,
                    p.metadata.deletion_timestamp.is_none(),
                    p.metadata.deletion_timestamp.is_some(),
                ),
                Change::Updated { new, .. } => {
                    (new, false, new.metadata.deletion_timestamp.is_some())
                }
                Change::Deleted(p) => (p, false, true),
            };
            let Some(r) = controller_of(&pod.metadata).filter(|r| r.kind == "DaemonSet") else {
                return;
            };
            let ns = pod.namespace().unwrap_or_default();
            let k = key(&ns, &r.name);
            if added {
                c.expectations.creation_observed(&k);
            }
            if gone {
                c.expectations
                    .deletion_observed(&k, &key(&ns, &pod.name_any()));
            }
            c.queue.add(k);
        });
        c
    }

    pub async fn run(self: Arc<Self>, workers: usize) {
        self.sets.wait_synced().await;
        self.nodes.wait_synced().await;
        self.pods.wait_synced().await;
        let q = self.queue.clone();
        run_workers(q, workers, "daemonset", move |k| {
            let c = self.clone();
            async move {
                let span = tracing::debug_span!("sync_daemonset", key = %k);
                c.sync(&k).instrument(span).await
            }
        })
        .await;
    }

    async fn sync(&self, k: &str) -> Result<Requeue, DaemonSetError> {
        let (ns, name) = split_key(k);
        let Some(ds) = self.sets.get(ns, name) else {
            self.expectations.forget(k);
            return Ok(Requeue::default());
        };
        let err = |what: String| {
            move |source| DaemonSetError::Api {
                key: k.to_string(),
                what,
                source,
            }
        };
        let spec = ds.spec.clone().unwrap_or_default();
        let hash = compute_hash(&spec.template, None);
        let min_ready = spec.min_ready_seconds.unwrap_or(0);
        let now = self.clock.now();
        let uid = ds.metadata.uid.clone().unwrap_or_default();
        let mut by_node: BTreeMap<String, Vec<Arc<Pod>>> = BTreeMap::new();
        let mut orphaned: Vec<Arc<Pod>> = Vec::new();
        for p in self.pods.list_namespace(ns) {
            if !podutil::is_active(&p) || controller_of(&p.metadata).is_none_or(|r| r.uid != uid) {
                continue;
            }
            match target_node(&p) {
                Some(n) => by_node.entry(n).or_default().push(p),
                None => orphaned.push(p),
            }
        }
        let nodes = self.nodes.list();
        let mut create_on: Vec<String> = Vec::new();
        let mut delete: Vec<Arc<Pod>> = orphaned;
        let (mut desired, mut current, mut misscheduled) = (0, 0, 0);
        let (mut ready, mut available, mut updated) = (0, 0, 0);
        // Nodes whose daemon pod is old, with whether it is available (rolling update input).
        let mut old_pods: Vec<(Arc<Pod>, bool)> = Vec::new();
        let mut unavailable_nodes = 0;
        for node in &nodes {
            let n = node.name_any();
            let mut here = by_node.remove(&n).unwrap_or_default();
            if !should_run(&ds, node) {
                if !here.is_empty() {
                    misscheduled += 1;
                }
                delete.extend(here);
                continue;
            }
            desired += 1;
            if here.is_empty() {
                create_on.push(n);
                unavailable_nodes += 1;
                continue;
            }
            current += 1;
            // Keep the oldest pod, delete duplicates (kube keeps the oldest too).
            here.sort_by(|a, b| {
                a.metadata
                    .creation_timestamp
                    .cmp(&b.metadata.creation_timestamp)
                    .then(a.metadata.name.cmp(&b.metadata.name))
            });
            let keep = here.remove(0);
            delete.extend(here);
            let is_avail = podutil::is_available(&keep, min_ready, now);
            ready += i32::from(podutil::is_ready(&keep));
            available += i32::from(is_avail);
            if !is_avail {
                unavailable_nodes += 1;
            }
            if labels(&keep.metadata).get(HASH_LABEL) == Some(&hash) {
                updated += 1;
            } else {
                old_pods.push((keep, is_avail));
            }
        }
        // Pods bound for nodes that no longer exist.
        delete.extend(by_node.into_values().flatten());

        // RollingUpdate: replace old pods while at most maxUnavailable nodes are without an
        // available daemon pod; unavailable old pods go first (they cost nothing).
        let strategy = spec.update_strategy.clone().unwrap_or_default();
        if strategy.type_.as_deref() != Some("OnDelete") {
            let max_unavailable = strategy
                .rolling_update
                .and_then(|r| r.max_unavailable)
                .unwrap_or(IntOrString::Int(1));
            let max_unavailable = scaled_value(&max_unavailable, desired, true)
                .unwrap_or(1)
                .max(1);
            let mut budget = max_unavailable - unavailable_nodes;
            old_pods.sort_by_key(|(_, avail)| *avail);
            for (p, avail) in old_pods {
                if !avail {
                    delete.push(p);
                } else if budget > 0 {
                    budget -= 1;
                    delete.push(p);
                }
            }
        }

        if self.expectations.satisfied(k) && ds.metadata.deletion_timestamp.is_none() {
            let pods_api: Api<Pod> = Api::namespaced(self.client.clone(), ns);
            let keys: Vec<String> = delete.iter().map(|p| key(ns, &p.name_any())).collect();
            if !keys.is_empty() {
                self.expectations.expect_deletions(k, &keys);
                let results = join_all(delete.iter().map(|p| {
                    let api = pods_api.clone();
                    let n = p.name_any();
                    async move { (n.clone(), api.delete(&n, &DeleteParams::default()).await) }
                }))
                .await;
                for (n, r) in results {
                    if let Err(e) = r {
                        self.expectations.deletion_observed(k, &key(ns, &n));
                        if !is_not_found(&e) {
                            return Err(err(format!("deleting pod {n}"))(e));
                        }
                    }
                }
            } else if !create_on.is_empty() {
                self.expectations.expect_creations(k, create_on.len());
                let results = join_all(create_on.iter().map(|node| {
                    let api = pods_api.clone();
                    let pod = pod_for_node(&ds, node, &hash);
                    async move { api.create(&PostParams::default(), &pod).await }
                }))
                .await;
                let mut first = None;
                for r in results {
                    match r {
                        Ok(p) => self.events.normal(
                            reference(ds.as_ref()),
                            "SuccessfulCreate",
                            format!("Created pod: {}", p.name_any()),
                        ),
                        Err(e) => {
                            self.expectations.creation_observed(k);
                            first.get_or_insert(e);
                        }
                    }
                }
                if let Some(e) = first {
                    return Err(err("creating a daemon pod".into())(e));
                }
            }
        }
        let nz = |n: i32| (n != 0).then_some(n);
        let status = DaemonSetStatus {
            current_number_scheduled: current,
            desired_number_scheduled: desired,
            number_misscheduled: misscheduled,
            number_ready: ready,
            number_available: nz(available),
            number_unavailable: nz(desired - available),
            updated_number_scheduled: nz(updated),
            observed_generation: ds.metadata.generation,
            collision_count: ds.status.as_ref().and_then(|s| s.collision_count),
            conditions: ds.status.as_ref().and_then(|s| s.conditions.clone()),
        };
        if ds.status.as_ref() != Some(&status) {
            Api::<DaemonSet>::namespaced(self.client.clone(), ns)
                .patch_status(
                    name,
                    &PatchParams::default(),
                    &Patch::Merge(podutil::status_patch(&status, STATUS_FIELDS)),
                )
                .await
                .map_err(err("updating status".into()))?;
        }
        if min_ready > 0 && ready > available {
            return Ok(Requeue(Some(std::time::Duration::from_secs(
                min_ready as u64,
            ))));
        }
        Ok(Requeue::default())
    }
}

/// A daemon pod for `node`: the template, the revision label, kube's tolerations and a
/// required node affinity naming the node (replacing any `metadata.name` field terms).
pub fn pod_for_node(ds: &DaemonSet, node: &str, hash: &str) -> Pod {
    let template = ds
        .spec
        .as_ref()
        .map(|s| s.template.clone())
        .unwrap_or_default();
    let meta = template.metadata.unwrap_or_default();
    let mut spec = template.spec.unwrap_or_default();
    let mut tolerations = spec.tolerations.take().unwrap_or_default();
    for t in default_tolerations(spec.host_network == Some(true)) {
        if !tolerations
            .iter()
            .any(|x| x.key == t.key && x.effect == t.effect)
        {
            tolerations.push(t);
        }
    }
    spec.tolerations = Some(tolerations);
    let by_name = NodeSelectorTerm {
        match_fields: Some(vec![NodeSelectorRequirement {
            key: "metadata.name".into(),
            operator: "In".into(),
            values: Some(vec![node.to_string()]),
        }]),
        match_expressions: None,
    };
    let affinity = spec.affinity.get_or_insert_with(Affinity::default);
    let na = affinity
        .node_affinity
        .get_or_insert_with(NodeAffinity::default);
    // kube keeps the label expressions of each term and replaces its name fields; the node was
    // already checked against them.
    let terms = match na
        .required_during_scheduling_ignored_during_execution
        .take()
    {
        Some(sel) if !sel.node_selector_terms.is_empty() => sel
            .node_selector_terms
            .into_iter()
            .map(|mut t| {
                t.match_fields = by_name.match_fields.clone();
                t
            })
            .collect(),
        _ => vec![by_name],
    };
    na.required_during_scheduling_ignored_during_execution = Some(NodeSelector {
        node_selector_terms: terms,
    });
    let mut pod_labels = meta.labels.unwrap_or_default();
    pod_labels.insert(HASH_LABEL.into(), hash.to_string());
    let mut prefix = format!("{}-", ds.name_any());
    prefix.truncate(58);
    Pod {
        metadata: ObjectMeta {
            generate_name: Some(prefix),
            namespace: ds.namespace(),
            labels: Some(pod_labels),
            annotations: meta.annotations,
            finalizers: meta.finalizers,
            owner_references: Some(vec![podutil::controller_ref(
                &ds.metadata,
                "apps/v1",
                "DaemonSet",
            )]),
            ..Default::default()
        },
        spec: Some(spec),
        status: None,
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::apps::v1::DaemonSetSpec;
    use k8s_openapi::api::core::v1::{NodeSpec, PodSpec, PodTemplateSpec};

    use super::*;

    fn node(name: &str, labels: &[(&str, &str)], taints: &[(&str, &str)]) -> Node {
        Node {
            metadata: ObjectMeta {
                name: Some(name.into()),
                labels: Some(
                    labels
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                ),
                ..Default::default()
            },
            spec: Some(NodeSpec {
                taints: Some(
                    taints
                        .iter()
                        .map(|(k, e)| Taint {
                            key: k.to_string(),
                            effect: e.to_string(),
                            ..Default::default()
                        })
                        .collect(),
                ),
                ..Default::default()
            }),
            status: None,
        }
    }

    fn ds(spec: PodSpec) -> DaemonSet {
        DaemonSet {
            metadata: ObjectMeta {
                name: Some("agent".into()),
                namespace: Some("kube-system".into()),
                ..Default::default()
            },
            spec: Some(DaemonSetSpec {
                template: PodTemplateSpec {
                    metadata: None,
                    spec: Some(spec),
                },
                ..Default::default()
            }),
            status: None,
        }
    }

    #[test]
    fn eligibility_follows_selector_affinity_and_taints() {
        let plain = ds(PodSpec::default());
        assert!(should_run(&plain, &node("a", &[], &[])));
        // Tolerated by the daemon defaults: unschedulable (cordon) and not-ready.
        assert!(should_run(
            &plain,
            &node(
                "b",
                &[],
                &[
                    ("node.kubernetes.io/unschedulable", "NoSchedule"),
                    ("node.kubernetes.io/not-ready", "NoExecute")
                ]
            )
        ));
        assert!(!should_run(
            &plain,
            &node("c", &[], &[("dedicated", "NoSchedule")])
        ));
        assert!(should_run(
            &plain,
            &node("d", &[], &[("soft", "PreferNoSchedule")])
        ));
        let selective = ds(PodSpec {
            node_selector: Some([("role".to_string(), "edge".to_string())].into()),
            tolerations: Some(vec![Toleration {
                key: Some("dedicated".into()),
                operator: Some("Exists".into()),
                ..Default::default()
            }]),
            affinity: Some(Affinity {
                node_affinity: Some(NodeAffinity {
                    required_during_scheduling_ignored_during_execution: Some(NodeSelector {
                        node_selector_terms: vec![NodeSelectorTerm {
                            match_expressions: Some(vec![NodeSelectorRequirement {
                                key: "cores".into(),
                                operator: "Gt".into(),
                                values: Some(vec!["4".into()]),
                            }]),
                            match_fields: None,
                        }],
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        });
        assert!(should_run(
            &selective,
            &node(
                "e",
                &[("role", "edge"), ("cores", "8")],
                &[("dedicated", "NoSchedule")]
            )
        ));
        assert!(!should_run(
            &selective,
            &node("f", &[("role", "edge"), ("cores", "4")], &[])
        ));
        assert!(!should_run(&selective, &node("g", &[("cores", "8")], &[])));
    }

    #[test]
    fn pods_name_their_node_by_affinity_and_carry_daemon_tolerations() {
        let p = pod_for_node(&ds(PodSpec::default()), "n1", "h1");
        assert_eq!(target_node(&p).as_deref(), Some("n1"));
        assert_eq!(p.labels()[HASH_LABEL], "h1");
        let tols = p.spec.as_ref().unwrap().tolerations.as_ref().unwrap();
        assert_eq!(tols.len(), 6);
        assert!(
            p.spec.as_ref().unwrap().node_name.is_none(),
            "the scheduler binds it"
        );
    }
}
