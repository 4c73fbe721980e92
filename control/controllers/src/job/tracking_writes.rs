//! The writes of pod tracking: removing the tracking finalizer (per sync, and from orphan pods
//! through their own queue) and the conditional status writes of the three-step flow.

use std::collections::HashSet;

use futures_util::future::join_all;
use k8s_openapi::api::batch::v1::{Job, JobStatus};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Patch, PatchParams};
use kube::{Api, ResourceExt};

use super::{finished, tracking, JobController, JobError, STATUS_FIELDS};
use crate::podutil::{self, controller_of};
use crate::queue::Requeue;
use crate::{is_not_found, split_key};

impl JobController {
    /// kube's handleOrphanPod condition: the pod holds the tracking finalizer but no live,
    /// unfinished Job controls it.
    pub(super) fn orphaned(&self, pod: &Pod) -> bool {
        let Some(r) = controller_of(&pod.metadata) else {
            return true;
        };
        if r.kind != "Job" {
            return false;
        }
        let ns = pod.namespace().unwrap_or_default();
        match self.jobs.get(&ns, &r.name) {
            Some(j) if j.metadata.uid.as_deref() == Some(&r.uid) => {
                j.metadata.deletion_timestamp.is_some()
                    || j.status.as_ref().is_some_and(finished)
                    || self.finished.lock().unwrap().contains(&r.uid)
            }
            _ => true,
        }
    }

    pub(super) async fn release_orphan(&self, k: &str) -> Result<Requeue, JobError> {
        let (ns, name) = split_key(k);
        let Some(pod) = self.pods.get(ns, name) else {
            return Ok(Requeue::default());
        };
        if !tracking::has_finalizer(&pod) || !self.orphaned(&pod) {
            return Ok(Requeue::default());
        }
        let api: Api<Pod> = Api::namespaced(self.client.clone(), ns);
        self.remove_finalizer(&api, &pod)
            .await
            .map_err(|source| JobError::Api {
                key: k.into(),
                what: "removing the tracking finalizer of an orphan pod".into(),
                source,
            })?;
        Ok(Requeue::default())
    }

    /// Removes the tracking finalizer (kube's strategic merge patch deleting it from the list,
    /// so other finalizers and concurrent changes are untouched); a pod already gone is fine.
    pub(super) async fn remove_finalizer(
        &self,
        api: &Api<Pod>,
        pod: &Pod,
    ) -> Result<(), kube::Error> {
        if !tracking::has_finalizer(pod) {
            return Ok(());
        }
        let patch = serde_json::json!({"metadata": {
            "$deleteFromPrimitiveList/finalizers": [tracking::FINALIZER],
        }});
        match api
            .patch(
                &pod.name_any(),
                &PatchParams::default(),
                &Patch::Strategic(patch),
            )
            .await
        {
            Ok(_) => {
                let uid = pod.metadata.uid.clone().unwrap_or_default();
                self.in_flight.lock().unwrap().insert(uid);
                Ok(())
            }
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Removes the tracking finalizer of `pods`; returns the uids no longer holding it.
    pub(super) async fn release(
        &self,
        k: &str,
        api: &Api<Pod>,
        pods: &[&Pod],
    ) -> Result<HashSet<String>, JobError> {
        let results = join_all(
            pods.iter()
                .map(|p| async move { (p, self.remove_finalizer(api, p).await) }),
        )
        .await;
        let mut freed = HashSet::new();
        for (p, r) in results {
            match r {
                Ok(()) => {
                    freed.insert(p.metadata.uid.clone().unwrap_or_default());
                }
                Err(source) => {
                    return Err(JobError::Api {
                        key: k.into(),
                        what: format!("removing the tracking finalizer of pod {}", p.name_any()),
                        source,
                    })
                }
            }
        }
        Ok(freed)
    }

    /// Writes the Job's status, conditional on the resourceVersion it was computed from (a
    /// stale copy must not count a pod twice); returns the new resourceVersion.
    pub(super) async fn write_status(
        &self,
        k: &str,
        job: &Job,
        rv: Option<String>,
        status: &JobStatus,
    ) -> Result<Option<String>, JobError> {
        let mut patch = podutil::status_patch(status, STATUS_FIELDS);
        patch["metadata"] = serde_json::json!({ "resourceVersion": rv });
        let ns = job.namespace().unwrap_or_default();
        let written = Api::<Job>::namespaced(self.client.clone(), &ns)
            .patch_status(
                &job.name_any(),
                &PatchParams::default(),
                &Patch::Merge(patch),
            )
            .await
            .map_err(|source| JobError::Api {
                key: k.into(),
                what: "updating status".into(),
                source,
            })?;
        Ok(written.metadata.resource_version)
    }
}
