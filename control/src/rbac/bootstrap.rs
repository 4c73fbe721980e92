//! The ClusterRoles and ClusterRoleBindings kube-apiserver creates at start
//! (plugin/pkg/auth/authorizer/rbac/bootstrappolicy, Kubernetes 1.32 with default feature
//! gates), as data, and their reconciliation: a missing object is created; an existing one that
//! does not say `rbac.authorization.kubernetes.io/autoupdate: "false"` gains the labels,
//! annotations, rules, aggregation selectors and subjects it lacks (what an administrator added
//! stays); a binding whose roleRef changed is recreated.

use serde_json::{json, Map, Value};

use pea_control_store::StoreError;

use crate::api::Api;
use crate::objects;
use crate::rbac::rules::{covers, Rule};
use crate::rbac::{AUTOUPDATE_ANNOTATION, GROUP};
use crate::status::ApiError;

/// One rule: verbs, API groups, resources, resource names, non-resource URLs.
#[derive(Debug)]
pub struct R(
    pub &'static [&'static str],
    pub &'static [&'static str],
    pub &'static [&'static str],
    pub &'static [&'static str],
    pub &'static [&'static str],
);

/// A bootstrap ClusterRole.
#[derive(Debug)]
pub struct RoleSpec {
    pub name: &'static str,
    /// Labels besides `kubernetes.io/bootstrapping: rbac-defaults`.
    pub labels: &'static [&'static str],
    /// For an aggregated role: the label each `clusterRoleSelectors` entry matches (`"true"`).
    pub aggregates: &'static [&'static str],
    pub rules: &'static [R],
}

/// A bootstrap ClusterRoleBinding of the ClusterRole of the same name.
#[derive(Debug)]
pub struct BindingSpec {
    pub name: &'static str,
    /// (kind, name, namespace)
    pub subjects: &'static [(&'static str, &'static str, &'static str)],
}

pub(crate) const READ: &[&str] = &["get", "list", "watch"];
const WRITE: &[&str] = &["create", "delete", "deletecollection", "patch", "update"];
const RW: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];
pub(crate) const EVENTS: R = R(
    &["create", "patch", "update"],
    &["", "events.k8s.io"],
    &["events"],
    &[],
    &[],
);
pub(crate) const NONE: &[&str] = &[];

const TO_ADMIN: &str = "rbac.authorization.k8s.io/aggregate-to-admin";
const TO_EDIT: &str = "rbac.authorization.k8s.io/aggregate-to-edit";
const TO_VIEW: &str = "rbac.authorization.k8s.io/aggregate-to-view";

