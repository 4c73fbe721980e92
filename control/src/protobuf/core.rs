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

// --- Event (core/v1) ---
pub(super) static EVENT_SOURCE: Schema = Schema {
    name: "EventSource",
    fields: &[(1, "component", F::Str), (2, "host", F::Str)],
};
pub(super) static EVENT_SERIES: Schema = Schema {
    name: "EventSeries",
    fields: &[(1, "count", F::Int), (2, "lastObservedTime", F::MicroTime)],
};
pub(super) static EVENT: Schema = Schema {
    name: "Event",
    fields: &[
        (1, "metadata", F::Msg(&OBJECT_META)),
        (2, "involvedObject", F::Msg(&OBJECT_REF)),
        (3, "reason", F::Str),
        (4, "message", F::Str),
        (5, "source", F::Msg(&EVENT_SOURCE)),
        (6, "firstTimestamp", F::Time),
        (7, "lastTimestamp", F::Time),
        (8, "count", F::Int),
        (9, "type", F::Str),
        (10, "eventTime", F::MicroTime),
        (11, "series", F::Msg(&EVENT_SERIES)),
        (12, "action", F::Str),
        (13, "related", F::Msg(&OBJECT_REF)),
        (14, "reportingComponent", F::StrP),
        (15, "reportingInstance", F::StrP),
    ],
};

// --- Endpoints ---
static ENDPOINT_ADDRESS: Schema = Schema {
    name: "EndpointAddress",
    fields: &[
        (1, "ip", F::Str),
        (2, "targetRef", F::Msg(&OBJECT_REF)),
        (3, "hostname", F::Str),
        (4, "nodeName", F::StrP),
    ],
};
static ENDPOINT_PORT: Schema = Schema {
    name: "EndpointPort",
    fields: &[
        (1, "name", F::Str),
        (2, "port", F::IntP),
        (3, "protocol", F::Str),
        (4, "appProtocol", F::StrP),
    ],
};
static ENDPOINT_SUBSET: Schema = Schema {
    name: "EndpointSubset",
    fields: &[
        (1, "addresses", F::RepMsg(&ENDPOINT_ADDRESS)),
        (2, "notReadyAddresses", F::RepMsg(&ENDPOINT_ADDRESS)),
        (3, "ports", F::RepMsg(&ENDPOINT_PORT)),
    ],
};
pub(super) static ENDPOINTS: Schema = Schema {
    name: "Endpoints",
    fields: &[
        (1, "metadata", F::Msg(&OBJECT_META)),
        (2, "subsets", F::RepMsg(&ENDPOINT_SUBSET)),
    ],
};

