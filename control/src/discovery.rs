//! Discovery documents: `/version`, `/api`, `/apis`, per-group-version resource lists and the
//! aggregated discovery (`apidiscovery.k8s.io/v2`) that kubectl 1.32 asks for first.

use serde_json::{json, Value};

use crate::resource_metrics as metrics;
use crate::resources::{ResourceDef, Resources};

/// The Content-Type of aggregated discovery responses.
pub const AGGREGATED_CONTENT_TYPE: &str =
    "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";

pub fn wants_aggregated(accept: &str) -> bool {
    accept.split(',').any(|p| {
        let p = p.replace(' ', "");
        p.contains("g=apidiscovery.k8s.io")
            && p.contains("v=v2;")
            && p.contains("as=APIGroupDiscoveryList")
    })
}

/// kubectl's dispatcher picks its binary from `minor`, so it must read "32".
pub fn version() -> Value {
    json!({
        "major": "1",
        "minor": "32",
        "gitVersion": "v1.32.0-pea",
        "gitCommit": env!("CARGO_PKG_VERSION"),
        "gitTreeState": "clean",
        "buildDate": "1970-01-01T00:00:00Z",
        "goVersion": "rustc",
        "compiler": "rustc",
        "platform": "linux/amd64"
    })
}

const VERBS: [&str; 8] = [
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

/// The verbs a resource serves: the review kinds (access reviews, SelfSubjectReview) are
/// create only.
fn verbs_of(d: &ResourceDef) -> &'static [&'static str] {
    if crate::rbac::review::is_review_group(d.group) {
        &["create"]
    } else {
        &VERBS
    }
}

fn sub_verbs(sub: &str) -> &'static [&'static str] {
    match sub {
        "binding" | "eviction" | "token" => &["create"],
        "log" => &["get"],
        "exec" | "attach" | "portforward" => &["create", "get"],
        "proxy" => &["create", "delete", "get", "patch", "update"],
        _ => &["get", "patch", "update"],
    }
}

fn sub_kind(def: &ResourceDef, sub: &str) -> (&'static str, &'static str, &'static str) {
    match sub {
        "scale" => ("autoscaling", "v1", "Scale"),
        "binding" => ("", "v1", "Binding"),
        // kube serves pods/eviction as policy/v1 Eviction; kubectl drain reads this to pick
        // the version it posts.
        "eviction" => ("policy", "v1", "Eviction"),
        "token" => ("authentication.k8s.io", "v1", "TokenRequest"),
        "exec" => ("", "v1", "PodExecOptions"),
        "attach" => ("", "v1", "PodAttachOptions"),
        "portforward" => ("", "v1", "PodPortForwardOptions"),
        "proxy" if def.kind == "Node" => ("", "v1", "NodeProxyOptions"),
        _ => (def.group, def.version, def.kind),
    }
}

pub fn core_versions(server_address: &str) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}]
    })
}

fn group_entry(group: &str, versions: &[&str]) -> Value {
    let list: Vec<Value> = versions
        .iter()
        .map(|v| json!({"groupVersion": format!("{group}/{v}"), "version": v}))
        .collect();
    json!({
        "name": group,
        "versions": list,
        "preferredVersion": list.first().cloned().unwrap_or(Value::Null),
    })
}

/// The named groups with their versions, preferred first (the order of the resource table), and
/// the resource metrics group pea-control serves itself.
fn named_groups(r: &Resources) -> Vec<(&'static str, Vec<&'static str>)> {
    let mut out: Vec<(&'static str, Vec<&'static str>)> = Vec::new();
    for (g, v) in r.groups().into_iter().filter(|(g, _)| !g.is_empty()) {
        match out.iter_mut().find(|(name, _)| *name == g) {
            Some((_, vs)) => vs.push(v),
            None => out.push((g, vec![v])),
        }
    }
    out.push((metrics::GROUP, vec![metrics::VERSION]));
    out
}

