//! The root CA publisher (kube's `pkg/controller/certificates/rootcacertpublisher`): every
//! active namespace has a ConfigMap `kube-root-ca.crt` whose `ca.crt` is the cluster CA, so pods
//! can verify the API server; one changed or deleted is put back.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::PostParams;
use kube::{Api, Client, ResourceExt};
use tracing::Instrument;

use crate::informer::{Cache, Change};
use crate::queue::{run_workers, Queue, Requeue};
use crate::{is_already_exists, Informers};

pub const NAME: &str = "kube-root-ca.crt";
pub const KEY: &str = "ca.crt";
const DESCRIPTION: &str = "Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across distributions of Kubernetes clusters.";

#[derive(Debug, thiserror::Error)]
pub enum RootCaError {
    #[error("configmap {namespace}/kube-root-ca.crt: {what}: {source}")]
    Api {
        namespace: String,
        what: &'static str,
        #[source]
        source: kube::Error,
    },
}

pub struct RootCaPublisher {
    client: Client,
    ca_pem: String,
    namespaces: Arc<Cache<Namespace>>,
    configmaps: Arc<Cache<ConfigMap>>,
    queue: Arc<Queue>,
}

impl std::fmt::Debug for RootCaPublisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RootCaPublisher").finish_non_exhaustive()
    }
}

impl RootCaPublisher {
    pub fn register(informers: &Informers, client: Client, ca_pem: String) -> Arc<Self> {
        let c = Arc::new(Self {
            client,
            ca_pem,
            namespaces: informers.namespaces.cache(),
            configmaps: informers.configmaps.cache(),
            queue: Queue::new(),
        });
        let q = c.queue.clone();
        informers.namespaces.add_handler(move |ch| {
            if let Change::Added(ns) | Change::Updated { new: ns, .. } = ch {
                q.add(ns.name_any());
            }
        });
        let q = c.queue.clone();
        informers.configmaps.add_handler(move |ch| {
            if let Change::Updated { new: cm, .. } | Change::Deleted(cm) = ch {
                if cm.name_any() == NAME {
                    q.add(cm.namespace().unwrap_or_default());
                }
            }
        });
        c
    }

    pub async fn run(self: Arc<Self>, workers: usize) {
        self.namespaces.wait_synced().await;
        self.configmaps.wait_synced().await;
        let q = self.queue.clone();
        run_workers(q, workers, "root-ca-cert-publisher", move |ns| {
            let c = self.clone();
            async move {
                let span = tracing::debug_span!("sync_root_ca", namespace = %ns);
                c.sync(&ns).instrument(span).await
            }
        })
        .await;
    }

    async fn sync(&self, ns: &str) -> Result<Requeue, RootCaError> {
        let Some(namespace) = self.namespaces.get("", ns) else {
            return Ok(Requeue::default());
        };
        if namespace.metadata.deletion_timestamp.is_some() {
            return Ok(Requeue::default());
        }
        let data: BTreeMap<String, String> = [(KEY.to_string(), self.ca_pem.clone())].into();
        let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), ns);
        let err = |what| {
            move |source| RootCaError::Api {
                namespace: ns.to_string(),
                what,
                source,
            }
        };
        match self.configmaps.get(ns, NAME) {
            Some(cur) if cur.data.as_ref() == Some(&data) => {}
            Some(cur) => {
                // Someone changed it: put the CA back, keeping their labels and annotations.
                let mut next = (*cur).clone();
                next.data = Some(data);
                next.binary_data = None;
                next.annotations_mut()
                    .insert("kubernetes.io/description".into(), DESCRIPTION.into());
                api.replace(NAME, &PostParams::default(), &next)
                    .await
                    .map_err(err("updating"))?;
            }
            None => {
                let cm = ConfigMap {
                    metadata: ObjectMeta {
                        name: Some(NAME.into()),
                        namespace: Some(ns.to_string()),
                        annotations: Some(
                            [(
                                "kubernetes.io/description".to_string(),
                                DESCRIPTION.to_string(),
                            )]
                            .into(),
                        ),
                        ..Default::default()
                    },
                    data: Some(data),
                    ..Default::default()
                };
                match api.create(&PostParams::default(), &cm).await {
                    Ok(_) => {}
                    Err(e) if is_already_exists(&e) => {}
                    // A namespace being terminated refuses creations.
                    Err(kube::Error::Api(s)) if s.code == 403 => {}
                    Err(e) => return Err(err("creating")(e)),
                }
            }
        }
        Ok(Requeue::default())
    }
}
