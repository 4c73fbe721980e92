//! Leader election through a coordination.k8s.io/v1 Lease, as client-go's leaderelection:
//! a candidate takes the Lease when its holder has not renewed it for `leaseDurationSeconds`
//! of *our* observation time (no trust in other clocks), the leader renews every retry period
//! and steps down when it could not renew within the renew deadline. Optimistic concurrency
//! (resourceVersion) settles races. [`Election`] decides (pure, time passed in);
//! [`LeaderElector`] does the API calls.

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::chrono::{DateTime, Utc};
use kube::api::{Api, PostParams};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum LeaderError {
    #[error("lease {namespace}/{name}: {source}")]
    Api {
        namespace: String,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("lease {namespace}/{name}: leadership lost (not renewed within {deadline:?})")]
    Lost {
        namespace: String,
        name: String,
        deadline: Duration,
    },
}

/// What to write, decided from the current Lease (None: it does not exist).
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Create the Lease holding it.
    Create(Lease),
    /// Replace (with the read resourceVersion) holding it.
    Update(Lease),
    /// Someone else holds a live lease.
    Wait,
}

/// The candidate's view: who it is and what it last observed (and when).
#[derive(Debug)]
pub struct Election {
    pub identity: String,
    pub lease_duration: Duration,
    observed: Option<(Option<LeaseSpec>, Instant)>,
    leader: bool,
}

impl Election {
    pub fn new(identity: String, lease_duration: Duration) -> Self {
        Election {
            identity,
            lease_duration,
            observed: None,
            leader: false,
        }
    }

    pub fn is_leader(&self) -> bool {
        self.leader
    }

    fn spec(&self, now_wall: DateTime<Utc>, prev: Option<&LeaseSpec>) -> LeaseSpec {
        let ours = prev.is_some_and(|p| p.holder_identity.as_deref() == Some(&self.identity));
        LeaseSpec {
            holder_identity: Some(self.identity.clone()),
            lease_duration_seconds: Some(self.lease_duration.as_secs() as i32),
            acquire_time: match prev {
                Some(p) if ours => p.acquire_time.clone(),
                _ => Some(MicroTime(now_wall)),
            },
            renew_time: Some(MicroTime(now_wall)),
            lease_transitions: match prev {
                Some(p) if !ours => Some(p.lease_transitions.unwrap_or(0) + 1),
                Some(p) => p.lease_transitions,
                None => Some(0),
            },
            ..Default::default()
        }
    }

    /// client-go's tryAcquireOrRenew decision.
    pub fn decide(
        &mut self,
        current: Option<&Lease>,
        namespace: &str,
        name: &str,
        now: Instant,
        now_wall: DateTime<Utc>,
    ) -> Action {
        let Some(lease) = current else {
            return Action::Create(Lease {
                metadata: ObjectMeta {
                    name: Some(name.into()),
                    namespace: Some(namespace.into()),
                    ..Default::default()
                },
                spec: Some(self.spec(now_wall, None)),
            });
        };
        let spec = lease.spec.clone();
        // The observation clock restarts whenever the record changes.
        match &self.observed {
            Some((seen, _)) if *seen == spec => {}
            _ => self.observed = Some((spec.clone(), now)),
        }
        let holder = spec
            .as_ref()
            .and_then(|s| s.holder_identity.clone())
            .unwrap_or_default();
        let duration = spec
            .as_ref()
            .and_then(|s| s.lease_duration_seconds)
            .map(|s| Duration::from_secs(s.max(0) as u64))
            .unwrap_or(self.lease_duration);
        let observed_at = self.observed.as_ref().map(|(_, t)| *t).unwrap_or(now);
        if !holder.is_empty() && holder != self.identity && observed_at + duration > now {
            self.leader = false;
            return Action::Wait;
        }
        let mut next = lease.clone();
        next.spec = Some(self.spec(now_wall, spec.as_ref()));
        Action::Update(next)
    }

    /// Records a successful write of `spec`.
    pub fn wrote(&mut self, spec: Option<LeaseSpec>, now: Instant) {
        self.observed = Some((spec, now));
        self.leader = true;
    }

    pub fn lost(&mut self) {
        self.leader = false;
    }
}

/// The API side of [`Election`].
#[derive(Debug)]
pub struct LeaderElector {
    api: Api<Lease>,
    namespace: String,
    name: String,
    election: Election,
    renew_deadline: Duration,
    retry_period: Duration,
}

impl LeaderElector {
    pub fn new(
        client: kube::Client,
        namespace: &str,
        name: &str,
        identity: String,
        lease_duration: Duration,
        renew_deadline: Duration,
        retry_period: Duration,
    ) -> Self {
        LeaderElector {
            api: Api::namespaced(client, namespace),
            namespace: namespace.into(),
            name: name.into(),
            election: Election::new(identity, lease_duration),
            renew_deadline,
            retry_period,
        }
    }

    pub fn identity(&self) -> &str {
        &self.election.identity
    }

    fn err(&self, source: kube::Error) -> LeaderError {
        LeaderError::Api {
            namespace: self.namespace.clone(),
            name: self.name.clone(),
            source,
        }
    }

