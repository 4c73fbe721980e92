//! Answering one question from a [`Snapshot`], with the semantics of CoreDNS's kubernetes plugin
//! (`parse.go`, `kubernetes.go` `findServices`/`findPods`, `reverse.go`, `plugin/backend_lookup.go`):
//!
//! - `<svc>.<ns>.svc.<zone>`: ClusterIP(s); headless → ready endpoint IPs; ExternalName → CNAME.
//! - `<endpoint>.<svc>.<ns>.svc.<zone>`: the endpoint with that hostname (or dashed address).
//! - `_<port>._<proto>.<svc>.<ns>.svc.<zone>`: SRV (and A/AAAA) for the named port.
//! - `<a-b-c-d>.<ns>.pod.<zone>`: the address in the name ("pods insecure", kubeadm's default).
//! - PTR for ClusterIPs and ready endpoint addresses; other reverse names are forwarded.
//! - A name that exists without records of the asked type is NODATA (NOERROR + SOA); a name that
//!   does not exist, including too many labels (search-path expansions of ndots:5 clients), is
//!   NXDOMAIN + SOA. Both are authoritative.
//!
//! Pure: no I/O, so every rule is a unit test.

use std::net::IpAddr;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::rdata::{A, AAAA, CNAME, NS, PTR, SOA, SRV, TXT};
use hickory_proto::rr::{Name, RData, Record, RecordType};

use crate::cluster::{Key, ServiceKind, Snapshot};

/// The version string CoreDNS serves at `dns-version.<zone>` TXT (the Kubernetes DNS
/// specification's schema version).
pub const DNS_SCHEMA_VERSION: &str = "1.1.0";

/// The cluster zone pea-dns is authoritative for.
#[derive(Debug, Clone)]
pub struct Zone {
    /// e.g. `cluster.local.`, lowercase, fully qualified.
    pub origin: Name,
    /// TTL of every record and the SOA minimum (CoreDNS's kubernetes `ttl`, default 5).
    pub ttl: u32,
    suffix: String,
}

impl Zone {
    pub fn new(domain: &str, ttl: u32) -> Result<Self, hickory_proto::ProtoError> {
        let trimmed = domain.trim_end_matches('.').to_ascii_lowercase();
        let mut origin = Name::from_ascii(&trimmed)?;
        origin.set_fqdn(true);
        Ok(Self {
            suffix: format!("{trimmed}."),
            origin,
            ttl,
        })
    }

    /// `<relative>.<zone>.` as a name.
    fn name(&self, relative: &str) -> Name {
        Name::from_ascii(format!("{relative}.{}", self.suffix))
            .unwrap_or_else(|_| self.origin.clone())
    }

    fn soa(&self, serial: u32) -> Record {
        Record::from_rdata(
            self.origin.clone(),
            self.ttl,
            RData::SOA(SOA::new(
                self.name("ns.dns"),
                self.name("hostmaster"),
                serial,
                7200,
                1800,
                86400,
                self.ttl,
            )),
        )
    }
}

/// What to do with a question.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Answered from the cluster's state (authoritative).
    Answer(Answer),
    /// Not ours: forward to the upstream resolvers.
    Forward,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    pub rcode: ResponseCode,
    pub answers: Vec<Record>,
    pub authority: Vec<Record>,
    pub additionals: Vec<Record>,
    /// An ExternalName target outside the zone: the handler adds its records from upstream,
    /// as CoreDNS does through its upstream lookup.
    pub chase: Option<Name>,
}

impl Answer {
    fn new(rcode: ResponseCode) -> Self {
        Self {
            rcode,
            answers: Vec::new(),
            authority: Vec::new(),
            additionals: Vec::new(),
            chase: None,
        }
    }

    fn negative(rcode: ResponseCode, zone: &Zone, snap: &Snapshot) -> Self {
        let mut a = Self::new(rcode);
        a.authority.push(zone.soa(snap.serial));
        a
    }
}

