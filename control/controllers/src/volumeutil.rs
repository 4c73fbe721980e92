//! What the PersistentVolume binder and the local-path provisioner share: kube's volume
//! annotations, storage quantities, and the rules that say whether a volume can serve a claim
//! (pkg/controller/volume/persistentvolume/util and component-helpers/storage/volume).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Node, NodeSelectorRequirement, NodeSelectorTerm, PersistentVolume, PersistentVolumeClaim,
};
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use crate::podutil::selector_matches;

/// On a claim: the binding is done (the binder checks it no more).
pub const ANN_BIND_COMPLETED: &str = "pv.kubernetes.io/bind-completed";
/// On a claim or volume: the controller, not the user, made this half of the binding.
pub const ANN_BOUND_BY_CONTROLLER: &str = "pv.kubernetes.io/bound-by-controller";
/// On a volume: the provisioner that made it (and will delete it).
pub const ANN_PROVISIONED_BY: &str = "pv.kubernetes.io/provisioned-by";
/// On a claim: the provisioner expected to make its volume.
pub const ANN_STORAGE_PROVISIONER: &str = "volume.kubernetes.io/storage-provisioner";
pub const ANN_BETA_STORAGE_PROVISIONER: &str = "volume.beta.kubernetes.io/storage-provisioner";
/// On a claim of a WaitForFirstConsumer class: the node the scheduler put its first pod on.
pub const ANN_SELECTED_NODE: &str = "volume.kubernetes.io/selected-node";
/// The class in an annotation (before `storageClassName` existed); it wins over the field.
pub const ANN_BETA_STORAGE_CLASS: &str = "volume.beta.kubernetes.io/storage-class";
/// On a StorageClass: the cluster default.
pub const ANN_DEFAULT_CLASS: &str = "storageclass.kubernetes.io/is-default-class";

/// A storage quantity in bytes, rounded up (apimachinery's `Quantity.Value`); `None` when it
/// does not parse.
pub fn bytes(q: &Quantity) -> Option<i128> {
    pea_quantity::value(&q.0).ok().map(i128::from)
}

/// The requested size of a claim in bytes (0 when absent).
pub fn claim_request(claim: &PersistentVolumeClaim) -> i128 {
    claim
        .spec
        .as_ref()
        .and_then(|s| s.resources.as_ref())
        .and_then(|r| r.requests.as_ref())
        .and_then(|r| r.get("storage"))
        .and_then(bytes)
        .unwrap_or(0)
}

/// A volume's capacity in bytes (0 when absent).
pub fn volume_capacity(pv: &PersistentVolume) -> i128 {
    pv.spec
        .as_ref()
        .and_then(|s| s.capacity.as_ref())
        .and_then(|c| c.get("storage"))
        .and_then(bytes)
        .unwrap_or(0)
}

fn annotation<'a>(
    meta: &'a k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    key: &str,
) -> Option<&'a str> {
    meta.annotations
        .as_ref()
        .and_then(|a| a.get(key))
        .map(String::as_str)
}

pub fn has_annotation(
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    key: &str,
) -> bool {
    annotation(meta, key).is_some()
}

pub fn claim_annotation<'a>(claim: &'a PersistentVolumeClaim, key: &str) -> Option<&'a str> {
    annotation(&claim.metadata, key)
}

pub fn volume_annotation<'a>(pv: &'a PersistentVolume, key: &str) -> Option<&'a str> {
    annotation(&pv.metadata, key)
}

/// A claim's class (kube's `GetPersistentVolumeClaimClass`): the beta annotation, else the
/// field, else "" (no class).
pub fn claim_class(claim: &PersistentVolumeClaim) -> String {
    if let Some(c) = claim_annotation(claim, ANN_BETA_STORAGE_CLASS) {
        return c.to_string();
    }
    claim
        .spec
        .as_ref()
        .and_then(|s| s.storage_class_name.clone())
        .unwrap_or_default()
}

/// A volume's class (kube's `GetPersistentVolumeClass`).
pub fn volume_class(pv: &PersistentVolume) -> String {
    if let Some(c) = volume_annotation(pv, ANN_BETA_STORAGE_CLASS) {
        return c.to_string();
    }
    pv.spec
        .as_ref()
        .and_then(|s| s.storage_class_name.clone())
        .unwrap_or_default()
}

/// Whether a class binds only once a pod using the claim is scheduled.
pub fn is_wait_for_first_consumer(class: Option<&StorageClass>) -> bool {
    class.and_then(|c| c.volume_binding_mode.as_deref()) == Some("WaitForFirstConsumer")
}

fn volume_mode(m: Option<&String>) -> &str {
    m.map_or("Filesystem", String::as_str)
}

/// Whether every access mode the claim asks for is one the volume has.
pub fn access_modes_contain(volume: &[String], claim: &[String]) -> bool {
    claim.iter().all(|m| volume.contains(m))
}

