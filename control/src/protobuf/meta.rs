//! apimachinery meta/v1 messages shared by every kind.

use super::schema::{Schema, F};

pub(super) static TYPE_META: Schema = Schema {
    name: "TypeMeta",
    fields: &[(1, "apiVersion", F::Str), (2, "kind", F::Str)],
};
static OWNER_REF: Schema = Schema {
    name: "OwnerReference",
    fields: &[
        (1, "kind", F::Str),
        (3, "name", F::Str),
        (4, "uid", F::Str),
        (5, "apiVersion", F::Str),
        (6, "controller", F::BoolP),
        (7, "blockOwnerDeletion", F::BoolP),
    ],
};
static MANAGED_FIELDS_ENTRY: Schema = Schema {
    name: "ManagedFieldsEntry",
    fields: &[
        (1, "manager", F::Str),
        (2, "operation", F::Str),
        (3, "apiVersion", F::Str),
        (4, "time", F::Time),
        (6, "fieldsType", F::Str),
        (7, "fieldsV1", F::FieldsV1),
        (8, "subresource", F::Str),
    ],
};
pub(super) static OBJECT_META: Schema = Schema {
    name: "ObjectMeta",
    fields: &[
        (1, "name", F::Str),
        (2, "generateName", F::Str),
        (3, "namespace", F::Str),
        (4, "selfLink", F::Str),
        (5, "uid", F::Str),
        (6, "resourceVersion", F::Str),
        (7, "generation", F::Int),
        (8, "creationTimestamp", F::Time),
        (9, "deletionTimestamp", F::Time),
        (10, "deletionGracePeriodSeconds", F::IntP),
        (11, "labels", F::MapStr),
        (12, "annotations", F::MapStr),
        (13, "ownerReferences", F::RepMsg(&OWNER_REF)),
        (14, "finalizers", F::RepStr),
        (17, "managedFields", F::RepMsg(&MANAGED_FIELDS_ENTRY)),
    ],
};
static LABEL_SELECTOR_REQUIREMENT: Schema = Schema {
    name: "LabelSelectorRequirement",
    fields: &[
        (1, "key", F::Str),
        (2, "operator", F::Str),
        (3, "values", F::RepStr),
    ],
};
pub(super) static LABEL_SELECTOR: Schema = Schema {
    name: "LabelSelector",
    fields: &[
        (1, "matchLabels", F::MapStr),
        (
            2,
            "matchExpressions",
            F::RepMsg(&LABEL_SELECTOR_REQUIREMENT),
        ),
    ],
};
/// meta/v1 Condition (and the per-kind condition messages that share its first fields are
/// listed where they are used).
pub(super) static CONDITION: Schema = Schema {
    name: "Condition",
    fields: &[
        (1, "type", F::Str),
        (2, "status", F::Str),
        (3, "observedGeneration", F::Int),
        (4, "lastTransitionTime", F::Time),
        (5, "reason", F::Str),
        (6, "message", F::Str),
    ],
};
static PRECONDITIONS: Schema = Schema {
    name: "Preconditions",
    fields: &[(1, "uid", F::StrP), (2, "resourceVersion", F::StrP)],
};
/// The body of a DELETE from client-go's typed clients (e.g. `kubectl drain`, controllers).
pub(super) static DELETE_OPTIONS: Schema = Schema {
    name: "DeleteOptions",
    fields: &[
        (1, "gracePeriodSeconds", F::IntP),
        (2, "preconditions", F::Msg(&PRECONDITIONS)),
        (3, "orphanDependents", F::BoolP),
        (4, "propagationPolicy", F::StrP),
        (5, "dryRun", F::RepStr),
        (
            6,
            "ignoreStoreReadErrorWithClusterBreakingPotential",
            F::BoolP,
        ),
    ],
};
