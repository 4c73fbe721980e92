//! The Endpoints controller (kube's `pkg/controller/endpoint`): for every Service with a
//! selector, an Endpoints object of the same name listing the matching pods' IPs — ready ones
//! in `addresses`, others in `notReadyAddresses` (all in `addresses` with
//! publishNotReadyAddresses) — per resolved port (a named targetPort is looked up in each pod),
//! repacked into subsets of addresses sharing the same ports.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{
    EndpointAddress, EndpointPort, EndpointSubset, Endpoints, ObjectReference, Pod, Service,
    ServicePort,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{DeleteParams, PostParams};
use kube::{Api, Client, ResourceExt};
use tracing::Instrument;

use crate::informer::{Cache, Change};
use crate::podutil::{self, labels, map_selector_matches};
use crate::queue::{run_workers, Queue, Requeue};
use crate::{is_not_found, key, split_key, Clock, Informers};

/// kube's maxCapacity: an Endpoints object lists at most this many addresses.
pub const MAX_CAPACITY: usize = 1000;
pub const HEADLESS_LABEL: &str = "service.kubernetes.io/headless";

#[derive(Debug, thiserror::Error)]
pub enum EndpointsError {
    #[error("endpoints {key}: {what}: {source}")]
    Api {
        key: String,
        what: &'static str,
        #[source]
        source: kube::Error,
    },
}

/// kube's FindPort: a numeric targetPort as is (the port itself when unset), a named one
/// looked up among the pod's container ports with the same protocol.
pub fn find_port(pod: &Pod, sp: &ServicePort) -> Option<i32> {
    match &sp.target_port {
        None => Some(sp.port),
        Some(IntOrString::Int(p)) => Some(*p),
        Some(IntOrString::String(name)) => {
            if let Ok(p) = name.parse::<i32>() {
                return Some(p);
            }
            let proto = sp.protocol.as_deref().unwrap_or("TCP");
            pod.spec
                .as_ref()?
                .containers
                .iter()
                .flat_map(|c| c.ports.iter().flatten())
                .find(|p| {
                    p.name.as_deref() == Some(name.as_str())
                        && p.protocol.as_deref().unwrap_or("TCP") == proto
                })
                .map(|p| p.container_port)
        }
    }
}

/// kube's ShouldPodBeInEndpoints: has an IP, is not finished, and (unless asked) is not
/// being deleted.
pub fn should_be_in_endpoints(pod: &Pod, include_terminating: bool) -> bool {
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    if matches!(phase, Some("Succeeded") | Some("Failed")) {
        return false;
    }
    if podutil::pod_ip(pod).is_none() {
        return false;
    }
    include_terminating || pod.metadata.deletion_timestamp.is_none()
}

/// kube's ShouldSetHostname: the pod names this service as its subdomain.
pub fn hostname_for(pod: &Pod, svc: &Service) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    let h = spec.hostname.as_deref().filter(|h| !h.is_empty())?;
    (spec.subdomain.as_deref() == Some(svc.name_any().as_str())
        && pod.namespace() == svc.namespace())
    .then(|| h.to_string())
}

pub fn is_headless(svc: &Service) -> bool {
    svc.spec.as_ref().and_then(|s| s.cluster_ip.as_deref()) == Some("None")
}

pub fn selector(svc: &Service) -> Option<&BTreeMap<String, String>> {
    svc.spec.as_ref()?.selector.as_ref()
}

/// The services in the pod's namespace whose selector matches the pod (kube's
/// GetPodServiceMemberships).
pub fn services_for_pod(services: &Cache<Service>, pod: &Pod) -> Vec<String> {
    let ns = pod.namespace().unwrap_or_default();
    services
        .list_namespace(&ns)
        .iter()
        .filter(|s| selector(s).is_some_and(|sel| map_selector_matches(sel, labels(&pod.metadata))))
        .map(|s| key(&ns, &s.name_any()))
        .collect()
}

/// Enqueues the services of a changed pod (both label sets on an update).
pub fn pod_handler(
    services: Arc<Cache<Service>>,
    queue: Arc<Queue>,
) -> impl Fn(&Change<Pod>) + Send + Sync {
    move |ch| {
        let mut keys = BTreeSet::new();
        match ch {
            Change::Added(p) | Change::Deleted(p) => keys.extend(services_for_pod(&services, p)),
            Change::Updated { old, new } => {
                if old.resource_version() == new.resource_version() {
                    return;
                }
                keys.extend(services_for_pod(&services, new));
                if old.metadata.labels != new.metadata.labels {
                    keys.extend(services_for_pod(&services, old));
                }
            }
        }
        for k in keys {
            queue.add(k);
        }
    }
}

