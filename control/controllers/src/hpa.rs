//! The horizontal pod autoscaler controller (kube's `pkg/controller/podautoscaler`,
//! `horizontalpodautoscaling` in `--controllers`): every sync period (15 s) each autoscaling/v2
//! HPA reads its target's scale subresource (Deployment, ReplicaSet, StatefulSet, …), asks the
//! resource metrics API (`metrics.k8s.io/v1beta1` PodMetrics of the scale's selector — served by
//! pea-control, or metrics-server behind a real kube-apiserver) for Resource metrics, computes
//! the desired replicas ([`crate::hpa_calc`]), writes the scale when it changes (event
//! SuccessfulRescale) and the HPA's status (currentReplicas, desiredReplicas, currentMetrics,
//! lastScaleTime, conditions AbleToScale / ScalingActive / ScalingLimited). Pods, Object and
//! External metrics are not implemented: they make the HPA report ScalingActive=False.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration as StdDuration;

use chrono::{DateTime, Duration, Utc};
use k8s_openapi::api::autoscaling::v2::{
    ContainerResourceMetricStatus, CrossVersionObjectReference, HPAScalingRules,
    HorizontalPodAutoscaler, HorizontalPodAutoscalerCondition, MetricSpec, MetricStatus,
    MetricTarget, MetricValueStatus, ResourceMetricSource, ResourceMetricStatus,
};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    LabelSelector, LabelSelectorRequirement, Time,
};
use kube::api::{ApiResource, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams};
use kube::{Api, Client, ResourceExt};
use serde_json::{json, Value};
use tracing::Instrument;

use crate::events::{reference, Recorder};
use crate::hpa_calc::{self, PodInfo, PodMetric, Rules, Stamped, Target, Tuning};
use crate::informer::{Cache, Change};
use crate::podutil::{labels, selector_matches};
use crate::queue::{run_workers, Queue, Requeue};
use crate::{key, split_key, Clock, Informers};

#[derive(Debug, thiserror::Error)]
pub enum HpaError {
    #[error("failed to query scale subresource for {target}: {message}")]
    GetScale { target: String, message: String },
    #[error("failed to rescale {target}: {source}")]
    Rescale {
        target: String,
        #[source]
        source: kube::Error,
    },
    #[error("failed to compute desired number of replicas based on listed metrics for {target}: {message}")]
    Metrics { target: String, message: String },
    #[error("updating the status of {key}: {source}")]
    Status {
        key: String,
        #[source]
        source: kube::Error,
    },
}

/// The controller's settings (kube-controller-manager's `--horizontal-pod-autoscaler-*`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HpaConfig {
    pub sync_period: StdDuration,
    pub tuning: Tuning,
}

impl Default for HpaConfig {
    fn default() -> Self {
        Self {
            sync_period: StdDuration::from_secs(15),
            tuning: Tuning::default(),
        }
    }
}

/// The JSON form of [`HpaConfig`] (`ControllersConfig.hpa`; kube's
/// `--horizontal-pod-autoscaler-*` flags).
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields, default, rename_all = "camelCase")]
pub struct HpaSettings {
    /// How often each autoscaler is reconciled (`--horizontal-pod-autoscaler-sync-period`).
    pub sync_period_secs: f64,
    /// Without `behavior`, scale-downs use the highest recommendation of this window
    /// (`--horizontal-pod-autoscaler-downscale-stabilization`).
    pub downscale_stabilization_secs: u64,
    pub tolerance: f64,
    pub cpu_initialization_period_secs: u64,
    pub initial_readiness_delay_secs: u64,
}

impl Default for HpaSettings {
    fn default() -> Self {
        Self {
            sync_period_secs: 15.0,
            downscale_stabilization_secs: 300,
            tolerance: 0.1,
            cpu_initialization_period_secs: 300,
            initial_readiness_delay_secs: 30,
        }
    }
}

impl HpaSettings {
    pub fn config(&self) -> HpaConfig {
        let secs = |s: u64| Duration::seconds(s.min(86_400) as i64);
        HpaConfig {
            sync_period: StdDuration::from_secs_f64(self.sync_period_secs.clamp(0.05, 86_400.0)),
            tuning: Tuning {
                tolerance: self.tolerance,
                cpu_initialization_period: secs(self.cpu_initialization_period_secs),
                initial_readiness_delay: secs(self.initial_readiness_delay_secs),
                downscale_stabilization: secs(self.downscale_stabilization_secs),
            },
        }
    }
}

/// What kube keeps in memory per autoscaler: recent recommendations and scale events.
#[derive(Debug, Default)]
struct Memory {
    recommendations: Vec<Stamped>,
    ups: Vec<Stamped>,
    downs: Vec<Stamped>,
}

