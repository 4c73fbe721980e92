//! Requests to a resource version that is stored as another version, as kube-apiserver does:
//! autoscaling/v1 HorizontalPodAutoscalers (stored as v2) and events.k8s.io/v1 Events (stored
//! as core/v1 Events). Bodies are checked against the requested version's schema, converted to
//! the stored version and handled by the usual verbs; answers (objects, lists, watch events)
//! are converted back. Patches apply to the requested version's view of the object, then write
//! through an update with the read resourceVersion as precondition (retried on conflicts).

use bytes::Bytes;
use serde_json::Value;
use tokio::sync::mpsc;

use crate::api::{Ctx, Reply};
use crate::events_v1;
use crate::hpa_conversion::{v1_to_v2, v2_to_v1};
use crate::objects;
use crate::request::Query;
use crate::resources::{ResourceDef, Resources};
use crate::status::ApiError;
use crate::verbs::create::with_warnings;
use crate::verbs::{self, body_object};

const PATCH_ATTEMPTS: usize = 5;

/// The conversions served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Conversion {
    /// autoscaling/v1 ⇄ autoscaling/v2 HorizontalPodAutoscaler.
    Hpa,
    /// events.k8s.io/v1 ⇄ core/v1 Event.
    Events,
}

impl Conversion {
    fn of(def: &ResourceDef) -> Option<Self> {
        match (def.group, def.version, def.kind) {
            ("autoscaling", "v1", "HorizontalPodAutoscaler") => Some(Self::Hpa),
            ("events.k8s.io", "v1", "Event") => Some(Self::Events),
            _ => None,
        }
    }

    fn to_view(self, stored: &Value) -> Value {
        match self {
            Self::Hpa => v2_to_v1(stored),
            Self::Events => events_v1::core_to_v1(stored),
        }
    }

    fn to_storage(self, view: &Value) -> Result<Value, ApiError> {
        match self {
            Self::Hpa => v1_to_v2(view).map_err(ApiError::BadRequest),
            Self::Events => Ok(events_v1::v1_to_core(view)),
        }
    }

    /// The request's parameters for the stored version: field selectors name the stored
    /// version's fields (kube's field label conversion).
    fn storage_query(self, query: &Query) -> Result<Query, ApiError> {
        let Some(selector) = query.get("fieldSelector").filter(|_| self == Self::Events) else {
            return Ok(query.clone());
        };
        let mapped = events_v1::field_selector(selector).map_err(|label| {
            ApiError::BadRequest(format!(
                "invalid fieldSelector: field label not supported: {label}"
            ))
        })?;
        Ok(query.with("fieldSelector", &mapped))
    }

    /// The checks of writes through this version beyond its schema, on the stored form
    /// (`old` for updates): kube's strict events.k8s.io/v1 Event validation.
    fn check(
        self,
        view: &ResourceDef,
        stored: &Value,
        old: Option<&Value>,
    ) -> Result<(), ApiError> {
        let causes = match (self, old) {
            (Self::Hpa, _) => return Ok(()),
            (Self::Events, None) => events_v1::check_v1_create(stored),
            (Self::Events, Some(old)) => events_v1::check_v1_update(stored, old),
        };
        if causes.is_empty() {
            return Ok(());
        }
        Err(ApiError::Invalid {
            group: view.group.into(),
            kind: view.kind.into(),
            name: objects::name_of(stored).into(),
            causes,
        })
    }
}

/// The stored version's definition, when `def` is served by conversion.
pub fn storage_def<'a>(r: &'a Resources, def: &ResourceDef) -> Option<&'a ResourceDef> {
    match Conversion::of(def)? {
        Conversion::Hpa => r.find("autoscaling", "v2", "horizontalpodautoscalers"),
        Conversion::Events => r.find("", "v1", "events"),
    }
}

/// Whether `obj` (an object or list) is of the stored version.
fn is_stored(obj: &Value, storage: &ResourceDef, kind: &str) -> bool {
    obj.get("kind").and_then(Value::as_str) == Some(kind)
        && obj.get("apiVersion").and_then(Value::as_str) == Some(&storage.api_version())
}

