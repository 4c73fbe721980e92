//! DELETE of one object: preconditions, dryRun, finalizers, graceful pod deletion, namespace
//! termination and ownerReference cascading (Background, Foreground, Orphan).

use serde_json::{json, Value};

use crate::api::{Ctx, Reply};
use crate::gc::{self, Propagation};
use crate::objects;
use crate::resources::ResourceDef;
use crate::status::ApiError;

/// Namespaces every cluster has, which may not be deleted (kube-apiserver's
/// NamespaceLifecycle admission).
pub const IMMORTAL_NAMESPACES: [&str; 4] =
    ["default", "kube-system", "kube-public", "kube-node-lease"];

/// DeleteOptions from the body (if any) and the query.
#[derive(Debug, Default, Clone)]
pub struct DeleteOptions {
    pub propagation: Option<Propagation>,
    pub grace_seconds: Option<i64>,
    pub uid: Option<String>,
    pub resource_version: Option<String>,
    /// `dryRun: ["All"]` in the body (kubectl delete --dry-run=server sends it there).
    pub dry_run: bool,
}

pub fn options(ctx: &Ctx<'_>) -> Result<DeleteOptions, ApiError> {
    let body: Value = if ctx.body.is_empty() {
        json!({})
    } else if ctx
        .content_type
        .starts_with("application/vnd.kubernetes.protobuf")
    {
        // client-go's typed clients (kubectl drain, controllers) send DeleteOptions as protobuf.
        crate::protobuf::decode_delete_options(&ctx.body)
            .map_err(|e| ApiError::BadRequest(format!("invalid DeleteOptions: {e}")))?
    } else {
        serde_json::from_slice(&ctx.body)
            .map_err(|e| ApiError::BadRequest(format!("invalid DeleteOptions: {e}")))?
    };
    options_from(ctx, &body)
}

/// DeleteOptions from a decoded body (a DELETE's, or an Eviction's `deleteOptions`) and the
/// query.
pub fn options_from(ctx: &Ctx<'_>, body: &Value) -> Result<DeleteOptions, ApiError> {
    let policy = body
        .get("propagationPolicy")
        .and_then(Value::as_str)
        .or(ctx.query.get("propagationPolicy"))
        .map(|p| match p {
            "Background" => Ok(Propagation::Background),
            "Foreground" => Ok(Propagation::Foreground),
            "Orphan" => Ok(Propagation::Orphan),
            other => Err(ApiError::BadRequest(format!(
                "propagationPolicy {other:?} is not one of Background, Foreground, Orphan"
            ))),
        })
        .transpose()?;
    let orphan = body
        .get("orphanDependents")
        .and_then(Value::as_bool)
        .or(ctx.query.get("orphanDependents").map(|v| v == "true"));
    let propagation = policy.or(match orphan {
        Some(true) => Some(Propagation::Orphan),
        Some(false) => Some(Propagation::Background),
        None => None,
    });
    let grace_seconds = match body.get("gracePeriodSeconds").and_then(Value::as_i64) {
        Some(g) => Some(g),
        None => ctx
            .query
            .get("gracePeriodSeconds")
            .map(|g| {
                g.parse::<i64>()
                    .map_err(|_| ApiError::BadRequest(format!("invalid gracePeriodSeconds {g:?}")))
            })
            .transpose()?,
    };
    let mut dry_run = false;
    if let Some(list) = body.get("dryRun").filter(|v| !v.is_null()) {
        let Some(list) = list.as_array() else {
            return Err(ApiError::BadRequest(
                "invalid DeleteOptions: dryRun must be a list".into(),
            ));
        };
        for v in list {
            match v.as_str() {
                Some("All") => dry_run = true,
                _ => {
                    return Err(crate::verbs::invalid_options(
                        "DeleteOptions",
                        vec![crate::verbs::dry_run_cause(
                            &v.as_str().map_or_else(|| v.to_string(), str::to_string),
                        )],
                    ))
                }
            }
        }
    }
    Ok(DeleteOptions {
        dry_run,
        propagation,
        grace_seconds,
        uid: body
            .pointer("/preconditions/uid")
            .and_then(Value::as_str)
            .map(str::to_string),
        resource_version: body
            .pointer("/preconditions/resourceVersion")
            .and_then(Value::as_str)
            .map(str::to_string),
    })
}

