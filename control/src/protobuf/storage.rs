//! Storage kinds: core/v1 PersistentVolume and PersistentVolumeClaim, storage.k8s.io/v1
//! StorageClass.

use super::core::OBJECT_REF;
use super::meta::{LABEL_SELECTOR, OBJECT_META};
use super::pod::{HOST_PATH, NFS_VOLUME, NODE_SELECTOR};
use super::schema::{Schema, F};

static LOCAL_VOLUME: Schema = Schema {
    name: "LocalVolumeSource",
    fields: &[(1, "path", F::Str), (2, "fsType", F::StrP)],
};
/// The inlined volume source of a PersistentVolumeSpec: the in-tree plugins pea can mount
/// (hostPath, local, nfs); the others are refused by name.
static PERSISTENT_VOLUME_SOURCE: Schema = Schema {
    name: "PersistentVolumeSource",
    fields: &[
        (1, "gcePersistentDisk", F::No),
        (2, "awsElasticBlockStore", F::No),
        (3, "hostPath", F::Msg(&HOST_PATH)),
        (4, "glusterfs", F::No),
        (5, "nfs", F::Msg(&NFS_VOLUME)),
        (6, "rbd", F::No),
        (7, "iscsi", F::No),
        (8, "cinder", F::No),
        (9, "cephfs", F::No),
        (10, "fc", F::No),
        (11, "flocker", F::No),
        (12, "flexVolume", F::No),
        (13, "azureFile", F::No),
        (14, "vsphereVolume", F::No),
        (15, "quobyte", F::No),
        (16, "azureDisk", F::No),
        (17, "photonPersistentDisk", F::No),
        (18, "portworxVolume", F::No),
        (19, "scaleIO", F::No),
        (20, "local", F::Msg(&LOCAL_VOLUME)),
        (21, "storageos", F::No),
        (22, "csi", F::No),
    ],
};
static VOLUME_NODE_AFFINITY: Schema = Schema {
    name: "VolumeNodeAffinity",
    fields: &[(1, "required", F::Msg(&NODE_SELECTOR))],
};
static PERSISTENT_VOLUME_SPEC: Schema = Schema {
    name: "PersistentVolumeSpec",
    fields: &[
        (1, "capacity", F::MapQty),
        (
            2,
            "persistentVolumeSource",
            F::Inline(&PERSISTENT_VOLUME_SOURCE),
        ),
        (3, "accessModes", F::RepStr),
        (4, "claimRef", F::Msg(&OBJECT_REF)),
        (5, "persistentVolumeReclaimPolicy", F::Str),
        (6, "storageClassName", F::Str),
        (7, "mountOptions", F::RepStr),
        (8, "volumeMode", F::StrP),
        (9, "nodeAffinity", F::Msg(&VOLUME_NODE_AFFINITY)),
        (10, "volumeAttributesClassName", F::StrP),
    ],
};
static PERSISTENT_VOLUME_STATUS: Schema = Schema {
    name: "PersistentVolumeStatus",
    fields: &[
        (1, "phase", F::Str),
        (2, "message", F::Str),
        (3, "reason", F::Str),
        (4, "lastPhaseTransitionTime", F::Time),
    ],
};
pub(super) static PERSISTENT_VOLUME: Schema = Schema {
    name: "PersistentVolume",
    fields: &[
        (1, "metadata", F::Msg(&OBJECT_META)),
        (2, "spec", F::Msg(&PERSISTENT_VOLUME_SPEC)),
        (3, "status", F::Msg(&PERSISTENT_VOLUME_STATUS)),
    ],
};