pub struct HpaController {
    client: Client,
    hpas: Arc<Cache<HorizontalPodAutoscaler>>,
    pods: Arc<Cache<Pod>>,
    queue: Arc<Queue>,
    clock: Clock,
    events: Recorder,
    config: HpaConfig,
    memory: Mutex<HashMap<String, Memory>>,
}

impl std::fmt::Debug for HpaController {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HpaController").finish_non_exhaustive()
    }
}

/// The outcome of the metrics half of a sync.
struct MetricsOutcome {
    desired: i32,
    metric: String,
    statuses: Vec<MetricStatus>,
}

/// A condition to set: (type, status, reason, message).
type Cond = (&'static str, &'static str, String, String);

impl HpaController {
    pub fn register(
        informers: &Informers,
        client: Client,
        clock: Clock,
        events: Recorder,
        config: HpaConfig,
    ) -> Arc<Self> {
        let c = Arc::new(Self {
            client,
            hpas: informers.hpas.cache(),
            pods: informers.pods.cache(),
            queue: Queue::new(),
            clock,
            events,
            config,
            memory: Mutex::new(HashMap::new()),
        });
        let q = c.queue.clone();
        let weak = Arc::downgrade(&c);
        informers.hpas.add_handler(move |ch| match ch {
            Change::Added(h) => q.add(key(&h.namespace().unwrap_or_default(), &h.name_any())),
            // Our own status writes are updates too: only spec changes are news, the
            // periodic resync covers the rest (kube rate-limits every enqueue to the period).
            Change::Updated { old, new } if old.metadata.generation != new.metadata.generation => {
                q.add(key(&new.namespace().unwrap_or_default(), &new.name_any()))
            }
            Change::Updated { .. } => {}
            Change::Deleted(h) => {
                if let Some(c) = weak.upgrade() {
                    c.memory
                        .lock()
                        .expect("hpa memory")
                        .remove(&key(&h.namespace().unwrap_or_default(), &h.name_any()));
                }
            }
        });
        c
    }

    pub async fn run(self: Arc<Self>, workers: usize) {
        self.hpas.wait_synced().await;
        self.pods.wait_synced().await;
        let q = self.queue.clone();
        run_workers(q, workers, "horizontalpodautoscaling", move |k| {
            let c = self.clone();
            async move {
                let span = tracing::debug_span!("sync_hpa", key = %k);
                c.sync(&k).instrument(span).await
            }
        })
        .await;
    }

    async fn sync(&self, k: &str) -> Result<Requeue, HpaError> {
        let (ns, name) = split_key(k);
        let Some(hpa) = self.hpas.get(ns, name) else {
            self.memory.lock().expect("hpa memory").remove(k);
            return Ok(Requeue::default());
        };
        if hpa.metadata.deletion_timestamp.is_some() {
            return Ok(Requeue::default());
        }
        // Every autoscaler is looked at again one period later, whatever happened now; a
        // failure is logged (and recorded as an event and in the conditions), not retried
        // faster, as kube's fixed-interval rate limiter does.
        if let Err(e) = self.reconcile(k, &hpa).await {
            tracing::info!(hpa = %k, error = %e, "autoscaler sync failed");
        }
        Ok(Requeue(Some(self.config.sync_period)))
    }