fn requirement_matches(r: &NodeSelectorRequirement, value: Option<&str>) -> bool {
    let values = r.values.as_deref().unwrap_or_default();
    match r.operator.as_str() {
        "In" => value.is_some_and(|v| values.iter().any(|x| x == v)),
        "NotIn" => value.is_none_or(|v| !values.iter().any(|x| x == v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        "Gt" | "Lt" => {
            let (Some(v), Some(bound)) = (
                value.and_then(|v| v.parse::<i64>().ok()),
                values.first().and_then(|b| b.parse::<i64>().ok()),
            ) else {
                return false;
            };
            if r.operator == "Gt" {
                v > bound
            } else {
                v < bound
            }
        }
        _ => false,
    }
}

fn term_matches(term: &NodeSelectorTerm, name: &str, labels: &BTreeMap<String, String>) -> bool {
    let exprs = term.match_expressions.as_deref().unwrap_or_default();
    let fields = term.match_fields.as_deref().unwrap_or_default();
    if exprs.is_empty() && fields.is_empty() {
        return false;
    }
    exprs
        .iter()
        .all(|r| requirement_matches(r, labels.get(&r.key).map(String::as_str)))
        && fields
            .iter()
            .all(|r| requirement_matches(r, (r.key == "metadata.name").then_some(name)))
}

/// The labels a node is matched by: its own, or (a node not in the cache) just the hostname
/// label kube sets to the node's name.
pub fn node_labels(name: &str, node: Option<&Node>) -> BTreeMap<String, String> {
    match node.and_then(|n| n.metadata.labels.clone()) {
        Some(l) => l,
        None => [("kubernetes.io/hostname".to_string(), name.to_string())].into(),
    }
}

/// Whether a volume may be used on the node (kube's `CheckNodeAffinity`): no affinity, or one
/// of its required terms matches.
pub fn volume_fits_node(
    pv: &PersistentVolume,
    name: &str,
    labels: &BTreeMap<String, String>,
) -> bool {
    let Some(required) = pv
        .spec
        .as_ref()
        .and_then(|s| s.node_affinity.as_ref())
        .and_then(|a| a.required.as_ref())
    else {
        return true;
    };
    required
        .node_selector_terms
        .iter()
        .any(|t| term_matches(t, name, labels))
}

/// Whether the volume's claimRef names this claim (the same uid, or no uid: pre-bound by name).
pub fn is_prebound_to(pv: &PersistentVolume, claim: &PersistentVolumeClaim) -> bool {
    let Some(r) = pv.spec.as_ref().and_then(|s| s.claim_ref.as_ref()) else {
        return false;
    };
    r.name.as_deref() == claim.metadata.name.as_deref()
        && r.namespace.as_deref() == claim.metadata.namespace.as_deref()
        && r.uid
            .as_deref()
            .is_none_or(|u| u.is_empty() || Some(u) == claim.metadata.uid.as_deref())
}

/// Why a volume cannot serve a claim, or `None` when it can (capacity is compared by the
/// caller, which wants the smallest fit). `node`: for WaitForFirstConsumer claims, the selected
/// node and its labels the volume must be usable on.
pub fn mismatch(
    pv: &PersistentVolume,
    claim: &PersistentVolumeClaim,
    node: Option<(&str, &BTreeMap<String, String>)>,
) -> Option<&'static str> {
    let (Some(ps), Some(cs)) = (pv.spec.as_ref(), claim.spec.as_ref()) else {
        return Some("no spec");
    };
    if pv.metadata.deletion_timestamp.is_some() {
        return Some("being deleted");
    }
    if volume_class(pv) != claim_class(claim) {
        return Some("storage class differs");
    }
    if volume_mode(ps.volume_mode.as_ref()) != volume_mode(cs.volume_mode.as_ref()) {
        return Some("volume mode differs");
    }
    if !access_modes_contain(
        ps.access_modes.as_deref().unwrap_or_default(),
        cs.access_modes.as_deref().unwrap_or_default(),
    ) {
        return Some("access modes differ");
    }
    if let Some(sel) = &cs.selector {
        let empty = BTreeMap::new();
        if !selector_matches(sel, pv.metadata.labels.as_ref().unwrap_or(&empty)) {
            return Some("selector does not match");
        }
    }
    if let Some((name, labels)) = node {
        if !volume_fits_node(pv, name, labels) {
            return Some("node affinity conflict");
        }
    }
    None
}

/// kube's `findBestMatchForClaim`: a volume pre-bound to the claim if one fits, otherwise the
/// smallest Available, unclaimed volume that matches and is big enough.
pub fn best_match<'a>(
    volumes: impl IntoIterator<Item = &'a PersistentVolume>,
    claim: &PersistentVolumeClaim,
    node: Option<(&str, &BTreeMap<String, String>)>,
) -> Option<&'a PersistentVolume> {
    let request = claim_request(claim);
    let mut best: Option<(&PersistentVolume, i128)> = None;
    for pv in volumes {
        let capacity = volume_capacity(pv);
        if capacity < request || mismatch(pv, claim, node).is_some() {
            continue;
        }
        let claim_ref = pv.spec.as_ref().and_then(|s| s.claim_ref.as_ref());
        if claim_ref.is_some() {
            if is_prebound_to(pv, claim) {
                return Some(pv);
            }
            continue;
        }
        let phase = pv.status.as_ref().and_then(|s| s.phase.as_deref());
        if matches!(phase, Some("Released" | "Failed")) {
            continue;
        }
        if best.is_none_or(|(_, c)| capacity < c) {
            best = Some((pv, capacity));
        }
    }
    best.map(|(pv, _)| pv)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn pv(v: serde_json::Value) -> PersistentVolume {
        serde_json::from_value(v).unwrap()
    }

    fn claim(v: serde_json::Value) -> PersistentVolumeClaim {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn quantities_are_exact_bytes() {
        let b = |s: &str| bytes(&Quantity(s.into()));
        assert_eq!(b("1Gi"), Some(1 << 30));
        assert_eq!(b("1073741824"), Some(1 << 30));
        assert_eq!(b("1.5Gi"), Some(3 << 29));
        assert_eq!(b("2G"), Some(2_000_000_000));
        assert_eq!(b("1e3"), Some(1000));
        assert_eq!(b("100m"), Some(1), "rounded up");
        assert_eq!(b("lots"), None);
    }

    fn volume(name: &str, size: &str, modes: &[&str]) -> PersistentVolume {
        pv(
            json!({"metadata": {"name": name, "labels": {"tier": "fast"}},
            "spec": {"capacity": {"storage": size}, "accessModes": modes,
                "hostPath": {"path": format!("/d/{name}")}, "storageClassName": "manual"},
            "status": {"phase": "Available"}}),
        )
    }

    #[test]
    fn the_smallest_fitting_volume_wins_and_prebinding_first() {
        let c = claim(
            json!({"metadata": {"name": "c", "namespace": "ns", "uid": "u1"},
            "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "manual",
                "resources": {"requests": {"storage": "2Gi"}}}}),
        );
        let vols = [
            volume("small", "1Gi", &["ReadWriteOnce"]),
            volume("big", "10Gi", &["ReadWriteOnce"]),
            volume("mid", "3Gi", &["ReadWriteOnce"]),
            volume("rox", "2Gi", &["ReadOnlyMany"]),
        ];
        assert_eq!(
            best_match(&vols, &c, None)
                .unwrap()
                .metadata
                .name
                .as_deref(),
            Some("mid")
        );
        let mut pre = volume("pre", "10Gi", &["ReadWriteOnce"]);
        pre.spec.as_mut().unwrap().claim_ref =
            serde_json::from_value(json!({"namespace": "ns", "name": "c"})).unwrap();
        let mut taken = volume("taken", "2Gi", &["ReadWriteOnce"]);
        taken.spec.as_mut().unwrap().claim_ref =
            serde_json::from_value(json!({"namespace": "ns", "name": "other", "uid": "u9"}))
                .unwrap();
        let all: Vec<PersistentVolume> = vols.iter().cloned().chain([pre, taken]).collect();
        assert_eq!(
            best_match(&all, &c, None).unwrap().metadata.name.as_deref(),
            Some("pre")
        );
        let mut sel = c.clone();
        sel.spec.as_mut().unwrap().selector =
            serde_json::from_value(json!({"matchLabels": {"tier": "slow"}})).unwrap();
        assert!(best_match(&vols, &sel, None).is_none());
    }

    #[test]
    fn node_affinity_limits_where_a_volume_serves() {
        let mut v = volume("local", "1Gi", &["ReadWriteOnce"]);
        v.spec.as_mut().unwrap().node_affinity = serde_json::from_value(json!({"required":
            {"nodeSelectorTerms": [{"matchExpressions": [
                {"key": "kubernetes.io/hostname", "operator": "In", "values": ["n1"]}]}]}}))
        .unwrap();
        assert!(volume_fits_node(&v, "n1", &node_labels("n1", None)));
        assert!(!volume_fits_node(&v, "n2", &node_labels("n2", None)));
        let c = claim(json!({"metadata": {"name": "c", "namespace": "ns"},
            "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "manual",
                "resources": {"requests": {"storage": "1Gi"}}}}));
        let n2 = node_labels("n2", None);
        assert_eq!(
            mismatch(&v, &c, Some(("n2", &n2))),
            Some("node affinity conflict")
        );
        assert!(best_match([&v], &c, Some(("n1", &node_labels("n1", None)))).is_some());
    }
}
