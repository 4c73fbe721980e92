//! kube's NodeRestriction checks of what a node writes into its own Node object (`admitNode` in
//! plugin/pkg/admission/noderestriction): which Node it may write is the authorizer's
//! ([`super::authorize`]); this is the content, which needs the old and new objects, so it
//! runs in admission's validating phase.
//!
//! - a node registers with labels only from the kubelet's set (kube's `IsKubeletLabel`) when
//!   they are in the `kubernetes.io` / `k8s.io` namespaces, and never a
//!   `node-restriction.kubernetes.io/` label: those steer workloads, so only an administrator
//!   sets them;
//! - on update it may not change those labels, its taints (it registers with them; removing
//!   one would let it take workloads that must not run there), its ownerReferences, or set a
//!   new configSource.
//!
//! Messages are kube's, as `admission.NewForbidden` words them.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::admission::Operation;
use crate::status::ApiError;

/// The labels a kubelet may set in the kubernetes.io / k8s.io namespaces (kube's
/// `kubeletLabels`).
const KUBELET_LABELS: &[&str] = &[
    "kubernetes.io/hostname",
    "topology.kubernetes.io/zone",
    "topology.kubernetes.io/region",
    "failure-domain.beta.kubernetes.io/zone",
    "failure-domain.beta.kubernetes.io/region",
    "beta.kubernetes.io/instance-type",
    "node.kubernetes.io/instance-type",
    "kubernetes.io/os",
    "kubernetes.io/arch",
    "beta.kubernetes.io/os",
    "beta.kubernetes.io/arch",
];
/// Label namespaces (and their subdomains) a kubelet may use freely.
const KUBELET_NAMESPACES: &[&str] = &["kubelet.kubernetes.io", "node.kubernetes.io"];
/// Labels only an administrator sets: a node can never claim them.
const NODE_RESTRICTION_NAMESPACE: &str = "node-restriction.kubernetes.io";

fn label_namespace(key: &str) -> &str {
    key.split_once('/').map_or("", |(ns, _)| ns)
}

fn in_namespace(ns: &str, domain: &str) -> bool {
    ns == domain || ns.strip_suffix(domain).is_some_and(|p| p.ends_with('.'))
}

fn is_kubelet_label(key: &str) -> bool {
    KUBELET_LABELS.contains(&key)
        || KUBELET_NAMESPACES
            .iter()
            .any(|d| in_namespace(label_namespace(key), d))
}

fn is_kubernetes_label(key: &str) -> bool {
    let ns = label_namespace(key);
    in_namespace(ns, "kubernetes.io") || in_namespace(ns, "k8s.io")
}

/// kube's `getForbiddenLabels`, sorted as its `sets.String.List()`.
fn forbidden_labels(modified: BTreeSet<&str>) -> Vec<&str> {
    modified
        .into_iter()
        .filter(|k| {
            in_namespace(label_namespace(k), NODE_RESTRICTION_NAMESPACE)
                || (is_kubernetes_label(k) && !is_kubelet_label(k))
        })
        .collect()
}

fn labels(obj: Option<&Value>) -> Vec<(&str, &Value)> {
    obj.and_then(|o| o.pointer("/metadata/labels"))
        .and_then(Value::as_object)
        .map(|m| m.iter().map(|(k, v)| (k.as_str(), v)).collect())
        .unwrap_or_default()
}

/// Keys added, removed or changed between `new` and `old` (kube's `getModifiedLabels`).
fn modified_labels<'a>(new: &'a Value, old: Option<&'a Value>) -> BTreeSet<&'a str> {
    let (n, o) = (labels(Some(new)), labels(old));
    // Whether `k: v` is not in `other` as it is.
    let changed = |k: &str, v: &Value, other: &[(&str, &Value)]| {
        other
            .iter()
            .find(|(ok, _)| *ok == k)
            .is_none_or(|(_, ov)| *ov != v)
    };
    n.iter()
        .filter(|(k, v)| changed(k, v, &o))
        .chain(o.iter().filter(|(k, v)| changed(k, v, &n)))
        .map(|(k, _)| *k)
        .collect()
}

/// A field's value, `null` when absent (kube compares the decoded fields: absent = empty).
fn field<'a>(obj: &'a Value, pointer: &str) -> &'a Value {
    match obj.pointer(pointer) {
        Some(Value::Array(a)) if a.is_empty() => &Value::Null,
        Some(v) => v,
        None => &Value::Null,
    }
}

