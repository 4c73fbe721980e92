//! The pvc-protection and pv-protection controllers (kube's
//! `pkg/controller/volume/pvcprotection` and `pvprotection`). A claim keeps its
//! `kubernetes.io/pvc-protection` finalizer while a pod that is not terminated (phase other
//! than Succeeded/Failed) uses it — through a `persistentVolumeClaim` volume or a generic
//! ephemeral volume (`<pod>-<volume>`) — so a claim deleted under a running pod stays
//! Terminating until the pod is gone; a volume keeps `kubernetes.io/pv-protection` while it
//! is Bound. Claims and volumes lacking the finalizer (created before the admission plugin)
//! get it. Before releasing a claim the pods are listed from the API server, not just the
//! cache (kube's "ask the API server" step), so a pod created a moment ago still holds it.

use std::sync::Arc;

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim, Pod};
use kube::api::{ListParams, Patch, PatchParams};
use kube::{Api, Client, ResourceExt};
use serde_json::json;
use tracing::Instrument;

use crate::informer::{Cache, Change};
use crate::queue::{run_workers, Queue, Requeue};
use crate::{is_not_found, key, split_key, Informers};

pub const PVC_PROTECTION: &str = "kubernetes.io/pvc-protection";
pub const PV_PROTECTION: &str = "kubernetes.io/pv-protection";

#[derive(Debug, thiserror::Error)]
pub enum ProtectionError {
    #[error("listing pods in {namespace}: {source}")]
    ListPods {
        namespace: String,
        #[source]
        source: kube::Error,
    },
    #[error("updating finalizers of {what}: {source}")]
    Finalizers {
        what: String,
        #[source]
        source: kube::Error,
    },
}

/// Whether `pod` is not terminated and uses the claim `claim` (same namespace).
pub fn pod_uses_claim(pod: &Pod, claim: &str) -> bool {
    if matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    ) {
        return false;
    }
    let pod_name = pod.name_any();
    pod.spec
        .as_ref()
        .and_then(|s| s.volumes.as_ref())
        .into_iter()
        .flatten()
        .any(|v| {
            v.persistent_volume_claim
                .as_ref()
                .is_some_and(|c| c.claim_name == claim)
                || (v.ephemeral.is_some() && format!("{pod_name}-{}", v.name) == claim)
        })
}

fn has(finalizers: Option<&Vec<String>>, f: &str) -> bool {
    finalizers.is_some_and(|l| l.iter().any(|x| x == f))
}

/// A JSON patch that removes `f` from the finalizers, guarded by a test of the list it read
/// (so a concurrent change of the list makes the patch fail instead of dropping others).
fn finalizers_patch(current: &[String], f: &str, add: bool) -> json_patch::Patch {
    let mut next: Vec<String> = current.iter().filter(|x| *x != f).cloned().collect();
    if add {
        next.push(f.to_string());
    }
    let ops = if current.is_empty() {
        json!([{"op": "add", "path": "/metadata/finalizers", "value": next}])
    } else {
        json!([
            {"op": "test", "path": "/metadata/finalizers", "value": current},
            {"op": "replace", "path": "/metadata/finalizers", "value": next},
        ])
    };
    serde_json::from_value(ops).unwrap_or(json_patch::Patch(Vec::new()))
}

pub struct StorageProtectionController {
    client: Client,
    claims: Arc<Cache<PersistentVolumeClaim>>,
    volumes: Arc<Cache<PersistentVolume>>,
    pods: Arc<Cache<Pod>>,
    claim_queue: Arc<Queue>,
    volume_queue: Arc<Queue>,
}

impl std::fmt::Debug for StorageProtectionController {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StorageProtectionController")
            .finish_non_exhaustive()
    }
}

impl StorageProtectionController {
    pub fn register(informers: &Informers, client: Client) -> Arc<Self> {
        let c = Arc::new(Self {
            client,
            claims: informers.persistentvolumeclaims.cache(),
            volumes: informers.persistentvolumes.cache(),
            pods: informers.pods.cache(),
            claim_queue: Queue::new(),
            volume_queue: Queue::new(),
        });
        let q = c.claim_queue.clone();
        informers.persistentvolumeclaims.add_handler(move |ch| {
            if let Change::Added(o) | Change::Updated { new: o, .. } = ch {
                q.add(key(&o.namespace().unwrap_or_default(), &o.name_any()));
            }
        });
        // A pod that ends or goes may release the claims it used.
        let q = c.claim_queue.clone();
        informers.pods.add_handler(move |ch| {
            let pod = match ch {
                Change::Deleted(p) => p,
                Change::Updated { new, .. } => new,
                Change::Added(_) => return,
            };
            let ns = pod.namespace().unwrap_or_default();
            let name = pod.name_any();
            for v in pod
                .spec
                .as_ref()
                .and_then(|s| s.volumes.as_ref())
                .into_iter()
                .flatten()
            {
                if let Some(c) = &v.persistent_volume_claim {
                    q.add(key(&ns, &c.claim_name));
                } else if v.ephemeral.is_some() {
                    q.add(key(&ns, &format!("{name}-{}", v.name)));
                }
            }
        });
        let q = c.volume_queue.clone();
        informers.persistentvolumes.add_handler(move |ch| {
            if let Change::Added(o) | Change::Updated { new: o, .. } = ch {
                q.add(o.name_any());
            }
        });
        c
    }

