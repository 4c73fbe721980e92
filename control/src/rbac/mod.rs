//! RBAC (rbac.authorization.k8s.io/v1): the in-memory index the authorizer reads ([`index`]),
//! rule arithmetic ([`rules`]), the bootstrap roles and bindings reconciled at start
//! ([`bootstrap`], data only), ClusterRole aggregation ([`aggregation`]), escalation
//! prevention on writes of roles and bindings ([`escalation`]), impersonation
//! ([`impersonation`]) and the access reviews `kubectl auth can-i|whoami` post ([`review`]).

pub mod aggregation;
pub mod bootstrap;
pub mod controller_policy;
pub mod escalation;
pub mod impersonation;
pub mod index;
pub mod review;
pub mod rules;

/// The API group of Roles, ClusterRoles and their bindings.
pub const GROUP: &str = "rbac.authorization.k8s.io";
/// The annotation that lets start-up reconciliation update a bootstrap object (`"false"` keeps
/// an administrator's edits).
pub const AUTOUPDATE_ANNOTATION: &str = "rbac.authorization.kubernetes.io/autoupdate";

/// kube's `SetDefaults_Subject`: a User or Group subject without an `apiGroup` is in this
/// group (a ServiceAccount's stays empty).
pub fn default_subjects(obj: &mut serde_json::Value) {
    let Some(subjects) = obj
        .get_mut("subjects")
        .and_then(serde_json::Value::as_array_mut)
    else {
        return;
    };
    for s in subjects {
        let kind = s
            .get("kind")
            .and_then(serde_json::Value::as_str)
            .unwrap_or("");
        let missing = s
            .get("apiGroup")
            .and_then(serde_json::Value::as_str)
            .is_none_or(str::is_empty);
        if missing && matches!(kind, "User" | "Group") {
            s["apiGroup"] = serde_json::json!(GROUP);
        }
    }
}

