//! What the scheduler knows about one pod ([`PodInfo`], computed once) and one node
//! ([`NodeInfo`]: its object plus the aggregate of the pods bound or assumed on it).

use std::collections::HashMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, Pod};

use crate::resource::{pod_requests, Resource};

/// A host port a container asks for. `ip` "0.0.0.0" means every address.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HostPort {
    pub ip: String,
    pub protocol: String,
    pub port: i32,
}

/// A pod with the values the filters and scores need, computed once.
#[derive(Debug)]
pub struct PodInfo {
    pub pod: Arc<Pod>,
    /// `namespace/name`.
    pub key: String,
    pub uid: String,
    pub namespace: String,
    pub requests: Resource,
    /// Requests with kube's defaults for missing cpu/memory (for scoring).
    pub non_zero_requests: Resource,
    pub host_ports: Vec<HostPort>,
    pub priority: i32,
    /// Has pod affinity or anti-affinity terms (required or preferred).
    pub has_affinity: bool,
}

/// `namespace/name` of a pod.
pub fn pod_key(pod: &Pod) -> String {
    format!(
        "{}/{}",
        pod.metadata.namespace.as_deref().unwrap_or(""),
        pod.metadata.name.as_deref().unwrap_or("")
    )
}

impl PodInfo {
    pub fn new(pod: Arc<Pod>) -> Self {
        let mut host_ports = Vec::new();
        for c in pod.spec.iter().flat_map(|s| s.containers.iter()) {
            for p in c.ports.iter().flatten() {
                if let Some(hp) = p.host_port.filter(|hp| *hp > 0) {
                    host_ports.push(HostPort {
                        ip: p
                            .host_ip
                            .clone()
                            .filter(|ip| !ip.is_empty())
                            .unwrap_or_else(|| "0.0.0.0".into()),
                        protocol: p
                            .protocol
                            .clone()
                            .filter(|p| !p.is_empty())
                            .unwrap_or_else(|| "TCP".into()),
                        port: hp,
                    });
                }
            }
        }
        PodInfo {
            key: pod_key(&pod),
            uid: pod.metadata.uid.clone().unwrap_or_default(),
            namespace: pod.metadata.namespace.clone().unwrap_or_default(),
            requests: pod_requests(&pod, false),
            non_zero_requests: pod_requests(&pod, true),
            priority: pod.spec.as_ref().and_then(|s| s.priority).unwrap_or(0),
            has_affinity: pod
                .spec
                .as_ref()
                .and_then(|s| s.affinity.as_ref())
                .is_some_and(|a| a.pod_affinity.is_some() || a.pod_anti_affinity.is_some()),
            host_ports,
            pod,
        }
    }

    pub fn name(&self) -> &str {
        self.pod.metadata.name.as_deref().unwrap_or("")
    }

    pub fn labels(&self) -> Option<&std::collections::BTreeMap<String, String>> {
        self.pod.metadata.labels.as_ref()
    }
}

/// One node and the pods on it (bound or assumed).
#[derive(Debug, Default, Clone)]
pub struct NodeInfo {
    /// None while pods name a node whose object the cache has not seen (yet).
    pub node: Option<Arc<Node>>,
    pub name: String,
    pub allocatable: Resource,
    pub requested: Resource,
    pub non_zero_requested: Resource,
    pub pods: Vec<Arc<PodInfo>>,
    /// (protocol, port) → the host IPs using it.
    pub used_ports: HashMap<(String, i32), Vec<String>>,
    /// Image name → size in bytes, for every name the node reports.
    pub images: HashMap<String, i64>,
}

impl NodeInfo {
    pub fn new(name: &str) -> Self {
        NodeInfo {
            name: name.to_string(),
            ..Default::default()
        }
    }

    pub fn set_node(&mut self, node: Arc<Node>) {
        self.allocatable =
            Resource::from_list(node.status.as_ref().and_then(|s| s.allocatable.as_ref()));
        self.images.clear();
        for img in node
            .status
            .as_ref()
            .and_then(|s| s.images.as_ref())
            .into_iter()
            .flatten()
        {
            for n in img.names.iter().flatten() {
                self.images.insert(n.clone(), img.size_bytes.unwrap_or(0));
            }
        }
        self.node = Some(node);
    }

