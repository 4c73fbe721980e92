//! kube's controller bootstrap policy (bootstrappolicy's controller and namespace policies):
//! one `system:controller:<sa>` ClusterRole per controller pea-controllers runs, bound to the
//! ServiceAccount `kube-system/<sa>` that controller authenticates as
//! (`pea_controllers::identity`), plus the namespaced Roles of the controllers that kube
//! confines to a namespace (token-cleaner, bootstrap-signer).
//!
//! The rules are kube 1.32's, with these additions, each marked `pea:` below, because pea's
//! controllers write with a (merge or JSON) patch where kube's use an update, or read through
//! an informer of their own where kube's use the shared one:
//! - `patch` next to `update` on the status subresources pea's controllers patch;
//! - node-controller lists and watches node Leases (its lifecycle monitor's informer);
//! - pvc-protection-controller also does pv-protection's work (one controller in pea), so it
//!   carries that role's rules too;
//! - taint-eviction-controller and local-path-provisioner have roles of pea's own (kube runs no
//!   such ServiceAccount / ships no such provisioner).
//!
//! The garbage collector, namespace finalization and ClusterRole aggregation run inside the API
//! server in pea, so their kube roles (generic-garbage-collector, namespace-controller,
//! clusterrole-aggregation-controller) are not created.

use serde_json::{json, Value};

use super::bootstrap::{bootstrap_metadata, subject, RoleSpec, EVENTS, NONE, R, READ};
use super::GROUP;

/// kube's `saRolePrefix`.
pub const PREFIX: &str = "system:controller:";
/// Where the controllers' ServiceAccounts live.
pub const NAMESPACE: &str = "kube-system";

const APPS: &[&str] = &["apps", "extensions"];
const CORE: &[&str] = &[""];
const BATCH: &[&str] = &["batch"];
const PATCH_UPDATE: &[&str] = &["patch", "update"];
const UPDATE: &[&str] = &["update"];
const ALL_RW: &[&str] = &[
    "create", "delete", "get", "list", "patch", "update", "watch",
];
const POD_WRITER: &[&str] = &["create", "delete", "list", "patch", "watch"];

