//! Service-account JWTs as bearer tokens, checked as kube's `pkg/serviceaccount/jwt.go` and
//! `claims.go` do: signature, issuer, audiences (must meet the API audiences), exp/nbf with
//! go-jose's one-minute leeway, then liveness: the service account exists with the claimed
//! uid, and a bound pod, secret or node still exists with its uid and was not deleted more
//! than the leeway ago. The user is `system:serviceaccount:NS:NAME` with kube 1.32's extras.
//! Legacy Secret-based tokens (issuer `kubernetes/serviceaccount`) go to [`super::legacy`].
//! Successes are cached for 10 s as kube-apiserver caches its token authenticators
//! ([`super::token_cache`]): a deletion rejects the token within that time, not at once.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;

use super::claims::{Claims, Ref};
use super::{get_core, ServiceAccounts};
use crate::api::Api;
use crate::auth::User;

/// go-jose's `DefaultLeeway`, which kube's validator also uses for deletions.
const LEEWAY_SECS: i64 = 60;

pub const POD_NAME_KEY: &str = "authentication.kubernetes.io/pod-name";
pub const POD_UID_KEY: &str = "authentication.kubernetes.io/pod-uid";
pub const NODE_NAME_KEY: &str = "authentication.kubernetes.io/node-name";
pub const NODE_UID_KEY: &str = "authentication.kubernetes.io/node-uid";
pub const CREDENTIAL_ID_KEY: &str = "authentication.kubernetes.io/credential-id";

/// Why a token was refused (logged; the client only sees 401 Unauthorized, as from kube).
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error(transparent)]
    Jwt(#[from] super::jwt::JwtError),
    #[error("token issuer {0:?} is not this server's")]
    Issuer(String),
    #[error("token audiences {token:?} is invalid for the target audiences {api:?}")]
    Audience {
        token: Vec<String>,
        api: Vec<String>,
    },
    #[error("service account token has expired")]
    Expired,
    #[error("service account token is not valid yet")]
    NotValidYet,
    #[error("service account token is issued in the future")]
    IssuedInTheFuture,
    #[error("{0}")]
    Liveness(String),
}

/// Checks `token` and returns its user, or why it was refused. Tokens that are not JWTs are
/// not service-account tokens: `None`.
pub async fn authenticate(api: &Api, token: &str) -> Option<Result<User, TokenError>> {
    let issuer = api.service_accounts.as_deref()?;
    if !super::jwt::looks_like_jwt(token) {
        return None;
    }
    let started = std::time::Instant::now();
    if let Some(user) = issuer.token_cache.get(token, started) {
        return Some(Ok(user));
    }
    let checked = check(api, issuer, token).await;
    if let Ok((user, ttl)) = &checked {
        issuer.token_cache.insert(token, user, *ttl, started);
    }
    Some(checked.map(|(user, _)| user))
}

/// The user, and how long the success may be cached: kube's 10 s, but never past the
/// token's expiry (with the leeway the check allows).
async fn check(
    api: &Api,
    issuer: &ServiceAccounts,
    token: &str,
) -> Result<(User, Duration), TokenError> {
    let payload = super::jwt::verify_payload(&issuer.verifying, token)?;
    #[derive(serde::Deserialize)]
    struct Issuer {
        #[serde(default)]
        iss: String,
    }
    let iss = serde_json::from_slice::<Issuer>(&payload)
        .map(|i| i.iss)
        .unwrap_or_default();
    if iss == super::legacy::ISSUER {
        let user = super::legacy::check(api, token, &payload).await?;
        return Ok((user, super::token_cache::SUCCESS_TTL));
    }
    let claims: Claims = serde_json::from_slice(&payload)
        .map_err(|_| TokenError::Jwt(super::jwt::JwtError::Malformed("bad claims")))?;
    let now = (api.clock)();
    check_claims(issuer, &claims, now)?;
    check_alive(api, &claims, now).await?;
    let left = (claims.exp + LEEWAY_SECS - unix(now)).max(0) as u64;
    let ttl = super::token_cache::SUCCESS_TTL.min(Duration::from_secs(left));
    Ok((user_of(&claims), ttl))
}

