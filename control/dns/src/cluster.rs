//! The cluster's naming state as pea-dns answers from it: one immutable [`Snapshot`] built from
//! the Namespaces, Services and EndpointSlices the watchers hold, swapped whole on every change so
//! a query never sees half an update and never takes a lock held by the watcher for long.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::IpAddr;

use k8s_openapi::api::core::v1::{Namespace, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;

/// The label an EndpointSlice carries naming its Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// One port of a Service or of an endpoint, names lowercased for matching SRV queries.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PortSpec {
    pub name: String,
    /// `tcp`, `udp` or `sctp`.
    pub protocol: String,
    pub port: u16,
}

/// How a Service is answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServiceKind {
    /// `spec.clusterIPs` (one per family).
    ClusterIp(Vec<IpAddr>),
    /// `clusterIP: None`: the ready endpoints answer.
    Headless,
    /// `type: ExternalName`: a CNAME to this name (without the trailing dot).
    ExternalName(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceEntry {
    pub kind: ServiceKind,
    pub ports: Vec<PortSpec>,
}

/// One ready endpoint address of a Service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointEntry {
    pub ip: IpAddr,
    /// `hostname` of the endpoint, else the address with dashes (CoreDNS's endpointHostname).
    pub hostname: String,
    pub ports: Vec<PortSpec>,
}

/// `(namespace, name)`.
pub type Key = (String, String);

/// Everything a query can be answered from, at one moment.
#[derive(Debug, Default, Clone)]
pub struct Snapshot {
    pub namespaces: HashSet<String>,
    pub services: HashMap<Key, ServiceEntry>,
    /// Ready endpoints by Service key.
    pub endpoints: HashMap<Key, Vec<EndpointEntry>>,
    /// ClusterIP → the Service owning it (the first by key when several claim one).
    pub service_ips: HashMap<IpAddr, Key>,
    /// Endpoint IP → every (hostname, Service key) it serves, sorted.
    pub endpoint_ips: HashMap<IpAddr, Vec<(String, Key)>>,
    /// SOA serial: seconds since the epoch of the last change, as CoreDNS's `Modified()`.
    pub serial: u32,
    /// Whether every watcher has finished its first list; before that in-zone queries fail
    /// (SERVFAIL), as CoreDNS does, rather than answer NXDOMAIN for names that exist.
    pub synced: bool,
}

/// The address written with dashes: `10-0-0-5`, `fd00--5` (CoreDNS's endpointHostname).
pub fn dashed(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string().replace('.', "-"),
        IpAddr::V6(v6) => v6.to_string().replace(':', "-"),
    }
}

fn port_spec(name: Option<&String>, protocol: Option<&String>, port: i32) -> Option<PortSpec> {
    Some(PortSpec {
        name: name.map(|n| n.to_ascii_lowercase()).unwrap_or_default(),
        protocol: protocol
            .map(|p| p.to_ascii_lowercase())
            .unwrap_or_else(|| "tcp".into()),
        port: u16::try_from(port).ok().filter(|p| *p != 0)?,
    })
}

fn service_entry(svc: &Service) -> Option<ServiceEntry> {
    let spec = svc.spec.as_ref()?;
    let ports = spec
        .ports
        .iter()
        .flatten()
        .filter_map(|p| port_spec(p.name.as_ref(), p.protocol.as_ref(), p.port))
        .collect();
    let kind = if spec.type_.as_deref() == Some("ExternalName") {
        let target = spec.external_name.as_deref()?.trim_end_matches('.');
        if target.is_empty() {
            return None;
        }
        ServiceKind::ExternalName(target.to_ascii_lowercase())
    } else if spec.cluster_ip.as_deref() == Some("None") {
        ServiceKind::Headless
    } else {
        let ips: Vec<IpAddr> = match &spec.cluster_ips {
            Some(ips) if !ips.is_empty() => ips.iter().filter_map(|s| s.parse().ok()).collect(),
            _ => spec
                .cluster_ip
                .iter()
                .filter_map(|s| s.parse().ok())
                .collect(),
        };
        if ips.is_empty() {
            // Not allocated yet: nothing to answer with.
            return None;
        }
        ServiceKind::ClusterIp(ips)
    };
    Some(ServiceEntry { kind, ports })
}

