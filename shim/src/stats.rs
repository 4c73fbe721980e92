//! Resource usage from cgroups (v1 here: cpuacct and memory hierarchies; v2 when the host has a
//! unified hierarchy), for ContainerStats and PodSandboxStats.

use std::path::{Path, PathBuf};

use k8s_cri::v1 as cri;

use crate::records::now_ns;

/// Where a controller's files for `cgroups_path` are: v1 per-controller, else v2 unified.
fn controller_dir(controller: &str, cgroups_path: &str) -> Option<PathBuf> {
    let rel = cgroups_path.trim_start_matches('/');
    let v1 = Path::new("/sys/fs/cgroup").join(controller).join(rel);
    if v1.is_dir() {
        return Some(v1);
    }
    let v2 = Path::new("/sys/fs/cgroup").join(rel);
    (v2.join("cgroup.controllers").exists()).then_some(v2)
}

fn read_u64(p: &Path) -> Option<u64> {
    std::fs::read_to_string(p).ok()?.trim().parse().ok()
}

fn stat_value(p: &Path, key: &str) -> Option<u64> {
    std::fs::read_to_string(p).ok()?.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

/// Cumulative CPU time in nanoseconds.
pub fn cpu_usage_ns(cgroups_path: &str) -> Option<u64> {
    let d = controller_dir("cpuacct", cgroups_path)?;
    read_u64(&d.join("cpuacct.usage"))
        .or_else(|| stat_value(&d.join("cpu.stat"), "usage_usec").map(|us| us * 1000))
}

/// (working set, usage, rss) in bytes; working set = usage − inactive file pages, as cAdvisor.
pub fn memory(cgroups_path: &str) -> Option<(u64, u64, u64)> {
    let d = controller_dir("memory", cgroups_path)?;
    if let Some(usage) = read_u64(&d.join("memory.usage_in_bytes")) {
        let stat = d.join("memory.stat");
        let inactive = stat_value(&stat, "total_inactive_file").unwrap_or(0);
        let rss = stat_value(&stat, "total_rss").unwrap_or(0);
        return Some((usage.saturating_sub(inactive), usage, rss));
    }
    let usage = read_u64(&d.join("memory.current"))?;
    let stat = d.join("memory.stat");
    let inactive = stat_value(&stat, "inactive_file").unwrap_or(0);
    let rss = stat_value(&stat, "anon").unwrap_or(0);
    Some((usage.saturating_sub(inactive), usage, rss))
}

pub fn cpu(cgroups_path: &str) -> Option<cri::CpuUsage> {
    Some(cri::CpuUsage {
        timestamp: now_ns(),
        usage_core_nano_seconds: Some(cri::UInt64Value {
            value: cpu_usage_ns(cgroups_path)?,
        }),
        usage_nano_cores: None,
    })
}

pub fn mem(cgroups_path: &str) -> Option<cri::MemoryUsage> {
    let (ws, usage, rss) = memory(cgroups_path)?;
    Some(cri::MemoryUsage {
        timestamp: now_ns(),
        working_set_bytes: Some(cri::UInt64Value { value: ws }),
        available_bytes: None,
        usage_bytes: Some(cri::UInt64Value { value: usage }),
        rss_bytes: Some(cri::UInt64Value { value: rss }),
        page_faults: None,
        major_page_faults: None,
    })
}
