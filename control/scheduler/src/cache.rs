//! The scheduler's view of the cluster: every node with the pods bound (or assumed) to it.
//! Fed by the informers (watch events) and by the scheduling loop (assume before binding,
//! forget when a binding fails). Pure data: no I/O, no clocks.

use std::collections::HashMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, Pod};

use crate::node_info::{NodeInfo, PodInfo};

/// Where a pod sits in the cache.
#[derive(Debug, Clone)]
struct Placement {
    node: String,
    /// Sent for binding, not yet seen bound through the watch.
    assumed: bool,
}

/// Whether a node change can make an unschedulable pod schedulable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeChange {
    Added,
    /// Labels, taints, unschedulable, allocatable or images changed.
    Relevant,
    /// Only status heartbeats or other fields no filter reads.
    Irrelevant,
}

#[derive(Debug, Default)]
pub struct ClusterState {
    /// Nodes whose object we have, in a stable order (the filter walk's order).
    nodes: Vec<NodeInfo>,
    index: HashMap<String, usize>,
    /// Pods bound to nodes whose object is not (or no longer) here.
    ghosts: HashMap<String, NodeInfo>,
    /// Pod uid → where it is.
    pods: HashMap<String, Placement>,
    /// Image name → how many nodes report it (ImageLocality's spread).
    image_nodes: HashMap<String, usize>,
    /// Pods in the cache with pod (anti-)affinity terms: InterPodAffinity skips its cluster
    /// walk when there are none and the pod has none either.
    affinity_pods: usize,
    /// Claims, volumes and classes (VolumeBinding).
    pub volumes: crate::volumes::VolumeState,
    /// Services' and workloads' selectors (PodTopologySpread's default constraints).
    pub spread: crate::spread_sources::SpreadSources,
    /// Namespace name → labels (InterPodAffinity's `namespaceSelector`); shared with a cycle's
    /// state, replaced on write.
    pub namespaces: std::sync::Arc<NamespaceLabels>,
    /// PodDisruptionBudgets (preemption's choice of victims and node).
    pub budgets: crate::disruption_budgets::DisruptionBudgets,
}

/// Namespace name → its labels.
pub type NamespaceLabels = HashMap<String, std::collections::BTreeMap<String, String>>;

impl crate::informer::Cached for k8s_openapi::api::core::v1::Namespace {
    // A namespace's labels may let a pending pod's affinity match: the same as a pod added.
    const EVENT: Option<crate::queue::ClusterEvent> =
        Some(crate::queue::ClusterEvent::AssignedPodAdded);
    fn cache_key(&self) -> String {
        self.metadata.name.clone().unwrap_or_default()
    }
    fn upsert(self, cache: &mut ClusterState) {
        let name = self.metadata.name.unwrap_or_default();
        let labels = self.metadata.labels.unwrap_or_default();
        if cache.namespaces.get(&name) != Some(&labels) {
            std::sync::Arc::make_mut(&mut cache.namespaces).insert(name, labels);
        }
    }
    fn remove(&self, cache: &mut ClusterState) {
        let name = self.metadata.name.as_deref().unwrap_or_default();
        if cache.namespaces.contains_key(name) {
            std::sync::Arc::make_mut(&mut cache.namespaces).remove(name);
        }
    }
    fn retain(cache: &mut ClusterState, keep: &std::collections::HashSet<String>) {
        std::sync::Arc::make_mut(&mut cache.namespaces).retain(|n, _| keep.contains(n));
    }
}

fn relevant(old: &Node, new: &Node) -> bool {
    let spec = |n: &Node| n.spec.as_ref().map(|s| (s.unschedulable, s.taints.clone()));
    let status = |n: &Node| {
        n.status
            .as_ref()
            .map(|s| (s.allocatable.clone(), s.images.clone()))
    };
    old.metadata.labels != new.metadata.labels
        || spec(old) != spec(new)
        || status(old) != status(new)
}

impl ClusterState {
    pub fn nodes(&self) -> &[NodeInfo] {
        &self.nodes
    }

    pub fn num_nodes(&self) -> usize {
        self.nodes.len()
    }

    pub fn node(&self, name: &str) -> Option<&NodeInfo> {
        self.index.get(name).map(|i| &self.nodes[*i])
    }

    pub fn image_node_count(&self, image: &str) -> usize {
        self.image_nodes.get(image).copied().unwrap_or(0)
    }

    /// How many cached pods carry pod (anti-)affinity terms.
    pub fn affinity_pods(&self) -> usize {
        self.affinity_pods
    }

