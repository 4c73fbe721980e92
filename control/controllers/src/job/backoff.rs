//! The delay before re-creating failed pods (kube's `backoff_utils.go`) and the container
//! restarts of `OnFailure` pods that count toward backoffLimit.
//!
//! As kube's podBackoffStore, the controller keeps a [`Record`] per Job in memory — the failures
//! since the last success and when the last of them finished — fed with the finished pods each
//! sync records in the Job's status, so the delay survives the deletion of the failed pods
//! (their tracking finalizer gone, nothing holds them). A restarted controller starts with no
//! record, as kube's.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::Pod;

/// kube's DefaultJobPodFailureBackOff and MaxJobPodFailureBackOff.
pub const INITIAL: Duration = Duration::from_secs(10);
pub const MAX: Duration = Duration::from_secs(10 * 60);

/// kube's getFinishedTime: the last container's finish time when all containers terminated, else
/// the Ready=False transition, else the deletion time less the grace period, else creation.
pub fn finished_time(p: &Pod) -> DateTime<Utc> {
    let status = p.status.as_ref();
    let containers: Vec<_> = status
        .and_then(|s| s.container_statuses.as_ref())
        .into_iter()
        .flatten()
        .collect();
    if !containers.is_empty() {
        let times: Option<Vec<DateTime<Utc>>> = containers
            .iter()
            .map(|c| {
                c.state
                    .as_ref()
                    .and_then(|s| s.terminated.as_ref())
                    .and_then(|t| t.finished_at.as_ref())
                    .map(|t| t.0)
            })
            .collect();
        if let Some(t) = times.and_then(|t| t.into_iter().max()) {
            return t;
        }
    }
    let ready_false = status
        .and_then(|s| s.conditions.as_ref())
        .into_iter()
        .flatten()
        .find(|c| c.type_ == "Ready" && c.status == "False")
        .and_then(|c| c.last_transition_time.as_ref());
    if let Some(t) = ready_false {
        return t.0;
    }
    if let Some(d) = &p.metadata.deletion_timestamp {
        let grace = p.metadata.deletion_grace_period_seconds.unwrap_or(0);
        return d.0 - chrono::Duration::seconds(grace);
    }
    p.metadata
        .creation_timestamp
        .as_ref()
        .map_or(DateTime::<Utc>::UNIX_EPOCH, |t| t.0)
}

/// kube's backoffRecord: the failures that finished after the last success seen, and the finish
/// time of the last of them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Record {
    pub failures_after_last_success: i32,
    pub last_failure: Option<DateTime<Utc>>,
}

impl Record {
    /// kube's newBackoffRecord: this record moved on by the pods newly seen finished. A new
    /// success resets the count to the failures that finished after the latest success.
    pub fn with(self, succeeded: &[&Pod], failed: &[&Pod]) -> Record {
        let mut failures: Vec<DateTime<Utc>> = failed.iter().map(|p| finished_time(p)).collect();
        failures.sort();
        let Some(last_success) = succeeded.iter().map(|p| finished_time(p)).max() else {
            return match failures.last() {
                None => self,
                Some(last) => Record {
                    failures_after_last_success: self.failures_after_last_success
                        + failures.len() as i32,
                    last_failure: Some(*last),
                },
            };
        };
        let after: Vec<&DateTime<Utc>> = failures.iter().filter(|t| **t > last_success).collect();
        Record {
            failures_after_last_success: after.len() as i32,
            last_failure: after.last().map(|t| **t),
        }
    }

    /// How long to wait before creating pods again: `INITIAL × 2^(n-1)` capped at `MAX` after
    /// the last of the `n` failures (kube's getRemainingTime), minus the time since it.
    pub fn remaining(&self, now: DateTime<Utc>) -> Duration {
        match self.last_failure {
            Some(at) if self.failures_after_last_success > 0 => {
                left(self.failures_after_last_success, at, now)
            }
            _ => Duration::ZERO,
        }
    }
}

/// kube's backoffStore: the [`Record`] of each Job (by uid, so a Job recreated under the same
/// name starts afresh), dropped when the Job finishes or goes.
#[derive(Debug, Default)]
pub struct Store(Mutex<HashMap<String, Record>>);

impl Store {
    pub fn get(&self, job_uid: &str) -> Record {
        self.0
            .lock()
            .unwrap()
            .get(job_uid)
            .copied()
            .unwrap_or_default()
    }

    /// Keeps `record` once the pods it was computed from are recorded in the Job's status (a
    /// refused write leaves them new for the next sync, which must not count them twice).
    pub fn set(&self, job_uid: &str, record: Record) {
        self.0.lock().unwrap().insert(job_uid.to_string(), record);
    }

    pub fn remove(&self, job_uid: &str) {
        self.0.lock().unwrap().remove(job_uid);
    }
}

/// kube's getRemainingTimeForFailuresCount: `INITIAL × 2^(n-1)`, at most `MAX`, after the last
/// of `failures` failures, minus the time since it.
pub fn left(failures: i32, last_failure: DateTime<Utc>, now: DateTime<Utc>) -> Duration {
    let mut delay = INITIAL;
    for _ in 1..failures {
        delay *= 2;
        if delay >= MAX {
            delay = MAX;
            break;
        }
    }
    let elapsed = (now - last_failure).to_std().unwrap_or(Duration::ZERO);
    delay.saturating_sub(elapsed)
}

