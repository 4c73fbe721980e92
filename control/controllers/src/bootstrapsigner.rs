//! `bootstrapsigner` (kube's pkg/controller/bootstrap/bootstrapsigner.go): signs the
//! kubeconfig of `kube-public/cluster-info` with every bootstrap token that may sign
//! (`usage-bootstrap-signing: "true"`, not expired), one key per token,
//! `jws-kubeconfig-<token-id>`: a detached JWS (RFC 7515 appendix F) made with HS256 and the
//! token secret as key, as kube's cluster-bootstrap `ComputeDetachedSignature`. A joining node
//! that knows a token checks the signature and so knows the cluster-info it fetched without
//! trusting the server came from a holder of that token (kubeadm's token discovery).
//! Signatures of deleted, expired or non-signing tokens are removed.
//!
//! kube-controller-manager leaves it off by default and kubeadm turns it on; pea runs it with
//! `*`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::PostParams;
use kube::{Api, Client};
use tracing::Instrument;

use crate::csr::tokencleaner::{self, SECRET_TYPE};
use crate::informer::{Cache, Change, Informer};
use crate::queue::{run_workers, Queue, Requeue};
use crate::Clock;

pub const CLUSTER_INFO_NAMESPACE: &str = "kube-public";
pub const CLUSTER_INFO: &str = "cluster-info";
/// The signed data key of cluster-info.
pub const KUBECONFIG_KEY: &str = "kubeconfig";
/// The prefix of a signature key; the token ID follows.
pub const SIGNATURE_PREFIX: &str = "jws-kubeconfig-";
/// The queue's only key: every change leads to one re-signing of cluster-info.
const KEY: &str = "kube-public/cluster-info";

#[derive(Debug, thiserror::Error)]
pub enum BootstrapSignerError {
    #[error("updating the signatures of kube-public/cluster-info: {0}")]
    Update(#[source] Box<kube::Error>),
}

/// The detached JWS of `content` made with a bootstrap token: `HEADER..SIGNATURE`, the
/// protected header `{"alg":"HS256","kid":"<id>"}` (go-jose's field order), base64url without
/// padding, the payload part left out.
pub fn detached_signature(content: &str, token_id: &str, token_secret: &str) -> String {
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let header = b64.encode(
        serde_json::json!({"alg": "HS256", "kid": token_id})
            .to_string()
            .as_bytes(),
    );
    let signing_input = format!("{header}.{}", b64.encode(content.as_bytes()));
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, token_secret.as_bytes());
    let tag = ring::hmac::sign(&key, signing_input.as_bytes());
    format!("{header}..{}", b64.encode(tag.as_ref()))
}

fn field<'a>(secret: &'a Secret, key: &str) -> Option<&'a str> {
    let raw = secret.data.as_ref()?.get(key)?;
    std::str::from_utf8(&raw.0).ok()
}

