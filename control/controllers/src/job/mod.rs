//! The Job controller (kube's `pkg/controller/job`). NonIndexed Jobs keep
//! `min(parallelism, completions - succeeded)` pods running (parallelism while no pod has
//! succeeded, for work-queue Jobs without completions); Indexed Jobs ([`indexed`]) run one pod
//! per pending completion index, lowest first, and finish when every index succeeded or a
//! [`success_policy`] rule is met. Failed pods count toward `backoffLimit` unless the
//! [`failure_policy`] ignores them (or fails the Job at once); `OnFailure` container restarts
//! count too, and replacements wait out kube's exponential delay ([`backoff`], kept per Job
//! in memory, ignored failures included) and, with `podReplacementPolicy: Failed`, the end of
//! terminating pods. The Job fails
//! past `backoffLimit` or `activeDeadlineSeconds`, honours `suspend`, and writes status (active,
//! ready, terminating, succeeded, failed, completedIndexes, startTime, completionTime, the interim
//! FailureTarget / SuccessCriteriaMet conditions then Failed / Complete, Suspended, with kube's
//! reasons) and kube's events. Orphans the selector matches are adopted, pods it stops
//! matching released.
//! Indexed Jobs with `backoffLimitPerIndex` fail single indexes ([`per_index`]). Every pod
//! carries the tracking finalizer until it is counted ([`tracking`]).
//! Creations and deletions go through [`Expectations`] as in the ReplicaSet controller.

pub mod backoff;
pub mod failure_policy;
pub mod indexed;
pub mod metrics;
pub mod per_index;
pub mod success_policy;
pub mod tracking;
mod tracking_writes;

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures_util::future::join_all;
use k8s_openapi::api::batch::v1::{Job, JobCondition, JobStatus};
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::{Api, Client, ResourceExt};
use tracing::Instrument;

use crate::claim::{self, Claim};
use crate::events::{create_pod, error_text, reference, FailedCreate, Recorder};
use crate::expectations::Expectations;
use crate::informer::{Cache, Change};
use crate::metrics::Metrics;
use crate::podutil::{self, controller_of};
use crate::queue::{run_workers, Queue, Requeue};
use crate::replicaset::{slow_start_batch, BURST_REPLICAS};
use crate::{is_not_found, key, split_key, Clock, Informers};

use self::indexed::Intervals;
use self::tracking::Ending;

const STATUS_FIELDS: &[&str] = &[
    "active",
    "ready",
    "succeeded",
    "failed",
    "completedIndexes",
    "failedIndexes",
    "uncountedTerminatedPods",
    "terminating",
    "startTime",
    "completionTime",
    "conditions",
];

#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error("job {key}: {what}: {source}")]
    Api {
        key: String,
        what: String,
        #[source]
        source: kube::Error,
    },
}

pub struct JobController {
    client: Client,
    jobs: Arc<Cache<Job>>,
    pods: Arc<Cache<Pod>>,
    queue: Arc<Queue>,
    expectations: Arc<Expectations>,
    clock: Clock,
    events: Recorder,
    /// Uids of the Jobs this controller finished: the cache may still hold the Job without its
    /// final condition when the deletion of its last pods arrives, and a sync on that stale
    /// copy would start a new pod (kube's pods keep a tracking finalizer until the status is
    /// written instead).
    finished: Arc<Mutex<HashSet<String>>>,
    /// Pods (`ns/name`) holding the tracking finalizer whose Job is gone, being deleted or
    /// finished: their finalizer goes (kube's orphan queue).
    orphans: Arc<Queue>,
    /// Uids of pods whose tracking finalizer this controller removed and the cache may not
    /// show yet (kube's finalizer expectations): never counted twice from a stale copy.
    in_flight: Arc<Mutex<HashSet<String>>>,
    /// The failure backoff of each Job (kube's podBackoffStore).
    backoffs: Arc<backoff::Store>,
    metrics: Metrics,
}

/// What a sync tells kube's job_sync metrics: the Job's completion mode (none for a sync
/// that found nothing to do) and what it did.
struct SyncLabels {
    mode: Option<&'static str>,
    action: &'static str,
}

impl std::fmt::Debug for JobController {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobController").finish_non_exhaustive()
    }
}

fn phase(p: &Pod) -> Option<&str> {
    p.status.as_ref().and_then(|s| s.phase.as_deref())
}

fn finished(s: &JobStatus) -> bool {
    s.conditions
        .iter()
        .flatten()
        .any(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True")
}

fn true_condition<'a>(s: Option<&'a JobStatus>, type_: &str) -> Option<&'a JobCondition> {
    s?.conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == type_ && c.status == "True")
}

/// What the controller saw of a Job's pods.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Observed {
    /// Succeeded pods (NonIndexed) or succeeded indexes (Indexed).
    pub succeeded: i32,
    /// Failed pods that count toward backoffLimit.
    pub failed: i32,
    /// `OnFailure` container restarts reached backoffLimit.
    pub restarts_past_limit: bool,
    /// The message of a FailJob rule of the pod failure policy a failed pod matched.
    pub fail_job: Option<String>,
    /// The message of the success policy rule met.
    pub success_policy: Option<String>,
    /// Failed indexes, for Jobs with backoffLimitPerIndex.
    pub failed_indexes: Option<i32>,
    pub start: Option<DateTime<Utc>>,
}

/// How the Job ends, once its active pods are gone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finish {
    /// FailureTarget, then Failed.
    Failed { reason: String, message: String },
    /// SuccessCriteriaMet, then Complete.
    Succeeded { reason: String, message: String },
}

/// What a Job's pods say, and what the Job should do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Pods that should be running now.
    pub want_active: i32,
    /// The Job has failed or met a success policy: its active pods go, then it finishes.
    pub finish: Option<Finish>,
    /// Enough completions: Complete once no pod is active.
    pub complete: bool,
}

fn fail(reason: &str, message: &str) -> Option<Finish> {
    Some(Finish::Failed {
        reason: reason.into(),
        message: message.into(),
    })
}

