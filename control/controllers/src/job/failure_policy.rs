//! `spec.podFailurePolicy` (kube's `pod_failure_policy.go`): the first rule matching a failed
//! pod decides whether it fails the Job (FailJob), is not counted toward backoffLimit (Ignore),
//! is counted as usual (Count) or fails its index (FailIndex, with backoffLimitPerIndex).

use k8s_openapi::api::batch::v1::{Job, PodFailurePolicy, PodFailurePolicyOnExitCodesRequirement};
use k8s_openapi::api::core::v1::{ContainerStatus, Pod};

/// What a failed pod means for the Job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Counted toward backoffLimit (no rule matched, or a Count rule).
    Count,
    /// Not counted (an Ignore rule).
    Ignore,
    /// Fails the Job with this message.
    FailJob(String),
    /// Fails the pod's index (with backoffLimitPerIndex); counted as a failure too.
    FailIndex,
}

/// kube's matchPodFailurePolicy for one failed pod.
pub fn outcome(policy: Option<&PodFailurePolicy>, pod: &Pod) -> Outcome {
    match first_match(policy, pod) {
        Some(("Ignore", _)) => Outcome::Ignore,
        Some(("FailJob", message)) => Outcome::FailJob(message),
        // The API allows FailIndex only with backoffLimitPerIndex.
        Some(("FailIndex", _)) => Outcome::FailIndex,
        _ => Outcome::Count,
    }
}

/// The action of the rule a failed pod matched (`FailJob`, `Ignore`, `Count`, `FailIndex`):
/// the `action` label of kube's pod_failures_handled_by_failure_policy_total.
pub fn matched_action(policy: Option<&PodFailurePolicy>, pod: &Pod) -> Option<&'static str> {
    first_match(policy, pod).map(|(action, _)| action)
}

/// The first rule matching a failed pod: its action and kube's message for it.
fn first_match(policy: Option<&PodFailurePolicy>, pod: &Pod) -> Option<(&'static str, String)> {
    let policy = policy?;
    let ns = pod.metadata.namespace.as_deref().unwrap_or("");
    let name = pod.metadata.name.as_deref().unwrap_or("");
    let status = pod.status.clone().unwrap_or_default();
    for (index, rule) in policy.rules.iter().enumerate() {
        let matched = if let Some(req) = &rule.on_exit_codes {
            let containers = status.container_statuses.iter().flatten();
            let inits = status.init_container_statuses.iter().flatten();
            let found =
                matching_container(containers, req).or_else(|| matching_container(inits, req));
            found.map(|c| {
                let code = c
                    .state
                    .as_ref()
                    .and_then(|s| s.terminated.as_ref())
                    .map_or(0, |t| t.exit_code);
                format!(
                    "Container {} for pod {ns}/{name} failed with exit code {code} matching {} rule at index {index}",
                    c.name, rule.action
                )
            })
        } else if let Some(patterns) = &rule.on_pod_conditions {
            status
                .conditions
                .iter()
                .flatten()
                .find(|c| {
                    patterns
                        .iter()
                        .any(|p| p.type_ == c.type_ && p.status == c.status)
                })
                .map(|c| {
                    format!(
                        "Pod {ns}/{name} has condition {} matching {} rule at index {index}",
                        c.type_, rule.action
                    )
                })
        } else {
            None
        };
        let Some(message) = matched else { continue };
        let action = match rule.action.as_str() {
            "Ignore" => "Ignore",
            "Count" => "Count",
            "FailJob" => "FailJob",
            "FailIndex" => "FailIndex",
            // An action kube does not know: kube goes on to the next rule.
            _ => continue,
        };
        return Some((action, message));
    }
    None
}

/// kube's getMatchingContainerFromList: a terminated container (of the named one, if a name is
/// given) with a non-zero exit code the requirement matches.
fn matching_container<'a>(
    statuses: impl Iterator<Item = &'a ContainerStatus>,
    req: &PodFailurePolicyOnExitCodesRequirement,
) -> Option<&'a ContainerStatus> {
    statuses.into_iter().find(|c| {
        let Some(t) = c.state.as_ref().and_then(|s| s.terminated.as_ref()) else {
            return false;
        };
        let named = req.container_name.as_ref().is_none_or(|n| *n == c.name);
        let listed = req.values.contains(&t.exit_code);
        let op = match req.operator.as_str() {
            "In" => listed,
            "NotIn" => !listed,
            _ => false,
        };
        named && t.exit_code != 0 && op
    })
}

