//! PriorityClasses (scheduling.k8s.io/v1) and kube-apiserver's Priority admission plugin:
//! the two system classes exist from the first start, a class's value and preemption policy
//! never change, at most one class is the global default, and a new pod's
//! `priorityClassName` becomes its `spec.priority` and `spec.preemptionPolicy`.
//!
//! As kube since 1.17, the system classes may be used in any namespace (an administrator
//! limits them with a PriorityClass-scoped ResourceQuota).

use serde_json::{json, Value};

use crate::api::{Api, Ctx};
use crate::objects;
use crate::semantic::Cause;
use crate::status::ApiError;

/// kube's `HighestUserDefinablePriority`.
pub const HIGHEST_USER_DEFINABLE: i64 = 1_000_000_000;

/// kube's system classes: name, value, description.
pub const SYSTEM_CLASSES: [(&str, i64, &str); 2] = [
    (
        "system-node-critical",
        2_000_001_000,
        "Used for system critical pods that must not be moved from their current node.",
    ),
    (
        "system-cluster-critical",
        2_000_000_000,
        "Used for system critical pods that must run in the cluster, but can be moved to another node if necessary.",
    ),
];

const GROUP: &str = "scheduling.k8s.io";
const PLURAL: &str = "priorityclasses";

/// kube's scheduling/v1 defaults: `preemptionPolicy: PreemptLowerPriority`.
pub fn default_class(obj: &mut Value) {
    if let Some(o) = obj.as_object_mut() {
        o.entry("preemptionPolicy")
            .or_insert_with(|| json!("PreemptLowerPriority"));
    }
}

/// kube's `ValidatePriorityClass`.
pub fn check(obj: &Value, out: &mut Vec<Cause>) {
    let name = objects::name_of(obj);
    let value = obj.get("value").and_then(Value::as_i64);
    let global = obj
        .get("globalDefault")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    match value {
        None => out.push(("value".into(), "Required value".into())),
        Some(v) => {
            if let Some(system) = name.strip_prefix("system-").map(|_| name) {
                let known = SYSTEM_CLASSES.iter().find(|(n, ..)| *n == system);
                let err = match known {
                    None => Some(format!("{system} is not a known system priority class")),
                    Some((_, want, _)) if *want != v => {
                        Some(format!("value of {system} PriorityClass must be {want}"))
                    }
                    Some(_) if global => Some(format!(
                        "globalDefault of {system} PriorityClass must be false"
                    )),
                    Some(_) => None,
                };
                if let Some(err) = err {
                    out.push(("metadata.name".into(), format!("Forbidden: priority class names with 'system-' prefix are reserved for system use only. error: {err}")));
                }
            } else if v > HIGHEST_USER_DEFINABLE {
                out.push((
                    "value".into(),
                    format!("Forbidden: maximum allowed value of a user defined priority is {HIGHEST_USER_DEFINABLE}"),
                ));
            }
        }
    }
    if let Some(p) = obj.get("preemptionPolicy").and_then(Value::as_str) {
        if !matches!(p, "PreemptLowerPriority" | "Never") {
            out.push((
                "preemptionPolicy".into(),
                format!("Unsupported value: {p:?}: supported values: \"Never\", \"PreemptLowerPriority\""),
            ));
        }
    }
}

/// kube's `ValidatePriorityClassUpdate`: value and preemption policy are fixed.
pub fn check_update(old: &Value, new: &Value, out: &mut Vec<Cause>) {
    for field in ["value", "preemptionPolicy"] {
        if old.get(field) != new.get(field) {
            out.push((
                field.into(),
                "Forbidden: may not be changed in an update.".into(),
            ));
        }
    }
}

/// All stored classes.
async fn classes(api: &Api) -> Result<Vec<Value>, ApiError> {
    let def = api
        .resources
        .find(GROUP, "v1", PLURAL)
        .ok_or_else(|| ApiError::Internal("priorityclasses not served".into()))?;
    let cached = api
        .informers
        .priority_classes
        .list(api.store.as_ref(), &def.prefix(None))
        .await?;
    Ok(cached.iter().map(|c| c.obj.clone()).collect())
}

/// The global default class with the highest value (kube's `getDefaultPriorityClass`).
fn default_of(classes: &[Value]) -> Option<&Value> {
    classes
        .iter()
        .filter(|c| c["globalDefault"].as_bool() == Some(true))
        .max_by_key(|c| c["value"].as_i64().unwrap_or(0))
}

/// Priority admission on create: pods get their priority, a class may not be a second
/// global default.
pub async fn admit_new(ctx: &Ctx<'_>, obj: &mut Value) -> Result<(), ApiError> {
    match ctx.def.kind {
        "Pod" => admit_pod(ctx.api, obj).await,
        "PriorityClass" => admit_class(ctx.api, obj, true).await,
        _ => Ok(()),
    }
}

/// Priority admission on update (not on subresources).
pub async fn admit_update(ctx: &Ctx<'_>, current: &Value, new: &mut Value) -> Result<(), ApiError> {
    if ctx.info.subresource.is_some() {
        return Ok(());
    }
    keep_on_update(ctx.def.kind, current, new);
    if ctx.def.kind == "PriorityClass" {
        admit_class(ctx.api, new, false).await?;
    }
    Ok(())
}

/// Priority admission on PriorityClass create/update: one global default only.
pub async fn admit_class(api: &Api, obj: &Value, creating: bool) -> Result<(), ApiError> {
    if obj["globalDefault"].as_bool() != Some(true) {
        return Ok(());
    }
    let name = objects::name_of(obj);
    let all = classes(api).await?;
    if let Some(d) = default_of(&all) {
        let other = objects::name_of(d);
        if creating || other != name {
            return Err(ApiError::Forbidden {
                group: GROUP.into(),
                resource: PLURAL.into(),
                name: name.into(),
                message: format!(
                    "PriorityClass {other} is already marked as default. Only one default can exist"
                ),
            });
        }
    }
    Ok(())
}

