//! POST: create an object (or a pod binding), with defaulting, validation, generateName and
//! dryRun. Nothing is written unless every check passed.

use serde_json::{json, Value};

use crate::admission::Operation;
use crate::api::{Ctx, Reply};
use crate::objects;
use crate::status::ApiError;
use crate::verbs::{body_object, validate};

/// Fails unless the namespace exists and is not terminating.
pub async fn check_namespace(ctx: &Ctx<'_>, ns: &str) -> Result<(), ApiError> {
    let key = ctx
        .api
        .resources
        .find("", "v1", "namespaces")
        .map(|d| d.key(None, ns))
        .ok_or_else(|| ApiError::Internal("namespaces not served".into()))?;
    // Admission's namespace cache (a miss is read from the store).
    let cached = ctx
        .api
        .informers
        .namespaces
        .get(ctx.api.store.as_ref(), &key)
        .await?
        .ok_or_else(|| ApiError::NotFound {
            group: String::new(),
            resource: "namespaces".into(),
            name: ns.into(),
        })?;
    if cached.obj.pointer("/metadata/deletionTimestamp").is_some() {
        // kube's NamespaceLifecycle admission.
        return Err(ApiError::Forbidden {
            group: ctx.def.group.into(),
            resource: ctx.def.plural.into(),
            name: String::new(),
            message: format!(
                "unable to create new content in namespace {ns} because it is being terminated"
            ),
        });
    }
    Ok(())
}

pub async fn handle(ctx: &Ctx<'_>) -> Result<Reply, ApiError> {
    if ctx.info.subresource.as_deref() == Some("binding") {
        return bind(ctx).await;
    }
    if ctx.info.subresource.as_deref() == Some("eviction") {
        return crate::verbs::eviction::handle(ctx).await;
    }
    if ctx.info.subresource.as_deref() == Some("token") {
        return crate::serviceaccount::token_request::handle(ctx).await;
    }
    if ctx.info.name.is_some() || ctx.info.subresource.is_some() {
        return Err(ApiError::MethodNotAllowed(format!(
            "POST to {}/{}",
            ctx.def.plural,
            ctx.info.name.as_deref().unwrap_or("")
        )));
    }
    let mut obj = body_object(ctx)?;
    let obj_ref = &mut obj;
    prepare_new(ctx, obj_ref)?;
    // Like kube-apiserver, the creator owns every field it set (defaults included, server
    // allocations such as clusterIP not), so a later server-side apply conflicts with it.
    if let Some(manager) = crate::verbs::update::update_manager(ctx) {
        let now = objects::rfc3339(ctx.now());
        crate::managed::record_update(&json!({}), &mut obj, manager, &ctx.def.api_version(), &now);
    }
    crate::service_alloc::prepare_new(ctx.api, ctx.def.kind, &mut obj)?;
    if ctx.def.kind == crate::certificates::csr::KIND {
        crate::certificates::csr::prepare_new(ctx.user, &mut obj);
    }
    if ctx.def.group == crate::crd::GROUP {
        crate::crd::definition::prepare_new(&mut obj);
        crate::crd::definition::check_count(ctx.api).await?;
    }
    if ctx.def.kind == "PersistentVolumeClaim" {
        crate::storage::admit_claim(ctx.api, &mut obj).await?;
    }
    crate::limitranger::admit_new(ctx, &mut obj).await?;
    crate::priority::admit_new(ctx, &mut obj).await?;
    crate::ingressclass::admit_new(ctx, &mut obj).await?;
    crate::inuse_protection::admit_new(ctx, &mut obj);
    crate::serviceaccount::admission::admit(ctx, &mut obj).await?;
    let admitted = crate::admission::mutate(ctx, Operation::Create, None, &mut obj).await?;
    let warnings = validate(ctx, &mut obj)?;
    crate::rbac::escalation::admit(ctx, None, &obj)?;
    let ns = ctx.namespace().map(str::to_string);
    if let Some(ns) = &ns {
        check_namespace(ctx, ns).await?;
    }
    let checked = crate::admission::validate(ctx, Operation::Create, None, &obj).await?;
    crate::quota_admission::admit_new(ctx, &obj).await?;
    let warnings = [warnings, admitted, checked].concat();
    let name = objects::name_of(&obj).to_string();
    if ctx.dry_run() {
        let (existing, _) = ctx
            .api
            .store
            .get(&ctx.key(&name))
            .await
            .map_err(ctx.store_err(&name))?;
        if existing.is_some() {
            return Err(ApiError::AlreadyExists {
                group: ctx.def.group.into(),
                resource: ctx.def.plural.into(),
                name,
            });
        }
        if ctx.def.kind == "Service" {
            crate::portalloc::check_taken(ctx.api.store.as_ref(), None, &obj).await?;
        }
        return Ok(with_warnings(ctx.render_one(obj, 201), warnings));
    }
    let held = crate::service_alloc::allocate_new(ctx.api, ctx.def.kind, &mut obj).await?;
    let kv = match ctx
        .api
        .store
        .create(
            &ctx.key(&name),
            crate::crd::stored_bytes(ctx.api, ctx.def, &obj).await?,
        )
        .await
    {
        Ok(kv) => kv,
        Err(e) => {
            // Leave nothing behind: addresses and ports go back when the object was not written.
            held.release(ctx.api.store.as_ref(), &obj).await;
            return Err(ctx.store_err(&name)(e));
        }
    };
    objects::set_resource_version(&mut obj, kv.mod_revision);
    tracing::debug!(key = %kv.key, rev = kv.mod_revision, "created");
    Ok(with_warnings(ctx.render_one(obj, 201), warnings))
}

