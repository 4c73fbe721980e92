//! kube's validateJobSpec for what the Job controller reads beyond counts: completionMode,
//! podFailurePolicy and successPolicy (pkg/apis/batch/validation), with kube's field paths and
//! wording, backoffLimitPerIndex / maxFailedIndexes and managedBy included.

use serde_json::Value;

use crate::semantic::Cause;

const MAX_INDEXED_COMPLETIONS: i64 = 100_000;
const MAX_RULES: usize = 20;
const MAX_EXIT_CODES: usize = 255;
const MAX_FAILED_INDEXES: i64 = 100_000;
const MAX_MANAGED_BY: usize = 63;

/// backoffLimitPerIndex and maxFailedIndexes: Indexed Jobs only, maxFailedIndexes needs the
/// per-index limit and stays within completions. (kube's tighter limits for more than 10^5
/// completions cannot apply: such Indexed Jobs are refused above.)
fn per_index(spec: &Value, indexed: bool, at: &str, out: &mut Vec<Cause>) {
    let int = |f: &str| spec.get(f).and_then(Value::as_i64);
    let per_index = int("backoffLimitPerIndex");
    let max_failed = int("maxFailedIndexes");
    for (f, v) in [
        ("backoffLimitPerIndex", per_index),
        ("maxFailedIndexes", max_failed),
    ] {
        if let Some(v) = v.filter(|v| *v < 0) {
            out.push((
                format!("{at}.{f}"),
                format!("Invalid value: {v}: must be greater than or equal to 0"),
            ));
        }
    }
    if max_failed.is_some() && per_index.is_none() {
        out.push((
            format!("{at}.backoffLimitPerIndex"),
            "Required value: when maxFailedIndexes is specified".into(),
        ));
    }
    if indexed {
        if let (Some(m), Some(c)) = (max_failed, int("completions")) {
            if m > c {
                out.push((
                    format!("{at}.maxFailedIndexes"),
                    format!("Invalid value: {m}: must be less than or equal to completions"),
                ));
            }
        }
        if let Some(m) = max_failed.filter(|m| *m > MAX_FAILED_INDEXES) {
            out.push((
                format!("{at}.maxFailedIndexes"),
                format!("Invalid value: {m}: must be less than or equal to {MAX_FAILED_INDEXES}"),
            ));
        }
    } else {
        for (f, v) in [
            ("backoffLimitPerIndex", per_index),
            ("maxFailedIndexes", max_failed),
        ] {
            if let Some(v) = v {
                out.push((
                    format!("{at}.{f}"),
                    format!("Invalid value: {v}: requires indexed completion mode"),
                ));
            }
        }
    }
}

/// kube's IsDomainPrefixedPath plus the 63-character limit of spec.managedBy.
fn managed_by(m: &str, path: &str, out: &mut Vec<Cause>) {
    match m.split_once('/') {
        _ if m.is_empty() => out.push((path.into(), "Required value".into())),
        Some((host, rest)) if !host.is_empty() && !rest.is_empty() => {
            for e in crate::cel::format::dns1123_subdomain(host) {
                out.push((path.into(), format!("Invalid value: {host:?}: {e}")));
            }
            let ok = rest
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "/-._~%!$&'()*+,;=:".contains(c));
            if !ok {
                out.push((
                    path.into(),
                    format!("Invalid value: {rest:?}: Invalid path (regex used for validation is '[A-Za-z0-9/\\-._~%!$&'()*+,;=:]+')"),
                ));
            }
        }
        _ => out.push((
            path.into(),
            format!(
                "Invalid value: {m:?}: must be a domain-prefixed path (such as \"acme.io/foo\")"
            ),
        )),
    }
    if m.len() > MAX_MANAGED_BY {
        out.push((
            path.into(),
            format!("Too long: may not be more than {MAX_MANAGED_BY} bytes"),
        ));
    }
}

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
    per_index(spec, indexed, at, out);
    if let Some(m) = spec.get("managedBy").and_then(Value::as_str) {
        managed_by(m, &format!("{at}.managedBy"), out);
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
            "FailIndex" if spec.get("backoffLimitPerIndex").is_some_and(|v| !v.is_null()) => {}
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
    fn indexed_needs_completions_and_per_index_backoff_needs_indexed() {
        let c = causes(json!({"completionMode": "Indexed", "template": template("Never")}));
        assert_eq!(c[0].0, "spec.completions");
        let c = causes(json!({"completionMode": "Odd", "template": template("Never")}));
        assert!(c[0].1.starts_with("Unsupported value: \"Odd\""));
        let ok = json!({"completionMode": "Indexed", "completions": 4, "backoffLimitPerIndex": 1,
            "maxFailedIndexes": 4, "template": template("Never"), "podFailurePolicy": {"rules": [
                {"action": "FailIndex", "onExitCodes": {"operator": "In", "values": [42]}}]}});
        assert!(causes(ok).is_empty());
        let c = causes(json!({"completions": 2, "backoffLimitPerIndex": 1,
            "maxFailedIndexes": 1, "template": template("Never")}));
        assert_eq!(
            c,
            [
                (
                    "spec.backoffLimitPerIndex".to_string(),
                    "Invalid value: 1: requires indexed completion mode".to_string()
                ),
                (
                    "spec.maxFailedIndexes".to_string(),
                    "Invalid value: 1: requires indexed completion mode".to_string()
                ),
            ]
        );
        let c = causes(json!({"completionMode": "Indexed", "completions": 2,
            "maxFailedIndexes": 3, "template": template("Never")}));
        let fields: Vec<&str> = c.iter().map(|c| c.0.as_str()).collect();
        assert_eq!(
            fields,
            ["spec.backoffLimitPerIndex", "spec.maxFailedIndexes"]
        );
        assert_eq!(
            c[1].1,
            "Invalid value: 3: must be less than or equal to completions"
        );
        let c = causes(json!({"completionMode": "Indexed", "completions": 2,
            "backoffLimitPerIndex": -1, "template": template("Never")}));
        assert_eq!(
            c[0].1,
            "Invalid value: -1: must be greater than or equal to 0"
        );
    }

    #[test]
    fn managed_by_is_a_short_domain_prefixed_path() {
        let with = |m: &str| causes(json!({"managedBy": m, "template": template("Never")}));
        assert!(with("kubernetes.io/job-controller").is_empty());
        assert!(with("example.com/multi-kueue").is_empty());
        for bad in [
            "job-controller",
            "/x",
            "example.com/",
            "Example_Com/x",
            "a.io/x y",
        ] {
            let c = with(bad);
            assert_eq!(c.len(), 1, "{bad}: {c:?}");
            assert_eq!(c[0].0, "spec.managedBy");
        }
        assert!(with("x")[0].1.contains("must be a domain-prefixed path"));
        let long = format!("example.com/{}", "a".repeat(60));
        assert_eq!(with(&long)[0].1, "Too long: may not be more than 63 bytes");
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
