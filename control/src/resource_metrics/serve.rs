//! GET and LIST of `metrics.k8s.io/v1beta1` NodeMetrics (`/nodes[/NAME]`) and PodMetrics
//! (`[/namespaces/NS]/pods[/NAME]`), shaped as metrics-server answers: the objects' names and
//! labels come from the Nodes and Pods in the store (label and field selectors apply to them),
//! usage from [`super::storage`]; objects without usable samples are left out of lists and are
//! NotFound on get.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use pea_control_store::ListOptions;
use serde_json::{json, Value};

use super::storage::Usage;
use super::{ResourceMetrics, GROUP, VERSION};
use crate::api::{Api, Reply};
use crate::request::{Query, RequestInfo};
use crate::selectors::{FieldSelector, LabelSelector};
use crate::status::ApiError;

/// The discovery entries of the group: (plural, kind, namespaced).
pub const RESOURCES: [(&str, &str, bool); 2] = [
    ("nodes", "NodeMetrics", false),
    ("pods", "PodMetrics", true),
];

pub async fn handle(api: &Api, info: &RequestInfo, query: &Query) -> Result<Reply, ApiError> {
    let no_route = || ApiError::NoRoute {
        path: format!("/apis/{GROUP}/{}/{}", info.api_version, info.resource),
    };
    if info.api_version != VERSION || info.subresource.is_some() {
        return Err(no_route());
    }
    let (kind, base) = match info.resource.as_str() {
        "nodes" if info.namespace.is_none() => ("NodeMetrics", ("", "nodes", "Node")),
        "pods" => ("PodMetrics", ("", "pods", "Pod")),
        _ => return Err(no_route()),
    };
    if !matches!(info.verb.as_str(), "get" | "list") {
        return Err(ApiError::MethodNotAllowed(format!(
            "{} on {}.{GROUP}: only get and list are served",
            info.verb, info.resource
        )));
    }
    let labels = LabelSelector::parse(query.get("labelSelector").unwrap_or(""))
        .map_err(|e| ApiError::BadRequest(format!("invalid labelSelector: {e}")))?;
    let fields = FieldSelector::parse(query.get("fieldSelector").unwrap_or(""), base.2)
        .map_err(|e| ApiError::BadRequest(format!("invalid fieldSelector: {e}")))?;
    let def = api
        .resources
        .find(base.0, "v1", base.1)
        .ok_or_else(|| ApiError::Internal(format!("{} not served", base.1)))?;
    let objects: Vec<Value> = match &info.name {
        Some(name) => {
            let (kv, _) = api
                .store
                .get(&def.key(info.namespace.as_deref(), name))
                .await
                .map_err(|e| ApiError::from_store(e, "", base.1, name))?;
            kv.and_then(|kv| serde_json::from_slice(&kv.value).ok())
                .into_iter()
                .collect()
        }
        None => api
            .store
            .list(
                &def.prefix(info.namespace.as_deref()),
                &ListOptions::default(),
            )
            .await
            .map_err(|e| ApiError::from_store(e, "", base.1, ""))?
            .items
            .iter()
            .filter_map(|kv| serde_json::from_slice::<Value>(&kv.value).ok())
            .filter(|o| labels.matches(o) && fields.matches(o))
            .collect(),
    };
    let now = SystemTime::now();
    let items: Vec<Value> = objects
        .iter()
        .filter_map(|o| metrics_of(&api.resource_metrics, kind, o, now))
        .collect();
    match &info.name {
        Some(name) => {
            items
                .into_iter()
                .next()
                .map(|o| Reply::json(200, o))
                .ok_or(ApiError::NotFound {
                    group: GROUP.into(),
                    resource: info.resource.clone(),
                    name: name.clone(),
                })
        }
        None => Ok(Reply::json(
            200,
            json!({"kind": format!("{kind}List"), "apiVersion": format!("{GROUP}/{VERSION}"),
                "metadata": {}, "items": items}),
        )),
    }
}

