//! Policy kinds of namespaces and scheduling: core/v1 ResourceQuota and LimitRange,
//! scheduling.k8s.io/v1 PriorityClass (what `kubectl create quota|priorityclass` send).

use super::meta::OBJECT_META;
use super::schema::{Schema, F};

static SCOPED_RESOURCE_SELECTOR_REQUIREMENT: Schema = Schema {
    name: "ScopedResourceSelectorRequirement",
    fields: &[
        (1, "scopeName", F::Str),
        (2, "operator", F::Str),
        (3, "values", F::RepStr),
    ],
};
static SCOPE_SELECTOR: Schema = Schema {
    name: "ScopeSelector",
    fields: &[(
        1,
        "matchExpressions",
        F::RepMsg(&SCOPED_RESOURCE_SELECTOR_REQUIREMENT),
    )],
};
static RESOURCE_QUOTA_SPEC: Schema = Schema {
    name: "ResourceQuotaSpec",
    fields: &[
        (1, "hard", F::MapQty),
        (2, "scopes", F::RepStr),
        (3, "scopeSelector", F::Msg(&SCOPE_SELECTOR)),
    ],
};
static RESOURCE_QUOTA_STATUS: Schema = Schema {
    name: "ResourceQuotaStatus",
    fields: &[(1, "hard", F::MapQty), (2, "used", F::MapQty)],
};
pub(super) static RESOURCE_QUOTA: Schema = Schema {
    name: "ResourceQuota",
    fields: &[
        (1, "metadata", F::Msg(&OBJECT_META)),
        (2, "spec", F::Msg(&RESOURCE_QUOTA_SPEC)),
        (3, "status", F::Msg(&RESOURCE_QUOTA_STATUS)),
    ],
};
static LIMIT_RANGE_ITEM: Schema = Schema {
    name: "LimitRangeItem",
    fields: &[
        (1, "type", F::Str),
        (2, "max", F::MapQty),
        (3, "min", F::MapQty),
        (4, "default", F::MapQty),
        (5, "defaultRequest", F::MapQty),
        (6, "maxLimitRequestRatio", F::MapQty),
    ],
};
static LIMIT_RANGE_SPEC: Schema = Schema {
    name: "LimitRangeSpec",
    fields: &[(1, "limits", F::RepMsg(&LIMIT_RANGE_ITEM))],
};
pub(super) static LIMIT_RANGE: Schema = Schema {
    name: "LimitRange",
    fields: &[
        (1, "metadata", F::Msg(&OBJECT_META)),
        (2, "spec", F::Msg(&LIMIT_RANGE_SPEC)),
    ],
};
pub(super) static PRIORITY_CLASS: Schema = Schema {
    name: "PriorityClass",
    fields: &[
        (1, "metadata", F::Msg(&OBJECT_META)),
        (2, "value", F::IntP),
        (3, "globalDefault", F::Bool),
        (4, "description", F::Str),
        (5, "preemptionPolicy", F::StrP),
    ],
};