static TYPED_LOCAL_OBJECT_REF: Schema = Schema {
    name: "TypedLocalObjectReference",
    fields: &[
        (1, "apiGroup", F::StrP),
        (2, "kind", F::Str),
        (3, "name", F::Str),
    ],
};
static TYPED_OBJECT_REF: Schema = Schema {
    name: "TypedObjectReference",
    fields: &[
        (1, "apiGroup", F::StrP),
        (2, "kind", F::Str),
        (3, "name", F::Str),
        (4, "namespace", F::StrP),
    ],
};
static VOLUME_RESOURCE_REQUIREMENTS: Schema = Schema {
    name: "VolumeResourceRequirements",
    fields: &[(1, "limits", F::MapQty), (2, "requests", F::MapQty)],
};
pub(super) static PVC_SPEC: Schema = Schema {
    name: "PersistentVolumeClaimSpec",
    fields: &[
        (1, "accessModes", F::RepStr),
        (2, "resources", F::Msg(&VOLUME_RESOURCE_REQUIREMENTS)),
        (3, "volumeName", F::Str),
        (4, "selector", F::Msg(&LABEL_SELECTOR)),
        (5, "storageClassName", F::StrP),
        (6, "volumeMode", F::StrP),
        (7, "dataSource", F::Msg(&TYPED_LOCAL_OBJECT_REF)),
        (8, "dataSourceRef", F::Msg(&TYPED_OBJECT_REF)),
        (9, "volumeAttributesClassName", F::StrP),
    ],
};
static PVC_CONDITION: Schema = Schema {
    name: "PersistentVolumeClaimCondition",
    fields: &[
        (1, "type", F::Str),
        (2, "status", F::Str),
        (3, "lastProbeTime", F::Time),
        (4, "lastTransitionTime", F::Time),
        (5, "reason", F::Str),
        (6, "message", F::Str),
    ],
};
static MODIFY_VOLUME_STATUS: Schema = Schema {
    name: "ModifyVolumeStatus",
    fields: &[
        (1, "targetVolumeAttributesClassName", F::Str),
        (2, "status", F::Str),
    ],
};
static PVC_STATUS: Schema = Schema {
    name: "PersistentVolumeClaimStatus",
    fields: &[
        (1, "phase", F::Str),
        (2, "accessModes", F::RepStr),
        (3, "capacity", F::MapQty),
        (4, "conditions", F::RepMsg(&PVC_CONDITION)),
        (5, "allocatedResources", F::MapQty),
        (7, "allocatedResourceStatuses", F::MapStr),
        (8, "currentVolumeAttributesClassName", F::StrP),
        (9, "modifyVolumeStatus", F::Msg(&MODIFY_VOLUME_STATUS)),
    ],
};
pub(super) static PERSISTENT_VOLUME_CLAIM: Schema = Schema {
    name: "PersistentVolumeClaim",
    fields: &[
        (1, "metadata", F::Msg(&OBJECT_META)),
        (2, "spec", F::Msg(&PVC_SPEC)),
        (3, "status", F::Msg(&PVC_STATUS)),
    ],
};

static TOPOLOGY_SELECTOR_REQUIREMENT: Schema = Schema {
    name: "TopologySelectorLabelRequirement",
    fields: &[(1, "key", F::Str), (2, "values", F::RepStr)],
};
static TOPOLOGY_SELECTOR_TERM: Schema = Schema {
    name: "TopologySelectorTerm",
    fields: &[(
        1,
        "matchLabelExpressions",
        F::RepMsg(&TOPOLOGY_SELECTOR_REQUIREMENT),
    )],
};
pub(super) static STORAGE_CLASS: Schema = Schema {
    name: "StorageClass",
    fields: &[
        (1, "metadata", F::Msg(&OBJECT_META)),
        (2, "provisioner", F::Str),
        (3, "parameters", F::MapStr),
        (4, "reclaimPolicy", F::StrP),
        (5, "mountOptions", F::RepStr),
        (6, "allowVolumeExpansion", F::BoolP),
        (7, "volumeBindingMode", F::StrP),
        (8, "allowedTopologies", F::RepMsg(&TOPOLOGY_SELECTOR_TERM)),
    ],
};