/// Priority admission on pod create: resolve the class (or the global default) into
/// `spec.priority` and `spec.preemptionPolicy`; a pod may not claim a different priority.
pub async fn admit_pod(api: &Api, pod: &mut Value) -> Result<(), ApiError> {
    let name = objects::name_of(pod).to_string();
    let forbidden = |message: String| ApiError::Forbidden {
        group: String::new(),
        resource: "pods".into(),
        name: name.clone(),
        message,
    };
    let class_name = pod
        .pointer("/spec/priorityClassName")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let all = classes(api).await?;
    let (class_name, priority, policy) = if class_name.is_empty() {
        match default_of(&all) {
            Some(d) => (
                objects::name_of(d).to_string(),
                d["value"].as_i64().unwrap_or(0),
                d["preemptionPolicy"].as_str().map(String::from),
            ),
            // kube's DefaultPriorityWhenNoDefaultClassExists.
            None => (String::new(), 0, Some("PreemptLowerPriority".to_string())),
        }
    } else {
        let class = all
            .iter()
            .find(|c| objects::name_of(c) == class_name)
            .ok_or_else(|| {
                forbidden(format!("no PriorityClass with name {class_name} was found"))
            })?;
        (
            class_name.clone(),
            class["value"].as_i64().unwrap_or(0),
            class["preemptionPolicy"].as_str().map(String::from),
        )
    };
    let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) else {
        return Ok(());
    };
    if let Some(given) = spec.get("priority").and_then(Value::as_i64) {
        if given != priority {
            return Err(forbidden(format!("the integer value of priority ({given}) must not be provided in pod spec; priority admission controller computed {priority} from the given PriorityClass name")));
        }
    }
    if !class_name.is_empty() {
        spec.insert("priorityClassName".into(), json!(class_name));
    }
    spec.insert("priority".into(), json!(priority));
    if let Some(policy) = policy {
        if let Some(given) = spec.get("preemptionPolicy").and_then(Value::as_str) {
            if given != policy {
                return Err(forbidden(format!("the string value of PreemptionPolicy ({given}) must not be provided in pod spec; priority admission controller computed {policy} from the given PriorityClass name")));
            }
        }
        spec.insert("preemptionPolicy".into(), json!(policy));
    }
    Ok(())
}

/// Priority admission on pod update: what admission set on create is kept when an update
/// leaves it out (validation refuses any other change).
pub fn keep_on_update(kind: &str, current: &Value, new: &mut Value) {
    if kind != "Pod" {
        return;
    }
    for field in ["priority", "preemptionPolicy"] {
        let old = current.pointer(&format!("/spec/{field}"));
        if let (Some(old), Some(spec)) = (old, new.get_mut("spec").and_then(Value::as_object_mut)) {
            spec.entry(field).or_insert_with(|| old.clone());
        }
    }
}

/// kube's system classes cannot be deleted.
pub fn check_delete(kind: &str, name: &str) -> Result<(), ApiError> {
    if kind == "PriorityClass" && SYSTEM_CLASSES.iter().any(|(n, ..)| *n == name) {
        return Err(ApiError::Forbidden {
            group: GROUP.into(),
            resource: PLURAL.into(),
            name: name.into(),
            message: "this is a system priority class and cannot be deleted".into(),
        });
    }
    Ok(())
}

/// Creates the system classes a store lacks (kube-apiserver's post-start hook); an existing
/// one is left as it is (its value cannot have changed: updates keep it).
pub async fn ensure_system_classes(api: &Api) -> Result<(), ApiError> {
    let def = api
        .resources
        .find(GROUP, "v1", PLURAL)
        .ok_or_else(|| ApiError::Internal("priorityclasses not served".into()))?;
    for (name, value, description) in SYSTEM_CLASSES {
        let mut obj = json!({
            "apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
            "metadata": {"name": name, "uid": objects::new_uid(),
                "creationTimestamp": objects::rfc3339((api.clock)())},
            "value": value, "description": description,
        });
        default_class(&mut obj);
        match api
            .store
            .create(&def.key(None, name), objects::encode(&obj))
            .await
        {
            Ok(_) | Err(pea_control_store::StoreError::AlreadyExists { .. }) => {}
            Err(e) => return Err(ApiError::from_store(e, GROUP, PLURAL, name)),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn causes(obj: Value) -> Vec<String> {
        let mut out = Vec::new();
        check(&obj, &mut out);
        out.into_iter().map(|(f, m)| format!("{f}: {m}")).collect()
    }

    #[test]
    fn system_names_and_values_are_reserved() {
        assert_eq!(
            causes(json!({"metadata": {"name": "system-x"}, "value": 5})),
            ["metadata.name: Forbidden: priority class names with 'system-' prefix are reserved for system use only. error: system-x is not a known system priority class"]
        );
        assert_eq!(
            causes(json!({"metadata": {"name": "high"}, "value": 1_000_000_001i64})),
            ["value: Forbidden: maximum allowed value of a user defined priority is 1000000000"]
        );
        assert!(causes(
            json!({"metadata": {"name": "system-node-critical"}, "value": 2_000_001_000i64})
        )
        .is_empty());
        let mut out = Vec::new();
        check_update(
            &json!({"value": 1, "preemptionPolicy": "Never"}),
            &json!({"value": 2, "preemptionPolicy": "Never"}),
            &mut out,
        );
        assert_eq!(
            out,
            [(
                "value".to_string(),
                "Forbidden: may not be changed in an update.".to_string()
            )]
        );
    }
}
