//! Node IPAM (kube's range allocator): every Node without `spec.podCIDR` gets the next free
//! subnet of the cluster CIDR (`--cluster-cidr`, mask `--node-cidr-mask-size`); a deleted
//! Node's subnet is free again. Allocations are recovered from the Nodes at start, so a restart
//! never hands out a subnet twice. pea-flanneld reads `spec.podCIDR`.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};

use ipnet::Ipv4Net;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Patch, PatchParams};
use kube::{Api, Client, ResourceExt};
use serde_json::json;
use tracing::Instrument;

use crate::informer::{Cache, Change};
use crate::queue::{run_workers, Queue, Requeue};
use crate::Informers;

#[derive(Debug, thiserror::Error)]
pub enum NodeIpamError {
    #[error("cluster cidr {0:?} is not an IPv4 CIDR")]
    BadCidr(String),
    #[error("node cidr mask size {mask} does not fit cluster cidr {cidr} (needs a prefix between {min} and {min}+16, at most 32)")]
    MaskSize { cidr: String, mask: u8, min: u8 },
    #[error("node {node}: no pod cidr left in {cidr}")]
    Exhausted { node: String, cidr: String },
    #[error("node {node}: setting spec.podCIDR to {pod_cidr}: {source}")]
    Patch {
        node: String,
        pod_cidr: String,
        #[source]
        source: Box<kube::Error>,
    },
}

/// The subnets of a cluster CIDR and which are taken (kube's cidrset).
#[derive(Debug, Clone)]
pub struct CidrSet {
    cluster: Ipv4Net,
    mask: u8,
    used: Vec<bool>,
    /// Where the next search starts: kube rotates through the range rather than reusing the
    /// lowest free subnet at once, so a just-released subnet is not handed to the next node.
    next: usize,
}

impl CidrSet {
    pub fn new(cidr: &str, mask: u8) -> Result<Self, NodeIpamError> {
        let cluster: Ipv4Net = cidr
            .parse()
            .map_err(|_| NodeIpamError::BadCidr(cidr.to_string()))?;
        let cluster = cluster.trunc();
        let p = cluster.prefix_len();
        if mask < p || mask > 32 || mask - p > 16 {
            return Err(NodeIpamError::MaskSize {
                cidr: cidr.to_string(),
                mask,
                min: p,
            });
        }
        Ok(Self {
            cluster,
            mask,
            used: vec![false; 1usize << (mask - p)],
            next: 0,
        })
    }

    fn subnet(&self, i: usize) -> Ipv4Net {
        let base = u32::from(self.cluster.network());
        let step = if self.mask == 32 {
            1
        } else {
            1u32 << (32 - self.mask)
        };
        Ipv4Net::new(Ipv4Addr::from(base + step * i as u32), self.mask).expect("valid prefix")
    }

    /// The index of `net` when it is one of our subnets.
    fn index(&self, net: &Ipv4Net) -> Option<usize> {
        if net.prefix_len() != self.mask || !self.cluster.contains(net) {
            return None;
        }
        let off = u32::from(net.network()) - u32::from(self.cluster.network());
        let step = if self.mask == 32 {
            1
        } else {
            1u32 << (32 - self.mask)
        };
        Some((off / step) as usize)
    }

    pub fn allocate(&mut self) -> Option<Ipv4Net> {
        let n = self.used.len();
        for k in 0..n {
            let i = (self.next + k) % n;
            if !self.used[i] {
                self.used[i] = true;
                self.next = (i + 1) % n;
                return Some(self.subnet(i));
            }
        }
        None
    }

    /// Marks a subnet taken (recovery, or a CIDR someone else set); false if it is not ours.
    pub fn occupy(&mut self, net: &Ipv4Net) -> bool {
        match self.index(net) {
            Some(i) => {
                self.used[i] = true;
                true
            }
            None => false,
        }
    }

    pub fn release(&mut self, net: &Ipv4Net) {
        if let Some(i) = self.index(net) {
            self.used[i] = false;
        }
    }

    pub fn cluster(&self) -> Ipv4Net {
        self.cluster
    }
}

fn node_cidr(node: &Node) -> Option<Ipv4Net> {
    let spec = node.spec.as_ref()?;
    spec.pod_cidr
        .as_deref()
        .or_else(|| spec.pod_cidrs.as_ref()?.first().map(String::as_str))
        .and_then(|c| c.parse().ok())
}

#[derive(Debug)]
struct State {
    set: CidrSet,
    /// Subnets given to nodes whose update the cache may not show yet.
    assigned: HashMap<String, Ipv4Net>,
}

pub struct NodeIpamController {
    client: Client,
    nodes: Arc<Cache<Node>>,
    queue: Arc<Queue>,
    state: Mutex<State>,
}

impl std::fmt::Debug for NodeIpamController {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeIpamController").finish_non_exhaustive()
    }
}

