//! The horizontal pod autoscaler's arithmetic, kept pure (kube's `replica_calculator.go` and
//! the normalization half of `horizontal.go`): desired replicas from resource usage
//! (`ceil(current × usage / target)` with a tolerance, missing metrics and unready pods treated
//! conservatively), then stabilization and rate limits — the 5-minute downscale window without
//! `behavior`, or the behavior's windows and Pods/Percent policies with it.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Duration, Utc};

/// The settings kube-controller-manager's `--horizontal-pod-autoscaler-*` flags give.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tuning {
    /// Changes of the usage ratio within this fraction of 1.0 are ignored (0.1).
    pub tolerance: f64,
    /// A pod younger than this has its CPU sample ignored unless it is ready and a whole
    /// window was measured since it became so (5 min).
    pub cpu_initialization_period: Duration,
    /// A pod that was never ready within this long of starting is unready (30 s).
    pub initial_readiness_delay: Duration,
    /// Scale-downs use the highest recommendation of this window (without `behavior`, 5 min).
    pub downscale_stabilization: Duration,
}

impl Default for Tuning {
    fn default() -> Self {
        Self {
            tolerance: 0.1,
            cpu_initialization_period: Duration::minutes(5),
            initial_readiness_delay: Duration::seconds(30),
            downscale_stabilization: Duration::minutes(5),
        }
    }
}

/// What the calculator needs to know of one pod the target selects.
#[derive(Debug, Clone, PartialEq)]
pub struct PodInfo {
    pub name: String,
    /// `status.phase` ("Pending", "Running", "Failed", …).
    pub phase: String,
    pub deleting: bool,
    /// The Ready condition: (status is True, its last transition).
    pub ready: Option<(bool, DateTime<Utc>)>,
    pub start_time: Option<DateTime<Utc>>,
}

/// One pod's usage from the metrics API (milli-units summed over its containers).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PodMetric {
    pub value: i64,
    pub timestamp: DateTime<Utc>,
    pub window: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CalcError {
    #[error("no pods returned by selector while calculating replica count")]
    NoPods,
    #[error("did not receive metrics for targeted pods (pods might be unready)")]
    NoMetrics,
    #[error("no metrics returned matched known pods")]
    NoMatchingMetrics,
}

/// The outcome of one resource metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Proposal {
    pub replicas: i32,
    /// Average utilization in percent of the request (Utilization targets only).
    pub utilization: Option<i32>,
    /// Average usage per pod, milli-units.
    pub average_milli: i64,
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Groups {
    pub ready: usize,
    pub unready: BTreeSet<String>,
    pub missing: BTreeSet<String>,
    pub ignored: BTreeSet<String>,
}

/// kube's `groupPods`: deleted and failed pods are ignored, pending ones unready, pods without
/// a sample missing; for CPU, pods still initializing (or never ready) are unready too.
pub fn group_pods(
    pods: &[PodInfo],
    metrics: &BTreeMap<String, PodMetric>,
    cpu: bool,
    tuning: &Tuning,
    now: DateTime<Utc>,
) -> Groups {
    let mut g = Groups::default();
    for pod in pods {
        if pod.deleting || pod.phase == "Failed" {
            g.ignored.insert(pod.name.clone());
            continue;
        }
        if pod.phase == "Pending" {
            g.unready.insert(pod.name.clone());
            continue;
        }
        let Some(metric) = metrics.get(&pod.name) else {
            g.missing.insert(pod.name.clone());
            continue;
        };
        if cpu {
            let unready = match (pod.ready, pod.start_time) {
                (Some((ready, since)), Some(start)) => {
                    if start + tuning.cpu_initialization_period > now {
                        !ready || metric.timestamp < since + metric.window
                    } else {
                        !ready && start + tuning.initial_readiness_delay > since
                    }
                }
                _ => true,
            };
            if unready {
                g.unready.insert(pod.name.clone());
                continue;
            }
        }
        g.ready += 1;
    }
    g
}

