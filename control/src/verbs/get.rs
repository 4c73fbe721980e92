//! GET of one object (and its status or scale subresource).

use serde_json::{json, Value};

use crate::api::{Ctx, Reply};
use crate::status::ApiError;

pub async fn handle(ctx: &Ctx<'_>) -> Result<Reply, ApiError> {
    let name = ctx.name()?;
    let (obj, _) = ctx.current(name).await?;
    if ctx.info.subresource.as_deref() == Some("scale") {
        return Ok(Reply::json(200, scale_view(ctx.def, &obj)));
    }
    Ok(ctx.render_one(obj, 200))
}

/// The Scale view of `obj`: a custom resource's from its CRD's paths, else [`scale_of`].
pub fn scale_view(def: &crate::resources::ResourceDef, obj: &Value) -> Value {
    match def.custom.as_ref().and_then(|c| c.scale.as_ref()) {
        Some(paths) => paths.view(obj),
        None => scale_of(obj),
    }
}

/// The autoscaling/v1 Scale view of a scalable object.
pub fn scale_of(obj: &Value) -> Value {
    let meta = &obj["metadata"];
    // A ReplicationController's selector is the label map itself.
    let selector = obj
        .pointer("/spec/selector/matchLabels")
        .or_else(|| {
            obj.pointer("/spec/selector")
                .filter(|_| obj["kind"] == "ReplicationController")
        })
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default();
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": meta["name"], "namespace": meta["namespace"], "uid": meta["uid"],
            "resourceVersion": meta["resourceVersion"], "creationTimestamp": meta["creationTimestamp"],
        },
        "spec": {"replicas": obj.pointer("/spec/replicas").cloned().unwrap_or(json!(0))},
        "status": {
            "replicas": obj.pointer("/status/replicas").cloned().unwrap_or(json!(0)),
            "selector": selector,
        },
    })
}
