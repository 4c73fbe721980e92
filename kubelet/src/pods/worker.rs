//! One pod's worker: kubelet's `SyncPod` loop for a single pod. Each pass compares what the pod
//! asks for with what CRI runs and takes the next steps: sandbox, volumes, image pulls, init
//! containers in order, containers by restartPolicy with CrashLoopBackOff, probes, hooks; then
//! the pod's status is written when it changed. Deletion runs preStop hooks, stops containers
//! within the grace period, removes the sandbox, cgroup and volumes, and deletes the pod.
//!
//! ```text
//!   new ──► sync ◄──────── update / wake (PLEG) / timer
//!            │ deletionTimestamp or gone from the API
//!            ▼
//!        terminate ──► (deleted in the API with grace 0) ──► done
//! ```

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_cri::v1 as cri;
use k8s_openapi::api::core::v1::{
    ConfigMap, Container, LifecycleHandler, PersistentVolume, PersistentVolumeClaim, Pod,
    PodCondition, PodStatus, Secret, Service,
};
use kube::api::{DeleteParams, Patch, PatchParams, Preconditions};
use kube::Api;
use tokio::sync::mpsc;
use tracing::Instrument;

use super::backoff::Backoff;
use super::status::{self, Observed, StatusInput};
use super::Shared;
use crate::labels;
use crate::podconfig::{self, container, env::Refs, sandbox};
use crate::probes::{self, Kind, Outcome, ProbeState};
use crate::static_pods;
use crate::volumes;

#[derive(Debug)]
pub enum Msg {
    Update(Box<Pod>),
    Wake,
    /// The pod is gone from the API (deleted with grace 0, or missed while disconnected).
    Gone,
    /// The eviction manager chose this pod: stop it with the eviction's grace and fail it as
    /// Evicted with its message (and the DisruptionTarget condition when it says so).
    Evict(Box<crate::eviction::manager::Eviction>),
}

/// Longest a worker sleeps without a reason to wake (resyncs configmap/secret volumes too).
const RESYNC: Duration = Duration::from_secs(10);
/// How soon a pod waiting for a PersistentVolumeClaim to be bound looks again.
const CLAIM_RETRY: Duration = Duration::from_secs(2);

pub struct Worker {
    s: Arc<Shared>,
    pod: Pod,
    uid: String,
    backoff: Backoff,
    probes: HashMap<String, Vec<ProbeState>>,
    post_started: HashSet<String>,
    killed: HashSet<String>,
    refs_at: Option<Instant>,
    refs: Refs,
    /// This pod's projected service-account tokens (requested, cached, rotated).
    tokens: volumes::token::TokenManager,
    last_status: Option<PodStatus>,
    /// Why a container is not running now, by container name.
    waiting: HashMap<String, (String, String)>,
    terminal_done: bool,
    /// Why the pod waits for a PersistentVolumeClaim (the last FailedMount told), if it does.
    claim_wait: Option<String>,
    /// When this kubelet first saw the pod; `None` once its start was counted (or when it was
    /// Running already), for `kubelet_pod_start_duration_seconds`.
    first_seen: Option<Instant>,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("uid", &self.uid)
            .finish_non_exhaustive()
    }
}

enum Next {
    Wait(Duration),
    Done,
}

