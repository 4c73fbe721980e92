//! Events (core/v1, what `kubectl describe` lists) recorded by the controllers, as client-go's
//! event broadcaster: recording never blocks a sync — events go through a bounded queue to one
//! writer task and are dropped when it is full or the write fails.
//!
//! As client-go's event correlator (`event_correlator.rs`), an event repeating one already
//! written (same object, type, reason, message and source) bumps the existing object's `count`
//! and `lastTimestamp` instead of making another, similar events with 10 distinct messages in
//! 10 minutes are combined into one, and a source's events about one object are rate limited
//! (25 at once, then one per 5 minutes; the rest are dropped).
//!
//! As in kube-controller-manager, where each controller makes its event broadcaster on its own
//! client, every event is written with the client of the controller that recorded it (its
//! ServiceAccount under `--use-service-account-credentials`), not the manager's: the one
//! writer task only serializes the writes.

use std::sync::atomic::{AtomicI64, Ordering};

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client, Resource, ResourceExt};
use tokio::sync::mpsc;

use crate::event_correlator::{Correlator, Write};
use crate::Clock;

/// Events waiting to be written; beyond this they are dropped.
const QUEUE: usize = 1000;

#[derive(Clone)]
pub struct Recorder {
    tx: mpsc::Sender<(Event, Client)>,
    component: &'static str,
    /// Who writes this recorder's events.
    client: Client,
    clock: Clock,
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder")
            .field("component", &self.component)
            .finish_non_exhaustive()
    }
}

/// The writer half: run it on the runtime the controllers run on.
pub struct Writer {
    rx: mpsc::Receiver<(Event, Client)>,
    clock: Clock,
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writer").finish_non_exhaustive()
    }
}

/// A recorder writing as `client` (one per controller with [`Recorder::for_controller`]) and
/// the writer.
pub fn channel(client: Client, clock: Clock) -> (Recorder, Writer) {
    let (tx, rx) = mpsc::channel(QUEUE);
    (
        Recorder {
            tx,
            component: "controller-manager",
            client,
            clock: clock.clone(),
        },
        Writer { rx, clock },
    )
}

/// The last suffix handed out by [`unique_nanos`].
static LAST_NANOS: AtomicI64 = AtomicI64::new(0);

/// kube names an event `<object>.<unix nanos in hex>`; two events of one object recorded at
/// the same instant (a coarse or injected clock) would share a name and the second be refused,
/// so a suffix already used moves on by one nanosecond.
fn unique_nanos(nanos: i64) -> i64 {
    let mut last = LAST_NANOS.load(Ordering::Relaxed);
    loop {
        let next = nanos.max(last + 1);
        match LAST_NANOS.compare_exchange_weak(last, next, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return next,
            Err(seen) => last = seen,
        }
    }
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

/// What an event says of a failed call, as client-go's `%v` of the error: the API server's
/// message for a refusal, the error itself otherwise.
pub fn error_text(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => s.message.clone(),
        e => e.to_string(),
    }
}

/// kube's NamespaceTerminatingCause: controllers record no FailedCreate for it (every later
/// creation fails alike, and the namespace's events go with it).
pub fn namespace_terminating(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 403 && s.message.contains("because it is being terminated"))
}

/// How a refused pod creation is told in its FailedCreate event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailedCreate {
    /// "Error creating: <the client's error>" for every refusal (the ReplicaSet controller's).
    Always,
    /// "Error creating: <the API server's message>", and none for a terminating namespace
    /// (kube's NamespaceTerminatingCause; the Job controller's).
    UnlessNamespaceTerminating,
}

/// kube's RealPodControl.CreatePods: creates `pod` for the controller of `about` and records
/// SuccessfulCreate "Created pod: NAME" or FailedCreate "Error creating: ..." about it.
pub async fn create_pod(
    api: &Api<Pod>,
    pod: &Pod,
    events: &Recorder,
    about: ObjectReference,
    failed: FailedCreate,
) -> Result<Pod, kube::Error> {
    match api.create(&PostParams::default(), pod).await {
        Ok(p) => {
            events.normal(
                about,
                "SuccessfulCreate",
                format!("Created pod: {}", p.name_any()),
            );
            Ok(p)
        }
        Err(e) => {
            match failed {
                FailedCreate::Always => {
                    events.warning(about, "FailedCreate", format!("Error creating: {e}"))
                }
                FailedCreate::UnlessNamespaceTerminating if !namespace_terminating(&e) => events
                    .warning(
                        about,
                        "FailedCreate",
                        format!("Error creating: {}", error_text(&e)),
                    ),
                FailedCreate::UnlessNamespaceTerminating => {}
            }
            Err(e)
        }
    }
}

impl Recorder {
    /// The recorder of one controller: events from `component`, written with `client` (the
    /// controller's own).
    pub fn for_controller(&self, component: &'static str, client: &Client) -> Self {
        Self {
            component,
            client: client.clone(),
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
            unique_nanos(now.timestamp_nanos_opt().unwrap_or_default())
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
        if self.tx.try_send((ev, self.client.clone())).is_err() {
            tracing::debug!(
                component = self.component,
                "event queue full; event dropped"
            );
        }
    }
}

impl Writer {
    /// Writes the events in the order recorded, through client-go's event correlator: a
    /// repeat of an event written before is not a new object (the existing one gets `count` +
    /// 1, the new `lastTimestamp` and message, by a patch; created anew when it is gone, e.g.
    /// after the API server's event TTL), similar events are combined, and spam is dropped.
    pub async fn run(mut self) {
        let mut correlator = Correlator::new();
        while let Some((ev, client)) = self.rx.recv().await {
            let ns = ev.metadata.namespace.clone().unwrap_or_default();
            let api: Api<Event> = Api::namespaced(client, &ns);
            let ev = match correlator.correlate(ev, self.clock.now()) {
                None => {
                    tracing::debug!("event dropped by the spam filter");
                    continue;
                }
                Some(Write::Create(ev)) => ev,
                Some(Write::Repeat(ev)) => {
                    let name = ev.metadata.name.clone().unwrap_or_default();
                    let patch = serde_json::json!({
                        "count": ev.count,
                        "lastTimestamp": ev.last_timestamp,
                        "message": ev.message,
                    });
                    match api
                        .patch(&name, &PatchParams::default(), &Patch::Merge(patch))
                        .await
                    {
                        Ok(_) => continue,
                        // Gone: created again below, keeping the count.
                        Err(kube::Error::Api(e)) if e.code == 404 => ev,
                        Err(e) => {
                            tracing::debug!(error = %e, reason = ?ev.reason, "updating an event's count failed; dropped");
                            continue;
                        }
                    }
                }
            };
            match api.create(&PostParams::default(), &ev).await {
                Ok(_) => {}
                // As client-go's broadcaster: a refusal is logged, and the event not retried.
                Err(kube::Error::Api(e)) => tracing::warn!(
                    error = %e.message,
                    code = e.code,
                    reason = ?ev.reason,
                    component = ?ev.reporting_component,
                    "server rejected event (will not retry)"
                ),
                Err(e) => {
                    tracing::debug!(error = %e, reason = ?ev.reason, component = ?ev.reporting_component, "writing an event failed; dropped")
                }
            }
        }
    }
}
