//! The metrics ListMetricDescriptors describes and ListPodSandboxMetrics reports: cAdvisor's
//! names, help texts and labels (what the kubelet's `/metrics/cadvisor` shows, and what it
//! serves from CRI with the PodAndContainerStatsFromCRI feature), read from the cgroup files
//! the stats RPCs read ([`crate::stats`]) and the pod's network namespace.
//!
//! Labels, in the order of every descriptor's `label_keys` (sorted): `container` (the CRI
//! container name; empty for the pod itself), `id` (the cgroup path), `image` (the image as
//! the container asked for it), `name` (the container or sandbox ID), `namespace` and `pod`
//! (the pod's); network metrics add `interface`, filesystem ones `device` (the writable
//! layer's directory for usage and inodes, the block device for I/O). Values are CRI's
//! `UInt64Value`: seconds are whole seconds (the kubelet turns the value into a float as it
//! is), so sub-second CPU time is dropped.
//! Metrics whose source file this host lacks are left out, never sent as zero.
//!
//! Block I/O (`container_fs_{reads,writes}{_bytes,}_total`) comes from cgroup v1's
//! `blkio.throttle.io_service{_bytes,d}_recursive` (v2: `io.stat`), one series per device with
//! I/O. On this kernel (6.18) v1 keeps those counters only once blk-throttle is active on the
//! device's queue (any cgroup has set a limit on it since boot); before that every file reads
//! `Total 0`, no device appears and no series is sent.

use k8s_cri::v1 as cri;

use super::image_fs_info::usage;
use super::pod_sandbox_stats::net_dev_counters;
use crate::records::{ContainerRecord, SandboxRecord};
use crate::{stats, Shim};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Extra {
    None,
    Interface,
    Device,
}

struct Desc {
    name: &'static str,
    help: &'static str,
    counter: bool,
    extra: Extra,
}

const fn d(name: &'static str, help: &'static str, counter: bool, extra: Extra) -> Desc {
    Desc {
        name,
        help,
        counter,
        extra,
    }
}

/// Every metric this runtime reports.
const DESCRIPTORS: &[Desc] = &[
    d(
        "container_cpu_usage_seconds_total",
        "Cumulative cpu time consumed in seconds.",
        true,
        Extra::None,
    ),
    d(
        "container_cpu_user_seconds_total",
        "Cumulative user cpu time consumed in seconds.",
        true,
        Extra::None,
    ),
    d(
        "container_cpu_system_seconds_total",
        "Cumulative system cpu time consumed in seconds.",
        true,
        Extra::None,
    ),
    d(
        "container_memory_usage_bytes",
        "Current memory usage in bytes, including all memory regardless of when it was accessed",
        false,
        Extra::None,
    ),
    d(
        "container_memory_working_set_bytes",
        "Current working set in bytes.",
        false,
        Extra::None,
    ),
    d(
        "container_memory_rss",
        "Size of RSS in bytes.",
        false,
        Extra::None,
    ),
    d(
        "container_memory_cache",
        "Number of bytes of page cache memory.",
        false,
        Extra::None,
    ),
    d(
        "container_memory_max_usage_bytes",
        "Maximum memory usage recorded in bytes",
        false,
        Extra::None,
    ),
    d(
        "container_memory_failcnt",
        "Number of memory usage hits limits",
        true,
        Extra::None,
    ),
    d(
        "container_oom_events_total",
        "Count of out of memory events observed for the container",
        true,
        Extra::None,
    ),
    d(
        "container_spec_memory_limit_bytes",
        "Memory limit for the container.",
        false,
        Extra::None,
    ),
    d(
        "container_spec_cpu_shares",
        "CPU share of the container.",
        false,
        Extra::None,
    ),
    d(
        "container_spec_cpu_quota",
        "CPU quota of the container.",
        false,
        Extra::None,
    ),
    d(
        "container_spec_cpu_period",
        "CPU period of the container.",
        false,
        Extra::None,
    ),
    d(
        "container_processes",
        "Number of processes running inside the container.",
        false,
        Extra::None,
    ),
    d(
        "container_start_time_seconds",
        "Start time of the container since unix epoch in seconds.",
        false,
        Extra::None,
    ),
    d(
        "container_fs_usage_bytes",
        "Number of bytes that are consumed by the container on this filesystem.",
        false,
        Extra::Device,
    ),
    d(
        "container_fs_inodes_total",
        "Number of Inodes",
        false,
        Extra::Device,
    ),
    d(
        "container_fs_reads_bytes_total",
        "Cumulative count of bytes read",
        true,
        Extra::Device,
    ),
    d(
        "container_fs_writes_bytes_total",
        "Cumulative count of bytes written",
        true,
        Extra::Device,
    ),
    d(
        "container_fs_reads_total",
        "Cumulative count of reads completed",
        true,
        Extra::Device,
    ),
    d(
        "container_fs_writes_total",
        "Cumulative count of writes completed",
        true,
        Extra::Device,
    ),
    d(
        "container_network_receive_bytes_total",
        "Cumulative count of bytes received",
        true,
        Extra::Interface,
    ),
    d(
        "container_network_receive_packets_total",
        "Cumulative count of packets received",
        true,
        Extra::Interface,
    ),
    d(
        "container_network_receive_errors_total",
        "Cumulative count of errors encountered while receiving",
        true,
        Extra::Interface,
    ),
    d(
        "container_network_receive_packets_dropped_total",
        "Cumulative count of packets dropped while receiving",
        true,
        Extra::Interface,
    ),
    d(
        "container_network_transmit_bytes_total",
        "Cumulative count of bytes transmitted",
        true,
        Extra::Interface,
    ),
    d(
        "container_network_transmit_packets_total",
        "Cumulative count of packets transmitted",
        true,
        Extra::Interface,
    ),
    d(
        "container_network_transmit_errors_total",
        "Cumulative count of errors encountered while transmitting",
        true,
        Extra::Interface,
    ),
    d(
        "container_network_transmit_packets_dropped_total",
        "Cumulative count of packets dropped while transmitting",
        true,
        Extra::Interface,
    ),
];

