//! The pods the eviction manager may evict, with their use of the resource a signal ranks by:
//! working sets (memory) and writable layers (disk) from CRI ListContainerStats, logs and local
//! volumes measured on disk, tasks from the pod cgroup. Finished, terminating and critical
//! pods (static pods, priority ≥ 2000000000 — kubelet's IsCriticalPod) are left out.

use std::collections::HashMap;

use k8s_cri::v1 as cri;
use k8s_openapi::api::core::v1::Pod;

use super::rank::{Candidate, ContainerUse};
use super::usage;
use super::Signal;
use crate::labels;
use crate::pods::Shared;

/// kubelet's SystemCriticalPriority: pods at or above it are not evicted.
const CRITICAL_PRIORITY: i32 = 2_000_000_000;

/// Per-container figures from CRI, by (pod uid, container name).
#[derive(Debug, Default, Clone, Copy)]
pub struct Stats {
    pub working_set: u64,
    pub rootfs_bytes: u64,
    pub rootfs_inodes: u64,
    attempt: u32,
}

/// The pods the eviction manager may evict (kubelet's active pods less the critical ones,
/// which its evictPod refuses).
pub fn evictable(p: &Pod) -> bool {
    !matches!(
        p.status.as_ref().and_then(|st| st.phase.as_deref()),
        Some("Failed") | Some("Succeeded")
    ) && p.metadata.deletion_timestamp.is_none()
        && !crate::static_pods::is_static(p)
        && p.spec.as_ref().and_then(|s| s.priority).unwrap_or(0) < CRITICAL_PRIORITY
}

fn request(c: &k8s_openapi::api::core::v1::Container, resource: &str) -> (u64, String) {
    let written = c
        .resources
        .as_ref()
        .and_then(|r| r.requests.as_ref())
        .and_then(|r| r.get(resource))
        .map(|q| q.0.clone())
        .unwrap_or_else(|| "0".into());
    (crate::quantity::parse_bytes(&written).unwrap_or(0), written)
}

/// CRI ListContainerStats by (pod uid, container name): the newest attempt of each container,
/// as kubelet's CRI stats provider keeps it.
pub async fn container_stats(
    s: &Shared,
) -> Result<HashMap<(String, String), Stats>, tonic::Status> {
    let mut stats: HashMap<(String, String), Stats> = HashMap::new();
    let mut cri = s.cri.clone();
    for st in cri
        .runtime
        .list_container_stats(cri::ListContainerStatsRequest { filter: None })
        .await?
        .into_inner()
        .stats
    {
        let Some(attrs) = st.attributes else { continue };
        let uid = attrs
            .labels
            .get(labels::POD_UID)
            .cloned()
            .unwrap_or_default();
        let (name, attempt) = attrs
            .metadata
            .map(|m| (m.name, m.attempt))
            .unwrap_or_default();
        let (rootfs_bytes, rootfs_inodes) = st.writable_layer.map_or((0, 0), |w| {
            (
                w.used_bytes.map_or(0, |v| v.value),
                w.inodes_used.map_or(0, |v| v.value),
            )
        });
        let this = Stats {
            working_set: st
                .memory
                .and_then(|m| m.working_set_bytes)
                .map_or(0, |v| v.value),
            rootfs_bytes,
            rootfs_inodes,
            attempt,
        };
        stats
            .entry((uid, name))
            .and_modify(|e| {
                if attempt >= e.attempt {
                    *e = this;
                }
            })
            .or_insert(this);
    }
    Ok(stats)
}

