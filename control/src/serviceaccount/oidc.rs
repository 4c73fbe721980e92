//! Service-account issuer discovery, as kube-apiserver serves it: the OpenID provider
//! configuration at `/.well-known/openid-configuration` and the verification keys as a JWK
//! set at `/openid/v1/jwks` (both allowed to `system:serviceaccounts` by the bootstrap role
//! `system:service-account-issuer-discovery`).

use serde_json::{json, Value};

use super::ServiceAccounts;

pub const CONFIGURATION_PATH: &str = "/.well-known/openid-configuration";
pub const JWKS_PATH: &str = "/openid/v1/jwks";
pub const JWKS_CONTENT_TYPE: &str = "application/jwk-set+json";

/// The provider configuration; the JWKS URI is on this server's external address, as kube
/// derives it without `--service-account-jwks-uri`.
pub fn configuration(sa: &ServiceAccounts, server_address: &str) -> Value {
    let mut algs: Vec<&str> = sa.verifying.iter().map(|k| k.alg.name()).collect();
    algs.sort();
    algs.dedup();
    json!({
        "issuer": sa.issuer,
        "jwks_uri": format!("https://{server_address}{JWKS_PATH}"),
        "response_types_supported": ["id_token"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": algs,
    })
}

/// Every key tokens are verified with.
pub fn jwks(sa: &ServiceAccounts) -> Value {
    json!({"keys": sa.verifying.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>()})
}
