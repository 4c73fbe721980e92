//! Per-controller credentials: kube-controller-manager's `--use-service-account-credentials`.
//!
//! The controller manager itself authenticates as whatever its kubeconfig says (in pea-control:
//! `system:kube-controller-manager`): leader election and the shared informers use that
//! identity. Each controller's writes, its events too, go through a client of its own that
//! authenticates as `system:serviceaccount:kube-system:<name>` (e.g. `replicaset-controller`),
//! bound by the API server's bootstrap policy to `system:controller:<name>` and nothing more,
//! so a bug in one controller cannot write what its role does not name.
//!
//! As kube's `DynamicControllerClientBuilder`: the manager makes sure the ServiceAccount
//! exists in kube-system, asks for a token through the TokenRequest API
//! (`serviceaccounts/<name>/token`, one hour), and a background task asks for a fresh one
//! when 80% of its lifetime has passed (and re-creates the ServiceAccount if someone deleted
//! it). The token lives in memory only; each request carries the current one.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use http::header::{HeaderValue, AUTHORIZATION};
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};
use tokio::sync::Mutex;

/// Where the controllers' ServiceAccounts live.
pub const NAMESPACE: &str = "kube-system";
/// The lifetime asked for each token (kube's default for controller tokens).
pub const TOKEN_EXPIRATION_SECS: i64 = 3600;
/// How long to wait before asking again after a failed refresh.
const RETRY: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("ServiceAccount {NAMESPACE}/{name}: {source}")]
    ServiceAccount {
        name: String,
        #[source]
        source: Box<kube::Error>,
    },
    #[error("TokenRequest for ServiceAccount {NAMESPACE}/{name}: {source}")]
    TokenRequest {
        name: String,
        #[source]
        source: Box<kube::Error>,
    },
    #[error("TokenRequest for ServiceAccount {NAMESPACE}/{name} came back without a token")]
    EmptyToken { name: String },
    #[error("client for ServiceAccount {NAMESPACE}/{name}: {source}")]
    Client {
        name: String,
        #[source]
        source: Box<kube::Error>,
    },
}

/// The ServiceAccount (in kube-system) each controller of [`crate::ALL`] acts as: kube's
/// names (`kube-controller-manager`'s `names` package and the bootstrap controller policy).
pub fn service_account_of(controller: &str) -> &str {
    match controller {
        "replicaset" => "replicaset-controller",
        "replicationcontroller" => "replication-controller",
        "deployment" => "deployment-controller",
        "daemonset" => "daemon-set-controller",
        "statefulset" => "statefulset-controller",
        "cronjob" => "cronjob-controller",
        "job" => "job-controller",
        "endpoint" => "endpoint-controller",
        "endpointslice" => "endpointslice-controller",
        // kube runs node IPAM and node lifecycle under one identity.
        "nodeipam" | "nodelifecycle" => "node-controller",
        "taint-eviction-controller" => "taint-eviction-controller",
        "disruption" => "disruption-controller",
        "serviceaccount" => "service-account-controller",
        "root-ca-cert-publisher" => "root-ca-cert-publisher",
        "ttl-after-finished" => "ttl-after-finished-controller",
        "podgc" => "pod-garbage-collector",
        "horizontalpodautoscaling" => "horizontal-pod-autoscaler",
        "persistentvolume-binder" => "persistent-volume-binder",
        "local-path-provisioner" => "local-path-provisioner",
        "resourcequota" => "resourcequota-controller",
        "pvc-protection" => "pvc-protection-controller",
        "csrapproving" | "csrsigning" => "certificate-controller",
        "tokencleaner" => "token-cleaner",
        "bootstrapsigner" => "bootstrap-signer",
        other => other,
    }
}

/// The current bearer header of one ServiceAccount's token, swapped by its refresher.
type SharedHeader = Arc<RwLock<HeaderValue>>;