pub static CLUSTER_ROLES: &[RoleSpec] = &[
    RoleSpec {
        name: "cluster-admin",
        labels: NONE,
        aggregates: NONE,
        rules: &[
            R(&["*"], &["*"], &["*"], NONE, NONE),
            R(&["*"], NONE, NONE, NONE, &["*"]),
        ],
    },
    RoleSpec {
        name: "admin",
        labels: NONE,
        aggregates: &[TO_ADMIN],
        rules: &[],
    },
    RoleSpec {
        name: "edit",
        labels: &[TO_ADMIN],
        aggregates: &[TO_EDIT],
        rules: &[],
    },
    RoleSpec {
        name: "view",
        labels: &[TO_EDIT],
        aggregates: &[TO_VIEW],
        rules: &[],
    },
    RoleSpec {
        name: "system:aggregate-to-admin",
        labels: &[TO_ADMIN],
        aggregates: NONE,
        rules: &[
            R(
                &["create"],
                &["authorization.k8s.io"],
                &["localsubjectaccessreviews"],
                NONE,
                NONE,
            ),
            R(RW, &[GROUP], &["rolebindings", "roles"], NONE, NONE),
        ],
    },
    RoleSpec {
        name: "system:aggregate-to-edit",
        labels: &[TO_EDIT],
        aggregates: NONE,
        rules: &[
            R(
                READ,
                &[""],
                &[
                    "pods/attach",
                    "pods/exec",
                    "pods/portforward",
                    "pods/proxy",
                    "secrets",
                    "services/proxy",
                ],
                NONE,
                NONE,
            ),
            R(&["impersonate"], &[""], &["serviceaccounts"], NONE, NONE),
            R(
                WRITE,
                &[""],
                &[
                    "pods",
                    "pods/attach",
                    "pods/exec",
                    "pods/portforward",
                    "pods/proxy",
                ],
                NONE,
                NONE,
            ),
            R(&["create"], &[""], &["pods/eviction"], NONE, NONE),
            R(
                WRITE,
                &[""],
                &[
                    "configmaps",
                    "persistentvolumeclaims",
                    "replicationcontrollers",
                    "replicationcontrollers/scale",
                    "secrets",
                    "serviceaccounts",
                    "services",
                    "services/proxy",
                ],
                NONE,
                NONE,
            ),
            R(&["create"], &[""], &["serviceaccounts/token"], NONE, NONE),
            R(WRITE, &["", "events.k8s.io"], &["events"], NONE, NONE),
            R(
                WRITE,
                &["apps"],
                &[
                    "daemonsets",
                    "deployments",
                    "deployments/rollback",
                    "deployments/scale",
                    "replicasets",
                    "replicasets/scale",
                    "statefulsets",
                    "statefulsets/scale",
                ],
                NONE,
                NONE,
            ),
            R(
                WRITE,
                &["autoscaling"],
                &["horizontalpodautoscalers"],
                NONE,
                NONE,
            ),
            R(WRITE, &["batch"], &["cronjobs", "jobs"], NONE, NONE),
            R(
                WRITE,
                &["extensions"],
                &[
                    "daemonsets",
                    "deployments",
                    "deployments/rollback",
                    "deployments/scale",
                    "ingresses",
                    "networkpolicies",
                    "replicasets",
                    "replicasets/scale",
                    "replicationcontrollers/scale",
                ],
                NONE,
                NONE,
            ),
            R(WRITE, &["policy"], &["poddisruptionbudgets"], NONE, NONE),
            R(
                WRITE,
                &["networking.k8s.io"],
                &["ingresses", "networkpolicies"],
                NONE,
                NONE,
            ),
            R(RW, &["coordination.k8s.io"], &["leases"], NONE, NONE),
        ],
    },
    RoleSpec {
        name: "system:aggregate-to-view",
        labels: &[TO_VIEW],
        aggregates: NONE,
        rules: &[
            R(
                READ,
                &[""],
                &[
                    "configmaps",
                    "endpoints",
                    "persistentvolumeclaims",
                    "persistentvolumeclaims/status",
                    "pods",
                    "replicationcontrollers",
                    "replicationcontrollers/scale",
                    "serviceaccounts",
                    "services",
                    "services/status",
                ],
                NONE,
                NONE,
            ),
            R(
                READ,
                &[""],
                &[
                    "bindings",
                    "limitranges",
                    "namespaces/status",
                    "pods/log",
                    "pods/status",
                    "replicationcontrollers/status",
                    "resourcequotas",
                    "resourcequotas/status",
                ],
                NONE,
                NONE,
            ),
            R(READ, &[""], &["namespaces"], NONE, NONE),
            R(READ, &["", "events.k8s.io"], &["events"], NONE, NONE),
            R(READ, &["discovery.k8s.io"], &["endpointslices"], NONE, NONE),
            R(
                READ,
                &["apps"],
                &[
                    "controllerrevisions",
                    "daemonsets",
                    "daemonsets/status",
                    "deployments",
                    "deployments/scale",
                    "deployments/status",
                    "replicasets",
                    "replicasets/scale",
                    "replicasets/status",
                    "statefulsets",
                    "statefulsets/scale",
                    "statefulsets/status",
                ],
                NONE,
                NONE,
            ),
            R(
                READ,
                &["autoscaling"],
                &[
                    "horizontalpodautoscalers",
                    "horizontalpodautoscalers/status",
                ],
                NONE,
                NONE,
            ),
            R(
                READ,
                &["batch"],
                &["cronjobs", "cronjobs/status", "jobs", "jobs/status"],
                NONE,
                NONE,
            ),
            R(
                READ,
                &["extensions"],
                &[
                    "daemonsets",
                    "daemonsets/status",
                    "deployments",
                    "deployments/scale",
                    "deployments/status",
                    "ingresses",
                    "ingresses/status",
                    "networkpolicies",
                    "replicasets",
                    "replicasets/scale",
                    "replicasets/status",
                    "replicationcontrollers/scale",
                ],
                NONE,
                NONE,
            ),
            R(
                READ,
                &["policy"],
                &["poddisruptionbudgets", "poddisruptionbudgets/status"],
                NONE,
                NONE,
            ),
            R(
                READ,
                &["networking.k8s.io"],
                &["ingresses", "ingresses/status", "networkpolicies"],
                NONE,
                NONE,
            ),
        ],
    },
    RoleSpec {
        name: "system:basic-user",
        labels: NONE,
        aggregates: NONE,
        rules: &[
            R(
                &["create"],
                &["authorization.k8s.io"],
                &["selfsubjectaccessreviews", "selfsubjectrulesreviews"],
                NONE,
                NONE,
            ),
            R(
                &["create"],
                &["authentication.k8s.io"],
                &["selfsubjectreviews"],
                NONE,
                NONE,
            ),
        ],
    },
    RoleSpec {
        name: "system:discovery",
        labels: NONE,
        aggregates: NONE,
        rules: &[R(
            &["get"],
            NONE,
            NONE,
            NONE,
            &[
                "/api",
                "/api/*",
                "/apis",
                "/apis/*",
                "/healthz",
                "/livez",
                "/openapi",
                "/openapi/*",
                "/readyz",
                "/version",
                "/version/",
            ],
        )],
    },
    RoleSpec {
        name: "system:public-info-viewer",
        labels: NONE,
        aggregates: NONE,
        rules: &[R(
            &["get"],
            NONE,
            NONE,
            NONE,
            &["/healthz", "/livez", "/readyz", "/version", "/version/"],
        )],
    },
    RoleSpec {
        name: "system:monitoring",
        labels: NONE,
        aggregates: NONE,
        rules: &[
            R(
                &["get"],
                NONE,
                NONE,
                NONE,
                &[
                    "/healthz",
                    "/healthz/*",
                    "/livez",
                    "/livez/*",
                    "/metrics",
                    "/metrics/slis",
                    "/readyz",
                    "/readyz/*",
                    "/statusz",
                ],
            ),
            R(&["get"], &[""], &["nodes/metrics"], NONE, NONE),
        ],
    },
    RoleSpec {
        name: "system:auth-delegator",
        labels: NONE,
        aggregates: NONE,
        rules: &[
            R(
                &["create"],
                &["authentication.k8s.io"],
                &["tokenreviews"],
                NONE,
                NONE,
            ),
            R(
                &["create"],
                &["authorization.k8s.io"],
                &["subjectaccessreviews"],
                NONE,
                NONE,
            ),
        ],
    },
    RoleSpec {
        name: "system:kube-scheduler",
        labels: NONE,
        aggregates: NONE,
        rules: &[
            EVENTS,
            R(
                &["create"],
                &["coordination.k8s.io"],
                &["leases"],
                NONE,
                NONE,
            ),
            R(
                &["get", "list", "update", "watch"],
                &["coordination.k8s.io"],
                &["leases"],
                &["kube-scheduler"],
                NONE,
            ),
            R(READ, &[""], &["nodes"], NONE, NONE),
            R(
                &["delete", "get", "list", "watch"],
                &[""],
                &["pods"],
                NONE,
                NONE,
            ),
            R(
                &["create"],
                &[""],
                &["bindings", "pods/binding"],
                NONE,
                NONE,
            ),
            R(&["patch", "update"], &[""], &["pods/status"], NONE, NONE),
            R(
                READ,
                &[""],
                &["replicationcontrollers", "services"],
                NONE,
                NONE,
            ),
            R(READ, &["apps", "extensions"], &["replicasets"], NONE, NONE),
            R(READ, &["apps"], &["statefulsets"], NONE, NONE),
            R(READ, &["policy"], &["poddisruptionbudgets"], NONE, NONE),
            R(
                READ,
                &[""],
                &["persistentvolumeclaims", "persistentvolumes"],
                NONE,
                NONE,
            ),
            R(
                &["create"],
                &["authentication.k8s.io"],
                &["tokenreviews"],
                NONE,
                NONE,
            ),
            R(
                &["create"],
                &["authorization.k8s.io"],
                &["subjectaccessreviews"],
                NONE,
                NONE,
            ),
            R(READ, &["storage.k8s.io"], &["csinodes"], NONE, NONE),
            R(
                READ,
                &["storage.k8s.io"],
                &["volumeattachments"],
                NONE,
                NONE,
            ),
            R(READ, &[""], &["namespaces"], NONE, NONE),
            R(READ, &["storage.k8s.io"], &["csidrivers"], NONE, NONE),
            R(
                READ,
                &["storage.k8s.io"],
                &["csistoragecapacities"],
                NONE,
                NONE,
            ),
        ],
    },
    RoleSpec {
        name: "system:kube-controller-manager",
        labels: NONE,
        aggregates: NONE,
        rules: &[
            EVENTS,
            R(
                &["create"],
                &["coordination.k8s.io"],
                &["leases"],
                NONE,
                NONE,
            ),
            R(
                &["get", "update"],
                &["coordination.k8s.io"],
                &["leases"],
                &["kube-controller-manager"],
                NONE,
            ),
            R(
                &["create"],
                &[""],
                &["secrets", "serviceaccounts"],
                NONE,
                NONE,
            ),
            R(&["delete"], &[""], &["secrets"], NONE, NONE),
            R(
                &["get"],
                &[""],
                &["configmaps", "namespaces", "secrets", "serviceaccounts"],
                NONE,
                NONE,
            ),
            R(
                &["update"],
                &[""],
                &["secrets", "serviceaccounts"],
                NONE,
                NONE,
            ),
            R(
                &["create"],
                &["authentication.k8s.io"],
                &["tokenreviews"],
                NONE,
                NONE,
            ),
            R(
                &["create"],
                &["authorization.k8s.io"],
                &["subjectaccessreviews"],
                NONE,
                NONE,
            ),
            R(&["list", "watch"], &["*"], &["*"], NONE, NONE),
            R(&["create"], &[""], &["serviceaccounts/token"], NONE, NONE),
        ],
    },
    // The TLS bootstrap roles (kube's bootstrappolicy: a bootstrap token may post and read
    // CSRs; nodeclient/selfnodeclient are what the csrapproving controller checks).
    RoleSpec {
        name: "system:node-bootstrapper",
        labels: NONE,
        aggregates: NONE,
        rules: &[R(
            &["create", "get", "list", "watch"],
            &["certificates.k8s.io"],
            &["certificatesigningrequests"],
            NONE,
            NONE,
        )],
    },
    RoleSpec {
        name: "system:certificates.k8s.io:certificatesigningrequests:nodeclient",
        labels: NONE,
        aggregates: NONE,
        rules: &[R(
            &["create"],
            &["certificates.k8s.io"],
            &["certificatesigningrequests/nodeclient"],
            NONE,
            NONE,
        )],
    },
    RoleSpec {
        name: "system:certificates.k8s.io:certificatesigningrequests:selfnodeclient",
        labels: NONE,
        aggregates: NONE,
        rules: &[R(
            &["create"],
            &["certificates.k8s.io"],
            &["certificatesigningrequests/selfnodeclient"],
            NONE,
            NONE,
        )],
    },
    // pea: the add-on client rule of csrapproving approves a node's CSR for its host add-ons'
    // users (system:kube-proxy, system:pea-flanneld) only when the node may create this
    // subresource; bound to system:nodes by `pea:node-autoapprove-addon-client`.
    RoleSpec {
        name: "pea:certificates.k8s.io:certificatesigningrequests:selfaddonclient",
        labels: NONE,
        aggregates: NONE,
        rules: &[R(
            &["create"],
            &["certificates.k8s.io"],
            &["certificatesigningrequests/selfaddonclient"],
            NONE,
            NONE,
        )],
    },
    RoleSpec {
        name: "system:certificates.k8s.io:kube-apiserver-client-kubelet-approver",
        labels: NONE,
        aggregates: NONE,
        rules: &[R(
            &["approve"],
            &["certificates.k8s.io"],
            &["signers"],
            &["kubernetes.io/kube-apiserver-client-kubelet"],
            NONE,
        )],
    },
    RoleSpec {
        name: "system:node",
        labels: NONE,
        aggregates: NONE,
        rules: &[
            R(
                &["create"],
                &["authentication.k8s.io"],
                &["tokenreviews"],
                NONE,
                NONE,
            ),
            R(
                &["create"],
                &["authorization.k8s.io"],
                &["localsubjectaccessreviews", "subjectaccessreviews"],
                NONE,
                NONE,
            ),
            R(READ, &[""], &["services"], NONE, NONE),
            R(
                &["create", "get", "list", "watch"],
                &[""],
                &["nodes"],
                NONE,
                NONE,
            ),
            R(&["patch", "update"], &[""], &["nodes/status"], NONE, NONE),
            R(&["patch", "update"], &[""], &["nodes"], NONE, NONE),
            EVENTS,
            R(READ, &[""], &["pods"], NONE, NONE),
            R(&["create", "delete"], &[""], &["pods"], NONE, NONE),
            R(&["patch", "update"], &[""], &["pods/status"], NONE, NONE),
            R(&["create"], &[""], &["pods/eviction"], NONE, NONE),
            R(READ, &[""], &["configmaps", "secrets"], NONE, NONE),
            R(
                &["get"],
                &[""],
                &["persistentvolumeclaims", "persistentvolumes"],
                NONE,
                NONE,
            ),
            R(&["get"], &[""], &["endpoints"], NONE, NONE),
            R(
                &["create", "get", "list", "watch"],
                &["certificates.k8s.io"],
                &["certificatesigningrequests"],
                NONE,
                NONE,
            ),
            R(
                &["create", "delete", "get", "patch", "update"],
                &["coordination.k8s.io"],
                &["leases"],
                NONE,
                NONE,
            ),
            R(
                &["get"],
                &["storage.k8s.io"],
                &["volumeattachments"],
                NONE,
                NONE,
            ),
            R(&["create"], &[""], &["serviceaccounts/token"], NONE, NONE),
            R(
                &["get", "patch", "update"],
                &[""],
                &["persistentvolumeclaims/status"],
                NONE,
                NONE,
            ),
            R(READ, &["storage.k8s.io"], &["csidrivers"], NONE, NONE),
            R(
                &["create", "delete", "get", "patch", "update"],
                &["storage.k8s.io"],
                &["csinodes"],
                NONE,
                NONE,
            ),
            R(READ, &["node.k8s.io"], &["runtimeclasses"], NONE, NONE),
            R(&["get"], &[""], &["serviceaccounts"], NONE, NONE),
        ],
    },
    RoleSpec {
        name: "system:node-proxier",
        labels: NONE,
        aggregates: NONE,
        rules: &[
            R(
                &["list", "watch"],
                &[""],
                &["endpoints", "services"],
                NONE,
                NONE,
            ),
            R(READ, &[""], &["nodes"], NONE, NONE),
            EVENTS,
            R(
                &["list", "watch"],
                &["networking.k8s.io"],
                &["servicecidrs"],
                NONE,
                NONE,
            ),
            R(
                &["list", "watch"],
                &["discovery.k8s.io"],
                &["endpointslices"],
                NONE,
                NONE,
            ),
        ],
    },
    // kube's role for scheduling with volumes: VolumeBinding reads classes and sets the
    // selected node on WaitForFirstConsumer claims.
    RoleSpec {
        name: "system:volume-scheduler",
        labels: NONE,
        aggregates: NONE,
        rules: &[
            R(
                &["get", "list", "patch", "update", "watch"],
                &[""],
                &["persistentvolumes"],
                NONE,
                NONE,
            ),
            R(READ, &["storage.k8s.io"], &["storageclasses"], NONE, NONE),
            R(
                &["get", "list", "patch", "update", "watch"],
                &[""],
                &["persistentvolumeclaims"],
                NONE,
                NONE,
            ),
        ],
    },
    RoleSpec {
        name: "system:kube-dns",
        labels: NONE,
        aggregates: NONE,
        rules: &[R(
            &["list", "watch"],
            &[""],
            &["endpoints", "services"],
            NONE,
            NONE,
        )],
    },
    // Service-account OIDC discovery (the issuer's configuration and keys).
    RoleSpec {
        name: "system:service-account-issuer-discovery",
        labels: NONE,
        aggregates: NONE,
        rules: &[R(
            &["get"],
            NONE,
            NONE,
            NONE,
            &[
                "/.well-known/openid-configuration",
                "/.well-known/openid-configuration/",
                "/openid/v1/jwks",
                "/openid/v1/jwks/",
            ],
        )],
    },
];