/// kube's syncJob decision, in its order: an interim condition already written, a FailJob
/// rule, backoffLimit (failed pods or OnFailure restarts), activeDeadlineSeconds, then the
/// success policy; otherwise how many pods to run.
pub fn decide(job: &Job, seen: &Observed, now: DateTime<Utc>) -> Decision {
    let spec = job.spec.clone().unwrap_or_default();
    let parallelism = spec.parallelism.unwrap_or(1).max(0);
    let backoff_limit = spec.backoff_limit.unwrap_or(6);
    let suspended = spec.suspend == Some(true);
    let status = job.status.as_ref();
    let from = |c: &JobCondition| {
        (
            c.reason.clone().unwrap_or_default(),
            c.message.clone().unwrap_or_default(),
        )
    };
    let mut finish = None;
    if let Some(c) = true_condition(status, "FailureTarget") {
        let (reason, message) = from(c);
        finish = Some(Finish::Failed { reason, message });
    } else if let Some(c) = true_condition(status, "SuccessCriteriaMet") {
        let (reason, message) = from(c);
        finish = Some(Finish::Succeeded { reason, message });
    } else if let Some(m) = &seen.fail_job {
        finish = fail("PodFailurePolicy", m);
    } else if seen.failed > backoff_limit || seen.restarts_past_limit {
        finish = fail(
            "BackoffLimitExceeded",
            "Job has reached the specified backoff limit",
        );
    } else if let (Some(deadline), Some(start), false) =
        (spec.active_deadline_seconds, seen.start, suspended)
    {
        if now - start >= chrono::Duration::seconds(deadline) {
            finish = fail(
                "DeadlineExceeded",
                "Job was active longer than specified deadline",
            );
        }
    }
    if let (None, Some(failed)) = (&finish, seen.failed_indexes) {
        let completions = spec.completions.unwrap_or(0);
        if spec.max_failed_indexes.is_some_and(|max| failed > max) {
            finish = fail(
                "MaxFailedIndexesExceeded",
                "Job has exceeded the specified maximal number of failed indexes",
            );
        } else if failed > 0 && failed + seen.succeeded >= completions {
            finish = fail("FailedIndexes", "Job has failed indexes");
        }
    }
    if finish.is_none() {
        if let Some(m) = &seen.success_policy {
            finish = Some(Finish::Succeeded {
                reason: "SuccessPolicy".into(),
                message: m.clone(),
            });
        }
    }
    if finish.is_some() {
        return Decision {
            want_active: 0,
            finish,
            complete: false,
        };
    }
    let succeeded = seen.succeeded;
    let (want_active, complete) = match spec.completions {
        // Failed indexes are done too: not run again.
        Some(c) => {
            let c = c - seen.failed_indexes.unwrap_or(0);
            let complete = succeeded >= c;
            (
                if complete {
                    0
                } else {
                    parallelism.min(c - succeeded)
                },
                complete,
            )
        }
        // A work queue: done once one pod succeeded and none is left running (checked by the
        // caller with the active count); no new pods after the first success.
        None => (if succeeded > 0 { 0 } else { parallelism }, succeeded > 0),
    };
    Decision {
        want_active: if suspended { 0 } else { want_active },
        finish: None,
        complete,
    }
}
impl JobController {
    pub fn register(
        informers: &Informers,
        client: Client,
        clock: Clock,
        events: Recorder,
        metrics: Metrics,
    ) -> Arc<Self> {
        let c = Arc::new(Self {
            client,
            jobs: informers.jobs.cache(),
            pods: informers.pods.cache(),
            queue: Queue::new(),
            expectations: Arc::new(Expectations::default()),
            clock,
            events,
            finished: Arc::default(),
            orphans: Queue::new(),
            in_flight: Arc::default(),
            backoffs: Arc::default(),
            metrics,
        });
        let q = c.queue.clone();
        let exp = c.expectations.clone();
        let done = c.finished.clone();
        let backoffs = c.backoffs.clone();
        let (pods, orphans) = (c.pods.clone(), c.orphans.clone());
        let external = c.metrics.clone();
        // The tracked pods of a Job going away lose their finalizer.
        let orphan_pods_of = move |j: &Job| {
            let ns = j.namespace().unwrap_or_default();
            for p in pods.list_namespace(&ns) {
                let ours = controller_of(&p.metadata)
                    .is_some_and(|r| Some(&r.uid) == j.metadata.uid.as_ref());
                if ours && tracking::has_finalizer(&p) {
                    orphans.add(key(&ns, &p.name_any()));
                }
            }
        };
        informers.jobs.add_handler(move |ch| match ch {
            Change::Added(j) | Change::Updated { new: j, .. } => {
                if matches!(ch, Change::Added(_)) && !managed_here(j) {
                    // kube's addJob counts a Job another controller manages, once per add.
                    let name = j.spec.as_ref().and_then(|s| s.managed_by.as_deref());
                    let l = [("controller_name", name.unwrap_or_default())];
                    external.inc(&metrics::BY_EXTERNAL_CONTROLLER, &l);
                }
                if j.metadata.deletion_timestamp.is_some() {
                    orphan_pods_of(j);
                }
                q.add(key(&j.namespace().unwrap_or_default(), &j.name_any()))
            }
            Change::Deleted(j) => {
                let k = key(&j.namespace().unwrap_or_default(), &j.name_any());
                exp.forget(&k);
                let uid = j.metadata.uid.as_deref().unwrap_or_default();
                done.lock().unwrap().remove(uid);
                backoffs.remove(uid);
                orphan_pods_of(j);
                q.add(k);
            }
        });
        let weak = Arc::downgrade(&c);
        informers.pods.add_handler(move |ch| {
            let Some(c) = weak.upgrade() else { return };
            c.count_tracked_terminated(ch);
            let (pod, added, gone) = match ch {
                Change::Added(p) => (
                    p,
                    p.metadata.deletion_timestamp.is_none(),
                    p.metadata.deletion_timestamp.is_some(),
                ),
                Change::Updated { new, .. } => {
                    (new, false, new.metadata.deletion_timestamp.is_some())
                }
                Change::Deleted(p) => (p, false, true),
            };
            if !tracking::has_finalizer(pod) || matches!(ch, Change::Deleted(_)) {
                let uid = pod.metadata.uid.as_deref().unwrap_or_default();
                c.in_flight.lock().unwrap().remove(uid);
            } else if c.orphaned(pod) {
                c.orphans
                    .add(key(&pod.namespace().unwrap_or_default(), &pod.name_any()));
            }
            let Some(r) = controller_of(&pod.metadata).filter(|r| r.kind == "Job") else {
                // An orphan: the Jobs selecting it may adopt it (kube's addPod/updatePod).
                if controller_of(&pod.metadata).is_none() && !gone {
                    let ns = pod.namespace().unwrap_or_default();
                    for j in c.jobs.list_namespace(&ns) {
                        let sel = j.spec.as_ref().and_then(|s| s.selector.as_ref());
                        if sel.is_some_and(|s| {
                            podutil::selector_matches(s, podutil::labels(&pod.metadata))
                        }) {
                            c.queue.add(key(&ns, &j.name_any()));
                        }
                    }
                }
                return;
            };
            let ns = pod.namespace().unwrap_or_default();
            let k = key(&ns, &r.name);
            if added {
                c.expectations.creation_observed(&k);
            }
            if gone {
                c.expectations
                    .deletion_observed(&k, &key(&ns, &pod.name_any()));
            }
            c.queue.add(k);
        });
        c
    }

