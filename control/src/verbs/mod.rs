//! One file per API verb.

pub mod apply;
pub mod attach;
pub mod connect;
pub mod converted;
pub mod create;
pub mod delete;
pub mod delete_collection;
pub mod eviction;
pub mod exec;
pub mod get;
pub mod list;
pub mod log;
pub mod node_proxy;
pub mod patch;
pub mod portforward;
pub mod strategic;
pub mod update;
pub mod watch;

use serde_json::Value;

use crate::api::Ctx;
use crate::status::ApiError;

/// Checks the write options in the query like kube-apiserver's `ValidateCreateOptions` (and
/// Update/Patch/Delete): `dryRun` may only be `All`, `fieldValidation` only `Ignore`, `Warn`
/// or `Strict`; anything else is a 422 naming the value instead of a silent default.
pub fn check_options(ctx: &Ctx<'_>) -> Result<(), ApiError> {
    let kind = match ctx.info.verb.as_str() {
        "create" => "CreateOptions",
        "update" => "UpdateOptions",
        "patch" => "PatchOptions",
        "delete" | "deletecollection" => "DeleteOptions",
        _ => return Ok(()),
    };
    let mut causes = Vec::new();
    if let Some(v) = ctx.query.get("dryRun").filter(|v| *v != "All") {
        causes.push(dry_run_cause(v));
    }
    if kind != "DeleteOptions" {
        if let Some(v) = ctx
            .query
            .get("fieldValidation")
            .filter(|v| !matches!(*v, "Ignore" | "Warn" | "Strict"))
        {
            causes.push((
                "fieldValidation".to_string(),
                format!("Unsupported value: {v:?}: supported values: \"\", \"Ignore\", \"Strict\", \"Warn\""),
            ));
        }
    }
    if causes.is_empty() {
        return Ok(());
    }
    Err(invalid_options(kind, causes))
}

/// The cause for an unsupported `dryRun` value.
pub fn dry_run_cause(v: &str) -> (String, String) {
    (
        "dryRun".into(),
        format!("Unsupported value: {v:?}: supported values: \"All\""),
    )
}

/// A 422 for request options (`CreateOptions.meta.k8s.io` and the like).
pub fn invalid_options(kind: &str, causes: Vec<(String, String)>) -> ApiError {
    ApiError::Invalid {
        group: "meta.k8s.io".into(),
        kind: kind.into(),
        name: String::new(),
        causes,
    }
}

/// Parses the request body as a JSON object; protobuf and other encodings get a clear 415.
pub fn body_object(ctx: &Ctx<'_>) -> Result<Value, ApiError> {
    let ct = ctx.content_type.split(';').next().unwrap_or("").trim();
    if ct == "application/vnd.kubernetes.protobuf" {
        return crate::protobuf::decode(&ctx.body).map_err(|e| {
            if e.is_unsupported() {
                ApiError::UnsupportedMediaType(e.to_string())
            } else {
                ApiError::BadRequest(e.to_string())
            }
        });
    }
    let v: Value = serde_json::from_slice(&ctx.body)
        .map_err(|e| ApiError::BadRequest(format!("invalid JSON body: {e}")))?;
    if !v.is_object() {
        return Err(ApiError::BadRequest(
            "the request body must be a JSON object".into(),
        ));
    }
    Ok(v)
}

