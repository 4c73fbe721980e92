//! core/v1 PodTemplateSpec, PodSpec, Container and what they hold. Rarely used corners
//! (ephemeral containers, cloud and legacy volume plugins, resource claims, pod certificates)
//! are listed by name and refused.

use super::meta::{LABEL_SELECTOR, OBJECT_META};
use super::schema::{Schema, F};

pub(super) static LOCAL_OBJECT_REF: Schema = Schema {
    name: "LocalObjectReference",
    fields: &[(1, "name", F::Str)],
};
static EXEC_ACTION: Schema = Schema {
    name: "ExecAction",
    fields: &[(1, "command", F::RepStr)],
};
static HTTP_HEADER: Schema = Schema {
    name: "HTTPHeader",
    fields: &[(1, "name", F::Str), (2, "value", F::Str)],
};
static HTTP_GET_ACTION: Schema = Schema {
    name: "HTTPGetAction",
    fields: &[
        (1, "path", F::Str),
        (2, "port", F::IntOrStr),
        (3, "host", F::Str),
        (4, "scheme", F::Str),
        (5, "httpHeaders", F::RepMsg(&HTTP_HEADER)),
    ],
};
static TCP_SOCKET_ACTION: Schema = Schema {
    name: "TCPSocketAction",
    fields: &[(1, "port", F::IntOrStr), (2, "host", F::Str)],
};
static GRPC_ACTION: Schema = Schema {
    name: "GRPCAction",
    fields: &[(1, "port", F::IntP), (2, "service", F::StrP)],
};
static SLEEP_ACTION: Schema = Schema {
    name: "SleepAction",
    fields: &[(1, "seconds", F::IntP)],
};
static PROBE_HANDLER: Schema = Schema {
    name: "ProbeHandler",
    fields: &[
        (1, "exec", F::Msg(&EXEC_ACTION)),
        (2, "httpGet", F::Msg(&HTTP_GET_ACTION)),
        (3, "tcpSocket", F::Msg(&TCP_SOCKET_ACTION)),
        (4, "grpc", F::Msg(&GRPC_ACTION)),
    ],
};
static PROBE: Schema = Schema {
    name: "Probe",
    fields: &[
        (1, "handler", F::Inline(&PROBE_HANDLER)),
        (2, "initialDelaySeconds", F::Int),
        (3, "timeoutSeconds", F::Int),
        (4, "periodSeconds", F::Int),
        (5, "successThreshold", F::Int),
        (6, "failureThreshold", F::Int),
        (7, "terminationGracePeriodSeconds", F::IntP),
    ],
};
static LIFECYCLE_HANDLER: Schema = Schema {
    name: "LifecycleHandler",
    fields: &[
        (1, "exec", F::Msg(&EXEC_ACTION)),
        (2, "httpGet", F::Msg(&HTTP_GET_ACTION)),
        (3, "tcpSocket", F::Msg(&TCP_SOCKET_ACTION)),
        (4, "sleep", F::Msg(&SLEEP_ACTION)),
    ],
};
static LIFECYCLE: Schema = Schema {
    name: "Lifecycle",
    fields: &[
        (1, "postStart", F::Msg(&LIFECYCLE_HANDLER)),
        (2, "preStop", F::Msg(&LIFECYCLE_HANDLER)),
        (3, "stopSignal", F::StrP),
    ],
};
static CONTAINER_PORT: Schema = Schema {
    name: "ContainerPort",
    fields: &[
        (1, "name", F::Str),
        (2, "hostPort", F::Int),
        (3, "containerPort", F::IntP),
        (4, "protocol", F::Str),
        (5, "hostIP", F::Str),
    ],
};
static OBJECT_FIELD_SELECTOR: Schema = Schema {
    name: "ObjectFieldSelector",
    fields: &[(1, "apiVersion", F::Str), (2, "fieldPath", F::Str)],
};
static RESOURCE_FIELD_SELECTOR: Schema = Schema {
    name: "ResourceFieldSelector",
    fields: &[
        (1, "containerName", F::Str),
        (2, "resource", F::Str),
        (3, "divisor", F::Qty),
    ],
};
static CONFIG_MAP_KEY_SELECTOR: Schema = Schema {
    name: "ConfigMapKeySelector",
    fields: &[
        (1, "localObjectReference", F::Inline(&LOCAL_OBJECT_REF)),
        (2, "key", F::Str),
        (3, "optional", F::BoolP),
    ],
};
static SECRET_KEY_SELECTOR: Schema = Schema {
    name: "SecretKeySelector",
    fields: &[
        (1, "localObjectReference", F::Inline(&LOCAL_OBJECT_REF)),
        (2, "key", F::Str),
        (3, "optional", F::BoolP),
    ],
};
static FILE_KEY_SELECTOR: Schema = Schema {
    name: "FileKeySelector",
    fields: &[
        (1, "volumeName", F::Str),
        (2, "path", F::Str),
        (3, "key", F::Str),
        (4, "optional", F::BoolP),
    ],
};
static ENV_VAR_SOURCE: Schema = Schema {
    name: "EnvVarSource",
    fields: &[
        (1, "fieldRef", F::Msg(&OBJECT_FIELD_SELECTOR)),
        (2, "resourceFieldRef", F::Msg(&RESOURCE_FIELD_SELECTOR)),
        (3, "configMapKeyRef", F::Msg(&CONFIG_MAP_KEY_SELECTOR)),
        (4, "secretKeyRef", F::Msg(&SECRET_KEY_SELECTOR)),
        (5, "fileKeyRef", F::Msg(&FILE_KEY_SELECTOR)),
    ],
};
static ENV_VAR: Schema = Schema {
    name: "EnvVar",
    fields: &[
        (1, "name", F::Str),
        (2, "value", F::Str),
        (3, "valueFrom", F::Msg(&ENV_VAR_SOURCE)),
    ],
};
static CONFIG_MAP_ENV_SOURCE: Schema = Schema {
    name: "ConfigMapEnvSource",
    fields: &[
        (1, "localObjectReference", F::Inline(&LOCAL_OBJECT_REF)),
        (2, "optional", F::BoolP),
    ],
};
static SECRET_ENV_SOURCE: Schema = Schema {
    name: "SecretEnvSource",
    fields: &[
        (1, "localObjectReference", F::Inline(&LOCAL_OBJECT_REF)),
        (2, "optional", F::BoolP),
    ],
};
static ENV_FROM_SOURCE: Schema = Schema {
    name: "EnvFromSource",
    fields: &[
        (1, "prefix", F::Str),
        (2, "configMapRef", F::Msg(&CONFIG_MAP_ENV_SOURCE)),
        (3, "secretRef", F::Msg(&SECRET_ENV_SOURCE)),
    ],
};
static RESOURCE_CLAIM: Schema = Schema {
    name: "ResourceClaim",
    fields: &[(1, "name", F::Str), (2, "request", F::Str)],
};
pub(super) static RESOURCE_REQUIREMENTS: Schema = Schema {
    name: "ResourceRequirements",
    fields: &[
        (1, "limits", F::MapQty),
        (2, "requests", F::MapQty),
        (3, "claims", F::RepMsg(&RESOURCE_CLAIM)),
    ],
};
static CONTAINER_RESIZE_POLICY: Schema = Schema {
    name: "ContainerResizePolicy",
    fields: &[(1, "resourceName", F::Str), (2, "restartPolicy", F::Str)],
};
static VOLUME_MOUNT: Schema = Schema {
    name: "VolumeMount",
    fields: &[
        (1, "name", F::Str),
        (2, "readOnly", F::Bool),
        (3, "mountPath", F::Str),
        (4, "subPath", F::Str),
        (5, "mountPropagation", F::StrP),
        (6, "subPathExpr", F::Str),
        (7, "recursiveReadOnly", F::StrP),
    ],
};
static VOLUME_DEVICE: Schema = Schema {
    name: "VolumeDevice",
    fields: &[(1, "name", F::Str), (2, "devicePath", F::Str)],
};
static CAPABILITIES: Schema = Schema {
    name: "Capabilities",
    fields: &[(1, "add", F::RepStr), (2, "drop", F::RepStr)],
};
static SE_LINUX_OPTIONS: Schema = Schema {
    name: "SELinuxOptions",
    fields: &[
        (1, "user", F::Str),
        (2, "role", F::Str),
        (3, "type", F::Str),
        (4, "level", F::Str),
    ],
};
static WINDOWS_OPTIONS: Schema = Schema {
    name: "WindowsSecurityContextOptions",
    fields: &[
        (1, "gmsaCredentialSpecName", F::StrP),
        (2, "gmsaCredentialSpec", F::StrP),
        (3, "runAsUserName", F::StrP),
        (4, "hostProcess", F::BoolP),
    ],
};
static SECCOMP_PROFILE: Schema = Schema {
    name: "SeccompProfile",
    fields: &[(1, "type", F::Str), (2, "localhostProfile", F::StrP)],
};
static APP_ARMOR_PROFILE: Schema = Schema {
    name: "AppArmorProfile",
    fields: &[(1, "type", F::Str), (2, "localhostProfile", F::StrP)],
};
static SECURITY_CONTEXT: Schema = Schema {
    name: "SecurityContext",
    fields: &[
        (1, "capabilities", F::Msg(&CAPABILITIES)),
        (2, "privileged", F::BoolP),
        (3, "seLinuxOptions", F::Msg(&SE_LINUX_OPTIONS)),
        (4, "runAsUser", F::IntP),
        (5, "runAsNonRoot", F::BoolP),
        (6, "readOnlyRootFilesystem", F::BoolP),
        (7, "allowPrivilegeEscalation", F::BoolP),
        (8, "runAsGroup", F::IntP),
        (9, "procMount", F::StrP),
        (10, "windowsOptions", F::Msg(&WINDOWS_OPTIONS)),
        (11, "seccompProfile", F::Msg(&SECCOMP_PROFILE)),
        (12, "appArmorProfile", F::Msg(&APP_ARMOR_PROFILE)),
    ],
};
static CONTAINER: Schema = Schema {
    name: "Container",
    fields: &[
        (1, "name", F::Str),
        (2, "image", F::Str),
        (3, "command", F::RepStr),
        (4, "args", F::RepStr),
        (5, "workingDir", F::Str),
        (6, "ports", F::RepMsg(&CONTAINER_PORT)),
        (7, "env", F::RepMsg(&ENV_VAR)),
        (8, "resources", F::Msg(&RESOURCE_REQUIREMENTS)),
        (9, "volumeMounts", F::RepMsg(&VOLUME_MOUNT)),
        (10, "livenessProbe", F::Msg(&PROBE)),
        (11, "readinessProbe", F::Msg(&PROBE)),
        (12, "lifecycle", F::Msg(&LIFECYCLE)),
        (13, "terminationMessagePath", F::Str),
        (14, "imagePullPolicy", F::Str),
        (15, "securityContext", F::Msg(&SECURITY_CONTEXT)),
        (16, "stdin", F::Bool),
        (17, "stdinOnce", F::Bool),
        (18, "tty", F::Bool),
        (19, "envFrom", F::RepMsg(&ENV_FROM_SOURCE)),
        (20, "terminationMessagePolicy", F::Str),
        (21, "volumeDevices", F::RepMsg(&VOLUME_DEVICE)),
        (22, "startupProbe", F::Msg(&PROBE)),
        (23, "resizePolicy", F::RepMsg(&CONTAINER_RESIZE_POLICY)),
        (24, "restartPolicy", F::StrP),
        (25, "restartPolicyRules", F::No),
    ],
};