/// The label keys of a descriptor with `extra` (sorted, as the values are).
fn label_keys(extra: Extra) -> Vec<String> {
    let mut keys = vec!["container", "id", "image", "name", "namespace", "pod"];
    match extra {
        Extra::None => {}
        Extra::Interface => keys.insert(3, "interface"),
        Extra::Device => keys.insert(1, "device"),
    }
    keys.into_iter().map(String::from).collect()
}

pub fn descriptors() -> Vec<cri::MetricDescriptor> {
    DESCRIPTORS
        .iter()
        .map(|d| cri::MetricDescriptor {
            name: d.name.into(),
            help: d.help.into(),
            label_keys: label_keys(d.extra),
        })
        .collect()
}

/// The base label values of one cgroup (a container, or the pod with `container` empty).
struct Labels {
    container: String,
    id: String,
    image: String,
    name: String,
    namespace: String,
    pod: String,
}

impl Labels {
    fn values(&self, extra: Option<(Extra, &str)>) -> Vec<String> {
        let mut v = vec![
            self.container.clone(),
            self.id.clone(),
            self.image.clone(),
            self.name.clone(),
            self.namespace.clone(),
            self.pod.clone(),
        ];
        match extra {
            Some((Extra::Interface, i)) => v.insert(3, i.into()),
            Some((Extra::Device, dev)) => v.insert(1, dev.into()),
            _ => {}
        }
        v
    }
}

/// Collects metrics for one label set.
struct Sink<'a> {
    labels: &'a Labels,
    out: Vec<cri::Metric>,
}

impl Sink<'_> {
    fn put(&mut self, name: &'static str, extra: Option<(Extra, &str)>, value: Option<u64>) {
        let Some(value) = value else { return };
        let desc = DESCRIPTORS
            .iter()
            .find(|d| d.name == name)
            .expect("every metric reported is described");
        debug_assert_eq!(desc.extra, extra.map_or(Extra::None, |e| e.0));
        self.out.push(cri::Metric {
            name: name.into(),
            // Gathered live.
            timestamp: 0,
            metric_type: if desc.counter {
                cri::MetricType::Counter
            } else {
                cri::MetricType::Gauge
            } as i32,
            label_values: self.labels.values(extra),
            value: Some(cri::UInt64Value { value }),
        });
    }

    /// CPU, memory and task figures of `cgroup`.
    fn cgroup(&mut self, cgroup: &str) {
        const NS: u64 = 1_000_000_000;
        self.put(
            "container_cpu_usage_seconds_total",
            None,
            stats::cpu_usage_ns(cgroup).map(|n| n / NS),
        );
        let user_system = stats::cpu_user_system_ns(cgroup);
        self.put(
            "container_cpu_user_seconds_total",
            None,
            user_system.map(|(u, _)| u / NS),
        );
        self.put(
            "container_cpu_system_seconds_total",
            None,
            user_system.map(|(_, s)| s / NS),
        );
        if let Some(m) = stats::memory_detail(cgroup) {
            self.put("container_memory_usage_bytes", None, Some(m.usage));
            self.put(
                "container_memory_working_set_bytes",
                None,
                Some(m.working_set),
            );
            self.put("container_memory_rss", None, Some(m.rss));
            self.put("container_memory_cache", None, Some(m.cache));
            self.put("container_memory_max_usage_bytes", None, m.max_usage);
            self.put("container_memory_failcnt", None, m.failcnt);
            self.put("container_spec_memory_limit_bytes", None, m.limit);
        }
        self.put("container_oom_events_total", None, stats::oom_kills(cgroup));
        if let Some((shares, quota, period)) = stats::cpu_spec(cgroup) {
            self.put("container_spec_cpu_shares", None, Some(shares));
            self.put("container_spec_cpu_quota", None, quota);
            self.put("container_spec_cpu_period", None, Some(period));
        }
        self.put("container_processes", None, stats::pids(cgroup));
        for b in stats::block_io(cgroup).unwrap_or_default() {
            let dev = Some((Extra::Device, b.device.as_str()));
            self.put("container_fs_reads_bytes_total", dev, Some(b.read_bytes));
            self.put("container_fs_writes_bytes_total", dev, Some(b.write_bytes));
            self.put("container_fs_reads_total", dev, Some(b.reads));
            self.put("container_fs_writes_total", dev, Some(b.writes));
        }
    }
}

