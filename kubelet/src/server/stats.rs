//! `/stats/summary` (the kubelet's Summary API, what metrics-server and `kubectl top` read):
//! node CPU and memory from /proc, the root filesystem from statvfs, pods and containers from
//! CRI ListPodSandbox / ListContainers / ListContainerStats (ListPodSandboxStats when the
//! runtime has it, for pod-level numbers and the network).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use k8s_cri::v1 as cri;
use serde_json::{json, Value};

use super::cri_connect::CriHandle;
use super::ServerError;

/// USER_HZ: /proc/stat counts in 1/100 s on Linux.
const NANOS_PER_TICK: u64 = 10_000_000;

/// CPU usage as a counter, for a rate between two reads.
#[derive(Debug, Clone, Copy, Default)]
pub struct CpuSample {
    pub at_nanos: u64,
    pub usage_core_nanos: u64,
}

/// Node CPU and memory as the Summary API reports them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NodeUsage {
    pub cpu_usage_core_nanos: u64,
    pub cpu_usage_nano_cores: Option<u64>,
    pub memory_total: u64,
    pub memory_usage: u64,
    pub memory_working_set: u64,
    pub memory_rss: u64,
}

/// Parses /proc/stat's aggregate line into busy CPU time in nanoseconds.
pub fn cpu_busy_nanos(proc_stat: &str) -> Option<u64> {
    let line = proc_stat.lines().find(|l| l.starts_with("cpu "))?;
    let f: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal: idle and iowait are not usage.
    let busy = [0usize, 1, 2, 5, 6, 7]
        .iter()
        .filter_map(|i| f.get(*i))
        .sum::<u64>();
    Some(busy * NANOS_PER_TICK)
}

/// Parses /proc/meminfo (kB) into (total, usage, working set, rss) bytes: usage is what is not
/// free, the working set that minus inactive file pages (cAdvisor's definition).
pub fn memory_from_meminfo(meminfo: &str) -> Option<(u64, u64, u64, u64)> {
    let field = |name: &str| -> Option<u64> {
        meminfo
            .lines()
            .find(|l| l.split(':').next() == Some(name))?
            .split_whitespace()
            .nth(1)?
            .parse::<u64>()
            .ok()
            .map(|kb| kb * 1024)
    };
    let total = field("MemTotal")?;
    let free = field("MemFree")?;
    let inactive_file = field("Inactive(file)").unwrap_or(0);
    let usage = total.saturating_sub(free);
    let working_set = usage.saturating_sub(inactive_file);
    let rss = field("AnonPages").unwrap_or(0);
    Some((total, usage, working_set, rss))
}

fn now_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// Reads the node's usage; `last` keeps the previous CPU reading for usageNanoCores.
pub fn node_usage(last: &Mutex<Option<CpuSample>>) -> Result<NodeUsage, ServerError> {
    let read = |p: &str| {
        std::fs::read_to_string(p).map_err(|e| ServerError::Internal(format!("reading {p}: {e}")))
    };
    let cpu = cpu_busy_nanos(&read("/proc/stat")?)
        .ok_or_else(|| ServerError::Internal("/proc/stat has no cpu line".into()))?;
    let (total, usage, ws, rss) = memory_from_meminfo(&read("/proc/meminfo")?)
        .ok_or_else(|| ServerError::Internal("/proc/meminfo lacks MemTotal/MemFree".into()))?;
    let sample = CpuSample {
        at_nanos: now_nanos(),
        usage_core_nanos: cpu,
    };
    let rate = {
        let mut guard = last.lock().unwrap_or_else(|p| p.into_inner());
        let rate = guard.and_then(|prev| rate(prev, sample));
        *guard = Some(sample);
        rate
    };
    Ok(NodeUsage {
        cpu_usage_core_nanos: cpu,
        cpu_usage_nano_cores: rate,
        memory_total: total,
        memory_usage: usage,
        memory_working_set: ws,
        memory_rss: rss,
    })
}

/// Cores in use between two readings, in nanocores.
pub fn rate(prev: CpuSample, now: CpuSample) -> Option<u64> {
    let dt = now.at_nanos.checked_sub(prev.at_nanos).filter(|d| *d > 0)?;
    let used = now.usage_core_nanos.checked_sub(prev.usage_core_nanos)?;
    Some(((used as u128) * 1_000_000_000 / dt as u128) as u64)
}

fn rfc3339_nanos(nanos: i64) -> Value {
    if nanos <= 0 {
        return Value::Null;
    }
    let t = chrono::DateTime::from_timestamp(nanos / 1_000_000_000, (nanos % 1_000_000_000) as u32);
    // Milliseconds, not whole seconds: /metrics/resource derives its sample timestamps from
    // these, and a usage rate over a few seconds needs them (Go's RFC 3339 parsing of
    // metav1.Time accepts the fraction).
    t.map(|t| json!(t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)))
        .unwrap_or(Value::Null)
}

fn u64v(v: &Option<cri::UInt64Value>) -> Value {
    v.as_ref().map(|x| json!(x.value)).unwrap_or(Value::Null)
}

