//! client-go's EventCorrelator (`tools/record/events_cache.go`) without the I/O: for each
//! recorded event it decides what the writer does.
//!
//! - Aggregation: events alike but for their message (same source, object, type, reason and
//!   reporting controller/instance) with 10 distinct messages within 10 minutes of each other
//!   become one event "(combined from similar events): <latest message>", counted on like any
//!   repeat.
//! - Repeats: an event repeating one seen before (the same in everything but time) patches the
//!   existing object's `count` and `lastTimestamp` instead of making another.
//! - Spam filter: each source may write 25 events about one object at once, then one more per
//!   5 minutes (a token bucket per source and object); the rest are dropped unwritten.
//!
//! Every cache keeps the 4096 most recently used keys, as client-go's LRU caches.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

/// client-go's maxLruCacheEntries.
const CACHE_ENTRIES: usize = 4096;
/// defaultAggregateMaxEvents: distinct messages before events are combined.
const AGGREGATE_MAX_EVENTS: usize = 10;
/// defaultAggregateIntervalInSeconds: a group older than this starts over.
const AGGREGATE_INTERVAL_SECS: i64 = 600;
/// defaultSpamBurst.
const SPAM_BURST: f64 = 25.0;
/// defaultSpamQPS: one event per 5 minutes.
const SPAM_QPS: f64 = 1.0 / 300.0;
/// The message prefix of a combined event (EventAggregatorByReasonMessageFunc).
pub const COMBINED_PREFIX: &str = "(combined from similar events): ";

/// A map that forgets its least recently used key past `cap` entries.
struct Lru<V> {
    cap: usize,
    tick: u64,
    map: HashMap<String, (V, u64)>,
    order: BTreeMap<u64, String>,
}

impl<V> Lru<V> {
    fn new(cap: usize) -> Self {
        Self {
            cap,
            tick: 0,
            map: HashMap::new(),
            order: BTreeMap::new(),
        }
    }

    fn touch(&mut self, key: &str) {
        if let Some((_, used)) = self.map.get_mut(key) {
            self.order.remove(used);
            self.tick += 1;
            *used = self.tick;
            self.order.insert(self.tick, key.to_string());
        }
    }

    fn get_mut(&mut self, key: &str) -> Option<&mut V> {
        self.touch(key);
        self.map.get_mut(key).map(|(v, _)| v)
    }