fn token_part_ok(s: &str, n: usize) -> bool {
    s.len() == n
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

/// A token that may sign: `(id, secret, expiration)`. kube's `validateSecretForSigning`: the
/// type, a well-formed ID and secret, the Secret named `bootstrap-token-<id>`,
/// `usage-bootstrap-signing` true, not expired at `now`.
pub fn signing_token(
    secret: &Secret,
    now: chrono::DateTime<chrono::Utc>,
) -> Option<(String, String, Option<chrono::DateTime<chrono::Utc>>)> {
    if secret.type_.as_deref() != Some(SECRET_TYPE) || secret.metadata.deletion_timestamp.is_some()
    {
        return None;
    }
    let id = field(secret, "token-id")?;
    let token_secret = field(secret, "token-secret")?;
    if !token_part_ok(id, 6) || !token_part_ok(token_secret, 16) {
        return None;
    }
    if secret.metadata.name.as_deref() != Some(&format!("bootstrap-token-{id}")) {
        return None;
    }
    if field(secret, "usage-bootstrap-signing") != Some("true") {
        return None;
    }
    let expires = tokencleaner::expiration(secret);
    if field(secret, "expiration").is_some() && expires.is_none_or(|e| e <= now) {
        // An unreadable expiration is treated as expired, as kube does.
        return None;
    }
    Some((id.to_string(), token_secret.to_string(), expires))
}

/// cluster-info's data with exactly the signatures of `tokens`; `None` when nothing changes.
pub fn signed_data(
    data: &BTreeMap<String, String>,
    tokens: &[(String, String)],
) -> Option<BTreeMap<String, String>> {
    let content = data.get(KUBECONFIG_KEY)?;
    let mut new: BTreeMap<String, String> = data
        .iter()
        .filter(|(k, _)| !k.starts_with(SIGNATURE_PREFIX))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    for (id, secret) in tokens {
        let key = format!("{SIGNATURE_PREFIX}{id}");
        // HS256 is deterministic: an unchanged signature is kept as it is.
        new.insert(key, detached_signature(content, id, secret));
    }
    (new != *data).then_some(new)
}

pub struct BootstrapSigner {
    client: Client,
    clock: Clock,
    secrets_informer: Arc<Informer<Secret>>,
    configmaps_informer: Arc<Informer<ConfigMap>>,
    secrets: Arc<Cache<Secret>>,
    configmaps: Arc<Cache<ConfigMap>>,
    queue: Arc<Queue>,
}

impl std::fmt::Debug for BootstrapSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BootstrapSigner").finish_non_exhaustive()
    }
}

impl BootstrapSigner {
    pub fn register(client: Client, clock: Clock) -> Arc<Self> {
        let secrets_informer = Informer::new(Api::<Secret>::namespaced(
            client.clone(),
            tokencleaner::NAMESPACE,
        ));
        let configmaps_informer = Informer::new(Api::<ConfigMap>::namespaced(
            client.clone(),
            CLUSTER_INFO_NAMESPACE,
        ));
        let c = Arc::new(Self {
            client,
            clock,
            secrets: secrets_informer.cache(),
            configmaps: configmaps_informer.cache(),
            secrets_informer: secrets_informer.clone(),
            configmaps_informer: configmaps_informer.clone(),
            queue: Queue::new(),
        });
        let q = c.queue.clone();
        secrets_informer.add_handler(move |ch| {
            let s = match ch {
                Change::Added(s) | Change::Deleted(s) | Change::Updated { new: s, .. } => s,
            };
            if s.type_.as_deref() == Some(SECRET_TYPE) {
                q.add(KEY);
            }
        });
        let q = c.queue.clone();
        configmaps_informer.add_handler(move |ch| {
            let cm = match ch {
                Change::Added(c) | Change::Deleted(c) | Change::Updated { new: c, .. } => c,
            };
            if cm.metadata.name.as_deref() == Some(CLUSTER_INFO) {
                q.add(KEY);
            }
        });
        c
    }

    pub async fn run(self: Arc<Self>) {
        tokio::spawn(self.secrets_informer.clone().run());
        tokio::spawn(self.configmaps_informer.clone().run());
        self.secrets.wait_synced().await;
        self.configmaps.wait_synced().await;
        self.queue.add(KEY);
        let q = self.queue.clone();
        // One worker: every sync rewrites the same object.
        run_workers(q, 1, "bootstrapsigner", move |_| {
            let c = self.clone();
            async move {
                let span = tracing::debug_span!("sign_cluster_info");
                c.sync().instrument(span).await
            }
        })
        .await;
    }

