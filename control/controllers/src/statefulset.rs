//! The StatefulSet controller (kube's `pkg/controller/statefulset`): pods with stable names
//! `<set>-<ordinal>` for ordinals `spec.ordinals.start ..` (hostname the pod name, subdomain
//! `serviceName`, labels `statefulset.kubernetes.io/pod-name` and `apps.kubernetes.io/pod-index`);
//! `OrderedReady` creates one pod at a time in ordinal order, each only once its predecessors are
//! Running and Ready (and available for minReadySeconds), and removes surplus pods from the
//! highest ordinal down, one at a time; `Parallel` does both at once. Each pod's
//! `volumeClaimTemplates` become PersistentVolumeClaims `<template>-<set>-<ordinal>`, created
//! before the pod and kept when it goes (`persistentVolumeClaimRetentionPolicy` `Delete` hands
//! them to the garbage collector through owner references). Template versions are
//! ControllerRevisions ([`crate::history`]) named in status.currentRevision/updateRevision and
//! on each pod's `controller-revision-hash` label; `RollingUpdate` replaces pods from the highest
//! ordinal down to `partition`, one unhealthy pod at a time (or `maxUnavailable` at once when
//! set), `OnDelete` leaves that to the user.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures_util::future::join_all;
use k8s_openapi::api::apps::v1::{ControllerRevision, StatefulSet, StatefulSetStatus};
use k8s_openapi::api::core::v1::{
    PersistentVolumeClaim, PersistentVolumeClaimVolumeSource, Pod, PodTemplateSpec, Volume,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use serde_json::json;
use tracing::Instrument;

use crate::deployment_util::scaled_value;
use crate::events::{reference, Recorder};
use crate::history;
use crate::informer::{Cache, Change};
use crate::podutil::{self, controller_of, labels, selector_matches};
use crate::queue::{run_workers, Queue, Requeue};
use crate::{is_already_exists, is_not_found, key, split_key, Clock, Informers};

pub const REVISION_LABEL: &str = "controller-revision-hash";
pub const POD_NAME_LABEL: &str = "statefulset.kubernetes.io/pod-name";
pub const POD_INDEX_LABEL: &str = "apps.kubernetes.io/pod-index";

const STATUS_FIELDS: &[&str] = &[
    "observedGeneration",
    "replicas",
    "readyReplicas",
    "currentReplicas",
    "updatedReplicas",
    "availableReplicas",
    "currentRevision",
    "updateRevision",
    "collisionCount",
];

#[derive(Debug, thiserror::Error)]
pub enum StatefulSetError {
    #[error("statefulset {key}: {what}: {source}")]
    Api {
        key: String,
        what: String,
        #[source]
        source: kube::Error,
    },
}

/// `(parent, ordinal)` of a name `<parent>-<ordinal>`.
pub fn parent_and_ordinal(name: &str) -> Option<(&str, i32)> {
    let (parent, ord) = name.rsplit_once('-')?;
    if ord.is_empty() || !ord.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((parent, ord.parse().ok()?))
}

pub fn pod_name(set: &StatefulSet, ordinal: i32) -> String {
    format!("{}-{ordinal}", set.name_any())
}

pub fn start_ordinal(set: &StatefulSet) -> i32 {
    set.spec
        .as_ref()
        .and_then(|s| s.ordinals.as_ref())
        .and_then(|o| o.start)
        .unwrap_or(0)
}

fn replicas(set: &StatefulSet) -> i32 {
    set.spec
        .as_ref()
        .and_then(|s| s.replicas)
        .unwrap_or(1)
        .max(0)
}

fn phase(p: &Pod) -> &str {
    p.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

fn is_terminating(p: &Pod) -> bool {
    p.metadata.deletion_timestamp.is_some()
}

fn running_and_ready(p: &Pod) -> bool {
    phase(p) == "Running" && podutil::is_ready(p)
}

fn running_and_available(p: &Pod, min_ready: i32, now: DateTime<Utc>) -> bool {
    phase(p) == "Running" && podutil::is_available(p, min_ready, now)
}

fn healthy(p: &Pod) -> bool {
    running_and_ready(p) && !is_terminating(p)
}

fn revision_of(p: &Pod) -> &str {
    labels(&p.metadata)
        .get(REVISION_LABEL)
        .map(String::as_str)
        .unwrap_or("")
}

/// The claims a pod of `set` at `ordinal` uses, by template (volume) name.
pub fn claims_for(set: &StatefulSet, ordinal: i32) -> Vec<(String, PersistentVolumeClaim)> {
    let Some(spec) = set.spec.as_ref() else {
        return Vec::new();
    };
    let selector_labels = spec.selector.match_labels.clone().unwrap_or_default();
    spec.volume_claim_templates
        .iter()
        .flatten()
        .map(|t| {
            let tname = t.metadata.name.clone().unwrap_or_default();
            let mut c = t.clone();
            c.metadata.name = Some(format!("{tname}-{}-{ordinal}", set.name_any()));
            c.metadata.namespace = set.namespace();
            let mut l = c.metadata.labels.take().unwrap_or_default();
            l.extend(selector_labels.clone());
            c.metadata.labels = Some(l);
            c.metadata.resource_version = None;
            c.metadata.uid = None;
            c.status = None;
            (tname, c)
        })
        .collect()
}

/// A new pod of `set` (whose template is the revision's) at `ordinal`, labelled `revision`.
pub fn new_pod(set: &StatefulSet, template: &PodTemplateSpec, ordinal: i32, revision: &str) -> Pod {
    let meta = template.metadata.clone().unwrap_or_default();
    let mut spec = template.spec.clone().unwrap_or_default();
    let name = pod_name(set, ordinal);
    let mut l = meta.labels.unwrap_or_default();
    l.insert(POD_NAME_LABEL.into(), name.clone());
    l.insert(POD_INDEX_LABEL.into(), ordinal.to_string());
    l.insert(REVISION_LABEL.into(), revision.to_string());
    spec.hostname = Some(name.clone());
    if let Some(svc) = set
        .spec
        .as_ref()
        .and_then(|s| s.service_name.clone())
        .filter(|s| !s.is_empty())
    {
        spec.subdomain = Some(svc);
    }
    // The claims' volumes first, then the template's other volumes (kube's updateStorage).
    let claims = claims_for(set, ordinal);
    let mut volumes: Vec<Volume> = claims
        .iter()
        .map(|(tname, c)| Volume {
            name: tname.clone(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: c.metadata.name.clone().unwrap_or_default(),
                read_only: None,
            }),
            ..Default::default()
        })
        .collect();
    for v in spec.volumes.take().unwrap_or_default() {
        if !claims.iter().any(|(t, _)| *t == v.name) {
            volumes.push(v);
        }
    }
    spec.volumes = (!volumes.is_empty()).then_some(volumes);
    Pod {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: set.namespace(),
            labels: Some(l),
            annotations: meta.annotations,
            finalizers: meta.finalizers,
            owner_references: Some(vec![podutil::controller_ref(
                &set.metadata,
                "apps/v1",
                "StatefulSet",
            )]),
            ..Default::default()
        },
        spec: Some(spec),
        status: None,
    }
}

