//! PATCH: JSON patch, JSON merge patch and strategic merge patch, applied to the current object
//! and written with compare-and-swap (retried on conflict unless the patch pins a
//! resourceVersion). Server-side apply lives in `apply.rs`.

use json_patch::PatchOperation;
use serde_json::Value;

use crate::api::{Ctx, Reply, MAX_BODY};
use crate::objects;
use crate::status::ApiError;
use crate::verbs::create::with_warnings;
use crate::verbs::{get::scale_view, strategic, update};

const ATTEMPTS: usize = 5;

/// A 422 for a patch that cannot be applied (kube-apiserver's `field.Invalid` on the patch).
fn unapplicable(current: &Value, msg: String) -> ApiError {
    ApiError::Invalid {
        group: String::new(),
        kind: "Patch".into(),
        name: objects::name_of(current).into(),
        causes: vec![(String::new(), msg)],
    }
}

/// Applies a JSON patch one operation at a time. Like kube-apiserver (json-patch's
/// `AccumulatedCopySizeLimit`), the bytes `copy` operations add are capped at [`MAX_BODY`] so
/// repeated copies of the root cannot double the document without bound, and no operation may
/// nest the document deeper than [`objects::MAX_DEPTH`].
fn apply_json_patch(current: &Value, ops: &[PatchOperation]) -> Result<Value, ApiError> {
    let mut out = current.clone();
    let mut copied = 0usize;
    for (i, op) in ops.iter().enumerate() {
        let added = match op {
            PatchOperation::Add(o) => Some(&o.value),
            PatchOperation::Replace(o) => Some(&o.value),
            PatchOperation::Move(o) => out.pointer(o.from.as_str()),
            PatchOperation::Copy(o) => {
                let v = out.pointer(o.from.as_str());
                copied += v.map(objects::encoded_len).unwrap_or(0);
                if copied > MAX_BODY {
                    return Err(unapplicable(
                        current,
                        format!("the JSON patch could not be applied: copy operations would add more than {MAX_BODY} bytes"),
                    ));
                }
                v
            }
            PatchOperation::Remove(_) | PatchOperation::Test(_) => None,
        };
        if let Some(v) = added {
            let at = op.path().count();
            if at > objects::MAX_DEPTH || objects::depth_exceeds(v, objects::MAX_DEPTH - at) {
                return Err(unapplicable(
                    current,
                    format!("the JSON patch could not be applied: operation {i} nests the object more than {} levels deep", objects::MAX_DEPTH),
                ));
            }
        }
        // Each step works on our own copy, so json-patch's undo log is not needed.
        json_patch::patch_unsafe(&mut out, std::slice::from_ref(op)).map_err(|e| {
            unapplicable(
                current,
                format!(
                    "the JSON patch could not be applied: operation {i} failed at path '{}': {}",
                    e.path, e.kind
                ),
            )
        })?;
    }
    Ok(out)
}

pub(crate) fn apply_patch(kind: &str, current: &Value, patch: &[u8]) -> Result<Value, ApiError> {
    let bad = |e: String| ApiError::BadRequest(e);
    match kind {
        "application/json-patch+json" => {
            let p: json_patch::Patch = serde_json::from_slice(patch)
                .map_err(|e| bad(format!("invalid JSON patch: {e}")))?;
            apply_json_patch(current, &p.0)
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
    // Like kube: custom resources have no strategic merge metadata.
    if ctx.def.custom.is_some() && patch_type == "application/strategic-merge-patch+json" {
        return Err(ApiError::UnsupportedMediaType(
            "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml".into(),
        ));
    }
    let scale = ctx.info.subresource.as_deref() == Some("scale");
    let mut attempt = 0;
    loop {
        attempt += 1;
        let (current, rev) = ctx.current(name).await?;
        let view = if scale {
            scale_view(ctx.def, &current)
        } else {
            current.clone()
        };
        let patched = apply_patch(&patch_type, &view, &ctx.body)?;
        if !patched.is_object() {
            return Err(unapplicable(
                &view,
                "the patched object must be a JSON object".into(),
            ));
        }
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
                let obj = if scale {
                    scale_view(ctx.def, &obj)
                } else {
                    obj
                };
                return Ok(with_warnings(ctx.render_one(obj, 200), warnings));
            }
            Err(ApiError::Conflict { .. }) if pinned.is_none() && attempt < ATTEMPTS => continue,
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const JSON_PATCH: &str = "application/json-patch+json";

    #[test]
    fn copies_of_the_root_are_capped() {
        let current = json!({"metadata": {"name": "a"}, "data": {"k": "x".repeat(1000)}});
        // Each op doubles the document: 2^40 without a cap.
        let ops: Vec<Value> = (0..40)
            .map(|i| json!({"op": "copy", "from": "", "path": format!("/c{i}")}))
            .collect();
        let err =
            apply_patch(JSON_PATCH, &current, &serde_json::to_vec(&ops).unwrap()).unwrap_err();
        assert_eq!(err.code(), 422, "{err}");
        assert!(err.to_string().contains("copy operations"), "{err}");
        // A few small copies are fine.
        let ops = json!([{"op": "copy", "from": "/data", "path": "/more"}]);
        let out = apply_patch(JSON_PATCH, &current, ops.to_string().as_bytes()).unwrap();
        assert_eq!(out["more"], current["data"]);
    }

    #[test]
    fn patches_may_not_nest_deeper_than_the_store_reads_back() {
        let current = json!({"metadata": {"name": "a"}});
        let nested = |n: usize| -> Value {
            serde_json::from_str(&format!("{}{}", "[".repeat(n), "]".repeat(n))).unwrap()
        };
        // A value of depth 100 under 27 path tokens fits in 127 levels; under 28 it does not.
        let at = |zeros: usize| {
            json!([
                {"op": "add", "path": "/x", "value": nested(100)},
                {"op": "add", "path": format!("/x{}", "/0".repeat(zeros)), "value": nested(100)},
            ])
        };
        let out = apply_patch(JSON_PATCH, &current, at(26).to_string().as_bytes()).unwrap();
        assert!(!objects::depth_exceeds(&out, objects::MAX_DEPTH));
        assert!(serde_json::from_slice::<Value>(&serde_json::to_vec(&out).unwrap()).is_ok());
        let err = apply_patch(JSON_PATCH, &current, at(27).to_string().as_bytes()).unwrap_err();
        assert_eq!(err.code(), 422, "{err}");
        // Moving a deep value under a deep path is refused too.
        let steps = json!([
            {"op": "add", "path": "/x", "value": nested(100)},
            {"op": "add", "path": "/y", "value": nested(100)},
            {"op": "move", "from": "/y", "path": format!("/x{}", "/0".repeat(99))},
        ]);
        let err = apply_patch(JSON_PATCH, &current, steps.to_string().as_bytes()).unwrap_err();
        assert!(err.to_string().contains("levels deep"), "{err}");
    }

    #[test]
    fn failed_operations_name_their_index() {
        let current = json!({"metadata": {"name": "a"}});
        let ops = json!([{"op": "test", "path": "/metadata/name", "value": "a"},
            {"op": "remove", "path": "/nope"}]);
        let err = apply_patch(JSON_PATCH, &current, ops.to_string().as_bytes()).unwrap_err();
        assert_eq!(err.code(), 422);
        assert!(err.to_string().contains("operation 1"), "{err}");
    }
}
