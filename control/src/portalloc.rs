//! Service node ports, allocated the way kube-apiserver does: Services of type NodePort and
//! LoadBalancer get one port per service port from a configured range (default 30000-32767),
//! LoadBalancers with `externalTrafficPolicy: Local` also a `healthCheckNodePort`. Ports are
//! unique cluster-wide: each is an allocation record `/registry/ranges/servicenodeports/<port>`
//! (see `ranges.rs`), so both store backends agree and restarts keep them.

use std::collections::BTreeSet;

use pea_control_store::Store;
use serde_json::{json, Value};

use crate::ranges;
use crate::status::ApiError;

pub const KEY_PREFIX: &str = "/registry/ranges/servicenodeports/";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid service node port range {0:?}: want first-last (or first+offset) within 1-65535")]
pub struct PortRangeError(pub String);

/// An inclusive port range such as 30000-32767 (`--service-node-port-range`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortRange {
    pub first: u16,
    pub last: u16,
}

impl Default for PortRange {
    fn default() -> Self {
        Self {
            first: 30000,
            last: 32767,
        }
    }
}

impl std::fmt::Display for PortRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.first, self.last)
    }
}

impl PortRange {
    /// `first-last`, `first+offset` (last = first + offset) or one port, as kube parses it.
    pub fn parse(s: &str) -> Result<Self, PortRangeError> {
        let err = || PortRangeError(s.to_string());
        let num = |x: &str| x.trim().parse::<u32>().map_err(|_| err());
        let (first, last) = if let Some((a, b)) = s.split_once('-') {
            (num(a)?, num(b)?)
        } else if let Some((a, b)) = s.split_once('+') {
            let a = num(a)?;
            (a, a + num(b)?)
        } else {
            let a = num(s)?;
            (a, a)
        };
        if first == 0 || last > 65535 || first > last {
            return Err(err());
        }
        Ok(Self {
            first: first as u16,
            last: last as u16,
        })
    }

    pub fn contains(&self, port: i64) -> bool {
        (i64::from(self.first)..=i64::from(self.last)).contains(&port)
    }
}

fn svc_type(obj: &Value) -> &str {
    obj.pointer("/spec/type")
        .and_then(Value::as_str)
        .unwrap_or("ClusterIP")
}

/// Types whose ports may carry node ports.
fn allows_node_ports(obj: &Value) -> bool {
    matches!(svc_type(obj), "NodePort" | "LoadBalancer")
}

/// Types whose ports get a node port allocated when none is given.
fn allocates_node_ports(obj: &Value) -> bool {
    match svc_type(obj) {
        "NodePort" => true,
        "LoadBalancer" => {
            obj.pointer("/spec/allocateLoadBalancerNodePorts")
                .and_then(Value::as_bool)
                != Some(false)
        }
        _ => false,
    }
}

fn needs_health_check(obj: &Value) -> bool {
    svc_type(obj) == "LoadBalancer"
        && obj
            .pointer("/spec/externalTrafficPolicy")
            .and_then(Value::as_str)
            == Some("Local")
}

fn node_port(p: &Value) -> i64 {
    p.get("nodePort").and_then(Value::as_i64).unwrap_or(0)
}

fn health_check_port(obj: &Value) -> i64 {
    obj.pointer("/spec/healthCheckNodePort")
        .and_then(Value::as_i64)
        .unwrap_or(0)
}

fn ports(obj: &Value) -> Vec<Value> {
    obj.pointer("/spec/ports")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

fn as_port(p: i64) -> Option<u16> {
    u16::try_from(p).ok().filter(|p| *p != 0)
}

/// The node ports a stored Service holds (its ports' and its health check's).
pub fn held_by(obj: &Value) -> BTreeSet<u16> {
    ports(obj)
        .iter()
        .map(node_port)
        .chain([health_check_port(obj)])
        .filter_map(as_port)
        .collect()
}

fn invalid(obj: &Value, causes: Vec<(String, String)>) -> ApiError {
    ApiError::Invalid {
        group: String::new(),
        kind: "Service".into(),
        name: crate::objects::name_of(obj).into(),
        causes,
    }
}

fn remove_health_check(obj: &mut Value) {
    if let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) {
        spec.remove("healthCheckNodePort");
    }
}

