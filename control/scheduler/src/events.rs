//! The scheduler's events.k8s.io/v1 recorder (client-go's `tools/events`, which kube-scheduler
//! uses): an event repeated while its first is cached (same type, action, reason, reporting
//! controller and instance, regarding and related objects; not the note) becomes a series on
//! that first Event instead of a new object: the first repeat writes `series: {count: 2}`,
//! later ones only count in memory, and the series is written again every 30 minutes while it
//! goes on and once more when it ends (no repeat for 6 minutes), when it leaves the cache.
//!
//! The decisions ([`SeriesCache`]) do no I/O; [`run`] writes them.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::{Event, EventSeries};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::chrono::{DateTime, Utc};
use kube::api::{Api, Patch, PatchParams, PostParams};
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinSet;

/// client-go's finishTime: a series with no repeat for this long has ended.
pub const FINISH: Duration = Duration::from_secs(6 * 60);
/// client-go's refreshTime: a running series is written again this often.
pub const REFRESH: Duration = Duration::from_secs(30 * 60);
/// client-go's maxTriesPerEvent, with its 10 s between tries.
const MAX_TRIES: u32 = 12;
const RETRY_SLEEP: Duration = Duration::from_secs(10);

/// client-go's eventKey: what makes two events "isomorphic".
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    type_: String,
    action: String,
    reason: String,
    reporting_controller: String,
    reporting_instance: String,
    regarding: String,
    related: String,
}

/// An object reference as a key part (all its fields, as Go compares the struct).
fn reference_key(r: Option<&ObjectReference>) -> String {
    r.map(|r| serde_json::to_string(r).unwrap_or_default())
        .unwrap_or_default()
}

fn key_of(e: &Event) -> Key {
    let s = |v: &Option<String>| v.clone().unwrap_or_default();
    Key {
        type_: s(&e.type_),
        action: s(&e.action),
        reason: s(&e.reason),
        reporting_controller: s(&e.reporting_controller),
        reporting_instance: s(&e.reporting_instance),
        regarding: reference_key(e.regarding.as_ref()),
        related: reference_key(e.related.as_ref()),
    }
}

/// One write to the API.
#[derive(Debug, Clone, PartialEq)]
pub enum Write {
    /// A new Event.
    Create(Event),
    /// A series written onto its first Event (created if that is gone).
    Series(Event),
}

/// The recorder's cache of recent events, by key.
#[derive(Debug, Default)]
pub struct SeriesCache {
    events: HashMap<Key, Event>,
}

impl SeriesCache {
    /// An event happened at `now`: what to write, if anything.
    pub fn observe(&mut self, event: Event, now: DateTime<Utc>) -> Option<Write> {
        let key = key_of(&event);
        match self.events.get_mut(&key) {
            Some(first) => match first.series.as_mut() {
                Some(series) => {
                    series.count += 1;
                    series.last_observed_time = MicroTime(now);
                    None
                }
                None => {
                    first.series = Some(EventSeries {
                        count: 2,
                        last_observed_time: MicroTime(now),
                    });
                    Some(Write::Series(first.clone()))
                }
            },
            None => {
                self.events.insert(key, event.clone());
                Some(Write::Create(event))
            }
        }
    }

    /// client-go's refreshExistingEventSeries: every running series, written again.
    pub fn refresh(&self) -> Vec<Write> {
        self.events
            .values()
            .filter(|e| e.series.is_some())
            .map(|e| Write::Series(e.clone()))
            .collect()
    }

    /// client-go's finishSeries: series with no repeat since `now - FINISH` are written a last
    /// time and forgotten; single events older than that are forgotten.
    pub fn finish(&mut self, now: DateTime<Utc>) -> Vec<Write> {
        let horizon = now - chrono_duration(FINISH);
        let mut out = Vec::new();
        self.events.retain(|_, e| {
            let last = match &e.series {
                Some(s) => s.last_observed_time.0,
                None => e.event_time.as_ref().map_or(now, |t| t.0),
            };
            if last >= horizon {
                return true;
            }
            if e.series.is_some() {
                out.push(Write::Series(e.clone()));
            }
            false
        });
        out
    }

    pub fn len(&self) -> usize {
        self.events.len()
    }

    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }
}

fn chrono_duration(d: Duration) -> k8s_openapi::chrono::TimeDelta {
    k8s_openapi::chrono::TimeDelta::from_std(d).unwrap_or(k8s_openapi::chrono::TimeDelta::MAX)
}

/// Whether a failed write is worth another try (client-go: transport errors, and a series
/// whose create met the Event created meanwhile).
fn retryable(e: &kube::Error, series: bool) -> bool {
    match e {
        kube::Error::Api(s) => series && s.code == 409,
        _ => true,
    }
}

/// One write: a series is patched onto its Event (strategic merge of `series`, as client-go's
/// createPatchBytesForSeries), or created when that Event is gone; a new event is created.
async fn write_once(client: &kube::Client, w: &Write) -> Result<(), kube::Error> {
    let (event, series) = match w {
        Write::Create(e) => (e, false),
        Write::Series(e) => (e, true),
    };
    let ns = event.metadata.namespace.as_deref().unwrap_or("default");
    let api: Api<Event> = Api::namespaced(client.clone(), ns);
    if series {
        let name = event.metadata.name.as_deref().unwrap_or_default();
        let patch = serde_json::json!({ "series": event.series });
        match api
            .patch(name, &PatchParams::default(), &Patch::Strategic(patch))
            .await
        {
            Ok(_) => return Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(e),
        }
    }
    let mut fresh = event.clone();
    fresh.metadata.resource_version = None;
    api.create(&PostParams::default(), &fresh).await.map(|_| ())
}

