//! The storage objects VolumeBinding reads: PersistentVolumeClaims, PersistentVolumes and
//! StorageClasses, kept by the informers in [`crate::cache::ClusterState`]. Pure data.

use std::collections::HashMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::api::storage::v1::StorageClass;

use crate::cache::ClusterState;
use crate::informer::Cached;
use crate::queue::ClusterEvent;

/// On a claim of a WaitForFirstConsumer class: the node its first pod was scheduled to.
pub const ANN_SELECTED_NODE: &str = "volume.kubernetes.io/selected-node";
const ANN_BETA_STORAGE_CLASS: &str = "volume.beta.kubernetes.io/storage-class";

#[derive(Debug, Default)]
pub struct VolumeState {
    /// `namespace/name` → claim.
    claims: HashMap<String, Arc<PersistentVolumeClaim>>,
    volumes: HashMap<String, Arc<PersistentVolume>>,
    classes: HashMap<String, Arc<StorageClass>>,
}

fn claim_key(ns: &str, name: &str) -> String {
    format!("{ns}/{name}")
}

impl VolumeState {
    pub fn claim(&self, ns: &str, name: &str) -> Option<&Arc<PersistentVolumeClaim>> {
        self.claims.get(&claim_key(ns, name))
    }

    pub fn volume(&self, name: &str) -> Option<&Arc<PersistentVolume>> {
        self.volumes.get(name)
    }

    pub fn class(&self, name: &str) -> Option<&Arc<StorageClass>> {
        self.classes.get(name)
    }

    pub fn volumes(&self) -> impl Iterator<Item = &Arc<PersistentVolume>> {
        self.volumes.values()
    }

    pub fn upsert_claim(&mut self, c: PersistentVolumeClaim) {
        let k = claim_key(
            c.metadata.namespace.as_deref().unwrap_or(""),
            c.metadata.name.as_deref().unwrap_or(""),
        );
        self.claims.insert(k, Arc::new(c));
    }

    pub fn remove_claim(&mut self, ns: &str, name: &str) {
        self.claims.remove(&claim_key(ns, name));
    }

    pub fn upsert_volume(&mut self, v: PersistentVolume) {
        self.volumes
            .insert(v.metadata.name.clone().unwrap_or_default(), Arc::new(v));
    }

    pub fn remove_volume(&mut self, name: &str) {
        self.volumes.remove(name);
    }

    pub fn upsert_class(&mut self, c: StorageClass) {
        self.classes
            .insert(c.metadata.name.clone().unwrap_or_default(), Arc::new(c));
    }

    pub fn remove_class(&mut self, name: &str) {
        self.classes.remove(name);
    }

    /// Keeps only the objects a relist returned (by key).
    pub fn retain_claims(&mut self, keep: &std::collections::HashSet<String>) {
        self.claims.retain(|k, _| keep.contains(k));
    }

    pub fn retain_volumes(&mut self, keep: &std::collections::HashSet<String>) {
        self.volumes.retain(|k, _| keep.contains(k));
    }

    pub fn retain_classes(&mut self, keep: &std::collections::HashSet<String>) {
        self.classes.retain(|k, _| keep.contains(k));
    }

    /// The `namespace/name` key of a claim, as [`VolumeState::retain_claims`] wants it.
    pub fn key_of_claim(c: &PersistentVolumeClaim) -> String {
        claim_key(
            c.metadata.namespace.as_deref().unwrap_or(""),
            c.metadata.name.as_deref().unwrap_or(""),
        )
    }
}

/// A claim's class: the beta annotation, else the field, else "".
pub fn claim_class(c: &PersistentVolumeClaim) -> String {
    if let Some(v) = c
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(ANN_BETA_STORAGE_CLASS))
    {
        return v.clone();
    }
    c.spec
        .as_ref()
        .and_then(|s| s.storage_class_name.clone())
        .unwrap_or_default()
}

/// A volume's class: the beta annotation, else the field, else "".
pub fn volume_class(v: &PersistentVolume) -> String {
    if let Some(c) = v
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(ANN_BETA_STORAGE_CLASS))
    {
        return c.clone();
    }
    v.spec
        .as_ref()
        .and_then(|s| s.storage_class_name.clone())
        .unwrap_or_default()
}

