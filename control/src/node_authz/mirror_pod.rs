//! kube's NodeRestriction checks of a mirror pod a node creates (`admitPodCreate`), beyond
//! what the authorizer already decided (the mirror annotation, `spec.nodeName` itself): the
//! pod is owned by the node alone, as its controller, with the node's UID (so it goes with
//! the Node), and references no other API object — no service account, secret, configmap,
//! claim, cluster trust bundle or resource claim — since a node could otherwise reach them
//! through a pod it made up.

use serde_json::Value;

use crate::status::ApiError;

fn names_any(v: &Value, keys: &[&str]) -> bool {
    match v {
        Value::Object(m) => m
            .iter()
            .any(|(k, v)| (keys.contains(&k.as_str()) && !v.is_null()) || names_any(v, keys)),
        Value::Array(a) => a.iter().any(|v| names_any(v, keys)),
        _ => false,
    }
}

/// Whether any container kind (init, regular, ephemeral) or volume of `spec` uses a
/// `reference` (e.g. `secretKeyRef`), or a volume source / env source of that kind.
fn references(spec: &Value, keys: &[&str]) -> bool {
    [
        "containers",
        "initContainers",
        "ephemeralContainers",
        "volumes",
        "imagePullSecrets",
    ]
    .iter()
    .filter_map(|f| spec.get(*f))
    .any(|v| names_any(v, keys))
}

/// The checks, in kube's order and words. `node_uid` is the UID of the stored Node `node`
/// (None when there is none).
pub fn admit(node: &str, node_uid: Option<&str>, pod: &Value) -> Result<(), String> {
    let owners = pod
        .pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    match owners.as_slice() {
        [] => {
            return Err(format!(
                "node {node:?} can only create pods with an owner reference set to itself"
            ))
        }
        [owner] => {
            let s = |f: &str| owner.get(f).and_then(Value::as_str).unwrap_or("");
            if s("apiVersion") != "v1" || s("kind") != "Node" || s("name") != node {
                return Err(format!(
                    "node {node:?} can only create pods with an owner reference set to itself"
                ));
            }
            if owner.get("controller").and_then(Value::as_bool) != Some(true) {
                return Err(format!(
                    "node {node:?} can only create pods with a controller owner reference set to itself"
                ));
            }
            if owner.get("blockOwnerDeletion").and_then(Value::as_bool) == Some(true) {
                return Err(format!(
                    "node {node:?} must not set blockOwnerDeletion on an owner reference"
                ));
            }
            let got = s("uid");
            match node_uid {
                Some(uid) if uid == got => {}
                Some(uid) => {
                    return Err(format!(
                        "node {node} UID mismatch: expected {uid} got {got}"
                    ))
                }
                None => {
                    return Err(format!(
                        "error looking up node {node} to verify uid: node \"{node}\" not found"
                    ))
                }
            }
        }
        _ => {
            return Err(format!(
                "node {node:?} can only create pods with a single owner reference set to itself"
            ))
        }
    }
    let spec = pod.get("spec").cloned().unwrap_or(Value::Null);
    if spec
        .get("serviceAccountName")
        .and_then(Value::as_str)
        .is_some_and(|s| !s.is_empty())
    {
        return Err(format!(
            "node {node:?} can not create pods that reference a service account"
        ));
    }
    if references(&spec, &["secretKeyRef", "secretRef", "secret"])
        || spec
            .get("imagePullSecrets")
            .and_then(Value::as_array)
            .is_some_and(|a| !a.is_empty())
    {
        return Err(format!(
            "node {node:?} can not create pods that reference secrets"
        ));
    }
    if references(&spec, &["configMapKeyRef", "configMapRef", "configMap"]) {
        return Err(format!(
            "node {node:?} can not create pods that reference configmaps"
        ));
    }
    let volumes = spec.get("volumes").cloned().unwrap_or(Value::Null);
    if names_any(&volumes, &["persistentVolumeClaim"]) {
        return Err(format!(
            "node {node:?} can not create pods that reference persistentvolumeclaims"
        ));
    }
    if names_any(&volumes, &["clusterTrustBundle"]) {
        return Err(format!(
            "node {node:?} can not create pods that use clustertrustbundles"
        ));
    }
    if spec
        .get("resourceClaims")
        .and_then(Value::as_array)
        .is_some_and(|a| !a.is_empty())
    {
        return Err(format!(
            "node {node:?} can not create pods that reference resourceclaims"
        ));
    }
    Ok(())
}

