//! kube's node authorizer graph: which secrets, configmaps, claims, volumes and service accounts
//! each node's pods use. Edges, as kube's `graph.go`: pod → node (only pods with
//! `spec.nodeName`), secret/configmap/claim/service account → pod, claim ← volume (the
//! volume's `claimRef`) and secret → volume (the secrets a volume source names that the kubelet
//! reads). A question is a lookup in reverse indexes, never a walk over every pod.
//!
//! The graph keeps the revision it saw each object at, so a late watch event does not undo a
//! newer re-read (the same rule as the RBAC index and the admission caches).

use std::collections::{HashMap, HashSet};

use pea_control_store::Revision;
use serde_json::Value;

use super::refs;

/// Where pods and persistent volumes live in the store.
pub const POD_PREFIX: &str = "/registry/core/pods/";
pub const PV_PREFIX: &str = "/registry/core/persistentvolumes/";

/// A namespaced object a pod uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Secret,
    ConfigMap,
    Claim,
    ServiceAccount,
}

/// A vertex one can ask about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Vertex<'a> {
    Used(Kind, &'a str, &'a str),
    Pod(&'a str, &'a str),
    Volume(&'a str),
}

#[derive(Debug)]
struct Pod {
    namespace: String,
    node: String,
    uses: Vec<(Kind, String)>,
}

#[derive(Debug)]
struct Volume {
    claim: Option<(String, String)>,
    secrets: Vec<(String, String)>,
}

#[derive(Debug, Default)]
pub struct Graph {
    /// Bound pods by store key.
    pods: HashMap<String, Pod>,
    /// Volumes by name.
    volumes: HashMap<String, Volume>,
    /// (kind, namespace, name) → keys of the bound pods that use it.
    used_by: HashMap<(Kind, String, String), HashSet<String>>,
    /// (namespace, secret) → names of the volumes that name it.
    volume_secrets: HashMap<(String, String), HashSet<String>>,
    /// The revision each live key (bound or not) was last seen at.
    seen: HashMap<String, Revision>,
    /// Keys known deleted, with the revision they were known deleted at.
    tombstones: HashMap<String, Revision>,
}

impl Graph {
    fn known(&self, key: &str) -> Revision {
        let live = self.seen.get(key).copied().unwrap_or(0);
        live.max(self.tombstones.get(key).copied().unwrap_or(0))
    }

    /// Applies what the store said about `key` (a pod's or a volume's) at `rev`: its value, or
    /// that it is gone. Returns whether it was newer than what the graph knew.
    pub fn apply(&mut self, key: &str, rev: Revision, obj: Option<&Value>) -> bool {
        if rev <= self.known(key) {
            return false;
        }
        self.remove(key);
        match obj {
            Some(obj) => {
                self.tombstones.remove(key);
                self.seen.insert(key.to_string(), rev);
                if let Some(rest) = key.strip_prefix(POD_PREFIX) {
                    self.add_pod(key, rest, obj);
                } else if let Some(name) = key.strip_prefix(PV_PREFIX) {
                    self.add_volume(name, obj);
                }
            }
            None => {
                self.seen.remove(key);
                self.tombstones.insert(key.to_string(), rev);
            }
        }
        true
    }

    /// Forgets tombstones older than `rev` (a list or event at `rev` supersedes them).
    pub fn forget_before(&mut self, rev: Revision) {
        if !self.tombstones.is_empty() {
            self.tombstones.retain(|_, r| *r > rev);
        }
    }

    /// Keys the graph holds under `prefix` (for reconciling with a list).
    pub fn keys(&self, prefix: &str) -> Vec<String> {
        self.seen
            .keys()
            .filter(|k| k.starts_with(prefix))
            .cloned()
            .collect()
    }

    fn add_pod(&mut self, key: &str, rest: &str, obj: &Value) {
        let Some(node) = obj
            .pointer("/spec/nodeName")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
        else {
            // Not scheduled yet: nothing to reach from a node (kube adds pods once bound).
            return;
        };
        let namespace = obj
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .map(str::to_string)
            .or_else(|| rest.split_once('/').map(|(ns, _)| ns.to_string()))
            .unwrap_or_default();
        let uses = refs::pod_uses(obj);
        for (kind, name) in &uses {
            self.used_by
                .entry((*kind, namespace.clone(), name.clone()))
                .or_default()
                .insert(key.to_string());
        }
        self.pods.insert(
            key.to_string(),
            Pod {
                namespace,
                node: node.to_string(),
                uses,
            },
        );
    }

    fn add_volume(&mut self, name: &str, obj: &Value) {
        let claim = obj.pointer("/spec/claimRef").and_then(|c| {
            let ns = c.get("namespace").and_then(Value::as_str)?;
            let n = c.get("name").and_then(Value::as_str)?;
            (!ns.is_empty() && !n.is_empty()).then(|| (ns.to_string(), n.to_string()))
        });
        // As kube: without a claim there is no path to a pod, so its secrets get no edge.
        let secrets = match &claim {
            Some((claim_ns, _)) => refs::volume_secrets(obj, claim_ns),
            None => Vec::new(),
        };
        for s in &secrets {
            self.volume_secrets
                .entry(s.clone())
                .or_default()
                .insert(name.to_string());
        }
        self.volumes
            .insert(name.to_string(), Volume { claim, secrets });
    }

