//! GET pods/<name>/log: the container's log, read from its node's kubelet
//! (`/containerLogs/<ns>/<pod>/<container>`) and streamed back; `follow` keeps it open.

use crate::api::{Ctx, Reply};
use crate::status::ApiError;
use crate::verbs::connect::{int_option, node_of, pick_container, pod_request, Purpose};

/// PodLogOptions from the query, checked as kube's `ValidatePodLogOptions`, turned into the
/// kubelet's query (kube's `LogLocation`).
pub fn kubelet_query(ctx: &Ctx<'_>, name: &str) -> Result<Vec<(&'static str, String)>, ApiError> {
    let mut causes = Vec::new();
    let tail = int_option(ctx, "tailLines")?;
    let limit = int_option(ctx, "limitBytes")?;
    let since_seconds = int_option(ctx, "sinceSeconds")?;
    let since_time = match ctx.query.get("sinceTime") {
        Some(t) => Some(crate::objects::parse_time(t).ok_or_else(|| {
            ApiError::BadRequest(format!("sinceTime: {t:?} is not an RFC 3339 time"))
        })?),
        None => None,
    };
    if let Some(t) = tail.filter(|t| *t < 0) {
        causes.push((
            "tailLines".to_string(),
            format!("Invalid value: {t}: must be greater than or equal to 0"),
        ));
    }
    if let Some(l) = limit.filter(|l| *l < 1) {
        causes.push((
            "limitBytes".to_string(),
            format!("Invalid value: {l}: must be greater than 0"),
        ));
    }
    match (since_seconds, since_time) {
        (Some(_), Some(_)) => causes.push((
            String::new(),
            "Forbidden: at most one of `sinceTime` or `sinceSeconds` may be specified".into(),
        )),
        (Some(s), None) if s < 1 => causes.push((
            "sinceSeconds".to_string(),
            format!("Invalid value: {s}: must be greater than 0"),
        )),
        _ => {}
    }
    if !causes.is_empty() {
        return Err(ApiError::Invalid {
            group: String::new(),
            kind: "PodLogOptions".into(),
            name: name.into(),
            causes,
        });
    }
    let mut q = Vec::new();
    for flag in ["follow", "previous", "timestamps"] {
        if ctx.query.flag(flag) {
            q.push((flag, "true".to_string()));
        }
    }
    if let Some(s) = since_seconds {
        q.push(("sinceSeconds", s.to_string()));
    }
    if let Some(t) = since_time {
        q.push(("sinceTime", crate::objects::rfc3339(t)));
    }
    if let Some(t) = tail {
        q.push(("tailLines", t.to_string()));
    }
    if let Some(l) = limit {
        q.push(("limitBytes", l.to_string()));
    }
    Ok(q)
}

pub async fn handle(ctx: &Ctx<'_>) -> Result<Reply, ApiError> {
    if ctx.info.verb != "get" {
        return Err(ApiError::MethodNotAllowed(format!(
            "{} pods/log (only GET)",
            ctx.info.verb
        )));
    }
    let name = ctx.name()?;
    let query = kubelet_query(ctx, name)?;
    let (pod, _) = ctx.current(name).await?;
    let container = pick_container(&pod, ctx.query.get("container"), Purpose::Logs)?;
    // A pod no node runs yet has no log: an empty answer, as kube-apiserver gives.
    let Some(node) = node_of(&pod) else {
        return Ok(Reply::Text {
            code: 200,
            body: String::new(),
            content_type: "text/plain",
        });
    };
    let ns = ctx.namespace().unwrap_or("default");
    let path = format!("/containerLogs/{ns}/{name}/{container}");
    Ok(Reply::Kubelet(
        pod_request(ctx, &pod, node, path, query, true).await?,
    ))
}
