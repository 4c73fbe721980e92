//! The ServiceAccount controller (kube's `pkg/controller/serviceaccount`): every active
//! namespace has a `default` ServiceAccount; one deleted is created again.

use std::sync::Arc;

use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::PostParams;
use kube::{Api, Client, ResourceExt};
use tracing::Instrument;

use crate::informer::{Cache, Change};
use crate::queue::{run_workers, Queue, Requeue};
use crate::{is_already_exists, Informers};

pub const DEFAULT: &str = "default";

#[derive(Debug, thiserror::Error)]
pub enum ServiceAccountError {
    #[error("creating serviceaccount {namespace}/default: {source}")]
    Create {
        namespace: String,
        #[source]
        source: kube::Error,
    },
}

pub struct ServiceAccountController {
    client: Client,
    namespaces: Arc<Cache<Namespace>>,
    accounts: Arc<Cache<ServiceAccount>>,
    queue: Arc<Queue>,
}

impl std::fmt::Debug for ServiceAccountController {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceAccountController")
            .finish_non_exhaustive()
    }
}

fn terminating(ns: &Namespace) -> bool {
    ns.metadata.deletion_timestamp.is_some()
        || ns.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Terminating")
}

impl ServiceAccountController {
    pub fn register(informers: &Informers, client: Client) -> Arc<Self> {
        let c = Arc::new(Self {
            client,
            namespaces: informers.namespaces.cache(),
            accounts: informers.serviceaccounts.cache(),
            queue: Queue::new(),
        });
        let q = c.queue.clone();
        informers.namespaces.add_handler(move |ch| {
            if let Change::Added(ns) | Change::Updated { new: ns, .. } = ch {
                q.add(ns.name_any());
            }
        });
        let q = c.queue.clone();
        informers.serviceaccounts.add_handler(move |ch| {
            if let Change::Deleted(sa) = ch {
                if sa.name_any() == DEFAULT {
                    q.add(sa.namespace().unwrap_or_default());
                }
            }
        });
        c
    }

    pub async fn run(self: Arc<Self>, workers: usize) {
        self.namespaces.wait_synced().await;
        self.accounts.wait_synced().await;
        let q = self.queue.clone();
        run_workers(q, workers, "serviceaccount", move |ns| {
            let c = self.clone();
            async move {
                let span = tracing::debug_span!("sync_serviceaccount", namespace = %ns);
                c.sync(&ns).instrument(span).await
            }
        })
        .await;
    }

    async fn sync(&self, ns: &str) -> Result<Requeue, ServiceAccountError> {
        let Some(namespace) = self.namespaces.get("", ns) else {
            return Ok(Requeue::default());
        };
        if terminating(&namespace) || self.accounts.get(ns, DEFAULT).is_some() {
            return Ok(Requeue::default());
        }
        let sa = ServiceAccount {
            metadata: ObjectMeta {
                name: Some(DEFAULT.into()),
                namespace: Some(ns.to_string()),
                ..Default::default()
            },
            ..Default::default()
        };
        match Api::<ServiceAccount>::namespaced(self.client.clone(), ns)
            .create(&PostParams::default(), &sa)
            .await
        {
            Ok(_) => tracing::info!(namespace = %ns, "created default serviceaccount"),
            Err(e) if is_already_exists(&e) => {}
            // A namespace being terminated refuses creations (403); it needs no account.
            Err(kube::Error::Api(s)) if s.code == 403 => {}
            Err(source) => {
                return Err(ServiceAccountError::Create {
                    namespace: ns.to_string(),
                    source,
                })
            }
        }
        Ok(Requeue::default())
    }
}
