//! The Deployment controller (kube's `pkg/controller/deployment`): owns ReplicaSets named
//! `<deployment>-<pod-template-hash>`, rolls from old to new with RollingUpdate (maxSurge /
//! maxUnavailable) or Recreate, keeps revisions in `deployment.kubernetes.io/revision`, scales
//! proportionally, honours `paused`, cleans up beyond `revisionHistoryLimit`, and reports the
//! Progressing/Available conditions with kube's reasons — what `kubectl rollout` reads.
//! The arithmetic lives in [`crate::deployment_util`].

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentStatus, ReplicaSet, ReplicaSetSpec};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use serde_json::json;
use tracing::Instrument;

use crate::deployment_util::{self as du, HASH_LABEL};
use crate::events::{reference, Recorder};
use crate::informer::{Cache, Change};
use crate::podutil::{self, controller_of, labels, selector_matches};
use crate::queue::{run_workers, Queue, Requeue};
use crate::{is_already_exists, is_conflict, is_not_found, key, split_key, Clock, Informers};

/// Status fields a merge patch must null out when they became zero (omitted).
const DEPLOYMENT_STATUS_FIELDS: &[&str] = &[
    "replicas",
    "updatedReplicas",
    "readyReplicas",
    "availableReplicas",
    "unavailableReplicas",
    "observedGeneration",
    "conditions",
    "collisionCount",
];

#[derive(Debug, thiserror::Error)]
pub enum DeploymentError {
    #[error("deployment {key}: {what}: {source}")]
    Api {
        key: String,
        what: String,
        #[source]
        source: kube::Error,
    },
    #[error("deployment {key}: replicaset {rs} exists with another template (hash collision); collisionCount raised")]
    Collision { key: String, rs: String },
}

fn api_err(key: &str, what: impl Into<String>) -> impl FnOnce(kube::Error) -> DeploymentError + '_ {
    let what = what.into();
    move |source| DeploymentError::Api {
        key: key.to_string(),
        what,
        source,
    }
}

pub struct DeploymentController {
    client: Client,
    deployments: Arc<Cache<Deployment>>,
    rs: Arc<Cache<ReplicaSet>>,
    pods: Arc<Cache<Pod>>,
    queue: Arc<Queue>,
    clock: Clock,
    events: Recorder,
}

fn ns_of<K: kube::Resource>(o: &K) -> String {
    o.meta().namespace.clone().unwrap_or_default()
}

impl std::fmt::Debug for DeploymentController {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeploymentController")
            .finish_non_exhaustive()
    }
}

impl DeploymentController {
    pub fn register(
        informers: &Informers,
        client: Client,
        clock: Clock,
        events: Recorder,
    ) -> Arc<Self> {
        let c = Arc::new(Self {
            client,
            deployments: informers.deployments.cache(),
            rs: informers.replicasets.cache(),
            pods: informers.pods.cache(),
            queue: Queue::new(),
            clock,
            events,
        });
        let q = c.queue.clone();
        informers.deployments.add_handler(move |ch| {
            let d = match ch {
                Change::Added(d) | Change::Updated { new: d, .. } | Change::Deleted(d) => d,
            };
            q.add(key(&ns_of(d.as_ref()), &d.name_any()));
        });
        let weak = Arc::downgrade(&c);
        informers.replicasets.add_handler(move |ch| {
            let Some(c) = weak.upgrade() else { return };
            match ch {
                Change::Added(rs) | Change::Deleted(rs) => c.enqueue_for_rs(rs, true),
                Change::Updated { old, new } => {
                    if controller_of(&old.metadata) != controller_of(&new.metadata) {
                        c.enqueue_for_rs(old, false);
                    }
                    c.enqueue_for_rs(new, old.metadata.labels != new.metadata.labels);
                }
            }
        });
        let weak = Arc::downgrade(&c);
        informers.pods.add_handler(move |ch| {
            // Recreate waits for old pods to go: their deletion is news for the Deployment.
            if let (Some(c), Change::Deleted(pod)) = (weak.upgrade(), ch) {
                let ns = ns_of(pod.as_ref());
                if let Some(r) = controller_of(&pod.metadata).filter(|r| r.kind == "ReplicaSet") {
                    if let Some(rs) = c.rs.get(&ns, &r.name) {
                        c.enqueue_for_rs(&rs, false);
                    }
                }
            }
        });
        c
    }