/// Checks an incoming object: kind/apiVersion, names, labels, typed schema and unknown fields
/// per `fieldValidation` (Strict fails, Warn returns warnings, Ignore drops them).
pub fn validate(ctx: &Ctx<'_>, obj: &mut Value) -> Result<Vec<String>, ApiError> {
    let def = ctx.def;
    let name = crate::objects::name_of(obj).to_string();
    let invalid = |field: &str, msg: String| ApiError::Invalid {
        group: def.group.into(),
        kind: def.kind.into(),
        name: name.clone(),
        causes: vec![(field.into(), msg)],
    };
    let api_version = def.api_version();
    match obj.get("apiVersion").and_then(Value::as_str) {
        None => obj["apiVersion"] = Value::String(api_version.clone()),
        Some(v) if v == api_version => {}
        Some(v) => return Err(ApiError::BadRequest(format!("the API version in the data ({v}) does not match the expected API version ({api_version})"))),
    }
    match obj.get("kind").and_then(Value::as_str) {
        None => obj["kind"] = Value::String(def.kind.into()),
        Some(k) if k == def.kind => {}
        Some(k) => {
            return Err(ApiError::BadRequest(format!(
                "the kind in the data ({k}) does not match the expected kind ({})",
                def.kind
            )))
        }
    }
    if !obj.get("metadata").is_some_and(Value::is_object) {
        return Err(invalid("metadata", "metadata must be an object".into()));
    }
    if let Some(p) = crate::validation::name_problem(def.kind, &name) {
        return Err(invalid("metadata.name", p));
    }
    for field in ["labels", "annotations"] {
        if let Some(m) = obj["metadata"].get(field) {
            let Some(m) = m.as_object() else {
                return Err(invalid(
                    &format!("metadata.{field}"),
                    "must be a map of strings".into(),
                ));
            };
            let mut size = 0;
            for (k, v) in m {
                let Some(v) = v.as_str() else {
                    return Err(invalid(
                        &format!("metadata.{field}"),
                        format!("value of {k:?} must be a string"),
                    ));
                };
                if !crate::selectors::valid_label_key(k) {
                    return Err(invalid(&format!("metadata.{field}"), format!("Invalid value: {k:?}: name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character")));
                }
                if field == "labels" && !crate::selectors::valid_label_value(v) {
                    return Err(invalid("metadata.labels", format!("Invalid value: {v:?}: a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character")));
                }
                size += k.len() + v.len();
            }
            if field == "annotations" && size > 256 * 1024 {
                return Err(invalid(
                    "metadata.annotations",
                    "Too long: must have at most 262144 bytes".into(),
                ));
            }
        }
    }
    let mut unknown = (def.validate)(obj)
        .map_err(|e| ApiError::BadRequest(format!("error decoding {} {name:?}: {e}", def.kind)))?;
    if let Some(custom) = &def.custom {
        unknown = crate::crd::admit(def, custom, obj)?;
    }
    // Status writes carry the stored spec; like kube-apiserver only spec writes are checked.
    if ctx.info.subresource.is_none() && def.custom.is_none() {
        let mut causes = crate::semantic::check(def.kind, obj);
        if def.group == crate::crd::GROUP {
            crate::crd::definition::default(obj);
            causes.extend(crate::crd::definition::check(obj));
        }
        if !causes.is_empty() {
            return Err(ApiError::Invalid {
                group: def.group.into(),
                kind: def.kind.into(),
                name,
                causes,
            });
        }
    }
    if unknown.is_empty() {
        return Ok(Vec::new());
    }
    let msgs: Vec<String> = unknown
        .iter()
        .map(|f| format!("unknown field \"{f}\""))
        .collect();
    let mode = ctx.query.get("fieldValidation").unwrap_or("Warn");
    if mode == "Strict" {
        return Err(ApiError::BadRequest(format!(
            "strict decoding error: {}",
            msgs.join(", ")
        )));
    }
    // Like a typed decode, unknown fields are dropped rather than stored.
    for f in &unknown {
        remove_path(obj, f);
    }
    Ok(if mode == "Ignore" { Vec::new() } else { msgs })
}

/// Removes the field at a dotted path with `[n]` list indexes (as reported by validation).
fn remove_path(obj: &mut Value, path: &str) {
    let mut segs: Vec<String> = Vec::new();
    for part in path.split('.') {
        let mut rest = part;
        if let Some(i) = rest.find('[') {
            segs.push(rest[..i].to_string());
            rest = &rest[i..];
            while let Some(end) = rest.find(']') {
                segs.push(rest[..=end].to_string());
                rest = &rest[end + 1..];
            }
        } else {
            segs.push(rest.to_string());
        }
    }
    let Some((last, parents)) = segs.split_last() else {
        return;
    };
    let mut cur = obj;
    for s in parents {
        let next = if let Some(idx) = s.strip_prefix('[').and_then(|x| x.strip_suffix(']')) {
            idx.parse::<usize>().ok().and_then(|i| cur.get_mut(i))
        } else {
            cur.get_mut(s.as_str())
        };
        match next {
            Some(n) => cur = n,
            None => return,
        }
    }
    if let Some(m) = cur.as_object_mut() {
        m.remove(last.as_str());
    }
}
