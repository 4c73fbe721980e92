//! The ReplicaSet controller (kube's `pkg/controller/replicaset`): keeps `spec.replicas` active
//! pods matching the selector, adopting orphans and releasing pods that stopped matching,
//! creating in slow-start batches (1, 2, 4, …) and deleting the pods kube would delete first,
//! guarded by [`Expectations`] so a burst of events never over-creates; then writes status.
//!
//! The controller is generic over [`Replicated`], so the ReplicationController manager
//! ([`crate::replicationcontroller`]) is this same code over core/v1 ReplicationControllers, as
//! kube's `pkg/controller/replication` wraps the ReplicaSet controller.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::join_all;
use k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetCondition, ReplicaSetStatus};
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::NamespaceResourceScope;
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::{Api, Client, Resource, ResourceExt};
use tracing::Instrument;

use crate::events::{create_pod, reference, FailedCreate, Recorder};
use crate::expectations::Expectations;
use crate::informer::{Cache, Change, Informer};
use crate::podutil::{self, controller_of, labels, selector_matches};
use crate::queue::{run_workers, Queue, Requeue};
use crate::{is_not_found, key, split_key, Clock, Informers};

/// Status fields a merge patch must null out when they became zero (omitted).
const RS_STATUS_FIELDS: &[&str] = &[
    "fullyLabeledReplicas",
    "readyReplicas",
    "availableReplicas",
    "observedGeneration",
    "conditions",
];

/// kube's BurstReplicas: at most this many creations or deletions per sync.
pub const BURST_REPLICAS: usize = 500;

/// What the controller needs of a kind that keeps N copies of a pod template: apps/v1
/// ReplicaSet and core/v1 ReplicationController (whose status has the same fields).
pub trait Replicated:
    Resource<DynamicType = (), Scope = NamespaceResourceScope>
    + Clone
    + serde::de::DeserializeOwned
    + serde::Serialize
    + std::fmt::Debug
    + Send
    + Sync
    + 'static
{
    /// The work queue's name in logs and metrics.
    const QUEUE: &'static str;
    fn informer(informers: &Informers) -> &Arc<Informer<Self>>;
    /// `spec.replicas` (default 1).
    fn replicas(&self) -> i32;
    fn min_ready_seconds(&self) -> i32;
    /// Whether the selector selects a pod with these labels (never for a missing selector).
    fn selects(&self, labels: &BTreeMap<String, String>) -> bool;
    fn template(&self) -> Option<&PodTemplateSpec>;
    /// The status in ReplicaSet form.
    fn replica_status(&self) -> Option<ReplicaSetStatus>;
}

impl Replicated for ReplicaSet {
    const QUEUE: &'static str = "replicaset";

    fn informer(informers: &Informers) -> &Arc<Informer<Self>> {
        &informers.replicasets
    }

    fn replicas(&self) -> i32 {
        self.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
    }

    fn min_ready_seconds(&self) -> i32 {
        self.spec
            .as_ref()
            .and_then(|s| s.min_ready_seconds)
            .unwrap_or(0)
    }

    fn selects(&self, labels: &BTreeMap<String, String>) -> bool {
        self.spec
            .as_ref()
            .is_some_and(|s| selector_matches(&s.selector, labels))
    }

    fn template(&self) -> Option<&PodTemplateSpec> {
        self.spec.as_ref().and_then(|s| s.template.as_ref())
    }