    fn insert(&mut self, key: String, v: V) {
        if let Some((_, used)) = self.map.remove(&key) {
            self.order.remove(&used);
        }
        self.tick += 1;
        self.order.insert(self.tick, key.clone());
        self.map.insert(key, (v, self.tick));
        while self.map.len() > self.cap {
            let Some((_, oldest)) = self.order.pop_first() else {
                break;
            };
            self.map.remove(&oldest);
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.map.len()
    }
}

/// The source and object of an event, each field on its own (client-go joins them).
fn object_key(ev: &Event) -> Vec<Option<String>> {
    let o = &ev.involved_object;
    let source = ev.source.clone().unwrap_or_default();
    vec![
        source.component,
        source.host,
        o.kind.clone(),
        o.namespace.clone(),
        o.name.clone(),
        o.uid.clone(),
        o.api_version.clone(),
    ]
}

fn key_of(parts: Vec<Option<String>>) -> String {
    serde_json::to_string(&parts).unwrap_or_default()
}

/// client-go's getEventKey: an event repeats another when all of this is the same.
pub fn repeat_key(ev: &Event) -> String {
    let mut k = object_key(ev);
    k.extend([
        ev.involved_object.field_path.clone(),
        ev.type_.clone(),
        ev.reason.clone(),
        ev.message.clone(),
        ev.reporting_component.clone(),
        ev.reporting_instance.clone(),
    ]);
    key_of(k)
}

/// client-go's EventAggregatorByReasonFunc: events alike but for their message.
fn aggregate_key(ev: &Event) -> String {
    let mut k = object_key(ev);
    k.extend([
        ev.type_.clone(),
        ev.reason.clone(),
        ev.reporting_component.clone(),
        ev.reporting_instance.clone(),
    ]);
    key_of(k)
}

/// client-go's getSpamKey: one token bucket per source and object.
fn spam_key(ev: &Event) -> String {
    key_of(object_key(ev))
}

/// What is remembered of a group of similar events.
struct Aggregate {
    messages: BTreeSet<String>,
    last: DateTime<Utc>,
}

/// What is remembered of an event written (or about to be): the object repeats count on.
struct Seen {
    name: String,
    count: i32,
    first: Option<Time>,
}

/// A token bucket (golang.org/x/time/rate as client-go's flowcontrol uses it): starts full.
struct Bucket {
    tokens: f64,
    at: DateTime<Utc>,
}

impl Bucket {
    fn try_take(&mut self, now: DateTime<Utc>) -> bool {
        let elapsed = (now - self.at).num_microseconds().unwrap_or(i64::MAX) as f64 / 1e6;
        if elapsed > 0.0 {
            self.tokens = (self.tokens + elapsed * SPAM_QPS).min(SPAM_BURST);
            self.at = now;
        }
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// What to write for a recorded event.
#[derive(Debug, Clone, PartialEq)]
pub enum Write {
    /// Create this event.
    Create(Event),
    /// Bump the event named `event.metadata.name`: patch its count, lastTimestamp and
    /// message; create it (keeping the count) when it is gone.
    Repeat(Event),
}

pub struct Correlator {
    aggregates: Lru<Aggregate>,
    seen: Lru<Seen>,
    spam: Lru<Bucket>,
}

impl std::fmt::Debug for Correlator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Correlator")
            .field("groups", &self.aggregates.map.len())
            .field("seen", &self.seen.map.len())
            .field("buckets", &self.spam.map.len())
            .finish()
    }
}

impl Default for Correlator {
    fn default() -> Self {
        Self::new()
    }
}

impl Correlator {
    pub fn new() -> Self {
        Self {
            aggregates: Lru::new(CACHE_ENTRIES),
            seen: Lru::new(CACHE_ENTRIES),
            spam: Lru::new(CACHE_ENTRIES),
        }
    }

    /// client-go's EventCorrelate at `now`: aggregate, count repeats, then filter spam
    /// (`None`: dropped).
    pub fn correlate(&mut self, ev: Event, now: DateTime<Utc>) -> Option<Write> {
        let (ev, key) = self.aggregate(ev, now);
        let write = self.observe(ev, key);
        let ev = match &write {
            Write::Create(ev) | Write::Repeat(ev) => ev,
        };
        let bucket_key = spam_key(ev);
        let accepted = match self.spam.get_mut(&bucket_key) {
            Some(b) => b.try_take(now),
            None => {
                let mut b = Bucket {
                    tokens: SPAM_BURST,
                    at: now,
                };
                let ok = b.try_take(now);
                self.spam.insert(bucket_key, b);
                ok
            }
        };
        accepted.then_some(write)
    }

    /// The event written for a group of similar events, and the key its repeats count on:
    /// the event itself until the group has 10 distinct messages, then a combined event
    /// under the group's key.
    fn aggregate(&mut self, ev: Event, now: DateTime<Utc>) -> (Event, String) {
        let group = aggregate_key(&ev);
        let message = ev.message.clone().unwrap_or_default();
        let fresh = || Aggregate {
            messages: BTreeSet::new(),
            last: now,
        };
        let max = chrono::Duration::seconds(AGGREGATE_INTERVAL_SECS);
        let recent = self
            .aggregates
            .get_mut(&group)
            .is_some_and(|r| now - r.last <= max);
        if !recent {
            self.aggregates.insert(group.clone(), fresh());
        }
        let Some(record) = self.aggregates.get_mut(&group) else {
            let key = repeat_key(&ev);
            return (ev, key);
        };
        record.messages.insert(message.clone());
        record.last = now;
        if record.messages.len() < AGGREGATE_MAX_EVENTS {
            let key = repeat_key(&ev);
            return (ev, key);
        }
        // The group stays one short of the limit, so each further distinct message is
        // combined too. client-go drops an arbitrary message here; dropping this one keeps
        // exact repeats of the earlier messages counting on their own events.
        record.messages.remove(&message);
        let combined = Event {
            metadata: ObjectMeta {
                name: ev.metadata.name.clone(),
                namespace: ev.metadata.namespace.clone(),
                ..Default::default()
            },
            involved_object: ev.involved_object.clone(),
            reason: ev.reason.clone(),
            message: Some(format!("{COMBINED_PREFIX}{message}")),
            type_: ev.type_.clone(),
            source: ev.source.clone(),
            first_timestamp: Some(Time(now)),
            last_timestamp: Some(Time(now)),
            count: Some(1),
            ..Default::default()
        };
        (combined, group)
    }