fn identity_matches(set: &StatefulSet, pod: &Pod) -> bool {
    let name = pod.name_any();
    parent_and_ordinal(&name).is_some_and(|(parent, _)| parent == set.name_any())
        && labels(&pod.metadata).get(POD_NAME_LABEL) == Some(&name)
}

/// A template version: the revision's name and the template it restores.
#[derive(Debug, Clone)]
pub struct Version {
    pub name: String,
    pub template: PodTemplateSpec,
}

/// One slot of the ordinal range: an existing pod or one to create.
#[derive(Debug, Clone)]
struct Replica {
    pod: Pod,
    created: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Create the pod (its claims first).
    Create(Pod),
    /// Delete the pod; the event says why.
    Delete {
        pod: String,
        reason: &'static str,
        warning: bool,
        message: String,
    },
    /// Put back the identity label of an existing pod.
    Relabel(String),
    /// Make the pod's claims' owner references follow the retention policy.
    ClaimOwners { pod: Pod, scaled_down: bool },
    /// Create missing claims of a pending pod.
    EnsureClaims(Pod),
}

/// What one sync does (in order; a failed action stops the rest) and the status it leads to.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub actions: Vec<Action>,
    pub status: StatefulSetStatus,
}

/// kube's newVersionedStatefulSetPod: below the partition a new pod gets the current revision.
fn versioned_pod(set: &StatefulSet, current: &Version, update: &Version, ordinal: i32) -> Pod {
    let strategy = set
        .spec
        .as_ref()
        .and_then(|s| s.update_strategy.clone())
        .unwrap_or_default();
    let rolling = strategy.type_.as_deref().unwrap_or("RollingUpdate") == "RollingUpdate";
    let start = start_ordinal(set);
    let current_replicas = set
        .status
        .as_ref()
        .and_then(|s| s.current_replicas)
        .unwrap_or(0);
    let use_current = match strategy.rolling_update.as_ref() {
        None => rolling && ordinal < start + current_replicas,
        Some(r) => ordinal < start + r.partition.unwrap_or(0),
    };
    if use_current {
        new_pod(set, &current.template, ordinal, &current.name)
    } else {
        new_pod(set, &update.template, ordinal, &update.name)
    }
}

fn compute_status(
    status: &mut StatefulSetStatus,
    pods: impl Iterator<Item = (bool, Pod)>,
    min_ready: i32,
    now: DateTime<Utc>,
    current: &str,
    update: &str,
) {
    let (mut n, mut ready, mut avail, mut cur, mut upd) = (0, 0, 0, 0, 0);
    for (created, p) in pods {
        if created {
            n += 1;
        }
        if running_and_ready(&p) {
            ready += 1;
            if running_and_available(&p, min_ready, now) {
                avail += 1;
            }
        }
        if created && !is_terminating(&p) {
            if revision_of(&p) == current {
                cur += 1;
            }
            if revision_of(&p) == update {
                upd += 1;
            }
        }
    }
    status.replicas = n;
    status.ready_replicas = Some(ready);
    status.available_replicas = Some(avail);
    status.current_replicas = Some(cur);
    status.updated_replicas = Some(upd);
}

