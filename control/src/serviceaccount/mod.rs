//! Service-account tokens, as kube-apiserver issues and checks them: the signing key
//! ([`keys`]), signed JWTs ([`jwt`]) with kube's claims ([`claims`]), the TokenRequest
//! subresource ([`token_request`]), bearer-token authentication with kube's liveness checks
//! ([`authenticate`]), OIDC discovery ([`oidc`]) and the ServiceAccount admission plugin
//! ([`admission`]).

pub mod admission;
pub mod authenticate;
pub mod claims;
pub mod jwt;
pub mod keys;
pub mod legacy;
pub mod oidc;
pub mod token_cache;
pub mod token_request;

use std::path::{Path, PathBuf};

use serde::Deserialize;

pub use keys::KeyError;

/// kube-apiserver's `--service-account-issuer` default in kubeadm clusters.
pub const DEFAULT_ISSUER: &str = "https://kubernetes.default.svc.cluster.local";

/// The service-account flags of kube-apiserver (part of the server's JSON config).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default, rename_all = "camelCase")]
pub struct Config {
    /// `--service-account-issuer`: the `iss` of new tokens and the only one accepted.
    pub issuer: String,
    /// `--service-account-signing-key-file`; default `<data dir>/pki/sa.key`, generated (ECDSA
    /// P-256) when missing.
    pub signing_key_file: Option<PathBuf>,
    /// `--service-account-key-file` (repeatable): public keys tokens may also be signed with
    /// (key rotation); the signing key's public half is always accepted.
    pub key_files: Vec<PathBuf>,
    /// `--service-account-max-token-expiration` in seconds; TokenRequests asking for longer are
    /// capped. 0: no cap beyond kube's 2^32 s.
    pub max_token_expiration_secs: u64,
    /// `--api-audiences`: a token must name one of these; empty means the issuer.
    pub api_audiences: Vec<String>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            issuer: DEFAULT_ISSUER.into(),
            signing_key_file: None,
            key_files: Vec::new(),
            max_token_expiration_secs: 0,
            api_audiences: Vec::new(),
        }
    }
}

/// The loaded keys and settings: signs new tokens, verifies presented ones.
#[derive(Debug)]
pub struct ServiceAccounts {
    pub issuer: String,
    /// What a presented token's `aud` must intersect, and the default audience of new tokens.
    pub api_audiences: Vec<String>,
    pub max_expiration_secs: Option<u64>,
    pub signing: keys::SigningKey,
    /// Every key a token may be signed with (the signing key's first).
    pub verifying: Vec<keys::PublicKey>,
    /// Whether the ServiceAccount admission plugin runs on new pods.
    pub admission: bool,
    /// Recent successful token checks (kube's 10 s token authentication cache).
    pub token_cache: token_cache::TokenCache,
}

impl ServiceAccounts {
    /// Loads (or generates, on first start) the keys; `pki_dir` holds the default key.
    pub fn load(config: &Config, pki_dir: &Path) -> Result<Self, KeyError> {
        if config.issuer.is_empty() {
            return Err(KeyError::Invalid {
                path: PathBuf::from("--service-account-issuer"),
                reason: "the issuer must not be empty".into(),
            });
        }
        let path = config
            .signing_key_file
            .clone()
            .unwrap_or_else(|| pki_dir.join("sa.key"));
        let signing = keys::SigningKey::load_or_generate(&path)?;
        let mut verifying = vec![signing.public.clone()];
        for file in &config.key_files {
            for k in keys::load_public_keys(file)? {
                if !verifying.iter().any(|v| v.kid == k.kid) {
                    verifying.push(k);
                }
            }
        }
        let api_audiences = if config.api_audiences.is_empty() {
            vec![config.issuer.clone()]
        } else {
            config.api_audiences.clone()
        };
        Ok(Self {
            issuer: config.issuer.clone(),
            api_audiences,
            max_expiration_secs: (config.max_token_expiration_secs > 0)
                .then_some(config.max_token_expiration_secs),
            signing,
            verifying,
            admission: true,
            token_cache: token_cache::TokenCache::default(),
        })
    }
}

/// Reads a core/v1 object (`plural` in namespace `ns`, or cluster-scoped) from the store.
pub(crate) async fn get_core(
    api: &crate::api::Api,
    plural: &str,
    ns: Option<&str>,
    name: &str,
) -> Result<Option<serde_json::Value>, crate::status::ApiError> {
    use crate::status::ApiError;
    let def = api
        .resources
        .find("", "v1", plural)
        .ok_or_else(|| ApiError::Internal(format!("{plural} not served")))?;
    let (kv, _) = api
        .store
        .get(&def.key(ns, name))
        .await
        .map_err(|e| ApiError::from_store(e, "", plural, name))?;
    kv.map(|kv| crate::objects::decode(&kv)).transpose()
}
