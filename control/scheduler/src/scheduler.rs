//! The running scheduler: informers fill the cache and the queue; one loop takes pods from
//! the queue and decides (serially, as kube's scheduling cycle); bindings and failure
//! reports run concurrently (kube's binding cycle), bounded by a semaphore.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::chrono::Utc;
use tokio::sync::{mpsc, watch, Notify, Semaphore};
use tokio::task::JoinSet;
use tracing::Instrument;

use crate::algorithm::{Algorithm, ScheduleError};
use crate::cache::ClusterState;
use crate::config::SchedulerConfig;
use crate::metrics::{self, Metrics};
use crate::node_info::PodInfo;
use crate::plugins::default_profile;
use crate::preemption::{preempt, Preemption};
use crate::queue::{QueuedPod, SchedulingQueue};
use crate::writes::{self, Reporter};

/// State the informers and the loop share.
#[derive(Debug)]
pub struct Shared {
    pub cache: Mutex<ClusterState>,
    pub queue: Mutex<SchedulingQueue>,
    /// Rung when the queue may have something to pop.
    pub wake: Notify,
}

struct Ctx {
    client: kube::Client,
    shared: Arc<Shared>,
    reporter: Reporter,
    events: mpsc::Sender<Event>,
    metrics: Metrics,
}

impl std::fmt::Debug for Ctx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ctx")
            .field("reporter", &self.reporter)
            .finish_non_exhaustive()
    }
}