    fn replica_status(&self) -> Option<ReplicaSetStatus> {
        self.status.clone()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ReplicaSetError {
    #[error("creating a pod for replicaset {key}: {source}")]
    CreatePod {
        key: String,
        #[source]
        source: kube::Error,
    },
    #[error("deleting pod {pod} of replicaset {key}: {source}")]
    DeletePod {
        key: String,
        pod: String,
        #[source]
        source: kube::Error,
    },
    #[error("adopting pod {pod} into replicaset {key}: {source}")]
    Adopt {
        key: String,
        pod: String,
        #[source]
        source: kube::Error,
    },
    #[error("releasing pod {pod} from replicaset {key}: {source}")]
    Release {
        key: String,
        pod: String,
        #[source]
        source: kube::Error,
    },
    #[error("updating status of replicaset {key}: {source}")]
    Status {
        key: String,
        #[source]
        source: kube::Error,
    },
}

/// The ReplicaSet controller; [`crate::replicationcontroller::ReplicationManager`] is the same
/// code over ReplicationControllers.
pub type ReplicaSetController = ReplicaController<ReplicaSet>;

pub struct ReplicaController<W> {
    client: Client,
    rs: Arc<Cache<W>>,
    pods: Arc<Cache<Pod>>,
    queue: Arc<Queue>,
    expectations: Arc<Expectations>,
    clock: Clock,
    events: Recorder,
}

/// The sets in the pod's namespace whose selector matches it (kube's getPodReplicaSets).
fn matching_sets<W: Replicated>(cache: &Cache<W>, pod: &Pod) -> Vec<Arc<W>> {
    let ns = pod.namespace().unwrap_or_default();
    cache
        .list_namespace(&ns)
        .into_iter()
        .filter(|rs| rs.selects(labels(&pod.metadata)))
        .collect()
}

/// The set a controller reference names, if it is the same object (uid).
fn resolve<W: Replicated>(cache: &Cache<W>, ns: &str, pod: &Pod) -> Option<Arc<W>> {
    let r = controller_of(&pod.metadata)?;
    if r.kind != W::kind(&()) {
        return None;
    }
    cache
        .get(ns, &r.name)
        .filter(|rs| rs.meta().uid.as_deref() == Some(r.uid.as_str()))
}

impl<W: Replicated> std::fmt::Debug for ReplicaController<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplicaController")
            .field("kind", &W::kind(&()))
            .finish_non_exhaustive()
    }
}

impl<W: Replicated> ReplicaController<W> {
    pub fn register(
        informers: &Informers,
        client: Client,
        clock: Clock,
        events: Recorder,
    ) -> Arc<Self> {
        let c = Arc::new(Self {
            client,
            rs: W::informer(informers).cache(),
            pods: informers.pods.cache(),
            queue: Queue::new(),
            expectations: Arc::new(Expectations::default()),
            clock,
            events,
        });
        let q = c.queue.clone();
        let exp = c.expectations.clone();
        W::informer(informers).add_handler(move |ch| match ch {
            Change::Added(rs) | Change::Updated { new: rs, .. } => {
                q.add(key(&rs.namespace().unwrap_or_default(), &rs.name_any()))
            }
            Change::Deleted(rs) => {
                let k = key(&rs.namespace().unwrap_or_default(), &rs.name_any());
                exp.forget(&k);
                q.add(k);
            }
        });
        let weak = Arc::downgrade(&c);
        informers.pods.add_handler(move |ch| {
            if let Some(c) = weak.upgrade() {
                c.on_pod(ch);
            }
        });
        c
    }

    fn on_pod_deleted(&self, pod: &Pod) {
        let ns = pod.namespace().unwrap_or_default();
        if let Some(rs) = resolve(&self.rs, &ns, pod) {
            let k = key(&ns, &rs.name_any());
            self.expectations
                .deletion_observed(&k, &key(&ns, &pod.name_any()));
            self.queue.add(k);
        }
    }