// --- Node ---
static TAINT: Schema = Schema {
    name: "Taint",
    fields: &[
        (1, "key", F::Str),
        (2, "value", F::Str),
        (3, "effect", F::Str),
        (4, "timeAdded", F::Time),
    ],
};
static NODE_SPEC: Schema = Schema {
    name: "NodeSpec",
    fields: &[
        (1, "podCIDR", F::Str),
        (2, "externalID", F::Str),
        (3, "providerID", F::Str),
        (4, "unschedulable", F::Bool),
        (5, "taints", F::RepMsg(&TAINT)),
        (6, "configSource", F::No),
        (7, "podCIDRs", F::RepStr),
    ],
};
static NODE_CONDITION: Schema = Schema {
    name: "NodeCondition",
    fields: &[
        (1, "type", F::Str),
        (2, "status", F::Str),
        (3, "lastHeartbeatTime", F::Time),
        (4, "lastTransitionTime", F::Time),
        (5, "reason", F::Str),
        (6, "message", F::Str),
    ],
};
static NODE_ADDRESS: Schema = Schema {
    name: "NodeAddress",
    fields: &[(1, "type", F::Str), (2, "address", F::Str)],
};
static DAEMON_ENDPOINT: Schema = Schema {
    name: "DaemonEndpoint",
    // Go spells this JSON field with a capital P.
    fields: &[(1, "Port", F::IntP)],
};
static NODE_DAEMON_ENDPOINTS: Schema = Schema {
    name: "NodeDaemonEndpoints",
    fields: &[(1, "kubeletEndpoint", F::Msg(&DAEMON_ENDPOINT))],
};
static NODE_SWAP_STATUS: Schema = Schema {
    name: "NodeSwapStatus",
    fields: &[(1, "capacity", F::IntP)],
};
static NODE_SYSTEM_INFO: Schema = Schema {
    name: "NodeSystemInfo",
    fields: &[
        (1, "machineID", F::StrP),
        (2, "systemUUID", F::StrP),
        (3, "bootID", F::StrP),
        (4, "kernelVersion", F::StrP),
        (5, "osImage", F::StrP),
        (6, "containerRuntimeVersion", F::StrP),
        (7, "kubeletVersion", F::StrP),
        (8, "kubeProxyVersion", F::StrP),
        (9, "operatingSystem", F::StrP),
        (10, "architecture", F::StrP),
        (11, "swap", F::Msg(&NODE_SWAP_STATUS)),
    ],
};
static CONTAINER_IMAGE: Schema = Schema {
    name: "ContainerImage",
    fields: &[(1, "names", F::RepStr), (2, "sizeBytes", F::Int)],
};
static ATTACHED_VOLUME: Schema = Schema {
    name: "AttachedVolume",
    fields: &[(1, "name", F::Str), (2, "devicePath", F::Str)],
};
static RUNTIME_HANDLER_FEATURES: Schema = Schema {
    name: "NodeRuntimeHandlerFeatures",
    fields: &[
        (1, "recursiveReadOnlyMounts", F::BoolP),
        (2, "userNamespaces", F::BoolP),
    ],
};
static NODE_RUNTIME_HANDLER: Schema = Schema {
    name: "NodeRuntimeHandler",
    // The default handler's name is "", which Go keeps.
    fields: &[
        (1, "name", F::StrP),
        (2, "features", F::Msg(&RUNTIME_HANDLER_FEATURES)),
    ],
};
static NODE_FEATURES: Schema = Schema {
    name: "NodeFeatures",
    fields: &[(1, "supplementalGroupsPolicy", F::BoolP)],
};
static NODE_STATUS: Schema = Schema {
    name: "NodeStatus",
    fields: &[
        (1, "capacity", F::MapQty),
        (2, "allocatable", F::MapQty),
        (3, "phase", F::Str),
        (4, "conditions", F::RepMsg(&NODE_CONDITION)),
        (5, "addresses", F::RepMsg(&NODE_ADDRESS)),
        (6, "daemonEndpoints", F::Msg(&NODE_DAEMON_ENDPOINTS)),
        (7, "nodeInfo", F::Msg(&NODE_SYSTEM_INFO)),
        (8, "images", F::RepMsg(&CONTAINER_IMAGE)),
        (9, "volumesInUse", F::RepStr),
        (10, "volumesAttached", F::RepMsg(&ATTACHED_VOLUME)),
        (11, "config", F::No),
        (12, "runtimeHandlers", F::RepMsg(&NODE_RUNTIME_HANDLER)),
        (13, "features", F::Msg(&NODE_FEATURES)),
    ],
};
pub(super) static NODE: Schema = Schema {
    name: "Node",
    fields: &[
        (1, "metadata", F::Msg(&OBJECT_META)),
        (2, "spec", F::Msg(&NODE_SPEC)),
        (3, "status", F::Msg(&NODE_STATUS)),
    ],
};

/// pods/binding, which schedulers post.
pub(super) static BINDING: Schema = Schema {
    name: "Binding",
    fields: &[
        (1, "metadata", F::Msg(&OBJECT_META)),
        (2, "target", F::Msg(&OBJECT_REF)),
    ],
};