pub static CLUSTER_ROLE_BINDINGS: &[BindingSpec] = &[
    BindingSpec {
        name: "cluster-admin",
        subjects: &[("Group", "system:masters", "")],
    },
    BindingSpec {
        name: "system:discovery",
        subjects: &[("Group", "system:authenticated", "")],
    },
    BindingSpec {
        name: "system:basic-user",
        subjects: &[("Group", "system:authenticated", "")],
    },
    BindingSpec {
        name: "system:public-info-viewer",
        subjects: &[
            ("Group", "system:authenticated", ""),
            ("Group", "system:unauthenticated", ""),
        ],
    },
    BindingSpec {
        name: "system:monitoring",
        subjects: &[("Group", "system:monitoring", "")],
    },
    BindingSpec {
        name: "system:node-proxier",
        subjects: &[("User", "system:kube-proxy", "")],
    },
    BindingSpec {
        name: "system:kube-controller-manager",
        subjects: &[("User", "system:kube-controller-manager", "")],
    },
    BindingSpec {
        name: "system:kube-dns",
        subjects: &[("ServiceAccount", "kube-dns", "kube-system")],
    },
    BindingSpec {
        name: "system:kube-scheduler",
        subjects: &[("User", "system:kube-scheduler", "")],
    },
    BindingSpec {
        name: "system:volume-scheduler",
        subjects: &[("User", "system:kube-scheduler", "")],
    },
    BindingSpec {
        name: "system:service-account-issuer-discovery",
        subjects: &[("Group", "system:serviceaccounts", "")],
    },
    // kube keeps this binding without subjects: the node authorizer grants nodes their access.
    BindingSpec {
        name: "system:node",
        subjects: &[],
    },
];

