//! CRD validation rules (`x-kubernetes-validations`): compiled with the schema (one program
//! per rule, per CRD version), evaluated on create and update with `self` bound to the value
//! at the schema node carrying the rule, and `oldSelf` to the stored value at the same place
//! (transition rules run only on updates where that old value exists). Violations read like
//! kube's: `spec: Invalid value: "object": <message>`.

use std::sync::Arc;

use serde_json::Value;

use crate::cel::{self, cost, CelError, Program};

use super::schema::{Cause, Schema};

/// How many rules one schema node may carry, and one CRD version in all (bounds compile work).
pub const MAX_RULES_PER_NODE: usize = 64;
pub const MAX_RULES: usize = 512;

/// kube's `reason` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    Invalid,
    Forbidden,
    Required,
    Duplicate,
}

/// One compiled rule.
#[derive(Debug, Clone)]
pub struct Rule {
    pub program: Arc<Program>,
    pub message: Option<String>,
    pub message_expression: Option<Arc<Program>>,
    pub reason: Reason,
    /// Where violations are reported, relative to the node (`.spec.replicas` → `spec.replicas`).
    pub field_path: Option<String>,
}

impl Rule {
    fn is_transition(&self) -> bool {
        self.program.uses("oldSelf")
    }
}

/// Compiles the `x-kubernetes-validations` of one schema node at `path`.
pub(crate) fn compile(
    raw: &Value,
    path: &str,
    count: &mut usize,
    causes: &mut Vec<Cause>,
) -> Vec<Rule> {
    let path = format!("{path}.x-kubernetes-validations");
    let Some(list) = raw.as_array() else {
        causes.push((path, "Invalid value: must be an array".into()));
        return Vec::new();
    };
    if list.len() > MAX_RULES_PER_NODE {
        causes.push((
            path,
            format!(
                "Too many: {}: must have at most {MAX_RULES_PER_NODE} items",
                list.len()
            ),
        ));
        return Vec::new();
    }
    let mut rules = Vec::new();
    for (i, r) in list.iter().enumerate() {
        let at = format!("{path}[{i}]");
        *count += 1;
        if *count > MAX_RULES {
            causes.push((
                at,
                format!("Too many: the schema has more than {MAX_RULES} validation rules"),
            ));
            return rules;
        }
        let text = |k: &str| r.get(k).and_then(Value::as_str).map(str::to_string);
        let Some(source) = text("rule").filter(|s| !s.trim().is_empty()) else {
            causes.push((
                format!("{at}.rule"),
                "Required value: rule is not specified".into(),
            ));
            continue;
        };
        let program = match cel::compile(&source, &["self", "oldSelf"]) {
            Ok(p) => p,
            Err(e) => {
                causes.push((
                    format!("{at}.rule"),
                    format!("Invalid value: {source:?}: {e}"),
                ));
                continue;
            }
        };
        let message = text("message");
        if let Some(m) = &message {
            if m.trim().is_empty() {
                causes.push((
                    format!("{at}.message"),
                    format!("Invalid value: {m:?}: message must be non-empty if specified"),
                ));
            } else if m.contains('\n') {
                causes.push((
                    format!("{at}.message"),
                    format!("Invalid value: {m:?}: message must not contain line breaks"),
                ));
            }
        }
        let message_expression = match text("messageExpression") {
            None => None,
            Some(src) if src.trim().is_empty() => {
                causes.push((
                    format!("{at}.messageExpression"),
                    "Required value: messageExpression must be non-empty if specified".into(),
                ));
                None
            }
            Some(src) => match cel::compile(&src, &["self", "oldSelf"]) {
                Ok(p) => Some(p),
                Err(e) => {
                    causes.push((
                        format!("{at}.messageExpression"),
                        format!("Invalid value: {src:?}: messageExpression {e}"),
                    ));
                    None
                }
            },
        };
        let reason = match text("reason").as_deref() {
            None | Some("FieldValueInvalid") => Reason::Invalid,
            Some("FieldValueForbidden") => Reason::Forbidden,
            Some("FieldValueRequired") => Reason::Required,
            Some("FieldValueDuplicate") => Reason::Duplicate,
            Some(other) => {
                causes.push((format!("{at}.reason"), format!("Unsupported value: {other:?}: supported values: \"FieldValueDuplicate\", \"FieldValueForbidden\", \"FieldValueInvalid\", \"FieldValueRequired\"")));
                Reason::Invalid
            }
        };
        let field_path = match text("fieldPath") {
            None => None,
            Some(fp) => match parse_field_path(&fp) {
                Some(p) => Some(p),
                None => {
                    causes.push((format!("{at}.fieldPath"), format!("Invalid value: {fp:?}: fieldPath must be a valid path: expected a path like .spec.replicas or ['key']")));
                    None
                }
            },
        };
        if r.get("optionalOldSelf").and_then(Value::as_bool) == Some(true) {
            causes.push((
                format!("{at}.optionalOldSelf"),
                "Forbidden: optionalOldSelf is not implemented in pea-control".into(),
            ));
        }
        rules.push(Rule {
            program,
            message,
            message_expression,
            reason,
            field_path,
        });
    }
    rules
}

