//! kube-scheduler's metrics (kube's `pkg/scheduler/metrics`), with kube's names, labels,
//! stability levels and buckets, so dashboards and alerts written for kube-scheduler read
//! pea's. The scheduling loop records them into the [`Metrics`] handle `run_with_metrics` is
//! given; pea-control serves them after the API server's, `pea-control scheduler
//! --metrics-bind-address` on its own listener.

use std::collections::{BTreeMap, BTreeSet};

pub use pea_metrics::Metrics;
use pea_metrics::{Family, Kind};

/// ExponentialBuckets(0.001, 2, 15): 1 ms to about 16 s.
const ATTEMPT_SECONDS: &[f64] = &[
    0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256, 0.512, 1.024, 2.048, 4.096,
    8.192, 16.384,
];

pub static SCHEDULE_ATTEMPTS: Family = Family {
    name: "scheduler_schedule_attempts_total",
    kind: Kind::Counter,
    stability: "STABLE",
    help: "Number of attempts to schedule pods, by the result. 'unschedulable' means a pod could not be scheduled, while 'error' means an internal scheduler problem.",
    buckets: &[],
};

pub static ATTEMPT_DURATION: Family = Family {
    name: "scheduler_scheduling_attempt_duration_seconds",
    kind: Kind::Histogram,
    stability: "STABLE",
    help: "Scheduling attempt latency in seconds (scheduling algorithm + binding)",
    buckets: ATTEMPT_SECONDS,
};

pub static ALGORITHM_DURATION: Family = Family {
    name: "scheduler_scheduling_algorithm_duration_seconds",
    kind: Kind::Histogram,
    stability: "ALPHA",
    help: "Scheduling algorithm latency in seconds",
    buckets: ATTEMPT_SECONDS,
};

pub static PREEMPTION_ATTEMPTS: Family = Family {
    name: "scheduler_preemption_attempts_total",
    kind: Kind::Counter,
    stability: "STABLE",
    help: "Total preemption attempts in the cluster till now",
    buckets: &[],
};

pub static PREEMPTION_VICTIMS: Family = Family {
    name: "scheduler_preemption_victims",
    kind: Kind::Histogram,
    stability: "STABLE",
    help: "Number of selected preemption victims",
    buckets: &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0],
};

pub static PENDING_PODS: Family = Family {
    name: "scheduler_pending_pods",
    kind: Kind::Gauge,
    stability: "STABLE",
    help: "Number of pending pods, by the queue type. 'active' means number of pods in activeQ; 'backoff' means number of pods in backoffQ; 'unschedulable' means number of pods in unschedulablePods that the scheduler attempted to schedule and failed; 'gated' is the number of unschedulable pods that the scheduler never attempted to schedule because they are gated.",
    buckets: &[],
};

pub static POD_SCHEDULING_ATTEMPTS: Family = Family {
    name: "scheduler_pod_scheduling_attempts",
    kind: Kind::Histogram,
    stability: "STABLE",
    help: "Number of attempts to successfully schedule a pod.",
    buckets: &[1.0, 2.0, 4.0, 8.0, 16.0],
};

pub static POD_SCHEDULING_SLI_DURATION: Family = Family {
    name: "scheduler_pod_scheduling_sli_duration_seconds",
    kind: Kind::Histogram,
    stability: "BETA",
    help: "E2e latency for a pod being scheduled, from the time the pod enters the scheduling queue and might involve multiple scheduling attempts.",
    // ExponentialBuckets(0.01, 2, 20): 10 ms to about 88 minutes.
    buckets: &[
        0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92,
        163.84, 327.68, 655.36, 1310.72, 2621.44, 5242.88,
    ],
};

pub static UNSCHEDULABLE_PODS: Family = Family {
    name: "scheduler_unschedulable_pods",
    kind: Kind::Gauge,
    stability: "ALPHA",
    help: "The number of unschedulable pods broken down by plugin name. A pod will increment the gauge for all plugins that caused it to not schedule and so this metric have meaning only when broken down by plugin.",
    buckets: &[],
};

/// kube's `result` label values.
pub const SCHEDULED: &str = "scheduled";
pub const UNSCHEDULABLE: &str = "unschedulable";
pub const ERROR: &str = "error";

/// One scheduling attempt's end: its result and how long it took (algorithm plus binding
/// for a scheduled pod), by profile (the scheduler's name).
pub fn attempt(m: &Metrics, profile: &str, result: &str, seconds: f64) {
    let l = [("result", result), ("profile", profile)];
    m.inc(&SCHEDULE_ATTEMPTS, &l);
    m.observe(&ATTEMPT_DURATION, &l, seconds);
}

