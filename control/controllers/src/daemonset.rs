//! The DaemonSet controller (kube's `pkg/controller/daemon`): one pod per eligible Node —
//! eligible when the template's nodeSelector and required node affinity match the Node and
//! every NoSchedule/NoExecute taint is tolerated (with the tolerations kube adds to daemon pods).
//! Pods are created with a required node affinity on `metadata.name` so the scheduler places
//! them (kube's ReplaceDaemonSetPodNodeNameNodeAffinity); pods on nodes that are no longer
//! eligible or gone, and duplicates, are deleted. Template versions are apps/v1
//! ControllerRevisions `<set>-<hash>` (kube's constructHistory: the template patch of
//! [`crate::history`], the hash of the template and collision count, labelled
//! `controller-revision-hash` as the pods are; an equal older revision is renumbered, which is
//! what `kubectl rollout undo daemonset` relies on; revisionHistoryLimit prunes unused ones).
//! Template changes roll out with `RollingUpdate` — without surge, old pods deleted while at
//! most maxUnavailable nodes lack an available daemon pod; with maxSurge, a new pod started
//! beside the old one on up to maxSurge nodes and the old one deleted once the new is
//! available — or wait for manual deletion with `OnDelete`.
//!
//! As kube's controller, it claims pods and revisions by the set's selector (adopting
//! orphans, e.g. those left by `kubectl delete --cascade=orphan` of an earlier set, and
//! releasing what stopped matching), labels pods `pod-template-generation` with the set's
//! generation (a pod counts as updated when that label or its `controller-revision-hash`
//! matches), and deletes failed daemon pods (a `FailedDaemonPod` warning) under kube's
//! `failedPodsBackoff`, per set generation and node, 1 s doubling to 15 min, so a crash-looping
//! daemon pod is not replaced in a tight loop; the replacement comes once the failed pod is gone.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use futures_util::future::join_all;
use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet, DaemonSetStatus};
use k8s_openapi::api::core::v1::{
    Affinity, Node, NodeAffinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, Pod,
    Taint, Toleration,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use tracing::Instrument;

use crate::backoff::Backoff;
use crate::claim::{self, Claim};
use crate::deployment_util::{compute_hash, scaled_value};
use crate::events::{create_pod, reference, FailedCreate, Recorder};
use crate::expectations::Expectations;
use crate::informer::{Cache, Change};
use crate::podutil::{self, controller_of, labels};
use crate::queue::{run_workers, Queue, Requeue};
use crate::replicaset::slow_start_batch;
use crate::{history, is_already_exists, is_not_found, key, split_key, Clock, Informers};

pub const HASH_LABEL: &str = "controller-revision-hash";
/// kube's `extensions.DaemonSetTemplateGenerationKey`: the set's generation a pod was made at.
pub const GENERATION_LABEL: &str = "pod-template-generation";
/// kube's FailedDaemonPodReason.
const FAILED_DAEMON_POD: &str = "FailedDaemonPod";
/// kube's BurstReplicas for the DaemonSet controller: creations (and deletions) per sync.
const BURST_REPLICAS: usize = 250;
/// kube's failedPodsBackoff: the first delay before a failed pod on a node is deleted again…
const FAILED_POD_BACKOFF: std::time::Duration = std::time::Duration::from_secs(1);
/// …and the most it grows to.
const FAILED_POD_BACKOFF_MAX: std::time::Duration = std::time::Duration::from_secs(15 * 60);
/// How often expired backoff entries are forgotten (kube's BackoffGCInterval).
const BACKOFF_GC_INTERVAL: std::time::Duration = std::time::Duration::from_secs(60);

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

/// Whether the set's selector matches `l`. An empty selector, which validation refuses,
/// selects nothing here rather than every pod of the namespace.
fn selects(ds: &DaemonSet, l: &BTreeMap<String, String>) -> bool {
    ds.spec.as_ref().is_some_and(|s| {
        let sel = &s.selector;
        let empty = sel.match_labels.as_ref().is_none_or(|m| m.is_empty())
            && sel.match_expressions.as_ref().is_none_or(|e| e.is_empty());
        !empty && podutil::selector_matches(sel, l)
    })
}

fn phase(pod: &Pod) -> Option<&str> {
    pod.status.as_ref().and_then(|s| s.phase.as_deref())
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
    revisions: Arc<Cache<ControllerRevision>>,
    queue: Arc<Queue>,
    expectations: Arc<Expectations>,
    clock: Clock,
    events: Recorder,
    /// kube's failedPodsBackoff, keyed `<set uid>/<observed generation>/<node>`.
    failed_pods_backoff: Backoff,
}

impl std::fmt::Debug for DaemonSetController {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DaemonSetController")
            .finish_non_exhaustive()
    }
}

