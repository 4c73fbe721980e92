//! autoscaling/v2 HorizontalPodAutoscaler and the autoscaling/v1 Scale subresource.

use super::meta::{LABEL_SELECTOR, OBJECT_META};
use super::schema::{Schema, F};

static CROSS_VERSION_OBJECT_REF: Schema = Schema {
    name: "CrossVersionObjectReference",
    fields: &[
        (1, "kind", F::Str),
        (2, "name", F::Str),
        (3, "apiVersion", F::Str),
    ],
};
static METRIC_IDENTIFIER: Schema = Schema {
    name: "MetricIdentifier",
    fields: &[
        (1, "name", F::Str),
        (2, "selector", F::Msg(&LABEL_SELECTOR)),
    ],
};
static METRIC_TARGET: Schema = Schema {
    name: "MetricTarget",
    fields: &[
        (1, "type", F::Str),
        (2, "value", F::Qty),
        (3, "averageValue", F::Qty),
        (4, "averageUtilization", F::IntP),
    ],
};
static OBJECT_METRIC_SOURCE: Schema = Schema {
    name: "ObjectMetricSource",
    fields: &[
        (1, "describedObject", F::Msg(&CROSS_VERSION_OBJECT_REF)),
        (2, "target", F::Msg(&METRIC_TARGET)),
        (3, "metric", F::Msg(&METRIC_IDENTIFIER)),
    ],
};
static PODS_METRIC_SOURCE: Schema = Schema {
    name: "PodsMetricSource",
    fields: &[
        (1, "metric", F::Msg(&METRIC_IDENTIFIER)),
        (2, "target", F::Msg(&METRIC_TARGET)),
    ],
};
static RESOURCE_METRIC_SOURCE: Schema = Schema {
    name: "ResourceMetricSource",
    fields: &[(1, "name", F::Str), (2, "target", F::Msg(&METRIC_TARGET))],
};
static CONTAINER_RESOURCE_METRIC_SOURCE: Schema = Schema {
    name: "ContainerResourceMetricSource",
    fields: &[
        (1, "name", F::Str),
        (2, "target", F::Msg(&METRIC_TARGET)),
        (3, "container", F::Str),
    ],
};
static EXTERNAL_METRIC_SOURCE: Schema = Schema {
    name: "ExternalMetricSource",
    fields: &[
        (1, "metric", F::Msg(&METRIC_IDENTIFIER)),
        (2, "target", F::Msg(&METRIC_TARGET)),
    ],
};
static METRIC_SPEC: Schema = Schema {
    name: "MetricSpec",
    fields: &[
        (1, "type", F::Str),
        (2, "object", F::Msg(&OBJECT_METRIC_SOURCE)),
        (3, "pods", F::Msg(&PODS_METRIC_SOURCE)),
        (4, "resource", F::Msg(&RESOURCE_METRIC_SOURCE)),
        (5, "external", F::Msg(&EXTERNAL_METRIC_SOURCE)),
        (
            7,
            "containerResource",
            F::Msg(&CONTAINER_RESOURCE_METRIC_SOURCE),
        ),
    ],
};
static SCALING_POLICY: Schema = Schema {
    name: "HPAScalingPolicy",
    fields: &[
        (1, "type", F::Str),
        (2, "value", F::IntP),
        (3, "periodSeconds", F::IntP),
    ],
};
static SCALING_RULES: Schema = Schema {
    name: "HPAScalingRules",
    fields: &[
        (1, "selectPolicy", F::StrP),
        (2, "policies", F::RepMsg(&SCALING_POLICY)),
        (3, "stabilizationWindowSeconds", F::IntP),
    ],
};
static BEHAVIOR: Schema = Schema {
    name: "HorizontalPodAutoscalerBehavior",
    fields: &[
        (1, "scaleUp", F::Msg(&SCALING_RULES)),
        (2, "scaleDown", F::Msg(&SCALING_RULES)),
    ],
};
static HPA_SPEC: Schema = Schema {
    name: "HorizontalPodAutoscalerSpec",
    fields: &[
        (1, "scaleTargetRef", F::Msg(&CROSS_VERSION_OBJECT_REF)),
        (2, "minReplicas", F::IntP),
        (3, "maxReplicas", F::IntP),
        (4, "metrics", F::RepMsg(&METRIC_SPEC)),
        (5, "behavior", F::Msg(&BEHAVIOR)),
    ],
};
static METRIC_VALUE_STATUS: Schema = Schema {
    name: "MetricValueStatus",
    fields: &[
        (1, "value", F::Qty),
        (2, "averageValue", F::Qty),
        (3, "averageUtilization", F::IntP),
    ],
};
static OBJECT_METRIC_STATUS: Schema = Schema {
    name: "ObjectMetricStatus",
    fields: &[
        (1, "metric", F::Msg(&METRIC_IDENTIFIER)),
        (2, "current", F::Msg(&METRIC_VALUE_STATUS)),
        (3, "describedObject", F::Msg(&CROSS_VERSION_OBJECT_REF)),
    ],
};
static PODS_METRIC_STATUS: Schema = Schema {
    name: "PodsMetricStatus",
    fields: &[
        (1, "metric", F::Msg(&METRIC_IDENTIFIER)),
        (2, "current", F::Msg(&METRIC_VALUE_STATUS)),
    ],
};
static RESOURCE_METRIC_STATUS: Schema = Schema {
    name: "ResourceMetricStatus",
    fields: &[
        (1, "name", F::Str),
        (2, "current", F::Msg(&METRIC_VALUE_STATUS)),
    ],
};
static CONTAINER_RESOURCE_METRIC_STATUS: Schema = Schema {
    name: "ContainerResourceMetricStatus",
    fields: &[
        (1, "name", F::Str),
        (2, "current", F::Msg(&METRIC_VALUE_STATUS)),
        (3, "container", F::Str),
    ],
};
static EXTERNAL_METRIC_STATUS: Schema = Schema {
    name: "ExternalMetricStatus",
    fields: &[
        (1, "metric", F::Msg(&METRIC_IDENTIFIER)),
        (2, "current", F::Msg(&METRIC_VALUE_STATUS)),
    ],
};
static METRIC_STATUS: Schema = Schema {
    name: "MetricStatus",
    fields: &[
        (1, "type", F::Str),
        (2, "object", F::Msg(&OBJECT_METRIC_STATUS)),
        (3, "pods", F::Msg(&PODS_METRIC_STATUS)),
        (4, "resource", F::Msg(&RESOURCE_METRIC_STATUS)),
        (5, "external", F::Msg(&EXTERNAL_METRIC_STATUS)),
        (
            7,
            "containerResource",
            F::Msg(&CONTAINER_RESOURCE_METRIC_STATUS),
        ),
    ],
};
static HPA_CONDITION: Schema = Schema {
    name: "HorizontalPodAutoscalerCondition",
    fields: &[
        (1, "type", F::Str),
        (2, "status", F::Str),
        (3, "lastTransitionTime", F::Time),
        (4, "reason", F::Str),
        (5, "message", F::Str),
    ],
};
static HPA_STATUS: Schema = Schema {
    name: "HorizontalPodAutoscalerStatus",
    fields: &[
        (1, "observedGeneration", F::IntP),
        (2, "lastScaleTime", F::Time),
        (3, "currentReplicas", F::Int),
        (4, "desiredReplicas", F::IntP),
        (5, "currentMetrics", F::RepMsg(&METRIC_STATUS)),
        (6, "conditions", F::RepMsg(&HPA_CONDITION)),
    ],
};
pub(super) static HORIZONTAL_POD_AUTOSCALER: Schema = Schema {
    name: "HorizontalPodAutoscaler",
    fields: &[
        (1, "metadata", F::Msg(&OBJECT_META)),
        (2, "spec", F::Msg(&HPA_SPEC)),
        (3, "status", F::Msg(&HPA_STATUS)),
    ],
};

