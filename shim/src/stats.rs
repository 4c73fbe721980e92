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

/// (user, system) CPU time in nanoseconds: cpuacct.stat's USER_HZ ticks (v1), cpu.stat (v2).
pub fn cpu_user_system_ns(cgroups_path: &str) -> Option<(u64, u64)> {
    if let Some(d) = controller_dir("cpuacct", cgroups_path) {
        let stat = d.join("cpuacct.stat");
        // The kernel reports USER_HZ, which is 100 on every Linux ABI.
        let tick = 10_000_000;
        if let (Some(u), Some(s)) = (stat_value(&stat, "user"), stat_value(&stat, "system")) {
            return Some((u * tick, s * tick));
        }
        let stat = d.join("cpu.stat");
        let u = stat_value(&stat, "user_usec")?;
        let s = stat_value(&stat, "system_usec")?;
        return Some((u * 1000, s * 1000));
    }
    None
}

/// The memory figures cAdvisor exports, in bytes (`limit` as the cgroup has it).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MemoryDetail {
    pub usage: u64,
    pub working_set: u64,
    pub rss: u64,
    pub cache: u64,
    pub max_usage: Option<u64>,
    pub failcnt: Option<u64>,
    pub limit: Option<u64>,
}

pub fn memory_detail(cgroups_path: &str) -> Option<MemoryDetail> {
    let (working_set, usage, rss) = memory(cgroups_path)?;
    let d = controller_dir("memory", cgroups_path)?;
    let stat = d.join("memory.stat");
    let v1 = d.join("memory.usage_in_bytes").exists();
    Some(if v1 {
        MemoryDetail {
            usage,
            working_set,
            rss,
            cache: stat_value(&stat, "total_cache").unwrap_or(0),
            max_usage: read_u64(&d.join("memory.max_usage_in_bytes")),
            failcnt: read_u64(&d.join("memory.failcnt")),
            limit: read_u64(&d.join("memory.limit_in_bytes")),
        }
    } else {
        MemoryDetail {
            usage,
            working_set,
            rss,
            cache: stat_value(&stat, "file").unwrap_or(0),
            max_usage: read_u64(&d.join("memory.peak")),
            failcnt: stat_value(&d.join("memory.events"), "max"),
            // "max" (no limit) does not parse: no limit, as cAdvisor's 0.
            limit: Some(read_u64(&d.join("memory.max")).unwrap_or(0)),
        }
    })
}

/// OOM kills in the cgroup (v1 memory.oom_control's `oom_kill`, v2 memory.events).
pub fn oom_kills(cgroups_path: &str) -> Option<u64> {
    let d = controller_dir("memory", cgroups_path)?;
    stat_value(&d.join("memory.oom_control"), "oom_kill")
        .or_else(|| stat_value(&d.join("memory.events"), "oom_kill"))
}

/// (shares, quota µs, period µs) of the cpu controller; quota `None` when unlimited.
pub fn cpu_spec(cgroups_path: &str) -> Option<(u64, Option<u64>, u64)> {
    let d = controller_dir("cpu", cgroups_path)?;
    let shares = read_u64(&d.join("cpu.shares"))?;
    let period = read_u64(&d.join("cpu.cfs_period_us"))?;
    let quota = std::fs::read_to_string(d.join("cpu.cfs_quota_us"))
        .ok()
        .and_then(|q| q.trim().parse::<i64>().ok())
        .filter(|q| *q > 0)
        .map(|q| q as u64);
    Some((shares, quota, period))
}

/// Tasks in the cgroup (pids.current).
pub fn pids(cgroups_path: &str) -> Option<u64> {
    let d = controller_dir("pids", cgroups_path)?;
    read_u64(&d.join("pids.current"))
}

/// One block device's I/O done by a cgroup's tasks, as cAdvisor's `container_fs_{reads,writes}*`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BlockIo {
    /// The device node (`/dev/vda`), or `major:minor` when sysfs does not name it.
    pub device: String,
    pub read_bytes: u64,
    pub write_bytes: u64,
    pub reads: u64,
    pub writes: u64,
}

