//! kube-apiserver's Node authorizer, with kube's NodeRestriction admission checks folded in.
//!
//! A node identity (`system:node:NAME` in `system:nodes`) reaches secrets, configmaps,
//! persistent volume claims and volumes and service accounts only through the pods bound to
//! it ([`graph`]): a `get` (and, for secrets and configmaps, a list or watch naming one object
//! with `metadata.name=`) is allowed when the object leads to the node in the graph; anything
//! else is no opinion with kube's reason ("no relationship found between node 'n1' and this
//! object"), and RBAC decides next. Its Lease is its own name in `kube-node-lease`. Other
//! resources follow kube's static node rules (the `system:node` ClusterRole's rules).
//!
//! What kube's NodeRestriction admission refuses is refused here, with its words, since pea
//! has no separate plugin for it: a node writes only its own Node (and status) and Lease,
//! creates only mirror pods bound to itself, updates the status of, deletes and evicts only
//! pods bound to it, and asks for tokens only bound to one of its pods running as that account.
//! What it writes into its own Node (restricted labels, taints, ownerReferences) needs the
//! objects, so admission checks it ([`node_object`]), as it checks the owner and references
//! of the mirror pods a node creates ([`mirror_pod`]).

pub mod graph;
pub mod mirror_pod;
pub mod node_object;
pub mod populator;
pub mod refs;

use std::sync::OnceLock;

use crate::authz::Attributes;
use crate::rbac::rules::Rule;
use graph::{Graph, Kind, Vertex};

/// The namespace of node leases.
const NODE_LEASES: &str = "kube-node-lease";

/// kube's `NodeRules()`: what every node may do outside the graph's resources.
fn static_rules() -> &'static [Rule] {
    static RULES: OnceLock<Vec<Rule>> = OnceLock::new();
    RULES.get_or_init(|| {
        crate::rbac::bootstrap::CLUSTER_ROLES
            .iter()
            .find(|r| r.name == "system:node")
            .map(|r| r.rules.iter().map(|r| r.rule()).collect())
            .unwrap_or_default()
    })
}

/// The node authorizer's answer: allow, or no opinion with kube's reason (possibly empty).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    NoOpinion(String),
}

impl Verdict {
    fn no(reason: impl Into<String>) -> Self {
        Self::NoOpinion(reason.into())
    }

    fn allow_if(ok: bool, reason: impl FnOnce() -> String) -> Self {
        if ok {
            Self::Allow
        } else {
            Self::NoOpinion(reason())
        }
    }
}

/// What the request touches beyond its attributes, looked up by the API for node identities.
#[derive(Debug, Clone, Copy, Default)]
pub struct Facts<'a> {
    /// For pod status writes, deletes and evictions: the node the pod is bound to; for a pod
    /// create: a mirror pod's `spec.nodeName`; for a TokenRequest: the node of the pod it is
    /// bound to, when that pod runs as the requested account.
    pub bound_node: Option<&'a str>,
}

/// Decides `attrs` for node `node` (the name after `system:node:`).
pub fn authorize(graph: &Graph, node: &str, attrs: &Attributes, facts: Facts<'_>) -> Verdict {
    if !attrs.resource_request {
        return by_rules(attrs);
    }
    let sub = attrs.subresource.as_str();
    let verb = attrs.verb.as_str();
    let name = attrs.name.as_str();
    let ns = attrs.namespace.as_str();
    let path = |vertex| path_to(graph, node, vertex);
    match (attrs.api_group.as_str(), attrs.resource.as_str()) {
        ("", "secrets" | "configmaps") => {
            let kind = if attrs.resource == "secrets" {
                Kind::Secret
            } else {
                Kind::ConfigMap
            };
            if !matches!(verb, "get" | "list" | "watch") {
                return Verdict::no("can only read resources of this type");
            }
            if !sub.is_empty() {
                return Verdict::no("cannot read subresource");
            }
            if ns.is_empty() {
                return Verdict::no("can only read namespaced object of this type");
            }
            if name.is_empty() {
                return Verdict::no("No Object name found");
            }
            path(Vertex::Used(kind, ns, name))
        }
        ("", "persistentvolumeclaims") if sub == "status" => {
            if !matches!(verb, "update" | "patch") {
                return Verdict::no("can only get/update/patch this type");
            }
            named(name).unwrap_or_else(|| path(Vertex::Used(Kind::Claim, ns, name)))
        }
        ("", "persistentvolumeclaims") => {
            get_only(verb, sub, name).unwrap_or_else(|| path(Vertex::Used(Kind::Claim, ns, name)))
        }
        ("", "persistentvolumes") => {
            get_only(verb, sub, name).unwrap_or_else(|| path(Vertex::Volume(name)))
        }
        // Attachments are not served: nothing leads to them (kube: volumeattachment → node).
        ("storage.k8s.io", "volumeattachments") => get_only(verb, sub, name).unwrap_or_else(|| {
            Verdict::no(format!(
                "no relationship found between node '{node}' and this object"
            ))
        }),
        ("", "serviceaccounts") => service_account(graph, node, verb, sub, (ns, name), facts),
        ("coordination.k8s.io", "leases") => lease(node, verb, ns, name),
        ("", "nodes") => own_node(node, verb, sub, name, attrs),
        ("", "pods") => pod(node, verb, sub, facts, attrs),
        _ => by_rules(attrs),
    }
}

