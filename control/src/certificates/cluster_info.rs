//! What `kubeadm init` creates for joining nodes (its `bootstrap-token` phase), made at every
//! start of pea-control so a cluster is joinable from the first request:
//! - `kube-public/cluster-info`: a ConfigMap whose `kubeconfig` names the cluster's CA and
//!   server, readable without credentials (Role `kubeadm:bootstrap-signer-clusterinfo` bound to
//!   `system:anonymous`); a joiner pins the CA by its public key hash before trusting it.
//! - the ClusterRoleBindings that let bootstrap tokens (group
//!   `system:bootstrappers:kubeadm:default-node-token`) post CSRs and have kubelet client CSRs
//!   auto-approved, and nodes have their renewals approved (`system:nodes` →
//!   selfnodeclient): `kubeadm:kubelet-bootstrap`, `kubeadm:node-autoapprove-bootstrap`,
//!   `kubeadm:node-autoapprove-certificate-rotation`; and pea's
//!   `pea:node-autoapprove-addon-client` (`system:nodes` → selfaddonclient: a node's CSRs for
//!   its host add-ons' identities are approved; edit its subjects to narrow that to some
//!   nodes, or empty them to switch it off).
//!
//! Existing objects are left as an administrator changed them, except cluster-info, whose CA
//! and server follow the running server.

use base64::Engine;
use pea_control_store::StoreError;
use serde_json::{json, Value};

use crate::api::Api;
use crate::objects;
use crate::status::ApiError;

pub const CLUSTER_INFO: &str = "cluster-info";
pub const NAMESPACE: &str = "kube-public";
/// The group `pea token create` (as `kubeadm token create`) gives node join tokens.
pub const DEFAULT_NODE_TOKEN_GROUP: &str = "system:bootstrappers:kubeadm:default-node-token";
const RBAC: &str = "rbac.authorization.k8s.io";
/// Lets nodes have their add-ons' client certificates approved (csrapproving's add-on rule).
pub const ADDON_CLIENT_BINDING: &str = "pea:node-autoapprove-addon-client";

/// The kubeconfig cluster-info carries: server and CA only, no user.
pub fn kubeconfig(server: &str, ca_pem: &str) -> String {
    let ca = base64::engine::general_purpose::STANDARD.encode(ca_pem);
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: \"\"\n  cluster:\n    certificate-authority-data: {ca}\n    server: {server}\ncontexts: []\ncurrent-context: \"\"\npreferences: {{}}\nusers: []\n"
    )
}

fn binding(name: &str, role: &str, subject_kind: &str, subject: &str) -> Value {
    json!({
        "apiVersion": format!("{RBAC}/v1"), "kind": "ClusterRoleBinding",
        "metadata": {"name": name},
        "roleRef": {"apiGroup": RBAC, "kind": "ClusterRole", "name": role},
        "subjects": [{"apiGroup": RBAC, "kind": subject_kind, "name": subject}],
    })
}

/// Creates (or, for cluster-info, refreshes) kubeadm's join objects.
pub async fn ensure(api: &Api, server: &str, ca_pem: &str) -> Result<(), ApiError> {
    let info = json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": CLUSTER_INFO, "namespace": NAMESPACE},
        "data": {"kubeconfig": kubeconfig(server, ca_pem)},
    });
    put(api, "", "configmaps", Some(NAMESPACE), info, true).await?;
    let role = json!({
        "apiVersion": format!("{RBAC}/v1"), "kind": "Role",
        "metadata": {"name": "kubeadm:bootstrap-signer-clusterinfo", "namespace": NAMESPACE},
        "rules": [{"apiGroups": [""], "resources": ["configmaps"], "resourceNames": [CLUSTER_INFO], "verbs": ["get"]}],
    });
    put(api, RBAC, "roles", Some(NAMESPACE), role, false).await?;
    let anon = json!({
        "apiVersion": format!("{RBAC}/v1"), "kind": "RoleBinding",
        "metadata": {"name": "kubeadm:bootstrap-signer-clusterinfo", "namespace": NAMESPACE},
        "roleRef": {"apiGroup": RBAC, "kind": "Role", "name": "kubeadm:bootstrap-signer-clusterinfo"},
        "subjects": [{"apiGroup": RBAC, "kind": "User", "name": crate::auth::ANONYMOUS_USER}],
    });
    put(api, RBAC, "rolebindings", Some(NAMESPACE), anon, false).await?;
    for b in [
        binding(
            "kubeadm:kubelet-bootstrap",
            "system:node-bootstrapper",
            "Group",
            DEFAULT_NODE_TOKEN_GROUP,
        ),
        binding(
            "kubeadm:node-autoapprove-bootstrap",
            "system:certificates.k8s.io:certificatesigningrequests:nodeclient",
            "Group",
            DEFAULT_NODE_TOKEN_GROUP,
        ),
        binding(
            "kubeadm:node-autoapprove-certificate-rotation",
            "system:certificates.k8s.io:certificatesigningrequests:selfnodeclient",
            "Group",
            crate::auth::NODES_GROUP,
        ),
        binding(
            ADDON_CLIENT_BINDING,
            "pea:certificates.k8s.io:certificatesigningrequests:selfaddonclient",
            "Group",
            crate::auth::NODES_GROUP,
        ),
    ] {
        put(api, RBAC, "clusterrolebindings", None, b, false).await?;
    }
    Ok(())
}

/// Creates `obj` if absent; with `refresh`, sets the keys of its `data` that differ.
async fn put(
    api: &Api,
    group: &str,
    plural: &str,
    ns: Option<&str>,
    mut obj: Value,
    refresh: bool,
) -> Result<(), ApiError> {
    let def = api
        .resources
        .find(group, "v1", plural)
        .ok_or_else(|| ApiError::Internal(format!("{plural} not served")))?;
    let name = objects::name_of(&obj).to_string();
    let key = def.key(ns, &name);
    let err = |e: StoreError| ApiError::from_store(e, group, plural, &name);
    for _ in 0..5 {
        let (current, _) = api.store.get(&key).await.map_err(err)?;
        let result = match current {
            None => {
                obj["metadata"]["uid"] = json!(objects::new_uid());
                obj["metadata"]["creationTimestamp"] = json!(objects::rfc3339((api.clock)()));
                api.store
                    .create(&key, objects::encode(&obj))
                    .await
                    .map(|_| ())
            }
            Some(kv) if refresh => {
                let mut existing = objects::decode(&kv)?;
                // Only the keys written here: the bootstrapsigner's `jws-kubeconfig-*`
                // signatures stay (it re-signs when the kubeconfig changes).
                let wanted = obj["data"].as_object().cloned().unwrap_or_default();
                if wanted
                    .iter()
                    .all(|(k, v)| existing["data"].get(k) == Some(v))
                {
                    return Ok(());
                }
                if !existing["data"].is_object() {
                    existing["data"] = json!({});
                }
                for (k, v) in wanted {
                    existing["data"][k] = v;
                }
                api.store
                    .update(&key, objects::encode(&existing), kv.mod_revision)
                    .await
                    .map(|_| ())
            }
            Some(_) => return Ok(()),
        };
        match result {
            Ok(()) => return Ok(()),
            Err(StoreError::AlreadyExists { .. } | StoreError::Conflict { .. }) => continue,
            Err(e) => return Err(err(e)),
        }
    }
    Err(ApiError::Internal(format!(
        "{plural} {name} kept changing while pea-control created it"
    )))
}