    async fn reconcile(&self, k: &str, hpa: &HorizontalPodAutoscaler) -> Result<(), HpaError> {
        let (ns, _) = split_key(k);
        let now = self.clock.now();
        let spec = hpa.spec.clone().unwrap_or_default();
        let original = hpa.status.clone().unwrap_or_default();
        let mut status = original.clone();
        let mut conds = status.conditions.take().unwrap_or_default();
        let target = &spec.scale_target_ref;
        let target_name = format!("{}/{}", target.kind, target.name);
        let about = reference(hpa);
        let scale_api = scale_api(&self.client, ns, target);
        let scale = match scale_api.get_scale(&target.name).await {
            Ok(s) => s,
            Err(e) => {
                self.events.warning(about, "FailedGetScale", e.to_string());
                set_condition(
                    &mut conds,
                    now,
                    (
                        "AbleToScale",
                        "False",
                        "FailedGetScale".into(),
                        format!(
                            "the HPA controller was unable to get the target's current scale: {e}"
                        ),
                    ),
                );
                status.conditions = Some(conds);
                self.write_status(k, &original, status).await?;
                return Err(HpaError::GetScale {
                    target: target_name,
                    message: e.to_string(),
                });
            }
        };
        set_condition(
            &mut conds,
            now,
            (
                "AbleToScale",
                "True",
                "SucceededGetScale".into(),
                "the HPA controller was able to get the target's current scale".into(),
            ),
        );
        let current = scale.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0);
        let min = spec.min_replicas.unwrap_or(1);
        let max = spec.max_replicas;
        {
            let mut mem = self.memory.lock().expect("hpa memory");
            let m = mem.entry(k.to_string()).or_default();
            if m.recommendations.is_empty() {
                m.recommendations.push(Stamped {
                    at: now,
                    value: current,
                });
            }
        }
        let mut statuses = None;
        let mut reason = String::new();
        let (desired, rescale) = if current == 0 && min != 0 {
            set_condition(
                &mut conds,
                now,
                (
                    "ScalingActive",
                    "False",
                    "ScalingDisabled".into(),
                    "scaling is disabled since the replica count of the target is zero".into(),
                ),
            );
            (0, false)
        } else if current > max {
            reason = "Current number of replicas above Spec.MaxReplicas".into();
            (max, true)
        } else if current < min {
            reason = "Current number of replicas below Spec.MinReplicas".into();
            (min, true)
        } else {
            let selector = scale
                .status
                .as_ref()
                .and_then(|s| s.selector.clone())
                .unwrap_or_default();
            // kube's v2 defaulting: no metrics means 80 % CPU utilization.
            let metrics = spec
                .metrics
                .clone()
                .filter(|m| !m.is_empty())
                .unwrap_or_else(|| {
                    vec![MetricSpec {
                        type_: "Resource".into(),
                        resource: Some(ResourceMetricSource {
                            name: "cpu".into(),
                            target: MetricTarget {
                                type_: "Utilization".into(),
                                average_utilization: Some(80),
                                ..Default::default()
                            },
                        }),
                        ..Default::default()
                    }]
                });
            let outcome = self
                .compute_for_metrics(ns, hpa, &metrics, current, &selector, &mut conds, now)
                .await;
            let outcome = match outcome {
                Ok(o) => o,
                Err((message, partial)) => {
                    // kube's setCurrentReplicasAndMetricsInStatus: desiredReplicas stays.
                    status.current_replicas = Some(current);
                    status.current_metrics = partial.filter(|p| !p.is_empty());
                    status.conditions = Some(conds);
                    self.events
                        .warning(about, "FailedComputeMetricsReplicas", message.clone());
                    self.write_status(k, &original, status).await?;
                    return Err(HpaError::Metrics {
                        target: target_name,
                        message,
                    });
                }
            };
            statuses = Some(outcome.statuses);
            let proposed = outcome.desired;
            if proposed > current {
                reason = format!("{} above target", outcome.metric);
            } else if proposed < current {
                reason = "All metrics below target".into();
            }
            let desired = self.normalize(
                k,
                &spec.behavior,
                current,
                proposed,
                min,
                max,
                &mut conds,
                now,
            );
            (desired, desired != current)
        };
        let mut desired = desired;
        if rescale {
            let patch = Patch::Merge(json!({"spec": {"replicas": desired}}));
            if let Err(e) = scale_api
                .patch_scale(&target.name, &PatchParams::default(), &patch)
                .await
            {
                self.events.warning(
                    about,
                    "FailedRescale",
                    format!("New size: {desired}; reason: {reason}; error: {e}"),
                );
                set_condition(
                    &mut conds,
                    now,
                    (
                        "AbleToScale",
                        "False",
                        "FailedUpdateScale".into(),
                        format!("the HPA controller was unable to update the target scale: {e}"),
                    ),
                );
                status.current_replicas = Some(current);
                status.current_metrics = statuses.filter(|s| !s.is_empty());
                status.conditions = Some(conds);
                self.write_status(k, &original, status).await?;
                return Err(HpaError::Rescale {
                    target: target_name,
                    source: e,
                });
            }
            set_condition(
                &mut conds,
                now,
                (
                    "AbleToScale",
                    "True",
                    "SucceededRescale".into(),
                    format!("the HPA controller was able to update the target scale to {desired}"),
                ),
            );
            self.events.normal(
                about,
                "SuccessfulRescale",
                format!("New size: {desired}; reason: {reason}"),
            );
            if let Some(b) = &spec.behavior {
                let (up, down) = (
                    rules(b.scale_up.as_ref(), true),
                    rules(b.scale_down.as_ref(), false),
                );
                let mut mem = self.memory.lock().expect("hpa memory");
                let m = mem.entry(k.to_string()).or_default();
                hpa_calc::record_scale_event(
                    &mut m.ups,
                    &mut m.downs,
                    &up,
                    &down,
                    current,
                    desired,
                    now,
                );
            }
            tracing::info!(hpa = %k, from = current, to = desired, %reason, "rescaled");
            status.last_scale_time = Some(Time(now));
        } else {
            desired = current;
        }
        status.observed_generation = hpa.metadata.generation;
        status.current_replicas = Some(current);
        status.desired_replicas = desired;
        status.current_metrics = statuses.filter(|s| !s.is_empty());
        status.conditions = Some(conds);
        self.write_status(k, &original, status).await
    }

    /// Stabilization and limits, with or without `behavior` (kube's normalizeDesiredReplicas*).
    #[allow(clippy::too_many_arguments)]
    fn normalize(
        &self,
        k: &str,
        behavior: &Option<k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscalerBehavior>,
        current: i32,
        proposed: i32,
        min: i32,
        max: i32,
        conds: &mut Vec<HorizontalPodAutoscalerCondition>,
        now: DateTime<Utc>,
    ) -> i32 {
        let mut mem = self.memory.lock().expect("hpa memory");
        let m = mem.entry(k.to_string()).or_default();
        let (stabilized, limit) = match behavior {
            None => {
                let s = hpa_calc::stabilize(
                    &mut m.recommendations,
                    proposed,
                    self.config.tuning.downscale_stabilization,
                    now,
                );
                if s != proposed {
                    set_condition(conds, now, ("AbleToScale", "True", "ScaleDownStabilized".into(),
                        "recent recommendations were higher than current one, applying the highest recent recommendation".into()));
                }
                (s, hpa_calc::limit_without_behavior(current, s, min, max))
            }
            Some(b) => {
                let (up, down) = (
                    rules(b.scale_up.as_ref(), true),
                    rules(b.scale_down.as_ref(), false),
                );
                let (s, reason, message) = hpa_calc::stabilize_with_behavior(
                    &mut m.recommendations,
                    current,
                    proposed,
                    &up,
                    &down,
                    now,
                );
                if s != proposed {
                    set_condition(
                        conds,
                        now,
                        ("AbleToScale", "True", reason.into(), message.into()),
                    );
                }
                (
                    s,
                    hpa_calc::limit_with_behavior(
                        current, s, min, max, &m.ups, &m.downs, &up, &down, now,
                    ),
                )
            }
        };
        if stabilized == proposed {
            set_condition(
                conds,
                now,
                (
                    "AbleToScale",
                    "True",
                    "ReadyForNewScale".into(),
                    "recommended size matches current size".into(),
                ),
            );
        }
        let (desired, reason, message) = limit;
        let limited = if desired == stabilized {
            "False"
        } else {
            "True"
        };
        set_condition(
            conds,
            now,
            ("ScalingLimited", limited, reason.into(), message.into()),
        );
        desired
    }

    /// kube's computeReplicasForMetrics: the largest proposal of the valid metrics; all
    /// invalid, or some invalid while the rest would scale down, is an error (with what could
    /// be computed).
    #[allow(clippy::too_many_arguments)]
    async fn compute_for_metrics(
        &self,
        ns: &str,
        hpa: &HorizontalPodAutoscaler,
        specs: &[MetricSpec],
        current: i32,
        selector: &str,
        conds: &mut Vec<HorizontalPodAutoscalerCondition>,
        now: DateTime<Utc>,
    ) -> Result<MetricsOutcome, (String, Option<Vec<MetricStatus>>)> {
        let about = || reference(hpa);
        if selector.is_empty() {
            self.events
                .warning(about(), "SelectorRequired", "selector is required".into());
            set_condition(
                conds,
                now,
                (
                    "ScalingActive",
                    "False",
                    "InvalidSelector".into(),
                    "the HPA target's scale is missing a selector".into(),
                ),
            );
            return Err(("selector is required".into(), None));
        }
        let parsed = match parse_selector(selector) {
            Ok(s) => s,
            Err(e) => {
                let msg = format!(
                    "couldn't convert selector into a corresponding internal selector object: {e}"
                );
                self.events.warning(about(), "InvalidSelector", msg.clone());
                set_condition(
                    conds,
                    now,
                    (
                        "ScalingActive",
                        "False",
                        "InvalidSelector".into(),
                        format!("the HPA target's scale has an invalid selector: {e}"),
                    ),
                );
                return Err((msg, None));
            }
        };
        let pods: Vec<Arc<Pod>> = self
            .pods
            .list_namespace(ns)
            .into_iter()
            .filter(|p| selector_matches(&parsed, labels(&p.metadata)))
            .collect();
        let mut fetched: Option<Result<Vec<Value>, String>> = None;
        let mut statuses = Vec::new();
        let (mut best, mut best_metric) = (0, String::new());
        let mut invalid: Option<(Cond, String)> = None;
        let mut invalid_count = 0;
        for spec in specs {
            let r = self
                .resource_proposal(ns, spec, current, selector, &pods, &mut fetched, now)
                .await;
            match r {
                Ok((replicas, name, st)) => {
                    statuses.push(st);
                    if best == 0 || replicas > best {
                        best = replicas;
                        best_metric = name;
                    }
                }
                Err((cond, err)) => {
                    statuses.push(MetricStatus {
                        type_: spec.type_.clone(),
                        ..Default::default()
                    });
                    self.events.warning(about(), &cond.2, err.clone());
                    if invalid.is_none() {
                        invalid = Some((cond, err));
                    }
                    invalid_count += 1;
                }
            }
        }
        if let Some((cond, err)) = invalid {
            if invalid_count >= specs.len() || best < current {
                set_condition(conds, now, cond);
                let statuses: Vec<MetricStatus> = statuses
                    .into_iter()
                    .filter(|s| s.resource.is_some() || s.container_resource.is_some())
                    .collect();
                return Err((format!("invalid metrics ({invalid_count} invalid out of {}), first error is: {err}", specs.len()), Some(statuses)));
            }
        }
        set_condition(
            conds,
            now,
            (
                "ScalingActive",
                "True",
                "ValidMetricFound".into(),
                format!(
                    "the HPA was able to successfully calculate a replica count from {best_metric}"
                ),
            ),
        );
        let statuses = statuses
            .into_iter()
            .filter(|s| s.resource.is_some() || s.container_resource.is_some())
            .collect();
        Ok(MetricsOutcome {
            desired: best,
            metric: best_metric,
            statuses,
        })
    }

    /// One Resource or ContainerResource metric's proposal: (replicas, metric name, status).
    #[allow(clippy::too_many_arguments)]
    async fn resource_proposal(
        &self,
        ns: &str,
        spec: &MetricSpec,
        current: i32,
        selector: &str,
        pods: &[Arc<Pod>],
        fetched: &mut Option<Result<Vec<Value>, String>>,
        now: DateTime<Utc>,
    ) -> Result<(i32, String, MetricStatus), (Cond, String)> {
        let (resource, container, target) = match spec.type_.as_str() {
            "Resource" => match &spec.resource {
                Some(r) => (r.name.clone(), None, r.target.clone()),
                None => return Err(invalid_source("Resource")),
            },
            "ContainerResource" => match &spec.container_resource {
                Some(r) => (r.name.clone(), Some(r.container.clone()), r.target.clone()),
                None => return Err(invalid_source("ContainerResource")),
            },
            other => {
                let reason = format!("FailedGet{other}Metric");
                let msg = format!("metric type {other:?} is not implemented by pea's HPA controller (only Resource and ContainerResource)");
                return Err((
                    (
                        "ScalingActive",
                        "False",
                        reason,
                        format!("the HPA was unable to compute the replica count: {msg}"),
                    ),
                    msg,
                ));
            }
        };
        let reason = if container.is_some() {
            "FailedGetContainerResourceMetric"
        } else {
            "FailedGetResourceMetric"
        };
        let fail = |msg: String| -> (Cond, String) {
            (
                (
                    "ScalingActive",
                    "False",
                    reason.to_string(),
                    format!("the HPA was unable to compute the replica count: {msg}"),
                ),
                msg,
            )
        };
        let target = match target.type_.as_str() {
            "Utilization" => Target::Utilization(
                target
                    .average_utilization
                    .ok_or_else(|| fail("Utilization targets need averageUtilization".into()))?,
            ),
            "AverageValue" => Target::AverageValue(
                target
                    .average_value
                    .as_ref()
                    .and_then(|q| hpa_calc::quantity_milli(&q.0))
                    .ok_or_else(|| fail("AverageValue targets need averageValue".into()))?,
            ),
            other => {
                return Err(fail(format!(
                    "invalid resource metric target type {other:?}"
                )))
            }
        };
        if fetched.is_none() {
            *fetched = Some(self.pod_metrics(ns, selector).await);
        }
        let items = match fetched.as_ref().expect("fetched above") {
            Ok(i) => i,
            Err(e) => {
                return Err(fail(format!(
                    "unable to get metrics for resource {resource}: {e}"
                )))
            }
        };
        let metrics = pod_metric_values(items, &resource, container.as_deref());
        if metrics.is_empty() {
            return Err(fail(format!("unable to get metrics for resource {resource}: no metrics returned from resource metrics API")));
        }
        let infos: Vec<PodInfo> = pods.iter().map(|p| pod_info(p)).collect();
        let requests = if matches!(target, Target::Utilization(_)) {
            pod_requests(pods, &resource, container.as_deref()).map_err(fail)?
        } else {
            BTreeMap::new()
        };
        let p = hpa_calc::resource_replicas(
            current,
            target,
            &infos,
            &metrics,
            &requests,
            resource == "cpu",
            &self.config.tuning,
            now,
        )
        .map_err(|e| fail(e.to_string()))?;
        let value = MetricValueStatus {
            average_utilization: p.utilization,
            average_value: Some(Quantity(format!("{}m", p.average_milli))),
            value: None,
        };
        let (name, st) = match &container {
            None => (
                if p.utilization.is_some() {
                    format!("{resource} resource utilization (percentage of request)")
                } else {
                    format!("{resource} resource")
                },
                MetricStatus {
                    type_: "Resource".into(),
                    resource: Some(ResourceMetricStatus {
                        name: resource.clone(),
                        current: value,
                    }),
                    ..Default::default()
                },
            ),
            Some(c) => (
                if p.utilization.is_some() {
                    format!("{resource} container resource utilization (percentage of request)")
                } else {
                    format!("{resource} container resource")
                },
                MetricStatus {
                    type_: "ContainerResource".into(),
                    container_resource: Some(ContainerResourceMetricStatus {
                        name: resource.clone(),
                        container: c.clone(),
                        current: value,
                    }),
                    ..Default::default()
                },
            ),
        };
        Ok((p.replicas, name, st))
    }

    /// PodMetrics of the selected pods, from the resource metrics API.
    async fn pod_metrics(&self, ns: &str, selector: &str) -> Result<Vec<Value>, String> {
        let gvk = GroupVersionKind::gvk("metrics.k8s.io", "v1beta1", "PodMetrics");
        let ar = ApiResource::from_gvk_with_plural(&gvk, "pods");
        let api: Api<DynamicObject> = Api::namespaced_with(self.client.clone(), ns, &ar);
        let list = api
            .list(&ListParams::default().labels(selector))
            .await
            .map_err(|e| e.to_string())?;
        Ok(list
            .items
            .into_iter()
            .map(|o| {
                let mut v = o.data;
                v["metadata"] = json!({"name": o.metadata.name});
                v
            })
            .collect())
    }

    async fn write_status(
        &self,
        k: &str,
        original: &k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscalerStatus,
        status: k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscalerStatus,
    ) -> Result<(), HpaError> {
        if &status == original {
            return Ok(());
        }
        let (ns, name) = split_key(k);
        let mut body = serde_json::to_value(&status).unwrap_or(Value::Null);
        // A merge patch keeps what it omits: clear what the status no longer has.
        if let Some(m) = body.as_object_mut() {
            m.entry("currentMetrics").or_insert(Value::Null);
        }
        let patch = json!({"status": body});
        Api::<HorizontalPodAutoscaler>::namespaced(self.client.clone(), ns)
            .patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map(|_| ())
            .map_err(|source| HpaError::Status {
                key: k.to_string(),
                source,
            })
    }
}