/// Converts objects and lists of the stored kind in an answer; Tables and Status pass.
fn to_view(body: &mut Value, conv: Conversion, storage: &ResourceDef, view: &ResourceDef) {
    if is_stored(body, storage, storage.kind) {
        *body = conv.to_view(body);
    } else if is_stored(body, storage, &storage.list_kind()) {
        body["apiVersion"] = Value::String(view.api_version());
        if let Some(items) = body.get_mut("items").and_then(Value::as_array_mut) {
            for i in items {
                *i = conv.to_view(i);
            }
        }
    }
}

fn reply_to_view(
    reply: Reply,
    conv: Conversion,
    storage: &ResourceDef,
    view: &ResourceDef,
) -> Reply {
    match reply {
        Reply::Json {
            code,
            mut body,
            content_type,
            warnings,
        } => {
            to_view(&mut body, conv, storage, view);
            Reply::Json {
                code,
                body,
                content_type,
                warnings,
            }
        }
        Reply::Stream(mut rx) => {
            let (tx, out) = mpsc::channel::<Bytes>(256);
            let (storage_kind, storage_version) = (storage.kind, storage.api_version());
            let view_version = view.api_version();
            tokio::spawn(async move {
                while let Some(line) = rx.recv().await {
                    let line = match serde_json::from_slice::<Value>(&line) {
                        Ok(mut ev)
                            if ev["object"]["kind"] == storage_kind
                                && ev["object"]["apiVersion"] == storage_version.as_str() =>
                        {
                            if ev["type"] == "BOOKMARK" {
                                ev["object"]["apiVersion"] = Value::String(view_version.clone());
                            } else {
                                ev["object"] = conv.to_view(&ev["object"]);
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
fn storage_ctx<'a>(
    ctx: &Ctx<'a>,
    storage: &'a ResourceDef,
    query: &'a Query,
    body: Bytes,
) -> Ctx<'a> {
    Ctx {
        api: ctx.api,
        info: ctx.info,
        def: storage,
        query,
        accept: ctx.accept,
        content_type: "application/json",
        user_agent: ctx.user_agent,
        body,
        user: ctx.user,
    }
}

pub async fn handle(ctx: &Ctx<'_>, storage: &ResourceDef) -> Result<Reply, ApiError> {
    let view = ctx.def;
    let conv = Conversion::of(view)
        .ok_or_else(|| ApiError::Internal(format!("{} has no conversion", view.qualified())))?;
    let query = conv.storage_query(ctx.query)?;
    match ctx.info.verb.as_str() {
        "get" | "list" | "watch" | "delete" | "deletecollection" => {
            let c = storage_ctx(ctx, storage, &query, ctx.body.clone());
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
            Ok(reply_to_view(reply, conv, storage, view))
        }
        "create" | "update" => {
            let mut obj = body_object(ctx)?;
            // The client's version decides what is valid and which fields are unknown.
            let warnings = verbs::validate(ctx, &mut obj)?;
            let stored = conv.to_storage(&obj)?;
            let c = storage_ctx(
                ctx,
                storage,
                &query,
                Bytes::from(serde_json::to_vec(&stored).unwrap_or_default()),
            );
            let reply = if ctx.info.verb == "create" {
                conv.check(view, &stored, None)?;
                verbs::create::handle(&c).await?
            } else {
                if conv == Conversion::Events {
                    let (old, _) = c.current(ctx.name()?).await?;
                    conv.check(view, &stored, Some(&old))?;
                }
                verbs::update::handle(&c).await?
            };
            Ok(add_warnings(
                reply_to_view(reply, conv, storage, view),
                warnings,
            ))
        }
        "patch" => patch(ctx, conv, storage, &query).await,
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

async fn patch(
    ctx: &Ctx<'_>,
    conv: Conversion,
    storage: &ResourceDef,
    query: &Query,
) -> Result<Reply, ApiError> {
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
    let reader = storage_ctx(ctx, storage, query, Bytes::new());
    for attempt in 1..=PATCH_ATTEMPTS {
        let (current, rev) = reader.current(name).await?;
        let shown = conv.to_view(&current);
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
        let stored = conv.to_storage(&patched)?;
        conv.check(view, &stored, Some(&current))?;
        let c = storage_ctx(
            ctx,
            storage,
            query,
            Bytes::from(serde_json::to_vec(&stored).unwrap_or_default()),
        );
        match verbs::update::handle(&c).await {
            Ok(reply) => {
                return Ok(add_warnings(
                    reply_to_view(reply, conv, storage, view),
                    warnings,
                ))
            }
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
