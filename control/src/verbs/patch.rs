//! PATCH: JSON patch, JSON merge patch and strategic merge patch, applied to the current object
//! and written with compare-and-swap (retried on conflict unless the patch pins a
//! resourceVersion). Server-side apply lives in `apply.rs`.

use serde_json::Value;

use crate::api::{Ctx, Reply};
use crate::objects;
use crate::status::ApiError;
use crate::verbs::create::with_warnings;
use crate::verbs::{get::scale_of, strategic, update};

const ATTEMPTS: usize = 5;

fn apply_patch(kind: &str, current: &Value, patch: &[u8]) -> Result<Value, ApiError> {
    let bad = |e: String| ApiError::BadRequest(e);
    match kind {
        "application/json-patch+json" => {
            let p: json_patch::Patch = serde_json::from_slice(patch)
                .map_err(|e| bad(format!("invalid JSON patch: {e}")))?;
            let mut out = current.clone();
            json_patch::patch(&mut out, &p).map_err(|e| ApiError::Invalid {
                group: String::new(),
                kind: "Patch".into(),
                name: objects::name_of(current).into(),
                causes: vec![(
                    String::new(),
                    format!("the JSON patch could not be applied: {e}"),
                )],
            })?;
            Ok(out)
        }
        "application/merge-patch+json" => {
            let p: Value = serde_json::from_slice(patch)
                .map_err(|e| bad(format!("invalid merge patch: {e}")))?;
            if !p.is_object() {
                return Err(bad("a merge patch must be a JSON object".into()));
            }
            let mut out = current.clone();
            json_patch::merge(&mut out, &p);
            Ok(out)
        }
        "application/strategic-merge-patch+json" => {
            let p: Value = serde_json::from_slice(patch)
                .map_err(|e| bad(format!("invalid strategic merge patch: {e}")))?;
            strategic::apply(current, &p).map_err(|e| bad(e.to_string()))
        }
        "application/apply-patch+cbor" => Err(ApiError::UnsupportedMediaType(
            "CBOR apply bodies are not implemented; send JSON".into(),
        )),
        other => Err(ApiError::UnsupportedMediaType(format!(
            "{other} is not a supported patch type"
        ))),
    }
}

pub async fn handle(ctx: &Ctx<'_>) -> Result<Reply, ApiError> {
    let name = ctx.name()?;
    let patch_type = ctx
        .content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_string();
    if patch_type == "application/apply-patch+yaml" {
        return crate::verbs::apply::handle(ctx).await;
    }
    let scale = ctx.info.subresource.as_deref() == Some("scale");
    let mut attempt = 0;
    loop {
        attempt += 1;
        let (current, rev) = ctx.current(name).await?;
        let view = if scale {
            scale_of(&current)
        } else {
            current.clone()
        };
        let patched = apply_patch(&patch_type, &view, &ctx.body)?;
        // A resourceVersion the patch itself set is a precondition; otherwise retry conflicts.
        let pinned = objects::meta_str(&patched, "resourceVersion")
            .filter(|r| objects::meta_str(&view, "resourceVersion") != Some(*r))
            .map(|r| {
                r.parse::<i64>()
                    .map_err(|_| ApiError::BadRequest(format!("invalid resourceVersion {r:?}")))
            })
            .transpose()?;
        match update::write(ctx, name, current, rev, patched, pinned).await {
            Ok((obj, warnings)) => {
                let obj = if scale { scale_of(&obj) } else { obj };
                return Ok(with_warnings(ctx.render_one(obj, 200), warnings));
            }
            Err(ApiError::Conflict { .. }) if pinned.is_none() && attempt < ATTEMPTS => continue,
            Err(e) => return Err(e),
        }
    }
}
