//! `events`: stats in runc's event shape (`{"type":"stats","id":..,"data":{..}}`), once with
//! --stats, otherwise every --interval plus `oom` events until the container stops.

use std::time::Duration;

use libcgroups::common::CgroupManager;
use libcgroups::stats::Stats;
use libcontainer::container::ContainerStatus;
use serde_json::json;

use crate::cli::{EventsArgs, Global};
use crate::container::Handle;
use crate::error::{Result, RuntimeError};

fn parse_interval(s: &str) -> Result<Duration> {
    let bad = || RuntimeError::Usage(format!("--interval {s:?}: want e.g. 5s, 500ms, 1m"));
    let (num, unit) = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .map(|i| s.split_at(i))
        .unwrap_or((s, "s"));
    let n: f64 = num.parse().map_err(|_| bad())?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" | "" => n,
        "m" => n * 60.0,
        _ => return Err(bad()),
    };
    if secs <= 0.0 {
        return Err(bad());
    }
    Ok(Duration::from_secs_f64(secs))
}

/// libcgroups' stats in runc's `types.Stats` field names.
pub fn runc_stats(s: &Stats) -> serde_json::Value {
    let mem = |d: &libcgroups::stats::MemoryData| json!({"usage": d.usage, "max": d.max_usage, "failcnt": d.fail_count, "limit": d.limit});
    let blk = |v: &Vec<libcgroups::stats::BlkioDeviceStat>| {
        v.iter()
            .map(|e| json!({"major": e.major, "minor": e.minor, "op": e.op_type.clone().unwrap_or_default(), "value": e.value}))
            .collect::<Vec<_>>()
    };
    json!({
        "cpu": {
            "usage": {
                "total": s.cpu.usage.usage_total,
                "percpu": s.cpu.usage.per_core_usage_total,
                "kernel": s.cpu.usage.usage_kernel,
                "user": s.cpu.usage.usage_user,
            },
            "throttling": {
                "periods": s.cpu.throttling.periods,
                "throttledPeriods": s.cpu.throttling.throttled_periods,
                "throttledTime": s.cpu.throttling.throttled_time,
            }
        },
        "memory": {
            "cache": s.memory.cache,
            "usage": mem(&s.memory.memory),
            "swap": mem(&s.memory.memswap),
            "kernel": mem(&s.memory.kernel),
            "kernelTCP": mem(&s.memory.kernel_tcp),
            "raw": s.memory.stats,
        },
        "pids": {"current": s.pids.current, "limit": s.pids.limit},
        "blkio": {
            "ioServiceBytesRecursive": blk(&s.blkio.service_bytes),
            "ioServicedRecursive": blk(&s.blkio.serviced),
        },
        "hugetlb": {},
    })
}

pub fn run(g: &Global, a: EventsArgs) -> Result<i32> {
    let interval = parse_interval(&a.interval)?;
    let h = Handle::load(&g.root, &a.id)?;
    h.require(
        "get events of",
        &[
            ContainerStatus::Created,
            ContainerStatus::Running,
            ContainerStatus::Paused,
        ],
    )?;
    let cm = h.cgroup_manager()?;
    let emit = |cm: &libcgroups::common::AnyCgroupManager| -> Result<()> {
        let stats = cm
            .stats()
            .map_err(|e| h.cgroup_err(format!("stats: {e}")))?;
        println!(
            "{}",
            json!({"type": "stats", "id": a.id, "data": runc_stats(&stats)})
        );
        Ok(())
    };
    if a.stats {
        emit(&cm)?;
        return Ok(0);
    }
    let mut last_oom = oom_kills(&h);
    loop {
        emit(&cm)?;
        let now = oom_kills(&h);
        if now > last_oom {
            println!("{}", json!({"type": "oom", "id": a.id}));
        }
        last_oom = now;
        std::thread::sleep(interval);
        match Handle::load(&g.root, &a.id) {
            Ok(h2) if h2.status() != ContainerStatus::Stopped => {}
            _ => return Ok(0),
        }
    }
}

/// The v1 memory cgroup's oom_kill counter.
fn oom_kills(h: &Handle) -> u64 {
    let Ok(cfg) = h.c.spec() else { return 0 };
    let rel = cfg
        .cgroup_path
        .strip_prefix("/")
        .unwrap_or(&cfg.cgroup_path)
        .to_path_buf();
    let path = std::path::Path::new("/sys/fs/cgroup/memory")
        .join(rel)
        .join("memory.oom_control");
    std::fs::read_to_string(path)
        .ok()
        .and_then(|t| {
            t.lines().find_map(|l| {
                l.strip_prefix("oom_kill ")
                    .and_then(|v| v.trim().parse().ok())
            })
        })
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::parse_interval;
    use std::time::Duration;

    #[test]
    fn intervals() {
        assert_eq!(parse_interval("5s").unwrap(), Duration::from_secs(5));
        assert_eq!(parse_interval("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_interval("2").unwrap(), Duration::from_secs(2));
        assert!(parse_interval("x").is_err());
        assert!(parse_interval("0s").is_err());
    }
}
