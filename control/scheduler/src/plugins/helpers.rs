//! Matching rules shared by plugins: tolerations against taints, node selector terms and
//! label selectors, with kube's semantics (an empty term matches nothing; an empty label
//! selector matches everything).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{NodeSelectorRequirement, NodeSelectorTerm, Taint, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};

/// `Toleration.ToleratesTaint`.
pub fn tolerates(t: &Toleration, taint: &Taint) -> bool {
    if let Some(effect) = t.effect.as_deref().filter(|e| !e.is_empty()) {
        if effect != taint.effect {
            return false;
        }
    }
    let key = t.key.as_deref().unwrap_or("");
    if !key.is_empty() && key != taint.key {
        return false;
    }
    match t.operator.as_deref().unwrap_or("Equal") {
        "Exists" => true,
        "Equal" | "" => {
            // An empty key is only valid with Exists.
            !key.is_empty()
                && t.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or("")
        }
        _ => false,
    }
}

pub fn tolerated_by_any(tolerations: &[Toleration], taint: &Taint) -> bool {
    tolerations.iter().any(|t| tolerates(t, taint))
}

fn requirement_matches(r: &NodeSelectorRequirement, value: Option<&str>) -> bool {
    let values = r.values.as_deref().unwrap_or(&[]);
    match r.operator.as_str() {
        "In" => value.is_some_and(|v| values.iter().any(|x| x == v)),
        "NotIn" => !value.is_some_and(|v| values.iter().any(|x| x == v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        op @ ("Gt" | "Lt") => {
            let (Some(v), [bound]) = (value, values) else {
                return false;
            };
            match (v.parse::<i64>(), bound.parse::<i64>()) {
                (Ok(v), Ok(b)) => (op == "Gt" && v > b) || (op == "Lt" && v < b),
                _ => false,
            }
        }
        _ => false,
    }
}

/// One node selector term: all its label expressions and field expressions must hold; a
/// term with neither matches nothing.
pub fn term_matches(
    term: &NodeSelectorTerm,
    node_name: &str,
    labels: Option<&BTreeMap<String, String>>,
) -> bool {
    let exprs = term.match_expressions.as_deref().unwrap_or(&[]);
    let fields = term.match_fields.as_deref().unwrap_or(&[]);
    if exprs.is_empty() && fields.is_empty() {
        return false;
    }
    exprs
        .iter()
        .all(|r| requirement_matches(r, labels.and_then(|l| l.get(&r.key)).map(String::as_str)))
        && fields.iter().all(|r| {
            // metadata.name is the only field selector nodes support.
            r.key == "metadata.name" && requirement_matches(r, Some(node_name))
        })
}

/// `metav1.LabelSelectorAsSelector(...).Matches(labels)`; a missing selector matches nothing,
/// an empty one everything.
pub fn selector_matches(
    sel: Option<&LabelSelector>,
    labels: Option<&BTreeMap<String, String>>,
) -> bool {
    let Some(sel) = sel else {
        return false;
    };
    let get = |k: &str| labels.and_then(|l| l.get(k)).map(String::as_str);
    for (k, v) in sel.match_labels.iter().flatten() {
        if get(k) != Some(v.as_str()) {
            return false;
        }
    }
    sel.match_expressions
        .iter()
        .flatten()
        .all(|r: &LabelSelectorRequirement| {
            let values = r.values.as_deref().unwrap_or(&[]);
            let v = get(&r.key);
            match r.operator.as_str() {
                "In" => v.is_some_and(|v| values.iter().any(|x| x == v)),
                "NotIn" => !v.is_some_and(|v| values.iter().any(|x| x == v)),
                "Exists" => v.is_some(),
                "DoesNotExist" => v.is_none(),
                _ => false,
            }
        })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn tol(v: serde_json::Value) -> Toleration {
        serde_json::from_value(v).unwrap()
    }

    fn taint(k: &str, v: &str, e: &str) -> Taint {
        serde_json::from_value(json!({"key": k, "value": v, "effect": e})).unwrap()
    }

    #[test]
    fn toleration_rules() {
        let t = taint("k", "v", "NoSchedule");
        assert!(tolerates(&tol(json!({"key": "k", "value": "v"})), &t));
        assert!(tolerates(
            &tol(json!({"key": "k", "operator": "Exists", "effect": "NoSchedule"})),
            &t
        ));
        assert!(
            tolerates(&tol(json!({"operator": "Exists"})), &t),
            "empty key + Exists = all"
        );
        assert!(!tolerates(&tol(json!({"key": "k", "value": "w"})), &t));
        assert!(!tolerates(
            &tol(json!({"key": "k", "value": "v", "effect": "NoExecute"})),
            &t
        ));
        assert!(
            !tolerates(&tol(json!({"value": "v"})), &t),
            "empty key needs Exists"
        );
    }

    #[test]
    fn node_selector_terms() {
        let labels: BTreeMap<String, String> = [
            ("zone".to_string(), "a".to_string()),
            ("cores".to_string(), "8".to_string()),
        ]
        .into();
        let term = |v| serde_json::from_value::<NodeSelectorTerm>(v).unwrap();
        let l = Some(&labels);
        assert!(term_matches(
            &term(
                json!({"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a", "b"]}]})
            ),
            "n",
            l
        ));
        assert!(!term_matches(
            &term(
                json!({"matchExpressions": [{"key": "zone", "operator": "NotIn", "values": ["a"]}]})
            ),
            "n",
            l
        ));
        assert!(term_matches(
            &term(
                json!({"matchExpressions": [{"key": "gpu", "operator": "NotIn", "values": ["x"]}]})
            ),
            "n",
            l
        ));
        assert!(term_matches(
            &term(
                json!({"matchExpressions": [{"key": "cores", "operator": "Gt", "values": ["4"]}]})
            ),
            "n",
            l
        ));
        assert!(!term_matches(
            &term(
                json!({"matchExpressions": [{"key": "cores", "operator": "Lt", "values": ["4"]}]})
            ),
            "n",
            l
        ));
        assert!(!term_matches(
            &term(
                json!({"matchExpressions": [{"key": "zone", "operator": "Gt", "values": ["4"]}]})
            ),
            "n",
            l
        ));
        assert!(term_matches(
            &term(
                json!({"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n"]}]})
            ),
            "n",
            l
        ));
        assert!(
            !term_matches(&term(json!({})), "n", l),
            "an empty term matches nothing"
        );
    }

    #[test]
    fn label_selectors() {
        let labels: BTreeMap<String, String> = [("app".to_string(), "web".to_string())].into();
        let sel = |v| serde_json::from_value::<LabelSelector>(v).unwrap();
        assert!(selector_matches(Some(&sel(json!({}))), Some(&labels)));
        assert!(!selector_matches(None, Some(&labels)));
        assert!(selector_matches(
            Some(&sel(json!({"matchLabels": {"app": "web"}}))),
            Some(&labels)
        ));
        assert!(!selector_matches(
            Some(&sel(
                json!({"matchExpressions": [{"key": "app", "operator": "NotIn", "values": ["web"]}]})
            )),
            Some(&labels)
        ));
        assert!(selector_matches(
            Some(&sel(
                json!({"matchExpressions": [{"key": "tier", "operator": "DoesNotExist"}]})
            )),
            Some(&labels)
        ));
    }
}