    pub async fn run(self: Arc<Self>, workers: usize) {
        self.jobs.wait_synced().await;
        self.pods.wait_synced().await;
        let c = self.clone();
        let orphans = run_workers(self.orphans.clone(), 1, "job-orphan-pods", move |k| {
            let c = c.clone();
            async move {
                let span = tracing::debug_span!("orphan_job_pod", pod = %k);
                c.release_orphan(&k).instrument(span).await
            }
        });
        let q = self.queue.clone();
        let jobs = run_workers(q, workers, "job", move |k| {
            let c = self.clone();
            async move {
                let span = tracing::debug_span!("sync_job", key = %k);
                c.sync(&k).instrument(span).await
            }
        });
        futures_util::future::join(orphans, jobs).await;
    }

    /// kube's terminated_pods_tracking_finalizer_total: finished pods gaining or losing the
    /// tracking finalizer, whoever owns them.
    fn count_tracked_terminated(&self, ch: &Change<Pod>) {
        let tracked = |p: &Pod| {
            tracking::has_finalizer(p) && matches!(phase(p), Some("Succeeded" | "Failed"))
        };
        let event = match ch {
            Change::Added(p) => tracked(p).then_some("add"),
            Change::Updated { old, new } => match (tracked(old), tracked(new)) {
                (false, true) => Some("add"),
                (true, false) if !tracking::has_finalizer(new) => Some("delete"),
                _ => None,
            },
            Change::Deleted(p) => tracked(p).then_some("delete"),
        };
        if let Some(event) = event {
            self.metrics
                .inc(&metrics::TRACKING_FINALIZER, &[("event", event)]);
        }
    }

    /// One sync, timed and counted as kube's job_sync_duration_seconds and job_syncs_total.
    async fn sync(&self, k: &str) -> Result<Requeue, JobError> {
        let started = std::time::Instant::now();
        let mut labels = SyncLabels {
            mode: None,
            action: metrics::RECONCILING,
        };
        let result = self.sync_job(k, &mut labels).await;
        if let Some(mode) = labels.mode {
            let result_label = if result.is_ok() { "success" } else { "error" };
            let l = [
                ("completion_mode", mode),
                ("result", result_label),
                ("action", labels.action),
            ];
            let secs = started.elapsed().as_secs_f64();
            self.metrics.observe(&metrics::SYNC_DURATION, &l, secs);
            self.metrics.inc(&metrics::SYNCS, &l);
        }
        result
    }

