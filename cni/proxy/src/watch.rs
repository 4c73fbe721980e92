//! The Services and EndpointSlices of the cluster, from two kube-rs watchers (list, then watch
//! from the list's resourceVersion, relisting when it is too old), kept in caches that also say
//! which Services changed since the last sync. A relist replaces a cache wholesale and marks
//! every Service as changed (something may have gone unseen).

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::{Arc, Mutex},
};

use futures_util::StreamExt;
use k8s_openapi::api::{
    core::v1::{Node, Service},
    discovery::v1::EndpointSlice,
};
use kube::{
    runtime::{watcher, WatchStreamExt},
    Api, Client,
};
use tokio::sync::Notify;

use crate::{
    model::{ServiceKey, SERVICE_NAME_LABEL},
    node::NodeInfo,
    proxier::Change,
};

#[derive(Debug, Default)]
struct Inner {
    services: BTreeMap<ServiceKey, Arc<Service>>,
    /// Slices by the Service their label names, then by slice name.
    slices: BTreeMap<ServiceKey, BTreeMap<String, Arc<EndpointSlice>>>,
    /// Which Service each slice (namespace, name) was filed under.
    slice_owner: BTreeMap<(String, String), ServiceKey>,
    dirty: BTreeSet<ServiceKey>,
    services_synced: bool,
    slices_synced: bool,
    service_changes: u64,
    endpoint_changes: u64,
    /// Objects gathered during a relist, swapped in at its end.
    relist_services: Option<Vec<Arc<Service>>>,
    relist_slices: Option<Vec<Arc<EndpointSlice>>>,
    /// This node as its Node object says (None until seen, or after it was deleted).
    node: Option<NodeInfo>,
    /// The Node watch finished its first list (whether or not the Node exists).
    node_listed: bool,
}

/// The shared caches.
#[derive(Debug, Clone, Default)]
pub struct Caches {
    inner: Arc<Mutex<Inner>>,
    pub changed: Arc<Notify>,
}

fn service_key(svc: &Service) -> ServiceKey {
    ServiceKey {
        namespace: svc.metadata.namespace.clone().unwrap_or_default(),
        name: svc.metadata.name.clone().unwrap_or_default(),
    }
}

fn slice_owner(slice: &EndpointSlice) -> Option<ServiceKey> {
    Some(ServiceKey {
        namespace: slice.metadata.namespace.clone()?,
        name: slice
            .metadata
            .labels
            .as_ref()?
            .get(SERVICE_NAME_LABEL)?
            .clone(),
    })
}

impl Inner {
    fn put_service(&mut self, svc: Arc<Service>) {
        let k = service_key(&svc);
        self.dirty.insert(k.clone());
        self.service_changes += 1;
        self.services.insert(k, svc);
    }
    fn delete_service(&mut self, svc: &Service) {
        let k = service_key(svc);
        self.services.remove(&k);
        self.service_changes += 1;
        self.dirty.insert(k);
    }
    fn delete_slice(&mut self, ns: &str, name: &str) {
        if let Some(owner) = self.slice_owner.remove(&(ns.to_string(), name.to_string())) {
            if let Some(m) = self.slices.get_mut(&owner) {
                m.remove(name);
                if m.is_empty() {
                    self.slices.remove(&owner);
                }
            }
            self.endpoint_changes += 1;
            self.dirty.insert(owner);
        }
    }
    fn put_slice(&mut self, slice: Arc<EndpointSlice>) {
        let ns = slice.metadata.namespace.clone().unwrap_or_default();
        let name = slice.metadata.name.clone().unwrap_or_default();
        self.delete_slice(&ns, &name);
        if let Some(owner) = slice_owner(&slice) {
            self.slice_owner.insert((ns, name.clone()), owner.clone());
            self.slices
                .entry(owner.clone())
                .or_default()
                .insert(name, slice);
            self.endpoint_changes += 1;
            self.dirty.insert(owner);
        }
    }
}

impl Caches {
    /// Whether both watchers finished their first list.
    pub fn synced(&self) -> bool {
        let i = self.inner.lock().expect("caches");
        i.services_synced && i.slices_synced
    }

    /// (service changes, endpoint changes) seen so far, for `/metrics`.
    pub fn change_counts(&self) -> (u64, u64) {
        let i = self.inner.lock().expect("caches");
        (i.service_changes, i.endpoint_changes)
    }

    /// Whether the Node watch has listed once.
    pub fn node_listed(&self) -> bool {
        self.inner.lock().expect("caches").node_listed
    }

    /// This node's IPs and zone from its Node object, when it has been seen.
    pub fn node(&self) -> Option<NodeInfo> {
        self.inner.lock().expect("caches").node.clone()
    }

    fn on_node(&self, ev: watcher::Event<Node>) {
        let mut i = self.inner.lock().expect("caches");
        let next = match ev {
            watcher::Event::Apply(n) | watcher::Event::InitApply(n) => Some(NodeInfo::of(&n)),
            watcher::Event::Delete(_) => None,
            watcher::Event::Init => return,
            watcher::Event::InitDone => {
                i.node_listed = true;
                drop(i);
                self.changed.notify_one();
                return;
            }
        };
        if i.node == next {
            return;
        }
        i.node = next;
        drop(i);
        self.changed.notify_one();
    }

