//! `matchConditions` (webhooks and ValidatingAdmissionPolicies): named CEL expressions over
//! `object`, `oldObject`, `request` (and for policies `params`, `namespaceObject`,
//! `variables`), all of which must be true for the webhook or policy to apply. Compiled once
//! per configuration revision; checked at create/update with kube's wording.

use std::sync::Arc;

use serde_json::Value;

use crate::cel::{self, cost, CelError, Program};

/// kube: at most 64 match conditions.
pub const MAX_CONDITIONS: usize = 64;

/// The variables webhook matchConditions see.
pub const WEBHOOK_VARS: &[&str] = &["object", "oldObject", "request", "authorizer"];
/// The variables policy expressions see.
pub const POLICY_VARS: &[&str] = &[
    "object",
    "oldObject",
    "request",
    "params",
    "namespaceObject",
    "variables",
    "authorizer",
];

#[derive(Debug, Clone)]
pub struct Condition {
    pub name: String,
    pub program: Arc<Program>,
}

/// Compiles one expression for `vars`.
pub fn compile_expr(source: &str, vars: &[&str]) -> Result<Arc<Program>, CelError> {
    cel::compile(source, vars)
}

/// The `authorizer` and `authorizer.requestResource` variables for a request: kube's
/// authorizer library checking for the requesting user with the server's chain.
pub fn authorizer_vars(
    chain: &crate::authz::Authorizer,
    attrs: &super::super::Attributes<'_>,
) -> [(&'static str, cel::Value); 2] {
    let authz = cel::authz::Authz::new(chain, attrs.user);
    let request = authz.request_resource(
        &attrs.group,
        &attrs.resource,
        &attrs.subresource,
        &attrs.namespace,
        &attrs.name,
    );
    [
        ("authorizer", authz.value()),
        ("authorizer.requestResource", request),
    ]
}

/// Compiles `matchConditions` at `path`; problems go to `causes` as kube words them.
pub fn compile(
    raw: Option<&Value>,
    path: &str,
    vars: &[&str],
    causes: &mut Vec<(String, String)>,
) -> Vec<Condition> {
    let Some(list) = raw.filter(|v| !v.is_null()) else {
        return Vec::new();
    };
    let Some(list) = list.as_array() else {
        causes.push((path.into(), "Invalid value: must be an array".into()));
        return Vec::new();
    };
    if list.len() > MAX_CONDITIONS {
        causes.push((
            path.into(),
            format!(
                "Too many: {}: must have at most {MAX_CONDITIONS} items",
                list.len()
            ),
        ));
        return Vec::new();
    }
    let mut out = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (i, c) in list.iter().enumerate() {
        let at = format!("{path}[{i}]");
        let name = c.get("name").and_then(Value::as_str).unwrap_or("");
        if name.is_empty() {
            causes.push((format!("{at}.name"), "Required value".into()));
        } else if !crate::selectors::valid_label_key(name) {
            causes.push((format!("{at}.name"), format!("Invalid value: {name:?}: name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')")));
        } else if !seen.insert(name.to_string()) {
            causes.push((format!("{at}.name"), format!("Duplicate value: {name:?}")));
        }
        let expr = c.get("expression").and_then(Value::as_str).unwrap_or("");
        if expr.trim().is_empty() {
            causes.push((format!("{at}.expression"), "Required value".into()));
            continue;
        }
        match compile_expr(expr, vars) {
            Ok(program) => out.push(Condition {
                name: name.to_string(),
                program,
            }),
            Err(e) => causes.push((
                format!("{at}.expression"),
                format!("Invalid value: {expr:?}: {e}"),
            )),
        }
    }
    out
}

/// What evaluating the conditions decided.
#[derive(Debug, PartialEq)]
pub enum Decision {
    Match,
    NoMatch,
    /// A condition failed to evaluate (failurePolicy decides): its name and the error.
    Error(String, String),
}

/// Evaluates `conditions` with `vars`: the first false one means no match (kube evaluates
/// them all and lets a false win over an error; so does this).
pub fn evaluate(conditions: &[Condition], vars: &[(&str, cel::Value)]) -> Decision {
    let mut error = None;
    for c in conditions {
        match cel::eval(&c.program, vars, cost::PER_CALL_LIMIT).0 {
            Ok(cel::Value::Bool(true)) => {}
            Ok(cel::Value::Bool(false)) => return Decision::NoMatch,
            Ok(other) => {
                error.get_or_insert((
                    c.name.clone(),
                    format!("expression did not evaluate to a bool: {other:?}"),
                ));
            }
            Err(e) => {
                error.get_or_insert((c.name.clone(), e.to_string()));
            }
        }
    }
    match error {
        Some((name, e)) => Decision::Error(name, e),
        None => Decision::Match,
    }
}

/// The `request` variable: the AdmissionReview request without the objects.
pub fn request_value(attrs: &super::super::Attributes<'_>) -> Value {
    let target = super::super::rules::Target {
        group: &attrs.group,
        version: &attrs.version,
        resource: &attrs.resource,
    };
    let kind = (
        attrs.kind.0.as_str(),
        attrs.kind.1.as_str(),
        attrs.kind.2.as_str(),
    );
    let mut review = super::super::review::request("", attrs, &target, kind, None, None);
    let mut req = review["request"].take();
    if let Some(m) = req.as_object_mut() {
        m.remove("object");
        m.remove("oldObject");
        m.remove("uid");
    }
    req
}

/// Compiled webhook matchConditions by their text (a configuration compiles once per change).
fn webhook_cache(
) -> &'static std::sync::Mutex<std::collections::HashMap<String, Arc<Vec<Condition>>>> {
    static CACHE: std::sync::OnceLock<
        std::sync::Mutex<std::collections::HashMap<String, Arc<Vec<Condition>>>>,
    > = std::sync::OnceLock::new();
    CACHE.get_or_init(Default::default)
}

