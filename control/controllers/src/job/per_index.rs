//! `backoffLimitPerIndex` for Indexed Jobs (kube's `indexed_job_utils.go`): each index has its
//! own failure budget. A pod carries the failures of its index so far in the
//! `batch.kubernetes.io/job-index-failure-count` annotation (and the failures an Ignore rule
//! matched in `...-ignored-failure-count`); its replacement gets them plus one. An index whose
//! failed pod had used up the budget, or that a FailIndex rule matched, is failed for good
//! (`status.failedIndexes`) and never retried. The last failed pod of a pending index keeps its
//! tracking finalizer until its replacement exists, so the counts are never lost.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use chrono::{DateTime, Utc};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;

use super::backoff::{self, finished_time};
use super::failure_policy::{self, Outcome};
use super::indexed::{completion_index, Intervals};
use super::tracking::is_failed;

pub const FAILURE_COUNT: &str = "batch.kubernetes.io/job-index-failure-count";
pub const IGNORED_COUNT: &str = "batch.kubernetes.io/job-index-ignored-failure-count";

pub fn limit(job: &Job) -> Option<i32> {
    job.spec.as_ref()?.backoff_limit_per_index
}

fn count(p: &Pod, key: &str) -> i32 {
    p.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(key))
        .and_then(|v| v.parse::<i32>().ok())
        .filter(|n| *n >= 0)
        .unwrap_or(0)
}

/// kube's isIndexFailed: a failed pod a FailIndex rule matches, or a counted failure of a pod
/// whose index had already failed `backoffLimitPerIndex` times.
fn fails_its_index(job: &Job, p: &Pod, limit: i32, only_failed: bool) -> bool {
    if !is_failed(p, only_failed) {
        return false;
    }
    let policy = job
        .spec
        .as_ref()
        .and_then(|s| s.pod_failure_policy.as_ref());
    match failure_policy::outcome(policy, p) {
        Outcome::FailIndex => true,
        Outcome::Ignore => false,
        _ => count(p, FAILURE_COUNT) >= limit,
    }
}

/// kube's calculateFailedIndexes: `status.failedIndexes` plus the indexes the pods fail now.
pub fn failed_indexes(job: &Job, pods: &[&Pod], completions: i32, only_failed: bool) -> Intervals {
    let prev = job
        .status
        .as_ref()
        .and_then(|s| s.failed_indexes.as_deref())
        .unwrap_or("");
    let Some(limit) = limit(job) else {
        return Intervals::default();
    };
    let new = pods
        .iter()
        .filter(|p| fails_its_index(job, p, limit, only_failed))
        .filter_map(|p| completion_index(p))
        .filter(|ix| *ix < completions);
    Intervals::parse(prev, completions).with(new)
}

/// kube's getPodsWithDelayedDeletionPerIndex: for each index neither finished nor running, the
/// failed pod that finished last — the one its replacement takes the counts from.
pub fn last_failed<'a>(
    pods: &[&'a Pod],
    done: &Intervals,
    active: &[&Pod],
    completions: i32,
    only_failed: bool,
) -> BTreeMap<i32, &'a Pod> {
    let running: HashSet<i32> = active.iter().filter_map(|p| completion_index(p)).collect();
    let mut last: BTreeMap<i32, &'a Pod> = BTreeMap::new();
    for &p in pods {
        let Some(ix) = completion_index(p).filter(|ix| *ix < completions) else {
            continue;
        };
        if !is_failed(p, only_failed) || done.has(ix) || running.contains(&ix) {
            continue;
        }
        match last.get(&ix) {
            Some(q) if finished_time(q) >= finished_time(p) => {}
            _ => {
                last.insert(ix, p);
            }
        }
    }
    last
}

/// kube's getNewIndexFailureCounts: the (failure, ignored failure) counts of the pod replacing
/// `replaced`.
pub fn counts_after(job: &Job, replaced: Option<&Pod>) -> (i32, i32) {
    let Some(p) = replaced else {
        return (0, 0);
    };
    let (failed, ignored) = (count(p, FAILURE_COUNT), count(p, IGNORED_COUNT));
    let policy = job
        .spec
        .as_ref()
        .and_then(|s| s.pod_failure_policy.as_ref());
    match failure_policy::outcome(policy, p) {
        Outcome::Ignore => (failed, ignored + 1),
        _ => (failed + 1, ignored),
    }
}

