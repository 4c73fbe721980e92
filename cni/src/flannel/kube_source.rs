//! The cluster-API subnet source, like flannel's kube subnet manager: the node's lease is its
//! Node's `spec.podCIDR`; the agent publishes its VTEP under flannel's annotation names on its own
//! Node, and learns the other nodes from a list+watch of all Nodes (a reflector cache that resumes
//! from its resourceVersion and relists when that is too old). Node objects become the same
//! [`NodeRecord`]s the static registry holds, so one reconcile serves both sources.

use std::{collections::BTreeMap, path::Path, sync::Arc, time::Duration};

use futures_util::StreamExt;
use ipnet::Ipv4Net;
use k8s_openapi::api::core::v1::Node;
use kube::{
    api::{Api, Patch, PatchParams},
    config::{KubeConfigOptions, Kubeconfig},
    runtime::{
        reflector::{self, Store},
        watcher, WatchStreamExt,
    },
    Client,
};

use super::registry::{
    NodeRecord, ANN_BACKEND_DATA, ANN_BACKEND_TYPE, ANN_KUBE_SUBNET_MANAGER, ANN_PUBLIC_IP,
    RECORD_VERSION,
};

/// How often a node without a podCIDR is looked at again (and the wait logged).
const POD_CIDR_POLL: Duration = Duration::from_secs(1);
const POD_CIDR_LOG_EVERY: u32 = 30;