fn invalid_source(kind: &str) -> (Cond, String) {
    let msg = format!("{kind} metric source is missing its {kind} section");
    (
        (
            "ScalingActive",
            "False",
            "InvalidMetricSourceType".into(),
            format!("the HPA was unable to compute the replica count: {msg}"),
        ),
        msg,
    )
}

/// kube's setCondition: the transition time moves only when the status changes.
fn set_condition(conds: &mut Vec<HorizontalPodAutoscalerCondition>, now: DateTime<Utc>, c: Cond) {
    let (type_, status, reason, message) = c;
    match conds.iter_mut().find(|x| x.type_ == type_) {
        Some(existing) => {
            if existing.status != status {
                existing.last_transition_time = Some(Time(now));
            }
            existing.status = status.into();
            existing.reason = Some(reason);
            existing.message = Some(message);
        }
        None => conds.push(HorizontalPodAutoscalerCondition {
            type_: type_.into(),
            status: status.into(),
            reason: Some(reason),
            message: Some(message),
            last_transition_time: Some(Time(now)),
        }),
    }
}

/// The scale subresource client of an HPA's target (group and version from its apiVersion).
fn scale_api(
    client: &Client,
    ns: &str,
    target: &CrossVersionObjectReference,
) -> Api<DynamicObject> {
    let av = target
        .api_version
        .clone()
        .unwrap_or_else(|| match target.kind.as_str() {
            "ReplicationController" => "v1".into(),
            _ => "apps/v1".into(),
        });
    let (group, version) = av.split_once('/').unwrap_or(("", av.as_str()));
    let plural = format!("{}s", target.kind.to_ascii_lowercase());
    let gvk = GroupVersionKind::gvk(group, version, &target.kind);
    Api::namespaced_with(
        client.clone(),
        ns,
        &ApiResource::from_gvk_with_plural(&gvk, &plural),
    )
}