/// Where a record set points: an address, or a name (ExternalName).
#[derive(Debug, Clone, PartialEq)]
enum Host {
    Ip(IpAddr),
    Name(String),
}

/// One matched item (CoreDNS's `msg.Service`): a host, a port for SRV, and the name an SRV
/// record points at.
#[derive(Debug, Clone)]
struct Item {
    host: Host,
    port: Option<u16>,
    target: String,
}

/// The name does not exist (NXDOMAIN).
#[derive(Debug)]
struct NoName;

/// A parsed in-zone question (CoreDNS's `recordRequest`); `None` port/protocol match any.
#[derive(Debug, Default)]
struct Parsed<'a> {
    kind: &'a str,
    namespace: Option<&'a str>,
    service: Option<&'a str>,
    endpoint: Option<&'a str>,
    port: Option<&'a str>,
    protocol: Option<&'a str>,
}

fn strip_underscore(s: &str) -> &str {
    s.strip_prefix('_').unwrap_or(s)
}

/// CoreDNS `parseRequest`; `Ok(None)` for the `svc`/`pod` apexes (NODATA).
fn parse(base: &[String]) -> Result<Option<Parsed<'_>>, NoName> {
    let Some((kind, rest)) = base.split_last() else {
        return Ok(None);
    };
    if kind != "svc" && kind != "pod" {
        return Err(NoName);
    }
    let mut p = Parsed {
        kind,
        ..Parsed::default()
    };
    let Some((ns, rest)) = rest.split_last() else {
        return Ok(None);
    };
    p.namespace = Some(ns);
    if let Some((svc, rest)) = rest.split_last() {
        p.service = Some(svc);
        match rest {
            [] => {}
            [endpoint] => p.endpoint = Some(endpoint),
            [port, protocol] => {
                p.port = Some(strip_underscore(port));
                p.protocol = Some(strip_underscore(protocol));
            }
            _ => return Err(NoName),
        }
    }
    Ok(Some(p))
}

fn matches(want: Option<&str>, have: &str) -> bool {
    want.is_none_or(|w| w == have)
}

/// CoreDNS `findPods` in insecure mode: the address is taken from the name.
fn find_pod(p: &Parsed, snap: &Snapshot) -> Result<Vec<Item>, NoName> {
    let ns = p.namespace.unwrap_or_default();
    if !snap.namespaces.contains(ns) {
        return Err(NoName);
    }
    let Some(pod) = p.service else {
        return Ok(Vec::new());
    };
    let text = if pod.matches('-').count() == 3 && !pod.contains("--") {
        pod.replace('-', ".")
    } else {
        pod.replace('-', ":")
    };
    let ip: IpAddr = text.parse().map_err(|_| NoName)?;
    Ok(vec![Item {
        host: Host::Ip(ip),
        port: None,
        target: format!("{pod}.{ns}.pod"),
    }])
}