    /// One tryAcquireOrRenew; Ok(true) when we hold the lease afterwards.
    pub async fn try_acquire_or_renew(&mut self) -> Result<bool, LeaderError> {
        let current = self
            .api
            .get_opt(&self.name)
            .await
            .map_err(|e| self.err(e))?;
        let action = self.election.decide(
            current.as_ref(),
            &self.namespace,
            &self.name,
            Instant::now(),
            Utc::now(),
        );
        let written = match action {
            Action::Wait => return Ok(false),
            Action::Create(l) => self.api.create(&PostParams::default(), &l).await,
            Action::Update(l) => {
                self.api
                    .replace(&self.name, &PostParams::default(), &l)
                    .await
            }
        };
        match written {
            Ok(l) => {
                self.election.wrote(l.spec, Instant::now());
                Ok(true)
            }
            // Someone else wrote first (409) or created it first: not ours this round.
            Err(kube::Error::Api(s)) if s.code == 409 => {
                self.election.lost();
                Ok(false)
            }
            Err(e) => Err(self.err(e)),
        }
    }

    /// Blocks until this instance holds the lease.
    pub async fn acquire(&mut self) {
        loop {
            match self.try_acquire_or_renew().await {
                Ok(true) => {
                    tracing::info!(lease = %format!("{}/{}", self.namespace, self.name), identity = %self.election.identity, "acquired leadership");
                    return;
                }
                Ok(false) => {}
                Err(e) => tracing::warn!(error = %e, "leader election"),
            }
            tokio::time::sleep(self.retry_period).await;
        }
    }

    /// Renews every retry period; returns when a renewal did not succeed within the renew
    /// deadline (leadership lost).
    pub async fn hold(&mut self) -> LeaderError {
        let mut last_renew = Instant::now();
        loop {
            tokio::time::sleep(self.retry_period).await;
            let attempt =
                tokio::time::timeout(self.renew_deadline, self.try_acquire_or_renew()).await;
            match attempt {
                Ok(Ok(true)) => last_renew = Instant::now(),
                Ok(Ok(false)) => {
                    self.election.lost();
                    return LeaderError::Lost {
                        namespace: self.namespace.clone(),
                        name: self.name.clone(),
                        deadline: self.renew_deadline,
                    };
                }
                Ok(Err(e)) => tracing::warn!(error = %e, "renewing the lease"),
                Err(_) => {}
            }
            if last_renew.elapsed() >= self.renew_deadline {
                self.election.lost();
                return LeaderError::Lost {
                    namespace: self.namespace.clone(),
                    name: self.name.clone(),
                    deadline: self.renew_deadline,
                };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held_by(who: &str, transitions: i32) -> Lease {
        Lease {
            metadata: ObjectMeta {
                name: Some("kube-scheduler".into()),
                namespace: Some("kube-system".into()),
                resource_version: Some("7".into()),
                ..Default::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(who.into()),
                lease_duration_seconds: Some(15),
                lease_transitions: Some(transitions),
                ..Default::default()
            }),
        }
    }

    #[test]
    fn takes_a_missing_lease() {
        let mut e = Election::new("me".into(), Duration::from_secs(15));
        let Action::Create(l) = e.decide(
            None,
            "kube-system",
            "kube-scheduler",
            Instant::now(),
            Utc::now(),
        ) else {
            panic!("expected create");
        };
        let s = l.spec.unwrap();
        assert_eq!(s.holder_identity.as_deref(), Some("me"));
        assert_eq!(s.lease_duration_seconds, Some(15));
        assert_eq!(s.lease_transitions, Some(0));
    }

    #[test]
    fn waits_for_a_live_holder_then_takes_over_after_the_duration() {
        let mut e = Election::new("me".into(), Duration::from_secs(15));
        let t0 = Instant::now();
        let other = held_by("other", 3);
        assert_eq!(
            e.decide(
                Some(&other),
                "kube-system",
                "kube-scheduler",
                t0,
                Utc::now()
            ),
            Action::Wait
        );
        // 14 s of observing the same record: still live.
        assert_eq!(
            e.decide(
                Some(&other),
                "kube-system",
                "kube-scheduler",
                t0 + Duration::from_secs(14),
                Utc::now()
            ),
            Action::Wait
        );
        // The holder renewed (record changed): the clock restarts.
        let mut renewed = other.clone();
        renewed.spec.as_mut().unwrap().renew_time = Some(MicroTime(Utc::now()));
        assert_eq!(
            e.decide(
                Some(&renewed),
                "kube-system",
                "kube-scheduler",
                t0 + Duration::from_secs(14),
                Utc::now()
            ),
            Action::Wait
        );
        assert_eq!(
            e.decide(
                Some(&renewed),
                "kube-system",
                "kube-scheduler",
                t0 + Duration::from_secs(28),
                Utc::now()
            ),
            Action::Wait
        );
        let Action::Update(l) = e.decide(
            Some(&renewed),
            "kube-system",
            "kube-scheduler",
            t0 + Duration::from_secs(29),
            Utc::now(),
        ) else {
            panic!("expected a takeover");
        };
        assert_eq!(
            l.metadata.resource_version.as_deref(),
            Some("7"),
            "replace is conditional"
        );
        let s = l.spec.unwrap();
        assert_eq!(
            (s.holder_identity.as_deref(), s.lease_transitions),
            (Some("me"), Some(4))
        );
    }

    #[test]
    fn the_holder_renews_keeping_its_acquire_time() {
        let mut e = Election::new("me".into(), Duration::from_secs(15));
        let mut mine = held_by("me", 2);
        let acquired = MicroTime(Utc::now() - k8s_openapi::chrono::Duration::seconds(60));
        mine.spec.as_mut().unwrap().acquire_time = Some(acquired.clone());
        let Action::Update(l) = e.decide(
            Some(&mine),
            "kube-system",
            "kube-scheduler",
            Instant::now(),
            Utc::now(),
        ) else {
            panic!("expected renew");
        };
        let s = l.spec.unwrap();
        assert_eq!(s.acquire_time, Some(acquired));
        assert_eq!(s.lease_transitions, Some(2));
    }
}
