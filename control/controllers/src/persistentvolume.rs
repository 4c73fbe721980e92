//! The PersistentVolume binder (kube's `pkg/controller/volume/persistentvolume`,
//! `persistentvolume-binder` in --controllers): binds each pending claim to the best Available
//! volume (its class, volume mode, access modes, selector, a volume pre-bound to it by
//! claimRef first, otherwise the smallest one big enough), hands claims no volume fits to their
//! class's provisioner (`volume.kubernetes.io/storage-provisioner`), and reclaims volumes whose
//! claim is gone: Retain leaves them Released, Delete deletes them (a provisioned volume is
//! deleted by its provisioner, which also removes its data).
//!
//! Claims of WaitForFirstConsumer classes wait until the scheduler has put a pod using them on
//! a node (`volume.kubernetes.io/selected-node`); then only volumes usable on that node match
//! (kube's scheduler binds those itself; here the binder does, with the node the scheduler
//! chose, which keeps the scheduler's part to one annotation).
//!
//! Binding, as kube writes it: the volume's `spec.claimRef` (annotated
//! `pv.kubernetes.io/bound-by-controller` when the controller chose it), the volume Bound, the
//! claim's `spec.volumeName` (annotated `pv.kubernetes.io/bind-completed`, and bound-by-controller
//! when chosen), the claim Bound with the volume's capacity and access modes. Each step is a
//! compare-and-swap write or a status patch, and every one is redone on the next sync if it
//! failed, so a crash half-way is finished later. Claims and volumes are synced on every change
//! and every 15 s (kube's resync).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, ObjectReference, PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use serde_json::json;
use tracing::Instrument;

use crate::events::{reference, Recorder};
use crate::informer::{Cache, Change};
use crate::queue::{run_workers, Queue, Requeue};
use crate::volumeutil::{self as vu, ANN_BIND_COMPLETED, ANN_BOUND_BY_CONTROLLER};
use crate::{is_not_found, key, split_key, Clock, Informers};

/// How often every claim and volume is looked at again (kube's --pvclaimbinder-sync-period).
pub const RESYNC: Duration = Duration::from_secs(15);
/// The provisioner of classes whose volumes are made by hand.
pub const NO_PROVISIONER: &str = "kubernetes.io/no-provisioner";

#[derive(Debug, thiserror::Error)]
pub enum BinderError {
    #[error("{what} {name}: {source}")]
    Api {
        what: &'static str,
        name: String,
        #[source]
        source: kube::Error,
    },
}

fn api_err<'a>(what: &'static str, name: &'a str) -> impl FnOnce(kube::Error) -> BinderError + 'a {
    move |source| BinderError::Api {
        what,
        name: name.to_string(),
        source,
    }
}

pub struct PersistentVolumeController {
    client: Client,
    clock: Clock,
    recorder: Recorder,
    claims: Arc<Cache<PersistentVolumeClaim>>,
    volumes: Arc<Cache<PersistentVolume>>,
    classes: Arc<Cache<StorageClass>>,
    nodes: Arc<Cache<Node>>,
    claim_queue: Arc<Queue>,
    volume_queue: Arc<Queue>,
    /// Objects this controller wrote and the watch has not delivered yet (kube's assume
    /// cache): later syncs read these instead of the older cached copies.
    assumed_volumes: Arc<Mutex<HashMap<String, Arc<PersistentVolume>>>>,
    assumed_claims: Arc<Mutex<HashMap<String, Arc<PersistentVolumeClaim>>>>,
    /// (uid, reason) of the claim events already recorded, so a resync does not repeat them.
    told: Mutex<HashSet<(String, &'static str)>>,
}

impl std::fmt::Debug for PersistentVolumeController {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PersistentVolumeController")
            .finish_non_exhaustive()
    }
}

