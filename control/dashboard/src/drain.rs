//! Drain a node from its page, as `kubectl drain` does: cordon it, then evict each of its pods
//! through `pods/eviction` (so PodDisruptionBudgets are respected), as the logged-in user.
//! DaemonSet pods are skipped (their controller would put them back) and so are mirror pods
//! (the kubelet owns them). An eviction a budget refuses (429) is retried with a doubling
//! backoff until [`DRAIN_TIMEOUT`] has passed; other refusals (403, 500) are final for that pod.
//!
//! The drain runs in the background of the session (at most [`MAX_DRAINS`] at once); its
//! progress is a list of lines the node's drain page (`/nodes/NAME/drain`) shows, re-rendered
//! by the live stream.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use tracing::Instrument;

use crate::api::{self, Api, ApiError};
use crate::html::{s, seg};

/// A drain gives up on the pods still refused after this long.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(120);
/// Drains one session may run at once.
pub const MAX_DRAINS: usize = 4;
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(8);

/// What a drain has done so far.
#[derive(Debug, Default, Clone)]
pub struct Progress {
    pub lines: Vec<String>,
    pub finished: bool,
}

/// A session's drains, by node name.
pub type Drains = Mutex<HashMap<String, Arc<Mutex<Progress>>>>;

fn say(p: &Mutex<Progress>, line: String) {
    tracing::info!(%line, "drain");
    let mut g = p.lock().unwrap_or_else(|e| e.into_inner());
    if g.lines.len() < 1000 {
        g.lines.push(line);
    }
}

/// Starts draining `node`; Err when one is already running or the session runs too many.
pub fn start(drains: &Drains, api: Api, node: &str) -> Result<(), String> {
    let mut d = drains.lock().unwrap_or_else(|e| e.into_inner());
    d.retain(|_, p| !p.lock().map(|g| g.finished).unwrap_or(true));
    if d.contains_key(node) {
        return Err(format!("node {node} is being drained already"));
    }
    if d.len() >= MAX_DRAINS {
        return Err(format!(
            "{MAX_DRAINS} drains are running in this session already"
        ));
    }
    let progress = Arc::new(Mutex::new(Progress::default()));
    d.insert(node.to_string(), progress.clone());
    let node = node.to_string();
    let span = tracing::info_span!("drain", node = %node);
    tokio::spawn(
        async move {
            run(&api, &node, &progress).await;
            progress.lock().unwrap_or_else(|e| e.into_inner()).finished = true;
        }
        .instrument(span),
    );
    Ok(())
}

/// The progress of the drain of `node` in this session, if there was one.
pub fn progress(drains: &Drains, node: &str) -> Option<Progress> {
    let d = drains.lock().unwrap_or_else(|e| e.into_inner());
    d.get(node)
        .map(|p| p.lock().unwrap_or_else(|e| e.into_inner()).clone())
}

/// Why a pod is left alone, if it is.
fn skip_reason(pod: &Value) -> Option<&'static str> {
    let owned_by_ds = pod
        .pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .any(|o| s(o, "/kind") == "DaemonSet" && o["controller"] == json!(true));
    if owned_by_ds {
        return Some("DaemonSet pod, skipped");
    }
    if pod
        .pointer("/metadata/annotations/kubernetes.io~1config.mirror")
        .is_some()
    {
        return Some("mirror pod, skipped");
    }
    None
}

async fn run(api: &Api, node: &str, p: &Mutex<Progress>) {
    let deadline = tokio::time::Instant::now() + DRAIN_TIMEOUT;
    match api
        .merge_patch(
            &api::NODES.path(None, Some(node)),
            &json!({"spec": {"unschedulable": true}}),
        )
        .await
    {
        Ok(()) => say(p, format!("node {node} cordoned")),
        Err(e) => {
            say(
                p,
                format!("cordon refused: {}", crate::views::error_line(&e)),
            );
            say(p, "drain stopped".into());
            return;
        }
    }
    let path = format!(
        "{}?fieldSelector=spec.nodeName%3D{}",
        api::PODS.path(None, None),
        seg(node)
    );
    let pods = match api.list(&path).await {
        Ok(p) => p,
        Err(e) => {
            say(
                p,
                format!("listing the node's pods: {}", crate::views::error_line(&e)),
            );
            say(p, "drain stopped".into());
            return;
        }
    };
    let mut todo: Vec<(String, String)> = Vec::new();
    for pod in &pods {
        let key = format!(
            "{}/{}",
            s(pod, "/metadata/namespace"),
            s(pod, "/metadata/name")
        );
        match skip_reason(pod) {
            Some(why) => say(p, format!("{key}: {why}")),
            None => todo.push((
                s(pod, "/metadata/namespace").to_string(),
                s(pod, "/metadata/name").to_string(),
            )),
        }
    }
    let mut failed = 0;
    for (ns, name) in &todo {
        if !evict(api, ns, name, deadline, p).await {
            failed += 1;
        }
    }
    if failed == 0 {
        say(p, format!("drained: {} pods evicted", todo.len()));
    } else {
        say(
            p,
            format!(
                "drain incomplete: {failed} of {} pods not evicted",
                todo.len()
            ),
        );
    }
}

/// Evicts one pod, retrying while a disruption budget refuses (429). True when evicted.
async fn evict(
    api: &Api,
    ns: &str,
    name: &str,
    deadline: tokio::time::Instant,
    p: &Mutex<Progress>,
) -> bool {
    let path = format!("{}/eviction", api::PODS.path(Some(ns), Some(name)));
    let body = json!({"apiVersion": "policy/v1", "kind": "Eviction",
        "metadata": {"name": name, "namespace": ns}});
    let mut backoff = FIRST_BACKOFF;
    loop {
        match api.post(&path, &body).await {
            Ok(_) => {
                say(p, format!("{ns}/{name}: evicted"));
                return true;
            }
            Err(ApiError { code: 404, .. }) => {
                say(p, format!("{ns}/{name}: already gone"));
                return true;
            }
            Err(e) if e.code == 429 => {
                if tokio::time::Instant::now() + backoff > deadline {
                    say(
                        p,
                        format!(
                            "{ns}/{name}: still refused after {} s, gave up: {}",
                            DRAIN_TIMEOUT.as_secs(),
                            crate::views::error_line(&e)
                        ),
                    );
                    return false;
                }
                say(
                    p,
                    format!(
                        "{ns}/{name}: {}; retrying in {} s",
                        crate::views::error_line(&e),
                        backoff.as_secs()
                    ),
                );
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
            Err(e) => {
                say(p, format!("{ns}/{name}: {}", crate::views::error_line(&e)));
                return false;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn daemonset_and_mirror_pods_are_skipped() {
        let ds = json!({"metadata": {"ownerReferences": [{"kind": "DaemonSet", "name": "d", "controller": true}]}});
        assert_eq!(skip_reason(&ds), Some("DaemonSet pod, skipped"));
        let mirror = json!({"metadata": {"annotations": {"kubernetes.io/config.mirror": "x"}}});
        assert_eq!(skip_reason(&mirror), Some("mirror pod, skipped"));
        let rs = json!({"metadata": {"ownerReferences": [{"kind": "ReplicaSet", "name": "r", "controller": true}]}});
        assert_eq!(skip_reason(&rs), None);
    }
}