impl Ctx {
    fn lock_cache(&self) -> std::sync::MutexGuard<'_, ClusterState> {
        self.shared.cache.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn lock_queue(&self) -> std::sync::MutexGuard<'_, SchedulingQueue> {
        self.shared.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues an event for the recorder; drops it when the recorder is behind (as client-go's
    /// broadcaster does) rather than slowing scheduling.
    fn event(&self, pod: &Pod, type_: &str, reason: &str, action: &str, message: &str) {
        let ev = writes::pod_event(
            pod,
            &self.reporter,
            type_,
            reason,
            action,
            message,
            Utc::now(),
        );
        if self.events.try_send(ev).is_err() {
            tracing::debug!(reason, "event dropped: recorder queue full");
        }
    }
}

/// The binding cycle. `started`: when the scheduling cycle began (kube's attempt duration
/// covers both).
async fn bind(
    ctx: Arc<Ctx>,
    qp: QueuedPod,
    node: String,
    claims: Vec<(String, String)>,
    started: Instant,
) {
    let key = qp.info.key.clone();
    // VolumeBinding's PreBind: the pod's WaitForFirstConsumer claims learn their node first.
    let mut selected = Ok(());
    for (ns, claim) in &claims {
        selected = writes::select_node(&ctx.client, ns, claim, &node).await;
        if selected.is_err() {
            break;
        }
    }
    let bound = match selected {
        Ok(()) => writes::bind(&ctx.client, &qp.info.pod, &node).await,
        Err(e) => Err(e),
    };
    match bound {
        Ok(()) => {
            ctx.lock_queue().done(&key);
            tracing::debug!(%node, "bound");
            let profile = &ctx.reporter.component;
            metrics::attempt(
                &ctx.metrics,
                profile,
                metrics::SCHEDULED,
                started.elapsed().as_secs_f64(),
            );
            let first = qp.first_attempt.unwrap_or(started);
            metrics::pod_scheduled(&ctx.metrics, qp.attempts, first.elapsed().as_secs_f64());
            ctx.event(
                &qp.info.pod,
                "Normal",
                "Scheduled",
                "Binding",
                &format!("Successfully assigned {key} to {node}"),
            );
        }
        Err(e) => {
            tracing::warn!(error = %e, "binding failed");
            metrics::attempt(
                &ctx.metrics,
                &ctx.reporter.component,
                metrics::ERROR,
                started.elapsed().as_secs_f64(),
            );
            ctx.lock_cache().forget(&qp.info.uid);
            if e.code() != Some(404) {
                ctx.event(
                    &qp.info.pod,
                    "Warning",
                    "FailedScheduling",
                    "Scheduling",
                    &format!("Binding rejected: {e}"),
                );
            }
            // A pod that is gone or bound elsewhere is dropped when its watch event arrives.
            ctx.lock_queue().retry(qp, Instant::now());
            ctx.shared.wake.notify_one();
        }
    }
}

async fn report_failure(
    ctx: Arc<Ctx>,
    pod: Arc<Pod>,
    message: String,
    plan: Option<(String, Vec<Arc<PodInfo>>)>,
) {
    let nominated = plan.as_ref().map(|(n, _)| n.clone());
    if let Some((node, victims)) = plan {
        for v in victims {
            tracing::info!(victim = %v.key, %node, "preempting");
            match writes::evict(&ctx.client, &v.pod).await {
                Ok(()) => ctx.event(
                    &v.pod,
                    "Normal",
                    "Preempted",
                    "Preempting",
                    &format!(
                        "Preempted by pod {} on node {node}",
                        pod.metadata.uid.as_deref().unwrap_or("")
                    ),
                ),
                Err(e) => tracing::warn!(error = %e, "preemption"),
            }
        }
    }
    let cond = writes::unschedulable_condition(&pod, &message, Utc::now());
    if let Err(e) =
        writes::patch_status(&ctx.client, &pod, cond.as_ref(), nominated.as_deref()).await
    {
        tracing::warn!(error = %e, "status not updated");
    }
    ctx.event(&pod, "Warning", "FailedScheduling", "Scheduling", &message);
}

/// One scheduling cycle for one pod.
fn schedule_one(
    ctx: &Arc<Ctx>,
    alg: &mut Algorithm,
    qp: QueuedPod,
    tasks: &mut JoinSet<()>,
    limit: &Arc<Semaphore>,
) {
    let span = tracing::debug_span!("schedule", pod = %qp.info.key, attempt = qp.attempts);
    let _enter = span.enter();
    let started = Instant::now();
    let outcome = {
        let cache = ctx.lock_cache();
        if cache.contains_pod(&qp.info.uid) {
            // Already bound or assumed (a stale queue entry).
            drop(cache);
            ctx.lock_queue().done(&qp.info.key);
            return;
        }
        let decided = alg.schedule(&qp.info, &cache);
        ctx.metrics.observe(
            &metrics::ALGORITHM_DURATION,
            &[],
            started.elapsed().as_secs_f64(),
        );
        match decided {
            Ok(s) => Ok(s),
            Err(ScheduleError::NoNodes) => {
                Err((ScheduleError::NoNodes.message(), BTreeSet::new(), None))
            }
            Err(ScheduleError::Fit(mut fit)) => {
                // kube counts every PostFilter run of DefaultPreemption as an attempt.
                ctx.metrics.inc(&metrics::PREEMPTION_ATTEMPTS, &[]);
                let plan = match preempt(alg, &qp.info, &cache, &fit) {
                    Preemption::NotPossible(m) => {
                        fit.post_filter_msg = Some(m);
                        None
                    }
                    Preemption::Plan { node, victims } => {
                        ctx.metrics.observe(
                            &metrics::PREEMPTION_VICTIMS,
                            &[],
                            victims.len() as f64,
                        );
                        Some((node, victims))
                    }
                };
                Err((fit.message(), fit.rejected_by(), plan))
            }
        }
    };
    let permit = |limit: &Arc<Semaphore>| limit.clone().try_acquire_owned().ok();
    match outcome {
        Ok(s) => {
            tracing::debug!(node = %s.node, evaluated = s.evaluated, feasible = s.feasible, "scheduled");
            let claims = {
                let mut cache = ctx.lock_cache();
                cache.assume(qp.info.clone(), &s.node);
                crate::plugins::volume_binding::claims_to_select(&qp.info, &cache, &s.node)
            };
            let ctx2 = ctx.clone();
            let limit = limit.clone();
            tasks.spawn(
                async move {
                    let _permit = match permit(&limit) {
                        Some(p) => p,
                        None => limit.acquire_owned().await.expect("semaphore never closed"),
                    };
                    bind(ctx2, qp, s.node, claims, started).await
                }
                .instrument(span.clone()),
            );
        }
        Err((message, rejected_by, plan)) => {
            tracing::debug!(%message, "unschedulable");
            metrics::attempt(
                &ctx.metrics,
                &ctx.reporter.component,
                metrics::UNSCHEDULABLE,
                started.elapsed().as_secs_f64(),
            );
            let pod = qp.info.pod.clone();
            ctx.lock_queue()
                .unschedulable(qp, rejected_by, Instant::now());
            let ctx2 = ctx.clone();
            let limit = limit.clone();
            tasks.spawn(
                async move {
                    let _permit = limit.acquire_owned().await.expect("semaphore never closed");
                    report_failure(ctx2, pod, message, plan).await
                }
                .instrument(span.clone()),
            );
        }
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default()
}

async fn wait_synced(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|v| *v).await;
}

/// Runs the scheduler (informers, loop, binders) until the future is dropped. Every task it
/// starts lives in a JoinSet owned here, so dropping the future stops them all. It records
/// kube-scheduler's metrics into `metrics`.
pub async fn run_scheduler(client: kube::Client, config: SchedulerConfig, metrics: Metrics) {
    let shared = Arc::new(Shared {
        cache: Mutex::new(ClusterState::default()),
        queue: Mutex::new(SchedulingQueue::new(
            Duration::from_secs(config.pod_initial_backoff_secs),
            Duration::from_secs(
                config
                    .pod_max_backoff_secs
                    .max(config.pod_initial_backoff_secs),
            ),
        )),
        wake: Notify::new(),
    });
    let mut background = JoinSet::new();
    let (nodes_tx, mut nodes_rx) = watch::channel(false);
    let (pods_tx, mut pods_rx) = watch::channel(false);
    background.spawn(crate::informer::nodes(
        client.clone(),
        shared.clone(),
        nodes_tx,
    ));
    background.spawn(crate::informer::pods(
        client.clone(),
        shared.clone(),
        config.scheduler_name.clone(),
        pods_tx,
    ));
    // Claims, volumes and classes for VolumeBinding; Services', ReplicationControllers',
    // ReplicaSets' and StatefulSets' selectors for PodTopologySpread's default constraints;
    // Namespaces' labels for InterPodAffinity's namespaceSelector; PodDisruptionBudgets for
    // preemption.
    let mut cached_rx = Vec::new();
    {
        use crate::informer::cached;
        use k8s_openapi::api::apps::v1::{ReplicaSet, StatefulSet};
        use k8s_openapi::api::core::v1::{
            PersistentVolume, PersistentVolumeClaim, ReplicationController, Service,
        };
        use k8s_openapi::api::storage::v1::StorageClass;
        let mut next = || {
            let (tx, rx) = watch::channel(false);
            cached_rx.push(rx);
            (client.clone(), shared.clone(), tx)
        };
        let (c, s, tx) = next();
        background.spawn(cached::<PersistentVolumeClaim>(c, s, tx));
        let (c, s, tx) = next();
        background.spawn(cached::<PersistentVolume>(c, s, tx));
        let (c, s, tx) = next();
        background.spawn(cached::<StorageClass>(c, s, tx));
        let (c, s, tx) = next();
        background.spawn(cached::<Service>(c, s, tx));
        let (c, s, tx) = next();
        background.spawn(cached::<ReplicationController>(c, s, tx));
        let (c, s, tx) = next();
        background.spawn(cached::<ReplicaSet>(c, s, tx));
        let (c, s, tx) = next();
        background.spawn(cached::<StatefulSet>(c, s, tx));
        let (c, s, tx) = next();
        background.spawn(cached::<k8s_openapi::api::core::v1::Namespace>(c, s, tx));
        let (c, s, tx) = next();
        background.spawn(cached::<k8s_openapi::api::policy::v1::PodDisruptionBudget>(
            c, s, tx,
        ));
    }
    let (events_tx, events_rx) = mpsc::channel(1024);
    background.spawn(crate::events::run(client.clone(), events_rx));
    let ctx = Arc::new(Ctx {
        client,
        shared: shared.clone(),
        // client-go's NewRecorder: the instance is `<controller>-<hostname>`.
        reporter: Reporter {
            component: config.scheduler_name.clone(),
            instance: format!("{}-{}", config.scheduler_name, hostname()),
        },
        events: events_tx,
        metrics,
    });
    wait_synced(&mut nodes_rx).await;
    wait_synced(&mut pods_rx).await;
    for rx in &mut cached_rx {
        wait_synced(rx).await;
    }
    tracing::info!(scheduler = %config.scheduler_name, "caches synced, scheduling");
    let seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(1);
    let mut alg = Algorithm::new(default_profile(), config.percentage_of_nodes_to_score, seed);
    let limit = Arc::new(Semaphore::new(config.bind_concurrency.max(1)));
    let mut tasks = JoinSet::new();
    let mut last_pool_flush = Instant::now();
    // The pending-pods gauges: set before the loop sleeps, and at most every 250 ms while it
    // is busy (the pool's count by plugin is a walk of the pool).
    let mut last_gauges: Option<Instant> = None;
    let mut plugins_seen = BTreeSet::new();
    loop {
        while tasks.try_join_next().is_some() {}
        let now = Instant::now();
        let (next, sleep_for, sizes) = {
            let mut q = ctx.lock_queue();
            q.flush_backoff(now);
            if now.duration_since(last_pool_flush) >= Duration::from_secs(30) {
                q.flush_unschedulable(now);
                last_pool_flush = now;
            }
            let sleep_for = q
                .next_backoff()
                .map(|t| t.saturating_duration_since(now))
                .unwrap_or(Duration::from_secs(1))
                .min(Duration::from_secs(1));
            let next = q.pop(now);
            let due = next.is_none()
                || last_gauges.is_none_or(|t| now.duration_since(t) >= Duration::from_millis(250));
            (next, sleep_for, due.then(|| q.sizes()))
        };
        if let Some(sizes) = sizes {
            metrics::queue_sizes(
                &ctx.metrics,
                &config.scheduler_name,
                &sizes,
                &mut plugins_seen,
            );
            last_gauges = Some(now);
        }
        match next {
            Some(qp) => schedule_one(&ctx, &mut alg, qp, &mut tasks, &limit),
            None => {
                tokio::select! {
                    _ = shared.wake.notified() => {}
                    _ = tokio::time::sleep(sleep_for) => {}
                }
            }
        }
    }
}
