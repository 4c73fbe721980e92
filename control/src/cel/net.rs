//! kube's CEL IP and CIDR libraries (k8s.io/apiserver/pkg/cel/library/ip.go, cidr.go):
//! `ip(s)`, `isIP(s)`, `cidr(s)`, `isCIDR(s)` and the members `family()`, `isLoopback()`,
//! `isUnspecified()`, `isLinkLocalMulticast()`, `isLinkLocalUnicast()`, `isGlobalUnicast()`
//! (IPs) and `containsIP()`, `containsCIDR()`, `ip()`, `masked()`, `prefixLength()` (CIDRs).
//! As in kube, IPv4-mapped IPv6 addresses and zones are refused.

use std::net::IpAddr;
use std::sync::Arc;

use cel::extractors::This;
use cel::objects::Opaque;
use cel::{ExecutionError, FunctionContext, ResolveResult, Value};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ip(pub IpAddr);

impl Opaque for Ip {
    fn runtime_type_name(&self) -> &str {
        "net.IP"
    }
}

/// A prefix as written (`ip()` returns its address; `masked()` zeroes the host bits).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    pub addr: IpAddr,
    pub len: u8,
}

impl Opaque for Cidr {
    fn runtime_type_name(&self) -> &str {
        "net.CIDR"
    }
}

fn parse_ip(s: &str) -> Result<IpAddr, String> {
    if s.contains('%') {
        return Err("IP address with zone value is not allowed".into());
    }
    let ip: IpAddr = s
        .parse()
        .map_err(|_| format!("ParseAddr({s:?}): unable to parse IP"))?;
    if let IpAddr::V6(v6) = ip {
        if v6.to_ipv4_mapped().is_some() {
            return Err("IPv4-mapped IPv6 address is not allowed".into());
        }
    }
    Ok(ip)
}

fn parse_cidr(s: &str) -> Result<Cidr, String> {
    let (addr, len) = s
        .split_once('/')
        .ok_or_else(|| format!("netip.ParsePrefix({s:?}): no '/'"))?;
    let addr = parse_ip(addr)?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let len: u8 = len
        .parse()
        .ok()
        .filter(|l| *l <= max && !len.starts_with('+') && (len == "0" || !len.starts_with('0')))
        .ok_or_else(|| format!("netip.ParsePrefix({s:?}): bad bits after slash: {len:?}"))?;
    Ok(Cidr { addr, len })
}

fn bits(ip: IpAddr) -> (u128, u8) {
    match ip {
        IpAddr::V4(v4) => (u32::from(v4) as u128, 32),
        IpAddr::V6(v6) => (u128::from(v6), 128),
    }
}

fn mask(ip: IpAddr, len: u8) -> IpAddr {
    let (b, width) = bits(ip);
    let keep = if len == 0 {
        0
    } else {
        (!0u128) << (width - len)
            & if width == 32 {
                u32::MAX as u128
            } else {
                !0u128
            }
    };
    let m = b & keep;
    match ip {
        IpAddr::V4(_) => IpAddr::V4((m as u32).into()),
        IpAddr::V6(_) => IpAddr::V6(m.into()),
    }
}

impl Cidr {
    fn contains(&self, ip: IpAddr) -> bool {
        ip.is_ipv4() == self.addr.is_ipv4() && mask(ip, self.len) == mask(self.addr, self.len)
    }
}

fn opaque<T: 'static>(v: &Value) -> Option<&T> {
    match v {
        Value::Opaque(o) => o.downcast_ref::<T>(),
        _ => None,
    }
}

fn no_overload(ftx: &FunctionContext, v: &Value) -> ExecutionError {
    ftx.error(format!("no such overload: {}({v:?})", ftx.name))
}

/// `ip(string)`, or `cidr.ip()`.
pub fn ip(ftx: &FunctionContext, This(v): This<Value>) -> ResolveResult {
    match &v {
        Value::String(s) => parse_ip(s)
            .map(|ip| Value::Opaque(Arc::new(Ip(ip))))
            .map_err(|e| {
                ftx.error(format!(
                    "IP Address {s:?} parse error during conversion from string: {e}"
                ))
            }),
        _ => match opaque::<Cidr>(&v) {
            Some(c) => Ok(Value::Opaque(Arc::new(Ip(c.addr)))),
            None => Err(no_overload(ftx, &v)),
        },
    }
}

pub fn is_ip(This(s): This<Arc<String>>) -> bool {
    parse_ip(&s).is_ok()
}

