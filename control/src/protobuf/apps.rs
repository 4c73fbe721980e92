//! apps/v1 kinds: Deployment, ReplicaSet, StatefulSet, DaemonSet.

use super::meta::{LABEL_SELECTOR, OBJECT_META};
use super::pod::POD_TEMPLATE_SPEC;
use super::schema::{Schema, F};
use super::storage::PVC_SPEC;

/// The condition messages of the apps kinds: type, status, times, reason, message.
static APPS_CONDITION: Schema = Schema {
    name: "Condition",
    fields: &[
        (1, "type", F::Str),
        (2, "status", F::Str),
        (3, "lastTransitionTime", F::Time),
        (4, "reason", F::Str),
        (5, "message", F::Str),
    ],
};

// --- Deployment ---
static ROLLING_UPDATE_DEPLOYMENT: Schema = Schema {
    name: "RollingUpdateDeployment",
    fields: &[
        (1, "maxUnavailable", F::IntOrStr),
        (2, "maxSurge", F::IntOrStr),
    ],
};
static DEPLOYMENT_STRATEGY: Schema = Schema {
    name: "DeploymentStrategy",
    fields: &[
        (1, "type", F::Str),
        (2, "rollingUpdate", F::Msg(&ROLLING_UPDATE_DEPLOYMENT)),
    ],
};
static DEPLOYMENT_SPEC: Schema = Schema {
    name: "DeploymentSpec",
    fields: &[
        (1, "replicas", F::IntP),
        (2, "selector", F::Msg(&LABEL_SELECTOR)),
        (3, "template", F::Msg(&POD_TEMPLATE_SPEC)),
        (4, "strategy", F::Msg(&DEPLOYMENT_STRATEGY)),
        (5, "minReadySeconds", F::Int),
        (6, "revisionHistoryLimit", F::IntP),
        (7, "paused", F::Bool),
        (9, "progressDeadlineSeconds", F::IntP),
    ],
};
static DEPLOYMENT_CONDITION: Schema = Schema {
    name: "DeploymentCondition",
    fields: &[
        (1, "type", F::Str),
        (2, "status", F::Str),
        (4, "reason", F::Str),
        (5, "message", F::Str),
        (6, "lastUpdateTime", F::Time),
        (7, "lastTransitionTime", F::Time),
    ],
};
static DEPLOYMENT_STATUS: Schema = Schema {
    name: "DeploymentStatus",
    fields: &[
        (1, "observedGeneration", F::Int),
        (2, "replicas", F::Int),
        (3, "updatedReplicas", F::Int),
        (4, "availableReplicas", F::Int),
        (5, "unavailableReplicas", F::Int),
        (6, "conditions", F::RepMsg(&DEPLOYMENT_CONDITION)),
        (7, "readyReplicas", F::Int),
        (8, "collisionCount", F::IntP),
        (9, "terminatingReplicas", F::IntP),
    ],
};
pub(super) static DEPLOYMENT: Schema = Schema {
    name: "Deployment",
    fields: &[
        (1, "metadata", F::Msg(&OBJECT_META)),
        (2, "spec", F::Msg(&DEPLOYMENT_SPEC)),
        (3, "status", F::Msg(&DEPLOYMENT_STATUS)),
    ],
};

// --- ReplicaSet ---
static REPLICA_SET_SPEC: Schema = Schema {
    name: "ReplicaSetSpec",
    fields: &[
        (1, "replicas", F::IntP),
        (2, "selector", F::Msg(&LABEL_SELECTOR)),
        (3, "template", F::Msg(&POD_TEMPLATE_SPEC)),
        (4, "minReadySeconds", F::Int),
    ],
};
static REPLICA_SET_STATUS: Schema = Schema {
    name: "ReplicaSetStatus",
    fields: &[
        (1, "replicas", F::IntP),
        (2, "fullyLabeledReplicas", F::Int),
        (3, "observedGeneration", F::Int),
        (4, "readyReplicas", F::Int),
        (5, "availableReplicas", F::Int),
        (6, "conditions", F::RepMsg(&APPS_CONDITION)),
        (7, "terminatingReplicas", F::IntP),
    ],
};
pub(super) static REPLICA_SET: Schema = Schema {
    name: "ReplicaSet",
    fields: &[
        (1, "metadata", F::Msg(&OBJECT_META)),
        (2, "spec", F::Msg(&REPLICA_SET_SPEC)),
        (3, "status", F::Msg(&REPLICA_SET_STATUS)),
    ],
};

