//! events.k8s.io/v1 Event (what client-go's events API recorder posts).

use super::core::{EVENT_SERIES, EVENT_SOURCE, OBJECT_REF};
use super::meta::OBJECT_META;
use super::schema::{Schema, F};

pub(super) static EVENT: Schema = Schema {
    name: "Event",
    fields: &[
        (1, "metadata", F::Msg(&OBJECT_META)),
        (2, "eventTime", F::MicroTime),
        (3, "series", F::Msg(&EVENT_SERIES)),
        (4, "reportingController", F::Str),
        (5, "reportingInstance", F::Str),
        (6, "action", F::Str),
        (7, "reason", F::Str),
        (8, "regarding", F::Msg(&OBJECT_REF)),
        (9, "related", F::Msg(&OBJECT_REF)),
        (10, "note", F::Str),
        (11, "type", F::Str),
        (12, "deprecatedSource", F::Msg(&EVENT_SOURCE)),
        (13, "deprecatedFirstTimestamp", F::Time),
        (14, "deprecatedLastTimestamp", F::Time),
        (15, "deprecatedCount", F::Int),
    ],
};
