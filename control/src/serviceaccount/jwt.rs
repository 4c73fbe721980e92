//! Compact JWS (RFC 7515) signing and verification of service-account tokens.

use base64::Engine;
use serde::Deserialize;
use serde_json::json;

use super::claims::Claims;
use super::keys::{KeyError, PublicKey, SigningKey};

/// Longest token looked at: a service-account token is well under 2 KiB; anything far
/// larger is not one of ours and is refused before any decoding.
pub const MAX_TOKEN_LEN: usize = 16 * 1024;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum JwtError {
    #[error("malformed token: {0}")]
    Malformed(&'static str),
    #[error("token signed with an unknown key or algorithm")]
    UnknownKey,
    #[error("invalid signature")]
    BadSignature,
}

fn b64(data: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(data)
}

fn unb64(s: &str) -> Result<Vec<u8>, JwtError> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s)
        .map_err(|_| JwtError::Malformed("bad base64url"))
}

/// Signs `claims` as a compact JWS with `key` (header `alg`, `kid` as kube writes them).
pub fn sign(key: &SigningKey, claims: &Claims) -> Result<String, KeyError> {
    let header = json!({"alg": key.public.alg.name(), "kid": key.public.kid});
    let payload = serde_json::to_vec(claims).unwrap_or_default();
    let input = format!("{}.{}", b64(header.to_string().as_bytes()), b64(&payload));
    let sig = key.sign(input.as_bytes())?;
    Ok(format!("{input}.{}", b64(&sig)))
}

/// Whether `token` looks like a JWS at all (three dot-separated parts), so other bearer
/// token kinds are not sent here.
pub fn looks_like_jwt(token: &str) -> bool {
    token.len() <= MAX_TOKEN_LEN && token.split('.').count() == 3
}

#[derive(Deserialize)]
struct Header {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
}

/// Checks the signature with the key the header names (or, without a `kid`, any key of the
/// header's algorithm) and returns the decoded claims. Claims are not checked here.
pub fn verify(keys: &[PublicKey], token: &str) -> Result<Claims, JwtError> {
    serde_json::from_slice(&verify_payload(keys, token)?)
        .map_err(|_| JwtError::Malformed("bad claims"))
}

/// [`verify`] without decoding the claims: the payload's bytes (legacy tokens carry other
/// claims).
pub fn verify_payload(keys: &[PublicKey], token: &str) -> Result<Vec<u8>, JwtError> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(JwtError::Malformed("token too long"));
    }
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(JwtError::Malformed("not three parts"));
    };
    let header: Header =
        serde_json::from_slice(&unb64(h)?).map_err(|_| JwtError::Malformed("bad header"))?;
    let sig = unb64(s)?;
    let input = &token[..h.len() + 1 + p.len()];
    let candidates = keys.iter().filter(|k| {
        k.alg.name() == header.alg && header.kid.as_ref().is_none_or(|kid| *kid == k.kid)
    });
    let mut any = false;
    for k in candidates {
        any = true;
        if k.verify(input.as_bytes(), &sig) {
            return unb64(p);
        }
    }
    Err(if any {
        JwtError::BadSignature
    } else {
        JwtError::UnknownKey
    })
}

#[cfg(test)]
mod tests {
    use super::super::claims::{Private, Ref};
    use super::*;

    fn claims() -> Claims {
        Claims {
            iss: "https://issuer".into(),
            sub: "system:serviceaccount:ns:sa".into(),
            aud: vec!["a".into()],
            exp: 2,
            iat: 1,
            nbf: 1,
            jti: "j".into(),
            kubernetes: Private {
                namespace: "ns".into(),
                serviceaccount: Ref {
                    name: "sa".into(),
                    uid: "u".into(),
                },
                pod: None,
                secret: None,
                node: None,
            },
        }
    }

    #[test]
    fn signed_tokens_verify_and_tampering_does_not() {
        let dir = tempfile::tempdir().unwrap();
        let key = SigningKey::load_or_generate(&dir.path().join("k")).unwrap();
        let other = SigningKey::load_or_generate(&dir.path().join("o")).unwrap();
        let keys = [key.public.clone()];
        let t = sign(&key, &claims()).unwrap();
        assert!(looks_like_jwt(&t));
        assert_eq!(verify(&keys, &t).unwrap(), claims());
        assert_eq!(
            verify(&[other.public], &t).unwrap_err(),
            JwtError::UnknownKey
        );
        // Same kid, payload changed: the signature no longer matches.
        let mut parts: Vec<String> = t.split('.').map(str::to_string).collect();
        let mut c = claims();
        c.sub = "system:serviceaccount:kube-system:admin".into();
        parts[1] = b64(&serde_json::to_vec(&c).unwrap());
        assert_eq!(
            verify(&keys, &parts.join(".")).unwrap_err(),
            JwtError::BadSignature
        );
        assert!(verify(&keys, "a.b").is_err());
        assert!(verify(&[key.public], &"x".repeat(MAX_TOKEN_LEN + 1)).is_err());
    }
}
