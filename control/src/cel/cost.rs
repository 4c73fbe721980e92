//! Runtime cost: the interpreter has no cost hooks, so compiling rewrites the AST so that every
//! call, literal list/map and comprehension `X` becomes `@cel_tick() ? @cel_charge(X) : null`.
//! The tick (1 unit) runs *before* `X` is evaluated and fails once the budget is spent, so
//! after that no further work starts, even inside `&&`/`||` and `all`/`exists`, which defer
//! errors; the charge adds the size of `X`'s result (list/map length, string length / 10, as
//! kube's cost model charges traversals). Comprehension steps get one tick per iteration;
//! the step shapes cel-rust optimizes (`map`, `filter`, `all`, `exists`) keep their shape.
//! [`super::eval`] reports exceeding even when a logical operator swallowed the error.

use std::cell::Cell;

use cel::common::ast::{operators, CallExpr, EntryExpr, Expr, LiteralValue};
use cel::common::types::DYN_TYPE;
use cel::common::value::CowVal;
use cel::{Env, ExecutionError, IdedExpr};

/// kube's per-expression runtime cost limit (`celconfig.PerCallLimit`).
pub const PER_CALL_LIMIT: u64 = 1_000_000;
/// kube's budget for all CRD validation rules of one object (`celconfig.RuntimeCELCostBudget`).
pub const RUNTIME_BUDGET: u64 = 10_000_000;

const TICK: &str = "@cel_tick";
const CHARGE: &str = "@cel_charge";

thread_local! {
    static LEFT: Cell<u64> = const { Cell::new(0) };
    static SPENT: Cell<u64> = const { Cell::new(0) };
    static EXCEEDED: Cell<bool> = const { Cell::new(false) };
}

pub(super) fn start(limit: u64) {
    LEFT.set(limit);
    SPENT.set(0);
    EXCEEDED.set(false);
}

pub(super) fn finish() -> (u64, bool) {
    (SPENT.get(), EXCEEDED.get())
}

fn spend(units: u64) -> Result<(), ExecutionError> {
    let left = LEFT.get();
    SPENT.set(SPENT.get().saturating_add(units));
    if EXCEEDED.get() || units > left {
        EXCEEDED.set(true);
        LEFT.set(0);
        return Err(ExecutionError::function_error(
            "cost",
            "operation cancelled: actual cost limit exceeded",
        ));
    }
    LEFT.set(left - units);
    Ok(())
}

fn tick<'b, 'v>(_: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    spend(1)?;
    Ok(CowVal::Borrowed(&cel::common::types::CelBool::TRUE))
}

fn charge<'b, 'v>(mut args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let v = args.pop().ok_or(ExecutionError::MissingArgumentOrTarget)?;
    let size = v
        .as_sizer()
        .map(|s| (*s.size().inner()).max(0) as u64)
        .unwrap_or(0);
    let is_text = matches!(v.get_type().name(), "string" | "bytes");
    spend(if is_text { size / 10 } else { size })?;
    Ok(v)
}

/// Declares the tick and charge functions on the shared environment.
pub(super) fn declare(env: &mut Env) {
    let _ = env.add_overload(TICK, "cel_tick", vec![], tick);
    let _ = env.add_overload(CHARGE, "cel_charge_dyn", vec![DYN_TYPE], charge);
}

/// Rewrites `e` as the module comment says. `e`'s depth is bounded by the caller.
pub(super) fn instrument(e: IdedExpr) -> IdedExpr {
    let mut next = max_id(&e) + 1;
    rw(e, &mut next)
}

fn max_id(e: &IdedExpr) -> u64 {
    let mut max = e.id;
    let mut stack = vec![e];
    while let Some(x) = stack.pop() {
        max = max.max(x.id);
        stack.extend(super::children(x));
    }
    max
}

fn is_work(e: &Expr) -> bool {
    matches!(
        e,
        Expr::Call(_) | Expr::List(_) | Expr::Map(_) | Expr::Struct(_) | Expr::Comprehension(_)
    )
}

fn node(next: &mut u64, expr: Expr) -> IdedExpr {
    *next += 1;
    IdedExpr { id: *next, expr }
}

fn call(next: &mut u64, name: &str, args: Vec<IdedExpr>) -> IdedExpr {
    node(
        next,
        Expr::Call(CallExpr {
            func_name: name.into(),
            target: None,
            args,
        }),
    )
}

fn wrap(e: IdedExpr, next: &mut u64) -> IdedExpr {
    let t = call(next, TICK, vec![]);
    let c = call(next, CHARGE, vec![e]);
    let null = node(next, Expr::Literal(LiteralValue::Null));
    call(next, operators::CONDITIONAL, vec![t, c, null])
}

