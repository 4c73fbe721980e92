//! Bootstrap tokens as bearer tokens (kube-apiserver's `--enable-bootstrap-token-auth`,
//! plugin/pkg/auth/authenticator/token/bootstrap): a token `ID.SECRET` (6 and 16 characters of
//! `[a-z0-9]`) is checked against the Secret `kube-system/bootstrap-token-ID` of type
//! `bootstrap.kubernetes.io/token`: its `token-id` and `token-secret` match (in constant time),
//! `usage-bootstrap-authentication` is `"true"`, it is not being deleted and its `expiration`
//! (RFC 3339) has not passed. The user is `system:bootstrap:ID` in `system:bootstrappers` and
//! the Secret's `auth-extra-groups` (each `system:bootstrappers:...`).

use std::collections::BTreeMap;

use base64::Engine;
use serde_json::Value;

use crate::api::Api;
use crate::auth::User;

pub const SECRET_TYPE: &str = "bootstrap.kubernetes.io/token";
pub const SECRET_PREFIX: &str = "bootstrap-token-";
pub const NAMESPACE: &str = "kube-system";
pub const USER_PREFIX: &str = "system:bootstrap:";
pub const GROUP: &str = "system:bootstrappers";

/// Why a token of the bootstrap shape was refused (logged; the client sees 401).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BootstrapTokenError {
    #[error("no bootstrap token secret {0} in kube-system")]
    NoSecret(String),
    #[error("secret {0} is not of type {SECRET_TYPE}")]
    WrongType(String),
    #[error("bootstrap token {0}: the secret does not match")]
    Mismatch(String),
    #[error("bootstrap token {0} is not marked usage-bootstrap-authentication")]
    NotForAuthentication(String),
    #[error("bootstrap token {0} has expired")]
    Expired(String),
    #[error("bootstrap token {0} is being deleted")]
    Deleted(String),
    #[error("bootstrap token {id}: bad {field}: {reason}")]
    Malformed {
        id: String,
        field: &'static str,
        reason: String,
    },
    #[error("reading the bootstrap token secret: {0}")]
    Read(String),
}

/// `ID.SECRET` → (ID, SECRET) when `token` has the bootstrap token shape.
pub fn parse(token: &str) -> Option<(&str, &str)> {
    let (id, secret) = token.split_once('.')?;
    let ok = |s: &str, n: usize| {
        s.len() == n
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    };
    (ok(id, 6) && ok(secret, 16)).then_some((id, secret))
}

/// Checks `token`; `None` when it is not a bootstrap token at all (other authenticators then
/// have their say).
pub async fn authenticate(api: &Api, token: &str) -> Option<Result<User, BootstrapTokenError>> {
    let (id, secret) = parse(token)?;
    let name = format!("{SECRET_PREFIX}{id}");
    let found = crate::serviceaccount::get_core(api, "secrets", Some(NAMESPACE), &name).await;
    Some(match found {
        Ok(Some(s)) => check(&s, id, secret, (api.clock)()),
        Ok(None) => Err(BootstrapTokenError::NoSecret(name)),
        Err(e) => Err(BootstrapTokenError::Read(e.to_string())),
    })
}

fn data(secret: &Value, key: &str) -> Option<String> {
    let b64 = secret.pointer(&format!("/data/{key}"))?.as_str()?;
    let raw = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
    String::from_utf8(raw).ok()
}

/// Constant-time equality (the secret half must not leak through timing).
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// The expiry of a token Secret (`None`: it never expires); an unparseable one is an error.
pub fn expiration(
    secret: &Value,
    id: &str,
) -> Result<Option<std::time::SystemTime>, BootstrapTokenError> {
    match data(secret, "expiration") {
        None => Ok(None),
        Some(e) => {
            crate::objects::parse_time(&e)
                .map(Some)
                .ok_or_else(|| BootstrapTokenError::Malformed {
                    id: id.into(),
                    field: "expiration",
                    reason: format!("{e:?} is not an RFC 3339 time"),
                })
        }
    }
}

