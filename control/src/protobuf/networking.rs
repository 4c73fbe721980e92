//! networking.k8s.io/v1 Ingress and IngressClass.

use super::meta::OBJECT_META;
use super::schema::{Schema, F};

static SERVICE_BACKEND_PORT: Schema = Schema {
    name: "ServiceBackendPort",
    fields: &[(1, "name", F::Str), (2, "number", F::Int)],
};
static INGRESS_SERVICE_BACKEND: Schema = Schema {
    name: "IngressServiceBackend",
    fields: &[
        (1, "name", F::Str),
        (2, "port", F::Msg(&SERVICE_BACKEND_PORT)),
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
static INGRESS_BACKEND: Schema = Schema {
    name: "IngressBackend",
    fields: &[
        (3, "resource", F::Msg(&TYPED_LOCAL_OBJECT_REF)),
        (4, "service", F::Msg(&INGRESS_SERVICE_BACKEND)),
    ],
};
static HTTP_INGRESS_PATH: Schema = Schema {
    name: "HTTPIngressPath",
    fields: &[
        (1, "path", F::Str),
        (2, "backend", F::Msg(&INGRESS_BACKEND)),
        (3, "pathType", F::StrP),
    ],
};
static HTTP_INGRESS_RULE_VALUE: Schema = Schema {
    name: "HTTPIngressRuleValue",
    fields: &[(1, "paths", F::RepMsg(&HTTP_INGRESS_PATH))],
};
static INGRESS_RULE_VALUE: Schema = Schema {
    name: "IngressRuleValue",
    fields: &[(1, "http", F::Msg(&HTTP_INGRESS_RULE_VALUE))],
};
static INGRESS_RULE: Schema = Schema {
    name: "IngressRule",
    fields: &[
        (1, "host", F::Str),
        (2, "ingressRuleValue", F::Inline(&INGRESS_RULE_VALUE)),
    ],
};
static INGRESS_TLS: Schema = Schema {
    name: "IngressTLS",
    fields: &[(1, "hosts", F::RepStr), (2, "secretName", F::Str)],
};
static INGRESS_SPEC: Schema = Schema {
    name: "IngressSpec",
    fields: &[
        (1, "defaultBackend", F::Msg(&INGRESS_BACKEND)),
        (2, "tls", F::RepMsg(&INGRESS_TLS)),
        (3, "rules", F::RepMsg(&INGRESS_RULE)),
        (4, "ingressClassName", F::StrP),
    ],
};
static INGRESS_PORT_STATUS: Schema = Schema {
    name: "IngressPortStatus",
    fields: &[
        (1, "port", F::IntP),
        (2, "protocol", F::Str),
        (3, "error", F::StrP),
    ],
};
static INGRESS_LB_INGRESS: Schema = Schema {
    name: "IngressLoadBalancerIngress",
    fields: &[
        (1, "ip", F::Str),
        (2, "hostname", F::Str),
        (4, "ports", F::RepMsg(&INGRESS_PORT_STATUS)),
    ],
};
static INGRESS_LB_STATUS: Schema = Schema {
    name: "IngressLoadBalancerStatus",
    fields: &[(1, "ingress", F::RepMsg(&INGRESS_LB_INGRESS))],
};
static INGRESS_STATUS: Schema = Schema {
    name: "IngressStatus",
    fields: &[(1, "loadBalancer", F::Msg(&INGRESS_LB_STATUS))],
};
pub(super) static INGRESS: Schema = Schema {
    name: "Ingress",
    fields: &[
        (1, "metadata", F::Msg(&OBJECT_META)),
        (2, "spec", F::Msg(&INGRESS_SPEC)),
        (3, "status", F::Msg(&INGRESS_STATUS)),
    ],
};

static INGRESS_CLASS_PARAMETERS_REFERENCE: Schema = Schema {
    name: "IngressClassParametersReference",
    fields: &[
        (1, "apiGroup", F::StrP),
        (2, "kind", F::Str),
        (3, "name", F::Str),
        (4, "scope", F::StrP),
        (5, "namespace", F::StrP),
    ],
};
static INGRESS_CLASS_SPEC: Schema = Schema {
    name: "IngressClassSpec",
    fields: &[
        (1, "controller", F::Str),
        (2, "parameters", F::Msg(&INGRESS_CLASS_PARAMETERS_REFERENCE)),
    ],
};
pub(super) static INGRESS_CLASS: Schema = Schema {
    name: "IngressClass",
    fields: &[
        (1, "metadata", F::Msg(&OBJECT_META)),
        (2, "spec", F::Msg(&INGRESS_CLASS_SPEC)),
    ],
};
