//! The eviction manager's monitoring loop for memory (kubelet's `eviction_manager.go`): every
//! monitoring interval (kubelet's 10 s housekeeping) it observes `memory.available`
//! (MemAvailable); when that is below its `evictionHard` threshold it ranks the running pods
//! as kubelet's `rankMemoryPressure` — pods using more than they request first, then lower
//! priority, then larger usage above requests — and evicts one: its containers stop with grace
//! 0 and it ends Failed with reason Evicted and kubelet's message. Critical pods (static pods,
//! priority ≥ 2000000000) are never chosen.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_cri::v1 as cri;
use k8s_openapi::api::core::v1::Pod;
use tokio::sync::mpsc;

use super::{Signal, Threshold};
use crate::labels;
use crate::pods::Shared;

/// kubelet's evictionMonitoringPeriod (its housekeeping interval).
pub const MONITORING_PERIOD: Duration = Duration::from_secs(10);
/// kubelet's SystemCriticalPriority: pods at or above it are not evicted.
const CRITICAL_PRIORITY: i32 = 2_000_000_000;

/// An eviction the dispatcher hands to the pod's worker: pod UID and status message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Eviction {
    pub uid: String,
    pub message: String,
}

/// One pod's memory as the ranking sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    pub uid: String,
    pub priority: i32,
    /// Per container: (name, working set bytes, request bytes, request as written).
    pub containers: Vec<(String, u64, u64, String)>,
}

impl Candidate {
    fn usage(&self) -> u64 {
        self.containers.iter().map(|c| c.1).sum()
    }
    fn request(&self) -> u64 {
        self.containers.iter().map(|c| c.2).sum()
    }
}

/// kubelet's rankMemoryPressure order: the first is evicted.
pub fn rank(pods: &mut [Candidate]) {
    pods.sort_by(|a, b| {
        let exceeds = |p: &Candidate| p.usage() > p.request();
        exceeds(b)
            .cmp(&exceeds(a))
            .then(a.priority.cmp(&b.priority))
            .then_with(|| {
                let over = |p: &Candidate| p.usage() as i128 - p.request() as i128;
                over(b).cmp(&over(a))
            })
    });
}

/// A byte count as Kubernetes prints a binary-SI quantity ("1536Ki", "100Mi", "1000").
pub fn quantity(bytes: u64) -> String {
    if bytes == 0 {
        return "0".into();
    }
    let mut v = bytes;
    let mut i = 0;
    while v % 1024 == 0 && i < 6 {
        v /= 1024;
        i += 1;
    }
    let suffix = ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"][i];
    format!("{v}{suffix}")
}

/// kubelet's eviction message for memory.
pub fn message(threshold: &str, available: u64, pod: &Candidate) -> String {
    let mut m = format!(
        "The node was low on resource: memory. Threshold quantity: {threshold}, available: {}. ",
        quantity(available)
    );
    for (name, usage, request, written) in &pod.containers {
        if usage > request {
            m.push_str(&format!(
                "Container {name} was using {}, request is {written}, has larger consumption of memory. ",
                quantity(*usage)
            ));
        }
    }
    m
}

/// Runs until the process ends, handing at most one eviction per interval to `evict`.
pub async fn run(s: Arc<Shared>, evict: mpsc::Sender<Eviction>, period: Duration) {
    let threshold = s
        .cfg
        .eviction_hard
        .iter()
        .filter_map(|(k, v)| Threshold::parse(k, v).ok().map(|t| (t, v.clone())))
        .find(|(t, _)| t.signal == Signal::MemoryAvailable);
    let Some((threshold, written)) = threshold else {
        return;
    };
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let machine = crate::node::Machine::read(&s.cfg.root_dir);
        let Some(available) = crate::node::meminfo("MemAvailable") else {
            continue;
        };
        let min = threshold.min_available(machine.memory);
        if available >= min {
            continue;
        }
        // A percentage prints as the quantity it stands for, as kubelet's message does.
        let shown = match threshold.value {
            super::Value::Quantity(_) => written.clone(),
            super::Value::Percent(_) => quantity(min),
        };
        let mut pods = match candidates(&s).await {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(error = %e, "eviction: reading container stats");
                continue;
            }
        };
        rank(&mut pods);
        let Some(victim) = pods.first() else {
            tracing::debug!("memory.available below threshold, no pod to evict");
            continue;
        };
        let message = message(&shown, available, victim);
        tracing::info!(pod_uid = %victim.uid, %message, "evicting a pod");
        let _ = evict
            .send(Eviction {
                uid: victim.uid.clone(),
                message,
            })
            .await;
    }
}

