//! The resource table: every kind the server serves, with what discovery, routing, storage and
//! validation need to know about it. No global registry: [`Resources::builtin`] builds the table
//! once at startup and the server owns it.

use serde::{de::DeserializeOwned, Serialize};
use serde_json::Value;

/// Validates a JSON object against its k8s-openapi type; returns the unknown fields it carries.
pub type Validator = fn(&Value) -> Result<Vec<String>, String>;

/// One served resource (e.g. `pods` in core/v1).
#[derive(Debug, Clone)]
pub struct ResourceDef {
    /// API group; "" for core.
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    pub plural: &'static str,
    pub singular: &'static str,
    pub namespaced: bool,
    pub short_names: &'static [&'static str],
    pub categories: &'static [&'static str],
    /// Subresources served: "status", "scale", "binding".
    pub subresources: &'static [&'static str],
    pub validate: Validator,
    /// Adds the kind's OpenAPI schema (and everything it references) to a generator.
    pub schema: SchemaFn,
    /// A custom resource's schema, versions and columns (from its CustomResourceDefinition);
    /// `None` for built-ins.
    pub custom: Option<std::sync::Arc<crate::crd::CustomResource>>,
}

/// Registers a kind's schema with an OpenAPI v3 schema generator and returns its reference.
pub type SchemaFn =
    fn(&mut k8s_openapi::schemars::SchemaGenerator) -> k8s_openapi::schemars::Schema;

