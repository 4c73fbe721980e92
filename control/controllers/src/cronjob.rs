//! The CronJob controller (kube's `pkg/controller/cronjob`, ControllerV2): on each sync it works
//! out from the injected clock the most recent scheduled time not yet run (since
//! status.lastScheduleTime, or the creation time, and no earlier than startingDeadlineSeconds
//! ago), starts a Job named `<cronjob>-<scheduled time in minutes since the epoch>` for it unless
//! the CronJob is suspended, the start is past its deadline (MissSchedule), or
//! concurrencyPolicy forbids it (Forbid: skip while one runs; Replace: delete the running ones
//! first), keeps status.active/lastScheduleTime/lastSuccessfulTime, deletes finished Jobs beyond
//! successfulJobsHistoryLimit/failedJobsHistoryLimit, and asks to be woken 100 ms after the next
//! scheduled time. Schedules are [`crate::cron`]'s; `spec.timeZone` names the zone (without it
//! the process's local zone, as kube-controller-manager). The decision is [`plan`], a pure
//! function of the CronJob, its Jobs and the time, so tests drive it with a fake clock.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use chrono_tz::Tz;
use k8s_openapi::api::batch::v1::{CronJob, CronJobStatus, Job};
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::api::{DeleteParams, Patch, PatchParams, PostParams, PropagationPolicy};
use kube::{Api, Client, ResourceExt};
use tracing::Instrument;

use crate::cron::{load_zone, Schedule};
use crate::events::{reference, Recorder};
use crate::informer::{Cache, Change};
use crate::podutil::{self, controller_of};
use crate::queue::{run_workers, Queue, Requeue};
use crate::{is_already_exists, is_not_found, key, split_key, Clock, Informers};

/// The annotation kube puts on each Job with its scheduled time.
pub const SCHEDULED_TIMESTAMP: &str = "batch.kubernetes.io/cronjob-scheduled-timestamp";

/// Padding after the next scheduled time before the controller looks again (kube's
/// nextScheduleDelta), for clock skew.
const NEXT_DELTA: chrono::Duration = chrono::Duration::milliseconds(100);

const STATUS_FIELDS: &[&str] = &["active", "lastScheduleTime", "lastSuccessfulTime"];

#[derive(Debug, thiserror::Error)]
pub enum CronJobError {
    #[error("cronjob {key}: {what}: {source}")]
    Api {
        key: String,
        what: String,
        #[source]
        source: kube::Error,
    },
}

/// How many scheduled times passed unrun.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Missed {
    None,
    Few,
    /// More than 100: a warning event, the most recent one still runs.
    Many,
}

/// `(earliest time considered, most recent scheduled time ≤ now, missed)`.
pub type Recent = (DateTime<Utc>, Option<DateTime<Utc>>, Missed);

/// kube's mostRecentScheduleTime.
pub fn most_recent_schedule_time(
    cj: &CronJob,
    now: DateTime<Utc>,
    sched: &Schedule,
    zone: Option<Tz>,
    include_deadline: bool,
) -> Result<Recent, String> {
    let mut earliest = cj
        .status
        .as_ref()
        .and_then(|s| s.last_schedule_time.as_ref())
        .or(cj.metadata.creation_timestamp.as_ref())
        .map(|t| t.0)
        .unwrap_or(now);
    if include_deadline {
        if let Some(d) = cj.spec.as_ref().and_then(|s| s.starting_deadline_seconds) {
            let deadline = now - chrono::Duration::seconds(d);
            if deadline > earliest {
                earliest = deadline;
            }
        }
    }
    let Some(t1) = sched.next(earliest, zone) else {
        return Ok((earliest, None, Missed::None));
    };
    if now < t1 {
        return Ok((earliest, None, Missed::None));
    }
    let Some(t2) = sched.next(t1, zone).filter(|t2| now >= *t2) else {
        return Ok((earliest, Some(t1), Missed::None));
    };
    let between = ((t2 - t1).num_milliseconds() as f64 / 1000.0).round() as i64;
    if between < 1 {
        return Err("time difference between two schedules is less than 1 second".into());
    }
    let elapsed = (now - t1).num_seconds();
    let missed = elapsed / between + 1;
    // Start one interval before the estimate, then let the schedule find the exact times.
    let mut t = t1 + chrono::Duration::seconds((missed - 2) * between);
    let mut most_recent = None;
    for _ in 0..10_000 {
        match sched.next(t, zone) {
            Some(n) if n <= now => {
                most_recent = Some(n);
                t = n;
            }
            _ => break,
        }
    }
    let missed = if missed > 100 {
        Missed::Many
    } else if missed > 0 {
        Missed::Few
    } else {
        Missed::None
    };
    Ok((earliest, most_recent, missed))
}