pub async fn handle(ctx: &Ctx<'_>) -> Result<Reply, ApiError> {
    let name = ctx.name()?;
    if ctx.info.subresource.is_some() {
        return Err(ApiError::MethodNotAllowed(format!(
            "delete of {}/{}",
            ctx.def.plural,
            ctx.info.subresource.as_deref().unwrap_or("")
        )));
    }
    let opts = options(ctx)?;
    let obj = delete_one(ctx, name, &opts).await?;
    Ok(Reply::json(200, obj))
}

/// Deletes (or starts deleting) one object; returns it in its final state.
pub async fn delete_one(
    ctx: &Ctx<'_>,
    name: &str,
    opts: &DeleteOptions,
) -> Result<Value, ApiError> {
    let conflict = |reason: String| ApiError::Conflict {
        group: ctx.def.group.into(),
        resource: ctx.def.plural.into(),
        name: name.into(),
        reason,
    };
    if ctx.def.kind == "Namespace" && IMMORTAL_NAMESPACES.contains(&name) {
        // kube-apiserver's NamespaceLifecycle admission.
        return Err(ApiError::ForbiddenObject {
            group: String::new(),
            resource: "namespaces".into(),
            name: name.into(),
            reason: "this namespace may not be deleted".into(),
        });
    }
    crate::priority::check_delete(ctx.def.kind, name)?;
    let (mut obj, rev) = ctx.current(name).await?;
    if let Some(uid) = &opts.uid {
        if objects::meta_str(&obj, "uid") != Some(uid) {
            return Err(conflict(format!(
                "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                objects::meta_str(&obj, "uid").unwrap_or("")
            )));
        }
    }
    if let Some(want) = &opts.resource_version {
        if *want != rev.to_string() {
            return Err(conflict(format!("Precondition failed: ResourceVersion in precondition: {want}, ResourceVersion in object meta: {rev}")));
        }
    }
    crate::admission::delete(ctx, &obj, opts.dry_run).await?;
    if ctx.dry_run() || opts.dry_run {
        return Ok(obj);
    }
    if obj.pointer("/metadata/deletionTimestamp").is_some() {
        // Already being deleted: finalizers or a kubelet still have to act — unless a pod's
        // grace is cut to 0 (the kubelet's final delete, or --force) with no finalizer left.
        let no_finalizers = obj
            .pointer("/metadata/finalizers")
            .and_then(Value::as_array)
            .is_none_or(|f| f.is_empty());
        let pod_now = ctx.def.kind == "Pod" && opts.grace_seconds == Some(0);
        let graceful = obj
            .pointer("/metadata/deletionGracePeriodSeconds")
            .and_then(Value::as_i64)
            .is_some_and(|g| g > 0);
        if pod_now && !no_finalizers && graceful {
            // kube's BeforeDelete shortens the grace to 0 (the kubelet's final delete): the
            // pod then goes as soon as its last finalizer does (the Job controller's tracking
            // finalizer) instead of waiting for another kubelet delete.
            obj["metadata"]["deletionGracePeriodSeconds"] = json!(0);
            obj["metadata"]["deletionTimestamp"] = json!(objects::rfc3339(ctx.now()));
            let kv = ctx
                .api
                .store
                .update(&ctx.key(name), objects::encode(&obj), rev)
                .await
                .map_err(ctx.store_err(name))?;
            objects::set_resource_version(&mut obj, kv.mod_revision);
            return Ok(obj);
        }
        if !(pod_now && no_finalizers) {
            return Ok(obj);
        }
    }
    let now = objects::rfc3339(ctx.now());
    let propagation = opts.propagation.unwrap_or(Propagation::Background);
    let finalizers = obj
        .pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .is_some_and(|f| !f.is_empty());
    let graceful_pod = ctx.def.kind == "Pod"
        && obj
            .pointer("/spec/nodeName")
            .and_then(Value::as_str)
            .is_some_and(|n| !n.is_empty())
        && opts
            .grace_seconds
            .or_else(|| {
                obj.pointer("/spec/terminationGracePeriodSeconds")
                    .and_then(Value::as_i64)
            })
            .unwrap_or(30)
            > 0;
    let key = ctx.key(name);
    if ctx.def.kind == "Namespace" {
        obj["metadata"]["deletionTimestamp"] = json!(now);
        obj["status"]["phase"] = json!("Terminating");
        let kv = ctx
            .api
            .store
            .update(&key, objects::encode(&obj), rev)
            .await
            .map_err(ctx.store_err(name))?;
        objects::set_resource_version(&mut obj, kv.mod_revision);
        gc::spawn_namespace_cleanup(ctx.api.clone(), name.to_string());
        return Ok(obj);
    }
    let orphan = propagation == Propagation::Orphan;
    if finalizers || graceful_pod || propagation == Propagation::Foreground || orphan {
        obj["metadata"]["deletionTimestamp"] = json!(now);
        if graceful_pod {
            let grace = opts
                .grace_seconds
                .or_else(|| {
                    obj.pointer("/spec/terminationGracePeriodSeconds")
                        .and_then(Value::as_i64)
                })
                .unwrap_or(30);
            obj["metadata"]["deletionGracePeriodSeconds"] = json!(grace);
            // kube-apiserver dates a graceful deletion at its deadline: now + grace.
            let deadline = grace_deadline(ctx.now(), grace);
            obj["metadata"]["deletionTimestamp"] = json!(objects::rfc3339(deadline));
        } else {
            obj["metadata"]["deletionGracePeriodSeconds"] = json!(0);
        }
        if propagation == Propagation::Foreground {
            add_finalizer(&mut obj, gc::FOREGROUND_FINALIZER);
        }
        // Like kube: the orphan finalizer keeps the owner until its dependents are unlinked,
        // so a restart in between cannot turn the orphaning into a cascade.
        if orphan {
            add_finalizer(&mut obj, gc::ORPHAN_FINALIZER);
        }
        let kv = ctx
            .api
            .store
            .update(&key, objects::encode(&obj), rev)
            .await
            .map_err(ctx.store_err(name))?;
        objects::set_resource_version(&mut obj, kv.mod_revision);
        if propagation == Propagation::Foreground {
            gc::spawn_foreground(ctx.api.clone(), ctx.def.clone(), key, obj.clone());
        } else if orphan {
            gc::spawn_orphan(ctx.api.clone(), ctx.def.clone(), key, obj.clone());
        }
        return Ok(obj);
    }
    let kv = ctx
        .api
        .store
        .delete(&key, Some(rev))
        .await
        .map_err(ctx.store_err(name))?;
    objects::set_resource_version(&mut obj, kv.mod_revision);
    gc::spawn_cascade(ctx.api.clone(), ctx.def.clone(), obj.clone(), propagation);
    Ok(obj)
}