// --- volumes ---
pub(super) static HOST_PATH: Schema = Schema {
    name: "HostPathVolumeSource",
    fields: &[(1, "path", F::Str), (2, "type", F::StrP)],
};
static EMPTY_DIR: Schema = Schema {
    name: "EmptyDirVolumeSource",
    fields: &[(1, "medium", F::Str), (2, "sizeLimit", F::Qty)],
};
static KEY_TO_PATH: Schema = Schema {
    name: "KeyToPath",
    fields: &[
        (1, "key", F::Str),
        (2, "path", F::Str),
        (3, "mode", F::IntP),
    ],
};
static SECRET_VOLUME: Schema = Schema {
    name: "SecretVolumeSource",
    fields: &[
        (1, "secretName", F::Str),
        (2, "items", F::RepMsg(&KEY_TO_PATH)),
        (3, "defaultMode", F::IntP),
        (4, "optional", F::BoolP),
    ],
};
static CONFIG_MAP_VOLUME: Schema = Schema {
    name: "ConfigMapVolumeSource",
    fields: &[
        (1, "localObjectReference", F::Inline(&LOCAL_OBJECT_REF)),
        (2, "items", F::RepMsg(&KEY_TO_PATH)),
        (3, "defaultMode", F::IntP),
        (4, "optional", F::BoolP),
    ],
};
pub(super) static NFS_VOLUME: Schema = Schema {
    name: "NFSVolumeSource",
    fields: &[
        (1, "server", F::Str),
        (2, "path", F::Str),
        (3, "readOnly", F::Bool),
    ],
};
static PVC_VOLUME: Schema = Schema {
    name: "PersistentVolumeClaimVolumeSource",
    fields: &[(1, "claimName", F::Str), (2, "readOnly", F::Bool)],
};
static DOWNWARD_API_FILE: Schema = Schema {
    name: "DownwardAPIVolumeFile",
    fields: &[
        (1, "path", F::Str),
        (2, "fieldRef", F::Msg(&OBJECT_FIELD_SELECTOR)),
        (3, "resourceFieldRef", F::Msg(&RESOURCE_FIELD_SELECTOR)),
        (4, "mode", F::IntP),
    ],
};
static DOWNWARD_API_VOLUME: Schema = Schema {
    name: "DownwardAPIVolumeSource",
    fields: &[
        (1, "items", F::RepMsg(&DOWNWARD_API_FILE)),
        (2, "defaultMode", F::IntP),
    ],
};
static SECRET_PROJECTION: Schema = Schema {
    name: "SecretProjection",
    fields: &[
        (1, "localObjectReference", F::Inline(&LOCAL_OBJECT_REF)),
        (2, "items", F::RepMsg(&KEY_TO_PATH)),
        (4, "optional", F::BoolP),
    ],
};
static CONFIG_MAP_PROJECTION: Schema = Schema {
    name: "ConfigMapProjection",
    fields: &[
        (1, "localObjectReference", F::Inline(&LOCAL_OBJECT_REF)),
        (2, "items", F::RepMsg(&KEY_TO_PATH)),
        (4, "optional", F::BoolP),
    ],
};
static DOWNWARD_API_PROJECTION: Schema = Schema {
    name: "DownwardAPIProjection",
    fields: &[(1, "items", F::RepMsg(&DOWNWARD_API_FILE))],
};
static SA_TOKEN_PROJECTION: Schema = Schema {
    name: "ServiceAccountTokenProjection",
    fields: &[
        (1, "audience", F::Str),
        (2, "expirationSeconds", F::IntP),
        (3, "path", F::Str),
    ],
};
static VOLUME_PROJECTION: Schema = Schema {
    name: "VolumeProjection",
    fields: &[
        (1, "secret", F::Msg(&SECRET_PROJECTION)),
        (2, "downwardAPI", F::Msg(&DOWNWARD_API_PROJECTION)),
        (3, "configMap", F::Msg(&CONFIG_MAP_PROJECTION)),
        (4, "serviceAccountToken", F::Msg(&SA_TOKEN_PROJECTION)),
        (5, "clusterTrustBundle", F::No),
        (6, "podCertificate", F::No),
    ],
};
static PROJECTED_VOLUME: Schema = Schema {
    name: "ProjectedVolumeSource",
    fields: &[
        (1, "sources", F::RepMsg(&VOLUME_PROJECTION)),
        (2, "defaultMode", F::IntP),
    ],
};
static CSI_VOLUME: Schema = Schema {
    name: "CSIVolumeSource",
    fields: &[
        (1, "driver", F::Str),
        (2, "readOnly", F::BoolP),
        (3, "fsType", F::StrP),
        (4, "volumeAttributes", F::MapStr),
        (5, "nodePublishSecretRef", F::Msg(&LOCAL_OBJECT_REF)),
    ],
};
static IMAGE_VOLUME: Schema = Schema {
    name: "ImageVolumeSource",
    fields: &[(1, "reference", F::Str), (2, "pullPolicy", F::Str)],
};
static VOLUME_SOURCE: Schema = Schema {
    name: "VolumeSource",
    fields: &[
        (1, "hostPath", F::Msg(&HOST_PATH)),
        (2, "emptyDir", F::Msg(&EMPTY_DIR)),
        (3, "gcePersistentDisk", F::No),
        (4, "awsElasticBlockStore", F::No),
        (5, "gitRepo", F::No),
        (6, "secret", F::Msg(&SECRET_VOLUME)),
        (7, "nfs", F::Msg(&NFS_VOLUME)),
        (8, "iscsi", F::No),
        (9, "glusterfs", F::No),
        (10, "persistentVolumeClaim", F::Msg(&PVC_VOLUME)),
        (11, "rbd", F::No),
        (12, "flexVolume", F::No),
        (13, "cinder", F::No),
        (14, "cephfs", F::No),
        (15, "flocker", F::No),
        (16, "downwardAPI", F::Msg(&DOWNWARD_API_VOLUME)),
        (17, "fc", F::No),
        (18, "azureFile", F::No),
        (19, "configMap", F::Msg(&CONFIG_MAP_VOLUME)),
        (20, "vsphereVolume", F::No),
        (21, "quobyte", F::No),
        (22, "azureDisk", F::No),
        (23, "photonPersistentDisk", F::No),
        (24, "portworxVolume", F::No),
        (25, "scaleIO", F::No),
        (26, "projected", F::Msg(&PROJECTED_VOLUME)),
        (27, "storageos", F::No),
        (28, "csi", F::Msg(&CSI_VOLUME)),
        (29, "ephemeral", F::No),
        (30, "image", F::Msg(&IMAGE_VOLUME)),
    ],
};
static VOLUME: Schema = Schema {
    name: "Volume",
    fields: &[
        (1, "name", F::Str),
        (2, "volumeSource", F::Inline(&VOLUME_SOURCE)),
    ],
};

