//! The eviction manager's monitoring loop (kubelet's `eviction_manager.go` synchronize): every
//! monitoring interval (kubelet's 10 s housekeeping) it observes the signals, updates the node
//! conditions (kept for evictionPressureTransitionPeriod), and when a threshold is met past
//! its grace period: for disk signals it first reclaims node-level resources (dead containers,
//! unused images) and stops there if that brought every threshold back above its minimum
//! reclaim; otherwise it ranks the evictable pods for the signal and evicts one — kubelet's
//! 1 s (immediateEvictionGracePeriodSeconds) for a hard threshold, min(evictionMaxPodGracePeriod,
//! the pod's grace) for a soft one — which ends Failed with reason Evicted, kubelet's message
//! and a DisruptionTarget condition (reason TerminationByKubelet). Before the thresholds, with
//! localStorageCapacityIsolation, every pod over a local ephemeral storage limit is evicted
//! (`local_storage`; kubelet gives those no DisruptionTarget condition). With
//! kernelMemcgNotification on cgroup v1, a memory threshold's crossing starts a round at once
//! (`memcg`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};

use super::observe::{observe, Snapshot};
use super::rank::{self, quantity};
use super::state::{self, State};
use super::{candidates, local_storage, memcg, reclaim, Configured, Value};
use crate::gc::ImageRecords;
use crate::pods::Shared;

/// kubelet's evictionMonitoringPeriod (its housekeeping interval).
pub const MONITORING_PERIOD: Duration = Duration::from_secs(10);

/// An eviction the dispatcher hands to the pod's worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Eviction {
    pub uid: String,
    pub message: String,
    /// Seconds the pod's containers get to stop.
    pub grace: i64,
    /// Set the DisruptionTarget condition (threshold evictions; kubelet's PodDisruptionConditions).
    pub disruption_target: bool,
}

/// kubelet's pod condition type and reason for pods it terminates under node pressure.
pub const DISRUPTION_TARGET: &str = "DisruptionTarget";
pub const TERMINATION_BY_KUBELET: &str = "TerminationByKubelet";

/// kubelet's immediateEvictionGracePeriodSeconds: the grace of a hard threshold's eviction.
pub const HARD_GRACE_SECONDS: i64 = 1;

/// The manager and what it shares with the GC.
pub struct Manager {
    s: Arc<Shared>,
    state: State,
    records: Arc<tokio::sync::Mutex<ImageRecords>>,
    /// kernelMemcgNotification's notifiers (cgroup v1), their crossings and when they were
    /// last armed.
    notifiers: Vec<memcg::Notifier>,
    crossed_tx: mpsc::Sender<String>,
    crossed_rx: mpsc::Receiver<String>,
    armed_at: Option<Instant>,
    containerfs_set: bool,
}

impl std::fmt::Debug for Manager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Manager")
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

impl Manager {
    pub fn new(s: Arc<Shared>, records: Arc<tokio::sync::Mutex<ImageRecords>>) -> Self {
        let thresholds = s.cfg.eviction_thresholds();
        let notifiers = if s.cfg.kernel_memcg_notification {
            let kubepods = s
                .ctx
                .cgroups
                .enabled
                .then_some(s.ctx.cgroups.kubepods.as_str());
            memcg::notifiers(&thresholds, kubepods)
        } else {
            Vec::new()
        };
        let state = State::new(thresholds, s.cfg.eviction_pressure_transition_period);
        let (crossed_tx, crossed_rx) = mpsc::channel(4);
        Self {
            s,
            state,
            records,
            notifiers,
            crossed_tx,
            crossed_rx,
            armed_at: None,
            containerfs_set: false,
        }
    }

    /// Once the filesystems are known (the first observation), derives the containerfs
    /// thresholds as kubelet's first synchronize does.
    fn set_containerfs_thresholds(&mut self, snap: &Snapshot) {
        if self.containerfs_set {
            return;
        }
        self.containerfs_set = true;
        let (thresholds, complaints) =
            super::containerfs_thresholds(self.state.thresholds().to_vec(), snap.dedicated_imagefs);
        if !complaints.is_empty() {
            tracing::error!(err = %complaints.join("\n"), "eviction manager: found conflicting containerfs eviction. Ignoring.");
        }
        self.state = State::new(thresholds, self.s.cfg.eviction_pressure_transition_period);
    }

    /// Re-arms the memcg notifiers from fresh figures, at most every [`memcg::REFRESH`]
    /// (kubelet's UpdateThreshold from synchronize).
    fn arm_notifiers(&mut self, snap: &Snapshot) {
        if self.notifiers.is_empty() || self.armed_at.is_some_and(|t| t.elapsed() <= memcg::REFRESH)
        {
            return;
        }
        self.armed_at = Some(Instant::now());
        for n in &mut self.notifiers {
            let signal = n.threshold.signal();
            let figures =
                super::usage::cgroup_memory_usage(&n.cgroup).zip(snap.signals.get(&signal));
            let Some((m, obs)) = figures else {
                tracing::info!(notifier = %memcg::description(&n.threshold), "eviction manager: failed to update notifier: no memory figures for its cgroup");
                continue;
            };
            let f = memcg::Figures {
                usage: m.usage,
                working_set: m.working_set,
                capacity: obs.capacity,
            };
            if let Err(e) = n.update(f, &self.crossed_tx) {
                tracing::info!(notifier = %memcg::description(&n.threshold), error = %e, "eviction manager: failed to update notifier");
            }
        }
    }