/// CoreDNS `findServices` (wildcards are not served, as in CoreDNS since 1.9).
fn find_service(p: &Parsed, snap: &Snapshot) -> Result<Vec<Item>, NoName> {
    let ns = p.namespace.unwrap_or_default();
    if !snap.namespaces.contains(ns) {
        return Err(NoName);
    }
    let Some(name) = p.service else {
        return Ok(Vec::new());
    };
    let key: Key = (ns.to_string(), name.to_string());
    let svc = snap.services.get(&key).ok_or(NoName)?;
    let base = format!("{name}.{ns}.svc");
    let mut items = Vec::new();
    match &svc.kind {
        ServiceKind::ExternalName(target) => {
            if p.endpoint.is_some() || target.parse::<IpAddr>().is_ok() {
                return Err(NoName);
            }
            items.push(Item {
                host: Host::Name(target.clone()),
                port: None,
                target: base,
            });
        }
        kind if matches!(kind, ServiceKind::Headless) || p.endpoint.is_some() => {
            for ep in snap.endpoints.get(&key).into_iter().flatten() {
                if p.endpoint.is_some_and(|e| e != ep.hostname) {
                    continue;
                }
                let target = format!("{}.{base}", ep.hostname);
                if ep.ports.is_empty() {
                    // CoreDNS adds a sentinel port to a slice without ports: addresses answer,
                    // named-port (SRV) questions do not.
                    if p.port.is_none() && p.protocol.is_none() {
                        items.push(Item {
                            host: Host::Ip(ep.ip),
                            port: None,
                            target,
                        });
                    }
                    continue;
                }
                for port in &ep.ports {
                    if matches(p.port, &port.name) && matches(p.protocol, &port.protocol) {
                        items.push(Item {
                            host: Host::Ip(ep.ip),
                            port: Some(port.port),
                            target: target.clone(),
                        });
                    }
                }
            }
        }
        ServiceKind::ClusterIp(ips) => {
            for port in &svc.ports {
                if matches(p.port, &port.name) && matches(p.protocol, &port.protocol) {
                    for ip in ips {
                        items.push(Item {
                            host: Host::Ip(*ip),
                            port: Some(port.port),
                            target: base.clone(),
                        });
                    }
                }
            }
        }
        ServiceKind::Headless => unreachable!("handled above"),
    }
    if items.is_empty() {
        return Err(NoName);
    }
    Ok(items)
}

fn labels(name: &Name) -> Vec<String> {
    name.iter()
        .map(|l| String::from_utf8_lossy(l).to_ascii_lowercase())
        .collect()
}

fn push_unique(list: &mut Vec<Record>, r: Record) {
    if !list.contains(&r) {
        list.push(r);
    }
}

fn address_record(name: Name, ttl: u32, ip: IpAddr) -> Record {
    match ip {
        IpAddr::V4(v4) => Record::from_rdata(name, ttl, RData::A(A(v4))),
        IpAddr::V6(v6) => Record::from_rdata(name, ttl, RData::AAAA(AAAA(v6))),
    }
}

fn fqdn(text: &str) -> Option<Name> {
    let mut n = Name::from_ascii(text).ok()?;
    n.set_fqdn(true);
    Some(n)
}

/// Answers `qname`/`qtype` from the snapshot, or says to forward it.
pub fn lookup(snap: &Snapshot, zone: &Zone, qname: &Name, qtype: RecordType) -> Outcome {
    if zone.origin.zone_of(qname) {
        if !snap.synced {
            return Outcome::Answer(Answer::new(ResponseCode::ServFail));
        }
        return Outcome::Answer(in_zone(snap, zone, qname, qtype));
    }
    if qtype == RecordType::PTR {
        if let Some(answer) = reverse(snap, zone, qname) {
            return Outcome::Answer(answer);
        }
    }
    Outcome::Forward
}