async fn write(client: kube::Client, w: Write) {
    let series = matches!(w, Write::Series(_));
    for attempt in 1..=MAX_TRIES {
        match write_once(&client, &w).await {
            Ok(()) => return,
            Err(e) if attempt < MAX_TRIES && retryable(&e, series) => {
                tracing::debug!(error = %e, attempt, "event not written yet; retrying");
                // Jittered ±25%, so that clients do not retry in step after an outage.
                let jitter = 0.75 + 0.5 * f64::from(subsec_nanos() % 1000) / 1000.0;
                tokio::time::sleep(RETRY_SLEEP.mul_f64(jitter)).await;
            }
            Err(e) => {
                tracing::debug!(error = %e, "event not recorded");
                return;
            }
        }
    }
}

fn subsec_nanos() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0)
}

/// Records the events sent on `rx` until it closes or the future is dropped: series decided
/// by the cache, writes a few at a time, series refreshed and finished on client-go's clocks.
pub async fn run(client: kube::Client, mut rx: mpsc::Receiver<Event>) {
    let limit = Arc::new(Semaphore::new(8));
    let mut tasks = JoinSet::new();
    let mut cache = SeriesCache::default();
    let mut refresh = tokio::time::interval(REFRESH);
    let mut finish = tokio::time::interval(FINISH);
    // Both tick at once first; nothing is cached yet.
    refresh.tick().await;
    finish.tick().await;
    loop {
        let writes = tokio::select! {
            ev = rx.recv() => match ev {
                Some(ev) => cache.observe(ev, Utc::now()).into_iter().collect(),
                None => break,
            },
            _ = refresh.tick() => cache.refresh(),
            _ = finish.tick() => cache.finish(Utc::now()),
        };
        for w in writes {
            let Ok(permit) = limit.clone().acquire_owned().await else {
                return;
            };
            let client = client.clone();
            tasks.spawn(async move {
                let _permit = permit;
                write(client, w).await;
            });
        }
        while tasks.try_join_next().is_some() {}
    }
    while tasks.join_next().await.is_some() {}
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    use super::*;

    fn event(name: &str, pod_rv: &str, note: &str, at: DateTime<Utc>) -> Event {
        Event {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("default".into()),
                ..Default::default()
            },
            event_time: Some(MicroTime(at)),
            type_: Some("Warning".into()),
            action: Some("Scheduling".into()),
            reason: Some("FailedScheduling".into()),
            reporting_controller: Some("default-scheduler".into()),
            reporting_instance: Some("default-scheduler-host".into()),
            regarding: Some(ObjectReference {
                kind: Some("Pod".into()),
                name: Some("p".into()),
                namespace: Some("default".into()),
                resource_version: Some(pod_rv.into()),
                ..Default::default()
            }),
            note: Some(note.into()),
            ..Default::default()
        }
    }

    fn secs(n: i64) -> k8s_openapi::chrono::TimeDelta {
        k8s_openapi::chrono::TimeDelta::seconds(n)
    }

    #[test]
    fn repeats_become_a_series_on_the_first_event() {
        let t0 = Utc::now();
        let mut c = SeriesCache::default();
        let first = event("p.1", "5", "0/1 nodes", t0);
        assert_eq!(
            c.observe(first.clone(), t0),
            Some(Write::Create(first.clone()))
        );
        // The same key with another note and name: a series on the first, count 2.
        let Some(Write::Series(s)) = c.observe(event("p.2", "5", "other", t0), t0 + secs(1)) else {
            panic!("want a series write");
        };
        assert_eq!(s.metadata.name.as_deref(), Some("p.1"));
        assert_eq!(s.note.as_deref(), Some("0/1 nodes"));
        assert_eq!(s.series.as_ref().map(|s| s.count), Some(2));
        // Later repeats count in memory only.
        assert_eq!(c.observe(event("p.3", "5", "x", t0), t0 + secs(2)), None);
        assert_eq!(c.observe(event("p.4", "5", "x", t0), t0 + secs(3)), None);
        let refreshed = c.refresh();
        let [Write::Series(s)] = refreshed.as_slice() else {
            panic!("{refreshed:?}");
        };
        let series = s.series.as_ref().unwrap();
        assert_eq!(series.count, 4);
        assert_eq!(series.last_observed_time.0, t0 + secs(3));
        // Another resourceVersion of the pod is another object reference: a new event.
        assert!(matches!(
            c.observe(event("p.5", "6", "x", t0), t0 + secs(4)),
            Some(Write::Create(_))
        ));
        assert_eq!(c.len(), 2);
    }

    #[test]
    fn an_ended_series_is_written_once_more_and_forgotten() {
        let t0 = Utc::now();
        let mut c = SeriesCache::default();
        c.observe(event("a.1", "1", "n", t0), t0);
        c.observe(event("a.2", "1", "n", t0), t0 + secs(1));
        c.observe(event("b.1", "2", "n", t0), t0);
        // Not yet 6 minutes: everything stays.
        assert!(c.finish(t0 + secs(300)).is_empty());
        assert_eq!(c.len(), 2);
        // Past it: the series is written a last time, the single event just dropped.
        let out = c.finish(t0 + secs(400));
        assert_eq!(out.len(), 1, "{out:?}");
        assert!(matches!(&out[0], Write::Series(e) if e.metadata.name.as_deref() == Some("a.1")));
        assert!(c.is_empty());
        // A repeat now starts afresh.
        assert!(matches!(
            c.observe(event("a.3", "1", "n", t0), t0 + secs(401)),
            Some(Write::Create(_))
        ));
    }
}