    pub fn labels(&self) -> Option<&std::collections::BTreeMap<String, String>> {
        self.node.as_ref().and_then(|n| n.metadata.labels.as_ref())
    }

    pub fn add_pod(&mut self, pi: Arc<PodInfo>) {
        self.requested.add(&pi.requests);
        self.non_zero_requested.milli_cpu += pi.non_zero_requests.milli_cpu;
        self.non_zero_requested.memory += pi.non_zero_requests.memory;
        for hp in &pi.host_ports {
            self.used_ports
                .entry((hp.protocol.clone(), hp.port))
                .or_default()
                .push(hp.ip.clone());
        }
        self.pods.push(pi);
    }

    /// Removes the pod with this uid; returns it if it was there.
    pub fn remove_pod(&mut self, uid: &str) -> Option<Arc<PodInfo>> {
        let i = self.pods.iter().position(|p| p.uid == uid)?;
        let pi = self.pods.swap_remove(i);
        self.requested.sub(&pi.requests);
        self.non_zero_requested.milli_cpu -= pi.non_zero_requests.milli_cpu;
        self.non_zero_requested.memory -= pi.non_zero_requests.memory;
        for hp in &pi.host_ports {
            let k = (hp.protocol.clone(), hp.port);
            if let Some(ips) = self.used_ports.get_mut(&k) {
                if let Some(j) = ips.iter().position(|ip| *ip == hp.ip) {
                    ips.swap_remove(j);
                }
                if ips.is_empty() {
                    self.used_ports.remove(&k);
                }
            }
        }
        Some(pi)
    }

    /// kube's HostPortInfo.CheckConflict: a wildcard address conflicts with any use of the
    /// port, a specific address with the same address or a wildcard use.
    pub fn port_conflicts(&self, hp: &HostPort) -> bool {
        let Some(ips) = self.used_ports.get(&(hp.protocol.clone(), hp.port)) else {
            return false;
        };
        hp.ip == "0.0.0.0" || ips.iter().any(|ip| *ip == hp.ip || ip == "0.0.0.0")
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn pod(uid: &str, ports: serde_json::Value) -> Arc<PodInfo> {
        Arc::new(PodInfo::new(Arc::new(
            serde_json::from_value(json!({
                "metadata": {"name": uid, "namespace": "ns", "uid": uid},
                "spec": {"containers": [{"name": "c", "ports": ports,
                    "resources": {"requests": {"cpu": "250m"}}}]}
            }))
            .unwrap(),
        )))
    }

    #[test]
    fn adding_and_removing_pods_keeps_totals_and_ports() {
        let mut n = NodeInfo::new("n1");
        n.add_pod(pod("a", json!([{"containerPort": 80, "hostPort": 8080}])));
        n.add_pod(pod(
            "b",
            json!([{"containerPort": 80, "hostPort": 9090, "hostIP": "10.0.0.1"}]),
        ));
        assert_eq!(n.requested.milli_cpu, 500);
        assert_eq!(
            n.non_zero_requested.memory,
            2 * crate::resource::DEFAULT_MEMORY_REQUEST
        );
        let hp = |ip: &str, port| HostPort {
            ip: ip.into(),
            protocol: "TCP".into(),
            port,
        };
        assert!(
            n.port_conflicts(&hp("10.0.0.2", 8080)),
            "wildcard use blocks every address"
        );
        assert!(
            n.port_conflicts(&hp("0.0.0.0", 9090)),
            "wildcard ask conflicts with any use"
        );
        assert!(
            !n.port_conflicts(&hp("10.0.0.2", 9090)),
            "another address is free"
        );
        assert!(!n.port_conflicts(&HostPort {
            ip: "0.0.0.0".into(),
            protocol: "UDP".into(),
            port: 8080
        }));
        assert!(n.remove_pod("a").is_some());
        assert!(!n.port_conflicts(&hp("10.0.0.2", 8080)));
        assert_eq!(n.requested.milli_cpu, 250);
        assert!(n.remove_pod("a").is_none());
    }
}
