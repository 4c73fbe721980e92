//! kube's validateJobSpec for what the Job controller reads beyond counts: completionMode,
//! podFailurePolicy and successPolicy (pkg/apis/batch/validation), with kube's field paths and
//! wording. backoffLimitPerIndex and maxFailedIndexes are refused: pea's Job controller does
//! not implement per-index backoff.

use serde_json::Value;

use crate::semantic::Cause;

const MAX_INDEXED_COMPLETIONS: i64 = 100_000;
const MAX_RULES: usize = 20;
const MAX_EXIT_CODES: usize = 255;

pub fn check(spec: Option<&Value>, at: &str, out: &mut Vec<Cause>) {
    let Some(spec) = spec else { return };
    let int = |f: &str| spec.get(f).and_then(Value::as_i64);
    let mode = spec.get("completionMode").and_then(Value::as_str);
    let indexed = mode == Some("Indexed");
    if let Some(m) = mode.filter(|m| !matches!(*m, "NonIndexed" | "Indexed")) {
        out.push((
            format!("{at}.completionMode"),
            format!("Unsupported value: {m:?}: supported values: \"NonIndexed\", \"Indexed\""),
        ));
    }
    if indexed {
        match int("completions") {
            None => out.push((
                format!("{at}.completions"),
                "Required value: when completion mode is Indexed".into(),
            )),
            Some(c) if c > MAX_INDEXED_COMPLETIONS => out.push((
                format!("{at}.completions"),
                format!("Invalid value: {c}: must be less than or equal to {MAX_INDEXED_COMPLETIONS} when completion mode is Indexed"),
            )),
            _ => {}
        }
        if let Some(p) = int("parallelism").filter(|p| *p > MAX_INDEXED_COMPLETIONS) {
            out.push((
                format!("{at}.parallelism"),
                format!("Invalid value: {p}: must be less than or equal to {MAX_INDEXED_COMPLETIONS} when completion mode is Indexed"),
            ));
        }
    }
    for f in ["backoffLimitPerIndex", "maxFailedIndexes"] {
        if spec.get(f).is_some_and(|v| !v.is_null()) {
            out.push((
                format!("{at}.{f}"),
                "Forbidden: not implemented: pea's Job controller has no per-index backoff".into(),
            ));
        }
    }
    if let Some(policy) = spec.get("podFailurePolicy").filter(|v| !v.is_null()) {
        pod_failure_policy(spec, policy, at, out);
    }
    if let Some(policy) = spec.get("successPolicy").filter(|v| !v.is_null()) {
        success_policy(policy, indexed, int("completions"), at, out);
    }
}

fn pod_failure_policy(spec: &Value, policy: &Value, at: &str, out: &mut Vec<Cause>) {
    let restart = spec
        .pointer("/template/spec/restartPolicy")
        .and_then(Value::as_str)
        .unwrap_or("");
    if restart != "Never" {
        out.push((
            format!("{at}.template.spec.restartPolicy"),
            format!("Invalid value: {restart:?}: only \"Never\" is supported when podFailurePolicy is specified"),
        ));
    }
    let names: Vec<&str> = ["containers", "initContainers"]
        .iter()
        .filter_map(|k| spec.pointer(&format!("/template/spec/{k}")))
        .filter_map(Value::as_array)
        .flatten()
        .filter_map(|c| c.get("name").and_then(Value::as_str))
        .collect();
    let rules = policy.get("rules").and_then(Value::as_array);
    let rules = rules.map(Vec::as_slice).unwrap_or_default();
    if rules.len() > MAX_RULES {
        out.push((
            format!("{at}.podFailurePolicy.rules"),
            format!(
                "Too many: {}: must have at most {MAX_RULES} items",
                rules.len()
            ),
        ));
    }
    for (i, rule) in rules.iter().enumerate() {
        let path = format!("{at}.podFailurePolicy.rules[{i}]");
        let action = rule.get("action").and_then(Value::as_str).unwrap_or("");
        match action {
            "FailJob" | "Ignore" | "Count" => {}
            // Needs backoffLimitPerIndex, which is refused above.
            "FailIndex" => out.push((
                format!("{path}.action"),
                "Invalid value: \"FailIndex\": requires the backoffLimitPerIndex to be set".into(),
            )),
            a => out.push((
                format!("{path}.action"),
                format!("Unsupported value: {a:?}: supported values: \"Count\", \"FailIndex\", \"FailJob\", \"Ignore\""),
            )),
        }
        let codes = rule.get("onExitCodes").filter(|v| !v.is_null());
        let conditions = rule.get("onPodConditions").filter(|v| !v.is_null());
        match (codes, conditions) {
            (Some(_), Some(_)) => out.push((
                path.clone(),
                "Invalid value: specifying both OnExitCodes and OnPodConditions is not supported"
                    .into(),
            )),
            (None, None) => out.push((
                path.clone(),
                "Invalid value: specifying one of OnExitCodes and OnPodConditions is required"
                    .into(),
            )),
            _ => {}
        }
        if let Some(c) = codes {
            exit_codes(c, &names, &format!("{path}.onExitCodes"), out);
        }
        for (j, p) in conditions
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            let pp = format!("{path}.onPodConditions[{j}]");
            if p.get("type")
                .and_then(Value::as_str)
                .unwrap_or("")
                .is_empty()
            {
                out.push((format!("{pp}.type"), "Required value".into()));
            }
            let status = p.get("status").and_then(Value::as_str).unwrap_or("True");
            if !matches!(status, "True" | "False" | "Unknown") {
                out.push((
                    format!("{pp}.status"),
                    format!("Unsupported value: {status:?}: supported values: \"False\", \"True\", \"Unknown\""),
                ));
            }
        }
    }
}

