//! CEL (Common Expression Language) as kube-apiserver uses it: CRD `x-kubernetes-validations`,
//! ValidatingAdmissionPolicy and webhook `matchConditions`.
//!
//! The `cel` crate (cel-rust) parses and interprets; this module adds what the API server needs
//! around it: a compile step that bounds expression size and nesting and refuses undeclared
//! variables with kube's wording ([`compile`]), kube's library functions the crate lacks
//! ([`library`]), a runtime cost limit ([`cost`]) and conversion from/to JSON objects.
//! Programs are compiled once (per CRD version or policy revision) and shared with `Arc`.

pub mod authz;
pub mod cost;
pub mod format;
pub mod library;
pub mod net;
pub mod quantity;
pub mod urls;

use std::collections::HashSet;
use std::sync::{Arc, OnceLock};

use cel::common::ast::{EntryExpr, Expr};
pub use cel::Value;
use cel::{Context, Env, IdedExpr, Value as CelValue};
use serde_json::Value as Json;

/// The longest accepted expression, in bytes (kube bounds expressions through its cost
/// estimate; a plain size cap keeps parsing cheap for hostile input).
pub const MAX_SOURCE_LEN: usize = 16 * 1024;
/// How deep expressions may nest: parentheses, calls, lists and operator chains alike.
pub const MAX_NESTING: usize = 48;
/// How deep the parsed tree may be: evaluation recurses through it (three frames per node
/// once instrumented) on the request's thread.
const MAX_AST_DEPTH: usize = 2 * MAX_NESTING;
/// The parsing thread's stack: enough for the deepest unbracketed chain a
/// [`MAX_SOURCE_LEN`] source can write.
const PARSE_STACK: usize = 256 * 1024 * 1024;
/// The parser's recursion limit (cel-go's default is 250; nesting is bounded earlier).
const PARSER_RECURSION: u16 = 96;

/// Type names a CEL expression may use as values (`type(x) == string`).
const TYPE_IDENTS: &[&str] = &[
    "int",
    "uint",
    "double",
    "bool",
    "string",
    "bytes",
    "list",
    "map",
    "null_type",
    "type",
    "dyn",
];

/// Function namespaces (`math.abs(x)`), which are not variables.
const NAMESPACES: &[&str] = &["math", "strings", "lists", "optional", "format"];

#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum CelError {
    /// kube: `compilation failed: ERROR: <input>:1:6: Syntax error: ...`.
    #[error("compilation failed: {0}")]
    Compile(String),
    /// The runtime cost limit was reached (cel-go's wording).
    #[error("operation cancelled: actual cost limit exceeded")]
    CostExceeded,
    #[error("{0}")]
    Eval(String),
}

/// A compiled expression: the instrumented AST (see [`cost`]) and what it references.
#[derive(Debug)]
pub struct Program {
    pub source: String,
    expr: IdedExpr,
    /// The declared variables the expression reads (`oldSelf` makes a transition rule).
    pub uses: HashSet<String>,
}

impl Program {
    pub fn uses(&self, var: &str) -> bool {
        self.uses.contains(var)
    }
}

/// The shared environment: the standard library, the strings, lists and math extensions of
/// cel-rust, and kube's list library ([`library`]).
fn env() -> &'static Arc<Env> {
    static ENV: OnceLock<Arc<Env>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Env::stdlib();
        // Extensions come from the crate; a clash would be a programming error caught by tests.
        let _ = env.add_extension(cel::extensions::strings);
        let _ = env.add_extension(cel::extensions::lists);
        let _ = env.add_extension(cel::extensions::math);
        cost::declare(&mut env);
        Arc::new(env)
    })
}