/// kube's nextScheduleTimeDuration: how long until 100 ms after the next scheduled time.
pub fn requeue_after(
    cj: &CronJob,
    now: DateTime<Utc>,
    sched: &Schedule,
    zone: Option<Tz>,
) -> Option<Duration> {
    let from = match most_recent_schedule_time(cj, now, sched, zone, false) {
        Err(_) => now,
        Ok((earliest, None, Missed::None)) => earliest,
        Ok((_, None, _)) => now,
        Ok((_, Some(t), _)) => t,
    };
    let next = sched.next(from, zone)? + NEXT_DELTA;
    Some((next - now).to_std().unwrap_or(Duration::ZERO))
}

/// `<cronjob>-<scheduled time in minutes since the epoch>`.
pub fn job_name(cj: &CronJob, scheduled: DateTime<Utc>) -> String {
    format!("{}-{}", cj.name_any(), scheduled.timestamp().div_euclid(60))
}

/// kube's getJobFromTemplate2: the template's labels, annotations and spec, the scheduled time
/// annotation (in the CronJob's zone, UTC without one) and a controller reference.
pub fn job_from_template(cj: &CronJob, scheduled: DateTime<Utc>, zone: Option<Tz>) -> Job {
    let spec = cj.spec.clone().unwrap_or_default();
    let meta = spec.job_template.metadata.unwrap_or_default();
    let mut annotations = meta.annotations.unwrap_or_default();
    let stamp = scheduled
        .with_timezone(&zone.unwrap_or(Tz::UTC))
        .to_rfc3339_opts(SecondsFormat::Secs, true);
    annotations.insert(SCHEDULED_TIMESTAMP.into(), stamp);
    Job {
        metadata: ObjectMeta {
            name: Some(job_name(cj, scheduled)),
            namespace: cj.namespace(),
            labels: meta.labels,
            annotations: Some(annotations),
            owner_references: Some(vec![podutil::controller_ref(
                &cj.metadata,
                "batch/v1",
                "CronJob",
            )]),
            ..Default::default()
        },
        spec: spec.job_template.spec,
        status: None,
    }
}

/// `Some("Complete" | "Failed")` once a Job has finished.
pub fn finished(j: &Job) -> Option<&str> {
    j.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True")
        .map(|c| c.type_.as_str())
}

fn job_ref(j: &Job) -> ObjectReference {
    ObjectReference {
        api_version: Some("batch/v1".into()),
        kind: Some("Job".into()),
        namespace: j.namespace(),
        name: Some(j.name_any()),
        uid: j.metadata.uid.clone(),
        resource_version: j.resource_version(),
        field_path: None,
    }
}

/// An event the sync records: `(warning, reason, message)`.
pub type Event = (bool, &'static str, String);

/// What one sync does, in order: record `events`, delete `delete` (history cleanup, then the
/// running Jobs a Replace policy removes), create `create`, write `status` when it changed
/// (plus the created Job in `active` and its time in lastScheduleTime), look again after
/// `requeue`.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub status: CronJobStatus,
    pub events: Vec<Event>,
    pub delete: Vec<String>,
    pub create: Option<(Job, DateTime<Utc>)>,
    pub requeue: Option<Duration>,
}

fn start_time(j: &Job) -> Option<DateTime<Utc>> {
    j.status.as_ref()?.start_time.as_ref().map(|t| t.0)
}

