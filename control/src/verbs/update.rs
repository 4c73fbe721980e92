//! PUT: replace an object (or its status or scale subresource) with compare-and-swap on its
//! resourceVersion. The write path here is shared with PATCH.

use serde_json::{json, Value};

use crate::admission::{self, Operation};
use crate::api::{Ctx, Reply};
use crate::objects;
use crate::status::ApiError;
use crate::verbs::create::with_warnings;
use crate::verbs::{body_object, validate};

pub async fn handle(ctx: &Ctx<'_>) -> Result<Reply, ApiError> {
    let name = ctx.name()?;
    let body = body_object(ctx)?;
    let (current, rev) = ctx.current(name).await?;
    let precondition = objects::meta_str(&body, "resourceVersion")
        .filter(|r| !r.is_empty())
        .map(|r| {
            r.parse::<i64>()
                .map_err(|_| ApiError::BadRequest(format!("invalid resourceVersion {r:?}")))
        })
        .transpose()?;
    let (obj, warnings) = write(ctx, name, current, rev, body, precondition).await?;
    let obj = if ctx.info.subresource.as_deref() == Some("scale") {
        crate::verbs::get::scale_view(ctx.def, &obj)
    } else {
        obj
    };
    Ok(with_warnings(ctx.render_one(obj, 200), warnings))
}

/// Applies the request's subresource rules to `incoming` over `current`.
fn merge_for_subresource(
    ctx: &Ctx<'_>,
    current: &Value,
    mut incoming: Value,
) -> Result<Value, ApiError> {
    match ctx.info.subresource.as_deref() {
        None => {
            // The main resource cannot change status where a status subresource exists.
            let Some(m) = incoming.as_object_mut() else {
                return Err(ApiError::BadRequest(
                    "the object must be a JSON object".into(),
                ));
            };
            if ctx.def.kind == crate::certificates::csr::KIND {
                return Ok(crate::certificates::csr::merge_main(current, incoming));
            }
            if ctx.def.has_subresource("status") {
                match current.get("status") {
                    Some(s) => {
                        m.insert("status".into(), s.clone());
                    }
                    None => {
                        if ctx.def.kind != "Namespace" {
                            m.remove("status");
                        }
                    }
                }
            }
            Ok(incoming)
        }
        Some("status") if ctx.def.kind == crate::certificates::csr::KIND => {
            Ok(crate::certificates::csr::merge_status(
                current,
                &incoming,
                &objects::rfc3339(ctx.now()),
            ))
        }
        Some("approval") if ctx.def.kind == crate::certificates::csr::KIND => {
            Ok(crate::certificates::csr::merge_approval(
                current,
                &incoming,
                &objects::rfc3339(ctx.now()),
            ))
        }
        // kube's nodeStatusStrategy resets only `spec` (GetResetFields: spec): labels and
        // annotations written through nodes/status are kept, which is how flannel publishes
        // its annotations with `patch nodes/status` alone. Other kinds, and server-side apply
        // to status (whose ownership records status fields only), keep status only here.
        Some("status")
            if ctx.def.kind == "Node"
                && ctx.def.group.is_empty()
                && !ctx.content_type.starts_with("application/apply-patch") =>
        {
            Ok(node_status_update(current, incoming))
        }
        Some("status") => {
            let mut out = current.clone();
            out["status"] = incoming.get("status").cloned().unwrap_or(json!({}));
            // Server-side apply to status records its ownership in the incoming object.
            if ctx.content_type.starts_with("application/apply-patch") {
                if let Some(m) = incoming.pointer("/metadata/managedFields") {
                    out["metadata"]["managedFields"] = m.clone();
                }
            }
            Ok(out)
        }
        Some("scale") => {
            let replicas = incoming
                .pointer("/spec/replicas")
                .and_then(Value::as_i64)
                .filter(|r| *r >= 0)
                .ok_or_else(|| ApiError::Invalid {
                    group: "autoscaling".into(),
                    kind: "Scale".into(),
                    name: objects::name_of(current).into(),
                    causes: vec![(
                        "spec.replicas".into(),
                        "Invalid value: must be a non-negative integer".into(),
                    )],
                })?;
            let mut out = current.clone();
            match ctx.def.custom.as_ref().and_then(|c| c.scale.as_ref()) {
                Some(paths) => paths.set_replicas(&mut out, replicas),
                None => out["spec"]["replicas"] = json!(replicas),
            }
            Ok(out)
        }
        Some(other) => Err(ApiError::MethodNotAllowed(format!(
            "update of subresource {other}"
        ))),
    }
}

/// kube's nodeStatusStrategy.PrepareForUpdate: the incoming Node with the stored spec.
/// Server-owned metadata (uid, creationTimestamp, managedFields, ...) is restored by [`write`].
fn node_status_update(current: &Value, mut incoming: Value) -> Value {
    match (current.get("spec"), incoming.as_object_mut()) {
        (Some(spec), Some(m)) => {
            m.insert("spec".into(), spec.clone());
        }
        (None, Some(m)) => {
            m.remove("spec");
        }
        _ => {}
    }
    incoming
}