/// Like kube's service strategy: values an update left unchanged on a type that no longer uses
/// them are dropped, values a type still uses are carried over when omitted (matched by port
/// name), then what remains is checked against the type and the range.
pub fn prepare(range: PortRange, current: Option<&Value>, obj: &mut Value) -> Result<(), ApiError> {
    if let Some(cur) = current {
        let old = held_by(cur);
        if !allows_node_ports(obj) {
            if let Some(list) = obj.pointer_mut("/spec/ports").and_then(Value::as_array_mut) {
                for p in list {
                    if as_port(node_port(p)).is_some_and(|n| old.contains(&n)) {
                        if let Some(m) = p.as_object_mut() {
                            m.remove("nodePort");
                        }
                    }
                }
            }
        }
        if !needs_health_check(obj) && health_check_port(obj) == health_check_port(cur) {
            remove_health_check(obj);
        }
        if allows_node_ports(obj) && allows_node_ports(cur) {
            let used: BTreeSet<i64> = ports(obj).iter().map(node_port).collect();
            let by_name: Vec<(String, i64)> = ports(cur)
                .iter()
                .map(|p| {
                    let name = p.get("name").and_then(Value::as_str).unwrap_or("");
                    (name.to_string(), node_port(p))
                })
                .collect();
            if let Some(list) = obj.pointer_mut("/spec/ports").and_then(Value::as_array_mut) {
                for p in list.iter_mut().filter(|p| node_port(p) == 0) {
                    let name = p.get("name").and_then(Value::as_str).unwrap_or("");
                    if let Some((_, old)) = by_name.iter().find(|(n, _)| n == name) {
                        if let Some(p) = p
                            .as_object_mut()
                            .filter(|_| *old != 0 && !used.contains(old))
                        {
                            p.insert("nodePort".into(), json!(old));
                        }
                    }
                }
            }
        }
        if needs_health_check(obj) && needs_health_check(cur) && health_check_port(obj) == 0 {
            if let Some(hc) = as_port(health_check_port(cur)) {
                obj["spec"]["healthCheckNodePort"] = json!(hc);
            }
        }
    }
    let mut causes = Vec::new();
    let mut seen = BTreeSet::new();
    for (i, p) in ports(obj).iter().enumerate() {
        let n = node_port(p);
        if n == 0 {
            continue;
        }
        let field = format!("spec.ports[{i}].nodePort");
        if !allows_node_ports(obj) {
            causes.push((
                field,
                format!(
                    "Forbidden: may not be used when `type` is '{}'",
                    svc_type(obj)
                ),
            ));
        } else if !range.contains(n) {
            causes.push((field, format!("Invalid value: {n}: provided port is not in the valid range. The range of valid ports is {range}")));
        } else {
            let protocol = p.get("protocol").and_then(Value::as_str).unwrap_or("TCP");
            if !seen.insert((n, protocol.to_string())) {
                causes.push((field, format!("Duplicate value: {n}")));
            }
        }
    }
    let hc = health_check_port(obj);
    if hc != 0 {
        let field = "spec.healthCheckNodePort".to_string();
        if !needs_health_check(obj) {
            causes.push((field, format!("Invalid value: {hc}: may only be set when `type` is 'LoadBalancer' and `externalTrafficPolicy` is 'Local'")));
        } else if !range.contains(hc) {
            causes.push((field, format!("Invalid value: {hc}: provided port is not in the valid range. The range of valid ports is {range}")));
        }
    }
    if causes.is_empty() {
        Ok(())
    } else {
        Err(invalid(obj, causes))
    }
}

/// Where a node port goes in the object.
#[derive(Debug, Clone, Copy)]
enum Slot {
    Port(usize),
    HealthCheck,
}

impl Slot {
    fn field(self) -> String {
        match self {
            Slot::Port(i) => format!("spec.ports[{i}].nodePort"),
            Slot::HealthCheck => "spec.healthCheckNodePort".into(),
        }
    }

    fn set(self, obj: &mut Value, port: u16) {
        match self {
            Slot::Port(i) => obj["spec"]["ports"][i]["nodePort"] = json!(port),
            Slot::HealthCheck => obj["spec"]["healthCheckNodePort"] = json!(port),
        }
    }
}

