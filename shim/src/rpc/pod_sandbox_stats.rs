//! PodSandboxStats: the pod's cgroup parent (CPU, memory), its containers, and the network
//! counters of the pod's interfaces (read inside its network namespace via the pause process).

use k8s_cri::v1 as cri;

use crate::error::ShimError;
use crate::records::{now_ns, ContainerState, SandboxRecord};
use crate::{stats, Shim};

/// Each interface's 16 counters from /proc/<pid>/net/dev (the network namespace of `pid`),
/// loopback left out: rx bytes, packets, errs, drop, fifo, frame, compressed, multicast, then
/// tx bytes, packets, errs, drop, fifo, colls, carrier, compressed.
pub fn net_dev_counters(pid: i32) -> Vec<(String, [u64; 16])> {
    let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/net/dev")) else {
        return Vec::new();
    };
    text.lines()
        .skip(2)
        .filter_map(|l| {
            let (name, rest) = l.split_once(':')?;
            let name = name.trim();
            if name == "lo" {
                return None;
            }
            let f: Vec<u64> = rest
                .split_whitespace()
                .filter_map(|x| x.parse().ok())
                .collect();
            let f: [u64; 16] = f.get(..16)?.try_into().ok()?;
            Some((name.to_string(), f))
        })
        .collect()
}

/// Per-interface (rx, tx) byte and error counters.
fn net_dev(pid: i32) -> Vec<cri::NetworkInterfaceUsage> {
    net_dev_counters(pid)
        .into_iter()
        .map(|(name, f)| cri::NetworkInterfaceUsage {
            name,
            rx_bytes: Some(cri::UInt64Value { value: f[0] }),
            rx_errors: Some(cri::UInt64Value { value: f[2] }),
            tx_bytes: Some(cri::UInt64Value { value: f[8] }),
            tx_errors: Some(cri::UInt64Value { value: f[10] }),
        })
        .collect()
}

impl Shim {
    pub fn cri_pod_stats(&self, s: &SandboxRecord) -> cri::PodSandboxStats {
        let ifaces = s.pause_pid.map(net_dev).unwrap_or_default();
        let mut it = ifaces.into_iter();
        let network = it.next().map(|default| cri::NetworkUsage {
            timestamp: now_ns(),
            default_interface: Some(default),
            interfaces: it.collect(),
        });
        let containers = self
            .containers_of(&s.id)
            .into_iter()
            .filter(|c| c.state == ContainerState::Running)
            .map(|c| self.cri_container_stats(&c))
            .collect();
        cri::PodSandboxStats {
            attributes: Some(cri::PodSandboxAttributes {
                id: s.id.clone(),
                metadata: s.config.metadata.clone(),
                labels: s.config.labels.clone(),
                annotations: s.config.annotations.clone(),
            }),
            linux: Some(cri::LinuxPodSandboxStats {
                cpu: stats::cpu(&s.cgroup_parent),
                memory: stats::mem(&s.cgroup_parent),
                network,
                process: s.pause_pid.map(|_| cri::ProcessUsage {
                    timestamp: now_ns(),
                    process_count: None,
                }),
                containers,
            }),
            windows: None,
        }
    }

    pub async fn pod_sandbox_stats(
        &self,
        r: cri::PodSandboxStatsRequest,
    ) -> Result<cri::PodSandboxStatsResponse, ShimError> {
        let s = self.sandbox(&r.pod_sandbox_id)?;
        Ok(cri::PodSandboxStatsResponse {
            stats: Some(self.cri_pod_stats(&s)),
        })
    }
}