pub struct EndpointsController {
    client: Client,
    services: Arc<Cache<Service>>,
    pods: Arc<Cache<Pod>>,
    endpoints: Arc<Cache<Endpoints>>,
    queue: Arc<Queue>,
    #[allow(dead_code)]
    clock: Clock,
}

impl std::fmt::Debug for EndpointsController {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EndpointsController")
            .finish_non_exhaustive()
    }
}

fn address_key(a: &EndpointAddress) -> (String, String) {
    (
        a.ip.clone(),
        a.target_ref
            .as_ref()
            .and_then(|r| r.uid.clone())
            .unwrap_or_default(),
    )
}

/// A service port resolved for a pod: name, number, protocol, appProtocol; `None` is the
/// no-ports sentinel of headless services.
type PortId = Option<(String, i32, String, Option<String>)>;
/// An address's identity: IP and pod uid.
type AddrKey = (String, String);
/// One subset being built: ready addresses, not-ready addresses, ports.
type Group = (
    Vec<EndpointAddress>,
    Vec<EndpointAddress>,
    Vec<EndpointPort>,
);

/// The desired subsets for `svc` over `pods` (kube's syncService loop and RepackSubsets).
pub fn desired_subsets(svc: &Service, pods: &[Arc<Pod>]) -> Vec<EndpointSubset> {
    let spec = svc.spec.clone().unwrap_or_default();
    let publish = spec.publish_not_ready_addresses == Some(true);
    let ports = spec.ports.clone().unwrap_or_default();
    // port (None: the no-ports sentinel of headless services) → address key → (address, ready)
    let mut by_port: BTreeMap<PortId, BTreeMap<AddrKey, (EndpointAddress, bool)>> = BTreeMap::new();
    for pod in pods {
        let Some(sel) = spec.selector.as_ref() else {
            return Vec::new();
        };
        if !map_selector_matches(sel, labels(&pod.metadata))
            || !should_be_in_endpoints(pod, publish)
        {
            continue;
        }
        let ip = podutil::pod_ip(pod).unwrap_or_default().to_string();
        let node = podutil::node_name(pod);
        let addr = EndpointAddress {
            ip,
            hostname: hostname_for(pod, svc),
            node_name: (!node.is_empty()).then(|| node.to_string()),
            target_ref: Some(ObjectReference {
                kind: Some("Pod".into()),
                namespace: pod.namespace(),
                name: Some(pod.name_any()),
                uid: pod.metadata.uid.clone(),
                ..Default::default()
            }),
        };
        let ready = publish || podutil::is_ready(pod);
        if ports.is_empty() {
            if is_headless(svc) {
                by_port
                    .entry(None)
                    .or_default()
                    .insert(address_key(&addr), (addr.clone(), ready));
            }
            continue;
        }
        for sp in &ports {
            let Some(num) = find_port(pod, sp) else {
                continue;
            };
            let port = (
                sp.name.clone().unwrap_or_default(),
                num,
                sp.protocol.clone().unwrap_or_else(|| "TCP".into()),
                sp.app_protocol.clone(),
            );
            by_port
                .entry(Some(port))
                .or_default()
                .insert(address_key(&addr), (addr.clone(), ready));
        }
    }
    // Ports offered by exactly the same addresses (with the same readiness) share a subset.
    let mut groups: BTreeMap<Vec<(AddrKey, bool)>, Group> = BTreeMap::new();
    for (port, addrs) in by_port {
        let sig: Vec<(AddrKey, bool)> = addrs.iter().map(|(k, (_, r))| (k.clone(), *r)).collect();
        let g = groups.entry(sig).or_insert_with(|| {
            let mut ready = Vec::new();
            let mut not_ready = Vec::new();
            for (a, r) in addrs.values() {
                if *r {
                    ready.push(a.clone());
                } else {
                    not_ready.push(a.clone());
                }
            }
            (ready, not_ready, Vec::new())
        });
        if let Some((name, port, protocol, app_protocol)) = port {
            g.2.push(EndpointPort {
                name: (!name.is_empty()).then_some(name),
                port,
                protocol: Some(protocol),
                app_protocol,
            });
        }
    }
    groups
        .into_values()
        .map(|(ready, not_ready, ports)| EndpointSubset {
            addresses: (!ready.is_empty()).then_some(ready),
            not_ready_addresses: (!not_ready.is_empty()).then_some(not_ready),
            ports: (!ports.is_empty()).then_some(ports),
        })
        .collect()
}

