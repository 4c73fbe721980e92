//! The EndpointSlice controller (kube's `pkg/controller/endpointslice`): for every Service
//! with a selector, IPv4 EndpointSlices of at most 100 endpoints, one group of slices per
//! distinct set of resolved ports (named targetPorts can resolve differently per pod), with
//! ready/serving/terminating conditions, labelled `kubernetes.io/service-name` and
//! `endpointslice.kubernetes.io/managed-by`, owned by the Service. Changes keep existing slices
//! where they can (kube's reconciler): endpoints stay in their slice, new ones fill slices that
//! are being written anyway, then a slice with room for all of them, then new slices. An empty
//! service keeps one placeholder slice. A tracker of our own writes stops a stale cache from
//! making duplicate slices (kube's endpointSliceTracker).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use k8s_openapi::api::core::v1::{Node, ObjectReference, Pod, Service};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{DeleteParams, PostParams};
use kube::{Api, Client, ResourceExt};
use tracing::Instrument;

use crate::endpoints::{
    find_port, hostname_for, is_headless, pod_handler, selector, should_be_in_endpoints,
    HEADLESS_LABEL,
};
use crate::informer::{Cache, Change};
use crate::podutil::{self, labels, map_selector_matches};
use crate::queue::{run_workers, Queue, Requeue};
use crate::{is_not_found, key, split_key, Informers};

pub const MAX_ENDPOINTS_PER_SLICE: usize = 100;
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
pub const MANAGED_BY_LABEL: &str = "endpointslice.kubernetes.io/managed-by";
pub const CONTROLLER_NAME: &str = "endpointslice-controller.k8s.io";

#[derive(Debug, thiserror::Error)]
pub enum EndpointSliceError {
    #[error("endpointslices of service {key}: {what} {slice}: {source}")]
    Api {
        key: String,
        what: &'static str,
        slice: String,
        #[source]
        source: kube::Error,
    },
    #[error("endpointslices of service {key}: the cache does not show our last writes yet")]
    StaleCache { key: String },
}

type PortKey = Vec<(Option<String>, Option<i32>, Option<String>, Option<String>)>;

fn port_key(ports: &Option<Vec<EndpointPort>>) -> PortKey {
    let mut k: PortKey = ports
        .iter()
        .flatten()
        .map(|p| {
            (
                p.name.clone(),
                p.port,
                p.protocol.clone(),
                p.app_protocol.clone(),
            )
        })
        .collect();
    k.sort();
    k
}

/// Desired endpoints by port set: the ports and the endpoints keyed by [`endpoint_key`].
pub type Desired = BTreeMap<PortKey, (Option<Vec<EndpointPort>>, BTreeMap<String, Endpoint>)>;

/// The identity of an endpoint across syncs: its pod.
fn endpoint_key(e: &Endpoint) -> String {
    e.target_ref
        .as_ref()
        .and_then(|r| r.uid.clone())
        .unwrap_or_else(|| e.addresses.join(","))
}