/// Scaling rules with kube's defaults for what `rules` leaves out.
fn rules(r: Option<&HPAScalingRules>, up: bool) -> Rules {
    let d = if up {
        Rules::default_scale_up()
    } else {
        Rules::default_scale_down()
    };
    let Some(r) = r else { return d };
    Rules {
        stabilization_window_secs: r
            .stabilization_window_seconds
            .unwrap_or(d.stabilization_window_secs),
        select_policy: r.select_policy.clone().unwrap_or(d.select_policy),
        policies: match &r.policies {
            Some(p) if !p.is_empty() => p
                .iter()
                .map(|p| (p.type_.clone(), p.value, p.period_seconds))
                .collect(),
            _ => d.policies,
        },
    }
}

fn pod_info(p: &Pod) -> PodInfo {
    let status = p.status.as_ref();
    PodInfo {
        name: p.name_any(),
        phase: status.and_then(|s| s.phase.clone()).unwrap_or_default(),
        deleting: p.metadata.deletion_timestamp.is_some(),
        ready: status
            .and_then(|s| s.conditions.as_ref())
            .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"))
            .map(|c| {
                (
                    c.status == "True",
                    c.last_transition_time
                        .as_ref()
                        .map(|t| t.0)
                        .unwrap_or_default(),
                )
            }),
        start_time: status.and_then(|s| s.start_time.as_ref()).map(|t| t.0),
    }
}

