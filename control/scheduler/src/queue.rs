//! The scheduling queue, as kube-scheduler's PriorityQueue: an active queue (highest
//! priority first, then first come), a backoff queue (1 s doubling to 10 s per failed
//! attempt) and a pool of unschedulable pods that cluster events move back (a pod rejected
//! while an event arrived goes to backoff instead, so it cannot miss that event). Pods being
//! scheduled are "in flight": updates and deletes that arrive meanwhile are kept for when
//! the attempt ends. Time is passed in; no clocks here.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::node_info::PodInfo;

/// How long a pod may sit in the unschedulable pool before it is retried anyway (kube's
/// `podMaxInUnschedulablePodsDuration`).
pub const MAX_IN_UNSCHEDULABLE: Duration = Duration::from_secs(5 * 60);

/// A cluster change that may make unschedulable pods schedulable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClusterEvent {
    /// A node appeared, or changed labels/taints/allocatable/images/unschedulable.
    NodeChanged,
    /// A bound pod went away (resources, ports, anti-affinity freed).
    AssignedPodDeleted,
    /// A bound pod appeared (may satisfy pod affinity or spread).
    AssignedPodAdded,
    /// A PersistentVolumeClaim, PersistentVolume or StorageClass appeared or changed.
    VolumeChanged,
}

impl ClusterEvent {
    /// Whether the event can help a pod rejected by these plugins (kube's queueing hints,
    /// coarsely: an empty set — no nodes at all — waits for nodes).
    fn may_help(self, rejected_by: &BTreeSet<&'static str>) -> bool {
        match self {
            ClusterEvent::NodeChanged => true,
            ClusterEvent::AssignedPodDeleted => {
                rejected_by.is_empty()
                    || rejected_by.iter().any(|p| {
                        matches!(
                            *p,
                            "NodeResourcesFit"
                                | "NodePorts"
                                | "InterPodAffinity"
                                | "PodTopologySpread"
                        )
                    })
            }
            ClusterEvent::AssignedPodAdded => rejected_by
                .iter()
                .any(|p| matches!(*p, "InterPodAffinity" | "PodTopologySpread")),
            ClusterEvent::VolumeChanged => rejected_by.contains("VolumeBinding"),
        }
    }
}

/// A pod taken from the queue for one scheduling attempt.
#[derive(Debug, Clone)]
pub struct QueuedPod {
    pub info: Arc<PodInfo>,
    /// Attempts so far, including the current one.
    pub attempts: u32,
    /// When the current attempt started (backoff counts from here).
    pub last_attempt: Option<Instant>,
    /// When the first attempt started (kube's InitialAttemptTimestamp, for the SLI metric).
    pub first_attempt: Option<Instant>,
    /// The plugins that rejected the last attempt.
    pub rejected_by: BTreeSet<&'static str>,
}

#[derive(Debug)]
enum Place {
    Active(u64),
    Backoff(Instant, u64),
    Unschedulable(Instant),
}

#[derive(Debug)]
struct Entry {
    pod: QueuedPod,
    place: Place,
}

#[derive(Debug, Default)]
struct InFlight {
    latest: Option<Arc<PodInfo>>,
    deleted: bool,
    /// A cluster event arrived during the attempt.
    moved: bool,
}

#[derive(Debug)]
pub struct SchedulingQueue {
    initial_backoff: Duration,
    max_backoff: Duration,
    active: BTreeMap<(Reverse<i32>, u64), String>,
    backoff: BTreeMap<(Instant, u64), String>,
    entries: HashMap<String, Entry>,
    in_flight: HashMap<String, InFlight>,
    /// Keys of the entries in the unschedulable pool (events scan only these).
    pool: std::collections::HashSet<String>,
    /// Pending pods of ours held back by scheduling gates: never queued, only counted (kube's
    /// "gated" pending pods).
    gated: std::collections::HashSet<String>,
    seq: u64,
}

impl SchedulingQueue {
    pub fn new(initial_backoff: Duration, max_backoff: Duration) -> Self {
        SchedulingQueue {
            initial_backoff,
            max_backoff,
            active: BTreeMap::new(),
            backoff: BTreeMap::new(),
            entries: HashMap::new(),
            in_flight: HashMap::new(),
            pool: Default::default(),
            gated: Default::default(),
            seq: 0,
        }
    }