fn cpu_json(c: &Option<cri::CpuUsage>) -> Value {
    match c {
        Some(c) => json!({
            "time": rfc3339_nanos(c.timestamp),
            "usageNanoCores": u64v(&c.usage_nano_cores),
            "usageCoreNanoSeconds": u64v(&c.usage_core_nano_seconds),
        }),
        None => Value::Null,
    }
}

fn memory_json(m: &Option<cri::MemoryUsage>) -> Value {
    match m {
        Some(m) => json!({
            "time": rfc3339_nanos(m.timestamp),
            "availableBytes": u64v(&m.available_bytes),
            "usageBytes": u64v(&m.usage_bytes),
            "workingSetBytes": u64v(&m.working_set_bytes),
            "rssBytes": u64v(&m.rss_bytes),
            "pageFaults": u64v(&m.page_faults),
            "majorPageFaults": u64v(&m.major_page_faults),
        }),
        None => Value::Null,
    }
}

/// Drops nulls so absent numbers are absent, as Go's omitempty pointers are.
fn prune(v: Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.into_iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k, prune(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.into_iter().map(prune).collect()),
        v => v,
    }
}

fn sum_u64(values: impl Iterator<Item = Option<u64>>) -> Option<u64> {
    let mut any = false;
    let mut total = 0u64;
    for v in values.flatten() {
        any = true;
        total = total.saturating_add(v);
    }
    any.then_some(total)
}

/// Builds the Summary: node (named `node_name`) and every ready pod sandbox with its running
/// containers.
pub async fn summary(
    cri: &CriHandle,
    node_name: &str,
    last_cpu: &Mutex<Option<CpuSample>>,
    boot_time: Value,
) -> Result<Value, ServerError> {
    let node = node_usage(last_cpu)?;
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let mut rt = cri.runtime.clone();
    let sandboxes = rt
        .list_pod_sandbox(cri::ListPodSandboxRequest {
            filter: Some(cri::PodSandboxFilter {
                state: Some(cri::PodSandboxStateValue {
                    state: cri::PodSandboxState::SandboxReady as i32,
                }),
                ..Default::default()
            }),
        })
        .await
        .map_err(|s| ServerError::cri("ListPodSandbox", s))?
        .into_inner()
        .items;
    let containers = rt
        .list_containers(cri::ListContainersRequest {
            filter: Some(cri::ContainerFilter {
                state: Some(cri::ContainerStateValue {
                    state: cri::ContainerState::ContainerRunning as i32,
                }),
                ..Default::default()
            }),
        })
        .await
        .map_err(|s| ServerError::cri("ListContainers", s))?
        .into_inner()
        .containers;
    let stats: HashMap<String, cri::ContainerStats> = rt
        .list_container_stats(cri::ListContainerStatsRequest { filter: None })
        .await
        .map_err(|s| ServerError::cri("ListContainerStats", s))?
        .into_inner()
        .stats
        .into_iter()
        .filter_map(|s| Some((s.attributes.as_ref()?.id.clone(), s)))
        .collect();
    // Pod-level numbers and the network, where the runtime reports them.
    let pod_stats: HashMap<String, cri::PodSandboxStats> = match rt
        .list_pod_sandbox_stats(cri::ListPodSandboxStatsRequest { filter: None })
        .await
    {
        Ok(r) => r
            .into_inner()
            .stats
            .into_iter()
            .filter_map(|s| Some((s.attributes.as_ref()?.id.clone(), s)))
            .collect(),
        Err(s) => {
            tracing::debug!(error = %s.message(), "ListPodSandboxStats unavailable; summing containers");
            HashMap::new()
        }
    };
    let mut pods = Vec::new();
    for sb in &sandboxes {
        let Some(meta) = &sb.metadata else { continue };
        let mine: Vec<&cri::Container> = containers
            .iter()
            .filter(|c| c.pod_sandbox_id == sb.id)
            .collect();
        let mut ctrs = Vec::new();
        let (mut cpu_total, mut cpu_rate, mut mem_ws, mut mem_usage) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for c in &mine {
            let s = stats.get(&c.id);
            let cpu = s.and_then(|s| s.cpu);
            let mem = s.and_then(|s| s.memory);
            cpu_total.push(
                cpu.as_ref()
                    .and_then(|c| c.usage_core_nano_seconds.as_ref().map(|v| v.value)),
            );
            cpu_rate.push(
                cpu.as_ref()
                    .and_then(|c| c.usage_nano_cores.as_ref().map(|v| v.value)),
            );
            mem_ws.push(
                mem.as_ref()
                    .and_then(|m| m.working_set_bytes.as_ref().map(|v| v.value)),
            );
            mem_usage.push(
                mem.as_ref()
                    .and_then(|m| m.usage_bytes.as_ref().map(|v| v.value)),
            );
            let rootfs = s.and_then(|s| s.writable_layer.as_ref()).map(|w| {
                json!({"time": rfc3339_nanos(w.timestamp), "usedBytes": u64v(&w.used_bytes),
                    "inodesUsed": u64v(&w.inodes_used)})
            });
            ctrs.push(json!({
                "name": c.metadata.as_ref().map(|m| m.name.clone()).unwrap_or_default(),
                "startTime": rfc3339_nanos(c.created_at),
                "cpu": cpu_json(&cpu),
                "memory": memory_json(&mem),
                "rootfs": rootfs,
            }));
        }
        let linux = pod_stats.get(&sb.id).and_then(|p| p.linux.as_ref());
        let pod_cpu = match linux.and_then(|l| l.cpu) {
            Some(c) => cpu_json(&Some(c)),
            None => json!({"time": now, "usageNanoCores": sum_u64(cpu_rate.into_iter()),
                "usageCoreNanoSeconds": sum_u64(cpu_total.into_iter())}),
        };
        let pod_memory = match linux.and_then(|l| l.memory) {
            Some(m) => memory_json(&Some(m)),
            None => json!({"time": now, "workingSetBytes": sum_u64(mem_ws.into_iter()),
                "usageBytes": sum_u64(mem_usage.into_iter())}),
        };
        let network = linux.and_then(|l| l.network.as_ref()).map(|n| {
            let iface = |i: &cri::NetworkInterfaceUsage| {
                json!({"name": i.name, "rxBytes": u64v(&i.rx_bytes), "rxErrors": u64v(&i.rx_errors),
                    "txBytes": u64v(&i.tx_bytes), "txErrors": u64v(&i.tx_errors)})
            };
            let mut v = n.default_interface.as_ref().map(iface).unwrap_or(json!({}));
            v["time"] = rfc3339_nanos(n.timestamp);
            v["interfaces"] = json!(n.interfaces.iter().map(iface).collect::<Vec<_>>());
            v
        });
        let process = linux
            .and_then(|l| l.process.as_ref())
            .map(|p| json!({"process_count": u64v(&p.process_count)}));
        pods.push(json!({
            "podRef": {"name": meta.name, "namespace": meta.namespace, "uid": meta.uid},
            "startTime": rfc3339_nanos(sb.created_at),
            "containers": ctrs,
            "cpu": pod_cpu,
            "memory": pod_memory,
            "network": network,
            "process_stats": process,
        }));
    }
    let fs = nix::sys::statvfs::statvfs("/").ok().map(|s| {
        let frsize = s.fragment_size();
        json!({"time": now, "availableBytes": s.blocks_available() * frsize,
            "capacityBytes": s.blocks() * frsize,
            "usedBytes": (s.blocks() - s.blocks_free()) * frsize,
            "inodesFree": s.files_free(), "inodes": s.files(),
            "inodesUsed": s.files() - s.files_free()})
    });
    Ok(prune(json!({
        "node": {
            "nodeName": node_name,
            "startTime": boot_time,
            "cpu": {"time": now, "usageNanoCores": node.cpu_usage_nano_cores,
                "usageCoreNanoSeconds": node.cpu_usage_core_nanos},
            "memory": {"time": now,
                "availableBytes": node.memory_total.saturating_sub(node.memory_working_set),
                "usageBytes": node.memory_usage, "workingSetBytes": node.memory_working_set,
                "rssBytes": node.memory_rss},
            "fs": fs,
            "systemContainers": [],
        },
        "pods": pods,
    })))
}