    async fn sync_job(&self, k: &str, labels: &mut SyncLabels) -> Result<Requeue, JobError> {
        let (ns, name) = split_key(k);
        let Some(job) = self.jobs.get(ns, name) else {
            self.expectations.forget(k);
            return Ok(Requeue::default());
        };
        let err = |what: String| {
            move |source| JobError::Api {
                key: k.to_string(),
                what,
                source,
            }
        };
        let old = job.status.clone().unwrap_or_default();
        let uid = job.metadata.uid.clone().unwrap_or_default();
        if finished(&old) {
            self.backoffs.remove(&uid);
        }
        if finished(&old)
            || !managed_here(&job)
            || job.metadata.deletion_timestamp.is_some()
            || self.finished.lock().unwrap().contains(&uid)
        {
            return Ok(Requeue::default());
        }
        let spec = job.spec.clone().unwrap_or_default();
        let mode = if indexed::is_indexed(&job) {
            "Indexed"
        } else {
            "NonIndexed"
        };
        labels.mode = Some(mode);
        // Taken before the pods are read: the pod handler drops a uid only after the cache
        // shows its finalizer gone, so a uid missing here is missing from the pods read below
        // too. Read after them, a removal landing in between left a pod that looks held and
        // already counted, and it was counted twice (512 successes of 510 pods, once in CI).
        let in_flight = self.in_flight.lock().unwrap().clone();
        let owned = self.claim(&job, k, ns).await?;
        let pods: Vec<&Pod> = owned.iter().map(|p| p.as_ref()).collect();
        let active: Vec<&Pod> = pods
            .iter()
            .copied()
            .filter(|p| podutil::is_active(p))
            .collect();
        let failed_pods: Vec<&Pod> = pods
            .iter()
            .copied()
            .filter(|p| phase(p) == Some("Failed"))
            .collect();
        // Pods being deleted that have not finished: with podReplacementPolicy Failed (the
        // default under a podFailurePolicy) they are replaced only once they are gone.
        let terminating: Vec<&Pod> = pods
            .iter()
            .copied()
            .filter(|p| {
                p.metadata.deletion_timestamp.is_some()
                    && !matches!(phase(p), Some("Succeeded" | "Failed"))
            })
            .collect();
        let only_failed = only_replace_failed_pods(&job);
        let indexed = indexed::is_indexed(&job);
        let completions = spec.completions.unwrap_or(0);
        let succeeded_indexes =
            indexed.then(|| indexed::succeeded_indexes(&job, &pods, completions));
        let per_index = indexed && per_index::limit(&job).is_some();
        let failed_indexes =
            per_index.then(|| per_index::failed_indexes(&job, &pods, completions, only_failed));
        // The last failed pod of each pending index, whose counts its replacement takes: its
        // finalizer stays meanwhile.
        let done = match (&succeeded_indexes, &failed_indexes) {
            (Some(s), Some(f)) => s.with(f.intervals().iter().flat_map(|(a, b)| *a..=*b)),
            _ => Intervals::default(),
        };
        let replaced = if per_index {
            per_index::last_failed(&pods, &done, &active, completions, only_failed)
        } else {
            Default::default()
        };
        let skip: HashSet<String> = replaced
            .values()
            .filter_map(|p| p.metadata.uid.clone())
            .chain(in_flight.iter().cloned())
            .collect();
        // Every finished pod still holding the tracking finalizer is in the counts the limits
        // read (kube's in-memory counts), the failed pods held for their index's replacement
        // too; at most MAX_UNCOUNTED of them are recorded and released in this sync.
        let counting =
            tracking::account(&job, &pods, only_failed, Ending::No, &in_flight, usize::MAX);
        let acct = tracking::account(
            &job,
            &pods,
            only_failed,
            Ending::No,
            &skip,
            tracking::MAX_UNCOUNTED,
        );
        // The failure backoff moved on by the pods recorded now; kept once they are written.
        // Failures an Ignore rule matches are not counted but delay replacements all the same
        // (kube since 1.28: a Job whose every failure is ignored must not retry at once).
        let backoff_record = self
            .backoffs
            .get(&uid)
            .with(&acct.new_succeeded, &acct.new_failed);
        let now = self.clock.now();
        let suspended = spec.suspend == Some(true);
        // A resumed Job starts its activeDeadlineSeconds over (kube resets startTime).
        let resumed = !suspended && true_condition(Some(&old), "Suspended").is_some();
        let start = old
            .start_time
            .as_ref()
            .map(|t| t.0)
            .filter(|_| !resumed)
            .or((!suspended).then_some(now));
        let counted = |n: Option<i32>, extra: usize| n.unwrap_or(0) + extra as i32;
        let seen = Observed {
            succeeded: succeeded_indexes.as_ref().map_or(
                counted(old.succeeded, counting.uncounted.succeeded.len()),
                Intervals::total,
            ),
            failed: counted(old.failed, counting.uncounted.failed.len()),
            restarts_past_limit: backoff::restarts_past_limit(
                spec.template
                    .spec
                    .as_ref()
                    .and_then(|s| s.restart_policy.as_deref()),
                spec.backoff_limit.unwrap_or(6),
                &pods,
            ),
            fail_job: failure_policy::fail_job_message(&job, &failed_pods),
            success_policy: succeeded_indexes.as_ref().and_then(|s| {
                success_policy::matched(spec.success_policy.as_ref(), completions, s)
            }),
            failed_indexes: failed_indexes.as_ref().map(Intervals::total),
            start,
        };
        let decision = decide(&job, &seen, now);
        let mut active_after = active.len() as i32;
        let mut terminating_after = terminating.len() as i32;
        let mut requeue: Option<Duration> = None;
        let pods_api: Api<Pod> = Api::namespaced(self.client.clone(), ns);
        if decision.finish.is_some() {
            // kube deletes the active pods of a finishing Job whatever its expectations,
            // keeping their finalizers: they are counted as failed below.
            let gone = self
                .delete_pods(k, &job, ns, &pods_api, &active, false)
                .await?;
            active_after -= gone;
            terminating_after += gone;
        } else if self.expectations.satisfied(k) {
            labels.action = metrics::TRACKING;
            let rm_at_least = (active.len() as i32 - decision.want_active).max(0) as usize;
            let mut victims = if indexed {
                indexed::pods_for_removal(&active, completions, now)
            } else {
                Vec::new()
            };
            if victims.len() < rm_at_least {
                let left: Vec<&Pod> = active
                    .iter()
                    .copied()
                    .filter(|p| !victims.iter().any(|v| std::ptr::eq(*v, *p)))
                    .collect();
                victims.extend(podutil::pods_to_delete(
                    &left,
                    &[],
                    rm_at_least - victims.len(),
                    now,
                ));
            }
            victims.truncate(BURST_REPLICAS);
            if !victims.is_empty() {
                labels.action = metrics::PODS_DELETED_ACTION;
                // Scaled down or suspended: not failures, so the finalizer goes first.
                let gone = self
                    .delete_pods(k, &job, ns, &pods_api, &victims, true)
                    .await?;
                active_after -= gone;
                terminating_after += gone;
            } else if decision.want_active
                > active_after + if only_failed { terminating_after } else { 0 }
            {
                // kube labels a sync waiting out the backoff as creating pods too.
                labels.action = metrics::PODS_CREATED_ACTION;
                // Jobs with backoffLimitPerIndex wait per index (below) instead.
                let wait = if per_index {
                    Duration::ZERO
                } else {
                    backoff_record.remaining(now)
                };
                if !wait.is_zero() {
                    tracing::debug!(?wait, "pod failure backoff");
                    requeue = Some(wait + Duration::from_millis(100));
                } else {
                    let held = if only_failed { terminating_after } else { 0 };
                    let n =
                        ((decision.want_active - active_after - held) as usize).min(BURST_REPLICAS);
                    // Indexes whose pod is still terminating are not pending when only
                    // failed pods are replaced.
                    let busy: Vec<&Pod> = if only_failed {
                        active.iter().chain(&terminating).copied().collect()
                    } else {
                        active.clone()
                    };
                    let indexes = succeeded_indexes.as_ref().map(|s| {
                        let done = match &failed_indexes {
                            Some(f) => s.with(f.intervals().iter().flat_map(|(a, b)| *a..=*b)),
                            None => s.clone(),
                        };
                        let all =
                            indexed::first_pending(&busy, &done, completions as usize, completions);
                        // An index still in its own backoff waits; the next ones go first.
                        let (ready, waiting): (Vec<i32>, Vec<i32>) =
                            all.into_iter().partition(|ix| {
                                per_index::remaining(replaced.get(ix).copied(), now).is_zero()
                            });
                        let wait = waiting
                            .iter()
                            .map(|ix| per_index::remaining(replaced.get(ix).copied(), now))
                            .min();
                        if let Some(w) = wait {
                            requeue = Some(w + Duration::from_millis(100));
                        }
                        ready.into_iter().take(n).collect::<Vec<i32>>()
                    });
                    let n = indexes.as_ref().map_or(n, Vec::len);
                    let counts: BTreeMap<i32, (i32, i32)> = if per_index {
                        let ixs = indexes.iter().flatten();
                        ixs.map(|ix| {
                            (
                                *ix,
                                per_index::counts_after(&job, replaced.get(ix).copied()),
                            )
                        })
                        .collect()
                    } else {
                        BTreeMap::new()
                    };
                    let reason = metrics::creation_reason(
                        spec.pod_replacement_policy.as_deref(),
                        seen.failed,
                        terminating.len(),
                    );
                    match self.create_pods(k, &job, n, indexes, &counts, reason).await {
                        Ok(ok) => active_after += ok as i32,
                        Err((_, e)) => return Err(err("creating a pod".into())(e)),
                    }
                }
            }
        }
        // A finishing Job counts its unfinished pods as failed and releases every pod.
        let acct = match &decision.finish {
            Some(Finish::Failed { .. }) => tracking::account(
                &job,
                &pods,
                only_failed,
                Ending::Failing,
                &in_flight,
                tracking::MAX_UNCOUNTED,
            ),
            Some(Finish::Succeeded { .. }) => tracking::account(
                &job,
                &pods,
                only_failed,
                Ending::Succeeding,
                &in_flight,
                tracking::MAX_UNCOUNTED,
            ),
            None => acct,
        };
        let mut status = JobStatus {
            start_time: start.map(Time),
            completion_time: old.completion_time.clone(),
            conditions: old.conditions.clone(),
            completed_indexes: succeeded_indexes
                .as_ref()
                .map(ToString::to_string)
                .filter(|s| !s.is_empty()),
            failed_indexes: failed_indexes.as_ref().map(ToString::to_string),
            succeeded: old.succeeded,
            failed: old.failed,
            uncounted_terminated_pods: acct.uncounted.to_status(),
            ..Default::default()
        };
        let set = |status: &mut JobStatus, type_: &str, reason: &str, message: &str| {
            let conds = status.conditions.get_or_insert_with(Vec::new);
            let new = condition(type_, "True", reason, message.to_string(), now);
            match conds.iter_mut().find(|c| c.type_ == type_) {
                Some(c) if c.status == "True" => {}
                Some(c) => *c = new,
                None => conds.push(new),
            }
        };
        let nz = |n: i32| (n != 0).then_some(n);
        status.active = nz(active_after.max(0));
        status.terminating = Some(terminating_after);
        status.ready = Some(active.iter().filter(|p| podutil::is_ready(p)).count() as i32);
        match &decision.finish {
            Some(Finish::Failed { reason, message }) => {
                set(&mut status, "FailureTarget", reason, message)
            }
            Some(Finish::Succeeded { reason, message }) => {
                set(&mut status, "SuccessCriteriaMet", reason, message)
            }
            None => {}
        }
        // Events of this sync, recorded once the status saying the same is written (a write
        // refused on a stale copy is redone by the next sync, which would record them again).
        let mut events = JobEvents::default();
        if suspended {
            if true_condition(Some(&old), "Suspended").is_none() {
                events.normal("Suspended", "Job suspended");
            }
            set(&mut status, "Suspended", "JobSuspended", "Job suspended");
        } else if let Some(c) = status.conditions.as_mut().and_then(|c| {
            c.iter_mut()
                .find(|c| c.type_ == "Suspended" && c.status == "True")
        }) {
            *c = condition(
                "Suspended",
                "False",
                "JobResumed",
                "Job resumed".into(),
                now,
            );
            events.normal("Resumed", "Job resumed");
        }
        // kube's three steps: (1) the newly finished pods are recorded as uncounted, (2) their
        // finalizers go, (3) what no pod holds any more moves into the counts. Uids recorded
        // before that no pod holds any more are counted at once (kube's
        // cleanUncountedPodsWithoutFinalizers before the loop), so they take no room.
        let held_before: HashSet<String> = pods
            .iter()
            .filter(|p| tracking::has_finalizer(p))
            .filter_map(|p| p.metadata.uid.clone())
            .filter(|u| !in_flight.contains(u))
            .collect();
        let mut uncounted = acct.uncounted.clone();
        let (s0, f0) = uncounted.settle(&held_before);
        status.succeeded = nz(old.succeeded.unwrap_or(0) + s0);
        status.failed = nz(old.failed.unwrap_or(0) + f0);
        status.uncounted_terminated_pods = uncounted.to_status();
        let mut rv = job.metadata.resource_version.clone();
        let recorded = uncounted != tracking::Uncounted::of(job.status.as_ref())
            || status.completed_indexes != old.completed_indexes
            || status.failed_indexes != old.failed_indexes;
        // What the metrics were last told of this Job's counts.
        let mut reported = old.clone();
        if recorded {
            rv = match self.write_status(k, &job, rv, &status).await {
                Ok(rv) => rv,
                Err(e) if stale(&e) => return Ok(Requeue(Some(STALE_RETRY))),
                Err(e) => return Err(e),
            };
            self.backoffs.set(&uid, backoff_record);
            self.count_written(&job, mode, &mut reported, &status);
        }
        let freed = self.release(k, &pods_api, &acct.release).await?;
        // kube's pod_failures_handled_by_failure_policy_total: each failed pod a rule matched,
        // once, as its finalizer goes.
        let policy = spec.pod_failure_policy.as_ref();
        for p in acct
            .new_failed
            .iter()
            .filter(|p| freed.contains(tracking::uid(p)))
        {
            if let Some(action) = failure_policy::matched_action(policy, p) {
                self.metrics
                    .inc(&metrics::FAILURES_BY_POLICY, &[("action", action)]);
            }
        }
        // Released, ignored failures are new no more either.
        self.backoffs.set(&uid, backoff_record);
        let held: HashSet<String> = held_before
            .into_iter()
            .filter(|u| !freed.contains(u))
            .collect();
        let (s, f) = uncounted.settle(&held);
        status.succeeded = nz(old.succeeded.unwrap_or(0) + s0 + s);
        status.failed = nz(old.failed.unwrap_or(0) + f0 + f);
        if indexed {
            status.succeeded = succeeded_indexes
                .as_ref()
                .map(Intervals::total)
                .and_then(nz);
        }
        status.uncounted_terminated_pods = uncounted.to_status();
        // The final condition waits until every finished pod is counted (none left over by the
        // MAX_UNCOUNTED cap either).
        let all_counted = uncounted.is_empty() && !acct.capped;
        let complete = |status: &mut JobStatus, events: &mut JobEvents| {
            status.completion_time = Some(Time(now));
            // kube's recordJobFinished: more successes than completions (adopted pods).
            if spec
                .completions
                .is_some_and(|c| status.succeeded.unwrap_or(0) > c)
            {
                events.warning(
                    "TooManySucceededPods",
                    "Too many succeeded pods running after completion count reached",
                );
            }
            events.normal("Completed", "Job completed");
        };
        match &decision.finish {
            Some(Finish::Failed { reason, message }) if active_after <= 0 && all_counted => {
                set(&mut status, "Failed", reason, message);
                events.warning(reason, message);
            }
            Some(Finish::Succeeded { reason, message }) if active_after <= 0 && all_counted => {
                set(&mut status, "Complete", reason, message);
                complete(&mut status, &mut events);
            }
            None if decision.complete && active_after == 0 && all_counted => {
                let message = "Reached expected number of succeeded pods";
                set(
                    &mut status,
                    "SuccessCriteriaMet",
                    "CompletionsReached",
                    message,
                );
                set(&mut status, "Complete", "CompletionsReached", message);
                complete(&mut status, &mut events);
            }
            _ => {}
        }
        if acct.capped {
            // The finished pods past the cap are taken by the next sync.
            requeue = Some(Duration::ZERO);
        }
        if recorded || job.status.as_ref() != Some(&status) {
            match self.write_status(k, &job, rv, &status).await {
                Ok(_) => {}
                // Recorded as uncounted already: the next sync counts them.
                Err(e) if stale(&e) => return Ok(Requeue(Some(STALE_RETRY))),
                Err(e) => return Err(e),
            }
            self.count_written(&job, mode, &mut reported, &status);
            events.record(&self.events, job.as_ref());
            if finished(&status) && !finished(&old) {
                self.count_finished(mode, &status);
            }
            if finished(&status) {
                self.backoffs.remove(&uid);
                self.finished.lock().unwrap().insert(uid);
            }
        }
        // Look again when the deadline passes.
        if let (Some(deadline), Some(start), None, false) = (
            spec.active_deadline_seconds,
            start,
            &decision.finish,
            decision.complete,
        ) {
            let left = start + chrono::Duration::seconds(deadline) - now;
            let left = Duration::from_millis(left.num_milliseconds().max(0) as u64 + 100);
            requeue = Some(requeue.map_or(left, |r| r.min(left)));
        }
        Ok(Requeue(requeue))
    }

