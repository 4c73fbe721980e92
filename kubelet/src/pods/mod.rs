//! The pods of this node: a watch on the pods bound to it, one worker per pod, a relister that
//! wakes a pod's worker when CRI reports a change (kubelet's generic PLEG), and housekeeping of
//! sandboxes whose pod is gone from the API.

pub mod backoff;
pub mod images;
pub mod status;
pub mod worker;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use k8s_cri::v1 as cri;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Patch, PatchParams};
use kube::runtime::watcher;
use kube::{Api, Client};
use tokio::sync::{mpsc, watch};

use crate::config::Config;
use crate::cri::Cri;
use crate::events::Recorder;
use crate::labels;
use crate::podconfig::NodeContext;
use crate::static_pods;
use worker::{Msg, Worker};

/// What every pod worker shares.
pub struct Shared {
    pub cfg: Config,
    pub ctx: NodeContext,
    pub cri: Cri,
    pub client: Client,
    pub events: Recorder,
    /// Held during a pull when serializeImagePulls is on.
    pub pulls: tokio::sync::Mutex<()>,
    /// The runtime's name for container ids (`containerd://…`, `pea-shim://…`).
    pub runtime_name: String,
    pub host_ips: Vec<String>,
    pub node_cpu_millis: u64,
    /// The pods this kubelet runs (what `/pods` of its server shows).
    pub pods: std::sync::RwLock<HashMap<String, Pod>>,
    /// The node's pressure conditions as the eviction manager last decided them.
    pub pressure: std::sync::RwLock<crate::eviction::Pressure>,
    /// The runtime's last answered CRI Status (when, runtime ready, network ready, why not):
    /// a failed Status call reuses it for 30 s, as kubelet's runtime state does.
    pub last_runtime_status: std::sync::Mutex<Option<crate::node::RuntimeStatus>>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("node", &self.cfg.node_name)
            .finish_non_exhaustive()
    }
}

