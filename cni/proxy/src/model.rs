//! Services and their EndpointSlices as the proxy sees them: one [`ServicePort`] per port of a
//! Service, with the endpoints its slices give that port. This is where API objects are checked;
//! everything after works on parsed addresses and numbers only, so no text from an object ever
//! reaches the ruleset except through the sanitized names built here.
//!
//! Endpoint conditions follow kube-proxy: `ready` unset counts as ready, `serving` unset follows
//! `ready`, `terminating` unset is false.

use std::{
    collections::BTreeSet,
    fmt,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

use ipnet::IpNet;
use k8s_openapi::api::{core::v1::Service, discovery::v1::EndpointSlice};

/// The label that ties an EndpointSlice to its Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
/// kube's `AnnotationLoadBalancerSourceRangesKey`: comma-separated CIDRs, read when
/// `spec.loadBalancerSourceRanges` is empty.
pub const SOURCE_RANGES_ANNOTATION: &str = "service.beta.kubernetes.io/load-balancer-source-ranges";

/// `namespace/name` of a Service.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServiceKey {
    pub namespace: String,
    pub name: String,
}

impl fmt::Display for ServiceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protocol {
    Tcp,
    Udp,
    Sctp,
}

impl Protocol {
    fn parse(s: Option<&str>) -> Result<Self, String> {
        match s.unwrap_or("TCP") {
            "TCP" => Ok(Protocol::Tcp),
            "UDP" => Ok(Protocol::Udp),
            "SCTP" => Ok(Protocol::Sctp),
            other => Err(format!("protocol {other:?} is not TCP, UDP or SCTP")),
        }
    }

    /// The nft keyword (`tcp`, `udp`, `sctp`).
    pub fn nft(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Sctp => "sctp",
        }
    }
}

/// IPv4 or IPv6: one nftables table each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    pub fn of(ip: &IpAddr) -> Self {
        if ip.is_ipv4() {
            Family::V4
        } else {
            Family::V6
        }
    }
}

/// One endpoint of one service port.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Endpoint {
    pub ip: IpAddr,
    pub port: u16,
    pub ready: bool,
    pub serving: bool,
    pub terminating: bool,
    /// On this node (`nodeName` equals the proxy's hostname).
    pub local: bool,
    /// The zones the EndpointSlice controller hinted this endpoint for (`hints.forZones`),
    /// sorted; empty without hints.
    pub zone_hints: Vec<String>,
}

/// One port of one Service with everything the rules need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServicePort {
    pub service: ServiceKey,
    /// The port's name, or its number when unnamed (a Service with one port may leave it
    /// unnamed).
    pub port_name: String,
    pub protocol: Protocol,
    pub port: u16,
    pub node_port: Option<u16>,
    pub cluster_ips: Vec<IpAddr>,
    pub external_ips: Vec<IpAddr>,
    pub load_balancer_ips: Vec<IpAddr>,
    /// loadBalancerSourceRanges (or the `service.beta.kubernetes.io/load-balancer-source-ranges`
    /// annotation when the field is empty): `Some` puts a firewall in front of the LoadBalancer
    /// IPs that drops other sources. `Some(empty)` (every range unusable) drops all: a firewall
    /// that was asked for never fails open.
    pub source_ranges: Option<Vec<IpNet>>,
    /// sessionAffinity ClientIP: the timeout in seconds.
    pub affinity_timeout: Option<u32>,
    pub internal_local: bool,
    pub external_local: bool,
    /// `spec.healthCheckNodePort` of a LoadBalancer Service with externalTrafficPolicy Local:
    /// where this node answers load balancers whether it has local endpoints.
    pub health_check_node_port: Option<u16>,
    pub endpoints: Vec<Endpoint>,
}

impl ServicePort {
    /// `ns/name/proto/port`: what chain names are built from (kube-proxy's servicePortName).
    pub fn key(&self) -> String {
        format!(
            "{}/{}/{}/{}",
            self.service.namespace,
            self.service.name,
            self.protocol.nft(),
            self.port_name
        )
    }
}

/// What was wrong with an object, for the log line (the object's other ports still work).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub object: String,
    pub why: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.object, self.why)
    }
}