pub static CONTROLLER_ROLES: &[RoleSpec] = &[
    RoleSpec {
        name: "system:controller:replicaset-controller",
        labels: NONE,
        aggregates: NONE,
        rules: &[
            // pea: patch (the adoption/orphaning of ReplicaSets goes through a patch).
            R(
                &["get", "list", "patch", "update", "watch"],
                APPS,
                &["replicasets"],
                NONE,
                NONE,
            ),
            // pea: patch
            R(PATCH_UPDATE, APPS, &["replicasets/status"], NONE, NONE),
            R(UPDATE, APPS, &["replicasets/finalizers"], NONE, NONE),
            R(POD_WRITER, CORE, &["pods"], NONE, NONE),
            EVENTS,
        ],
    },
    RoleSpec {
        name: "system:controller:replication-controller",
        labels: NONE,
        aggregates: NONE,
        rules: &[
            // pea: patch
            R(
                &["get", "list", "patch", "update", "watch"],
                CORE,
                &["replicationcontrollers"],
                NONE,
                NONE,
            ),
            // pea: patch
            R(
                PATCH_UPDATE,
                CORE,
                &["replicationcontrollers/status"],
                NONE,
                NONE,
            ),
            R(
                UPDATE,
                CORE,
                &["replicationcontrollers/finalizers"],
                NONE,
                NONE,
            ),
            R(POD_WRITER, CORE, &["pods"], NONE, NONE),
            EVENTS,
        ],
    },
    RoleSpec {
        name: "system:controller:deployment-controller",
        labels: NONE,
        aggregates: NONE,
        rules: &[
            // pea: patch (rollback and revision annotations)
            R(
                &["get", "list", "patch", "update", "watch"],
                APPS,
                &["deployments"],
                NONE,
                NONE,
            ),
            // pea: patch
            R(PATCH_UPDATE, APPS, &["deployments/status"], NONE, NONE),
            R(UPDATE, APPS, &["deployments/finalizers"], NONE, NONE),
            R(ALL_RW, APPS, &["replicasets"], NONE, NONE),
            R(
                &["get", "list", "update", "watch"],
                CORE,
                &["pods"],
                NONE,
                NONE,
            ),
            EVENTS,
        ],
    },
    RoleSpec {
        name: "system:controller:daemon-set-controller",
        labels: NONE,
        aggregates: NONE,
        rules: &[
            R(READ, APPS, &["daemonsets"], NONE, NONE),
            // pea: patch
            R(PATCH_UPDATE, APPS, &["daemonsets/status"], NONE, NONE),
            R(UPDATE, APPS, &["daemonsets/finalizers"], NONE, NONE),
            R(&["list", "watch"], CORE, &["nodes"], NONE, NONE),
            R(POD_WRITER, CORE, &["pods"], NONE, NONE),
            R(&["create"], CORE, &["pods/binding"], NONE, NONE),
            R(ALL_RW, &["apps"], &["controllerrevisions"], NONE, NONE),
            EVENTS,
        ],
    },
    RoleSpec {
        name: "system:controller:statefulset-controller",
        labels: NONE,
        aggregates: NONE,
        rules: &[
            R(&["list", "watch"], CORE, &["pods"], NONE, NONE),
            R(READ, &["apps"], &["statefulsets"], NONE, NONE),
            // pea: patch
            R(
                PATCH_UPDATE,
                &["apps"],
                &["statefulsets/status"],
                NONE,
                NONE,
            ),
            R(UPDATE, &["apps"], &["statefulsets/finalizers"], NONE, NONE),
            R(
                &["create", "delete", "get", "patch", "update"],
                CORE,
                &["pods"],
                NONE,
                NONE,
            ),
            R(ALL_RW, &["apps"], &["controllerrevisions"], NONE, NONE),
            R(
                &["create", "get", "list", "watch"],
                CORE,
                &["persistentvolumeclaims"],
                NONE,
                NONE,
            ),
            // pea: patch (PVC retention policy ownerReferences)
            R(
                &["delete", "patch", "update"],
                CORE,
                &["persistentvolumeclaims"],
                NONE,
                NONE,
            ),
            R(UPDATE, CORE, &["pods/finalizers"], NONE, NONE),
            EVENTS,
        ],
    },
    RoleSpec {
        name: "system:controller:cronjob-controller",
        labels: NONE,
        aggregates: NONE,
        rules: &[
            R(
                &["get", "list", "update", "watch"],
                BATCH,
                &["cronjobs"],
                NONE,
                NONE,
            ),
            R(ALL_RW, BATCH, &["jobs"], NONE, NONE),
            // pea: patch
            R(PATCH_UPDATE, BATCH, &["cronjobs/status"], NONE, NONE),
            R(UPDATE, BATCH, &["cronjobs/finalizers"], NONE, NONE),
            R(&["delete", "list", "watch"], CORE, &["pods"], NONE, NONE),
            EVENTS,
        ],
    },
    RoleSpec {
        name: "system:controller:job-controller",
        labels: NONE,
        aggregates: NONE,
        rules: &[
            R(
                &["get", "list", "patch", "update", "watch"],
                BATCH,
                &["jobs"],
                NONE,
                NONE,
            ),
            // pea: patch
            R(PATCH_UPDATE, BATCH, &["jobs/status"], NONE, NONE),
            R(UPDATE, BATCH, &["jobs/finalizers"], NONE, NONE),
            R(POD_WRITER, CORE, &["pods"], NONE, NONE),
            EVENTS,
        ],
    },
    RoleSpec {
        name: "system:controller:endpoint-controller",
        labels: NONE,
        aggregates: NONE,
        rules: &[
            R(READ, CORE, &["pods", "services"], NONE, NONE),
            R(
                &["create", "delete", "get", "list", "update", "watch"],
                CORE,
                &["endpoints"],
                NONE,
                NONE,
            ),
            R(&["create"], CORE, &["endpoints/restricted"], NONE, NONE),
            EVENTS,
        ],
    },
    RoleSpec {
        name: "system:controller:endpointslice-controller",
        labels: NONE,
        aggregates: NONE,
        rules: &[
            R(READ, CORE, &["nodes", "pods", "services"], NONE, NONE),
            R(UPDATE, CORE, &["services/finalizers"], NONE, NONE),
            R(
                &["create", "delete", "get", "list", "update", "watch"],
                &["discovery.k8s.io"],
                &["endpointslices"],
                NONE,
                NONE,
            ),
            EVENTS,
        ],
    },
    RoleSpec {
        name: "system:controller:node-controller",
        labels: NONE,
        aggregates: NONE,
        rules: &[
            R(
                &["delete", "get", "list", "patch", "update", "watch"],
                CORE,
                &["nodes"],
                NONE,
                NONE,
            ),
            R(PATCH_UPDATE, CORE, &["nodes/status"], NONE, NONE),
            R(PATCH_UPDATE, CORE, &["pods/status"], NONE, NONE),
            R(
                &["delete", "get", "list", "watch"],
                CORE,
                &["pods"],
                NONE,
                NONE,
            ),
            // pea: the lifecycle monitor watches node Leases itself.
            R(
                &["list", "watch"],
                &["coordination.k8s.io"],
                &["leases"],
                NONE,
                NONE,
            ),
            EVENTS,
        ],
    },
    // pea: kube's node-controller rules for pod eviction, under the name of kube's
    // taint-eviction controller.
    RoleSpec {
        name: "system:controller:taint-eviction-controller",
        labels: NONE,
        aggregates: NONE,
        rules: &[
            R(
                &["delete", "get", "list", "watch"],
                CORE,
                &["pods"],
                NONE,
                NONE,
            ),
            R(PATCH_UPDATE, CORE, &["pods/status"], NONE, NONE),
            R(&["list", "watch"], CORE, &["nodes"], NONE, NONE),
            EVENTS,
        ],
    },
    RoleSpec {
        name: "system:controller:disruption-controller",
        labels: NONE,
        aggregates: NONE,
        rules: &[
            R(READ, APPS, &["deployments"], NONE, NONE),
            R(READ, APPS, &["replicasets"], NONE, NONE),
            R(READ, CORE, &["replicationcontrollers"], NONE, NONE),
            R(READ, &["policy"], &["poddisruptionbudgets"], NONE, NONE),
            R(READ, &["apps"], &["statefulsets"], NONE, NONE),
            R(
                UPDATE,
                &["policy"],
                &["poddisruptionbudgets/status"],
                NONE,
                NONE,
            ),
            R(PATCH_UPDATE, CORE, &["pods/status"], NONE, NONE),
            R(&["get"], &["*"], &["*/scale"], NONE, NONE),
            EVENTS,
        ],
    },
    RoleSpec {
        name: "system:controller:service-account-controller",
        labels: NONE,
        aggregates: NONE,
        rules: &[
            R(&["create"], CORE, &["serviceaccounts"], NONE, NONE),
            EVENTS,
        ],
    },
    RoleSpec {
        name: "system:controller:root-ca-cert-publisher",
        labels: NONE,
        aggregates: NONE,
        rules: &[
            R(&["create", "update"], CORE, &["configmaps"], NONE, NONE),
            EVENTS,
        ],
    },
    RoleSpec {
        name: "system:controller:ttl-after-finished-controller",
        labels: NONE,
        aggregates: NONE,
        rules: &[
            R(
                &["delete", "get", "list", "watch"],
                BATCH,
                &["jobs"],
                NONE,
                NONE,
            ),
            EVENTS,
        ],
    },
    RoleSpec {
        name: "system:controller:pod-garbage-collector",
        labels: NONE,
        aggregates: NONE,
        rules: &[
            R(&["delete", "list", "watch"], CORE, &["pods"], NONE, NONE),
            R(READ, CORE, &["nodes"], NONE, NONE),
            R(&["patch"], CORE, &["pods/status"], NONE, NONE),
        ],
    },
    RoleSpec {
        name: "system:controller:horizontal-pod-autoscaler",
        labels: NONE,
        aggregates: NONE,
        rules: &[
            R(
                READ,
                &["autoscaling"],
                &["horizontalpodautoscalers"],
                NONE,
                NONE,
            ),
            // pea: patch
            R(
                PATCH_UPDATE,
                &["autoscaling"],
                &["horizontalpodautoscalers/status"],
                NONE,
                NONE,
            ),
            // pea: patch (the scale write is a merge patch)
            R(
                &["get", "patch", "update"],
                &["*"],
                &["*/scale"],
                NONE,
                NONE,
            ),
            R(&["list", "watch"], CORE, &["pods"], NONE, NONE),
            R(
                &["list", "watch"],
                &["metrics.k8s.io"],
                &["pods"],
                NONE,
                NONE,
            ),
            R(READ, &["custom.metrics.k8s.io"], &["*"], NONE, NONE),
            R(READ, &["external.metrics.k8s.io"], &["*"], NONE, NONE),
            EVENTS,
        ],
    },
    RoleSpec {
        name: "system:controller:persistent-volume-binder",
        labels: NONE,
        aggregates: NONE,
        rules: &[
            // pea: patch
            R(ALL_RW, CORE, &["persistentvolumes"], NONE, NONE),
            R(
                PATCH_UPDATE,
                CORE,
                &["persistentvolumes/status"],
                NONE,
                NONE,
            ),
            // pea: patch
            R(
                &["get", "list", "patch", "update", "watch"],
                CORE,
                &["persistentvolumeclaims"],
                NONE,
                NONE,
            ),
            // pea: patch
            R(
                PATCH_UPDATE,
                CORE,
                &["persistentvolumeclaims/status"],
                NONE,
                NONE,
            ),
            R(
                &["create", "delete", "get", "list", "watch"],
                CORE,
                &["pods"],
                NONE,
                NONE,
            ),
            R(READ, &["storage.k8s.io"], &["storageclasses"], NONE, NONE),
            R(&["list", "watch"], CORE, &["nodes"], NONE, NONE),
            EVENTS,
            R(&["watch"], CORE, &["events"], NONE, NONE),
            R(&["get"], CORE, &["services"], NONE, NONE),
        ],
    },
    // pea: the local-path provisioner (rancher's, built in): PVs for claims of its class,
    // helper pods that make and remove the directories, the default StorageClass.
    RoleSpec {
        name: "system:controller:local-path-provisioner",
        labels: NONE,
        aggregates: NONE,
        rules: &[
            R(
                &["create", "delete", "get", "list", "watch"],
                CORE,
                &["persistentvolumes", "pods"],
                NONE,
                NONE,
            ),
            R(
                &["get", "list", "patch", "update", "watch"],
                CORE,
                &["persistentvolumeclaims"],
                NONE,
                NONE,
            ),
            R(
                &["create", "get", "list", "watch"],
                &["storage.k8s.io"],
                &["storageclasses"],
                NONE,
                NONE,
            ),
            R(&["list", "watch"], CORE, &["nodes"], NONE, NONE),
            EVENTS,
        ],
    },
    RoleSpec {
        name: "system:controller:resourcequota-controller",
        labels: NONE,
        aggregates: NONE,
        rules: &[
            R(&["list", "watch"], &["*"], &["*"], NONE, NONE),
            R(UPDATE, CORE, &["resourcequotas/status"], NONE, NONE),
            EVENTS,
        ],
    },
    RoleSpec {
        name: "system:controller:pvc-protection-controller",
        labels: NONE,
        aggregates: NONE,
        rules: &[
            // pea: patch (the finalizer goes in and out with a JSON patch)
            R(
                &["get", "list", "patch", "update", "watch"],
                CORE,
                &["persistentvolumeclaims"],
                NONE,
                NONE,
            ),
            R(READ, CORE, &["pods"], NONE, NONE),
            // pea: pv-protection's rules (same controller here), with patch.
            R(
                &["get", "list", "patch", "update", "watch"],
                CORE,
                &["persistentvolumes"],
                NONE,
                NONE,
            ),
            EVENTS,
        ],
    },
    RoleSpec {
        name: "system:controller:certificate-controller",
        labels: NONE,
        aggregates: NONE,
        rules: &[
            R(
                &["delete", "get", "list", "watch"],
                &["certificates.k8s.io"],
                &["certificatesigningrequests"],
                NONE,
                NONE,
            ),
            R(
                UPDATE,
                &["certificates.k8s.io"],
                &[
                    "certificatesigningrequests/approval",
                    "certificatesigningrequests/status",
                ],
                NONE,
                NONE,
            ),
            // pea: also the client signer, for the add-on client rule (a node's CSRs for
            // system:kube-proxy and system:pea-flanneld; pea-controllers' csr/addon_client.rs).
            R(
                &["approve"],
                &["certificates.k8s.io"],
                &["signers"],
                &[
                    "kubernetes.io/kube-apiserver-client",
                    "kubernetes.io/kube-apiserver-client-kubelet",
                ],
                NONE,
            ),
            R(
                &["sign"],
                &["certificates.k8s.io"],
                &["signers"],
                &[
                    "kubernetes.io/kube-apiserver-client",
                    "kubernetes.io/kube-apiserver-client-kubelet",
                    "kubernetes.io/kubelet-serving",
                    "kubernetes.io/legacy-unknown",
                ],
                NONE,
            ),
            R(
                &["create"],
                &["authorization.k8s.io"],
                &["subjectaccessreviews"],
                NONE,
                NONE,
            ),
            EVENTS,
        ],
    },
];