    /// After a status write: kube's job_pods_finished_total (and, for Indexed Jobs,
    /// job_finished_indexes_total) by the counts it moved on from `reported`.
    fn count_written(
        &self,
        job: &Job,
        mode: &'static str,
        reported: &mut JobStatus,
        status: &JobStatus,
    ) {
        let m = &self.metrics;
        let diff = |new: Option<i32>, old: Option<i32>| new.unwrap_or(0) - old.unwrap_or(0);
        let succeeded = diff(status.succeeded, reported.succeeded);
        let failed = diff(status.failed, reported.failed);
        if succeeded > 0 {
            let l = [("completion_mode", mode), ("result", "succeeded")];
            m.add(&metrics::PODS_FINISHED, &l, f64::from(succeeded));
        }
        if failed > 0 {
            let l = [("completion_mode", mode), ("result", "failed")];
            m.add(&metrics::PODS_FINISHED, &l, f64::from(failed));
        }
        if indexed::is_indexed(job) {
            let limit = if per_index::limit(job).is_some() {
                "perIndex"
            } else {
                "global"
            };
            let completions = job.spec.as_ref().and_then(|s| s.completions).unwrap_or(0);
            let count = |s: &Option<String>| {
                s.as_deref()
                    .map_or(0, |s| Intervals::parse(s, completions).total())
            };
            let done = count(&status.completed_indexes) - count(&reported.completed_indexes);
            if done > 0 {
                let l = [("status", "succeeded"), ("backoffLimit", limit)];
                m.add(&metrics::FINISHED_INDEXES, &l, f64::from(done));
            }
            let lost = count(&status.failed_indexes) - count(&reported.failed_indexes);
            if lost > 0 && limit == "perIndex" {
                let l = [("status", "failed"), ("backoffLimit", limit)];
                m.add(&metrics::FINISHED_INDEXES, &l, f64::from(lost));
            }
        }
        *reported = status.clone();
    }