fn exit_codes(req: &Value, containers: &[&str], path: &str, out: &mut Vec<Cause>) {
    if let Some(name) = req.get("containerName").and_then(Value::as_str) {
        if !containers.contains(&name) {
            out.push((
                format!("{path}.containerName"),
                format!("Invalid value: {name:?}: must be one of the container or initContainer names in the pod template"),
            ));
        }
    }
    let op = req.get("operator").and_then(Value::as_str).unwrap_or("");
    if !matches!(op, "In" | "NotIn") {
        out.push((
            format!("{path}.operator"),
            format!("Unsupported value: {op:?}: supported values: \"In\", \"NotIn\""),
        ));
    }
    let values: Vec<i64> = req
        .get("values")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_i64)
        .collect();
    if values.is_empty() {
        out.push((format!("{path}.values"), "Required value".into()));
    } else if values.len() > MAX_EXIT_CODES {
        out.push((
            format!("{path}.values"),
            format!(
                "Too many: {}: must have at most {MAX_EXIT_CODES} items",
                values.len()
            ),
        ));
    }
    for (i, v) in values.iter().enumerate() {
        let at = format!("{path}.values[{i}]");
        if op == "In" && *v == 0 {
            out.push((
                at.clone(),
                "Invalid value: 0: must not be 0 for the In operator".into(),
            ));
        }
        if i > 0 && values[i - 1] == *v {
            out.push((at, format!("Duplicate value: {v}")));
        } else if i > 0 && values[i - 1] > *v {
            out.push((at, format!("Invalid value: {v}: must be ordered")));
        }
    }
}

fn success_policy(
    policy: &Value,
    indexed: bool,
    completions: Option<i64>,
    at: &str,
    out: &mut Vec<Cause>,
) {
    let path = format!("{at}.successPolicy");
    if !indexed {
        out.push((
            path.clone(),
            "Invalid value: requires indexed completion mode".into(),
        ));
        return;
    }
    let rules = policy.get("rules").and_then(Value::as_array);
    let rules = rules.map(Vec::as_slice).unwrap_or_default();
    if rules.is_empty() {
        out.push((
            format!("{path}.rules"),
            "Required value: at least one rules must be specified when the successPolicy is specified".into(),
        ));
    } else if rules.len() > MAX_RULES {
        out.push((
            format!("{path}.rules"),
            format!(
                "Too many: {}: must have at most {MAX_RULES} items",
                rules.len()
            ),
        ));
    }
    let completions = completions.unwrap_or(0);
    for (i, rule) in rules.iter().enumerate() {
        let rp = format!("{path}.rules[{i}]");
        let indexes = rule.get("succeededIndexes").and_then(Value::as_str);
        let count = rule.get("succeededCount").and_then(Value::as_i64);
        if indexes.is_none() && count.is_none() {
            out.push((
                rp.clone(),
                "Required value: at least one of succeededCount or succeededIndexes must be specified".into(),
            ));
        }
        let mut total = completions;
        if let Some(s) = indexes {
            match parse_indexes(s, completions) {
                Ok(n) => total = n,
                Err(e) => out.push((
                    format!("{rp}.succeededIndexes"),
                    format!("Invalid value: {s:?}: error parsing succeededIndexes: {e}"),
                )),
            }
        }
        match count {
            Some(c) if c < 0 => out.push((
                format!("{rp}.succeededCount"),
                format!("Invalid value: {c}: must be greater than or equal to 0"),
            )),
            Some(c) if c > completions => out.push((
                format!("{rp}.succeededCount"),
                format!("Invalid value: {c}: must be less than or equal to {completions} (the number of specified completions)"),
            )),
            Some(c) if indexes.is_some() && c > total => out.push((
                format!("{rp}.succeededCount"),
                format!("Invalid value: {c}: must be less than or equal to {total} (the number of indexes in the specified succeededIndexes field)"),
            )),
            _ => {}
        }
    }
}

