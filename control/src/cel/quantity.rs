//! kube's CEL quantity library (k8s.io/apiserver/pkg/cel/library/quantity.go): `quantity(s)`,
//! `isQuantity(s)` and the members `sign()`, `isInteger()`, `asInteger()`,
//! `asApproximateFloat()`, `add()`, `sub()` (a quantity or an int), `compareTo()`,
//! `isGreaterThan()` and `isLessThan()`. Quantities are exact counts of nano-units
//! ([`crate::qos::nano_units`]); two quantities are equal when their amounts are.

use std::sync::Arc;

use cel::extractors::This;
use cel::objects::Opaque;
use cel::{ExecutionError, FunctionContext, ResolveResult, Value};

const NANO: i128 = 1_000_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quantity(pub i128);

impl Opaque for Quantity {
    fn runtime_type_name(&self) -> &str {
        "kubernetes.Quantity"
    }
}

fn make(n: i128) -> Value {
    Value::Opaque(Arc::new(Quantity(n)))
}

fn this(ftx: &FunctionContext, v: &Value) -> Result<i128, ExecutionError> {
    match v {
        Value::Opaque(o) => o.downcast_ref::<Quantity>().map(|q| q.0),
        _ => None,
    }
    .ok_or_else(|| ftx.error(format!("no such overload: {}({v:?})", ftx.name)))
}

/// A quantity or an int (whole units) argument.
fn operand(ftx: &FunctionContext, v: &Value) -> Result<i128, ExecutionError> {
    match v {
        Value::Int(i) => Ok(*i as i128 * NANO),
        other => this(ftx, other),
    }
}

pub fn quantity(ftx: &FunctionContext, This(s): This<Arc<String>>) -> ResolveResult {
    crate::qos::nano_units(&s)
        .filter(|_| !s.trim().is_empty() && s.trim() == s.as_str())
        .map(make)
        .ok_or_else(|| ftx.error("quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"))
}

pub fn is_quantity(This(s): This<Arc<String>>) -> bool {
    s.trim() == s.as_str() && !s.is_empty() && crate::qos::nano_units(&s).is_some()
}

pub fn sign(ftx: &FunctionContext, This(v): This<Value>) -> ResolveResult {
    Ok(Value::Int(this(ftx, &v)?.signum() as i64))
}

pub fn is_integer(ftx: &FunctionContext, This(v): This<Value>) -> ResolveResult {
    let n = this(ftx, &v)?;
    Ok(Value::Bool(
        n % NANO == 0 && i64::try_from(n / NANO).is_ok(),
    ))
}

pub fn as_integer(ftx: &FunctionContext, This(v): This<Value>) -> ResolveResult {
    let n = this(ftx, &v)?;
    if n % NANO != 0 {
        return Err(ftx.error("cannot convert value to integer"));
    }
    i64::try_from(n / NANO)
        .map(Value::Int)
        .map_err(|_| ftx.error("cannot convert value to integer"))
}

pub fn as_approximate_float(ftx: &FunctionContext, This(v): This<Value>) -> ResolveResult {
    Ok(Value::Float(this(ftx, &v)? as f64 / NANO as f64))
}

pub fn add(ftx: &FunctionContext, This(v): This<Value>, arg: Value) -> ResolveResult {
    let (a, b) = (this(ftx, &v)?, operand(ftx, &arg)?);
    a.checked_add(b)
        .map(make)
        .ok_or_else(|| ftx.error("quantity overflow"))
}

pub fn sub(ftx: &FunctionContext, This(v): This<Value>, arg: Value) -> ResolveResult {
    let (a, b) = (this(ftx, &v)?, operand(ftx, &arg)?);
    a.checked_sub(b)
        .map(make)
        .ok_or_else(|| ftx.error("quantity overflow"))
}

pub fn compare_to(ftx: &FunctionContext, This(v): This<Value>, arg: Value) -> ResolveResult {
    let (a, b) = (this(ftx, &v)?, this(ftx, &arg)?);
    Ok(Value::Int(a.cmp(&b) as i64))
}

pub fn is_greater_than(ftx: &FunctionContext, This(v): This<Value>, arg: Value) -> ResolveResult {
    Ok(Value::Bool(this(ftx, &v)? > this(ftx, &arg)?))
}

pub fn is_less_than(ftx: &FunctionContext, This(v): This<Value>, arg: Value) -> ResolveResult {
    Ok(Value::Bool(this(ftx, &v)? < this(ftx, &arg)?))
}