/// `.a.b['c-d']` → `a.b[c-d]` (kube prints field paths that way); `None` when malformed.
fn parse_field_path(fp: &str) -> Option<String> {
    let mut out = String::new();
    let mut rest = fp;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('.') {
            let end = r.find(['.', '[']).unwrap_or(r.len());
            let name = &r[..end];
            if name.is_empty()
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            {
                return None;
            }
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(name);
            rest = &r[end..];
        } else if let Some(r) = rest.strip_prefix("['") {
            let end = r.find("']")?;
            out.push_str(&format!("[{}]", &r[..end]));
            rest = &r[end + 2..];
        } else {
            return None;
        }
    }
    Some(out)
}

fn join(path: &str, field: &str) -> String {
    match (path.is_empty(), field.starts_with('[')) {
        (true, _) => field.to_string(),
        (false, true) => format!("{path}{field}"),
        (false, false) => format!("{path}.{field}"),
    }
}

fn type_name(s: &Schema, v: &Value) -> &'static str {
    match s.ty {
        Some(t) => match t {
            super::schema::Type::Object => "object",
            super::schema::Type::Array => "array",
            super::schema::Type::String => "string",
            super::schema::Type::Integer => "integer",
            super::schema::Type::Number => "number",
            super::schema::Type::Boolean => "boolean",
        },
        None => match v {
            Value::Object(_) => "object",
            Value::Array(_) => "array",
            Value::String(_) => "string",
            _ => "object",
        },
    }
}

/// Whether any node carries rules (most CRDs have none: the walk is skipped).
pub fn any(s: &Schema) -> bool {
    !s.rules.is_empty()
        || s.properties.values().any(any)
        || s.additional.as_deref().is_some_and(any)
        || s.items.as_deref().is_some_and(any)
}

/// Evaluates every rule under `s` against `v` (and `old` on updates); returns the violations.
pub fn check(s: &Schema, v: &Value, old: Option<&Value>) -> Vec<Cause> {
    let mut causes = Vec::new();
    let mut budget = cost::RUNTIME_BUDGET;
    walk(s, v, old, "", &mut budget, &mut causes);
    causes
}

fn walk(
    s: &Schema,
    v: &Value,
    old: Option<&Value>,
    path: &str,
    budget: &mut u64,
    causes: &mut Vec<Cause>,
) {
    if *budget == 0 {
        return;
    }
    if !s.rules.is_empty() {
        let this = cel::to_cel(v);
        let old_cel = old.map(cel::to_cel);
        for rule in &s.rules {
            if rule.is_transition() && old_cel.is_none() {
                continue;
            }
            let mut vars = vec![("self", this.clone())];
            if let Some(o) = &old_cel {
                vars.push(("oldSelf", o.clone()));
            }
            let (result, spent) = cel::eval(&rule.program, &vars, *budget);
            *budget = budget.saturating_sub(spent);
            let field = match &rule.field_path {
                Some(fp) => join(path, fp),
                None => path.to_string(),
            };
            let ty = type_name(s, v);
            match result {
                Ok(cel::Value::Bool(true)) => {}
                Ok(cel::Value::Bool(false)) => {
                    let msg = message(rule, &vars, budget);
                    causes.push((field, match rule.reason {
                        Reason::Invalid => format!("Invalid value: {ty:?}: {msg}"),
                        Reason::Forbidden => format!("Forbidden: {msg}"),
                        Reason::Required => format!("Required value: {msg}"),
                        Reason::Duplicate => format!("Duplicate value: {ty:?}: {msg}"),
                    }));
                }
                Ok(other) => causes.push((field, format!("Invalid value: {ty:?}: rule did not evaluate to a bool: {other:?}"))),
                Err(CelError::CostExceeded) if *budget == 0 => {
                    causes.push((field, format!("Invalid value: {ty:?}: validation failed due to running out of cost budget, no further validation rules will be run")));
                    return;
                }
                Err(CelError::CostExceeded) => causes.push((field, format!("Invalid value: {ty:?}: rule {:?} call cost exceeds limit for rule: {}: operation cancelled: actual cost limit exceeded", rule.program.source, default_message(rule)))),
                Err(e) => causes.push((field, format!("Invalid value: {ty:?}: {e} evaluating rule: {}", default_message(rule)))),
            }
        }
    }
    match v {
        Value::Object(m) => {
            for (k, child) in m {
                let sub = s.properties.get(k).or(s.additional.as_deref());
                if let Some(sub) = sub {
                    let old_child = old.and_then(|o| o.get(k));
                    let p = if s.properties.contains_key(k) {
                        join(path, k)
                    } else {
                        format!("{path}[{k}]")
                    };
                    walk(sub, child, old_child, &p, budget, causes);
                }
            }
        }
        Value::Array(items) => {
            if let Some(sub) = s.items.as_deref() {
                if any(sub) {
                    // Items are not correlated with old items (kube does so for map and set
                    // lists only): transition rules under them do not run.
                    for (i, item) in items.iter().enumerate() {
                        walk(sub, item, None, &format!("{path}[{i}]"), budget, causes);
                    }
                }
            }
        }
        _ => {}
    }
}