/// kube-proxy's default sessionAffinity timeout (3 hours).
pub const DEFAULT_AFFINITY_TIMEOUT: u32 = 10_800;

/// Names that reach nft (namespace, name, port name) must be DNS-label-like; the API server
/// checks this, but the proxy must not trust a server it does not know.
fn safe_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
}

fn parse_ips<'a>(
    what: &str,
    list: impl IntoIterator<Item = &'a str>,
    problems: &mut Vec<String>,
) -> Vec<IpAddr> {
    let mut out = Vec::new();
    for s in list {
        match s.parse::<IpAddr>() {
            Ok(ip) if usable_service_ip(&ip) => out.push(ip),
            Ok(ip) => problems.push(format!("{what} {ip} is not a unicast address")),
            Err(_) => problems.push(format!("{what} {s:?} is not an IP address")),
        }
    }
    out.sort();
    out.dedup();
    out
}

fn usable_service_ip(ip: &IpAddr) -> bool {
    !(ip.is_unspecified()
        || ip.is_multicast()
        || ip.is_loopback()
        || *ip == IpAddr::V4(Ipv4Addr::BROADCAST))
}

fn port_u16(v: i32) -> Option<u16> {
    u16::try_from(v).ok().filter(|p| *p != 0)
}

/// The service ports of `svc` with their endpoints from `slices` (those labelled for it), plus
/// the problems found. Headless and ExternalName Services have no ports here: the proxy does not
/// serve them.
pub fn service_ports(
    svc: &Service,
    slices: &[&EndpointSlice],
    hostname: &str,
) -> (Vec<ServicePort>, Vec<Problem>) {
    let namespace = svc.metadata.namespace.clone().unwrap_or_default();
    let name = svc.metadata.name.clone().unwrap_or_default();
    let object = format!("service {namespace}/{name}");
    let mut problems = Vec::new();
    let bad = |problems: &mut Vec<Problem>, why: String| {
        problems.push(Problem {
            object: object.clone(),
            why,
        })
    };
    if !safe_name(&namespace) || !safe_name(&name) {
        bad(&mut problems, "namespace or name is not a DNS label".into());
        return (Vec::new(), problems);
    }
    let Some(spec) = svc.spec.as_ref() else {
        return (Vec::new(), problems);
    };
    if spec.type_.as_deref() == Some("ExternalName") {
        return (Vec::new(), problems);
    }
    let mut ip_problems = Vec::new();
    let cluster_ips: Vec<&str> = match (&spec.cluster_ips, &spec.cluster_ip) {
        (Some(list), _) if !list.is_empty() => list.iter().map(String::as_str).collect(),
        (_, Some(one)) => vec![one.as_str()],
        _ => Vec::new(),
    };
    if cluster_ips.contains(&"None") {
        return (Vec::new(), problems); // headless: DNS answers with the endpoints
    }
    let cluster_ips = parse_ips(
        "clusterIP",
        cluster_ips.into_iter().filter(|s| !s.is_empty()),
        &mut ip_problems,
    );
    let external_ips = parse_ips(
        "externalIP",
        spec.external_ips.iter().flatten().map(String::as_str),
        &mut ip_problems,
    );
    let load_balancer_ips = if spec.type_.as_deref() == Some("LoadBalancer") {
        parse_ips(
            "loadBalancer ingress IP",
            svc.status
                .iter()
                .flat_map(|s| s.load_balancer.iter())
                .flat_map(|lb| lb.ingress.iter().flatten())
                .filter_map(|i| i.ip.as_deref()),
            &mut ip_problems,
        )
    } else {
        Vec::new()
    };
    let source_ranges = if load_balancer_ips.is_empty() {
        None
    } else {
        source_ranges(svc, &mut ip_problems)
    };
    for p in ip_problems {
        bad(&mut problems, p);
    }
    let affinity_timeout = (spec.session_affinity.as_deref() == Some("ClientIP")).then(|| {
        spec.session_affinity_config
            .as_ref()
            .and_then(|c| c.client_ip.as_ref())
            .and_then(|c| c.timeout_seconds)
            .and_then(|t| u32::try_from(t).ok())
            .filter(|t| (1..=86_400).contains(t))
            .unwrap_or(DEFAULT_AFFINITY_TIMEOUT)
    });
    let internal_local = spec.internal_traffic_policy.as_deref() == Some("Local");
    let external_local = spec.external_traffic_policy.as_deref() == Some("Local");
    let node_ports_allowed = matches!(spec.type_.as_deref(), Some("NodePort" | "LoadBalancer"));
    let health_check_node_port = if spec.type_.as_deref() == Some("LoadBalancer") && external_local
    {
        match spec.health_check_node_port {
            None | Some(0) => None,
            Some(p) => {
                let port = port_u16(p);
                if port.is_none() {
                    bad(
                        &mut problems,
                        format!("healthCheckNodePort {p} is not a port number; no health check"),
                    );
                }
                port
            }
        }
    } else {
        None
    };

    let mut out = Vec::new();
    let mut seen = BTreeSet::new();
    let ports = spec.ports.as_deref().unwrap_or_default();
    for p in ports {
        let label = p.name.clone().unwrap_or_default();
        let protocol = match Protocol::parse(p.protocol.as_deref()) {
            Ok(proto) => proto,
            Err(why) => {
                bad(
                    &mut problems,
                    format!("port {label:?}: {why}; port skipped"),
                );
                continue;
            }
        };
        let Some(port) = port_u16(p.port) else {
            bad(
                &mut problems,
                format!(
                    "port {label:?}: {} is not a port number (1-65535); port skipped",
                    p.port
                ),
            );
            continue;
        };
        let port_name = match p.name.as_deref() {
            Some(n) if !n.is_empty() => n.to_string(),
            _ => port.to_string(),
        };
        if !safe_name(&port_name) {
            bad(
                &mut problems,
                format!("port name {port_name:?} is not a DNS label; port skipped"),
            );
            continue;
        }
        if !seen.insert((protocol, port)) {
            bad(
                &mut problems,
                format!(
                    "port {port}/{} appears twice; the second is skipped",
                    protocol.nft()
                ),
            );
            continue;
        }
        let node_port = match p.node_port {
            Some(np) if node_ports_allowed => match port_u16(np) {
                Some(n) => Some(n),
                None => {
                    bad(
                        &mut problems,
                        format!(
                            "port {port_name}: nodePort {np} is not a port number; no NodePort"
                        ),
                    );
                    None
                }
            },
            _ => None,
        };
        let endpoints = endpoints_for(
            p.name.as_deref().unwrap_or(""),
            protocol,
            slices,
            hostname,
            &mut problems,
        );
        out.push(ServicePort {
            service: ServiceKey {
                namespace: namespace.clone(),
                name: name.clone(),
            },
            port_name,
            protocol,
            port,
            node_port,
            cluster_ips: cluster_ips.clone(),
            external_ips: external_ips.clone(),
            load_balancer_ips: load_balancer_ips.clone(),
            source_ranges: source_ranges.clone(),
            affinity_timeout,
            internal_local,
            external_local,
            health_check_node_port,
            endpoints,
        });
    }
    (out, problems)
}