/// kube's `GetResourceUtilizationRatio`: (ratio to target, utilization %, average milli-usage).
fn utilization_ratio(
    metrics: &BTreeMap<String, i64>,
    requests: &BTreeMap<String, i64>,
    target: i32,
) -> Result<(f64, i32, i64), CalcError> {
    let (mut used, mut requested, mut n) = (0i64, 0i64, 0i64);
    for (pod, v) in metrics {
        if let Some(r) = requests.get(pod) {
            used += v;
            requested += r;
            n += 1;
        }
    }
    if requested == 0 {
        return Err(CalcError::NoMatchingMetrics);
    }
    let utilization = (used * 100 / requested) as i32;
    Ok((
        f64::from(utilization) / f64::from(target),
        utilization,
        used / n,
    ))
}

/// kube's `GetMetricUsageRatio`: (ratio to target, average milli-usage).
fn usage_ratio(metrics: &BTreeMap<String, i64>, target: i64) -> (f64, i64) {
    let n = metrics.len().max(1) as i64;
    let avg = metrics.values().sum::<i64>() / n;
    (avg as f64 / target as f64, avg)
}

fn within(tuning: &Tuning, ratio: f64) -> bool {
    (1.0 - ratio).abs() <= tuning.tolerance
}

/// How a resource metric is targeted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// Percent of the pods' requests (needs `requests`).
    Utilization(i32),
    /// Milli-units per pod.
    AverageValue(i64),
}

/// kube's `GetResourceReplicas` (Utilization) and `GetRawResourceReplicas` (AverageValue).
/// `requests` are per pod, milli-units (callers fail first when a container lacks one).
#[allow(clippy::too_many_arguments)]
pub fn resource_replicas(
    current: i32,
    target: Target,
    pods: &[PodInfo],
    metrics: &BTreeMap<String, PodMetric>,
    requests: &BTreeMap<String, i64>,
    cpu: bool,
    tuning: &Tuning,
    now: DateTime<Utc>,
) -> Result<Proposal, CalcError> {
    if pods.is_empty() {
        return Err(CalcError::NoPods);
    }
    let g = group_pods(pods, metrics, cpu, tuning, now);
    let mut values: BTreeMap<String, i64> = metrics
        .iter()
        .filter(|(p, _)| !g.ignored.contains(*p) && !g.unready.contains(*p))
        .map(|(p, m)| (p.clone(), m.value))
        .collect();
    if values.is_empty() {
        return Err(CalcError::NoMetrics);
    }
    let ratio = |values: &BTreeMap<String, i64>| -> Result<(f64, Option<i32>, i64), CalcError> {
        Ok(match target {
            Target::Utilization(t) => {
                let (r, u, avg) = utilization_ratio(values, requests, t)?;
                (r, Some(u), avg)
            }
            Target::AverageValue(t) => {
                let (r, avg) = usage_ratio(values, t);
                (r, None, avg)
            }
        })
    };
    let (usage_ratio, utilization, average_milli) = ratio(&values)?;
    let proposal = |replicas| Proposal {
        replicas,
        utilization,
        average_milli,
    };
    let scale_up_with_unready = !g.unready.is_empty() && usage_ratio > 1.0;
    if !scale_up_with_unready && g.missing.is_empty() {
        if within(tuning, usage_ratio) {
            return Ok(proposal(current));
        }
        return Ok(proposal((usage_ratio * g.ready as f64).ceil() as i32));
    }
    if !g.missing.is_empty() {
        for pod in &g.missing {
            let assumed = if usage_ratio < 1.0 {
                // Scaling down: a pod without a sample counts as using its whole request
                // (or the target, when that is above 100 %), or exactly the target value.
                match target {
                    Target::Utilization(t) => {
                        requests.get(pod).copied().unwrap_or(0) * i64::from(t.max(100)) / 100
                    }
                    Target::AverageValue(t) => t,
                }
            } else {
                0
            };
            if usage_ratio != 1.0 {
                values.insert(pod.clone(), assumed);
            }
        }
    }
    if scale_up_with_unready {
        for pod in &g.unready {
            values.insert(pod.clone(), 0);
        }
    }
    let (new_ratio, _, _) = ratio(&values)?;
    if within(tuning, new_ratio)
        || (usage_ratio < 1.0 && new_ratio > 1.0)
        || (usage_ratio > 1.0 && new_ratio < 1.0)
    {
        return Ok(proposal(current));
    }
    let replicas = (new_ratio * values.len() as f64).ceil() as i32;
    if (new_ratio < 1.0 && replicas > current) || (new_ratio > 1.0 && replicas < current) {
        return Ok(proposal(current));
    }
    Ok(proposal(replicas))
}