fn default_message(rule: &Rule) -> String {
    rule.message
        .clone()
        .unwrap_or_else(|| format!("failed rule: {}", rule.program.source))
}

/// kube: a messageExpression that fails or yields an empty/multi-line string falls back to
/// `message`, else `failed rule: <rule>`.
fn message(rule: &Rule, vars: &[(&str, cel::Value)], budget: &mut u64) -> String {
    if let Some(p) = &rule.message_expression {
        let (r, spent) = cel::eval(p, vars, *budget);
        *budget = budget.saturating_sub(spent);
        if let Ok(cel::Value::String(s)) = r {
            if !s.trim().is_empty() && !s.contains('\n') {
                return s.to_string();
            }
        }
    }
    default_message(rule)
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use serde_json::json;

    use super::*;

    fn schema() -> Schema {
        let raw = json!({"type": "object", "properties": {"spec": {
        "type": "object",
        "x-kubernetes-validations": [
            {"rule": "self.minReplicas <= self.replicas", "message": "too few"},
            {"rule": "self.replicas <= self.maxReplicas"},
            {"rule": "self.image.lowerAscii() == self.image", "fieldPath": ".image"},
            {"rule": "self.tags.all(t, t.matches('^[a-z]+$'))"}
        ],
        "properties": {
            "minReplicas": {"type": "integer"}, "replicas": {"type": "integer"},
            "maxReplicas": {"type": "integer"}, "image": {"type": "string"},
            "tags": {"type": "array", "items": {"type": "string"}}
        }}}});
        Schema::compile(&raw, "spec.versions[0].schema.openAPIV3Schema").unwrap()
    }

    fn object(replicas: i64) -> Value {
        json!({"apiVersion": "stable.example.com/v1", "kind": "CronTab",
            "metadata": {"name": "x"},
            "spec": {"minReplicas": 1, "replicas": replicas, "maxReplicas": 5,
                "image": "busybox", "tags": ["a", "b", "c"]}})
    }

    #[test]
    fn violations_name_the_field_and_the_message() {
        let s = schema();
        assert!(check(&s, &object(3), None).is_empty());
        let causes = check(&s, &object(0), None);
        assert_eq!(
            causes,
            vec![(
                "spec".to_string(),
                "Invalid value: \"object\": too few".to_string()
            )]
        );
        let causes = check(&s, &object(9), None);
        assert_eq!(
            causes[0].1,
            "Invalid value: \"object\": failed rule: self.replicas <= self.maxReplicas"
        );
        let mut upper = object(3);
        upper["spec"]["image"] = json!("BusyBox");
        assert_eq!(check(&s, &upper, None)[0].0, "spec.image");
        assert_eq!(parse_field_path(".a.b['c-d']").as_deref(), Some("a.b[c-d]"));
        assert_eq!(parse_field_path("a.b"), None);
    }

    /// `cargo test -p pea-control --release --lib crd::rules::tests::bench -- --ignored --nocapture`:
    /// the schema work of a CR create (prune, defaults, validation) with and without the four
    /// rules above, medians of 21 batches of 500 objects.
    #[test]
    #[ignore]
    fn bench_rule_cost_per_create() {
        let s = schema();
        let median = |with_rules: bool| {
            let mut batches = Vec::new();
            for _ in 0..21 {
                let started = Instant::now();
                for i in 0..500 {
                    let mut o = object(1 + i % 5);
                    let mut pruned = Vec::new();
                    super::super::schema::prune(&s, &mut o, "", true, &mut pruned);
                    super::super::schema::apply_defaults(&s, &mut o);
                    let mut causes = Vec::new();
                    super::super::schema::validate(&s, &mut o, &mut causes);
                    if with_rules {
                        causes.extend(check(&s, &o, None));
                    }
                    assert!(causes.is_empty());
                }
                batches.push(started.elapsed().as_secs_f64() / 500.0 * 1e6);
            }
            batches.sort_by(f64::total_cmp);
            batches[batches.len() / 2]
        };
        let without = median(false);
        let with = median(true);
        println!("schema work per CR create: without rules {without:.1} µs, with 4 CEL rules {with:.1} µs (ratio {:.2}×)", with / without);
    }
}