impl R {
    pub fn rule(&self) -> Rule {
        let v = |s: &[&str]| s.iter().map(|x| x.to_string()).collect();
        Rule {
            verbs: v(self.0),
            api_groups: v(self.1),
            resources: v(self.2),
            resource_names: v(self.3),
            non_resource_urls: v(self.4),
        }
    }
}

pub(crate) fn bootstrap_metadata(name: &str, labels: &[&str]) -> Value {
    let mut l = Map::new();
    l.insert("kubernetes.io/bootstrapping".into(), json!("rbac-defaults"));
    for k in labels {
        l.insert((*k).into(), json!("true"));
    }
    json!({"name": name, "labels": l, "annotations": {AUTOUPDATE_ANNOTATION: "true"}})
}

impl RoleSpec {
    /// The ClusterRole object.
    pub fn object(&self) -> Value {
        let mut o = json!({
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": bootstrap_metadata(self.name, self.labels),
            "rules": self.rules.iter().map(R::rule).collect::<Vec<_>>(),
        });
        if !self.aggregates.is_empty() {
            o["aggregationRule"] = json!({"clusterRoleSelectors": self.aggregates.iter()
                .map(|k| json!({"matchLabels": {*k: "true"}})).collect::<Vec<_>>()});
        }
        o
    }
}