/// Whether a webhook's `matchConditions` let it see the request (true when it has none). An
/// evaluation error fails the request unless the webhook's failurePolicy is Ignore.
pub fn webhook_matches(
    chain: &crate::authz::Authorizer,
    hook: &Value,
    attrs: &super::super::Attributes<'_>,
    old: Option<&Value>,
    obj: Option<&Value>,
) -> Result<bool, crate::status::ApiError> {
    let Some(raw) = hook
        .get("matchConditions")
        .filter(|v| v.as_array().is_some_and(|a| !a.is_empty()))
    else {
        return Ok(true);
    };
    let name = hook.get("name").and_then(Value::as_str).unwrap_or("");
    let key = raw.to_string();
    let cached = webhook_cache()
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(&key)
        .cloned();
    let conds = match cached {
        Some(c) => c,
        None => {
            let mut causes = Vec::new();
            let c = Arc::new(compile(
                Some(raw),
                "matchConditions",
                WEBHOOK_VARS,
                &mut causes,
            ));
            if let Some((f, m)) = causes.first() {
                // Refused at write; only a configuration stored before could get here.
                return Err(crate::status::ApiError::Internal(format!(
                    "failed calling webhook {name:?}: {f}: {m}"
                )));
            }
            let mut cache = webhook_cache().lock().unwrap_or_else(|p| p.into_inner());
            if cache.len() > 4096 {
                cache.clear();
            }
            cache.insert(key, c.clone());
            c
        }
    };
    let null = Value::Null;
    let mut vars = vec![
        ("object", cel::to_cel(obj.unwrap_or(&null))),
        ("oldObject", cel::to_cel(old.unwrap_or(&null))),
        ("request", cel::to_cel(&request_value(attrs))),
    ];
    if conds.iter().any(|c| c.program.uses("authorizer")) {
        vars.extend(authorizer_vars(chain, attrs));
    }
    match evaluate(&conds, &vars) {
        Decision::Match => Ok(true),
        Decision::NoMatch => Ok(false),
        Decision::Error(cond, e) => {
            if hook.get("failurePolicy").and_then(Value::as_str) == Some("Ignore") {
                tracing::warn!(webhook = name, condition = %cond, error = %e, "match condition failed, skipping the webhook");
                return Ok(false);
            }
            Err(crate::status::ApiError::Internal(format!(
                "failed calling webhook {name:?}: failed to evaluate match condition {cond:?}: {e}"
            )))
        }
    }
}
