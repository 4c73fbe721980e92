//! batch/v1 kinds: Job and CronJob.

use super::core::OBJECT_REF;
use super::meta::{LABEL_SELECTOR, OBJECT_META};
use super::pod::POD_TEMPLATE_SPEC;
use super::schema::{Schema, F};

static ON_EXIT_CODES: Schema = Schema {
    name: "PodFailurePolicyOnExitCodesRequirement",
    fields: &[
        (1, "containerName", F::StrP),
        (2, "operator", F::Str),
        (3, "values", F::RepInt),
    ],
};
static ON_POD_CONDITIONS: Schema = Schema {
    name: "PodFailurePolicyOnPodConditionsPattern",
    fields: &[(1, "type", F::Str), (2, "status", F::Str)],
};
static POD_FAILURE_POLICY_RULE: Schema = Schema {
    name: "PodFailurePolicyRule",
    fields: &[
        (1, "action", F::Str),
        (2, "onExitCodes", F::Msg(&ON_EXIT_CODES)),
        (3, "onPodConditions", F::RepMsg(&ON_POD_CONDITIONS)),
    ],
};
static POD_FAILURE_POLICY: Schema = Schema {
    name: "PodFailurePolicy",
    fields: &[(1, "rules", F::RepMsg(&POD_FAILURE_POLICY_RULE))],
};
static SUCCESS_POLICY_RULE: Schema = Schema {
    name: "SuccessPolicyRule",
    fields: &[
        (1, "succeededIndexes", F::StrP),
        (2, "succeededCount", F::IntP),
    ],
};
static SUCCESS_POLICY: Schema = Schema {
    name: "SuccessPolicy",
    fields: &[(1, "rules", F::RepMsg(&SUCCESS_POLICY_RULE))],
};
static JOB_SPEC: Schema = Schema {
    name: "JobSpec",
    fields: &[
        (1, "parallelism", F::IntP),
        (2, "completions", F::IntP),
        (3, "activeDeadlineSeconds", F::IntP),
        (4, "selector", F::Msg(&LABEL_SELECTOR)),
        (5, "manualSelector", F::BoolP),
        (6, "template", F::Msg(&POD_TEMPLATE_SPEC)),
        (7, "backoffLimit", F::IntP),
        (8, "ttlSecondsAfterFinished", F::IntP),
        (9, "completionMode", F::StrP),
        (10, "suspend", F::BoolP),
        (11, "podFailurePolicy", F::Msg(&POD_FAILURE_POLICY)),
        (12, "backoffLimitPerIndex", F::IntP),
        (13, "maxFailedIndexes", F::IntP),
        (14, "podReplacementPolicy", F::StrP),
        (15, "managedBy", F::StrP),
        (16, "successPolicy", F::Msg(&SUCCESS_POLICY)),
    ],
};
static JOB_CONDITION: Schema = Schema {
    name: "JobCondition",
    fields: &[
        (1, "type", F::Str),
        (2, "status", F::Str),
        (3, "lastProbeTime", F::Time),
        (4, "lastTransitionTime", F::Time),
        (5, "reason", F::Str),
        (6, "message", F::Str),
    ],
};
static UNCOUNTED_TERMINATED_PODS: Schema = Schema {
    name: "UncountedTerminatedPods",
    fields: &[(1, "succeeded", F::RepStr), (2, "failed", F::RepStr)],
};
static JOB_STATUS: Schema = Schema {
    name: "JobStatus",
    fields: &[
        (1, "conditions", F::RepMsg(&JOB_CONDITION)),
        (2, "startTime", F::Time),
        (3, "completionTime", F::Time),
        (4, "active", F::Int),
        (5, "succeeded", F::Int),
        (6, "failed", F::Int),
        (7, "completedIndexes", F::Str),
        (
            8,
            "uncountedTerminatedPods",
            F::Msg(&UNCOUNTED_TERMINATED_PODS),
        ),
        (9, "ready", F::IntP),
        (10, "failedIndexes", F::StrP),
        (11, "terminating", F::IntP),
    ],
};
pub(super) static JOB: Schema = Schema {
    name: "Job",
    fields: &[
        (1, "metadata", F::Msg(&OBJECT_META)),
        (2, "spec", F::Msg(&JOB_SPEC)),
        (3, "status", F::Msg(&JOB_STATUS)),
    ],
};
static JOB_TEMPLATE_SPEC: Schema = Schema {
    name: "JobTemplateSpec",
    fields: &[
        (1, "metadata", F::Msg(&OBJECT_META)),
        (2, "spec", F::Msg(&JOB_SPEC)),
    ],
};
static CRON_JOB_SPEC: Schema = Schema {
    name: "CronJobSpec",
    fields: &[
        (1, "schedule", F::Str),
        (2, "startingDeadlineSeconds", F::IntP),
        (3, "concurrencyPolicy", F::Str),
        (4, "suspend", F::BoolP),
        (5, "jobTemplate", F::Msg(&JOB_TEMPLATE_SPEC)),
        (6, "successfulJobsHistoryLimit", F::IntP),
        (7, "failedJobsHistoryLimit", F::IntP),
        (8, "timeZone", F::StrP),
    ],
};
static CRON_JOB_STATUS: Schema = Schema {
    name: "CronJobStatus",
    fields: &[
        (1, "active", F::RepMsg(&OBJECT_REF)),
        (4, "lastScheduleTime", F::Time),
        (5, "lastSuccessfulTime", F::Time),
    ],
};
pub(super) static CRON_JOB: Schema = Schema {
    name: "CronJob",
    fields: &[
        (1, "metadata", F::Msg(&OBJECT_META)),
        (2, "spec", F::Msg(&CRON_JOB_SPEC)),
        (3, "status", F::Msg(&CRON_JOB_STATUS)),
    ],
};
