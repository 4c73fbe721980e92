//! POST pods/NAME/eviction: delete a pod only if its PodDisruptionBudget allows it, as
//! kube-apiserver's EvictionREST does (what `kubectl drain` posts, policy/v1 Eviction or
//! policy/v1beta1 from older clients).
//!
//! ```text
//!   Eviction ─▶ pod terminal, Pending or already deleting? ─yes─▶ delete (no PDB check)
//!                      │ no
//!                      ▼
//!              PDBs selecting the pod: >1 → 500; 0 → delete
//!                      │ exactly 1
//!                      ▼
//!   pod not Ready and the budget is healthy (or AlwaysAllow)? ─yes─▶ delete if the pod is
//!                      │ no                                          unchanged (else 429)
//!                      ▼
//!   disruptionsAllowed > 0 ? ─no─▶ 429 TooManyRequests (DisruptionBudget cause)
//!                      │ yes: decrement it, record the pod in disruptedPods, written with
//!                      ▼      the PDB's resourceVersion as precondition (retried on conflict)
//!                delete the pod with the Eviction's DeleteOptions
//! ```

use serde_json::{json, Value};

use crate::api::{Ctx, Reply};
use crate::objects;
use crate::status::ApiError;
use crate::verbs::body_object;
use crate::verbs::delete::{delete_one, options_from};

/// kube's EvictionsRetry: 20 tries on conflicting writes.
const RETRIES: usize = 20;
/// kube's MaxDisruptedPodSize.
const MAX_DISRUPTED_PODS: usize = 2000;
const VIOLATION: &str = "Cannot evict pod as it would violate the pod's disruption budget.";

pub async fn handle(ctx: &Ctx<'_>) -> Result<Reply, ApiError> {
    let name = ctx.name()?.to_string();
    let body = body_object(ctx)?;
    match body.get("apiVersion").and_then(Value::as_str) {
        Some("policy/v1" | "policy/v1beta1") => {}
        other => {
            return Err(ApiError::BadRequest(format!(
                "an Eviction must be policy/v1 or policy/v1beta1, not {:?}",
                other.unwrap_or("")
            )))
        }
    }
    if let Some(kind) = body.get("kind").and_then(Value::as_str) {
        if kind != "Eviction" {
            return Err(ApiError::BadRequest(format!(
                "the body of pods/eviction must be an Eviction, not {kind}"
            )));
        }
    }
    if body.pointer("/metadata/name").and_then(Value::as_str) != Some(name.as_str()) {
        return Err(ApiError::BadRequest(
            "name in URL does not match name in Eviction object".into(),
        ));
    }
    let delete_body = match body.get("deleteOptions") {
        None | Some(Value::Null) => json!({}),
        Some(o) if o.is_object() => o.clone(),
        Some(_) => {
            return Err(ApiError::BadRequest(
                "deleteOptions of an Eviction must be an object".into(),
            ))
        }
    };
    let mut opts = options_from(ctx, &delete_body)?;
    // kube's propagateDryRun: the request's dryRun and the body's must agree.
    if ctx.dry_run() {
        opts.dry_run = true;
    }
    let caller_rv = opts.resource_version.is_some();

    // Pods whose deletion disrupts nothing are deleted without looking at budgets.
    let mut attempt = 0;
    let (pod, pod_rev) = loop {
        attempt += 1;
        let (pod, rev) = ctx.current(&name).await?;
        if !can_ignore_pdb(&pod) {
            break (pod, rev);
        }
        let mut o = opts.clone();
        if should_enforce_resource_version(&pod) && !caller_rv {
            o.resource_version = Some(rev.to_string());
        }
        match delete_one(ctx, &name, &o).await {
            Ok(_) => return Ok(success()),
            Err(ApiError::Conflict { .. }) if !caller_rv && attempt < RETRIES => continue,
            Err(e) => return Err(e),
        }
    };

    let namespace = ctx.namespace().unwrap_or("").to_string();
    let pdbs = budgets_for(ctx, &namespace, &pod).await?;
    if pdbs.len() > 1 {
        return Ok(Reply::json(
            500,
            json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support.",
                "code": 500}),
        ));
    }
    let mut unready_but_allowed = false;
    let mut pdb_name = String::new();
    if let Some((pdb, rev)) = pdbs.into_iter().next() {
        pdb_name = objects::name_of(&pdb).to_string();
        let int = |p: &str| pdb.pointer(p).and_then(Value::as_i64).unwrap_or(0);
        let always_allow =
            pdb.pointer("/spec/unhealthyPodEvictionPolicy") == Some(&json!("AlwaysAllow"));
        let healthy_budget = int("/status/currentHealthy") >= int("/status/desiredHealthy")
            && int("/status/desiredHealthy") > 0;
        if !is_ready(&pod) && (always_allow || healthy_budget) {
            // An unready pod does not count as healthy: evicting it takes nothing from the
            // budget, as long as it does not become ready meanwhile (resourceVersion below).
            unready_but_allowed = true;
        } else {
            decrement(ctx, &namespace, &name, pdb, rev, opts.dry_run).await?;
        }
    }
    let mut o = opts.clone();
    if unready_but_allowed {
        o.resource_version = Some(pod_rev.to_string());
    }
    match delete_one(ctx, &name, &o).await {
        Ok(_) => Ok(success()),
        Err(ApiError::Conflict { .. }) if unready_but_allowed && !caller_rv => {
            Err(still_processing(&pdb_name))
        }
        Err(e) => Err(e),
    }
}

