//! Requests to a resource version that is stored as another version (autoscaling/v1
//! HorizontalPodAutoscalers, stored as v2, as kube-apiserver does): bodies are checked against
//! the requested version's schema, converted to the stored version and handled by the usual
//! verbs; answers (objects, lists, watch events) are converted back. Patches apply to the
//! requested version's view of the object, then write through an update with the read
//! resourceVersion as precondition (retried on conflicts).

use bytes::Bytes;
use serde_json::Value;
use tokio::sync::mpsc;

use crate::api::{Ctx, Reply};
use crate::hpa_conversion::{v1_to_v2, v2_to_v1};
use crate::objects;
use crate::resources::{ResourceDef, Resources};
use crate::status::ApiError;
use crate::verbs::create::with_warnings;
use crate::verbs::{self, body_object};

const PATCH_ATTEMPTS: usize = 5;

/// The stored version's definition, when `def` is served by conversion.
pub fn storage_def<'a>(r: &'a Resources, def: &ResourceDef) -> Option<&'a ResourceDef> {
    match (def.group, def.version, def.kind) {
        ("autoscaling", "v1", "HorizontalPodAutoscaler") => {
            r.find("autoscaling", "v2", "horizontalpodautoscalers")
        }
        _ => None,
    }
}

fn to_storage(obj: &Value) -> Result<Value, ApiError> {
    v1_to_v2(obj).map_err(ApiError::BadRequest)
}

/// Converts objects and lists of the stored kind in an answer; Tables and Status pass.
fn to_view(body: &mut Value, storage: &ResourceDef, view: &ResourceDef) {
    let kind = body.get("kind").and_then(Value::as_str).unwrap_or("");
    if kind == storage.kind {
        *body = v2_to_v1(body);
    } else if kind == storage.list_kind() {
        body["apiVersion"] = Value::String(view.api_version());
        if let Some(items) = body.get_mut("items").and_then(Value::as_array_mut) {
            for i in items {
                *i = v2_to_v1(i);
            }
        }
    }
}

fn reply_to_view(reply: Reply, storage: &ResourceDef, view: &ResourceDef) -> Reply {
    match reply {
        Reply::Json {
            code,
            mut body,
            content_type,
            warnings,
        } => {
            to_view(&mut body, storage, view);
            Reply::Json {
                code,
                body,
                content_type,
                warnings,
            }
        }
        Reply::Stream(mut rx) => {
            let (tx, out) = mpsc::channel::<Bytes>(256);
            let (storage_kind, view_version) = (storage.kind, view.api_version());
            tokio::spawn(async move {
                while let Some(line) = rx.recv().await {
                    let line = match serde_json::from_slice::<Value>(&line) {
                        Ok(mut ev) if ev["object"]["kind"] == storage_kind => {
                            if ev["type"] == "BOOKMARK" {
                                ev["object"]["apiVersion"] = Value::String(view_version.clone());
                            } else {
                                ev["object"] = v2_to_v1(&ev["object"]);
                            }
                            let mut b = serde_json::to_vec(&ev).unwrap_or_default();
                            b.push(b'\n');
                            Bytes::from(b)
                        }
                        _ => line,
                    };
                    if tx.send(line).await.is_err() {
                        return;
                    }
                }
            });
            Reply::Stream(out)
        }
        other => other,
    }
}

/// A context for the stored version carrying `body` (JSON) instead of the client's.
fn storage_ctx<'a>(ctx: &Ctx<'a>, storage: &'a ResourceDef, body: Bytes) -> Ctx<'a> {
    Ctx {
        api: ctx.api,
        info: ctx.info,
        def: storage,
        query: ctx.query,
        accept: ctx.accept,
        content_type: "application/json",
        user_agent: ctx.user_agent,
        body,
        user: ctx.user,
    }
}

pub async fn handle(ctx: &Ctx<'_>, storage: &ResourceDef) -> Result<Reply, ApiError> {
    let view = ctx.def;
    match ctx.info.verb.as_str() {
        "get" | "list" | "watch" | "delete" | "deletecollection" => {
            let c = storage_ctx(ctx, storage, ctx.body.clone());
            let c = Ctx {
                content_type: ctx.content_type,
                ..c
            };
            let reply = match ctx.info.verb.as_str() {
                "get" => verbs::get::handle(&c).await?,
                "list" => verbs::list::handle(&c).await?,
                "watch" => verbs::watch::handle(&c).await?,
                "delete" => verbs::delete::handle(&c).await?,
                _ => verbs::delete_collection::handle(&c).await?,
            };
            Ok(reply_to_view(reply, storage, view))
        }
        "create" | "update" => {
            let mut obj = body_object(ctx)?;
            // The client's version decides what is valid and which fields are unknown.
            let warnings = verbs::validate(ctx, &mut obj)?;
            let stored = to_storage(&obj)?;
            let c = storage_ctx(
                ctx,
                storage,
                Bytes::from(serde_json::to_vec(&stored).unwrap_or_default()),
            );
            let reply = if ctx.info.verb == "create" {
                verbs::create::handle(&c).await?
            } else {
                verbs::update::handle(&c).await?
            };
            Ok(add_warnings(reply_to_view(reply, storage, view), warnings))
        }
        "patch" => patch(ctx, storage).await,
        other => Err(ApiError::MethodNotAllowed(format!(
            "{other} {}",
            view.plural
        ))),
    }
}

fn add_warnings(reply: Reply, mut w: Vec<String>) -> Reply {
    if let Reply::Json { warnings, .. } = &reply {
        w.extend(warnings.iter().cloned());
    }
    with_warnings(reply, w)
}

async fn patch(ctx: &Ctx<'_>, storage: &ResourceDef) -> Result<Reply, ApiError> {
    let view = ctx.def;
    let patch_type = ctx.content_type.split(';').next().unwrap_or("").trim();
    if patch_type.starts_with("application/apply-patch") {
        return Err(ApiError::UnsupportedMediaType(format!(
            "server-side apply to {} is not implemented for {}; apply it as {}",
            view.qualified(),
            view.api_version(),
            storage.api_version()
        )));
    }
    let name = ctx.name()?;
    let reader = storage_ctx(ctx, storage, Bytes::new());
    for attempt in 1..=PATCH_ATTEMPTS {
        let (current, rev) = reader.current(name).await?;
        let shown = v2_to_v1(&current);
        let mut patched = verbs::patch::apply_patch(patch_type, &shown, &ctx.body)?;
        if !patched.is_object() {
            return Err(ApiError::BadRequest(
                "the patched object must be a JSON object".into(),
            ));
        }
        // A resourceVersion the patch set is the client's precondition; else ours.
        let pinned = objects::meta_str(&patched, "resourceVersion")
            != objects::meta_str(&shown, "resourceVersion");
        if !pinned {
            objects::set_resource_version(&mut patched, rev);
        }
        let warnings = verbs::validate(ctx, &mut patched)?;
        let stored = to_storage(&patched)?;
        let c = storage_ctx(
            ctx,
            storage,
            Bytes::from(serde_json::to_vec(&stored).unwrap_or_default()),
        );
        match verbs::update::handle(&c).await {
            Ok(reply) => return Ok(add_warnings(reply_to_view(reply, storage, view), warnings)),
            Err(ApiError::Conflict { .. }) if !pinned && attempt < PATCH_ATTEMPTS => continue,
            Err(e) => return Err(e),
        }
    }
    Err(ApiError::Conflict {
        group: view.group.into(),
        resource: view.plural.into(),
        name: name.into(),
        reason: "the object kept changing during the patch; try again".into(),
    })
}