/// A Role kube confines to one namespace, bound there to `kube-system/<sa>`.
#[derive(Debug)]
pub struct NamespacedRole {
    pub namespace: &'static str,
    pub role: RoleSpec,
}

pub static NAMESPACED_ROLES: &[NamespacedRole] = &[
    NamespacedRole {
        namespace: "kube-system",
        role: RoleSpec {
            name: "system:controller:token-cleaner",
            labels: NONE,
            aggregates: NONE,
            rules: &[
                R(
                    &["delete", "get", "list", "watch"],
                    CORE,
                    &["secrets"],
                    NONE,
                    NONE,
                ),
                EVENTS,
            ],
        },
    },
    NamespacedRole {
        namespace: "kube-system",
        role: RoleSpec {
            name: "system:controller:bootstrap-signer",
            labels: NONE,
            aggregates: NONE,
            rules: &[R(READ, CORE, &["secrets"], NONE, NONE)],
        },
    },
    NamespacedRole {
        namespace: "kube-public",
        role: RoleSpec {
            name: "system:controller:bootstrap-signer",
            labels: NONE,
            aggregates: NONE,
            rules: &[
                R(READ, CORE, &["configmaps"], NONE, NONE),
                R(UPDATE, CORE, &["configmaps"], &["cluster-info"], NONE),
                EVENTS,
            ],
        },
    },
];

