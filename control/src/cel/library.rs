//! kube's CEL list library (k8s.io/apiserver/pkg/cel/library/lists.go) where cel-rust lacks it:
//! `isSorted()`, `sum()`, `min()`, `max()` on lists of comparable values; and the registration
//! of kube's URL ([`super::urls`]), IP/CIDR ([`super::net`]), quantity
//! ([`super::quantity`]), format ([`super::format`]) and authorizer ([`super::authz`])
//! libraries. The strings extension (`lowerAscii`, `split`, `join`, ...)
//! and `lists`/`math` come from cel-rust.

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

/// Registers every function above; an error names one the environment already declares
/// (a programming error the unit tests catch).
pub(super) fn register(ctx: &mut Context) -> Result<(), cel::DeclarationError> {
    use super::{net, quantity as q, urls};
    ctx.add_function("isSorted", is_sorted)?;
    ctx.add_function("sum", sum)?;
    ctx.add_function("min", min)?;
    ctx.add_function("max", max)?;
    ctx.add_function("url", urls::url)?;
    ctx.add_function("isURL", urls::is_url)?;
    ctx.add_function("getScheme", urls::get_scheme)?;
    ctx.add_function("getHost", urls::get_host)?;
    ctx.add_function("getHostname", urls::get_hostname)?;
    ctx.add_function("getPort", urls::get_port)?;
    ctx.add_function("getEscapedPath", urls::get_escaped_path)?;
    ctx.add_function("getQuery", urls::get_query)?;
    ctx.add_function("ip", net::ip)?;
    ctx.add_function("isIP", net::is_ip)?;
    ctx.add_function("cidr", net::cidr)?;
    ctx.add_function("isCIDR", net::is_cidr)?;
    ctx.add_function("family", net::family)?;
    ctx.add_function("isLoopback", net::is_loopback)?;
    ctx.add_function("isUnspecified", net::is_unspecified)?;
    ctx.add_function("isLinkLocalMulticast", net::is_link_local_multicast)?;
    ctx.add_function("isLinkLocalUnicast", net::is_link_local_unicast)?;
    ctx.add_function("isGlobalUnicast", net::is_global_unicast)?;
    ctx.add_function("containsIP", net::contains_ip)?;
    ctx.add_function("containsCIDR", net::contains_cidr)?;
    ctx.add_function("masked", net::masked)?;
    ctx.add_function("prefixLength", net::prefix_length)?;
    ctx.add_function("quantity", q::quantity)?;
    ctx.add_function("isQuantity", q::is_quantity)?;
    ctx.add_function("sign", q::sign)?;
    ctx.add_function("isInteger", q::is_integer)?;
    ctx.add_function("asInteger", q::as_integer)?;
    ctx.add_function("asApproximateFloat", q::as_approximate_float)?;
    ctx.add_function("add", q::add)?;
    ctx.add_function("sub", q::sub)?;
    ctx.add_function("compareTo", q::compare_to)?;
    ctx.add_function("isGreaterThan", q::is_greater_than)?;
    ctx.add_function("isLessThan", q::is_less_than)?;
    ctx.add_function("format.named", super::format::named)?;
    for f in super::format::FORMATS {
        ctx.add_function(
            &format!("format.{}", f.key),
            super::format::constructor(f.key),
        )?;
    }
    ctx.add_function("validate", super::format::validate)?;
    {
        use super::authz as a;
        ctx.add_function("path", a::path)?;
        ctx.add_function("group", a::group)?;
        ctx.add_function("serviceAccount", a::service_account)?;
        ctx.add_function("resource", a::resource)?;
        ctx.add_function("subresource", a::subresource)?;
        ctx.add_function("namespace", a::namespace)?;
        ctx.add_function("name", a::name)?;
        ctx.add_function("check", a::check)?;
        ctx.add_function("allowed", a::allowed)?;
        ctx.add_function("reason", a::reason)?;
        ctx.add_function("errored", a::errored)?;
        ctx.add_function("error", a::error)?;
    }
    Ok(())
}