/// A node's (updated, old) daemon pods.
type NodePods = (Option<Arc<Pod>>, Option<Arc<Pod>>);

/// The template version pods are compared against: the current revision's hash and the set's
/// generation.
#[derive(Debug, Clone, Copy)]
struct Version<'a> {
    hash: &'a str,
    generation: Option<i64>,
}

impl Version<'_> {
    /// kube's IsPodUpdated: the pod's generation label or its revision hash is the current one.
    fn is_updated(&self, pod: &Pod) -> bool {
        let l = labels(&pod.metadata);
        let generation_matches = self
            .generation
            .is_some_and(|g| l.get(GENERATION_LABEL).is_some_and(|v| *v == g.to_string()));
        let hash_matches =
            !self.hash.is_empty() && l.get(HASH_LABEL).map(String::as_str) == Some(self.hash);
        hash_matches || generation_matches
    }
}

/// The pods on one node, split by template version (kube's findUpdatedPodsOnNode); `None` when
/// there are two of a kind, which the manage step repairs first.
fn updated_and_old(pods: &[Arc<Pod>], version: Version<'_>) -> Option<NodePods> {
    let (mut new, mut old) = (None, None);
    for p in pods
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
    {
        let slot = if version.is_updated(p) {
            &mut new
        } else {
            &mut old
        };
        if slot.is_some() {
            return None;
        }
        *slot = Some(p.clone());
    }
    Some((new, old))
}

/// kube's rolling update arithmetic: maxSurge and maxUnavailable scaled against the desired
/// count rounding up, 1 unavailable when both come out 0.
fn surge_and_unavailable(ds: &DaemonSet, desired: i32) -> (i32, i32) {
    let ru = ds
        .spec
        .as_ref()
        .and_then(|s| s.update_strategy.as_ref())
        .and_then(|u| u.rolling_update.clone())
        .unwrap_or_default();
    let surge = ru
        .max_surge
        .as_ref()
        .and_then(|v| scaled_value(v, desired, true).ok())
        .unwrap_or(0)
        .max(0);
    let unavailable = scaled_value(
        &ru.max_unavailable.unwrap_or(IntOrString::Int(1)),
        desired,
        true,
    )
    .unwrap_or(1)
    .max(0);
    if surge == 0 && unavailable == 0 {
        (0, 1)
    } else {
        (surge, unavailable)
    }
}

/// What one sync decided: pods to delete and nodes to create a daemon pod on.
#[derive(Debug, Default)]
struct Plan {
    delete: Vec<Arc<Pod>>,
    create_on: Vec<String>,
}