impl ResourceDef {
    /// `v1` or `apps/v1`.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    pub fn list_kind(&self) -> String {
        format!("{}List", self.kind)
    }

    /// `pods` or `deployments.apps`: how errors name the resource.
    pub fn qualified(&self) -> String {
        if self.group.is_empty() {
            self.plural.to_string()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    pub fn has_subresource(&self, sub: &str) -> bool {
        self.subresources.contains(&sub)
    }

    /// The store key prefix of all objects (`namespace` None) or of one namespace.
    pub fn prefix(&self, namespace: Option<&str>) -> String {
        let group = if self.group.is_empty() {
            "core"
        } else {
            self.group
        };
        match namespace.filter(|_| self.namespaced) {
            Some(ns) => format!("/registry/{group}/{}/{ns}/", self.plural),
            None => format!("/registry/{group}/{}/", self.plural),
        }
    }

    /// The store key of one object.
    pub fn key(&self, namespace: Option<&str>, name: &str) -> String {
        format!("{}{name}", self.prefix(namespace))
    }
}

/// Checks `value` decodes as `T` and lists the fields `T` does not know.
fn typed<T: DeserializeOwned + Serialize>(value: &Value) -> Result<Vec<String>, String> {
    // Deserialising from `&Value` avoids a deep copy of the object per request.
    let parsed = T::deserialize(value).map_err(|e| e.to_string())?;
    let back = serde_json::to_value(&parsed).map_err(|e| e.to_string())?;
    let mut unknown = Vec::new();
    unknown_fields(value, &back, "", &mut unknown);
    Ok(unknown)
}

/// Fields present (non-null) in `input` but dropped by the typed round trip.
fn unknown_fields(input: &Value, known: &Value, path: &str, out: &mut Vec<String>) {
    match (input, known) {
        (Value::Object(i), Value::Object(k)) => {
            for (name, v) in i {
                let p = if path.is_empty() {
                    name.clone()
                } else {
                    format!("{path}.{name}")
                };
                match k.get(name) {
                    Some(kv) => unknown_fields(v, kv, &p, out),
                    None if v.is_null() => {}
                    // Empty objects and lists may be omitted by the round trip.
                    None if v.as_object().is_some_and(|o| o.is_empty())
                        || v.as_array().is_some_and(|a| a.is_empty()) => {}
                    None => out.push(p),
                }
            }
        }
        (Value::Array(i), Value::Array(k)) => {
            for (n, (iv, kv)) in i.iter().zip(k).enumerate() {
                unknown_fields(iv, kv, &format!("{path}[{n}]"), out);
            }
        }
        _ => {}
    }
}

/// The served resources: the built-ins, fixed at startup, and the custom resources of the
/// established CustomResourceDefinitions, which change at run time (read without a write lock).
#[derive(Debug, Clone)]
pub struct Resources {
    defs: Vec<ResourceDef>,
    pub custom: crate::crd::Registry,
}

macro_rules! def {
    ($group:expr, $version:expr, $kind:expr, $plural:expr, $singular:expr, $namespaced:expr,
     [$($short:expr),*], [$($cat:expr),*], [$($sub:expr),*], $ty:ty) => {
        ResourceDef {
            group: $group,
            version: $version,
            kind: $kind,
            plural: $plural,
            singular: $singular,
            namespaced: $namespaced,
            short_names: &[$($short),*],
            categories: &[$($cat),*],
            subresources: &[$($sub),*],
            validate: typed::<$ty>,
            schema: |g| g.subschema_for::<$ty>(),
            custom: None,
        }
    };
}

impl Resources {
    /// The built-in Kubernetes 1.32 resources pea serves.
    pub fn builtin() -> Self {
        use k8s_openapi::api::{
            apps, autoscaling, batch, coordination, core, discovery, events, networking, policy,
            storage,
        };
        let defs = vec![
            def!(
                "",
                "v1",
                "Namespace",
                "namespaces",
                "namespace",
                false,
                ["ns"],
                [],
                ["status"],
                core::v1::Namespace
            ),
            def!(
                "",
                "v1",
                "Pod",
                "pods",
                "pod",
                true,
                ["po"],
                ["all"],
                [
                    "status",
                    "binding",
                    "eviction",
                    "log",
                    "exec",
                    "attach",
                    "portforward"
                ],
                core::v1::Pod
            ),
            def!(
                "",
                "v1",
                "Node",
                "nodes",
                "node",
                false,
                ["no"],
                [],
                ["status", "proxy"],
                core::v1::Node
            ),
            def!(
                "",
                "v1",
                "Service",
                "services",
                "service",
                true,
                ["svc"],
                ["all"],
                ["status"],
                core::v1::Service
            ),
            def!(
                "",
                "v1",
                "ReplicationController",
                "replicationcontrollers",
                "replicationcontroller",
                true,
                ["rc"],
                ["all"],
                ["status", "scale"],
                core::v1::ReplicationController
            ),
            def!(
                "",
                "v1",
                "Endpoints",
                "endpoints",
                "endpoints",
                true,
                ["ep"],
                [],
                [],
                core::v1::Endpoints
            ),
            def!(
                "",
                "v1",
                "ConfigMap",
                "configmaps",
                "configmap",
                true,
                ["cm"],
                [],
                [],
                core::v1::ConfigMap
            ),
            def!(
                "",
                "v1",
                "Secret",
                "secrets",
                "secret",
                true,
                [],
                [],
                [],
                core::v1::Secret
            ),
            def!(
                "",
                "v1",
                "ServiceAccount",
                "serviceaccounts",
                "serviceaccount",
                true,
                ["sa"],
                [],
                ["token"],
                core::v1::ServiceAccount
            ),
            def!(
                "",
                "v1",
                "Event",
                "events",
                "event",
                true,
                ["ev"],
                [],
                [],
                core::v1::Event
            ),
            def!(
                "",
                "v1",
                "PersistentVolume",
                "persistentvolumes",
                "persistentvolume",
                false,
                ["pv"],
                [],
                ["status"],
                core::v1::PersistentVolume
            ),
            def!(
                "",
                "v1",
                "PersistentVolumeClaim",
                "persistentvolumeclaims",
                "persistentvolumeclaim",
                true,
                ["pvc"],
                [],
                ["status"],
                core::v1::PersistentVolumeClaim
            ),
            def!(
                "",
                "v1",
                "ResourceQuota",
                "resourcequotas",
                "resourcequota",
                true,
                ["quota"],
                [],
                ["status"],
                core::v1::ResourceQuota
            ),
            def!(
                "",
                "v1",
                "LimitRange",
                "limitranges",
                "limitrange",
                true,
                ["limits"],
                [],
                [],
                core::v1::LimitRange
            ),
            def!(
                "scheduling.k8s.io",
                "v1",
                "PriorityClass",
                "priorityclasses",
                "priorityclass",
                false,
                ["pc"],
                [],
                [],
                k8s_openapi::api::scheduling::v1::PriorityClass
            ),
            def!(
                "certificates.k8s.io",
                "v1",
                "CertificateSigningRequest",
                "certificatesigningrequests",
                "certificatesigningrequest",
                false,
                ["csr"],
                [],
                ["status", "approval"],
                k8s_openapi::api::certificates::v1::CertificateSigningRequest
            ),
            def!(
                "apps",
                "v1",
                "Deployment",
                "deployments",
                "deployment",
                true,
                ["deploy"],
                ["all"],
                ["status", "scale"],
                apps::v1::Deployment
            ),
            def!(
                "apps",
                "v1",
                "ReplicaSet",
                "replicasets",
                "replicaset",
                true,
                ["rs"],
                ["all"],
                ["status", "scale"],
                apps::v1::ReplicaSet
            ),
            def!(
                "apps",
                "v1",
                "DaemonSet",
                "daemonsets",
                "daemonset",
                true,
                ["ds"],
                ["all"],
                ["status"],
                apps::v1::DaemonSet
            ),
            def!(
                "apps",
                "v1",
                "StatefulSet",
                "statefulsets",
                "statefulset",
                true,
                ["sts"],
                ["all"],
                ["status", "scale"],
                apps::v1::StatefulSet
            ),
            def!(
                "apps",
                "v1",
                "ControllerRevision",
                "controllerrevisions",
                "controllerrevision",
                true,
                [],
                [],
                [],
                apps::v1::ControllerRevision
            ),
            def!(
                "batch",
                "v1",
                "Job",
                "jobs",
                "job",
                true,
                [],
                ["all"],
                ["status"],
                batch::v1::Job
            ),
            def!(
                "batch",
                "v1",
                "CronJob",
                "cronjobs",
                "cronjob",
                true,
                ["cj"],
                ["all"],
                ["status"],
                batch::v1::CronJob
            ),
            def!(
                "autoscaling",
                "v2",
                "HorizontalPodAutoscaler",
                "horizontalpodautoscalers",
                "horizontalpodautoscaler",
                true,
                ["hpa"],
                ["all"],
                ["status"],
                autoscaling::v2::HorizontalPodAutoscaler
            ),
            // Served by conversion from the stored v2 object (verbs/converted.rs); after v2,
            // which stays the preferred version.
            def!(
                "autoscaling",
                "v1",
                "HorizontalPodAutoscaler",
                "horizontalpodautoscalers",
                "horizontalpodautoscaler",
                true,
                ["hpa"],
                ["all"],
                ["status"],
                autoscaling::v1::HorizontalPodAutoscaler
            ),
            // Served by conversion from the stored core/v1 Event (verbs/converted.rs).
            def!(
                "events.k8s.io",
                "v1",
                "Event",
                "events",
                "event",
                true,
                ["ev"],
                [],
                [],
                events::v1::Event
            ),
            def!(
                "networking.k8s.io",
                "v1",
                "Ingress",
                "ingresses",
                "ingress",
                true,
                ["ing"],
                [],
                ["status"],
                networking::v1::Ingress
            ),
            def!(
                "coordination.k8s.io",
                "v1",
                "Lease",
                "leases",
                "lease",
                true,
                [],
                [],
                [],
                coordination::v1::Lease
            ),
            def!(
                "policy",
                "v1",
                "PodDisruptionBudget",
                "poddisruptionbudgets",
                "poddisruptionbudget",
                true,
                ["pdb"],
                [],
                ["status"],
                policy::v1::PodDisruptionBudget
            ),
            def!(
                "networking.k8s.io",
                "v1",
                "IngressClass",
                "ingressclasses",
                "ingressclass",
                false,
                [],
                [],
                [],
                networking::v1::IngressClass
            ),
            def!(
                "discovery.k8s.io",
                "v1",
                "EndpointSlice",
                "endpointslices",
                "endpointslice",
                true,
                [],
                [],
                [],
                discovery::v1::EndpointSlice
            ),
            def!(
                "storage.k8s.io",
                "v1",
                "StorageClass",
                "storageclasses",
                "storageclass",
                false,
                ["sc"],
                [],
                [],
                storage::v1::StorageClass
            ),
            def!(
                "admissionregistration.k8s.io",
                "v1",
                "MutatingWebhookConfiguration",
                "mutatingwebhookconfigurations",
                "mutatingwebhookconfiguration",
                false,
                [],
                ["api-extensions"],
                [],
                k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration
            ),
            def!(
                "admissionregistration.k8s.io",
                "v1",
                "ValidatingWebhookConfiguration",
                "validatingwebhookconfigurations",
                "validatingwebhookconfiguration",
                false,
                [],
                ["api-extensions"],
                [],
                k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration
            ),
            def!(
                "admissionregistration.k8s.io",
                "v1",
                "ValidatingAdmissionPolicy",
                "validatingadmissionpolicies",
                "validatingadmissionpolicy",
                false,
                [],
                ["api-extensions"],
                ["status"],
                k8s_openapi::api::admissionregistration::v1::ValidatingAdmissionPolicy
            ),
            def!(
                "admissionregistration.k8s.io",
                "v1",
                "ValidatingAdmissionPolicyBinding",
                "validatingadmissionpolicybindings",
                "validatingadmissionpolicybinding",
                false,
                [],
                ["api-extensions"],
                [],
                k8s_openapi::api::admissionregistration::v1::ValidatingAdmissionPolicyBinding
            ),
            def!(
                "rbac.authorization.k8s.io",
                "v1",
                "Role",
                "roles",
                "role",
                true,
                [],
                [],
                [],
                k8s_openapi::api::rbac::v1::Role
            ),
            def!(
                "rbac.authorization.k8s.io",
                "v1",
                "ClusterRole",
                "clusterroles",
                "clusterrole",
                false,
                [],
                [],
                [],
                k8s_openapi::api::rbac::v1::ClusterRole
            ),
            def!(
                "rbac.authorization.k8s.io",
                "v1",
                "RoleBinding",
                "rolebindings",
                "rolebinding",
                true,
                [],
                [],
                [],
                k8s_openapi::api::rbac::v1::RoleBinding
            ),
            def!(
                "rbac.authorization.k8s.io",
                "v1",
                "ClusterRoleBinding",
                "clusterrolebindings",
                "clusterrolebinding",
                false,
                [],
                [],
                [],
                k8s_openapi::api::rbac::v1::ClusterRoleBinding
            ),
            def!(
                "authorization.k8s.io",
                "v1",
                "SelfSubjectAccessReview",
                "selfsubjectaccessreviews",
                "selfsubjectaccessreview",
                false,
                [],
                [],
                [],
                k8s_openapi::api::authorization::v1::SelfSubjectAccessReview
            ),
            def!(
                "authorization.k8s.io",
                "v1",
                "SelfSubjectRulesReview",
                "selfsubjectrulesreviews",
                "selfsubjectrulesreview",
                false,
                [],
                [],
                [],
                k8s_openapi::api::authorization::v1::SelfSubjectRulesReview
            ),
            def!(
                "authorization.k8s.io",
                "v1",
                "SubjectAccessReview",
                "subjectaccessreviews",
                "subjectaccessreview",
                false,
                [],
                [],
                [],
                k8s_openapi::api::authorization::v1::SubjectAccessReview
            ),
            def!(
                "authorization.k8s.io",
                "v1",
                "LocalSubjectAccessReview",
                "localsubjectaccessreviews",
                "localsubjectaccessreview",
                true,
                [],
                [],
                [],
                k8s_openapi::api::authorization::v1::LocalSubjectAccessReview
            ),
            def!(
                "authentication.k8s.io",
                "v1",
                "SelfSubjectReview",
                "selfsubjectreviews",
                "selfsubjectreview",
                false,
                [],
                [],
                [],
                k8s_openapi::api::authentication::v1::SelfSubjectReview
            ),
            def!(
                "apiextensions.k8s.io",
                "v1",
                "CustomResourceDefinition",
                "customresourcedefinitions",
                "customresourcedefinition",
                false,
                ["crd", "crds"],
                ["api-extensions"],
                ["status"],
                k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition
            ),
        ];
        Self {
            defs,
            custom: Default::default(),
        }
    }

    pub fn all(&self) -> &[ResourceDef] {
        &self.defs
    }

    /// The resource `plural` in `group`/`version`.
    pub fn find(&self, group: &str, version: &str, plural: &str) -> Option<&ResourceDef> {
        self.defs
            .iter()
            .find(|d| d.group == group && d.version == version && d.plural == plural)
    }

    /// The resource `plural` in `group`/`version`, built-in or custom.
    pub fn lookup(&self, group: &str, version: &str, plural: &str) -> Option<ResourceDef> {
        match self.find(group, version, plural) {
            Some(d) => Some(d.clone()),
            None => self.custom.find(group, version, plural),
        }
    }

    /// Every served resource, the custom ones after the built-ins.
    pub fn all_with_custom(&self) -> Vec<ResourceDef> {
        let mut out = self.defs.clone();
        out.extend(self.custom.snapshot().stored.iter().cloned());
        out
    }

    /// Groups in discovery order (custom ones last), each version once, preferred first.
    pub fn groups(&self) -> Vec<(&'static str, &'static str)> {
        let mut out: Vec<(&str, &str)> = Vec::new();
        let custom = self.custom.snapshot();
        for d in self.defs.iter().chain(custom.served.iter()) {
            if !out.contains(&(d.group, d.version)) {
                out.push((d.group, d.version));
            }
        }
        out
    }

    pub fn in_group_version(&self, group: &str, version: &str) -> Vec<ResourceDef> {
        let custom = self.custom.snapshot();
        self.defs
            .iter()
            .chain(custom.served.iter())
            .filter(|d| d.group == group && d.version == version)
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn typed_validation_reports_unknown_and_wrong_fields() {
        let r = Resources::builtin();
        let pods = r.find("", "v1", "pods").unwrap();
        let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "a"},
            "spec": {"containers": [{"name": "c", "image": "busybox", "bogus": 1}]}, "extra": {"x": 1}});
        let unknown = (pods.validate)(&pod).unwrap();
        assert_eq!(unknown, ["extra", "spec.containers[0].bogus"]);
        let bad = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "a"},
            "spec": {"containers": "not-a-list"}});
        assert!((pods.validate)(&bad).unwrap_err().contains("invalid type"));
    }

    #[test]
    fn keys_separate_namespaces_and_groups() {
        let r = Resources::builtin();
        assert_eq!(
            r.find("", "v1", "pods")
                .unwrap()
                .key(Some("default"), "web"),
            "/registry/core/pods/default/web"
        );
        assert_eq!(
            r.find("apps", "v1", "deployments").unwrap().prefix(None),
            "/registry/apps/deployments/"
        );
        assert_eq!(
            r.find("", "v1", "nodes")
                .unwrap()
                .key(Some("ignored"), "n1"),
            "/registry/core/nodes/n1"
        );
    }
}