/// The ServiceAccount a controller role is for: the name after the prefix.
pub fn service_account(role: &str) -> &str {
    role.strip_prefix(PREFIX).unwrap_or(role)
}

/// The ClusterRoleBinding of a controller role to its ServiceAccount.
pub fn cluster_binding(role: &RoleSpec) -> Value {
    json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": bootstrap_metadata(role.name, &[]),
        "roleRef": {"apiGroup": GROUP, "kind": "ClusterRole", "name": role.name},
        "subjects": [subject("ServiceAccount", service_account(role.name), NAMESPACE)],
    })
}

impl NamespacedRole {
    /// The Role object.
    pub fn object(&self) -> Value {
        let mut o = self.role.object();
        o["kind"] = json!("Role");
        o["metadata"]["namespace"] = json!(self.namespace);
        o
    }

    /// The RoleBinding of the Role to its ServiceAccount.
    pub fn binding(&self) -> Value {
        let mut meta = bootstrap_metadata(self.role.name, &[]);
        meta["namespace"] = json!(self.namespace);
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": meta,
            "roleRef": {"apiGroup": GROUP, "kind": "Role", "name": self.role.name},
            "subjects": [subject("ServiceAccount", service_account(self.role.name), NAMESPACE)],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controller_roles_are_prefixed_unique_sorted_and_bound_to_their_service_account() {
        let mut names = std::collections::BTreeSet::new();
        for r in CONTROLLER_ROLES {
            assert!(r.name.starts_with(PREFIX), "{}", r.name);
            assert!(names.insert(r.name), "{} twice", r.name);
            for rule in r.rules {
                let mut sorted = rule.0.to_vec();
                sorted.sort();
                assert_eq!(sorted, rule.0, "{}", r.name);
            }
            let b = cluster_binding(r);
            assert_eq!(b["roleRef"]["name"], r.name);
            assert_eq!(
                b["subjects"][0],
                json!({"kind": "ServiceAccount", "name": service_account(r.name), "namespace": "kube-system"})
            );
        }
        let signer = &NAMESPACED_ROLES[2];
        assert_eq!(signer.object()["kind"], "Role");
        assert_eq!(signer.object()["metadata"]["namespace"], "kube-public");
        assert_eq!(signer.binding()["subjects"][0]["name"], "bootstrap-signer");
        assert_eq!(signer.binding()["subjects"][0]["namespace"], "kube-system");
    }
}
