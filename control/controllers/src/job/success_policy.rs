//! `spec.successPolicy` of Indexed Jobs (kube's `success_policy.go`): the Job has succeeded
//! once a rule's `succeededIndexes` all succeeded (or `succeededCount` of them), or once
//! `succeededCount` indexes succeeded for a rule without indexes.

use k8s_openapi::api::batch::v1::SuccessPolicy;

use super::indexed::Intervals;

/// kube's matchSuccessPolicy: the SuccessCriteriaMet message ("Matched rules at index N") of
/// the first rule met, if any.
pub fn matched(
    policy: Option<&SuccessPolicy>,
    completions: i32,
    succeeded: &Intervals,
) -> Option<String> {
    let policy = policy?;
    if succeeded.total() == 0 {
        return None;
    }
    for (index, rule) in policy.rules.iter().enumerate() {
        let met = match &rule.succeeded_indexes {
            Some(s) => {
                let required = Intervals::parse(s, completions);
                // A rule whose indexes all lie beyond completions can never be met.
                if required.total() == 0 {
                    continue;
                }
                let covered = overlap(&required, succeeded);
                covered == required.total() || rule.succeeded_count.is_some_and(|c| covered >= c)
            }
            None => rule.succeeded_count.is_some_and(|c| succeeded.total() >= c),
        };
        if met {
            return Some(format!("Matched rules at index {index}"));
        }
    }
    None
}

/// How many indexes of `a` are also in `b`.
fn overlap(a: &Intervals, b: &Intervals) -> i32 {
    let mut n = 0;
    for (af, al) in a.intervals() {
        for (bf, bl) in b.intervals() {
            n += ((*al).min(*bl) - (*af).max(*bf) + 1).max(0);
        }
    }
    n
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::batch::v1::SuccessPolicyRule;

    use super::*;

    fn rule(indexes: Option<&str>, count: Option<i32>) -> SuccessPolicyRule {
        SuccessPolicyRule {
            succeeded_indexes: indexes.map(Into::into),
            succeeded_count: count,
        }
    }

    #[test]
    fn rules_on_indexes_counts_and_both() {
        let policy = SuccessPolicy {
            rules: vec![
                rule(Some("0,5-7"), None),
                rule(Some("1-4"), Some(2)),
                rule(None, Some(6)),
            ],
        };
        let p = Some(&policy);
        let s = |x: &str| Intervals::parse(x, 10);
        assert_eq!(matched(p, 10, &s("")), None);
        assert_eq!(matched(p, 10, &s("0,5,6")), None);
        assert_eq!(
            matched(p, 10, &s("0,5-7")).as_deref(),
            Some("Matched rules at index 0")
        );
        assert_eq!(matched(p, 10, &s("1,8")), None);
        assert_eq!(
            matched(p, 10, &s("1,3")).as_deref(),
            Some("Matched rules at index 1")
        );
        assert_eq!(
            matched(p, 10, &s("0,1,5,6,8,9")).as_deref(),
            Some("Matched rules at index 2")
        );
        assert_eq!(matched(None, 10, &s("0-9")), None);
        // Indexes beyond completions: the rule is skipped.
        let far = SuccessPolicy {
            rules: vec![rule(Some("20-30"), None)],
        };
        assert_eq!(matched(Some(&far), 10, &s("0-9")), None);
    }
}