/// kube's getRemainingTimePerIndex: the index's own delay, `INITIAL × 2^(n-1)` (at most `MAX`)
/// after its last failure, `n` counting every failure of the index, ignored ones included.
pub fn remaining(replaced: Option<&Pod>, now: DateTime<Utc>) -> Duration {
    let Some(p) = replaced else {
        return Duration::ZERO;
    };
    let failures = count(p, FAILURE_COUNT) + count(p, IGNORED_COUNT) + 1;
    backoff::left(failures, finished_time(p), now)
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::batch::v1::{
        JobSpec, JobStatus, PodFailurePolicy, PodFailurePolicyOnExitCodesRequirement,
        PodFailurePolicyRule,
    };
    use k8s_openapi::api::core::v1::{
        ContainerState, ContainerStateTerminated, ContainerStatus, PodStatus,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

    use super::*;
    use crate::job::indexed::INDEX_KEY;

    fn t(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + s, 0).unwrap()
    }

    fn pod(ix: i32, phase: &str, failures: i32, exit: i32, at: i64) -> Pod {
        Pod {
            metadata: ObjectMeta {
                annotations: Some(
                    [
                        (INDEX_KEY.to_string(), ix.to_string()),
                        (FAILURE_COUNT.to_string(), failures.to_string()),
                    ]
                    .into(),
                ),
                ..Default::default()
            },
            status: Some(PodStatus {
                phase: Some(phase.into()),
                container_statuses: Some(vec![ContainerStatus {
                    name: "main".into(),
                    state: Some(ContainerState {
                        terminated: Some(ContainerStateTerminated {
                            exit_code: exit,
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

    fn job(limit: i32, fail_index_on: Option<i32>) -> Job {
        Job {
            spec: Some(JobSpec {
                completions: Some(4),
                backoff_limit_per_index: Some(limit),
                pod_failure_policy: fail_index_on.map(|code| PodFailurePolicy {
                    rules: vec![PodFailurePolicyRule {
                        action: "FailIndex".into(),
                        on_exit_codes: Some(PodFailurePolicyOnExitCodesRequirement {
                            operator: "In".into(),
                            values: vec![code],
                            ..Default::default()
                        }),
                        ..Default::default()
                    }],
                }),
                ..Default::default()
            }),
            status: Some(JobStatus {
                failed_indexes: Some("3".into()),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn an_index_fails_past_its_limit_or_on_a_fail_index_rule() {
        let j = job(1, Some(42));
        let first = pod(0, "Failed", 0, 1, 0);
        let second = pod(1, "Failed", 1, 1, 0);
        let fail_index = pod(2, "Failed", 0, 42, 0);
        let failed = failed_indexes(&j, &[&first, &second, &fail_index], 4, false);
        assert_eq!(
            failed.to_string(),
            "1-3",
            "index 0 has a retry left; 3 was failed"
        );
    }

    #[test]
    fn replacements_carry_the_counts_and_wait_their_index_delay() {
        let j = job(3, None);
        let p = pod(0, "Failed", 2, 1, 0);
        assert_eq!(counts_after(&j, Some(&p)), (3, 0));
        assert_eq!(counts_after(&j, None), (0, 0));
        // Third failure of the index: 40 s after it finished.
        assert_eq!(remaining(Some(&p), t(10)), Duration::from_secs(30));
        assert_eq!(remaining(Some(&p), t(50)), Duration::ZERO);
    }

    #[test]
    fn the_last_failed_pod_of_each_pending_index_is_kept() {
        let (a, b) = (pod(0, "Failed", 0, 1, 5), pod(0, "Failed", 1, 1, 9));
        let (c, d) = (pod(1, "Failed", 0, 1, 1), pod(2, "Failed", 0, 1, 1));
        let running = pod(1, "Running", 1, 0, 0);
        let done = Intervals::parse("2", 4);
        let last = last_failed(&[&a, &b, &c, &d], &done, &[&running], 4, false);
        assert_eq!(last.len(), 1, "index 1 runs again, index 2 is done");
        assert!(std::ptr::eq(last[&0], &b));
    }
}