impl BindingSpec {
    /// The ClusterRoleBinding object.
    pub fn object(&self) -> Value {
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": bootstrap_metadata(self.name, &[]),
            "roleRef": {"apiGroup": GROUP, "kind": "ClusterRole", "name": self.name},
            "subjects": self.subjects.iter().map(|(kind, name, ns)| subject(kind, name, ns)).collect::<Vec<_>>(),
        })
    }
}

/// A binding subject as kube writes it (`apiGroup` for users and groups, `namespace` for
/// service accounts).
pub fn subject(kind: &str, name: &str, namespace: &str) -> Value {
    if kind == "ServiceAccount" {
        json!({"kind": kind, "name": name, "namespace": namespace})
    } else {
        json!({"apiGroup": GROUP, "kind": kind, "name": name})
    }
}

/// `expected`'s labels and annotations merged into `existing`'s (existing values win).
fn merge_meta(existing: &mut Value, expected: &Value) -> bool {
    let mut changed = false;
    for field in ["labels", "annotations"] {
        let Some(want) = expected["metadata"][field].as_object() else {
            continue;
        };
        if !existing["metadata"][field].is_object() {
            existing["metadata"][field] = json!({});
        }
        for (k, v) in want {
            if existing["metadata"][field].get(k).is_none() {
                existing["metadata"][field][k] = v.clone();
                changed = true;
            }
        }
    }
    changed
}