// --- StatefulSet ---
static ROLLING_UPDATE_STATEFUL_SET: Schema = Schema {
    name: "RollingUpdateStatefulSetStrategy",
    fields: &[
        (1, "partition", F::IntP),
        (2, "maxUnavailable", F::IntOrStr),
    ],
};
static STATEFUL_SET_UPDATE_STRATEGY: Schema = Schema {
    name: "StatefulSetUpdateStrategy",
    fields: &[
        (1, "type", F::Str),
        (2, "rollingUpdate", F::Msg(&ROLLING_UPDATE_STATEFUL_SET)),
    ],
};
static PVC_RETENTION_POLICY: Schema = Schema {
    name: "StatefulSetPersistentVolumeClaimRetentionPolicy",
    fields: &[(1, "whenDeleted", F::Str), (2, "whenScaled", F::Str)],
};
static STATEFUL_SET_ORDINALS: Schema = Schema {
    name: "StatefulSetOrdinals",
    fields: &[(1, "start", F::IntP)],
};
/// A StatefulSet's claim template: the PersistentVolumeClaim's own spec table; a status is refused.
static PVC: Schema = Schema {
    name: "PersistentVolumeClaim",
    fields: &[
        (1, "metadata", F::Msg(&OBJECT_META)),
        (2, "spec", F::Msg(&PVC_SPEC)),
        (3, "status", F::No),
    ],
};
static STATEFUL_SET_SPEC: Schema = Schema {
    name: "StatefulSetSpec",
    fields: &[
        (1, "replicas", F::IntP),
        (2, "selector", F::Msg(&LABEL_SELECTOR)),
        (3, "template", F::Msg(&POD_TEMPLATE_SPEC)),
        (4, "volumeClaimTemplates", F::RepMsg(&PVC)),
        (5, "serviceName", F::Str),
        (6, "podManagementPolicy", F::Str),
        (7, "updateStrategy", F::Msg(&STATEFUL_SET_UPDATE_STRATEGY)),
        (8, "revisionHistoryLimit", F::IntP),
        (9, "minReadySeconds", F::Int),
        (
            10,
            "persistentVolumeClaimRetentionPolicy",
            F::Msg(&PVC_RETENTION_POLICY),
        ),
        (11, "ordinals", F::Msg(&STATEFUL_SET_ORDINALS)),
    ],
};
static STATEFUL_SET_STATUS: Schema = Schema {
    name: "StatefulSetStatus",
    fields: &[
        (1, "observedGeneration", F::Int),
        (2, "replicas", F::IntP),
        (3, "readyReplicas", F::Int),
        (4, "currentReplicas", F::Int),
        (5, "updatedReplicas", F::Int),
        (6, "currentRevision", F::Str),
        (7, "updateRevision", F::Str),
        (9, "collisionCount", F::IntP),
        (10, "conditions", F::RepMsg(&APPS_CONDITION)),
        (11, "availableReplicas", F::Int),
    ],
};
pub(super) static STATEFUL_SET: Schema = Schema {
    name: "StatefulSet",
    fields: &[
        (1, "metadata", F::Msg(&OBJECT_META)),
        (2, "spec", F::Msg(&STATEFUL_SET_SPEC)),
        (3, "status", F::Msg(&STATEFUL_SET_STATUS)),
    ],
};

// --- DaemonSet ---
static ROLLING_UPDATE_DAEMON_SET: Schema = Schema {
    name: "RollingUpdateDaemonSet",
    fields: &[
        (1, "maxUnavailable", F::IntOrStr),
        (2, "maxSurge", F::IntOrStr),
    ],
};
static DAEMON_SET_UPDATE_STRATEGY: Schema = Schema {
    name: "DaemonSetUpdateStrategy",
    fields: &[
        (1, "type", F::Str),
        (2, "rollingUpdate", F::Msg(&ROLLING_UPDATE_DAEMON_SET)),
    ],
};
static DAEMON_SET_SPEC: Schema = Schema {
    name: "DaemonSetSpec",
    fields: &[
        (1, "selector", F::Msg(&LABEL_SELECTOR)),
        (2, "template", F::Msg(&POD_TEMPLATE_SPEC)),
        (3, "updateStrategy", F::Msg(&DAEMON_SET_UPDATE_STRATEGY)),
        (4, "minReadySeconds", F::Int),
        (6, "revisionHistoryLimit", F::IntP),
    ],
};
static DAEMON_SET_STATUS: Schema = Schema {
    name: "DaemonSetStatus",
    fields: &[
        (1, "currentNumberScheduled", F::IntP),
        (2, "numberMisscheduled", F::IntP),
        (3, "desiredNumberScheduled", F::IntP),
        (4, "numberReady", F::IntP),
        (5, "observedGeneration", F::Int),
        (6, "updatedNumberScheduled", F::Int),
        (7, "numberAvailable", F::Int),
        (8, "numberUnavailable", F::Int),
        (9, "collisionCount", F::IntP),
        (10, "conditions", F::RepMsg(&APPS_CONDITION)),
    ],
};
pub(super) static DAEMON_SET: Schema = Schema {
    name: "DaemonSet",
    fields: &[
        (1, "metadata", F::Msg(&OBJECT_META)),
        (2, "spec", F::Msg(&DAEMON_SET_SPEC)),
        (3, "status", F::Msg(&DAEMON_SET_STATUS)),
    ],
};
