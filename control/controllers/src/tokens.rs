//! The legacy service-account token controller (kube's `serviceaccount-token` controller,
//! `pkg/controller/serviceaccount/tokens_controller.go`): a Secret of type
//! `kubernetes.io/service-account-token` annotated `kubernetes.io/service-account.name` gets
//! its `token` (a non-expiring JWT with kube's legacy claims, signed with the service-account
//! key, `--service-account-private-key-file`), `ca.crt` and `namespace` filled in, and the
//! account's uid annotation; one whose account is gone (or has another uid) is deleted, as are
//! an account's token Secrets when it is deleted. Since kube 1.24 nothing creates such Secrets
//! on its own (and 1.32 does not): users create them; the API server accepts their tokens
//! while the Secret exists.

use std::collections::BTreeMap;
use std::sync::Arc;

use base64::Engine;
use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use k8s_openapi::ByteString;
use kube::api::{DeleteParams, PostParams};
use kube::{Api, Client, ResourceExt};
use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, RsaKeyPair};
use serde_json::json;
use tracing::Instrument;

use crate::informer::{Cache, Change, Informer};
use crate::queue::{run_workers, Queue, Requeue};
use crate::{is_conflict, is_not_found, Informers};

pub const SECRET_TYPE: &str = "kubernetes.io/service-account-token";
pub const NAME_KEY: &str = "kubernetes.io/service-account.name";
pub const UID_KEY: &str = "kubernetes.io/service-account.uid";
/// kube's legacy token issuer (`serviceaccount.LegacyIssuer`).
pub const LEGACY_ISSUER: &str = "kubernetes/serviceaccount";

#[derive(Debug, thiserror::Error)]
pub enum TokensError {
    #[error("service-account private key: {0}")]
    Key(String),
    #[error("secret {namespace}/{name}: {what}: {source}")]
    Api {
        namespace: String,
        name: String,
        what: &'static str,
        #[source]
        source: Box<kube::Error>,
    },
}

/// The key legacy tokens are signed with (ES256 for an EC P-256 key, RS256 for RSA).
pub struct TokenSigner {
    key: SignerKey,
    rng: SystemRandom,
}

enum SignerKey {
    Ec(EcdsaKeyPair),
    Rsa(RsaKeyPair),
}

impl std::fmt::Debug for TokenSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let alg = match self.key {
            SignerKey::Ec(_) => "ES256",
            SignerKey::Rsa(_) => "RS256",
        };
        f.debug_struct("TokenSigner").field("alg", &alg).finish()
    }
}