    /// Observes and publishes the node conditions without acting (the first round, before
    /// the node's status is first written and before the pods are known).
    pub async fn observe_only(&mut self) -> Snapshot {
        let snap = observe(&self.s).await;
        self.set_containerfs_thresholds(&snap);
        let round = self.state.round(&snap.signals, Instant::now());
        *self.s.pressure.write().expect("pressure") = round.pressure;
        snap
    }

    /// Runs until the process ends, handing at most one eviction per round to `evict`: a
    /// round every `period`, and one as soon as a memcg notifier reports its threshold
    /// crossed. Acts only once the pod list is synced (so no pod is taken for gone).
    pub async fn run(
        mut self,
        evict: mpsc::Sender<Eviction>,
        mut synced: watch::Receiver<bool>,
        period: Duration,
    ) {
        let local_storage = self.s.cfg.local_storage_capacity_isolation;
        if (self.state.thresholds().is_empty() && !local_storage)
            || synced.wait_for(|v| *v).await.is_err()
        {
            return;
        }
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let trigger = tokio::select! {
                _ = tick.tick() => "housekeeping",
                Some(message) = self.crossed_rx.recv() => {
                    tracing::info!("{message}");
                    "memcg notification"
                }
            };
            tracing::debug!(trigger, "eviction manager: synchronize");
            let snap = observe(&self.s).await;
            self.set_containerfs_thresholds(&snap);
            self.arm_notifiers(&snap);
            let round = self.state.round(&snap.signals, Instant::now());
            *self.s.pressure.write().expect("pressure") = round.pressure;
            // Pods over their local storage limits go first, all at once; such a round
            // stops there, as kubelet's synchronize.
            if local_storage {
                match local_storage::check(&self.s, snap.dedicated_imagefs).await {
                    Ok(over) if !over.is_empty() => {
                        for (uid, message) in over {
                            tracing::info!(pod_uid = %uid, %message, "evicting a pod over its local storage limit");
                            let _ = evict
                                .send(Eviction {
                                    uid,
                                    message,
                                    grace: local_storage::GRACE_SECONDS,
                                    disruption_target: false,
                                })
                                .await;
                        }
                        continue;
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e.message(), "eviction: local storage stats"),
                }
            }
            let Some(t) = round.act_on.first().cloned() else {
                continue;
            };
            if let Some(e) = self.synchronize(&t, &snap).await {
                tracing::info!(pod_uid = %e.uid, signal = t.signal().name(), trigger, message = %e.message, grace = e.grace, "evicting a pod");
                let _ = evict.send(e).await;
            }
        }
    }

    /// Reclaim, then the pod to evict for threshold `t`, if any.
    async fn synchronize(&mut self, t: &Configured, snap: &Snapshot) -> Option<Eviction> {
        let signal = t.signal();
        if reclaim::has_reclaim(signal, snap.dedicated_imagefs) {
            reclaim::run(&self.s, &self.records).await;
            let after = observe(&self.s).await;
            if !self
                .state
                .thresholds()
                .iter()
                .any(|t| state::met(t, &after.signals, true))
            {
                tracing::info!(
                    signal = signal.name(),
                    "eviction manager: able to reduce resource pressure without evicting pods"
                );
                return None;
            }
        }
        let mut pods = match candidates::gather(&self.s, signal, snap.dedicated_imagefs).await {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(error = %e, "eviction: reading container stats");
                return None;
            }
        };
        rank::rank(signal, &mut pods);
        let Some(victim) = pods.first() else {
            tracing::info!(
                signal = signal.name(),
                "eviction thresholds have been met, but no pods are active to evict"
            );
            return None;
        };
        let obs = snap.signals.get(&signal).copied()?;
        // A quantity prints as written; a percentage as the quantity it stands for (kubelet's
        // GetThresholdQuantity, binary-SI).
        let shown = match t.threshold.value {
            Value::Quantity(_) => t.written.clone(),
            Value::Percent(_) => quantity(t.threshold.min_available(obs.capacity), true),
        };
        let message = rank::message(signal, &shown, obs.available, victim);
        let grace = if t.is_hard() {
            HARD_GRACE_SECONDS
        } else {
            let max = self.s.cfg.eviction_max_pod_grace_period as i64;
            victim.grace_seconds.map_or(max, |g| g.min(max))
        };
        Some(Eviction {
            uid: victim.uid.clone(),
            message,
            grace,
            disruption_target: true,
        })
    }
}

/// Frees an evicted pod's local storage (its volumes, emptyDirs included), as kubelet's volume
/// manager tears down the volumes of terminated pods: the disk it used is what eviction was for.
pub fn release_volumes(root: &std::path::Path, uid: &str) {
    if let Err(e) = crate::volumes::teardown(root, uid) {
        tracing::warn!(error = %e, "removing an evicted pod's volumes");
    }
}
