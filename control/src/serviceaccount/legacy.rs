//! Legacy Secret-based service-account tokens, checked as kube's `legacyValidator`
//! (`pkg/serviceaccount/legacy.go`): a JWT with issuer `kubernetes/serviceaccount` and kube's
//! `kubernetes.io/serviceaccount/*` claims, signed with a service-account key (the
//! `serviceaccount-token` controller of pea-controllers makes them), is valid while the
//! Secret it names exists, is not being deleted, still holds exactly this token and is not
//! labelled invalid, and while the service account exists with the claimed uid. Such tokens
//! never expire.

use base64::Engine;
use serde::Deserialize;
use serde_json::Value;

use super::authenticate::TokenError;
use super::get_core;
use crate::api::Api;
use crate::auth::User;

/// kube's `LegacyIssuer`.
pub const ISSUER: &str = "kubernetes/serviceaccount";
/// Set by kube's legacy-token cleaner: a Secret so labelled no longer authenticates.
pub const INVALID_SINCE_LABEL: &str = "kubernetes.io/legacy-token-invalid-since";

#[derive(Debug, Deserialize)]
struct Claims {
    #[serde(rename = "kubernetes.io/serviceaccount/namespace", default)]
    namespace: String,
    #[serde(rename = "kubernetes.io/serviceaccount/secret.name", default)]
    secret_name: String,
    #[serde(rename = "kubernetes.io/serviceaccount/service-account.name", default)]
    service_account_name: String,
    #[serde(rename = "kubernetes.io/serviceaccount/service-account.uid", default)]
    service_account_uid: String,
}

fn invalidated(why: &str) -> TokenError {
    TokenError::Liveness(format!("Token has been invalidated: {why}"))
}

/// The user of a legacy token whose signature was checked; `payload` is its claims.
pub async fn check(api: &Api, token: &str, payload: &[u8]) -> Result<User, TokenError> {
    let c: Claims = serde_json::from_slice(payload)
        .map_err(|_| TokenError::Jwt(super::jwt::JwtError::Malformed("bad claims")))?;
    for (value, what) in [
        (&c.service_account_name, "serviceAccountName"),
        (&c.service_account_uid, "serviceAccountUID"),
        (&c.namespace, "namespace"),
        (&c.secret_name, "secretName"),
    ] {
        if value.is_empty() {
            return Err(TokenError::Liveness(format!("{what} claim is missing")));
        }
    }
    let lookup = |plural: &'static str, name: String| {
        let ns = c.namespace.clone();
        async move {
            get_core(api, plural, Some(&ns), &name)
                .await
                .map_err(|e| TokenError::Liveness(format!("looking up {plural} {name}: {e}")))
        }
    };
    let secret = lookup("secrets", c.secret_name.clone())
        .await?
        .ok_or_else(|| invalidated("its secret is gone"))?;
    if secret.pointer("/metadata/deletionTimestamp").is_some() {
        return Err(invalidated("its secret is being deleted"));
    }
    let stored = secret
        .pointer("/data/token")
        .and_then(Value::as_str)
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
        .unwrap_or_default();
    // Not secret-dependent timing worth hiding: the signature already matched one of our
    // keys, so only our own tokens get here.
    if stored != token.as_bytes() {
        return Err(TokenError::Liveness(
            "Token does not match server's copy".into(),
        ));
    }
    if secret
        .pointer("/metadata/labels")
        .and_then(|l| l.get(INVALID_SINCE_LABEL))
        .is_some()
    {
        return Err(invalidated("its secret is labelled invalid"));
    }
    let sa = lookup("serviceaccounts", c.service_account_name.clone())
        .await?
        .ok_or_else(|| invalidated("its service account is gone"))?;
    if sa.pointer("/metadata/deletionTimestamp").is_some() {
        return Err(invalidated("its service account is being deleted"));
    }
    let uid = crate::objects::meta_str(&sa, "uid").unwrap_or("");
    if uid != c.service_account_uid {
        return Err(TokenError::Liveness(format!(
            "ServiceAccount UID ({uid}) does not match claim ({})",
            c.service_account_uid
        )));
    }
    Ok(User {
        name: format!(
            "{}{}:{}",
            crate::auth::SERVICE_ACCOUNT_PREFIX,
            c.namespace,
            c.service_account_name
        ),
        groups: vec![
            "system:serviceaccounts".into(),
            format!("system:serviceaccounts:{}", c.namespace),
        ],
        uid: c.service_account_uid,
        ..User::default()
    })
}