fn protected(obj: &Value) -> bool {
    obj.pointer("/metadata/annotations")
        .and_then(|a| a.get(AUTOUPDATE_ANNOTATION))
        .and_then(Value::as_str)
        == Some("false")
}

/// kube's `computeReconciledRole` (union mode): what `existing` becomes, or `None` to keep it.
pub fn reconcile_role(existing: &Value, expected: &Value) -> Option<Value> {
    if protected(existing) {
        return None;
    }
    let mut out = existing.clone();
    let mut changed = merge_meta(&mut out, expected);
    let have = Rule::parse_list(existing.get("rules"));
    let want = Rule::parse_list(expected.get("rules"));
    let (_, missing) = covers(&have, &want);
    if !missing.is_empty() {
        let mut rules = have;
        rules.extend(missing);
        out["rules"] = json!(rules);
        changed = true;
    }
    match (
        expected.pointer("/aggregationRule/clusterRoleSelectors"),
        existing.pointer("/aggregationRule/clusterRoleSelectors"),
    ) {
        (None, Some(_)) => {
            if let Some(m) = out.as_object_mut() {
                m.remove("aggregationRule");
            }
            changed = true;
        }
        (Some(Value::Array(want)), have) => {
            let have: Vec<Value> = have.and_then(Value::as_array).cloned().unwrap_or_default();
            let missing: Vec<&Value> = want.iter().filter(|s| !have.contains(s)).collect();
            if !missing.is_empty() {
                let mut all = have;
                all.extend(missing.into_iter().cloned());
                out["aggregationRule"] = json!({"clusterRoleSelectors": all});
                changed = true;
            }
        }
        _ => {}
    }
    changed.then_some(out)
}

