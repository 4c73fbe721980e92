//! The scheduler's one configuration struct (kube-scheduler's defaults).

use std::time::Duration;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct SchedulerConfig {
    /// Pods whose `spec.schedulerName` differs are left alone.
    pub scheduler_name: String,
    /// Run for leadership through a Lease; only the leader schedules.
    pub leader_elect: bool,
    pub lease_namespace: String,
    pub lease_name: String,
    /// The Lease's holderIdentity; default `<hostname>_<pid>-<random>`.
    pub identity: Option<String>,
    pub lease_duration_secs: u64,
    pub renew_deadline_secs: u64,
    pub retry_period_secs: u64,
    /// kube's percentageOfNodesToScore; 0 = adaptive.
    pub percentage_of_nodes_to_score: u32,
    pub pod_initial_backoff_secs: u64,
    pub pod_max_backoff_secs: u64,
    /// Bindings (and status writes) in flight at once; the scheduling cycle itself is serial.
    pub bind_concurrency: usize,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig {
            scheduler_name: "default-scheduler".into(),
            leader_elect: true,
            lease_namespace: "kube-system".into(),
            lease_name: "kube-scheduler".into(),
            identity: None,
            lease_duration_secs: 15,
            renew_deadline_secs: 10,
            retry_period_secs: 2,
            percentage_of_nodes_to_score: 0,
            pod_initial_backoff_secs: 1,
            pod_max_backoff_secs: 10,
            bind_concurrency: 64,
        }
    }
}

impl SchedulerConfig {
    pub fn lease_duration(&self) -> Duration {
        Duration::from_secs(self.lease_duration_secs)
    }
    pub fn renew_deadline(&self) -> Duration {
        Duration::from_secs(self.renew_deadline_secs)
    }
    pub fn retry_period(&self) -> Duration {
        Duration::from_secs(self.retry_period_secs.max(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_fields_are_refused_and_defaults_fill_in() {
        let c: SchedulerConfig = serde_json::from_str(r#"{"leaderElect": false}"#).unwrap();
        assert!(!c.leader_elect);
        assert_eq!(c.scheduler_name, "default-scheduler");
        assert!(serde_json::from_str::<SchedulerConfig>(r#"{"leaderElection": false}"#).is_err());
    }
}