/// `HPAScalingRules` with kube's defaults filled in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rules {
    pub stabilization_window_secs: i32,
    /// "Max", "Min" or "Disabled".
    pub select_policy: String,
    /// (type "Pods" | "Percent", value, periodSeconds).
    pub policies: Vec<(String, i32, i32)>,
}

impl Rules {
    /// kube's GenerateHPAScaleUpRules defaults: no window, +4 pods or +100 % per 15 s.
    pub fn default_scale_up() -> Self {
        Self {
            stabilization_window_secs: 0,
            select_policy: "Max".into(),
            policies: vec![("Pods".into(), 4, 15), ("Percent".into(), 100, 15)],
        }
    }

    /// kube's GenerateHPAScaleDownRules defaults: a 300 s window, −100 % per 15 s.
    pub fn default_scale_down() -> Self {
        Self {
            stabilization_window_secs: 300,
            select_policy: "Max".into(),
            policies: vec![("Percent".into(), 100, 15)],
        }
    }

    fn longest_period(&self) -> i32 {
        self.policies.iter().map(|p| p.2).max().unwrap_or(0)
    }
}

/// A past recommendation or scale change, kept per autoscaler.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamped {
    pub at: DateTime<Utc>,
    pub value: i32,
}

/// Why the result differs (or not) from what was asked, as conditions word it.
pub type Limit = (i32, &'static str, &'static str);

const WITHIN: (&str, &str) = (
    "DesiredWithinRange",
    "the desired count is within the acceptable range",
);

/// kube's `stabilizeRecommendation` (no behavior): the highest recommendation of the window;
/// records `desired` (reusing one expired slot).
pub fn stabilize(
    recs: &mut Vec<Stamped>,
    desired: i32,
    window: Duration,
    now: DateTime<Utc>,
) -> i32 {
    let cutoff = now - window;
    let mut best = desired;
    let mut old = None;
    for (i, r) in recs.iter().enumerate() {
        if r.at < cutoff {
            old = Some(i);
        } else {
            best = best.max(r.value);
        }
    }
    let rec = Stamped {
        at: now,
        value: desired,
    };
    match old {
        Some(i) => recs[i] = rec,
        None => recs.push(rec),
    }
    best
}

/// kube's `convertDesiredReplicasWithRules` (no behavior): within min/max, and at most
/// max(2 × current, 4) at once.
pub fn limit_without_behavior(current: i32, desired: i32, min: i32, max: i32) -> Limit {
    let scale_up_limit = (2 * current).max(4);
    let (maximum, cond, msg) = if max > scale_up_limit {
        (
            scale_up_limit,
            "ScaleUpLimit",
            "the desired replica count is increasing faster than the maximum scale rate",
        )
    } else {
        (
            max,
            "TooManyReplicas",
            "the desired replica count is more than the maximum replica count",
        )
    };
    if desired < min {
        return (
            min,
            "TooFewReplicas",
            "the desired replica count is less than the minimum replica count",
        );
    }
    if desired > maximum {
        return (maximum, cond, msg);
    }
    (desired, WITHIN.0, WITHIN.1)
}

/// kube's `stabilizeRecommendationWithBehaviors`: the lowest recommendation of the scale-up
/// window and the highest of the scale-down window bound the result; records `desired`.
pub fn stabilize_with_behavior(
    recs: &mut Vec<Stamped>,
    current: i32,
    desired: i32,
    up: &Rules,
    down: &Rules,
    now: DateTime<Utc>,
) -> Limit {
    let up_cutoff = now - Duration::seconds(up.stabilization_window_secs.into());
    let down_cutoff = now - Duration::seconds(down.stabilization_window_secs.into());
    let (mut up_rec, mut down_rec) = (desired, desired);
    let mut old = None;
    for (i, r) in recs.iter().enumerate() {
        if r.at > up_cutoff {
            up_rec = up_rec.min(r.value);
        }
        if r.at > down_cutoff {
            down_rec = down_rec.max(r.value);
        }
        if r.at < up_cutoff && r.at < down_cutoff {
            old = Some(i);
        }
    }
    let stabilized = current.max(up_rec).min(down_rec);
    let rec = Stamped {
        at: now,
        value: desired,
    };
    match old {
        Some(i) => recs[i] = rec,
        None => recs.push(rec),
    }
    if desired >= current {
        (
            stabilized,
            "ScaleUpStabilized",
            "recent recommendations were lower than current one, applying the lowest recent recommendation",
        )
    } else {
        (
            stabilized,
            "ScaleDownStabilized",
            "recent recommendations were higher than current one, applying the highest recent recommendation",
        )
    }
}

