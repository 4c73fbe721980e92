//! kube's CEL list library (k8s.io/apiserver/pkg/cel/library/lists.go) where cel-rust lacks it:
//! `isSorted()`, `sum()`, `min()`, `max()` on lists of comparable values. The strings
//! extension (`lowerAscii`, `split`, `join`, ...) and `lists`/`math` come from cel-rust.

use std::cmp::Ordering;
use std::sync::Arc;

use cel::extractors::This;
use cel::{Context, ExecutionError, ResolveResult, Value};

fn compare(a: &Value, b: &Value, f: &str) -> Result<Ordering, ExecutionError> {
    a.partial_cmp(b).ok_or_else(|| {
        ExecutionError::function_error(f, format!("{a:?} can not be compared to {b:?}"))
    })
}

fn is_sorted(This(list): This<Arc<Vec<Value>>>) -> ResolveResult {
    for w in list.windows(2) {
        if compare(&w[0], &w[1], "isSorted")? == Ordering::Greater {
            return Ok(Value::Bool(false));
        }
    }
    Ok(Value::Bool(true))
}

fn sum(This(list): This<Arc<Vec<Value>>>) -> ResolveResult {
    let mut acc: Option<Value> = None;
    for v in list.iter() {
        acc = Some(match (acc, v) {
            (None, v) => v.clone(),
            (Some(Value::Int(a)), Value::Int(b)) => Value::Int(
                a.checked_add(*b)
                    .ok_or_else(|| ExecutionError::function_error("sum", "integer overflow"))?,
            ),
            (Some(Value::UInt(a)), Value::UInt(b)) => Value::UInt(
                a.checked_add(*b)
                    .ok_or_else(|| ExecutionError::function_error("sum", "integer overflow"))?,
            ),
            (Some(Value::Float(a)), Value::Float(b)) => Value::Float(a + b),
            (Some(a), b) => {
                return Err(ExecutionError::function_error(
                    "sum",
                    format!("no such overload: {a:?} + {b:?}"),
                ))
            }
        });
    }
    Ok(acc.unwrap_or(Value::Int(0)))
}

fn extreme(list: &[Value], f: &str, want: Ordering) -> ResolveResult {
    let mut best: Option<&Value> = None;
    for v in list {
        best = match best {
            Some(b) if compare(v, b, f)? != want => Some(b),
            _ => Some(v),
        };
    }
    best.cloned()
        .ok_or_else(|| ExecutionError::function_error(f, format!("{f} called on empty list")))
}

fn min(This(list): This<Arc<Vec<Value>>>) -> ResolveResult {
    extreme(&list, "min", Ordering::Less)
}

fn max(This(list): This<Arc<Vec<Value>>>) -> ResolveResult {
    extreme(&list, "max", Ordering::Greater)
}

pub(super) fn register(ctx: &mut Context) {
    // Names the environment does not declare: registering cannot conflict.
    let _ = ctx.add_function("isSorted", is_sorted);
    let _ = ctx.add_function("sum", sum);
    let _ = ctx.add_function("min", min);
    let _ = ctx.add_function("max", max);
}