/// kube's RBAC validation (pkg/apis/rbac/validation): rules need verbs and either resources
/// with groups or non-resource URLs (never in a namespaced Role); bindings need a roleRef to a
/// Role or ClusterRole in this group and subjects of known kinds. Returns (field, message).
pub fn validate(kind: &str, obj: &serde_json::Value) -> Vec<(String, String)> {
    use serde_json::Value;
    let mut out = Vec::new();
    let list = |v: Option<&Value>| -> Vec<String> {
        v.and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default()
    };
    let go_list = |v: &[String]| {
        format!(
            "[]string{{{}}}",
            v.iter()
                .map(|s| format!("{s:?}"))
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    let not_supported = |value: &str, values: &[&str]| {
        format!(
            "Unsupported value: {value:?}: supported values: {}",
            values
                .iter()
                .map(|v| format!("{v:?}"))
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    match kind {
        "Role" | "ClusterRole" => {
            let namespaced = kind == "Role";
            let rules = obj.get("rules").and_then(Value::as_array);
            for (i, rule) in rules.map(Vec::as_slice).unwrap_or(&[]).iter().enumerate() {
                let f = |c: &str| format!("rules[{i}].{c}");
                if list(rule.get("verbs")).is_empty() {
                    out.push((
                        f("verbs"),
                        "Required value: verbs must contain at least one value".into(),
                    ));
                }
                let urls = list(rule.get("nonResourceURLs"));
                if !urls.is_empty() {
                    if namespaced {
                        out.push((f("nonResourceURLs"), format!("Invalid value: {}: namespaced rules cannot apply to non-resource URLs", go_list(&urls))));
                    }
                    let resourceful = ["apiGroups", "resources", "resourceNames"]
                        .iter()
                        .any(|k| !list(rule.get(*k)).is_empty());
                    if resourceful {
                        out.push((f("nonResourceURLs"), format!("Invalid value: {}: rules cannot apply to both regular resources and non-resource URLs", go_list(&urls))));
                    }
                    continue;
                }
                if list(rule.get("apiGroups")).is_empty() {
                    out.push((
                        f("apiGroups"),
                        "Required value: resource rules must supply at least one api group".into(),
                    ));
                }
                if list(rule.get("resources")).is_empty() {
                    out.push((
                        f("resources"),
                        "Required value: resource rules must supply at least one resource".into(),
                    ));
                }
            }
            if let Some(agg) = obj.get("aggregationRule").filter(|a| !a.is_null()) {
                if agg
                    .get("clusterRoleSelectors")
                    .and_then(Value::as_array)
                    .is_none_or(Vec::is_empty)
                {
                    out.push((
                        "aggregationRule.clusterRoleSelectors".into(),
                        "Required value: at least one clusterRoleSelector required if aggregationRule is non-nil".into(),
                    ));
                }
            }
        }
        "RoleBinding" | "ClusterRoleBinding" => {
            let s = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_string();
            let role_ref = obj.get("roleRef").cloned().unwrap_or(Value::Null);
            if s(&role_ref, "apiGroup") != GROUP {
                out.push((
                    "roleRef.apiGroup".into(),
                    not_supported(&s(&role_ref, "apiGroup"), &[GROUP]),
                ));
            }
            let kinds: &[&str] = if kind == "RoleBinding" {
                &["Role", "ClusterRole"]
            } else {
                &["ClusterRole"]
            };
            if !kinds.contains(&s(&role_ref, "kind").as_str()) {
                out.push((
                    "roleRef.kind".into(),
                    not_supported(&s(&role_ref, "kind"), kinds),
                ));
            }
            if s(&role_ref, "name").is_empty() {
                out.push(("roleRef.name".into(), "Required value".into()));
            }
            let subjects = obj.get("subjects").and_then(Value::as_array);
            for (i, sub) in subjects
                .map(Vec::as_slice)
                .unwrap_or(&[])
                .iter()
                .enumerate()
            {
                let f = |c: &str| format!("subjects[{i}].{c}");
                if s(sub, "name").is_empty() {
                    out.push((f("name"), "Required value".into()));
                }
                match s(sub, "kind").as_str() {
                    "ServiceAccount" => {
                        if !s(sub, "apiGroup").is_empty() {
                            out.push((f("apiGroup"), not_supported(&s(sub, "apiGroup"), &[""])));
                        }
                        if kind == "ClusterRoleBinding" && s(sub, "namespace").is_empty() {
                            out.push((f("namespace"), "Required value".into()));
                        }
                    }
                    "User" | "Group" => {
                        if s(sub, "apiGroup") != GROUP {
                            out.push((f("apiGroup"), not_supported(&s(sub, "apiGroup"), &[GROUP])));
                        }
                    }
                    other => out.push((
                        f("kind"),
                        not_supported(other, &["ServiceAccount", "User", "Group"]),
                    )),
                }
            }
        }
        _ => {}
    }
    out
}

/// kube's `ValidateRoleBindingUpdate`: the roleRef of a binding never changes.
pub fn validate_update(
    kind: &str,
    old: &serde_json::Value,
    new: &serde_json::Value,
) -> Vec<(String, String)> {
    if !matches!(kind, "RoleBinding" | "ClusterRoleBinding")
        || old.get("roleRef") == new.get("roleRef")
    {
        return Vec::new();
    }
    vec![(
        "roleRef".into(),
        format!(
            "Invalid value: {}: cannot change roleRef",
            new.get("roleRef")
                .map(|v| v.to_string())
                .unwrap_or_default()
        ),
    )]
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn rbac_objects_are_validated_like_kube() {
        let role = json!({"rules": [{"verbs": [], "apiGroups": [""], "resources": ["pods"]},
            {"verbs": ["get"], "nonResourceURLs": ["/x"]}, {"verbs": ["get"]}]});
        let causes = validate("Role", &role);
        assert_eq!(
            causes[0],
            (
                "rules[0].verbs".to_string(),
                "Required value: verbs must contain at least one value".to_string()
            )
        );
        assert_eq!(
            causes[1].1,
            "Invalid value: []string{\"/x\"}: namespaced rules cannot apply to non-resource URLs"
        );
        assert_eq!(causes[2].0, "rules[2].apiGroups");
        assert_eq!(causes.len(), 4);
        assert!(validate(
            "ClusterRole",
            &json!({"rules": [{"verbs": ["get"], "nonResourceURLs": ["/x"]}]})
        )
        .is_empty());
        let mut rb = json!({"roleRef": {"apiGroup": GROUP, "kind": "Role", "name": "r"},
            "subjects": [{"kind": "User", "name": "u"}, {"kind": "ServiceAccount", "name": "sa"}, {"kind": "Robot", "name": "x"}]});
        default_subjects(&mut rb);
        assert_eq!(rb["subjects"][0]["apiGroup"], GROUP);
        assert!(rb["subjects"][1].get("apiGroup").is_none());
        let causes = validate("RoleBinding", &rb);
        assert_eq!(causes, [("subjects[2].kind".to_string(), "Unsupported value: \"Robot\": supported values: \"ServiceAccount\", \"User\", \"Group\"".to_string())]);
        let causes = validate("ClusterRoleBinding", &rb);
        assert_eq!(causes[0].0, "roleRef.kind");
        assert_eq!(causes[1].0, "subjects[1].namespace");
        let mut changed = rb.clone();
        changed["roleRef"]["name"] = json!("other");
        assert_eq!(
            validate_update("RoleBinding", &rb, &changed)[0].0,
            "roleRef"
        );
        assert!(validate_update("RoleBinding", &rb, &rb).is_empty());
    }
}
