//! admission.k8s.io/v1 AdmissionReview: the request a webhook gets and what its answer means.

use serde_json::{json, Value};

use super::rules::Target;
use super::Attributes;

/// The review sent for one call. `target` is the group/version/resource the webhook matched
/// (differs from the request's own under matchPolicy Equivalent).
pub fn request(
    uid: &str,
    attrs: &Attributes<'_>,
    target: &Target<'_>,
    kind: (&str, &str, &str),
    old: Option<&Value>,
    obj: Option<&Value>,
) -> Value {
    let user = attrs.user;
    let mut user_info = json!({"username": user.name, "groups": user.groups});
    if !user.uid.is_empty() {
        user_info["uid"] = json!(user.uid);
    }
    if !user.extra.is_empty() {
        user_info["extra"] = json!(user.extra);
    }
    let mut req = json!({
        "uid": uid,
        "kind": {"group": kind.0, "version": kind.1, "kind": kind.2},
        "resource": {"group": target.group, "version": target.version, "resource": target.resource},
        "requestKind": {"group": attrs.kind.0, "version": attrs.kind.1, "kind": attrs.kind.2},
        "requestResource": {"group": attrs.group, "version": attrs.version, "resource": attrs.resource},
        "operation": attrs.operation.as_str(),
        "userInfo": user_info,
        "object": obj.cloned().unwrap_or(Value::Null),
        "oldObject": old.cloned().unwrap_or(Value::Null),
        "dryRun": attrs.dry_run,
        "options": attrs.options,
    });
    if !attrs.subresource.is_empty() {
        req["subResource"] = json!(attrs.subresource);
        req["requestSubResource"] = json!(attrs.subresource);
    }
    if !attrs.name.is_empty() {
        req["name"] = json!(attrs.name);
    }
    if !attrs.namespace.is_empty() {
        req["namespace"] = json!(attrs.namespace);
    }
    json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": req})
}

/// A webhook's answer.
#[derive(Debug, Default)]
pub struct Answer {
    pub allowed: bool,
    /// `response.status` (a Status) when given.
    pub status: Value,
    /// The decoded JSONPatch, if any.
    pub patch: Option<Vec<u8>>,
    pub warnings: Vec<String>,
    pub audit_annotations: Vec<(String, String)>,
}

/// Parses an AdmissionReview answer to the request with `uid`; an error is the text kube
/// prints after `failed calling webhook "NAME": `.
pub fn parse(body: &[u8], uid: &str) -> Result<Answer, String> {
    use base64::Engine;
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| format!("received invalid webhook response: {e}"))?;
    let api_version = v.get("apiVersion").and_then(Value::as_str).unwrap_or("");
    let kind = v.get("kind").and_then(Value::as_str).unwrap_or("");
    if api_version != "admission.k8s.io/v1" || kind != "AdmissionReview" {
        return Err(format!("expected webhook response of admission.k8s.io/v1, Kind=AdmissionReview, got {api_version}, Kind={kind}"));
    }
    let resp = v
        .get("response")
        .filter(|r| r.is_object())
        .ok_or("webhook response was absent")?;
    let got = resp.get("uid").and_then(Value::as_str).unwrap_or("");
    if got != uid {
        return Err(format!("expected response.uid={uid:?}, got {got:?}"));
    }
    let allowed = resp
        .get("allowed")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let patch = match resp.get("patch").and_then(Value::as_str) {
        None | Some("") => None,
        Some(p) => {
            match resp.get("patchType").and_then(Value::as_str) {
                Some("JSONPatch") => {}
                None | Some("") => {
                    return Err("webhook returned response.patch but not response.patchType".into())
                }
                Some(other) => {
                    return Err(format!(
                        "webhook returned invalid response.patchType of {other:?}"
                    ))
                }
            }
            Some(
                base64::engine::general_purpose::STANDARD
                    .decode(p)
                    .map_err(|e| format!("webhook returned a patch that is not base64: {e}"))?,
            )
        }
    };
    if patch.is_none()
        && resp
            .get("patchType")
            .and_then(Value::as_str)
            .is_some_and(|t| !t.is_empty())
    {
        return Err("webhook returned response.patchType but not response.patch".into());
    }
    let warnings = resp
        .get("warnings")
        .and_then(Value::as_array)
        .map(|w| {
            w.iter()
                .filter_map(Value::as_str)
                // kube drops warnings that are not printable single lines, and caps their size.
                .filter(|s| !s.is_empty() && !s.contains(['\n', '\r']))
                .map(|s| s.chars().take(4096).collect())
                .collect()
        })
        .unwrap_or_default();
    let audit_annotations = resp
        .get("auditAnnotations")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_string())))
                .collect()
        })
        .unwrap_or_default();
    Ok(Answer {
        allowed,
        status: resp.get("status").cloned().unwrap_or(Value::Null),
        patch,
        warnings,
        audit_annotations,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_must_echo_the_uid_and_kind() {
        let ok = json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "response": {"uid": "u1", "allowed": true, "warnings": ["one", "two\nlines"]}});
        let a = parse(ok.to_string().as_bytes(), "u1").unwrap();
        assert!(a.allowed);
        assert_eq!(a.warnings, vec!["one".to_string()]);
        let err = parse(ok.to_string().as_bytes(), "u2").unwrap_err();
        assert_eq!(err, r#"expected response.uid="u2", got "u1""#);
        let v1beta1 = json!({"apiVersion": "admission.k8s.io/v1beta1", "kind": "AdmissionReview",
            "response": {"uid": "u1", "allowed": true}});
        assert!(parse(v1beta1.to_string().as_bytes(), "u1")
            .unwrap_err()
            .starts_with("expected webhook response of admission.k8s.io/v1"));
        assert!(parse(b"not json", "u1").is_err());
    }

    #[test]
    fn patches_need_their_type() {
        use base64::Engine;
        let p = base64::engine::general_purpose::STANDARD.encode(b"[]");
        let typed = json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "response": {"uid": "u", "allowed": true, "patch": p, "patchType": "JSONPatch"}});
        assert_eq!(
            parse(typed.to_string().as_bytes(), "u")
                .unwrap()
                .patch
                .unwrap(),
            b"[]"
        );
        let untyped = json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "response": {"uid": "u", "allowed": true, "patch": p}});
        assert!(parse(untyped.to_string().as_bytes(), "u").is_err());
    }
}
