//! ResourceQuota arithmetic shared by pea-control's quota admission and the resourcequota
//! controller, as kube shares its evaluators between kube-apiserver and
//! kube-controller-manager: what an object uses ([`usage`]), whether a quota's scopes select
//! it ([`matches`]), the check kube's admission makes ([`check`]) and spec validation.

pub mod quantity;
pub mod usage;

use std::collections::BTreeSet;

use serde_json::Value;

pub use quantity::Qty;
pub use usage::{GroupResource, Usage};

/// The scopes kube knows.
const SCOPES: [&str; 6] = [
    "Terminating",
    "NotTerminating",
    "BestEffort",
    "NotBestEffort",
    "PriorityClass",
    "CrossNamespacePodAffinity",
];

/// One scope selector requirement (`spec.scopes` entries become `Exists`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScopeRequirement {
    pub scope: String,
    pub operator: String,
    pub values: Vec<String>,
}

/// kube's `GetScopeSelectorRequirements`: `spec.scopes` then `spec.scopeSelector`.
pub fn scope_requirements(quota: &Value) -> Vec<ScopeRequirement> {
    let mut out: Vec<ScopeRequirement> = quota
        .pointer("/spec/scopes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(|s| ScopeRequirement {
            scope: s.into(),
            operator: "Exists".into(),
            values: Vec::new(),
        })
        .collect();
    for e in quota
        .pointer("/spec/scopeSelector/matchExpressions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        out.push(ScopeRequirement {
            scope: e["scopeName"].as_str().unwrap_or("").into(),
            operator: e["operator"].as_str().unwrap_or("").into(),
            values: e["values"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .map(String::from)
                .collect(),
        });
    }
    out
}

/// A resource list read from JSON (unparseable quantities are left out).
pub fn resource_list(v: Option<&Value>) -> Usage {
    v.and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), Qty::from_json(v)?)))
                .collect()
        })
        .unwrap_or_default()
}

/// JSON of a resource list, as Go prints quantities.
pub fn resource_list_json(u: &Usage) -> Value {
    Value::Object(
        u.iter()
            .map(|(k, v)| (k.clone(), Value::String(v.to_string())))
            .collect(),
    )
}

/// Whether one scope requirement selects `obj`. Only pods are scoped; any other resource
/// never matches a scoped quota (kube's `MatchesNoScopeFunc`).
fn scope_matches(req: &ScopeRequirement, gr: GroupResource<'_>, obj: &Value) -> bool {
    if (gr.group, gr.plural) != ("", "pods") {
        return false;
    }
    let terminating = obj
        .pointer("/spec/activeDeadlineSeconds")
        .and_then(Value::as_i64)
        .is_some_and(|s| s >= 0);
    match req.scope.as_str() {
        "Terminating" => terminating,
        "NotTerminating" => !terminating,
        "BestEffort" => usage::is_best_effort(obj),
        "NotBestEffort" => !usage::is_best_effort(obj),
        "PriorityClass" => {
            let class = obj
                .pointer("/spec/priorityClassName")
                .and_then(Value::as_str)
                .unwrap_or("");
            // A label selector over {PriorityClass: class}: the key is always present.
            match req.operator.as_str() {
                "Exists" => !class.is_empty(),
                "In" => req.values.iter().any(|v| v == class),
                "NotIn" => !req.values.iter().any(|v| v == class),
                _ => false,
            }
        }
        "CrossNamespacePodAffinity" => cross_namespace_affinity(obj),
        _ => false,
    }
}

/// A pod affinity or anti-affinity term that names namespaces or selects them.
fn cross_namespace_affinity(pod: &Value) -> bool {
    ["podAffinity", "podAntiAffinity"].into_iter().any(|kind| {
        let a = &pod["spec"]["affinity"][kind];
        let required = a["requiredDuringSchedulingIgnoredDuringExecution"]
            .as_array()
            .into_iter()
            .flatten();
        let preferred = a["preferredDuringSchedulingIgnoredDuringExecution"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|w| &w["podAffinityTerm"]);
        required.chain(preferred).any(|t| {
            t["namespaceSelector"].is_object()
                || t["namespaces"].as_array().is_some_and(|n| !n.is_empty())
        })
    })
}

