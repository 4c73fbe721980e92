//! What a pod or a persistent volume names, as kube's `VisitPodSecretNames`,
//! `VisitPodConfigmapNames` and `VisitPVSecretNames`: the edges of the node graph.

use serde_json::Value;

use super::graph::Kind;

fn str_at<'a>(v: &'a Value, pointer: &str) -> Option<&'a str> {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

fn array<'a>(v: &'a Value, pointer: &str) -> impl Iterator<Item = &'a Value> {
    v.pointer(pointer)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
}

/// Volume sources of a pod that name a secret with `secretRef.name` (kube's list).
const POD_SECRET_REFS: &[&str] = &[
    "/cephfs/secretRef/name",
    "/cinder/secretRef/name",
    "/flexVolume/secretRef/name",
    "/rbd/secretRef/name",
    "/scaleIO/secretRef/name",
    "/iscsi/secretRef/name",
    "/storageos/secretRef/name",
    "/csi/nodePublishSecretRef/name",
    "/secret/secretName",
    "/azureFile/secretName",
];

/// The secrets, configmaps, claims and service account a pod uses, each once: image pull
/// secrets, env and envFrom of every (init, ephemeral) container, volumes (projected sources
/// too), claims (an ephemeral volume's claim is `<pod>-<volume>`), `serviceAccountName`.
pub fn pod_uses(pod: &Value) -> Vec<(Kind, String)> {
    let mut out: Vec<(Kind, String)> = Vec::new();
    let mut add = |kind: Kind, name: &str| {
        if !name.is_empty() && !out.iter().any(|(k, n)| *k == kind && n == name) {
            out.push((kind, name.to_string()));
        }
    };
    let Some(spec) = pod.get("spec") else {
        return out;
    };
    if let Some(sa) = str_at(spec, "/serviceAccountName") {
        add(Kind::ServiceAccount, sa);
    }
    for s in array(spec, "/imagePullSecrets") {
        if let Some(n) = str_at(s, "/name") {
            add(Kind::Secret, n);
        }
    }
    for list in ["/initContainers", "/containers", "/ephemeralContainers"] {
        for c in array(spec, list) {
            for e in array(c, "/envFrom") {
                if let Some(n) = str_at(e, "/secretRef/name") {
                    add(Kind::Secret, n);
                }
                if let Some(n) = str_at(e, "/configMapRef/name") {
                    add(Kind::ConfigMap, n);
                }
            }
            for e in array(c, "/env") {
                if let Some(n) = str_at(e, "/valueFrom/secretKeyRef/name") {
                    add(Kind::Secret, n);
                }
                if let Some(n) = str_at(e, "/valueFrom/configMapKeyRef/name") {
                    add(Kind::ConfigMap, n);
                }
            }
        }
    }
    let pod_name = str_at(pod, "/metadata/name").unwrap_or("");
    for v in array(spec, "/volumes") {
        for p in POD_SECRET_REFS {
            if let Some(n) = str_at(v, p) {
                add(Kind::Secret, n);
            }
        }
        if let Some(n) = str_at(v, "/configMap/name") {
            add(Kind::ConfigMap, n);
        }
        for src in array(v, "/projected/sources") {
            if let Some(n) = str_at(src, "/secret/name") {
                add(Kind::Secret, n);
            }
            if let Some(n) = str_at(src, "/configMap/name") {
                add(Kind::ConfigMap, n);
            }
        }
        if let Some(n) = str_at(v, "/persistentVolumeClaim/claimName") {
            add(Kind::Claim, n);
        }
        if v.get("ephemeral").is_some() {
            if let Some(vol) = str_at(v, "/name") {
                add(Kind::Claim, &format!("{pod_name}-{vol}"));
            }
        }
    }
    out
}

