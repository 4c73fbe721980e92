//! `additionalPrinterColumns`: the Table kubectl prints for custom resources. Without columns
//! kube shows Name and Age; with them, Name and the columns. JSONPath is the simple subset CRDs
//! use (`.spec.cronSpec`, `.status.conditions[0].type`, `.metadata.labels['app']`); anything
//! more (filters, wildcards, ranges) is refused when the CRD is written.

use std::time::SystemTime;

use serde_json::{json, Value};

use super::schema::Cause;
use crate::resources::ResourceDef;

#[derive(Debug, Clone, PartialEq)]
enum Step {
    Field(String),
    Index(usize),
}

#[derive(Debug, Clone)]
pub struct Column {
    pub name: String,
    pub ty: String,
    pub format: String,
    pub description: String,
    pub priority: i64,
    path: Vec<Step>,
}

fn parse_path(p: &str) -> Option<Vec<Step>> {
    let p = p.trim();
    let p = p
        .strip_prefix('{')
        .and_then(|x| x.strip_suffix('}'))
        .unwrap_or(p);
    let mut rest = p.strip_prefix('.')?;
    let mut out = Vec::new();
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('[') {
            let end = r.find(']')?;
            let inner = &r[..end];
            if let Ok(n) = inner.parse::<usize>() {
                out.push(Step::Index(n));
            } else {
                let key = inner
                    .strip_prefix('\'')
                    .and_then(|x| x.strip_suffix('\''))
                    .or_else(|| inner.strip_prefix('"').and_then(|x| x.strip_suffix('"')))?;
                out.push(Step::Field(key.to_string()));
            }
            rest = &r[end + 1..];
        } else {
            let rest2 = rest.strip_prefix('.').unwrap_or(rest);
            let end = rest2.find(['.', '[']).unwrap_or(rest2.len());
            let field = &rest2[..end];
            if field.is_empty()
                || !field
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            {
                return None;
            }
            out.push(Step::Field(field.to_string()));
            rest = &rest2[end..];
        }
    }
    Some(out)
}

/// Compiles a version's columns; refuses unsupported types and JSONPaths with the field named.
pub fn compile(raw: &[Value], at: &str) -> Result<Vec<Column>, Vec<Cause>> {
    let mut out = Vec::new();
    let mut causes = Vec::new();
    if raw.len() > 64 {
        return Err(vec![(
            at.into(),
            "Too many: must have at most 64 items".into(),
        )]);
    }
    for (i, c) in raw.iter().enumerate() {
        let f = format!("{at}[{i}]");
        let name = c.get("name").and_then(Value::as_str).unwrap_or("");
        let ty = c.get("type").and_then(Value::as_str).unwrap_or("");
        let path = c.get("jsonPath").and_then(Value::as_str).unwrap_or("");
        if name.is_empty() {
            causes.push((format!("{f}.name"), "Required value".into()));
        }
        if !matches!(ty, "integer" | "number" | "string" | "boolean" | "date") {
            causes.push((format!("{f}.type"), format!("Unsupported value: {ty:?}: supported values: \"boolean\", \"date\", \"integer\", \"number\", \"string\"")));
        }
        let Some(steps) = parse_path(path) else {
            causes.push((format!("{f}.jsonPath"), format!("Invalid value: {path:?}: must be a simple JSON path (.a.b[0]['c']); filters and wildcards are not implemented in pea-control")));
            continue;
        };
        out.push(Column {
            name: name.into(),
            ty: ty.into(),
            format: c.get("format").and_then(Value::as_str).unwrap_or("").into(),
            description: c
                .get("description")
                .and_then(Value::as_str)
                .unwrap_or("")
                .into(),
            priority: c.get("priority").and_then(Value::as_i64).unwrap_or(0),
            path: steps,
        });
    }
    if causes.is_empty() {
        Ok(out)
    } else {
        Err(causes)
    }
}

fn lookup<'a>(obj: &'a Value, path: &[Step]) -> Option<&'a Value> {
    let mut cur = obj;
    for s in path {
        cur = match s {
            Step::Field(f) => cur.get(f.as_str())?,
            Step::Index(n) => cur.get(*n)?,
        };
    }
    Some(cur)
}

fn cell(c: &Column, obj: &Value, now: SystemTime) -> Value {
    let Some(v) = lookup(obj, &c.path) else {
        return Value::Null;
    };
    match (c.ty.as_str(), v) {
        ("date", Value::String(t)) => match crate::objects::parse_time(t) {
            Some(at) => json!(crate::table::human_duration(
                now.duration_since(at).unwrap_or_default()
            )),
            None => json!(t),
        },
        (_, Value::String(_) | Value::Number(_) | Value::Bool(_)) => v.clone(),
        (_, Value::Null) => Value::Null,
        (_, other) => json!(other.to_string()),
    }
}

/// The Table for custom objects of `def`.
pub fn table(
    def: &ResourceDef,
    objs: &[Value],
    rv: Option<String>,
    cont: Option<String>,
    now: SystemTime,
    include_object: &str,
) -> Value {
    let columns: &[Column] = def
        .custom
        .as_ref()
        .map(|c| c.columns.as_slice())
        .unwrap_or(&[]);
    let mut defs = vec![json!({"name": "Name", "type": "string", "format": "name",
        "description": "Name must be unique within a namespace.", "priority": 0})];
    if columns.is_empty() {
        defs.push(json!({"name": "Age", "type": "date", "format": "", "priority": 0,
            "description": "CreationTimestamp is a timestamp representing the server time when this object was created."}));
    }
    for c in columns {
        defs.push(json!({"name": c.name, "type": c.ty, "format": c.format,
            "description": c.description, "priority": c.priority}));
    }
    let rows: Vec<Value> = objs
        .iter()
        .map(|o| {
            let mut cells = vec![json!(crate::objects::name_of(o))];
            if columns.is_empty() {
                let age = crate::objects::meta_str(o, "creationTimestamp")
                    .and_then(crate::objects::parse_time)
                    .map(|t| {
                        crate::table::human_duration(now.duration_since(t).unwrap_or_default())
                    })
                    .unwrap_or_else(|| "<unknown>".into());
                cells.push(json!(age));
            }
            for c in columns {
                cells.push(cell(c, o, now));
            }
            crate::table::row_with(cells, o, include_object)
        })
        .collect();
    crate::table::assemble(defs, rows, rv, cont)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simple_paths_parse_and_others_are_refused() {
        assert_eq!(
            parse_path(".status.conditions[0]['type']").unwrap(),
            vec![
                Step::Field("status".into()),
                Step::Field("conditions".into()),
                Step::Index(0),
                Step::Field("type".into())
            ]
        );
        assert!(parse_path(".items[?(@.x==1)]").is_none());
        assert!(parse_path("spec").is_none());
        let err = compile(
            &[json!({"name": "X", "type": "string", "jsonPath": ".a[*]"})],
            "c",
        )
        .unwrap_err();
        assert_eq!(err[0].0, "c[0].jsonPath");
    }
}
