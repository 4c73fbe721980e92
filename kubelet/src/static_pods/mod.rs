//! Static pods: pods from manifest files in `staticPodPath`, run by this kubelet without the
//! API server, and their mirror pods in the API (kubelet's file source and mirror client).
//!
//! Every `fileCheckFrequency` the directory is read again: a new manifest starts a pod, a
//! changed one (another config hash) replaces the pod, a removed one stops it and deletes its
//! mirror. The same pass makes each running static pod's mirror right: created when missing
//! (annotated with the config hash, owned by the Node), replaced when stale or being deleted.
//! The pod workers write the static pod's status to its mirror (see `pods::worker`).

pub mod manifest;

use std::collections::HashMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{DeleteParams, PostParams, Preconditions};
use kube::Api;
use tokio::sync::{mpsc, Notify};

use crate::pods::Shared;
pub use manifest::{is_mirror, is_static};

/// What the source tells the pod dispatcher.
#[derive(Debug)]
pub enum Change {
    /// Run (or refresh) this static pod.
    Apply(Box<Pod>),
    /// Stop the static pod with this UID.
    Remove(String),
}

/// The running source: changes for the dispatcher and a bell that makes it look again now
/// (rung when a mirror pod is deleted in the API).
#[derive(Debug)]
pub struct Source {
    pub changes: mpsc::Receiver<Change>,
    pub recheck: Arc<Notify>,
}

/// Reads the directory once (so static pods are dispatched before anything else), then keeps
/// watching it. Without `staticPodPath` the source never sends.
pub fn start(s: Arc<Shared>) -> Source {
    let (tx, rx) = mpsc::channel(256);
    let recheck = Arc::new(Notify::new());
    if let Some(dir) = s.cfg.static_pod_path.clone() {
        let mut state = State::default();
        state.scan(&s, &dir, &tx);
        let bell = recheck.clone();
        tokio::spawn(async move {
            loop {
                state.mirrors(&s, &tx).await;
                tokio::select! {
                    _ = tokio::time::sleep(s.cfg.file_check_frequency) => {}
                    _ = bell.notified() => {}
                }
                state.scan(&s, &dir, &tx);
            }
        });
    }
    Source {
        changes: rx,
        recheck,
    }
}

#[derive(Debug, Default)]
struct State {
    /// By namespace/name: the static pod running.
    running: HashMap<String, Pod>,
    /// Mirrors to delete (pods whose manifest went away or changed): namespace/name → hash.
    stale_mirrors: Vec<(String, String, String)>,
    /// The last directory error reported (reported again only when it changes).
    last_error: Option<String>,
}

fn key(p: &Pod) -> String {
    format!(
        "{}/{}",
        p.metadata.namespace.as_deref().unwrap_or(""),
        p.metadata.name.as_deref().unwrap_or("")
    )
}

impl State {
    fn scan(&mut self, s: &Shared, dir: &std::path::Path, tx: &mpsc::Sender<Change>) {
        let pods = match manifest::read_dir(dir, &s.cfg.node_name) {
            Ok((pods, errors)) => {
                for e in errors {
                    tracing::warn!(error = %e, "skipping a static pod manifest");
                }
                self.last_error = None;
                pods
            }
            Err(e) => {
                // kubelet keeps what runs when the directory cannot be read.
                if self.last_error.as_deref() != Some(&e.to_string()) {
                    tracing::warn!(error = %e, "reading static pods");
                    self.last_error = Some(e.to_string());
                }
                return;
            }
        };
        let mut seen = HashMap::new();
        for pod in pods {
            let k = key(&pod);
            if seen.contains_key(&k) {
                tracing::warn!(pod = %k, "two static pod manifests name the same pod; the first wins");
                continue;
            }
            seen.insert(k, pod);
        }
        for (k, old) in &self.running {
            let replaced = seen
                .get(k)
                .is_none_or(|new| manifest::hash(new) != manifest::hash(old));
            if replaced {
                tracing::info!(pod = %k, uid = %manifest::hash(old), "static pod removed or changed; stopping it");
                let _ = tx.try_send(Change::Remove(manifest::hash(old).to_string()));
                self.stale_mirrors.push((
                    old.metadata.namespace.clone().unwrap_or_default(),
                    old.metadata.name.clone().unwrap_or_default(),
                    manifest::hash(old).to_string(),
                ));
            }
        }
        for (k, new) in &seen {
            let known = self
                .running
                .get(k)
                .is_some_and(|old| manifest::hash(old) == manifest::hash(new));
            if !known {
                tracing::info!(pod = %k, uid = %manifest::hash(new), "static pod from its manifest");
                let _ = tx.try_send(Change::Apply(Box::new(new.clone())));
            }
        }
        self.running = seen
            .into_iter()
            .map(|(k, new)| match self.running.remove(&k) {
                // Keep the first-seen copy of an unchanged pod (its config.seen stays).
                Some(old) if manifest::hash(&old) == manifest::hash(&new) => (k, old),
                _ => (k, new),
            })
            .collect();
    }

