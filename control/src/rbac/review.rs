//! The review kinds, answered and never stored (create only): authorization.k8s.io/v1
//! SelfSubjectAccessReview (`kubectl auth can-i`), SubjectAccessReview,
//! LocalSubjectAccessReview and SelfSubjectRulesReview (`kubectl auth can-i --list`), and
//! authentication.k8s.io/v1 SelfSubjectReview (`kubectl auth whoami`).

use std::collections::BTreeMap;

use serde_json::{json, Value};

use crate::api::{Ctx, Reply};
use crate::auth::User;
use crate::authz::{aggregate, Attributes, NodeFacts};
use crate::status::ApiError;

/// Whether `group` holds review kinds (served by [`handle`], not the store).
pub fn is_review_group(group: &str) -> bool {
    matches!(group, "authorization.k8s.io" | "authentication.k8s.io")
}

fn invalid(ctx: &Ctx<'_>, field: &str, message: String) -> ApiError {
    ApiError::Invalid {
        group: ctx.def.group.into(),
        kind: ctx.def.kind.into(),
        name: String::new(),
        causes: vec![(field.into(), message)],
    }
}

fn str_of<'a>(v: &'a Value, k: &str) -> &'a str {
    v.get(k).and_then(Value::as_str).unwrap_or("")
}

/// The attributes a SubjectAccessReviewSpec asks about.
fn attributes(ctx: &Ctx<'_>, spec: &Value) -> Result<Attributes, ApiError> {
    let res = spec.get("resourceAttributes").filter(|v| !v.is_null());
    let non = spec.get("nonResourceAttributes").filter(|v| !v.is_null());
    match (res, non) {
        (Some(_), Some(n)) => Err(invalid(
            ctx,
            "spec.nonResourceAttributes",
            format!("Invalid value: {n}: cannot be specified in combination with resourceAttributes"),
        )),
        (None, None) => Err(invalid(
            ctx,
            "spec.resourceAttributes",
            "Invalid value: \"null\": exactly one of nonResourceAttributes or resourceAttributes must be specified".into(),
        )),
        (Some(r), None) => Ok(Attributes {
            verb: str_of(r, "verb").into(),
            resource_request: true,
            api_group: str_of(r, "group").into(),
            api_version: str_of(r, "version").into(),
            resource: str_of(r, "resource").into(),
            subresource: str_of(r, "subresource").into(),
            namespace: str_of(r, "namespace").into(),
            name: str_of(r, "name").into(),
            path: String::new(),
        }),
        (None, Some(n)) => Ok(Attributes {
            verb: str_of(n, "verb").into(),
            resource_request: false,
            path: str_of(n, "path").into(),
            ..Attributes::default()
        }),
    }
}

fn access_status(ctx: &Ctx<'_>, user: &User, attrs: &Attributes) -> Value {
    let d = ctx.api.authz.authorize(user, attrs, NodeFacts::default());
    let mut status = json!({"allowed": d.allowed});
    if !d.reason.is_empty() {
        status["reason"] = json!(d.reason);
    }
    status
}

/// The user a SubjectAccessReviewSpec names.
fn spec_user(spec: &Value) -> User {
    let list = |k: &str| -> Vec<String> {
        spec.get(k)
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default()
    };
    let extra: BTreeMap<String, Vec<String>> = spec
        .get("extra")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| {
                    let vals = v
                        .as_array()
                        .map(|a| {
                            a.iter()
                                .filter_map(Value::as_str)
                                .map(str::to_string)
                                .collect()
                        })
                        .unwrap_or_default();
                    (k.clone(), vals)
                })
                .collect()
        })
        .unwrap_or_default();
    User {
        name: str_of(spec, "user").into(),
        groups: list("groups"),
        uid: str_of(spec, "uid").into(),
        extra,
    }
}