/// kube's updateStatefulSet as a pure function of the set, its revisions and its pods.
pub fn plan(
    set: &StatefulSet,
    current: &Version,
    update: &Version,
    collision_count: i32,
    pods: &[Arc<Pod>],
    now: DateTime<Utc>,
) -> Plan {
    let spec = set.spec.clone().unwrap_or_default();
    let min_ready = spec.min_ready_seconds.unwrap_or(0);
    let start = start_ordinal(set);
    let count = replicas(set);
    let end = start + count - 1;
    let monotonic = spec.pod_management_policy.as_deref() != Some("Parallel");
    let has_claims = spec
        .volume_claim_templates
        .as_ref()
        .is_some_and(|t| !t.is_empty());
    let mut status = StatefulSetStatus {
        observed_generation: set.metadata.generation,
        current_revision: Some(current.name.clone()),
        update_revision: Some(update.name.clone()),
        collision_count: Some(collision_count),
        ..Default::default()
    };
    let mut slots: Vec<Option<Replica>> = vec![None; count as usize];
    let mut condemned: Vec<Pod> = Vec::new();
    for p in pods {
        let Some((_, ord)) = parent_and_ordinal(p.metadata.name.as_deref().unwrap_or("")) else {
            continue;
        };
        if (start..=end).contains(&ord) {
            slots[(ord - start) as usize] = Some(Replica {
                pod: p.as_ref().clone(),
                created: true,
            });
        } else {
            condemned.push(p.as_ref().clone());
        }
    }
    let mut reps: Vec<Replica> = slots
        .into_iter()
        .enumerate()
        .map(|(i, s)| {
            s.unwrap_or_else(|| Replica {
                pod: versioned_pod(set, current, update, start + i as i32),
                created: false,
            })
        })
        .collect();
    let ord_of =
        |p: &Pod| parent_and_ordinal(p.metadata.name.as_deref().unwrap_or("")).map_or(-1, |x| x.1);
    condemned.sort_by_key(|p| std::cmp::Reverse(ord_of(p)));
    let first_unhealthy: Option<String> = reps
        .iter()
        .map(|r| &r.pod)
        .chain(condemned.iter().rev())
        .find(|p| !healthy(p))
        .map(|p| p.name_any());

    let finish = |status: &mut StatefulSetStatus, reps: &[Replica], condemned: &[Pod]| {
        compute_status(
            status,
            reps.iter()
                .map(|r| (r.created, r.pod.clone()))
                .chain(condemned.iter().map(|p| (true, p.clone()))),
            min_ready,
            now,
            &current.name,
            &update.name,
        );
    };
    let mut actions = Vec::new();
    if set.metadata.deletion_timestamp.is_some() {
        finish(&mut status, &reps, &condemned);
        return Plan { actions, status };
    }
    let set_name = set.name_any();
    let ns = set.namespace().unwrap_or_default();

    // Living replicas, in ordinal order.
    for i in 0..reps.len() {
        if reps[i].created && matches!(phase(&reps[i].pod), "Failed" | "Succeeded") {
            let failed = phase(&reps[i].pod) == "Failed";
            let pod = reps[i].pod.name_any();
            actions.push(Action::Delete {
                message: format!(
                    "StatefulSet {ns}/{set_name} is recreating {} Pod {pod}",
                    if failed { "failed" } else { "terminated" }
                ),
                pod,
                reason: if failed {
                    "RecreatingFailedPod"
                } else {
                    "RecreatingTerminatedPod"
                },
                warning: failed,
            });
            reps[i] = Replica {
                pod: versioned_pod(set, current, update, start + i as i32),
                created: false,
            };
        }
        let r = &reps[i];
        if !r.created {
            actions.push(Action::Create(r.pod.clone()));
            if monotonic {
                finish(&mut status, &reps, &condemned);
                return Plan { actions, status };
            }
            continue;
        }
        if has_claims && phase(&r.pod) == "Pending" {
            actions.push(Action::EnsureClaims(r.pod.clone()));
        }
        if monotonic
            && (is_terminating(&r.pod)
                || !running_and_ready(&r.pod)
                || !running_and_available(&r.pod, min_ready, now))
        {
            finish(&mut status, &reps, &condemned);
            return Plan { actions, status };
        }
        if has_claims {
            actions.push(Action::ClaimOwners {
                pod: r.pod.clone(),
                scaled_down: false,
            });
        }
        if !identity_matches(set, &r.pod) {
            actions.push(Action::Relabel(r.pod.name_any()));
        }
    }
    if has_claims {
        for c in &condemned {
            actions.push(Action::ClaimOwners {
                pod: c.clone(),
                scaled_down: true,
            });
        }
    }
    // Surplus pods, highest ordinal first.
    for c in &condemned {
        if is_terminating(c) {
            if monotonic {
                finish(&mut status, &reps, &condemned);
                return Plan { actions, status };
            }
            continue;
        }
        let first = first_unhealthy.as_deref() == Some(c.name_any().as_str());
        if monotonic && !first && !running_and_available(c, min_ready, now) {
            finish(&mut status, &reps, &condemned);
            return Plan { actions, status };
        }
        actions.push(Action::Delete {
            pod: c.name_any(),
            reason: "SuccessfulDelete",
            warning: false,
            message: format!(
                "delete Pod {} in StatefulSet {set_name} successful",
                c.name_any()
            ),
        });
        if monotonic {
            finish(&mut status, &reps, &condemned);
            return Plan { actions, status };
        }
    }
    finish(&mut status, &reps, &condemned);

    let strategy = spec.update_strategy.clone().unwrap_or_default();
    if strategy.type_.as_deref() == Some("OnDelete") {
        return Plan { actions, status };
    }
    let rolling = strategy.rolling_update.unwrap_or_default();
    let update_min = rolling.partition.unwrap_or(0).max(0) as usize;
    let stale =
        |r: &Replica| r.created && revision_of(&r.pod) != update.name && !is_terminating(&r.pod);
    let delete_for_update = |r: &Replica| Action::Delete {
        pod: r.pod.name_any(),
        reason: "SuccessfulDelete",
        warning: false,
        message: format!(
            "delete Pod {} in StatefulSet {set_name} successful",
            r.pod.name_any()
        ),
    };
    match rolling.max_unavailable {
        None => {
            // One pod at a time, highest ordinal first, each replaced pod healthy again before
            // the next goes.
            for target in (update_min..reps.len()).rev() {
                if stale(&reps[target]) {
                    actions.push(delete_for_update(&reps[target]));
                    status.current_replicas = status.current_replicas.map(|c| c - 1);
                    return Plan { actions, status };
                }
                if !reps[target].created || !healthy(&reps[target].pod) {
                    return Plan { actions, status };
                }
            }
        }
        Some(max) => {
            // kube's MaxUnavailableStatefulSet: up to maxUnavailable pods down at once.
            let max = scaled_value(&max, count, false).unwrap_or(1).max(1);
            let unavailable = reps
                .iter()
                .filter(|r| !r.created || !healthy(&r.pod))
                .count() as i32;
            let mut budget = max - unavailable;
            for target in (update_min..reps.len()).rev() {
                if budget <= 0 {
                    break;
                }
                if stale(&reps[target]) {
                    actions.push(delete_for_update(&reps[target]));
                    status.current_replicas = status.current_replicas.map(|c| c - 1);
                    budget -= 1;
                }
            }
        }
    }
    Plan { actions, status }
}

/// kube's completeRollingUpdate: once every pod is updated and ready the update revision
/// becomes the current one.
pub fn complete_rolling_update(set: &StatefulSet, status: &mut StatefulSetStatus) {
    let rolling = set
        .spec
        .as_ref()
        .and_then(|s| s.update_strategy.as_ref())
        .and_then(|u| u.type_.as_deref())
        .unwrap_or("RollingUpdate")
        == "RollingUpdate";
    let upd = status.updated_replicas.unwrap_or(0);
    if rolling && upd == status.replicas && status.ready_replicas.unwrap_or(0) == status.replicas {
        status.current_replicas = Some(upd);
        status.current_revision = status.update_revision.clone();
    }
}

/// The owner references a claim should carry under the set's retention policy (kube's
/// updateClaimOwnerRefForSetAndPod): `whenDeleted: Delete` → owned by the set, `whenScaled:
/// Delete` → owned by a scaled-down pod.
pub fn claim_owner_refs(
    set: &StatefulSet,
    pod: &Pod,
    scaled_down: bool,
    existing: &[OwnerReference],
) -> Vec<OwnerReference> {
    let policy = set
        .spec
        .as_ref()
        .and_then(|s| s.persistent_volume_claim_retention_policy.clone())
        .unwrap_or_default();
    let when_deleted = policy.when_deleted.as_deref() == Some("Delete");
    let when_scaled = policy.when_scaled.as_deref() == Some("Delete");
    let set_uid = set.metadata.uid.clone().unwrap_or_default();
    let pod_uid = pod.metadata.uid.clone().unwrap_or_default();
    let want_set = when_deleted && !(when_scaled && scaled_down);
    let want_pod = when_scaled && scaled_down;
    let mut refs: Vec<OwnerReference> = existing
        .iter()
        .filter(|r| r.uid != set_uid && r.uid != pod_uid)
        .cloned()
        .collect();
    let keep = |uid: &str| existing.iter().find(|r| r.uid == uid).cloned();
    if want_set {
        refs.push(keep(&set_uid).unwrap_or(OwnerReference {
            api_version: "apps/v1".into(),
            kind: "StatefulSet".into(),
            name: set.name_any(),
            uid: set_uid.clone(),
            ..Default::default()
        }));
    }
    if want_pod && !pod_uid.is_empty() {
        refs.push(keep(&pod_uid).unwrap_or(OwnerReference {
            api_version: "v1".into(),
            kind: "Pod".into(),
            name: pod.name_any(),
            uid: pod_uid.clone(),
            ..Default::default()
        }));
    }
    refs
}