/// The running, non-critical pods with their containers' working sets from CRI.
async fn candidates(s: &Shared) -> Result<Vec<Candidate>, tonic::Status> {
    let pods: Vec<Pod> = s.pods.read().expect("pods").values().cloned().collect();
    let mut cri = s.cri.clone();
    let stats = cri
        .runtime
        .list_container_stats(cri::ListContainerStatsRequest { filter: None })
        .await?
        .into_inner()
        .stats;
    let mut usage: HashMap<(String, String), u64> = HashMap::new();
    for st in stats {
        let Some(attrs) = st.attributes else { continue };
        let uid = attrs
            .labels
            .get(labels::POD_UID)
            .cloned()
            .unwrap_or_default();
        let name = attrs.metadata.map(|m| m.name).unwrap_or_default();
        let ws = st
            .memory
            .and_then(|m| m.working_set_bytes)
            .map(|v| v.value)
            .unwrap_or(0);
        *usage.entry((uid, name)).or_default() += ws;
    }
    Ok(pods
        .iter()
        .filter(|p| {
            !matches!(
                p.status.as_ref().and_then(|st| st.phase.as_deref()),
                Some("Failed") | Some("Succeeded")
            ) && p.metadata.deletion_timestamp.is_none()
                && !crate::static_pods::is_static(p)
                && p.spec.as_ref().and_then(|s| s.priority).unwrap_or(0) < CRITICAL_PRIORITY
        })
        .map(|p| {
            let uid = p.metadata.uid.clone().unwrap_or_default();
            let spec = p.spec.clone().unwrap_or_default();
            let containers = spec
                .containers
                .iter()
                .map(|c| {
                    let written = c
                        .resources
                        .as_ref()
                        .and_then(|r| r.requests.as_ref())
                        .and_then(|r| r.get("memory"))
                        .map(|q| q.0.clone())
                        .unwrap_or_else(|| "0".into());
                    let request = crate::quantity::parse_bytes(&written).unwrap_or(0);
                    let used = usage
                        .get(&(uid.clone(), c.name.clone()))
                        .copied()
                        .unwrap_or(0);
                    (c.name.clone(), used, request, written)
                })
                .collect();
            Candidate {
                uid,
                priority: spec.priority.unwrap_or(0),
                containers,
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(uid: &str, priority: i32, usage: u64, request: u64) -> Candidate {
        Candidate {
            uid: uid.into(),
            priority,
            containers: vec![("c".into(), usage, request, quantity(request))],
        }
    }

    #[test]
    fn ranking_follows_kubelets_memory_order() {
        let mut pods = vec![
            pod("within-requests", 0, 10 << 20, 100 << 20),
            pod("over-high-priority", 1000, 50 << 20, 10 << 20),
            pod("over-low-priority-small", 0, 20 << 20, 10 << 20),
            pod("over-low-priority-large", 0, 90 << 20, 10 << 20),
        ];
        rank(&mut pods);
        let order: Vec<_> = pods.iter().map(|p| p.uid.as_str()).collect();
        assert_eq!(
            order,
            [
                "over-low-priority-large",
                "over-low-priority-small",
                "over-high-priority",
                "within-requests"
            ]
        );
    }

    #[test]
    fn messages_and_quantities_as_kubelet() {
        assert_eq!(quantity(0), "0");
        assert_eq!(quantity(1536 * 1024), "1536Ki");
        assert_eq!(quantity(100 << 20), "100Mi");
        assert_eq!(quantity(1000), "1000");
        let p = Candidate {
            uid: "u".into(),
            priority: 0,
            containers: vec![
                ("app".into(), 2 << 20, 1024, "1Ki".into()),
                ("side".into(), 1024, 10 << 20, "10Mi".into()),
            ],
        };
        assert_eq!(
            message("100Mi", 50 << 20, &p),
            "The node was low on resource: memory. Threshold quantity: 100Mi, available: 50Mi. \
             Container app was using 2Mi, request is 1Ki, has larger consumption of memory. "
        );
    }
}