/// Cuts the subsets down to [`MAX_CAPACITY`] addresses (ready ones kept first), as kube does.
fn truncate(subsets: &mut [EndpointSubset]) -> bool {
    let total: usize = subsets
        .iter()
        .map(|s| {
            s.addresses.as_ref().map_or(0, Vec::len)
                + s.not_ready_addresses.as_ref().map_or(0, Vec::len)
        })
        .sum();
    if total <= MAX_CAPACITY {
        return false;
    }
    let mut left = MAX_CAPACITY;
    for s in subsets.iter_mut() {
        if let Some(a) = s.addresses.as_mut() {
            a.truncate(left);
            left -= a.len();
        }
    }
    for s in subsets.iter_mut() {
        if let Some(a) = s.not_ready_addresses.as_mut() {
            a.truncate(left);
            left -= a.len();
        }
    }
    true
}

impl EndpointsController {
    pub fn register(informers: &Informers, client: Client, clock: Clock) -> Arc<Self> {
        let c = Arc::new(Self {
            client,
            services: informers.services.cache(),
            pods: informers.pods.cache(),
            endpoints: informers.endpoints.cache(),
            queue: Queue::new(),
            clock,
        });
        let q = c.queue.clone();
        informers.services.add_handler(move |ch| {
            let s = match ch {
                Change::Added(s) | Change::Updated { new: s, .. } | Change::Deleted(s) => s,
            };
            q.add(key(&s.namespace().unwrap_or_default(), &s.name_any()));
        });
        let q = c.queue.clone();
        informers.endpoints.add_handler(move |ch| {
            // Someone else changed or deleted an Endpoints object we own: put it back.
            if let Change::Deleted(e) | Change::Updated { new: e, .. } = ch {
                q.add(key(&e.namespace().unwrap_or_default(), &e.name_any()));
            }
        });
        informers
            .pods
            .add_handler(pod_handler(c.services.clone(), c.queue.clone()));
        c
    }

    pub async fn run(self: Arc<Self>, workers: usize) {
        self.services.wait_synced().await;
        self.pods.wait_synced().await;
        self.endpoints.wait_synced().await;
        let q = self.queue.clone();
        run_workers(q, workers, "endpoint", move |k| {
            let c = self.clone();
            async move {
                let span = tracing::debug_span!("sync_endpoints", key = %k);
                c.sync(&k).instrument(span).await
            }
        })
        .await;
    }