/// kube's rollingUpdate with maxSurge: a node whose old pod is unavailable gets its new pod
/// at once, up to maxSurge nodes with an available old pod get one beside it, and an old
/// pod goes once the new pod on its node is available.
fn plan_surge(
    kept: &BTreeMap<String, Vec<Arc<Pod>>>,
    version: Version<'_>,
    max_surge: i32,
    avail: &dyn Fn(&Pod) -> bool,
    plan: &mut Plan,
) {
    let mut surging = 0;
    let (mut allowed, mut candidates) = (Vec::new(), Vec::new());
    for (node, pods) in kept {
        match updated_and_old(pods, version) {
            None => surging += 1,
            Some((_, None)) => {}
            Some((None, Some(old))) => {
                if !avail(&old) {
                    allowed.push(node.clone());
                } else if surging < max_surge {
                    candidates.push(node.clone());
                }
            }
            Some((Some(new), Some(old))) => {
                if avail(&new) {
                    plan.delete.push(old);
                } else {
                    surging += 1;
                }
            }
        }
    }
    let room = (max_surge - surging).clamp(0, candidates.len() as i32) as usize;
    plan.create_on.extend(allowed);
    plan.create_on.extend(candidates.into_iter().take(room));
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
            revisions: informers.controllerrevisions.cache(),
            queue: Queue::new(),
            expectations: Arc::new(Expectations::default()),
            clock,
            events,
            failed_pods_backoff: Backoff::new(FAILED_POD_BACKOFF, FAILED_POD_BACKOFF_MAX),
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
        informers.controllerrevisions.add_handler(move |ch| {
            let Some(c) = weak.upgrade() else { return };
            let (Change::Added(r) | Change::Updated { new: r, .. } | Change::Deleted(r)) = ch;
            match controller_of(&r.metadata) {
                Some(o) if o.kind == "DaemonSet" => c
                    .queue
                    .add(key(&r.namespace().unwrap_or_default(), &o.name)),
                Some(_) => {}
                // An orphan: the sets that may adopt it.
                None => c.enqueue_selecting(&r.metadata),
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
            let Some(r) = controller_of(&pod.metadata) else {
                // An orphan: the sets that may adopt it.
                if pod.metadata.deletion_timestamp.is_none() {
                    c.enqueue_selecting(&pod.metadata);
                }
                return;
            };
            if r.kind != "DaemonSet" {
                return;
            }
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
        self.revisions.wait_synced().await;
        let weak = Arc::downgrade(&self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(BACKOFF_GC_INTERVAL);
            loop {
                tick.tick().await;
                let Some(c) = weak.upgrade() else { return };
                c.failed_pods_backoff.gc(c.clock.now());
            }
        });
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

    fn err(&self, k: &str, what: impl Into<String>) -> impl FnOnce(kube::Error) -> DaemonSetError {
        let (key, what) = (k.to_string(), what.into());
        move |source| DaemonSetError::Api { key, what, source }
    }

    /// Queues every set in `obj`'s namespace whose selector matches its labels.
    fn enqueue_selecting(&self, obj: &ObjectMeta) {
        let ns = obj.namespace.clone().unwrap_or_default();
        for ds in self.sets.list_namespace(&ns) {
            if selects(&ds, labels(obj)) {
                self.queue.add(key(&ns, &ds.name_any()));
            }
        }
    }

    /// kube's canAdoptFunc (RecheckDeletionTimestamp): the set, read afresh, is the same one
    /// and not going away.
    async fn can_adopt(&self, ds: &DaemonSet, k: &str) -> Result<bool, DaemonSetError> {
        let fresh =
            Api::<DaemonSet>::namespaced(self.client.clone(), &ds.namespace().unwrap_or_default())
                .get(&ds.name_any())
                .await;
        match fresh {
            Ok(f) => {
                Ok(f.metadata.uid == ds.metadata.uid && f.metadata.deletion_timestamp.is_none())
            }
            Err(e) if is_not_found(&e) => Ok(false),
            Err(e) => Err(self.err(k, "re-reading the set before adopting")(e)),
        }
    }

    /// kube's ClaimObjects over `objects`: those the set controls and selects, plus orphans it
    /// selects, adopted; its own that it stopped selecting are released.
    async fn claim<K>(
        &self,
        ds: &DaemonSet,
        k: &str,
        objects: Vec<Arc<K>>,
        what: &str,
    ) -> Result<Vec<Arc<K>>, DaemonSetError>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
            + Clone
            + serde::de::DeserializeOwned
            + std::fmt::Debug,
    {
        let api: Api<K> = Api::namespaced(self.client.clone(), &ds.namespace().unwrap_or_default());
        let uid = ds.metadata.uid.clone().unwrap_or_default();
        let mut adoptable: Option<bool> = None;
        let mut owned = Vec::new();
        for obj in objects {
            match claim::decide(obj.meta(), &ds.metadata, |l| selects(ds, l)) {
                Claim::Owned => owned.push(obj),
                Claim::Ignore => {}
                Claim::Release => match claim::release(&api, obj.as_ref(), &uid).await {
                    Ok(()) => {}
                    Err(e) if is_not_found(&e) || crate::is_conflict(&e) => {}
                    Err(kube::Error::Api(s)) if s.code == 422 => {}
                    Err(e) => {
                        return Err(self.err(k, format!("releasing {what} {}", obj.name_any()))(
                            e,
                        ))
                    }
                },
                Claim::Adopt => {
                    if adoptable.is_none() {
                        adoptable = Some(self.can_adopt(ds, k).await?);
                    }
                    if adoptable != Some(true) {
                        continue;
                    }
                    let owner = podutil::controller_ref(&ds.metadata, "apps/v1", "DaemonSet");
                    match claim::adopt(&api, obj.as_ref(), owner).await {
                        Ok(adopted) => {
                            tracing::info!(key = %k, what, name = %obj.name_any(), "adopted an orphan");
                            owned.push(Arc::new(adopted));
                        }
                        // Gone or changed under us: the next event brings it back.
                        Err(e) if is_not_found(&e) || crate::is_conflict(&e) => {}
                        Err(kube::Error::Api(s)) if s.code == 422 => {}
                        Err(e) => {
                            return Err(self.err(k, format!("adopting {what} {}", obj.name_any()))(
                                e,
                            ))
                        }
                    }
                }
            }
        }
        Ok(owned)
    }

    /// The revisions this set controls (orphans it selects adopted), oldest first.
    async fn controlled_revisions(
        &self,
        ds: &DaemonSet,
        k: &str,
    ) -> Result<Vec<Arc<ControllerRevision>>, DaemonSetError> {
        let all = self
            .revisions
            .list_namespace(&ds.namespace().unwrap_or_default());
        let mut revs = self.claim(ds, k, all, "revision").await?;
        history::sort(&mut revs);
        Ok(revs)
    }

    /// kube's constructHistory: the revision of the current template (reused and renumbered
    /// to the newest when an older one is equal — a rollback — else created), and the others.
    async fn construct_history(
        &self,
        ds: &DaemonSet,
        k: &str,
    ) -> Result<(ControllerRevision, Vec<Arc<ControllerRevision>>), DaemonSetError> {
        let ns = ds.namespace().unwrap_or_default();
        let template = ds.spec.clone().unwrap_or_default().template;
        let candidate = history::new_revision(history::template_patch(&template), 0);
        let (current, old): (Vec<_>, Vec<_>) = self
            .controlled_revisions(ds, k)
            .await?
            .into_iter()
            .partition(|r| history::equal(r, &candidate));
        let next = history::next_revision(&old);
        let api: Api<ControllerRevision> = Api::namespaced(self.client.clone(), &ns);
        let cur = match current.last() {
            Some(cur) if cur.revision >= next => cur.as_ref().clone(),
            Some(cur) => api
                .patch(
                    &cur.name_any(),
                    &PatchParams::default(),
                    &Patch::Merge(serde_json::json!({ "revision": next })),
                )
                .await
                .map_err(self.err(k, format!("renumbering revision {}", cur.name_any())))?,
            None => self.snapshot(ds, k, candidate, next).await?,
        };
        Ok((cur, old))
    }

    /// kube's snapshot: creates revision `<set>-<hash>`; a name taken by another template raises
    /// status.collisionCount (the next sync hashes again).
    async fn snapshot(
        &self,
        ds: &DaemonSet,
        k: &str,
        mut rev: ControllerRevision,
        number: i64,
    ) -> Result<ControllerRevision, DaemonSetError> {
        let ns = ds.namespace().unwrap_or_default();
        let spec = ds.spec.clone().unwrap_or_default();
        let collision = ds.status.as_ref().and_then(|s| s.collision_count);
        let hash = compute_hash(&spec.template, collision);
        let mut rev_labels = spec
            .template
            .metadata
            .as_ref()
            .and_then(|m| m.labels.clone())
            .unwrap_or_default();
        rev_labels.insert(HASH_LABEL.into(), hash.clone());
        rev.revision = number;
        rev.metadata = ObjectMeta {
            name: Some(history::revision_name(&ds.name_any(), &hash)),
            namespace: Some(ns.clone()),
            labels: Some(rev_labels),
            annotations: ds.metadata.annotations.clone(),
            owner_references: Some(vec![podutil::controller_ref(
                &ds.metadata,
                "apps/v1",
                "DaemonSet",
            )]),
            ..Default::default()
        };
        let api: Api<ControllerRevision> = Api::namespaced(self.client.clone(), &ns);
        match api.create(&PostParams::default(), &rev).await {
            Ok(created) => Ok(created),
            Err(e) if is_already_exists(&e) => {
                let existing = api
                    .get(&rev.name_any())
                    .await
                    .map_err(self.err(k, "reading a colliding revision"))?;
                if history::equal(&existing, &rev) {
                    return Ok(existing);
                }
                let sets: Api<DaemonSet> = Api::namespaced(self.client.clone(), &ns);
                let fresh = sets
                    .get(&ds.name_any())
                    .await
                    .map_err(self.err(k, "reading the set after a revision hash collision"))?;
                let seen = fresh.status.as_ref().and_then(|s| s.collision_count);
                if seen == collision {
                    let patch =
                        serde_json::json!({"status": {"collisionCount": seen.unwrap_or(0) + 1}});
                    sets.patch_status(
                        &ds.name_any(),
                        &PatchParams::default(),
                        &Patch::Merge(patch),
                    )
                    .await
                    .map_err(self.err(k, "raising collisionCount"))?;
                }
                Err(self.err(
                    k,
                    format!(
                        "revision {} exists with another template (hash collision)",
                        rev.name_any()
                    ),
                )(e))
            }
            Err(e) => Err(self.err(k, "creating a revision")(e)),
        }
    }

    /// kube's cleanupHistory: old revisions beyond revisionHistoryLimit that no pod carries,
    /// oldest first.
    async fn cleanup_history(
        &self,
        ds: &DaemonSet,
        k: &str,
        old: &[Arc<ControllerRevision>],
        pods: &[Arc<Pod>],
    ) -> Result<(), DaemonSetError> {
        let limit = ds
            .spec
            .as_ref()
            .and_then(|s| s.revision_history_limit)
            .unwrap_or(10)
            .max(0) as usize;
        let mut to_kill = old.len().saturating_sub(limit);
        if to_kill == 0 {
            return Ok(());
        }
        let live: std::collections::HashSet<&str> = pods
            .iter()
            .filter_map(|p| labels(&p.metadata).get(HASH_LABEL).map(String::as_str))
            .collect();
        let api: Api<ControllerRevision> =
            Api::namespaced(self.client.clone(), &ds.namespace().unwrap_or_default());
        for r in old {
            if to_kill == 0 {
                break;
            }
            if labels(&r.metadata)
                .get(HASH_LABEL)
                .is_some_and(|h| live.contains(h.as_str()))
            {
                continue;
            }
            match api.delete(&r.name_any(), &DeleteParams::default()).await {
                Ok(_) => {}
                Err(e) if is_not_found(&e) => {}
                Err(e) => {
                    return Err(self.err(k, format!("deleting revision {}", r.name_any()))(
                        e,
                    ))
                }
            }
            to_kill -= 1;
        }
        Ok(())
    }

    async fn sync(&self, k: &str) -> Result<Requeue, DaemonSetError> {
        let (ns, name) = split_key(k);
        let Some(ds) = self.sets.get(ns, name) else {
            self.expectations.forget(k);
            return Ok(Requeue::default());
        };
        let spec = ds.spec.clone().unwrap_or_default();
        let deleting = ds.metadata.deletion_timestamp.is_some();
        let (cur, old_revs) = if deleting {
            // kube leaves the history alone while the set goes away.
            let hash = compute_hash(
                &spec.template,
                ds.status.as_ref().and_then(|s| s.collision_count),
            );
            let mut r = ControllerRevision::default();
            r.metadata.labels = Some([(HASH_LABEL.to_string(), hash)].into());
            (r, Vec::new())
        } else {
            self.construct_history(&ds, k).await?
        };
        let hash = labels(&cur.metadata)
            .get(HASH_LABEL)
            .cloned()
            .unwrap_or_else(|| cur.name_any());
        let version = Version {
            hash: &hash,
            generation: ds.metadata.generation,
        };
        let min_ready = spec.min_ready_seconds.unwrap_or(0);
        let now = self.clock.now();
        let satisfied = self.expectations.satisfied(k);
        let mut by_node: BTreeMap<String, Vec<Arc<Pod>>> = BTreeMap::new();
        // Failed and succeeded pods, by node: deleted (failed ones under the backoff) before
        // their node gets a new pod.
        let mut finished_by_node: BTreeMap<String, Vec<Arc<Pod>>> = BTreeMap::new();
        let mut all_pods: Vec<Arc<Pod>> = Vec::new();
        let mut plan = Plan::default();
        let mut requeue: Option<std::time::Duration> = None;
        let pods = self
            .claim(&ds, k, self.pods.list_namespace(ns), "pod")
            .await?;
        for p in pods {
            if p.metadata.deletion_timestamp.is_some() {
                continue;
            }
            all_pods.push(p.clone());
            let finished = !podutil::is_active(&p);
            match (target_node(&p), finished) {
                (Some(n), false) => by_node.entry(n).or_default().push(p),
                (Some(n), true) => finished_by_node.entry(n).or_default().push(p),
                (None, _) => plan.delete.push(p),
            }
        }
        let on_delete = spec
            .update_strategy
            .as_ref()
            .and_then(|u| u.type_.as_deref())
            == Some("OnDelete");
        let nodes = self.nodes.list();
        let desired_nodes: Vec<&Arc<Node>> = nodes.iter().filter(|n| should_run(&ds, n)).collect();
        let desired = desired_nodes.len() as i32;
        let (max_surge, max_unavailable) = surge_and_unavailable(&ds, desired);
        let surge = !on_delete && max_surge > 0;
        let (mut current, mut misscheduled) = (0, 0);
        let (mut ready, mut available, mut updated) = (0, 0, 0);
        // kube's podsShouldBeOnNode, then the status counts from each node's oldest pod.
        let mut kept: BTreeMap<String, Vec<Arc<Pod>>> = BTreeMap::new();
        for node in &nodes {
            let n = node.name_any();
            let mut here = by_node.remove(&n).unwrap_or_default();
            let finished = finished_by_node.remove(&n).unwrap_or_default();
            if !should_run(&ds, node) {
                if !here.is_empty() {
                    misscheduled += 1;
                }
                plan.delete.extend(here);
                plan.delete.extend(finished);
                continue;
            }
            // kube's podsShouldBeOnNode: a finished pod is deleted (a failed one at most once
            // per backoff step); the node gets its new pod in a later sync, once it is gone.
            let waiting = !finished.is_empty();
            if satisfied && !deleting {
                for p in finished {
                    if phase(&p) == Some("Failed") {
                        let bk = format!(
                            "{}/{}/{n}",
                            ds.metadata.uid.as_deref().unwrap_or_default(),
                            ds.status
                                .as_ref()
                                .and_then(|s| s.observed_generation)
                                .unwrap_or_default()
                        );
                        if self.failed_pods_backoff.in_backoff_since_update(&bk, now) {
                            let delay = self.failed_pods_backoff.get(&bk);
                            tracing::debug!(key = %k, pod = %p.name_any(), node = %n, ?delay, "deleting a failed daemon pod is held back by the backoff");
                            requeue = Some(requeue.map_or(delay, |r| r.min(delay)));
                            continue;
                        }
                        self.failed_pods_backoff.next(&bk, now);
                        self.events.warning(
                            reference(ds.as_ref()),
                            FAILED_DAEMON_POD,
                            format!(
                                "Found failed daemon pod {ns}/{} on node {n}, will try to kill it",
                                p.name_any()
                            ),
                        );
                    }
                    plan.delete.push(p);
                }
            }
            if here.is_empty() {
                if !waiting {
                    plan.create_on.push(n);
                }
                continue;
            }
            current += 1;
            here.sort_by(|a, b| {
                a.metadata
                    .creation_timestamp
                    .cmp(&b.metadata.creation_timestamp)
                    .then(a.metadata.name.cmp(&b.metadata.name))
            });
            // Without surge only the oldest pod stays; with it, the oldest new and the oldest old.
            let mut keep: Vec<Arc<Pod>> = Vec::new();
            for p in here {
                let is_new = version.is_updated(&p);
                let dup = if surge {
                    keep.iter().any(|k| version.is_updated(k) == is_new)
                } else {
                    !keep.is_empty()
                };
                if dup {
                    plan.delete.push(p);
                } else {
                    keep.push(p);
                }
            }
            let oldest = &keep[0];
            ready += i32::from(podutil::is_ready(oldest));
            available += i32::from(podutil::is_available(oldest, min_ready, now));
            if version.is_updated(oldest) {
                updated += 1;
            }
            kept.insert(n, keep);
        }
        // Pods bound for nodes that no longer exist.
        plan.delete.extend(by_node.into_values().flatten());
        plan.delete.extend(finished_by_node.into_values().flatten());

        if !on_delete {
            let avail = |p: &Pod| podutil::is_available(p, min_ready, now);
            if surge {
                plan_surge(&kept, version, max_surge, &avail, &mut plan);
            } else {
                // Nodes that are to get a pod count as unavailable.
                let mut unavailable = plan.create_on.len() as i32;
                let (mut replace, mut candidates) = (Vec::new(), Vec::new());
                for pods in kept.values() {
                    match updated_and_old(pods, version) {
                        None | Some((None, None)) | Some((Some(_), Some(_))) => unavailable += 1,
                        Some((Some(new), None)) => unavailable += i32::from(!avail(&new)),
                        Some((None, Some(old))) => {
                            if !avail(&old) {
                                replace.push(old);
                            } else if unavailable < max_unavailable {
                                candidates.push(old);
                            }
                        }
                    }
                }
                let room = (max_unavailable - unavailable).clamp(0, candidates.len() as i32);
                plan.delete.extend(replace);
                plan.delete
                    .extend(candidates.into_iter().take(room as usize));
            }
        }

        if satisfied && !deleting {
            self.execute(&ds, k, &hash, plan).await?;
            self.cleanup_history(&ds, k, &old_revs, &all_pods).await?;
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
                .map_err(self.err(k, "updating status"))?;
        }
        if min_ready > 0 && ready > available {
            let d = std::time::Duration::from_secs(min_ready as u64);
            requeue = Some(requeue.map_or(d, |r| r.min(d)));
        }
        Ok(Requeue(requeue))
    }

    /// kube's syncNodes: at most [`BURST_REPLICAS`] creations, in slow-start batches through
    /// RealPodControl (each pod's event recorded as it is created; the rest skipped after a
    /// failing batch), then at most as many deletions at once; each expected before it is
    /// sent.
    async fn execute(
        &self,
        ds: &DaemonSet,
        k: &str,
        hash: &str,
        plan: Plan,
    ) -> Result<(), DaemonSetError> {
        let ns = ds.namespace().unwrap_or_default();
        let pods_api: Api<Pod> = Api::namespaced(self.client.clone(), &ns);
        let create_on = &plan.create_on[..plan.create_on.len().min(BURST_REPLICAS)];
        let delete = &plan.delete[..plan.delete.len().min(BURST_REPLICAS)];
        let keys: Vec<String> = delete.iter().map(|p| key(&ns, &p.name_any())).collect();
        if !keys.is_empty() {
            self.expectations.expect_deletions(k, &keys);
        }
        let mut first = None;
        if !create_on.is_empty() {
            self.expectations.expect_creations(k, create_on.len());
            let next = AtomicUsize::new(0);
            let about = reference(ds);
            let (ok, err) = slow_start_batch(create_on.len(), 1, || {
                let node = &create_on[next.fetch_add(1, Ordering::Relaxed)];
                let pod = pod_for_node(ds, node, hash);
                let (api, events, about) = (pods_api.clone(), self.events.clone(), about.clone());
                async move {
                    let failed = FailedCreate::UnlessNamespaceTerminating;
                    create_pod(&api, &pod, &events, about, failed)
                        .await
                        .map(|_| ())
                }
            })
            .await;
            // Failed and skipped creations will not be observed.
            for _ in ok..create_on.len() {
                self.expectations.creation_observed(k);
            }
            first = err.map(|e| self.err(k, "creating a daemon pod")(e));
        }
        let deleted = join_all(delete.iter().map(|p| {
            let api = pods_api.clone();
            let n = p.name_any();
            async move { (n.clone(), api.delete(&n, &DeleteParams::default()).await) }
        }))
        .await;
        for (n, r) in deleted {
            match r {
                Ok(_) => self.events.normal(
                    reference(ds),
                    "SuccessfulDelete",
                    format!("Deleted pod: {n}"),
                ),
                Err(e) => {
                    self.expectations.deletion_observed(k, &key(&ns, &n));
                    if !is_not_found(&e) && first.is_none() {
                        first = Some(self.err(k, format!("deleting pod {n}"))(e));
                    }
                }
            }
        }
        first.map_or(Ok(()), Err)
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
    // kube's CreatePodTemplate: the set's generation when the pod was made.
    if let Some(g) = ds.metadata.generation {
        pod_labels.insert(GENERATION_LABEL.into(), g.to_string());
    }
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

    fn pod(name: &str, hash: &str) -> Arc<Pod> {
        Arc::new(Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                labels: Some([(HASH_LABEL.to_string(), hash.to_string())].into()),
                ..Default::default()
            },
            ..Default::default()
        })
    }

    #[test]
    fn surge_replaces_unavailable_old_pods_at_once_and_surges_up_to_the_limit() {
        let mut set = ds(PodSpec::default());
        set.spec.as_mut().unwrap().update_strategy = Some(
            serde_json::from_value(serde_json::json!(
                {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "50%", "maxUnavailable": 0}}
            ))
            .unwrap(),
        );
        assert_eq!(surge_and_unavailable(&set, 3), (2, 0), "50% of 3 rounds up");
        assert_eq!(surge_and_unavailable(&ds(PodSpec::default()), 3), (0, 1));
        // n1: old unavailable -> new pod at once; n2: new available beside old -> old goes;
        // n3: new not yet available -> counts as surging; n4, n5: old available -> candidates,
        // one of them within maxSurge 2 (n3 already surges).
        let unavailable = ["old1", "new3"];
        let kept: BTreeMap<String, Vec<Arc<Pod>>> = [
            ("n1", vec![pod("old1", "a")]),
            ("n2", vec![pod("old2", "a"), pod("new2", "b")]),
            ("n3", vec![pod("old3", "a"), pod("new3", "b")]),
            ("n4", vec![pod("old4", "a")]),
            ("n5", vec![pod("old5", "a")]),
        ]
        .into_iter()
        .map(|(n, p)| (n.to_string(), p))
        .collect();
        let mut plan = Plan::default();
        let avail = |p: &Pod| !unavailable.contains(&p.name_any().as_str());
        let b = Version {
            hash: "b",
            generation: None,
        };
        plan_surge(&kept, b, 2, &avail, &mut plan);
        let deleted: Vec<String> = plan.delete.iter().map(|p| p.name_any()).collect();
        assert_eq!(deleted, ["old2"]);
        assert_eq!(plan.create_on, ["n1", "n4"]);
        assert!(updated_and_old(&[pod("x", "a"), pod("y", "a")], b).is_none());
    }

    #[test]
    fn pods_carry_the_template_generation_and_either_label_makes_them_updated() {
        let mut set = ds(PodSpec::default());
        set.metadata.generation = Some(3);
        let p = pod_for_node(&set, "n1", "h1");
        assert_eq!(p.labels()[GENERATION_LABEL], "3");
        let v = |hash, generation| Version { hash, generation };
        assert!(v("h1", Some(3)).is_updated(&p));
        // kube's IsPodUpdated: the hash or the generation is enough.
        assert!(v("h2", Some(3)).is_updated(&p));
        assert!(v("h1", Some(4)).is_updated(&p));
        assert!(!v("h2", Some(4)).is_updated(&p));
        assert!(!v("h2", None).is_updated(&p));
        assert!(!v("", Some(4)).is_updated(&p));
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
