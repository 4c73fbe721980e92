//! The federation's own kinds (Karmada's groups and versions) as dynamic API resources.

use kube::core::{ApiResource, GroupVersionKind};

fn resource(group: &str, kind: &str, plural: &str) -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, "v1alpha1", kind), plural)
}

pub fn cluster() -> ApiResource {
    resource("cluster.karmada.io", "Cluster", "clusters")
}

pub fn propagation_policy() -> ApiResource {
    resource(
        "policy.karmada.io",
        "PropagationPolicy",
        "propagationpolicies",
    )
}

pub fn cluster_propagation_policy() -> ApiResource {
    resource(
        "policy.karmada.io",
        "ClusterPropagationPolicy",
        "clusterpropagationpolicies",
    )
}

pub fn override_policy() -> ApiResource {
    resource("policy.karmada.io", "OverridePolicy", "overridepolicies")
}

pub fn resource_binding() -> ApiResource {
    resource("work.karmada.io", "ResourceBinding", "resourcebindings")
}

pub fn cluster_override_policy() -> ApiResource {
    resource(
        "policy.karmada.io",
        "ClusterOverridePolicy",
        "clusteroverridepolicies",
    )
}

pub fn cluster_resource_binding() -> ApiResource {
    resource(
        "work.karmada.io",
        "ClusterResourceBinding",
        "clusterresourcebindings",
    )
}

pub fn work() -> ApiResource {
    resource("work.karmada.io", "Work", "works")
}
