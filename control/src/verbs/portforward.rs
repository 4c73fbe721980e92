//! pods/<name>/portforward: relayed to the node's kubelet `/portForward/<ns>/<pod>` (kube's
//! `PortForwardLocation`), the optional `ports` query passed on as `port`.

use crate::api::{Ctx, Reply};
use crate::status::ApiError;
use crate::verbs::connect::{node_of, pod_request};

/// The `ports` values (repeated or comma-separated), each checked to be a TCP port.
pub fn ports(ctx: &Ctx<'_>) -> Result<Vec<u16>, ApiError> {
    let mut out = Vec::new();
    for v in ctx.query.all("ports") {
        for p in v.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match p.parse::<u16>() {
                Ok(port) if port > 0 => out.push(port),
                _ => {
                    return Err(ApiError::BadRequest(format!(
                        "ports: {p:?} is not a port number (1-65535)"
                    )))
                }
            }
        }
    }
    Ok(out)
}

pub async fn handle(ctx: &Ctx<'_>) -> Result<Reply, ApiError> {
    let name = ctx.name()?;
    let ports = ports(ctx)?;
    let (pod, _) = ctx.current(name).await?;
    crate::admission::connect(ctx, name).await?;
    let node = node_of(&pod)
        .ok_or_else(|| ApiError::BadRequest(format!("pod {name} does not have a host assigned")))?;
    let ns = ctx.namespace().unwrap_or("default");
    let query = if ports.is_empty() {
        Vec::new()
    } else {
        let list: Vec<String> = ports.iter().map(u16::to_string).collect();
        vec![("port", list.join(","))]
    };
    Ok(Reply::Kubelet(
        pod_request(
            ctx,
            &pod,
            node,
            format!("/portForward/{ns}/{name}"),
            query,
            false,
        )
        .await?,
    ))
}