/// Answers a review: the request body back with its `status` filled in, 201.
pub async fn handle(ctx: &Ctx<'_>) -> Result<Reply, ApiError> {
    if ctx.info.verb != "create" || ctx.info.name.is_some() || ctx.info.subresource.is_some() {
        return Err(ApiError::MethodNotAllowed(format!(
            "{} {} (reviews are create only)",
            ctx.info.verb, ctx.def.plural
        )));
    }
    let mut obj = crate::verbs::body_object(ctx)?;
    let api_version = ctx.def.api_version();
    obj["apiVersion"] = json!(api_version);
    obj["kind"] = json!(ctx.def.kind);
    if !obj.get("metadata").is_some_and(Value::is_object) {
        obj["metadata"] = json!({});
    }
    (ctx.def.validate)(&obj)
        .map_err(|e| ApiError::BadRequest(format!("error decoding {}: {e}", ctx.def.kind)))?;
    let spec = obj.get("spec").cloned().unwrap_or_else(|| json!({}));
    let status = match ctx.def.kind {
        "SelfSubjectAccessReview" => {
            let attrs = attributes(ctx, &spec)?;
            access_status(ctx, ctx.user, &attrs)
        }
        "SubjectAccessReview" => {
            let attrs = attributes(ctx, &spec)?;
            let user = spec_user(&spec);
            if user.name.is_empty() && user.groups.is_empty() {
                return Err(invalid(
                    ctx,
                    "spec.user",
                    "Invalid value: \"\": at least one of user or group must be specified".into(),
                ));
            }
            access_status(ctx, &user, &attrs)
        }
        "LocalSubjectAccessReview" => {
            let attrs = attributes(ctx, &spec)?;
            let ns = ctx.info.namespace.as_deref().unwrap_or("");
            if !attrs.resource_request || attrs.namespace != ns {
                return Err(invalid(
                    ctx,
                    "spec.resourceAttributes.namespace",
                    format!(
                        "Invalid value: {:?}: must match metadata.namespace",
                        attrs.namespace
                    ),
                ));
            }
            let user = spec_user(&spec);
            if user.name.is_empty() && user.groups.is_empty() {
                return Err(invalid(
                    ctx,
                    "spec.user",
                    "Invalid value: \"\": at least one of user or group must be specified".into(),
                ));
            }
            access_status(ctx, &user, &attrs)
        }
        "SelfSubjectRulesReview" => {
            let ns = str_of(&spec, "namespace");
            let found = ctx.api.authz.rules_for(ctx.user, ns);
            let mut resource_rules = Vec::new();
            let mut non_resource_rules = Vec::new();
            for r in &found.rules {
                if !r.resources.is_empty() {
                    let mut v = json!({"verbs": r.verbs, "apiGroups": r.api_groups, "resources": r.resources});
                    if !r.resource_names.is_empty() {
                        v["resourceNames"] = json!(r.resource_names);
                    }
                    resource_rules.push(v);
                }
                if !r.non_resource_urls.is_empty() {
                    non_resource_rules
                        .push(json!({"verbs": r.verbs, "nonResourceURLs": r.non_resource_urls}));
                }
            }
            let mut status = json!({
                "resourceRules": resource_rules,
                "nonResourceRules": non_resource_rules,
                "incomplete": found.incomplete,
            });
            if !found.errors.is_empty() {
                status["evaluationError"] = json!(aggregate(&found.errors));
            }
            status
        }
        "SelfSubjectReview" => {
            let u = ctx.user;
            let mut info = json!({"username": u.name});
            if !u.uid.is_empty() {
                info["uid"] = json!(u.uid);
            }
            if !u.groups.is_empty() {
                info["groups"] = json!(u.groups);
            }
            if !u.extra.is_empty() {
                info["extra"] = json!(u.extra);
            }
            json!({"userInfo": info})
        }
        other => {
            return Err(ApiError::MethodNotAllowed(format!(
                "{other} is not a review"
            )))
        }
    };
    obj["status"] = status;
    Ok(Reply::json(201, obj))
}