/// kube's `authorize`: allowed when `vertex` leads to `node`.
fn path_to(graph: &Graph, node: &str, vertex: Vertex<'_>) -> Verdict {
    Verdict::allow_if(graph.has_path(node, vertex), || {
        format!("no relationship found between node '{node}' and this object")
    })
}

fn by_rules(attrs: &Attributes) -> Verdict {
    Verdict::allow_if(static_rules().iter().any(|r| r.allows(attrs)), String::new)
}

/// kube's `authorizeGet` checks before the graph: `None` to go on.
fn get_only(verb: &str, sub: &str, name: &str) -> Option<Verdict> {
    if verb != "get" {
        return Some(Verdict::no(
            "can only get individual resources of this type",
        ));
    }
    if !sub.is_empty() {
        return Some(Verdict::no("cannot get subresource"));
    }
    named(name)
}

fn named(name: &str) -> Option<Verdict> {
    name.is_empty().then(|| Verdict::no("No Object name found"))
}

/// A node reads the accounts of its pods, and asks for their tokens only bound to one of its
/// pods running as that account (kube's graph, then NodeRestriction).
fn service_account(
    graph: &Graph,
    node: &str,
    verb: &str,
    sub: &str,
    (ns, name): (&str, &str),
    facts: Facts<'_>,
) -> Verdict {
    let path = |vertex| path_to(graph, node, vertex);
    if sub.is_empty() && verb == "get" && !name.is_empty() {
        return path(Vertex::Used(Kind::ServiceAccount, ns, name));
    }
    if verb != "create" || name.is_empty() {
        return Verdict::no("can only create tokens for individual service accounts");
    }
    if sub != "token" {
        return Verdict::no("can only create token subresource of serviceaccount");
    }
    match path(Vertex::Used(Kind::ServiceAccount, ns, name)) {
        Verdict::Allow => match facts.bound_node {
            Some(n) if n == node => Verdict::Allow,
            Some(_) => {
                Verdict::no("node requested token bound to a pod scheduled on a different node")
            }
            None => Verdict::no(format!(
                "node requested token not bound to a pod running as service account {name:?}"
            )),
        },
        refused => refused,
    }
}

/// kube's `authorizeLease`, and NodeRestriction for creates (the name is the body's).
fn lease(node: &str, verb: &str, ns: &str, name: &str) -> Verdict {
    if !matches!(verb, "get" | "create" | "update" | "patch" | "delete") {
        return Verdict::no("can only get, create, update, patch, or delete a node lease");
    }
    if ns != NODE_LEASES {
        return Verdict::no(format!(
            "can only access leases in the {NODE_LEASES:?} system namespace"
        ));
    }
    Verdict::allow_if(name == node, || {
        "can only access node lease with the same name as the requesting node".into()
    })
}

/// Nodes read every Node (kube before `AuthorizeNodeWithSelectors`) and write only their own
/// (NodeRestriction; a create's name is the body's).
fn own_node(node: &str, verb: &str, sub: &str, name: &str, attrs: &Attributes) -> Verdict {
    let write = matches!(
        (sub, verb),
        ("", "create" | "update" | "patch") | ("status", "update" | "patch")
    );
    if !write {
        return by_rules(attrs);
    }
    Verdict::allow_if(name == node, || {
        format!("node {node:?} is not allowed to modify node {name:?}")
    })
}