impl NodeIpamController {
    pub fn register(informers: &Informers, client: Client, set: CidrSet) -> Arc<Self> {
        let c = Arc::new(Self {
            client,
            nodes: informers.nodes.cache(),
            queue: Queue::new(),
            state: Mutex::new(State {
                set,
                assigned: HashMap::new(),
            }),
        });
        let weak = Arc::downgrade(&c);
        informers.nodes.add_handler(move |ch| {
            let Some(c) = weak.upgrade() else { return };
            match ch {
                Change::Added(n) | Change::Updated { new: n, .. } => {
                    if node_cidr(n).is_none() {
                        c.queue.add(n.name_any());
                    }
                }
                Change::Deleted(n) => {
                    let mut st = c.state.lock().expect("ipam state");
                    let net = node_cidr(n).or_else(|| st.assigned.get(&n.name_any()).copied());
                    st.assigned.remove(&n.name_any());
                    if let Some(net) = net {
                        tracing::info!(node = %n.name_any(), cidr = %net, "node deleted; releasing its pod cidr");
                        st.set.release(&net);
                    }
                }
            }
        });
        c
    }

    pub async fn run(self: Arc<Self>) {
        self.nodes.wait_synced().await;
        {
            let mut st = self.state.lock().expect("ipam state");
            for n in self.nodes.list() {
                if let Some(net) = node_cidr(&n) {
                    if !st.set.occupy(&net) {
                        tracing::warn!(node = %n.name_any(), cidr = %net, cluster = %st.set.cluster(), "node's pod cidr is outside the cluster cidr");
                    }
                }
            }
        }
        for n in self.nodes.list() {
            if node_cidr(&n).is_none() {
                self.queue.add(n.name_any());
            }
        }
        let q = self.queue.clone();
        // One worker: allocation order is the queue order, and the set has one writer.
        run_workers(q, 1, "nodeipam", move |name| {
            let c = self.clone();
            async move {
                let span = tracing::debug_span!("sync_node_cidr", node = %name);
                c.sync(&name).instrument(span).await
            }
        })
        .await;
    }

    async fn sync(&self, name: &str) -> Result<Requeue, NodeIpamError> {
        let Some(node) = self.nodes.get("", name) else {
            return Ok(Requeue::default());
        };
        if let Some(net) = node_cidr(&node) {
            let mut st = self.state.lock().expect("ipam state");
            st.set.occupy(&net);
            st.assigned.remove(name);
            return Ok(Requeue::default());
        }
        let net = {
            let mut st = self.state.lock().expect("ipam state");
            if st.assigned.contains_key(name) {
                // Already patched; the cache has not caught up.
                return Ok(Requeue::default());
            }
            let net = st.set.allocate().ok_or_else(|| NodeIpamError::Exhausted {
                node: name.to_string(),
                cidr: st.set.cluster().to_string(),
            })?;
            st.assigned.insert(name.to_string(), net);
            net
        };
        let api: Api<Node> = Api::all(self.client.clone());
        let patch = json!({"spec": {"podCIDR": net.to_string(), "podCIDRs": [net.to_string()]}});
        match api
            .patch(name, &PatchParams::default(), &Patch::Merge(patch))
            .await
        {
            Ok(_) => {
                tracing::info!(node = %name, cidr = %net, "allocated pod cidr");
                Ok(Requeue::default())
            }
            Err(source) => {
                let mut st = self.state.lock().expect("ipam state");
                st.set.release(&net);
                st.assigned.remove(name);
                if crate::is_not_found(&source) {
                    return Ok(Requeue::default());
                }
                Err(NodeIpamError::Patch {
                    node: name.to_string(),
                    pod_cidr: net.to_string(),
                    source: Box::new(source),
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> Ipv4Net {
        s.parse().unwrap()
    }

    #[test]
    fn allocates_in_order_rotating_past_released_subnets() {
        let mut s = CidrSet::new("10.244.0.0/16", 24).unwrap();
        assert_eq!(s.allocate(), Some(net("10.244.0.0/24")));
        assert_eq!(s.allocate(), Some(net("10.244.1.0/24")));
        s.release(&net("10.244.0.0/24"));
        // The cursor moves on; the released subnet comes back only after a full turn.
        assert_eq!(s.allocate(), Some(net("10.244.2.0/24")));
    }

    #[test]
    fn recovered_subnets_are_skipped_and_exhaustion_is_reported() {
        let mut s = CidrSet::new("10.10.0.0/22", 24).unwrap();
        assert!(s.occupy(&net("10.10.1.0/24")));
        assert!(!s.occupy(&net("10.11.0.0/24")), "outside the cluster cidr");
        assert!(!s.occupy(&net("10.10.0.0/25")), "wrong mask");
        let got: Vec<_> = std::iter::from_fn(|| s.allocate()).collect();
        assert_eq!(
            got,
            [
                net("10.10.0.0/24"),
                net("10.10.2.0/24"),
                net("10.10.3.0/24")
            ]
        );
        assert_eq!(s.allocate(), None);
        s.release(&net("10.10.2.0/24"));
        assert_eq!(s.allocate(), Some(net("10.10.2.0/24")));
    }

    #[test]
    fn mask_size_must_fit() {
        assert!(CidrSet::new("10.244.0.0/16", 15).is_err());
        assert!(
            CidrSet::new("10.0.0.0/8", 25).is_err(),
            "more than 2^16 subnets"
        );
        assert!(CidrSet::new("fd00::/64", 80).is_err());
        assert!(
            CidrSet::new("10.244.7.9/16", 26).is_ok(),
            "host bits are ignored"
        );
        let mut s = CidrSet::new("10.244.0.0/16", 26).unwrap();
        s.allocate();
        assert_eq!(s.allocate(), Some(net("10.244.0.64/26")));
    }
}