    async fn sync(&self) -> Result<Requeue, BootstrapSignerError> {
        let Some(cm) = self.configmaps.get(CLUSTER_INFO_NAMESPACE, CLUSTER_INFO) else {
            return Ok(Requeue::default());
        };
        let now = self.clock.now();
        let mut tokens = Vec::new();
        let mut next_expiry: Option<chrono::DateTime<chrono::Utc>> = None;
        for s in self.secrets.list_namespace(tokencleaner::NAMESPACE) {
            if let Some((id, secret, expires)) = signing_token(&s, now) {
                tokens.push((id, secret));
                if let Some(e) = expires {
                    next_expiry = Some(next_expiry.map_or(e, |n| n.min(e)));
                }
            }
        }
        // An expiring token's signature goes when it expires, even before tokencleaner runs.
        let requeue =
            Requeue(next_expiry.map(|e| {
                (e - now).to_std().unwrap_or(Duration::ZERO) + Duration::from_millis(100)
            }));
        let data = cm.data.clone().unwrap_or_default();
        let Some(new) = signed_data(&data, &tokens) else {
            return Ok(requeue);
        };
        let mut updated = (*cm).clone();
        updated.data = Some(new);
        // The informer's resourceVersion: a concurrent change makes this a 409 and a retry.
        match Api::<ConfigMap>::namespaced(self.client.clone(), CLUSTER_INFO_NAMESPACE)
            .replace(CLUSTER_INFO, &PostParams::default(), &updated)
            .await
        {
            Ok(_) => {
                tracing::info!(tokens = tokens.len(), "signed kube-public/cluster-info");
                Ok(requeue)
            }
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(Requeue::default()),
            Err(e) => Err(BootstrapSignerError::Update(Box::new(e))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::ByteString;

    fn secret(name: &str, fields: &[(&str, &str)]) -> Secret {
        Secret {
            metadata: kube::api::ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            type_: Some(SECRET_TYPE.into()),
            data: Some(
                fields
                    .iter()
                    .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
                    .collect(),
            ),
            ..Default::default()
        }
    }

    #[test]
    fn the_signature_is_a_detached_hs256_jws() {
        let sig = detached_signature("content", "abcdef", "0123456789abcdef");
        let (header, tag) = sig.split_once("..").unwrap();
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        assert_eq!(
            b64.decode(header).unwrap(),
            br#"{"alg":"HS256","kid":"abcdef"}"#
        );
        assert_eq!(b64.decode(tag).unwrap().len(), 32);
        // kube's cluster-bootstrap test vector (token/jws/jws_test.go): the same bytes.
        assert_eq!(
            detached_signature(
                "Hello from the other side. I must have called a thousand times.",
                "joshua",
                "my voice is my passcode"
            ),
            "eyJhbGciOiJIUzI1NiIsImtpZCI6Impvc2h1YSJ9..VShe2taLd-YTrmWuRkcL_8QTNDHYxQIEBsAYYiIj1_8"
        );
        // Another secret or content gives another signature.
        assert_ne!(
            sig,
            detached_signature("content", "abcdef", "0123456789abcdeX")
        );
        assert_ne!(
            sig,
            detached_signature("content2", "abcdef", "0123456789abcdef")
        );
    }

    #[test]
    fn only_valid_signing_tokens_sign_and_stale_signatures_go() {
        let now = chrono::Utc::now();
        let ok = [
            ("token-id", "abcdef"),
            ("token-secret", "0123456789abcdef"),
            ("usage-bootstrap-signing", "true"),
        ];
        assert!(signing_token(&secret("bootstrap-token-abcdef", &ok), now).is_some());
        assert!(signing_token(&secret("bootstrap-token-other0", &ok), now).is_none());
        let no_sign = [("token-id", "abcdef"), ("token-secret", "0123456789abcdef")];
        assert!(signing_token(&secret("bootstrap-token-abcdef", &no_sign), now).is_none());
        let mut expired = ok.to_vec();
        expired.push(("expiration", "2020-01-01T00:00:00Z"));
        assert!(signing_token(&secret("bootstrap-token-abcdef", &expired), now).is_none());

        let mut data = BTreeMap::from([
            ("kubeconfig".to_string(), "KC".to_string()),
            ("jws-kubeconfig-gone00".to_string(), "x..y".to_string()),
        ]);
        let tokens = vec![("abcdef".to_string(), "0123456789abcdef".to_string())];
        let new = signed_data(&data, &tokens).unwrap();
        assert_eq!(
            new.keys().collect::<Vec<_>>(),
            ["jws-kubeconfig-abcdef", "kubeconfig"]
        );
        data = new;
        assert!(signed_data(&data, &tokens).is_none(), "stable when signed");
    }
}