pub struct StatefulSetController {
    client: Client,
    sets: Arc<Cache<StatefulSet>>,
    pods: Arc<Cache<Pod>>,
    revisions: Arc<Cache<ControllerRevision>>,
    claims: Arc<Cache<PersistentVolumeClaim>>,
    queue: Arc<Queue>,
    clock: Clock,
    events: Recorder,
}

impl std::fmt::Debug for StatefulSetController {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StatefulSetController")
            .finish_non_exhaustive()
    }
}

impl StatefulSetController {
    pub fn register(
        informers: &Informers,
        client: Client,
        clock: Clock,
        events: Recorder,
    ) -> Arc<Self> {
        let c = Arc::new(Self {
            client,
            sets: informers.statefulsets.cache(),
            pods: informers.pods.cache(),
            revisions: informers.controllerrevisions.cache(),
            claims: informers.persistentvolumeclaims.cache(),
            queue: Queue::new(),
            clock,
            events,
        });
        let q = c.queue.clone();
        informers.statefulsets.add_handler(move |ch| {
            let (Change::Added(s) | Change::Updated { new: s, .. } | Change::Deleted(s)) = ch;
            q.add(key(&s.namespace().unwrap_or_default(), &s.name_any()));
        });
        let weak = Arc::downgrade(&c);
        informers.pods.add_handler(move |ch| {
            let Some(c) = weak.upgrade() else { return };
            let (Change::Added(p) | Change::Updated { new: p, .. } | Change::Deleted(p)) = ch;
            let ns = p.namespace().unwrap_or_default();
            match controller_of(&p.metadata) {
                Some(r) if r.kind == "StatefulSet" => c.queue.add(key(&ns, &r.name)),
                Some(_) => {}
                // An orphan: the sets that could adopt it.
                None => {
                    for s in c.sets.list_namespace(&ns) {
                        if s.spec
                            .as_ref()
                            .is_some_and(|sp| selector_matches(&sp.selector, labels(&p.metadata)))
                        {
                            c.queue.add(key(&ns, &s.name_any()));
                        }
                    }
                }
            }
        });
        let weak = Arc::downgrade(&c);
        informers.controllerrevisions.add_handler(move |ch| {
            let Some(c) = weak.upgrade() else { return };
            let (Change::Added(r) | Change::Updated { new: r, .. } | Change::Deleted(r)) = ch;
            if let Some(o) = controller_of(&r.metadata).filter(|o| o.kind == "StatefulSet") {
                c.queue
                    .add(key(&r.namespace().unwrap_or_default(), &o.name));
            }
        });
        // The claims cache is read at sync time only; a handler keeps its informer running.
        informers.persistentvolumeclaims.add_handler(|_| {});
        c
    }

    pub async fn run(self: Arc<Self>, workers: usize) {
        self.sets.wait_synced().await;
        self.pods.wait_synced().await;
        self.revisions.wait_synced().await;
        let q = self.queue.clone();
        run_workers(q, workers, "statefulset", move |k| {
            let c = self.clone();
            async move {
                let span = tracing::debug_span!("sync_statefulset", key = %k);
                c.sync(&k).instrument(span).await
            }
        })
        .await;
    }