/// Hands each controller its client.
#[derive(Clone)]
pub struct ControllerClients {
    /// The manager's own client (leader election, informers; and every controller when
    /// service-account credentials are off).
    manager: Client,
    /// The manager's connection settings without its credentials; `None`: share `manager`.
    base: Option<kube::Config>,
    /// One client per ServiceAccount (two controllers may share one, as kube's node-controller).
    clients: Arc<Mutex<HashMap<String, Client>>>,
}

impl std::fmt::Debug for ControllerClients {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControllerClients")
            .field("service_accounts", &self.base.is_some())
            .finish_non_exhaustive()
    }
}

impl ControllerClients {
    /// Every controller uses the manager's own credentials
    /// (`--use-service-account-credentials=false`).
    pub fn shared(manager: Client) -> Self {
        Self {
            manager,
            base: None,
            clients: Arc::default(),
        }
    }

    /// Each controller authenticates as its ServiceAccount. `config` is the manager's
    /// connection (server, CA); its credentials are dropped from the controllers' clients so
    /// that only the token speaks for them.
    pub fn service_accounts(manager: Client, mut config: kube::Config) -> Self {
        config.auth_info = kube::config::AuthInfo::default();
        Self {
            manager,
            base: Some(config),
            clients: Arc::default(),
        }
    }

    /// The same settings with no clients yet: each run of the controllers (one per won lease)
    /// issues its own tokens, refreshed by tasks that end with that run.
    pub fn for_run(&self) -> Self {
        Self {
            manager: self.manager.clone(),
            base: self.base.clone(),
            clients: Arc::default(),
        }
    }

    pub fn manager(&self) -> &Client {
        &self.manager
    }

    /// The client `controller` (a name of [`crate::ALL`]) writes with. The first call per
    /// ServiceAccount gets its token and spawns its refresher into `tasks`.
    pub async fn for_controller(
        &self,
        controller: &str,
        tasks: &mut tokio::task::JoinSet<()>,
    ) -> Result<Client, IdentityError> {
        let Some(base) = &self.base else {
            return Ok(self.manager.clone());
        };
        let sa = service_account_of(controller).to_string();
        let mut clients = self.clients.lock().await;
        if let Some(c) = clients.get(&sa) {
            return Ok(c.clone());
        }
        let (token, expires) = request_token(&self.manager, &sa).await?;
        let header = Arc::new(RwLock::new(bearer(&sa, &token)?));
        let client =
            token_client(base.clone(), header.clone()).map_err(|source| IdentityError::Client {
                name: sa.clone(),
                source: Box::new(source),
            })?;
        tracing::info!(controller, service_account = %sa, %expires, "controller credentials issued");
        tasks.spawn(refresh(self.manager.clone(), sa.clone(), header, expires));
        clients.insert(sa, client.clone());
        Ok(client)
    }
}

fn bearer(sa: &str, token: &str) -> Result<HeaderValue, IdentityError> {
    let mut v = HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| {
        IdentityError::EmptyToken {
            name: sa.to_string(),
        }
    })?;
    v.set_sensitive(true);
    Ok(v)
}

/// A client of `config`'s server whose every request carries the header's current value.
fn token_client(config: kube::Config, header: SharedHeader) -> Result<Client, kube::Error> {
    let set_token =
        tower::util::MapRequestLayer::new(move |mut req: http::Request<kube::client::Body>| {
            if let Ok(h) = header.read() {
                req.headers_mut().insert(AUTHORIZATION, h.clone());
            }
            req
        });
    Ok(kube::client::ClientBuilder::try_from(config)?
        .with_layer(&set_token)
        .build())
}