    /// Makes the API's mirror pods match the static pods; an unreachable API is retried on
    /// the next pass.
    async fn mirrors(&mut self, s: &Shared, tx: &mpsc::Sender<Change>) {
        let mut keep = Vec::new();
        for (ns, name, hash) in std::mem::take(&mut self.stale_mirrors) {
            let api: Api<Pod> = Api::namespaced(s.client.clone(), &ns);
            match api.get_opt(&name).await {
                Ok(Some(m)) if manifest::annotation(&m, manifest::CONFIG_MIRROR) == Some(&hash) => {
                    if let Err(e) = delete_mirror(&api, &m).await {
                        tracing::warn!(pod = %format!("{ns}/{name}"), error = %e, "deleting a mirror pod");
                        keep.push((ns, name, hash));
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::debug!(error = %e, "mirror pods: API unreachable");
                    keep.push((ns, name, hash));
                }
            }
        }
        self.stale_mirrors = keep;
        for pod in self.running.values() {
            match ensure_mirror(s, pod).await {
                Ok(true) => {
                    // A new mirror has no status: the worker writes it again.
                    let _ = tx.try_send(Change::Apply(Box::new(pod.clone())));
                }
                Ok(false) => {}
                Err(e) => tracing::debug!(pod = %key(pod), error = %e, "mirror pod not made yet"),
            }
        }
    }
}

async fn delete_mirror(api: &Api<Pod>, mirror: &Pod) -> Result<(), kube::Error> {
    let dp = DeleteParams {
        grace_period_seconds: Some(0),
        preconditions: Some(Preconditions {
            uid: mirror.metadata.uid.clone(),
            resource_version: None,
        }),
        ..Default::default()
    };
    match api
        .delete(mirror.metadata.name.as_deref().unwrap_or(""), &dp)
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => Ok(()),
        Err(e) => Err(e),
    }
}

/// Creates the mirror when missing (or replaces a stale/terminating one); true when created.
async fn ensure_mirror(s: &Shared, pod: &Pod) -> Result<bool, kube::Error> {
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let name = pod.metadata.name.as_deref().unwrap_or("");
    let hash = manifest::hash(pod);
    let api: Api<Pod> = Api::namespaced(s.client.clone(), ns);
    if let Some(existing) = api.get_opt(name).await? {
        let current = manifest::annotation(&existing, manifest::CONFIG_MIRROR) == Some(hash)
            && existing.metadata.deletion_timestamp.is_none();
        if current {
            return Ok(false);
        }
        if !is_mirror(&existing) {
            tracing::warn!(pod = %key(pod), "an API pod that is not a mirror has the static pod's name; leaving it");
            return Ok(false);
        }
        tracing::info!(pod = %key(pod), "replacing a stale or terminating mirror pod");
        delete_mirror(&api, &existing).await?;
    }
    let node: Node = Api::all(s.client.clone()).get(&s.cfg.node_name).await?;
    let mut annotations = pod.metadata.annotations.clone().unwrap_or_default();
    annotations.insert(manifest::CONFIG_MIRROR.into(), hash.to_string());
    let mirror = Pod {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            namespace: Some(ns.to_string()),
            labels: pod.metadata.labels.clone(),
            annotations: Some(annotations),
            owner_references: Some(vec![OwnerReference {
                api_version: "v1".into(),
                kind: "Node".into(),
                name: s.cfg.node_name.clone(),
                uid: node.metadata.uid.unwrap_or_default(),
                controller: Some(true),
                block_owner_deletion: None,
            }]),
            ..Default::default()
        },
        spec: pod.spec.clone(),
        status: None,
    };
    match api.create(&PostParams::default(), &mirror).await {
        Ok(_) => {
            tracing::info!(pod = %key(pod), "mirror pod created");
            Ok(true)
        }
        // Made meanwhile (a previous pass whose answer was lost): fine.
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
        Err(e) => Err(e),
    }
}
