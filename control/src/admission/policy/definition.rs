//! ValidatingAdmissionPolicy / Binding objects: kube's defaults and validation (compile errors
//! in kube's wording: `spec.validations[0].expression: Invalid value: "...": compilation
//! failed: ERROR: <input>:1:5: ...`).

use std::sync::Arc;

use serde_json::{json, Value};

use super::conditions::{self, compile_expr, POLICY_VARS};
use super::{Compiled, Validation, MAX_EXPRESSIONS};
use crate::cel::Program;

type Cause = (String, String);

/// kube's `SetDefaults_ValidatingAdmissionPolicySpec` and binding defaults.
pub fn apply_defaults(kind: &str, obj: &mut Value) {
    let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    match kind {
        "ValidatingAdmissionPolicy" => {
            spec.entry("failurePolicy").or_insert(json!("Fail"));
            if let Some(mc) = spec
                .get_mut("matchConstraints")
                .and_then(Value::as_object_mut)
            {
                mc.entry("matchPolicy").or_insert(json!("Equivalent"));
                mc.entry("namespaceSelector").or_insert(json!({}));
                mc.entry("objectSelector").or_insert(json!({}));
                default_rules(mc.get_mut("resourceRules"));
                default_rules(mc.get_mut("excludeResourceRules"));
            }
        }
        "ValidatingAdmissionPolicyBinding" => {
            if let Some(mr) = spec
                .get_mut("matchResources")
                .and_then(Value::as_object_mut)
            {
                mr.entry("matchPolicy").or_insert(json!("Equivalent"));
                mr.entry("namespaceSelector").or_insert(json!({}));
                mr.entry("objectSelector").or_insert(json!({}));
                default_rules(mr.get_mut("resourceRules"));
                default_rules(mr.get_mut("excludeResourceRules"));
            }
            if let Some(pr) = spec.get_mut("paramRef").and_then(Value::as_object_mut) {
                if pr.contains_key("selector") || pr.contains_key("name") {
                    pr.entry("parameterNotFoundAction").or_insert(json!("Deny"));
                }
            }
        }
        _ => {}
    }
}

fn default_rules(rules: Option<&mut Value>) {
    for r in rules.and_then(Value::as_array_mut).into_iter().flatten() {
        if let Some(m) = r.as_object_mut() {
            m.entry("scope").or_insert(json!("*"));
        }
    }
}

/// Validates a policy or binding being written.
pub fn check(kind: &str, obj: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    match kind {
        "ValidatingAdmissionPolicy" => {
            compile_policy(obj, &mut causes);
        }
        "ValidatingAdmissionPolicyBinding" => check_binding(obj, &mut causes),
        _ => {}
    }
    causes
}

fn check_binding(obj: &Value, causes: &mut Vec<Cause>) {
    let spec = obj.get("spec").unwrap_or(&Value::Null);
    if spec
        .get("policyName")
        .and_then(Value::as_str)
        .unwrap_or("")
        .is_empty()
    {
        causes.push(("spec.policyName".into(), "Required value".into()));
    }
    let actions: Vec<&str> = spec
        .get("validationActions")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if actions.is_empty() {
        causes.push((
            "spec.validationActions".into(),
            "Required value: at least one validation action is required".into(),
        ));
    }
    for (i, a) in actions.iter().enumerate() {
        if !["Deny", "Warn", "Audit"].contains(a) {
            causes.push((
                format!("spec.validationActions[{i}]"),
                format!(
                    "Unsupported value: {a:?}: supported values: \"Audit\", \"Deny\", \"Warn\""
                ),
            ));
        }
    }
    if actions.contains(&"Deny") && actions.contains(&"Warn") {
        causes.push(("spec.validationActions".into(), "Invalid value: [\"Deny\",\"Warn\"]: must not contain both Deny and Warn (repeating the same validation failure information in the API response and headers serves no purpose)".into()));
    }
    if let Some(pr) = spec.get("paramRef").filter(|v| !v.is_null()) {
        let has_name = pr
            .get("name")
            .and_then(Value::as_str)
            .is_some_and(|n| !n.is_empty());
        if has_name == pr.get("selector").is_some() {
            causes.push((
                "spec.paramRef".into(),
                "Invalid value: \"object\": one of name or selector must be set".into(),
            ));
        }
        match pr.get("parameterNotFoundAction").and_then(Value::as_str) {
            None | Some("Deny" | "Allow") => {}
            Some(o) => causes.push((
                "spec.paramRef.parameterNotFoundAction".into(),
                format!("Unsupported value: {o:?}: supported values: \"Allow\", \"Deny\""),
            )),
        }
    }
}

fn text(v: &Value, k: &str) -> Option<String> {
    v.get(k).and_then(Value::as_str).map(str::to_string)
}