/// Runs until the process ends: dispatches the node's pods (from the API and from static pod
/// manifests) to workers.
pub async fn run(
    s: Arc<Shared>,
    synced: watch::Sender<bool>,
    statics: static_pods::Source,
    mut evictions: mpsc::Receiver<crate::eviction::manager::Eviction>,
) {
    let api: Api<Pod> = Api::all(s.client.clone());
    let wc = watcher::Config::default().fields(&format!("spec.nodeName={}", s.cfg.node_name));
    let mut stream = watcher(api, wc).boxed();
    let mut workers: HashMap<String, mpsc::Sender<Msg>> = HashMap::new();
    let mut seen_in_init: HashSet<String> = HashSet::new();
    let (wake_tx, mut wake_rx) = mpsc::channel::<String>(256);
    tokio::spawn(relist(s.clone(), wake_tx));
    // Static pods run whether or not the API answers; the first read is dispatched first so
    // that housekeeping never mistakes their sandboxes for orphans.
    let static_pods::Source {
        changes: mut static_rx,
        recheck,
    } = statics;
    let mut static_uids: HashSet<String> = HashSet::new();
    while let Ok(c) = static_rx.try_recv() {
        static_change(&s, &mut workers, &mut static_uids, c).await;
    }
    loop {
        tokio::select! {
            ev = stream.next() => {
                let Some(ev) = ev else { return };
                match ev {
                    Ok(watcher::Event::Init) => seen_in_init.clear(),
                    Ok(watcher::Event::InitApply(p)) if static_pods::is_mirror(&p) => {
                        mirror_event(&s, &p, &recheck);
                    }
                    Ok(watcher::Event::InitApply(p)) => {
                        seen_in_init.insert(p.metadata.uid.clone().unwrap_or_default());
                        dispatch(&s, &mut workers, p).await;
                    }
                    Ok(watcher::Event::InitDone) => {
                        // Pods deleted while we were not watching.
                        let gone: Vec<String> = workers.keys().filter(|u| !seen_in_init.contains(*u) && !static_uids.contains(*u)).cloned().collect();
                        for uid in gone {
                            if let Some(tx) = workers.remove(&uid) {
                                let _ = tx.send(Msg::Gone).await;
                            }
                            s.pods.write().expect("pods").remove(&uid);
                        }
                        let known: HashSet<String> = seen_in_init.clone();
                        tokio::spawn(housekeeping(s.clone(), known));
                        let _ = synced.send(true);
                    }
                    Ok(watcher::Event::Apply(p)) if static_pods::is_mirror(&p) => {
                        mirror_event(&s, &p, &recheck);
                    }
                    Ok(watcher::Event::Apply(p)) => dispatch(&s, &mut workers, p).await,
                    Ok(watcher::Event::Delete(p)) if static_pods::is_mirror(&p) => recheck.notify_one(),
                    Ok(watcher::Event::Delete(p)) => {
                        let uid = p.metadata.uid.clone().unwrap_or_default();
                        if let Some(tx) = workers.remove(&uid) {
                            let _ = tx.send(Msg::Gone).await;
                        }
                        s.pods.write().expect("pods").remove(&uid);
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "watching pods; retrying");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            }
            Some(c) = static_rx.recv() => {
                static_change(&s, &mut workers, &mut static_uids, c).await;
            }
            Some(e) = evictions.recv() => {
                if let Some(tx) = workers.get(&e.uid) {
                    let _ = tx.send(Msg::Evict(Box::new(e))).await;
                }
            }
            uid = wake_rx.recv() => {
                if let Some(tx) = uid.and_then(|u| workers.get(&u)) {
                    let _ = tx.try_send(Msg::Wake);
                }
            }
        }
        workers.retain(|_, tx| !tx.is_closed());
    }
}

async fn static_change(
    s: &Arc<Shared>,
    workers: &mut HashMap<String, mpsc::Sender<Msg>>,
    static_uids: &mut HashSet<String>,
    change: static_pods::Change,
) {
    match change {
        static_pods::Change::Apply(p) => {
            static_uids.insert(p.metadata.uid.clone().unwrap_or_default());
            dispatch(s, workers, *p).await;
        }
        static_pods::Change::Remove(uid) => {
            static_uids.remove(&uid);
            if let Some(tx) = workers.remove(&uid) {
                let _ = tx.send(Msg::Gone).await;
            }
            s.pods.write().expect("pods").remove(&uid);
        }
    }
}

/// A mirror pod is never run (its static pod is); one being deleted is deleted at once, as
/// kubelet's mirror client does, and the static pod source makes it again.
fn mirror_event(s: &Arc<Shared>, mirror: &Pod, recheck: &Arc<tokio::sync::Notify>) {
    if mirror.metadata.deletion_timestamp.is_none() {
        return;
    }
    let (s, mirror, recheck) = (s.clone(), mirror.clone(), recheck.clone());
    tokio::spawn(async move {
        let api: Api<Pod> = Api::namespaced(
            s.client.clone(),
            mirror.metadata.namespace.as_deref().unwrap_or(""),
        );
        let dp = kube::api::DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(kube::api::Preconditions {
                uid: mirror.metadata.uid.clone(),
                resource_version: None,
            }),
            ..Default::default()
        };
        match api
            .delete(mirror.metadata.name.as_deref().unwrap_or(""), &dp)
            .await
        {
            Ok(_)
            | Err(kube::Error::Api(kube::core::ErrorResponse {
                code: 404 | 409, ..
            })) => {}
            Err(e) => tracing::warn!(error = %e, "deleting a terminating mirror pod"),
        }
        recheck.notify_one();
    });
}

async fn dispatch(s: &Arc<Shared>, workers: &mut HashMap<String, mpsc::Sender<Msg>>, pod: Pod) {
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    if let Some(tx) = workers.get(&uid) {
        if tx.send(Msg::Update(Box::new(pod.clone()))).await.is_ok() {
            s.pods.write().expect("pods").insert(uid, pod);
            return;
        }
        // The worker finished (its pod was deleted); a later update of it needs nothing.
        workers.remove(&uid);
        return;
    }
    let phase = pod
        .status
        .as_ref()
        .and_then(|st| st.phase.clone())
        .unwrap_or_default();
    // Finished pods (and pods refused here, which come back Failed) hold no slot.
    let active = s
        .pods
        .read()
        .expect("pods")
        .values()
        .filter(|p| {
            !matches!(
                p.status.as_ref().and_then(|st| st.phase.as_deref()),
                Some("Failed") | Some("Succeeded")
            )
        })
        .count();
    let admitted = active < s.cfg.max_pods as usize;
    if !admitted && phase != "Failed" && phase != "Succeeded" {
        reject(
            s,
            &pod,
            "OutOfpods",
            format!(
                "Node didn't have enough resource: pods, requested: 1, capacity: {}",
                s.cfg.max_pods
            ),
        )
        .await;
        return;
    }
    if phase != "Failed" && phase != "Succeeded" {
        // The eviction manager's admission: no BestEffort pods under memory pressure, none
        // under disk or PID pressure.
        let pressure = *s.pressure.read().expect("pressure");
        if let Err((reason, message)) = crate::eviction::admit(&pod, pressure) {
            reject(s, &pod, reason, message).await;
            return;
        }
    }
    s.pods
        .write()
        .expect("pods")
        .insert(uid.clone(), pod.clone());
    workers.insert(uid, Worker::spawn(s.clone(), pod));
}