impl TokenSigner {
    /// A PKCS#8 PEM private key (what pea-control writes as `sa.key`).
    pub fn from_pem(pem: &str) -> Result<Self, TokensError> {
        let pair = rcgen::KeyPair::from_pem(pem)
            .map_err(|e| TokensError::Key(format!("no PKCS#8 PEM private key: {e}")))?;
        let der = pair.serialize_der();
        let rng = SystemRandom::new();
        let key =
            match EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &der, &rng)
            {
                Ok(k) => SignerKey::Ec(k),
                Err(_) => SignerKey::Rsa(RsaKeyPair::from_pkcs8(&der).map_err(|e| {
                    TokensError::Key(format!("neither an EC P-256 nor an RSA key: {e}"))
                })?),
            };
        Ok(Self { key, rng })
    }

    /// A compact JWS of `claims`.
    pub fn sign(&self, claims: &serde_json::Value) -> Result<String, TokensError> {
        let b64 = |d: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(d);
        let alg = match self.key {
            SignerKey::Ec(_) => "ES256",
            SignerKey::Rsa(_) => "RS256",
        };
        let input = format!(
            "{}.{}",
            b64(json!({"alg": alg}).to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        let sig = match &self.key {
            SignerKey::Ec(k) => k
                .sign(&self.rng, input.as_bytes())
                .map_err(|_| TokensError::Key("signing failed".into()))?
                .as_ref()
                .to_vec(),
            SignerKey::Rsa(k) => {
                let mut sig = vec![0; k.public().modulus_len()];
                k.sign(
                    &signature::RSA_PKCS1_SHA256,
                    &self.rng,
                    input.as_bytes(),
                    &mut sig,
                )
                .map_err(|_| TokensError::Key("signing failed".into()))?;
                sig
            }
        };
        Ok(format!("{input}.{}", b64(&sig)))
    }
}

/// kube's `LegacyClaims` for the account `sa` (uid `uid`) of the Secret `secret` in `ns`.
pub fn legacy_claims(ns: &str, sa: &str, uid: &str, secret: &str) -> serde_json::Value {
    json!({
        "iss": LEGACY_ISSUER,
        "sub": format!("system:serviceaccount:{ns}:{sa}"),
        "kubernetes.io/serviceaccount/namespace": ns,
        "kubernetes.io/serviceaccount/secret.name": secret,
        "kubernetes.io/serviceaccount/service-account.name": sa,
        "kubernetes.io/serviceaccount/service-account.uid": uid,
    })
}

pub struct TokensController {
    client: Client,
    signer: TokenSigner,
    root_ca_pem: Option<String>,
    secrets: Arc<Informer<Secret>>,
    secret_cache: Arc<Cache<Secret>>,
    accounts: Arc<Cache<ServiceAccount>>,
    queue: Arc<Queue>,
}

impl std::fmt::Debug for TokensController {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokensController").finish_non_exhaustive()
    }
}

fn is_token_secret(s: &Secret) -> bool {
    s.type_.as_deref() == Some(SECRET_TYPE)
}

fn key(s: &Secret) -> String {
    format!("{}/{}", s.namespace().unwrap_or_default(), s.name_any())
}

impl TokensController {
    /// Its own Secret informer (the shared informers have none), the shared ServiceAccounts.
    pub fn register(
        informers: &Informers,
        client: Client,
        signer: TokenSigner,
        root_ca_pem: Option<String>,
    ) -> Arc<Self> {
        let secrets = Informer::new(Api::<Secret>::all(client.clone()));
        let c = Arc::new(Self {
            client,
            signer,
            root_ca_pem,
            secret_cache: secrets.cache(),
            secrets,
            accounts: informers.serviceaccounts.cache(),
            queue: Queue::new(),
        });
        let q = c.queue.clone();
        c.secrets.add_handler(move |ch| {
            if let Change::Added(s) | Change::Updated { new: s, .. } = ch {
                if is_token_secret(s) {
                    q.add(key(s));
                }
            }
        });
        // A deleted account takes its token Secrets with it.
        let (q, cache) = (c.queue.clone(), c.secret_cache.clone());
        informers.serviceaccounts.add_handler(move |ch| {
            if let Change::Deleted(sa) = ch {
                let ns = sa.namespace().unwrap_or_default();
                for s in cache.list_namespace(&ns) {
                    if is_token_secret(&s) && s.annotations().get(NAME_KEY) == Some(&sa.name_any())
                    {
                        q.add(key(&s));
                    }
                }
            }
        });
        c
    }

    pub async fn run(self: Arc<Self>, workers: usize) {
        tokio::spawn(self.secrets.clone().run());
        self.secret_cache.wait_synced().await;
        self.accounts.wait_synced().await;
        let q = self.queue.clone();
        run_workers(q, workers, "serviceaccount-token", move |k| {
            let c = self.clone();
            async move {
                let span = tracing::debug_span!("sync_token_secret", secret = %k);
                c.sync(&k).instrument(span).await
            }
        })
        .await;
    }

