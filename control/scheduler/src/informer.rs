//! Informers: kube-rs watchers on Nodes and Pods feeding the cache (nodes, bound pods) and the
//! queue (pending pods that are ours), and turning changes into queue events. A relist
//! (Init..InitDone) replaces what the cache knew.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Instant;

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::Api;
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use tokio::sync::watch;

use crate::cache::{ClusterState, NodeChange};
use crate::node_info::{pod_key, PodInfo};
use crate::queue::ClusterEvent;
use crate::scheduler::Shared;

fn on_event(shared: &Shared, event: ClusterEvent) {
    shared
        .queue
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .on_event(event, Instant::now());
    shared.wake.notify_one();
}

fn apply_node(shared: &Shared, node: Node) {
    let change = shared
        .cache
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .upsert_node(node);
    if change != NodeChange::Irrelevant {
        on_event(shared, ClusterEvent::NodeChanged);
    }
}

/// Watches all Nodes until the stream ends (never, in practice; errors are retried with
/// kube-rs's default backoff). Flags `synced` after the first full list.
pub async fn nodes(client: kube::Client, shared: Arc<Shared>, synced: watch::Sender<bool>) {
    let api: Api<Node> = Api::all(client);
    let mut stream = watcher(api).boxed();
    let mut seen: Option<HashSet<String>> = None;
    while let Some(ev) = stream.next().await {
        match ev {
            Err(e) => tracing::warn!(error = %e, "node watch"),
            Ok(Event::Init) => seen = Some(HashSet::new()),
            Ok(Event::InitApply(n)) => {
                if let Some(s) = seen.as_mut() {
                    s.insert(n.metadata.name.clone().unwrap_or_default());
                }
                apply_node(&shared, n);
            }
            Ok(Event::InitDone) => {
                if let Some(s) = seen.take() {
                    shared
                        .cache
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .retain_nodes(&s);
                }
                let _ = synced.send(true);
            }
            Ok(Event::Apply(n)) => apply_node(&shared, n),
            Ok(Event::Delete(n)) => {
                let name = n.metadata.name.unwrap_or_default();
                shared
                    .cache
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove_node(&name);
            }
        }
    }
}

/// How an informer keeps one kind in the cache (storage objects for VolumeBinding, the
/// selectors of Services and workloads for PodTopologySpread's default constraints).
pub trait Cached:
    kube::Resource<DynamicType = ()>
    + Clone
    + serde::de::DeserializeOwned
    + std::fmt::Debug
    + Send
    + Sync
    + 'static
{
    /// What a change may do for pods waiting in the pool (None: nothing).
    const EVENT: Option<ClusterEvent>;
    fn cache_key(&self) -> String;
    fn upsert(self, cache: &mut ClusterState);
    fn remove(&self, cache: &mut ClusterState);
    fn retain(cache: &mut ClusterState, keep: &HashSet<String>);
}

/// Watches one kind into the cache; each change is its queue event, if any. Flags `synced`
/// after the first full list.
pub async fn cached<K: Cached>(
    client: kube::Client,
    shared: Arc<Shared>,
    synced: watch::Sender<bool>,
) {
    let api: Api<K> = Api::all(client);
    let mut stream = watcher(api).boxed();
    let mut seen: Option<HashSet<String>> = None;
    let lock = || shared.cache.lock().unwrap_or_else(|e| e.into_inner());
    let changed = || {
        if let Some(event) = K::EVENT {
            on_event(&shared, event);
        }
    };
    while let Some(ev) = stream.next().await {
        match ev {
            Err(e) => tracing::warn!(kind = %K::kind(&()), error = %e, "watch"),
            Ok(Event::Init) => seen = Some(HashSet::new()),
            Ok(Event::InitApply(o)) => {
                if let Some(s) = seen.as_mut() {
                    s.insert(o.cache_key());
                }
                o.upsert(&mut lock());
            }
            Ok(Event::InitDone) => {
                if let Some(s) = seen.take() {
                    K::retain(&mut lock(), &s);
                }
                let _ = synced.send(true);
                changed();
            }
            Ok(Event::Apply(o)) => {
                o.upsert(&mut lock());
                changed();
            }
            Ok(Event::Delete(o)) => o.remove(&mut lock()),
        }
    }
}

fn watcher<K>(api: Api<K>) -> impl futures_util::Stream<Item = Result<Event<K>, watcher::Error>>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    watcher::watcher(api, watcher::Config::default()).default_backoff()
}

/// Whether this scheduler should place the pod (kube's `responsibleForPod` plus the
/// unassigned, non-terminating, ungated checks of its pending-pod informer).
pub fn is_ours(pod: &Pod, scheduler_name: &str) -> bool {
    pending_for(pod, scheduler_name) && !is_gated(pod)
}

/// A pod this scheduler would place but for its scheduling gates (kube's "gated" pending
/// pods: counted, never attempted).
pub fn is_gated_ours(pod: &Pod, scheduler_name: &str) -> bool {
    pending_for(pod, scheduler_name) && is_gated(pod)
}