/// kube's getFailJobMessage: the message of the first failed pod a FailJob rule matches.
pub fn fail_job_message(job: &Job, failed: &[&Pod]) -> Option<String> {
    let policy = job.spec.as_ref()?.pod_failure_policy.as_ref()?;
    failed.iter().find_map(|p| match outcome(Some(policy), p) {
        Outcome::FailJob(m) => Some(m),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::batch::v1::{
        PodFailurePolicyOnPodConditionsPattern, PodFailurePolicyRule,
    };
    use k8s_openapi::api::core::v1::{
        ContainerState, ContainerStateTerminated, PodCondition, PodStatus,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    use super::*;

    fn failed_pod(exits: &[(&str, i32)], conditions: &[(&str, &str)]) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some("p1".into()),
                namespace: Some("ns".into()),
                ..Default::default()
            },
            status: Some(PodStatus {
                phase: Some("Failed".into()),
                container_statuses: Some(
                    exits
                        .iter()
                        .map(|(n, code)| ContainerStatus {
                            name: n.to_string(),
                            state: Some(ContainerState {
                                terminated: Some(ContainerStateTerminated {
                                    exit_code: *code,
                                    ..Default::default()
                                }),
                                ..Default::default()
                            }),
                            ..Default::default()
                        })
                        .collect(),
                ),
                conditions: Some(
                    conditions
                        .iter()
                        .map(|(t, s)| PodCondition {
                            type_: t.to_string(),
                            status: s.to_string(),
                            ..Default::default()
                        })
                        .collect(),
                ),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn codes(
        action: &str,
        container: Option<&str>,
        op: &str,
        values: &[i32],
    ) -> PodFailurePolicyRule {
        PodFailurePolicyRule {
            action: action.into(),
            on_exit_codes: Some(PodFailurePolicyOnExitCodesRequirement {
                container_name: container.map(Into::into),
                operator: op.into(),
                values: values.to_vec(),
            }),
            on_pod_conditions: None,
        }
    }

    fn cond(action: &str, type_: &str) -> PodFailurePolicyRule {
        PodFailurePolicyRule {
            action: action.into(),
            on_exit_codes: None,
            on_pod_conditions: Some(vec![PodFailurePolicyOnPodConditionsPattern {
                type_: type_.into(),
                status: "True".into(),
            }]),
        }
    }

    #[test]
    fn rules_apply_in_order_and_the_first_match_wins() {
        let policy = PodFailurePolicy {
            rules: vec![
                cond("Ignore", "DisruptionTarget"),
                codes("FailJob", Some("main"), "In", &[42]),
                codes("Count", None, "NotIn", &[1, 2]),
                codes("FailJob", None, "In", &[7]),
            ],
        };
        let p = Some(&policy);
        assert_eq!(
            outcome(
                p,
                &failed_pod(&[("main", 42)], &[("DisruptionTarget", "True")])
            ),
            Outcome::Ignore
        );
        assert_eq!(
            outcome(p, &failed_pod(&[("main", 42)], &[("DisruptionTarget", "False")])),
            Outcome::FailJob(
                "Container main for pod ns/p1 failed with exit code 42 matching FailJob rule at index 1"
                    .into()
            )
        );
        // 42 in another container does not match the named rule; NotIn [1,2] counts it.
        assert_eq!(
            outcome(p, &failed_pod(&[("side", 42)], &[])),
            Outcome::Count
        );
        // 7 is NotIn [1,2] too: the Count rule at index 2 comes first.
        assert_eq!(outcome(p, &failed_pod(&[("side", 7)], &[])), Outcome::Count);
        // Nothing matches exit code 1: counted by default.
        assert_eq!(outcome(p, &failed_pod(&[("main", 1)], &[])), Outcome::Count);
        assert_eq!(
            outcome(None, &failed_pod(&[("main", 42)], &[])),
            Outcome::Count
        );
    }

    #[test]
    fn exit_code_zero_never_matches_and_conditions_name_the_pod() {
        let policy = PodFailurePolicy {
            rules: vec![
                codes("FailJob", None, "NotIn", &[1]),
                cond("FailJob", "DisruptionTarget"),
            ],
        };
        let p = failed_pod(&[("a", 0)], &[("DisruptionTarget", "True")]);
        assert_eq!(
            outcome(Some(&policy), &p),
            Outcome::FailJob(
                "Pod ns/p1 has condition DisruptionTarget matching FailJob rule at index 1".into()
            )
        );
    }
}