/// Reserves the node ports `obj` (already through [`prepare`]) asks for that `current` did not
/// hold, and allocates free ones where a port (or the health check) still needs one, writing
/// them into `obj`. Returns the newly reserved ports, which the caller releases if its write
/// fails; on error nothing new stays reserved.
pub async fn reserve(
    store: &dyn Store,
    range: PortRange,
    current: Option<&Value>,
    obj: &mut Value,
) -> Result<Vec<u16>, ApiError> {
    let owner = ranges::owner_of(obj);
    let old = current.map(held_by).unwrap_or_default();
    let mut reserved: Vec<u16> = Vec::new();
    let result = reserve_into(store, range, &owner, &old, obj, &mut reserved).await;
    if result.is_err() {
        for p in &reserved {
            ranges::release(store, KEY_PREFIX, &p.to_string(), &owner).await;
        }
    }
    result.map(|()| reserved)
}

async fn reserve_into(
    store: &dyn Store,
    range: PortRange,
    owner: &str,
    old: &BTreeSet<u16>,
    obj: &mut Value,
    reserved: &mut Vec<u16>,
) -> Result<(), ApiError> {
    let store_err = |e| ApiError::Internal(format!("allocating a node port: {e}"));
    let mut wanted: Vec<(Slot, u16)> = ports(obj)
        .iter()
        .enumerate()
        .filter_map(|(i, p)| as_port(node_port(p)).map(|n| (Slot::Port(i), n)))
        .collect();
    let port_values: BTreeSet<u16> = wanted.iter().map(|(_, n)| *n).collect();
    if let Some(hc) = as_port(health_check_port(obj)) {
        if port_values.contains(&hc) {
            return Err(invalid(
                obj,
                vec![(
                    Slot::HealthCheck.field(),
                    format!("Invalid value: {hc}: provided port is already allocated"),
                )],
            ));
        }
        wanted.push((Slot::HealthCheck, hc));
    }
    // Ports named by the client: taken as given, or refused.
    for (slot, n) in &wanted {
        if old.contains(n) || reserved.contains(n) {
            continue;
        }
        if !ranges::reserve(store, KEY_PREFIX, &n.to_string(), owner)
            .await
            .map_err(store_err)?
        {
            return Err(invalid(
                obj,
                vec![(
                    slot.field(),
                    format!("Invalid value: {n}: provided port is already allocated"),
                )],
            ));
        }
        reserved.push(*n);
    }
    // Slots still empty get a random free port.
    let mut empty: Vec<Slot> = Vec::new();
    if allocates_node_ports(obj) {
        empty.extend(
            ports(obj)
                .iter()
                .enumerate()
                .filter(|(_, p)| node_port(p) == 0)
                .map(|(i, _)| Slot::Port(i)),
        );
    }
    if needs_health_check(obj) && health_check_port(obj) == 0 {
        empty.push(Slot::HealthCheck);
    }
    if empty.is_empty() {
        return Ok(());
    }
    let taken = ranges::held(store, KEY_PREFIX).await.map_err(store_err)?;
    let mut free: Vec<u16> = (range.first..=range.last)
        .filter(|p| !taken.contains_key(&p.to_string()) && !port_values.contains(p))
        .collect();
    for slot in empty {
        loop {
            if free.is_empty() {
                return Err(invalid(
                    obj,
                    vec![(
                        slot.field(),
                        "Internal error: failed to allocate a nodePort: range is full".into(),
                    )],
                ));
            }
            let mut r = [0u8; 4];
            crate::objects::random_bytes(&mut r);
            let p = free.swap_remove(u32::from_le_bytes(r) as usize % free.len());
            // Another writer may have taken it since the list.
            if ranges::reserve(store, KEY_PREFIX, &p.to_string(), owner)
                .await
                .map_err(store_err)?
            {
                reserved.push(p);
                slot.set(obj, p);
                break;
            }
        }
    }
    Ok(())
}

/// For dry runs: refuses requested ports another Service holds, reserving nothing.
pub async fn check_taken(
    store: &dyn Store,
    current: Option<&Value>,
    obj: &Value,
) -> Result<(), ApiError> {
    let old = current.map(held_by).unwrap_or_default();
    let mut wanted: Vec<(Slot, u16)> = ports(obj)
        .iter()
        .enumerate()
        .filter_map(|(i, p)| as_port(node_port(p)).map(|n| (Slot::Port(i), n)))
        .collect();
    if let Some(hc) = as_port(health_check_port(obj)) {
        wanted.push((Slot::HealthCheck, hc));
    }
    for (slot, n) in wanted.into_iter().filter(|(_, n)| !old.contains(n)) {
        let (kv, _) = store
            .get(&format!("{KEY_PREFIX}{n}"))
            .await
            .map_err(|e| ApiError::Internal(format!("checking node port {n}: {e}")))?;
        if kv.is_some() {
            return Err(invalid(
                obj,
                vec![(
                    slot.field(),
                    format!("Invalid value: {n}: provided port is already allocated"),
                )],
            ));
        }
    }
    Ok(())
}