    /// `initial * 2^(attempts-1)`, capped.
    pub fn backoff_duration(&self, attempts: u32) -> Duration {
        let mut d = self.initial_backoff;
        for _ in 1..attempts {
            d = d.saturating_mul(2);
            if d >= self.max_backoff {
                return self.max_backoff;
            }
        }
        d.min(self.max_backoff)
    }

    fn backoff_expiry(&self, p: &QueuedPod) -> Option<Instant> {
        p.last_attempt
            .map(|t| t + self.backoff_duration(p.attempts))
    }

    fn unlink(&mut self, key: &str) -> Option<QueuedPod> {
        let e = self.entries.remove(key)?;
        match e.place {
            Place::Active(seq) => {
                self.active.remove(&(Reverse(e.pod.info.priority), seq));
            }
            Place::Backoff(at, seq) => {
                self.backoff.remove(&(at, seq));
            }
            Place::Unschedulable(_) => {
                self.pool.remove(key);
            }
        }
        Some(e.pod)
    }

    fn push_active(&mut self, pod: QueuedPod) {
        self.seq += 1;
        let key = pod.info.key.clone();
        self.active
            .insert((Reverse(pod.info.priority), self.seq), key.clone());
        self.entries.insert(
            key,
            Entry {
                pod,
                place: Place::Active(self.seq),
            },
        );
    }

    /// To the backoff queue if still backing off, else to the active queue.
    fn push_retry(&mut self, pod: QueuedPod, now: Instant) {
        match self.backoff_expiry(&pod).filter(|at| *at > now) {
            Some(at) => {
                self.seq += 1;
                let key = pod.info.key.clone();
                self.backoff.insert((at, self.seq), key.clone());
                self.entries.insert(
                    key,
                    Entry {
                        pod,
                        place: Place::Backoff(at, self.seq),
                    },
                );
            }
            None => self.push_active(pod),
        }
    }

    /// A pending pod was added or updated.
    pub fn add_or_update(&mut self, info: Arc<PodInfo>, now: Instant) {
        let key = info.key.clone();
        self.gated.remove(&key);
        if let Some(f) = self.in_flight.get_mut(&key) {
            f.latest = Some(info);
            return;
        }
        let Some(e) = self.entries.get_mut(&key) else {
            self.push_active(QueuedPod {
                info,
                attempts: 0,
                last_attempt: None,
                first_attempt: None,
                rejected_by: BTreeSet::new(),
            });
            return;
        };
        let changed = e.pod.info.pod.spec != info.pod.spec
            || e.pod.info.pod.metadata.labels != info.pod.metadata.labels;
        if !changed {
            // Status or metadata noise: the pod keeps its place.
            e.pod.info = info;
            return;
        }
        if let Some(mut old) = self.unlink(&key) {
            old.info = info;
            // An edited pod may fit now (kube's isPodUpdated moves it out of the pool).
            self.push_retry(old, now);
        }
    }

    /// The pod is gone, bound elsewhere, or no longer ours.
    pub fn delete(&mut self, key: &str) {
        if let Some(f) = self.in_flight.get_mut(key) {
            f.deleted = true;
        }
        self.unlink(key);
        self.gated.remove(key);
    }

    /// A pending pod of ours waits on scheduling gates: counted, not queued.
    pub fn gate(&mut self, key: &str) {
        self.delete(key);
        self.gated.insert(key.to_string());
    }

    /// Moves expired backoff entries to the active queue.
    pub fn flush_backoff(&mut self, now: Instant) {
        while let Some((&(at, seq), _)) = self.backoff.iter().next() {
            if at > now {
                break;
            }
            let key = self.backoff.remove(&(at, seq)).unwrap_or_default();
            if let Some(e) = self.entries.remove(&key) {
                self.push_active(e.pod);
            }
        }
    }