fn change_in_period(events: &[Stamped], period_secs: i32, now: DateTime<Utc>) -> i32 {
    let cutoff = now - Duration::seconds(period_secs.into());
    events
        .iter()
        .filter(|e| e.at > cutoff)
        .map(|e| e.value)
        .sum()
}

/// kube's `calculateScaleUpLimitWithScalingRules`.
pub fn scale_up_limit(
    current: i32,
    ups: &[Stamped],
    downs: &[Stamped],
    rules: &Rules,
    now: DateTime<Utc>,
) -> i32 {
    let (mut result, pick): (i32, fn(i32, i32) -> i32) = match rules.select_policy.as_str() {
        "Disabled" => return current,
        "Min" => (i32::MAX, std::cmp::min),
        _ => (i32::MIN, std::cmp::max),
    };
    for (ty, value, period) in &rules.policies {
        let start =
            current - change_in_period(ups, *period, now) + change_in_period(downs, *period, now);
        let proposed = if ty == "Pods" {
            start + value
        } else {
            (f64::from(start) * (1.0 + f64::from(*value) / 100.0)).ceil() as i32
        };
        result = pick(result, proposed);
    }
    result
}

/// kube's `calculateScaleDownLimitWithBehaviors`.
pub fn scale_down_limit(
    current: i32,
    ups: &[Stamped],
    downs: &[Stamped],
    rules: &Rules,
    now: DateTime<Utc>,
) -> i32 {
    let (mut result, pick): (i32, fn(i32, i32) -> i32) = match rules.select_policy.as_str() {
        "Disabled" => return current,
        "Min" => (i32::MIN, std::cmp::max),
        _ => (i32::MAX, std::cmp::min),
    };
    for (ty, value, period) in &rules.policies {
        let start =
            current - change_in_period(ups, *period, now) + change_in_period(downs, *period, now);
        let proposed = if ty == "Pods" {
            start - value
        } else {
            (f64::from(start) * (1.0 - f64::from(*value) / 100.0)) as i32
        };
        result = pick(result, proposed);
    }
    result
}

/// kube's `convertDesiredReplicasWithBehaviorRate`: min/max and the policies' rate limits.
#[allow(clippy::too_many_arguments)]
pub fn limit_with_behavior(
    current: i32,
    desired: i32,
    min: i32,
    max: i32,
    ups: &[Stamped],
    downs: &[Stamped],
    up: &Rules,
    down: &Rules,
    now: DateTime<Utc>,
) -> Limit {
    if desired > current {
        let limit = scale_up_limit(current, ups, downs, up, now).max(current);
        let (maximum, cond, msg) = if max > limit {
            (
                limit,
                "ScaleUpLimit",
                "the desired replica count is increasing faster than the maximum scale rate",
            )
        } else {
            (
                max,
                "TooManyReplicas",
                "the desired replica count is more than the maximum replica count",
            )
        };
        if desired > maximum {
            return (maximum, cond, msg);
        }
    } else if desired < current {
        let limit = scale_down_limit(current, ups, downs, down, now).min(current);
        let (minimum, cond, msg) = if min < limit {
            (
                limit,
                "ScaleDownLimit",
                "the desired replica count is decreasing faster than the maximum scale rate",
            )
        } else {
            (
                min,
                "TooFewReplicas",
                "the desired replica count is less than the minimum replica count",
            )
        };
        if desired < minimum {
            return (minimum, cond, msg);
        }
    }
    (desired, WITHIN.0, WITHIN.1)
}