    async fn sync(&self, k: &str) -> Result<Requeue, TokensError> {
        let (ns, name) = k.split_once('/').unwrap_or(("", k));
        let Some(secret) = self.secret_cache.get(ns, name) else {
            return Ok(Requeue::default());
        };
        if !is_token_secret(&secret) || secret.metadata.deletion_timestamp.is_some() {
            return Ok(Requeue::default());
        }
        let api: Api<Secret> = Api::namespaced(self.client.clone(), ns);
        let err = |what| {
            move |source: kube::Error| TokensError::Api {
                namespace: ns.to_string(),
                name: name.to_string(),
                what,
                source: Box::new(source),
            }
        };
        let annotations = secret.annotations();
        let sa_name = annotations.get(NAME_KEY).cloned().unwrap_or_default();
        let account = self.accounts.get(ns, &sa_name);
        let want_uid = annotations.get(UID_KEY).cloned();
        let live = account.as_ref().filter(|sa| {
            sa.metadata.deletion_timestamp.is_none()
                && want_uid
                    .as_deref()
                    .is_none_or(|u| sa.metadata.uid.as_deref() == Some(u))
        });
        let Some(sa) = live else {
            // kube deletes a token Secret whose account is gone (the API server refuses
            // creating one for a missing account in the first place).
            tracing::info!(secret = %k, account = %sa_name, "deleting the token secret of a missing service account");
            match api.delete(name, &DeleteParams::default()).await {
                Ok(_) => {}
                Err(e) if is_not_found(&e) => {}
                Err(e) => return Err(err("deleting")(e)),
            }
            return Ok(Requeue::default());
        };
        let uid = sa.metadata.uid.clone().unwrap_or_default();
        let data = secret.data.clone().unwrap_or_default();
        let has = |k: &str| data.get(k).is_some_and(|v| !v.0.is_empty());
        let ca_ok = match &self.root_ca_pem {
            Some(ca) => data.get("ca.crt").map(|v| v.0.as_slice()) == Some(ca.as_bytes()),
            None => true,
        };
        let has_token = has("token");
        if has_token && has("namespace") && ca_ok && want_uid.is_some() {
            return Ok(Requeue::default());
        }
        let mut next = (*secret).clone();
        let mut data: BTreeMap<String, ByteString> = data;
        if !has_token {
            let token = self.signer.sign(&legacy_claims(ns, &sa_name, &uid, name))?;
            data.insert("token".into(), ByteString(token.into_bytes()));
        }
        if let Some(ca) = &self.root_ca_pem {
            data.insert("ca.crt".into(), ByteString(ca.clone().into_bytes()));
        }
        data.insert("namespace".into(), ByteString(ns.as_bytes().to_vec()));
        next.data = Some(data);
        next.string_data = None;
        next.annotations_mut().insert(UID_KEY.into(), uid);
        match api.replace(name, &PostParams::default(), &next).await {
            Ok(_) => Ok(Requeue::default()),
            // Changed meanwhile: the informer brings the new version back here.
            Err(e) if is_conflict(&e) => Ok(Requeue::default()),
            Err(e) => Err(err("filling in the token")(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signs_legacy_claims_with_an_ec_key() {
        let pair = rcgen::KeyPair::generate().unwrap();
        let signer = TokenSigner::from_pem(&pair.serialize_pem()).unwrap();
        let claims = legacy_claims("team", "bot", "u-1", "bot-token");
        let token = signer.sign(&claims).unwrap();
        let parts: Vec<&str> = token.split('.').collect();
        assert_eq!(parts.len(), 3);
        let dec = |s: &str| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(s)
                .unwrap()
        };
        let payload: serde_json::Value = serde_json::from_slice(&dec(parts[1])).unwrap();
        assert_eq!(payload, claims);
        assert_eq!(payload["iss"], LEGACY_ISSUER);
        let public = signature::UnparsedPublicKey::new(
            &signature::ECDSA_P256_SHA256_FIXED,
            pair.public_key_raw().to_vec(),
        );
        public
            .verify(
                format!("{}.{}", parts[0], parts[1]).as_bytes(),
                &dec(parts[2]),
            )
            .expect("a valid ES256 signature");
        assert!(TokenSigner::from_pem("not a key").is_err());
    }
}
