//! The local-path provisioner (as rancher's local-path-provisioner or kube's hostpath
//! provisioner): volumes that are directories on one node. `local-path-provisioner` in
//! --controllers.
//!
//! - At start it creates the default StorageClass `local-path` (provisioner `pea.dev/local-path`,
//!   WaitForFirstConsumer, reclaim Delete, annotated as the cluster default) unless it exists.
//! - A claim the binder handed to this provisioner (`volume.kubernetes.io/storage-provisioner`)
//!   and the scheduler placed (`volume.kubernetes.io/selected-node`) gets a volume `pvc-<uid>`:
//!   a hostPath `<base>/pvc-<uid>` of type DirectoryOrCreate with node affinity to the selected
//!   node, pre-bound to the claim. The base is the class's `basePath` parameter, else the
//!   configured directory (default `/var/lib/pea/storage`). Nothing runs on the node to make the
//!   directory: the kubelet creates it when it mounts the volume (DirectoryOrCreate).
//! - A volume of this provisioner that the binder released with reclaim policy Delete is
//!   cleaned up by a helper pod on its node (`rm -rf` of the directory, image: the class's
//!   `helperImage` parameter, else the configured one), and deleted once the pod succeeded. A
//!   volume whose node no longer exists is deleted at once (its data went with the node).

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{
    Container, HostPathVolumeSource, Node, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm,
    PersistentVolume, PersistentVolumeClaim, PersistentVolumeSpec, Pod, PodSpec, Toleration,
    Volume, VolumeMount, VolumeNodeAffinity,
};
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{DeleteParams, PostParams};
use kube::{Api, Client, ResourceExt};
use tracing::Instrument;

use crate::events::{reference, Recorder};
use crate::informer::{Cache, Change};
use crate::queue::{run_workers, Queue, Requeue};
use crate::volumeutil::{self as vu};
use crate::{is_already_exists, is_not_found, key, split_key, Informers};

/// The provisioner name classes use.
pub const PROVISIONER: &str = "pea.dev/local-path";
/// The default class created at start.
pub const DEFAULT_CLASS: &str = "local-path";
/// The label of cleanup helper pods (its value: the volume's name).
pub const HELPER_LABEL: &str = "pea.dev/local-path-helper";
const HOSTNAME_LABEL: &str = "kubernetes.io/hostname";

/// Where volumes go and how they are cleaned up (ControllersConfig's `localPath*` fields).
#[derive(Debug, Clone)]
pub struct LocalPathConfig {
    /// The directory volumes are made in on each node.
    pub base_dir: String,
    /// The image of cleanup helper pods (needs `rm`).
    pub helper_image: String,
    /// The namespace helper pods run in.
    pub helper_namespace: String,
    /// Create the default `local-path` StorageClass at start when absent.
    pub default_class: bool,
}