impl Shim {
    /// One container's metrics (it runs: cAdvisor reports live cgroups only).
    fn container_metrics(&self, s: &SandboxRecord, c: &ContainerRecord) -> cri::ContainerMetrics {
        let meta = s.config.metadata.clone().unwrap_or_default();
        let cgroup = c.cgroups_path();
        let labels = Labels {
            container: c
                .config
                .metadata
                .as_ref()
                .map(|m| m.name.clone())
                .unwrap_or_default(),
            id: format!("/{}", cgroup.trim_start_matches('/')),
            image: c.image_ref.clone(),
            name: c.id.clone(),
            namespace: meta.namespace,
            pod: meta.name,
        };
        let mut sink = Sink {
            labels: &labels,
            out: Vec::new(),
        };
        sink.cgroup(&cgroup);
        sink.put(
            "container_start_time_seconds",
            None,
            u64::try_from(c.started_at_ns / 1_000_000_000).ok(),
        );
        let upper = self.cfg.container_layer_dir(&c.id).join("upper");
        let (bytes, inodes) = usage(&upper);
        let device = upper.display().to_string();
        sink.put(
            "container_fs_usage_bytes",
            Some((Extra::Device, &device)),
            Some(bytes),
        );
        sink.put(
            "container_fs_inodes_total",
            Some((Extra::Device, &device)),
            Some(inodes),
        );
        cri::ContainerMetrics {
            container_id: c.id.clone(),
            metrics: sink.out,
        }
    }

    /// A pod's metrics: its cgroup parent's figures and the network counters of its network
    /// namespace (as cAdvisor reports the pod cgroup), and each running container's.
    pub fn pod_sandbox_metrics(&self, s: &SandboxRecord) -> cri::PodSandboxMetrics {
        let meta = s.config.metadata.clone().unwrap_or_default();
        let labels = Labels {
            container: String::new(),
            id: format!("/{}", s.cgroup_parent.trim_start_matches('/')),
            image: String::new(),
            name: s.id.clone(),
            namespace: meta.namespace,
            pod: meta.name,
        };
        let mut sink = Sink {
            labels: &labels,
            out: Vec::new(),
        };
        sink.cgroup(&s.cgroup_parent);
        // A host-network pod's counters would be the node's: cAdvisor leaves them to the node.
        if s.netns.is_some() {
            for (iface, f) in s.pause_pid.map(net_dev_counters).unwrap_or_default() {
                let i = Some((Extra::Interface, iface.as_str()));
                for (name, at) in [
                    ("container_network_receive_bytes_total", 0),
                    ("container_network_receive_packets_total", 1),
                    ("container_network_receive_errors_total", 2),
                    ("container_network_receive_packets_dropped_total", 3),
                    ("container_network_transmit_bytes_total", 8),
                    ("container_network_transmit_packets_total", 9),
                    ("container_network_transmit_errors_total", 10),
                    ("container_network_transmit_packets_dropped_total", 11),
                ] {
                    sink.put(name, i, Some(f[at]));
                }
            }
        }
        let container_metrics = self
            .containers_of(&s.id)
            .into_iter()
            .filter(|c| c.state == crate::records::ContainerState::Running)
            .map(|c| self.container_metrics(s, &c))
            .collect();
        cri::PodSandboxMetrics {
            pod_sandbox_id: s.id.clone(),
            metrics: sink.out,
            container_metrics,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptors_are_unique_with_sorted_label_keys() {
        let ds = descriptors();
        let mut names: Vec<&str> = ds.iter().map(|d| d.name.as_str()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), ds.len());
        for d in &ds {
            let mut sorted = d.label_keys.clone();
            sorted.sort();
            assert_eq!(sorted, d.label_keys, "{}", d.name);
        }
        let l = Labels {
            container: "c".into(),
            id: "/i".into(),
            image: "img".into(),
            name: "n".into(),
            namespace: "ns".into(),
            pod: "p".into(),
        };
        assert_eq!(l.values(Some((Extra::Interface, "eth0")))[3], "eth0");
        assert_eq!(l.values(Some((Extra::Device, "/d")))[1], "/d");
        assert_eq!(l.values(None).len(), 6);
    }
}