/// kube's calculatePodRequests: per pod, the requests of its containers (and restartable init
/// containers) in milli-units; a container without one is an error.
fn pod_requests(
    pods: &[Arc<Pod>],
    resource: &str,
    container: Option<&str>,
) -> Result<BTreeMap<String, i64>, String> {
    let mut out = BTreeMap::new();
    for p in pods {
        let Some(spec) = &p.spec else { continue };
        let sidecars = spec
            .init_containers
            .iter()
            .flatten()
            .filter(|c| c.restart_policy.as_deref() == Some("Always"));
        let mut sum = 0;
        for c in spec.containers.iter().chain(sidecars) {
            if container.is_some_and(|n| n != c.name) {
                continue;
            }
            let req = c
                .resources
                .as_ref()
                .and_then(|r| r.requests.as_ref())
                .and_then(|r| r.get(resource))
                .and_then(|q| hpa_calc::quantity_milli(&q.0));
            match req {
                Some(v) => sum += v,
                None => {
                    return Err(format!(
                        "missing request for {resource} in container {} of Pod {}",
                        c.name,
                        p.name_any()
                    ))
                }
            }
        }
        out.insert(p.name_any(), sum);
    }
    Ok(out)
}

/// PodMetrics items → per-pod usage of `resource` (milli-units, summed over the containers or
/// the named one); a pod with a container lacking the resource is left out (kube's client).
fn pod_metric_values(
    items: &[Value],
    resource: &str,
    container: Option<&str>,
) -> BTreeMap<String, PodMetric> {
    let mut out = BTreeMap::new();
    'pods: for item in items {
        let Some(name) = item.pointer("/metadata/name").and_then(Value::as_str) else {
            continue;
        };
        let timestamp = item["timestamp"]
            .as_str()
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or_default();
        let window = item["window"]
            .as_str()
            .and_then(parse_go_duration)
            .unwrap_or_default();
        let mut sum = 0;
        let mut found = false;
        for c in item["containers"].as_array().into_iter().flatten() {
            if container.is_some_and(|n| c["name"] != n) {
                continue;
            }
            match c
                .pointer(&format!("/usage/{resource}"))
                .and_then(Value::as_str)
                .and_then(hpa_calc::quantity_milli)
            {
                Some(v) => {
                    sum += v;
                    found = true;
                }
                None => continue 'pods,
            }
        }
        if found {
            out.insert(
                name.to_string(),
                PodMetric {
                    value: sum,
                    timestamp,
                    window,
                },
            );
        }
    }
    out
}