    fn on_pod(&self, ch: &Change<Pod>) {
        match ch {
            Change::Added(pod) => {
                if pod.metadata.deletion_timestamp.is_some() {
                    // A restart of the informer can show a pod already being deleted.
                    return self.on_pod_deleted(pod);
                }
                let ns = pod.namespace().unwrap_or_default();
                if controller_of(&pod.metadata).is_some() {
                    if let Some(rs) = resolve(&self.rs, &ns, pod) {
                        let k = key(&ns, &rs.name_any());
                        self.expectations.creation_observed(&k);
                        self.queue.add(k);
                    }
                    return;
                }
                for rs in matching_sets(&self.rs, pod) {
                    self.queue.add(key(&ns, &rs.name_any()));
                }
            }
            Change::Updated { old, new } => {
                if old.resource_version() == new.resource_version() {
                    return;
                }
                let ns = new.namespace().unwrap_or_default();
                let labels_changed = old.metadata.labels != new.metadata.labels;
                if new.metadata.deletion_timestamp.is_some() {
                    self.on_pod_deleted(new);
                    if labels_changed {
                        self.on_pod_deleted(old);
                    }
                    return;
                }
                let old_ref = controller_of(&old.metadata);
                let new_ref = controller_of(&new.metadata);
                if old_ref != new_ref {
                    if let Some(rs) = resolve(&self.rs, &ns, old) {
                        self.queue.add(key(&ns, &rs.name_any()));
                    }
                }
                if new_ref.is_some() {
                    if let Some(rs) = resolve(&self.rs, &ns, new) {
                        let k = key(&ns, &rs.name_any());
                        // Availability changes minReadySeconds after readiness, with no event.
                        let mr = rs.min_ready_seconds();
                        if mr > 0 && !podutil::is_ready(old) && podutil::is_ready(new) {
                            self.queue
                                .add_after(k.clone(), Duration::from_secs(mr as u64 + 1));
                        }
                        self.queue.add(k);
                    }
                    return;
                }
                if labels_changed || old_ref != new_ref {
                    for rs in matching_sets(&self.rs, new) {
                        self.queue.add(key(&ns, &rs.name_any()));
                    }
                }
            }
            Change::Deleted(pod) => self.on_pod_deleted(pod),
        }
    }

    pub async fn run(self: Arc<Self>, workers: usize) {
        self.rs.wait_synced().await;
        self.pods.wait_synced().await;
        let q = self.queue.clone();
        run_workers(q, workers, W::QUEUE, move |k| {
            let c = self.clone();
            async move {
                let span = tracing::debug_span!("sync_replicas", kind = %W::kind(&()), key = %k);
                c.sync(&k).instrument(span).await
            }
        })
        .await;
    }

    async fn sync(&self, k: &str) -> Result<Requeue, ReplicaSetError> {
        let (ns, name) = split_key(k);
        let Some(rs) = self.rs.get(ns, name) else {
            self.expectations.forget(k);
            return Ok(Requeue::default());
        };
        let needs_sync = self.expectations.satisfied(k);
        let active: Vec<Arc<Pod>> = self
            .pods
            .list_namespace(ns)
            .into_iter()
            .filter(|p| podutil::is_active(p))
            .collect();
        let owned = self.claim(&rs, k, &active).await?;
        let mut manage_err = None;
        if needs_sync && rs.meta().deletion_timestamp.is_none() {
            if let Err(e) = self.manage(&rs, k, &owned).await {
                manage_err = Some(e);
            }
        }
        let now = self.clock.now();
        let status = calculate_status(rs.as_ref(), &owned, manage_err.as_ref(), now);
        if rs.replica_status().as_ref() != Some(&status) {
            let api: Api<W> = Api::namespaced(self.client.clone(), ns);
            api.patch_status(
                name,
                &PatchParams::default(),
                &Patch::Merge(podutil::status_patch(&status, RS_STATUS_FIELDS)),
            )
            .await
            .map_err(|source| ReplicaSetError::Status {
                key: k.to_string(),
                source,
            })?;
        }
        if let Some(e) = manage_err {
            return Err(e);
        }
        let mr = rs.min_ready_seconds();
        let replicas = rs.replicas();
        if mr > 0
            && status.ready_replicas == Some(replicas)
            && status.available_replicas != Some(replicas)
        {
            return Ok(Requeue(Some(Duration::from_secs(mr as u64))));
        }
        Ok(Requeue::default())
    }

