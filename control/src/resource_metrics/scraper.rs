//! Polls every Ready node's kubelet for `/metrics/resource` once per resolution, concurrently,
//! with pea-control's kubelet client certificate (as metrics-server does with its own), and
//! stores the batch. A node that fails to answer is left out of that batch (so its metrics
//! disappear until two good scrapes again), and the failure is logged.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::join_all;
use pea_control_store::ListOptions;
use serde_json::Value;
use tokio::sync::watch;
use tracing::Instrument;

use super::storage::{decode, NodeBatch};
use super::ResourceMetrics;
use crate::api::Api;
use crate::kubelet_proxy::KubeletClient;

/// The largest `/metrics/resource` body read from a kubelet.
const MAX_BODY: usize = 16 * 1024 * 1024;
/// metrics-server's default `--kubelet-request-timeout`... bounded by the resolution.
const MAX_TIMEOUT: Duration = Duration::from_secs(10);

fn ready(node: &Value) -> bool {
    node.pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|cs| {
            cs.iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        })
}

/// Scrapes until `stop` turns true.
pub async fn run(
    api: Arc<Api>,
    kubelet: Arc<KubeletClient>,
    metrics: Arc<ResourceMetrics>,
    mut stop: watch::Receiver<bool>,
) {
    let every = metrics.resolution;
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            _ = ticker.tick() => {}
        }
        let batch = scrape_all(&api, &kubelet, every.min(MAX_TIMEOUT)).await;
        metrics
            .storage()
            .store(batch, every.as_millis().try_into().unwrap_or(i64::MAX));
    }
}

async fn scrape_all(
    api: &Api,
    kubelet: &KubeletClient,
    timeout: Duration,
) -> HashMap<String, NodeBatch> {
    let Some(def) = api.resources.find("", "v1", "nodes") else {
        return HashMap::new();
    };
    let nodes = match api
        .store
        .list(&def.prefix(None), &ListOptions::default())
        .await
    {
        Ok(page) => page.items,
        Err(e) => {
            tracing::warn!(error = %e, "listing nodes to scrape failed");
            return HashMap::new();
        }
    };
    let jobs = nodes.iter().filter_map(|kv| {
        let node: Value = serde_json::from_slice(&kv.value).ok()?;
        if !ready(&node) {
            return None;
        }
        let name = node.pointer("/metadata/name")?.as_str()?.to_string();
        let endpoint = crate::verbs::connect::endpoint_of_node(&node);
        Some(async move {
            let (host, port) = match endpoint {
                Ok(e) => e,
                Err(e) => {
                    tracing::debug!(node = %name, error = %e, "node has no kubelet address");
                    return None;
                }
            };
            let span = tracing::debug_span!("scrape", node = %name);
            let got = tokio::time::timeout(
                timeout,
                kubelet.fetch(&host, port, "/metrics/resource", MAX_BODY),
            )
            .instrument(span)
            .await;
            let text = match got {
                Ok(Ok(body)) => body,
                Ok(Err(e)) => {
                    tracing::info!(node = %name, error = %e, "scraping the kubelet failed");
                    return None;
                }
                Err(_) => {
                    tracing::info!(node = %name, ?timeout, "scraping the kubelet timed out");
                    return None;
                }
            };
            match decode(&String::from_utf8_lossy(&text)) {
                Ok(b) => Some((name, b)),
                Err(e) => {
                    tracing::info!(node = %name, error = %e, "kubelet resource metrics unreadable");
                    None
                }
            }
        })
    });
    join_all(jobs).await.into_iter().flatten().collect()
}