    fn remove(&mut self, key: &str) {
        if let Some(pod) = self.pods.remove(key) {
            for (kind, name) in pod.uses {
                let k = (kind, pod.namespace.clone(), name);
                if let Some(set) = self.used_by.get_mut(&k) {
                    set.remove(key);
                    if set.is_empty() {
                        self.used_by.remove(&k);
                    }
                }
            }
        } else if let Some(name) = key.strip_prefix(PV_PREFIX) {
            if let Some(v) = self.volumes.remove(name) {
                for s in v.secrets {
                    if let Some(set) = self.volume_secrets.get_mut(&s) {
                        set.remove(name);
                        if set.is_empty() {
                            self.volume_secrets.remove(&s);
                        }
                    }
                }
            }
        }
    }

    /// Whether a bound pod on `node` uses (kind, namespace, name).
    fn used_on(&self, node: &str, kind: Kind, namespace: &str, name: &str) -> bool {
        self.used_by
            .get(&(kind, namespace.to_string(), name.to_string()))
            .is_some_and(|pods| {
                pods.iter()
                    .any(|p| self.pods.get(p).is_some_and(|p| p.node == node))
            })
    }

    fn volume_on(&self, node: &str, volume: &str) -> bool {
        self.volumes
            .get(volume)
            .and_then(|v| v.claim.as_ref())
            .is_some_and(|(ns, claim)| self.used_on(node, Kind::Claim, ns, claim))
    }

    /// kube's `hasPathFrom`: whether `vertex` leads to `node`.
    pub fn has_path(&self, node: &str, vertex: Vertex<'_>) -> bool {
        match vertex {
            Vertex::Pod(ns, name) => self
                .pods
                .get(&format!("{POD_PREFIX}{ns}/{name}"))
                .is_some_and(|p| p.node == node),
            Vertex::Volume(name) => self.volume_on(node, name),
            Vertex::Used(kind, ns, name) => {
                self.used_on(node, kind, ns, name)
                    || (kind == Kind::Secret
                        && self
                            .volume_secrets
                            .get(&(ns.to_string(), name.to_string()))
                            .is_some_and(|vols| vols.iter().any(|v| self.volume_on(node, v))))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(ns: &str, name: &str, node: Option<&str>, spec: Value) -> (String, Value) {
        let mut spec = spec;
        if let Some(n) = node {
            spec["nodeName"] = json!(n);
        }
        (
            format!("{POD_PREFIX}{ns}/{name}"),
            json!({"metadata": {"namespace": ns, "name": name}, "spec": spec}),
        )
    }

    #[test]
    fn secrets_reach_the_nodes_of_the_pods_that_use_them() {
        let mut g = Graph::default();
        let spec = json!({"serviceAccountName": "sa", "containers": [{"name": "c",
            "envFrom": [{"configMapRef": {"name": "cm"}}]}],
            "volumes": [{"name": "v", "secret": {"secretName": "s1"}},
                        {"name": "d", "persistentVolumeClaim": {"claimName": "c1"}}]});
        let (k, p) = pod("a", "p", Some("n1"), spec.clone());
        assert!(g.apply(&k, 5, Some(&p)));
        let s1 = Vertex::Used(Kind::Secret, "a", "s1");
        assert!(g.has_path("n1", s1));
        assert!(!g.has_path("n2", s1));
        assert!(!g.has_path("n1", Vertex::Used(Kind::Secret, "b", "s1")));
        assert!(g.has_path("n1", Vertex::Used(Kind::ConfigMap, "a", "cm")));
        assert!(g.has_path("n1", Vertex::Used(Kind::ServiceAccount, "a", "sa")));
        assert!(g.has_path("n1", Vertex::Pod("a", "p")));
        // A volume bound to the claim, and a secret only that volume names.
        let pv = json!({"spec": {"claimRef": {"namespace": "a", "name": "c1"},
            "csi": {"driver": "d", "volumeHandle": "h",
                    "nodePublishSecretRef": {"name": "pvs", "namespace": "a"},
                    "controllerPublishSecretRef": {"name": "ctl", "namespace": "a"}}}});
        g.apply(&format!("{PV_PREFIX}v1"), 6, Some(&pv));
        assert!(g.has_path("n1", Vertex::Volume("v1")));
        assert!(g.has_path("n1", Vertex::Used(Kind::Secret, "a", "pvs")));
        assert!(!g.has_path("n1", Vertex::Used(Kind::Secret, "a", "ctl")));
        assert!(!g.has_path("n2", Vertex::Volume("v1")));
        // An older event does not undo what is known; a delete removes the edges.
        assert!(!g.apply(&k, 4, None));
        assert!(g.apply(&k, 7, None));
        assert!(!g.has_path("n1", s1));
        assert!(!g.has_path("n1", Vertex::Volume("v1")));
        assert!(!g.apply(&k, 6, Some(&p)), "a late event after the delete");
        // An unbound pod reaches no node; binding it adds the edges.
        let (k2, unbound) = pod("a", "q", None, spec.clone());
        g.apply(&k2, 8, Some(&unbound));
        assert!(!g.has_path("n1", s1));
        let (_, bound) = pod("a", "q", Some("n1"), spec);
        g.apply(&k2, 9, Some(&bound));
        assert!(g.has_path("n1", s1));
        assert_eq!(g.keys(POD_PREFIX), vec![k2]);
    }
}
