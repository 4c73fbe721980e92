//! The routing table: which of the watched Ingresses are ours (IngressClass), and for a request's
//! host and path, which Service port answers — the Ingress API's matching rules:
//!
//! - hosts: an exact host beats a wildcard (`*.example.com` covers exactly one more label), which
//!   beats rules without a host;
//! - paths: `Exact` matches the whole path; `Prefix` (and `ImplementationSpecific`, treated as
//!   `Prefix`) matches element-wise on `/`-separated segments; the longest path wins, `Exact`
//!   before `Prefix` at equal length;
//! - nothing matched: the `defaultBackend` of an Ingress (oldest first), else 404.
//!
//! Pure: built from objects, queried with strings; bad rules are skipped with a reason so the
//! rest keep working.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressBackend, IngressClass};

/// The `spec.controller` of IngressClasses pea-ingress serves.
pub const CONTROLLER: &str = "pea.dev/ingress";
/// Marks the cluster's default IngressClass.
pub const DEFAULT_CLASS_ANNOTATION: &str = "ingressclass.kubernetes.io/is-default-class";
/// The class annotation Ingresses used before `spec.ingressClassName`.
pub const LEGACY_CLASS_ANNOTATION: &str = "kubernetes.io/ingress.class";

/// A Service port an Ingress sends to, resolved to endpoint addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backend {
    /// `namespace/service:port`, for logs.
    pub name: String,
    /// Ready endpoints (address and the endpoint port of the Service port).
    pub endpoints: Vec<SocketAddr>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PathKind {
    Exact,
    Prefix,
}

#[derive(Debug, Clone)]
struct PathRule {
    path: String,
    kind: PathKind,
    backend: usize,
}

/// Where a TLS host's certificate comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsRef {
    pub host: String,
    pub namespace: String,
    /// The Ingress that names the Secret (for its Events).
    pub ingress: String,
    pub secret: String,
}

/// The routes of every Ingress of our class.
#[derive(Debug, Default)]
pub struct Table {
    backends: Vec<Backend>,
    exact_hosts: HashMap<String, Vec<PathRule>>,
    /// `*.example.com` stored as `example.com`.
    wildcard_hosts: HashMap<String, Vec<PathRule>>,
    any_host: Vec<PathRule>,
    default_backend: Option<usize>,
    /// TLS hosts and their Secrets.
    pub tls: Vec<TlsRef>,
    /// Our Ingresses, `(namespace, name)`, for status.
    pub ingresses: Vec<(String, String)>,
    /// Problems found while building (invalid hosts, unknown services, ...), one line each.
    pub problems: Vec<String>,
}

/// Whether `host` is a valid Ingress host: a DNS-1123 subdomain, optionally with a leading `*.`.
pub fn valid_host(host: &str) -> bool {
    let name = host.strip_prefix("*.").unwrap_or(host);
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        })
}

/// Element-wise prefix match of the Ingress spec (`/foo` matches `/foo`, `/foo/`, `/foo/bar`;
/// not `/foobar`). A trailing slash in the rule is ignored.
fn prefix_matches(rule: &str, path: &str) -> bool {
    let rule = rule.trim_end_matches('/');
    if rule.is_empty() {
        return true;
    }
    match path.strip_prefix(rule) {
        Some(rest) => rest.is_empty() || rest.starts_with('/'),
        None => false,
    }
}