fn is_gated(pod: &Pod) -> bool {
    pod.spec
        .as_ref()
        .and_then(|s| s.scheduling_gates.as_ref())
        .is_some_and(|g| !g.is_empty())
}

/// Unassigned, not terminating, not finished, and naming this scheduler.
fn pending_for(pod: &Pod, scheduler_name: &str) -> bool {
    let Some(spec) = pod.spec.as_ref() else {
        return false;
    };
    spec.scheduler_name
        .as_deref()
        .unwrap_or("default-scheduler")
        == scheduler_name
        && spec.node_name.as_deref().unwrap_or("").is_empty()
        && pod.metadata.deletion_timestamp.is_none()
        && !matches!(
            pod.status.as_ref().and_then(|s| s.phase.as_deref()),
            Some("Succeeded" | "Failed")
        )
}

fn apply_pod(shared: &Shared, pod: Pod, scheduler_name: &str) {
    let key = pod_key(&pod);
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let bound = pod
        .spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .is_some_and(|n| !n.is_empty());
    if bound {
        let (before, after) = {
            let mut c = shared.cache.lock().unwrap_or_else(|e| e.into_inner());
            let before = c.contains_pod(&uid) && !c.is_assumed(&uid);
            c.upsert_bound_pod(Arc::new(pod));
            (before, c.contains_pod(&uid))
        };
        shared
            .queue
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .delete(&key);
        match (before, after) {
            (false, true) => on_event(shared, ClusterEvent::AssignedPodAdded),
            (true, false) => on_event(shared, ClusterEvent::AssignedPodDeleted),
            _ => {}
        }
        return;
    }
    if is_ours(&pod, scheduler_name) {
        // A pod we assumed and are binding shows up unbound until the binding lands.
        if shared
            .cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_assumed(&uid)
        {
            return;
        }
        let info = Arc::new(PodInfo::new(Arc::new(pod)));
        shared
            .queue
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .add_or_update(info, Instant::now());
        shared.wake.notify_one();
    } else if is_gated_ours(&pod, scheduler_name) {
        shared
            .queue
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .gate(&key);
    } else {
        shared
            .queue
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .delete(&key);
    }
}

fn delete_pod(shared: &Shared, pod: Pod) {
    let key = pod_key(&pod);
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let was_bound = {
        let mut c = shared.cache.lock().unwrap_or_else(|e| e.into_inner());
        let had = c.contains_pod(&uid);
        c.remove_pod(&uid);
        had
    };
    shared
        .queue
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .delete(&key);
    if was_bound {
        on_event(shared, ClusterEvent::AssignedPodDeleted);
    }
}

/// Watches all Pods; flags `synced` after the first full list.
pub async fn pods(
    client: kube::Client,
    shared: Arc<Shared>,
    scheduler_name: String,
    synced: watch::Sender<bool>,
) {
    let api: Api<Pod> = Api::all(client);
    let mut stream = watcher(api).boxed();
    let mut seen: Option<HashSet<String>> = None;
    while let Some(ev) = stream.next().await {
        match ev {
            Err(e) => tracing::warn!(error = %e, "pod watch"),
            Ok(Event::Init) => seen = Some(HashSet::new()),
            Ok(Event::InitApply(p)) => {
                if let Some(s) = seen.as_mut() {
                    s.insert(p.metadata.uid.clone().unwrap_or_default());
                }
                apply_pod(&shared, p, &scheduler_name);
            }
            Ok(Event::InitDone) => {
                if let Some(s) = seen.take() {
                    shared
                        .cache
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .retain_pods(&s);
                }
                let _ = synced.send(true);
            }
            Ok(Event::Apply(p)) => apply_pod(&shared, p, &scheduler_name),
            Ok(Event::Delete(p)) => delete_pod(&shared, p),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn pod(v: serde_json::Value) -> Pod {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn responsibility() {
        let base = json!({"metadata": {"name": "p"}, "spec": {"containers": []}});
        assert!(is_ours(&pod(base.clone()), "default-scheduler"));
        let mut other = base.clone();
        other["spec"]["schedulerName"] = json!("custom");
        assert!(!is_ours(&pod(other.clone()), "default-scheduler"));
        assert!(is_ours(&pod(other), "custom"));
        let mut bound = base.clone();
        bound["spec"]["nodeName"] = json!("n1");
        assert!(!is_ours(&pod(bound), "default-scheduler"));
        let mut gated = base.clone();
        gated["spec"]["schedulingGates"] = json!([{"name": "wait"}]);
        assert!(!is_ours(&pod(gated.clone()), "default-scheduler"));
        assert!(is_gated_ours(&pod(gated.clone()), "default-scheduler"));
        assert!(!is_gated_ours(&pod(gated), "custom"));
        assert!(!is_gated_ours(&pod(base.clone()), "default-scheduler"));
        let mut deleting = base.clone();
        deleting["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
        assert!(!is_ours(&pod(deleting), "default-scheduler"));
        let mut done = base;
        done["status"] = json!({"phase": "Failed"});
        assert!(!is_ours(&pod(done), "default-scheduler"));
    }
}