    fn enqueue_for_rs(&self, rs: &ReplicaSet, orphan_lookup: bool) {
        let ns = ns_of(rs);
        if let Some(r) = controller_of(&rs.metadata) {
            if r.kind == "Deployment" {
                if let Some(d) = self.deployments.get(&ns, &r.name) {
                    if d.metadata.uid.as_deref() == Some(r.uid.as_str()) {
                        self.queue.add(key(&ns, &r.name));
                    }
                }
            }
            return;
        }
        if orphan_lookup {
            for d in self.deployments.list_namespace(&ns) {
                if d.spec
                    .as_ref()
                    .is_some_and(|s| selector_matches(&s.selector, labels(&rs.metadata)))
                {
                    self.queue.add(key(&ns, &d.name_any()));
                }
            }
        }
    }

    pub async fn run(self: Arc<Self>, workers: usize) {
        self.deployments.wait_synced().await;
        self.rs.wait_synced().await;
        self.pods.wait_synced().await;
        let q = self.queue.clone();
        run_workers(q, workers, "deployment", move |k| {
            let c = self.clone();
            async move {
                let span = tracing::debug_span!("sync_deployment", key = %k);
                c.sync(&k).instrument(span).await
            }
        })
        .await;
    }

    fn rs_api(&self, ns: &str) -> Api<ReplicaSet> {
        Api::namespaced(self.client.clone(), ns)
    }

    fn d_api(&self, ns: &str) -> Api<Deployment> {
        Api::namespaced(self.client.clone(), ns)
    }

    async fn sync(&self, k: &str) -> Result<Requeue, DeploymentError> {
        let (ns, name) = split_key(k);
        let Some(d) = self.deployments.get(ns, name) else {
            return Ok(Requeue::default());
        };
        let mut d = (*d).clone();
        let Some(spec) = d.spec.clone() else {
            return Ok(Requeue::default());
        };
        let everything = spec
            .selector
            .match_labels
            .as_ref()
            .is_none_or(|m| m.is_empty())
            && spec
                .selector
                .match_expressions
                .as_ref()
                .is_none_or(|m| m.is_empty());
        if everything {
            // kube refuses to act on a selector that selects every pod.
            tracing::warn!(deployment = %k, "selects all pods; a non-empty selector is required");
            return Ok(Requeue::default());
        }
        let mut sets = self.claim_replicasets(&d, k).await?;
        if d.metadata.deletion_timestamp.is_some() {
            self.sync_status(&d, k, &mut sets).await?;
            return Ok(Requeue::default());
        }
        self.check_paused_conditions(&mut d, k).await?;
        if spec.paused == Some(true) {
            return self.sync_scale(&d, k, &mut sets).await;
        }
        if self.is_scaling_event(&d, k, &mut sets).await? {
            return self.sync_scale(&d, k, &mut sets).await;
        }
        if du::is_rolling(&d) {
            self.rollout_rolling(&mut d, k, &mut sets).await
        } else {
            self.rollout_recreate(&mut d, k, &mut sets).await
        }
    }

    /// kube's getReplicaSetsForDeployment: adopt matching orphans, release owned sets that
    /// stopped matching, return the owned ones.
    async fn claim_replicasets(
        &self,
        d: &Deployment,
        k: &str,
    ) -> Result<Vec<ReplicaSet>, DeploymentError> {
        let ns = ns_of(d);
        let uid = d.metadata.uid.clone().unwrap_or_default();
        let selector = &d.spec.as_ref().expect("spec").selector;
        let deleting = d.metadata.deletion_timestamp.is_some();
        let mut owned = Vec::new();
        for rs in self.rs.list_namespace(&ns) {
            let matches = selector_matches(selector, labels(&rs.metadata));
            match controller_of(&rs.metadata) {
                Some(r) if r.uid != uid => {}
                Some(_) if matches || deleting => owned.push((*rs).clone()),
                Some(_) => {
                    let refs: Vec<_> = rs
                        .metadata
                        .owner_references
                        .iter()
                        .flatten()
                        .filter(|r| r.uid != uid)
                        .cloned()
                        .collect();
                    match self
                        .rs_api(&ns)
                        .patch(
                            &rs.name_any(),
                            &PatchParams::default(),
                            &Patch::Json::<()>(podutil::owner_patch(&rs.metadata, refs)),
                        )
                        .await
                    {
                        Ok(_) => {}
                        Err(e) if is_not_found(&e) => {}
                        Err(e) => {
                            return Err(api_err(
                                k,
                                format!("releasing replicaset {}", rs.name_any()),
                            )(e))
                        }
                    }
                }
                None if !matches || deleting || rs.metadata.deletion_timestamp.is_some() => {}
                None => {
                    let fresh = self
                        .d_api(&ns)
                        .get(&d.name_any())
                        .await
                        .map_err(api_err(k, "re-reading before adoption"))?;
                    if fresh.metadata.uid != d.metadata.uid
                        || fresh.metadata.deletion_timestamp.is_some()
                    {
                        continue;
                    }
                    let mut refs = rs.metadata.owner_references.clone().unwrap_or_default();
                    refs.push(podutil::controller_ref(
                        &d.metadata,
                        "apps/v1",
                        "Deployment",
                    ));
                    match self
                        .rs_api(&ns)
                        .patch(
                            &rs.name_any(),
                            &PatchParams::default(),
                            &Patch::Json::<()>(podutil::owner_patch(&rs.metadata, refs)),
                        )
                        .await
                    {
                        Ok(adopted) => owned.push(adopted),
                        Err(e) if is_not_found(&e) || is_conflict(&e) => {}
                        Err(kube::Error::Api(s)) if s.code == 422 => {}
                        Err(e) => {
                            return Err(api_err(
                                k,
                                format!("adopting replicaset {}", rs.name_any()),
                            )(e))
                        }
                    }
                }
            }
        }
        Ok(owned)
    }