/// Whether an Ingress belongs to `class`. `classes` is `None` when the API server does not serve
/// IngressClasses: then the class name alone decides, and Ingresses without a class are left
/// alone (no default class can be known).
pub fn is_ours(ing: &Ingress, class: &str, classes: Option<&[&IngressClass]>) -> bool {
    let Some(classes) = classes else {
        let named = ing
            .spec
            .as_ref()
            .and_then(|s| s.ingress_class_name.as_deref())
            .or_else(|| {
                ing.metadata
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get(LEGACY_CLASS_ANNOTATION))
                    .map(String::as_str)
            });
        return named == Some(class);
    };
    let ours = |name: &str| {
        name == class
            && classes.iter().any(|c| {
                c.metadata.name.as_deref() == Some(name)
                    && c.spec.as_ref().and_then(|s| s.controller.as_deref()) == Some(CONTROLLER)
            })
    };
    if let Some(name) = ing
        .spec
        .as_ref()
        .and_then(|s| s.ingress_class_name.as_deref())
    {
        return ours(name);
    }
    if let Some(name) = ing
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(LEGACY_CLASS_ANNOTATION))
    {
        return name == class;
    }
    // No class at all: ours when our class is the cluster's default.
    classes.iter().any(|c| {
        c.metadata.name.as_deref() == Some(class)
            && c.spec.as_ref().and_then(|s| s.controller.as_deref()) == Some(CONTROLLER)
            && c.metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(DEFAULT_CLASS_ANNOTATION))
                .is_some_and(|v| v == "true")
    })
}

/// Everything a table is built from.
#[derive(Debug)]
pub struct Objects<'a> {
    pub class: &'a str,
    /// `None` when the API server does not serve IngressClasses.
    pub classes: Option<Vec<&'a IngressClass>>,
    pub ingresses: Vec<&'a Ingress>,
    pub services: Vec<&'a Service>,
    pub slices: Vec<&'a EndpointSlice>,
}