fn unix(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// The checks that need no store: issuer, audiences, times.
pub fn check_claims(
    issuer: &ServiceAccounts,
    claims: &Claims,
    now: SystemTime,
) -> Result<(), TokenError> {
    if claims.iss != issuer.issuer {
        return Err(TokenError::Issuer(claims.iss.clone()));
    }
    if !claims.aud.iter().any(|a| issuer.api_audiences.contains(a)) {
        return Err(TokenError::Audience {
            token: claims.aud.clone(),
            api: issuer.api_audiences.clone(),
        });
    }
    let now = unix(now);
    if now - LEEWAY_SECS > claims.exp {
        return Err(TokenError::Expired);
    }
    if now + LEEWAY_SECS < claims.nbf {
        return Err(TokenError::NotValidYet);
    }
    if now + LEEWAY_SECS < claims.iat {
        return Err(TokenError::IssuedInTheFuture);
    }
    Ok(())
}

/// kube's validator: the service account and any bound object still exist with the claimed
/// uids and were not deleted before `now - leeway`.
async fn check_alive(api: &Api, claims: &Claims, now: SystemTime) -> Result<(), TokenError> {
    let k = &claims.kubernetes;
    let deleted_before = unix(now) - LEEWAY_SECS;
    let check = |kind: &str, obj: Option<Value>, r: &Ref| -> Result<(), TokenError> {
        let obj = obj.ok_or_else(|| {
            TokenError::Liveness(format!(
                "{kind} {}/{} has been deleted",
                k.namespace, r.name
            ))
        })?;
        let uid = crate::objects::meta_str(&obj, "uid").unwrap_or("");
        if uid != r.uid {
            return Err(TokenError::Liveness(format!(
                "{kind} UID ({uid}) does not match claim ({})",
                r.uid
            )));
        }
        let deleted = crate::objects::meta_str(&obj, "deletionTimestamp")
            .and_then(crate::objects::parse_time)
            .map(unix);
        if deleted.is_some_and(|d| d < deleted_before) {
            return Err(TokenError::Liveness(format!(
                "{kind} {}/{} has been deleted",
                k.namespace, r.name
            )));
        }
        Ok(())
    };
    let get = |plural: &'static str, ns: Option<String>, name: String| async move {
        get_core(api, plural, ns.as_deref(), &name)
            .await
            .map_err(|e| TokenError::Liveness(format!("looking up {plural} {name}: {e}")))
    };
    let ns = Some(k.namespace.clone());
    let sa = &k.serviceaccount;
    check(
        "service account",
        get("serviceaccounts", ns.clone(), sa.name.clone()).await?,
        sa,
    )?;
    if let Some(p) = &k.pod {
        check("pod", get("pods", ns.clone(), p.name.clone()).await?, p)?;
    }
    if let Some(s) = &k.secret {
        check(
            "secret",
            get("secrets", ns.clone(), s.name.clone()).await?,
            s,
        )?;
    }
    // A node embedded beside a pod only describes it; a token bound to the node itself
    // depends on it (kube's validator checks it only then too).
    if let (Some(n), None) = (&k.node, &k.pod) {
        check("node", get("nodes", None, n.name.clone()).await?, n)?;
    }
    Ok(())
}

/// The user a valid token stands for (before [`User::authenticated`] adds the groups).
pub fn user_of(claims: &Claims) -> User {
    let k = &claims.kubernetes;
    let mut extra = BTreeMap::new();
    if let Some(p) = &k.pod {
        extra.insert(POD_NAME_KEY.to_string(), vec![p.name.clone()]);
        extra.insert(POD_UID_KEY.to_string(), vec![p.uid.clone()]);
    }
    if let Some(n) = &k.node {
        extra.insert(NODE_NAME_KEY.to_string(), vec![n.name.clone()]);
        extra.insert(NODE_UID_KEY.to_string(), vec![n.uid.clone()]);
    }
    if !claims.jti.is_empty() {
        extra.insert(
            CREDENTIAL_ID_KEY.to_string(),
            vec![format!("JTI={}", claims.jti)],
        );
    }
    User {
        name: format!(
            "{}{}:{}",
            crate::auth::SERVICE_ACCOUNT_PREFIX,
            k.namespace,
            k.serviceaccount.name
        ),
        groups: vec![
            "system:serviceaccounts".into(),
            format!("system:serviceaccounts:{}", k.namespace),
        ],
        uid: k.serviceaccount.uid.clone(),
        extra,
    }
}