/// Rewrites children, then wraps `e` if it does work.
fn rw(mut e: IdedExpr, next: &mut u64) -> IdedExpr {
    let work = is_work(&e.expr);
    e.expr = match e.expr {
        Expr::Call(mut c) => {
            c.target = c.target.map(|t| Box::new(rw(*t, next)));
            c.args = c.args.into_iter().map(|a| rw(a, next)).collect();
            Expr::Call(c)
        }
        Expr::List(mut l) => {
            l.elements = l.elements.into_iter().map(|a| rw(a, next)).collect();
            Expr::List(l)
        }
        Expr::Map(mut m) => {
            for en in m.entries.iter_mut() {
                entry(&mut en.expr, next);
            }
            Expr::Map(m)
        }
        Expr::Struct(mut s) => {
            for en in s.entries.iter_mut() {
                entry(&mut en.expr, next);
            }
            Expr::Struct(s)
        }
        Expr::Select(mut s) => {
            let op = std::mem::take(&mut *s.operand);
            *s.operand = rw(op, next);
            Expr::Select(s)
        }
        Expr::Comprehension(mut c) => {
            c.iter_range = rw(std::mem::take(&mut c.iter_range), next);
            c.accu_init = rw(std::mem::take(&mut c.accu_init), next);
            // The condition keeps its shape (cel-rust recognizes literal conditions).
            c.loop_cond = children_only(std::mem::take(&mut c.loop_cond), next);
            let accu = c.accu_var.clone();
            c.loop_step = step(std::mem::take(&mut c.loop_step), &accu, next);
            c.result = rw(std::mem::take(&mut c.result), next);
            Expr::Comprehension(c)
        }
        other => other,
    };
    if work {
        wrap(e, next)
    } else {
        e
    }
}

fn entry(en: &mut EntryExpr, next: &mut u64) {
    match en {
        EntryExpr::MapEntry(me) => {
            me.key = rw(std::mem::take(&mut me.key), next);
            me.value = rw(std::mem::take(&mut me.value), next);
        }
        EntryExpr::StructField(f) => f.value = rw(std::mem::take(&mut f.value), next),
    }
}

/// Rewrites `e`'s children but leaves `e` itself unwrapped.
fn children_only(e: IdedExpr, next: &mut u64) -> IdedExpr {
    match rw(e, next) {
        IdedExpr {
            expr: Expr::Call(c),
            ..
        } if c.func_name == operators::CONDITIONAL
            && matches!(c.args.first().map(|a| &a.expr), Some(Expr::Call(t)) if t.func_name == TICK) =>
        {
            match c.args.into_iter().nth(1) {
                Some(IdedExpr {
                    expr: Expr::Call(mut charge),
                    ..
                }) => charge.args.pop().unwrap_or_default(),
                _ => IdedExpr::default(),
            }
        }
        other => other,
    }
}

/// Always wrapped, so every iteration ticks at least once.
fn forced(e: IdedExpr, next: &mut u64) -> IdedExpr {
    if is_work(&e.expr) {
        rw(e, next)
    } else {
        let e = rw(e, next);
        wrap(e, next)
    }
}

fn is_ident(e: &IdedExpr, name: &str) -> bool {
    matches!(&e.expr, Expr::Ident(n) if n == name)
}

/// A comprehension's step: the accumulator shapes stay as they are, their payload is forced.
fn step(e: IdedExpr, accu: &str, next: &mut u64) -> IdedExpr {
    let IdedExpr { id, expr } = e;
    match expr {
        Expr::Call(mut c)
            if c.target.is_none()
                && c.args.len() == 2
                && is_ident(&c.args[0], accu)
                && (c.func_name == operators::LOGICAL_AND
                    || c.func_name == operators::LOGICAL_OR) =>
        {
            let payload = c.args.pop().unwrap_or_default();
            c.args.push(forced(payload, next));
            IdedExpr {
                id,
                expr: Expr::Call(c),
            }
        }
        Expr::Call(mut c)
            if c.target.is_none()
                && c.args.len() == 2
                && is_ident(&c.args[0], accu)
                && c.func_name == operators::ADD
                && matches!(c.args[1].expr, Expr::List(_)) =>
        {
            if let Some(IdedExpr {
                expr: Expr::List(l),
                ..
            }) = c.args.get_mut(1)
            {
                l.elements = std::mem::take(&mut l.elements)
                    .into_iter()
                    .map(|x| forced(x, next))
                    .collect();
            }
            IdedExpr {
                id,
                expr: Expr::Call(c),
            }
        }
        Expr::Call(mut c)
            if c.target.is_none()
                && c.args.len() == 3
                && c.func_name == operators::CONDITIONAL
                && is_ident(&c.args[2], accu) =>
        {
            let otherwise = c.args.pop().unwrap_or_default();
            let then = c.args.pop().unwrap_or_default();
            let guard = c.args.pop().unwrap_or_default();
            c.args = vec![forced(guard, next), step(then, accu, next), otherwise];
            IdedExpr {
                id,
                expr: Expr::Call(c),
            }
        }
        other => forced(IdedExpr { id, expr: other }, next),
    }
}