fn key_of(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> Option<Key> {
    Some((meta.namespace.clone()?, meta.name.clone()?))
}

impl Snapshot {
    /// Builds a snapshot from the watchers' current objects.
    pub fn build<'a>(
        namespaces: impl IntoIterator<Item = &'a Namespace>,
        services: impl IntoIterator<Item = &'a Service>,
        slices: impl IntoIterator<Item = &'a EndpointSlice>,
        serial: u32,
        synced: bool,
    ) -> Self {
        let namespaces = namespaces
            .into_iter()
            .filter_map(|n| n.metadata.name.clone())
            .collect();
        // BTreeMap so ties between Services claiming one IP resolve the same way every time.
        let mut sorted: BTreeMap<Key, ServiceEntry> = BTreeMap::new();
        for svc in services {
            let (Some(key), Some(entry)) = (key_of(&svc.metadata), service_entry(svc)) else {
                continue;
            };
            sorted.insert(key, entry);
        }
        let mut service_ips = HashMap::new();
        for (key, entry) in &sorted {
            if let ServiceKind::ClusterIp(ips) = &entry.kind {
                for ip in ips {
                    service_ips.entry(*ip).or_insert_with(|| key.clone());
                }
            }
        }

        let mut endpoints: HashMap<Key, Vec<EndpointEntry>> = HashMap::new();
        for slice in slices {
            let Some(ns) = slice.metadata.namespace.clone() else {
                continue;
            };
            let Some(svc) = slice
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(SERVICE_NAME_LABEL))
            else {
                continue;
            };
            let ports: Vec<PortSpec> = slice
                .ports
                .iter()
                .flatten()
                .filter_map(|p| port_spec(p.name.as_ref(), p.protocol.as_ref(), p.port?))
                .collect();
            let list = endpoints.entry((ns, svc.clone())).or_default();
            for ep in &slice.endpoints {
                // Ready unset means ready (EndpointSlice API); terminating endpoints are not.
                let ready = ep.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true);
                if !ready {
                    continue;
                }
                for addr in &ep.addresses {
                    let Ok(ip) = addr.parse::<IpAddr>() else {
                        continue;
                    };
                    if list.iter().any(|e| e.ip == ip && e.ports == ports) {
                        continue;
                    }
                    let hostname = ep
                        .hostname
                        .clone()
                        .filter(|h| !h.is_empty())
                        .map(|h| h.to_ascii_lowercase())
                        .unwrap_or_else(|| dashed(ip));
                    list.push(EndpointEntry {
                        ip,
                        hostname,
                        ports: ports.clone(),
                    });
                }
            }
        }
        let mut endpoint_ips: HashMap<IpAddr, Vec<(String, Key)>> = HashMap::new();
        for (key, list) in &endpoints {
            for e in list {
                let names = endpoint_ips.entry(e.ip).or_default();
                let item = (e.hostname.clone(), key.clone());
                if !names.contains(&item) {
                    names.push(item);
                }
            }
        }
        for names in endpoint_ips.values_mut() {
            names.sort();
        }
        Self {
            namespaces,
            services: sorted.into_iter().collect(),
            endpoints,
            service_ips,
            endpoint_ips,
            serial,
            synced,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn svc(v: serde_json::Value) -> Service {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn builds_services_and_ready_endpoints() {
        let s = svc(json!({"metadata":{"namespace":"ns","name":"web"},
            "spec":{"clusterIP":"10.96.0.10","clusterIPs":["10.96.0.10","fd00::10"],
            "ports":[{"name":"HTTP","port":80,"protocol":"TCP"}]}}));
        let h = svc(json!({"metadata":{"namespace":"ns","name":"db"},
            "spec":{"clusterIP":"None","ports":[{"port":5432}]}}));
        let x = svc(json!({"metadata":{"namespace":"ns","name":"ext"},
            "spec":{"type":"ExternalName","externalName":"Example.org."}}));
        let slice: EndpointSlice = serde_json::from_value(json!({
        "metadata":{"namespace":"ns","name":"db-abc","labels":{SERVICE_NAME_LABEL:"db"}},
        "addressType":"IPv4",
        "ports":[{"name":"pg","port":5432,"protocol":"TCP"}],
        "endpoints":[
            {"addresses":["10.0.0.5"],"hostname":"db-0","conditions":{"ready":true}},
            {"addresses":["10.0.0.6"]},
            {"addresses":["10.0.0.7"],"conditions":{"ready":false}}
        ]}))
        .unwrap();
        let snap = Snapshot::build([], [&s, &h, &x], [&slice], 1, true);
        let web = &snap.services[&("ns".into(), "web".into())];
        assert_eq!(
            web.kind,
            ServiceKind::ClusterIp(vec![
                "10.96.0.10".parse().unwrap(),
                "fd00::10".parse().unwrap()
            ])
        );
        assert_eq!(web.ports[0].name, "http");
        assert_eq!(
            snap.services[&("ns".into(), "ext".into())].kind,
            ServiceKind::ExternalName("example.org".into())
        );
        let eps = &snap.endpoints[&("ns".into(), "db".into())];
        assert_eq!(eps.len(), 2, "not-ready endpoint left out: {eps:?}");
        assert_eq!(eps[0].hostname, "db-0");
        assert_eq!(eps[1].hostname, "10-0-0-6");
        assert_eq!(
            snap.service_ips[&"fd00::10".parse::<IpAddr>().unwrap()],
            ("ns".into(), "web".into())
        );
        assert_eq!(
            snap.endpoint_ips[&"10.0.0.5".parse::<IpAddr>().unwrap()],
            vec![("db-0".to_string(), ("ns".to_string(), "db".to_string()))]
        );
    }

    #[test]
    fn dashes_both_families() {
        assert_eq!(dashed("10.1.2.3".parse().unwrap()), "10-1-2-3");
        assert_eq!(dashed("fd00::5".parse().unwrap()), "fd00--5");
    }
}
