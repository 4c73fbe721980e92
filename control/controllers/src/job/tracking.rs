//! Pod tracking with the `batch.kubernetes.io/job-tracking` finalizer (kube's
//! `tracking_utils.go` and trackJobStatusAndRemoveFinalizers): every pod the controller creates
//! or adopts carries the finalizer, so a finished pod stays until it is counted. A sync records
//! the uids of newly finished pods in `status.uncountedTerminatedPods`, then removes their
//! finalizers, then moves them into `succeeded` / `failed`: a pod is counted exactly once even
//! when it is deleted before the controller saw it finish, or when the controller restarts
//! between two of the steps.

use std::collections::{BTreeSet, HashSet};

use k8s_openapi::api::batch::v1::{Job, JobStatus, UncountedTerminatedPods};
use k8s_openapi::api::core::v1::Pod;

use super::failure_policy::{self, Outcome};
use super::indexed::{self, Intervals};

pub const FINALIZER: &str = "batch.kubernetes.io/job-tracking";

/// kube's MaxUncountedPods: `status.uncountedTerminatedPods` (with the indexes newly completed)
/// never grows past this many in one sync, keeping the status small (about 20 KB) and the
/// finalizer removals of one big Job from starving the others; the rest wait for the next sync.
pub const MAX_UNCOUNTED: usize = 500;

pub fn has_finalizer(p: &Pod) -> bool {
    p.metadata
        .finalizers
        .iter()
        .flatten()
        .any(|f| f == FINALIZER)
}

pub fn uid(p: &Pod) -> &str {
    p.metadata.uid.as_deref().unwrap_or_default()
}

/// `status.uncountedTerminatedPods`: finished pods recorded but not yet in the counts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Uncounted {
    pub succeeded: BTreeSet<String>,
    pub failed: BTreeSet<String>,
}

impl Uncounted {
    pub fn of(status: Option<&JobStatus>) -> Self {
        let u = status.and_then(|s| s.uncounted_terminated_pods.as_ref());
        let set = |v: Option<&Vec<String>>| v.into_iter().flatten().cloned().collect();
        Uncounted {
            succeeded: set(u.and_then(|u| u.succeeded.as_ref())),
            failed: set(u.and_then(|u| u.failed.as_ref())),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.succeeded.is_empty() && self.failed.is_empty()
    }

    /// The status field: absent when nothing is uncounted (kube writes `{}`; both read alike).
    pub fn to_status(&self) -> Option<UncountedTerminatedPods> {
        let list = |s: &BTreeSet<String>| (!s.is_empty()).then(|| s.iter().cloned().collect());
        (!self.is_empty()).then(|| UncountedTerminatedPods {
            succeeded: list(&self.succeeded),
            failed: list(&self.failed),
        })
    }

    /// kube's cleanUncountedPodsWithoutFinalizers: the uids no pod holds with its finalizer any
    /// more leave the lists; returns how many (succeeded, failed) to add to the counts.
    pub fn settle(&mut self, held: &HashSet<String>) -> (i32, i32) {
        let before = (self.succeeded.len(), self.failed.len());
        self.succeeded.retain(|u| held.contains(u));
        self.failed.retain(|u| held.contains(u));
        (
            (before.0 - self.succeeded.len()) as i32,
            (before.1 - self.failed.len()) as i32,
        )
    }
}

/// What one sync found among the pods that still hold the finalizer.
#[derive(Debug, Default)]
pub struct Account<'a> {
    /// The previous uncounted uids plus the newly finished pods' (Indexed successes excepted:
    /// they go straight to `completedIndexes`, as in kube).
    pub uncounted: Uncounted,
    /// Succeeded indexes (Indexed Jobs) seen on pods still holding the finalizer.
    pub new_succeeded_indexes: Vec<i32>,
    /// Failed pods newly recorded (whatever the failure policy says), for per-index counting.
    pub new_failed: Vec<&'a Pod>,
    /// Succeeded pods newly recorded (Indexed: with a valid index), for the failure backoff.
    pub new_succeeded: Vec<&'a Pod>,
    /// [`MAX_UNCOUNTED`] was reached: finished pods are left for the next sync.
    pub capped: bool,
    /// Pods whose finalizer goes in this sync.
    pub release: Vec<&'a Pod>,
}

/// kube's isPodFailed: the Failed phase, or — unless only failed pods are replaced — a pod
/// being deleted before it succeeded (an orphan may never reach Failed).
pub fn is_failed(p: &Pod, only_failed: bool) -> bool {
    let phase = super::phase(p);
    phase == Some("Failed")
        || (!only_failed && p.metadata.deletion_timestamp.is_some() && phase != Some("Succeeded"))
}

