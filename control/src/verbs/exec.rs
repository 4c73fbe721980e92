//! pods/<name>/exec (WebSocket GET or SPDY POST, both authorized as create): relayed to the
//! node's kubelet `/exec/<ns>/<pod>/<container>?command=…` and spliced after its 101.

use crate::api::{Ctx, Reply};
use crate::status::ApiError;
use crate::verbs::connect::{node_of, pick_container, pod_request, Purpose};

/// The kubelet query for exec and attach (kube's `streamParams`): stdio flags as "1", then
/// every `command` in order.
pub fn stream_query(ctx: &Ctx<'_>, with_command: bool) -> Vec<(&'static str, String)> {
    let mut q = Vec::new();
    for flag in ["stdin", "stdout", "stderr", "tty"] {
        if ctx.query.flag(flag) {
            q.push((flag, "1".to_string()));
        }
    }
    if with_command {
        for c in ctx.query.all("command") {
            q.push(("command", c.to_string()));
        }
    }
    q
}

/// exec and attach: the container, the node, then the kubelet location (kube's
/// `streamLocation`).
pub async fn stream_request(ctx: &Ctx<'_>, what: &str) -> Result<Reply, ApiError> {
    let name = ctx.name()?;
    let (pod, _) = ctx.current(name).await?;
    crate::admission::connect(ctx, name).await?;
    let container = pick_container(&pod, ctx.query.get("container"), Purpose::Stream)?;
    let node = node_of(&pod)
        .ok_or_else(|| ApiError::BadRequest(format!("pod {name} does not have a host assigned")))?;
    let ns = ctx.namespace().unwrap_or("default");
    let path = format!("/{what}/{ns}/{name}/{container}");
    let query = stream_query(ctx, what == "exec");
    Ok(Reply::Kubelet(
        pod_request(ctx, &pod, node, path, query, false).await?,
    ))
}

pub async fn handle(ctx: &Ctx<'_>) -> Result<Reply, ApiError> {
    stream_request(ctx, "exec").await
}