fn in_zone(snap: &Snapshot, zone: &Zone, qname: &Name, qtype: RecordType) -> Answer {
    let all = labels(qname);
    let base = &all[..all.len() - zone.origin.num_labels() as usize];
    let ttl = zone.ttl;
    let nodata = || Answer::negative(ResponseCode::NoError, zone, snap);
    if base.is_empty() {
        let mut a = Answer::new(ResponseCode::NoError);
        match qtype {
            RecordType::SOA => a.answers.push(zone.soa(snap.serial)),
            RecordType::NS => a.answers.push(Record::from_rdata(
                zone.origin.clone(),
                ttl,
                RData::NS(NS(zone.name("ns.dns"))),
            )),
            _ => return nodata(),
        }
        return a;
    }
    if qtype == RecordType::TXT && base == ["dns-version"] {
        let mut a = Answer::new(ResponseCode::NoError);
        a.answers.push(Record::from_rdata(
            qname.clone(),
            ttl,
            RData::TXT(TXT::new(vec![DNS_SCHEMA_VERSION.into()])),
        ));
        return a;
    }
    let nxdomain = || Answer::negative(ResponseCode::NXDomain, zone, snap);
    let parsed = match parse(base) {
        Err(NoName) => return nxdomain(),
        Ok(None) => return nodata(),
        Ok(Some(p)) => p,
    };
    let found = if parsed.kind == "pod" {
        find_pod(&parsed, snap)
    } else {
        find_service(&parsed, snap)
    };
    let items = match found {
        Err(NoName) => return nxdomain(),
        Ok(items) => items,
    };
    let mut a = Answer::new(ResponseCode::NoError);
    match qtype {
        RecordType::A | RecordType::AAAA => {
            for item in &items {
                match &item.host {
                    Host::Ip(ip) if ip.is_ipv4() == (qtype == RecordType::A) => {
                        push_unique(&mut a.answers, address_record(qname.clone(), ttl, *ip));
                    }
                    Host::Ip(_) => {}
                    Host::Name(target) => {
                        let Some(target) = fqdn(target) else { continue };
                        push_unique(
                            &mut a.answers,
                            Record::from_rdata(
                                qname.clone(),
                                ttl,
                                RData::CNAME(CNAME(target.clone())),
                            ),
                        );
                        if zone.origin.zone_of(&target) {
                            // In-zone targets are resolved here (one level, as CoreDNS).
                            let inner = in_zone(snap, zone, &target, qtype);
                            for r in inner.answers {
                                if !matches!(r.data, RData::CNAME(_)) {
                                    push_unique(&mut a.answers, r);
                                }
                            }
                        } else {
                            a.chase = Some(target);
                        }
                    }
                }
            }
        }
        RecordType::SRV => {
            // CoreDNS: every item has priority 0 and weight floor(100 / number of items).
            let weight = (100 / items.len().max(1)) as u16;
            for item in &items {
                let (target, port) = match (&item.host, item.port) {
                    (Host::Name(n), _) => (fqdn(n), 0),
                    (Host::Ip(_), Some(port)) => (Some(zone.name(&item.target)), port),
                    (Host::Ip(_), None) => continue,
                };
                let Some(target) = target else { continue };
                push_unique(
                    &mut a.answers,
                    Record::from_rdata(
                        qname.clone(),
                        ttl,
                        RData::SRV(SRV::new(0, weight, port, target.clone())),
                    ),
                );
                if let Host::Ip(ip) = item.host {
                    push_unique(&mut a.additionals, address_record(target, ttl, ip));
                }
            }
        }
        _ => {}
    }
    if a.answers.is_empty() {
        return nodata();
    }
    a
}