impl Table {
    pub fn build(o: &Objects) -> Self {
        let mut t = Table::default();
        let services: HashMap<(String, String), &Service> = o
            .services
            .iter()
            .filter_map(|s| {
                Some((
                    (s.metadata.namespace.clone()?, s.metadata.name.clone()?),
                    *s,
                ))
            })
            .collect();
        let mut slices: HashMap<(String, String), Vec<&EndpointSlice>> = HashMap::new();
        for s in &o.slices {
            if let (Some(ns), Some(svc)) = (
                s.metadata.namespace.clone(),
                s.metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get("kubernetes.io/service-name"))
                    .cloned(),
            ) {
                slices.entry((ns, svc)).or_default().push(s);
            }
        }
        // Oldest first, so the default backend and conflicting rules resolve as they were made.
        let mut ours: Vec<&Ingress> = o
            .ingresses
            .iter()
            .copied()
            .filter(|i| is_ours(i, o.class, o.classes.as_deref()))
            .collect();
        ours.sort_by_key(|i| {
            (
                i.metadata.creation_timestamp.as_ref().map(|t| t.0),
                i.metadata.namespace.clone(),
                i.metadata.name.clone(),
            )
        });
        let mut backend_ids: BTreeMap<String, usize> = BTreeMap::new();
        for ing in ours {
            let ns = ing.metadata.namespace.clone().unwrap_or_default();
            let name = ing.metadata.name.clone().unwrap_or_default();
            t.ingresses.push((ns.clone(), name.clone()));
            let Some(spec) = ing.spec.as_ref() else {
                continue;
            };
            let mut backend = |b: &IngressBackend, t: &mut Table| -> Option<usize> {
                match resolve(&ns, b, &services, &slices) {
                    Ok(be) => {
                        let id = *backend_ids.entry(be.name.clone()).or_insert_with(|| {
                            t.backends.push(be);
                            t.backends.len() - 1
                        });
                        Some(id)
                    }
                    Err(why) => {
                        t.problems.push(format!("ingress {ns}/{name}: {why}"));
                        None
                    }
                }
            };
            if let Some(db) = &spec.default_backend {
                if let Some(id) = backend(db, &mut t) {
                    t.default_backend.get_or_insert(id);
                }
            }
            for tls in spec.tls.iter().flatten() {
                let Some(secret) = tls.secret_name.clone() else {
                    t.problems
                        .push(format!("ingress {ns}/{name}: tls entry without secretName"));
                    continue;
                };
                for host in tls.hosts.iter().flatten() {
                    if !valid_host(host) {
                        t.problems
                            .push(format!("ingress {ns}/{name}: invalid tls host {host:?}"));
                        continue;
                    }
                    t.tls.push(TlsRef {
                        host: host.clone(),
                        namespace: ns.clone(),
                        ingress: name.clone(),
                        secret: secret.clone(),
                    });
                }
            }
            for rule in spec.rules.iter().flatten() {
                let host = rule.host.clone().unwrap_or_default();
                if !host.is_empty() && !valid_host(&host) {
                    t.problems.push(format!(
                        "ingress {ns}/{name}: invalid host {host:?} (a DNS-1123 subdomain, optionally starting with \"*.\"); rule skipped"
                    ));
                    continue;
                }
                let Some(http) = &rule.http else { continue };
                for p in &http.paths {
                    let path = p.path.clone().unwrap_or_else(|| "/".into());
                    let kind = match p.path_type.as_str() {
                        "Exact" => PathKind::Exact,
                        "Prefix" | "ImplementationSpecific" => PathKind::Prefix,
                        other => {
                            t.problems.push(format!(
                                "ingress {ns}/{name}: unknown pathType {other:?} for {path}; path skipped"
                            ));
                            continue;
                        }
                    };
                    if !path.starts_with('/') {
                        t.problems.push(format!(
                            "ingress {ns}/{name}: path {path:?} does not start with '/'; path skipped"
                        ));
                        continue;
                    }
                    let Some(id) = backend(&p.backend, &mut t) else {
                        continue;
                    };
                    let r = PathRule {
                        path,
                        kind,
                        backend: id,
                    };
                    if host.is_empty() {
                        t.any_host.push(r);
                    } else if let Some(base) = host.strip_prefix("*.") {
                        t.wildcard_hosts
                            .entry(base.to_string())
                            .or_default()
                            .push(r);
                    } else {
                        t.exact_hosts.entry(host.clone()).or_default().push(r);
                    }
                }
            }
        }
        // Longest path first, Exact before Prefix at equal length; stable for earlier Ingresses.
        let order = |rules: &mut Vec<PathRule>| {
            rules.sort_by(|a, b| {
                b.path
                    .len()
                    .cmp(&a.path.len())
                    .then((a.kind == PathKind::Prefix).cmp(&(b.kind == PathKind::Prefix)))
            })
        };
        t.exact_hosts.values_mut().for_each(order);
        t.wildcard_hosts.values_mut().for_each(order);
        order(&mut t.any_host);
        t
    }

    /// The backend for a request, or `None` (404).
    pub fn route(&self, host: &str, path: &str) -> Option<&Backend> {
        let host = host.to_ascii_lowercase();
        let find = |rules: &Vec<PathRule>| {
            rules
                .iter()
                .find(|r| match r.kind {
                    PathKind::Exact => r.path == path,
                    PathKind::Prefix => prefix_matches(&r.path, path),
                })
                .map(|r| r.backend)
        };
        let wildcard = host
            .split_once('.')
            .and_then(|(_, base)| self.wildcard_hosts.get(base));
        let id = self
            .exact_hosts
            .get(&host)
            .and_then(find)
            .or_else(|| wildcard.and_then(find))
            .or_else(|| find(&self.any_host))
            .or(self.default_backend)?;
        self.backends.get(id)
    }
}