/// The source ranges of a LoadBalancer Service, as kube's `GetLoadBalancerSourceRanges` reads
/// them: the field, else the annotation; `None` when neither is set (or both are blank).
/// Unparsable entries are reported and left out.
fn source_ranges(svc: &Service, problems: &mut Vec<String>) -> Option<Vec<IpNet>> {
    let field: Vec<&str> = svc
        .spec
        .iter()
        .flat_map(|s| s.load_balancer_source_ranges.iter().flatten())
        .map(|s| s.trim())
        .filter(|s| !s.is_empty())
        .collect();
    let (what, entries) = if field.is_empty() {
        let annotation = svc
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(SOURCE_RANGES_ANNOTATION))
            .map(|v| v.trim())
            .filter(|v| !v.is_empty())?;
        let entries: Vec<&str> = annotation.split(',').map(str::trim).collect();
        (SOURCE_RANGES_ANNOTATION, entries)
    } else {
        ("loadBalancerSourceRanges", field)
    };
    let mut out = Vec::new();
    for e in entries {
        match e.parse::<IpNet>() {
            Ok(net) => out.push(net.trunc()),
            Err(_) => problems.push(format!(
                "{what} entry {e:?} is not a CIDR; left out (the firewall stays)"
            )),
        }
    }
    out.sort();
    out.dedup();
    Some(out)
}

