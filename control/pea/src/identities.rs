//! The add-ons' own identities: no pea component runs with the admin credentials (issue 20).
//!
//! Each add-on that pea starts as a host process (pea-proxy, pea-flanneld) gets a client
//! certificate from the cluster CA (`pea-control kubeconfig`, as the kubelet's
//! `system:node:NAME` is minted), as k3s issues kube-proxy's (CN `system:kube-proxy`) and its
//! embedded flannel's (CN `system:k3s-controller`). A certificate names a *user*: a CN
//! `system:serviceaccount:NS:NAME` would pass for a ServiceAccount without its token, so
//! pea-flanneld (a pod with a ServiceAccount in kube) gets a user name of its own. The add-ons
//! that run as pods (pea-dns, pea-ingress: `pea up`'s Deployments) are ServiceAccounts, as
//! CoreDNS and ingress-nginx are.
//!
//! The ClusterRoles and bindings are the add-ons' (kube's `system:node-proxier`, already bound
//! to `system:kube-proxy` by pea-control's bootstrap policy; flannel's, CoreDNS's and
//! ingress-nginx's, each narrowed to what the pea program calls) and are applied by the
//! installer through the API, as kubeadm applies its add-ons' RBAC.

use serde_json::{json, Value};

/// One add-on's identity: who it is and where its kubeconfig goes.
#[derive(Debug, Clone, Copy)]
pub struct Identity {
    pub component: &'static str,
    /// The certificate's CN.
    pub user: &'static str,
    /// Its kubeconfig's file name (0600, next to the node's other files).
    pub file: &'static str,
}

/// pea-proxy: kube-proxy's own user, which kube's bootstrap binding `system:node-proxier`
/// names (Services, EndpointSlices and Nodes list/watch, Events create: what pea-proxy calls).
pub const PROXY: Identity = Identity {
    component: "pea-proxy",
    user: "system:kube-proxy",
    file: "proxy.kubeconfig",
};
pub const FLANNELD: Identity = Identity {
    component: "pea-flanneld",
    user: "system:pea-flanneld",
    file: "flanneld.kubeconfig",
};
/// pea-dns and pea-ingress run as pods (`pea up`'s add-on Deployments), so, as CoreDNS and
/// ingress-nginx, they are ServiceAccounts in kube-system with kube's service-account tokens.
/// As host services of an installed control plane (addons.rs), they are these users, with
/// the same ClusterRoles.
pub const DNS: Identity = Identity {
    component: "pea-dns",
    user: "system:pea-dns",
    file: "dns.kubeconfig",
};
pub const INGRESS: Identity = Identity {
    component: "pea-ingress",
    user: "system:pea-ingress",
    file: "ingress.kubeconfig",
};
pub const DNS_ACCOUNT: &str = "pea-dns";
pub const INGRESS_ACCOUNT: &str = "pea-ingress";
pub const ADDON_NAMESPACE: &str = "kube-system";

/// `pea-control kubeconfig` arguments that mint `id`'s kubeconfig into `out`.
pub fn issue_args(control_data_dir: &str, id: &Identity, server: &str, out: &str) -> Vec<String> {
    [
        "kubeconfig",
        "--data-dir",
        control_data_dir,
        "--user",
        id.user,
        "--server",
        server,
        "--out",
        out,
    ]
    .map(str::to_string)
    .to_vec()
}

fn rule(verbs: &[&str], group: &str, resources: &[&str]) -> Value {
    json!({"apiGroups": [group], "resources": resources, "verbs": verbs})
}

const WATCH: &[&str] = &["list", "watch"];

fn user(name: &str) -> Value {
    json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": name})
}

fn service_account(name: &str) -> Value {
    json!({"kind": "ServiceAccount", "name": name, "namespace": ADDON_NAMESPACE})
}

fn role_and_binding(name: &str, subjects: Vec<Value>, rules: Vec<Value>) -> [Value; 2] {
    let meta = json!({"name": name, "labels": {"app.kubernetes.io/managed-by": "pea"}});
    [
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
               "metadata": meta, "rules": rules}),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
               "metadata": meta,
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
               "subjects": subjects}),
    ]
}