    async fn check_paused_conditions(
        &self,
        d: &mut Deployment,
        k: &str,
    ) -> Result<(), DeploymentError> {
        if du::progress_deadline(d).is_none() {
            return Ok(());
        }
        let now = self.clock.now();
        let paused = d.spec.as_ref().and_then(|s| s.paused) == Some(true);
        let mut status = d.status.clone().unwrap_or_default();
        let reason = du::condition(&status, "Progressing").and_then(|c| c.reason.clone());
        let changed = if paused && reason.as_deref() != Some(du::PAUSED_REASON) {
            du::set_condition(
                &mut status,
                du::new_condition(
                    "Progressing",
                    "Unknown",
                    du::PAUSED_REASON,
                    "Deployment is paused".into(),
                    now,
                ),
            );
            true
        } else if !paused && reason.as_deref() == Some(du::PAUSED_REASON) {
            du::set_condition(
                &mut status,
                du::new_condition(
                    "Progressing",
                    "Unknown",
                    du::RESUMED_REASON,
                    "Deployment is resumed".into(),
                    now,
                ),
            );
            true
        } else {
            false
        };
        if changed {
            self.write_status(d, k, &status).await?;
            d.status = Some(status);
        }
        Ok(())
    }

    async fn write_status(
        &self,
        d: &Deployment,
        k: &str,
        status: &DeploymentStatus,
    ) -> Result<(), DeploymentError> {
        self.d_api(&ns_of(d))
            .patch_status(
                &d.name_any(),
                &PatchParams::default(),
                &Patch::Merge(podutil::status_patch(status, DEPLOYMENT_STATUS_FIELDS)),
            )
            .await
            .map_err(api_err(k, "updating status"))?;
        Ok(())
    }