    /// kube's PodControllerRefManager.ClaimPods over the active pods of the namespace.
    async fn claim(
        &self,
        rs: &W,
        k: &str,
        pods: &[Arc<Pod>],
    ) -> Result<Vec<Arc<Pod>>, ReplicaSetError> {
        let uid = rs.meta().uid.clone().unwrap_or_default();
        if rs.template().is_none() {
            return Ok(Vec::new());
        }
        let deleting = rs.meta().deletion_timestamp.is_some();
        let mut owned = Vec::new();
        for pod in pods {
            let matches = rs.selects(labels(&pod.metadata));
            match controller_of(&pod.metadata) {
                Some(r) if r.uid != uid => {}
                Some(_) => {
                    if matches || deleting {
                        owned.push(pod.clone());
                    } else {
                        match self.release(rs, pod).await {
                            Ok(()) => {}
                            Err(source) if is_not_found(&source) => {}
                            Err(source) => {
                                return Err(ReplicaSetError::Release {
                                    key: k.to_string(),
                                    pod: pod.name_any(),
                                    source,
                                })
                            }
                        }
                    }
                }
                None => {
                    if !matches || deleting || pod.metadata.deletion_timestamp.is_some() {
                        continue;
                    }
                    match self.adopt(rs, pod).await {
                        Ok(p) => owned.push(Arc::new(p)),
                        // Gone or changed under us: the next event brings it back.
                        Err(e) if is_not_found(&e) || crate::is_conflict(&e) => {}
                        Err(kube::Error::Api(s)) if s.code == 422 => {}
                        Err(source) => {
                            return Err(ReplicaSetError::Adopt {
                                key: k.to_string(),
                                pod: pod.name_any(),
                                source,
                            })
                        }
                    }
                }
            }
        }
        Ok(owned)
    }

    async fn adopt(&self, rs: &W, pod: &Pod) -> Result<Pod, kube::Error> {
        let ns = pod.namespace().unwrap_or_default();
        // kube re-reads the owner before adopting (RecheckDeletionTimestamp): a ReplicaSet being
        // deleted, or replaced by another of the same name, must not take pods.
        let fresh = Api::<W>::namespaced(self.client.clone(), &ns)
            .get(&rs.name_any())
            .await?;
        if fresh.meta().uid != rs.meta().uid || fresh.meta().deletion_timestamp.is_some() {
            return Err(kube::Error::Api(kube::core::ErrorResponse {
                status: "Failure".into(),
                message: "owner changed".into(),
                reason: "Conflict".into(),
                code: 409,
            }));
        }
        let mut refs = pod.metadata.owner_references.clone().unwrap_or_default();
        refs.push(podutil::controller_ref(
            rs.meta(),
            &W::api_version(&()),
            &W::kind(&()),
        ));
        Api::<Pod>::namespaced(self.client.clone(), &ns)
            .patch(
                &pod.name_any(),
                &PatchParams::default(),
                &Patch::Json::<()>(podutil::owner_patch(&pod.metadata, refs)),
            )
            .await
    }

    async fn release(&self, rs: &W, pod: &Pod) -> Result<(), kube::Error> {
        let uid = rs.meta().uid.as_deref().unwrap_or_default();
        let refs: Vec<_> = pod
            .metadata
            .owner_references
            .iter()
            .flatten()
            .filter(|r| r.uid != uid)
            .cloned()
            .collect();
        Api::<Pod>::namespaced(self.client.clone(), &pod.namespace().unwrap_or_default())
            .patch(
                &pod.name_any(),
                &PatchParams::default(),
                &Patch::Json::<()>(podutil::owner_patch(&pod.metadata, refs)),
            )
            .await
            .map(|_| ())
    }