/// After a successful update: frees the ports `old` held that `new` no longer does.
pub async fn release_dropped(store: &dyn Store, old: &Value, new: &Value) {
    let owner = ranges::owner_of(old);
    let keep = held_by(new);
    for p in held_by(old).difference(&keep) {
        ranges::release(store, KEY_PREFIX, &p.to_string(), &owner).await;
    }
}

/// Frees every node port a deleted Service held.
pub async fn release_all(store: &dyn Store, obj: &Value) {
    let owner = ranges::owner_of(obj);
    for p in held_by(obj) {
        ranges::release(store, KEY_PREFIX, &p.to_string(), &owner).await;
    }
}

/// Frees ports reserved by a write that then failed.
pub async fn release_reserved(store: &dyn Store, obj: &Value, reserved: &[u16]) {
    let owner = ranges::owner_of(obj);
    for p in reserved {
        ranges::release(store, KEY_PREFIX, &p.to_string(), &owner).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_parse_like_kube() {
        assert_eq!(
            PortRange::parse("30000-32767").unwrap(),
            PortRange::default()
        );
        assert_eq!(
            PortRange::parse("30000+10").unwrap(),
            PortRange {
                first: 30000,
                last: 30010
            }
        );
        assert!(PortRange::parse("0-10").is_err());
        assert!(PortRange::parse("5-4").is_err());
        assert!(PortRange::parse("1-70000").is_err());
        assert!(PortRange::parse("x").is_err());
    }

    #[test]
    fn prepare_leaves_ports_that_are_not_objects_to_validation() {
        let cur = json!({"metadata": {"name": "s"}, "spec": {"type": "NodePort", "ports": [{"port": 80, "nodePort": 30001}]}});
        let mut new =
            json!({"metadata": {"name": "s"}, "spec": {"type": "NodePort", "ports": [1]}});
        prepare(PortRange::default(), Some(&cur), &mut new).unwrap();
        assert_eq!(new["spec"]["ports"], json!([1]));
        crate::defaults::apply_to_spec("Service", &mut new);
        assert_eq!(new["spec"]["ports"], json!([1]));
    }

    #[test]
    fn prepare_checks_type_range_and_carries_ports_over() {
        let r = PortRange::default();
        let mut bad = json!({"metadata": {"name": "s"}, "spec": {"type": "ClusterIP", "ports": [{"port": 80, "nodePort": 30001}]}});
        let e = prepare(r, None, &mut bad).unwrap_err().to_string();
        assert!(
            e.contains("may not be used when `type` is 'ClusterIP'"),
            "{e}"
        );
        let mut out = json!({"metadata": {"name": "s"}, "spec": {"type": "NodePort", "ports": [{"port": 80, "nodePort": 80}]}});
        let e = prepare(r, None, &mut out).unwrap_err().to_string();
        assert!(
            e.contains(
                "provided port is not in the valid range. The range of valid ports is 30000-32767"
            ),
            "{e}"
        );
        let cur = json!({"metadata": {"name": "s"}, "spec": {"type": "NodePort", "ports": [{"name": "a", "port": 80, "nodePort": 30001}]}});
        let mut new = json!({"metadata": {"name": "s"}, "spec": {"type": "NodePort", "ports": [{"name": "a", "port": 81}]}});
        prepare(r, Some(&cur), &mut new).unwrap();
        assert_eq!(new["spec"]["ports"][0]["nodePort"], 30001);
        // Back to ClusterIP with the old port still in the body: dropped, not refused.
        let mut back = json!({"metadata": {"name": "s"}, "spec": {"type": "ClusterIP", "ports": [{"name": "a", "port": 80, "nodePort": 30001}]}});
        prepare(r, Some(&cur), &mut back).unwrap();
        assert!(back["spec"]["ports"][0].get("nodePort").is_none());
        assert!(held_by(&back).is_empty());
    }
}