    /// kube's isScalingEvent: an active set whose desired-replicas annotation differs.
    async fn is_scaling_event(
        &self,
        d: &Deployment,
        k: &str,
        sets: &mut Vec<ReplicaSet>,
    ) -> Result<bool, DeploymentError> {
        let (new_idx, _) = self.new_and_old(d, k, sets, false).await?;
        let _ = new_idx;
        let want = du::replicas(d).to_string();
        Ok(sets.iter().filter(|rs| du::rs_replicas(rs) > 0).any(|rs| {
            rs.metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(du::DESIRED_REPLICAS))
                .is_some_and(|v| *v != want)
        }))
    }

    /// kube's getAllReplicaSetsAndSyncRevision: finds (or creates) the new set, raises its
    /// revision above the old ones and records the revision on the Deployment. Returns the
    /// index of the new set in `sets`, if any.
    async fn new_and_old(
        &self,
        d: &Deployment,
        k: &str,
        sets: &mut Vec<ReplicaSet>,
        create: bool,
    ) -> Result<(Option<usize>, i64), DeploymentError> {
        let ns = ns_of(d);
        let template = d
            .spec
            .as_ref()
            .map(|s| s.template.clone())
            .unwrap_or_default();
        // The oldest set with an equal template is the new one (kube's FindNewReplicaSet).
        let mut order: Vec<usize> = (0..sets.len()).collect();
        order.sort_by(|&a, &b| created_order(&sets[a], &sets[b]));
        let new_idx = order.into_iter().find(|&i| {
            sets[i]
                .spec
                .as_ref()
                .and_then(|s| s.template.as_ref())
                .is_some_and(|t| du::equal_ignore_hash(t, &template))
        });
        let old_refs: Vec<&ReplicaSet> = sets
            .iter()
            .enumerate()
            .filter(|(i, _)| Some(*i) != new_idx)
            .map(|(_, rs)| rs)
            .collect();
        let new_revision = du::max_revision(&old_refs) + 1;
        let now = self.clock.now();
        let has_deadline = du::progress_deadline(d).is_some();
        if let Some(i) = new_idx {
            let mut rs = sets[i].clone();
            let min_ready = d.spec.as_ref().and_then(|s| s.min_ready_seconds);
            let annotations_changed = du::set_new_rs_annotations(d, &mut rs, new_revision, true);
            let rs_min_ready = rs.spec.as_ref().and_then(|s| s.min_ready_seconds);
            if annotations_changed || rs_min_ready.unwrap_or(0) != min_ready.unwrap_or(0) {
                rs.spec
                    .get_or_insert_with(Default::default)
                    .min_ready_seconds = min_ready;
                let updated = self
                    .rs_api(&ns)
                    .replace(&rs.name_any(), &PostParams::default(), &rs)
                    .await
                    .map_err(api_err(k, format!("updating replicaset {}", rs.name_any())))?;
                sets[i] = updated;
                return Ok((Some(i), new_revision));
            }
            let rev = sets[i]
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(du::REVISION))
                .cloned()
                .unwrap_or_default();
            self.set_deployment_revision(d, k, &rev).await?;
            if has_deadline
                && d.status
                    .as_ref()
                    .is_none_or(|s| du::condition(s, "Progressing").is_none())
            {
                let mut status = d.status.clone().unwrap_or_default();
                du::set_condition(
                    &mut status,
                    du::new_condition(
                        "Progressing",
                        "True",
                        du::FOUND_NEW_RS_REASON,
                        format!("Found new replica set {:?}", sets[i].name_any()),
                        now,
                    ),
                );
                self.write_status(d, k, &status).await?;
            }
            return Ok((Some(i), new_revision));
        }
        if !create {
            return Ok((None, new_revision));
        }
        let collision = d.status.as_ref().and_then(|s| s.collision_count);
        let hash = du::compute_hash(&template, collision);
        let mut new_template = template.clone();
        new_template
            .metadata
            .get_or_insert_with(Default::default)
            .labels
            .get_or_insert_with(Default::default)
            .insert(HASH_LABEL.into(), hash.clone());
        let mut selector = d.spec.as_ref().expect("spec").selector.clone();
        selector
            .match_labels
            .get_or_insert_with(Default::default)
            .insert(HASH_LABEL.into(), hash.clone());
        let mut rs = ReplicaSet {
            metadata: ObjectMeta {
                name: Some(format!("{}-{hash}", d.name_any())),
                namespace: Some(ns.clone()),
                owner_references: Some(vec![podutil::controller_ref(
                    &d.metadata,
                    "apps/v1",
                    "Deployment",
                )]),
                labels: new_template
                    .metadata
                    .as_ref()
                    .and_then(|m| m.labels.clone()),
                ..Default::default()
            },
            spec: Some(ReplicaSetSpec {
                replicas: Some(0),
                min_ready_seconds: d.spec.as_ref().and_then(|s| s.min_ready_seconds),
                selector,
                template: Some(new_template),
            }),
            status: None,
        };
        let all: Vec<&ReplicaSet> = sets.iter().chain(std::iter::once(&rs)).collect();
        let n = du::new_rs_new_replicas(d, &all, &rs);
        rs.spec.as_mut().expect("spec").replicas = Some(n);
        du::set_new_rs_annotations(d, &mut rs, new_revision, false);
        let created = match self.rs_api(&ns).create(&PostParams::default(), &rs).await {
            Ok(c) => {
                tracing::info!(deployment = %k, replicaset = %c.name_any(), replicas = n, "created new replica set");
                if n > 0 {
                    self.events.normal(
                        reference(d),
                        "ScalingReplicaSet",
                        format!("Scaled up replica set {} from 0 to {n}", c.name_any()),
                    );
                }
                if has_deadline {
                    let mut status = d.status.clone().unwrap_or_default();
                    du::set_condition(
                        &mut status,
                        du::new_condition(
                            "Progressing",
                            "True",
                            du::NEW_RS_REASON,
                            format!("Created new replica set {:?}", c.name_any()),
                            now,
                        ),
                    );
                    self.write_status(d, k, &status).await?;
                }
                c
            }
            Err(e) if is_already_exists(&e) => {
                let existing = self
                    .rs_api(&ns)
                    .get(&rs.name_any())
                    .await
                    .map_err(api_err(k, "reading existing replicaset"))?;
                let ours = controller_of(&existing.metadata)
                    .is_some_and(|r| Some(r.uid.as_str()) == d.metadata.uid.as_deref());
                let same = existing
                    .spec
                    .as_ref()
                    .and_then(|s| s.template.as_ref())
                    .is_some_and(|t| du::equal_ignore_hash(t, &template));
                if !(ours && same) {
                    let mut status = d.status.clone().unwrap_or_default();
                    status.collision_count = Some(status.collision_count.unwrap_or(0) + 1);
                    self.write_status(d, k, &status).await?;
                    return Err(DeploymentError::Collision {
                        key: k.to_string(),
                        rs: rs.name_any(),
                    });
                }
                existing
            }
            Err(e) => {
                if has_deadline {
                    let mut status = d.status.clone().unwrap_or_default();
                    du::set_condition(
                        &mut status,
                        du::new_condition(
                            "Progressing",
                            "False",
                            du::FAILED_RS_CREATE_REASON,
                            format!("Failed to create new replica set {:?}: {e}", rs.name_any()),
                            now,
                        ),
                    );
                    let _ = self.write_status(d, k, &status).await;
                }
                return Err(api_err(k, format!("creating replicaset {}", rs.name_any()))(e));
            }
        };
        self.set_deployment_revision(d, k, &new_revision.to_string())
            .await?;
        sets.push(created);
        Ok((Some(sets.len() - 1), new_revision))
    }

    async fn set_deployment_revision(
        &self,
        d: &Deployment,
        k: &str,
        rev: &str,
    ) -> Result<(), DeploymentError> {
        let cur = d
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(du::REVISION));
        if rev.is_empty() || cur.map(String::as_str) == Some(rev) {
            return Ok(());
        }
        self.d_api(&ns_of(d))
            .patch(
                &d.name_any(),
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"annotations": {du::REVISION: rev}}})),
            )
            .await
            .map_err(api_err(k, "recording the revision"))?;
        Ok(())
    }

    /// Scales one set (and refreshes its replica annotations); returns whether it wrote.
    async fn scale_rs(
        &self,
        d: &Deployment,
        k: &str,
        rs: &mut ReplicaSet,
        to: i32,
    ) -> Result<bool, DeploymentError> {
        let size_changed = du::rs_replicas(rs) != to;
        let mut copy = rs.clone();
        let ann_changed = du::set_replicas_annotations(
            &mut copy,
            du::replicas(d),
            du::replicas(d) + du::max_surge(d),
        );
        if !size_changed && !ann_changed {
            return Ok(false);
        }
        copy.spec.get_or_insert_with(Default::default).replicas = Some(to);
        let updated = self
            .rs_api(&ns_of(d))
            .replace(&copy.name_any(), &PostParams::default(), &copy)
            .await
            .map_err(api_err(
                k,
                format!("scaling replicaset {} to {to}", copy.name_any()),
            ))?;
        if size_changed {
            let from = du::rs_replicas(rs);
            let verb = if to > from { "up" } else { "down" };
            self.events.normal(
                reference(d),
                "ScalingReplicaSet",
                format!(
                    "Scaled {verb} replica set {} from {from} to {to}",
                    copy.name_any()
                ),
            );
            tracing::info!(deployment = %k, replicaset = %copy.name_any(), from = du::rs_replicas(rs), to, "scaled replica set");
        }
        *rs = updated;
        Ok(size_changed)
    }

    /// kube's sync(): scaling (proportional while a rollout is in flight) and cleanup, for
    /// paused deployments and scaling events.
    async fn sync_scale(
        &self,
        d: &Deployment,
        k: &str,
        sets: &mut Vec<ReplicaSet>,
    ) -> Result<Requeue, DeploymentError> {
        let (new_idx, _) = self.new_and_old(d, k, sets, false).await?;
        self.scale(d, k, sets, new_idx).await?;
        if d.spec.as_ref().and_then(|s| s.paused) == Some(true) {
            self.cleanup(d, k, sets, new_idx).await?;
        }
        self.sync_status(d, k, sets).await?;
        Ok(Requeue::default())
    }

    async fn scale(
        &self,
        d: &Deployment,
        k: &str,
        sets: &mut [ReplicaSet],
        new_idx: Option<usize>,
    ) -> Result<(), DeploymentError> {
        let want = du::replicas(d);
        let active: Vec<usize> = (0..sets.len())
            .filter(|&i| du::rs_replicas(&sets[i]) > 0)
            .collect();
        // kube's FindActiveOrLatest.
        let single = match active.len() {
            0 => new_idx
                .or_else(|| (0..sets.len()).max_by(|&a, &b| created_order(&sets[a], &sets[b]))),
            1 => Some(active[0]),
            _ => None,
        };
        if let Some(i) = single {
            self.scale_rs(d, k, &mut sets[i], want).await?;
            return Ok(());
        }
        if let Some(n) = new_idx {
            if du::is_saturated(d, &sets[n]) {
                for i in active.into_iter().filter(|&i| i != n) {
                    self.scale_rs(d, k, &mut sets[i], 0).await?;
                }
                return Ok(());
            }
        }
        if du::is_rolling(d) {
            let refs: Vec<&ReplicaSet> = active.iter().map(|&i| &sets[i]).collect();
            let plan = du::proportional_scale(d, &refs);
            for (j, to) in plan {
                let i = active[j];
                self.scale_rs(d, k, &mut sets[i], to).await?;
            }
        }
        Ok(())
    }

    async fn rollout_rolling(
        &self,
        d: &mut Deployment,
        k: &str,
        sets: &mut Vec<ReplicaSet>,
    ) -> Result<Requeue, DeploymentError> {
        let (new_idx, _) = self.new_and_old(d, k, sets, true).await?;
        let n = new_idx.expect("created");
        // reconcileNewReplicaSet
        let want = du::replicas(d);
        let cur = du::rs_replicas(&sets[n]);
        let scaled_up = if cur > want {
            self.scale_rs(d, k, &mut sets[n], want).await?
        } else if cur < want {
            let all: Vec<&ReplicaSet> = sets.iter().collect();
            let to = du::new_rs_new_replicas(d, &all, &sets[n]);
            self.scale_rs(d, k, &mut sets[n], to).await?
        } else {
            false
        };
        if scaled_up {
            return self.sync_rollout_status(d, k, sets, Some(n)).await;
        }
        if self.reconcile_old(d, k, sets, n).await? {
            return self.sync_rollout_status(d, k, sets, Some(n)).await;
        }
        let status = calculate_status(d, sets, Some(n), self.clock.now());
        if du::deployment_complete(d, &status) {
            self.cleanup(d, k, sets, Some(n)).await?;
        }
        self.sync_rollout_status(d, k, sets, Some(n)).await
    }

    /// kube's reconcileOldReplicaSets: scale old sets down as far as maxUnavailable allows,
    /// unhealthy replicas first.
    async fn reconcile_old(
        &self,
        d: &Deployment,
        k: &str,
        sets: &mut [ReplicaSet],
        n: usize,
    ) -> Result<bool, DeploymentError> {
        let old_count: i32 = (0..sets.len())
            .filter(|&i| i != n)
            .map(|i| du::rs_replicas(&sets[i]))
            .sum();
        if old_count == 0 {
            return Ok(false);
        }
        let all_count: i32 = sets.iter().map(du::rs_replicas).sum();
        let min_available = du::replicas(d) - du::max_unavailable(d);
        let new_unavailable = du::rs_replicas(&sets[n]) - du::rs_available(&sets[n]);
        let max_scaled_down = all_count - min_available - new_unavailable;
        if max_scaled_down <= 0 {
            return Ok(false);
        }
        let mut old: Vec<usize> = (0..sets.len()).filter(|&i| i != n).collect();
        old.sort_by(|&a, &b| created_order(&sets[a], &sets[b]));
        // cleanupUnhealthyReplicas
        let mut cleaned = 0;
        for &i in &old {
            if cleaned >= max_scaled_down {
                break;
            }
            let (r, a) = (du::rs_replicas(&sets[i]), du::rs_available(&sets[i]));
            if r == 0 || r == a {
                continue;
            }
            let down = (max_scaled_down - cleaned).min(r - a);
            self.scale_rs(d, k, &mut sets[i], r - down).await?;
            cleaned += down;
        }
        // scaleDownOldReplicaSetsForRollingUpdate
        // Stricter than kube: a set's pods beyond its (just lowered) replica count are about to
        // be deleted, so a status that still counts them must not allow a further scale-down.
        let available: i32 = sets
            .iter()
            .map(|rs| du::rs_available(rs).min(du::rs_replicas(rs)))
            .sum();
        let mut scaled = 0;
        if available > min_available {
            let total = available - min_available;
            for &i in &old {
                if scaled >= total {
                    break;
                }
                let r = du::rs_replicas(&sets[i]);
                if r == 0 {
                    continue;
                }
                let down = r.min(total - scaled);
                self.scale_rs(d, k, &mut sets[i], r - down).await?;
                scaled += down;
            }
        }
        Ok(cleaned + scaled > 0)
    }

    async fn rollout_recreate(
        &self,
        d: &mut Deployment,
        k: &str,
        sets: &mut Vec<ReplicaSet>,
    ) -> Result<Requeue, DeploymentError> {
        let (mut new_idx, _) = self.new_and_old(d, k, sets, false).await?;
        let mut scaled_down = false;
        for (i, rs) in sets.iter_mut().enumerate() {
            if Some(i) != new_idx && du::rs_replicas(rs) > 0 {
                scaled_down |= self.scale_rs(d, k, rs, 0).await?;
            }
        }
        if scaled_down {
            return self.sync_rollout_status(d, k, sets, new_idx).await;
        }
        if self.old_pods_running(sets, new_idx) {
            return self.sync_rollout_status(d, k, sets, new_idx).await;
        }
        if new_idx.is_none() {
            new_idx = self.new_and_old(d, k, sets, true).await?.0;
        }
        let n = new_idx.expect("created");
        self.scale_rs(d, k, &mut sets[n], du::replicas(d)).await?;
        let status = calculate_status(d, sets, Some(n), self.clock.now());
        if du::deployment_complete(d, &status) {
            self.cleanup(d, k, sets, Some(n)).await?;
        }
        self.sync_rollout_status(d, k, sets, Some(n)).await
    }

    /// kube's oldPodsRunning: old sets still report pods, or pods of them are not finished.
    fn old_pods_running(&self, sets: &[ReplicaSet], new_idx: Option<usize>) -> bool {
        let old: Vec<&ReplicaSet> = sets
            .iter()
            .enumerate()
            .filter(|(i, _)| Some(*i) != new_idx)
            .map(|(_, rs)| rs)
            .collect();
        if old
            .iter()
            .any(|rs| rs.status.as_ref().is_some_and(|s| s.replicas > 0))
        {
            return true;
        }
        let uids: Vec<String> = old
            .iter()
            .filter_map(|rs| rs.metadata.uid.clone())
            .collect();
        let ns = sets.first().map(ns_of).unwrap_or_default();
        self.pods.list_namespace(&ns).iter().any(|p| {
            controller_of(&p.metadata).is_some_and(|r| uids.contains(&r.uid))
                && !matches!(
                    p.status.as_ref().and_then(|s| s.phase.as_deref()),
                    Some("Succeeded") | Some("Failed")
                )
        })
    }

    /// kube's cleanupDeployment: deletes the oldest empty sets beyond revisionHistoryLimit.
    async fn cleanup(
        &self,
        d: &Deployment,
        k: &str,
        sets: &[ReplicaSet],
        new_idx: Option<usize>,
    ) -> Result<(), DeploymentError> {
        let Some(limit) = d.spec.as_ref().and_then(|s| s.revision_history_limit) else {
            return Ok(());
        };
        let mut old: Vec<&ReplicaSet> = sets
            .iter()
            .enumerate()
            .filter(|(i, rs)| Some(*i) != new_idx && rs.metadata.deletion_timestamp.is_none())
            .map(|(_, rs)| rs)
            .collect();
        let diff = old.len() as i64 - i64::from(limit);
        if diff <= 0 {
            return Ok(());
        }
        old.sort_by(|a, b| {
            du::revision(a)
                .cmp(&du::revision(b))
                .then(created_order(a, b))
        });
        for rs in old.into_iter().take(diff as usize) {
            let busy = rs.status.as_ref().is_some_and(|s| s.replicas != 0)
                || du::rs_replicas(rs) != 0
                || rs.metadata.generation > rs.status.as_ref().and_then(|s| s.observed_generation);
            if busy {
                continue;
            }
            tracing::info!(deployment = %k, replicaset = %rs.name_any(), "deleting old replica set beyond the history limit");
            match self
                .rs_api(&ns_of(d))
                .delete(&rs.name_any(), &DeleteParams::default())
                .await
            {
                Ok(_) => {}
                Err(e) if is_not_found(&e) => {}
                Err(e) => {
                    return Err(api_err(k, format!("deleting replicaset {}", rs.name_any()))(e))
                }
            }
        }
        Ok(())
    }

    async fn sync_status(
        &self,
        d: &Deployment,
        k: &str,
        sets: &mut Vec<ReplicaSet>,
    ) -> Result<(), DeploymentError> {
        let (new_idx, _) = self.new_and_old(d, k, sets, false).await?;
        let status = calculate_status(d, sets, new_idx, self.clock.now());
        if d.status.as_ref() != Some(&status) {
            self.write_status(d, k, &status).await?;
        }
        Ok(())
    }

    /// kube's syncRolloutStatus: status plus the Progressing condition; asks to be looked at
    /// again when the progress deadline would pass.
    async fn sync_rollout_status(
        &self,
        d: &Deployment,
        k: &str,
        sets: &[ReplicaSet],
        new_idx: Option<usize>,
    ) -> Result<Requeue, DeploymentError> {
        let now = self.clock.now();
        let mut status = calculate_status(d, sets, new_idx, now);
        let new_name = new_idx.map(|i| sets[i].name_any()).unwrap_or_default();
        match du::progress_deadline(d) {
            None => du::remove_condition(&mut status, "Progressing"),
            Some(_) => {
                let cur = du::condition(&status, "Progressing").cloned();
                let complete_already = status.replicas == status.updated_replicas
                    && cur.as_ref().and_then(|c| c.reason.as_deref())
                        == Some(du::NEW_RS_AVAILABLE_REASON);
                if !complete_already {
                    if du::deployment_complete(d, &status) {
                        du::set_condition(
                            &mut status,
                            du::new_condition(
                                "Progressing",
                                "True",
                                du::NEW_RS_AVAILABLE_REASON,
                                format!("ReplicaSet {new_name:?} has successfully progressed."),
                                now,
                            ),
                        );
                    } else if du::deployment_progressing(d, &status) {
                        let mut c = du::new_condition(
                            "Progressing",
                            "True",
                            du::RS_UPDATED_REASON,
                            format!("ReplicaSet {new_name:?} is progressing."),
                            now,
                        );
                        if let Some(cur) = cur.as_ref().filter(|c| c.status == "True") {
                            c.last_transition_time = cur.last_transition_time.clone();
                        }
                        // Progress refreshes lastUpdateTime even with the same reason.
                        du::remove_condition(&mut status, "Progressing");
                        du::set_condition(&mut status, c);
                    } else if du::deployment_timed_out(d, &status, now) {
                        du::set_condition(
                            &mut status,
                            du::new_condition(
                                "Progressing",
                                "False",
                                du::TIMED_OUT_REASON,
                                format!("ReplicaSet {new_name:?} has timed out progressing."),
                                now,
                            ),
                        );
                    }
                }
            }
        }
        if d.status.as_ref() != Some(&status) {
            self.write_status(d, k, &status).await?;
        }
        Ok(Requeue(requeue_stuck(d, &status, now)))
    }
}