    fn err<'a>(
        &self,
        k: &'a str,
        what: impl Into<String>,
    ) -> impl FnOnce(kube::Error) -> StatefulSetError + 'a {
        let what = what.into();
        move |source| StatefulSetError::Api {
            key: k.to_string(),
            what,
            source,
        }
    }

    async fn sync(&self, k: &str) -> Result<Requeue, StatefulSetError> {
        let (ns, name) = split_key(k);
        let Some(set) = self.sets.get(ns, name) else {
            return Ok(Requeue::default());
        };
        let has_claims = set
            .spec
            .as_ref()
            .and_then(|s| s.volume_claim_templates.as_ref())
            .is_some_and(|t| !t.is_empty());
        if has_claims && !self.claims.is_synced() {
            // Claims must be looked up before pods are made; wait for their cache.
            return Ok(Requeue(Some(Duration::from_secs(1))));
        }
        let pods = self.claim_pods(&set, k).await?;
        let (current, update, collision, revisions) = self.revisions(&set, k).await?;
        let now = self.clock.now();
        let plan = plan(&set, &current, &update, collision, &pods, now);
        let mut status = plan.status.clone();
        let result = self.execute(&set, k, plan.actions).await;
        complete_rolling_update(&set, &mut status);
        if set.status.as_ref() != Some(&status) {
            Api::<StatefulSet>::namespaced(self.client.clone(), ns)
                .patch_status(
                    name,
                    &PatchParams::default(),
                    &Patch::Merge(podutil::status_patch(&status, STATUS_FIELDS)),
                )
                .await
                .map_err(self.err(k, "updating status"))?;
        }
        result?;
        self.truncate_history(&set, k, &pods, &revisions, &current.name, &update.name)
            .await?;
        let min_ready = set
            .spec
            .as_ref()
            .and_then(|s| s.min_ready_seconds)
            .unwrap_or(0);
        if min_ready > 0 && status.ready_replicas != status.available_replicas {
            return Ok(Requeue(Some(Duration::from_secs(min_ready as u64))));
        }
        Ok(Requeue::default())
    }

    /// The set's pods: owned ones that still match, plus orphans `<set>-<n>` matching the
    /// selector, adopted (kube's ClaimPods with the isMemberOf filter); owned pods that stopped
    /// matching are released.
    async fn claim_pods(
        &self,
        set: &StatefulSet,
        k: &str,
    ) -> Result<Vec<Arc<Pod>>, StatefulSetError> {
        let ns = set.namespace().unwrap_or_default();
        let uid = set.metadata.uid.clone().unwrap_or_default();
        let spec = set.spec.clone().unwrap_or_default();
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &ns);
        let deleting = set.metadata.deletion_timestamp.is_some();
        let mut owned = Vec::new();
        for p in self.pods.list_namespace(&ns) {
            let member = parent_and_ordinal(p.metadata.name.as_deref().unwrap_or(""))
                .is_some_and(|(parent, _)| parent == set.name_any());
            let matches = member && selector_matches(&spec.selector, labels(&p.metadata));
            match controller_of(&p.metadata) {
                Some(r) if r.uid != uid => {}
                Some(_) if matches || deleting => owned.push(p),
                Some(_) => {
                    let refs: Vec<OwnerReference> = p
                        .metadata
                        .owner_references
                        .iter()
                        .flatten()
                        .filter(|r| r.uid != uid)
                        .cloned()
                        .collect();
                    let r = api
                        .patch(
                            &p.name_any(),
                            &PatchParams::default(),
                            &Patch::Json::<()>(podutil::owner_patch(&p.metadata, refs)),
                        )
                        .await;
                    match r {
                        Ok(_) => {}
                        Err(e) if is_not_found(&e) || crate::is_conflict(&e) => {}
                        Err(kube::Error::Api(s)) if s.code == 422 => {}
                        Err(e) => {
                            return Err(self.err(k, format!("releasing pod {}", p.name_any()))(e))
                        }
                    }
                }
                None if matches && !deleting && !is_terminating(&p) => {
                    let mut refs = p.metadata.owner_references.clone().unwrap_or_default();
                    refs.push(podutil::controller_ref(
                        &set.metadata,
                        "apps/v1",
                        "StatefulSet",
                    ));
                    let r = api
                        .patch(
                            &p.name_any(),
                            &PatchParams::default(),
                            &Patch::Json::<()>(podutil::owner_patch(&p.metadata, refs)),
                        )
                        .await;
                    match r {
                        Ok(adopted) => owned.push(Arc::new(adopted)),
                        Err(e) if is_not_found(&e) || crate::is_conflict(&e) => {}
                        Err(kube::Error::Api(s)) if s.code == 422 => {}
                        Err(e) => {
                            return Err(self.err(k, format!("adopting pod {}", p.name_any()))(e))
                        }
                    }
                }
                None => {}
            }
        }
        Ok(owned)
    }

    /// kube's getStatefulSetRevisions: the update revision is the set's template (an existing
    /// equal revision is reused, renumbered when it is not the latest: a rollback), the current
    /// one is status.currentRevision's (the update revision when there is none).
    async fn revisions(
        &self,
        set: &StatefulSet,
        k: &str,
    ) -> Result<(Version, Version, i32, Vec<Arc<ControllerRevision>>), StatefulSetError> {
        let ns = set.namespace().unwrap_or_default();
        let uid = set.metadata.uid.clone().unwrap_or_default();
        let mut revs: Vec<Arc<ControllerRevision>> = self
            .revisions
            .list_namespace(&ns)
            .into_iter()
            .filter(|r| controller_of(&r.metadata).is_some_and(|o| o.uid == uid))
            .collect();
        history::sort(&mut revs);
        let mut collision = set
            .status
            .as_ref()
            .and_then(|s| s.collision_count)
            .unwrap_or(0);
        let template = set.spec.clone().unwrap_or_default().template;
        let candidate = history::new_revision(
            history::template_patch(&template),
            history::next_revision(&revs),
        );
        let api: Api<ControllerRevision> = Api::namespaced(self.client.clone(), &ns);
        let equal: Vec<&Arc<ControllerRevision>> = revs
            .iter()
            .filter(|r| history::equal(r, &candidate))
            .collect();
        let update: ControllerRevision = match (equal.last(), revs.last()) {
            (Some(e), Some(last)) if history::equal(e, last) => last.as_ref().clone(),
            (Some(e), _) => {
                // A rollback to an older template: that revision becomes the newest.
                let patch = json!({"revision": candidate.revision});
                api.patch(&e.name_any(), &PatchParams::default(), &Patch::Merge(patch))
                    .await
                    .map_err(self.err(k, format!("renumbering revision {}", e.name_any())))?
            }
            (None, _) => {
                let mut labels = template
                    .metadata
                    .as_ref()
                    .and_then(|m| m.labels.clone())
                    .unwrap_or_default();
                labels.remove(REVISION_LABEL);
                loop {
                    let mut rev = candidate.clone();
                    rev.metadata = ObjectMeta {
                        namespace: Some(ns.clone()),
                        labels: Some(labels.clone()),
                        annotations: set.metadata.annotations.clone(),
                        owner_references: Some(vec![podutil::controller_ref(
                            &set.metadata,
                            "apps/v1",
                            "StatefulSet",
                        )]),
                        ..Default::default()
                    };
                    let rev = history::named(rev, &set.name_any(), collision);
                    match api.create(&PostParams::default(), &rev).await {
                        Ok(created) => break created,
                        Err(e) if is_already_exists(&e) => {
                            let existing = api
                                .get(&rev.name_any())
                                .await
                                .map_err(self.err(k, "reading a colliding revision"))?;
                            if history::equal(&existing, &rev) {
                                break existing;
                            }
                            collision += 1;
                            if collision > 1000 {
                                return Err(self.err(k, "too many revision hash collisions")(e));
                            }
                        }
                        Err(e) => return Err(self.err(k, "creating a revision")(e)),
                    }
                }
            }
        };
        let current_name = set
            .status
            .as_ref()
            .and_then(|s| s.current_revision.clone())
            .unwrap_or_default();
        let update_v = Version {
            name: update.name_any(),
            template: history::template_of(&update).unwrap_or(template),
        };
        let current_v = revs
            .iter()
            .find(|r| r.name_any() == current_name)
            .and_then(|r| {
                Some(Version {
                    name: r.name_any(),
                    template: history::template_of(r)?,
                })
            })
            .unwrap_or_else(|| update_v.clone());
        Ok((current_v, update_v, collision, revs))
    }

    async fn execute(
        &self,
        set: &StatefulSet,
        k: &str,
        actions: Vec<Action>,
    ) -> Result<(), StatefulSetError> {
        let ns = set.namespace().unwrap_or_default();
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &ns);
        let about = reference(set);
        let mut i = 0;
        while i < actions.len() {
            // Consecutive creations (Parallel) go at once.
            let mut creates = Vec::new();
            while let Some(Action::Create(p)) = actions.get(i) {
                creates.push(p.clone());
                i += 1;
            }
            if !creates.is_empty() {
                let results = join_all(creates.iter().map(|p| self.create_pod(set, k, p))).await;
                results.into_iter().collect::<Result<Vec<()>, _>>()?;
                continue;
            }
            match &actions[i] {
                Action::Create(_) => unreachable!("handled above"),
                Action::Delete {
                    pod,
                    reason,
                    warning,
                    message,
                } => match pods.delete(pod, &DeleteParams::default()).await {
                    Ok(_) => {
                        if *warning {
                            self.events.warning(about.clone(), reason, message.clone());
                        } else {
                            self.events.normal(about.clone(), reason, message.clone());
                        }
                    }
                    Err(e) if is_not_found(&e) => {}
                    Err(e) => {
                        self.events.warning(
                            about.clone(),
                            "FailedDelete",
                            format!(
                                "delete Pod {pod} in StatefulSet {} failed error: {e}",
                                set.name_any()
                            ),
                        );
                        return Err(self.err(k, format!("deleting pod {pod}"))(e));
                    }
                },
                Action::Relabel(pod) => {
                    let patch = json!({"metadata": {"labels": {POD_NAME_LABEL: pod}}});
                    match pods
                        .patch(pod, &PatchParams::default(), &Patch::Merge(patch))
                        .await
                    {
                        Ok(_) => {}
                        Err(e) if is_not_found(&e) => {}
                        Err(e) => return Err(self.err(k, format!("relabelling pod {pod}"))(e)),
                    }
                }
                Action::EnsureClaims(pod) => self.create_claims(set, k, pod).await?,
                Action::ClaimOwners { pod, scaled_down } => {
                    self.fix_claim_owners(set, k, pod, *scaled_down).await?
                }
            }
            i += 1;
        }
        Ok(())
    }

    /// The pod's claims that do not exist yet, created (kube's createPersistentVolumeClaims).
    async fn create_claims(
        &self,
        set: &StatefulSet,
        k: &str,
        pod: &Pod,
    ) -> Result<(), StatefulSetError> {
        let ns = set.namespace().unwrap_or_default();
        let Some((_, ord)) = parent_and_ordinal(pod.metadata.name.as_deref().unwrap_or("")) else {
            return Ok(());
        };
        let api: Api<PersistentVolumeClaim> = Api::namespaced(self.client.clone(), &ns);
        for (_, mut claim) in claims_for(set, ord) {
            let cname = claim.name_any();
            if self.claims.get(&ns, &cname).is_some() {
                continue;
            }
            let in_range = (start_ordinal(set)..start_ordinal(set) + replicas(set)).contains(&ord);
            let refs = claim_owner_refs(set, pod, !in_range, &[]);
            claim.metadata.owner_references = (!refs.is_empty()).then_some(refs);
            match api.create(&PostParams::default(), &claim).await {
                Ok(_) => self.events.normal(
                    reference(set),
                    "SuccessfulCreate",
                    format!(
                        "create Claim {cname} Pod {} in StatefulSet {} success",
                        pod.name_any(),
                        set.name_any()
                    ),
                ),
                Err(e) if is_already_exists(&e) => {}
                Err(e) => {
                    self.events.warning(
                        reference(set),
                        "FailedCreate",
                        format!(
                            "create Claim {cname} for Pod {} in StatefulSet {} failed error: {e}",
                            pod.name_any(),
                            set.name_any()
                        ),
                    );
                    return Err(self.err(k, format!("creating claim {cname}"))(e));
                }
            }
        }
        Ok(())
    }

    async fn create_pod(
        &self,
        set: &StatefulSet,
        k: &str,
        pod: &Pod,
    ) -> Result<(), StatefulSetError> {
        self.create_claims(set, k, pod).await?;
        let ns = set.namespace().unwrap_or_default();
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &ns);
        match api.create(&PostParams::default(), pod).await {
            Ok(_) => {
                self.events.normal(
                    reference(set),
                    "SuccessfulCreate",
                    format!(
                        "create Pod {} in StatefulSet {} successful",
                        pod.name_any(),
                        set.name_any()
                    ),
                );
                Ok(())
            }
            Err(e) => {
                if !is_already_exists(&e) {
                    self.events.warning(
                        reference(set),
                        "FailedCreate",
                        format!(
                            "create Pod {} in StatefulSet {} failed error: {e}",
                            pod.name_any(),
                            set.name_any()
                        ),
                    );
                }
                Err(self.err(k, format!("creating pod {}", pod.name_any()))(e))
            }
        }
    }

    async fn fix_claim_owners(
        &self,
        set: &StatefulSet,
        k: &str,
        pod: &Pod,
        scaled_down: bool,
    ) -> Result<(), StatefulSetError> {
        let ns = set.namespace().unwrap_or_default();
        let Some((_, ord)) = parent_and_ordinal(pod.metadata.name.as_deref().unwrap_or("")) else {
            return Ok(());
        };
        let api: Api<PersistentVolumeClaim> = Api::namespaced(self.client.clone(), &ns);
        for (_, claim) in claims_for(set, ord) {
            let Some(existing) = self.claims.get(&ns, &claim.name_any()) else {
                continue;
            };
            let have = existing
                .metadata
                .owner_references
                .clone()
                .unwrap_or_default();
            let want = claim_owner_refs(set, pod, scaled_down, &have);
            let same = have.len() == want.len() && want.iter().all(|w| have.contains(w));
            if same {
                continue;
            }
            match api
                .patch(
                    &existing.name_any(),
                    &PatchParams::default(),
                    &Patch::Json::<()>(podutil::owner_patch(&existing.metadata, want)),
                )
                .await
            {
                Ok(_) => {}
                Err(e) if is_not_found(&e) || crate::is_conflict(&e) => {}
                Err(kube::Error::Api(s)) if s.code == 422 => {}
                Err(e) => {
                    return Err(self
                        .err(k, format!("updating claim {}", existing.name_any()))(
                        e
                    ))
                }
            }
        }
        Ok(())
    }

    /// kube's truncateHistory: revisions no pod uses beyond revisionHistoryLimit, oldest first.
    async fn truncate_history(
        &self,
        set: &StatefulSet,
        k: &str,
        pods: &[Arc<Pod>],
        revisions: &[Arc<ControllerRevision>],
        current: &str,
        update: &str,
    ) -> Result<(), StatefulSetError> {
        let limit = set
            .spec
            .as_ref()
            .and_then(|s| s.revision_history_limit)
            .unwrap_or(10)
            .max(0) as usize;
        let mut live: HashSet<&str> = [current, update].into_iter().collect();
        live.extend(pods.iter().map(|p| revision_of(p)));
        let old: Vec<&Arc<ControllerRevision>> = revisions
            .iter()
            .filter(|r| !live.contains(r.name_any().as_str()))
            .collect();
        if old.len() <= limit {
            return Ok(());
        }
        let api: Api<ControllerRevision> =
            Api::namespaced(self.client.clone(), &set.namespace().unwrap_or_default());
        for r in &old[..old.len() - limit] {
            match api.delete(&r.name_any(), &DeleteParams::default()).await {
                Ok(_) => {}
                Err(e) if is_not_found(&e) => {}
                Err(e) => {
                    return Err(self.err(k, format!("deleting revision {}", r.name_any()))(
                        e,
                    ))
                }
            }
        }
        Ok(())
    }
}