/// kube's `Matches`: the quota limits something the evaluator counts and every scope
/// requirement selects the object. `hard` is the quota's `status.hard`.
pub fn matches(quota: &Value, hard: &Usage, gr: GroupResource<'_>, obj: &Value) -> bool {
    hard.keys().any(|k| usage::covers(gr, k))
        && scope_requirements(quota)
            .iter()
            .all(|r| scope_matches(r, gr, obj))
}

/// Resource names that each container must set when a quota limits them (kube's pod
/// evaluator `Constraints`: a backward-compatibility rule for cpu and memory only).
const MUST_SPECIFY: [&str; 6] = [
    "cpu",
    "memory",
    "requests.cpu",
    "requests.memory",
    "limits.cpu",
    "limits.memory",
];

/// kube's pod `Constraints`: `must specify limits.cpu for: a,b; memory for: a`.
fn pod_constraints(required: &BTreeSet<&str>, pod: &Value) -> Result<(), String> {
    let mut missing: std::collections::BTreeMap<&str, BTreeSet<String>> = Default::default();
    let spec = &pod["spec"];
    for c in ["containers", "initContainers"]
        .into_iter()
        .flat_map(|l| spec[l].as_array().into_iter().flatten())
    {
        let has = |field: &str, r: &str| {
            c.pointer(&format!("/resources/{field}/{r}"))
                .is_some_and(|v| !v.is_null())
        };
        for &name in required.iter().filter(|n| MUST_SPECIFY.contains(n)) {
            let present = match name.split_once('.') {
                Some(("requests", r)) => has("requests", r),
                Some(("limits", r)) => has("limits", r),
                _ => has("requests", name),
            };
            if !present {
                missing
                    .entry(name)
                    .or_default()
                    .insert(c["name"].as_str().unwrap_or("").to_string());
            }
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    let parts: Vec<String> = missing
        .iter()
        .map(|(r, cs)| {
            format!(
                "{r} for: {}",
                cs.iter().cloned().collect::<Vec<_>>().join(",")
            )
        })
        .collect();
    Err(format!("must specify {}", parts.join("; ")))
}

/// `a=1,b=2` (kube's `prettyPrint`, sorted by name).
pub fn pretty(u: &Usage) -> String {
    u.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// What kube's quota admission decides for one matching quota.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// The quota does not count this object.
    NotMatched,
    /// Within the quota: the new `status.used` to write (`None` when it does not change).
    Admit(Option<Usage>),
    /// Refused with kube's message.
    Refuse(String),
}

/// kube's `checkRequest` for one quota and a new object `obj` of `gr` whose cost is `delta`.
pub fn check(quota: &Value, gr: GroupResource<'_>, obj: &Value, delta: &Usage) -> Decision {
    let name = quota
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("");
    let hard = resource_list(quota.pointer("/status/hard"));
    if !matches(quota, &hard, gr, obj) {
        return Decision::NotMatched;
    }
    let restricted: BTreeSet<&str> = hard
        .keys()
        .map(String::as_str)
        .filter(|k| usage::covers(gr, k))
        .collect();
    if (gr.group, gr.plural) == ("", "pods") {
        if let Err(e) = pod_constraints(&restricted, obj) {
            return Decision::Refuse(format!("failed quota: {name}: {e}"));
        }
    }
    let used = resource_list(quota.pointer("/status/used"));
    let unknown: Vec<&str> = restricted
        .iter()
        .copied()
        .filter(|r| !used.contains_key(*r))
        .collect();
    if !unknown.is_empty() {
        return Decision::Refuse(format!(
            "status unknown for quota: {name}, resources: {}",
            unknown.join(",")
        ));
    }
    // Only what the quota limits and the object uses is charged.
    let requested: Usage = delta
        .iter()
        .filter(|(k, _)| restricted.contains(k.as_str()))
        .map(|(k, v)| (k.clone(), *v))
        .collect();
    if requested.is_empty() {
        return Decision::Admit(None);
    }
    let mut new_used = used.clone();
    usage::add_into(&mut new_used, &requested);
    let exceeded: Vec<&String> = requested
        .keys()
        .filter(|k| {
            let limit = hard.get(*k).map_or(0, |q| q.nano);
            new_used.get(*k).map_or(0, |q| q.nano) > limit
        })
        .collect();
    if !exceeded.is_empty() {
        let mask = |u: &Usage| -> Usage {
            exceeded
                .iter()
                .map(|k| ((*k).clone(), u.get(*k).copied().unwrap_or(Qty::ZERO)))
                .collect()
        };
        return Decision::Refuse(format!(
            "exceeded quota: {name}, requested: {}, used: {}, limited: {}",
            pretty(&mask(&requested)),
            pretty(&mask(&used)),
            pretty(&mask(&hard))
        ));
    }
    Decision::Admit(Some(new_used))
}

/// kube's `ValidateResourceQuota` for a spec: quantities, scopes, operators, and scopes only
/// on the resources they can restrict. Causes are (field, message).
pub fn validate(quota: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let hard = quota.pointer("/spec/hard").and_then(Value::as_object);
    for (k, v) in hard.into_iter().flatten() {
        match Qty::from_json(v) {
            None => out.push((
                format!("spec.hard[{k}]"),
                format!("Invalid value: {v}: quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"),
            )),
            Some(q) if q.nano < 0 => out.push((
                format!("spec.hard[{k}]"),
                format!("Invalid value: \"{q}\": must be greater than or equal to 0"),
            )),
            Some(_) => {}
        }
    }
    let reqs = scope_requirements(quota);
    for (i, r) in reqs.iter().enumerate() {
        if !SCOPES.contains(&r.scope.as_str()) {
            out.push((
                "spec.scopeSelector.matchExpressions".into(),
                format!(
                    "Unsupported value: \"{}\": supported values: \"{}\"",
                    r.scope,
                    SCOPES.join("\", \"")
                ),
            ));
            continue;
        }
        let ok = match r.scope.as_str() {
            "PriorityClass" => match r.operator.as_str() {
                "In" | "NotIn" => !r.values.is_empty(),
                "Exists" | "DoesNotExist" => r.values.is_empty(),
                _ => false,
            },
            _ => matches!(r.operator.as_str(), "Exists" | "DoesNotExist") && r.values.is_empty(),
        };
        if !ok {
            out.push((
                format!("spec.scopeSelector.matchExpressions[{i}]"),
                format!(
                    "Invalid value: \"{}\": operator {:?} with values {:?} is not valid for scope {}",
                    r.operator, r.operator, r.values, r.scope
                ),
            ));
        }
        let pod_resources = ["pods", "count/pods"];
        for k in hard.into_iter().flatten().map(|(k, _)| k.as_str()) {
            let pods = GroupResource {
                group: "",
                plural: "pods",
            };
            let valid = match r.scope.as_str() {
                "BestEffort" => pod_resources.contains(&k),
                _ => pod_resources.contains(&k) || (usage::covers(pods, k) && !k.contains('/')),
            };
            if !valid {
                out.push((
                    "spec.hard".into(),
                    format!("Invalid value: {k:?}: unsupported scope applied to resource"),
                ));
            }
        }
    }
    let has = |s: &str| reqs.iter().any(|r| r.scope == s);
    if (has("Terminating") && has("NotTerminating")) || (has("BestEffort") && has("NotBestEffort"))
    {
        out.push((
            "spec.scopes".into(),
            "Invalid value: conflicting scopes".into(),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const PODS: GroupResource = GroupResource {
        group: "",
        plural: "pods",
    };

    fn quota(hard: Value, used: Value, spec: Value) -> Value {
        json!({"metadata": {"name": "q"}, "spec": spec, "status": {"hard": hard, "used": used}})
    }

    fn pod(resources: Value) -> Value {
        json!({"spec": {"containers": [{"name": "c", "resources": resources}]}})
    }

    fn decide(q: &Value, p: &Value) -> Decision {
        check(
            q,
            PODS,
            p,
            &usage::usage(PODS, p, std::time::SystemTime::now()),
        )
    }

    #[test]
    fn refuses_past_the_limit_with_kubes_message() {
        let q = quota(json!({"pods": "2"}), json!({"pods": "2"}), json!({}));
        assert_eq!(
            decide(&q, &pod(json!({}))),
            Decision::Refuse(
                "exceeded quota: q, requested: pods=1, used: pods=2, limited: pods=2".into()
            )
        );
        let q = quota(json!({"pods": "2"}), json!({"pods": "1"}), json!({}));
        let Decision::Admit(Some(used)) = decide(&q, &pod(json!({}))) else {
            panic!("not admitted")
        };
        assert_eq!(pretty(&used), "pods=2");
    }

    #[test]
    fn cpu_and_memory_must_be_specified_when_limited() {
        let q = quota(
            json!({"limits.cpu": "2", "requests.memory": "1Gi"}),
            json!({"limits.cpu": "0", "requests.memory": "0"}),
            json!({}),
        );
        assert_eq!(
            decide(&q, &pod(json!({}))),
            Decision::Refuse(
                "failed quota: q: must specify limits.cpu for: c; requests.memory for: c".into()
            )
        );
        let ok = pod(json!({"requests": {"memory": "512Mi"}, "limits": {"cpu": "1500m"}}));
        let Decision::Admit(Some(used)) = decide(&q, &ok) else {
            panic!("not admitted")
        };
        assert_eq!(pretty(&used), "limits.cpu=1500m,requests.memory=512Mi");
        let big = pod(json!({"requests": {"memory": "2Gi"}, "limits": {"cpu": "1"}}));
        assert_eq!(
            decide(&q, &big),
            Decision::Refuse(
                "exceeded quota: q, requested: requests.memory=2Gi, used: requests.memory=0, limited: requests.memory=1Gi".into()
            )
        );
    }

    #[test]
    fn unsynced_status_refuses_and_scopes_select() {
        let q = json!({"metadata": {"name": "q"}, "status": {"hard": {"pods": "1"}}});
        assert_eq!(
            decide(&q, &pod(json!({}))),
            Decision::Refuse("status unknown for quota: q, resources: pods".into())
        );
        let best = quota(
            json!({"pods": "1"}),
            json!({"pods": "0"}),
            json!({"scopes": ["BestEffort"]}),
        );
        assert!(matches!(decide(&best, &pod(json!({}))), Decision::Admit(_)));
        assert_eq!(
            decide(&best, &pod(json!({"requests": {"cpu": "1"}}))),
            Decision::NotMatched
        );
        let prio = quota(
            json!({"pods": "1"}),
            json!({"pods": "0"}),
            json!({"scopeSelector": {"matchExpressions": [
                {"scopeName": "PriorityClass", "operator": "In", "values": ["high"]}]}}),
        );
        let mut high = pod(json!({}));
        high["spec"]["priorityClassName"] = json!("high");
        assert!(matches!(decide(&prio, &high), Decision::Admit(_)));
        assert_eq!(decide(&prio, &pod(json!({}))), Decision::NotMatched);
        let svc = GroupResource {
            group: "",
            plural: "services",
        };
        // Scoped quotas never match other resources; unscoped ones only what they limit.
        assert!(!matches(
            &prio,
            &resource_list(Some(&json!({"services": "1"}))),
            svc,
            &json!({})
        ));
    }

    #[test]
    fn validation_names_bad_quantities_and_scopes() {
        let bad = json!({"spec": {"hard": {"pods": "x", "cpu": "-1"}, "scopes": ["BestEffort", "Bogus"]}});
        let causes = validate(&bad);
        assert!(
            causes.iter().any(|(f, _)| f == "spec.hard[pods]"),
            "{causes:?}"
        );
        assert!(causes
            .iter()
            .any(|(f, m)| f == "spec.hard[cpu]" && m.contains("greater than or equal to 0")));
        assert!(causes.iter().any(|(_, m)| m.contains("\"Bogus\"")));
        assert!(causes
            .iter()
            .any(|(_, m)| m.contains("unsupported scope applied to resource")));
        assert!(
            validate(&json!({"spec": {"hard": {"pods": "2", "requests.cpu": "1"}}})).is_empty()
        );
    }
}
