//! The Job controller (kube's `pkg/controller/job`). NonIndexed Jobs keep
//! `min(parallelism, completions - succeeded)` pods running (parallelism while no pod has
//! succeeded, for work-queue Jobs without completions); Indexed Jobs ([`indexed`]) run one pod
//! per pending completion index, lowest first, and finish when every index succeeded or a
//! [`success_policy`] rule is met. Failed pods count toward `backoffLimit` unless the
//! [`failure_policy`] ignores them (or fails the Job at once); `OnFailure` container restarts
//! count too, and replacements wait out kube's exponential delay ([`backoff`]) and, with
//! `podReplacementPolicy: Failed`, the end of terminating pods. The Job fails
//! past `backoffLimit` or `activeDeadlineSeconds`, honours `suspend`, and writes status (active,
//! ready, terminating, succeeded, failed, completedIndexes, startTime, completionTime, the interim
//! FailureTarget / SuccessCriteriaMet conditions then Failed / Complete, Suspended, with kube's
//! reasons). Orphans the selector matches are adopted, pods it stops matching released.
//! Creations and deletions go through [`Expectations`] as in the ReplicaSet controller.

pub mod backoff;
pub mod failure_policy;
pub mod indexed;
pub mod success_policy;

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures_util::future::join_all;
use k8s_openapi::api::batch::v1::{Job, JobCondition, JobStatus};
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use tracing::Instrument;

use crate::claim::{self, Claim};
use crate::events::{reference, Recorder};
use crate::expectations::Expectations;
use crate::informer::{Cache, Change};
use crate::podutil::{self, controller_of};
use crate::queue::{run_workers, Queue, Requeue};
use crate::replicaset::{slow_start_batch, BURST_REPLICAS};
use crate::{is_not_found, key, split_key, Clock, Informers};

use self::failure_policy::Outcome;
use self::indexed::Intervals;