/// The NodeRestriction checks of node `node` writing `new` (its own Node: the authorizer
/// refused any other) over `old`.
pub fn admit(node: &str, op: Operation, old: Option<&Value>, new: &Value) -> Result<(), ApiError> {
    let refuse = |reason: String| ApiError::ForbiddenObject {
        group: String::new(),
        resource: "nodes".into(),
        name: crate::objects::name_of(new).to_string(),
        reason,
    };
    match (op, old) {
        (Operation::Create, _) => {
            if !field(new, "/spec/configSource").is_null() {
                return Err(refuse(format!(
                    "node {node:?} is not allowed to create pods with a non-nil configSource"
                )));
            }
            let forbidden = forbidden_labels(modified_labels(new, None));
            if !forbidden.is_empty() {
                return Err(refuse(format!(
                    "node {node:?} is not allowed to set the following labels: {}",
                    forbidden.join(", ")
                )));
            }
        }
        (Operation::Update, Some(old)) => {
            let source = field(new, "/spec/configSource");
            if !source.is_null() && source != field(old, "/spec/configSource") {
                return Err(refuse(format!(
                    "node {node:?} is not allowed to update configSource to a new non-nil configSource"
                )));
            }
            if field(new, "/spec/taints") != field(old, "/spec/taints") {
                return Err(refuse(format!(
                    "node {node:?} is not allowed to modify taints"
                )));
            }
            if field(new, "/metadata/ownerReferences") != field(old, "/metadata/ownerReferences") {
                return Err(refuse(format!(
                    "node {node:?} is not allowed to modify ownerReferences"
                )));
            }
            let forbidden = forbidden_labels(modified_labels(new, Some(old)));
            if !forbidden.is_empty() {
                return Err(refuse(format!(
                    "is not allowed to modify labels: {}",
                    forbidden.join(", ")
                )));
            }
        }
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node(labels: Value, taints: Value) -> Value {
        json!({"metadata": {"name": "n1", "labels": labels}, "spec": {"taints": taints}})
    }

    fn err(r: Result<(), ApiError>) -> String {
        r.unwrap_err().to_string()
    }

    #[test]
    fn a_node_registers_with_kubelet_labels_and_taints_but_not_restricted_labels() {
        let ok = node(
            json!({"kubernetes.io/hostname": "n1", "kubernetes.io/os": "linux",
                   "node.kubernetes.io/exclude-from-external-load-balancers": "",
                   "a.kubelet.kubernetes.io/x": "1", "example.com/rack": "r1"}),
            json!([{"key": "dedicated", "value": "db", "effect": "NoSchedule"}]),
        );
        admit("n1", Operation::Create, None, &ok).unwrap();
        let bad = node(
            json!({"node-role.kubernetes.io/control-plane": "",
                   "node-restriction.kubernetes.io/pci": "yes",
                   "team.node-restriction.kubernetes.io/x": "1",
                   "foo.k8s.io/bar": "1", "example.com/rack": "r1"}),
            json!([]),
        );
        assert_eq!(
            err(admit("n1", Operation::Create, None, &bad)),
            "nodes \"n1\" is forbidden: node \"n1\" is not allowed to set the following labels: \
             foo.k8s.io/bar, node-restriction.kubernetes.io/pci, node-role.kubernetes.io/control-plane, \
             team.node-restriction.kubernetes.io/x"
        );
        // A look-alike domain is not kubernetes.io's.
        let lookalike = node(json!({"notkubernetes.io/x": "1"}), json!(null));
        admit("n1", Operation::Create, None, &lookalike).unwrap();
    }

    #[test]
    fn a_node_keeps_its_taints_owner_references_and_restricted_labels() {
        let old = node(
            json!({"kubernetes.io/hostname": "n1", "node-role.kubernetes.io/worker": ""}),
            json!([{"key": "dedicated", "value": "db", "effect": "NoSchedule"}]),
        );
        // Its own labels change freely, the restricted ones it carries stay.
        let mut relabel = old.clone();
        relabel["metadata"]["labels"]["example.com/rack"] = json!("r2");
        relabel["metadata"]["labels"]["topology.kubernetes.io/zone"] = json!("z1");
        admit("n1", Operation::Update, Some(&old), &relabel).unwrap();
        let mut untaint = old.clone();
        untaint["spec"]["taints"] = json!([]);
        assert_eq!(
            err(admit("n1", Operation::Update, Some(&old), &untaint)),
            "nodes \"n1\" is forbidden: node \"n1\" is not allowed to modify taints"
        );
        // Absent and empty are the same taints.
        let bare = json!({"metadata": {"name": "n1"}, "spec": {}});
        let mut empty = bare.clone();
        empty["spec"]["taints"] = json!([]);
        admit("n1", Operation::Update, Some(&bare), &empty).unwrap();
        let mut unrole = old.clone();
        unrole["metadata"]["labels"]
            .as_object_mut()
            .unwrap()
            .remove("node-role.kubernetes.io/worker");
        assert_eq!(
            err(admit("n1", Operation::Update, Some(&old), &unrole)),
            "nodes \"n1\" is forbidden: is not allowed to modify labels: node-role.kubernetes.io/worker"
        );
        let mut owned = old.clone();
        owned["metadata"]["ownerReferences"] =
            json!([{"apiVersion": "v1", "kind": "Node", "name": "n2", "uid": "u"}]);
        assert!(err(admit("n1", Operation::Update, Some(&old), &owned))
            .ends_with("node \"n1\" is not allowed to modify ownerReferences"));
        let mut sourced = old.clone();
        sourced["spec"]["configSource"] = json!({"configMap": {"name": "c"}});
        assert!(err(admit("n1", Operation::Update, Some(&old), &sourced))
            .ends_with("is not allowed to update configSource to a new non-nil configSource"));
    }
}