/// The NodeMetrics or PodMetrics of one Node or Pod, if it has usable samples.
fn metrics_of(m: &ResourceMetrics, kind: &str, obj: &Value, now: SystemTime) -> Option<Value> {
    let meta = obj.get("metadata")?;
    let name = meta.get("name")?.as_str()?;
    let mut out_meta = json!({"name": name, "creationTimestamp": crate::objects::rfc3339(now)});
    if let Some(l) = meta.get("labels") {
        out_meta["labels"] = l.clone();
    }
    let ns = meta.get("namespace").and_then(Value::as_str);
    if kind == "PodMetrics" {
        out_meta["namespace"] = json!(ns?);
    }
    let head = |u: &Usage| {
        json!({"kind": kind, "apiVersion": format!("{GROUP}/{VERSION}"),
            "metadata": out_meta, "timestamp": timestamp(u.timestamp_ms),
            "window": go_duration(Duration::from_millis(u.window_ms.max(0) as u64))})
    };
    if kind == "NodeMetrics" {
        let u = m.storage().node(name)?;
        let mut o = head(&u);
        o["usage"] = usage_json(&u);
        return Some(o);
    }
    let (earliest, containers) = m.storage().pod(ns?, name)?;
    let mut o = head(&earliest);
    o["containers"] = containers
        .iter()
        .map(|(c, u)| json!({"name": c, "usage": usage_json(u)}))
        .collect();
    Some(o)
}

fn usage_json(u: &Usage) -> Value {
    json!({"cpu": cpu_quantity(u.cpu_nanocores), "memory": memory_quantity(u.memory_bytes)})
}

fn timestamp(ms: i64) -> String {
    crate::objects::rfc3339(UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64))
}

/// Nanocores as resource.Quantity's canonical DecimalSI string (`250m`, `1`, `123456789n`).
pub fn cpu_quantity(nanocores: u64) -> String {
    if nanocores == 0 {
        return "0".into();
    }
    for (div, suffix) in [(1_000_000_000, ""), (1_000_000, "m"), (1_000, "u")] {
        if nanocores % div == 0 {
            return format!("{}{suffix}", nanocores / div);
        }
    }
    format!("{nanocores}n")
}

/// Bytes as resource.Quantity's canonical BinarySI string (`4Ki`, `12Mi`, `1000`).
pub fn memory_quantity(bytes: u64) -> String {
    if bytes < 1024 {
        return bytes.to_string();
    }
    let mut v = bytes;
    let mut suffix = "";
    for s in ["Ki", "Mi", "Gi", "Ti", "Pi", "Ei"] {
        if v % 1024 != 0 {
            break;
        }
        v /= 1024;
        suffix = s;
    }
    format!("{v}{suffix}")
}

/// Go's `time.Duration.String()` (metav1.Duration's JSON): `15s`, `1.5s`, `1m0.25s`, `0s`.
pub fn go_duration(d: Duration) -> String {
    let total_ms = d.as_millis() as u64;
    if total_ms == 0 {
        return "0s".into();
    }
    if total_ms < 1000 {
        return format!("{total_ms}ms");
    }
    let (h, rest) = (total_ms / 3_600_000, total_ms % 3_600_000);
    let (m, rest) = (rest / 60_000, rest % 60_000);
    let (s, ms) = (rest / 1000, rest % 1000);
    let secs = if ms == 0 {
        format!("{s}s")
    } else {
        format!("{s}.{}s", format!("{ms:03}").trim_end_matches('0'))
    };
    match (h, m) {
        (0, 0) => secs,
        (0, m) => format!("{m}m{secs}"),
        (h, m) => format!("{h}h{m}m{secs}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_and_durations_read_like_metrics_server() {
        assert_eq!(cpu_quantity(250_000_000), "250m");
        assert_eq!(cpu_quantity(2_000_000_000), "2");
        assert_eq!(cpu_quantity(123_456_789), "123456789n");
        assert_eq!(cpu_quantity(5_000), "5u");
        assert_eq!(cpu_quantity(0), "0");
        assert_eq!(memory_quantity(4096), "4Ki");
        assert_eq!(memory_quantity(12 * 1024 * 1024), "12Mi");
        assert_eq!(memory_quantity(1_000_000), "1000000");
        assert_eq!(memory_quantity(1023), "1023");
        assert_eq!(go_duration(Duration::from_millis(15_000)), "15s");
        assert_eq!(go_duration(Duration::from_millis(1_500)), "1.5s");
        assert_eq!(go_duration(Duration::from_millis(60_250)), "1m0.25s");
        assert_eq!(go_duration(Duration::from_millis(3_723_004)), "1h2m3.004s");
        assert_eq!(go_duration(Duration::from_millis(200)), "200ms");
        assert_eq!(go_duration(Duration::ZERO), "0s");
    }
}