    pub fn is_assumed(&self, uid: &str) -> bool {
        self.pods.get(uid).is_some_and(|p| p.assumed)
    }

    pub fn contains_pod(&self, uid: &str) -> bool {
        self.pods.contains_key(uid)
    }

    fn info_mut(&mut self, name: &str) -> &mut NodeInfo {
        match self.index.get(name) {
            Some(i) => &mut self.nodes[*i],
            None => self
                .ghosts
                .entry(name.to_string())
                .or_insert_with(|| NodeInfo::new(name)),
        }
    }

    fn count_images(&mut self, info_images: Vec<String>, delta: isize) {
        for name in info_images {
            let e = self.image_nodes.entry(name.clone()).or_default();
            *e = e.saturating_add_signed(delta);
            if *e == 0 {
                self.image_nodes.remove(&name);
            }
        }
    }

    pub fn upsert_node(&mut self, node: Node) -> NodeChange {
        let name = node.metadata.name.clone().unwrap_or_default();
        let node = Arc::new(node);
        if let Some(&i) = self.index.get(&name) {
            let old_images: Vec<String> = self.nodes[i].images.keys().cloned().collect();
            let change = match &self.nodes[i].node {
                Some(old) if !relevant(old, &node) => NodeChange::Irrelevant,
                _ => NodeChange::Relevant,
            };
            self.nodes[i].set_node(node);
            if change == NodeChange::Relevant {
                let new_images: Vec<String> = self.nodes[i].images.keys().cloned().collect();
                self.count_images(old_images, -1);
                self.count_images(new_images, 1);
            }
            return change;
        }
        let mut info = self
            .ghosts
            .remove(&name)
            .unwrap_or_else(|| NodeInfo::new(&name));
        info.set_node(node);
        let images: Vec<String> = info.images.keys().cloned().collect();
        self.count_images(images, 1);
        self.index.insert(name, self.nodes.len());
        self.nodes.push(info);
        NodeChange::Added
    }

    pub fn remove_node(&mut self, name: &str) {
        let Some(i) = self.index.remove(name) else {
            return;
        };
        let mut info = self.nodes.swap_remove(i);
        if let Some(moved) = self.nodes.get(i) {
            self.index.insert(moved.name.clone(), i);
        }
        let images: Vec<String> = info.images.keys().cloned().collect();
        self.count_images(images, -1);
        // Pods still bound there keep their place until their own delete events arrive.
        if !info.pods.is_empty() {
            info.node = None;
            info.images.clear();
            self.ghosts.insert(name.to_string(), info);
        }
    }

    /// Keeps only the named nodes (after the informer relisted).
    pub fn retain_nodes(&mut self, keep: &std::collections::HashSet<String>) {
        let gone: Vec<String> = self
            .nodes
            .iter()
            .filter(|n| !keep.contains(&n.name))
            .map(|n| n.name.clone())
            .collect();
        for n in gone {
            self.remove_node(&n);
        }
    }

    fn take_pod(&mut self, uid: &str) -> Option<Placement> {
        let place = self.pods.remove(uid)?;
        let info = self.info_mut(&place.node);
        let removed = info.remove_pod(uid);
        if info.node.is_none() && info.pods.is_empty() {
            self.ghosts.remove(&place.node);
        }
        if removed.is_some_and(|p| p.has_affinity) {
            self.affinity_pods -= 1;
        }
        Some(place)
    }