pub fn with_warnings(mut reply: Reply, w: Vec<String>) -> Reply {
    if let Reply::Json { warnings, .. } = &mut reply {
        *warnings = w;
    }
    reply
}

/// Fills server-owned metadata of a new object and applies defaults.
pub fn prepare_new(ctx: &Ctx<'_>, obj: &mut Value) -> Result<(), ApiError> {
    let meta = obj
        .get_mut("metadata")
        .and_then(Value::as_object_mut)
        .ok_or_else(|| ApiError::BadRequest("metadata must be an object".into()))?;
    if meta
        .get("resourceVersion")
        .and_then(Value::as_str)
        .is_some_and(|r| !r.is_empty())
    {
        return Err(ApiError::BadRequest(
            "resourceVersion should not be set on objects to be created".into(),
        ));
    }
    let name = meta
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    if name.is_empty() {
        match meta.get("generateName").and_then(Value::as_str) {
            Some(g) if !g.is_empty() => {
                let g: String = g.chars().take(58).collect();
                meta.insert(
                    "name".into(),
                    json!(format!("{g}{}", objects::name_suffix())),
                );
            }
            _ => {
                return Err(ApiError::Invalid {
                    group: ctx.def.group.into(),
                    kind: ctx.def.kind.into(),
                    name: String::new(),
                    causes: vec![(
                        "metadata.name".into(),
                        "Required value: name or generateName is required".into(),
                    )],
                })
            }
        }
    }
    if ctx.def.namespaced {
        let url_ns = ctx.info.namespace.as_deref().ok_or_else(|| {
            ApiError::BadRequest(format!("{} must be created in a namespace", ctx.def.plural))
        })?;
        match meta.get("namespace").and_then(Value::as_str) {
            None | Some("") => {
                meta.insert("namespace".into(), json!(url_ns));
            }
            Some(ns) if ns == url_ns => {}
            Some(ns) => {
                return Err(ApiError::BadRequest(format!("the namespace of the provided object ({ns}) does not match the namespace sent on the request ({url_ns})")))
            }
        }
    } else {
        meta.remove("namespace");
    }
    meta.insert("uid".into(), json!(objects::new_uid()));
    meta.insert(
        "creationTimestamp".into(),
        json!(objects::rfc3339(ctx.now())),
    );
    meta.remove("deletionTimestamp");
    meta.remove("deletionGracePeriodSeconds");
    meta.remove("managedFields");
    if crate::defaults::has_generation(ctx.def.kind) || ctx.def.custom.is_some() {
        meta.insert("generation".into(), json!(1));
    } else {
        meta.remove("generation");
    }
    if ctx.def.kind == "Namespace" {
        let n = meta.get("name").cloned().unwrap_or(Value::Null);
        let labels = meta.entry("labels").or_insert_with(|| json!({}));
        if let Some(l) = labels.as_object_mut() {
            l.insert("kubernetes.io/metadata.name".into(), n);
        }
    }
    crate::defaults::apply(ctx.def.kind, obj);
    Ok(())
}

