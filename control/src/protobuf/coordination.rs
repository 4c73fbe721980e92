//! coordination.k8s.io/v1 Lease (node heartbeats, leader election).

use super::meta::OBJECT_META;
use super::schema::{Schema, F};

static LEASE_SPEC: Schema = Schema {
    name: "LeaseSpec",
    fields: &[
        (1, "holderIdentity", F::StrP),
        (2, "leaseDurationSeconds", F::IntP),
        (3, "acquireTime", F::MicroTime),
        (4, "renewTime", F::MicroTime),
        (5, "leaseTransitions", F::IntP),
        (6, "strategy", F::StrP),
        (7, "preferredHolder", F::StrP),
    ],
};
pub(super) static LEASE: Schema = Schema {
    name: "Lease",
    fields: &[
        (1, "metadata", F::Msg(&OBJECT_META)),
        (2, "spec", F::Msg(&LEASE_SPEC)),
    ],
};