/// The node's boot time from /proc/stat's `btime`, as the Summary's node startTime.
pub fn boot_time() -> Value {
    std::fs::read_to_string("/proc/stat")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("btime "))
                .and_then(|v| v.trim().parse::<i64>().ok())
        })
        .map(|secs| rfc3339_nanos(secs * 1_000_000_000))
        .unwrap_or(Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_files_parse_into_usage() {
        let stat = "cpu  100 5 50 1000 20 3 2 0 0 0\ncpu0 1 1 1 1 1 1 1 1 0 0\nbtime 1\n";
        assert_eq!(cpu_busy_nanos(stat), Some(160 * NANOS_PER_TICK));
        let meminfo = "MemTotal:       1000 kB\nMemFree:         200 kB\nMemAvailable:    500 kB\nInactive(file):  100 kB\nAnonPages:       300 kB\n";
        assert_eq!(
            memory_from_meminfo(meminfo),
            Some((1000 * 1024, 800 * 1024, 700 * 1024, 300 * 1024))
        );
        assert_eq!(memory_from_meminfo("MemFree: 1 kB\n"), None);
        let a = CpuSample {
            at_nanos: 1_000_000_000,
            usage_core_nanos: 0,
        };
        let b = CpuSample {
            at_nanos: 2_000_000_000,
            usage_core_nanos: 500_000_000,
        };
        assert_eq!(rate(a, b), Some(500_000_000));
        assert_eq!(rate(b, a), None);
    }

    #[test]
    fn the_node_reads_its_own_proc() {
        let last = Mutex::new(None);
        let first = node_usage(&last).unwrap();
        assert!(first.memory_total > 0 && first.cpu_usage_core_nanos > 0);
        assert!(first.cpu_usage_nano_cores.is_none());
        std::thread::sleep(std::time::Duration::from_millis(20));
        assert!(node_usage(&last).unwrap().cpu_usage_nano_cores.is_some());
    }
}