    /// client-go's eventObserve: a repeat of a key seen before is the same object again.
    fn observe(&mut self, mut ev: Event, key: String) -> Write {
        let write = match self.seen.get_mut(&key) {
            Some(prev) => {
                ev.metadata.name = Some(prev.name.clone());
                ev.first_timestamp = prev.first.clone();
                ev.count = Some(prev.count + 1);
                Write::Repeat(ev.clone())
            }
            None => Write::Create(ev.clone()),
        };
        self.seen.insert(
            key,
            Seen {
                name: ev.metadata.name.clone().unwrap_or_default(),
                count: ev.count.unwrap_or(1),
                first: ev.first_timestamp.clone(),
            },
        );
        write
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use k8s_openapi::api::core::v1::{EventSource, ObjectReference};

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 7, 10, 0, 0).unwrap()
    }

    fn secs(n: i64) -> DateTime<Utc> {
        t0() + chrono::Duration::seconds(n)
    }

    fn event(object: &str, reason: &str, message: &str, name: &str) -> Event {
        Event {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("d".into()),
                ..Default::default()
            },
            involved_object: ObjectReference {
                kind: Some("Job".into()),
                name: Some(object.into()),
                namespace: Some("d".into()),
                uid: Some(format!("uid-{object}")),
                ..Default::default()
            },
            reason: Some(reason.into()),
            message: Some(message.into()),
            type_: Some("Normal".into()),
            source: Some(EventSource {
                component: Some("job-controller".into()),
                host: None,
            }),
            count: Some(1),
            reporting_component: Some("job-controller".into()),
            reporting_instance: Some("job-controller".into()),
            ..Default::default()
        }
    }

    fn message(w: &Write) -> &str {
        match w {
            Write::Create(e) | Write::Repeat(e) => e.message.as_deref().unwrap_or(""),
        }
    }

    #[test]
    fn repeats_are_the_same_object_type_reason_message_and_source() {
        let a = event("j", "FailedCreate", "Error creating: x", "j.1");
        let mut b = event("j", "FailedCreate", "Error creating: x", "j.2");
        b.involved_object.resource_version = Some("9".into());
        assert_eq!(repeat_key(&a), repeat_key(&b));
        let c = event("j", "FailedCreate", "Error creating: y", "j.2");
        assert_ne!(repeat_key(&a), repeat_key(&c));
        assert_eq!(aggregate_key(&a), aggregate_key(&c));
        let mut d = event("j", "FailedCreate", "Error creating: x", "j.2");
        d.involved_object.uid = Some("v".into());
        assert_ne!(repeat_key(&a), repeat_key(&d));
    }

    #[test]
    fn a_repeat_counts_on_the_first_object() {
        let mut c = Correlator::new();
        let first = c.correlate(event("j", "R", "m", "j.1"), secs(0)).unwrap();
        assert!(matches!(first, Write::Create(_)));
        let second = c.correlate(event("j", "R", "m", "j.2"), secs(1)).unwrap();
        let Write::Repeat(ev) = second else {
            panic!("not a repeat: {second:?}")
        };
        assert_eq!(ev.metadata.name.as_deref(), Some("j.1"));
        assert_eq!(ev.count, Some(2));
    }

    #[test]
    fn the_tenth_distinct_message_within_ten_minutes_is_combined() {
        let mut c = Correlator::new();
        for n in 0..9 {
            let w = c
                .correlate(
                    event("j", "Created", &format!("pod {n}"), &format!("j.{n}")),
                    secs(n),
                )
                .unwrap();
            assert!(matches!(&w, Write::Create(_)), "{n}: {w:?}");
            assert_eq!(message(&w), format!("pod {n}"));
        }
        let w = c
            .correlate(event("j", "Created", "pod 9", "j.9"), secs(9))
            .unwrap();
        let Write::Create(combined) = &w else {
            panic!("{w:?}")
        };
        assert_eq!(
            combined.message.as_deref(),
            Some("(combined from similar events): pod 9")
        );
        assert_eq!(combined.reporting_component, None);
        // Each further distinct message counts on the combined event, with its message.
        let w = c
            .correlate(event("j", "Created", "pod 10", "j.10"), secs(10))
            .unwrap();
        let Write::Repeat(again) = &w else {
            panic!("{w:?}")
        };
        assert_eq!(again.metadata.name.as_deref(), Some("j.9"));
        assert_eq!(again.count, Some(2));
        assert_eq!(message(&w), "(combined from similar events): pod 10");
        // Another reason, or another object, is another group.
        let w = c
            .correlate(event("j", "Deleted", "pod 11", "j.11"), secs(11))
            .unwrap();
        assert_eq!(message(&w), "pod 11");
        let w = c
            .correlate(event("k", "Created", "pod 12", "k.12"), secs(12))
            .unwrap();
        assert_eq!(message(&w), "pod 12");
    }

    #[test]
    fn a_group_quiet_for_ten_minutes_starts_over() {
        let mut c = Correlator::new();
        for n in 0..9 {
            c.correlate(
                event("j", "Created", &format!("pod {n}"), &format!("j.{n}")),
                secs(n * 60),
            )
            .unwrap();
        }
        // 10 minutes and a second after the last one: not combined.
        let w = c
            .correlate(event("j", "Created", "pod 9", "j.9"), secs(8 * 60 + 601))
            .unwrap();
        assert_eq!(message(&w), "pod 9");
        // Within 10 minutes of each other (not of the first) they are.
        let mut c = Correlator::new();
        for n in 0..9 {
            c.correlate(
                event("j", "Created", &format!("pod {n}"), &format!("j.{n}")),
                secs(n * 300),
            )
            .unwrap();
        }
        let w = c
            .correlate(event("j", "Created", "pod 9", "j.9"), secs(9 * 300))
            .unwrap();
        assert!(message(&w).starts_with(COMBINED_PREFIX), "{w:?}");
    }

    #[test]
    fn a_source_writes_25_events_about_an_object_then_one_per_five_minutes() {
        let mut c = Correlator::new();
        // 25 events about one object at once (distinct reasons, so none combines).
        for n in 0..25 {
            let w = c.correlate(
                event("j", &format!("R{n}"), "m", &format!("j.{n}")),
                secs(0),
            );
            assert!(w.is_some(), "event {n} dropped");
        }
        assert_eq!(c.correlate(event("j", "R25", "m", "j.25"), secs(0)), None);
        // Repeats are filtered as well.
        assert_eq!(c.correlate(event("j", "R0", "m", "j.26"), secs(1)), None);
        // Other objects have their own budget.
        assert!(c.correlate(event("k", "R0", "m", "k.0"), secs(1)).is_some());
        // One token back after 5 minutes, and only one.
        assert_eq!(c.correlate(event("j", "R27", "m", "j.27"), secs(299)), None);
        assert!(c
            .correlate(event("j", "R28", "m", "j.28"), secs(300))
            .is_some());
        assert_eq!(c.correlate(event("j", "R29", "m", "j.29"), secs(301)), None);
        // A long quiet time refills at most the burst.
        for n in 0..25 {
            assert!(
                c.correlate(
                    event("j", &format!("S{n}"), "m", &format!("j.s{n}")),
                    secs(100_000)
                )
                .is_some(),
                "event {n} after the refill dropped"
            );
        }
        assert_eq!(
            c.correlate(event("j", "S25", "m", "j.s25"), secs(100_000)),
            None
        );
    }

    #[test]
    fn the_caches_keep_the_most_recently_used_keys() {
        let mut l: Lru<u32> = Lru::new(2);
        l.insert("a".into(), 1);
        l.insert("b".into(), 2);
        assert!(l.get_mut("a").is_some());
        l.insert("c".into(), 3);
        assert_eq!(l.len(), 2);
        assert!(l.get_mut("b").is_none());
        assert!(l.get_mut("a").is_some() && l.get_mut("c").is_some());
    }
}