    async fn manage(&self, rs: &W, k: &str, owned: &[Arc<Pod>]) -> Result<(), ReplicaSetError> {
        let ns = rs.namespace().unwrap_or_default();
        let want = rs.replicas().max(0) as usize;
        let pods_api: Api<Pod> = Api::namespaced(self.client.clone(), &ns);
        if owned.len() < want {
            let n = (want - owned.len()).min(BURST_REPLICAS);
            self.expectations.expect_creations(k, n);
            let pod = pod_from_template(rs);
            tracing::info!(kind = %W::kind(&()), key = %k, creating = n, "too few replicas");
            let about = reference(rs);
            let (ok, err) = slow_start_batch(n, 1, || {
                let api = pods_api.clone();
                let pod = pod.clone();
                let (events, about) = (self.events.clone(), about.clone());
                async move {
                    create_pod(&api, &pod, &events, about, FailedCreate::Always)
                        .await
                        .map(|_| ())
                }
            })
            .await;
            // Creations that failed or never ran will not produce an event.
            for _ in ok..n {
                self.expectations.creation_observed(k);
            }
            if let Some(source) = err {
                return Err(ReplicaSetError::CreatePod {
                    key: k.to_string(),
                    source,
                });
            }
        } else if owned.len() > want {
            let n = (owned.len() - want).min(BURST_REPLICAS);
            let related = self.related_pods(rs);
            let related_refs: Vec<&Pod> = related.iter().map(|p| p.as_ref()).collect();
            let owned_refs: Vec<&Pod> = owned.iter().map(|p| p.as_ref()).collect();
            let victims = podutil::pods_to_delete(&owned_refs, &related_refs, n, self.clock.now());
            let keys: Vec<String> = victims.iter().map(|p| key(&ns, &p.name_any())).collect();
            self.expectations.expect_deletions(k, &keys);
            tracing::info!(kind = %W::kind(&()), key = %k, deleting = n, "too many replicas");
            let results = join_all(victims.iter().map(|p| {
                let api = pods_api.clone();
                let name = p.name_any();
                async move {
                    (
                        name.clone(),
                        api.delete(&name, &DeleteParams::default()).await,
                    )
                }
            }))
            .await;
            let mut first = None;
            for (name, r) in results {
                match &r {
                    Ok(_) => self.events.normal(
                        reference(rs),
                        "SuccessfulDelete",
                        format!("Deleted pod: {name}"),
                    ),
                    Err(e) if !is_not_found(e) => self.events.warning(
                        reference(rs),
                        "FailedDelete",
                        format!("Error deleting: {e}"),
                    ),
                    Err(_) => {}
                }
                if let Err(e) = r {
                    self.expectations.deletion_observed(k, &key(&ns, &name));
                    if !is_not_found(&e) && first.is_none() {
                        first = Some(ReplicaSetError::DeletePod {
                            key: k.to_string(),
                            pod: name,
                            source: e,
                        });
                    }
                }
            }
            if let Some(e) = first {
                return Err(e);
            }
        }
        Ok(())
    }

    /// Active pods controlled by any ReplicaSet with the same controller as `rs` (kube's
    /// getIndirectlyRelatedPods), for spotting nodes a family is doubled up on.
    fn related_pods(&self, rs: &W) -> Vec<Arc<Pod>> {
        let ns = rs.namespace().unwrap_or_default();
        let mut uids = vec![rs.meta().uid.clone().unwrap_or_default()];
        if let Some(owner) = controller_of(rs.meta()) {
            for other in self.rs.list_namespace(&ns) {
                if controller_of(other.meta()).is_some_and(|o| o.uid == owner.uid) {
                    uids.push(other.meta().uid.clone().unwrap_or_default());
                }
            }
        }
        self.pods
            .list_namespace(&ns)
            .into_iter()
            .filter(|p| {
                podutil::is_active(p)
                    && controller_of(&p.metadata).is_some_and(|r| uids.contains(&r.uid))
            })
            .collect()
    }
}

/// kube's GetPodFromTemplate: labels, annotations, finalizers and spec of the template, a
/// generateName of `<rs>-` and a controller reference.
pub fn pod_from_template<W: Replicated>(rs: &W) -> Pod {
    let template = rs.template().cloned().unwrap_or_default();
    let meta = template.metadata.unwrap_or_default();
    Pod {
        metadata: ObjectMeta {
            generate_name: Some(pods_prefix(&rs.name_any())),
            namespace: rs.namespace(),
            labels: meta.labels,
            annotations: meta.annotations,
            finalizers: meta.finalizers,
            owner_references: Some(vec![podutil::controller_ref(
                rs.meta(),
                &W::api_version(&()),
                &W::kind(&()),
            )]),
            ..Default::default()
        },
        spec: template.spec,
        status: None,
    }
}

/// `<name>-`, cut so that generated names stay within 63 characters as kube's
/// getPodsPrefix/SimpleNameGenerator do (5 random characters are appended).
fn pods_prefix(name: &str) -> String {
    let mut p = format!("{name}-");
    if p.len() > 58 {
        p.truncate(58);
    }
    p
}

/// kube's slowStartBatch: runs `count` calls in batches of 1, 2, 4, … so a call that fails
/// (e.g. quota) fails once rather than `count` times. Returns successes and the first error.
pub async fn slow_start_batch<F, Fut>(
    count: usize,
    initial: usize,
    call: F,
) -> (usize, Option<kube::Error>)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<(), kube::Error>>,
{
    let mut remaining = count;
    let mut successes = 0;
    let mut batch = remaining.min(initial);
    while batch > 0 {
        let results = join_all((0..batch).map(|_| call())).await;
        let mut err = None;
        for r in results {
            match r {
                Ok(()) => successes += 1,
                Err(e) => {
                    if err.is_none() {
                        err = Some(e);
                    }
                }
            }
        }
        if err.is_some() {
            return (successes, err);
        }
        remaining -= batch;
        batch = remaining.min(2 * batch);
    }
    (successes, None)
}