    /// kube's recordJobFinished: jobs_finished_total by the final condition.
    fn count_finished(&self, mode: &'static str, status: &JobStatus) {
        let (result, reason) = match (
            true_condition(Some(status), "Complete"),
            true_condition(Some(status), "Failed"),
        ) {
            (Some(c), _) => ("succeeded", c.reason.clone()),
            (None, Some(c)) => ("failed", c.reason.clone()),
            (None, None) => return,
        };
        let reason = reason.unwrap_or_default();
        let l = [
            ("completion_mode", mode),
            ("result", result),
            ("reason", reason.as_str()),
        ];
        self.metrics.inc(&metrics::FINISHED, &l);
    }

    /// kube's getPodsForJob: the pods the Job controls, after adopting the orphans its selector
    /// matches and releasing its pods the selector no longer matches.
    async fn claim(&self, job: &Job, k: &str, ns: &str) -> Result<Vec<Arc<Pod>>, JobError> {
        let uid = job.metadata.uid.clone().unwrap_or_default();
        let selector = job.spec.as_ref().and_then(|s| s.selector.clone());
        let api: Api<Pod> = Api::namespaced(self.client.clone(), ns);
        let mut owned = Vec::new();
        for pod in self.pods.list_namespace(ns) {
            let decision = match &selector {
                Some(sel) => claim::decide(&pod.metadata, &job.metadata, |l| {
                    podutil::selector_matches(sel, l)
                }),
                // No selector (the API requires one): keep what is already ours.
                None if controller_of(&pod.metadata).is_some_and(|r| r.uid == uid) => Claim::Owned,
                None => Claim::Ignore,
            };
            let err = |what: &str, source| JobError::Api {
                key: k.into(),
                what: format!("{what} pod {}", pod.name_any()),
                source,
            };
            match decision {
                Claim::Owned => owned.push(pod),
                Claim::Adopt => match self.adopt(job, &api, &pod).await {
                    Ok(p) => owned.push(Arc::new(p)),
                    // Gone or changed under us: the next event brings it back.
                    Err(e) if is_not_found(&e) || crate::is_conflict(&e) => {}
                    Err(kube::Error::Api(s)) if s.code == 422 => {}
                    Err(e) => return Err(err("adopting", e)),
                },
                Claim::Release => match claim::release(&api, pod.as_ref(), &uid).await {
                    Ok(()) => {}
                    Err(e) if is_not_found(&e) => {}
                    Err(e) => return Err(err("releasing", e)),
                },
                Claim::Ignore => {}
            }
        }
        Ok(owned)
    }

    /// Adopts `pod` after re-reading the Job (kube's RecheckDeletionTimestamp): a Job being
    /// deleted, or replaced by another of the same name, takes no pods.
    async fn adopt(&self, job: &Job, api: &Api<Pod>, pod: &Pod) -> Result<Pod, kube::Error> {
        let ns = job.namespace().unwrap_or_default();
        let fresh = Api::<Job>::namespaced(self.client.clone(), &ns)
            .get(&job.name_any())
            .await?;
        if fresh.metadata.uid != job.metadata.uid || fresh.metadata.deletion_timestamp.is_some() {
            return Err(kube::Error::Api(kube::core::ErrorResponse {
                status: "Failure".into(),
                message: "the Job changed".into(),
                reason: "Conflict".into(),
                code: 409,
            }));
        }
        let owner = podutil::controller_ref(&job.metadata, "batch/v1", "Job");
        let adopted = claim::adopt(api, pod, owner).await?;
        // kube adopts with the tracking finalizer, so the pod is counted once it finishes.
        if tracking::has_finalizer(&adopted) {
            return Ok(adopted);
        }
        let mut finalizers = adopted.metadata.finalizers.clone();
        tracking::add_to(&mut finalizers);
        let patch = serde_json::json!([
            {"op": "test", "path": "/metadata/uid", "value": adopted.metadata.uid},
            {"op": "add", "path": "/metadata/finalizers", "value": finalizers},
        ]);
        let patch: json_patch::Patch = serde_json::from_value(patch).expect("well-formed patch");
        api.patch(
            &adopted.name_any(),
            &PatchParams::default(),
            &Patch::Json::<()>(patch),
        )
        .await
    }