impl Default for LocalPathConfig {
    fn default() -> Self {
        Self {
            base_dir: "/var/lib/pea/storage".into(),
            helper_image: "docker.io/library/busybox:1.36".into(),
            helper_namespace: "kube-system".into(),
            default_class: true,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LocalPathError {
    #[error("{what} {name}: {source}")]
    Api {
        what: &'static str,
        name: String,
        #[source]
        source: kube::Error,
    },
}

fn api_err<'a>(
    what: &'static str,
    name: &'a str,
) -> impl FnOnce(kube::Error) -> LocalPathError + 'a {
    move |source| LocalPathError::Api {
        what,
        name: name.to_string(),
        source,
    }
}

pub struct LocalPathProvisioner {
    client: Client,
    recorder: Recorder,
    config: LocalPathConfig,
    claims: Arc<Cache<PersistentVolumeClaim>>,
    volumes: Arc<Cache<PersistentVolume>>,
    classes: Arc<Cache<StorageClass>>,
    nodes: Arc<Cache<Node>>,
    pods: Arc<Cache<Pod>>,
    queue: Arc<Queue>,
}

impl std::fmt::Debug for LocalPathProvisioner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalPathProvisioner")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// The default class, as created at start.
pub fn default_class() -> StorageClass {
    StorageClass {
        metadata: ObjectMeta {
            name: Some(DEFAULT_CLASS.into()),
            annotations: Some([(vu::ANN_DEFAULT_CLASS.to_string(), "true".to_string())].into()),
            ..Default::default()
        },
        provisioner: PROVISIONER.into(),
        reclaim_policy: Some("Delete".into()),
        volume_binding_mode: Some("WaitForFirstConsumer".into()),
        ..Default::default()
    }
}

/// The name of the volume provisioned for a claim (kube's `pvc-<claim uid>`).
pub fn volume_name_for(claim: &PersistentVolumeClaim) -> String {
    format!("pvc-{}", claim.metadata.uid.as_deref().unwrap_or_default())
}

/// The node a volume of this provisioner lives on: the hostname its affinity requires.
pub fn volume_node(pv: &PersistentVolume) -> Option<String> {
    let terms = &pv
        .spec
        .as_ref()?
        .node_affinity
        .as_ref()?
        .required
        .as_ref()?
        .node_selector_terms;
    terms
        .iter()
        .flat_map(|t| t.match_expressions.iter().flatten())
        .find(|r| r.key == HOSTNAME_LABEL && r.operator == "In")
        .and_then(|r| r.values.as_ref()?.first().cloned())
}

/// The volume object for a claim placed on `node` (whose hostname label is `hostname`).
pub fn volume_for(
    claim: &PersistentVolumeClaim,
    class: &StorageClass,
    base: &str,
    hostname: &str,
) -> PersistentVolume {
    let name = volume_name_for(claim);
    let spec = claim.spec.clone().unwrap_or_default();
    let request = spec
        .resources
        .as_ref()
        .and_then(|r| r.requests.as_ref())
        .and_then(|r| r.get("storage"))
        .cloned();
    PersistentVolume {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            annotations: Some(
                [(vu::ANN_PROVISIONED_BY.to_string(), PROVISIONER.to_string())].into(),
            ),
            ..Default::default()
        },
        spec: Some(PersistentVolumeSpec {
            capacity: request.map(|q| [("storage".to_string(), q)].into()),
            access_modes: spec.access_modes.clone(),
            claim_ref: Some(k8s_openapi::api::core::v1::ObjectReference {
                api_version: Some("v1".into()),
                kind: Some("PersistentVolumeClaim".into()),
                namespace: claim.metadata.namespace.clone(),
                name: claim.metadata.name.clone(),
                uid: claim.metadata.uid.clone(),
                resource_version: claim.metadata.resource_version.clone(),
                field_path: None,
            }),
            persistent_volume_reclaim_policy: Some(
                class
                    .reclaim_policy
                    .clone()
                    .unwrap_or_else(|| "Delete".into()),
            ),
            storage_class_name: class.metadata.name.clone(),
            mount_options: class.mount_options.clone(),
            volume_mode: Some(
                spec.volume_mode
                    .clone()
                    .unwrap_or_else(|| "Filesystem".into()),
            ),
            host_path: Some(HostPathVolumeSource {
                path: format!("{}/{name}", base.trim_end_matches('/')),
                type_: Some("DirectoryOrCreate".into()),
            }),
            node_affinity: Some(VolumeNodeAffinity {
                required: Some(NodeSelector {
                    node_selector_terms: vec![NodeSelectorTerm {
                        match_expressions: Some(vec![NodeSelectorRequirement {
                            key: HOSTNAME_LABEL.into(),
                            operator: "In".into(),
                            values: Some(vec![hostname.to_string()]),
                        }]),
                        match_fields: None,
                    }],
                }),
            }),
            ..Default::default()
        }),
        status: None,
    }
}