/// Block I/O per device, sorted by device: v1 blkio's throttle counters (recursive, so a pod's
/// cgroup includes its containers'; they count every bio, as cAdvisor reads them), v2 io.stat.
pub fn block_io(cgroups_path: &str) -> Option<Vec<BlockIo>> {
    let d = controller_dir("blkio", cgroups_path)?;
    let bytes = d.join("blkio.throttle.io_service_bytes_recursive");
    let mut by_device = if bytes.exists() {
        parse_blkio_v1(
            &std::fs::read_to_string(&bytes).ok()?,
            &std::fs::read_to_string(d.join("blkio.throttle.io_serviced_recursive")).ok()?,
        )
    } else {
        parse_io_stat(&std::fs::read_to_string(d.join("io.stat")).ok()?)
    };
    for b in &mut by_device {
        b.device = device_name(&b.device);
    }
    by_device.sort_by(|a, b| a.device.cmp(&b.device));
    Some(by_device)
}

/// `/dev/<DEVNAME>` of a `major:minor` from sysfs, else the numbers as given.
fn device_name(major_minor: &str) -> String {
    std::fs::read_to_string(Path::new("/sys/dev/block").join(major_minor).join("uevent"))
        .ok()
        .and_then(|u| {
            u.lines()
                .find_map(|l| l.strip_prefix("DEVNAME=").map(|n| format!("/dev/{n}")))
        })
        .unwrap_or_else(|| major_minor.to_string())
}

/// Lines `M:m Read|Write|... N` of io_service_bytes and io_serviced (the `Total` line skipped).
fn parse_blkio_v1(bytes: &str, serviced: &str) -> Vec<BlockIo> {
    let mut out: Vec<BlockIo> = Vec::new();
    for (text, is_bytes) in [(bytes, true), (serviced, false)] {
        for l in text.lines() {
            let mut f = l.split_whitespace();
            let (Some(dev), Some(op), Some(v)) = (f.next(), f.next(), f.next()) else {
                continue;
            };
            let Ok(v) = v.parse::<u64>() else { continue };
            if !dev.contains(':') {
                continue;
            }
            let i = match out.iter().position(|b| b.device == dev) {
                Some(i) => i,
                None => {
                    out.push(BlockIo {
                        device: dev.to_string(),
                        ..Default::default()
                    });
                    out.len() - 1
                }
            };
            let b = &mut out[i];
            match (op, is_bytes) {
                ("Read", true) => b.read_bytes = v,
                ("Write", true) => b.write_bytes = v,
                ("Read", false) => b.reads = v,
                ("Write", false) => b.writes = v,
                _ => {}
            }
        }
    }
    out
}

/// Lines `M:m rbytes=N wbytes=N rios=N wios=N ...` of v2 io.stat.
fn parse_io_stat(text: &str) -> Vec<BlockIo> {
    text.lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let mut b = BlockIo {
                device: f.next()?.to_string(),
                ..Default::default()
            };
            for kv in f {
                let (k, v) = kv.split_once('=')?;
                let v = v.parse().ok()?;
                match k {
                    "rbytes" => b.read_bytes = v,
                    "wbytes" => b.write_bytes = v,
                    "rios" => b.reads = v,
                    "wios" => b.writes = v,
                    _ => {}
                }
            }
            Some(b)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blkio_v1_throttle_counters_parse_per_device() {
        let bytes = "254:0 Read 4096\n254:0 Write 1048576\n254:0 Sync 1052672\n254:0 Async 0\n\
                     254:0 Discard 0\n254:0 Total 1052672\n7:1 Read 512\nTotal 1053184\n";
        let serviced = "254:0 Read 1\n254:0 Write 256\n254:0 Total 257\n7:1 Read 1\nTotal 258\n";
        assert_eq!(
            parse_blkio_v1(bytes, serviced),
            vec![
                BlockIo {
                    device: "254:0".into(),
                    read_bytes: 4096,
                    write_bytes: 1 << 20,
                    reads: 1,
                    writes: 256
                },
                BlockIo {
                    device: "7:1".into(),
                    read_bytes: 512,
                    write_bytes: 0,
                    reads: 1,
                    writes: 0
                },
            ]
        );
        assert!(parse_blkio_v1("Total 0\n", "Total 0\n").is_empty());
    }

    #[test]
    fn io_stat_v2_parses_per_device() {
        let s = "254:0 rbytes=8192 wbytes=65536 rios=2 wios=16 dbytes=0 dios=0\n";
        assert_eq!(
            parse_io_stat(s),
            vec![BlockIo {
                device: "254:0".into(),
                read_bytes: 8192,
                write_bytes: 65536,
                reads: 2,
                writes: 16
            }]
        );
    }
}
