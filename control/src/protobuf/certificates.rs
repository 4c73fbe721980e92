//! certificates.k8s.io/v1 CertificateSigningRequest (`kubectl certificate approve|deny`, the
//! kubelet's TLS bootstrap through client-go send it as protobuf).

use super::meta::OBJECT_META;
use super::schema::{Schema, F};

static CSR_SPEC: Schema = Schema {
    name: "CertificateSigningRequestSpec",
    fields: &[
        (1, "request", F::Bytes),
        (2, "username", F::Str),
        (3, "uid", F::Str),
        (4, "groups", F::RepStr),
        (5, "usages", F::RepStr),
        // map<string, ExtraValue>: the requestor's extras are the server's to fill anyway.
        (6, "extra", F::No),
        (7, "signerName", F::Str),
        (8, "expirationSeconds", F::IntP),
    ],
};
static CSR_CONDITION: Schema = Schema {
    name: "CertificateSigningRequestCondition",
    fields: &[
        (1, "type", F::Str),
        (2, "reason", F::Str),
        (3, "message", F::Str),
        (4, "lastUpdateTime", F::Time),
        (5, "lastTransitionTime", F::Time),
        (6, "status", F::Str),
    ],
};
static CSR_STATUS: Schema = Schema {
    name: "CertificateSigningRequestStatus",
    fields: &[
        (1, "conditions", F::RepMsg(&CSR_CONDITION)),
        (2, "certificate", F::Bytes),
    ],
};
pub(super) static CERTIFICATE_SIGNING_REQUEST: Schema = Schema {
    name: "CertificateSigningRequest",
    fields: &[
        (1, "metadata", F::Msg(&OBJECT_META)),
        (2, "spec", F::Msg(&CSR_SPEC)),
        (3, "status", F::Msg(&CSR_STATUS)),
    ],
};