/// kube's parseIndexesFromString for validation: ordered, non-overlapping "a-b,c" intervals
/// below `completions`; returns how many indexes it names.
fn parse_indexes(s: &str, completions: i64) -> Result<i64, String> {
    let mut total = 0;
    let mut last: Option<i64> = None;
    for part in s.split(',') {
        let (a, b) = match part.split_once('-') {
            Some((a, b)) => (a, b),
            None => (part, part),
        };
        let num = |x: &str| {
            x.parse::<i64>()
                .map_err(|_| format!("cannot convert string to integer for index: {x:?}"))
        };
        let (first, end) = (num(a)?, num(b)?);
        if first < 0 {
            return Err(format!(
                "the first index: {first} must be greater than or equal to 0"
            ));
        }
        if end >= completions {
            return Err(format!("too large index: {end}"));
        }
        if first > end {
            return Err(format!(
                "non-increasing order, previous: {first}, current: {end}"
            ));
        }
        if let Some(l) = last.filter(|l| *l >= first) {
            return Err(format!(
                "overlapping indexes interval, previous: {l}, current: {first}"
            ));
        }
        total += end - first + 1;
        last = Some(end);
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn causes(spec: Value) -> Vec<Cause> {
        let mut out = Vec::new();
        check(Some(&spec), "spec", &mut out);
        out
    }

    fn template(policy: &str) -> Value {
        json!({"spec": {"restartPolicy": policy, "containers": [{"name": "main"}]}})
    }

    #[test]
    fn indexed_needs_completions_and_per_index_backoff_is_refused() {
        let c = causes(json!({"completionMode": "Indexed", "template": template("Never")}));
        assert_eq!(c[0].0, "spec.completions");
        let c = causes(json!({"completionMode": "Odd", "template": template("Never")}));
        assert!(c[0].1.starts_with("Unsupported value: \"Odd\""));
        let c = causes(json!({"completionMode": "Indexed", "completions": 2,
            "backoffLimitPerIndex": 1, "template": template("Never")}));
        assert_eq!(c[0].0, "spec.backoffLimitPerIndex");
        assert!(c[0].1.contains("not implemented"));
    }

    #[test]
    fn pod_failure_policy_as_kube_validates_it() {
        let ok = json!({"template": template("Never"), "podFailurePolicy": {"rules": [
            {"action": "FailJob", "onExitCodes": {"containerName": "main", "operator": "In", "values": [1, 42]}},
            {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
        ]}});
        assert!(causes(ok).is_empty());
        let bad = json!({"template": template("OnFailure"), "podFailurePolicy": {"rules": [
            {"action": "Retry", "onExitCodes": {"containerName": "other", "operator": "In", "values": [0, 3, 3, 2]}},
            {"action": "FailIndex"},
        ]}});
        let fields: Vec<String> = causes(bad).into_iter().map(|c| c.0).collect();
        assert_eq!(
            fields,
            [
                "spec.template.spec.restartPolicy",
                "spec.podFailurePolicy.rules[0].action",
                "spec.podFailurePolicy.rules[0].onExitCodes.containerName",
                "spec.podFailurePolicy.rules[0].onExitCodes.values[0]",
                "spec.podFailurePolicy.rules[0].onExitCodes.values[2]",
                "spec.podFailurePolicy.rules[0].onExitCodes.values[3]",
                "spec.podFailurePolicy.rules[1].action",
                "spec.podFailurePolicy.rules[1]",
            ]
        );
    }

    #[test]
    fn success_policy_needs_indexed_mode_and_sane_rules() {
        let c = causes(json!({"completions": 3, "template": template("Never"),
            "successPolicy": {"rules": [{"succeededCount": 1}]}}));
        assert_eq!(c[0].0, "spec.successPolicy");
        let c = causes(
            json!({"completionMode": "Indexed", "completions": 3, "template": template("Never"),
            "successPolicy": {"rules": [{"succeededIndexes": "0-1", "succeededCount": 3}, {}, {"succeededIndexes": "2-5"}]}}),
        );
        let fields: Vec<&str> = c.iter().map(|c| c.0.as_str()).collect();
        assert_eq!(
            fields,
            [
                "spec.successPolicy.rules[0].succeededCount",
                "spec.successPolicy.rules[1]",
                "spec.successPolicy.rules[2].succeededIndexes",
            ]
        );
        assert_eq!(parse_indexes("0,2-4,7", 10), Ok(5));
        assert!(parse_indexes("3,1", 10).is_err());
    }
}
