//! Node allocatable enforcement on the pods' cgroup (kubelet's
//! `enforceNodeAllocatableCgroups`): kubepods gets cpu shares, a memory limit and a pids limit
//! of node allocatable (capacity − kubeReserved − systemReserved) when `enforceNodeAllocatable`
//! names `pods`, of the capacity otherwise. The limit is what `allocatableMemory.available`
//! is measured against, and what the memcg notifier of that signal watches.

use std::sync::Arc;
use std::time::Duration;

use crate::cgroups::{pods_limit, PodsLimit};
use crate::config::Config;
use crate::pods::Shared;

/// How long kubelet waits before retrying a refused update (pods above the new limit).
const RETRY: Duration = Duration::from_secs(60);

/// kubelet's event reasons for the enforcement.
const ENFORCED: &str = "NodeAllocatableEnforced";
const FAILED: &str = "FailedNodeAllocatableEnforcement";

/// A reserved amount from kubeReserved + systemReserved: cpu in millicores, the rest in units.
fn reserved(cfg: &Config, key: &str) -> u64 {
    let one = |m: &std::collections::BTreeMap<String, String>| {
        m.get(key)
            .and_then(|v| {
                if key == "cpu" {
                    crate::quantity::parse(v).map(|x| (x * 1000.0).round() as u64)
                } else {
                    crate::quantity::parse_bytes(v)
                }
            })
            .unwrap_or(0)
    };
    one(&cfg.kube_reserved).saturating_add(one(&cfg.system_reserved))
}

/// The kubepods limits for this node, refusing reservations beyond capacity as kubelet's
/// validateNodeAllocatable does at start-up.
pub fn limit(cfg: &Config, cpu_millis: u64, memory: u64) -> Result<PodsLimit, String> {
    let pids = crate::eviction::observe::max_pids();
    for (key, cap) in [("cpu", cpu_millis), ("memory", memory)] {
        let r = reserved(cfg, key);
        if r > cap {
            return Err(format!(
                "invalid Node Allocatable configuration. Resource \"{key}\" has a reservation \
                 (kubeReserved + systemReserved) of {r}, capacity of {cap}"
            ));
        }
    }
    let enforce = cfg.cgroups_per_qos
        && cfg
            .enforce_node_allocatable
            .iter()
            .any(|k| k == crate::eviction::ENFORCE_PODS);
    Ok(pods_limit(
        cpu_millis,
        memory,
        pids,
        |k| reserved(cfg, k),
        enforce,
    ))
}

/// Writes `limit` on kubepods, retrying every minute while the kernel refuses it (kubelet's
/// goroutine), with kubelet's node events.
pub async fn enforce(s: Arc<Shared>, limit: PodsLimit) {
    if !s.ctx.cgroups.enabled {
        return;
    }
    loop {
        match s.ctx.cgroups.enforce_pods_limit(limit) {
            Ok(()) => {
                tracing::info!(cgroup = %s.ctx.cgroups.kubepods, memory = limit.memory,
                    cpu_shares = limit.cpu_shares, pids = ?limit.pids,
                    "node allocatable enforced on the pods' cgroup");
                s.events.node(
                    &s.cfg.node_name,
                    false,
                    ENFORCED,
                    "Updated Node Allocatable limit across pods".into(),
                );
                return;
            }
            Err(e) => {
                let message = format!(
                    "Failed to update Node Allocatable Limits {:?}: {e}",
                    s.ctx.cgroups.kubepods
                );
                tracing::warn!(%message);
                s.events.node(&s.cfg.node_name, true, FAILED, message);
            }
        }
        tokio::time::sleep(RETRY).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_beyond_capacity_are_refused_and_the_rest_is_subtracted() {
        let mut cfg = Config::defaults("n", std::path::Path::new("k"));
        cfg.kube_reserved = [("memory".to_string(), "1Gi".to_string())].into();
        cfg.system_reserved = [
            ("memory".to_string(), "512Mi".to_string()),
            ("cpu".to_string(), "250m".to_string()),
        ]
        .into();
        let l = limit(&cfg, 2000, 4 << 30).unwrap();
        assert_eq!(l.memory, (4 << 30) - (1536 << 20));
        assert_eq!(l.cpu_shares, 1750 * 1024 / 1000);
        let err = limit(&cfg, 2000, 1 << 30).unwrap_err();
        assert!(err.contains("Resource \"memory\""), "{err}");
        cfg.enforce_node_allocatable = vec!["none".into()];
        assert_eq!(limit(&cfg, 2000, 4 << 30).unwrap().memory, 4 << 30);
    }
}