#[derive(Debug, thiserror::Error)]
pub enum KubeSourceError {
    #[error("kubeconfig {path}: {source}")]
    Kubeconfig {
        path: String,
        #[source]
        source: kube::config::KubeconfigError,
    },
    #[error("no kubeconfig given and none inferred (in-cluster or $KUBECONFIG): {0}")]
    Infer(#[source] kube::config::InferConfigError),
    #[error("building the API client: {0}")]
    Client(#[source] kube::Error),
    #[error("node {node}: spec.podCIDR {cidr:?} is not an IPv4 network")]
    BadPodCidr { node: String, cidr: String },
    #[error("node {node}: spec.podCIDR {cidr} is not a /30 or larger inside the cluster network {network}")]
    PodCidrOutsideNetwork {
        node: String,
        cidr: Ipv4Net,
        network: Ipv4Net,
    },
    #[error("patching node {node}'s annotations: {source}")]
    Publish {
        node: String,
        #[source]
        source: kube::Error,
    },
    #[error("the Node watch stopped before its first full list")]
    WatchEnded,
}

/// A connected source: the API client, this node's name and the Node cache.
#[derive(Debug)]
pub struct KubeSource {
    nodes: Api<Node>,
    node_name: String,
    store: Store<Node>,
    writer: Option<reflector::store::Writer<Node>>,
    changed: Arc<tokio::sync::Notify>,
}

impl KubeSource {
    /// Connects with `kubeconfig` (or the in-cluster / `$KUBECONFIG` config when `None`).
    pub async fn connect(
        kubeconfig: Option<&Path>,
        node_name: &str,
    ) -> Result<Self, KubeSourceError> {
        let config = match kubeconfig {
            Some(path) => {
                let kerr = |source| KubeSourceError::Kubeconfig {
                    path: path.display().to_string(),
                    source,
                };
                let kc = Kubeconfig::read_from(path).map_err(kerr)?;
                kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
                    .await
                    .map_err(kerr)?
            }
            None => kube::Config::infer()
                .await
                .map_err(KubeSourceError::Infer)?,
        };
        let client = Client::try_from(config).map_err(KubeSourceError::Client)?;
        let (store, writer) = reflector::store();
        Ok(KubeSource {
            nodes: Api::all(client),
            node_name: node_name.into(),
            store,
            writer: Some(writer),
            changed: Arc::new(tokio::sync::Notify::new()),
        })
    }

    /// Waits until this node's Node object exists and has a `spec.podCIDR`, then checks it lies
    /// in `network`. API errors are logged and retried: the agent may start before the server.
    pub async fn wait_for_pod_cidr(&self, network: Ipv4Net) -> Result<Ipv4Net, KubeSourceError> {
        let mut round: u32 = 0;
        let cidr = loop {
            let why = match self.nodes.get_opt(&self.node_name).await {
                Ok(Some(node)) => match node.spec.and_then(|s| s.pod_cidr) {
                    Some(c) => break c,
                    None => "it has no spec.podCIDR yet".to_string(),
                },
                Ok(None) => "the Node object does not exist yet".to_string(),
                Err(e) => format!("reading it failed: {e}"),
            };
            if round % POD_CIDR_LOG_EVERY == 0 {
                tracing::info!(node = %self.node_name, "waiting for the node's podCIDR: {why}");
            }
            round = round.wrapping_add(1);
            tokio::time::sleep(POD_CIDR_POLL).await;
        };
        let subnet: Ipv4Net = cidr.parse().map_err(|_| KubeSourceError::BadPodCidr {
            node: self.node_name.clone(),
            cidr: cidr.clone(),
        })?;
        if !network.contains(&subnet) || subnet.prefix_len() > 30 {
            return Err(KubeSourceError::PodCidrOutsideNetwork {
                node: self.node_name.clone(),
                cidr: subnet,
                network,
            });
        }
        Ok(subnet.trunc())
    }

    /// Writes `rec`'s annotations onto this node's Node (a merge patch of just those keys, so
    /// other annotations stay), through `nodes/status` as flannel does.
    pub async fn publish(&self, rec: &NodeRecord) -> Result<(), KubeSourceError> {
        self.patch_annotations(&rec.annotations, false).await
    }

    async fn patch_annotations(
        &self,
        annotations: &BTreeMap<String, String>,
        dry_run: bool,
    ) -> Result<(), KubeSourceError> {
        let patch = serde_json::json!({"metadata": {"annotations": annotations}});
        let params = PatchParams {
            dry_run,
            ..Default::default()
        };
        // Through nodes/status, as flannel's kube subnet manager: its ClusterRole may patch
        // only that subresource, and the API server keeps metadata written there (kube's
        // Node status strategy resets only spec).
        self.nodes
            .patch_status(&self.node_name, &params, &Patch::Merge(&patch))
            .await
            .map_err(|source| KubeSourceError::Publish {
                node: self.node_name.clone(),
                source,
            })?;
        Ok(())
    }

    /// Checks, with a dry-run patch, that this identity may annotate this Node, before anything
    /// is set up on the host (a kubeconfig of another node's identity must leave nothing).
    pub async fn check_can_publish(&self) -> Result<(), KubeSourceError> {
        let probe = BTreeMap::from([(ANN_KUBE_SUBNET_MANAGER.to_string(), "true".to_string())]);
        self.patch_retrying(&probe, true).await
    }

    /// [`Self::publish`] at start, retried like [`Self::check_can_publish`].
    pub async fn publish_retrying(&self, rec: &NodeRecord) -> Result<(), KubeSourceError> {
        self.patch_retrying(&rec.annotations, false).await
    }

    /// Transient failures (server away, 5xx, 429) are retried; a refusal (other 4xx) is returned.
    async fn patch_retrying(
        &self,
        annotations: &BTreeMap<String, String>,
        dry_run: bool,
    ) -> Result<(), KubeSourceError> {
        let mut round: u32 = 0;
        loop {
            match self.patch_annotations(annotations, dry_run).await {
                Err(KubeSourceError::Publish {
                    source: kube::Error::Api(resp),
                    ..
                }) if (400..500).contains(&resp.code) && resp.code != 429 => {
                    return Err(KubeSourceError::Publish {
                        node: self.node_name.clone(),
                        source: kube::Error::Api(resp),
                    })
                }
                Err(e) => {
                    if round % POD_CIDR_LOG_EVERY == 0 {
                        tracing::warn!("{e}; retrying");
                    }
                    round = round.wrapping_add(1);
                    tokio::time::sleep(POD_CIDR_POLL).await;
                }
                Ok(()) => return Ok(()),
            }
        }
    }

    /// Starts the list+watch of all Nodes and waits for its first complete list, so the first
    /// reconcile never mistakes an empty cache for "every node left".
    pub async fn start_watch(&mut self) -> Result<(), KubeSourceError> {
        let Some(writer) = self.writer.take() else {
            return Ok(());
        };
        let changed = self.changed.clone();
        let stream = watcher(self.nodes.clone(), watcher::Config::default())
            .default_backoff()
            .reflect(writer);
        tokio::spawn(async move {
            let mut stream = std::pin::pin!(stream);
            // What each Node last meant for the overlay: kubelets update their Node's status
            // every few seconds, and those updates must not each cost a reconcile.
            let mut seen: BTreeMap<String, LeaseView> = BTreeMap::new();
            while let Some(ev) = stream.next().await {
                let relevant = match ev {
                    // Errors are retried by the backoff; the cache keeps its last state.
                    Err(e) => {
                        tracing::warn!("watching nodes: {e}");
                        false
                    }
                    Ok(watcher::Event::Init | watcher::Event::InitApply(_)) => false,
                    // A relist may have dropped nodes whose deletion was never seen.
                    Ok(watcher::Event::InitDone) => true,
                    Ok(watcher::Event::Apply(n)) => {
                        let view = record_of(&n);
                        seen.insert(name_of(&n), view.clone()) != Some(view)
                    }
                    Ok(watcher::Event::Delete(n)) => seen.remove(&name_of(&n)).is_some(),
                };
                if relevant {
                    changed.notify_one();
                }
            }
        });
        self.store
            .wait_until_ready()
            .await
            .map_err(|_| KubeSourceError::WatchEnded)
    }

    /// Resolves when the Node cache changed since the last call.
    pub async fn changed(&self) {
        self.changed.notified().await
    }

    /// The cached Nodes as records (skipping nodes no agent has published yet), plus why
    /// unusable ones were skipped. Our own Node is re-annotated if its annotations went.
    pub async fn read_all(&self, own: &NodeRecord) -> (Vec<NodeRecord>, Vec<String>) {
        let mut recs = Vec::new();
        let mut bad = Vec::new();
        // This node's Node as the cache has it: Some(its podCIDR) when it exists.
        let mut own_cidr: Option<Option<String>> = None;
        for node in self.store.state() {
            if node.metadata.name.as_deref() == Some(own.name.as_str()) {
                own_cidr = Some(node.spec.as_ref().and_then(|s| s.pod_cidr.clone()));
            }
            match record_of(&node) {
                Ok(Some(r)) => recs.push(r),
                Ok(None) => {}
                Err(why) => bad.push(why),
            }
        }
        recs.sort_by(|a, b| a.name.cmp(&b.name));
        let Some(cidr) = own_cidr else {
            return (recs, bad); // our Node is gone: nothing to publish on
        };
        let same_subnet = cidr
            .as_deref()
            .and_then(|c| c.parse::<Ipv4Net>().ok())
            .is_some_and(|c| c.trunc() == own.pod_cidr);
        if !same_subnet {
            bad.push(format!(
                "node {}: spec.podCIDR is now {cidr:?} but the agent runs with {}; restart the agent",
                own.name, own.pod_cidr
            ));
        } else if recs
            .iter()
            .find(|r| r.name == own.name)
            .map(|r| &r.annotations)
            != Some(&own.annotations)
        {
            // Our annotations went (removed, or the Node was re-created): put them back.
            match self.publish(own).await {
                Ok(()) => tracing::info!(node = %own.name, "re-published this node's annotations"),
                Err(e) => bad.push(e.to_string()),
            }
        }
        (recs, bad)
    }
}

/// What a Node means for the overlay.
type LeaseView = Result<Option<NodeRecord>, String>;

fn name_of(node: &Node) -> String {
    node.metadata.name.clone().unwrap_or_default()
}

/// The record a Node object stands for: `None` while it has no podCIDR or no flannel agent has
/// published on it (flannel's kube subnet manager skips those too).
pub fn record_of(node: &Node) -> LeaseView {
    let name = name_of(node);
    let Some(cidr) = node.spec.as_ref().and_then(|s| s.pod_cidr.as_deref()) else {
        return Ok(None);
    };
    let empty = BTreeMap::new();
    let anns = node.metadata.annotations.as_ref().unwrap_or(&empty);
    // As flannel's kube subnet manager: the annotation must say "true", not merely be there.
    if anns.get(ANN_KUBE_SUBNET_MANAGER).map(String::as_str) != Some("true") {
        return Ok(None);
    }
    let pod_cidr: Ipv4Net = cidr
        .parse()
        .map_err(|_| format!("node {name}: spec.podCIDR {cidr:?} is not an IPv4 network"))?;
    let annotations = [
        ANN_BACKEND_TYPE,
        ANN_BACKEND_DATA,
        ANN_PUBLIC_IP,
        ANN_KUBE_SUBNET_MANAGER,
    ]
    .into_iter()
    .filter_map(|k| anns.get(k).map(|v| (k.to_string(), v.clone())))
    .collect();
    Ok(Some(NodeRecord {
        version: RECORD_VERSION,
        name,
        pod_cidr,
        annotations,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(json: serde_json::Value) -> Node {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn a_published_node_is_the_same_record_the_static_source_writes() {
        let rec = NodeRecord::new(
            "n2",
            "10.244.2.0/24".parse().unwrap(),
            "192.168.50.2".parse().unwrap(),
            1,
            "0a:58:0a:f4:02:00",
        );
        let mut anns = serde_json::to_value(&rec.annotations).unwrap();
        anns["node.alpha.kubernetes.io/ttl"] = "0".into(); // unrelated annotations are ignored
        let n = node(serde_json::json!({
            "metadata": {"name": "n2", "annotations": anns},
            "spec": {"podCIDR": "10.244.2.0/24"}
        }));
        assert_eq!(record_of(&n).unwrap(), Some(rec));
    }

    #[test]
    fn nodes_without_agent_or_podcidr_are_skipped_and_bad_cidrs_named() {
        let bare = node(
            serde_json::json!({"metadata": {"name": "a"}, "spec": {"podCIDR": "10.244.3.0/24"}}),
        );
        assert_eq!(record_of(&bare).unwrap(), None);
        let no_cidr = node(serde_json::json!({"metadata": {"name": "b",
            "annotations": {ANN_KUBE_SUBNET_MANAGER: "true"}}, "spec": {}}));
        assert_eq!(record_of(&no_cidr).unwrap(), None);
        let v6 = node(serde_json::json!({"metadata": {"name": "c",
            "annotations": {ANN_KUBE_SUBNET_MANAGER: "true"}}, "spec": {"podCIDR": "fd00::/64"}}));
        let e = record_of(&v6).unwrap_err();
        assert!(e.contains("node c") && e.contains("fd00::/64"), "{e}");
        // The kube-subnet-manager annotation counts only when it says "true" (as in flannel).
        for value in ["false", "", "yes"] {
            let off = node(serde_json::json!({"metadata": {"name": "d",
                "annotations": {ANN_KUBE_SUBNET_MANAGER: value}},
                "spec": {"podCIDR": "10.244.4.0/24"}}));
            assert_eq!(record_of(&off).unwrap(), None, "{value:?}");
        }
    }
}
