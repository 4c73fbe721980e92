//! authentication.k8s.io/v1 TokenRequest, which `kubectl create token` and kubelets post to
//! serviceaccounts/NAME/token.

use super::meta::OBJECT_META;
use super::schema::{Schema, F};

static BOUND_OBJECT_REFERENCE: Schema = Schema {
    name: "BoundObjectReference",
    fields: &[
        (1, "kind", F::Str),
        (2, "apiVersion", F::Str),
        (3, "name", F::Str),
        (4, "uid", F::Str),
    ],
};
static TOKEN_REQUEST_SPEC: Schema = Schema {
    name: "TokenRequestSpec",
    fields: &[
        (1, "audiences", F::RepStr),
        (3, "boundObjectRef", F::Msg(&BOUND_OBJECT_REFERENCE)),
        (4, "expirationSeconds", F::IntP),
    ],
};
static TOKEN_REQUEST_STATUS: Schema = Schema {
    name: "TokenRequestStatus",
    fields: &[(1, "token", F::Str), (2, "expirationTimestamp", F::Time)],
};
pub(super) static TOKEN_REQUEST: Schema = Schema {
    name: "TokenRequest",
    fields: &[
        (1, "metadata", F::Msg(&OBJECT_META)),
        (2, "spec", F::Msg(&TOKEN_REQUEST_SPEC)),
        (3, "status", F::Msg(&TOKEN_REQUEST_STATUS)),
    ],
};
