//! discovery.k8s.io/v1 EndpointSlice.

use super::core::OBJECT_REF;
use super::meta::OBJECT_META;
use super::schema::{Schema, F};

static ENDPOINT_CONDITIONS: Schema = Schema {
    name: "EndpointConditions",
    fields: &[
        (1, "ready", F::BoolP),
        (2, "serving", F::BoolP),
        (3, "terminating", F::BoolP),
    ],
};
static FOR_ZONE: Schema = Schema {
    name: "ForZone",
    fields: &[(1, "name", F::Str)],
};
static FOR_NODE: Schema = Schema {
    name: "ForNode",
    fields: &[(1, "name", F::Str)],
};
static ENDPOINT_HINTS: Schema = Schema {
    name: "EndpointHints",
    fields: &[
        (1, "forZones", F::RepMsg(&FOR_ZONE)),
        (2, "forNodes", F::RepMsg(&FOR_NODE)),
    ],
};
static ENDPOINT: Schema = Schema {
    name: "Endpoint",
    fields: &[
        (1, "addresses", F::RepStr),
        (2, "conditions", F::Msg(&ENDPOINT_CONDITIONS)),
        (3, "hostname", F::StrP),
        (4, "targetRef", F::Msg(&OBJECT_REF)),
        (5, "deprecatedTopology", F::MapStr),
        (6, "nodeName", F::StrP),
        (7, "zone", F::StrP),
        (8, "hints", F::Msg(&ENDPOINT_HINTS)),
    ],
};
static ENDPOINT_PORT: Schema = Schema {
    name: "EndpointPort",
    fields: &[
        (1, "name", F::StrP),
        (2, "protocol", F::StrP),
        (3, "port", F::IntP),
        (4, "appProtocol", F::StrP),
    ],
};
pub(super) static ENDPOINT_SLICE: Schema = Schema {
    name: "EndpointSlice",
    fields: &[
        (1, "metadata", F::Msg(&OBJECT_META)),
        (2, "endpoints", F::RepMsg(&ENDPOINT)),
        (3, "ports", F::RepMsg(&ENDPOINT_PORT)),
        (4, "addressType", F::Str),
    ],
};