fn storage(q: Option<&k8s_openapi::apimachinery::pkg::api::resource::Quantity>) -> i64 {
    q.and_then(|q| crate::quantity::value(&q.0).ok())
        .unwrap_or(0)
}

/// Whether an unbound volume could be bound to the claim, node affinity aside (class, volume
/// mode, access modes, size, selector, and free or pre-bound to this claim).
pub fn could_bind(v: &PersistentVolume, c: &PersistentVolumeClaim) -> bool {
    let (Some(vs), Some(cs)) = (v.spec.as_ref(), c.spec.as_ref()) else {
        return false;
    };
    if v.metadata.deletion_timestamp.is_some() || volume_class(v) != claim_class(c) {
        return false;
    }
    let mode = |m: Option<&String>| m.map_or("Filesystem", String::as_str).to_string();
    if mode(vs.volume_mode.as_ref()) != mode(cs.volume_mode.as_ref()) {
        return false;
    }
    let have = vs.access_modes.as_deref().unwrap_or_default();
    if !cs.access_modes.iter().flatten().all(|m| have.contains(m)) {
        return false;
    }
    let request = storage(
        cs.resources
            .as_ref()
            .and_then(|r| r.requests.as_ref())
            .and_then(|r| r.get("storage")),
    );
    if storage(vs.capacity.as_ref().and_then(|c| c.get("storage"))) < request {
        return false;
    }
    if let Some(sel) = &cs.selector {
        if !crate::plugins::helpers::selector_matches(Some(sel), v.metadata.labels.as_ref()) {
            return false;
        }
    }
    match &vs.claim_ref {
        None => !matches!(
            v.status.as_ref().and_then(|s| s.phase.as_deref()),
            Some("Released" | "Failed")
        ),
        Some(r) => {
            r.name == c.metadata.name
                && r.namespace == c.metadata.namespace
                && r.uid
                    .as_deref()
                    .is_none_or(|u| u.is_empty() || Some(u) == c.metadata.uid.as_deref())
        }
    }
}

impl Cached for PersistentVolumeClaim {
    const EVENT: Option<ClusterEvent> = Some(ClusterEvent::VolumeChanged);
    fn cache_key(&self) -> String {
        VolumeState::key_of_claim(self)
    }
    fn upsert(self, c: &mut ClusterState) {
        let state = &mut c.volumes;
        state.upsert_claim(self);
    }
    fn remove(&self, c: &mut ClusterState) {
        let state = &mut c.volumes;
        state.remove_claim(
            self.metadata.namespace.as_deref().unwrap_or(""),
            self.metadata.name.as_deref().unwrap_or(""),
        );
    }
    fn retain(c: &mut ClusterState, keep: &std::collections::HashSet<String>) {
        let state = &mut c.volumes;
        state.retain_claims(keep);
    }
}

impl Cached for PersistentVolume {
    const EVENT: Option<ClusterEvent> = Some(ClusterEvent::VolumeChanged);
    fn cache_key(&self) -> String {
        self.metadata.name.clone().unwrap_or_default()
    }
    fn upsert(self, c: &mut ClusterState) {
        let state = &mut c.volumes;
        state.upsert_volume(self);
    }
    fn remove(&self, c: &mut ClusterState) {
        let state = &mut c.volumes;
        state.remove_volume(self.metadata.name.as_deref().unwrap_or(""));
    }
    fn retain(c: &mut ClusterState, keep: &std::collections::HashSet<String>) {
        let state = &mut c.volumes;
        state.retain_volumes(keep);
    }
}

impl Cached for StorageClass {
    const EVENT: Option<ClusterEvent> = Some(ClusterEvent::VolumeChanged);
    fn cache_key(&self) -> String {
        self.metadata.name.clone().unwrap_or_default()
    }
    fn upsert(self, c: &mut ClusterState) {
        let state = &mut c.volumes;
        state.upsert_class(self);
    }
    fn remove(&self, c: &mut ClusterState) {
        let state = &mut c.volumes;
        state.remove_class(self.metadata.name.as_deref().unwrap_or(""));
    }
    fn retain(c: &mut ClusterState, keep: &std::collections::HashSet<String>) {
        let state = &mut c.volumes;
        state.retain_classes(keep);
    }
}
