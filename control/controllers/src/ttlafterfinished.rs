//! The TTL-after-finished controller (kube's `pkg/controller/ttlafterfinished`): a Job with
//! `ttlSecondsAfterFinished` is deleted (foreground cascade, so its pods go first) that many
//! seconds after it finished (its Complete or Failed condition's transition time).

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use k8s_openapi::api::batch::v1::Job;
use kube::api::{DeleteParams, Preconditions, PropagationPolicy};
use kube::{Api, Client, ResourceExt};
use tracing::Instrument;

use crate::informer::{Cache, Change};
use crate::queue::{run_workers, Queue, Requeue};
use crate::{is_not_found, key, split_key, Clock, Informers};

#[derive(Debug, thiserror::Error)]
pub enum TtlError {
    #[error("deleting finished job {key}: {source}")]
    Delete {
        key: String,
        #[source]
        source: kube::Error,
    },
}

/// When a finished Job with a TTL expires; `None` when it has no TTL or has not finished.
pub fn expires_at(job: &Job) -> Option<DateTime<Utc>> {
    let ttl = job.spec.as_ref()?.ttl_seconds_after_finished?;
    let finished = job
        .status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .filter(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True")
        .filter_map(|c| c.last_transition_time.as_ref().map(|t| t.0))
        .max()?;
    Some(finished + chrono::Duration::seconds(ttl.into()))
}

pub struct TtlAfterFinishedController {
    client: Client,
    jobs: Arc<Cache<Job>>,
    queue: Arc<Queue>,
    clock: Clock,
}

impl std::fmt::Debug for TtlAfterFinishedController {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TtlAfterFinishedController")
            .finish_non_exhaustive()
    }
}

impl TtlAfterFinishedController {
    pub fn register(informers: &Informers, client: Client, clock: Clock) -> Arc<Self> {
        let c = Arc::new(Self {
            client,
            jobs: informers.jobs.cache(),
            queue: Queue::new(),
            clock,
        });
        let q = c.queue.clone();
        informers.jobs.add_handler(move |ch| {
            if let Change::Added(j) | Change::Updated { new: j, .. } = ch {
                if expires_at(j).is_some() && j.metadata.deletion_timestamp.is_none() {
                    q.add(key(&j.namespace().unwrap_or_default(), &j.name_any()));
                }
            }
        });
        c
    }

    pub async fn run(self: Arc<Self>, workers: usize) {
        self.jobs.wait_synced().await;
        let q = self.queue.clone();
        run_workers(q, workers, "ttl-after-finished", move |k| {
            let c = self.clone();
            async move {
                let span = tracing::debug_span!("sync_ttl", key = %k);
                c.sync(&k).instrument(span).await
            }
        })
        .await;
    }

    async fn sync(&self, k: &str) -> Result<Requeue, TtlError> {
        let (ns, name) = split_key(k);
        let Some(job) = self.jobs.get(ns, name) else {
            return Ok(Requeue::default());
        };
        let Some(at) = expires_at(&job) else {
            return Ok(Requeue::default());
        };
        if job.metadata.deletion_timestamp.is_some() {
            return Ok(Requeue::default());
        }
        let left = at - self.clock.now();
        if left > chrono::Duration::zero() {
            return Ok(Requeue(Some(Duration::from_millis(
                left.num_milliseconds() as u64 + 50,
            ))));
        }
        // The uid precondition keeps a recreated Job of the same name safe.
        let dp = DeleteParams {
            propagation_policy: Some(PropagationPolicy::Foreground),
            preconditions: Some(Preconditions {
                uid: job.metadata.uid.clone(),
                resource_version: None,
            }),
            ..Default::default()
        };
        match Api::<Job>::namespaced(self.client.clone(), ns)
            .delete(name, &dp)
            .await
        {
            Ok(_) => tracing::info!(job = %k, "deleted finished job past its ttl"),
            Err(e) if is_not_found(&e) || crate::is_conflict(&e) => {}
            Err(source) => {
                return Err(TtlError::Delete {
                    key: k.to_string(),
                    source,
                })
            }
        }
        Ok(Requeue::default())
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::batch::v1::{JobCondition, JobSpec, JobStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    use super::*;

    #[test]
    fn expiry_counts_from_the_finish_condition() {
        let t0 = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let mut j = Job {
            spec: Some(JobSpec {
                ttl_seconds_after_finished: Some(30),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(expires_at(&j), None, "not finished");
        j.status = Some(JobStatus {
            conditions: Some(vec![
                JobCondition {
                    type_: "Complete".into(),
                    status: "True".into(),
                    last_transition_time: Some(Time(t0)),
                    ..Default::default()
                },
                JobCondition {
                    type_: "Suspended".into(),
                    status: "True".into(),
                    last_transition_time: Some(Time(t0 + chrono::Duration::seconds(99))),
                    ..Default::default()
                },
            ]),
            ..Default::default()
        });
        assert_eq!(expires_at(&j), Some(t0 + chrono::Duration::seconds(30)));
        j.spec.as_mut().unwrap().ttl_seconds_after_finished = None;
        assert_eq!(expires_at(&j), None, "no ttl");
    }
}
