//! core/v1 kinds: Namespace, ConfigMap, Secret, ServiceAccount, Service, Pod.

use super::meta::{CONDITION, OBJECT_META};
use super::pod::{LOCAL_OBJECT_REF, POD_SPEC};
use super::schema::{Schema, F};

static NAMESPACE_SPEC: Schema = Schema {
    name: "NamespaceSpec",
    fields: &[(1, "finalizers", F::RepStr)],
};
static NAMESPACE_CONDITION: Schema = Schema {
    name: "NamespaceCondition",
    fields: &[
        (1, "type", F::Str),
        (2, "status", F::Str),
        (4, "lastTransitionTime", F::Time),
        (5, "reason", F::Str),
        (6, "message", F::Str),
    ],
};
static NAMESPACE_STATUS: Schema = Schema {
    name: "NamespaceStatus",
    fields: &[
        (1, "phase", F::Str),
        (2, "conditions", F::RepMsg(&NAMESPACE_CONDITION)),
    ],
};
pub(super) static NAMESPACE: Schema = Schema {
    name: "Namespace",
    fields: &[
        (1, "metadata", F::Msg(&OBJECT_META)),
        (2, "spec", F::Msg(&NAMESPACE_SPEC)),
        (3, "status", F::Msg(&NAMESPACE_STATUS)),
    ],
};
pub(super) static CONFIG_MAP: Schema = Schema {
    name: "ConfigMap",
    fields: &[
        (1, "metadata", F::Msg(&OBJECT_META)),
        (2, "data", F::MapStr),
        (3, "binaryData", F::MapBytes),
        (4, "immutable", F::BoolP),
    ],
};
pub(super) static SECRET: Schema = Schema {
    name: "Secret",
    fields: &[
        (1, "metadata", F::Msg(&OBJECT_META)),
        (2, "data", F::MapBytes),
        (3, "type", F::Str),
        (4, "stringData", F::MapStr),
        (5, "immutable", F::BoolP),
    ],
};
pub(super) static OBJECT_REF: Schema = Schema {
    name: "ObjectReference",
    fields: &[
        (1, "kind", F::Str),
        (2, "namespace", F::Str),
        (3, "name", F::Str),
        (4, "uid", F::Str),
        (5, "apiVersion", F::Str),
        (6, "resourceVersion", F::Str),
        (7, "fieldPath", F::Str),
    ],
};
pub(super) static SERVICE_ACCOUNT: Schema = Schema {
    name: "ServiceAccount",
    fields: &[
        (1, "metadata", F::Msg(&OBJECT_META)),
        (2, "secrets", F::RepMsg(&OBJECT_REF)),
        (3, "imagePullSecrets", F::RepMsg(&LOCAL_OBJECT_REF)),
        (4, "automountServiceAccountToken", F::BoolP),
    ],
};