/// The candidates for `signal`. `dedicated_imagefs`: nodefs signals count logs and local
/// volumes only, imagefs signals writable layers only (kubelet's fsStatsToMeasure).
pub async fn gather(
    s: &Shared,
    signal: Signal,
    dedicated_imagefs: bool,
) -> Result<Vec<Candidate>, tonic::Status> {
    let pods: Vec<Pod> = s
        .pods
        .read()
        .expect("pods")
        .values()
        .filter(|p| evictable(p))
        .cloned()
        .collect();
    let stats = if signal != Signal::PidAvailable {
        container_stats(s).await?
    } else {
        HashMap::new()
    };
    let inodes = matches!(
        signal,
        Signal::NodefsInodesFree | Signal::ImagefsInodesFree | Signal::ContainerfsInodesFree
    );
    // containerfs ranks as imagefs with a dedicated image filesystem, as nodefs otherwise
    // (kubelet's buildSignalToRankFunc without a split image filesystem).
    let (count_rootfs, count_logs_volumes) = match signal {
        Signal::NodefsAvailable | Signal::NodefsInodesFree if dedicated_imagefs => (false, true),
        Signal::ImagefsAvailable
        | Signal::ImagefsInodesFree
        | Signal::ContainerfsAvailable
        | Signal::ContainerfsInodesFree
            if dedicated_imagefs =>
        {
            (true, false)
        }
        _ => (true, true),
    };
    let mut out = Vec::new();
    for p in pods {
        let uid = p.metadata.uid.clone().unwrap_or_default();
        let spec = p.spec.clone().unwrap_or_default();
        let log_dir = crate::podconfig::pod_log_dir(&s.ctx, &p);
        let mut containers = Vec::new();
        let mut pod_usage = 0u64;
        let mut pod_request = 0u64;
        for c in &spec.containers {
            let st = stats
                .get(&(uid.clone(), c.name.clone()))
                .copied()
                .unwrap_or_default();
            let (use_, (req, written)) = match signal {
                s if s.is_memory() => (st.working_set, request(c, "memory")),
                Signal::PidAvailable => (0, (0, "0".into())),
                _ => {
                    let (log_bytes, log_inodes) = usage::du(&log_dir.join(&c.name));
                    // The message counts writable layer and logs, as kubelet's.
                    let shown = st.rootfs_bytes + log_bytes;
                    let mut ranked = 0;
                    if count_rootfs {
                        ranked += if inodes {
                            st.rootfs_inodes
                        } else {
                            st.rootfs_bytes
                        };
                    }
                    if count_logs_volumes {
                        ranked += if inodes { log_inodes } else { log_bytes };
                    }
                    pod_usage += ranked;
                    let (req, written) = request(c, "ephemeral-storage");
                    if !inodes {
                        pod_request += req;
                    }
                    containers.push(ContainerUse {
                        name: c.name.clone(),
                        usage: shown,
                        request: req,
                        written,
                    });
                    continue;
                }
            };
            pod_usage += use_;
            pod_request += req;
            containers.push(ContainerUse {
                name: c.name.clone(),
                usage: use_,
                request: req,
                written,
            });
        }
        if count_logs_volumes && !signal.is_memory() && signal != Signal::PidAvailable {
            let base = crate::volumes::pod_dir(&s.ctx.root_dir, &uid).join("volumes");
            for v in spec.volumes.iter().flatten() {
                let dir = if v
                    .empty_dir
                    .as_ref()
                    .is_some_and(|e| e.medium.as_deref().unwrap_or("").is_empty())
                {
                    base.join("kubernetes.io~empty-dir").join(&v.name)
                } else if v.config_map.is_some() {
                    base.join("kubernetes.io~configmap").join(&v.name)
                } else {
                    continue;
                };
                let (b, i) = usage::du(&dir);
                pod_usage += if inodes { i } else { b };
            }
        }
        if signal == Signal::PidAvailable {
            pod_usage = usage::pids_current(&s.ctx.cgroups.pod_cgroup(&p)).unwrap_or(0);
        }
        out.push(Candidate {
            uid,
            priority: spec.priority.unwrap_or(0),
            usage: pod_usage,
            request: pod_request,
            containers,
            grace_seconds: spec.termination_grace_period_seconds,
        });
    }
    Ok(out)
}