    pub async fn run(self: Arc<Self>, workers: usize) {
        self.claims.wait_synced().await;
        self.volumes.wait_synced().await;
        self.pods.wait_synced().await;
        let c = self.clone();
        let claims = run_workers(
            self.claim_queue.clone(),
            workers,
            "pvc-protection",
            move |k| {
                let c = c.clone();
                async move {
                    let span = tracing::debug_span!("sync_pvc_protection", key = %k);
                    c.sync_claim(&k).instrument(span).await
                }
            },
        );
        let c = self.clone();
        let volumes = run_workers(
            self.volume_queue.clone(),
            workers,
            "pv-protection",
            move |k| {
                let c = c.clone();
                async move {
                    let span = tracing::debug_span!("sync_pv_protection", pv = %k);
                    c.sync_volume(&k).instrument(span).await
                }
            },
        );
        tokio::join!(claims, volumes);
    }

    async fn sync_claim(&self, k: &str) -> Result<Requeue, ProtectionError> {
        let (ns, name) = split_key(k);
        let Some(claim) = self.claims.get(ns, name) else {
            return Ok(Requeue::default());
        };
        let finalizers = claim.metadata.finalizers.clone().unwrap_or_default();
        let protected = has(Some(&finalizers), PVC_PROTECTION);
        let api: Api<PersistentVolumeClaim> = Api::namespaced(self.client.clone(), ns);
        if claim.metadata.deletion_timestamp.is_none() {
            if !protected {
                self.patch(&api, name, &finalizers, PVC_PROTECTION, true, k)
                    .await?;
            }
            return Ok(Requeue::default());
        }
        if !protected {
            return Ok(Requeue::default());
        }
        if self
            .pods
            .list()
            .iter()
            .any(|p| p.namespace().as_deref() == Some(ns) && pod_uses_claim(p, name))
        {
            return Ok(Requeue::default());
        }
        let live = Api::<Pod>::namespaced(self.client.clone(), ns)
            .list(&ListParams::default())
            .await
            .map_err(|source| ProtectionError::ListPods {
                namespace: ns.to_string(),
                source,
            })?;
        if live.items.iter().any(|p| pod_uses_claim(p, name)) {
            return Ok(Requeue::default());
        }
        self.patch(&api, name, &finalizers, PVC_PROTECTION, false, k)
            .await?;
        tracing::info!(claim = %k, "claim no longer in use: protection removed");
        Ok(Requeue::default())
    }

    async fn sync_volume(&self, name: &str) -> Result<Requeue, ProtectionError> {
        let Some(pv) = self.volumes.get("", name) else {
            return Ok(Requeue::default());
        };
        let finalizers = pv.metadata.finalizers.clone().unwrap_or_default();
        let protected = has(Some(&finalizers), PV_PROTECTION);
        let api: Api<PersistentVolume> = Api::all(self.client.clone());
        if pv.metadata.deletion_timestamp.is_none() {
            if !protected {
                self.patch(&api, name, &finalizers, PV_PROTECTION, true, name)
                    .await?;
            }
            return Ok(Requeue::default());
        }
        let bound = pv.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound");
        if protected && !bound {
            self.patch(&api, name, &finalizers, PV_PROTECTION, false, name)
                .await?;
            tracing::info!(pv = %name, "volume not bound: protection removed");
        }
        Ok(Requeue::default())
    }

    async fn patch<K>(
        &self,
        api: &Api<K>,
        name: &str,
        current: &[String],
        finalizer: &str,
        add: bool,
        what: &str,
    ) -> Result<(), ProtectionError>
    where
        K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
    {
        let patch = finalizers_patch(current, finalizer, add);
        match api
            .patch(name, &PatchParams::default(), &Patch::<()>::Json(patch))
            .await
        {
            Ok(_) => Ok(()),
            // Gone, or changed since the cache saw it: the informer brings the next version.
            Err(e) if is_not_found(&e) || crate::is_conflict(&e) || is_invalid(&e) => Ok(()),
            Err(source) => Err(ProtectionError::Finalizers {
                what: what.to_string(),
                source,
            }),
        }
    }
}

/// A failed `test` operation of a JSON patch (422).
fn is_invalid(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 422)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn pod(phase: &str, volumes: serde_json::Value) -> Pod {
        serde_json::from_value(json!({"metadata": {"name": "web", "namespace": "default"},
            "spec": {"containers": [{"name": "c"}], "volumes": volumes},
            "status": {"phase": phase}}))
        .unwrap()
    }

    #[test]
    fn running_pods_hold_their_claims() {
        let vols = json!([{"name": "data", "persistentVolumeClaim": {"claimName": "c1"}},
            {"name": "scratch", "ephemeral": {"volumeClaimTemplate": {"spec": {}}}}]);
        assert!(pod_uses_claim(&pod("Running", vols.clone()), "c1"));
        assert!(pod_uses_claim(&pod("Pending", vols.clone()), "web-scratch"));
        assert!(!pod_uses_claim(&pod("Running", vols.clone()), "c2"));
        assert!(!pod_uses_claim(&pod("Succeeded", vols), "c1"));
    }

    #[test]
    fn the_patch_is_guarded_by_the_list_it_read() {
        let p = finalizers_patch(&["a".into(), PVC_PROTECTION.into()], PVC_PROTECTION, false);
        assert_eq!(
            serde_json::to_value(&p).unwrap(),
            json!([{"op": "test", "path": "/metadata/finalizers", "value": ["a", PVC_PROTECTION]},
                {"op": "replace", "path": "/metadata/finalizers", "value": ["a"]}])
        );
    }
}