/// The endpoints the slices give the service port named `port_name` (EndpointSlice ports match
/// Service ports by name and protocol), deduplicated by address and port.
fn endpoints_for(
    port_name: &str,
    protocol: Protocol,
    slices: &[&EndpointSlice],
    hostname: &str,
    problems: &mut Vec<Problem>,
) -> Vec<Endpoint> {
    let mut out: Vec<Endpoint> = Vec::new();
    for slice in slices {
        let object = format!(
            "endpointslice {}/{}",
            slice.metadata.namespace.as_deref().unwrap_or("?"),
            slice.metadata.name.as_deref().unwrap_or("?")
        );
        let family = match slice.address_type.as_str() {
            "IPv4" => Family::V4,
            "IPv6" => Family::V6,
            _ => continue, // FQDN slices are not proxied (as kube-proxy)
        };
        for sp in slice.ports.iter().flatten() {
            if sp.name.as_deref().unwrap_or("") != port_name
                || Protocol::parse(sp.protocol.as_deref()).ok() != Some(protocol)
            {
                continue;
            }
            let Some(port) = sp.port.and_then(port_u16) else {
                problems.push(Problem {
                    object: object.clone(),
                    why: format!("port {port_name:?} has no usable port number; skipped"),
                });
                continue;
            };
            for ep in &slice.endpoints {
                let Some(addr) = ep.addresses.first() else {
                    continue;
                };
                let ip = match addr.parse::<IpAddr>() {
                    Ok(ip) if Family::of(&ip) == family && usable_endpoint_ip(&ip) => ip,
                    _ => {
                        problems.push(Problem {
                            object: object.clone(),
                            why: format!(
                                "address {addr:?} is not a usable {} address; skipped",
                                slice.address_type
                            ),
                        });
                        continue;
                    }
                };
                let c = ep.conditions.as_ref();
                let ready = c.and_then(|c| c.ready).unwrap_or(true);
                let serving = c.and_then(|c| c.serving).unwrap_or(ready);
                let terminating = c.and_then(|c| c.terminating).unwrap_or(false);
                if out.iter().any(|e| e.ip == ip && e.port == port) {
                    continue;
                }
                out.push(Endpoint {
                    ip,
                    port,
                    ready,
                    serving,
                    terminating,
                    local: ep.node_name.as_deref() == Some(hostname),
                    zone_hints: zone_hints(ep),
                });
            }
        }
    }
    out.sort();
    out
}

/// The zone names of an endpoint's `hints.forZones` (blank names dropped), sorted.
fn zone_hints(ep: &k8s_openapi::api::discovery::v1::Endpoint) -> Vec<String> {
    let mut z: Vec<String> = ep
        .hints
        .iter()
        .flat_map(|h| h.for_zones.iter().flatten())
        .map(|z| z.name.clone())
        .filter(|n| !n.is_empty())
        .collect();
    z.sort();
    z.dedup();
    z
}

fn usable_endpoint_ip(ip: &IpAddr) -> bool {
    usable_service_ip(ip)
        && *ip != IpAddr::V6(Ipv6Addr::UNSPECIFIED)
        && !matches!(ip, IpAddr::V4(v4) if v4.is_link_local())
}

/// The endpoints traffic goes to, chosen as kube-proxy does: ready ones, or when none is ready
/// the serving-and-terminating ones (so connections drain instead of failing during a rollout).
pub fn usable(endpoints: &[Endpoint], local_only: bool) -> Vec<&Endpoint> {
    let pool = || endpoints.iter().filter(|e| !local_only || e.local);
    let ready: Vec<&Endpoint> = pool().filter(|e| e.ready).collect();
    if !ready.is_empty() {
        return ready;
    }
    pool().filter(|e| e.serving && e.terminating).collect()
}

