//! Which requests a webhook's `rules` select (kube's `rules.Matcher`): operations, apiGroups,
//! apiVersions, resources (`*`, `*/*`, `pods/status`, `*/scale`, `pods/*`) and scope.

use serde_json::Value;

use super::Attributes;

/// The request's group, version and resource as one rule is checked against (the request's own,
/// or an equivalent one under matchPolicy Equivalent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target<'a> {
    pub group: &'a str,
    pub version: &'a str,
    pub resource: &'a str,
}

fn strings(rule: &Value, field: &str) -> Vec<String> {
    rule.get(field)
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

fn listed(list: &[String], want: &str) -> bool {
    list.iter().any(|x| x == "*" || x == want)
}

/// Whether one RuleWithOperations selects the request at `target`.
pub fn rule_matches(rule: &Value, attrs: &Attributes<'_>, target: &Target<'_>) -> bool {
    let scope_ok = match rule.get("scope").and_then(Value::as_str).unwrap_or("*") {
        "Cluster" => attrs.namespace.is_empty(),
        "Namespaced" => !attrs.namespace.is_empty(),
        _ => true,
    };
    scope_ok
        && listed(&strings(rule, "operations"), attrs.operation.as_str())
        && listed(&strings(rule, "apiGroups"), target.group)
        && listed(&strings(rule, "apiVersions"), target.version)
        && strings(rule, "resources").iter().any(|r| {
            let (res, sub) = r.split_once('/').unwrap_or((r.as_str(), ""));
            (res == "*" || res == target.resource) && (sub == "*" || sub == attrs.subresource)
        })
}

/// Whether any of `rules` selects the request at `target`.
pub fn any_rule_matches(rules: &Value, attrs: &Attributes<'_>, target: &Target<'_>) -> bool {
    rules
        .as_array()
        .is_some_and(|rs| rs.iter().any(|r| rule_matches(r, attrs, target)))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::admission::Operation;
    use crate::auth::User;

    fn attrs<'a>(user: &'a User, op: Operation, ns: &str, sub: &str) -> Attributes<'a> {
        Attributes {
            operation: op,
            group: String::new(),
            version: "v1".into(),
            resource: "pods".into(),
            subresource: sub.into(),
            kind: (String::new(), "v1".into(), "Pod".into()),
            namespace: ns.into(),
            name: "p".into(),
            user,
            dry_run: false,
            options: json!({}),
            namespaced: true,
        }
    }

    const PODS: Target<'static> = Target {
        group: "",
        version: "v1",
        resource: "pods",
    };

    #[test]
    fn resources_wildcards_and_subresources() {
        let u = User::default();
        let main = attrs(&u, Operation::Create, "default", "");
        let status = attrs(&u, Operation::Update, "default", "status");
        let rule = |res: &str| {
            json!({"operations": ["*"], "apiGroups": [""], "apiVersions": ["v1"],
                "resources": [res]})
        };
        assert!(rule_matches(&rule("pods"), &main, &PODS));
        assert!(!rule_matches(&rule("pods"), &status, &PODS));
        assert!(rule_matches(&rule("*"), &main, &PODS));
        assert!(!rule_matches(&rule("*"), &status, &PODS));
        assert!(rule_matches(&rule("*/*"), &status, &PODS));
        assert!(rule_matches(&rule("pods/status"), &status, &PODS));
        assert!(!rule_matches(&rule("pods/status"), &main, &PODS));
        assert!(rule_matches(&rule("pods/*"), &status, &PODS));
        assert!(rule_matches(&rule("*/status"), &status, &PODS));
        assert!(!rule_matches(&rule("deployments"), &main, &PODS));
    }

    #[test]
    fn operations_groups_versions_and_scope() {
        let u = User::default();
        let create = attrs(&u, Operation::Create, "default", "");
        let r = json!({"operations": ["UPDATE", "DELETE"], "apiGroups": ["*"],
            "apiVersions": ["*"], "resources": ["pods"]});
        assert!(!rule_matches(&r, &create, &PODS));
        let r = json!({"operations": ["CREATE"], "apiGroups": ["apps"],
            "apiVersions": ["*"], "resources": ["pods"]});
        assert!(!rule_matches(&r, &create, &PODS));
        let r = json!({"operations": ["CREATE"], "apiGroups": [""],
            "apiVersions": ["v2"], "resources": ["pods"]});
        assert!(!rule_matches(&r, &create, &PODS));
        let scoped = |s: &str| {
            json!({"operations": ["*"], "apiGroups": ["*"], "apiVersions": ["*"],
                "resources": ["*"], "scope": s})
        };
        assert!(rule_matches(&scoped("Namespaced"), &create, &PODS));
        assert!(!rule_matches(&scoped("Cluster"), &create, &PODS));
        let cluster = attrs(&u, Operation::Create, "", "");
        assert!(rule_matches(&scoped("Cluster"), &cluster, &PODS));
        assert!(rule_matches(&scoped("*"), &cluster, &PODS));
        // No rules select nothing.
        assert!(!any_rule_matches(&json!([]), &create, &PODS));
        assert!(!any_rule_matches(&Value::Null, &create, &PODS));
    }
}