/// What to do with an existing bootstrap binding.
#[derive(Debug, PartialEq)]
pub enum BindingChange {
    Keep,
    Update(Value),
    /// The roleRef differs: delete and create `expected`.
    Recreate,
}

/// kube's `computeReconciledRoleBinding` (union mode).
pub fn reconcile_binding(existing: &Value, expected: &Value) -> BindingChange {
    if protected(existing) {
        return BindingChange::Keep;
    }
    let role_ref = |o: &Value| {
        (
            o.pointer("/roleRef/kind").cloned(),
            o.pointer("/roleRef/name").cloned(),
        )
    };
    if role_ref(existing) != role_ref(expected) {
        return BindingChange::Recreate;
    }
    let mut out = existing.clone();
    let mut changed = merge_meta(&mut out, expected);
    let key = |s: &Value| {
        (
            s.get("kind").cloned(),
            s.get("name").cloned(),
            s.get("namespace").cloned().unwrap_or(json!("")),
        )
    };
    let have: Vec<Value> = existing
        .get("subjects")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let missing: Vec<Value> = expected
        .get("subjects")
        .and_then(Value::as_array)
        .map(|w| {
            w.iter()
                .filter(|s| !have.iter().any(|h| key(h) == key(s)))
                .cloned()
                .collect()
        })
        .unwrap_or_default();
    if !missing.is_empty() {
        let mut all = have;
        all.extend(missing);
        out["subjects"] = json!(all);
        changed = true;
    }
    if changed {
        BindingChange::Update(out)
    } else {
        BindingChange::Keep
    }
}

fn stamp(api: &Api, obj: &mut Value) {
    obj["metadata"]["uid"] = json!(objects::new_uid());
    obj["metadata"]["creationTimestamp"] = json!(objects::rfc3339((api.clock)()));
}

/// Creates or reconciles one object at `key`; retries lost races a few times.
async fn ensure(api: &Api, plural: &str, expected: Value, binding: bool) -> Result<(), ApiError> {
    let name = objects::name_of(&expected).to_string();
    let key = match expected
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
    {
        Some(ns) => format!("/registry/{GROUP}/{plural}/{ns}/{name}"),
        None => format!("/registry/{GROUP}/{plural}/{name}"),
    };
    let err = |e: StoreError| ApiError::from_store(e, GROUP, plural, &name);
    for _ in 0..5 {
        let (current, _) = api.store.get(&key).await.map_err(err)?;
        let result = match current {
            None => {
                let mut obj = expected.clone();
                stamp(api, &mut obj);
                api.store
                    .create(&key, objects::encode(&obj))
                    .await
                    .map(|_| ())
            }
            Some(kv) => {
                let existing = objects::decode(&kv)?;
                let change = if binding {
                    reconcile_binding(&existing, &expected)
                } else {
                    match reconcile_role(&existing, &expected) {
                        Some(v) => BindingChange::Update(v),
                        None => BindingChange::Keep,
                    }
                };
                match change {
                    BindingChange::Keep => Ok(()),
                    BindingChange::Update(v) => {
                        tracing::info!(%key, "reconciled bootstrap RBAC object");
                        api.store
                            .update(&key, objects::encode(&v), kv.mod_revision)
                            .await
                            .map(|_| ())
                    }
                    BindingChange::Recreate => {
                        tracing::info!(%key, "recreating bootstrap binding whose roleRef changed");
                        match api.store.delete(&key, Some(kv.mod_revision)).await {
                            Ok(_) => continue,
                            Err(e) => Err(e),
                        }
                    }
                }
            }
        };
        match result {
            Ok(()) => return Ok(()),
            Err(StoreError::AlreadyExists { .. } | StoreError::Conflict { .. }) => continue,
            Err(e) => return Err(err(e)),
        }
    }
    Err(ApiError::Conflict {
        group: GROUP.into(),
        resource: plural.into(),
        name,
        reason: "the object kept changing during bootstrap reconciliation".into(),
    })
}

