//! Escalation prevention on writes of Roles, ClusterRoles and their bindings, as kube's
//! policy-based RBAC storage: a role may only hold rules its writer holds (unless the writer may
//! `escalate` it); a binding may only grant a role whose rules its writer holds (unless the
//! writer may `bind` it). Members of `system:masters` are exempt.

use serde_json::Value;

use crate::api::Ctx;
use crate::auth::{User, ADMIN_GROUP};
use crate::authz::{aggregate, Attributes, NodeFacts};
use crate::rbac::rules::{compact, covers, Rule};
use crate::rbac::GROUP;
use crate::status::ApiError;

/// kube's `ConfirmNoEscalation`: `rules` must be covered by what `user` holds through RBAC in
/// `namespace` (cluster-wide grants included).
pub fn confirm_no_escalation(
    snap: &crate::rbac::index::Snapshot,
    user: &User,
    namespace: &str,
    rules: &[Rule],
) -> Result<(), String> {
    let (owned, errors) = snap.rules_for(user, namespace);
    let (ok, missing) = covers(&owned, rules);
    if ok {
        return Ok(());
    }
    let mut lines: Vec<String> = compact(&missing).iter().map(Rule::compact_string).collect();
    lines.sort();
    lines.dedup();
    let groups = format!(
        "[{}]",
        user.groups
            .iter()
            .map(|g| format!("{g:?}"))
            .collect::<Vec<_>>()
            .join(" ")
    );
    let mut msg = format!(
        "user {:?} (groups={groups}) is attempting to grant RBAC permissions not currently held:\n{}",
        user.name,
        lines.join("\n")
    );
    if !errors.is_empty() {
        msg.push_str(&format!("; resolution errors: [{}]", aggregate(&errors)));
    }
    Err(msg)
}

/// Everything but the fields the garbage collector writes (kube's `IsOnlyMutatingGCFields`).
fn without_gc_fields(obj: &Value) -> Value {
    let mut o = obj.clone();
    if let Some(m) = o.get_mut("metadata").and_then(Value::as_object_mut) {
        for f in [
            "ownerReferences",
            "finalizers",
            "resourceVersion",
            "managedFields",
            "selfLink",
        ] {
            m.remove(f);
        }
    }
    o
}

fn has_aggregation(obj: &Value) -> bool {
    obj.get("aggregationRule").is_some_and(|a| !a.is_null())
}