fn success() -> Reply {
    Reply::json(
        201,
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}),
    )
}

fn phase(pod: &Value) -> &str {
    pod.pointer("/status/phase")
        .and_then(Value::as_str)
        .unwrap_or("")
}

fn deleting(pod: &Value) -> bool {
    pod.pointer("/metadata/deletionTimestamp")
        .is_some_and(|t| !t.is_null())
}

/// kube's canIgnorePDB: terminal, Pending and terminating pods disrupt nothing more.
fn can_ignore_pdb(pod: &Value) -> bool {
    matches!(phase(pod), "Succeeded" | "Failed" | "Pending") || deleting(pod)
}

/// kube's shouldEnforceResourceVersion: a running pod must not become ready between the check
/// and the delete.
fn should_enforce_resource_version(pod: &Value) -> bool {
    !matches!(phase(pod), "Succeeded" | "Failed") && !deleting(pod)
}

fn is_ready(pod: &Value) -> bool {
    pod.pointer("/status/conditions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Ready" && c["status"] == "True")
}

fn pdb_def(ctx: &Ctx<'_>) -> Result<crate::resources::ResourceDef, ApiError> {
    ctx.api
        .resources
        .find("policy", "v1", "poddisruptionbudgets")
        .cloned()
        .ok_or_else(|| ApiError::Internal("poddisruptionbudgets are not served".into()))
}

/// The PodDisruptionBudgets in the pod's namespace whose selector selects it, each with its
/// store revision. Like kube's eviction handler, a missing or empty selector selects nothing
/// here.
async fn budgets_for(
    ctx: &Ctx<'_>,
    namespace: &str,
    pod: &Value,
) -> Result<Vec<(Value, i64)>, ApiError> {
    let def = pdb_def(ctx)?;
    let page = ctx
        .api
        .store
        .list(&def.prefix(Some(namespace)), &Default::default())
        .await
        .map_err(|e| ApiError::from_store(e, "policy", "poddisruptionbudgets", ""))?;
    let labels = pod.pointer("/metadata/labels");
    let mut out = Vec::new();
    for kv in &page.items {
        let pdb = objects::decode(kv)?;
        if selects_pod(pdb.pointer("/spec/selector"), labels) {
            out.push((pdb, kv.mod_revision));
        }
    }
    Ok(out)
}

fn selects_pod(selector: Option<&Value>, labels: Option<&Value>) -> bool {
    let Some(sel) = selector.filter(|s| s.is_object()) else {
        return false;
    };
    let has = |f: &str| {
        sel.get(f).is_some_and(|v| {
            v.as_object().is_some_and(|m| !m.is_empty())
                || v.as_array().is_some_and(|a| !a.is_empty())
        })
    };
    if !has("matchLabels") && !has("matchExpressions") {
        return false;
    }
    crate::semantic::selects(sel, labels)
}

fn too_many(retry_after_seconds: u32, cause: String) -> ApiError {
    ApiError::TooManyRequests {
        message: VIOLATION.into(),
        retry_after_seconds,
        causes: vec![("DisruptionBudget".into(), cause)],
    }
}

/// kube's createTooManyRequestsError: the controller has not caught up with the budget.
fn still_processing(pdb: &str) -> ApiError {
    too_many(
        10,
        format!("The disruption budget {pdb} is still being processed by the server."),
    )
}

fn forbidden(pdb: &str, reason: &str) -> ApiError {
    ApiError::ForbiddenObject {
        group: "policy".into(),
        resource: "poddisruptionbudget.policy".into(),
        name: pdb.into(),
        reason: reason.into(),
    }
}