// --- scheduling ---
static NODE_SELECTOR_REQUIREMENT: Schema = Schema {
    name: "NodeSelectorRequirement",
    fields: &[
        (1, "key", F::Str),
        (2, "operator", F::Str),
        (3, "values", F::RepStr),
    ],
};
static NODE_SELECTOR_TERM: Schema = Schema {
    name: "NodeSelectorTerm",
    fields: &[
        (1, "matchExpressions", F::RepMsg(&NODE_SELECTOR_REQUIREMENT)),
        (2, "matchFields", F::RepMsg(&NODE_SELECTOR_REQUIREMENT)),
    ],
};
pub(super) static NODE_SELECTOR: Schema = Schema {
    name: "NodeSelector",
    fields: &[(1, "nodeSelectorTerms", F::RepMsg(&NODE_SELECTOR_TERM))],
};
static PREFERRED_SCHEDULING_TERM: Schema = Schema {
    name: "PreferredSchedulingTerm",
    fields: &[
        (1, "weight", F::IntP),
        (2, "preference", F::Msg(&NODE_SELECTOR_TERM)),
    ],
};
static NODE_AFFINITY: Schema = Schema {
    name: "NodeAffinity",
    fields: &[
        (
            1,
            "requiredDuringSchedulingIgnoredDuringExecution",
            F::Msg(&NODE_SELECTOR),
        ),
        (
            2,
            "preferredDuringSchedulingIgnoredDuringExecution",
            F::RepMsg(&PREFERRED_SCHEDULING_TERM),
        ),
    ],
};
static POD_AFFINITY_TERM: Schema = Schema {
    name: "PodAffinityTerm",
    fields: &[
        (1, "labelSelector", F::Msg(&LABEL_SELECTOR)),
        (2, "namespaces", F::RepStr),
        (3, "topologyKey", F::Str),
        (4, "namespaceSelector", F::Msg(&LABEL_SELECTOR)),
        (5, "matchLabelKeys", F::RepStr),
        (6, "mismatchLabelKeys", F::RepStr),
    ],
};
static WEIGHTED_POD_AFFINITY_TERM: Schema = Schema {
    name: "WeightedPodAffinityTerm",
    fields: &[
        (1, "weight", F::IntP),
        (2, "podAffinityTerm", F::Msg(&POD_AFFINITY_TERM)),
    ],
};
static POD_AFFINITY: Schema = Schema {
    name: "PodAffinity",
    fields: &[
        (
            1,
            "requiredDuringSchedulingIgnoredDuringExecution",
            F::RepMsg(&POD_AFFINITY_TERM),
        ),
        (
            2,
            "preferredDuringSchedulingIgnoredDuringExecution",
            F::RepMsg(&WEIGHTED_POD_AFFINITY_TERM),
        ),
    ],
};
static AFFINITY: Schema = Schema {
    name: "Affinity",
    fields: &[
        (1, "nodeAffinity", F::Msg(&NODE_AFFINITY)),
        (2, "podAffinity", F::Msg(&POD_AFFINITY)),
        (3, "podAntiAffinity", F::Msg(&POD_AFFINITY)),
    ],
};
static TOLERATION: Schema = Schema {
    name: "Toleration",
    fields: &[
        (1, "key", F::Str),
        (2, "operator", F::Str),
        (3, "value", F::Str),
        (4, "effect", F::Str),
        (5, "tolerationSeconds", F::IntP),
    ],
};
static TOPOLOGY_SPREAD_CONSTRAINT: Schema = Schema {
    name: "TopologySpreadConstraint",
    fields: &[
        (1, "maxSkew", F::IntP),
        (2, "topologyKey", F::Str),
        (3, "whenUnsatisfiable", F::Str),
        (4, "labelSelector", F::Msg(&LABEL_SELECTOR)),
        (5, "minDomains", F::IntP),
        (6, "nodeAffinityPolicy", F::StrP),
        (7, "nodeTaintsPolicy", F::StrP),
        (8, "matchLabelKeys", F::RepStr),
    ],
};