/// kube's cleanupFinishedJobs + syncCronJob. `missing` are uids of active Jobs the API says
/// no longer exist.
pub fn plan(
    cj: &CronJob,
    jobs: &[Arc<Job>],
    missing: &HashSet<String>,
    now: DateTime<Utc>,
) -> Plan {
    let spec = cj.spec.clone().unwrap_or_default();
    let mut status = cj.status.clone().unwrap_or_default();
    let mut p = Plan {
        status: status.clone(),
        events: Vec::new(),
        delete: Vec::new(),
        create: None,
        requeue: None,
    };
    let remove_active = |status: &mut CronJobStatus, uid: &Option<String>| {
        if let Some(a) = status.active.as_mut() {
            a.retain(|r| r.uid != *uid);
            if a.is_empty() {
                status.active = None;
            }
        }
    };
    let in_active = |status: &CronJobStatus, uid: &Option<String>| {
        status.active.iter().flatten().any(|r| r.uid == *uid)
    };

    // History limits: oldest finished Jobs beyond each limit go.
    let mut deleted: HashSet<String> = HashSet::new();
    for (kind, limit) in [
        ("Complete", spec.successful_jobs_history_limit),
        ("Failed", spec.failed_jobs_history_limit),
    ] {
        let Some(limit) = limit else { continue };
        let mut done: Vec<&Arc<Job>> = jobs.iter().filter(|j| finished(j) == Some(kind)).collect();
        let excess = done.len().saturating_sub(limit.max(0) as usize);
        done.sort_by(|a, b| match (start_time(a), start_time(b)) {
            (Some(x), Some(y)) if x != y => x.cmp(&y),
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (Some(_), None) => std::cmp::Ordering::Less,
            _ => a.name_any().cmp(&b.name_any()),
        });
        for j in &done[..excess] {
            p.delete.push(j.name_any());
            deleted.insert(j.name_any());
            remove_active(&mut status, &j.metadata.uid);
        }
    }

    for j in jobs {
        let found = in_active(&status, &j.metadata.uid);
        let fin = finished(j);
        if !found && fin.is_none() {
            p.events.push((
                true,
                "UnexpectedJob",
                format!(
                    "Saw a job that the controller did not create or forgot: {}",
                    j.name_any()
                ),
            ));
        } else if found && fin.is_some() {
            remove_active(&mut status, &j.metadata.uid);
            p.events.push((
                false,
                "SawCompletedJob",
                format!(
                    "Saw completed job: {}, condition: {}",
                    j.name_any(),
                    fin.unwrap_or("")
                ),
            ));
        } else if fin == Some("Complete") {
            let done = j.status.as_ref().and_then(|s| s.completion_time.clone());
            if done.is_some()
                && (status.last_successful_time.is_none()
                    || done.as_ref().map(|t| t.0)
                        > status.last_successful_time.as_ref().map(|t| t.0))
            {
                status.last_successful_time = done;
            }
        }
    }
    let names: HashSet<Option<String>> = jobs.iter().map(|j| j.metadata.uid.clone()).collect();
    for r in status.active.clone().iter().flatten() {
        if !names.contains(&r.uid) && r.uid.as_ref().is_some_and(|u| missing.contains(u)) {
            p.events.push((
                false,
                "MissingJob",
                format!(
                    "Active job went missing: {}",
                    r.name.clone().unwrap_or_default()
                ),
            ));
            remove_active(&mut status, &r.uid);
        }
    }
    p.status = status.clone();
    if cj.metadata.deletion_timestamp.is_some() {
        return p;
    }
    let zone = match spec.time_zone.as_deref() {
        None => None,
        Some(name) => match load_zone(name) {
            Ok(z) => Some(z),
            Err(e) => {
                p.events.push((
                    true,
                    "UnknownTimeZone",
                    format!("invalid timeZone: {name:?}: {e}"),
                ));
                return p;
            }
        },
    };
    if spec.suspend == Some(true) {
        return p;
    }
    if spec.schedule.contains("TZ") {
        p.events.push((
            true,
            "UnsupportedSchedule",
            format!("CRON_TZ or TZ used in schedule {:?} is not officially supported, see https://kubernetes.io/docs/concepts/workloads/controllers/cron-jobs/ for more details", spec.schedule),
        ));
    }
    let sched = match Schedule::parse(&spec.schedule) {
        Ok(s) => s,
        Err(e) => {
            p.events.push((
                true,
                "UnparseableSchedule",
                format!("unparseable schedule: {:?} : {e}", spec.schedule),
            ));
            return p;
        }
    };
    // The status as it stands now decides the times (lastScheduleTime).
    let mut current = cj.clone();
    current.status = Some(status.clone());
    let scheduled = match most_recent_schedule_time(&current, now, &sched, zone, true) {
        Err(e) => {
            p.events.push((
                true,
                "InvalidSchedule",
                format!("invalid schedule: {} : {e}", spec.schedule),
            ));
            return p;
        }
        Ok((_, t, missed)) => {
            if t.is_some() && missed == Missed::Many {
                p.events.push((
                    true,
                    "TooManyMissedTimes",
                    "too many missed start times. Set or decrease .spec.startingDeadlineSeconds or check clock skew".into(),
                ));
            }
            t
        }
    };
    p.requeue = requeue_after(&current, now, &sched, zone);
    let Some(scheduled) = scheduled else {
        return p;
    };
    if let Some(d) = spec.starting_deadline_seconds {
        if scheduled + chrono::Duration::seconds(d) < now {
            p.events.push((
                true,
                "MissSchedule",
                format!(
                    "Missed scheduled time to start a job: {}",
                    scheduled.format("%a, %d %b %Y %H:%M:%S %z")
                ),
            ));
            return p;
        }
    }
    let name = job_name(cj, scheduled);
    let already = status
        .active
        .iter()
        .flatten()
        .any(|r| r.name.as_deref() == Some(name.as_str()))
        || status.last_schedule_time.as_ref().map(|t| t.0) == Some(scheduled);
    if already {
        return p;
    }
    let active: Vec<ObjectReference> = status.active.clone().unwrap_or_default();
    match spec.concurrency_policy.as_deref() {
        Some("Forbid") if !active.is_empty() => {
            p.events.push((
                false,
                "JobAlreadyActive",
                "Not starting job because prior execution is running and concurrency policy is Forbid".into(),
            ));
            return p;
        }
        Some("Replace") => {
            for r in &active {
                let n = r.name.clone().unwrap_or_default();
                if !deleted.contains(&n) {
                    p.delete.push(n);
                }
                remove_active(&mut status, &r.uid);
            }
        }
        _ => {}
    }
    p.status = status.clone();
    p.create = Some((job_from_template(cj, scheduled, zone), scheduled));
    let mut after = current;
    after.status = Some(CronJobStatus {
        last_schedule_time: Some(Time(scheduled)),
        ..status
    });
    p.requeue = requeue_after(&after, now, &sched, zone);
    p
}