/// kube's requeueStuckDeployment: when to look again for the progress deadline to pass.
fn requeue_stuck(
    d: &Deployment,
    s: &DeploymentStatus,
    now: chrono::DateTime<chrono::Utc>,
) -> Option<Duration> {
    let deadline = du::progress_deadline(d)?;
    let c = du::condition(s, "Progressing")?;
    if du::deployment_complete(d, s) || c.reason.as_deref() == Some(du::TIMED_OUT_REASON) {
        return None;
    }
    let last = c.last_update_time.as_ref()?.0;
    let after = last + chrono::Duration::seconds(deadline.into()) - now;
    Some(crate::secs(after.num_seconds() + 1))
}

/// Oldest first, by creation time then name (kube's ReplicaSetsByCreationTimestamp).
fn created_order(a: &ReplicaSet, b: &ReplicaSet) -> std::cmp::Ordering {
    let t = |rs: &ReplicaSet| rs.metadata.creation_timestamp.as_ref().map(|t| t.0);
    t(a).cmp(&t(b)).then(a.metadata.name.cmp(&b.metadata.name))
}

/// kube's calculateStatus.
pub fn calculate_status(
    d: &Deployment,
    sets: &[ReplicaSet],
    new_idx: Option<usize>,
    now: chrono::DateTime<chrono::Utc>,
) -> DeploymentStatus {
    let available: i32 = sets.iter().map(du::rs_available).sum();
    let total: i32 = sets
        .iter()
        .map(|rs| rs.status.as_ref().map_or(0, |s| s.replicas))
        .sum();
    let ready: i32 = sets
        .iter()
        .map(|rs| {
            rs.status
                .as_ref()
                .and_then(|s| s.ready_replicas)
                .unwrap_or(0)
        })
        .sum();
    let updated = new_idx
        .and_then(|i| sets[i].status.as_ref())
        .map_or(0, |s| s.replicas);
    let unavailable = (du::replicas(d) - available).max(0);
    let old = d.status.clone().unwrap_or_default();
    let mut s = DeploymentStatus {
        observed_generation: d.metadata.generation,
        replicas: Some(total),
        updated_replicas: Some(updated),
        ready_replicas: Some(ready),
        available_replicas: Some(available),
        unavailable_replicas: Some(unavailable),
        collision_count: old.collision_count,
        conditions: old.conditions.clone(),
    };
    if available >= du::replicas(d) - du::max_unavailable(d) {
        du::set_condition(
            &mut s,
            du::new_condition(
                "Available",
                "True",
                du::MIN_AVAILABLE_REASON,
                "Deployment has minimum availability.".into(),
                now,
            ),
        );
    } else {
        du::set_condition(
            &mut s,
            du::new_condition(
                "Available",
                "False",
                du::MIN_UNAVAILABLE_REASON,
                "Deployment does not have minimum availability.".into(),
                now,
            ),
        );
    }
    // Zeros are omitted on the wire (omitempty), so compare like with like.
    for f in [
        &mut s.replicas,
        &mut s.updated_replicas,
        &mut s.ready_replicas,
        &mut s.available_replicas,
        &mut s.unavailable_replicas,
    ] {
        if *f == Some(0) {
            *f = None;
        }
    }
    s
}