pub fn cidr(ftx: &FunctionContext, This(s): This<Arc<String>>) -> ResolveResult {
    parse_cidr(&s)
        .map(|c| Value::Opaque(Arc::new(c)))
        .map_err(|e| {
            ftx.error(format!(
                "network address parse error during conversion from string: {e}"
            ))
        })
}

pub fn is_cidr(This(s): This<Arc<String>>) -> bool {
    parse_cidr(&s).is_ok()
}

fn this_ip(ftx: &FunctionContext, v: &Value) -> Result<IpAddr, ExecutionError> {
    opaque::<Ip>(v)
        .map(|i| i.0)
        .ok_or_else(|| no_overload(ftx, v))
}

fn this_cidr(ftx: &FunctionContext, v: &Value) -> Result<Cidr, ExecutionError> {
    opaque::<Cidr>(v)
        .copied()
        .ok_or_else(|| no_overload(ftx, v))
}

pub fn family(ftx: &FunctionContext, This(v): This<Value>) -> ResolveResult {
    Ok(Value::Int(if this_ip(ftx, &v)?.is_ipv4() { 4 } else { 6 }))
}

pub fn is_loopback(ftx: &FunctionContext, This(v): This<Value>) -> ResolveResult {
    Ok(Value::Bool(this_ip(ftx, &v)?.is_loopback()))
}

pub fn is_unspecified(ftx: &FunctionContext, This(v): This<Value>) -> ResolveResult {
    Ok(Value::Bool(this_ip(ftx, &v)?.is_unspecified()))
}

pub fn is_link_local_multicast(ftx: &FunctionContext, This(v): This<Value>) -> ResolveResult {
    Ok(Value::Bool(match this_ip(ftx, &v)? {
        IpAddr::V4(a) => a.octets()[..3] == [224, 0, 0],
        IpAddr::V6(a) => a.segments()[0] & 0xff0f == 0xff02,
    }))
}

pub fn is_link_local_unicast(ftx: &FunctionContext, This(v): This<Value>) -> ResolveResult {
    Ok(Value::Bool(match this_ip(ftx, &v)? {
        IpAddr::V4(a) => a.is_link_local(),
        IpAddr::V6(a) => a.segments()[0] & 0xffc0 == 0xfe80,
    }))
}

/// Go's `netip.Addr.IsGlobalUnicast`: not unspecified, loopback, multicast, link-local or the
/// IPv4 broadcast address (private ranges count as global unicast, as in Go).
pub fn is_global_unicast(ftx: &FunctionContext, This(v): This<Value>) -> ResolveResult {
    let ip = this_ip(ftx, &v)?;
    let local_or_multicast = match ip {
        IpAddr::V4(a) => a.is_link_local() || a.is_multicast() || a.is_broadcast(),
        IpAddr::V6(a) => a.segments()[0] & 0xffc0 == 0xfe80 || a.is_multicast(),
    };
    Ok(Value::Bool(
        !ip.is_unspecified() && !ip.is_loopback() && !local_or_multicast,
    ))
}

pub fn contains_ip(ftx: &FunctionContext, This(v): This<Value>, arg: Value) -> ResolveResult {
    let c = this_cidr(ftx, &v)?;
    let ip = match &arg {
        Value::String(s) => parse_ip(s).map_err(|e| ftx.error(e))?,
        other => this_ip(ftx, other)?,
    };
    Ok(Value::Bool(c.contains(ip)))
}

pub fn contains_cidr(ftx: &FunctionContext, This(v): This<Value>, arg: Value) -> ResolveResult {
    let c = this_cidr(ftx, &v)?;
    let other = match &arg {
        Value::String(s) => parse_cidr(s).map_err(|e| ftx.error(e))?,
        other => this_cidr(ftx, other)?,
    };
    Ok(Value::Bool(other.len >= c.len && c.contains(other.addr)))
}

pub fn masked(ftx: &FunctionContext, This(v): This<Value>) -> ResolveResult {
    let c = this_cidr(ftx, &v)?;
    Ok(Value::Opaque(Arc::new(Cidr {
        addr: mask(c.addr, c.len),
        len: c.len,
    })))
}

pub fn prefix_length(ftx: &FunctionContext, This(v): This<Value>) -> ResolveResult {
    Ok(Value::Int(this_cidr(ftx, &v)?.len as i64))
}

/// The text form `string(ip)` / `string(cidr)` would give (used by `to_json`).
pub fn text(v: &Value) -> Option<String> {
    if let Some(ip) = opaque::<Ip>(v) {
        return Some(ip.0.to_string());
    }
    opaque::<Cidr>(v).map(|c| format!("{}/{}", c.addr, c.len))
}