/// The checks of one Secret against the presented `id` and `secret` at `now`.
pub fn check(
    s: &Value,
    id: &str,
    secret: &str,
    now: std::time::SystemTime,
) -> Result<User, BootstrapTokenError> {
    let name = crate::objects::name_of(s).to_string();
    if s.get("type").and_then(Value::as_str) != Some(SECRET_TYPE) {
        return Err(BootstrapTokenError::WrongType(name));
    }
    if s.pointer("/metadata/deletionTimestamp")
        .is_some_and(|v| !v.is_null())
    {
        return Err(BootstrapTokenError::Deleted(id.into()));
    }
    let stored_id = data(s, "token-id").unwrap_or_default();
    let stored_secret = data(s, "token-secret").unwrap_or_default();
    if stored_id != id || !same(&stored_secret, secret) {
        return Err(BootstrapTokenError::Mismatch(id.into()));
    }
    if expiration(s, id)?.is_some_and(|e| e <= now) {
        return Err(BootstrapTokenError::Expired(id.into()));
    }
    if data(s, "usage-bootstrap-authentication").as_deref() != Some("true") {
        return Err(BootstrapTokenError::NotForAuthentication(id.into()));
    }
    let mut groups = vec![GROUP.to_string()];
    for g in data(s, "auth-extra-groups")
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|g| !g.is_empty())
    {
        if !g.starts_with("system:bootstrappers:") {
            return Err(BootstrapTokenError::Malformed {
                id: id.into(),
                field: "auth-extra-groups",
                reason: format!("{g:?} does not start with system:bootstrappers:"),
            });
        }
        if !groups.iter().any(|x| x == g) {
            groups.push(g.to_string());
        }
    }
    Ok(User {
        name: format!("{USER_PREFIX}{id}"),
        groups,
        uid: String::new(),
        extra: BTreeMap::new(),
    })
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use serde_json::json;

    use super::*;

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    fn secret(expiration: Option<&str>, extra: &str) -> Value {
        let mut data = json!({
            "token-id": b64("abcdef"), "token-secret": b64("0123456789abcdef"),
            "usage-bootstrap-authentication": b64("true"),
            "auth-extra-groups": b64(extra),
        });
        if let Some(e) = expiration {
            data["expiration"] = json!(b64(e));
        }
        json!({"metadata": {"name": "bootstrap-token-abcdef"}, "type": SECRET_TYPE, "data": data})
    }

    #[test]
    fn tokens_are_checked_like_kube() {
        assert_eq!(
            parse("abcdef.0123456789abcdef"),
            Some(("abcdef", "0123456789abcdef"))
        );
        assert_eq!(parse("ABCDEF.0123456789abcdef"), None);
        assert_eq!(parse("abcdef.0123"), None);
        assert_eq!(parse("eyJhbGciOi.x.y"), None);
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(2_000_000_000);
        let u = check(
            &secret(None, "system:bootstrappers:kubeadm:default-node-token"),
            "abcdef",
            "0123456789abcdef",
            now,
        )
        .unwrap();
        assert_eq!(u.name, "system:bootstrap:abcdef");
        assert_eq!(
            u.groups,
            [
                "system:bootstrappers",
                "system:bootstrappers:kubeadm:default-node-token"
            ]
        );
        let s = secret(None, "");
        assert_eq!(
            check(&s, "abcdef", "0123456789abcdeX", now),
            Err(BootstrapTokenError::Mismatch("abcdef".into()))
        );
        let old = secret(Some("2020-01-01T00:00:00Z"), "");
        assert_eq!(
            check(&old, "abcdef", "0123456789abcdef", now),
            Err(BootstrapTokenError::Expired("abcdef".into()))
        );
        let future = secret(Some("2099-01-01T00:00:00Z"), "");
        assert!(check(&future, "abcdef", "0123456789abcdef", now).is_ok());
        assert!(matches!(
            check(&secret(None, "admins"), "abcdef", "0123456789abcdef", now),
            Err(BootstrapTokenError::Malformed { .. })
        ));
        let mut not_auth = secret(None, "");
        not_auth["data"]["usage-bootstrap-authentication"] = json!(b64("false"));
        assert!(matches!(
            check(&not_auth, "abcdef", "0123456789abcdef", now),
            Err(BootstrapTokenError::NotForAuthentication(_))
        ));
        let mut opaque = secret(None, "");
        opaque["type"] = json!("Opaque");
        assert!(matches!(
            check(&opaque, "abcdef", "0123456789abcdef", now),
            Err(BootstrapTokenError::WrongType(_))
        ));
    }
}