/// The add-ons' ClusterRoles and bindings, a `v1 List` for `kubectl apply -f -`.
pub fn rbac() -> Value {
    let mut items = Vec::new();
    // flannel's role (kube-flannel-rbac.yml) without `pods get` (pea-flanneld is a host
    // process, it reads no pod of its own): it reads Nodes and writes its annotations through
    // nodes/status, which keeps metadata as kube's Node status strategy does.
    items.extend(role_and_binding(
        "pea:flanneld",
        vec![user(FLANNELD.user)],
        vec![
            rule(&["get", "list", "watch"], "", &["nodes"]),
            rule(&["patch"], "", &["nodes/status"]),
        ],
    ));
    // CoreDNS's system:coredns, narrowed to what pea-dns watches (no Endpoints: it reads
    // EndpointSlices; no Pods: it answers pod names from the address alone).
    items.extend(role_and_binding(
        "pea:dns",
        vec![service_account(DNS_ACCOUNT), user(DNS.user)],
        vec![
            rule(WATCH, "", &["namespaces", "services"]),
            rule(WATCH, "discovery.k8s.io", &["endpointslices"]),
        ],
    ));
    // ingress-nginx's ClusterRole, narrowed to what pea-ingress calls: it watches classes,
    // Ingresses, Services, EndpointSlices and (TLS) Secrets, patches Ingress status with its
    // address and posts Events.
    items.extend(role_and_binding(
        "pea:ingress",
        vec![service_account(INGRESS_ACCOUNT), user(INGRESS.user)],
        vec![
            rule(WATCH, "networking.k8s.io", &["ingresses", "ingressclasses"]),
            rule(&["patch"], "networking.k8s.io", &["ingresses/status"]),
            rule(WATCH, "", &["services", "secrets"]),
            rule(WATCH, "discovery.k8s.io", &["endpointslices"]),
            rule(&["create"], "", &["events"]),
        ],
    ));
    json!({"apiVersion": "v1", "kind": "List", "items": items})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_role_is_bound_to_its_add_on_and_no_one_else() {
        let v = rbac();
        let items = v["items"].as_array().unwrap();
        assert_eq!(items.len(), 6);
        for pair in items.chunks(2) {
            let (role, binding) = (&pair[0], &pair[1]);
            assert_eq!(role["kind"], "ClusterRole");
            assert_eq!(binding["roleRef"]["name"], role["metadata"]["name"]);
            // The add-on's ServiceAccount (its pods) and its user (its host unit), no one else.
            let subjects: Vec<&str> = binding["subjects"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| {
                    if s["kind"] == "ServiceAccount" {
                        assert_eq!(s["namespace"], ADDON_NAMESPACE);
                    }
                    s["name"].as_str().unwrap()
                })
                .collect();
            assert!(
                [
                    &[FLANNELD.user][..],
                    &[DNS_ACCOUNT, DNS.user],
                    &[INGRESS_ACCOUNT, INGRESS.user]
                ]
                .contains(&&subjects[..]),
                "{subjects:?}"
            );
            // Least privilege: no wildcard, no write beyond patch/create.
            for r in role["rules"].as_array().unwrap() {
                for verb in r["verbs"].as_array().unwrap() {
                    assert!(
                        ["get", "list", "watch", "patch", "create"]
                            .contains(&verb.as_str().unwrap()),
                        "{r}"
                    );
                }
                assert!(!r.to_string().contains('*'), "{r}");
            }
        }
    }

    #[test]
    fn flanneld_writes_only_the_status_of_nodes() {
        let v = rbac();
        let role = &v["items"][0];
        assert_eq!(role["metadata"]["name"], "pea:flanneld");
        let writes: Vec<&Value> = role["rules"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["verbs"].to_string().contains("patch"))
            .collect();
        assert_eq!(writes.len(), 1);
        assert_eq!(writes[0]["resources"], json!(["nodes/status"]));
    }

    #[test]
    fn issue_args_name_the_user_and_no_group() {
        let a = issue_args("/d", &PROXY, "https://1.2.3.4:6443", "/o");
        assert_eq!(
            a.join(" "),
            "kubeconfig --data-dir /d --user system:kube-proxy --server https://1.2.3.4:6443 --out /o"
        );
    }
}