pub struct CronJobController {
    client: Client,
    cronjobs: Arc<Cache<CronJob>>,
    jobs: Arc<Cache<Job>>,
    queue: Arc<Queue>,
    clock: Clock,
    events: Recorder,
}

impl std::fmt::Debug for CronJobController {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CronJobController").finish_non_exhaustive()
    }
}

impl CronJobController {
    pub fn register(
        informers: &Informers,
        client: Client,
        clock: Clock,
        events: Recorder,
    ) -> Arc<Self> {
        let c = Arc::new(Self {
            client,
            cronjobs: informers.cronjobs.cache(),
            jobs: informers.jobs.cache(),
            queue: Queue::new(),
            clock,
            events,
        });
        let q = c.queue.clone();
        informers.cronjobs.add_handler(move |ch| {
            let (Change::Added(cj) | Change::Updated { new: cj, .. } | Change::Deleted(cj)) = ch;
            q.add(key(&cj.namespace().unwrap_or_default(), &cj.name_any()));
        });
        let q = c.queue.clone();
        informers.jobs.add_handler(move |ch| {
            let (Change::Added(j) | Change::Updated { new: j, .. } | Change::Deleted(j)) = ch;
            if let Some(r) = controller_of(&j.metadata).filter(|r| r.kind == "CronJob") {
                q.add(key(&j.namespace().unwrap_or_default(), &r.name));
            }
        });
        c
    }

    pub async fn run(self: Arc<Self>, workers: usize) {
        self.cronjobs.wait_synced().await;
        self.jobs.wait_synced().await;
        let q = self.queue.clone();
        run_workers(q, workers, "cronjob", move |k| {
            let c = self.clone();
            async move {
                let span = tracing::debug_span!("sync_cronjob", key = %k);
                c.sync(&k).instrument(span).await
            }
        })
        .await;
    }