/// kube's checkAndDecrement, retried on conflict with a fresh read: takes one disruption from
/// the budget and records the pod in `disruptedPods`, written with the PDB's revision as
/// precondition so two evictions never spend the same disruption.
async fn decrement(
    ctx: &Ctx<'_>,
    namespace: &str,
    pod_name: &str,
    mut pdb: Value,
    mut rev: i64,
    dry_run: bool,
) -> Result<(), ApiError> {
    let def = pdb_def(ctx)?;
    let pdb_name = objects::name_of(&pdb).to_string();
    let key = def.key(Some(namespace), &pdb_name);
    for _ in 0..RETRIES {
        let now = objects::rfc3339(ctx.now());
        let updated = decremented(&pdb, pod_name, &now)?;
        if dry_run {
            return Ok(());
        }
        match ctx
            .api
            .store
            .update(&key, objects::encode(&updated), rev)
            .await
        {
            Ok(_) => return Ok(()),
            Err(pea_control_store::StoreError::Conflict { .. }) => {}
            Err(e) => {
                return Err(ApiError::from_store(
                    e,
                    "policy",
                    "poddisruptionbudgets",
                    &pdb_name,
                ))
            }
        }
        // Conflict: another eviction or the controller wrote the budget; read it again.
        let (kv, _) =
            ctx.api.store.get(&key).await.map_err(|e| {
                ApiError::from_store(e, "policy", "poddisruptionbudgets", &pdb_name)
            })?;
        let kv = kv.ok_or_else(|| ApiError::NotFound {
            group: "policy".into(),
            resource: "poddisruptionbudgets".into(),
            name: pdb_name.clone(),
        })?;
        pdb = objects::decode(&kv)?;
        rev = kv.mod_revision;
    }
    Err(ApiError::Internal(format!(
        "couldn't update PodDisruptionBudget {pdb_name:?} due to conflicts"
    )))
}

/// The budget after one more disruption, or the error that forbids it.
fn decremented(pdb: &Value, pod_name: &str, now: &str) -> Result<Value, ApiError> {
    let name = objects::name_of(pdb);
    let int = |p: &str| pdb.pointer(p).and_then(Value::as_i64).unwrap_or(0);
    let generation = int("/metadata/generation");
    if int("/status/observedGeneration") < generation {
        return Err(still_processing(name));
    }
    let allowed = int("/status/disruptionsAllowed");
    if allowed < 0 {
        return Err(forbidden(name, "pdb disruptions allowed is negative"));
    }
    let disrupted = pdb
        .pointer("/status/disruptedPods")
        .and_then(Value::as_object)
        .map_or(0, |m| m.len());
    if disrupted > MAX_DISRUPTED_PODS {
        return Err(forbidden(
            name,
            "DisruptedPods map too big - too many evictions not confirmed by PDB controller",
        ));
    }
    if allowed == 0 {
        return Err(too_many(
            0,
            format!(
                "The disruption budget {name} needs {} healthy pods and has {} currently",
                int("/status/desiredHealthy"),
                int("/status/currentHealthy")
            ),
        ));
    }
    let mut out = pdb.clone();
    let status = out
        .as_object_mut()
        .map(|o| o.entry("status").or_insert_with(|| json!({})));
    let Some(status) = status.and_then(Value::as_object_mut) else {
        return Err(ApiError::Internal(format!(
            "PodDisruptionBudget {name} has no status object"
        )));
    };
    status.insert("disruptionsAllowed".into(), json!(allowed - 1));
    if allowed - 1 == 0 {
        set_disruption_allowed_false(status, now);
    }
    let pods = status.entry("disruptedPods").or_insert_with(|| json!({}));
    if !pods.is_object() {
        *pods = json!({});
    }
    pods[pod_name] = json!(now);
    Ok(out)
}