/// Makes sure `kube-system/<sa>` exists and returns a fresh token for it and its expiry.
async fn request_token(
    manager: &Client,
    sa: &str,
) -> Result<(String, DateTime<Utc>), IdentityError> {
    let api: Api<ServiceAccount> = Api::namespaced(manager.clone(), NAMESPACE);
    let sa_err = |source: kube::Error| IdentityError::ServiceAccount {
        name: sa.to_string(),
        source: Box::new(source),
    };
    if api.get_opt(sa).await.map_err(sa_err)?.is_none() {
        let obj = ServiceAccount {
            metadata: ObjectMeta {
                name: Some(sa.to_string()),
                namespace: Some(NAMESPACE.to_string()),
                ..Default::default()
            },
            ..Default::default()
        };
        match api.create(&PostParams::default(), &obj).await {
            Ok(_) => {}
            Err(e) if crate::is_already_exists(&e) => {}
            Err(e) => return Err(sa_err(e)),
        }
    }
    let req = TokenRequest {
        spec: TokenRequestSpec {
            expiration_seconds: Some(TOKEN_EXPIRATION_SECS),
            ..Default::default()
        },
        ..Default::default()
    };
    let answer = api
        .create_token_request(sa, &PostParams::default(), &req)
        .await
        .map_err(|source| IdentityError::TokenRequest {
            name: sa.to_string(),
            source: Box::new(source),
        })?;
    let status = answer.status.ok_or_else(|| IdentityError::EmptyToken {
        name: sa.to_string(),
    })?;
    if status.token.is_empty() {
        return Err(IdentityError::EmptyToken {
            name: sa.to_string(),
        });
    }
    Ok((status.token, status.expiration_timestamp.0))
}

/// When to ask for the next token: once 80% of the current one's lifetime (from `now`) has
/// passed, as client-go's token refresh does; never sooner than a second from now.
pub fn refresh_after(now: DateTime<Utc>, expires: DateTime<Utc>) -> Duration {
    let left = (expires - now).num_milliseconds().max(0) as u64;
    Duration::from_millis(left * 4 / 5).max(Duration::from_secs(1))
}

/// Keeps `header` holding a valid token for `sa` until the task is aborted.
async fn refresh(manager: Client, sa: String, header: SharedHeader, mut expires: DateTime<Utc>) {
    loop {
        tokio::time::sleep(refresh_after(Utc::now(), expires)).await;
        match request_token(&manager, &sa).await {
            Ok((token, next)) => match bearer(&sa, &token) {
                Ok(v) => {
                    if let Ok(mut h) = header.write() {
                        *h = v;
                    }
                    expires = next;
                    tracing::debug!(service_account = %sa, %expires, "controller token refreshed");
                }
                Err(e) => tracing::warn!(error = %e, "controller token refresh failed"),
            },
            Err(e) => {
                // The old token may still be good for a while: retry soon, keep using it.
                tracing::warn!(error = %e, "controller token refresh failed; retrying");
                tokio::time::sleep(RETRY).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refresh_comes_at_four_fifths_of_the_lifetime() {
        let now = Utc::now();
        let hour = now + chrono::Duration::seconds(3600);
        assert_eq!(refresh_after(now, hour), Duration::from_secs(2880));
        // An expired (or nearly expired) token is renewed at once, without spinning.
        assert_eq!(
            refresh_after(now, now - chrono::Duration::seconds(5)),
            Duration::from_secs(1)
        );
    }

    #[test]
    fn every_controller_has_a_kube_service_account_name() {
        // serviceaccount-token runs with the manager's own credentials, as kube's does.
        for c in crate::ALL.iter().filter(|c| **c != "serviceaccount-token") {
            let sa = service_account_of(c);
            assert!(
                sa.ends_with("-controller")
                    || [
                        "root-ca-cert-publisher",
                        "pod-garbage-collector",
                        "horizontal-pod-autoscaler",
                        "persistent-volume-binder",
                        "local-path-provisioner",
                        "token-cleaner",
                        "bootstrap-signer",
                    ]
                    .contains(&sa),
                "{c} -> {sa}"
            );
        }
        assert_eq!(service_account_of("csrsigning"), "certificate-controller");
        assert_eq!(service_account_of("nodeipam"), "node-controller");
    }
}