/// The pod that removes a volume's directory on its node.
pub fn cleanup_pod(pv: &PersistentVolume, node: &str, image: &str, namespace: &str) -> Option<Pod> {
    let path = pv.spec.as_ref()?.host_path.as_ref()?.path.clone();
    let path = std::path::Path::new(&path);
    let parent = path.parent()?.to_str()?.to_string();
    let dir = path.file_name()?.to_str()?.to_string();
    Some(Pod {
        metadata: ObjectMeta {
            name: Some(format!("delete-{}", pv.name_any())),
            namespace: Some(namespace.into()),
            labels: Some([(HELPER_LABEL.to_string(), pv.name_any())].into()),
            ..Default::default()
        },
        spec: Some(PodSpec {
            node_name: Some(node.into()),
            restart_policy: Some("Never".into()),
            automount_service_account_token: Some(false),
            tolerations: Some(vec![Toleration {
                operator: Some("Exists".into()),
                ..Default::default()
            }]),
            containers: vec![Container {
                name: "cleanup".into(),
                image: Some(image.into()),
                image_pull_policy: Some("IfNotPresent".into()),
                command: Some(vec!["rm".into(), "-rf".into(), format!("/data/{dir}")]),
                volume_mounts: Some(vec![VolumeMount {
                    name: "data".into(),
                    mount_path: "/data".into(),
                    ..Default::default()
                }]),
                ..Default::default()
            }],
            volumes: Some(vec![Volume {
                name: "data".into(),
                host_path: Some(HostPathVolumeSource {
                    path: parent,
                    type_: Some("DirectoryOrCreate".into()),
                }),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        status: None,
    })
}

/// Deletes a cleanup pod that has finished: nothing runs, so no grace period (what
/// kube-apiserver applies to terminated pods itself).
fn finished() -> DeleteParams {
    DeleteParams {
        grace_period_seconds: Some(0),
        ..Default::default()
    }
}

fn param<'a>(class: &'a StorageClass, name: &str) -> Option<&'a str> {
    class
        .parameters
        .as_ref()
        .and_then(|p| p.get(name))
        .map(String::as_str)
        .filter(|v| !v.is_empty())
}

fn ours(class: Option<&StorageClass>) -> bool {
    class.is_some_and(|c| c.provisioner == PROVISIONER)
}

impl LocalPathProvisioner {
    pub fn register(
        informers: &Informers,
        client: Client,
        recorder: Recorder,
        config: LocalPathConfig,
    ) -> Arc<Self> {
        let c = Arc::new(Self {
            client,
            recorder,
            config,
            claims: informers.persistentvolumeclaims.cache(),
            volumes: informers.persistentvolumes.cache(),
            classes: informers.storageclasses.cache(),
            nodes: informers.nodes.cache(),
            pods: informers.pods.cache(),
            queue: Queue::new(),
        });
        let q = c.queue.clone();
        informers.persistentvolumeclaims.add_handler(move |ch| {
            if let Change::Added(claim) | Change::Updated { new: claim, .. } = ch {
                if vu::claim_annotation(claim, vu::ANN_STORAGE_PROVISIONER) == Some(PROVISIONER) {
                    q.add(format!(
                        "claim/{}",
                        key(&claim.namespace().unwrap_or_default(), &claim.name_any())
                    ));
                }
            }
        });
        let q = c.queue.clone();
        informers.persistentvolumes.add_handler(move |ch| {
            if let Change::Added(pv) | Change::Updated { new: pv, .. } = ch {
                if vu::volume_annotation(pv, vu::ANN_PROVISIONED_BY) == Some(PROVISIONER) {
                    q.add(format!("volume/{}", pv.name_any()));
                }
            }
        });
        let q = c.queue.clone();
        informers.pods.add_handler(move |ch| {
            if let Change::Added(p) | Change::Updated { new: p, .. } = ch {
                if let Some(pv) = p.labels().get(HELPER_LABEL) {
                    q.add(format!("volume/{pv}"));
                }
            }
        });
        informers.storageclasses.add_handler(|_| {});
        informers.nodes.add_handler(|_| {});
        c
    }

    pub async fn run(self: Arc<Self>, workers: usize) {
        if self.config.default_class {
            self.ensure_default_class().await;
        }
        self.claims.wait_synced().await;
        self.volumes.wait_synced().await;
        self.classes.wait_synced().await;
        self.nodes.wait_synced().await;
        self.pods.wait_synced().await;
        let q = self.queue.clone();
        run_workers(q, workers, "local-path-provisioner", move |k| {
            let c = self.clone();
            async move {
                let span = tracing::debug_span!("sync_local_path", key = %k);
                c.sync(&k).instrument(span).await
            }
        })
        .await;
    }

    /// Creates the default class unless one named `local-path` exists (retried until the API
    /// answers).
    async fn ensure_default_class(&self) {
        let api: Api<StorageClass> = Api::all(self.client.clone());
        for attempt in 0u32.. {
            match api.create(&PostParams::default(), &default_class()).await {
                Ok(_) => {
                    tracing::info!(class = DEFAULT_CLASS, "created the default StorageClass");
                    return;
                }
                Err(e) if is_already_exists(&e) => return,
                Err(e) => {
                    tracing::warn!(error = %e, attempt, "creating the default StorageClass");
                    tokio::time::sleep(Duration::from_secs(2)).await;
                }
            }
        }
    }

    async fn sync(&self, k: &str) -> Result<Requeue, LocalPathError> {
        match k.split_once('/') {
            Some(("claim", rest)) => {
                let (ns, name) = split_key(rest);
                self.provision(ns, name).await
            }
            Some(("volume", name)) => self.delete(name).await,
            _ => Ok(Requeue::default()),
        }
    }

    async fn provision(&self, ns: &str, name: &str) -> Result<Requeue, LocalPathError> {
        let Some(claim) = self.claims.get(ns, name) else {
            return Ok(Requeue::default());
        };
        let done = claim
            .spec
            .as_ref()
            .and_then(|s| s.volume_name.as_deref())
            .is_some_and(|v| !v.is_empty());
        if done
            || claim.metadata.deletion_timestamp.is_some()
            || vu::claim_annotation(&claim, vu::ANN_STORAGE_PROVISIONER) != Some(PROVISIONER)
        {
            return Ok(Requeue::default());
        }
        let class_name = vu::claim_class(&claim);
        let Some(class) = self.classes.get("", &class_name).filter(|c| ours(Some(c))) else {
            return Ok(Requeue::default());
        };
        let pv_name = volume_name_for(&claim);
        if self.volumes.get("", &pv_name).is_some() {
            return Ok(Requeue::default());
        }
        let Some(node) = vu::claim_annotation(&claim, vu::ANN_SELECTED_NODE) else {
            if !vu::is_wait_for_first_consumer(Some(&class)) {
                self.recorder.warning(
                    reference(claim.as_ref()),
                    "ProvisioningFailed",
                    format!("failed to provision volume with StorageClass {class_name:?}: configuration error, no node was specified: local-path volumes need volumeBindingMode WaitForFirstConsumer"),
                );
            }
            return Ok(Requeue::default());
        };
        let Some(node_obj) = self.nodes.get("", node) else {
            self.recorder.warning(
                reference(claim.as_ref()),
                "ProvisioningFailed",
                format!("failed to provision volume with StorageClass {class_name:?}: node {node:?} not found"),
            );
            return Ok(Requeue(Some(Duration::from_secs(10))));
        };
        let hostname = node_obj
            .labels()
            .get(HOSTNAME_LABEL)
            .cloned()
            .unwrap_or_else(|| node.to_string());
        let base = param(&class, "basePath").unwrap_or(&self.config.base_dir);
        if !base.starts_with('/') {
            self.recorder.warning(
                reference(claim.as_ref()),
                "ProvisioningFailed",
                format!("failed to provision volume with StorageClass {class_name:?}: basePath {base:?} is not absolute"),
            );
            return Ok(Requeue::default());
        }
        self.recorder.normal(
            reference(claim.as_ref()),
            "Provisioning",
            format!("External provisioner is provisioning volume for claim \"{ns}/{name}\""),
        );
        let pv = volume_for(&claim, &class, base, &hostname);
        let api: Api<PersistentVolume> = Api::all(self.client.clone());
        match api.create(&PostParams::default(), &pv).await {
            Ok(_) => {}
            Err(e) if is_already_exists(&e) => return Ok(Requeue::default()),
            Err(e) => return Err(api_err("creating volume", &pv_name)(e)),
        }
        tracing::info!(volume = %pv_name, claim = %key(ns, name), %node, "provisioned");
        self.recorder.normal(
            reference(claim.as_ref()),
            "ProvisioningSucceeded",
            format!("Successfully provisioned volume {pv_name}"),
        );
        Ok(Requeue::default())
    }

    async fn delete(&self, name: &str) -> Result<Requeue, LocalPathError> {
        let Some(pv) = self.volumes.get("", name) else {
            return Ok(Requeue::default());
        };
        let phase = pv.status.as_ref().and_then(|s| s.phase.as_deref());
        let policy = pv
            .spec
            .as_ref()
            .and_then(|s| s.persistent_volume_reclaim_policy.as_deref());
        if vu::volume_annotation(&pv, vu::ANN_PROVISIONED_BY) != Some(PROVISIONER)
            || phase != Some("Released")
            || policy != Some("Delete")
            || pv.metadata.deletion_timestamp.is_some()
        {
            return Ok(Requeue::default());
        }
        let ns = &self.config.helper_namespace;
        let pod_name = format!("delete-{name}");
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), ns);
        let hostname = volume_node(&pv);
        let node = hostname.as_deref().and_then(|h| {
            self.nodes
                .list()
                .into_iter()
                .find(|n| n.labels().get(HOSTNAME_LABEL).map(String::as_str) == Some(h))
                .or_else(|| self.nodes.get("", h))
        });
        let Some(node) = node else {
            tracing::info!(volume = %name, "the volume's node is gone; deleting the volume");
            return self.delete_volume(&pv, &pods, &pod_name).await;
        };
        let image = self
            .classes
            .get("", &vu::volume_class(&pv))
            .and_then(|c| param(&c, "helperImage").map(str::to_string))
            .unwrap_or_else(|| self.config.helper_image.clone());
        match self.pods.get(ns, &pod_name) {
            None => {
                let Some(pod) = cleanup_pod(&pv, &node.name_any(), &image, ns) else {
                    // Not a hostPath volume: nothing of ours on the node.
                    return self.delete_volume(&pv, &pods, &pod_name).await;
                };
                match pods.create(&PostParams::default(), &pod).await {
                    Ok(_) => {
                        tracing::info!(volume = %name, node = %node.name_any(), "cleanup pod created")
                    }
                    Err(e) if is_already_exists(&e) => {}
                    Err(e) => return Err(api_err("creating cleanup pod", &pod_name)(e)),
                }
                Ok(Requeue::default())
            }
            Some(p) => match p.status.as_ref().and_then(|s| s.phase.as_deref()) {
                Some("Succeeded") => self.delete_volume(&pv, &pods, &pod_name).await,
                Some("Failed") => {
                    self.recorder.warning(
                        reference(pv.as_ref()),
                        "VolumeFailedDelete",
                        format!(
                            "cleanup pod {ns}/{pod_name} failed on node {}; retrying",
                            node.name_any()
                        ),
                    );
                    match pods.delete(&pod_name, &finished()).await {
                        Ok(_) => {}
                        Err(e) if is_not_found(&e) => {}
                        Err(e) => return Err(api_err("deleting cleanup pod", &pod_name)(e)),
                    }
                    Ok(Requeue(Some(Duration::from_secs(30))))
                }
                // Waiting for the kubelet; the pod's updates requeue this volume.
                _ => Ok(Requeue::default()),
            },
        }
    }

    async fn delete_volume(
        &self,
        pv: &PersistentVolume,
        pods: &Api<Pod>,
        pod_name: &str,
    ) -> Result<Requeue, LocalPathError> {
        let name = pv.name_any();
        let api: Api<PersistentVolume> = Api::all(self.client.clone());
        match api.delete(&name, &DeleteParams::default()).await {
            Ok(_) => tracing::info!(volume = %name, "deleted released volume and its data"),
            Err(e) if is_not_found(&e) => {}
            Err(e) => return Err(api_err("deleting volume", &name)(e)),
        }
        match pods.delete(pod_name, &finished()).await {
            Ok(_) => {}
            Err(e) if is_not_found(&e) => {}
            Err(e) => return Err(api_err("deleting cleanup pod", pod_name)(e)),
        }
        Ok(Requeue::default())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn volumes_are_directories_on_the_selected_node() {
        let claim: PersistentVolumeClaim = serde_json::from_value(json!({
            "metadata": {"name": "data", "namespace": "ns", "uid": "u-1", "resourceVersion": "7"},
            "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "local-path",
                "resources": {"requests": {"storage": "1Gi"}}}}))
        .unwrap();
        let pv = volume_for(&claim, &default_class(), "/var/lib/pea/storage/", "node-a");
        let v = serde_json::to_value(&pv).unwrap();
        assert_eq!(v["metadata"]["name"], "pvc-u-1");
        assert_eq!(
            v["metadata"]["annotations"][vu::ANN_PROVISIONED_BY],
            PROVISIONER
        );
        assert_eq!(
            v["spec"]["hostPath"],
            json!({"path": "/var/lib/pea/storage/pvc-u-1", "type": "DirectoryOrCreate"})
        );
        assert_eq!(v["spec"]["capacity"]["storage"], "1Gi");
        assert_eq!(v["spec"]["persistentVolumeReclaimPolicy"], "Delete");
        assert_eq!(v["spec"]["volumeMode"], "Filesystem");
        assert_eq!(v["spec"]["claimRef"]["uid"], "u-1");
        assert_eq!(volume_node(&pv).as_deref(), Some("node-a"));
        let pod = cleanup_pod(&pv, "node-a", "busybox", "kube-system").unwrap();
        let p = serde_json::to_value(&pod).unwrap();
        assert_eq!(p["spec"]["nodeName"], "node-a");
        assert_eq!(
            p["spec"]["volumes"][0]["hostPath"]["path"],
            "/var/lib/pea/storage"
        );
        assert_eq!(
            p["spec"]["containers"][0]["command"],
            json!(["rm", "-rf", "/data/pvc-u-1"])
        );
    }
}