/// The admission step: a node's pod create, checked against its stored Node.
pub async fn admit_create(api: &crate::api::Api, node: &str, pod: &Value) -> Result<(), ApiError> {
    let uid = match api.resources.find("", "v1", "nodes") {
        Some(def) => match api.store.get(&def.key(None, node)).await {
            Ok((Some(kv), _)) => crate::objects::decode(&kv).ok().and_then(|n| {
                n.pointer("/metadata/uid")
                    .and_then(Value::as_str)
                    .map(str::to_string)
            }),
            _ => None,
        },
        None => None,
    };
    admit(node, uid.as_deref(), pod).map_err(|reason| ApiError::ForbiddenObject {
        group: String::new(),
        resource: "pods".into(),
        name: crate::objects::name_of(pod).to_string(),
        reason,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn mirror(owner: Value, spec: Value) -> Value {
        json!({"metadata": {"name": "web-n1", "ownerReferences": owner,
                            "annotations": {"kubernetes.io/config.mirror": "h"}},
               "spec": spec})
    }

    fn own() -> Value {
        json!([{"apiVersion": "v1", "kind": "Node", "name": "n1", "uid": "u1", "controller": true}])
    }

    #[test]
    fn a_mirror_pod_is_owned_by_its_node_and_references_nothing() {
        let plain = json!({"nodeName": "n1", "containers": [{"name": "c", "image": "i"}]});
        admit("n1", Some("u1"), &mirror(own(), plain.clone())).unwrap();
        let cases: Vec<(Value, Value, &str)> = vec![
            (
                json!([]),
                plain.clone(),
                "can only create pods with an owner reference set to itself",
            ),
            (
                json!([{"apiVersion": "v1", "kind": "Node", "name": "n2", "uid": "u1", "controller": true}]),
                plain.clone(),
                "an owner reference set to itself",
            ),
            (
                json!([{"apiVersion": "v1", "kind": "Node", "name": "n1", "uid": "u1"}]),
                plain.clone(),
                "a controller owner reference set to itself",
            ),
            (
                json!([{"apiVersion": "v1", "kind": "Node", "name": "n1", "uid": "u1", "controller": true, "blockOwnerDeletion": true}]),
                plain.clone(),
                "must not set blockOwnerDeletion",
            ),
            (
                json!([{"apiVersion": "v1", "kind": "Node", "name": "n1", "uid": "u0", "controller": true}]),
                plain.clone(),
                "node n1 UID mismatch: expected u1 got u0",
            ),
            (
                json!([own()[0].clone(), own()[0].clone()]),
                plain.clone(),
                "a single owner reference",
            ),
            (
                own(),
                json!({"serviceAccountName": "sa", "containers": []}),
                "reference a service account",
            ),
            (
                own(),
                json!({"containers": [{"name": "c", "env": [{"name": "X", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}]}]}),
                "reference secrets",
            ),
            (
                own(),
                json!({"containers": [], "imagePullSecrets": [{"name": "pull"}]}),
                "reference secrets",
            ),
            (
                own(),
                json!({"containers": [{"name": "c", "envFrom": [{"configMapRef": {"name": "cm"}}]}]}),
                "reference configmaps",
            ),
            (
                own(),
                json!({"containers": [], "volumes": [{"name": "v", "projected": {"sources": [{"configMap": {"name": "cm"}}]}}]}),
                "reference configmaps",
            ),
            (
                own(),
                json!({"containers": [], "volumes": [{"name": "v", "persistentVolumeClaim": {"claimName": "c"}}]}),
                "reference persistentvolumeclaims",
            ),
            (
                own(),
                json!({"containers": [], "volumes": [{"name": "v", "projected": {"sources": [{"clusterTrustBundle": {"name": "b", "path": "p"}}]}}]}),
                "clustertrustbundles",
            ),
            (
                own(),
                json!({"containers": [], "resourceClaims": [{"name": "gpu"}]}),
                "reference resourceclaims",
            ),
        ];
        for (owner, spec, said) in cases {
            let e = admit("n1", Some("u1"), &mirror(owner.clone(), spec.clone())).unwrap_err();
            assert!(e.contains(said), "{owner} {spec}: {e}");
        }
        // Without its Node there is no UID to match.
        let e = admit("n1", None, &mirror(own(), plain)).unwrap_err();
        assert!(e.contains("to verify uid"), "{e}");
    }
}