    /// A pod seen through the watch with `spec.nodeName` set: adds, moves, refreshes it, or
    /// confirms an assumed pod. Terminal pods hold no resources and leave the cache.
    pub fn upsert_bound_pod(&mut self, pod: Arc<Pod>) {
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let node = pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.clone())
            .unwrap_or_default();
        let terminal = matches!(
            pod.status.as_ref().and_then(|s| s.phase.as_deref()),
            Some("Succeeded" | "Failed")
        );
        self.take_pod(&uid);
        if terminal || node.is_empty() {
            return;
        }
        let pi = Arc::new(PodInfo::new(pod));
        self.affinity_pods += usize::from(pi.has_affinity);
        self.info_mut(&node).add_pod(pi);
        self.pods.insert(
            uid,
            Placement {
                node,
                assumed: false,
            },
        );
    }

    pub fn remove_pod(&mut self, uid: &str) {
        self.take_pod(uid);
    }

    /// Keeps only the pods with these uids that are confirmed (assumed pods stay: their
    /// binding may still be in flight).
    pub fn retain_pods(&mut self, keep: &std::collections::HashSet<String>) {
        let gone: Vec<String> = self
            .pods
            .iter()
            .filter(|(uid, p)| !p.assumed && !keep.contains(*uid))
            .map(|(uid, _)| uid.clone())
            .collect();
        for uid in gone {
            self.take_pod(&uid);
        }
    }

    /// Counts the pod on `node` before its binding is written, so the next cycle sees it.
    pub fn assume(&mut self, pod: Arc<PodInfo>, node: &str) {
        let uid = pod.uid.clone();
        self.take_pod(&uid);
        self.affinity_pods += usize::from(pod.has_affinity);
        self.info_mut(node).add_pod(pod);
        self.pods.insert(
            uid,
            Placement {
                node: node.to_string(),
                assumed: true,
            },
        );
    }

    /// Undoes [`ClusterState::assume`] after a failed binding (unless the watch confirmed it).
    pub fn forget(&mut self, uid: &str) {
        if self.is_assumed(uid) {
            self.take_pod(uid);
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn node(name: &str, cpu: &str, images: serde_json::Value) -> Node {
        serde_json::from_value(json!({"metadata": {"name": name},
            "status": {"allocatable": {"cpu": cpu, "pods": "110"}, "images": images}}))
        .unwrap()
    }

    fn pod(uid: &str, node: &str, phase: &str) -> Arc<Pod> {
        Arc::new(
            serde_json::from_value(json!({"metadata": {"name": uid, "namespace": "d", "uid": uid},
                "spec": {"nodeName": node, "containers": [{"name": "c", "resources": {"requests": {"cpu": "1"}}}]},
                "status": {"phase": phase}}))
            .unwrap(),
        )
    }

    #[test]
    fn pods_follow_nodes_assume_and_forget() {
        let mut c = ClusterState::default();
        // A pod bound to a node we have not seen yet waits as a ghost.
        c.upsert_bound_pod(pod("p1", "n1", "Running"));
        assert_eq!(c.num_nodes(), 0);
        assert_eq!(c.upsert_node(node("n1", "4", json!([]))), NodeChange::Added);
        assert_eq!(c.node("n1").unwrap().requested.milli_cpu, 1000);
        // Heartbeat-like update: nothing a filter reads.
        let mut n = node("n1", "4", json!([]));
        n.metadata.annotations = Some([("a".to_string(), "b".to_string())].into());
        assert_eq!(c.upsert_node(n), NodeChange::Irrelevant);
        assert_eq!(
            c.upsert_node(node("n1", "8", json!([]))),
            NodeChange::Relevant
        );

        let pi = Arc::new(PodInfo::new(pod("p2", "", "Pending")));
        c.assume(pi, "n1");
        assert!(c.is_assumed("p2"));
        assert_eq!(c.node("n1").unwrap().requested.milli_cpu, 2000);
        c.forget("p2");
        assert_eq!(c.node("n1").unwrap().requested.milli_cpu, 1000);

        // Confirmation through the watch replaces the assumed entry, forget is then a no-op.
        c.assume(Arc::new(PodInfo::new(pod("p3", "", "Pending"))), "n1");
        c.upsert_bound_pod(pod("p3", "n1", "Pending"));
        c.forget("p3");
        assert_eq!(c.node("n1").unwrap().pods.len(), 2);

        // A finished pod frees its resources.
        c.upsert_bound_pod(pod("p1", "n1", "Succeeded"));
        assert_eq!(c.node("n1").unwrap().requested.milli_cpu, 1000);
        c.remove_pod("p3");
        assert_eq!(c.node("n1").unwrap().requested.milli_cpu, 0);
    }

    #[test]
    fn image_counts_track_nodes() {
        let mut c = ClusterState::default();
        let imgs = json!([{"names": ["reg/a:1", "reg/a@sha256:x"], "sizeBytes": 100}]);
        c.upsert_node(node("n1", "1", imgs.clone()));
        c.upsert_node(node("n2", "1", imgs));
        c.upsert_node(node("n3", "1", json!([])));
        assert_eq!(c.image_node_count("reg/a:1"), 2);
        c.remove_node("n1");
        assert_eq!(c.image_node_count("reg/a:1"), 1);
        assert_eq!(c.num_nodes(), 2);
        assert!(
            c.node("n3").is_some() && c.node("n2").is_some(),
            "index fixed after swap_remove"
        );
        c.upsert_node(node("n2", "1", json!([])));
        assert_eq!(c.image_node_count("reg/a:1"), 0);
    }
}
