//! kube's CEL URL library (k8s.io/apiserver/pkg/cel/library/urls.go): `url(s)`, `isURL(s)` and
//! the members `getScheme()`, `getHost()`, `getHostname()`, `getPort()`, `getEscapedPath()`
//! and `getQuery()`. Parsing follows Go's `url.ParseRequestURI`, which kube uses: an absolute
//! URI (`https://host:port/path?query`) or an absolute path (`/path`); no fragments.

use std::collections::HashMap;
use std::sync::Arc;

use cel::extractors::This;
use cel::objects::Opaque;
use cel::{ExecutionError, FunctionContext, ResolveResult, Value};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    scheme: String,
    /// `host[:port]` as written (IPv6 literals keep their brackets).
    host: String,
    path: String,
    query: String,
}

impl Opaque for Url {
    fn runtime_type_name(&self) -> &str {
        "net.URL"
    }
}

pub(super) fn parse(s: &str) -> Result<Url, String> {
    if s.is_empty() {
        return Err("parse \"\": empty url".into());
    }
    if s.chars().any(|c| c.is_ascii_control() || c == ' ') {
        return Err(format!("parse {s:?}: invalid character in URL"));
    }
    let (rest, query) = match s.split_once('?') {
        Some((r, q)) => (r, q.to_string()),
        None => (s, String::new()),
    };
    let (scheme, rest) = if rest.starts_with('/') {
        (String::new(), rest)
    } else {
        let (scheme, rest) = rest
            .split_once(':')
            .ok_or_else(|| format!("parse {s:?}: invalid URI for request"))?;
        let ok = scheme.starts_with(|c: char| c.is_ascii_alphabetic())
            && scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
        if !ok {
            return Err(format!(
                "parse {s:?}: first path segment in URL cannot contain colon"
            ));
        }
        (scheme.to_string(), rest)
    };
    let (host, path) = match rest.strip_prefix("//") {
        Some(auth) => {
            let end = auth.find('/').unwrap_or(auth.len());
            let (authority, path) = auth.split_at(end);
            // user info is not part of the host
            let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
            check_host(s, host)?;
            (host.to_string(), path.to_string())
        }
        None if scheme.is_empty() || rest.starts_with('/') => (String::new(), rest.to_string()),
        // `mailto:x` style opaque URIs: Go keeps them opaque; kube's getters then see no
        // host and no path.
        None => (String::new(), String::new()),
    };
    check_escapes(s, &path)?;
    Ok(Url {
        scheme: scheme.to_ascii_lowercase(),
        host,
        path,
        query,
    })
}

fn check_host(s: &str, host: &str) -> Result<(), String> {
    if let Some(v6) = host.strip_prefix('[') {
        let (addr, after) = v6
            .split_once(']')
            .ok_or_else(|| format!("parse {s:?}: missing ']' in host"))?;
        if addr
            .split('%')
            .next()
            .unwrap_or("")
            .parse::<std::net::Ipv6Addr>()
            .is_err()
        {
            return Err(format!("parse {s:?}: invalid IPv6 host"));
        }
        if !(after.is_empty()
            || after
                .strip_prefix(':')
                .is_some_and(|p| p.chars().all(|c| c.is_ascii_digit())))
        {
            return Err(format!("parse {s:?}: invalid port {after:?} after host"));
        }
        return Ok(());
    }
    if let Some((_, port)) = host.rsplit_once(':') {
        if !port.chars().all(|c| c.is_ascii_digit()) {
            return Err(format!("parse {s:?}: invalid port \":{port}\" after host"));
        }
    }
    Ok(())
}

fn check_escapes(s: &str, path: &str) -> Result<(), String> {
    let b = path.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let ok =
                i + 2 < b.len() && b[i + 1].is_ascii_hexdigit() && b[i + 2].is_ascii_hexdigit();
            if !ok {
                let bad: String = path[i..].chars().take(3).collect();
                return Err(format!("parse {s:?}: invalid URL escape {bad:?}"));
            }
            i += 3;
        } else {
            i += 1;
        }
    }
    Ok(())
}

/// Go's `QueryUnescape`: `+` is a space, `%XX` a byte; malformed escapes keep the pair out.
fn unescape(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = s.get(i + 1..i + 3)?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

fn this(ftx: &FunctionContext, v: &Value) -> Result<Url, ExecutionError> {
    match v {
        Value::Opaque(o) => o.downcast_ref::<Url>().cloned(),
        _ => None,
    }
    .ok_or_else(|| ftx.error(format!("no such overload: {}({v:?})", ftx.name)))
}

pub fn url(ftx: &FunctionContext, This(s): This<Arc<String>>) -> ResolveResult {
    parse(&s).map(|u| Value::Opaque(Arc::new(u))).map_err(|e| {
        ftx.error(format!(
            "URL parse error during conversion from string: {e}"
        ))
    })
}

pub fn is_url(This(s): This<Arc<String>>) -> bool {
    parse(&s).is_ok()
}

fn string(s: &str) -> Value {
    Value::String(Arc::new(s.to_string()))
}

pub fn get_scheme(ftx: &FunctionContext, This(v): This<Value>) -> ResolveResult {
    Ok(string(&this(ftx, &v)?.scheme))
}

pub fn get_host(ftx: &FunctionContext, This(v): This<Value>) -> ResolveResult {
    Ok(string(&this(ftx, &v)?.host))
}

/// The host without port and without IPv6 brackets.
pub fn get_hostname(ftx: &FunctionContext, This(v): This<Value>) -> ResolveResult {
    let u = this(ftx, &v)?;
    let name = match u.host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => u.host.rsplit_once(':').map_or(u.host.as_str(), |(h, _)| h),
    };
    Ok(string(name))
}

pub fn get_port(ftx: &FunctionContext, This(v): This<Value>) -> ResolveResult {
    let u = this(ftx, &v)?;
    let after = match u.host.rfind(']') {
        Some(i) => &u.host[i + 1..],
        None => u.host.rfind(':').map_or("", |i| &u.host[i..]),
    };
    Ok(string(after.strip_prefix(':').unwrap_or("")))
}

pub fn get_escaped_path(ftx: &FunctionContext, This(v): This<Value>) -> ResolveResult {
    Ok(string(&this(ftx, &v)?.path))
}

/// `map(string, list(string))`, values in the order given; malformed pairs are skipped, as
/// Go's `url.Query()` does.
pub fn get_query(ftx: &FunctionContext, This(v): This<Value>) -> ResolveResult {
    let u = this(ftx, &v)?;
    let mut out: HashMap<String, Vec<Value>> = HashMap::new();
    for pair in u.query.split(['&']).filter(|p| !p.is_empty()) {
        let (k, val) = pair.split_once('=').unwrap_or((pair, ""));
        if let (Some(k), Some(val)) = (unescape(k), unescape(val)) {
            out.entry(k).or_default().push(string(&val));
        }
    }
    let map: HashMap<String, Value> = out
        .into_iter()
        .map(|(k, v)| (k, Value::List(Arc::new(v))))
        .collect();
    Ok(Value::from(map))
}
