//! kubelet's service-account token manager (pkg/kubelet/token): the tokens of a pod's
//! projected `serviceAccountToken` sources come from the API server's TokenRequest, bound to
//! the pod, and are cached; a cached token is requested anew once it is older than 80 % of its
//! lifetime (or 24 h), minus up to 10 s of jitter, as kube's `requiresRefresh`. When a refresh
//! fails the cached token is kept while it is still valid.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, SystemTime};

use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Pod, ServiceAccount};
use kube::api::{Api, PostParams};

/// kube's `maxTTL`: no token is used for longer than a day without a refresh.
const MAX_TTL: Duration = Duration::from_secs(24 * 3600);
/// kube's `maxJitter`.
const MAX_JITTER: Duration = Duration::from_secs(10);
/// The API's default `expirationSeconds` for a projected token.
pub const DEFAULT_EXPIRATION_SECONDS: i64 = 3600;

/// What a volume looks a token up by: its audience and requested lifetime (the pod and its
/// service account are the worker's own).
pub fn key(audience: &str, expiration_seconds: i64) -> String {
    format!("{audience}|{expiration_seconds}")
}

/// Every (audience, expirationSeconds) the pod's projected volumes ask for.
pub fn requested(pod: &Pod) -> Vec<(String, i64)> {
    let mut out: Vec<(String, i64)> = pod
        .spec
        .iter()
        .flat_map(|s| s.volumes.iter().flatten())
        .filter_map(|v| v.projected.as_ref())
        .flat_map(|p| p.sources.iter().flatten())
        .filter_map(|s| s.service_account_token.as_ref())
        .map(|t| {
            (
                t.audience.clone().unwrap_or_default(),
                t.expiration_seconds.unwrap_or(DEFAULT_EXPIRATION_SECONDS),
            )
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

/// A token the API server issued.
#[derive(Debug, Clone)]
pub struct Issued {
    pub token: String,
    pub expires: SystemTime,
    /// The lifetime the server granted (it may cap what was asked).
    pub expiration_seconds: i64,
}

/// Whether `t` must be requested again at `now` (kube's `requiresRefresh`).
pub fn requires_refresh(t: &Issued, now: SystemTime, jitter: Duration) -> bool {
    let ttl = Duration::from_secs(t.expiration_seconds.max(0) as u64);
    let issued = t.expires.checked_sub(ttl).unwrap_or(SystemTime::UNIX_EPOCH);
    if now > issued + MAX_TTL.saturating_sub(jitter) {
        return true;
    }
    let early = ttl / 5 + jitter;
    now > t
        .expires
        .checked_sub(early)
        .unwrap_or(SystemTime::UNIX_EPOCH)
}

/// The cached tokens of one pod, by [`key`].
#[derive(Debug, Default)]
pub struct TokenManager {
    cache: HashMap<String, Issued>,
}

fn jitter() -> Duration {
    let mut b = [0u8; 2];
    if getrandom(&mut b) {
        MAX_JITTER.mul_f64(u16::from_le_bytes(b) as f64 / u16::MAX as f64)
    } else {
        Duration::ZERO
    }
}

fn getrandom(buf: &mut [u8]) -> bool {
    use std::io::Read;
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(buf))
        .is_ok()
}

impl TokenManager {
    /// The token for every source of `pod` (by [`key`]), fetched or refreshed as needed; a
    /// source whose token cannot be had maps to why.
    pub async fn tokens_for(
        &mut self,
        client: &kube::Client,
        pod: &Pod,
    ) -> BTreeMap<String, Result<Vec<u8>, String>> {
        let wanted = requested(pod);
        let mut out = BTreeMap::new();
        if wanted.is_empty() {
            return out;
        }
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        let sa = pod
            .spec
            .as_ref()
            .and_then(|s| s.service_account_name.clone())
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "default".into());
        let api: Api<ServiceAccount> = Api::namespaced(client.clone(), &ns);
        for (audience, seconds) in wanted {
            let k = key(&audience, seconds);
            let now = SystemTime::now();
            let fetch = self
                .cache
                .get(&k)
                .is_none_or(|t| requires_refresh(t, now, jitter()));
            if fetch {
                match request(&api, &sa, pod, &audience, seconds).await {
                    Ok(t) => {
                        tracing::info!(serviceaccount = %sa, audience = %audience, expires = ?t.expires, "service-account token issued");
                        self.cache.insert(k.clone(), t);
                    }
                    Err(e) => {
                        let usable = self.cache.get(&k).is_some_and(|t| t.expires > now);
                        tracing::warn!(serviceaccount = %sa, error = %e, keeping_cached = usable, "requesting a service-account token failed");
                        if !usable {
                            self.cache.remove(&k);
                            out.insert(
                                k,
                                Err(format!(
                                    "failed to fetch token for serviceaccount {sa:?}: {e}"
                                )),
                            );
                            continue;
                        }
                    }
                }
            }
            if let Some(t) = self.cache.get(&k) {
                out.insert(k, Ok(t.token.clone().into_bytes()));
            }
        }
        out
    }
}

async fn request(
    api: &Api<ServiceAccount>,
    sa: &str,
    pod: &Pod,
    audience: &str,
    seconds: i64,
) -> Result<Issued, String> {
    let req = TokenRequest {
        spec: TokenRequestSpec {
            audiences: if audience.is_empty() {
                Vec::new()
            } else {
                vec![audience.to_string()]
            },
            expiration_seconds: Some(seconds),
            bound_object_ref: Some(BoundObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Pod".into()),
                name: pod.metadata.name.clone(),
                uid: pod.metadata.uid.clone(),
            }),
        },
        ..Default::default()
    };
    let got = api
        .create_token_request(sa, &PostParams::default(), &req)
        .await
        .map_err(|e| e.to_string())?;
    let status = got
        .status
        .ok_or_else(|| "the TokenRequest came back without a status".to_string())?;
    if status.token.is_empty() {
        return Err("the TokenRequest came back without a token".into());
    }
    Ok(Issued {
        token: status.token,
        expires: status.expiration_timestamp.0.into(),
        expiration_seconds: got.spec.expiration_seconds.unwrap_or(seconds),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn issued_at(at: SystemTime, ttl: u64) -> Issued {
        Issued {
            token: "t".into(),
            expires: at + Duration::from_secs(ttl),
            expiration_seconds: ttl as i64,
        }
    }

    #[test]
    fn refreshes_after_eighty_percent_of_the_ttl() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let t = issued_at(t0, 3600);
        let at = |s: u64| t0 + Duration::from_secs(s);
        assert!(!requires_refresh(&t, at(0), Duration::ZERO));
        assert!(!requires_refresh(&t, at(2880), Duration::ZERO));
        assert!(requires_refresh(&t, at(2881), Duration::ZERO));
        // Jitter only makes the refresh earlier.
        assert!(requires_refresh(&t, at(2871), MAX_JITTER));
        assert!(!requires_refresh(&t, at(2869), MAX_JITTER));
    }

    #[test]
    fn long_lived_tokens_refresh_after_a_day() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let t = issued_at(t0, 7 * 24 * 3600);
        assert!(!requires_refresh(&t, t0 + MAX_TTL, Duration::ZERO));
        assert!(requires_refresh(
            &t,
            t0 + MAX_TTL + Duration::from_secs(1),
            Duration::ZERO
        ));
    }

    #[test]
    fn requested_sources_default_like_the_api() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p"},
            "spec": {"containers": [], "volumes": [
                {"name": "a", "projected": {"sources": [
                    {"serviceAccountToken": {"path": "token", "expirationSeconds": 3607}},
                    {"serviceAccountToken": {"path": "vault", "audience": "vault"}},
                ]}},
                {"name": "b", "projected": {"sources": [
                    {"serviceAccountToken": {"path": "token", "expirationSeconds": 3607}},
                ]}},
            ]},
        }))
        .unwrap();
        assert_eq!(
            requested(&pod),
            [("".to_string(), 3607), ("vault".to_string(), 3600)]
        );
        assert_eq!(key("", 3607), "|3607");
    }
}