/// pdbhelper.UpdateDisruptionAllowedCondition for a budget that just ran out:
/// DisruptionAllowed=False, InsufficientPods (transition time kept if it was already False).
fn set_disruption_allowed_false(status: &mut serde_json::Map<String, Value>, now: &str) {
    let observed = status
        .get("observedGeneration")
        .cloned()
        .unwrap_or(json!(0));
    let conditions = status.entry("conditions").or_insert_with(|| json!([]));
    if !conditions.is_array() {
        *conditions = json!([]);
    }
    let Some(list) = conditions.as_array_mut() else {
        return;
    };
    let fresh = json!({"type": "DisruptionAllowed", "status": "False",
        "reason": "InsufficientPods", "message": "", "observedGeneration": observed,
        "lastTransitionTime": now});
    match list.iter_mut().find(|c| c["type"] == "DisruptionAllowed") {
        Some(c) => {
            let kept = if c["status"] == "False" {
                c.get("lastTransitionTime").cloned()
            } else {
                None
            };
            *c = fresh;
            if let Some(t) = kept {
                c["lastTransitionTime"] = t;
            }
        }
        None => list.push(fresh),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pdb(allowed: i64, generation: i64, observed: i64) -> Value {
        json!({"metadata": {"name": "web", "generation": generation},
            "spec": {"minAvailable": 2, "selector": {"matchLabels": {"app": "web"}}},
            "status": {"disruptionsAllowed": allowed, "currentHealthy": 3, "desiredHealthy": 2,
                "expectedPods": 3, "observedGeneration": observed}})
    }

    #[test]
    fn a_decrement_records_the_pod_and_closes_the_budget_at_zero() {
        let out = decremented(&pdb(1, 1, 1), "web-1", "2026-12-06T10:00:00Z").unwrap();
        assert_eq!(out["status"]["disruptionsAllowed"], 0);
        assert_eq!(
            out["status"]["disruptedPods"],
            json!({"web-1": "2026-12-06T10:00:00Z"})
        );
        let c = &out["status"]["conditions"][0];
        assert_eq!(
            (&c["type"], &c["status"], &c["reason"]),
            (
                &json!("DisruptionAllowed"),
                &json!("False"),
                &json!("InsufficientPods")
            )
        );
        let more = decremented(&pdb(3, 1, 1), "web-1", "t").unwrap();
        assert_eq!(more["status"]["disruptionsAllowed"], 2);
        assert!(more["status"].get("conditions").is_none());
    }

    #[test]
    fn an_exhausted_or_stale_budget_refuses_with_kube_words() {
        let e = decremented(&pdb(0, 1, 1), "web-1", "t").unwrap_err();
        assert_eq!(e.code(), 429);
        let s = e.to_status();
        assert_eq!(s["reason"], "TooManyRequests");
        assert_eq!(s["message"], VIOLATION);
        assert_eq!(
            s["details"]["causes"],
            json!([{"reason": "DisruptionBudget",
                "message": "The disruption budget web needs 2 healthy pods and has 3 currently"}])
        );
        let stale = decremented(&pdb(5, 2, 1), "web-1", "t").unwrap_err();
        let s = stale.to_status();
        assert_eq!(s["details"]["retryAfterSeconds"], 10);
        assert!(s["details"]["causes"][0]["message"]
            .as_str()
            .unwrap()
            .contains("still being processed"));
        let negative = decremented(&pdb(-1, 1, 1), "web-1", "t").unwrap_err();
        assert_eq!(negative.code(), 403);
        assert_eq!(
            negative.to_string(),
            "poddisruptionbudget.policy \"web\" is forbidden: pdb disruptions allowed is negative"
        );
    }

    #[test]
    fn terminal_pending_and_deleting_pods_bypass_budgets() {
        for p in ["Succeeded", "Failed", "Pending"] {
            assert!(can_ignore_pdb(&json!({"status": {"phase": p}})), "{p}");
        }
        assert!(!can_ignore_pdb(&json!({"status": {"phase": "Running"}})));
        assert!(can_ignore_pdb(
            &json!({"metadata": {"deletionTimestamp": "t"}, "status": {"phase": "Running"}})
        ));
        assert!(should_enforce_resource_version(
            &json!({"status": {"phase": "Pending"}})
        ));
        assert!(!should_enforce_resource_version(
            &json!({"status": {"phase": "Failed"}})
        ));
    }

    #[test]
    fn empty_or_missing_selectors_select_nothing() {
        let labels = json!({"app": "web"});
        assert!(!selects_pod(None, Some(&labels)));
        assert!(!selects_pod(Some(&json!({})), Some(&labels)));
        assert!(selects_pod(
            Some(&json!({"matchLabels": {"app": "web"}})),
            Some(&labels)
        ));
        assert!(!selects_pod(
            Some(&json!({"matchLabels": {"app": "db"}})),
            Some(&labels)
        ));
        assert!(selects_pod(
            Some(&json!({"matchExpressions": [{"key": "app", "operator": "Exists"}]})),
            Some(&labels)
        ));
    }
}