// --- pod-level ---
static SYSCTL: Schema = Schema {
    name: "Sysctl",
    fields: &[(1, "name", F::Str), (2, "value", F::Str)],
};
static POD_SECURITY_CONTEXT: Schema = Schema {
    name: "PodSecurityContext",
    fields: &[
        (1, "seLinuxOptions", F::Msg(&SE_LINUX_OPTIONS)),
        (2, "runAsUser", F::IntP),
        (3, "runAsNonRoot", F::BoolP),
        (4, "supplementalGroups", F::RepInt),
        (5, "fsGroup", F::IntP),
        (6, "runAsGroup", F::IntP),
        (7, "sysctls", F::RepMsg(&SYSCTL)),
        (8, "windowsOptions", F::Msg(&WINDOWS_OPTIONS)),
        (9, "fsGroupChangePolicy", F::StrP),
        (10, "seccompProfile", F::Msg(&SECCOMP_PROFILE)),
        (11, "appArmorProfile", F::Msg(&APP_ARMOR_PROFILE)),
        (12, "supplementalGroupsPolicy", F::StrP),
        (13, "seLinuxChangePolicy", F::StrP),
    ],
};
static HOST_ALIAS: Schema = Schema {
    name: "HostAlias",
    fields: &[(1, "ip", F::Str), (2, "hostnames", F::RepStr)],
};
static DNS_CONFIG_OPTION: Schema = Schema {
    name: "PodDNSConfigOption",
    fields: &[(1, "name", F::Str), (2, "value", F::StrP)],
};
static DNS_CONFIG: Schema = Schema {
    name: "PodDNSConfig",
    fields: &[
        (1, "nameservers", F::RepStr),
        (2, "searches", F::RepStr),
        (3, "options", F::RepMsg(&DNS_CONFIG_OPTION)),
    ],
};
static READINESS_GATE: Schema = Schema {
    name: "PodReadinessGate",
    fields: &[(1, "conditionType", F::Str)],
};
static POD_OS: Schema = Schema {
    name: "PodOS",
    fields: &[(1, "name", F::Str)],
};
static SCHEDULING_GATE: Schema = Schema {
    name: "PodSchedulingGate",
    fields: &[(1, "name", F::Str)],
};
pub(super) static POD_SPEC: Schema = Schema {
    name: "PodSpec",
    fields: &[
        (1, "volumes", F::RepMsg(&VOLUME)),
        (2, "containers", F::RepMsg(&CONTAINER)),
        (3, "restartPolicy", F::Str),
        (4, "terminationGracePeriodSeconds", F::IntP),
        (5, "activeDeadlineSeconds", F::IntP),
        (6, "dnsPolicy", F::Str),
        (7, "nodeSelector", F::MapStr),
        (8, "serviceAccountName", F::Str),
        (9, "serviceAccount", F::Str),
        (10, "nodeName", F::Str),
        (11, "hostNetwork", F::Bool),
        (12, "hostPID", F::Bool),
        (13, "hostIPC", F::Bool),
        (14, "securityContext", F::Msg(&POD_SECURITY_CONTEXT)),
        (15, "imagePullSecrets", F::RepMsg(&LOCAL_OBJECT_REF)),
        (16, "hostname", F::Str),
        (17, "subdomain", F::Str),
        (18, "affinity", F::Msg(&AFFINITY)),
        (19, "schedulerName", F::Str),
        (20, "initContainers", F::RepMsg(&CONTAINER)),
        (21, "automountServiceAccountToken", F::BoolP),
        (22, "tolerations", F::RepMsg(&TOLERATION)),
        (23, "hostAliases", F::RepMsg(&HOST_ALIAS)),
        (24, "priorityClassName", F::Str),
        (25, "priority", F::IntP),
        (26, "dnsConfig", F::Msg(&DNS_CONFIG)),
        (27, "shareProcessNamespace", F::BoolP),
        (28, "readinessGates", F::RepMsg(&READINESS_GATE)),
        (29, "runtimeClassName", F::StrP),
        (30, "enableServiceLinks", F::BoolP),
        (31, "preemptionPolicy", F::StrP),
        (32, "overhead", F::MapQty),
        (
            33,
            "topologySpreadConstraints",
            F::RepMsg(&TOPOLOGY_SPREAD_CONSTRAINT),
        ),
        (34, "ephemeralContainers", F::No),
        (35, "setHostnameAsFQDN", F::BoolP),
        (36, "os", F::Msg(&POD_OS)),
        (37, "hostUsers", F::BoolP),
        (38, "schedulingGates", F::RepMsg(&SCHEDULING_GATE)),
        (39, "resourceClaims", F::No),
        (40, "resources", F::Msg(&RESOURCE_REQUIREMENTS)),
        (41, "hostnameOverride", F::StrP),
        (42, "workloadRef", F::No),
    ],
};
pub(super) static POD_TEMPLATE_SPEC: Schema = Schema {
    name: "PodTemplateSpec",
    fields: &[
        (1, "metadata", F::Msg(&OBJECT_META)),
        (2, "spec", F::Msg(&POD_SPEC)),
    ],
};