type Step<T> = Result<T, (&'static str, String)>;

fn cri_err(what: &'static str) -> impl Fn(tonic::Status) -> (&'static str, String) {
    move |s| (what, s.message().to_string())
}

impl Worker {
    pub fn spawn(s: Arc<Shared>, pod: Pod) -> mpsc::Sender<Msg> {
        let (tx, rx) = mpsc::channel(16);
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let key = format!(
            "{}/{}",
            pod.metadata.namespace.as_deref().unwrap_or(""),
            pod.metadata.name.as_deref().unwrap_or("")
        );
        let running = pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running");
        let w = Worker {
            s,
            uid: uid.clone(),
            last_status: pod.status.clone(),
            pod,
            backoff: Backoff::default(),
            probes: HashMap::new(),
            post_started: HashSet::new(),
            killed: HashSet::new(),
            refs_at: None,
            refs: Refs::default(),
            tokens: Default::default(),
            waiting: HashMap::new(),
            terminal_done: false,
            claim_wait: None,
            first_seen: (!running).then(Instant::now),
        };
        let span = tracing::info_span!("pod", pod = %key, uid = %uid);
        tokio::spawn(w.run(rx).instrument(span));
        tx
    }

    async fn run(mut self, mut rx: mpsc::Receiver<Msg>) {
        loop {
            let next = match self.sync().await {
                Ok(n) => n,
                Err(e) => {
                    tracing::warn!(error = %e, "sync failed; retrying");
                    Next::Wait(Duration::from_secs(2))
                }
            };
            let wait = match next {
                Next::Done => return,
                Next::Wait(w) => w,
            };
            let msg = tokio::select! {
                m = rx.recv() => m,
                _ = tokio::time::sleep(wait) => Some(Msg::Wake),
            };
            match msg {
                Some(Msg::Update(p)) => self.update(*p),
                Some(Msg::Wake) => {}
                Some(Msg::Evict(e)) => self.evict(*e).await,
                Some(Msg::Gone) | None => {
                    self.terminate(None).await;
                    self.cleanup_node_state();
                    return;
                }
            }
            // Coalesce what queued up meanwhile.
            while let Ok(m) = rx.try_recv() {
                match m {
                    Msg::Update(p) => self.update(*p),
                    Msg::Wake => {}
                    Msg::Evict(e) => self.evict(*e).await,
                    Msg::Gone => {
                        self.terminate(None).await;
                        self.cleanup_node_state();
                        return;
                    }
                }
            }
        }
    }

    /// kubelet's eviction: containers stopped with the manager's grace, the pod Failed with a
    /// DisruptionTarget condition for threshold evictions (kubelet's PodDisruptionConditions:
    /// reason TerminationByKubelet, the eviction message), its volumes released.
    async fn evict(&mut self, e: crate::eviction::manager::Eviction) {
        if self.terminal_done {
            return;
        }
        self.stop_all(e.grace).await;
        let condition = e.disruption_target.then(|| PodCondition {
            type_: crate::eviction::manager::DISRUPTION_TARGET.into(),
            status: "True".into(),
            reason: Some(crate::eviction::manager::TERMINATION_BY_KUBELET.into()),
            message: Some(e.message.clone()),
            last_transition_time: Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                chrono::Utc::now(),
            )),
            ..Default::default()
        });
        if let Err(e) = self
            .fail_with(crate::eviction::REASON, e.message, condition)
            .await
        {
            tracing::warn!(error = %e, "writing the evicted pod's status");
        }
        crate::eviction::manager::release_volumes(&self.s.ctx.root_dir, &self.uid);
    }

    fn update(&mut self, pod: Pod) {
        // A static pod is sent again when its mirror was (re)made: the new mirror has no
        // status yet, so the next sync writes it whatever was written before.
        if static_pods::is_static(&pod) {
            self.last_status = None;
        }
        self.pod = pod;
    }

    fn name(&self) -> String {
        self.pod.metadata.name.clone().unwrap_or_default()
    }
    fn ns(&self) -> String {
        self.pod.metadata.namespace.clone().unwrap_or_default()
    }
    fn spec(&self) -> k8s_openapi::api::core::v1::PodSpec {
        self.pod.spec.clone().unwrap_or_default()
    }
    fn pod_dir(&self) -> std::path::PathBuf {
        volumes::pod_dir(&self.s.ctx.root_dir, &self.uid)
    }

    async fn sync(&mut self) -> Result<Next, String> {
        if self.pod.metadata.deletion_timestamp.is_some() {
            let grace = self
                .pod
                .metadata
                .deletion_grace_period_seconds
                .or(self.spec().termination_grace_period_seconds)
                .unwrap_or(30);
            self.terminate(Some(grace)).await;
            self.cleanup_node_state();
            let api: Api<Pod> = Api::namespaced(self.s.client.clone(), &self.ns());
            let dp = DeleteParams {
                grace_period_seconds: Some(0),
                preconditions: Some(Preconditions {
                    uid: Some(self.uid.clone()),
                    resource_version: None,
                }),
                ..Default::default()
            };
            match api.delete(&self.name(), &dp).await {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {}
                Err(e) => return Err(format!("deleting the pod: {e}")),
            }
            return Ok(Next::Done);
        }
        let phase = self
            .last_status
            .as_ref()
            .and_then(|s| s.phase.clone())
            .unwrap_or_default();
        if phase == "Succeeded" || phase == "Failed" {
            if !self.terminal_done {
                // A finished pod keeps its containers (for logs) but not its sandbox or IP.
                self.stop_all(0).await;
                self.terminal_done = true;
            }
            return Ok(Next::Wait(Duration::from_secs(3600)));
        }
        if let Some(left) = self.deadline_left() {
            if left.is_zero() {
                let grace = self.spec().termination_grace_period_seconds.unwrap_or(30);
                self.stop_all(grace).await;
                self.fail(
                    "DeadlineExceeded",
                    "Pod was active on the node longer than the specified deadline".into(),
                )
                .await?;
                return Ok(Next::Wait(Duration::from_secs(3600)));
            }
        }
        let mut wake = Instant::now() + RESYNC;
        if let Some(left) = self.deadline_left() {
            wake = wake.min(Instant::now() + left);
        }
        let mut cri = self.s.cri.clone();

        // Sandbox.
        let sandboxes = self.sandboxes().await?;
        let newest = sandboxes.iter().max_by_key(|s| s.created_at).cloned();
        let containers = self.observe_containers().await?;
        let sandbox = match newest {
            Some(s) if s.state() == cri::PodSandboxState::SandboxReady => s,
            old => {
                let ran = containers.values().any(|v| !v.is_empty());
                if old.is_some() && ran && self.spec().restart_policy.as_deref() == Some("Never") {
                    // kubelet does not recreate a dead sandbox of a Never pod whose containers ran.
                    self.write_status(&containers, false, vec![], false).await?;
                    return Ok(Next::Wait(RESYNC));
                }
                let attempt = old
                    .as_ref()
                    .and_then(|s| s.metadata.as_ref())
                    .map_or(0, |m| m.attempt + 1);
                for s in &sandboxes {
                    if s.state() == cri::PodSandboxState::SandboxReady {
                        let _ = cri
                            .runtime
                            .stop_pod_sandbox(cri::StopPodSandboxRequest {
                                pod_sandbox_id: s.id.clone(),
                            })
                            .await;
                    }
                }
                match self.create_sandbox(attempt).await {
                    Ok(s) => {
                        self.claim_wait = None;
                        s
                    }
                    Err(("FailedMount", message)) if self.claim_pending() => {
                        // A claim not bound yet (the provisioner may be making its volume):
                        // look again soon, without the sandbox backoff, and say it once.
                        if self.claim_wait.as_deref() != Some(message.as_str()) {
                            self.s
                                .events
                                .pod(&self.pod, true, "FailedMount", message.clone());
                            self.claim_wait = Some(message);
                        }
                        self.write_status(&containers, false, vec![], false).await?;
                        return Ok(Next::Wait(CLAIM_RETRY));
                    }
                    Err((reason, message)) => {
                        self.s.events.pod(&self.pod, true, reason, message.clone());
                        let until = self.backoff.fail("sandbox", Instant::now());
                        self.write_status(&containers, false, vec![], false).await?;
                        return Ok(Next::Wait(until.saturating_duration_since(Instant::now())));
                    }
                }
            }
        };
        let sandbox_id = sandbox.id.clone();
        let sstatus = cri
            .runtime
            .pod_sandbox_status(cri::PodSandboxStatusRequest {
                pod_sandbox_id: sandbox_id.clone(),
                verbose: false,
            })
            .await
            .map_err(|s| format!("PodSandboxStatus: {}", s.message()))?
            .into_inner()
            .status
            .unwrap_or_default();
        let mut pod_ips = Vec::new();
        if let Some(n) = sstatus.network.as_ref() {
            if !n.ip.is_empty() {
                pod_ips.push(n.ip.clone());
            }
            pod_ips.extend(n.additional_ips.iter().map(|i| i.ip.clone()));
        }
        if self.spec().host_network.unwrap_or(false) {
            // A host-network pod has the node's addresses (kubelet reports them as pod IPs).
            pod_ips = self.s.host_ips.clone();
        }
        let attempt = sstatus.metadata.as_ref().map_or(0, |m| m.attempt);
        self.write_etc_hosts(&pod_ips);
        // Volumes follow configmap/secret updates on every resync.
        if self.refresh_refs(&pod_ips, false).await.is_ok() {
            if let Err(e) = volumes::setup(&self.pod, &self.refs, &self.s.ctx.root_dir) {
                self.s
                    .events
                    .pod(&self.pod, true, "FailedMount", e.to_string());
            }
        }

        // Init containers, in order.
        let spec = self.spec();
        let policy = spec
            .restart_policy
            .clone()
            .unwrap_or_else(|| "Always".into());
        let mut initialized = true;
        let mut init_failed = false;
        for ic in spec.init_containers.iter().flatten() {
            let sidecar = ic.restart_policy.as_deref() == Some("Always");
            let latest = containers.get(&ic.name).and_then(|v| v.first()).cloned();
            match latest.as_ref().map(|s| s.state()) {
                Some(cri::ContainerState::ContainerRunning) if sidecar => {
                    let started_ok = self
                        .run_probes(ic, latest.as_ref().expect("latest"), &pod_ips, &mut wake)
                        .await;
                    if !started_ok {
                        initialized = false;
                        break;
                    }
                }
                Some(cri::ContainerState::ContainerRunning) => {
                    initialized = false;
                    break;
                }
                Some(cri::ContainerState::ContainerExited)
                    if !sidecar && latest.as_ref().is_some_and(|s| s.exit_code == 0) =>
                {
                    continue;
                }
                Some(cri::ContainerState::ContainerExited) if !sidecar && policy == "Never" => {
                    init_failed = true;
                    initialized = false;
                    break;
                }
                _ => {
                    initialized = false;
                    let next_attempt = latest
                        .as_ref()
                        .and_then(|s| s.metadata.as_ref())
                        .map_or(0, |m| m.attempt + 1);
                    self.start_or_backoff(
                        ic,
                        true,
                        latest.as_ref(),
                        next_attempt,
                        &sandbox_id,
                        attempt,
                        &pod_ips,
                        &mut wake,
                    )
                    .await;
                    break;
                }
            }
        }

        // Regular containers.
        if initialized {
            for c in &spec.containers {
                let latest = containers.get(&c.name).and_then(|v| v.first()).cloned();
                let next_attempt = latest
                    .as_ref()
                    .and_then(|s| s.metadata.as_ref())
                    .map_or(0, |m| m.attempt + 1);
                match latest.as_ref().map(|s| s.state()) {
                    None => {
                        self.start_or_backoff(
                            c,
                            false,
                            None,
                            0,
                            &sandbox_id,
                            attempt,
                            &pod_ips,
                            &mut wake,
                        )
                        .await;
                    }
                    Some(cri::ContainerState::ContainerRunning) => {
                        let s = latest.as_ref().expect("latest");
                        self.waiting.remove(&c.name);
                        if s.annotations.get(labels::HASH) != Some(&container::spec_hash(c)) {
                            self.kill(s, "Container spec changed, will be restarted")
                                .await;
                            wake = Instant::now();
                            continue;
                        }
                        self.run_post_start(c, s).await;
                        self.run_probes(c, s, &pod_ips, &mut wake).await;
                    }
                    Some(cri::ContainerState::ContainerExited) => {
                        let s = latest.as_ref().expect("latest");
                        let restart = match policy.as_str() {
                            "Always" => true,
                            "OnFailure" => s.exit_code != 0,
                            _ => false,
                        };
                        if restart {
                            self.start_or_backoff(
                                c,
                                false,
                                latest.as_ref(),
                                next_attempt,
                                &sandbox_id,
                                attempt,
                                &pod_ips,
                                &mut wake,
                            )
                            .await;
                        } else {
                            self.waiting.remove(&c.name);
                        }
                    }
                    Some(_) => {
                        // Created but never started (a start failed): replace it.
                        let s = latest.as_ref().expect("latest");
                        let _ = cri
                            .runtime
                            .remove_container(cri::RemoveContainerRequest {
                                container_id: s.id.clone(),
                            })
                            .await;
                        wake = Instant::now() + Duration::from_millis(100);
                    }
                }
            }
        }
        let containers = self.observe_containers().await?;
        self.write_status(&containers, true, pod_ips, initialized && !init_failed)
            .await
            .map(|_| ())?;
        if init_failed {
            self.write_status_init_failed(&containers).await?;
        }
        Ok(Next::Wait(
            wake.saturating_duration_since(Instant::now())
                .max(Duration::from_millis(50)),
        ))
    }

    /// Time left of spec.activeDeadlineSeconds, counted from the pod's startTime.
    fn deadline_left(&self) -> Option<Duration> {
        let secs = self.spec().active_deadline_seconds?;
        let start = self.last_status.as_ref()?.start_time.as_ref()?.0;
        let end = start + chrono::Duration::seconds(secs);
        Some(
            (end - chrono::Utc::now())
                .to_std()
                .unwrap_or(Duration::ZERO),
        )
    }

    /// Ends the pod on this node with `reason` (DeadlineExceeded, Evicted, ...): its containers
    /// are stopped by the caller; the status says Failed with kube's reason and message, and
    /// every later sync treats the pod as finished.
    pub async fn fail(&mut self, reason: &str, message: String) -> Result<(), String> {
        self.fail_with(reason, message, None).await
    }

    /// `fail`, adding `condition` (or replacing one of its type), as kubelet's
    /// TerminatePod status function's podutil.UpdatePodCondition.
    async fn fail_with(
        &mut self,
        reason: &str,
        message: String,
        condition: Option<PodCondition>,
    ) -> Result<(), String> {
        self.s.events.pod(&self.pod, true, reason, message.clone());
        let containers = self.observe_containers().await?;
        let obs = Observed {
            containers: containers.clone(),
            waiting: self.waiting.clone(),
            messages: self.termination_messages(&containers),
            initialized: true,
            ..Default::default()
        };
        let mut pod = self.pod.clone();
        pod.status = self.last_status.clone().or(pod.status);
        let mut st = status::pod_status(&StatusInput {
            pod: &pod,
            obs: &obs,
            runtime: &self.s.runtime_name,
            host_ips: &self.s.host_ips,
            init_failed: false,
        });
        st.phase = Some("Failed".into());
        st.reason = Some(reason.into());
        st.message = Some(message);
        st.pod_ip = None;
        st.pod_ips = Some(Vec::new());
        for c in st.conditions.iter_mut().flatten() {
            if c.type_ == "Ready" || c.type_ == "ContainersReady" {
                c.status = "False".into();
                c.reason = Some("PodFailed".into());
            }
        }
        if let Some(c) = condition {
            let list = st.conditions.get_or_insert_with(Vec::new);
            list.retain(|x| x.type_ != c.type_);
            list.push(c);
        }
        self.terminal_done = true;
        self.patch_status(st).await
    }

    /// This pod's sandboxes, as CRI lists them by the kubelet's uid label.
    async fn sandboxes(&self) -> Result<Vec<cri::PodSandbox>, String> {
        let mut cri = self.s.cri.clone();
        Ok(cri
            .runtime
            .list_pod_sandbox(cri::ListPodSandboxRequest {
                filter: Some(cri::PodSandboxFilter {
                    label_selector: labels::uid_filter(&self.uid),
                    ..Default::default()
                }),
            })
            .await
            .map_err(|s| format!("ListPodSandbox: {}", s.message()))?
            .into_inner()
            .items)
    }

    /// Container statuses of this pod by name, newest attempt first.
    async fn observe_containers(
        &self,
    ) -> Result<HashMap<String, Vec<cri::ContainerStatus>>, String> {
        let mut cri = self.s.cri.clone();
        let list = cri
            .runtime
            .list_containers(cri::ListContainersRequest {
                filter: Some(cri::ContainerFilter {
                    label_selector: labels::uid_filter(&self.uid),
                    ..Default::default()
                }),
            })
            .await
            .map_err(|s| format!("ListContainers: {}", s.message()))?
            .into_inner()
            .containers;
        let mut out: HashMap<String, Vec<cri::ContainerStatus>> = HashMap::new();
        for c in list {
            let Ok(st) = cri
                .runtime
                .container_status(cri::ContainerStatusRequest {
                    container_id: c.id.clone(),
                    verbose: false,
                })
                .await
            else {
                continue;
            };
            if let Some(st) = st.into_inner().status {
                let name = st
                    .metadata
                    .as_ref()
                    .map(|m| m.name.clone())
                    .unwrap_or_default();
                out.entry(name).or_default().push(st);
            }
        }
        for v in out.values_mut() {
            v.sort_by_key(|s| {
                std::cmp::Reverse((s.metadata.as_ref().map_or(0, |m| m.attempt), s.created_at))
            });
        }
        Ok(out)
    }

    /// Whether a PersistentVolumeClaim of the pod cannot be mounted yet (as of the last refs).
    fn claim_pending(&self) -> bool {
        volumes::pending_claim(&self.pod, &self.refs).is_some()
    }

    async fn create_sandbox(&mut self, attempt: u32) -> Step<cri::PodSandbox> {
        let cgroup = self
            .s
            .ctx
            .cgroups
            .ensure_pod(&self.pod)
            .map_err(|e| ("FailedCreatePodSandBox", e.to_string()))?;
        let log_dir = podconfig::pod_log_dir(&self.s.ctx, &self.pod);
        std::fs::create_dir_all(&log_dir).map_err(|e| {
            (
                "FailedCreatePodSandBox",
                format!("creating {}: {e}", log_dir.display()),
            )
        })?;
        self.refresh_refs(&[], true)
            .await
            .map_err(|e| ("FailedMount", e))?;
        volumes::setup(&self.pod, &self.refs, &self.s.ctx.root_dir)
            .map_err(|e| ("FailedMount", e.to_string()))?;
        let config = sandbox::sandbox_config(&self.pod, attempt, &cgroup, &self.s.ctx)
            .map_err(|e| ("FailedCreatePodSandBox", e.to_string()))?;
        let mut cri = self.s.cri.clone();
        let handler = self.spec().runtime_class_name.unwrap_or_default();
        let id = cri
            .runtime
            .run_pod_sandbox(cri::RunPodSandboxRequest {
                config: Some(config),
                runtime_handler: handler,
            })
            .await
            .map_err(|s| {
                (
                    "FailedCreatePodSandBox",
                    format!("Failed to create pod sandbox: {}", s.message()),
                )
            })?
            .into_inner()
            .pod_sandbox_id;
        self.backoff.forget("sandbox");
        // A new sandbox means every container starts fresh (and init containers rerun).
        self.post_started.clear();
        self.probes.clear();
        tracing::info!(sandbox = %id, attempt, "sandbox ready");
        Ok(cri::PodSandbox {
            id,
            state: cri::PodSandboxState::SandboxReady as i32,
            ..Default::default()
        })
    }

    fn write_etc_hosts(&self, pod_ips: &[String]) {
        if self.spec().host_network.unwrap_or(false) {
            return;
        }
        let dir = self.pod_dir();
        let path = dir.join("etc-hosts");
        let content = container::etc_hosts(&self.pod, pod_ips, &self.s.ctx.cluster_domain);
        if std::fs::read_to_string(&path).ok().as_deref() != Some(content.as_str()) {
            let _ = std::fs::create_dir_all(&dir);
            if let Err(e) = std::fs::write(&path, content) {
                tracing::warn!(error = %e, "writing etc-hosts");
            }
        }
    }

    async fn refresh_refs(&mut self, pod_ips: &[String], force: bool) -> Result<(), String> {
        if !pod_ips.is_empty() {
            self.refs.pod_ips = pod_ips.to_vec();
        }
        if !force && self.refs_at.is_some_and(|t| t.elapsed() < RESYNC) {
            return Ok(());
        }
        let ns = self.ns();
        let (cms, secrets) = podconfig::env::referenced(&self.pod);
        let mut refs = Refs {
            pod_ips: self.refs.pod_ips.clone(),
            host_ips: self.s.host_ips.clone(),
            node_cpu_millis: self.s.node_cpu_millis,
            node_memory: self.s.ctx.node_memory,
            ..Default::default()
        };
        let cm_api: Api<ConfigMap> = Api::namespaced(self.s.client.clone(), &ns);
        for n in cms {
            if let Some(cm) = cm_api
                .get_opt(&n)
                .await
                .map_err(|e| format!("configmap {n}: {e}"))?
            {
                refs.configmaps.insert(n, cm);
            }
        }
        let sec_api: Api<Secret> = Api::namespaced(self.s.client.clone(), &ns);
        for n in secrets {
            if let Some(s) = sec_api
                .get_opt(&n)
                .await
                .map_err(|e| format!("secret {n}: {e}"))?
            {
                refs.secrets.insert(n, s);
            }
        }
        let claim_api: Api<PersistentVolumeClaim> = Api::namespaced(self.s.client.clone(), &ns);
        let pv_api: Api<PersistentVolume> = Api::all(self.s.client.clone());
        for n in volumes::claim_names(&self.pod) {
            let claim = claim_api
                .get_opt(&n)
                .await
                .map_err(|e| format!("persistentvolumeclaim {n}: {e}"))?;
            let vname = claim
                .as_ref()
                .and_then(|c| c.spec.as_ref())
                .and_then(|s| s.volume_name.clone())
                .filter(|v| !v.is_empty());
            let pv = match vname {
                Some(v) => pv_api
                    .get_opt(&v)
                    .await
                    .map_err(|e| format!("persistentvolume {v}: {e}"))?,
                None => None,
            };
            let resolved = volumes::resolve_claim(&ns, claim.as_ref(), &n, pv.as_ref());
            refs.claims.insert(n, resolved);
        }
        refs.sa_tokens = self.tokens.tokens_for(&self.s.client, &self.pod).await;
        let svc_api: Api<Service> = Api::namespaced(self.s.client.clone(), &ns);
        if self.spec().enable_service_links.unwrap_or(true) {
            match svc_api.list(&Default::default()).await {
                Ok(l) => refs.services = l.items,
                // Static pods start without the API (kubelet's service lister is then empty).
                Err(e) if static_pods::is_static(&self.pod) => {
                    tracing::debug!(error = %e, "services for a static pod's env: none")
                }
                Err(e) => return Err(format!("services: {e}")),
            }
        }
        if ns != "default"
            || !refs
                .services
                .iter()
                .any(|s| s.metadata.name.as_deref() == Some("kubernetes"))
        {
            let def: Api<Service> = Api::namespaced(self.s.client.clone(), "default");
            if let Ok(Some(k)) = def.get_opt("kubernetes").await {
                refs.services.push(k);
            }
        }
        self.refs = refs;
        self.refs_at = Some(Instant::now());
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    async fn start_or_backoff(
        &mut self,
        c: &Container,
        init: bool,
        previous: Option<&cri::ContainerStatus>,
        attempt: u32,
        sandbox_id: &str,
        sandbox_attempt: u32,
        pod_ips: &[String],
        wake: &mut Instant,
    ) {
        let now = Instant::now();
        let key = format!("{}/{}", c.name, container::spec_hash(c));
        if previous.is_some() {
            if let Some(until) = self.backoff.waiting(&key, now) {
                let delay = self.backoff.delay(&key).unwrap_or_default();
                self.waiting.insert(
                    c.name.clone(),
                    (
                        "CrashLoopBackOff".into(),
                        format!(
                            "back-off {}s restarting failed container={} pod={}_{}({})",
                            delay.as_secs(),
                            c.name,
                            self.name(),
                            self.ns(),
                            self.uid
                        ),
                    ),
                );
                *wake = (*wake).min(until);
                return;
            }
            self.backoff.fail(&key, now);
            self.s.events.pod(
                &self.pod,
                false,
                "Restarting",
                format!("Restarting container {}", c.name),
            );
        }
        match self
            .start(c, init, attempt, sandbox_id, sandbox_attempt, pod_ips)
            .await
        {
            Ok(()) => {
                self.waiting.remove(&c.name);
                *wake = (*wake).min(Instant::now() + Duration::from_millis(200));
            }
            Err((reason, message)) => {
                let until = self
                    .backoff
                    .fail(&format!("start/{}", c.name), Instant::now());
                self.waiting
                    .insert(c.name.clone(), (reason.to_string(), message));
                *wake = (*wake).min(until);
            }
        }
    }

    async fn start(
        &mut self,
        c: &Container,
        init: bool,
        attempt: u32,
        sandbox_id: &str,
        sandbox_attempt: u32,
        pod_ips: &[String],
    ) -> Step<()> {
        let pull_key = format!("pull/{}", c.name);
        let in_backoff = self.backoff.waiting(&pull_key, Instant::now()).is_some();
        let image_ref = match self.s.ensure_image(&self.pod, c, in_backoff).await {
            Ok(r) => {
                self.backoff.forget(&pull_key);
                r
            }
            Err(e) => {
                if e.reason == "ErrImagePull" {
                    self.backoff.fail(&pull_key, Instant::now());
                }
                return Err((e.reason, e.message));
            }
        };
        self.refresh_refs(pod_ips, true)
            .await
            .map_err(|e| ("CreateContainerConfigError", e))?;
        let env = podconfig::env::container_env(&self.pod, c, &self.refs)
            .map_err(|e| ("CreateContainerConfigError", e.to_string()))?;
        let vols = volumes::setup(&self.pod, &self.refs, &self.s.ctx.root_dir)
            .map_err(|e| ("CreateContainerConfigError", e.to_string()))?;
        let pod_dir = self.pod_dir();
        let config = container::container_config(&container::Input {
            pod: &self.pod,
            container: c,
            init,
            restart_count: attempt,
            image_ref: &image_ref,
            env: &env,
            volumes: &vols,
            pod_dir: &pod_dir,
            node_memory: self.s.ctx.node_memory,
        })
        .map_err(|e| ("CreateContainerConfigError", e.to_string()))?;
        let cgroup = self.s.ctx.cgroups.pod_cgroup(&self.pod);
        let sandbox_config =
            sandbox::sandbox_config(&self.pod, sandbox_attempt, &cgroup, &self.s.ctx)
                .map_err(|e| ("CreateContainerConfigError", e.to_string()))?;
        let mut cri = self.s.cri.clone();
        let id = cri
            .runtime
            .create_container(cri::CreateContainerRequest {
                pod_sandbox_id: sandbox_id.to_string(),
                config: Some(config),
                sandbox_config: Some(sandbox_config),
            })
            .await
            .map_err(cri_err("CreateContainerError"))?
            .into_inner()
            .container_id;
        self.s.events.pod(
            &self.pod,
            false,
            "Created",
            format!("Created container {}", c.name),
        );
        cri.runtime
            .start_container(cri::StartContainerRequest {
                container_id: id.clone(),
            })
            .await
            .map_err(cri_err("RunContainerError"))?;
        self.s.events.pod(
            &self.pod,
            false,
            "Started",
            format!("Started container {}", c.name),
        );
        Ok(())
    }

    async fn run_post_start(&mut self, c: &Container, s: &cri::ContainerStatus) {
        if !self.post_started.insert(s.id.clone()) {
            return;
        }
        let Some(h) = c.lifecycle.as_ref().and_then(|l| l.post_start.as_ref()) else {
            return;
        };
        if let Err(msg) = self.run_hook(c, &s.id, h, Duration::from_secs(30)).await {
            self.s.events.pod(
                &self.pod,
                true,
                "FailedPostStartHook",
                format!("PostStartHook failed: {msg}"),
            );
            self.kill(s, "FailedPostStartHook").await;
        }
    }

    async fn run_hook(
        &self,
        c: &Container,
        cid: &str,
        h: &LifecycleHandler,
        limit: Duration,
    ) -> Result<(), String> {
        let probe = k8s_openapi::api::core::v1::Probe {
            exec: h.exec.clone(),
            http_get: h.http_get.clone(),
            tcp_socket: h.tcp_socket.clone(),
            timeout_seconds: Some(limit.as_secs().max(1) as i32),
            ..Default::default()
        };
        if let Some(sl) = &h.sleep {
            tokio::time::sleep(Duration::from_secs(sl.seconds.max(0) as u64).min(limit)).await;
            return Ok(());
        }
        let mut cri = self.s.cri.clone();
        let ip = self.refs.pod_ips.first().cloned();
        match probes::run(&mut cri, cid, c, &probe, ip.as_deref()).await {
            Outcome::Success => Ok(()),
            Outcome::Failure(m) => Err(m),
        }
    }

    /// Runs due probes of a running container; returns whether its startup probe passed.
    async fn run_probes(
        &mut self,
        c: &Container,
        s: &cri::ContainerStatus,
        pod_ips: &[String],
        wake: &mut Instant,
    ) -> bool {
        let now = Instant::now();
        let started = {
            let age_ns = chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0) - s.started_at;
            now.checked_sub(Duration::from_nanos(age_ns.max(0) as u64))
                .unwrap_or(now)
        };
        let states = self.probes.entry(s.id.clone()).or_insert_with(|| {
            [Kind::Startup, Kind::Liveness, Kind::Readiness]
                .into_iter()
                .filter_map(|k| probes::probe_of(c, k).map(|p| ProbeState::new(k, p, started)))
                .collect()
        });
        let mut states = std::mem::take(states);
        let mut cri = self.s.cri.clone();
        let mut kill_reason = None;
        let startup_ok = |states: &[ProbeState]| {
            states
                .iter()
                .find(|p| p.kind == Kind::Startup)
                .is_none_or(|p| p.ok && p.settled)
        };
        for i in 0..states.len() {
            let kind = states[i].kind;
            if kind != Kind::Startup && !startup_ok(&states) {
                continue;
            }
            if kind == Kind::Startup && states[i].settled && states[i].ok {
                continue;
            }
            let probe = probes::probe_of(c, kind).expect("probe");
            if states[i].next_due <= now {
                let outcome = probes::run(
                    &mut cri,
                    &s.id,
                    c,
                    probe,
                    pod_ips.first().map(String::as_str),
                )
                .await;
                if let Outcome::Failure(m) = &outcome {
                    self.s.events.pod(
                        &self.pod,
                        true,
                        "Unhealthy",
                        format!("{kind:?} probe failed: {m}"),
                    );
                }
                states[i].record(probe, &outcome, Instant::now());
                if kind != Kind::Readiness && states[i].settled && !states[i].ok {
                    kill_reason = Some(format!(
                        "Container {} failed {} probe, will be restarted",
                        c.name,
                        if kind == Kind::Startup {
                            "startup"
                        } else {
                            "liveness"
                        }
                    ));
                }
            }
            *wake = (*wake).min(states[i].next_due);
        }
        let ready = states
            .iter()
            .find(|p| p.kind == Kind::Readiness)
            .is_none_or(|p| p.ok);
        let started_ok = startup_ok(&states);
        self.probes.insert(s.id.clone(), states);
        if let Some(reason) = kill_reason {
            self.kill(s, &reason).await;
            *wake = Instant::now();
        }
        let _ = ready;
        started_ok
    }

    /// Stops one container (preStop, then StopContainer with the pod's grace period).
    async fn kill(&mut self, s: &cri::ContainerStatus, reason: &str) {
        if !self.killed.insert(s.id.clone()) {
            return;
        }
        let name = s
            .metadata
            .as_ref()
            .map(|m| m.name.clone())
            .unwrap_or_default();
        self.s.events.pod(
            &self.pod,
            false,
            "Killing",
            format!("Stopping container {name}: {reason}"),
        );
        let grace = self.spec().termination_grace_period_seconds.unwrap_or(30);
        self.stop_container(s, grace).await;
    }

    async fn stop_container(&self, s: &cri::ContainerStatus, grace: i64) {
        let start = Instant::now();
        let name = s
            .metadata
            .as_ref()
            .map(|m| m.name.clone())
            .unwrap_or_default();
        let spec = self.spec();
        let c = spec
            .containers
            .iter()
            .chain(spec.init_containers.iter().flatten())
            .find(|c| c.name == name)
            .cloned();
        if let Some(c) = &c {
            if let Some(h) = c.lifecycle.as_ref().and_then(|l| l.pre_stop.as_ref()) {
                let limit = Duration::from_secs(grace.max(0) as u64);
                match tokio::time::timeout(limit, self.run_hook(c, &s.id, h, limit)).await {
                    Ok(Ok(())) => {}
                    Ok(Err(m)) => self.s.events.pod(
                        &self.pod,
                        true,
                        "FailedPreStopHook",
                        format!("PreStopHook failed: {m}"),
                    ),
                    Err(_) => self.s.events.pod(
                        &self.pod,
                        true,
                        "FailedPreStopHook",
                        "PreStopHook timed out".into(),
                    ),
                }
            }
        }
        // Whatever preStop used counts against the grace period (kubelet gives at least 2 s).
        let left = (grace - start.elapsed().as_secs() as i64).max(if grace > 0 { 2 } else { 0 });
        let mut cri = self.s.cri.clone();
        if let Err(st) = cri
            .runtime
            .stop_container(cri::StopContainerRequest {
                container_id: s.id.clone(),
                timeout: left,
            })
            .await
        {
            tracing::warn!(container = %s.id, error = %st.message(), "StopContainer");
        }
    }

    /// Stops every running container (concurrently, each with `grace`) and the sandboxes.
    async fn stop_all(&mut self, grace: i64) {
        let Ok(containers) = self.observe_containers().await else {
            return;
        };
        let running: Vec<cri::ContainerStatus> = containers
            .values()
            .flatten()
            .filter(|s| s.state() == cri::ContainerState::ContainerRunning)
            .cloned()
            .collect();
        for s in &running {
            let name = s
                .metadata
                .as_ref()
                .map(|m| m.name.clone())
                .unwrap_or_default();
            self.s.events.pod(
                &self.pod,
                false,
                "Killing",
                format!("Stopping container {name}"),
            );
        }
        let this = &*self;
        futures_util::future::join_all(running.iter().map(|s| this.stop_container(s, grace))).await;
        let mut cri = self.s.cri.clone();
        if let Ok(list) = self.sandboxes().await {
            for sb in list {
                let _ = cri
                    .runtime
                    .stop_pod_sandbox(cri::StopPodSandboxRequest {
                        pod_sandbox_id: sb.id,
                    })
                    .await;
            }
        }
    }

    /// Stops and removes everything CRI holds for the pod.
    async fn terminate(&mut self, grace: Option<i64>) {
        let grace =
            grace.unwrap_or_else(|| self.spec().termination_grace_period_seconds.unwrap_or(30));
        self.stop_all(grace).await;
        let mut cri = self.s.cri.clone();
        if let Ok(list) = self.sandboxes().await {
            for sb in list {
                if let Err(e) = cri
                    .runtime
                    .remove_pod_sandbox(cri::RemovePodSandboxRequest {
                        pod_sandbox_id: sb.id.clone(),
                    })
                    .await
                {
                    tracing::warn!(sandbox = %sb.id, error = %e.message(), "RemovePodSandbox");
                }
            }
        }
        tracing::info!(grace, "pod terminated");
    }

    /// The node-side state CRI does not hold: cgroup, volumes, logs.
    fn cleanup_node_state(&self) {
        if let Err(e) = self.s.ctx.cgroups.remove_pod(&self.pod) {
            tracing::warn!(error = %e, "removing the pod cgroup");
        }
        if let Err(e) = volumes::teardown(&self.s.ctx.root_dir, &self.uid) {
            tracing::warn!(error = %e, "removing the pod's volumes");
        }
        let _ = std::fs::remove_dir_all(podconfig::pod_log_dir(&self.s.ctx, &self.pod));
    }

    fn termination_messages(
        &self,
        containers: &HashMap<String, Vec<cri::ContainerStatus>>,
    ) -> HashMap<String, String> {
        let mut out = HashMap::new();
        let spec = self.spec();
        for (name, list) in containers {
            let c = spec
                .containers
                .iter()
                .chain(spec.init_containers.iter().flatten())
                .find(|c| &c.name == name);
            for s in list
                .iter()
                .filter(|s| s.state() == cri::ContainerState::ContainerExited)
            {
                let attempt = s.metadata.as_ref().map_or(0, |m| m.attempt);
                let file = container::termination_file(&self.pod_dir(), name, attempt);
                let mut msg = std::fs::read(&file)
                    .map(|b| String::from_utf8_lossy(&b[..b.len().min(4096)]).to_string())
                    .unwrap_or_default();
                let fallback = c.and_then(|c| c.termination_message_policy.as_deref())
                    == Some("FallbackToLogsOnError");
                if msg.is_empty() && fallback && s.exit_code != 0 {
                    msg = tail_log(&s.log_path, 80, 2048);
                }
                if !msg.is_empty() {
                    out.insert(s.id.clone(), msg);
                }
            }
        }
        out
    }

    async fn write_status(
        &mut self,
        containers: &HashMap<String, Vec<cri::ContainerStatus>>,
        sandbox_ready: bool,
        pod_ips: Vec<String>,
        initialized: bool,
    ) -> Result<(), String> {
        let mut obs = Observed {
            sandbox_ready,
            pod_ips,
            containers: containers.clone(),
            waiting: self.waiting.clone(),
            initialized,
            messages: self.termination_messages(containers),
            ..Default::default()
        };
        let spec = self.spec();
        for c in spec
            .containers
            .iter()
            .chain(spec.init_containers.iter().flatten())
        {
            if let Some(s) = containers.get(&c.name).and_then(|v| v.first()) {
                if let Some(states) = self.probes.get(&s.id) {
                    let find = |k: Kind| states.iter().find(|p| p.kind == k);
                    obs.ready
                        .insert(c.name.clone(), find(Kind::Readiness).is_none_or(|p| p.ok));
                    obs.started.insert(
                        c.name.clone(),
                        find(Kind::Startup).is_none_or(|p| p.ok && p.settled),
                    );
                } else {
                    obs.ready
                        .insert(c.name.clone(), c.readiness_probe.is_none());
                    obs.started
                        .insert(c.name.clone(), c.startup_probe.is_none());
                }
            }
        }
        let mut pod = self.pod.clone();
        pod.status = self.last_status.clone().or(pod.status);
        let st = status::pod_status(&StatusInput {
            pod: &pod,
            obs: &obs,
            runtime: &self.s.runtime_name,
            host_ips: &self.s.host_ips,
            init_failed: false,
        });
        self.patch_status(st).await
    }

    async fn write_status_init_failed(
        &mut self,
        containers: &HashMap<String, Vec<cri::ContainerStatus>>,
    ) -> Result<(), String> {
        let obs = Observed {
            containers: containers.clone(),
            waiting: self.waiting.clone(),
            messages: self.termination_messages(containers),
            ..Default::default()
        };
        let mut pod = self.pod.clone();
        pod.status = self.last_status.clone().or(pod.status);
        let st = status::pod_status(&StatusInput {
            pod: &pod,
            obs: &obs,
            runtime: &self.s.runtime_name,
            host_ips: &self.s.host_ips,
            init_failed: true,
        });
        self.patch_status(st).await
    }

    async fn patch_status(&mut self, st: PodStatus) -> Result<(), String> {
        if self
            .last_status
            .as_ref()
            .is_some_and(|old| status::same(old, &st))
        {
            return Ok(());
        }
        let api: Api<Pod> = Api::namespaced(self.s.client.clone(), &self.ns());
        // A static pod's status goes to its mirror pod, whose UID is the API's, not ours.
        let is_static = static_pods::is_static(&self.pod);
        let body = if is_static {
            serde_json::json!({"status": st})
        } else {
            serde_json::json!({"metadata": {"uid": self.uid}, "status": st})
        };
        match api
            .patch_status(&self.name(), &PatchParams::default(), &Patch::Merge(&body))
            .await
        {
            Ok(p) => {
                tracing::debug!(phase = ?st.phase, "status written");
                if st.phase.as_deref() == Some("Running") {
                    if let Some(seen) = self.first_seen.take() {
                        self.s.cri.metrics.observe_pod_start(seen.elapsed());
                    }
                }
                self.last_status = p.status.clone().or(Some(st));
                let shown = if is_static {
                    Pod {
                        status: self.last_status.clone(),
                        ..self.pod.clone()
                    }
                } else {
                    p
                };
                self.s
                    .pods
                    .write()
                    .expect("pods")
                    .insert(self.uid.clone(), shown);
                Ok(())
            }
            Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
            Err(e) => Err(format!("writing the pod's status: {e}")),
        }
    }
}

/// The last `lines` lines (at most `max` bytes) of a CRI log file, messages only.
pub fn tail_log(path: &str, lines: usize, max: usize) -> String {
    let Ok(text) = std::fs::read_to_string(path) else {
        return String::new();
    };
    let msgs: Vec<&str> = text
        .lines()
        .map(|l| l.splitn(4, ' ').nth(3).unwrap_or(""))
        .collect();
    let start = msgs.len().saturating_sub(lines);
    let mut out = msgs[start..].join("\n");
    if out.len() > max {
        let cut = out.len() - max;
        let cut = (cut..out.len())
            .find(|i| out.is_char_boundary(*i))
            .unwrap_or(out.len());
        out = out[cut..].to_string();
    }
    out
}