/// Writes `incoming` over `current` at revision `rev`; the result is the stored object.
pub async fn write(
    ctx: &Ctx<'_>,
    name: &str,
    current: Value,
    rev: i64,
    incoming: Value,
    precondition: Option<i64>,
) -> Result<(Value, Vec<String>), ApiError> {
    if let Some(want) = precondition {
        if want != rev {
            return Err(ApiError::Conflict {
                group: ctx.def.group.into(),
                resource: ctx.def.plural.into(),
                name: name.into(),
                reason: "the object has been modified; please apply your changes to the latest version and try again".into(),
            });
        }
    }
    let mut new = merge_for_subresource(ctx, &current, incoming)?;
    if !new.get("metadata").is_some_and(Value::is_object) {
        return Err(ApiError::BadRequest("metadata must be an object".into()));
    }
    if objects::depth_exceeds(&new, objects::MAX_DEPTH) {
        return Err(ApiError::Invalid {
            group: ctx.def.group.into(),
            kind: ctx.def.kind.into(),
            name: name.into(),
            causes: vec![(
                String::new(),
                format!(
                    "the object nests more than {} levels deep",
                    objects::MAX_DEPTH
                ),
            )],
        });
    }
    let body_name = objects::name_of(&new).to_string();
    if body_name.is_empty() {
        new["metadata"]["name"] = json!(name);
    } else if body_name != name {
        return Err(ApiError::BadRequest(format!(
            "the name of the object ({body_name}) does not match the name on the URL ({name})"
        )));
    }
    if let Some(ns) = ctx.namespace() {
        match objects::meta_str(&new, "namespace") {
            None | Some("") => new["metadata"]["namespace"] = json!(ns),
            Some(n) if n == ns => {}
            Some(n) => {
                return Err(ApiError::BadRequest(format!(
                "the namespace of the object ({n}) does not match the namespace on the URL ({ns})"
            )))
            }
        }
    }
    if let (Some(a), Some(b)) = (
        objects::meta_str(&new, "uid"),
        objects::meta_str(&current, "uid"),
    ) {
        if a != b && !a.is_empty() {
            return Err(ApiError::Conflict {
                group: ctx.def.group.into(),
                resource: ctx.def.plural.into(),
                name: name.into(),
                reason: format!(
                    "Precondition failed: UID in precondition: {a}, UID in object meta: {b}"
                ),
            });
        }
    }
    // Server-owned metadata comes from the stored object.
    for field in [
        "uid",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "generation",
    ] {
        match current["metadata"].get(field) {
            Some(v) => new["metadata"][field] = v.clone(),
            None => {
                if let Some(m) = new["metadata"].as_object_mut() {
                    m.remove(field);
                }
            }
        }
    }
    if !ctx.content_type.starts_with("application/apply-patch") {
        // Ownership is the server's record, never taken from the body (an empty list resets
        // it, like kube-apiserver); a named field manager takes ownership of the fields it
        // changed (what server-side apply checks).
        let reset = new
            .pointer("/metadata/managedFields")
            .and_then(Value::as_array)
            .is_some_and(Vec::is_empty);
        if let Some(m) = new["metadata"].as_object_mut() {
            match current.pointer("/metadata/managedFields") {
                Some(kept) if !reset => m.insert("managedFields".into(), kept.clone()),
                _ => m.remove("managedFields"),
            };
        }
        if let Some(manager) = update_manager(ctx).filter(|_| !reset) {
            let now = objects::rfc3339(ctx.now());
            crate::managed::record_update(
                &current,
                &mut new,
                manager,
                &ctx.def.api_version(),
                &now,
            );
        }
    }
    if ctx.info.subresource.is_none() {
        crate::defaults::apply_to_spec(ctx.def.kind, &mut new);
    }
    if ctx.def.kind == "Namespace" {
        keep_namespace_finalizer(&current, &mut new);
    }
    if (crate::defaults::has_generation(ctx.def.kind) || ctx.def.custom.is_some())
        && new.get("spec") != current.get("spec")
    {
        let g = current
            .pointer("/metadata/generation")
            .and_then(Value::as_i64)
            .unwrap_or(0);
        new["metadata"]["generation"] = json!(g + 1);
    }
    if ctx.def.kind == "Secret" {
        crate::defaults::fold_string_data(&mut new);
    }
    if ctx.def.kind == "Service" {
        crate::ipalloc::keep_on_update(&current, &mut new)?;
        crate::portalloc::prepare(ctx.api.node_port_range, Some(&current), &mut new)?;
    }
    crate::limitranger::admit_update(ctx, &mut new).await?;
    crate::priority::admit_update(ctx, &current, &mut new).await?;
    let admitted = admission::mutate(ctx, Operation::Update, Some(&current), &mut new).await?;
    let warnings = validate(ctx, &mut new)?;
    crate::rbac::escalation::admit(ctx, Some(&current), &new)?;
    if ctx.def.kind == crate::certificates::csr::KIND {
        crate::certificates::csr::admit_update(ctx, &current, &new)?;
    }
    if ctx.info.subresource.is_none() {
        let causes = crate::semantic::check_update(ctx.def.kind, &current, &new);
        if !causes.is_empty() {
            return Err(ApiError::Invalid {
                group: ctx.def.group.into(),
                kind: ctx.def.kind.into(),
                name: name.into(),
                causes,
            });
        }
    }
    let checked = admission::validate(ctx, Operation::Update, Some(&current), &new).await?;
    crate::quota_admission::admit_update(ctx, &current, &new).await?;
    let warnings = [warnings, admitted, checked].concat();
    objects::set_resource_version(&mut new, rev);
    if objects::encode(&new) == objects::encode(&current) {
        // A no-op write keeps the resourceVersion, like kube-apiserver.
        return Ok((current, warnings));
    }
    // Like kube-apiserver's ShouldDeleteDuringUpdate: a pod in graceful deletion
    // (deletionGracePeriodSeconds > 0) stays until its kubelet deletes it with grace 0, so
    // status updates or label patches meanwhile do not remove it.
    let finalized = new.pointer("/metadata/deletionTimestamp").is_some()
        && new
            .pointer("/metadata/deletionGracePeriodSeconds")
            .and_then(Value::as_i64)
            .unwrap_or(0)
            == 0
        && new
            .pointer("/metadata/finalizers")
            .and_then(Value::as_array)
            .is_none_or(|f| f.is_empty())
        && (ctx.def.kind != "Namespace" || crate::gc::namespace_finalized(&new));
    let store = ctx.api.store.as_ref();
    if ctx.dry_run() {
        if ctx.def.kind == "Service" {
            crate::portalloc::check_taken(store, Some(&current), &new).await?;
        }
        return Ok((new, warnings));
    }
    let reserved = if ctx.def.kind == "Service" {
        crate::portalloc::reserve(store, ctx.api.node_port_range, Some(&current), &mut new).await?
    } else {
        Vec::new()
    };
    let written = write_through(ctx, name, rev, &mut new, finalized).await;
    if ctx.def.kind == "Service" {
        match &written {
            // Ports the Service no longer holds (type back to ClusterIP, port removed) go back.
            Ok(()) => crate::portalloc::release_dropped(store, &current, &new).await,
            Err(_) => crate::portalloc::release_reserved(store, &new, &reserved).await,
        }
    }
    written.map(|()| (new, warnings))
}