fn rv(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> u64 {
    meta.resource_version
        .as_deref()
        .and_then(|r| r.parse().ok())
        .unwrap_or(0)
}

/// The newer of the cached and the assumed copy (by resourceVersion).
fn newer<K: kube::Resource>(cached: Option<Arc<K>>, assumed: Option<Arc<K>>) -> Option<Arc<K>> {
    match (cached, assumed) {
        (Some(c), Some(a)) if rv(a.meta()) > rv(c.meta()) => Some(a),
        (Some(c), _) => Some(c),
        (None, a) => a,
    }
}

fn phase_of_volume(pv: &PersistentVolume) -> &str {
    pv.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

fn phase_of_claim(c: &PersistentVolumeClaim) -> &str {
    c.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

fn volume_name(c: &PersistentVolumeClaim) -> &str {
    c.spec
        .as_ref()
        .and_then(|s| s.volume_name.as_deref())
        .unwrap_or("")
}

fn claim_ref(pv: &PersistentVolume) -> Option<&ObjectReference> {
    pv.spec.as_ref().and_then(|s| s.claim_ref.as_ref())
}

/// The claimRef a bound volume carries.
fn reference_to(claim: &PersistentVolumeClaim) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("PersistentVolumeClaim".into()),
        namespace: claim.metadata.namespace.clone(),
        name: claim.metadata.name.clone(),
        uid: claim.metadata.uid.clone(),
        resource_version: claim.metadata.resource_version.clone(),
        field_path: None,
    }
}

/// Whether an annotation names an in-tree plugin (kube deletes those volumes itself).
fn in_tree(provisioner: &str) -> bool {
    provisioner.starts_with("kubernetes.io/")
}

impl PersistentVolumeController {
    pub fn register(
        informers: &Informers,
        client: Client,
        clock: Clock,
        recorder: Recorder,
    ) -> Arc<Self> {
        let c = Arc::new(Self {
            client,
            clock,
            recorder,
            claims: informers.persistentvolumeclaims.cache(),
            volumes: informers.persistentvolumes.cache(),
            classes: informers.storageclasses.cache(),
            nodes: informers.nodes.cache(),
            claim_queue: Queue::new(),
            volume_queue: Queue::new(),
            assumed_volumes: Arc::new(Mutex::new(HashMap::new())),
            assumed_claims: Arc::new(Mutex::new(HashMap::new())),
            told: Mutex::new(HashSet::new()),
        });
        let (cq, vq) = (c.claim_queue.clone(), c.volume_queue.clone());
        let assumed = c.assumed_claims.clone();
        informers
            .persistentvolumeclaims
            .add_handler(move |ch| match ch {
                Change::Added(claim) | Change::Updated { new: claim, .. } => {
                    cq.add(key(
                        &claim.namespace().unwrap_or_default(),
                        &claim.name_any(),
                    ));
                }
                Change::Deleted(claim) => {
                    // What this controller wrote to it went with it.
                    assumed.lock().expect("assume lock").remove(&key(
                        &claim.namespace().unwrap_or_default(),
                        &claim.name_any(),
                    ));
                    // The volume it was bound to is released.
                    let name = volume_name(claim);
                    if !name.is_empty() {
                        vq.add(name.to_string());
                    }
                }
            });
        let (cq, vq) = (c.claim_queue.clone(), c.volume_queue.clone());
        let claims = c.claims.clone();
        let assumed = c.assumed_volumes.clone();
        informers.persistentvolumes.add_handler(move |ch| {
            let pv = match ch {
                Change::Added(pv) | Change::Updated { new: pv, .. } => pv,
                Change::Deleted(pv) => {
                    assumed.lock().expect("assume lock").remove(&pv.name_any());
                    pv
                }
            };
            vq.add(pv.name_any());
            if let Some(r) = claim_ref(pv) {
                cq.add(key(
                    r.namespace.as_deref().unwrap_or(""),
                    r.name.as_deref().unwrap_or(""),
                ));
            }
            // A new volume may fit a claim that is waiting.
            if matches!(ch, Change::Added(_)) {
                for claim in claims.list() {
                    if volume_name(&claim).is_empty() {
                        cq.add(key(
                            &claim.namespace().unwrap_or_default(),
                            &claim.name_any(),
                        ));
                    }
                }
            }
        });
        let cq = c.claim_queue.clone();
        let claims = c.claims.clone();
        informers.storageclasses.add_handler(move |ch| {
            if let Change::Added(class) | Change::Updated { new: class, .. } = ch {
                for claim in claims.list() {
                    if volume_name(&claim).is_empty() && vu::claim_class(&claim) == class.name_any()
                    {
                        cq.add(key(
                            &claim.namespace().unwrap_or_default(),
                            &claim.name_any(),
                        ));
                    }
                }
            }
        });
        // Node labels are read from the cache (for selected nodes' affinity checks).
        informers.nodes.add_handler(|_| {});
        c
    }

    pub async fn run(self: Arc<Self>) {
        self.claims.wait_synced().await;
        self.volumes.wait_synced().await;
        self.classes.wait_synced().await;
        self.nodes.wait_synced().await;
        let resync = {
            let c = self.clone();
            async move {
                loop {
                    tokio::time::sleep(RESYNC).await;
                    c.forget_seen();
                    for claim in c.claims.list() {
                        c.claim_queue.add(key(
                            &claim.namespace().unwrap_or_default(),
                            &claim.name_any(),
                        ));
                    }
                    for pv in c.volumes.list() {
                        c.volume_queue.add(pv.name_any());
                    }
                }
            }
        };
        let (cq, vq) = (self.claim_queue.clone(), self.volume_queue.clone());
        let claims = {
            let c = self.clone();
            // One worker per queue, as kube's binder: two claims never race for one volume.
            run_workers(cq, 1, "persistentvolume-binder", move |k| {
                let c = c.clone();
                async move {
                    let span = tracing::debug_span!("sync_claim", key = %k);
                    c.sync_claim(&k).instrument(span).await
                }
            })
        };
        let volumes = {
            let c = self.clone();
            run_workers(vq, 1, "persistentvolume-binder", move |k| {
                let c = c.clone();
                async move {
                    let span = tracing::debug_span!("sync_volume", name = %k);
                    c.sync_volume(&k).instrument(span).await
                }
            })
        };
        tokio::join!(resync, claims, volumes);
    }

    /// Drops assumed objects the watch has caught up with.
    fn forget_seen(&self) {
        self.assumed_volumes
            .lock()
            .expect("assume lock")
            .retain(|name, a| {
                self.volumes
                    .get("", name)
                    .is_none_or(|c| rv(&c.metadata) < rv(&a.metadata))
            });
        self.assumed_claims
            .lock()
            .expect("assume lock")
            .retain(|k, a| {
                let (ns, name) = split_key(k);
                self.claims
                    .get(ns, name)
                    .is_none_or(|c| rv(&c.metadata) < rv(&a.metadata))
            });
    }

    fn volume(&self, name: &str) -> Option<Arc<PersistentVolume>> {
        let assumed = self
            .assumed_volumes
            .lock()
            .expect("assume lock")
            .get(name)
            .cloned();
        newer(self.volumes.get("", name), assumed)
    }

    fn claim(&self, ns: &str, name: &str) -> Option<Arc<PersistentVolumeClaim>> {
        let assumed = self
            .assumed_claims
            .lock()
            .expect("assume lock")
            .get(&key(ns, name))
            .cloned();
        newer(self.claims.get(ns, name), assumed)
    }

    fn all_volumes(&self) -> Vec<Arc<PersistentVolume>> {
        let mut out: BTreeMap<String, Arc<PersistentVolume>> = self
            .volumes
            .list()
            .into_iter()
            .map(|v| (v.name_any(), v))
            .collect();
        for (name, a) in self.assumed_volumes.lock().expect("assume lock").iter() {
            if let Some(c) = out.get(name) {
                if rv(&a.metadata) > rv(&c.metadata) {
                    out.insert(name.clone(), a.clone());
                }
            }
        }
        out.into_values().collect()
    }

    fn assume_volume(&self, pv: PersistentVolume) -> Arc<PersistentVolume> {
        let pv = Arc::new(pv);
        self.assumed_volumes
            .lock()
            .expect("assume lock")
            .insert(pv.name_any(), pv.clone());
        pv
    }

    fn assume_claim(&self, claim: PersistentVolumeClaim) -> Arc<PersistentVolumeClaim> {
        let claim = Arc::new(claim);
        self.assumed_claims.lock().expect("assume lock").insert(
            key(&claim.namespace().unwrap_or_default(), &claim.name_any()),
            claim.clone(),
        );
        claim
    }

    /// Records a claim event once per claim and reason.
    fn tell_once(
        &self,
        claim: &PersistentVolumeClaim,
        warning: bool,
        reason: &'static str,
        msg: String,
    ) {
        let uid = claim.metadata.uid.clone().unwrap_or_default();
        if !self.told.lock().expect("told lock").insert((uid, reason)) {
            return;
        }
        if warning {
            self.recorder.warning(reference(claim), reason, msg);
        } else {
            self.recorder.normal(reference(claim), reason, msg);
        }
    }

    fn claims_api(&self, ns: &str) -> Api<PersistentVolumeClaim> {
        Api::namespaced(self.client.clone(), ns)
    }

    fn volumes_api(&self) -> Api<PersistentVolume> {
        Api::all(self.client.clone())
    }

    async fn sync_claim(&self, k: &str) -> Result<Requeue, BinderError> {
        let (ns, name) = split_key(k);
        let Some(claim) = self.claim(ns, name) else {
            return Ok(Requeue::default());
        };
        if claim
            .metadata
            .annotations
            .as_ref()
            .is_some_and(|a| a.contains_key(ANN_BIND_COMPLETED))
        {
            self.sync_bound_claim(&claim).await
        } else {
            self.sync_unbound_claim(&claim).await
        }
    }

    async fn sync_unbound_claim(
        &self,
        claim: &PersistentVolumeClaim,
    ) -> Result<Requeue, BinderError> {
        let requested = volume_name(claim);
        if !requested.is_empty() {
            // The user named the volume.
            let Some(pv) = self.volume(requested) else {
                self.ensure_claim_phase(claim, "Pending").await?;
                return Ok(Requeue::default());
            };
            match claim_ref(&pv) {
                Some(_) if !vu::is_prebound_to(&pv, claim) => {
                    self.tell_once(
                        claim,
                        true,
                        "FailedBinding",
                        format!("volume {requested:?} already bound to a different claim."),
                    );
                    self.ensure_claim_phase(claim, "Pending").await?;
                }
                _ => {
                    let fits = vu::volume_capacity(&pv) >= vu::claim_request(claim);
                    match vu::mismatch(&pv, claim, None).or((!fits).then_some("too small")) {
                        Some(why) => {
                            self.tell_once(
                                claim,
                                true,
                                "VolumeMismatch",
                                format!("Cannot bind to requested volume {requested:?}: {why}"),
                            );
                            self.ensure_claim_phase(claim, "Pending").await?;
                        }
                        None => self.bind(&pv, claim).await?,
                    }
                }
            }
            return Ok(Requeue::default());
        }
        let class_name = vu::claim_class(claim);
        let class = (!class_name.is_empty())
            .then(|| self.classes.get("", &class_name))
            .flatten();
        let delayed = vu::is_wait_for_first_consumer(class.as_deref());
        let selected = vu::claim_annotation(claim, vu::ANN_SELECTED_NODE).map(str::to_string);
        if delayed && selected.is_none() {
            self.tell_once(
                claim,
                false,
                "WaitForFirstConsumer",
                "waiting for first consumer to be created before binding".into(),
            );
            self.ensure_claim_phase(claim, "Pending").await?;
            return Ok(Requeue::default());
        }
        let node = selected.as_deref().map(|n| {
            let node = self.nodes.get("", n);
            (n.to_string(), vu::node_labels(n, node.as_deref()))
        });
        let volumes = self.all_volumes();
        let found = vu::best_match(
            volumes.iter().map(|v| v.as_ref()),
            claim,
            node.as_ref().map(|(n, l)| (n.as_str(), l)),
        )
        .cloned();
        if let Some(pv) = found {
            self.bind(&pv, claim).await?;
            return Ok(Requeue::default());
        }
        match (class_name.is_empty(), class) {
            (true, _) => self.tell_once(
                claim,
                false,
                "FailedBinding",
                "no persistent volumes available for this claim and no storage class is set".into(),
            ),
            (false, None) => self.tell_once(
                claim,
                true,
                "ProvisioningFailed",
                format!("storageclass.storage.k8s.io {class_name:?} not found"),
            ),
            (false, Some(class)) if class.provisioner == NO_PROVISIONER => self.tell_once(
                claim,
                false,
                "FailedBinding",
                format!("no persistent volumes available for this claim and storage class {class_name:?} does not provision"),
            ),
            (false, Some(class)) => self.hand_to_provisioner(claim, &class.provisioner).await?,
        }
        self.ensure_claim_phase(claim, "Pending").await?;
        Ok(Requeue::default())
    }

    /// Marks the claim for its class's (external) provisioner, as kube's binder does.
    async fn hand_to_provisioner(
        &self,
        claim: &PersistentVolumeClaim,
        provisioner: &str,
    ) -> Result<(), BinderError> {
        if vu::claim_annotation(claim, vu::ANN_STORAGE_PROVISIONER) != Some(provisioner) {
            let patch = json!({"metadata": {"annotations": {
                vu::ANN_STORAGE_PROVISIONER: provisioner,
                vu::ANN_BETA_STORAGE_PROVISIONER: provisioner,
            }}});
            let ns = claim.namespace().unwrap_or_default();
            let updated = self
                .claims_api(&ns)
                .patch(
                    &claim.name_any(),
                    &PatchParams::default(),
                    &Patch::Merge(patch),
                )
                .await
                .map_err(api_err("annotating claim", &claim.name_any()))?;
            self.assume_claim(updated);
        }
        self.tell_once(
            claim,
            false,
            "ExternalProvisioning",
            format!("Waiting for a volume to be created either by the external provisioner '{provisioner}' or manually by the system administrator. If volume creation is delayed, please verify that the provisioner is running and correctly registered."),
        );
        Ok(())
    }

    async fn sync_bound_claim(
        &self,
        claim: &PersistentVolumeClaim,
    ) -> Result<Requeue, BinderError> {
        let name = volume_name(claim);
        if name.is_empty() {
            self.tell_once(
                claim,
                true,
                "ClaimLost",
                "Bound claim has lost reference to PersistentVolume. Data on the volume is lost!"
                    .into(),
            );
            self.ensure_claim_phase(claim, "Lost").await?;
            return Ok(Requeue::default());
        }
        let Some(pv) = self.volume(name) else {
            self.tell_once(
                claim,
                true,
                "ClaimLost",
                "Bound claim has lost its PersistentVolume. Data on the volume is lost!".into(),
            );
            self.ensure_claim_phase(claim, "Lost").await?;
            return Ok(Requeue::default());
        };
        match claim_ref(&pv) {
            None => self.bind(&pv, claim).await?,
            Some(r) if r.uid.as_deref() == claim.metadata.uid.as_deref() => {
                self.bind(&pv, claim).await?
            }
            Some(_) => {
                self.tell_once(
                    claim,
                    true,
                    "ClaimMisbound",
                    "Two claims are bound to the same volume, this one is bound incorrectly".into(),
                );
                self.ensure_claim_phase(claim, "Lost").await?;
            }
        }
        Ok(Requeue::default())
    }

    /// Binds (or finishes binding) `pv` and `claim`; each write is skipped when already done.
    async fn bind(
        &self,
        pv: &PersistentVolume,
        claim: &PersistentVolumeClaim,
    ) -> Result<(), BinderError> {
        let pv_name = pv.name_any();
        let claim_name = claim.name_any();
        let ns = claim.namespace().unwrap_or_default();
        // 1. The volume's claimRef.
        let mut pv = pv.clone();
        let uid_matches =
            claim_ref(&pv).and_then(|r| r.uid.as_deref()) == claim.metadata.uid.as_deref();
        if !uid_matches || !vu::is_prebound_to(&pv, claim) {
            let chosen = claim_ref(&pv).is_none();
            let spec = pv.spec.get_or_insert_with(Default::default);
            spec.claim_ref = Some(reference_to(claim));
            if chosen {
                pv.annotations_mut()
                    .insert(ANN_BOUND_BY_CONTROLLER.into(), "yes".into());
            }
            let updated = self
                .volumes_api()
                .replace(&pv_name, &PostParams::default(), &pv)
                .await
                .map_err(api_err("binding volume", &pv_name))?;
            pv = (*self.assume_volume(updated)).clone();
            tracing::info!(volume = %pv_name, claim = %key(&ns, &claim_name), "volume bound to claim");
        }
        // 2. The volume Bound.
        if phase_of_volume(&pv) != "Bound" {
            pv = self.set_volume_phase(&pv, "Bound", None).await?;
        }
        // 3. The claim's volumeName and annotations.
        let mut claim = claim.clone();
        let annotated = |c: &PersistentVolumeClaim| {
            c.metadata
                .annotations
                .as_ref()
                .is_some_and(|a| a.get(ANN_BIND_COMPLETED).is_some_and(|v| v == "yes"))
        };
        if volume_name(&claim) != pv_name || !annotated(&claim) {
            let chosen = volume_name(&claim).is_empty();
            claim.spec.get_or_insert_with(Default::default).volume_name = Some(pv_name.clone());
            let ann = claim.annotations_mut();
            ann.insert(ANN_BIND_COMPLETED.into(), "yes".into());
            if chosen {
                ann.insert(ANN_BOUND_BY_CONTROLLER.into(), "yes".into());
            }
            let updated = self
                .claims_api(&ns)
                .replace(&claim_name, &PostParams::default(), &claim)
                .await
                .map_err(api_err("binding claim", &claim_name))?;
            claim = (*self.assume_claim(updated)).clone();
        }
        // 4. The claim Bound, with what the volume offers.
        let ps = pv.spec.clone().unwrap_or_default();
        let status = claim.status.clone().unwrap_or_default();
        if status.phase.as_deref() != Some("Bound")
            || status.access_modes != ps.access_modes
            || status.capacity != ps.capacity
        {
            let patch = json!({"status": {
                "phase": "Bound",
                "accessModes": ps.access_modes,
                "capacity": ps.capacity,
            }});
            let updated = self
                .claims_api(&ns)
                .patch_status(&claim_name, &PatchParams::default(), &Patch::Merge(patch))
                .await
                .map_err(api_err("updating claim status", &claim_name))?;
            self.assume_claim(updated);
        }
        Ok(())
    }

    async fn ensure_claim_phase(
        &self,
        claim: &PersistentVolumeClaim,
        phase: &str,
    ) -> Result<(), BinderError> {
        if phase_of_claim(claim) == phase {
            return Ok(());
        }
        let name = claim.name_any();
        let patch = json!({"status": {"phase": phase}});
        match self
            .claims_api(&claim.namespace().unwrap_or_default())
            .patch_status(&name, &PatchParams::default(), &Patch::Merge(patch))
            .await
        {
            Ok(updated) => {
                self.assume_claim(updated);
                Ok(())
            }
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => Err(api_err("updating claim status", &name)(e)),
        }
    }

    async fn set_volume_phase(
        &self,
        pv: &PersistentVolume,
        phase: &str,
        message: Option<&str>,
    ) -> Result<PersistentVolume, BinderError> {
        let name = pv.name_any();
        let patch = json!({"status": {
            "phase": phase,
            "message": message,
            "lastPhaseTransitionTime": self.clock.now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        }});
        let updated = self
            .volumes_api()
            .patch_status(&name, &PatchParams::default(), &Patch::Merge(patch))
            .await
            .map_err(api_err("updating volume status", &name))?;
        Ok((*self.assume_volume(updated)).clone())
    }

    async fn sync_volume(&self, name: &str) -> Result<Requeue, BinderError> {
        let Some(pv) = self.volume(name) else {
            return Ok(Requeue::default());
        };
        if pv.metadata.deletion_timestamp.is_some() {
            return Ok(Requeue::default());
        }
        let Some(r) = claim_ref(&pv).cloned() else {
            if phase_of_volume(&pv) != "Available" {
                self.set_volume_phase(&pv, "Available", None).await?;
            }
            return Ok(Requeue::default());
        };
        let uid = r.uid.clone().unwrap_or_default();
        if uid.is_empty() {
            // Pre-bound by name: waits for its claim.
            if phase_of_volume(&pv) != "Available" {
                self.set_volume_phase(&pv, "Available", None).await?;
            }
            self.claim_queue.add(key(
                r.namespace.as_deref().unwrap_or(""),
                r.name.as_deref().unwrap_or(""),
            ));
            return Ok(Requeue::default());
        }
        let (ns, cname) = (
            r.namespace.clone().unwrap_or_default(),
            r.name.clone().unwrap_or_default(),
        );
        let mut claim = self.claim(&ns, &cname);
        if claim.is_none() {
            // The cache may lag behind a claim just created: ask the API before releasing.
            claim = match self.claims_api(&ns).get_opt(&cname).await {
                Ok(c) => c.map(Arc::new),
                Err(e) => return Err(api_err("reading claim", &cname)(e)),
            };
        }
        let claim = claim.filter(|c| c.metadata.uid.as_deref() == Some(uid.as_str()));
        match claim {
            None => {
                let pv = if !matches!(phase_of_volume(&pv), "Released" | "Failed") {
                    self.set_volume_phase(&pv, "Released", None).await?
                } else {
                    (*pv).clone()
                };
                self.reclaim(&pv).await?;
            }
            Some(claim) => {
                let bound_to = volume_name(&claim);
                if bound_to.is_empty() {
                    // Binding in progress: the claim's sync finishes it.
                    self.claim_queue.add(key(&ns, &cname));
                } else if bound_to == name {
                    if phase_of_volume(&pv) != "Bound" {
                        self.set_volume_phase(&pv, "Bound", None).await?;
                    }
                } else if vu::has_annotation(&pv.metadata, ANN_BOUND_BY_CONTROLLER) {
                    // The claim went to another volume: this one is free again.
                    let mut free = (*pv).clone();
                    if let Some(s) = free.spec.as_mut() {
                        s.claim_ref = None;
                    }
                    free.annotations_mut().remove(ANN_BOUND_BY_CONTROLLER);
                    let updated = self
                        .volumes_api()
                        .replace(name, &PostParams::default(), &free)
                        .await
                        .map_err(api_err("unbinding volume", name))?;
                    let updated = self.assume_volume(updated);
                    self.set_volume_phase(&updated, "Available", None).await?;
                }
            }
        }
        Ok(Requeue::default())
    }

    /// What happens to a volume whose claim is gone (kube's `reclaimVolume`).
    async fn reclaim(&self, pv: &PersistentVolume) -> Result<(), BinderError> {
        let name = pv.name_any();
        let policy = pv
            .spec
            .as_ref()
            .and_then(|s| s.persistent_volume_reclaim_policy.as_deref())
            .unwrap_or("Retain");
        match policy {
            "Delete" => {
                if let Some(p) = vu::volume_annotation(pv, vu::ANN_PROVISIONED_BY) {
                    if !in_tree(p) {
                        // Its provisioner deletes it (and the data it made).
                        return Ok(());
                    }
                }
                tracing::info!(volume = %name, "deleting released volume (reclaim policy Delete)");
                match self
                    .volumes_api()
                    .delete(&name, &DeleteParams::default())
                    .await
                {
                    Ok(_) => Ok(()),
                    Err(e) if is_not_found(&e) => Ok(()),
                    Err(e) => {
                        self.recorder.warning(
                            reference(pv),
                            "VolumeFailedDelete",
                            format!("deleting volume {name}: {e}"),
                        );
                        Err(api_err("deleting volume", &name)(e))
                    }
                }
            }
            "Recycle" => {
                if phase_of_volume(pv) != "Failed" {
                    self.recorder.warning(
                        reference(pv),
                        "VolumeFailedRecycle",
                        "Recycle is deprecated and not supported by pea: use Delete with a provisioner, or Retain".into(),
                    );
                    self.set_volume_phase(pv, "Failed", Some("recycling is not supported"))
                        .await?;
                }
                Ok(())
            }
            // Retain: Released until an administrator deals with it.
            _ => Ok(()),
        }
    }
}