    /// Watches the Node named `name` (kube-proxy's node informer, one object by field selector).
    pub fn start_node(&self, client: Client, name: &str) {
        let nodes: Api<Node> = Api::all(client);
        let cfg = watcher::Config::default().fields(&format!("metadata.name={name}"));
        let me = self.clone();
        tokio::spawn(async move {
            let stream = watcher(nodes, cfg).default_backoff();
            let mut stream = std::pin::pin!(stream);
            while let Some(ev) = stream.next().await {
                match ev {
                    Ok(ev) => me.on_node(ev),
                    Err(e) => tracing::warn!("watching this node's Node object: {e}"),
                }
            }
        });
    }

    /// The changed Services (all of them when `all`), and clears the dirty set.
    pub fn take_changes(&self, all: bool) -> Vec<Change> {
        let mut i = self.inner.lock().expect("caches");
        let keys: BTreeSet<ServiceKey> = if all {
            let mut k: BTreeSet<ServiceKey> = i.services.keys().cloned().collect();
            k.extend(std::mem::take(&mut i.dirty));
            k
        } else {
            std::mem::take(&mut i.dirty)
        };
        keys.into_iter()
            .map(|key| Change {
                service: i.services.get(&key).cloned(),
                slices: i
                    .slices
                    .get(&key)
                    .map(|m| m.values().cloned().collect())
                    .unwrap_or_default(),
                key,
            })
            .collect()
    }

    fn on_service(&self, ev: watcher::Event<Service>) {
        let mut i = self.inner.lock().expect("caches");
        match ev {
            watcher::Event::Apply(s) => i.put_service(Arc::new(s)),
            watcher::Event::Delete(s) => i.delete_service(&s),
            watcher::Event::Init => i.relist_services = Some(Vec::new()),
            watcher::Event::InitApply(s) => i
                .relist_services
                .get_or_insert_with(Vec::new)
                .push(Arc::new(s)),
            watcher::Event::InitDone => {
                let fresh = i.relist_services.take().unwrap_or_default();
                let old: Vec<ServiceKey> = i.services.keys().cloned().collect();
                i.dirty.extend(old);
                i.services.clear();
                for s in fresh {
                    i.put_service(s);
                }
                i.services_synced = true;
            }
        }
        drop(i);
        self.changed.notify_one();
    }

    fn on_slice(&self, ev: watcher::Event<EndpointSlice>) {
        let mut i = self.inner.lock().expect("caches");
        match ev {
            watcher::Event::Apply(s) => i.put_slice(Arc::new(s)),
            watcher::Event::Delete(s) => i.delete_slice(
                s.metadata.namespace.as_deref().unwrap_or_default(),
                s.metadata.name.as_deref().unwrap_or_default(),
            ),
            watcher::Event::Init => i.relist_slices = Some(Vec::new()),
            watcher::Event::InitApply(s) => i
                .relist_slices
                .get_or_insert_with(Vec::new)
                .push(Arc::new(s)),
            watcher::Event::InitDone => {
                let fresh = i.relist_slices.take().unwrap_or_default();
                let owners: Vec<ServiceKey> = i.slices.keys().cloned().collect();
                i.dirty.extend(owners);
                i.slices.clear();
                i.slice_owner.clear();
                for s in fresh {
                    i.put_slice(s);
                }
                i.slices_synced = true;
            }
        }
        drop(i);
        self.changed.notify_one();
    }

    /// Starts both watchers on `client`'s runtime; they run until the runtime ends, retrying
    /// with backoff (the caches keep their last state meanwhile).
    pub fn start(&self, client: Client) {
        let services: Api<Service> = Api::all(client.clone());
        let slices: Api<EndpointSlice> = Api::all(client);
        let me = self.clone();
        tokio::spawn(async move {
            let stream = watcher(services, watcher::Config::default()).default_backoff();
            let mut stream = std::pin::pin!(stream);
            while let Some(ev) = stream.next().await {
                match ev {
                    Ok(ev) => me.on_service(ev),
                    Err(e) => tracing::warn!("watching services: {e}"),
                }
            }
        });
        let me = self.clone();
        tokio::spawn(async move {
            let stream = watcher(slices, watcher::Config::default()).default_backoff();
            let mut stream = std::pin::pin!(stream);
            while let Some(ev) = stream.next().await {
                match ev {
                    Ok(ev) => me.on_slice(ev),
                    Err(e) => tracing::warn!("watching endpointslices: {e}"),
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn slices_follow_their_label_and_relists_mark_everything() {
        let c = Caches::default();
        let svc: Service =
            serde_json::from_value(json!({"metadata": {"namespace": "a", "name": "s"}})).unwrap();
        let slice = |svc: &str| -> EndpointSlice {
            serde_json::from_value(json!({"metadata": {"namespace": "a", "name": "s-1",
                "labels": {SERVICE_NAME_LABEL: svc}}, "addressType": "IPv4", "endpoints": []}))
            .unwrap()
        };
        c.on_service(watcher::Event::Apply(svc.clone()));
        c.on_slice(watcher::Event::Apply(slice("s")));
        let ch = c.take_changes(false);
        assert_eq!(ch.len(), 1);
        assert_eq!(ch[0].slices.len(), 1);
        // The slice moves to another Service: both are dirty, the old one loses it.
        c.on_slice(watcher::Event::Apply(slice("t")));
        let ch = c.take_changes(false);
        assert_eq!(ch.len(), 2);
        assert!(ch
            .iter()
            .find(|c| c.key.name == "s")
            .unwrap()
            .slices
            .is_empty());
        // A relist without the Service marks it changed and gone.
        c.on_service(watcher::Event::Init);
        c.on_service(watcher::Event::InitDone);
        let ch = c.take_changes(false);
        assert!(ch.iter().any(|c| c.key.name == "s" && c.service.is_none()));
    }
}