/// Checks a create (`old` None) or update of an RBAC object by the request's user.
pub fn admit(ctx: &Ctx<'_>, old: Option<&Value>, new: &Value) -> Result<(), ApiError> {
    if ctx.def.group != GROUP || ctx.info.subresource.is_some() {
        return Ok(());
    }
    let user = ctx.user;
    if user.groups.iter().any(|g| g == ADMIN_GROUP) {
        return Ok(());
    }
    if old.is_some_and(|o| without_gc_fields(o) == without_gc_fields(new)) {
        return Ok(());
    }
    let authz = &ctx.api.authz;
    let namespace = ctx.namespace().unwrap_or("");
    let name = crate::objects::name_of(new).to_string();
    let forbidden = |message: String| ApiError::Forbidden {
        group: GROUP.into(),
        resource: ctx.def.plural.into(),
        name: name.clone(),
        message,
    };
    let snap = authz.rbac.snapshot();
    match ctx.def.kind {
        "Role" | "ClusterRole" => {
            let escalate = Attributes::resource(
                "escalate",
                GROUP,
                ctx.def.plural,
                namespace,
                ctx.info.name.as_deref().unwrap_or(""),
            );
            if authz
                .authorize(user, &escalate, NodeFacts::default())
                .allowed
            {
                return Ok(());
            }
            let rules = Rule::parse_list(new.get("rules"));
            confirm_no_escalation(&snap, user, namespace, &rules).map_err(forbidden)?;
            // An aggregation rule can gather anything: it takes every permission there is.
            if ctx.def.kind == "ClusterRole"
                && (has_aggregation(new) || old.is_some_and(has_aggregation))
            {
                let everything = [
                    Rule::resource(&["*"], &["*"], &["*"]),
                    Rule::non_resource(&["*"], &["*"]),
                ];
                confirm_no_escalation(&snap, user, namespace, &everything).map_err(|_| {
                    forbidden(
                        "must have cluster-admin privileges to use the aggregationRule".into(),
                    )
                })?;
            }
            Ok(())
        }
        "RoleBinding" | "ClusterRoleBinding" => {
            let s = |p: &str| new.pointer(p).and_then(Value::as_str).unwrap_or("");
            let (kind, role) = (s("/roleRef/kind"), s("/roleRef/name"));
            let resource = match kind {
                "ClusterRole" => Some("clusterroles"),
                "Role" => Some("roles"),
                _ => None,
            };
            if let Some(resource) = resource {
                let bind =
                    Attributes::resource("bind", s("/roleRef/apiGroup"), resource, namespace, role);
                if authz.authorize(user, &bind, NodeFacts::default()).allowed {
                    return Ok(());
                }
            }
            let rules = snap
                .role_ref_rules(kind, role, namespace)
                .map_err(forbidden)?;
            confirm_no_escalation(&snap, user, namespace, &rules).map_err(forbidden)
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::rbac::index::snapshot_of;

    #[test]
    fn a_user_grants_only_what_it_holds() {
        let snap = snapshot_of(&[
            (
                "roles/team/pod-reader",
                json!({"metadata": {"name": "pod-reader", "namespace": "team"},
                "rules": [{"apiGroups": [""], "resources": ["pods", "pods/log"], "verbs": ["get", "list", "watch"]}]}),
            ),
            (
                "rolebindings/team/bob",
                json!({"metadata": {"name": "bob", "namespace": "team"},
                "roleRef": {"kind": "Role", "name": "pod-reader"}, "subjects": [{"kind": "User", "name": "bob"}]}),
            ),
        ]);
        let bob = User {
            name: "bob".into(),
            groups: vec!["dev".into(), "system:authenticated".into()],
            ..User::default()
        };
        let get = [Rule::resource(&["get"], &[""], &["pods"])];
        assert!(confirm_no_escalation(&snap, &bob, "team", &get).is_ok());
        // Held in one namespace only.
        let err = confirm_no_escalation(&snap, &bob, "other", &get).unwrap_err();
        assert_eq!(
            err,
            "user \"bob\" (groups=[\"dev\" \"system:authenticated\"]) is attempting to grant RBAC permissions not currently held:\n{APIGroups:[\"\"], Resources:[\"pods\"], Verbs:[\"get\"]}"
        );
        let more = [Rule::resource(&["get", "delete"], &["", "apps"], &["pods"])];
        let err = confirm_no_escalation(&snap, &bob, "team", &more).unwrap_err();
        assert!(err.ends_with(
            "not currently held:\n{APIGroups:[\"\"], Resources:[\"pods\"], Verbs:[\"delete\"]}\n{APIGroups:[\"apps\"], Resources:[\"pods\"], Verbs:[\"get\" \"delete\"]}"
        ), "{err}");
        // Nothing is always held.
        assert!(confirm_no_escalation(&snap, &bob, "other", &[]).is_ok());
    }

    #[test]
    fn gc_field_changes_are_not_grants() {
        let a = json!({"metadata": {"name": "r", "resourceVersion": "1"}, "rules": []});
        let mut b = a.clone();
        b["metadata"]["finalizers"] = json!(["x"]);
        b["metadata"]["resourceVersion"] = json!("2");
        assert_eq!(without_gc_fields(&a), without_gc_fields(&b));
        b["rules"] = json!([{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}]);
        assert_ne!(without_gc_fields(&a), without_gc_fields(&b));
    }
}
