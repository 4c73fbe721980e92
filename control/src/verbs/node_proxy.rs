//! nodes/<name>/proxy/<path>: any method, relayed to that node's kubelet at `<path>` with the
//! client's query, answered as the kubelet answers (kube's node ResourceLocation). The name
//! may carry a port (`<node>:<port>`) to reach another port on the node, as kube allows.

use crate::api::{Ctx, Reply};
use crate::kubelet_proxy::KubeletRequest;
use crate::status::ApiError;
use crate::verbs::connect::kubelet_endpoint;

/// Splits `name[:port]`; a scheme prefix (`https:name:port`) is kube's too, only https is
/// spoken to kubelets.
pub fn split_name(raw: &str) -> Result<(&str, Option<u16>), ApiError> {
    let parts: Vec<&str> = raw.split(':').collect();
    let (name, port) = match parts.as_slice() {
        [n] => (*n, None),
        [n, p] => (*n, Some(*p)),
        ["https" | "", n, p] => (*n, Some(*p)),
        [scheme, _, _] => {
            return Err(ApiError::BadRequest(format!(
                "nodes/proxy: scheme {scheme:?} is not supported, kubelets are reached over https"
            )))
        }
        _ => {
            return Err(ApiError::BadRequest(format!(
                "invalid node request {raw:?}"
            )))
        }
    };
    let port = match port.filter(|p| !p.is_empty()) {
        Some(p) => Some(
            p.parse::<u16>()
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| ApiError::BadRequest(format!("invalid port {p:?} in {raw:?}")))?,
        ),
        None => None,
    };
    Ok((name, port))
}

pub async fn handle(ctx: &Ctx<'_>) -> Result<Reply, ApiError> {
    let raw = ctx.name()?;
    let (node, port) = split_name(raw)?;
    let (host, kubelet_port) = kubelet_endpoint(ctx, node).await?;
    let path = ctx.info.proxy_path.clone().unwrap_or_else(|| "/".into());
    let query = ctx.query.encoded();
    Ok(Reply::Kubelet(KubeletRequest {
        host,
        port: port.unwrap_or(kubelet_port),
        path_and_query: if query.is_empty() {
            path
        } else {
            format!("{path}?{query}")
        },
        check_status: false,
        resource: "nodes/proxy".into(),
        name: node.into(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_names_may_carry_a_port() {
        assert_eq!(split_name("n1").unwrap(), ("n1", None));
        assert_eq!(split_name("n1:10255").unwrap(), ("n1", Some(10255)));
        assert_eq!(split_name("https:n1:10250").unwrap(), ("n1", Some(10250)));
        assert!(split_name("http:n1:80").is_err());
        assert!(split_name("n1:x").is_err());
        assert!(split_name("n1:0").is_err());
    }
}