/// Marks a bound pod `PodScheduled=True`, as kube-apiserver's binding does
/// (`podutil.UpdatePodCondition`): a condition already True keeps its transition time; one
/// that was False (the scheduler's "Unschedulable") turns True now and loses its reason.
pub fn set_scheduled(pod: &mut Value, now: &str) {
    let status = pod
        .as_object_mut()
        .map(|o| o.entry("status").or_insert_with(|| json!({})));
    let Some(status) = status.and_then(Value::as_object_mut) else {
        return;
    };
    let conditions = status.entry("conditions").or_insert_with(|| json!([]));
    if !conditions.is_array() {
        *conditions = json!([]);
    }
    let Some(list) = conditions.as_array_mut() else {
        return;
    };
    let fresh = json!({"type": "PodScheduled", "status": "True", "lastProbeTime": null,
        "lastTransitionTime": now});
    match list
        .iter_mut()
        .find(|c| c.get("type").and_then(Value::as_str) == Some("PodScheduled"))
    {
        Some(c) if c.get("status").and_then(Value::as_str) == Some("True") => {}
        Some(c) => *c = fresh,
        None => list.push(fresh),
    }
}

/// POST pods/<name>/binding: sets spec.nodeName once, and the PodScheduled condition.
async fn bind(ctx: &Ctx<'_>) -> Result<Reply, ApiError> {
    let name = ctx.name()?;
    let body = body_object(ctx)?;
    let node = body
        .pointer("/target/name")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .ok_or_else(|| ApiError::BadRequest("binding target.name is required".into()))?
        .to_string();
    let (mut pod, rev) = ctx.current(name).await?;
    if let Some(existing) = pod.pointer("/spec/nodeName").and_then(Value::as_str) {
        return Err(ApiError::Conflict {
            group: String::new(),
            resource: "pods/binding".into(),
            name: name.into(),
            reason: format!("pod {name} is already assigned to node \"{existing}\""),
        });
    }
    pod["spec"]["nodeName"] = json!(node);
    set_scheduled(&mut pod, &objects::rfc3339(ctx.now()));
    if !ctx.dry_run() {
        ctx.api
            .store
            .update(&ctx.key(name), objects::encode(&pod), rev)
            .await
            .map_err(ctx.store_err(name))?;
    }
    Ok(Reply::json(
        201,
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binding_marks_the_pod_scheduled() {
        let mut pod = json!({"spec": {}, "status": {"phase": "Pending", "conditions": [
            {"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
             "message": "0/1 nodes are available", "lastTransitionTime": "2026-01-01T00:00:00Z"}]}});
        set_scheduled(&mut pod, "2026-12-06T08:00:00Z");
        assert_eq!(
            pod["status"]["conditions"],
            json!([{"type": "PodScheduled", "status": "True", "lastProbeTime": null,
                "lastTransitionTime": "2026-12-06T08:00:00Z"}])
        );
        let mut bare = json!({"spec": {}});
        set_scheduled(&mut bare, "t1");
        assert_eq!(bare["status"]["conditions"][0]["status"], "True");
        set_scheduled(&mut bare, "t2");
        assert_eq!(bare["status"]["conditions"][0]["lastTransitionTime"], "t1");
        assert_eq!(bare["status"]["conditions"].as_array().unwrap().len(), 1);
    }
}