/// kube's `storeScaleEvent`: records a scale change in the up or down list, forgetting events
/// older than that direction's longest policy period.
pub fn record_scale_event(
    ups: &mut Vec<Stamped>,
    downs: &mut Vec<Stamped>,
    up: &Rules,
    down: &Rules,
    from: i32,
    to: i32,
    now: DateTime<Utc>,
) {
    let (list, rules, change) = if to > from {
        (ups, up, to - from)
    } else {
        (downs, down, from - to)
    };
    let cutoff = now - Duration::seconds(rules.longest_period().into());
    list.retain(|e| e.at > cutoff);
    list.push(Stamped {
        at: now,
        value: change,
    });
}

/// A resource.Quantity string in milli-units, rounded up as Go's `MilliValue` does
/// (`250m` → 250, `1` → 1000, `123456789n` → 124, `1Ki` → 1024000).
pub fn quantity_milli(q: &str) -> Option<i64> {
    pea_quantity::milli_value(q).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + s, 0).unwrap()
    }

    /// Running, ready for an hour (past the CPU initialization period).
    fn pods(n: usize) -> Vec<PodInfo> {
        (0..n)
            .map(|i| PodInfo {
                name: format!("p{i}"),
                phase: "Running".into(),
                deleting: false,
                ready: Some((true, t(-3500))),
                start_time: Some(t(-3600)),
            })
            .collect()
    }

    fn sample(values: &[(usize, i64)]) -> BTreeMap<String, PodMetric> {
        values
            .iter()
            .map(|(i, v)| {
                (
                    format!("p{i}"),
                    PodMetric {
                        value: *v,
                        timestamp: t(0),
                        window: Duration::seconds(30),
                    },
                )
            })
            .collect()
    }

    fn requests(per_pod: &[i64]) -> BTreeMap<String, i64> {
        per_pod
            .iter()
            .enumerate()
            .map(|(i, r)| (format!("p{i}"), *r))
            .collect()
    }

    fn calc(
        current: i32,
        target: Target,
        p: &[PodInfo],
        m: &[(usize, i64)],
        r: &[i64],
    ) -> Result<Proposal, CalcError> {
        resource_replicas(
            current,
            target,
            p,
            &sample(m),
            &requests(r),
            true,
            &Tuning::default(),
            t(0),
        )
    }

    #[test]
    fn utilization_scales_up_and_down_by_the_usage_ratio() {
        // kube's TestReplicaCalcScaleUp: 1500m of 3000m = 50 % vs 30 % → ceil(3 × 5/3) = 5.
        let p = calc(
            3,
            Target::Utilization(30),
            &pods(3),
            &[(0, 300), (1, 500), (2, 700)],
            &[1000; 3],
        )
        .unwrap();
        assert_eq!(
            p,
            Proposal {
                replicas: 5,
                utilization: Some(50),
                average_milli: 500
            }
        );
        // TestReplicaCalcScaleDown: 1400m of 5000m = 28 % vs 50 % → ceil(5 × 0.56) = 3.
        let p = calc(
            5,
            Target::Utilization(50),
            &pods(5),
            &[(0, 100), (1, 300), (2, 500), (3, 250), (4, 250)],
            &[1000; 5],
        )
        .unwrap();
        assert_eq!((p.replicas, p.utilization), (3, Some(28)));
        // TestReplicaCalcTolerance: 3060m of 3000m = 102 % vs 100 %: within 10 %, stays 3.
        let p = calc(
            3,
            Target::Utilization(100),
            &pods(3),
            &[(0, 1010), (1, 1030), (2, 1020)],
            &[900, 1000, 1100],
        )
        .unwrap();
        assert_eq!((p.replicas, p.utilization), (3, Some(102)));
    }

    #[test]
    fn unready_and_missing_pods_are_conservative() {
        // TestReplicaCalcScaleUpUnreadyLessScale: the unready pod counts as 0 on a scale-up:
        // 60 % of the ready ones, 1200/3000 = 40 % with it → ceil(3 × 40/30) = 4.
        let mut p = pods(3);
        p[0].ready = Some((false, t(-3500)));
        p[0].start_time = Some(t(-60));
        let r = calc(
            3,
            Target::Utilization(30),
            &p,
            &[(0, 300), (1, 500), (2, 700)],
            &[1000; 3],
        )
        .unwrap();
        assert_eq!((r.replicas, r.utilization), (4, Some(60)));
        // A missing sample on a scale-up counts as 0: 1900/1000 → 1900/2000 = 95 %: no change.
        let r = calc(
            2,
            Target::Utilization(100),
            &pods(2),
            &[(0, 1900)],
            &[1000; 2],
        )
        .unwrap();
        assert_eq!(r.replicas, 2);
        // On a scale-down it counts as its full request: (100+100+1000)/3000 = 40 % vs 50 %
        // (was 10 %) → ceil(3 × 0.8) = 3: no scale-down past what the missing pod may use.
        let r = calc(
            3,
            Target::Utilization(50),
            &pods(3),
            &[(0, 100), (1, 100)],
            &[1000; 3],
        )
        .unwrap();
        assert_eq!((r.replicas, r.utilization), (3, Some(10)));
        // Pending and deleted pods: pending ones are unready, deleted ones ignored.
        let mut p = pods(4);
        p[2].phase = "Pending".into();
        p[3].deleting = true;
        let r = calc(
            4,
            Target::Utilization(50),
            &p,
            &[(0, 1000), (1, 1000), (3, 5000)],
            &[1000; 4],
        )
        .unwrap();
        // Ready: 2000/2000 = 100 % vs 50 % (ratio 2); the pending pod counts 0: 2000/3000 = 66 %
        // → ceil(3 × 66/50) = ceil(3.96) = 4.
        assert_eq!((r.replicas, r.utilization), (4, Some(100)));
        assert_eq!(
            calc(1, Target::Utilization(50), &[], &[], &[]),
            Err(CalcError::NoPods)
        );
        assert_eq!(
            calc(1, Target::Utilization(50), &pods(1), &[], &[1000]),
            Err(CalcError::NoMetrics)
        );
    }

    #[test]
    fn a_fresh_pod_counts_once_a_whole_window_followed_readiness() {
        let mut p = pods(1);
        p[0].start_time = Some(t(-60));
        p[0].ready = Some((true, t(-10)));
        // The sample's 30 s window began before the pod became ready: unready.
        let g = group_pods(&p, &sample(&[(0, 500)]), true, &Tuning::default(), t(0));
        assert_eq!((g.ready, g.unready.len()), (0, 1));
        p[0].ready = Some((true, t(-40)));
        let g = group_pods(&p, &sample(&[(0, 500)]), true, &Tuning::default(), t(0));
        assert_eq!(g.ready, 1);
        // Memory ignores readiness.
        p[0].ready = None;
        assert_eq!(
            group_pods(&p, &sample(&[(0, 500)]), false, &Tuning::default(), t(0)).ready,
            1
        );
    }

    #[test]
    fn average_value_targets_divide_usage_per_pod() {
        // 3 pods averaging 600m against 200m → ceil(3 × 3) = 9.
        let r = calc(
            3,
            Target::AverageValue(200),
            &pods(3),
            &[(0, 500), (1, 600), (2, 700)],
            &[],
        )
        .unwrap();
        assert_eq!(
            r,
            Proposal {
                replicas: 9,
                utilization: None,
                average_milli: 600
            }
        );
        // A missing pod on a scale-down counts as exactly the target: (100+100+200)/3 = 133 vs
        // 200 → ceil(3 × 0.665) = 2.
        let r = calc(
            3,
            Target::AverageValue(200),
            &pods(3),
            &[(0, 100), (1, 100)],
            &[],
        )
        .unwrap();
        assert_eq!(r.replicas, 2);
    }

    #[test]
    fn without_behavior_scale_down_waits_for_the_window_and_up_is_capped() {
        let w = Duration::minutes(5);
        let mut recs = vec![Stamped { at: t(0), value: 4 }];
        assert_eq!(
            stabilize(&mut recs, 2, w, t(60)),
            4,
            "4 was recommended a minute ago"
        );
        assert_eq!(stabilize(&mut recs, 2, w, t(301)), 2, "the 4 has expired");
        assert_eq!(recs.len(), 2, "its slot was reused");
        assert_eq!(
            limit_without_behavior(1, 10, 1, 10),
            (
                4,
                "ScaleUpLimit",
                "the desired replica count is increasing faster than the maximum scale rate"
            )
        );
        assert_eq!(limit_without_behavior(3, 10, 1, 5).0, 5);
        assert_eq!(limit_without_behavior(3, 10, 1, 5).1, "TooManyReplicas");
        assert_eq!(limit_without_behavior(3, 0, 1, 5).1, "TooFewReplicas");
        assert_eq!(limit_without_behavior(3, 4, 1, 5), (4, WITHIN.0, WITHIN.1));
    }

    #[test]
    fn behavior_policies_limit_the_rate() {
        let (up, down) = (Rules::default_scale_up(), Rules::default_scale_down());
        // Default scale-up: max(+4 pods, +100 %) per 15 s from 2 → 6.
        assert_eq!(scale_up_limit(2, &[], &[], &up, t(0)), 6);
        // 10 → 20 (percent wins).
        assert_eq!(scale_up_limit(10, &[], &[], &up, t(0)), 20);
        // After scaling 2 → 6 five seconds ago, the period started at 2: still 6.
        let ups = [Stamped {
            at: t(-5),
            value: 4,
        }];
        assert_eq!(scale_up_limit(6, &ups, &[], &up, t(0)), 6);
        assert_eq!(
            limit_with_behavior(6, 9, 1, 20, &ups, &[], &up, &down, t(0)),
            (
                6,
                "ScaleUpLimit",
                "the desired replica count is increasing faster than the maximum scale rate"
            )
        );
        // Min of (−1 pod, −50 %) per 60 s with selectPolicy Min: from 10, max(9, 5) = 9.
        let slow = Rules {
            stabilization_window_secs: 0,
            select_policy: "Min".into(),
            policies: vec![("Pods".into(), 1, 60), ("Percent".into(), 50, 60)],
        };
        assert_eq!(scale_down_limit(10, &[], &[], &slow, t(0)), 9);
        assert_eq!(
            limit_with_behavior(10, 2, 1, 20, &[], &[], &up, &slow, t(0)).0,
            9
        );
        let off = Rules {
            select_policy: "Disabled".into(),
            ..slow.clone()
        };
        assert_eq!(
            limit_with_behavior(10, 2, 1, 20, &[], &[], &up, &off, t(0)).0,
            10
        );
        // Stabilization: a 2 recommended 10 s ago within a 60 s up window holds a scale-up to 5.
        let slow_up = Rules {
            stabilization_window_secs: 60,
            ..up.clone()
        };
        let mut recs = vec![Stamped {
            at: t(-10),
            value: 2,
        }];
        assert_eq!(
            stabilize_with_behavior(&mut recs, 2, 5, &slow_up, &down, t(0)).0,
            2
        );
        // The default 300 s down window keeps the highest recent recommendation.
        let mut recs = vec![Stamped {
            at: t(-100),
            value: 6,
        }];
        assert_eq!(stabilize_with_behavior(&mut recs, 6, 2, &up, &down, t(0)), (6, "ScaleDownStabilized", "recent recommendations were higher than current one, applying the highest recent recommendation"));
        let (mut ups, mut downs) = (
            vec![Stamped {
                at: t(-100),
                value: 1,
            }],
            vec![],
        );
        record_scale_event(&mut ups, &mut downs, &up, &down, 2, 5, t(0));
        assert_eq!(
            ups,
            vec![Stamped { at: t(0), value: 3 }],
            "the 100 s old event is past every period"
        );
    }

    #[test]
    fn quantities_read_as_milli_units() {
        assert_eq!(quantity_milli("250m"), Some(250));
        assert_eq!(quantity_milli("1"), Some(1000));
        assert_eq!(quantity_milli("1.5"), Some(1500));
        assert_eq!(quantity_milli("123456789n"), Some(124));
        assert_eq!(quantity_milli("1Ki"), Some(1_024_000));
        assert_eq!(quantity_milli("2e3"), Some(2_000_000));
        assert_eq!(quantity_milli("abc"), None);
        assert_eq!(quantity_milli("1Zi"), None);
    }
}