/// kube's calculateStatus plus the ReplicaFailure condition.
pub fn calculate_status<W: Replicated>(
    rs: &W,
    owned: &[Arc<Pod>],
    manage_err: Option<&ReplicaSetError>,
    now: chrono::DateTime<chrono::Utc>,
) -> ReplicaSetStatus {
    let template_labels: BTreeMap<String, String> = rs
        .template()
        .and_then(|t| t.metadata.as_ref())
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    let mr = rs.min_ready_seconds();
    let fully = owned
        .iter()
        .filter(|p| {
            let l = labels(&p.metadata);
            template_labels.iter().all(|(k, v)| l.get(k) == Some(v))
        })
        .count() as i32;
    let ready = owned.iter().filter(|p| podutil::is_ready(p)).count() as i32;
    let available = owned
        .iter()
        .filter(|p| podutil::is_available(p, mr, now))
        .count() as i32;
    let mut conditions: Vec<ReplicaSetCondition> = rs
        .replica_status()
        .and_then(|s| s.conditions)
        .unwrap_or_default();
    let has_failure = conditions.iter().any(|c| c.type_ == "ReplicaFailure");
    match manage_err {
        Some(e) if !has_failure => {
            let reason = match e {
                ReplicaSetError::DeletePod { .. } => "FailedDelete",
                _ => "FailedCreate",
            };
            conditions.push(ReplicaSetCondition {
                type_: "ReplicaFailure".into(),
                status: "True".into(),
                reason: Some(reason.into()),
                message: Some(e.to_string()),
                last_transition_time: Some(Time(now)),
            });
        }
        None if has_failure => conditions.retain(|c| c.type_ != "ReplicaFailure"),
        _ => {}
    }
    let nz = |n: i32| (n != 0).then_some(n);
    ReplicaSetStatus {
        replicas: owned.len() as i32,
        fully_labeled_replicas: nz(fully),
        ready_replicas: nz(ready),
        available_replicas: nz(available),
        observed_generation: rs.meta().generation,
        conditions: (!conditions.is_empty()).then_some(conditions),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Mutex;

    use super::*;

    #[tokio::test]
    async fn slow_start_grows_batches_and_stops_at_the_first_failing_batch() {
        let batches = Mutex::new(Vec::new());
        let calls = AtomicUsize::new(0);
        let (ok, err) = slow_start_batch(10, 1, || {
            calls.fetch_add(1, Ordering::SeqCst);
            async { Ok(()) }
        })
        .await;
        assert_eq!((ok, err.is_none()), (10, true));
        assert_eq!(calls.load(Ordering::SeqCst), 10);
        // 1 + 2 + 4 + 3: the fourth batch is what remains.
        let n = AtomicUsize::new(0);
        let (ok, err) = slow_start_batch(10, 1, || {
            let i = n.fetch_add(1, Ordering::SeqCst);
            batches.lock().unwrap().push(i);
            async move {
                // Calls 0..3 (batches of 1 and 2) succeed, the third batch (calls 3..7) fails.
                if i >= 4 {
                    Err(kube::Error::Api(kube::core::ErrorResponse {
                        status: "Failure".into(),
                        message: "quota".into(),
                        reason: "Forbidden".into(),
                        code: 403,
                    }))
                } else {
                    Ok(())
                }
            }
        })
        .await;
        assert_eq!(ok, 4, "1 + 2 + the first call of the batch of 4");
        assert!(err.is_some());
        assert_eq!(
            n.load(Ordering::SeqCst),
            7,
            "no call after the failing batch"
        );
    }

    #[test]
    fn pods_prefix_leaves_room_for_the_random_suffix() {
        assert_eq!(pods_prefix("web-5d4f"), "web-5d4f-");
        assert_eq!(pods_prefix(&"x".repeat(80)).len(), 58);
    }
}