const STATUS_FIELDS: &[&str] = &[
    "active",
    "ready",
    "succeeded",
    "failed",
    "completedIndexes",
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
        Some(c) => {
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
        });
        let q = c.queue.clone();
        let exp = c.expectations.clone();
        let done = c.finished.clone();
        informers.jobs.add_handler(move |ch| match ch {
            Change::Added(j) | Change::Updated { new: j, .. } => {
                q.add(key(&j.namespace().unwrap_or_default(), &j.name_any()))
            }
            Change::Deleted(j) => {
                let k = key(&j.namespace().unwrap_or_default(), &j.name_any());
                exp.forget(&k);
                done.lock()
                    .unwrap()
                    .remove(j.metadata.uid.as_deref().unwrap_or_default());
                q.add(k);
            }
        });
        let weak = Arc::downgrade(&c);
        informers.pods.add_handler(move |ch| {
            let Some(c) = weak.upgrade() else { return };
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
        let q = self.queue.clone();
        run_workers(q, workers, "job", move |k| {
            let c = self.clone();
            async move {
                let span = tracing::debug_span!("sync_job", key = %k);
                c.sync(&k).instrument(span).await
            }
        })
        .await;
    }

    async fn sync(&self, k: &str) -> Result<Requeue, JobError> {
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
        if finished(&old)
            || !managed_here(&job)
            || job.metadata.deletion_timestamp.is_some()
            || self.finished.lock().unwrap().contains(&uid)
        {
            return Ok(Requeue::default());
        }
        let spec = job.spec.clone().unwrap_or_default();
        let owned = self.claim(&job, k, ns).await?;
        let pods: Vec<&Pod> = owned.iter().map(|p| p.as_ref()).collect();
        let active: Vec<&Pod> = pods
            .iter()
            .copied()
            .filter(|p| podutil::is_active(p))
            .collect();
        let succeeded_pods: Vec<&Pod> = pods
            .iter()
            .copied()
            .filter(|p| phase(p) == Some("Succeeded"))
            .collect();
        let failed_pods: Vec<&Pod> = pods
            .iter()
            .copied()
            .filter(|p| phase(p) == Some("Failed"))
            .collect();
        let policy = spec.pod_failure_policy.as_ref();
        // Failed pods an Ignore rule matches neither count nor delay replacements.
        let counted_failed: Vec<&Pod> = failed_pods
            .iter()
            .copied()
            .filter(|p| failure_policy::outcome(policy, p) != Outcome::Ignore)
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
        let now = self.clock.now();
        let suspended = spec.suspend == Some(true);
        let start = old
            .start_time
            .as_ref()
            .map(|t| t.0)
            .or((!suspended).then_some(now));
        let seen = Observed {
            succeeded: succeeded_indexes
                .as_ref()
                .map_or(succeeded_pods.len() as i32, Intervals::total),
            failed: counted_failed.len() as i32,
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
            start,
        };
        let decision = decide(&job, &seen, now);
        let mut status = JobStatus {
            start_time: start.map(Time),
            completion_time: old.completion_time.clone(),
            conditions: old.conditions.clone(),
            completed_indexes: succeeded_indexes
                .as_ref()
                .map(ToString::to_string)
                .filter(|s| !s.is_empty()),
            ..Default::default()
        };
        let mut active_after = active.len() as i32;
        let mut terminating_after = terminating.len() as i32;
        let mut requeue: Option<Duration> = None;
        let pods_api: Api<Pod> = Api::namespaced(self.client.clone(), ns);
        if decision.finish.is_some() {
            // kube deletes the active pods of a finishing Job whatever its expectations.
            let gone = self.delete_pods(k, ns, &pods_api, &active).await?;
            active_after -= gone;
            terminating_after += gone;
        } else if self.expectations.satisfied(k) {
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
                let gone = self.delete_pods(k, ns, &pods_api, &victims).await?;
                active_after -= gone;
                terminating_after += gone;
            } else if decision.want_active
                > active_after + if only_failed { terminating_after } else { 0 }
            {
                let wait = backoff::remaining(&succeeded_pods, &counted_failed, now);
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
                    let indexes = succeeded_indexes
                        .as_ref()
                        .map(|s| indexed::first_pending(&busy, s, n, completions));
                    let n = indexes.as_ref().map_or(n, Vec::len);
                    match self.create_pods(k, &job, &pods_api, n, indexes).await {
                        Ok(ok) => active_after += ok as i32,
                        Err((_, e)) => return Err(err("creating a pod".into())(e)),
                    }
                }
            }
        }
        let set = |status: &mut JobStatus, type_: &str, reason: &str, message: &str| {
            let conds = status.conditions.get_or_insert_with(Vec::new);
            let new = condition(type_, "True", reason, message.to_string(), now);
            match conds.iter_mut().find(|c| c.type_ == type_) {
                Some(c) if c.status == "True" => {}
                Some(c) => *c = new,
                None => conds.push(new),
            }
        };
        let about = reference(job.as_ref());
        match &decision.finish {
            Some(Finish::Failed { reason, message }) => {
                // kube writes the target first and fails once the pods are gone.
                set(&mut status, "FailureTarget", reason, message);
                if active_after <= 0 {
                    set(&mut status, "Failed", reason, message);
                    self.events.warning(about, reason, message.clone());
                }
            }
            Some(Finish::Succeeded { reason, message }) => {
                set(&mut status, "SuccessCriteriaMet", reason, message);
                if active_after <= 0 {
                    set(&mut status, "Complete", reason, message);
                    status.completion_time = Some(Time(now));
                    self.events
                        .normal(about, "Completed", "Job completed".into());
                }
            }
            None if decision.complete && active_after == 0 => {
                let message = "Reached expected number of succeeded pods";
                set(
                    &mut status,
                    "SuccessCriteriaMet",
                    "CompletionsReached",
                    message,
                );
                set(&mut status, "Complete", "CompletionsReached", message);
                status.completion_time = Some(Time(now));
                self.events
                    .normal(about, "Completed", "Job completed".into());
            }
            None => {}
        }
        if suspended {
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
        }
        let nz = |n: i32| (n != 0).then_some(n);
        status.active = nz(active_after.max(0));
        status.terminating = Some(terminating_after);
        status.ready = Some(active.iter().filter(|p| podutil::is_ready(p)).count() as i32);
        status.succeeded = nz(seen.succeeded);
        status.failed = nz(seen.failed);
        if job.status.as_ref() != Some(&status) {
            Api::<Job>::namespaced(self.client.clone(), ns)
                .patch_status(
                    name,
                    &PatchParams::default(),
                    &Patch::Merge(podutil::status_patch(&status, STATUS_FIELDS)),
                )
                .await
                .map_err(err("updating status".into()))?;
            if finished(&status) {
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
        claim::adopt(api, pod, owner).await
    }

    /// Deletes `victims` through the expectations; returns how many went.
    async fn delete_pods(
        &self,
        k: &str,
        ns: &str,
        api: &Api<Pod>,
        victims: &[&Pod],
    ) -> Result<i32, JobError> {
        if victims.is_empty() {
            return Ok(0);
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
            match r {
                Ok(_) => deleted += 1,
                Err(e) => {
                    self.expectations.deletion_observed(k, &key(ns, &n));
                    if !is_not_found(&e) {
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
        api: &Api<Pod>,
        n: usize,
        indexes: Option<Vec<i32>>,
    ) -> Result<usize, (usize, kube::Error)> {
        if n == 0 {
            return Ok(0);
        }
        self.expectations.expect_creations(k, n);
        let template = job
            .spec
            .as_ref()
            .map(|s| s.template.clone())
            .unwrap_or_default();
        let mut prefix = format!("{}-", job.name_any());
        prefix.truncate(58);
        let next = AtomicUsize::new(0);
        let about = reference(job);
        let (ok, e) = slow_start_batch(n, 1, || {
            let pod = match &indexes {
                Some(ix) => {
                    let ix = ix[next.fetch_add(1, Ordering::Relaxed)];
                    let t = indexed::template_for_index(&job.name_any(), &template, ix);
                    pod_from_template(job, t, indexed::generate_name(&job.name_any(), ix))
                }
                None => pod_from_template(job, template.clone(), prefix.clone()),
            };
            let (api, events, about) = (api.clone(), self.events.clone(), about.clone());
            async move {
                let p = api.create(&PostParams::default(), &pod).await?;
                events.normal(
                    about,
                    "SuccessfulCreate",
                    format!("Created pod: {}", p.name_any()),
                );
                Ok(())
            }
        })
        .await;
        for _ in ok..n {
            self.expectations.creation_observed(k);
        }
        match e {
            Some(e) => Err((ok, e)),
            None => Ok(ok),
        }
    }
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
            finalizers: meta.finalizers,
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
    fn suspended_jobs_run_nothing_and_do_not_time_out() {
        let mut j = job(Some(5), 2);
        j.spec.as_mut().unwrap().suspend = Some(true);
        let d = decide(&j, &seen(0, 0), t(500));
        assert_eq!((d.want_active, d.finish), (0, None));
    }
}
