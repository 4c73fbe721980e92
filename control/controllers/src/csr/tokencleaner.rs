//! `tokencleaner` (kube's pkg/controller/bootstrap/tokencleaner.go): a bootstrap token Secret
//! (`kube-system`, type `bootstrap.kubernetes.io/token`) whose `expiration` has passed is
//! deleted (with its uid as precondition); one that expires later is looked at again then.
//! kube-controller-manager leaves it off by default and kubeadm turns it on; pea runs it with
//! `*`.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::api::{DeleteParams, Preconditions};
use kube::{Api, Client, ResourceExt};
use tracing::Instrument;

use crate::informer::{Cache, Change, Informer};
use crate::queue::{run_workers, Queue, Requeue};
use crate::Clock;

pub const NAMESPACE: &str = "kube-system";
pub const SECRET_TYPE: &str = "bootstrap.kubernetes.io/token";

#[derive(Debug, thiserror::Error)]
pub enum TokenCleanerError {
    #[error("deleting expired bootstrap token secret {name}: {source}")]
    Delete {
        name: String,
        #[source]
        source: kube::Error,
    },
}

pub struct TokenCleaner {
    client: Client,
    clock: Clock,
    informer: Arc<Informer<Secret>>,
    secrets: Arc<Cache<Secret>>,
    queue: Arc<Queue>,
}

impl std::fmt::Debug for TokenCleaner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenCleaner").finish_non_exhaustive()
    }
}

/// When a token Secret expires: `None` without (or with an unreadable) `expiration`.
pub fn expiration(secret: &Secret) -> Option<chrono::DateTime<chrono::Utc>> {
    let raw = secret.data.as_ref()?.get("expiration")?;
    let text = std::str::from_utf8(&raw.0).ok()?;
    chrono::DateTime::parse_from_rfc3339(text.trim())
        .ok()
        .map(|t| t.with_timezone(&chrono::Utc))
}

impl TokenCleaner {
    pub fn register(client: Client, clock: Clock) -> Arc<Self> {
        let informer = Informer::new(Api::<Secret>::namespaced(client.clone(), NAMESPACE));
        let c = Arc::new(Self {
            client,
            clock,
            secrets: informer.cache(),
            informer: informer.clone(),
            queue: Queue::new(),
        });
        let q = c.queue.clone();
        informer.add_handler(move |ch| {
            if let Change::Added(s) | Change::Updated { new: s, .. } = ch {
                if s.type_.as_deref() == Some(SECRET_TYPE) {
                    q.add(s.name_any());
                }
            }
        });
        c
    }

    pub async fn run(self: Arc<Self>, workers: usize) {
        tokio::spawn(self.informer.clone().run());
        self.secrets.wait_synced().await;
        let q = self.queue.clone();
        run_workers(q, workers, "tokencleaner", move |name| {
            let c = self.clone();
            async move {
                let span = tracing::debug_span!("clean_token", secret = %name);
                c.sync(&name).instrument(span).await
            }
        })
        .await;
    }

    async fn sync(&self, name: &str) -> Result<Requeue, TokenCleanerError> {
        let Some(secret) = self.secrets.get(NAMESPACE, name) else {
            return Ok(Requeue::default());
        };
        if secret.type_.as_deref() != Some(SECRET_TYPE)
            || secret.metadata.deletion_timestamp.is_some()
        {
            return Ok(Requeue::default());
        }
        let Some(expires) = expiration(&secret) else {
            return Ok(Requeue::default());
        };
        let now = self.clock.now();
        if expires > now {
            let left = (expires - now).to_std().unwrap_or(Duration::ZERO);
            return Ok(Requeue(Some(left + Duration::from_millis(100))));
        }
        let params = DeleteParams {
            preconditions: Some(Preconditions {
                uid: secret.metadata.uid.clone(),
                resource_version: None,
            }),
            ..Default::default()
        };
        match Api::<Secret>::namespaced(self.client.clone(), NAMESPACE)
            .delete(name, &params)
            .await
        {
            Ok(_) => tracing::info!(secret = %name, "deleted expired bootstrap token"),
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
            Err(source) => {
                return Err(TokenCleanerError::Delete {
                    name: name.into(),
                    source,
                })
            }
        }
        Ok(Requeue::default())
    }
}
