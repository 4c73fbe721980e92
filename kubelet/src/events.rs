//! Events about pods and the node (core/v1, what `kubectl describe` lists), as kubelet's event
//! recorder: recording never blocks a pod worker; events go through a bounded queue to one writer
//! task and are dropped when it is full or a write fails.

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::api::PostParams;
use kube::{Api, Client};
use tokio::sync::mpsc;

const QUEUE: usize = 1000;

#[derive(Debug, Clone)]
pub struct Recorder {
    tx: mpsc::Sender<Event>,
    host: String,
}

impl Recorder {
    /// A recorder and the task that writes its events.
    pub fn start(client: Client, host: &str) -> Self {
        let (tx, mut rx) = mpsc::channel::<Event>(QUEUE);
        tokio::spawn(async move {
            while let Some(ev) = rx.recv().await {
                let ns = ev
                    .metadata
                    .namespace
                    .clone()
                    .unwrap_or_else(|| "default".into());
                let api: Api<Event> = Api::namespaced(client.clone(), &ns);
                if let Err(e) = api.create(&PostParams::default(), &ev).await {
                    tracing::debug!(error = %e, "event dropped");
                }
            }
        });
        Self {
            tx,
            host: host.to_string(),
        }
    }

    pub fn pod(&self, pod: &Pod, warning: bool, reason: &str, message: String) {
        let m = &pod.metadata;
        let r = ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Pod".into()),
            namespace: m.namespace.clone(),
            name: m.name.clone(),
            uid: m.uid.clone(),
            resource_version: m.resource_version.clone(),
            field_path: None,
        };
        self.record(r, warning, reason, message);
    }

    pub fn node(&self, name: &str, warning: bool, reason: &str, message: String) {
        let r = ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Node".into()),
            name: Some(name.into()),
            uid: Some(name.into()),
            namespace: Some("default".into()),
            ..Default::default()
        };
        self.record(r, warning, reason, message);
    }

    fn record(&self, r: ObjectReference, warning: bool, reason: &str, message: String) {
        if warning {
            tracing::warn!(object = ?r.name, reason, "{message}");
        } else {
            tracing::info!(object = ?r.name, reason, "{message}");
        }
        let now = Time(chrono::Utc::now());
        let base = r.name.clone().unwrap_or_default();
        let ev = Event {
            metadata: ObjectMeta {
                // kube names events <object>.<hex nanos>.
                name: Some(format!(
                    "{base}.{:x}",
                    chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default()
                )),
                namespace: r.namespace.clone(),
                ..Default::default()
            },
            involved_object: r,
            reason: Some(reason.into()),
            message: Some(message),
            type_: Some(if warning { "Warning" } else { "Normal" }.into()),
            first_timestamp: Some(now.clone()),
            last_timestamp: Some(now),
            count: Some(1),
            source: Some(EventSource {
                component: Some("kubelet".into()),
                host: Some(self.host.clone()),
            }),
            reporting_component: Some("kubelet".into()),
            reporting_instance: Some(self.host.clone()),
            ..Default::default()
        };
        let _ = self.tx.try_send(ev);
    }
}