/// Pods by ordinal, for tests and diagnostics.
pub fn by_ordinal(pods: &[Arc<Pod>]) -> BTreeMap<i32, Arc<Pod>> {
    pods.iter()
        .filter_map(|p| {
            Some((
                parent_and_ordinal(p.metadata.name.as_deref()?)?.1,
                p.clone(),
            ))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::apps::v1::{
        RollingUpdateStatefulSetStrategy, StatefulSetOrdinals,
        StatefulSetPersistentVolumeClaimRetentionPolicy, StatefulSetSpec,
        StatefulSetUpdateStrategy,
    };
    use k8s_openapi::api::core::v1::{Container, PodCondition, PodSpec, PodStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, Time};
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

    use super::*;

    fn t(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + s, 0).unwrap()
    }

    fn template(image: &str) -> PodTemplateSpec {
        PodTemplateSpec {
            metadata: Some(ObjectMeta {
                labels: Some([("app".to_string(), "db".to_string())].into()),
                ..Default::default()
            }),
            spec: Some(PodSpec {
                containers: vec![Container {
                    name: "c".into(),
                    image: Some(image.into()),
                    ..Default::default()
                }],
                ..Default::default()
            }),
        }
    }

    fn set(replicas: i32, policy: &str) -> StatefulSet {
        StatefulSet {
            metadata: ObjectMeta {
                name: Some("db".into()),
                namespace: Some("default".into()),
                uid: Some("set-uid".into()),
                generation: Some(2),
                ..Default::default()
            },
            spec: Some(StatefulSetSpec {
                replicas: Some(replicas),
                pod_management_policy: Some(policy.into()),
                service_name: Some("db-headless".into()),
                selector: LabelSelector {
                    match_labels: Some([("app".to_string(), "db".to_string())].into()),
                    ..Default::default()
                },
                template: template("v1"),
                update_strategy: Some(StatefulSetUpdateStrategy {
                    type_: Some("RollingUpdate".into()),
                    rolling_update: Some(RollingUpdateStatefulSetStrategy {
                        partition: Some(0),
                        max_unavailable: None,
                    }),
                }),
                ..Default::default()
            }),
            status: None,
        }
    }

    fn v(name: &str, image: &str) -> Version {
        Version {
            name: name.into(),
            template: template(image),
        }
    }

    /// An existing pod at `ord` of revision `rev`, Running and Ready when `ready`.
    fn pod(s: &StatefulSet, ord: i32, rev: &str, ready: bool) -> Arc<Pod> {
        let mut p = new_pod(s, &template("x"), ord, rev);
        p.metadata.uid = Some(format!("pod-{ord}"));
        p.status = Some(PodStatus {
            phase: Some(if ready { "Running" } else { "Pending" }.into()),
            conditions: Some(vec![PodCondition {
                type_: "Ready".into(),
                status: if ready { "True" } else { "False" }.into(),
                last_transition_time: Some(Time(t(0))),
                ..Default::default()
            }]),
            ..Default::default()
        });
        Arc::new(p)
    }

    fn names(plan: &Plan) -> Vec<String> {
        plan.actions
            .iter()
            .filter_map(|a| match a {
                Action::Create(p) => Some(format!("create {}", p.name_any())),
                Action::Delete { pod, .. } => Some(format!("delete {pod}")),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn names_and_ordinals() {
        assert_eq!(parent_and_ordinal("web-0"), Some(("web", 0)));
        assert_eq!(parent_and_ordinal("my-web-12"), Some(("my-web", 12)));
        assert_eq!(parent_and_ordinal("web"), None);
        assert_eq!(parent_and_ordinal("web-x1"), None);
    }

    #[test]
    fn new_pods_carry_identity_revision_and_claims() {
        let mut s = set(3, "OrderedReady");
        s.spec.as_mut().unwrap().volume_claim_templates = Some(vec![PersistentVolumeClaim {
            metadata: ObjectMeta {
                name: Some("data".into()),
                ..Default::default()
            },
            ..Default::default()
        }]);
        let p = new_pod(&s, &template("v1"), 2, "db-abc");
        assert_eq!(p.name_any(), "db-2");
        let l = p.labels();
        assert_eq!(l[POD_NAME_LABEL], "db-2");
        assert_eq!(l[POD_INDEX_LABEL], "2");
        assert_eq!(l[REVISION_LABEL], "db-abc");
        assert_eq!(l["app"], "db");
        let spec = p.spec.unwrap();
        assert_eq!(spec.hostname.as_deref(), Some("db-2"));
        assert_eq!(spec.subdomain.as_deref(), Some("db-headless"));
        let vol = &spec.volumes.unwrap()[0];
        assert_eq!(vol.name, "data");
        assert_eq!(
            vol.persistent_volume_claim.as_ref().unwrap().claim_name,
            "data-db-2"
        );
        let claims = claims_for(&s, 2);
        assert_eq!(claims[0].1.name_any(), "data-db-2");
        assert_eq!(
            claims[0].1.labels()["app"],
            "db",
            "selector labels on the claim"
        );
    }

    #[test]
    fn ordered_ready_creates_one_at_a_time_and_waits_for_ready() {
        let s = set(3, "OrderedReady");
        let (cur, upd) = (v("db-1", "v1"), v("db-1", "v1"));
        let p = plan(&s, &cur, &upd, 0, &[], t(10));
        assert_eq!(names(&p), ["create db-0"]);
        // db-0 exists but is not ready: nothing more.
        let p = plan(&s, &cur, &upd, 0, &[pod(&s, 0, "db-1", false)], t(10));
        assert!(names(&p).is_empty());
        assert_eq!((p.status.replicas, p.status.ready_replicas), (1, Some(0)));
        // db-0 ready: db-1 next.
        let p = plan(&s, &cur, &upd, 0, &[pod(&s, 0, "db-1", true)], t(10));
        assert_eq!(names(&p), ["create db-1"]);
    }

    #[test]
    fn parallel_creates_all_and_spec_ordinals_start_shifts_names() {
        let mut s = set(3, "Parallel");
        s.spec.as_mut().unwrap().ordinals = Some(StatefulSetOrdinals { start: Some(5) });
        let (cur, upd) = (v("db-1", "v1"), v("db-1", "v1"));
        let p = plan(&s, &cur, &upd, 0, &[], t(10));
        assert_eq!(names(&p), ["create db-5", "create db-6", "create db-7"]);
    }

    #[test]
    fn scale_down_goes_from_the_highest_ordinal_one_at_a_time() {
        let s = set(1, "OrderedReady");
        let (cur, upd) = (v("db-1", "v1"), v("db-1", "v1"));
        let pods = [
            pod(&s, 0, "db-1", true),
            pod(&s, 1, "db-1", true),
            pod(&s, 2, "db-1", true),
        ];
        let p = plan(&s, &cur, &upd, 0, &pods, t(10));
        assert_eq!(names(&p), ["delete db-2"]);
        // Parallel removes both at once.
        let s = set(1, "Parallel");
        let p = plan(&s, &cur, &upd, 0, &pods, t(10));
        assert_eq!(names(&p), ["delete db-2", "delete db-1"]);
        // OrderedReady waits while a lower surplus pod is unhealthy and not the first unhealthy.
        let s = set(1, "OrderedReady");
        let pods = [
            pod(&s, 0, "db-1", false),
            pod(&s, 1, "db-1", true),
            pod(&s, 2, "db-1", true),
        ];
        let p = plan(&s, &cur, &upd, 0, &pods, t(10));
        assert!(
            names(&p).is_empty(),
            "db-0 not ready blocks: {:?}",
            names(&p)
        );
    }

    #[test]
    fn rolling_update_replaces_from_the_top_down_to_the_partition() {
        let mut s = set(3, "OrderedReady");
        let (cur, upd) = (v("db-1", "v1"), v("db-2", "v2"));
        let old = [
            pod(&s, 0, "db-1", true),
            pod(&s, 1, "db-1", true),
            pod(&s, 2, "db-1", true),
        ];
        let p = plan(&s, &cur, &upd, 0, &old, t(10));
        assert_eq!(names(&p), ["delete db-2"]);
        assert_eq!(p.status.current_replicas, Some(2));
        assert_eq!(p.status.updated_replicas, Some(0));
        // db-2 recreated at the new revision but not ready yet: wait.
        let mid = [
            pod(&s, 0, "db-1", true),
            pod(&s, 1, "db-1", true),
            pod(&s, 2, "db-2", false),
        ];
        assert!(names(&plan(&s, &cur, &upd, 0, &mid, t(10))).is_empty());
        // A missing pod above the partition is created at the update revision.
        let gone = [pod(&s, 0, "db-1", true), pod(&s, 1, "db-1", true)];
        let p = plan(&s, &cur, &upd, 0, &gone, t(10));
        match &p.actions[0] {
            Action::Create(p) => assert_eq!(p.labels()[REVISION_LABEL], "db-2"),
            a => panic!("{a:?}"),
        }
        // Partition 2: only db-2 is updated; db-1 stays, and a missing db-1 comes back old.
        s.spec
            .as_mut()
            .unwrap()
            .update_strategy
            .as_mut()
            .unwrap()
            .rolling_update = Some(RollingUpdateStatefulSetStrategy {
            partition: Some(2),
            max_unavailable: None,
        });
        let part = [
            pod(&s, 0, "db-1", true),
            pod(&s, 1, "db-1", true),
            pod(&s, 2, "db-2", true),
        ];
        assert!(names(&plan(&s, &cur, &upd, 0, &part, t(10))).is_empty());
        let p = plan(&s, &cur, &upd, 0, &[pod(&s, 0, "db-1", true)], t(10));
        match &p.actions[0] {
            Action::Create(p) => assert_eq!(p.labels()[REVISION_LABEL], "db-1"),
            a => panic!("{a:?}"),
        }
        // maxUnavailable 2 (partition 0): two old pods go at once.
        s.spec
            .as_mut()
            .unwrap()
            .update_strategy
            .as_mut()
            .unwrap()
            .rolling_update = Some(RollingUpdateStatefulSetStrategy {
            partition: Some(0),
            max_unavailable: Some(IntOrString::Int(2)),
        });
        assert_eq!(
            names(&plan(&s, &cur, &upd, 0, &old, t(10))),
            ["delete db-2", "delete db-1"]
        );
        // OnDelete: nothing is replaced.
        s.spec.as_mut().unwrap().update_strategy = Some(StatefulSetUpdateStrategy {
            type_: Some("OnDelete".into()),
            rolling_update: None,
        });
        assert!(names(&plan(&s, &cur, &upd, 0, &old, t(10))).is_empty());
    }

    #[test]
    fn failed_pods_are_recreated_and_status_completes_the_rollout() {
        let s = set(2, "OrderedReady");
        let (cur, upd) = (v("db-1", "v1"), v("db-1", "v1"));
        let mut failed = pod(&s, 0, "db-1", false).as_ref().clone();
        failed.status.as_mut().unwrap().phase = Some("Failed".into());
        let p = plan(&s, &cur, &upd, 0, &[Arc::new(failed)], t(10));
        assert_eq!(names(&p), ["delete db-0", "create db-0"]);
        match &p.actions[0] {
            Action::Delete { reason, .. } => assert_eq!(*reason, "RecreatingFailedPod"),
            a => panic!("{a:?}"),
        }
        let ready = [pod(&s, 0, "db-1", true), pod(&s, 1, "db-1", true)];
        let mut st = plan(&s, &v("db-0", "v0"), &upd, 0, &ready, t(10)).status;
        assert_eq!(st.current_revision.as_deref(), Some("db-0"));
        complete_rolling_update(&s, &mut st);
        assert_eq!(st.current_revision.as_deref(), Some("db-1"));
        assert_eq!(st.current_replicas, Some(2));
    }

    #[test]
    fn retention_policy_sets_claim_owners() {
        let mut s = set(1, "OrderedReady");
        let p = pod(&s, 1, "r", true);
        assert!(
            claim_owner_refs(&s, &p, true, &[]).is_empty(),
            "Retain by default"
        );
        s.spec
            .as_mut()
            .unwrap()
            .persistent_volume_claim_retention_policy =
            Some(StatefulSetPersistentVolumeClaimRetentionPolicy {
                when_deleted: Some("Delete".into()),
                when_scaled: Some("Delete".into()),
            });
        let live = claim_owner_refs(&s, &p, false, &[]);
        assert_eq!(live.len(), 1);
        assert_eq!(live[0].kind, "StatefulSet");
        let scaled = claim_owner_refs(&s, &p, true, &live);
        assert_eq!(scaled.len(), 1);
        assert_eq!(
            (scaled[0].kind.as_str(), scaled[0].uid.as_str()),
            ("Pod", "pod-1")
        );
    }
}
