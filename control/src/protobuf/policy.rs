//! policy/v1 PodDisruptionBudget (`kubectl create poddisruptionbudget`) and the Eviction that
//! `kubectl drain` posts to pods/eviction (policy/v1, or policy/v1beta1 from older clients:
//! the same message).

use super::meta::{CONDITION, DELETE_OPTIONS, LABEL_SELECTOR, OBJECT_META};
use super::schema::{Schema, F};

static PDB_SPEC: Schema = Schema {
    name: "PodDisruptionBudgetSpec",
    fields: &[
        (1, "minAvailable", F::IntOrStr),
        (2, "selector", F::Msg(&LABEL_SELECTOR)),
        (3, "maxUnavailable", F::IntOrStr),
        (4, "unhealthyPodEvictionPolicy", F::StrP),
    ],
};
/// Status is written by the disruption controller and the eviction handler; a client sending
/// it (a status update from a typed client) gets everything but the disruptedPods map.
static PDB_STATUS: Schema = Schema {
    name: "PodDisruptionBudgetStatus",
    fields: &[
        (1, "observedGeneration", F::Int),
        (2, "disruptedPods", F::No),
        (3, "disruptionsAllowed", F::IntP),
        (4, "currentHealthy", F::IntP),
        (5, "desiredHealthy", F::IntP),
        (6, "expectedPods", F::IntP),
        (7, "conditions", F::RepMsg(&CONDITION)),
    ],
};
pub(super) static POD_DISRUPTION_BUDGET: Schema = Schema {
    name: "PodDisruptionBudget",
    fields: &[
        (1, "metadata", F::Msg(&OBJECT_META)),
        (2, "spec", F::Msg(&PDB_SPEC)),
        (3, "status", F::Msg(&PDB_STATUS)),
    ],
};
pub(super) static EVICTION: Schema = Schema {
    name: "Eviction",
    fields: &[
        (1, "metadata", F::Msg(&OBJECT_META)),
        (2, "deleteOptions", F::Msg(&DELETE_OPTIONS)),
    ],
};