/// The `kubernetes` spec finalizer of a namespace is the server's: it goes when the
/// namespace's contents are deleted, never through a client's update.
fn keep_namespace_finalizer(current: &Value, new: &mut Value) {
    let fin = crate::gc::NAMESPACE_FINALIZER;
    let held = |o: &Value| {
        o.pointer("/spec/finalizers")
            .and_then(Value::as_array)
            .is_some_and(|f| f.iter().any(|x| x == fin))
    };
    if !held(current) || held(new) {
        return;
    }
    match new
        .pointer_mut("/spec/finalizers")
        .and_then(Value::as_array_mut)
    {
        Some(f) => f.push(json!(fin)),
        None => {
            if let Some(spec) = new.get_mut("spec").and_then(Value::as_object_mut) {
                spec.insert("finalizers".into(), json!([fin]));
            }
        }
    }
}

/// The store write of [`write`]: an update, or the delete of a finalized object.
async fn write_through(
    ctx: &Ctx<'_>,
    name: &str,
    rev: i64,
    new: &mut Value,
    finalized: bool,
) -> Result<(), ApiError> {
    let key = ctx.key(name);
    if finalized {
        let kv = ctx
            .api
            .store
            .delete(&key, Some(rev))
            .await
            .map_err(ctx.store_err(name))?;
        objects::set_resource_version(new, kv.mod_revision);
        crate::verbs::delete::after_delete(ctx.api, ctx.def, new);
        return Ok(());
    }
    let kv = ctx
        .api
        .store
        .update(
            &key,
            crate::crd::stored_bytes(ctx.api, ctx.def, new).await?,
            rev,
        )
        .await
        .map_err(ctx.store_err(name))?;
    objects::set_resource_version(new, kv.mod_revision);
    Ok(())
}

/// The manager a non-apply write is recorded under: `fieldManager`, or like kube-apiserver the
/// User-Agent's prefix when none is given.
pub fn update_manager<'a>(ctx: &'a Ctx<'_>) -> Option<&'a str> {
    let agent = ctx.user_agent.split('/').next().unwrap_or("").trim();
    ctx.query
        .get("fieldManager")
        .or((!agent.is_empty()).then_some(agent))
}