/// Whether the Job ends in this sync.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    No,
    /// Every finalizer goes, and the pods still unfinished count as failed.
    Failing,
    /// Every finalizer goes (a success policy was met: the rest are not failures).
    Succeeding,
}

/// kube's loop over the pods in trackJobStatusAndRemoveFinalizers. `in_flight`: uids whose
/// finalizer removal was already sent (the cache may not show it yet). It stops once the
/// uncounted uids still held by a pod plus the newly completed indexes reach `limit`
/// ([`MAX_UNCOUNTED`]; unlimited to count every finished pod, as kube's in-memory counts do).
pub fn account<'a>(
    job: &Job,
    pods: &[&'a Pod],
    only_failed: bool,
    ending: Ending,
    in_flight: &HashSet<String>,
    limit: usize,
) -> Account<'a> {
    let spec = job.spec.clone().unwrap_or_default();
    let is_indexed = indexed::is_indexed(job);
    let completions = spec.completions.unwrap_or(0);
    let prev = Uncounted::of(job.status.as_ref());
    let prev_indexes = job
        .status
        .as_ref()
        .and_then(|s| s.completed_indexes.as_deref())
        .map(|s| Intervals::parse(s, completions))
        .unwrap_or_default();
    let valid_index = |p: &Pod| {
        indexed::completion_index(p)
            .filter(|ix| *ix < completions)
            .is_some()
    };
    let mut out = Account {
        uncounted: prev.clone(),
        ..Default::default()
    };
    // The previous uids no pod holds any more are counted in this sync: they take no room.
    let held: HashSet<&str> = pods
        .iter()
        .filter(|p| has_finalizer(p) && !in_flight.contains(uid(p)))
        .map(|p| uid(p))
        .collect();
    let mut room_taken = prev
        .succeeded
        .iter()
        .chain(&prev.failed)
        .filter(|u| held.contains(u.as_str()))
        .count();
    for &p in pods {
        if room_taken >= limit {
            out.capped = true;
            break;
        }
        if !has_finalizer(p) || in_flight.contains(uid(p)) {
            continue;
        }
        let succeeded = super::phase(p) == Some("Succeeded");
        let failed = is_failed(p, only_failed);
        // kube's canRemoveFinalizer: under a failure policy a deleted pod waits for its Failed
        // phase (the kubelet's exit codes decide the rule).
        let failure_final =
            failed && (spec.pod_failure_policy.is_none() || super::phase(p) == Some("Failed"));
        if !(ending != Ending::No || succeeded || failure_final) {
            continue;
        }
        out.release.push(p);
        let id = uid(p).to_string();
        if succeeded && !prev.failed.contains(&id) {
            if !prev.succeeded.contains(&id) && (!is_indexed || valid_index(p)) {
                out.new_succeeded.push(p);
            }
            if is_indexed {
                if let Some(ix) = indexed::completion_index(p).filter(|ix| *ix < completions) {
                    if !prev_indexes.has(ix) && !out.new_succeeded_indexes.contains(&ix) {
                        out.new_succeeded_indexes.push(ix);
                        room_taken += 1;
                    }
                }
            } else if out.uncounted.succeeded.insert(id) {
                room_taken += 1;
            }
        } else if (failed || ending == Ending::Failing)
            && !prev.succeeded.contains(&id)
            && !prev.failed.contains(&id)
            && (!is_indexed || valid_index(p))
        {
            out.new_failed.push(p);
            let policy = spec.pod_failure_policy.as_ref();
            if failure_policy::outcome(policy, p) != Outcome::Ignore {
                out.uncounted.failed.insert(id);
                room_taken += 1;
            }
        }
    }
    out
}

