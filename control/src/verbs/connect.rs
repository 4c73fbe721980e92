//! What the kubelet-served verbs share (pods/log, pods/exec, pods/attach, pods/portforward,
//! nodes/proxy; kube's "connect" REST verbs): the container a request means, and where the
//! kubelet of a node listens.

use serde_json::Value;

use crate::api::Ctx;
use crate::kubelet_proxy::KubeletRequest;
use crate::status::ApiError;

/// The kubelet port when a Node does not publish one (kubelet's default `--port`).
pub const DEFAULT_KUBELET_PORT: u16 = 10250;

fn names(pod: &Value, field: &str) -> Vec<String> {
    pod.pointer(&format!("/spec/{field}"))
        .and_then(Value::as_array)
        .map(|cs| {
            cs.iter()
                .filter_map(|c| c.get("name").and_then(Value::as_str).map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Which words the "choose one of" error uses: kube's log and stream paths differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// pods/log (kube's `validateContainer`): every container kind in one list.
    Logs,
    /// exec/attach (kube's `streamLocation`): app containers, init containers named apart.
    Stream,
}

/// The container `requested` names, or the pod's only one; kube's errors otherwise.
pub fn pick_container(
    pod: &Value,
    requested: Option<&str>,
    purpose: Purpose,
) -> Result<String, ApiError> {
    let pod_name = crate::objects::name_of(pod);
    let (apps, inits, ephemeral) = (
        names(pod, "containers"),
        names(pod, "initContainers"),
        names(pod, "ephemeralContainers"),
    );
    if let Some(c) = requested {
        if apps.iter().chain(&inits).chain(&ephemeral).any(|n| n == c) {
            return Ok(c.to_string());
        }
        return Err(ApiError::BadRequest(format!(
            "container {c} is not valid for pod {pod_name}"
        )));
    }
    match apps.as_slice() {
        [only] => return Ok(only.clone()),
        [] => {
            return Err(ApiError::BadRequest(format!(
                "a container name must be specified for pod {pod_name}"
            )))
        }
        _ => {}
    }
    Err(ApiError::BadRequest(match purpose {
        Purpose::Logs => {
            let all: Vec<&str> = inits
                .iter()
                .chain(&apps)
                .chain(&ephemeral)
                .map(String::as_str)
                .collect();
            format!(
                "a container name must be specified for pod {pod_name}, choose one of: [{}]",
                all.join(" ")
            )
        }
        Purpose::Stream => {
            let mut msg = format!(
                "a container name must be specified for pod {pod_name}, choose one of: [{}]",
                apps.join(" ")
            );
            if !inits.is_empty() {
                msg.push_str(&format!(
                    " or one of the init containers: [{}]",
                    inits.join(" ")
                ));
            }
            msg
        }
    }))
}

/// The node a pod is bound to, if any.
pub fn node_of(pod: &Value) -> Option<&str> {
    pod.pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
}

/// Where `node`'s kubelet listens: its InternalIP (else its Hostname) address and
/// `status.daemonEndpoints.kubeletEndpoint.Port` (else 10250).
pub async fn kubelet_endpoint(ctx: &Ctx<'_>, node: &str) -> Result<(String, u16), ApiError> {
    let def = ctx
        .api
        .resources
        .find("", "v1", "nodes")
        .ok_or_else(|| ApiError::Internal("nodes not served".into()))?;
    let (kv, _) = ctx
        .api
        .store
        .get(&def.key(None, node))
        .await
        .map_err(|e| ApiError::from_store(e, "", "nodes", node))?;
    let kv = kv.ok_or_else(|| ApiError::NotFound {
        group: String::new(),
        resource: "nodes".into(),
        name: node.into(),
    })?;
    let obj = crate::objects::decode(&kv)?;
    endpoint_of_node(&obj)
}

/// [`kubelet_endpoint`] for a Node object at hand.
pub fn endpoint_of_node(node: &Value) -> Result<(String, u16), ApiError> {
    let addresses: Vec<(&str, &str)> = node
        .pointer("/status/addresses")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|x| {
                    Some((
                        x.get("type")?.as_str()?,
                        x.get("address")?.as_str().filter(|s| !s.is_empty())?,
                    ))
                })
                .collect()
        })
        .unwrap_or_default();
    let host = ["InternalIP", "Hostname"]
        .iter()
        .find_map(|want| addresses.iter().find(|(t, _)| t == want).map(|(_, a)| *a))
        .ok_or_else(|| {
            ApiError::Internal(format!(
                "no preferred addresses found; known addresses: {:?}",
                addresses
            ))
        })?;
    let port = node
        .pointer("/status/daemonEndpoints/kubeletEndpoint/Port")
        .and_then(Value::as_u64)
        .filter(|p| (1..=65535).contains(p))
        .map(|p| p as u16)
        .unwrap_or(DEFAULT_KUBELET_PORT);
    Ok((host.to_string(), port))
}