/// Admission refused: the pod fails on this node with the reason kubelet gives.
async fn reject(s: &Shared, pod: &Pod, reason: &str, message: String) {
    let api: Api<Pod> = Api::namespaced(
        s.client.clone(),
        pod.metadata.namespace.as_deref().unwrap_or(""),
    );
    s.events.pod(pod, true, reason, message.clone());
    let body =
        serde_json::json!({"status": {"phase": "Failed", "reason": reason, "message": message}});
    if let Err(e) = api
        .patch_status(
            pod.metadata.name.as_deref().unwrap_or(""),
            &PatchParams::default(),
            &Patch::Merge(&body),
        )
        .await
    {
        tracing::warn!(error = %e, "rejecting pod");
    }
}

/// kubelet's generic PLEG: relist CRI every second and wake the workers of pods whose
/// containers or sandboxes changed state.
async fn relist(s: Arc<Shared>, wake: mpsc::Sender<String>) {
    let mut last: HashMap<String, (i32, String)> = HashMap::new();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let mut cri = s.cri.clone();
        let Ok(list) = cri
            .runtime
            .list_containers(cri::ListContainersRequest { filter: None })
            .await
        else {
            continue;
        };
        let mut now: HashMap<String, (i32, String)> = HashMap::new();
        for c in list.into_inner().containers {
            if let Some(uid) = c.labels.get(labels::POD_UID) {
                now.insert(c.id, (c.state, uid.clone()));
            }
        }
        let mut changed: HashSet<String> = HashSet::new();
        for (id, (state, uid)) in &now {
            if last.get(id).map(|x| x.0) != Some(*state) {
                changed.insert(uid.clone());
            }
        }
        for (id, (_, uid)) in &last {
            if !now.contains_key(id) {
                changed.insert(uid.clone());
            }
        }
        for uid in changed {
            let _ = wake.try_send(uid);
        }
        last = now;
    }
}

/// Sandboxes a kubelet made for pods the API no longer has (deleted while this kubelet was
/// down) are stopped and removed, as kubelet's orphan cleanup does.
async fn housekeeping(s: Arc<Shared>, known: HashSet<String>) {
    let mut cri = s.cri.clone();
    let Ok(list) = cri
        .runtime
        .list_pod_sandbox(cri::ListPodSandboxRequest {
            filter: Some(cri::PodSandboxFilter {
                label_selector: [(labels::MANAGED.to_string(), "true".to_string())].into(),
                ..Default::default()
            }),
        })
        .await
    else {
        return;
    };
    for sb in list.into_inner().items {
        let uid = sb.labels.get(labels::POD_UID).cloned().unwrap_or_default();
        if known.contains(&uid) || s.pods.read().expect("pods").contains_key(&uid) {
            continue;
        }
        tracing::info!(sandbox = %sb.id, pod_uid = %uid, "removing the sandbox of a pod gone from the API");
        let _ = cri
            .runtime
            .stop_pod_sandbox(cri::StopPodSandboxRequest {
                pod_sandbox_id: sb.id.clone(),
            })
            .await;
        let _ = cri
            .runtime
            .remove_pod_sandbox(cri::RemovePodSandboxRequest {
                pod_sandbox_id: sb.id.clone(),
            })
            .await;
        let _ = crate::volumes::teardown(&s.ctx.root_dir, &uid);
        if let Err(e) = s.ctx.cgroups.remove_pod_uid(&uid) {
            tracing::warn!(pod_uid = %uid, error = %e, "removing an orphaned pod cgroup");
        }
    }
}