/// Go's duration strings (`15s`, `1.5s`, `1m0.25s`, `200ms`).
pub fn parse_go_duration(s: &str) -> Option<Duration> {
    let mut rest = s.trim();
    if rest == "0" {
        return Some(Duration::zero());
    }
    let mut nanos = 0f64;
    while !rest.is_empty() {
        let n_end = rest.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
        let n: f64 = rest[..n_end].parse().ok()?;
        rest = &rest[n_end..];
        let u_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = match &rest[..u_end] {
            "h" => 3.6e12,
            "m" => 6e10,
            "s" => 1e9,
            "ms" => 1e6,
            "us" | "µs" => 1e3,
            "ns" => 1.0,
            _ => return None,
        };
        nanos += n * unit;
        rest = &rest[u_end..];
    }
    Some(Duration::nanoseconds(nanos as i64))
}

/// Parses a label selector string (what the scale subresource's `status.selector` holds, kube's
/// `labels.Parse`): `k=v`, `k==v`, `k!=v`, `k in (a,b)`, `k notin (a,b)`, `k`, `!k`.
pub fn parse_selector(s: &str) -> Result<LabelSelector, String> {
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0, 0);
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&s[start..]);
    let mut sel = LabelSelector::default();
    let req = |key: &str, op: &str, values: Option<Vec<String>>| LabelSelectorRequirement {
        key: key.trim().to_string(),
        operator: op.into(),
        values,
    };
    for p in parts.into_iter().map(str::trim).filter(|p| !p.is_empty()) {
        let set = |rest: &str| -> Result<Vec<String>, String> {
            let inner = rest
                .trim()
                .strip_prefix('(')
                .and_then(|r| r.strip_suffix(')'))
                .ok_or_else(|| format!("bad set in {p:?}"))?;
            Ok(inner
                .split(',')
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
                .collect())
        };
        let exprs = sel.match_expressions.get_or_insert_with(Vec::new);
        if let Some((k, v)) = p.split_once("!=") {
            exprs.push(req(k, "NotIn", Some(vec![v.trim().into()])));
        } else if let Some((k, v)) = p.split_once("==").or_else(|| p.split_once('=')) {
            sel.match_labels
                .get_or_insert_with(Default::default)
                .insert(k.trim().into(), v.trim().into());
        } else if let Some((k, rest)) = p.split_once(" notin ") {
            exprs.push(req(k, "NotIn", Some(set(rest)?)));
        } else if let Some((k, rest)) = p.split_once(" in ") {
            exprs.push(req(k, "In", Some(set(rest)?)));
        } else if let Some(k) = p.strip_prefix('!') {
            exprs.push(req(k, "DoesNotExist", None));
        } else if p
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c))
        {
            exprs.push(req(p, "Exists", None));
        } else {
            return Err(format!("unable to parse requirement {p:?}"));
        }
    }
    if sel.match_expressions.as_ref().is_some_and(Vec::is_empty) {
        sel.match_expressions = None;
    }
    Ok(sel)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scale_selectors_parse_like_labels_parse() {
        let s = parse_selector("app=web,tier!=db, env in (a, b),!legacy,track").unwrap();
        let l = |pairs: &[(&str, &str)]| -> std::collections::BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        assert!(selector_matches(
            &s,
            &l(&[("app", "web"), ("env", "a"), ("track", "x")])
        ));
        assert!(!selector_matches(
            &s,
            &l(&[("app", "web"), ("env", "c"), ("track", "x")])
        ));
        assert!(!selector_matches(
            &s,
            &l(&[
                ("app", "web"),
                ("env", "a"),
                ("track", "x"),
                ("legacy", "1")
            ])
        ));
        assert!(!selector_matches(
            &s,
            &l(&[("app", "web"), ("env", "a"), ("track", "x"), ("tier", "db")])
        ));
        assert!(parse_selector("a in b").is_err());
        assert!(parse_selector("").unwrap().match_labels.is_none());
    }

    #[test]
    fn pod_metrics_sum_containers_and_drop_incomplete_pods() {
        let items = vec![
            json!({"metadata": {"name": "a"}, "timestamp": "2026-01-01T00:00:00Z", "window": "15s",
                "containers": [{"name": "x", "usage": {"cpu": "250m", "memory": "1Ki"}},
                               {"name": "y", "usage": {"cpu": "123456789n", "memory": "1Ki"}}]}),
            json!({"metadata": {"name": "b"}, "timestamp": "2026-01-01T00:00:00Z", "window": "1m0.5s",
                "containers": [{"name": "x", "usage": {"memory": "1Ki"}}]}),
        ];
        let m = pod_metric_values(&items, "cpu", None);
        assert_eq!(m.len(), 1);
        assert_eq!(m["a"].value, 250 + 124);
        assert_eq!(m["a"].window, Duration::seconds(15));
        assert_eq!(pod_metric_values(&items, "cpu", Some("x"))["a"].value, 250);
        assert_eq!(
            parse_go_duration("1m0.5s"),
            Some(Duration::milliseconds(60_500))
        );
        assert_eq!(
            parse_go_duration("200ms"),
            Some(Duration::milliseconds(200))
        );
        assert_eq!(parse_go_duration("x"), None);
    }

    #[test]
    fn conditions_keep_their_transition_time_while_unchanged() {
        let t0 = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let t1 = t0 + Duration::seconds(60);
        let mut c = Vec::new();
        set_condition(&mut c, t0, ("AbleToScale", "True", "A".into(), "m".into()));
        set_condition(&mut c, t1, ("AbleToScale", "True", "B".into(), "n".into()));
        assert_eq!(c[0].last_transition_time, Some(Time(t0)));
        assert_eq!(c[0].reason.as_deref(), Some("B"));
        set_condition(&mut c, t1, ("AbleToScale", "False", "C".into(), "o".into()));
        assert_eq!(c[0].last_transition_time, Some(Time(t1)));
    }
}
