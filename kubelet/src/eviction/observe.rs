//! The eviction signals' observations (kubelet's makeSignalObservations): how much of each
//! resource is available and its capacity. memory from /proc/meminfo; nodefs is the
//! filesystem of the kubelet's root dir; imagefs the runtime's image filesystem as CRI
//! ImageFsInfo names it; pid.available is the kernel's pid limit minus the tasks running;
//! allocatableMemory.available is the pods' cgroup (kubepods) against its limit.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use k8s_cri::v1 as cri;

use super::Signal;
use crate::pods::Shared;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Observation {
    pub available: u64,
    pub capacity: u64,
}

pub type Observations = BTreeMap<Signal, Observation>;

/// What was observed, and where imagefs is (for reclaim and ranking).
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub signals: Observations,
    /// The image filesystem is another device than nodefs (kubelet's "dedicated imagefs").
    pub dedicated_imagefs: bool,
    pub imagefs_mount: Option<PathBuf>,
}

/// Bytes and inodes of the filesystem holding `path`: (available, capacity) for each.
fn fs(path: &Path) -> Option<(Observation, Observation)> {
    let st = nix::sys::statvfs::statvfs(path).ok()?;
    let frag = st.fragment_size();
    Some((
        Observation {
            available: st.blocks_available() * frag,
            capacity: st.blocks() * frag,
        },
        Observation {
            available: st.files_free(),
            capacity: st.files(),
        },
    ))
}

/// The kernel's limit on pids: the smaller of pid_max and threads-max, as kubelet's pidlimit.
pub fn max_pids() -> Option<u64> {
    let read = |p: &str| -> Option<u64> { std::fs::read_to_string(p).ok()?.trim().parse().ok() };
    match (
        read("/proc/sys/kernel/pid_max"),
        read("/proc/sys/kernel/threads-max"),
    ) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Tasks (processes and threads) the kernel runs now: /proc/loadavg's "running/total", the
/// count sysinfo(2) gives kubelet.
fn running_tasks() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/loadavg").ok()?;
    text.split_whitespace()
        .nth(3)?
        .split('/')
        .nth(1)?
        .parse()
        .ok()
}

/// The image filesystem's mountpoint from CRI ImageFsInfo.
async fn imagefs_mount(s: &Shared) -> Option<PathBuf> {
    let mut cri = s.cri.clone();
    let fs = cri
        .images
        .image_fs_info(cri::ImageFsInfoRequest {})
        .await
        .map_err(|e| tracing::debug!(error = %e.message(), "ImageFsInfo"))
        .ok()?
        .into_inner();
    fs.image_filesystems
        .first()
        .and_then(|u| u.fs_id.as_ref())
        .map(|f| PathBuf::from(&f.mountpoint))
        .filter(|m| !m.as_os_str().is_empty())
}

/// kubelet's allocatableMemory.available: the pods' cgroup's limit minus its working set,
/// out of that limit. kubelet limits kubepods to capacity - kubeReserved - systemReserved
/// when enforceNodeAllocatable names `pods` (as pea-kubelet does, `cgroups_allocatable`);
/// until that limit is written (or where writing it failed) that same amount stands for it. Without QoS cgroups there is nothing
/// to observe, as kubelet has no pods cgroup then.
fn allocatable_memory(s: &Shared) -> Option<Observation> {
    if !s.ctx.cgroups.enabled {
        return None;
    }
    let (working_set, limit) = super::usage::cgroup_memory(&s.ctx.cgroups.kubepods)?;
    let limit = match limit {
        Some(l) => l,
        None => {
            let reserved = |m: &std::collections::BTreeMap<String, String>| {
                m.get("memory")
                    .and_then(|v| crate::quantity::parse_bytes(v))
                    .unwrap_or(0)
            };
            crate::node::meminfo("MemTotal")?
                .saturating_sub(reserved(&s.cfg.kube_reserved) + reserved(&s.cfg.system_reserved))
        }
    };
    Some(Observation {
        available: limit.saturating_sub(working_set),
        capacity: limit,
    })
}

/// Observes every signal this node can measure now; one it cannot is left out (its threshold
/// is then not met, as kubelet treats a missing observation).
pub async fn observe(s: &Shared) -> Snapshot {
    let mut out = Snapshot::default();
    if let (Some(available), Some(capacity)) = (
        crate::node::meminfo("MemAvailable"),
        crate::node::meminfo("MemTotal"),
    ) {
        out.signals.insert(
            Signal::MemoryAvailable,
            Observation {
                available,
                capacity,
            },
        );
    }
    if let Some(o) = allocatable_memory(s) {
        out.signals.insert(Signal::AllocatableMemoryAvailable, o);
    }
    let root = &s.cfg.root_dir;
    if let Some((bytes, inodes)) = fs(root) {
        out.signals.insert(Signal::NodefsAvailable, bytes);
        out.signals.insert(Signal::NodefsInodesFree, inodes);
    }
    if let Some(mount) = imagefs_mount(s).await {
        if let Some((bytes, inodes)) = fs(&mount) {
            out.signals.insert(Signal::ImagefsAvailable, bytes);
            out.signals.insert(Signal::ImagefsInodesFree, inodes);
        }
        let dev = |p: &Path| std::fs::metadata(p).map(|m| m.dev()).ok();
        out.dedicated_imagefs = dev(root).is_some() && dev(root) != dev(&mount);
        out.imagefs_mount = Some(mount);
    } else {
        // No image filesystem reported: kubelet takes imagefs to be nodefs.
        for (from, to) in [
            (Signal::NodefsAvailable, Signal::ImagefsAvailable),
            (Signal::NodefsInodesFree, Signal::ImagefsInodesFree),
        ] {
            if let Some(o) = out.signals.get(&from).copied() {
                out.signals.insert(to, o);
            }
        }
    }
    // The containers' writable layers are on the image filesystem: CRI reports no separate
    // container filesystem from pea-shim or containerd 1.6, and kubelet's stats then give
    // containerfs the imagefs figures.
    for (from, to) in [
        (Signal::ImagefsAvailable, Signal::ContainerfsAvailable),
        (Signal::ImagefsInodesFree, Signal::ContainerfsInodesFree),
    ] {
        if let Some(o) = out.signals.get(&from).copied() {
            out.signals.insert(to, o);
        }
    }
    if let (Some(max), Some(running)) = (max_pids(), running_tasks()) {
        out.signals.insert(
            Signal::PidAvailable,
            Observation {
                available: max.saturating_sub(running),
                capacity: max,
            },
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_hosts_pid_and_fs_figures_are_read() {
        let max = max_pids().expect("pid_max");
        let running = running_tasks().expect("loadavg");
        assert!(running > 0 && running < max, "{running} of {max}");
        let (bytes, inodes) = fs(Path::new("/")).expect("statvfs /");
        assert!(bytes.available <= bytes.capacity && bytes.capacity > 0);
        assert!(inodes.available <= inodes.capacity);
    }
}