/// Pods: reads by the static rules; writes only for pods bound to this node (NodeRestriction).
fn pod(node: &str, verb: &str, sub: &str, facts: Facts<'_>, attrs: &Attributes) -> Verdict {
    let mine = facts.bound_node == Some(node);
    match (sub, verb) {
        ("", "create") => match facts.bound_node {
            None => Verdict::no(format!("pod does not have \"kubernetes.io/config.mirror\" annotation, node {node:?} can only create mirror pods")),
            Some(_) => Verdict::allow_if(mine, || {
                format!("node {node:?} can only create pods with spec.nodeName set to itself")
            }),
        },
        ("", "delete") => Verdict::allow_if(mine, || {
            format!("node {node:?} can only delete pods with spec.nodeName set to itself")
        }),
        ("status", "update" | "patch") => Verdict::allow_if(mine, || {
            format!("node {node:?} can only update pod status for pods with spec.nodeName set to itself")
        }),
        ("eviction", "create") => Verdict::allow_if(mine, || {
            format!("node {node} can only evict pods with spec.nodeName set to itself")
        }),
        _ => by_rules(attrs),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn graph() -> Graph {
        let mut g = Graph::default();
        let pod = json!({"metadata": {"namespace": "a", "name": "p"}, "spec": {
            "nodeName": "n1", "serviceAccountName": "sa",
            "containers": [{"name": "c", "envFrom": [{"configMapRef": {"name": "cm"}}]}],
            "volumes": [{"name": "s", "secret": {"secretName": "s1"}},
                        {"name": "d", "persistentVolumeClaim": {"claimName": "c1"}}]}});
        g.apply(&format!("{}a/p", graph::POD_PREFIX), 2, Some(&pod));
        let pv = json!({"spec": {"claimRef": {"namespace": "a", "name": "c1"}}});
        g.apply(&format!("{}v1", graph::PV_PREFIX), 3, Some(&pv));
        g
    }

    fn ask(verb: &str, group: &str, resource: &str, ns: &str, name: &str) -> Attributes {
        let mut a = Attributes::resource(verb, group, resource, ns, name);
        a.api_version = "v1".into();
        a
    }

    fn allowed(g: &Graph, a: &Attributes, bound: Option<&str>) -> bool {
        authorize(g, "n1", a, Facts { bound_node: bound }) == Verdict::Allow
    }

    #[test]
    fn graph_resources_need_a_path_to_the_node() {
        let g = graph();
        assert!(allowed(&g, &ask("get", "", "secrets", "a", "s1"), None));
        assert!(allowed(&g, &ask("watch", "", "secrets", "a", "s1"), None));
        assert_eq!(
            authorize(
                &g,
                "n2",
                &ask("get", "", "secrets", "a", "s1"),
                Facts::default()
            ),
            Verdict::no("no relationship found between node 'n2' and this object")
        );
        assert_eq!(
            authorize(
                &g,
                "n1",
                &ask("list", "", "secrets", "a", ""),
                Facts::default()
            ),
            Verdict::no("No Object name found")
        );
        assert!(!allowed(&g, &ask("update", "", "secrets", "a", "s1"), None));
        assert!(allowed(&g, &ask("get", "", "configmaps", "a", "cm"), None));
        assert!(allowed(
            &g,
            &ask("get", "", "persistentvolumeclaims", "a", "c1"),
            None
        ));
        assert!(!allowed(
            &g,
            &ask("list", "", "persistentvolumeclaims", "a", ""),
            None
        ));
        assert!(allowed(
            &g,
            &ask("get", "", "persistentvolumes", "", "v1"),
            None
        ));
        assert!(!allowed(
            &g,
            &ask("update", "", "persistentvolumes", "", "v1"),
            None
        ));
        assert!(allowed(
            &g,
            &ask("get", "", "serviceaccounts", "a", "sa"),
            None
        ));
        let token = ask("create", "", "serviceaccounts/token", "a", "sa");
        assert!(allowed(&g, &token, Some("n1")));
        assert!(!allowed(&g, &token, Some("n2")));
        assert!(!allowed(&g, &token, None));
        assert!(!allowed(
            &g,
            &ask("create", "", "serviceaccounts/token", "a", "other"),
            Some("n1")
        ));
    }

    #[test]
    fn nodes_write_only_their_own_objects() {
        let g = graph();
        assert!(allowed(
            &g,
            &ask("patch", "", "nodes/status", "", "n1"),
            None
        ));
        assert_eq!(
            authorize(
                &g,
                "n1",
                &ask("patch", "", "nodes/status", "", "n2"),
                Facts::default()
            ),
            Verdict::no(r#"node "n1" is not allowed to modify node "n2""#)
        );
        assert!(allowed(&g, &ask("list", "", "nodes", "", ""), None));
        let lease = |verb, ns, name| ask(verb, "coordination.k8s.io", "leases", ns, name);
        assert!(allowed(&g, &lease("update", NODE_LEASES, "n1"), None));
        assert!(!allowed(&g, &lease("update", NODE_LEASES, "n2"), None));
        assert!(!allowed(&g, &lease("create", "default", "n1"), None));
        assert!(!allowed(&g, &lease("list", NODE_LEASES, ""), None));
        let status = ask("patch", "", "pods/status", "a", "p");
        assert!(allowed(&g, &status, Some("n1")));
        assert!(!allowed(&g, &status, Some("n2")));
        assert!(allowed(
            &g,
            &ask("create", "", "pods", "a", "m"),
            Some("n1")
        ));
        assert!(!allowed(&g, &ask("create", "", "pods", "a", "m"), None));
        assert!(allowed(
            &g,
            &ask("create", "", "pods/eviction", "a", "p"),
            Some("n1")
        ));
        assert!(allowed(&g, &ask("list", "", "pods", "", ""), None));
        // Kubelet subresources are in no node rule, its own pods' included.
        assert!(!allowed(
            &g,
            &ask("get", "", "pods/log", "a", "p"),
            Some("n1")
        ));
        assert!(!allowed(
            &g,
            &ask("create", "", "pods/exec", "a", "p"),
            Some("n1")
        ));
        assert!(!allowed(&g, &ask("get", "", "nodes/proxy", "", "n1"), None));
        assert!(!allowed(
            &g,
            &ask("create", "", "configmaps", "a", "x"),
            None
        ));
        assert!(allowed(&g, &ask("create", "", "events", "a", ""), None));
        assert!(allowed(&g, &ask("list", "", "services", "", ""), None));
        assert!(!allowed(&g, &ask("list", "", "namespaces", "", ""), None));
    }
}