    /// Deletes `victims` through the expectations, their tracking finalizer removed first when
    /// `release_first` (kube's deleteJobPods; deleteActivePods keeps it); returns how many went.
    async fn delete_pods(
        &self,
        k: &str,
        job: &Job,
        ns: &str,
        api: &Api<Pod>,
        victims: &[&Pod],
        release_first: bool,
    ) -> Result<i32, JobError> {
        if victims.is_empty() {
            return Ok(0);
        }
        if release_first {
            self.release(k, api, victims).await?;
        }
        let keys: Vec<String> = victims.iter().map(|p| key(ns, &p.name_any())).collect();
        self.expectations.expect_deletions(k, &keys);
        let results = join_all(victims.iter().map(|p| {
            let n = p.name_any();
            async move { (n.clone(), api.delete(&n, &DeleteParams::default()).await) }
        }))
        .await;
        let mut deleted = 0;
        for (n, r) in results {
            // kube's RealPodControl events.
            match r {
                Ok(_) => {
                    deleted += 1;
                    self.events.normal(
                        reference(job),
                        "SuccessfulDelete",
                        format!("Deleted pod: {n}"),
                    );
                }
                Err(e) => {
                    self.expectations.deletion_observed(k, &key(ns, &n));
                    if !is_not_found(&e) {
                        self.events.warning(
                            reference(job),
                            "FailedDelete",
                            format!("Error deleting: {}", error_text(&e)),
                        );
                        return Err(JobError::Api {
                            key: k.into(),
                            what: format!("deleting pod {n}"),
                            source: e,
                        });
                    }
                }
            }
        }
        Ok(deleted)
    }

    /// Creates `n` pods in slow-start batches (one per index of `indexes` for Indexed Jobs);
    /// returns how many were created, with the first error.
    async fn create_pods(
        &self,
        k: &str,
        job: &Job,
        n: usize,
        indexes: Option<Vec<i32>>,
        counts: &BTreeMap<i32, (i32, i32)>,
        reason: &'static str,
    ) -> Result<usize, (usize, kube::Error)> {
        if n == 0 {
            return Ok(0);
        }
        let api: &Api<Pod> =
            &Api::namespaced(self.client.clone(), &job.namespace().unwrap_or_default());
        self.expectations.expect_creations(k, n);
        let template = job
            .spec
            .as_ref()
            .map(|s| s.template.clone())
            .unwrap_or_default();
        let mut prefix = format!("{}-", job.name_any());
        prefix.truncate(58);
        let next = AtomicUsize::new(0);
        let failures = AtomicUsize::new(0);
        let about = reference(job);
        let (ok, e) = slow_start_batch(n, 1, || {
            let pod = match &indexes {
                Some(ix) => {
                    let ix = ix[next.fetch_add(1, Ordering::Relaxed)];
                    let mut t = indexed::template_for_index(&job.name_any(), &template, ix);
                    if let Some((failed, ignored)) = counts.get(&ix) {
                        let meta = t.metadata.get_or_insert_with(Default::default);
                        let a = meta.annotations.get_or_insert_with(Default::default);
                        a.insert(per_index::FAILURE_COUNT.into(), failed.to_string());
                        a.insert(per_index::IGNORED_COUNT.into(), ignored.to_string());
                    }
                    pod_from_template(job, t, indexed::generate_name(&job.name_any(), ix))
                }
                None => pod_from_template(job, template.clone(), prefix.clone()),
            };
            let (api, events, about) = (api.clone(), self.events.clone(), about.clone());
            let failures = &failures;
            async move {
                let failed = FailedCreate::UnlessNamespaceTerminating;
                let r = create_pod(&api, &pod, &events, about, failed)
                    .await
                    .map(|_| ());
                if r.is_err() {
                    failures.fetch_add(1, Ordering::Relaxed);
                }
                r
            }
        })
        .await;
        for (status, count) in [("succeeded", ok), ("failed", failures.into_inner())] {
            if count > 0 {
                let l = [("reason", reason), ("status", status)];
                self.metrics.add(&metrics::PODS_CREATION, &l, count as f64);
            }
        }
        for _ in ok..n {
            self.expectations.creation_observed(k);
        }
        match e {
            Some(e) => Err((ok, e)),
            None => Ok(ok),
        }
    }
}

/// The events of one sync, recorded together once its status is written.
#[derive(Debug, Default)]
struct JobEvents(Vec<(bool, String, String)>);

impl JobEvents {
    fn normal(&mut self, reason: &str, message: &str) {
        self.0.push((false, reason.into(), message.into()));
    }

    fn warning(&mut self, reason: &str, message: &str) {
        self.0.push((true, reason.into(), message.into()));
    }

    fn record(self, to: &Recorder, job: &Job) {
        for (warning, reason, message) in self.0 {
            if warning {
                to.warning(reference(job), &reason, message);
            } else {
                to.normal(reference(job), &reason, message);
            }
        }
    }
}

/// How soon a sync computed from a stale copy of the Job (its status write refused on the
/// resourceVersion) runs again; the cache's update usually queues it sooner.
const STALE_RETRY: Duration = Duration::from_millis(200);

fn stale(e: &JobError) -> bool {
    matches!(e, JobError::Api { source, .. } if crate::is_conflict(source))
}

/// kube's isJobManagedByOther: a Job whose `spec.managedBy` names another controller is left
/// to it.
fn managed_here(job: &Job) -> bool {
    job.spec
        .as_ref()
        .and_then(|s| s.managed_by.as_deref())
        .is_none_or(|m| m == "kubernetes.io/job-controller")
}

/// kube's onlyReplaceFailedPods: podReplacementPolicy Failed, or (unset) a podFailurePolicy.
fn only_replace_failed_pods(job: &Job) -> bool {
    let spec = job.spec.as_ref();
    match spec.and_then(|s| s.pod_replacement_policy.as_deref()) {
        Some(p) => p == "Failed",
        None => spec.is_some_and(|s| s.pod_failure_policy.is_some()),
    }
}

fn condition(
    type_: &str,
    status: &str,
    reason: &str,
    message: String,
    now: DateTime<Utc>,
) -> JobCondition {
    JobCondition {
        type_: type_.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message),
        last_probe_time: Some(Time(now)),
        last_transition_time: Some(Time(now)),
    }
}

