//! rbac.authorization.k8s.io/v1 (Role, ClusterRole, RoleBinding, ClusterRoleBinding:
//! `kubectl create role|clusterrole|rolebinding|clusterrolebinding`) and the review kinds of
//! authorization.k8s.io/v1 and authentication.k8s.io/v1 (`kubectl auth can-i|whoami`).

use super::meta::{LABEL_SELECTOR, OBJECT_META};
use super::schema::{Schema, F};

static POLICY_RULE: Schema = Schema {
    name: "PolicyRule",
    fields: &[
        (1, "verbs", F::RepStr),
        (2, "apiGroups", F::RepStr),
        (3, "resources", F::RepStr),
        (4, "resourceNames", F::RepStr),
        (5, "nonResourceURLs", F::RepStr),
    ],
};
static AGGREGATION_RULE: Schema = Schema {
    name: "AggregationRule",
    fields: &[(1, "clusterRoleSelectors", F::RepMsg(&LABEL_SELECTOR))],
};
pub(super) static ROLE: Schema = Schema {
    name: "Role",
    fields: &[
        (1, "metadata", F::Msg(&OBJECT_META)),
        (2, "rules", F::RepMsg(&POLICY_RULE)),
    ],
};
pub(super) static CLUSTER_ROLE: Schema = Schema {
    name: "ClusterRole",
    fields: &[
        (1, "metadata", F::Msg(&OBJECT_META)),
        (2, "rules", F::RepMsg(&POLICY_RULE)),
        (3, "aggregationRule", F::Msg(&AGGREGATION_RULE)),
    ],
};
static ROLE_REF: Schema = Schema {
    name: "RoleRef",
    fields: &[
        (1, "apiGroup", F::StrP),
        (2, "kind", F::StrP),
        (3, "name", F::StrP),
    ],
};
static SUBJECT: Schema = Schema {
    name: "Subject",
    fields: &[
        (1, "kind", F::StrP),
        (2, "apiGroup", F::Str),
        (3, "name", F::StrP),
        (4, "namespace", F::Str),
    ],
};
/// RoleBinding and ClusterRoleBinding share their numbering.
pub(super) static ROLE_BINDING: Schema = Schema {
    name: "RoleBinding",
    fields: &[
        (1, "metadata", F::Msg(&OBJECT_META)),
        (2, "subjects", F::RepMsg(&SUBJECT)),
        (3, "roleRef", F::Msg(&ROLE_REF)),
    ],
};

static RESOURCE_ATTRIBUTES: Schema = Schema {
    name: "ResourceAttributes",
    fields: &[
        (1, "namespace", F::Str),
        (2, "verb", F::Str),
        (3, "group", F::Str),
        (4, "version", F::Str),
        (5, "resource", F::Str),
        (6, "subresource", F::Str),
        (7, "name", F::Str),
        (8, "fieldSelector", F::No),
        (9, "labelSelector", F::No),
    ],
};
static NON_RESOURCE_ATTRIBUTES: Schema = Schema {
    name: "NonResourceAttributes",
    fields: &[(1, "path", F::Str), (2, "verb", F::Str)],
};
static ACCESS_REVIEW_STATUS: Schema = Schema {
    name: "SubjectAccessReviewStatus",
    fields: &[
        (1, "allowed", F::BoolP),
        (2, "reason", F::Str),
        (3, "evaluationError", F::Str),
        (4, "denied", F::Bool),
    ],
};
static SELF_ACCESS_REVIEW_SPEC: Schema = Schema {
    name: "SelfSubjectAccessReviewSpec",
    fields: &[
        (1, "resourceAttributes", F::Msg(&RESOURCE_ATTRIBUTES)),
        (2, "nonResourceAttributes", F::Msg(&NON_RESOURCE_ATTRIBUTES)),
    ],
};
pub(super) static SELF_SUBJECT_ACCESS_REVIEW: Schema = Schema {
    name: "SelfSubjectAccessReview",
    fields: &[
        (1, "metadata", F::Msg(&OBJECT_META)),
        (2, "spec", F::Msg(&SELF_ACCESS_REVIEW_SPEC)),
        (3, "status", F::Msg(&ACCESS_REVIEW_STATUS)),
    ],
};
static ACCESS_REVIEW_SPEC: Schema = Schema {
    name: "SubjectAccessReviewSpec",
    fields: &[
        (1, "resourceAttributes", F::Msg(&RESOURCE_ATTRIBUTES)),
        (2, "nonResourceAttributes", F::Msg(&NON_RESOURCE_ATTRIBUTES)),
        (3, "user", F::Str),
        (4, "groups", F::RepStr),
        (5, "extra", F::No),
        (6, "uid", F::Str),
    ],
};
/// SubjectAccessReview and LocalSubjectAccessReview share their numbering.
pub(super) static SUBJECT_ACCESS_REVIEW: Schema = Schema {
    name: "SubjectAccessReview",
    fields: &[
        (1, "metadata", F::Msg(&OBJECT_META)),
        (2, "spec", F::Msg(&ACCESS_REVIEW_SPEC)),
        (3, "status", F::Msg(&ACCESS_REVIEW_STATUS)),
    ],
};
static RULES_REVIEW_SPEC: Schema = Schema {
    name: "SelfSubjectRulesReviewSpec",
    fields: &[(1, "namespace", F::Str)],
};
static RESOURCE_RULE: Schema = Schema {
    name: "ResourceRule",
    fields: &[
        (1, "verbs", F::RepStr),
        (2, "apiGroups", F::RepStr),
        (3, "resources", F::RepStr),
        (4, "resourceNames", F::RepStr),
    ],
};
static NON_RESOURCE_RULE: Schema = Schema {
    name: "NonResourceRule",
    fields: &[(1, "verbs", F::RepStr), (2, "nonResourceURLs", F::RepStr)],
};
/// Clients send the (empty) status too: Go marshals the non-pointer struct.
static RULES_REVIEW_STATUS: Schema = Schema {
    name: "SubjectRulesReviewStatus",
    fields: &[
        (1, "resourceRules", F::RepMsg(&RESOURCE_RULE)),
        (2, "nonResourceRules", F::RepMsg(&NON_RESOURCE_RULE)),
        (3, "incomplete", F::BoolP),
        (4, "evaluationError", F::Str),
    ],
};
pub(super) static SELF_SUBJECT_RULES_REVIEW: Schema = Schema {
    name: "SelfSubjectRulesReview",
    fields: &[
        (1, "metadata", F::Msg(&OBJECT_META)),
        (2, "spec", F::Msg(&RULES_REVIEW_SPEC)),
        (3, "status", F::Msg(&RULES_REVIEW_STATUS)),
    ],
};
static USER_INFO: Schema = Schema {
    name: "UserInfo",
    fields: &[
        (1, "username", F::Str),
        (2, "uid", F::Str),
        (3, "groups", F::RepStr),
        (4, "extra", F::No),
    ],
};
static SELF_SUBJECT_REVIEW_STATUS: Schema = Schema {
    name: "SelfSubjectReviewStatus",
    fields: &[(1, "userInfo", F::Msg(&USER_INFO))],
};
pub(super) static SELF_SUBJECT_REVIEW: Schema = Schema {
    name: "SelfSubjectReview",
    fields: &[
        (1, "metadata", F::Msg(&OBJECT_META)),
        (2, "status", F::Msg(&SELF_SUBJECT_REVIEW_STATUS)),
    ],
};