// --- autoscaling/v1 HorizontalPodAutoscaler (what `kubectl autoscale` posts) ---
static HPA_V1_SPEC: Schema = Schema {
    name: "HorizontalPodAutoscalerSpec",
    fields: &[
        (1, "scaleTargetRef", F::Msg(&CROSS_VERSION_OBJECT_REF)),
        (2, "minReplicas", F::IntP),
        (3, "maxReplicas", F::IntP),
        (4, "targetCPUUtilizationPercentage", F::IntP),
    ],
};
static HPA_V1_STATUS: Schema = Schema {
    name: "HorizontalPodAutoscalerStatus",
    fields: &[
        (1, "observedGeneration", F::IntP),
        (2, "lastScaleTime", F::Time),
        (3, "currentReplicas", F::IntP),
        (4, "desiredReplicas", F::IntP),
        (5, "currentCPUUtilizationPercentage", F::IntP),
    ],
};
pub(super) static HORIZONTAL_POD_AUTOSCALER_V1: Schema = Schema {
    name: "HorizontalPodAutoscaler",
    fields: &[
        (1, "metadata", F::Msg(&OBJECT_META)),
        (2, "spec", F::Msg(&HPA_V1_SPEC)),
        (3, "status", F::Msg(&HPA_V1_STATUS)),
    ],
};

// --- autoscaling/v1 Scale (the scale subresource) ---
static SCALE_SPEC: Schema = Schema {
    name: "ScaleSpec",
    fields: &[(1, "replicas", F::Int)],
};
static SCALE_STATUS: Schema = Schema {
    name: "ScaleStatus",
    fields: &[(1, "replicas", F::IntP), (2, "selector", F::Str)],
};
pub(super) static SCALE: Schema = Schema {
    name: "Scale",
    fields: &[
        (1, "metadata", F::Msg(&OBJECT_META)),
        (2, "spec", F::Msg(&SCALE_SPEC)),
        (3, "status", F::Msg(&SCALE_STATUS)),
    ],
};