/// Compiles a policy; every problem becomes a cause.
pub(super) fn compile_policy(obj: &Value, causes: &mut Vec<Cause>) -> Compiled {
    let spec = obj.get("spec").cloned().unwrap_or(Value::Null);
    if spec
        .pointer("/matchConstraints/resourceRules")
        .and_then(Value::as_array)
        .is_none_or(Vec::is_empty)
    {
        causes.push((
            "spec.matchConstraints.resourceRules".into(),
            "Required value".into(),
        ));
    }
    match spec.get("failurePolicy").and_then(Value::as_str) {
        None | Some("Fail" | "Ignore") => {}
        Some(o) => causes.push((
            "spec.failurePolicy".into(),
            format!("Unsupported value: {o:?}: supported values: \"Fail\", \"Ignore\""),
        )),
    }
    let conds = conditions::compile(
        spec.get("matchConditions"),
        "spec.matchConditions",
        POLICY_VARS,
        causes,
    );
    let mut variables = Vec::new();
    let vars_raw = spec
        .get("variables")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if vars_raw.len() > MAX_EXPRESSIONS {
        causes.push((
            "spec.variables".into(),
            format!(
                "Too many: {}: must have at most {MAX_EXPRESSIONS} items",
                vars_raw.len()
            ),
        ));
    }
    for (i, v) in vars_raw.iter().take(MAX_EXPRESSIONS).enumerate() {
        let name = text(v, "name").unwrap_or_default();
        if name.is_empty() {
            causes.push((
                format!("spec.variables[{i}].name"),
                "Required value: name is not specified".into(),
            ));
        }
        let expr = text(v, "expression").unwrap_or_default();
        match compile_expr(&expr, POLICY_VARS) {
            Ok(p) => variables.push((name, p)),
            Err(e) => causes.push((
                format!("spec.variables[{i}].expression"),
                format!("Invalid value: {expr:?}: {e}"),
            )),
        }
    }
    let mut validations = Vec::new();
    let list = spec
        .get("validations")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if list.is_empty() && spec.get("auditAnnotations").is_none() {
        causes.push((
            "spec.validations".into(),
            "Required value: validations or auditAnnotations must contain at least one item".into(),
        ));
    }
    let audit_annotations = compile_audit_annotations(obj, &spec, causes);
    if list.len() > MAX_EXPRESSIONS {
        causes.push((
            "spec.validations".into(),
            format!(
                "Too many: {}: must have at most {MAX_EXPRESSIONS} items",
                list.len()
            ),
        ));
    }
    for (i, v) in list.iter().take(MAX_EXPRESSIONS).enumerate() {
        let at = format!("spec.validations[{i}]");
        let expr = text(v, "expression").unwrap_or_default();
        let program = match compile_expr(&expr, POLICY_VARS) {
            Ok(p) => p,
            Err(e) => {
                causes.push((
                    format!("{at}.expression"),
                    format!("Invalid value: {expr:?}: {e}"),
                ));
                continue;
            }
        };
        let message_expression = match text(v, "messageExpression") {
            None => None,
            Some(src) => match compile_expr(&src, POLICY_VARS) {
                Ok(p) => Some(p),
                Err(e) => {
                    causes.push((
                        format!("{at}.messageExpression"),
                        format!("Invalid value: {src:?}: {e}"),
                    ));
                    None
                }
            },
        };
        let reason = text(v, "reason").unwrap_or_else(|| "Invalid".into());
        if ![
            "Unauthorized",
            "Forbidden",
            "Invalid",
            "RequestEntityTooLarge",
        ]
        .contains(&reason.as_str())
        {
            causes.push((format!("{at}.reason"), format!("Unsupported value: {reason:?}: supported values: \"Forbidden\", \"Invalid\", \"RequestEntityTooLarge\", \"Unauthorized\"")));
        }
        validations.push(Validation {
            program,
            message: text(v, "message").filter(|m| !m.trim().is_empty()),
            message_expression,
            reason,
        });
    }
    Compiled {
        spec,
        conditions: conds,
        variables,
        validations,
        audit_annotations,
    }
}

/// kube's longest `valueExpression`, in bytes.
const MAX_AUDIT_EXPRESSION_LEN: usize = 5 * 1024;

/// `spec.auditAnnotations`: unique keys that, prefixed with `<policy name>/`, are qualified
/// names; a compiled `valueExpression` each.
fn compile_audit_annotations(
    obj: &Value,
    spec: &Value,
    causes: &mut Vec<Cause>,
) -> Vec<(String, Arc<Program>)> {
    let policy = crate::objects::name_of(obj);
    let list = spec
        .get("auditAnnotations")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if list.len() > MAX_EXPRESSIONS {
        causes.push((
            "spec.auditAnnotations".into(),
            format!(
                "Too many: {}: must have at most {MAX_EXPRESSIONS} items",
                list.len()
            ),
        ));
    }
    let mut out: Vec<(String, Arc<Program>)> = Vec::new();
    for (i, a) in list.iter().take(MAX_EXPRESSIONS).enumerate() {
        let at = format!("spec.auditAnnotations[{i}]");
        let key = text(a, "key").unwrap_or_default();
        if key.is_empty() {
            causes.push((format!("{at}.key"), "Required value".into()));
        } else {
            let qualified = format!("{policy}/{key}");
            let errs = crate::cel::format::qualified_name(&qualified);
            if !errs.is_empty() {
                causes.push((
                    format!("{at}.key"),
                    format!("Invalid value: {qualified:?}: {}", errs.join(", ")),
                ));
            }
            if out.iter().any(|(k, _)| *k == key) {
                causes.push((format!("{at}.key"), format!("Duplicate value: {key:?}")));
            }
        }
        let expr = text(a, "valueExpression").unwrap_or_default();
        if expr.is_empty() {
            causes.push((format!("{at}.valueExpression"), "Required value".into()));
            continue;
        }
        if expr.len() > MAX_AUDIT_EXPRESSION_LEN {
            causes.push((
                format!("{at}.valueExpression"),
                format!("Too long: may not be longer than {MAX_AUDIT_EXPRESSION_LEN}"),
            ));
            continue;
        }
        match compile_expr(&expr, POLICY_VARS) {
            Ok(p) => out.push((key, p)),
            Err(e) => causes.push((
                format!("{at}.valueExpression"),
                format!("Invalid value: {expr:?}: {e}"),
            )),
        }
    }
    out
}