/// kube's pastBackoffLimitOnFailure: for `OnFailure` Jobs, the container restarts of the pending
/// and running pods reach backoffLimit (any restart when the limit is 0).
pub fn restarts_past_limit(
    restart_policy: Option<&str>,
    backoff_limit: i32,
    pods: &[&Pod],
) -> bool {
    if restart_policy != Some("OnFailure") {
        return false;
    }
    let restarts: i32 = pods
        .iter()
        .filter_map(|p| p.status.as_ref())
        .filter(|s| matches!(s.phase.as_deref(), Some("Running" | "Pending")))
        .flat_map(|s| {
            s.init_container_statuses
                .iter()
                .flatten()
                .chain(s.container_statuses.iter().flatten())
        })
        .map(|c| c.restart_count)
        .sum();
    if backoff_limit == 0 {
        restarts > 0
    } else {
        restarts >= backoff_limit
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{
        ContainerState, ContainerStateTerminated, ContainerStatus, PodCondition, PodStatus,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

    use super::*;

    fn t(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + s, 0).unwrap()
    }

    fn finished(phase: &str, at: i64) -> Pod {
        Pod {
            metadata: ObjectMeta {
                creation_timestamp: Some(Time(t(-1000))),
                ..Default::default()
            },
            status: Some(PodStatus {
                phase: Some(phase.into()),
                container_statuses: Some(vec![ContainerStatus {
                    name: "c".into(),
                    state: Some(ContainerState {
                        terminated: Some(ContainerStateTerminated {
                            finished_at: Some(Time(t(at))),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn delay_doubles_per_failure_since_the_last_success() {
        let f1 = finished("Failed", 0);
        let f2 = finished("Failed", 5);
        let f3 = finished("Failed", 20);
        let none = Record::default();
        assert_eq!(none.remaining(t(0)), Duration::ZERO);
        assert_eq!(none.with(&[], &[]), none);
        let one = none.with(&[], &[&f1]);
        assert_eq!(one.remaining(t(3)), Duration::from_secs(7));
        assert_eq!(one.remaining(t(10)), Duration::ZERO);
        // Two failures, seen in two syncs: 20 s after the last (at 5).
        let two = one.with(&[], &[&f2]);
        assert_eq!(two.failures_after_last_success, 2);
        assert_eq!(two.remaining(t(6)), Duration::from_secs(19));
        // A success at 10 seen with failures: only the failure after it counts, 10 s after it.
        let s = finished("Succeeded", 10);
        let after = two.with(&[&s], &[&f3]);
        assert_eq!(after.failures_after_last_success, 1);
        assert_eq!(after.remaining(t(21)), Duration::from_secs(9));
        // A success alone resets the record.
        assert_eq!(two.with(&[&s], &[]), Record::default());
        assert_eq!(two.with(&[&s], &[&f1]).remaining(t(11)), Duration::ZERO);
        // Capped at 10 minutes.
        let many: Vec<Pod> = (0..12).map(|i| finished("Failed", i)).collect();
        let refs: Vec<&Pod> = many.iter().collect();
        assert_eq!(none.with(&[], &refs).remaining(t(11)), MAX);
    }

    #[test]
    fn the_store_keeps_a_record_per_job_until_removed() {
        let store = Store::default();
        let r = Record::default().with(&[], &[&finished("Failed", 0)]);
        store.set("uid-a", r);
        assert_eq!(store.get("uid-a"), r);
        assert_eq!(store.get("uid-b"), Record::default());
        store.remove("uid-a");
        assert_eq!(store.get("uid-a"), Record::default());
    }

    #[test]
    fn finish_time_falls_back_to_ready_false_then_deletion_then_creation() {
        let mut p = finished("Failed", 0);
        p.status
            .as_mut()
            .unwrap()
            .container_statuses
            .as_mut()
            .unwrap()[0]
            .state = None;
        assert_eq!(finished_time(&p), t(-1000));
        p.metadata.deletion_timestamp = Some(Time(t(40)));
        p.metadata.deletion_grace_period_seconds = Some(30);
        assert_eq!(finished_time(&p), t(10));
        p.status.as_mut().unwrap().conditions = Some(vec![PodCondition {
            type_: "Ready".into(),
            status: "False".into(),
            last_transition_time: Some(Time(t(7))),
            ..Default::default()
        }]);
        assert_eq!(finished_time(&p), t(7));
        assert_eq!(finished_time(&finished("Failed", 3)), t(3));
    }

    #[test]
    fn on_failure_restarts_count_toward_the_limit() {
        let mut p = finished("Running", 0);
        p.status
            .as_mut()
            .unwrap()
            .container_statuses
            .as_mut()
            .unwrap()[0]
            .restart_count = 2;
        assert!(!restarts_past_limit(Some("OnFailure"), 3, &[&p]));
        assert!(restarts_past_limit(Some("OnFailure"), 2, &[&p]));
        assert!(!restarts_past_limit(Some("Never"), 2, &[&p]));
        assert!(restarts_past_limit(Some("OnFailure"), 0, &[&p]));
        let mut done = p.clone();
        done.status.as_mut().unwrap().phase = Some("Failed".into());
        assert!(!restarts_past_limit(Some("OnFailure"), 2, &[&done]));
    }
}