/// Creates and reconciles every bootstrap ClusterRole and ClusterRoleBinding.
pub async fn reconcile(api: &Api) -> Result<(), ApiError> {
    for role in CLUSTER_ROLES {
        ensure(api, "clusterroles", role.object(), false).await?;
    }
    for binding in CLUSTER_ROLE_BINDINGS {
        ensure(api, "clusterrolebindings", binding.object(), true).await?;
    }
    // The controllers' own roles (kube-controller-manager --use-service-account-credentials).
    use crate::rbac::controller_policy::{cluster_binding, CONTROLLER_ROLES, NAMESPACED_ROLES};
    for role in CONTROLLER_ROLES {
        ensure(api, "clusterroles", role.object(), false).await?;
        ensure(api, "clusterrolebindings", cluster_binding(role), true).await?;
    }
    for role in NAMESPACED_ROLES {
        ensure(api, "roles", role.object(), false).await?;
        ensure(api, "rolebindings", role.binding(), true).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_binding_names_a_bootstrap_role() {
        for b in CLUSTER_ROLE_BINDINGS {
            assert!(
                CLUSTER_ROLES.iter().any(|r| r.name == b.name),
                "{} binds a role that is not bootstrapped",
                b.name
            );
        }
        let view = CLUSTER_ROLES
            .iter()
            .find(|r| r.name == "view")
            .unwrap()
            .object();
        assert_eq!(
            view["aggregationRule"],
            json!({"clusterRoleSelectors": [{"matchLabels": {TO_VIEW: "true"}}]})
        );
        assert_eq!(view["metadata"]["labels"][TO_EDIT], "true");
        assert_eq!(
            view["metadata"]["annotations"][AUTOUPDATE_ANNOTATION],
            "true"
        );
        // Rule verbs are written sorted, as kube's RuleOrDie leaves them.
        for r in CLUSTER_ROLES {
            for rule in r.rules {
                let mut sorted = rule.0.to_vec();
                sorted.sort();
                assert_eq!(sorted, rule.0, "{}", r.name);
            }
        }
    }

    #[test]
    fn reconciliation_adds_what_is_missing_and_keeps_the_rest() {
        let spec = CLUSTER_ROLES
            .iter()
            .find(|r| r.name == "system:basic-user")
            .unwrap();
        let expected = spec.object();
        // An administrator's extra rule stays; the missing bootstrap rule comes back.
        let mut existing = expected.clone();
        existing["rules"] = json!([
            {"apiGroups": ["authorization.k8s.io"], "resources": ["selfsubjectaccessreviews", "selfsubjectrulesreviews"], "verbs": ["create"]},
            {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]},
        ]);
        existing["metadata"]["labels"] = json!({"team": "x"});
        let out = reconcile_role(&existing, &expected).unwrap();
        let rules = Rule::parse_list(out.get("rules"));
        assert_eq!(rules.len(), 3);
        assert_eq!(
            rules[2],
            Rule::resource(
                &["create"],
                &["authentication.k8s.io"],
                &["selfsubjectreviews"]
            )
        );
        assert_eq!(out["metadata"]["labels"]["team"], "x");
        assert_eq!(
            out["metadata"]["labels"]["kubernetes.io/bootstrapping"],
            "rbac-defaults"
        );
        // Reconciled objects are stable, and autoupdate=false protects edits.
        assert_eq!(reconcile_role(&out, &expected), None);
        let mut keep = existing.clone();
        keep["metadata"]["annotations"] = json!({AUTOUPDATE_ANNOTATION: "false"});
        assert_eq!(reconcile_role(&keep, &expected), None);
    }

    #[test]
    fn bindings_gain_subjects_and_are_recreated_for_another_role() {
        let spec = CLUSTER_ROLE_BINDINGS
            .iter()
            .find(|b| b.name == "system:public-info-viewer")
            .unwrap();
        let expected = spec.object();
        let mut existing = expected.clone();
        existing["subjects"] = json!([
            subject("Group", "system:authenticated", ""),
            subject("User", "extra", "")
        ]);
        let BindingChange::Update(out) = reconcile_binding(&existing, &expected) else {
            panic!("expected an update");
        };
        assert_eq!(out["subjects"].as_array().unwrap().len(), 3);
        assert_eq!(reconcile_binding(&out, &expected), BindingChange::Keep);
        existing["roleRef"]["name"] = json!("view");
        assert_eq!(
            reconcile_binding(&existing, &expected),
            BindingChange::Recreate
        );
    }
}