    async fn sync(&self, k: &str) -> Result<Requeue, CronJobError> {
        let (ns, name) = split_key(k);
        let Some(mut cj) = self.cronjobs.get(ns, name) else {
            return Ok(Requeue::default());
        };
        let err = |what: String| {
            move |source| CronJobError::Api {
                key: k.to_string(),
                what,
                source,
            }
        };
        let uid = cj.metadata.uid.clone().unwrap_or_default();
        let jobs: Vec<Arc<Job>> = self
            .jobs
            .list_namespace(ns)
            .into_iter()
            .filter(|j| controller_of(&j.metadata).is_some_and(|r| r.uid == uid))
            .collect();
        let cj_api: Api<CronJob> = Api::namespaced(self.client.clone(), ns);
        let jobs_api: Api<Job> = Api::namespaced(self.client.clone(), ns);
        let active_uids = |cj: &CronJob| -> HashSet<String> {
            cj.status
                .iter()
                .flat_map(|s| s.active.iter().flatten())
                .filter_map(|r| r.uid.clone())
                .collect()
        };
        // Our own status write may not be in the cache yet: read the CronJob again before
        // calling a running Job unexpected (kube does the same).
        if jobs.iter().any(|j| {
            finished(j).is_none()
                && !active_uids(&cj).contains(j.metadata.uid.as_deref().unwrap_or(""))
        }) {
            match cj_api.get(name).await {
                Ok(fresh) => cj = Arc::new(fresh),
                Err(e) if is_not_found(&e) => return Ok(Requeue::default()),
                Err(e) => return Err(err("reading the cronjob".into())(e)),
            }
        }
        // Active Jobs the cache lacks: gone only if the API says so.
        let cached: HashSet<String> = jobs.iter().filter_map(|j| j.metadata.uid.clone()).collect();
        let mut missing = HashSet::new();
        for r in cj.status.iter().flat_map(|s| s.active.iter().flatten()) {
            let Some(u) = r.uid.clone().filter(|u| !cached.contains(u)) else {
                continue;
            };
            match jobs_api.get(r.name.as_deref().unwrap_or("")).await {
                Err(e) if is_not_found(&e) => {
                    missing.insert(u);
                }
                Err(e) => return Err(err("reading an active job".into())(e)),
                Ok(j) if j.metadata.uid.as_deref() != Some(u.as_str()) => {
                    missing.insert(u);
                }
                Ok(_) => {}
            }
        }
        let now = self.clock.now();
        let plan = plan(&cj, &jobs, &missing, now);
        let about = reference(cj.as_ref());
        for (warning, reason, message) in &plan.events {
            if *warning {
                self.events.warning(about.clone(), reason, message.clone());
            } else {
                self.events.normal(about.clone(), reason, message.clone());
            }
        }
        let background = DeleteParams {
            propagation_policy: Some(PropagationPolicy::Background),
            ..Default::default()
        };
        for n in &plan.delete {
            match jobs_api.delete(n, &background).await {
                Ok(_) => self.events.normal(
                    about.clone(),
                    "SuccessfulDelete",
                    format!("Deleted job {n}"),
                ),
                Err(e) if is_not_found(&e) => {}
                Err(e) => {
                    self.events
                        .warning(about.clone(), "FailedDelete", format!("Deleted job: {e}"));
                    return Err(err(format!("deleting job {n}"))(e));
                }
            }
        }
        let mut status = plan.status.clone();
        let mut failure = None;
        if let Some((job, scheduled)) = &plan.create {
            let started = match jobs_api.create(&PostParams::default(), job).await {
                Ok(j) => {
                    self.events.normal(
                        about.clone(),
                        "SuccessfulCreate",
                        format!("Created job {}", j.name_any()),
                    );
                    Some(j)
                }
                Err(e) if is_already_exists(&e) => {
                    // Created before (a restart between creation and the status write): ours
                    // only if it names this CronJob as its controller.
                    let j = jobs_api
                        .get(&job.name_any())
                        .await
                        .map_err(err(format!("reading job {}", job.name_any())))?;
                    let ours = controller_of(&j.metadata).is_some_and(|r| r.uid == uid);
                    let listed = status
                        .active
                        .iter()
                        .flatten()
                        .any(|r| r.uid == j.metadata.uid);
                    (ours && !listed).then_some(j)
                }
                Err(e) => {
                    self.events.warning(
                        about.clone(),
                        "FailedCreate",
                        format!("Error creating job: {e}"),
                    );
                    failure = Some(err(format!("creating job {}", job.name_any()))(e));
                    None
                }
            };
            if let Some(j) = started {
                status.active.get_or_insert_with(Vec::new).push(job_ref(&j));
                status.last_schedule_time = Some(Time(*scheduled));
            }
        }
        if cj.status.as_ref().cloned().unwrap_or_default() != status {
            cj_api
                .patch_status(
                    name,
                    &PatchParams::default(),
                    &Patch::Merge(podutil::status_patch(&status, STATUS_FIELDS)),
                )
                .await
                .map_err(err("updating status".into()))?;
        }
        if let Some(e) = failure {
            return Err(e);
        }
        Ok(Requeue(plan.requeue))
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::batch::v1::{CronJobSpec, JobCondition, JobStatus, JobTemplateSpec};

    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    /// A CronJob created at 10:00:30Z on 2024-03-01 (in UTC, so the host zone never matters).
    fn cronjob(schedule: &str) -> CronJob {
        CronJob {
            metadata: ObjectMeta {
                name: Some("tick".into()),
                namespace: Some("default".into()),
                uid: Some("cj-uid".into()),
                creation_timestamp: Some(Time(utc("2024-03-01T10:00:30Z"))),
                ..Default::default()
            },
            spec: Some(CronJobSpec {
                schedule: schedule.into(),
                time_zone: Some("Etc/UTC".into()),
                concurrency_policy: Some("Allow".into()),
                successful_jobs_history_limit: Some(3),
                failed_jobs_history_limit: Some(1),
                job_template: JobTemplateSpec::default(),
                ..Default::default()
            }),
            status: None,
        }
    }

    /// A Job of the CronJob scheduled at `at`, finished as `done` if given.
    fn job(at: &str, done: Option<&str>, started: &str) -> Arc<Job> {
        let cj = cronjob("* * * * *");
        let mut j = job_from_template(&cj, utc(at), None);
        j.metadata.uid = Some(format!("uid-{}", j.name_any()));
        j.status = Some(JobStatus {
            start_time: Some(Time(utc(started))),
            completion_time: done.map(|_| Time(utc(started) + chrono::Duration::seconds(5))),
            conditions: done.map(|c| {
                vec![JobCondition {
                    type_: c.into(),
                    status: "True".into(),
                    ..Default::default()
                }]
            }),
            ..Default::default()
        });
        Arc::new(j)
    }

    fn active(cj: &mut CronJob, jobs: &[&Arc<Job>]) {
        cj.status.get_or_insert_with(Default::default).active =
            Some(jobs.iter().map(|j| job_ref(j)).collect());
    }

    fn none() -> HashSet<String> {
        HashSet::new()
    }

    #[test]
    fn nothing_is_due_before_the_first_scheduled_time() {
        let cj = cronjob("*/5 * * * *");
        // Created 10:00:30; the first time is 10:05:00.
        let p = plan(&cj, &[], &none(), utc("2024-03-01T10:04:59Z"));
        assert!(p.create.is_none());
        // Woken 100 ms after 10:05:00: 1.1 s from 10:04:59.
        assert_eq!(p.requeue, Some(Duration::from_millis(1100)));
    }

    #[test]
    fn a_due_time_creates_a_job_named_by_its_minute() {
        let cj = cronjob("*/5 * * * *");
        let p = plan(&cj, &[], &none(), utc("2024-03-01T10:05:02Z"));
        let (j, at) = p.create.expect("a job");
        assert_eq!(at, utc("2024-03-01T10:05:00Z"));
        // 2024-03-01T10:05:00Z is 1709287500 s = 28488125 min since the epoch.
        assert_eq!(j.name_any(), "tick-28488125");
        assert_eq!(j.annotations()[SCHEDULED_TIMESTAMP], "2024-03-01T10:05:00Z");
        assert_eq!(controller_of(&j.metadata).unwrap().kind, "CronJob");
        // Next look: 10:10:00.100 is 298.1 s away.
        assert_eq!(p.requeue, Some(Duration::from_millis(298_100)));
        // Once lastScheduleTime says 10:05, the same time is not run twice.
        let mut done = cj.clone();
        done.status = Some(CronJobStatus {
            last_schedule_time: Some(Time(at)),
            ..Default::default()
        });
        assert!(plan(&done, &[], &none(), utc("2024-03-01T10:06:00Z"))
            .create
            .is_none());
    }

    #[test]
    fn missed_runs_start_only_the_most_recent_and_many_warn() {
        let mut cj = cronjob("0 * * * *");
        cj.status = Some(CronJobStatus {
            last_schedule_time: Some(Time(utc("2024-03-01T10:00:00Z"))),
            ..Default::default()
        });
        // Down from 10:00 to 15:30: 11..15 missed, only 15:00 starts.
        let p = plan(&cj, &[], &none(), utc("2024-03-01T15:30:00Z"));
        assert_eq!(p.create.unwrap().1, utc("2024-03-01T15:00:00Z"));
        assert!(p.events.is_empty(), "{:?}", p.events);
        let sched = Schedule::parse("0 * * * *").unwrap();
        let (_, t, missed) =
            most_recent_schedule_time(&cj, utc("2024-03-01T15:30:00Z"), &sched, None, true)
                .unwrap();
        assert_eq!(
            (t, missed),
            (Some(utc("2024-03-01T15:00:00Z")), Missed::Few)
        );
        // 200 hours later: more than 100 missed, a warning, still the most recent runs.
        let p = plan(&cj, &[], &none(), utc("2024-03-09T18:30:00Z"));
        assert_eq!(p.create.unwrap().1, utc("2024-03-09T18:00:00Z"));
        assert_eq!(p.events[0].1, "TooManyMissedTimes");
        // With startingDeadlineSeconds 600 the search starts at 15:20: nothing missed counts
        // from before, 15:00 is outside the window, so nothing is due and nothing warns.
        cj.spec.as_mut().unwrap().starting_deadline_seconds = Some(600);
        let p = plan(&cj, &[], &none(), utc("2024-03-09T18:30:00Z"));
        assert!(p.create.is_none());
        assert!(p.events.is_empty(), "{:?}", p.events);
        // Within the window (18:05 with a 10-minute deadline): it runs.
        let p = plan(&cj, &[], &none(), utc("2024-03-09T18:05:00Z"));
        assert_eq!(p.create.unwrap().1, utc("2024-03-09T18:00:00Z"));
    }

    #[test]
    fn a_start_past_the_deadline_is_skipped() {
        let mut cj = cronjob("0 * * * *");
        cj.spec.as_mut().unwrap().starting_deadline_seconds = Some(30);
        cj.status = Some(CronJobStatus {
            last_schedule_time: Some(Time(utc("2024-03-01T10:00:00Z"))),
            ..Default::default()
        });
        // 11:00:20 with a 30 s deadline: in time.
        assert!(plan(&cj, &[], &none(), utc("2024-03-01T11:00:20Z"))
            .create
            .is_some());
        // At 11:00:31 kube searches from max(lastScheduleTime, now - deadline) = 11:00:01, so
        // 11:00 is silently skipped (its MissSchedule branch cannot see it) and the next look
        // is 12:00:00.100.
        let p = plan(&cj, &[], &none(), utc("2024-03-01T11:00:31Z"));
        assert!(p.create.is_none());
        assert!(p.events.is_empty(), "{:?}", p.events);
        assert_eq!(p.requeue, Some(Duration::from_millis(3_569_100)));
    }

    #[test]
    fn concurrency_policies() {
        let running = job("2024-03-01T10:01:00Z", None, "2024-03-01T10:01:01Z");
        let now = utc("2024-03-01T10:02:01Z");
        let mut cj = cronjob("* * * * *");
        active(&mut cj, &[&running]);
        cj.status.as_mut().unwrap().last_schedule_time = Some(Time(utc("2024-03-01T10:01:00Z")));
        // Allow: a second Job next to the running one.
        let p = plan(&cj, std::slice::from_ref(&running), &none(), now);
        assert_eq!(p.create.unwrap().0.name_any(), "tick-28488122");
        assert!(p.delete.is_empty());
        // Forbid: skipped while one runs.
        cj.spec.as_mut().unwrap().concurrency_policy = Some("Forbid".into());
        let p = plan(&cj, std::slice::from_ref(&running), &none(), now);
        assert!(p.create.is_none());
        assert_eq!(p.events[0].1, "JobAlreadyActive");
        // Replace: the running one is deleted and dropped from active first.
        cj.spec.as_mut().unwrap().concurrency_policy = Some("Replace".into());
        let p = plan(&cj, std::slice::from_ref(&running), &none(), now);
        assert_eq!(p.delete, [running.name_any()]);
        assert!(p.status.active.is_none());
        assert!(p.create.is_some());
    }

    #[test]
    fn suspend_time_zone_and_bad_schedules() {
        let now = utc("2024-03-01T10:05:02Z");
        let mut cj = cronjob("*/5 * * * *");
        cj.spec.as_mut().unwrap().suspend = Some(true);
        assert!(plan(&cj, &[], &none(), now).create.is_none());
        let mut cj = cronjob("*/5 * * * *");
        cj.spec.as_mut().unwrap().time_zone = Some("Mars/Olympus".into());
        let p = plan(&cj, &[], &none(), now);
        assert!(p.create.is_none());
        assert_eq!(p.events[0].1, "UnknownTimeZone");
        let p = plan(&cronjob("61 * * * *"), &[], &none(), now);
        assert_eq!(p.events[0].1, "UnparseableSchedule");
        // Asia/Tokyo (UTC+9): "0 19 * * *" is 10:00Z; the annotation is in Tokyo time.
        let mut cj = cronjob("0 19 * * *");
        cj.spec.as_mut().unwrap().time_zone = Some("Asia/Tokyo".into());
        let p = plan(&cj, &[], &none(), utc("2024-03-01T10:00:40Z"));
        assert!(p.create.is_none(), "created at 10:00:30, after 10:00:00");
        let p = plan(&cj, &[], &none(), utc("2024-03-02T10:00:01Z"));
        let (j, at) = p.create.unwrap();
        assert_eq!(at, utc("2024-03-02T10:00:00Z"));
        assert_eq!(
            j.annotations()[SCHEDULED_TIMESTAMP],
            "2024-03-02T19:00:00+09:00"
        );
    }

    #[test]
    fn finished_jobs_leave_active_and_history_is_limited() {
        let now = utc("2024-03-01T10:06:30Z");
        let ok: Vec<Arc<Job>> = (1..=5)
            .map(|m| {
                job(
                    &format!("2024-03-01T10:0{m}:00Z"),
                    Some("Complete"),
                    &format!("2024-03-01T10:0{m}:01Z"),
                )
            })
            .collect();
        let bad1 = job(
            "2024-03-01T09:58:00Z",
            Some("Failed"),
            "2024-03-01T09:58:01Z",
        );
        let bad2 = job(
            "2024-03-01T09:59:00Z",
            Some("Failed"),
            "2024-03-01T09:59:01Z",
        );
        let mut cj = cronjob("* * * * *");
        active(&mut cj, &[&ok[4]]);
        cj.status.as_mut().unwrap().last_schedule_time = Some(Time(utc("2024-03-01T10:06:00Z")));
        let mut all = ok.clone();
        all.extend([bad1.clone(), bad2.clone()]);
        let p = plan(&cj, &all, &none(), now);
        // 5 succeeded, limit 3: the two oldest go; 2 failed, limit 1: the older goes.
        assert_eq!(
            p.delete,
            [ok[0].name_any(), ok[1].name_any(), bad1.name_any()]
        );
        // The finished active Job leaves active with an event.
        assert!(p.status.active.is_none());
        assert!(p.events.iter().any(|e| e.1 == "SawCompletedJob"));
        // Finished and not active: lastSuccessfulTime is the newest completion (10:04:06).
        let p2 = plan(&cronjob("* * * * *"), &ok[..4], &none(), now);
        assert_eq!(
            p2.status.last_successful_time.unwrap().0,
            utc("2024-03-01T10:04:06Z")
        );
        // A Job the API no longer has leaves active with MissingJob.
        let gone = job("2024-03-01T10:06:00Z", None, "2024-03-01T10:06:01Z");
        let mut cj = cronjob("* * * * *");
        active(&mut cj, &[&gone]);
        let missing: HashSet<String> = [gone.metadata.uid.clone().unwrap()].into();
        let p = plan(&cj, &[], &missing, now);
        assert!(p.events.iter().any(|e| e.1 == "MissingJob"));
        assert!(p.status.active.is_none());
    }
}
