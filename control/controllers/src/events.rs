//! Events (core/v1, what `kubectl describe` lists) recorded by the controllers, as client-go's
//! event broadcaster: recording never blocks a sync — events go through a bounded queue to one
//! writer task and are dropped when it is full or the write fails.

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::api::PostParams;
use kube::{Api, Client, Resource, ResourceExt};
use tokio::sync::mpsc;

use crate::Clock;

/// Events waiting to be written; beyond this they are dropped.
const QUEUE: usize = 1000;

#[derive(Debug, Clone)]
pub struct Recorder {
    tx: mpsc::Sender<Event>,
    component: &'static str,
    clock: Clock,
}

/// The writer half: run it on the runtime the controllers run on.
pub struct Writer {
    rx: mpsc::Receiver<Event>,
    client: Client,
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writer").finish_non_exhaustive()
    }
}

/// A recorder (clone it per controller with [`Recorder::for_component`]) and its writer.
pub fn channel(client: Client, clock: Clock) -> (Recorder, Writer) {
    let (tx, rx) = mpsc::channel(QUEUE);
    (
        Recorder {
            tx,
            component: "controller-manager",
            clock,
        },
        Writer { rx, client },
    )
}

/// A reference to `obj` as events carry it.
pub fn reference<K: Resource<DynamicType = ()>>(obj: &K) -> ObjectReference {
    ObjectReference {
        api_version: Some(K::api_version(&()).to_string()),
        kind: Some(K::kind(&()).to_string()),
        namespace: obj.namespace(),
        name: Some(obj.name_any()),
        uid: obj.meta().uid.clone(),
        resource_version: obj.resource_version(),
        field_path: None,
    }
}

impl Recorder {
    pub fn for_component(&self, component: &'static str) -> Self {
        Self {
            component,
            ..self.clone()
        }
    }

    pub fn normal(&self, about: ObjectReference, reason: &str, message: String) {
        self.record(about, "Normal", reason, message);
    }

    pub fn warning(&self, about: ObjectReference, reason: &str, message: String) {
        self.record(about, "Warning", reason, message);
    }

    fn record(&self, about: ObjectReference, type_: &str, reason: &str, message: String) {
        let now = self.clock.now();
        let name = format!(
            "{}.{:x}",
            about.name.as_deref().unwrap_or("object"),
            now.timestamp_nanos_opt().unwrap_or_default()
        );
        let ev = Event {
            metadata: ObjectMeta {
                name: Some(name),
                namespace: Some(about.namespace.clone().unwrap_or_else(|| "default".into())),
                ..Default::default()
            },
            involved_object: about,
            reason: Some(reason.to_string()),
            message: Some(message),
            type_: Some(type_.to_string()),
            source: Some(EventSource {
                component: Some(self.component.to_string()),
                host: None,
            }),
            first_timestamp: Some(Time(now)),
            last_timestamp: Some(Time(now)),
            count: Some(1),
            reporting_component: Some(self.component.to_string()),
            reporting_instance: Some(self.component.to_string()),
            ..Default::default()
        };
        if self.tx.try_send(ev).is_err() {
            tracing::debug!(
                component = self.component,
                "event queue full; event dropped"
            );
        }
    }
}

impl Writer {
    pub async fn run(mut self) {
        while let Some(ev) = self.rx.recv().await {
            let ns = ev.metadata.namespace.clone().unwrap_or_default();
            let api: Api<Event> = Api::namespaced(self.client.clone(), &ns);
            if let Err(e) = api.create(&PostParams::default(), &ev).await {
                tracing::debug!(error = %e, reason = ?ev.reason, "writing an event failed; dropped");
            }
        }
    }
}