    /// Retries pods that waited in the pool longer than [`MAX_IN_UNSCHEDULABLE`].
    pub fn flush_unschedulable(&mut self, now: Instant) {
        let stale: Vec<String> = self
            .pool
            .iter()
            .filter(|k| {
                self.entries.get(*k).is_some_and(|e| {
                    matches!(e.place, Place::Unschedulable(since) if now.duration_since(since) >= MAX_IN_UNSCHEDULABLE)
                })
            })
            .cloned()
            .collect();
        for k in stale {
            if let Some(p) = self.unlink(&k) {
                self.push_retry(p, now);
            }
        }
    }

    /// When the earliest backoff ends (for the loop's sleep).
    pub fn next_backoff(&self) -> Option<Instant> {
        self.backoff.keys().next().map(|(at, _)| *at)
    }

    /// Takes the most important active pod and marks it in flight.
    pub fn pop(&mut self, now: Instant) -> Option<QueuedPod> {
        let (&k, _) = self.active.iter().next()?;
        let key = self.active.remove(&k)?;
        let mut e = self.entries.remove(&key)?;
        e.pod.attempts += 1;
        e.pod.last_attempt = Some(now);
        e.pod.first_attempt.get_or_insert(now);
        self.in_flight.insert(key, InFlight::default());
        Some(e.pod)
    }

    /// The attempt ended in a binding (or the pod left): forget it.
    pub fn done(&mut self, key: &str) {
        self.in_flight.remove(key);
    }

    fn finish(&mut self, mut pod: QueuedPod) -> Option<(QueuedPod, bool)> {
        let f = self.in_flight.remove(&pod.info.key).unwrap_or_default();
        if f.deleted {
            return None;
        }
        if let Some(latest) = f.latest {
            pod.info = latest;
        }
        Some((pod, f.moved))
    }

    /// The pod fits nowhere: it waits in the pool for a cluster event (or in backoff if one
    /// already came during the attempt).
    pub fn unschedulable(
        &mut self,
        mut pod: QueuedPod,
        rejected_by: BTreeSet<&'static str>,
        now: Instant,
    ) {
        pod.rejected_by = rejected_by;
        let Some((pod, moved)) = self.finish(pod) else {
            return;
        };
        if moved {
            self.push_retry(pod, now);
        } else {
            let key = pod.info.key.clone();
            self.pool.insert(key.clone());
            self.entries.insert(
                key,
                Entry {
                    pod,
                    place: Place::Unschedulable(now),
                },
            );
        }
    }

    /// The attempt failed for a reason not the pod's (API error, binding conflict): retry
    /// after backoff.
    pub fn retry(&mut self, pod: QueuedPod, now: Instant) {
        if let Some((pod, _)) = self.finish(pod) {
            self.push_retry(pod, now);
        }
    }

    /// A cluster event: moves the pool's pods it may help to backoff/active.
    pub fn on_event(&mut self, event: ClusterEvent, now: Instant) {
        for f in self.in_flight.values_mut() {
            f.moved = true;
        }
        let movable: Vec<String> = self
            .pool
            .iter()
            .filter(|k| {
                self.entries
                    .get(*k)
                    .is_some_and(|e| event.may_help(&e.pod.rejected_by))
            })
            .cloned()
            .collect();
        for k in movable {
            if let Some(p) = self.unlink(&k) {
                self.push_retry(p, now);
            }
        }
    }

    /// (active, backoff, unschedulable) sizes.
    pub fn lens(&self) -> (usize, usize, usize) {
        (self.active.len(), self.backoff.len(), self.pool.len())
    }

    /// The pending-pods gauges' values: each queue's size, the gated pods, and the pool's pods
    /// by each plugin that rejected them.
    pub fn sizes(&self) -> crate::metrics::QueueSizes {
        let mut by_plugin = std::collections::BTreeMap::new();
        for e in self.pool.iter().filter_map(|k| self.entries.get(k)) {
            for p in &e.pod.rejected_by {
                *by_plugin.entry(*p).or_insert(0) += 1;
            }
        }
        crate::metrics::QueueSizes {
            active: self.active.len(),
            backoff: self.backoff.len(),
            unschedulable: self.pool.len(),
            gated: self.gated.len(),
            by_plugin,
        }
    }