// --- Service ---
static SERVICE_PORT: Schema = Schema {
    name: "ServicePort",
    fields: &[
        (1, "name", F::Str),
        (2, "protocol", F::Str),
        (3, "port", F::IntP),
        (4, "targetPort", F::IntOrStr),
        (5, "nodePort", F::Int),
        (6, "appProtocol", F::StrP),
    ],
};
static CLIENT_IP_CONFIG: Schema = Schema {
    name: "ClientIPConfig",
    fields: &[(1, "timeoutSeconds", F::IntP)],
};
static SESSION_AFFINITY_CONFIG: Schema = Schema {
    name: "SessionAffinityConfig",
    fields: &[(1, "clientIP", F::Msg(&CLIENT_IP_CONFIG))],
};
static SERVICE_SPEC: Schema = Schema {
    name: "ServiceSpec",
    fields: &[
        (1, "ports", F::RepMsg(&SERVICE_PORT)),
        (2, "selector", F::MapStr),
        (3, "clusterIP", F::Str),
        (4, "type", F::Str),
        (5, "externalIPs", F::RepStr),
        (7, "sessionAffinity", F::Str),
        (8, "loadBalancerIP", F::Str),
        (9, "loadBalancerSourceRanges", F::RepStr),
        (10, "externalName", F::Str),
        (11, "externalTrafficPolicy", F::Str),
        (12, "healthCheckNodePort", F::Int),
        (13, "publishNotReadyAddresses", F::Bool),
        (
            14,
            "sessionAffinityConfig",
            F::Msg(&SESSION_AFFINITY_CONFIG),
        ),
        (17, "ipFamilyPolicy", F::StrP),
        (18, "clusterIPs", F::RepStr),
        (19, "ipFamilies", F::RepStr),
        (20, "allocateLoadBalancerNodePorts", F::BoolP),
        (21, "loadBalancerClass", F::StrP),
        (22, "internalTrafficPolicy", F::StrP),
        (23, "trafficDistribution", F::StrP),
    ],
};
static PORT_STATUS: Schema = Schema {
    name: "PortStatus",
    fields: &[
        (1, "port", F::IntP),
        (2, "protocol", F::Str),
        (3, "error", F::StrP),
    ],
};
static LOAD_BALANCER_INGRESS: Schema = Schema {
    name: "LoadBalancerIngress",
    fields: &[
        (1, "ip", F::Str),
        (2, "hostname", F::Str),
        (3, "ipMode", F::StrP),
        (4, "ports", F::RepMsg(&PORT_STATUS)),
    ],
};
static LOAD_BALANCER_STATUS: Schema = Schema {
    name: "LoadBalancerStatus",
    fields: &[(1, "ingress", F::RepMsg(&LOAD_BALANCER_INGRESS))],
};
static SERVICE_STATUS: Schema = Schema {
    name: "ServiceStatus",
    fields: &[
        (1, "loadBalancer", F::Msg(&LOAD_BALANCER_STATUS)),
        (2, "conditions", F::RepMsg(&CONDITION)),
    ],
};
pub(super) static SERVICE: Schema = Schema {
    name: "Service",
    fields: &[
        (1, "metadata", F::Msg(&OBJECT_META)),
        (2, "spec", F::Msg(&SERVICE_SPEC)),
        (3, "status", F::Msg(&SERVICE_STATUS)),
    ],
};

// --- Pod --- (status is written by the kubelet through JSON patches; a created pod's status
// is at most a phase and conditions, the rest is refused by name)
static POD_CONDITION: Schema = Schema {
    name: "PodCondition",
    fields: &[
        (1, "type", F::Str),
        (2, "status", F::Str),
        (3, "lastProbeTime", F::Time),
        (4, "lastTransitionTime", F::Time),
        (5, "reason", F::Str),
        (6, "message", F::Str),
        (7, "observedGeneration", F::Int),
    ],
};
static POD_IP: Schema = Schema {
    name: "PodIP",
    fields: &[(1, "ip", F::Str)],
};
static POD_STATUS: Schema = Schema {
    name: "PodStatus",
    fields: &[
        (1, "phase", F::Str),
        (2, "conditions", F::RepMsg(&POD_CONDITION)),
        (3, "message", F::Str),
        (4, "reason", F::Str),
        (5, "hostIP", F::Str),
        (6, "podIP", F::Str),
        (7, "startTime", F::Time),
        (8, "containerStatuses", F::No),
        (9, "qosClass", F::Str),
        (10, "initContainerStatuses", F::No),
        (11, "nominatedNodeName", F::Str),
        (12, "podIPs", F::RepMsg(&POD_IP)),
        (13, "ephemeralContainerStatuses", F::No),
        (14, "resize", F::Str),
        (15, "resourceClaimStatuses", F::No),
        (16, "hostIPs", F::RepMsg(&POD_IP)),
        (17, "observedGeneration", F::Int),
    ],
};
pub(super) static POD: Schema = Schema {
    name: "Pod",
    fields: &[
        (1, "metadata", F::Msg(&OBJECT_META)),
        (2, "spec", F::Msg(&POD_SPEC)),
        (3, "status", F::Msg(&POD_STATUS)),
    ],
};