pub fn groups(r: &Resources) -> Value {
    let groups: Vec<Value> = named_groups(r)
        .iter()
        .map(|(g, vs)| group_entry(g, vs))
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

pub fn group(r: &Resources, name: &str) -> Option<Value> {
    named_groups(r)
        .into_iter()
        .find(|(g, _)| *g == name)
        .map(|(g, vs)| {
            let mut e = group_entry(g, &vs);
            e["kind"] = json!("APIGroup");
            e["apiVersion"] = json!("v1");
            e
        })
}

/// The resource metrics resources (read-only: get and list).
fn metrics_resources() -> impl Iterator<Item = (&'static str, &'static str, bool)> {
    metrics::serve::RESOURCES.into_iter()
}

pub fn resource_list(r: &Resources, group: &str, version: &str) -> Option<Value> {
    if group == metrics::GROUP && version == metrics::VERSION {
        let resources: Vec<Value> = metrics_resources()
            .map(|(plural, kind, namespaced)| {
                json!({"name": plural, "singularName": "", "namespaced": namespaced,
                    "kind": kind, "verbs": ["get", "list"]})
            })
            .collect();
        return Some(json!({"kind": "APIResourceList", "apiVersion": "v1",
            "groupVersion": format!("{group}/{version}"), "resources": resources}));
    }
    let defs = r.in_group_version(group, version);
    if defs.is_empty() {
        return None;
    }
    let mut resources = Vec::new();
    for d in &defs {
        resources.push(json!({
            "name": d.plural,
            "singularName": d.singular,
            "namespaced": d.namespaced,
            "kind": d.kind,
            "verbs": verbs_of(d),
            "shortNames": d.short_names,
            "categories": d.categories,
        }));
        for sub in d.subresources {
            let (g, v, k) = sub_kind(d, sub);
            let mut e = json!({
                "name": format!("{}/{sub}", d.plural),
                "singularName": "",
                "namespaced": d.namespaced,
                "kind": k,
                "verbs": sub_verbs(sub),
            });
            if g != d.group || v != d.version {
                e["group"] = json!(g);
                e["version"] = json!(v);
            }
            resources.push(e);
        }
    }
    let gv = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    Some(
        json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources}),
    )
}

/// The aggregated discovery list for `/api` (`core` true) or `/apis`.
pub fn aggregated(r: &Resources, core: bool) -> Value {
    let groups: Vec<(&'static str, Vec<&'static str>)> = if core {
        vec![("", vec!["v1"])]
    } else {
        named_groups(r)
    };
    let items: Vec<Value> = groups
        .into_iter()
        .map(|(g, vs)| {
            let versions: Vec<Value> = vs
                .into_iter()
                .map(|v| {
                    let resources = if g == metrics::GROUP {
                        metrics_resources()
                            .map(|(plural, kind, namespaced)| {
                                json!({"resource": plural,
                                    "responseKind": {"group": g, "version": v, "kind": kind},
                                    "scope": if namespaced { "Namespaced" } else { "Cluster" },
                                    "singularResource": "", "verbs": ["get", "list"]})
                            })
                            .collect()
                    } else {
                        aggregated_resources(r, g, v)
                    };
                    json!({"version": v, "resources": resources, "freshness": "Current"})
                })
                .collect();
            json!({"metadata": {"name": g}, "versions": versions})
        })
        .collect();
    json!({"kind": "APIGroupDiscoveryList", "apiVersion": "apidiscovery.k8s.io/v2", "metadata": {}, "items": items})
}

fn aggregated_resources(r: &Resources, g: &str, v: &str) -> Vec<Value> {
    r.in_group_version(g, v)
        .iter()
        .map(|d| {
            let subs: Vec<Value> = d
                .subresources
                .iter()
                .map(|sub| {
                    let (sg, sv, sk) = sub_kind(d, sub);
                    json!({"subresource": sub, "responseKind": {"group": sg, "version": sv, "kind": sk}, "verbs": sub_verbs(sub)})
                })
                .collect();
            let mut e = json!({
                "resource": d.plural,
                "responseKind": {"group": d.group, "version": d.version, "kind": d.kind},
                "scope": if d.namespaced { "Namespaced" } else { "Cluster" },
                "singularResource": d.singular,
                "verbs": verbs_of(d),
                "shortNames": d.short_names,
                "categories": d.categories,
            });
            if !subs.is_empty() {
                e["subresources"] = json!(subs);
            }
            e
        })
        .collect()
}