    pub fn is_queued(&self, key: &str) -> bool {
        self.entries.contains_key(key) || self.in_flight.contains_key(key)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::testutil::pod_meta;

    fn info(name: &str, prio: i32) -> Arc<PodInfo> {
        Arc::new(pod_meta(
            json!({"name": name, "namespace": "d", "uid": name}),
            json!({"priority": prio}),
        ))
    }

    fn q() -> SchedulingQueue {
        SchedulingQueue::new(Duration::from_secs(1), Duration::from_secs(10))
    }

    #[test]
    fn backoff_doubles_to_ten_seconds() {
        let q = q();
        let s: Vec<u64> = (1..=6).map(|a| q.backoff_duration(a).as_secs()).collect();
        assert_eq!(s, [1, 2, 4, 8, 10, 10]);
    }

    #[test]
    fn priority_then_arrival_order() {
        let mut q = q();
        let t = Instant::now();
        q.add_or_update(info("a", 0), t);
        q.add_or_update(info("b", 10), t);
        q.add_or_update(info("c", 0), t);
        let order: Vec<String> =
            std::iter::from_fn(|| q.pop(t).map(|p| p.info.key.clone())).collect();
        assert_eq!(order, ["d/b", "d/a", "d/c"]);
    }

    #[test]
    fn unschedulable_pods_wait_for_events_then_back_off() {
        let mut q = q();
        let t0 = Instant::now();
        q.add_or_update(info("a", 0), t0);
        let p = q.pop(t0).unwrap();
        q.unschedulable(p, ["NodeResourcesFit"].into(), t0);
        assert_eq!(q.lens(), (0, 0, 1));
        // An assigned pod added cannot free resources: stays.
        q.on_event(ClusterEvent::AssignedPodAdded, t0);
        assert_eq!(q.lens(), (0, 0, 1));
        // A node event half a second later: still backing off (1 s after attempt 1).
        q.on_event(ClusterEvent::NodeChanged, t0 + Duration::from_millis(500));
        assert_eq!(q.lens(), (0, 1, 0));
        assert_eq!(q.next_backoff(), Some(t0 + Duration::from_secs(1)));
        q.flush_backoff(t0 + Duration::from_millis(999));
        assert!(q.pop(t0 + Duration::from_millis(999)).is_none());
        q.flush_backoff(t0 + Duration::from_secs(1));
        let p = q.pop(t0 + Duration::from_secs(1)).unwrap();
        assert_eq!(p.attempts, 2);
        // Second failure, event during the attempt: straight to backoff (2 s).
        q.on_event(ClusterEvent::NodeChanged, t0 + Duration::from_secs(1));
        q.unschedulable(p, ["NodeResourcesFit"].into(), t0 + Duration::from_secs(1));
        assert_eq!(q.lens(), (0, 1, 0));
        assert_eq!(q.next_backoff(), Some(t0 + Duration::from_secs(3)));
    }

    #[test]
    fn in_flight_updates_and_deletes_are_kept() {
        let mut q = q();
        let t = Instant::now();
        q.add_or_update(info("a", 0), t);
        let p = q.pop(t).unwrap();
        q.add_or_update(info("a", 7), t);
        q.retry(p, t);
        q.flush_backoff(t + Duration::from_secs(1));
        let p = q.pop(t + Duration::from_secs(1)).unwrap();
        assert_eq!(
            p.info.priority, 7,
            "the update made during the attempt is used"
        );
        q.delete("d/a");
        q.unschedulable(p, BTreeSet::new(), t);
        assert_eq!(q.lens(), (0, 0, 0), "deleted during the attempt: dropped");
        assert!(!q.is_queued("d/a"));
    }

    #[test]
    fn stale_pool_entries_are_retried() {
        let mut q = q();
        let t = Instant::now();
        q.add_or_update(info("a", 0), t);
        let p = q.pop(t).unwrap();
        q.unschedulable(p, ["TaintToleration"].into(), t);
        q.flush_unschedulable(t + Duration::from_secs(299));
        assert_eq!(q.lens(), (0, 0, 1));
        q.flush_unschedulable(t + MAX_IN_UNSCHEDULABLE);
        assert_eq!(q.lens(), (1, 0, 0));
    }
}
