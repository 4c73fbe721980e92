//! The job controller's metrics, by kube's names and labels (`pkg/controller/job/metrics`).

use crate::metrics::{Family, Kind};

/// kube's ExponentialBuckets(0.004, 2, 15).
const SYNC_BUCKETS: [f64; 15] = [
    0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256, 0.512, 1.024, 2.048, 4.096, 8.192, 16.384,
    32.768, 65.536,
];

/// Labels completion_mode (Indexed, NonIndexed), result (success, error), action
/// (reconciling, tracking, pods_created, pods_deleted).
pub static SYNC_DURATION: Family = Family {
    name: "job_controller_job_sync_duration_seconds",
    kind: Kind::Histogram,
    stability: "STABLE",
    help: "The time it took to sync a job",
    buckets: &SYNC_BUCKETS,
};

/// Labels as [`SYNC_DURATION`].
pub static SYNCS: Family = Family {
    name: "job_controller_job_syncs_total",
    kind: Kind::Counter,
    stability: "STABLE",
    help: "The number of job syncs",
    buckets: &[],
};

/// Labels completion_mode, result (failed, succeeded), reason (the final condition's).
pub static FINISHED: Family = Family {
    name: "job_controller_jobs_finished_total",
    kind: Kind::Counter,
    stability: "STABLE",
    help: "The number of finished jobs",
    buckets: &[],
};

/// Labels completion_mode, result (failed, succeeded).
pub static PODS_FINISHED: Family = Family {
    name: "job_controller_job_pods_finished_total",
    kind: Kind::Counter,
    stability: "STABLE",
    help: "The number of finished Pods that are fully tracked",
    buckets: &[],
};

/// Label action (FailJob, Ignore, Count, FailIndex).
pub static FAILURES_BY_POLICY: Family = Family {
    name: "job_controller_pod_failures_handled_by_failure_policy_total",
    kind: Kind::Counter,
    stability: "BETA",
    help: "The number of failed Pods handled by failure policy with respect to the failure policy action applied based on the matched rule. Possible values of the action label correspond to the possible values for the failure policy rule action, which are: \"FailJob\", \"Ignore\" and \"Count\".",
    buckets: &[],
};

/// Label event (add, delete).
pub static TRACKING_FINALIZER: Family = Family {
    name: "job_controller_terminated_pods_tracking_finalizer_total",
    kind: Kind::Counter,
    stability: "BETA",
    help: "The number of terminated pods (phase=Failed|Succeeded) that have the finalizer batch.kubernetes.io/job-tracking. The event label can be \"add\" or \"delete\".",
    buckets: &[],
};

/// Labels status (succeeded, failed), backoffLimit (perIndex, global).
pub static FINISHED_INDEXES: Family = Family {
    name: "job_controller_job_finished_indexes_total",
    kind: Kind::Counter,
    stability: "ALPHA",
    help: "The number of finished indexes. Possible values for the\n\t\t\tstatus label are: \"succeeded\", \"failed\". Possible values for the\n\t\t\tbackoffLimit label are: \"perIndex\" and \"global\"",
    buckets: &[],
};

/// Labels reason (new, recreate_terminating_or_failed, recreate_failed), status (succeeded,
/// failed): every pod create the controller tried.
pub static PODS_CREATION: Family = Family {
    name: "job_controller_job_pods_creation_total",
    kind: Kind::Counter,
    stability: "ALPHA",
    help: "The number of Pods created by the Job controller labelled with a reason for the Pod creation.\nThis metric also distinguishes between Pods created using different PodReplacementPolicy settings.\nPossible values of the \"reason\" label are:\n\"new\", \"recreate_terminating_or_failed\", \"recreate_failed\".\nPossible values of the \"status\" label are:\n\"succeeded\", \"failed\".",
    buckets: &[],
};

/// Label controller_name: the `spec.managedBy` of Jobs this controller leaves to another one,
/// counted as they are added to its cache.
pub static BY_EXTERNAL_CONTROLLER: Family = Family {
    name: "job_controller_jobs_by_external_controller_total",
    kind: Kind::Counter,
    stability: "ALPHA",
    help: "The number of Jobs managed by an external controller",
    buckets: &[],
};

/// kube's `recordJobPodsCreationTotal` reason: a replacement once pods failed (only of failed
/// ones under podReplacementPolicy Failed) or while some terminate, else new.
pub fn creation_reason(
    replacement_policy: Option<&str>,
    failed: i32,
    terminating: usize,
) -> &'static str {
    if replacement_policy == Some("Failed") && failed > 0 {
        "recreate_failed"
    } else if failed > 0 || terminating > 0 {
        "recreate_terminating_or_failed"
    } else {
        "new"
    }
}

/// kube's sync `action` label values.
pub const RECONCILING: &str = "reconciling";
pub const TRACKING: &str = "tracking";
pub const PODS_CREATED_ACTION: &str = "pods_created";
pub const PODS_DELETED_ACTION: &str = "pods_deleted";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creations_are_new_until_pods_fail_or_terminate() {
        assert_eq!(creation_reason(None, 0, 0), "new");
        assert_eq!(
            creation_reason(Some("Failed"), 0, 2),
            "recreate_terminating_or_failed"
        );
        assert_eq!(
            creation_reason(Some("TerminatingOrFailed"), 1, 0),
            "recreate_terminating_or_failed"
        );
        assert_eq!(
            creation_reason(None, 1, 0),
            "recreate_terminating_or_failed"
        );
        assert_eq!(creation_reason(Some("Failed"), 1, 0), "recreate_failed");
    }
}