/// Volume sources of a persistent volume whose secret the kubelet reads, as a SecretReference
/// (name, and a namespace defaulting to the claim's). The CSI controller secrets are the
/// controllers' business, never the kubelet's, so they give no edge (as kube).
const PV_SECRET_REFS: &[&str] = &[
    "/cephfs/secretRef",
    "/cinder/secretRef",
    "/flexVolume/secretRef",
    "/rbd/secretRef",
    "/scaleIO/secretRef",
    "/iscsi/secretRef",
    "/storageos/secretRef",
    "/csi/nodePublishSecretRef",
    "/csi/nodeStageSecretRef",
    "/csi/nodeExpandSecretRef",
];

/// The (namespace, name) of every secret a volume's source names for the kubelet.
pub fn volume_secrets(pv: &Value, claim_namespace: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    let Some(spec) = pv.get("spec") else {
        return out;
    };
    let mut add = |ns: Option<&str>, name: &str| {
        let pair = (ns.unwrap_or(claim_namespace).to_string(), name.to_string());
        if !out.contains(&pair) {
            out.push(pair);
        }
    };
    for p in PV_SECRET_REFS {
        if let Some(r) = spec.pointer(p) {
            if let Some(n) = str_at(r, "/name") {
                add(str_at(r, "/namespace"), n);
            }
        }
    }
    if let Some(n) = str_at(spec, "/azureFile/secretName") {
        add(str_at(spec, "/azureFile/secretNamespace"), n);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_place_a_pod_names_an_object_is_an_edge() {
        let pod = json!({"metadata": {"name": "web"}, "spec": {
            "serviceAccountName": "bot",
            "imagePullSecrets": [{"name": "pull"}],
            "initContainers": [{"name": "i", "env": [{"name": "A",
                "valueFrom": {"secretKeyRef": {"name": "init-s", "key": "k"}}}]}],
            "containers": [{"name": "c",
                "envFrom": [{"configMapRef": {"name": "cm-env"}}, {"secretRef": {"name": "s-env"}}],
                "env": [{"name": "B", "valueFrom": {"configMapKeyRef": {"name": "cm-key", "key": "k"}}},
                        {"name": "C", "value": "x"}]}],
            "ephemeralContainers": [{"name": "e", "envFrom": [{"secretRef": {"name": "eph"}}]}],
            "volumes": [
                {"name": "a", "secret": {"secretName": "vol-s"}},
                {"name": "b", "configMap": {"name": "vol-cm"}},
                {"name": "c", "projected": {"sources": [{"secret": {"name": "p-s"}},
                    {"configMap": {"name": "p-cm"}}, {"serviceAccountToken": {"path": "t"}}]}},
                {"name": "d", "persistentVolumeClaim": {"claimName": "data"}},
                {"name": "scratch", "ephemeral": {"volumeClaimTemplate": {"spec": {}}}},
                {"name": "f", "csi": {"driver": "x", "nodePublishSecretRef": {"name": "csi-s"}}},
                {"name": "g", "emptyDir": {}}]}});
        let got = pod_uses(&pod);
        let want = [
            (Kind::ServiceAccount, "bot"),
            (Kind::Secret, "pull"),
            (Kind::Secret, "init-s"),
            (Kind::ConfigMap, "cm-env"),
            (Kind::Secret, "s-env"),
            (Kind::ConfigMap, "cm-key"),
            (Kind::Secret, "eph"),
            (Kind::Secret, "vol-s"),
            (Kind::ConfigMap, "vol-cm"),
            (Kind::Secret, "p-s"),
            (Kind::ConfigMap, "p-cm"),
            (Kind::Claim, "data"),
            (Kind::Claim, "web-scratch"),
            (Kind::Secret, "csi-s"),
        ];
        for (k, n) in want {
            assert!(got.contains(&(k, n.to_string())), "{k:?} {n}: {got:?}");
        }
        assert_eq!(got.len(), want.len(), "{got:?}");
        let pv = json!({"spec": {"rbd": {"secretRef": {"name": "ceph"}},
            "azureFile": {"secretName": "az", "secretNamespace": "other"}}});
        assert_eq!(
            volume_secrets(&pv, "app"),
            [
                ("app".to_string(), "ceph".to_string()),
                ("other".to_string(), "az".to_string())
            ]
        );
    }
}