/// PTR for a ClusterIP (the Service's name) or a ready endpoint address (its hostname under each
/// Service); `None` when the address is not the cluster's, so the question is forwarded.
fn reverse(snap: &Snapshot, zone: &Zone, qname: &Name) -> Option<Answer> {
    let net = qname.parse_arpa_name().ok()?;
    if net.prefix_len() != net.max_prefix_len() {
        return None;
    }
    let ip = net.addr();
    let mut names = Vec::new();
    if let Some((ns, svc)) = snap.service_ips.get(&ip) {
        names.push(zone.name(&format!("{svc}.{ns}.svc")));
    } else {
        for (host, (ns, svc)) in snap.endpoint_ips.get(&ip)? {
            names.push(zone.name(&format!("{host}.{svc}.{ns}.svc")));
        }
    }
    let mut a = Answer::new(ResponseCode::NoError);
    for n in names {
        a.answers.push(Record::from_rdata(
            qname.clone(),
            zone.ttl,
            RData::PTR(PTR(n)),
        ));
    }
    Some(a)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::{EndpointEntry, PortSpec, ServiceEntry};

    fn port(name: &str, p: u16) -> PortSpec {
        PortSpec {
            name: name.into(),
            protocol: "tcp".into(),
            port: p,
        }
    }

    fn snap() -> Snapshot {
        let mut s = Snapshot {
            synced: true,
            serial: 42,
            ..Snapshot::default()
        };
        s.namespaces.insert("ns".into());
        let key = |n: &str| ("ns".to_string(), n.to_string());
        s.services.insert(
            key("web"),
            ServiceEntry {
                kind: ServiceKind::ClusterIp(vec!["10.96.0.10".parse().unwrap()]),
                ports: vec![port("http", 80), port("", 8080)],
            },
        );
        s.services.insert(
            key("db"),
            ServiceEntry {
                kind: ServiceKind::Headless,
                ports: vec![],
            },
        );
        s.services.insert(
            key("ext"),
            ServiceEntry {
                kind: ServiceKind::ExternalName("example.org".into()),
                ports: vec![],
            },
        );
        s.endpoints.insert(
            key("db"),
            vec![
                EndpointEntry {
                    ip: "10.0.0.5".parse().unwrap(),
                    hostname: "db-0".into(),
                    ports: vec![port("pg", 5432)],
                },
                EndpointEntry {
                    ip: "10.0.0.6".parse().unwrap(),
                    hostname: "10-0-0-6".into(),
                    ports: vec![port("pg", 5432)],
                },
            ],
        );
        s.service_ips
            .insert("10.96.0.10".parse().unwrap(), key("web"));
        s.endpoint_ips.insert(
            "10.0.0.5".parse().unwrap(),
            vec![("db-0".into(), key("db"))],
        );
        s
    }

    fn ask(name: &str, t: RecordType) -> Answer {
        let zone = Zone::new("cluster.local", 5).unwrap();
        match lookup(&snap(), &zone, &Name::from_ascii(name).unwrap(), t) {
            Outcome::Answer(a) => a,
            Outcome::Forward => panic!("{name} forwarded"),
        }
    }

    fn rdatas(a: &Answer) -> Vec<String> {
        a.answers.iter().map(|r| r.data.to_string()).collect()
    }

    #[test]
    fn cluster_ip_and_nodata_for_other_family() {
        let a = ask("web.ns.svc.cluster.local.", RecordType::A);
        assert_eq!(a.rcode, ResponseCode::NoError);
        assert_eq!(rdatas(&a), ["10.96.0.10"]);
        assert_eq!(a.answers[0].ttl, 5);
        let aaaa = ask("web.ns.svc.cluster.local.", RecordType::AAAA);
        assert_eq!(aaaa.rcode, ResponseCode::NoError);
        assert!(aaaa.answers.is_empty());
        assert_eq!(aaaa.authority[0].record_type(), RecordType::SOA);
        let mx = ask("web.ns.svc.cluster.local.", RecordType::MX);
        assert_eq!((mx.rcode, mx.answers.len()), (ResponseCode::NoError, 0));
    }

    #[test]
    fn nxdomain_for_missing_names_and_search_expansions() {
        for n in [
            "nope.ns.svc.cluster.local.",
            "web.other.svc.cluster.local.",
            "web.ns.svc.cluster.local.ns.svc.cluster.local.",
            "example.com.ns.svc.cluster.local.",
            "foo.cluster.local.",
            "_nope._tcp.web.ns.svc.cluster.local.",
            "db-9.db.ns.svc.cluster.local.",
            "1-2-3.ns.pod.cluster.local.",
        ] {
            let a = ask(n, RecordType::A);
            assert_eq!(a.rcode, ResponseCode::NXDomain, "{n}");
            assert_eq!(a.authority[0].record_type(), RecordType::SOA, "{n}");
        }
        // apexes and an existing namespace are NODATA
        for n in [
            "cluster.local.",
            "svc.cluster.local.",
            "ns.svc.cluster.local.",
            "ns.pod.cluster.local.",
        ] {
            let a = ask(n, RecordType::A);
            assert_eq!(
                (a.rcode, a.answers.len()),
                (ResponseCode::NoError, 0),
                "{n}"
            );
        }
    }

    #[test]
    fn headless_endpoints_and_hostnames() {
        let a = ask("db.ns.svc.cluster.local.", RecordType::A);
        assert_eq!(rdatas(&a), ["10.0.0.5", "10.0.0.6"]);
        let a = ask("db-0.db.ns.svc.cluster.local.", RecordType::A);
        assert_eq!(rdatas(&a), ["10.0.0.5"]);
        let a = ask("10-0-0-6.db.ns.svc.cluster.local.", RecordType::A);
        assert_eq!(rdatas(&a), ["10.0.0.6"]);
    }

    #[test]
    fn srv_for_named_ports() {
        let a = ask("_http._tcp.web.ns.svc.cluster.local.", RecordType::SRV);
        assert_eq!(rdatas(&a), ["0 100 80 web.ns.svc.cluster.local."]);
        assert_eq!(a.additionals[0].data.to_string(), "10.96.0.10");
        let a = ask("_pg._tcp.db.ns.svc.cluster.local.", RecordType::SRV);
        assert_eq!(
            rdatas(&a),
            [
                "0 50 5432 db-0.db.ns.svc.cluster.local.",
                "0 50 5432 10-0-0-6.db.ns.svc.cluster.local."
            ]
        );
        let a = ask("_pg._udp.db.ns.svc.cluster.local.", RecordType::SRV);
        assert_eq!(a.rcode, ResponseCode::NXDomain);
        // the plain name lists every port
        let a = ask("web.ns.svc.cluster.local.", RecordType::SRV);
        assert_eq!(a.answers.len(), 2);
    }

    #[test]
    fn external_name_is_a_cname_chased_upstream() {
        let a = ask("ext.ns.svc.cluster.local.", RecordType::A);
        assert_eq!(rdatas(&a), ["example.org."]);
        assert_eq!(a.chase, Some(Name::from_ascii("example.org.").unwrap()));
        let a = ask("x.ext.ns.svc.cluster.local.", RecordType::A);
        assert_eq!(a.rcode, ResponseCode::NXDomain);
    }

    #[test]
    fn pods_insecure() {
        let a = ask("10-0-0-9.ns.pod.cluster.local.", RecordType::A);
        assert_eq!(rdatas(&a), ["10.0.0.9"]);
        let a = ask("fd00--9.ns.pod.cluster.local.", RecordType::AAAA);
        assert_eq!(rdatas(&a), ["fd00::9"]);
        let a = ask("10-0-0-9.gone.pod.cluster.local.", RecordType::A);
        assert_eq!(a.rcode, ResponseCode::NXDomain);
    }

    #[test]
    fn ptr_for_services_and_endpoints_else_forward() {
        let a = ask("10.0.96.10.in-addr.arpa.", RecordType::PTR);
        assert_eq!(rdatas(&a), ["web.ns.svc.cluster.local."]);
        let a = ask("5.0.0.10.in-addr.arpa.", RecordType::PTR);
        assert_eq!(rdatas(&a), ["db-0.db.ns.svc.cluster.local."]);
        let zone = Zone::new("cluster.local", 5).unwrap();
        let q = Name::from_ascii("1.1.168.192.in-addr.arpa.").unwrap();
        assert_eq!(
            lookup(&snap(), &zone, &q, RecordType::PTR),
            Outcome::Forward
        );
        let q = Name::from_ascii("example.com.").unwrap();
        assert_eq!(lookup(&snap(), &zone, &q, RecordType::A), Outcome::Forward);
    }

    #[test]
    fn apex_soa_ns_version_and_unsynced() {
        let a = ask("cluster.local.", RecordType::SOA);
        assert_eq!(
            rdatas(&a),
            ["ns.dns.cluster.local. hostmaster.cluster.local. 42 7200 1800 86400 5"]
        );
        let a = ask("dns-version.cluster.local.", RecordType::TXT);
        assert_eq!(rdatas(&a), ["1.1.0"]);
        let zone = Zone::new("cluster.local", 5).unwrap();
        let s = Snapshot::default();
        let q = Name::from_ascii("web.ns.svc.cluster.local.").unwrap();
        match lookup(&s, &zone, &q, RecordType::A) {
            Outcome::Answer(a) => assert_eq!(a.rcode, ResponseCode::ServFail),
            o => panic!("{o:?}"),
        }
    }
}