/// The finalizer in a new pod's metadata.
pub fn add_to(finalizers: &mut Option<Vec<String>>) {
    let f = finalizers.get_or_insert_with(Vec::new);
    if !f.iter().any(|x| x == FINALIZER) {
        f.push(FINALIZER.into());
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::batch::v1::JobSpec;
    use k8s_openapi::api::core::v1::PodStatus;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

    use super::*;

    fn pod(uid: &str, phase: &str, tracked: bool, index: Option<i32>) -> Pod {
        Pod {
            metadata: ObjectMeta {
                uid: Some(uid.into()),
                finalizers: tracked.then(|| vec![FINALIZER.to_string()]),
                annotations: index
                    .map(|i| [(indexed::INDEX_KEY.to_string(), i.to_string())].into()),
                ..Default::default()
            },
            status: Some(PodStatus {
                phase: Some(phase.into()),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn job(indexed: bool, uncounted: Uncounted) -> Job {
        Job {
            spec: Some(JobSpec {
                completions: Some(3),
                completion_mode: indexed.then(|| "Indexed".to_string()),
                ..Default::default()
            }),
            status: Some(JobStatus {
                uncounted_terminated_pods: uncounted.to_status(),
                completed_indexes: indexed.then(|| "0".to_string()),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn finished_tracked_pods_are_recorded_once_and_released() {
        let prev = Uncounted {
            succeeded: ["a".to_string()].into(),
            ..Default::default()
        };
        let j = job(false, prev);
        let (a, b, c, d) = (
            pod("a", "Succeeded", true, None),
            pod("b", "Failed", true, None),
            pod("c", "Running", true, None),
            pod("d", "Succeeded", false, None),
        );
        let acc = account(
            &j,
            &[&a, &b, &c, &d],
            false,
            Ending::No,
            &HashSet::new(),
            usize::MAX,
        );
        assert_eq!(acc.uncounted.succeeded, ["a".to_string()].into());
        assert_eq!(acc.uncounted.failed, ["b".to_string()].into());
        let released: Vec<&str> = acc.release.iter().map(|p| uid(p)).collect();
        assert_eq!(released, ["a", "b"]);
        // A removal already sent is not counted again from a stale cache.
        let acc = account(
            &j,
            &[&b],
            false,
            Ending::No,
            &["b".to_string()].into(),
            usize::MAX,
        );
        assert!(acc.uncounted.failed.is_empty() && acc.release.is_empty());
        // Finishing: the running pod counts as failed and is released too.
        let acc = account(
            &j,
            &[&c],
            false,
            Ending::Failing,
            &HashSet::new(),
            usize::MAX,
        );
        assert_eq!(acc.uncounted.failed, ["c".to_string()].into());
        // Met a success policy: released, not a failure.
        let acc = account(
            &j,
            &[&c],
            false,
            Ending::Succeeding,
            &HashSet::new(),
            usize::MAX,
        );
        assert!(acc.uncounted.failed.is_empty() && acc.release.len() == 1);
    }

    #[test]
    fn deleted_pods_count_as_failed_unless_only_failed_pods_are_replaced() {
        let j = job(false, Uncounted::default());
        let mut gone = pod("g", "Running", true, None);
        gone.metadata.deletion_timestamp = Some(Time(chrono::Utc::now()));
        let acc = account(&j, &[&gone], false, Ending::No, &HashSet::new(), usize::MAX);
        assert_eq!(acc.uncounted.failed, ["g".to_string()].into());
        let acc = account(&j, &[&gone], true, Ending::No, &HashSet::new(), usize::MAX);
        assert!(acc.release.is_empty(), "waits for the Failed phase");
    }

    #[test]
    fn indexed_successes_go_to_completed_indexes() {
        let j = job(true, Uncounted::default());
        let (p0, p1, p7) = (
            pod("x", "Succeeded", true, Some(0)),
            pod("y", "Succeeded", true, Some(1)),
            pod("z", "Failed", true, Some(7)),
        );
        let acc = account(
            &j,
            &[&p0, &p1, &p7],
            false,
            Ending::No,
            &HashSet::new(),
            usize::MAX,
        );
        assert_eq!(acc.new_succeeded_indexes, [1], "0 was already complete");
        assert!(acc.uncounted.is_empty(), "index 7 is out of range");
        assert_eq!(acc.release.len(), 3);
    }

    #[test]
    fn at_most_max_uncounted_pods_are_taken_per_sync() {
        // One uid left over from before (still held) plus new ones: the room is 3.
        let prev = Uncounted {
            failed: ["old".to_string(), "gone".to_string()].into(),
            ..Default::default()
        };
        let j = job(false, prev);
        let old = pod("old", "Failed", true, None);
        let new: Vec<Pod> = (0..4)
            .map(|i| pod(&format!("p{i}"), "Succeeded", true, None))
            .collect();
        let mut all: Vec<&Pod> = vec![&old];
        all.extend(new.iter());
        let acc = account(&j, &all, false, Ending::No, &HashSet::new(), 3);
        assert!(acc.capped);
        assert_eq!(acc.uncounted.succeeded.len(), 2, "\"gone\" takes no room");
        assert_eq!(acc.new_succeeded.len(), 2);
        let acc = account(&j, &all, false, Ending::No, &HashSet::new(), usize::MAX);
        assert!(!acc.capped && acc.uncounted.succeeded.len() == 4);
    }

    #[test]
    fn settling_moves_what_no_pod_holds_any_more() {
        let mut u = Uncounted {
            succeeded: ["a".to_string(), "b".to_string()].into(),
            failed: ["c".to_string()].into(),
        };
        assert_eq!(u.settle(&["b".to_string()].into()), (1, 1));
        assert_eq!(u.succeeded, ["b".to_string()].into());
        assert!(u.to_status().unwrap().failed.is_none());
    }
}