    async fn sync(&self, k: &str) -> Result<Requeue, EndpointsError> {
        let (ns, name) = split_key(k);
        let api: Api<Endpoints> = Api::namespaced(self.client.clone(), ns);
        let err = |what| {
            move |source| EndpointsError::Api {
                key: k.to_string(),
                what,
                source,
            }
        };
        let Some(svc) = self.services.get(ns, name) else {
            // The service is gone: so are its endpoints (kube deletes them explicitly).
            if self.endpoints.get(ns, name).is_some() {
                match api.delete(name, &DeleteParams::default()).await {
                    Ok(_) => {}
                    Err(e) if is_not_found(&e) => {}
                    Err(e) => return Err(err("deleting")(e)),
                }
            }
            return Ok(Requeue::default());
        };
        if selector(&svc).is_none() {
            // Selectorless services have hand-made Endpoints.
            return Ok(Requeue::default());
        }
        let mut subsets = desired_subsets(&svc, &self.pods.list_namespace(ns));
        let truncated = truncate(&mut subsets);
        let mut want_labels: BTreeMap<String, String> = svc.labels().clone();
        if is_headless(&svc) {
            want_labels.insert(HEADLESS_LABEL.into(), String::new());
        } else {
            want_labels.remove(HEADLESS_LABEL);
        }
        let existing = self.endpoints.get(ns, name);
        let want_subsets = (!subsets.is_empty()).then_some(subsets);
        let over = "endpoints.kubernetes.io/over-capacity";
        if let Some(cur) = &existing {
            let same_labels = cur.metadata.labels.clone().unwrap_or_default() == want_labels;
            let cur_over = cur.annotations().contains_key(over);
            let cur_subsets = cur.subsets.clone().filter(|s| !s.is_empty());
            if same_labels && cur_subsets == want_subsets && cur_over == truncated {
                return Ok(Requeue::default());
            }
        }
        let mut annotations: BTreeMap<String, String> = existing
            .as_ref()
            .map(|e| e.annotations().clone())
            .unwrap_or_default();
        if truncated {
            annotations.insert(over.into(), "truncated".into());
        } else {
            annotations.remove(over);
        }
        let ep = Endpoints {
            metadata: ObjectMeta {
                name: Some(name.to_string()),
                namespace: Some(ns.to_string()),
                labels: (!want_labels.is_empty()).then_some(want_labels),
                annotations: (!annotations.is_empty()).then_some(annotations),
                resource_version: existing.as_ref().and_then(|e| e.resource_version()),
                ..Default::default()
            },
            subsets: want_subsets,
        };
        match existing {
            // The cached resourceVersion makes a stale cache a 409 and a retry.
            Some(_) => api
                .replace(name, &PostParams::default(), &ep)
                .await
                .map_err(err("updating"))?,
            None => api
                .create(&PostParams::default(), &ep)
                .await
                .map_err(err("creating"))?,
        };
        Ok(Requeue::default())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use k8s_openapi::api::core::v1::{
        Container, ContainerPort, PodCondition, PodSpec, PodStatus, ServiceSpec,
    };

    use super::*;

    pub(crate) fn pod(name: &str, ip: &str, ready: bool, port: (&str, i32)) -> Arc<Pod> {
        Arc::new(Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("ns".into()),
                uid: Some(format!("u-{name}")),
                labels: Some([("app".to_string(), "x".to_string())].into()),
                ..Default::default()
            },
            spec: Some(PodSpec {
                containers: vec![Container {
                    name: "c".into(),
                    ports: Some(vec![ContainerPort {
                        name: Some(port.0.into()),
                        container_port: port.1,
                        ..Default::default()
                    }]),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            status: Some(PodStatus {
                pod_ip: (!ip.is_empty()).then(|| ip.to_string()),
                phase: Some("Running".into()),
                conditions: Some(vec![PodCondition {
                    type_: "Ready".into(),
                    status: if ready { "True" } else { "False" }.into(),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
        })
    }

    pub(crate) fn service(target: IntOrString) -> Service {
        Service {
            metadata: ObjectMeta {
                name: Some("svc".into()),
                namespace: Some("ns".into()),
                ..Default::default()
            },
            spec: Some(ServiceSpec {
                selector: Some([("app".to_string(), "x".to_string())].into()),
                ports: Some(vec![ServicePort {
                    name: Some("web".into()),
                    port: 80,
                    target_port: Some(target),
                    protocol: Some("TCP".into()),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            status: None,
        }
    }

    #[test]
    fn named_ports_resolve_per_pod_and_subsets_group_by_port() {
        let svc = service(IntOrString::String("http".into()));
        let pods = vec![
            pod("a", "10.0.0.1", true, ("http", 8080)),
            pod("b", "10.0.0.2", false, ("http", 8080)),
            pod("c", "10.0.0.3", true, ("http", 9090)),
            pod("d", "", true, ("http", 8080)),
            pod("e", "10.0.0.5", true, ("other", 8080)),
        ];
        let subsets = desired_subsets(&svc, &pods);
        assert_eq!(subsets.len(), 2, "{subsets:#?}");
        let by_port: BTreeMap<i32, &EndpointSubset> = subsets
            .iter()
            .map(|s| (s.ports.as_ref().unwrap()[0].port, s))
            .collect();
        let ips = |a: &Option<Vec<EndpointAddress>>| -> Vec<String> {
            a.iter().flatten().map(|a| a.ip.clone()).collect()
        };
        assert_eq!(ips(&by_port[&8080].addresses), ["10.0.0.1"]);
        assert_eq!(ips(&by_port[&8080].not_ready_addresses), ["10.0.0.2"]);
        assert_eq!(ips(&by_port[&9090].addresses), ["10.0.0.3"]);
        assert_eq!(
            by_port[&8080].ports.as_ref().unwrap()[0].name.as_deref(),
            Some("web")
        );
    }

    #[test]
    fn publish_not_ready_and_headless_without_ports() {
        let mut svc = service(IntOrString::Int(8080));
        svc.spec.as_mut().unwrap().publish_not_ready_addresses = Some(true);
        let pods = vec![pod("a", "10.0.0.1", false, ("http", 1))];
        let s = desired_subsets(&svc, &pods);
        assert_eq!(s[0].addresses.as_ref().unwrap().len(), 1);
        assert!(s[0].not_ready_addresses.is_none());

        let mut headless = service(IntOrString::Int(1));
        headless.spec.as_mut().unwrap().ports = None;
        headless.spec.as_mut().unwrap().cluster_ip = Some("None".into());
        let s = desired_subsets(&headless, &pods);
        assert_eq!(s.len(), 1);
        assert!(s[0].ports.is_none());
        assert_eq!(s[0].not_ready_addresses.as_ref().unwrap()[0].ip, "10.0.0.1");
    }

    #[test]
    fn over_capacity_keeps_ready_addresses_first() {
        let addr = |i: usize| EndpointAddress {
            ip: format!("10.0.{}.{}", i / 250, i % 250),
            ..Default::default()
        };
        let mut subsets = vec![EndpointSubset {
            addresses: Some((0..900).map(addr).collect()),
            not_ready_addresses: Some((900..1200).map(addr).collect()),
            ports: None,
        }];
        assert!(truncate(&mut subsets));
        assert_eq!(subsets[0].addresses.as_ref().unwrap().len(), 900);
        assert_eq!(subsets[0].not_ready_addresses.as_ref().unwrap().len(), 100);
    }
}