/// `/<path>?<query>` with the query form-encoded (as Go's `url.Values.Encode`: sorted by key).
pub fn path_with_query(path: &str, mut pairs: Vec<(&str, String)>) -> String {
    if pairs.is_empty() {
        return path.to_string();
    }
    pairs.sort_by(|a, b| a.0.cmp(b.0));
    let mut q = form_urlencoded::Serializer::new(String::new());
    for (k, v) in &pairs {
        q.append_pair(k, v);
    }
    format!("{path}?{}", q.finish())
}

/// Parses a non-negative or positive integer option, naming it when it is not one.
pub fn int_option(ctx: &Ctx<'_>, key: &str) -> Result<Option<i64>, ApiError> {
    ctx.query
        .get(key)
        .map(|v| {
            v.parse::<i64>().map_err(|_| {
                ApiError::BadRequest(format!("{key}: invalid value {v:?}: not an integer"))
            })
        })
        .transpose()
}

/// The request for a pod-scoped kubelet endpoint: `/<what>/<ns>/<pod>[/<container>]`.
pub async fn pod_request(
    ctx: &Ctx<'_>,
    pod: &Value,
    node: &str,
    path: String,
    query: Vec<(&str, String)>,
    check_status: bool,
) -> Result<KubeletRequest, ApiError> {
    let (host, port) = kubelet_endpoint(ctx, node).await?;
    Ok(KubeletRequest {
        host,
        port,
        path_and_query: path_with_query(&path, query),
        check_status,
        resource: format!("pods/{}", ctx.info.subresource.as_deref().unwrap_or("")),
        name: crate::objects::name_of(pod).to_string(),
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn pod(apps: &[&str], inits: &[&str]) -> Value {
        let c = |ns: &[&str]| ns.iter().map(|n| json!({"name": n})).collect::<Vec<_>>();
        json!({"metadata": {"name": "web"}, "spec": {"containers": c(apps), "initContainers": c(inits)}})
    }

    #[test]
    fn containers_are_picked_as_kube_does() {
        assert_eq!(
            pick_container(&pod(&["a"], &[]), None, Purpose::Logs).unwrap(),
            "a"
        );
        assert_eq!(
            pick_container(&pod(&["a", "b"], &["i"]), Some("i"), Purpose::Stream).unwrap(),
            "i"
        );
        let e = pick_container(&pod(&["a", "b"], &[]), None, Purpose::Logs).unwrap_err();
        assert_eq!(
            e.to_string(),
            "a container name must be specified for pod web, choose one of: [a b]"
        );
        assert_eq!(e.code(), 400);
        let e = pick_container(&pod(&["a", "b"], &["i"]), None, Purpose::Stream).unwrap_err();
        assert_eq!(
            e.to_string(),
            "a container name must be specified for pod web, choose one of: [a b] or one of the init containers: [i]"
        );
        let e = pick_container(&pod(&["a", "b"], &["i"]), None, Purpose::Logs).unwrap_err();
        assert!(e.to_string().ends_with("choose one of: [i a b]"), "{e}");
        let e = pick_container(&pod(&["a"], &[]), Some("zz"), Purpose::Logs).unwrap_err();
        assert_eq!(e.to_string(), "container zz is not valid for pod web");
    }

    #[test]
    fn kubelet_endpoint_prefers_internal_ip_and_defaults_the_port() {
        let node = json!({"status": {"addresses": [
            {"type": "Hostname", "address": "n1"}, {"type": "InternalIP", "address": "10.1.0.5"}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10350}}}});
        assert_eq!(endpoint_of_node(&node).unwrap(), ("10.1.0.5".into(), 10350));
        let node = json!({"status": {"addresses": [{"type": "Hostname", "address": "n1"}]}});
        assert_eq!(endpoint_of_node(&node).unwrap(), ("n1".into(), 10250));
        let e = endpoint_of_node(&json!({"status": {}})).unwrap_err();
        assert!(
            e.to_string().contains("no preferred addresses found"),
            "{e}"
        );
    }

    #[test]
    fn queries_are_encoded_sorted() {
        assert_eq!(
            path_with_query(
                "/exec/d/p/c",
                vec![
                    ("stdout", "1".into()),
                    ("command", "sh".into()),
                    ("command", "-c".into()),
                    ("command", "echo a&b".into())
                ]
            ),
            "/exec/d/p/c?command=sh&command=-c&command=echo+a%26b&stdout=1"
        );
        assert_eq!(path_with_query("/x", vec![]), "/x");
    }
}
