//! Pod garbage collection (kube's `pkg/controller/podgc`), the two parts a cluster without
//! kubelets on dead nodes needs: pods bound to a Node that no longer exists, and unscheduled
//! pods that are being deleted (no kubelet will ever confirm their termination), are deleted
//! with grace period 0. Runs every 20 s (kube's gcCheckPeriod); a pod's node is confirmed
//! absent with a read from the API server, not just the cache, before its pods go.
//! Not done: the terminated-pod threshold (--terminated-pod-gc-threshold).

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::DeleteParams;
use kube::{Api, Client, ResourceExt};

use crate::informer::Cache;
use crate::podutil::node_name;
use crate::{is_not_found, Informers};

pub const PERIOD: Duration = Duration::from_secs(20);

#[derive(Debug, thiserror::Error)]
pub enum PodGcError {
    #[error("deleting pod {key}: {source}")]
    Delete {
        key: String,
        #[source]
        source: kube::Error,
    },
}

pub struct PodGcController {
    client: Client,
    pods: Arc<Cache<Pod>>,
    nodes: Arc<Cache<Node>>,
}

impl std::fmt::Debug for PodGcController {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PodGcController").finish_non_exhaustive()
    }
}

impl PodGcController {
    pub fn register(informers: &Informers, client: Client) -> Arc<Self> {
        // The informers run only when someone registered a handler; this controller reads
        // their caches on a timer, so it registers no-op handlers to have them started.
        informers.pods.add_handler(|_| {});
        informers.nodes.add_handler(|_| {});
        Arc::new(Self {
            client,
            pods: informers.pods.cache(),
            nodes: informers.nodes.cache(),
        })
    }

    pub async fn run(self: Arc<Self>) {
        self.pods.wait_synced().await;
        self.nodes.wait_synced().await;
        loop {
            tokio::time::sleep(PERIOD).await;
            if let Err(e) = self.sweep().await {
                tracing::warn!(error = %e, "pod gc sweep failed");
            }
        }
    }

    /// The pods to collect now; `node_exists` is asked for nodes the cache does not know.
    async fn sweep(&self) -> Result<(), PodGcError> {
        let nodes_api: Api<Node> = Api::all(self.client.clone());
        let mut confirmed_gone: Vec<String> = Vec::new();
        for pod in self.pods.list() {
            let node = node_name(&pod).to_string();
            let orphan = if node.is_empty() || self.nodes.get("", &node).is_some() {
                false
            } else if confirmed_gone.contains(&node) {
                true
            } else {
                match nodes_api.get(&node).await {
                    Err(e) if is_not_found(&e) => {
                        confirmed_gone.push(node.clone());
                        true
                    }
                    _ => false,
                }
            };
            let unscheduled_terminating =
                node.is_empty() && pod.metadata.deletion_timestamp.is_some();
            if !(orphan || unscheduled_terminating) {
                continue;
            }
            let ns = pod.namespace().unwrap_or_default();
            tracing::info!(pod = %format!("{ns}/{}", pod.name_any()), node = %node, orphan, "collecting pod");
            match Api::<Pod>::namespaced(self.client.clone(), &ns)
                .delete(&pod.name_any(), &DeleteParams::default().grace_period(0))
                .await
            {
                Ok(_) => {}
                Err(e) if is_not_found(&e) => {}
                Err(source) => {
                    return Err(PodGcError::Delete {
                        key: format!("{ns}/{}", pod.name_any()),
                        source,
                    })
                }
            }
        }
        Ok(())
    }
}
