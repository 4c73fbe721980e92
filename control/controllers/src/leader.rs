//! Leader election through a coordination.k8s.io/v1 Lease, as client-go's leaderelection:
//! a candidate takes the Lease when it is free or its holder has not renewed it for
//! `leaseDuration` (measured on the candidate's own clock from when it last saw the record
//! change, so clock skew between machines does not matter); the leader renews every
//! `retryPeriod` and gives up leadership when it could not renew within `renewDeadline`.
//! Every write is a compare-and-swap on the Lease's resourceVersion.

use std::time::Duration;

use chrono::Utc;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::PostParams;
use kube::{Api, Client};
use serde::Deserialize;
use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::{is_conflict, is_not_found};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default, rename_all = "camelCase")]
pub struct LeaderElectionConfig {
    pub namespace: String,
    pub name: String,
    /// Defaults to `<hostname>_<random>`.
    pub identity: Option<String>,
    pub lease_duration_secs: u64,
    pub renew_deadline_secs: u64,
    pub retry_period_secs: u64,
}

impl Default for LeaderElectionConfig {
    fn default() -> Self {
        // kube-controller-manager's defaults.
        Self {
            namespace: "kube-system".into(),
            name: "kube-controller-manager".into(),
            identity: None,
            lease_duration_secs: 15,
            renew_deadline_secs: 10,
            retry_period_secs: 2,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LeaderError {
    #[error("lease {namespace}/{name}: {source}")]
    Api {
        namespace: String,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("lease {namespace}/{name} is held by {holder}")]
    Held {
        namespace: String,
        name: String,
        holder: String,
    },
}

/// What this candidate last saw of the Lease, and when (its own monotonic clock).
#[derive(Debug, Default)]
struct Observed {
    record: Option<(Option<String>, Option<MicroTime>, Option<i32>)>,
    at: Option<Instant>,
}

#[derive(Debug)]
pub struct Elector {
    api: Api<Lease>,
    config: LeaderElectionConfig,
    identity: String,
    observed: Mutex<Observed>,
}

fn random_suffix() -> String {
    use std::hash::{BuildHasher, Hasher};
    // std's RandomState is seeded randomly per process: enough to tell two candidates on one
    // host apart without an RNG dependency.
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    format!("{:016x}", h.finish())
}

impl Elector {
    pub fn new(client: Client, config: LeaderElectionConfig) -> Self {
        let identity = config.identity.clone().unwrap_or_else(|| {
            let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|h| h.trim().to_string())
                .unwrap_or_else(|_| "pea".into());
            format!("{host}_{}", random_suffix())
        });
        Self {
            api: Api::namespaced(client, &config.namespace),
            config,
            identity,
            observed: Mutex::new(Observed::default()),
        }
    }

    pub fn identity(&self) -> &str {
        &self.identity
    }

    fn err(&self, source: kube::Error) -> LeaderError {
        LeaderError::Api {
            namespace: self.config.namespace.clone(),
            name: self.config.name.clone(),
            source,
        }
    }

    /// Waits until this candidate holds the Lease.
    pub async fn acquire(&self) {
        let retry = Duration::from_secs(self.config.retry_period_secs.max(1));
        loop {
            match self.try_acquire_or_renew().await {
                Ok(()) => return,
                Err(LeaderError::Held { .. }) => {}
                Err(e) => tracing::warn!(error = %e, "leader election attempt failed"),
            }
            tokio::time::sleep(retry).await;
        }
    }

    /// Renews the Lease every retry period; returns when it could not be renewed within the
    /// renew deadline (leadership lost).
    pub async fn hold(&self) {
        let retry = Duration::from_secs(self.config.retry_period_secs.max(1));
        let deadline = Duration::from_secs(self.config.renew_deadline_secs.max(1));
        let mut last_renew = Instant::now();
        loop {
            tokio::time::sleep(retry).await;
            match self.try_acquire_or_renew().await {
                Ok(()) => last_renew = Instant::now(),
                Err(e) => {
                    tracing::warn!(error = %e, "renewing the lease failed");
                    if matches!(e, LeaderError::Held { .. }) || last_renew.elapsed() >= deadline {
                        return;
                    }
                }
            }
        }
    }

    /// client-go's tryAcquireOrRenew.
    async fn try_acquire_or_renew(&self) -> Result<(), LeaderError> {
        let now = MicroTime(Utc::now());
        let duration = self.config.lease_duration_secs as i32;
        let lease = match self.api.get(&self.config.name).await {
            Ok(l) => l,
            Err(e) if is_not_found(&e) => {
                let fresh = Lease {
                    metadata: ObjectMeta {
                        name: Some(self.config.name.clone()),
                        namespace: Some(self.config.namespace.clone()),
                        ..Default::default()
                    },
                    spec: Some(LeaseSpec {
                        holder_identity: Some(self.identity.clone()),
                        lease_duration_seconds: Some(duration),
                        acquire_time: Some(now.clone()),
                        renew_time: Some(now),
                        lease_transitions: Some(0),
                        ..Default::default()
                    }),
                };
                return match self.api.create(&PostParams::default(), &fresh).await {
                    Ok(_) => Ok(()),
                    Err(e) if is_conflict(&e) => Err(self.held("another candidate")),
                    Err(e) => Err(self.err(e)),
                };
            }
            Err(e) => return Err(self.err(e)),
        };
        let spec = lease.spec.clone().unwrap_or_default();
        let record = (
            spec.holder_identity.clone(),
            spec.renew_time.clone(),
            spec.lease_transitions,
        );
        let mut observed = self.observed.lock().await;
        if observed.record.as_ref() != Some(&record) {
            observed.record = Some(record);
            observed.at = Some(Instant::now());
        }
        let holder = spec.holder_identity.clone().unwrap_or_default();
        let held_by_other = !holder.is_empty() && holder != self.identity;
        let their_duration =
            Duration::from_secs(spec.lease_duration_seconds.unwrap_or(duration).max(0) as u64);
        if held_by_other && observed.at.is_some_and(|at| at.elapsed() < their_duration) {
            return Err(self.held(&holder));
        }
        let mut next = lease.clone();
        let s = next.spec.get_or_insert_with(Default::default);
        if holder != self.identity {
            s.acquire_time = Some(now.clone());
            s.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
        }
        s.holder_identity = Some(self.identity.clone());
        s.lease_duration_seconds = Some(duration);
        s.renew_time = Some(now);
        // The replace carries the resourceVersion we read: a concurrent writer makes it 409.
        match self
            .api
            .replace(&self.config.name, &PostParams::default(), &next)
            .await
        {
            Ok(l) => {
                let s = l.spec.unwrap_or_default();
                observed.record = Some((s.holder_identity, s.renew_time, s.lease_transitions));
                observed.at = Some(Instant::now());
                Ok(())
            }
            Err(e) if is_conflict(&e) => Err(self.held("a concurrent writer")),
            Err(e) => Err(self.err(e)),
        }
    }

    fn held(&self, holder: &str) -> LeaderError {
        LeaderError::Held {
            namespace: self.config.namespace.clone(),
            name: self.config.name.clone(),
            holder: holder.to_string(),
        }
    }
}