/// Compiles `source` for an environment that declares `vars` (e.g. `self`, `oldSelf`).
pub fn compile(source: &str, vars: &[&str]) -> Result<Arc<Program>, CelError> {
    if source.trim().is_empty() {
        return Err(CelError::Compile(
            "ERROR: <input>:1:1: Syntax error: expression is empty".into(),
        ));
    }
    if source.len() > MAX_SOURCE_LEN {
        return Err(CelError::Compile(format!(
            "ERROR: <input>:1:1: expression is {} bytes long, more than the {MAX_SOURCE_LEN} allowed",
            source.len()
        )));
    }
    if let Some((line, col)) = too_deep(source) {
        return Err(CelError::Compile(format!(
            "ERROR: <input>:{line}:{col}: expression nests more than {MAX_NESTING} levels"
        )));
    }
    // Operator chains (`1+1+...`, `!!!...x`) nest without brackets; the parser recurses over
    // them, so it runs on a thread whose stack fits the longest accepted source, and an AST
    // deeper than the interpreter may recurse through is refused (and dropped) there.
    let parsed = std::thread::scope(|s| {
        std::thread::Builder::new()
            .name("cel-parse".into())
            .stack_size(PARSE_STACK)
            .spawn_scoped(s, || {
                let (expr, info) = env()
                    .parser()
                    .max_recursion_depth(PARSER_RECURSION)
                    .parse_with_source_info(source)
                    .map_err(|e| CelError::Compile(e.to_string()))?;
                if depth(&expr) > MAX_AST_DEPTH {
                    return Err(CelError::Compile(format!(
                        "ERROR: <input>:1:1: expression nests more than {MAX_NESTING} levels"
                    )));
                }
                Ok((expr, info))
            })
            .map_err(|e| {
                CelError::Compile(format!("ERROR: <input>:1:1: cannot start the parser: {e}"))
            })?
            .join()
            .unwrap_or_else(|_| {
                Err(CelError::Compile(
                    "ERROR: <input>:1:1: the parser failed".into(),
                ))
            })
    });
    let (expr, info) = parsed?;
    let mut uses = HashSet::new();
    let mut scope: Vec<String> = Vec::new();
    check_refs(&expr, vars, &mut scope, &mut uses).map_err(|(id, name)| {
        let (line, col) = info
            .offset_for(id)
            .map(|(start, _)| line_col(source, start as usize))
            .unwrap_or((1, 1));
        CelError::Compile(format!(
            "ERROR: <input>:{line}:{col}: undeclared reference to '{name}' (in container '')"
        ))
    })?;
    Ok(Arc::new(Program {
        source: source.to_string(),
        expr: cost::instrument(expr),
        uses,
    }))
}

/// Evaluates `program` with `vars` bound, charging `budget` (what is left of the caller's
/// budget; the per-expression limit applies too). Returns the result and the cost spent.
pub fn eval(
    program: &Program,
    vars: &[(&str, CelValue)],
    budget: u64,
) -> (Result<CelValue, CelError>, u64) {
    // The functions are registered once per thread (cel's Context is not Sync); each
    // evaluation binds its variables in a child scope.
    thread_local! {
        static ROOT: Result<Context<'static, 'static>, String> = {
            let mut root = Context::with_env(env().clone());
            library::register(&mut root).map(|_| root).map_err(|e| e.to_string())
        };
    }
    let limit = budget.min(cost::PER_CALL_LIMIT);
    let outcome = ROOT.with(|root| {
        let root = root.as_ref().map_err(|e| CelError::Eval(e.clone()))?;
        let mut ctx = root.new_inner_scope();
        for (name, value) in vars {
            ctx.add_variable_from_value(*name, value.clone());
        }
        cost::start(limit);
        Ok(CelValue::resolve(&program.expr, &ctx))
    });
    let result = match outcome {
        Ok(r) => r,
        Err(e) => return (Err(e), 0),
    };
    let (spent, exceeded) = cost::finish();
    if exceeded {
        return (Err(CelError::CostExceeded), spent);
    }
    (result.map_err(|e| CelError::Eval(e.to_string())), spent)
}

/// A JSON value as CEL sees it (objects become maps with string keys).
/// Integers are `int` as in kube (JSON numbers beyond i64 become `uint`, fractions `double`).
/// Depth is bounded by the JSON decoder's nesting limit.
pub fn to_cel(v: &Json) -> CelValue {
    match v {
        Json::Null => CelValue::Null,
        Json::Bool(b) => CelValue::Bool(*b),
        Json::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => CelValue::Int(i),
            (None, Some(u)) => CelValue::UInt(u),
            _ => CelValue::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        Json::String(s) => CelValue::String(Arc::new(s.clone())),
        Json::Array(items) => CelValue::List(Arc::new(items.iter().map(to_cel).collect())),
        Json::Object(m) => CelValue::from(
            m.iter()
                .map(|(k, v)| (k.clone(), to_cel(v)))
                .collect::<std::collections::HashMap<String, CelValue>>(),
        ),
    }
}

/// A CEL value as JSON (for messages and results); `None` for what JSON cannot hold.
pub fn to_json(v: &CelValue) -> Option<Json> {
    Some(match v {
        CelValue::Null => Json::Null,
        CelValue::Bool(b) => Json::Bool(*b),
        CelValue::Int(i) => Json::from(*i),
        CelValue::UInt(u) => Json::from(*u),
        CelValue::Float(f) => serde_json::Number::from_f64(*f).map(Json::Number)?,
        CelValue::String(s) => Json::String(s.to_string()),
        CelValue::List(l) => Json::Array(l.iter().map(to_json).collect::<Option<_>>()?),
        CelValue::Map(m) => {
            let mut out = serde_json::Map::new();
            for (k, v) in m.map.iter() {
                let key = match k {
                    cel::objects::Key::String(s) => s.to_string(),
                    other => format!("{other:?}"),
                };
                out.insert(key, to_json(v)?);
            }
            Json::Object(out)
        }
        _ => return None,
    })
}