/// Longest grace a deletion deadline is dated with: any request data (a huge
/// gracePeriodSeconds) must yield a time that exists and prints as RFC 3339.
const MAX_GRACE_SECS: u64 = 100 * 365 * 24 * 3600;

/// `now + grace`, with grace clamped to `0..=MAX_GRACE_SECS`.
fn grace_deadline(now: std::time::SystemTime, grace: i64) -> std::time::SystemTime {
    let secs = u64::try_from(grace).unwrap_or(0).min(MAX_GRACE_SECS);
    now.checked_add(std::time::Duration::from_secs(secs))
        .unwrap_or(now)
}

fn add_finalizer(obj: &mut Value, f: &str) {
    let list = obj["metadata"]
        .as_object_mut()
        .map(|m| m.entry("finalizers").or_insert_with(|| json!([])));
    if let Some(Value::Array(a)) = list {
        if !a.iter().any(|x| x == f) {
            a.push(json!(f));
        }
    }
}

/// Runs what follows an object's removal from the store (dependents are cascaded in background).
pub fn after_delete(api: &std::sync::Arc<crate::api::Api>, def: &ResourceDef, obj: &Value) {
    gc::spawn_cascade(
        api.clone(),
        def.clone(),
        obj.clone(),
        Propagation::Background,
    );
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use super::*;

    #[test]
    fn grace_deadlines_are_clamped_to_printable_times() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(grace_deadline(now, 30), now + Duration::from_secs(30));
        assert_eq!(grace_deadline(now, -5), now);
        for huge in [i64::MAX, 1 << 62, 9_223_372_036] {
            let d = grace_deadline(now, huge);
            assert!(d > now);
            assert!(!objects::rfc3339(d).is_empty(), "{huge}");
        }
    }
}