/// The desired endpoints of `svc`, grouped by port set (kube's reconcile input).
pub fn desired(svc: &Service, pods: &[Arc<Pod>]) -> Desired {
    let mut out: Desired = BTreeMap::new();
    let Some(sel) = selector(svc) else {
        return out;
    };
    let spec = svc.spec.clone().unwrap_or_default();
    let publish = spec.publish_not_ready_addresses == Some(true);
    for pod in pods {
        if !map_selector_matches(sel, labels(&pod.metadata)) || !should_be_in_endpoints(pod, true) {
            continue;
        }
        let Some(ip) = podutil::pod_ip(pod) else {
            continue;
        };
        // Only IPv4 slices for now: an IPv6 pod IP is not listed.
        if ip.parse::<std::net::Ipv4Addr>().is_err() {
            continue;
        }
        let ports: Vec<EndpointPort> = spec
            .ports
            .iter()
            .flatten()
            .filter_map(|sp| {
                Some(EndpointPort {
                    name: Some(sp.name.clone().unwrap_or_default()),
                    port: Some(find_port(pod, sp)?),
                    protocol: Some(sp.protocol.clone().unwrap_or_else(|| "TCP".into())),
                    app_protocol: sp.app_protocol.clone(),
                })
            })
            .collect();
        let ports = (!ports.is_empty()).then_some(ports);
        let ready_pod = podutil::is_ready(pod);
        let terminating = pod.metadata.deletion_timestamp.is_some();
        // kube: ready is never true for a terminating pod unless publishNotReadyAddresses.
        let ready = publish || (ready_pod && !terminating);
        let node = podutil::node_name(pod);
        let ep = Endpoint {
            addresses: vec![ip.to_string()],
            conditions: Some(EndpointConditions {
                ready: Some(ready),
                serving: Some(ready_pod),
                terminating: Some(terminating),
            }),
            hostname: hostname_for(pod, svc),
            node_name: (!node.is_empty()).then(|| node.to_string()),
            target_ref: Some(ObjectReference {
                kind: Some("Pod".into()),
                namespace: pod.namespace(),
                name: Some(pod.name_any()),
                uid: pod.metadata.uid.clone(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let entry = out
            .entry(port_key(&ports))
            .or_insert_with(|| (ports, BTreeMap::new()));
        entry.1.insert(endpoint_key(&ep), ep);
    }
    out
}

/// The labels kube puts on a slice: the service's (minus reserved ones) plus ours.
pub fn slice_labels(svc: &Service) -> BTreeMap<String, String> {
    let mut l: BTreeMap<String, String> = svc
        .labels()
        .iter()
        .filter(|(k, _)| {
            ![SERVICE_NAME_LABEL, MANAGED_BY_LABEL, HEADLESS_LABEL].contains(&k.as_str())
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    l.insert(SERVICE_NAME_LABEL.into(), svc.name_any());
    l.insert(MANAGED_BY_LABEL.into(), CONTROLLER_NAME.into());
    if is_headless(svc) {
        l.insert(HEADLESS_LABEL.into(), String::new());
    }
    l
}

/// What to do to the slices of one service.
#[derive(Debug, Default, PartialEq)]
pub struct Plan {
    pub create: Vec<(Option<Vec<EndpointPort>>, Vec<Endpoint>)>,
    /// Existing slice name → its new ports and endpoints.
    pub update: BTreeMap<String, (Option<Vec<EndpointPort>>, Vec<Endpoint>)>,
    pub delete: Vec<String>,
}

/// kube's reconciler, over existing slices and the desired endpoints. Pure: slices' labels
/// are compared by the caller.
pub fn plan(existing: &[&EndpointSlice], want: &Desired, max: usize) -> Plan {
    let mut plan = Plan::default();
    let total: usize = want.values().map(|(_, e)| e.len()).sum();
    if total == 0 {
        // One placeholder slice (no ports, no endpoints) stands for an empty service.
        let mut kept = false;
        for s in existing {
            if !kept {
                kept = true;
                if s.ports.as_ref().is_some_and(|p| !p.is_empty()) || !s.endpoints.is_empty() {
                    plan.update.insert(s.name_any(), (None, Vec::new()));
                }
            } else {
                plan.delete.push(s.name_any());
            }
        }
        if !kept {
            plan.create.push((None, Vec::new()));
        }
        return plan;
    }
    let mut by_key: BTreeMap<PortKey, Vec<&EndpointSlice>> = BTreeMap::new();
    for s in existing {
        by_key.entry(port_key(&s.ports)).or_default().push(s);
    }
    for (k, slices) in &by_key {
        if !want.contains_key(k) {
            plan.delete.extend(slices.iter().map(|s| s.name_any()));
        }
    }
    for (k, (ports, eps)) in want {
        let slices = by_key.get(k).cloned().unwrap_or_default();
        let mut placed: HashMap<&str, ()> = HashMap::new();
        // (name, endpoints after the change, changed?)
        let mut kept: Vec<(String, Vec<Endpoint>, bool)> = Vec::new();
        for s in slices {
            let mut next = Vec::new();
            for e in &s.endpoints {
                let ek = endpoint_key(e);
                if let Some((kk, d)) = eps.get_key_value(&ek) {
                    if placed.insert(kk.as_str(), ()).is_none() && next.len() < max {
                        next.push(d.clone());
                    }
                }
            }
            if next.is_empty() {
                plan.delete.push(s.name_any());
                continue;
            }
            let changed = next != s.endpoints;
            kept.push((s.name_any(), next, changed));
        }
        let mut remaining: Vec<&Endpoint> = eps
            .iter()
            .filter(|(k, _)| !placed.contains_key(k.as_str()))
            .map(|(_, e)| e)
            .collect();
        // Fill slices that are being written anyway, fullest first.
        kept.sort_by(|a, b| b.1.len().cmp(&a.1.len()).then(a.0.cmp(&b.0)));
        for (_, next, changed) in kept.iter_mut() {
            if !*changed {
                continue;
            }
            while next.len() < max {
                let Some(e) = remaining.pop() else { break };
                next.push(e.clone());
            }
        }
        // Then one unchanged slice with room for all that is left.
        if !remaining.is_empty() {
            if let Some((_, next, changed)) = kept
                .iter_mut()
                .filter(|(_, n, c)| !*c && n.len() + remaining.len() <= max)
                .max_by_key(|(_, n, _)| n.len())
            {
                next.extend(remaining.drain(..).cloned());
                *changed = true;
            }
        }
        remaining.reverse();
        for chunk in remaining.chunks(max) {
            plan.create
                .push((ports.clone(), chunk.iter().map(|e| (*e).clone()).collect()));
        }
        for (name, next, changed) in kept {
            if changed {
                plan.update.insert(name, (ports.clone(), next));
            }
        }
    }
    plan
}

/// Our writes the cache must show before the next sync of the service may trust it.
#[derive(Debug, Default)]
struct Tracker {
    /// service key → slice name → resourceVersion written (None: deleted).
    written: HashMap<String, HashMap<String, Option<u64>>>,
}

impl Tracker {
    fn stale(&mut self, svc: &str, cache: &[Arc<EndpointSlice>]) -> bool {
        let Some(w) = self.written.get_mut(svc) else {
            return false;
        };
        w.retain(|name, rv| {
            let cached = cache.iter().find(|s| s.name_any() == *name);
            match (rv, cached) {
                (None, None) => false,
                (None, Some(_)) => true,
                (Some(_), None) => true,
                (Some(want), Some(s)) => {
                    let have: Option<u64> = s.resource_version().and_then(|v| v.parse().ok());
                    have.is_none_or(|h| h < *want)
                }
            }
        });
        !w.is_empty()
    }

    fn wrote(&mut self, svc: &str, name: String, rv: Option<u64>) {
        self.written
            .entry(svc.to_string())
            .or_default()
            .insert(name, rv);
    }
}

pub struct EndpointSliceController {
    client: Client,
    services: Arc<Cache<Service>>,
    pods: Arc<Cache<Pod>>,
    slices: Arc<Cache<EndpointSlice>>,
    /// Endpoint zones and topology hints ([`crate::endpointslice_hints`]).
    nodes: Arc<Cache<Node>>,
    queue: Arc<Queue>,
    tracker: Mutex<Tracker>,
}

impl std::fmt::Debug for EndpointSliceController {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EndpointSliceController")
            .finish_non_exhaustive()
    }
}

fn managed_by_us(s: &EndpointSlice) -> bool {
    s.labels().get(MANAGED_BY_LABEL).map(String::as_str) == Some(CONTROLLER_NAME)
}

impl EndpointSliceController {
    pub fn register(informers: &Informers, client: Client) -> Arc<Self> {
        let c = Arc::new(Self {
            client,
            services: informers.services.cache(),
            pods: informers.pods.cache(),
            slices: informers.endpointslices.cache(),
            nodes: informers.nodes.cache(),
            queue: Queue::new(),
            tracker: Mutex::new(Tracker::default()),
        });
        let q = c.queue.clone();
        informers.services.add_handler(move |ch| {
            let s = match ch {
                Change::Added(s) | Change::Updated { new: s, .. } | Change::Deleted(s) => s,
            };
            q.add(key(&s.namespace().unwrap_or_default(), &s.name_any()));
        });
        let q = c.queue.clone();
        informers.endpointslices.add_handler(move |ch| {
            let s = match ch {
                Change::Added(s) | Change::Updated { new: s, .. } | Change::Deleted(s) => s,
            };
            if managed_by_us(s) {
                if let Some(svc) = s.labels().get(SERVICE_NAME_LABEL) {
                    q.add(key(&s.namespace().unwrap_or_default(), svc));
                }
            }
        });
        informers
            .pods
            .add_handler(pod_handler(c.services.clone(), c.queue.clone()));
        informers
            .nodes
            .add_handler(crate::endpointslice_hints::node_handler(
                c.services.clone(),
                c.queue.clone(),
            ));
        c
    }

    pub async fn run(self: Arc<Self>, workers: usize) {
        self.services.wait_synced().await;
        self.pods.wait_synced().await;
        self.slices.wait_synced().await;
        self.nodes.wait_synced().await;
        let q = self.queue.clone();
        run_workers(q, workers, "endpointslice", move |k| {
            let c = self.clone();
            async move {
                let span = tracing::debug_span!("sync_endpointslices", key = %k);
                c.sync(&k).instrument(span).await
            }
        })
        .await;
    }

    async fn sync(&self, k: &str) -> Result<Requeue, EndpointSliceError> {
        let (ns, name) = split_key(k);
        let api: Api<EndpointSlice> = Api::namespaced(self.client.clone(), ns);
        let existing: Vec<Arc<EndpointSlice>> = self
            .slices
            .list_namespace(ns)
            .into_iter()
            .filter(|s| {
                managed_by_us(s)
                    && s.labels().get(SERVICE_NAME_LABEL).map(String::as_str) == Some(name)
            })
            .collect();
        if self.tracker.lock().expect("tracker").stale(k, &existing) {
            return Err(EndpointSliceError::StaleCache { key: k.to_string() });
        }
        let err = |what, slice: String| {
            move |source| EndpointSliceError::Api {
                key: k.to_string(),
                what,
                slice,
                source,
            }
        };
        let Some(svc) = self.services.get(ns, name) else {
            // Owner references make the API server's garbage collector remove them too; deleting
            // here is what kube does and does not wait for the collector.
            for s in existing {
                match api.delete(&s.name_any(), &DeleteParams::default()).await {
                    Ok(_) => self
                        .tracker
                        .lock()
                        .expect("tracker")
                        .wrote(k, s.name_any(), None),
                    Err(e) if is_not_found(&e) => {}
                    Err(e) => return Err(err("deleting", s.name_any())(e)),
                }
            }
            return Ok(Requeue::default());
        };
        if selector(&svc).is_none() {
            return Ok(Requeue::default());
        }
        let mut want = desired(&svc, &self.pods.list_namespace(ns));
        if let Some(why) = crate::endpointslice_hints::apply(&svc, &mut want, &self.nodes.list()) {
            tracing::info!(service = %k, "topology hints not set: {why}");
        }
        let refs: Vec<&EndpointSlice> = existing.iter().map(|s| s.as_ref()).collect();
        let mut plan = plan(&refs, &want, MAX_ENDPOINTS_PER_SLICE);
        let want_labels = slice_labels(&svc);
        // A slice whose labels are out of date is rewritten with its current content.
        for s in &existing {
            if s.metadata.labels.as_ref() != Some(&want_labels)
                && !plan.update.contains_key(&s.name_any())
                && !plan.delete.contains(&s.name_any())
            {
                plan.update
                    .insert(s.name_any(), (s.ports.clone(), s.endpoints.clone()));
            }
        }
        let owner = podutil::controller_ref(&svc.metadata, "v1", "Service");
        for name in &plan.delete {
            match api.delete(name, &DeleteParams::default()).await {
                Ok(_) => self
                    .tracker
                    .lock()
                    .expect("tracker")
                    .wrote(k, name.clone(), None),
                Err(e) if is_not_found(&e) => {}
                Err(e) => return Err(err("deleting", name.clone())(e)),
            }
        }
        for (slice, (ports, endpoints)) in plan.update {
            let Some(cur) = existing.iter().find(|s| s.name_any() == slice) else {
                continue;
            };
            let mut next = (**cur).clone();
            next.metadata.labels = Some(want_labels.clone());
            next.ports = ports;
            next.endpoints = endpoints;
            let written = api
                .replace(&slice, &PostParams::default(), &next)
                .await
                .map_err(err("updating", slice.clone()))?;
            self.track(k, &written);
        }
        for (ports, endpoints) in plan.create {
            let s = EndpointSlice {
                metadata: ObjectMeta {
                    generate_name: Some(slice_prefix(name)),
                    namespace: Some(ns.to_string()),
                    labels: Some(want_labels.clone()),
                    owner_references: Some(vec![owner.clone()]),
                    ..Default::default()
                },
                address_type: "IPv4".into(),
                endpoints,
                ports,
            };
            let written = api
                .create(&PostParams::default(), &s)
                .await
                .map_err(err("creating", slice_prefix(name)))?;
            self.track(k, &written);
        }
        Ok(Requeue::default())
    }

    fn track(&self, k: &str, s: &EndpointSlice) {
        let rv = s.resource_version().and_then(|v| v.parse().ok());
        self.tracker
            .lock()
            .expect("tracker")
            .wrote(k, s.name_any(), rv.or(Some(0)));
    }
}

/// `<service>-`, cut so generated names fit 63 characters (kube's getEndpointSlicePrefix).
fn slice_prefix(service: &str) -> String {
    let mut p = format!("{service}-");
    if p.len() > 58 {
        p.truncate(58);
    }
    p
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

    use super::*;
    use crate::endpoints::tests::{pod, service};

    fn slice(name: &str, port: i32, eps: &[&str]) -> EndpointSlice {
        EndpointSlice {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            address_type: "IPv4".into(),
            ports: Some(vec![EndpointPort {
                name: Some("web".into()),
                port: Some(port),
                protocol: Some("TCP".into()),
                app_protocol: None,
            }]),
            endpoints: eps
                .iter()
                .map(|n| Endpoint {
                    addresses: vec![format!("10.0.0.{}", &n[1..])],
                    target_ref: Some(ObjectReference {
                        uid: Some(format!("u-{n}")),
                        ..Default::default()
                    }),
                    ..Default::default()
                })
                .collect(),
        }
    }

    #[test]
    fn desired_endpoints_carry_conditions_and_group_by_resolved_port() {
        let svc = service(IntOrString::String("http".into()));
        let pods = vec![
            pod("p1", "10.0.0.1", true, ("http", 8080)),
            pod("p2", "10.0.0.2", false, ("http", 8080)),
            pod("p3", "10.0.0.3", true, ("http", 9090)),
        ];
        let d = desired(&svc, &pods);
        assert_eq!(d.len(), 2);
        let (_, eps8080) = d
            .values()
            .find(|(p, _)| p.as_ref().unwrap()[0].port == Some(8080))
            .unwrap();
        let p2 = &eps8080["u-p2"];
        let c = p2.conditions.as_ref().unwrap();
        assert_eq!(
            (c.ready, c.serving, c.terminating),
            (Some(false), Some(false), Some(false))
        );
    }

    fn want_of(svc_pods: usize) -> Desired {
        let svc = service(IntOrString::Int(8080));
        let pods: Vec<_> = (1..=svc_pods)
            .map(|i| {
                pod(
                    &format!("p{i}"),
                    &format!("10.0.{}.{}", i / 250, i % 250 + 1),
                    true,
                    ("x", 1),
                )
            })
            .collect();
        desired(&svc, &pods)
    }

    #[test]
    fn packs_at_most_100_per_slice() {
        let p = plan(&[], &want_of(250), 100);
        let mut sizes: Vec<usize> = p.create.iter().map(|(_, e)| e.len()).collect();
        sizes.sort();
        assert_eq!(sizes, [50, 100, 100]);
        assert!(p.update.is_empty() && p.delete.is_empty());
    }

    #[test]
    fn unchanged_slices_are_left_alone_and_new_endpoints_fill_a_slice_with_room() {
        let want = want_of(3);
        let s = slice("s1", 8080, &["p1", "p2"]);
        // p1, p2 unchanged except their full values (conditions etc.): the slice is rewritten
        // with the desired values and p3 joins it.
        let p = plan(&[&s], &want, 100);
        assert!(p.create.is_empty(), "{p:?}");
        assert_eq!(p.update["s1"].1.len(), 3);
        // Already exactly right: nothing to do.
        let exact = EndpointSlice {
            endpoints: want.values().next().unwrap().1.values().cloned().collect(),
            ..slice("s1", 8080, &[])
        };
        assert_eq!(plan(&[&exact], &want, 100), Plan::default());
    }

    #[test]
    fn empty_service_keeps_one_placeholder_and_removed_ports_delete_slices() {
        let empty = BTreeMap::new();
        let a = slice("a", 8080, &["p1"]);
        let b = slice("b", 8080, &["p2"]);
        let p = plan(&[&a, &b], &empty, 100);
        assert_eq!(p.update.len(), 1);
        assert_eq!(p.update["a"], (None, Vec::new()));
        assert_eq!(p.delete, ["b"]);
        assert_eq!(plan(&[], &empty, 100).create, vec![(None, Vec::new())]);
        // Slices of a port set no longer wanted go.
        let want = want_of(1);
        let old_port = slice("old", 7070, &["p1"]);
        let p = plan(&[&old_port], &want, 100);
        assert_eq!(p.delete, ["old"]);
        assert_eq!(p.create.len(), 1);
    }
}