/// A pod bound: how many attempts it took, and the time since its first attempt (kube's
/// InitialAttemptTimestamp; the `attempts` label stops at "15+").
pub fn pod_scheduled(m: &Metrics, attempts: u32, since_first_attempt: f64) {
    m.observe(&POD_SCHEDULING_ATTEMPTS, &[], f64::from(attempts));
    let label = if attempts >= 15 {
        "15+".to_string()
    } else {
        attempts.to_string()
    };
    m.observe(
        &POD_SCHEDULING_SLI_DURATION,
        &[("attempts", &label)],
        since_first_attempt,
    );
}

/// What the queue holds, as kube's pending-pods gauges.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueueSizes {
    pub active: usize,
    pub backoff: usize,
    pub unschedulable: usize,
    pub gated: usize,
    /// Unschedulable pods by each plugin that rejected them.
    pub by_plugin: BTreeMap<&'static str, usize>,
}

/// Sets the pending-pods gauges; a plugin no pod is waiting on any more goes back to 0 (its
/// series stays, as kube's gauge does). `seen` remembers the plugins across calls.
pub fn queue_sizes(
    m: &Metrics,
    profile: &str,
    sizes: &QueueSizes,
    seen: &mut BTreeSet<&'static str>,
) {
    for (queue, n) in [
        ("active", sizes.active),
        ("backoff", sizes.backoff),
        ("unschedulable", sizes.unschedulable),
        ("gated", sizes.gated),
    ] {
        m.set(&PENDING_PODS, &[("queue", queue)], n as f64);
    }
    seen.extend(sizes.by_plugin.keys());
    for plugin in seen.iter() {
        let n = sizes.by_plugin.get(plugin).copied().unwrap_or(0);
        m.set(
            &UNSCHEDULABLE_PODS,
            &[("plugin", plugin), ("profile", profile)],
            n as f64,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_kubes_exponential_ones() {
        let exp = |start: f64, factor: f64, n: usize| -> Vec<f64> {
            (0..n).map(|i| start * factor.powi(i as i32)).collect()
        };
        assert_eq!(ATTEMPT_SECONDS, exp(0.001, 2.0, 15));
        assert_eq!(PREEMPTION_VICTIMS.buckets, exp(1.0, 2.0, 7));
        assert_eq!(POD_SCHEDULING_ATTEMPTS.buckets, exp(1.0, 2.0, 5));
        assert_eq!(POD_SCHEDULING_SLI_DURATION.buckets, exp(0.01, 2.0, 20));
    }

    #[test]
    fn attempts_label_stops_at_15() {
        let m = Metrics::default();
        pod_scheduled(&m, 1, 0.5);
        pod_scheduled(&m, 20, 90.0);
        assert_eq!(
            m.observations(&POD_SCHEDULING_SLI_DURATION, &[("attempts", "1")]),
            1
        );
        assert_eq!(
            m.observations(&POD_SCHEDULING_SLI_DURATION, &[("attempts", "15+")]),
            1
        );
        assert_eq!(m.observations(&POD_SCHEDULING_ATTEMPTS, &[]), 2);
    }

    #[test]
    fn a_plugin_nobody_waits_on_goes_back_to_zero() {
        let m = Metrics::default();
        let mut seen = BTreeSet::new();
        let mut sizes = QueueSizes {
            unschedulable: 2,
            by_plugin: [("NodeResourcesFit", 2), ("TaintToleration", 1)].into(),
            ..Default::default()
        };
        queue_sizes(&m, "default-scheduler", &sizes, &mut seen);
        sizes.by_plugin.remove("TaintToleration");
        queue_sizes(&m, "default-scheduler", &sizes, &mut seen);
        let l = |p| [("plugin", p), ("profile", "default-scheduler")];
        assert_eq!(m.counter(&UNSCHEDULABLE_PODS, &l("NodeResourcesFit")), 2.0);
        assert_eq!(m.counter(&UNSCHEDULABLE_PODS, &l("TaintToleration")), 0.0);
        assert_eq!(m.counter(&PENDING_PODS, &[("queue", "unschedulable")]), 2.0);
        assert!(m
            .render()
            .contains("scheduler_unschedulable_pods{plugin=\"TaintToleration\",profile=\"default-scheduler\"} 0\n"));
    }
}
