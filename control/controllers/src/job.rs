//! The Job controller (kube's `pkg/controller/job`), NonIndexed completion mode: keeps
//! `min(parallelism, completions - succeeded)` pods running (parallelism while no pod has
//! succeeded, for work-queue Jobs without completions), counts succeeded and failed pods from
//! their phases, fails the Job past `backoffLimit` or `activeDeadlineSeconds`, honours
//! `suspend`, and writes status (active, ready, succeeded, failed, startTime, completionTime,
//! Complete/Failed/Suspended conditions with kube's reasons). Creations and deletions go through
//! [`Expectations`] as in the ReplicaSet controller.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures_util::future::join_all;
use k8s_openapi::api::batch::v1::{Job, JobCondition, JobStatus};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use tracing::Instrument;

use crate::events::{reference, Recorder};
use crate::expectations::Expectations;
use crate::informer::{Cache, Change};
use crate::podutil::{self, controller_of};
use crate::queue::{run_workers, Queue, Requeue};
use crate::replicaset::{slow_start_batch, BURST_REPLICAS};
use crate::{is_not_found, key, split_key, Clock, Informers};

const STATUS_FIELDS: &[&str] = &[
    "active",
    "ready",
    "succeeded",
    "failed",
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

/// What a Job's pods say, and what the Job should do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Pods that should be running now.
    pub want_active: i32,
    /// `Some((reason, message))` when the Job has failed.
    pub failed: Option<(&'static str, String)>,
    pub complete: bool,
}

/// kube's syncJob decision for NonIndexed Jobs, as a pure function of the counts.
pub fn decide(
    job: &Job,
    succeeded: i32,
    failed: i32,
    start: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Decision {
    let spec = job.spec.clone().unwrap_or_default();
    let parallelism = spec.parallelism.unwrap_or(1).max(0);
    let backoff_limit = spec.backoff_limit.unwrap_or(6);
    if failed > backoff_limit {
        return Decision {
            want_active: 0,
            failed: Some((
                "BackoffLimitExceeded",
                "Job has reached the specified backoff limit".into(),
            )),
            complete: false,
        };
    }
    if let (Some(deadline), Some(start)) = (spec.active_deadline_seconds, start) {
        if now - start >= chrono::Duration::seconds(deadline) {
            return Decision {
                want_active: 0,
                failed: Some((
                    "DeadlineExceeded",
                    "Job was active longer than specified deadline".into(),
                )),
                complete: false,
            };
        }
    }
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
        want_active: if spec.suspend == Some(true) {
            0
        } else {
            want_active
        },
        failed: None,
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
        });
        let q = c.queue.clone();
        let exp = c.expectations.clone();
        informers.jobs.add_handler(move |ch| match ch {
            Change::Added(j) | Change::Updated { new: j, .. } => {
                q.add(key(&j.namespace().unwrap_or_default(), &j.name_any()))
            }
            Change::Deleted(j) => {
                let k = key(&j.namespace().unwrap_or_default(), &j.name_any());
                exp.forget(&k);
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
        if finished(&old) || job.metadata.deletion_timestamp.is_some() {
            return Ok(Requeue::default());
        }
        let uid = job.metadata.uid.clone().unwrap_or_default();
        let pods: Vec<Arc<Pod>> = self
            .pods
            .list_namespace(ns)
            .into_iter()
            .filter(|p| controller_of(&p.metadata).is_some_and(|r| r.uid == uid))
            .collect();
        let active: Vec<&Pod> = pods
            .iter()
            .map(|p| p.as_ref())
            .filter(|p| podutil::is_active(p))
            .collect();
        let succeeded = pods
            .iter()
            .filter(|p| phase(p) == Some("Succeeded"))
            .count() as i32;
        let failed = pods.iter().filter(|p| phase(p) == Some("Failed")).count() as i32;
        let now = self.clock.now();
        let suspended = job.spec.as_ref().and_then(|s| s.suspend) == Some(true);
        let start = old
            .start_time
            .as_ref()
            .map(|t| t.0)
            .or((!suspended).then_some(now));
        let decision = decide(&job, succeeded, failed, start, now);
        let mut status = JobStatus {
            start_time: start.map(Time),
            completion_time: old.completion_time.clone(),
            conditions: old.conditions.clone(),
            ..Default::default()
        };
        let mut active_after = active.len() as i32;
        let pods_api: Api<Pod> = Api::namespaced(self.client.clone(), ns);
        if self.expectations.satisfied(k) {
            let diff = active.len() as i32 - decision.want_active;
            if diff > 0 {
                let n = (diff as usize).min(BURST_REPLICAS);
                let victims = podutil::pods_to_delete(&active, &active, n, now);
                let keys: Vec<String> = victims.iter().map(|p| key(ns, &p.name_any())).collect();
                self.expectations.expect_deletions(k, &keys);
                let results = join_all(victims.iter().map(|p| {
                    let api = pods_api.clone();
                    let n = p.name_any();
                    async move { (n.clone(), api.delete(&n, &DeleteParams::default()).await) }
                }))
                .await;
                for (n, r) in results {
                    match r {
                        Ok(_) => active_after -= 1,
                        Err(e) => {
                            self.expectations.deletion_observed(k, &key(ns, &n));
                            if !is_not_found(&e) {
                                return Err(err(format!("deleting pod {n}"))(e));
                            }
                        }
                    }
                }
            } else if diff < 0 {
                let n = ((-diff) as usize).min(BURST_REPLICAS);
                self.expectations.expect_creations(k, n);
                let pod = pod_from_template(&job);
                let about = reference(job.as_ref());
                let (ok, e) = slow_start_batch(n, 1, || {
                    let (api, pod) = (pods_api.clone(), pod.clone());
                    let (events, about) = (self.events.clone(), about.clone());
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
                active_after += ok as i32;
                if let Some(e) = e {
                    return Err(err("creating a pod".into())(e));
                }
            }
        }
        let set = |status: &mut JobStatus, type_: &str, reason: &str, message: String| {
            let conds = status.conditions.get_or_insert_with(Vec::new);
            if let Some(c) = conds.iter_mut().find(|c| c.type_ == type_) {
                if c.status != "True" {
                    *c = condition(type_, "True", reason, message, now);
                }
            } else {
                conds.push(condition(type_, "True", reason, message, now));
            }
        };
        if let Some((reason, message)) = &decision.failed {
            if active_after == 0 {
                set(&mut status, "FailureTarget", reason, message.clone());
                set(&mut status, "Failed", reason, message.clone());
                self.events
                    .warning(reference(job.as_ref()), reason, message.clone());
            } else {
                // kube marks the target first and fails once the pods are gone.
                set(&mut status, "FailureTarget", reason, message.clone());
            }
        } else if decision.complete && active_after == 0 {
            set(
                &mut status,
                "SuccessCriteriaMet",
                "CompletionsReached",
                "Reached expected number of succeeded pods".into(),
            );
            set(
                &mut status,
                "Complete",
                "CompletionsReached",
                "Reached expected number of succeeded pods".into(),
            );
            status.completion_time = Some(Time(now));
            self.events
                .normal(reference(job.as_ref()), "Completed", "Job completed".into());
        }
        if suspended {
            set(
                &mut status,
                "Suspended",
                "JobSuspended",
                "Job suspended".into(),
            );
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
        status.ready = Some(active.iter().filter(|p| podutil::is_ready(p)).count() as i32);
        status.succeeded = nz(succeeded);
        status.failed = nz(failed);
        if job.status.as_ref() != Some(&status) {
            Api::<Job>::namespaced(self.client.clone(), ns)
                .patch_status(
                    name,
                    &PatchParams::default(),
                    &Patch::Merge(podutil::status_patch(&status, STATUS_FIELDS)),
                )
                .await
                .map_err(err("updating status".into()))?;
        }
        // Look again when the deadline passes.
        if let (Some(deadline), Some(start)) = (
            job.spec.as_ref().and_then(|s| s.active_deadline_seconds),
            start,
        ) {
            if decision.failed.is_none() && !decision.complete {
                let left = start + chrono::Duration::seconds(deadline) - now;
                return Ok(Requeue(Some(Duration::from_millis(
                    left.num_milliseconds().max(0) as u64 + 100,
                ))));
            }
        }
        Ok(Requeue::default())
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

fn pod_from_template(job: &Job) -> Pod {
    let template = job
        .spec
        .as_ref()
        .map(|s| s.template.clone())
        .unwrap_or_default();
    let meta = template.metadata.unwrap_or_default();
    let mut prefix = format!("{}-", job.name_any());
    prefix.truncate(58);
    Pod {
        metadata: ObjectMeta {
            generate_name: Some(prefix),
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

    #[test]
    fn runs_up_to_parallelism_until_completions() {
        let j = job(Some(5), 2);
        assert_eq!(decide(&j, 0, 0, Some(t(0)), t(1)).want_active, 2);
        assert_eq!(decide(&j, 4, 0, Some(t(0)), t(1)).want_active, 1);
        let done = decide(&j, 5, 1, Some(t(0)), t(1));
        assert_eq!((done.want_active, done.complete), (0, true));
    }

    #[test]
    fn work_queue_stops_starting_pods_after_the_first_success() {
        let j = job(None, 3);
        assert_eq!(decide(&j, 0, 0, Some(t(0)), t(1)).want_active, 3);
        let d = decide(&j, 1, 0, Some(t(0)), t(1));
        assert_eq!((d.want_active, d.complete), (0, true));
    }

    #[test]
    fn backoff_limit_and_deadline_fail_the_job() {
        let j = job(Some(5), 2);
        assert!(
            decide(&j, 0, 2, Some(t(0)), t(1)).failed.is_none(),
            "2 failures = the limit"
        );
        assert_eq!(
            decide(&j, 0, 3, Some(t(0)), t(1)).failed.unwrap().0,
            "BackoffLimitExceeded"
        );
        assert!(decide(&j, 0, 0, Some(t(0)), t(99)).failed.is_none());
        assert_eq!(
            decide(&j, 0, 0, Some(t(0)), t(100)).failed.unwrap().0,
            "DeadlineExceeded"
        );
    }

    #[test]
    fn suspended_jobs_run_nothing() {
        let mut j = job(Some(5), 2);
        j.spec.as_mut().unwrap().suspend = Some(true);
        assert_eq!(decide(&j, 0, 0, None, t(1)).want_active, 0);
    }
}