fn pod_from_template(job: &Job, template: PodTemplateSpec, generate_name: String) -> Pod {
    let meta = template.metadata.unwrap_or_default();
    Pod {
        metadata: ObjectMeta {
            generate_name: Some(generate_name),
            namespace: job.namespace(),
            labels: meta.labels,
            annotations: meta.annotations,
            finalizers: {
                let mut f = meta.finalizers;
                tracking::add_to(&mut f);
                f
            },
            owner_references: Some(vec![podutil::controller_ref(
                &job.metadata,
                "batch/v1",
                "Job",
            )]),
            ..Default::default()
        },
        spec: template.spec,
        status: None,
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::batch::v1::JobSpec;

    use super::*;

    fn job(completions: Option<i32>, parallelism: i32) -> Job {
        Job {
            spec: Some(JobSpec {
                completions,
                parallelism: Some(parallelism),
                backoff_limit: Some(2),
                active_deadline_seconds: Some(100),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn t(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + s, 0).unwrap()
    }

    fn seen(succeeded: i32, failed: i32) -> Observed {
        Observed {
            succeeded,
            failed,
            start: Some(t(0)),
            ..Default::default()
        }
    }

    fn failed_reason(d: &Decision) -> Option<&str> {
        match &d.finish {
            Some(Finish::Failed { reason, .. }) => Some(reason),
            _ => None,
        }
    }

    #[test]
    fn runs_up_to_parallelism_until_completions() {
        let j = job(Some(5), 2);
        assert_eq!(decide(&j, &seen(0, 0), t(1)).want_active, 2);
        assert_eq!(decide(&j, &seen(4, 0), t(1)).want_active, 1);
        let done = decide(&j, &seen(5, 1), t(1));
        assert_eq!((done.want_active, done.complete), (0, true));
    }

    #[test]
    fn work_queue_stops_starting_pods_after_the_first_success() {
        let j = job(None, 3);
        assert_eq!(decide(&j, &seen(0, 0), t(1)).want_active, 3);
        let d = decide(&j, &seen(1, 0), t(1));
        assert_eq!((d.want_active, d.complete), (0, true));
    }

    #[test]
    fn backoff_limit_restarts_and_deadline_fail_the_job() {
        let j = job(Some(5), 2);
        assert!(
            decide(&j, &seen(0, 2), t(1)).finish.is_none(),
            "2 failures = the limit"
        );
        assert_eq!(
            failed_reason(&decide(&j, &seen(0, 3), t(1))),
            Some("BackoffLimitExceeded")
        );
        let restarts = Observed {
            restarts_past_limit: true,
            ..seen(0, 0)
        };
        assert_eq!(
            failed_reason(&decide(&j, &restarts, t(1))),
            Some("BackoffLimitExceeded")
        );
        assert!(decide(&j, &seen(0, 0), t(99)).finish.is_none());
        let late = decide(&j, &seen(0, 0), t(100));
        assert_eq!(failed_reason(&late), Some("DeadlineExceeded"));
        assert_eq!(late.want_active, 0);
    }

    #[test]
    fn fail_job_rules_come_before_the_backoff_limit_and_success_policy() {
        let j = job(Some(5), 2);
        let s = Observed {
            fail_job: Some("Container main ...".into()),
            success_policy: Some("Matched rules at index 0".into()),
            ..seen(0, 3)
        };
        let d = decide(&j, &s, t(1));
        assert_eq!(failed_reason(&d), Some("PodFailurePolicy"));
        let s = Observed {
            success_policy: Some("Matched rules at index 0".into()),
            ..seen(2, 0)
        };
        assert_eq!(
            decide(&j, &s, t(1)).finish,
            Some(Finish::Succeeded {
                reason: "SuccessPolicy".into(),
                message: "Matched rules at index 0".into()
            })
        );
    }

    #[test]
    fn an_interim_condition_already_written_decides() {
        let mut j = job(Some(5), 2);
        j.status = Some(JobStatus {
            conditions: Some(vec![condition(
                "FailureTarget",
                "True",
                "PodFailurePolicy",
                "m".into(),
                t(0),
            )]),
            ..Default::default()
        });
        // Even with nothing failing any more (the pod was deleted), the Job still fails.
        assert_eq!(
            decide(&j, &seen(0, 0), t(1)).finish,
            Some(Finish::Failed {
                reason: "PodFailurePolicy".into(),
                message: "m".into()
            })
        );
    }

    #[test]
    fn only_failed_pods_are_replaced_when_asked_or_under_a_failure_policy() {
        let mut j = job(Some(1), 1);
        assert!(!only_replace_failed_pods(&j));
        let spec = j.spec.as_mut().unwrap();
        spec.pod_failure_policy = Some(Default::default());
        assert!(only_replace_failed_pods(&j));
        let spec = j.spec.as_mut().unwrap();
        spec.pod_replacement_policy = Some("TerminatingOrFailed".into());
        assert!(!only_replace_failed_pods(&j));
        let spec = j.spec.as_mut().unwrap();
        spec.pod_replacement_policy = Some("Failed".into());
        spec.pod_failure_policy = None;
        assert!(only_replace_failed_pods(&j));
    }

    #[test]
    fn jobs_managed_by_another_controller_are_left_alone() {
        let mut j = job(Some(1), 1);
        assert!(managed_here(&j));
        j.spec.as_mut().unwrap().managed_by = Some("kubernetes.io/job-controller".into());
        assert!(managed_here(&j));
        j.spec.as_mut().unwrap().managed_by = Some("example.com/multikueue".into());
        assert!(!managed_here(&j));
    }

    #[test]
    fn failed_indexes_are_not_run_again_and_fail_the_job_at_the_end_or_past_the_maximum() {
        let mut j = job(Some(4), 4);
        let per_index = |succeeded: i32, failed: i32| Observed {
            failed_indexes: Some(failed),
            ..seen(succeeded, 0)
        };
        let d = decide(&j, &per_index(1, 1), t(1));
        assert_eq!((d.want_active, d.finish), (2, None));
        let d = decide(&j, &per_index(3, 1), t(1));
        assert_eq!(failed_reason(&d), Some("FailedIndexes"));
        j.spec.as_mut().unwrap().max_failed_indexes = Some(1);
        assert!(decide(&j, &per_index(0, 1), t(1)).finish.is_none());
        let d = decide(&j, &per_index(0, 2), t(1));
        assert_eq!(failed_reason(&d), Some("MaxFailedIndexesExceeded"));
    }

    #[test]
    fn suspended_jobs_run_nothing_and_do_not_time_out() {
        let mut j = job(Some(5), 2);
        j.spec.as_mut().unwrap().suspend = Some(true);
        let d = decide(&j, &seen(0, 0), t(500));
        assert_eq!((d.want_active, d.finish), (0, None));
    }
}