/// The first place where brackets nest deeper than [`MAX_NESTING`] (outside string literals).
fn too_deep(source: &str) -> Option<(usize, usize)> {
    let mut depth = 0usize;
    let mut quote: Option<char> = None;
    let mut escaped = false;
    for (i, c) in source.char_indices() {
        if let Some(q) = quote {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == q {
                quote = None;
            }
            continue;
        }
        match c {
            '"' | '\'' => quote = Some(c),
            '(' | '[' | '{' => {
                depth += 1;
                if depth > MAX_NESTING {
                    return Some(line_col(source, i));
                }
            }
            ')' | ']' | '}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    None
}

fn line_col(source: &str, offset: usize) -> (usize, usize) {
    let before = &source[..offset.min(source.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

/// The AST's depth, counted without recursion (operator chains like `a+a+...` nest without
/// brackets and the interpreter recurses over them).
fn depth(root: &IdedExpr) -> usize {
    let mut max = 0;
    let mut stack = vec![(root, 1usize)];
    while let Some((e, d)) = stack.pop() {
        max = max.max(d);
        if d > MAX_AST_DEPTH {
            return d;
        }
        for child in children(e) {
            stack.push((child, d + 1));
        }
    }
    max
}

pub(crate) fn children(e: &IdedExpr) -> Vec<&IdedExpr> {
    match &e.expr {
        Expr::Call(c) => c.target.iter().map(|t| &**t).chain(c.args.iter()).collect(),
        Expr::Comprehension(c) => vec![
            &c.iter_range,
            &c.accu_init,
            &c.loop_cond,
            &c.loop_step,
            &c.result,
        ],
        Expr::List(l) => l.elements.iter().collect(),
        Expr::Map(m) => m
            .entries
            .iter()
            .flat_map(|en| match &en.expr {
                EntryExpr::MapEntry(me) => vec![&me.key, &me.value],
                EntryExpr::StructField(f) => vec![&f.value],
            })
            .collect(),
        Expr::Struct(s) => s
            .entries
            .iter()
            .flat_map(|en| match &en.expr {
                EntryExpr::MapEntry(me) => vec![&me.key, &me.value],
                EntryExpr::StructField(f) => vec![&f.value],
            })
            .collect(),
        Expr::Select(s) => vec![&*s.operand],
        _ => Vec::new(),
    }
}

/// Refuses identifiers that are neither declared, bound by a comprehension nor type names;
/// records the declared ones used. Depth is bounded by [`depth`] before this runs.
fn check_refs(
    e: &IdedExpr,
    vars: &[&str],
    scope: &mut Vec<String>,
    uses: &mut HashSet<String>,
) -> Result<(), (u64, String)> {
    match &e.expr {
        Expr::Ident(name) => {
            if vars.contains(&name.as_str()) {
                uses.insert(name.clone());
            } else if !scope.iter().any(|s| s == name)
                && !TYPE_IDENTS.contains(&name.as_str())
                && !name.starts_with('@')
            {
                return Err((e.id, name.clone()));
            }
            Ok(())
        }
        Expr::Call(c)
            if matches!(c.target.as_deref(), Some(IdedExpr { expr: Expr::Ident(ns), .. })
                if NAMESPACES.contains(&ns.as_str()) && !vars.contains(&ns.as_str())) =>
        {
            for a in &c.args {
                check_refs(a, vars, scope, uses)?;
            }
            Ok(())
        }
        Expr::Select(s) => {
            // `math.abs`-style namespaces appear as selects on an unknown ident only in calls,
            // which the parser resolves; a select on a variable checks the variable.
            check_refs(&s.operand, vars, scope, uses)
        }
        Expr::Comprehension(c) => {
            check_refs(&c.iter_range, vars, scope, uses)?;
            check_refs(&c.accu_init, vars, scope, uses)?;
            let pushed = 2 + usize::from(c.iter_var2.is_some());
            scope.push(c.iter_var.clone());
            scope.push(c.accu_var.clone());
            if let Some(v2) = &c.iter_var2 {
                scope.push(v2.clone());
            }
            let r = check_refs(&c.loop_cond, vars, scope, uses)
                .and_then(|_| check_refs(&c.loop_step, vars, scope, uses))
                .and_then(|_| check_refs(&c.result, vars, scope, uses));
            scope.truncate(scope.len() - pushed);
            r
        }
        _ => {
            for child in children(e) {
                check_refs(child, vars, scope, uses)?;
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests;