/// Whether topology-aware routing applies to these endpoints on a node in `zone` (kube-proxy's
/// `canUseTopology`): the node has a zone, every ready endpoint carries zone hints, and at least
/// one is hinted for the node's zone. Otherwise every endpoint is used, so a half-hinted or
/// foreign-only set never blackholes a zone.
pub fn can_use_topology(endpoints: &[Endpoint], zone: Option<&str>) -> bool {
    let Some(zone) = zone.filter(|z| !z.is_empty()) else {
        return false;
    };
    let mut for_zone = false;
    for e in endpoints.iter().filter(|e| e.ready) {
        if e.zone_hints.is_empty() {
            return false;
        }
        for_zone |= e.zone_hints.iter().any(|z| z == zone);
    }
    for_zone
}

/// The endpoints of the cluster traffic policy, as kube-proxy's `CategorizeEndpoints`: ready
/// ones (only those hinted for `zone` when [`can_use_topology`]), or when none is ready the
/// serving-and-terminating ones, whatever their hints.
pub fn cluster_endpoints<'a>(endpoints: &'a [Endpoint], zone: Option<&str>) -> Vec<&'a Endpoint> {
    if can_use_topology(endpoints, zone) {
        let zone = zone.unwrap_or_default();
        let ready: Vec<&Endpoint> = endpoints
            .iter()
            .filter(|e| e.ready && e.zone_hints.iter().any(|z| z == zone))
            .collect();
        if !ready.is_empty() {
            return ready;
        }
    }
    usable(endpoints, false)
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::{
        core::v1::{ServicePort as KPort, ServiceSpec},
        discovery::v1::{Endpoint as KEndpoint, EndpointConditions, EndpointPort},
    };
    use serde_json::json;

    use super::*;

    fn svc(v: serde_json::Value) -> Service {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn bad_ports_are_skipped_and_named_the_rest_kept() {
        let s = Service {
            metadata: kube::api::ObjectMeta {
                namespace: Some("ns".into()),
                name: Some("web".into()),
                ..Default::default()
            },
            spec: Some(ServiceSpec {
                cluster_ip: Some("10.96.0.10".into()),
                ports: Some(vec![
                    KPort {
                        name: Some("a".into()),
                        port: 80,
                        protocol: Some("TCP".into()),
                        ..Default::default()
                    },
                    KPort {
                        name: Some("b".into()),
                        port: 70000,
                        ..Default::default()
                    },
                    KPort {
                        name: Some("c".into()),
                        port: 81,
                        protocol: Some("ICMP".into()),
                        ..Default::default()
                    },
                ]),
                ..Default::default()
            }),
            ..Default::default()
        };
        let slice = EndpointSlice {
            address_type: "IPv4".into(),
            endpoints: vec![
                KEndpoint {
                    addresses: vec!["10.244.1.5".into()],
                    conditions: Some(EndpointConditions {
                        ready: Some(false),
                        serving: Some(true),
                        terminating: Some(true),
                    }),
                    node_name: Some("n1".into()),
                    ..Default::default()
                },
                KEndpoint {
                    addresses: vec!["not-an-ip".into()],
                    ..Default::default()
                },
            ],
            ports: Some(vec![EndpointPort {
                name: Some("a".into()),
                port: Some(8080),
                protocol: Some("TCP".into()),
                ..Default::default()
            }]),
            ..Default::default()
        };
        let (ports, problems) = service_ports(&s, &[&slice], "n1");
        assert_eq!(ports.len(), 1);
        assert_eq!(ports[0].key(), "ns/web/tcp/a");
        assert_eq!(ports[0].endpoints.len(), 1);
        assert!(ports[0].endpoints[0].local && ports[0].endpoints[0].terminating);
        let text: Vec<String> = problems.iter().map(ToString::to_string).collect();
        assert_eq!(text.len(), 3, "{text:?}");
        for want in [
            "service ns/web: port \"b\": 70000 is not a port number",
            "service ns/web: port \"c\": protocol \"ICMP\" is not TCP, UDP or SCTP",
            "address \"not-an-ip\" is not a usable IPv4 address",
        ] {
            assert!(text.iter().any(|t| t.contains(want)), "{want}: {text:?}");
        }
        // No ready endpoint: the serving terminating one is the fallback.
        assert_eq!(usable(&ports[0].endpoints, false).len(), 1);
    }

    #[test]
    fn headless_and_external_name_have_no_ports_and_bad_names_are_refused() {
        let headless = svc(json!({"metadata": {"namespace": "a", "name": "h"},
            "spec": {"clusterIP": "None", "ports": [{"port": 80}]}}));
        assert!(service_ports(&headless, &[], "n").0.is_empty());
        let ext = svc(json!({"metadata": {"namespace": "a", "name": "e"},
            "spec": {"type": "ExternalName", "externalName": "x.example"}}));
        assert!(service_ports(&ext, &[], "n").0.is_empty());
        let weird = svc(
            json!({"metadata": {"namespace": "a", "name": "x;flush ruleset"},
            "spec": {"clusterIP": "10.96.0.1", "ports": [{"port": 80}]}}),
        );
        let (ports, problems) = service_ports(&weird, &[], "n");
        assert!(ports.is_empty());
        assert_eq!(problems.len(), 1);
    }

    fn ep(ip: &str, ready: bool, hints: &[&str]) -> Endpoint {
        Endpoint {
            ip: ip.parse().unwrap(),
            port: 80,
            ready,
            serving: true,
            terminating: !ready,
            local: false,
            zone_hints: hints.iter().map(|h| h.to_string()).collect(),
        }
    }

    fn ips(eps: Vec<&Endpoint>) -> Vec<String> {
        eps.iter().map(|e| e.ip.to_string()).collect()
    }

    #[test]
    fn topology_uses_hints_only_when_all_ready_endpoints_have_them_and_one_matches() {
        let all = [
            ep("10.0.0.1", true, &["a"]),
            ep("10.0.0.2", true, &["b"]),
            ep("10.0.0.3", true, &["a"]),
            ep("10.0.0.4", false, &[]), // not ready: its missing hints do not count
        ];
        assert_eq!(
            ips(cluster_endpoints(&all, Some("a"))),
            ["10.0.0.1", "10.0.0.3"]
        );
        assert_eq!(ips(cluster_endpoints(&all, Some("b"))), ["10.0.0.2"]);
        // No endpoint for the node's zone, or no zone label: every ready endpoint.
        assert_eq!(cluster_endpoints(&all, Some("c")).len(), 3);
        assert_eq!(cluster_endpoints(&all, None).len(), 3);
        assert_eq!(cluster_endpoints(&all, Some("")).len(), 3);
        // One ready endpoint without hints turns topology off.
        let mut half = all.to_vec();
        half[1].zone_hints.clear();
        assert_eq!(cluster_endpoints(&half, Some("a")).len(), 3);
        // No ready endpoint: the serving terminating ones, hints or not.
        let draining = [ep("10.0.0.5", false, &["b"]), ep("10.0.0.6", false, &[])];
        assert_eq!(cluster_endpoints(&draining, Some("a")).len(), 2);
    }

    #[test]
    fn slice_hints_reach_the_endpoints() {
        let s = svc(json!({"metadata": {"namespace": "a", "name": "s"},
            "spec": {"clusterIP": "10.96.0.9", "ports": [{"name": "p", "port": 80}]}}));
        let slice: EndpointSlice = serde_json::from_value(json!({
        "metadata": {"namespace": "a", "name": "s-1"}, "addressType": "IPv4",
        "ports": [{"name": "p", "port": 8080}],
        "endpoints": [
            {"addresses": ["10.244.1.2"], "zone": "a",
             "hints": {"forZones": [{"name": "b"}, {"name": "a"}]}},
            {"addresses": ["10.244.1.3"], "hints": {"forZones": [{"name": ""}]}},
        ]}))
        .unwrap();
        let (ports, problems) = service_ports(&s, &[&slice], "n");
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(ports[0].endpoints[0].zone_hints, ["a", "b"]);
        assert!(ports[0].endpoints[1].zone_hints.is_empty());
    }
}