/// A backend's ready endpoints: the Service port (by number or name) → its name → the
/// EndpointSlice port of that name.
fn resolve(
    ns: &str,
    b: &IngressBackend,
    services: &HashMap<(String, String), &Service>,
    slices: &HashMap<(String, String), Vec<&EndpointSlice>>,
) -> Result<Backend, String> {
    let Some(sb) = &b.service else {
        return Err("resource backends are not supported".into());
    };
    let key = (ns.to_string(), sb.name.clone());
    let svc = services
        .get(&key)
        .ok_or_else(|| format!("service {ns}/{} not found", sb.name))?;
    let want = sb.port.as_ref().ok_or("backend without a port")?;
    let sport = svc
        .spec
        .as_ref()
        .and_then(|s| s.ports.as_ref())
        .into_iter()
        .flatten()
        .find(|p| {
            want.number == Some(p.port)
                || (want.name.is_some() && want.name.as_deref() == p.name.as_deref())
        })
        .ok_or_else(|| format!("service {ns}/{} has no port {:?}", sb.name, want))?;
    let port_name = sport.name.clone().unwrap_or_default();
    let mut endpoints = Vec::new();
    for s in slices.get(&key).into_iter().flatten() {
        let Some(port) = s
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.clone().unwrap_or_default() == port_name)
            .and_then(|p| p.port)
            .and_then(|p| u16::try_from(p).ok())
        else {
            continue;
        };
        for ep in &s.endpoints {
            if !ep.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true) {
                continue;
            }
            for a in &ep.addresses {
                if let Ok(ip) = a.parse() {
                    let addr = SocketAddr::new(ip, port);
                    if !endpoints.contains(&addr) {
                        endpoints.push(addr);
                    }
                }
            }
        }
    }
    Ok(Backend {
        name: format!("{ns}/{}:{}", sb.name, sport.port),
        endpoints,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj<T: serde::de::DeserializeOwned>(v: serde_json::Value) -> T {
        serde_json::from_value(v).unwrap()
    }

    fn table() -> Table {
        let class: IngressClass = obj(
            json!({"metadata":{"name":"pea","annotations":{DEFAULT_CLASS_ANNOTATION:"true"}},"spec":{"controller":CONTROLLER}}),
        );
        let other: IngressClass =
            obj(json!({"metadata":{"name":"nginx"},"spec":{"controller":"k8s.io/ingress-nginx"}}));
        let svc = |n: &str| -> Service {
            obj(
                json!({"metadata":{"namespace":"ns","name":n},"spec":{"ports":[{"name":"http","port":80}]}}),
            )
        };
        let slice = |n: &str, ip: &str| -> EndpointSlice {
            obj(
                json!({"metadata":{"namespace":"ns","name":format!("{n}-x"),"labels":{"kubernetes.io/service-name":n}},
                "addressType":"IPv4","ports":[{"name":"http","port":8080}],"endpoints":[{"addresses":[ip]}]}),
            )
        };
        let b = |n: &str| json!({"service":{"name":n,"port":{"number":80}}});
        let ing: Ingress = obj(json!({"metadata":{"namespace":"ns","name":"a"},"spec":{
        "ingressClassName":"pea",
        "defaultBackend": b("dflt"),
        "rules":[
          {"host":"a.example","http":{"paths":[
             {"path":"/","pathType":"Prefix","backend":b("root")},
             {"path":"/api","pathType":"Prefix","backend":b("api")},
             {"path":"/api/exact","pathType":"Exact","backend":b("exact")}]}},
          {"host":"*.wild.example","http":{"paths":[{"path":"/","pathType":"ImplementationSpecific","backend":b("wild")}]}},
          {"host":"Bad_Host","http":{"paths":[{"path":"/","pathType":"Prefix","backend":b("root")}]}},
          {"http":{"paths":[{"path":"/any","pathType":"Exact","backend":b("any")}]}}
        ]}}));
        let foreign: Ingress = obj(
            json!({"metadata":{"namespace":"ns","name":"f"},"spec":{"ingressClassName":"nginx",
            "rules":[{"host":"f.example","http":{"paths":[{"path":"/","pathType":"Prefix","backend":b("root")}]}}]}}),
        );
        let unclassed: Ingress = obj(json!({"metadata":{"namespace":"ns","name":"u"},"spec":{
            "rules":[{"host":"u.example","http":{"paths":[{"path":"/","pathType":"Prefix","backend":b("root")}]}}]}}));
        let names = ["dflt", "root", "api", "exact", "wild", "any"];
        let svcs: Vec<Service> = names.iter().map(|n| svc(n)).collect();
        let slices: Vec<EndpointSlice> = names
            .iter()
            .enumerate()
            .map(|(i, n)| slice(n, &format!("10.0.0.{}", i + 1)))
            .collect();
        Table::build(&Objects {
            class: "pea",
            classes: Some(vec![&class, &other]),
            ingresses: vec![&ing, &foreign, &unclassed],
            services: svcs.iter().collect(),
            slices: slices.iter().collect(),
        })
    }

    fn to(t: &Table, host: &str, path: &str) -> String {
        t.route(host, path)
            .map(|b| {
                b.name
                    .trim_start_matches("ns/")
                    .trim_end_matches(":80")
                    .to_string()
            })
            .unwrap_or_else(|| "404".into())
    }

    #[test]
    fn host_and_path_precedence() {
        let t = table();
        assert_eq!(to(&t, "a.example", "/"), "root");
        assert_eq!(to(&t, "A.Example", "/x"), "root");
        assert_eq!(to(&t, "a.example", "/api"), "api");
        assert_eq!(to(&t, "a.example", "/api/"), "api");
        assert_eq!(to(&t, "a.example", "/api/v1"), "api");
        assert_eq!(to(&t, "a.example", "/apix"), "root", "element-wise prefix");
        assert_eq!(to(&t, "a.example", "/api/exact"), "exact");
        assert_eq!(to(&t, "a.example", "/api/exact/more"), "api");
        assert_eq!(to(&t, "x.wild.example", "/y"), "wild");
        assert_eq!(
            to(&t, "x.y.wild.example", "/y"),
            "dflt",
            "wildcard covers one label"
        );
        assert_eq!(to(&t, "other.example", "/any"), "any");
        assert_eq!(to(&t, "other.example", "/nothing"), "dflt");
        assert_eq!(to(&t, "f.example", "/"), "dflt", "foreign class ignored");
        assert_eq!(
            to(&t, "u.example", "/"),
            "root",
            "unclassed Ingress taken by the default class"
        );
    }

    #[test]
    fn endpoints_use_the_target_port_and_bad_rules_are_reported() {
        let t = table();
        let b = t.route("a.example", "/api").unwrap();
        assert_eq!(b.endpoints, vec!["10.0.0.3:8080".parse().unwrap()]);
        assert!(
            t.problems
                .iter()
                .any(|p| p.contains("invalid host \"Bad_Host\"")),
            "{:?}",
            t.problems
        );
        assert_eq!(t.ingresses.len(), 2);
    }

    #[test]
    fn without_the_ingressclass_api_the_name_decides() {
        let named: Ingress =
            obj(json!({"metadata":{"name":"a"},"spec":{"ingressClassName":"pea"}}));
        let legacy: Ingress =
            obj(json!({"metadata":{"name":"b","annotations":{LEGACY_CLASS_ANNOTATION:"pea"}}}));
        let none: Ingress = obj(json!({"metadata":{"name":"c"},"spec":{}}));
        assert!(is_ours(&named, "pea", None));
        assert!(is_ours(&legacy, "pea", None));
        assert!(!is_ours(&none, "pea", None));
        assert!(!is_ours(&named, "other", None));
        // With the API, a class of another controller is not ours even by name.
        let foreign: IngressClass =
            obj(json!({"metadata":{"name":"pea"},"spec":{"controller":"x/y"}}));
        assert!(!is_ours(&named, "pea", Some(&[&foreign])));
    }

    #[test]
    fn host_validation() {
        assert!(valid_host("a.example"));
        assert!(valid_host("*.example"));
        assert!(!valid_host("*"));
        assert!(!valid_host("a..b"));
        assert!(!valid_host("-a.b"));
        assert!(!valid_host("a.*.b"));
    }
}
