//! The last two samples of every node and container, and the usage derived from them, as
//! metrics-server keeps them (`pkg/storage`): a new scrape moves the stored point to "previous"
//! only if it is newer; a container that restarted starts over; a container younger than one
//! resolution (but at least 10 s old) uses its start time as the previous point with zero CPU.
//! CPU usage is the cumulative counter's rate over the window between the two points; memory is
//! the newest working set.

use std::collections::HashMap;

use super::prom;

/// metrics-server's `freshContainerMinMetricsResolution`.
const FRESH_CONTAINER_MIN_MS: i64 = 10_000;

/// One reading of a node or container.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Point {
    /// When the container started (ms since the epoch); 0 when unknown.
    pub start_ms: i64,
    /// When the CPU counter was read (ms since the epoch).
    pub timestamp_ms: i64,
    /// Cumulative CPU time, core-nanoseconds.
    pub cpu_nanos: u64,
    /// Working set, bytes.
    pub memory_bytes: u64,
}

/// Usage over a window, as the metrics API reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    /// The newer point's time (ms since the epoch).
    pub timestamp_ms: i64,
    pub window_ms: i64,
    pub cpu_nanocores: u64,
    pub memory_bytes: u64,
}

/// What one kubelet reported.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NodeBatch {
    pub node: Option<Point>,
    /// (namespace, pod) → container → point.
    pub pods: HashMap<(String, String), HashMap<String, Point>>,
}

pub const SERIES: [&str; 5] = [
    "node_cpu_usage_seconds_total",
    "node_memory_working_set_bytes",
    "container_cpu_usage_seconds_total",
    "container_memory_working_set_bytes",
    "container_start_time_seconds",
];

/// Reads a kubelet's `/metrics/resource`. Like metrics-server's decoder, a node or container
/// point needs both a CPU and a memory value and a CPU timestamp, else it is left out.
pub fn decode(text: &str) -> Result<NodeBatch, prom::ParseError> {
    #[derive(Default)]
    struct Partial {
        cpu: Option<(u64, i64)>,
        mem: Option<u64>,
        start_ms: i64,
    }
    let seconds_to_nanos = |v: f64| (v * 1e9) as u64;
    let mut node = Partial::default();
    let mut containers: HashMap<(String, String, String), Partial> = HashMap::new();
    for s in prom::parse(text, &SERIES)? {
        if !s.value.is_finite() || s.value < 0.0 {
            continue;
        }
        match s.name.as_str() {
            "node_cpu_usage_seconds_total" => {
                if let Some(ts) = s.timestamp_ms {
                    node.cpu = Some((seconds_to_nanos(s.value), ts));
                }
            }
            "node_memory_working_set_bytes" => node.mem = Some(s.value as u64),
            name => {
                let key = (
                    s.label("namespace").unwrap_or("").to_string(),
                    s.label("pod").unwrap_or("").to_string(),
                    s.label("container").unwrap_or("").to_string(),
                );
                let p = containers.entry(key).or_default();
                match name {
                    "container_cpu_usage_seconds_total" => {
                        if let Some(ts) = s.timestamp_ms {
                            p.cpu = Some((seconds_to_nanos(s.value), ts));
                        }
                    }
                    "container_memory_working_set_bytes" => p.mem = Some(s.value as u64),
                    _ => p.start_ms = (s.value * 1000.0) as i64,
                }
            }
        }
    }
    let point = |p: &Partial| {
        let (cpu, ts) = p.cpu?;
        Some(Point {
            start_ms: p.start_ms,
            timestamp_ms: ts,
            cpu_nanos: cpu,
            memory_bytes: p.mem?,
        })
    };
    let mut out = NodeBatch {
        node: point(&node),
        pods: HashMap::new(),
    };
    for ((ns, pod, c), p) in containers {
        if let (Some(pt), false) = (point(&p), ns.is_empty() || pod.is_empty() || c.is_empty()) {
            out.pods.entry((ns, pod)).or_default().insert(c, pt);
        }
    }
    Ok(out)
}

/// metrics-server's `resourceUsage`: the rate between two points of one container or node.
pub fn usage(last: &Point, prev: &Point) -> Option<Usage> {
    if last.start_ms < prev.start_ms || last.cpu_nanos < prev.cpu_nanos {
        return None;
    }
    let window_ms = last.timestamp_ms - prev.timestamp_ms;
    if window_ms <= 0 {
        return None;
    }
    let rate = (last.cpu_nanos - prev.cpu_nanos) as f64 / (window_ms as f64 / 1000.0);
    Some(Usage {
        timestamp_ms: last.timestamp_ms,
        window_ms,
        cpu_nanocores: rate as u64,
        memory_bytes: last.memory_bytes,
    })
}

type PodKey = (String, String);

/// The stored points of every node and pod.
#[derive(Debug, Default)]
pub struct Storage {
    last_nodes: HashMap<String, Point>,
    prev_nodes: HashMap<String, Point>,
    last_pods: HashMap<PodKey, HashMap<String, Point>>,
    prev_pods: HashMap<PodKey, HashMap<String, Point>>,
}

impl Storage {
    /// Replaces the stored state with one scrape of every node (metrics-server's `Store`): a
    /// node or pod missing from it is forgotten.
    pub fn store(&mut self, batch: HashMap<String, NodeBatch>, resolution_ms: i64) {
        let mut last_nodes = HashMap::new();
        let mut prev_nodes = HashMap::new();
        let mut last_pods: HashMap<PodKey, HashMap<String, Point>> = HashMap::new();
        let mut prev_pods: HashMap<PodKey, HashMap<String, Point>> = HashMap::new();
        for (name, b) in batch {
            if let Some(new) = b.node {
                if let Some(old) = self.last_nodes.get(&name) {
                    if new.timestamp_ms > old.timestamp_ms {
                        prev_nodes.insert(name.clone(), *old);
                    } else if let Some(prev) = self.prev_nodes.get(&name) {
                        if prev.timestamp_ms < new.timestamp_ms {
                            prev_nodes.insert(name.clone(), *prev);
                        }
                    }
                }
                last_nodes.insert(name, new);
            }
            for (pod, containers) in b.pods {
                if last_pods.contains_key(&pod) {
                    continue; // a pod reported twice: keep the first, as metrics-server does
                }
                let mut prevs = HashMap::new();
                for (c, new) in &containers {
                    let age = new.timestamp_ms - new.start_ms;
                    if new.start_ms > 0
                        && new.start_ms < new.timestamp_ms
                        && age < resolution_ms
                        && age >= FRESH_CONTAINER_MIN_MS
                    {
                        let fresh = Point {
                            timestamp_ms: new.start_ms,
                            cpu_nanos: 0,
                            ..*new
                        };
                        prevs.insert(c.clone(), fresh);
                        continue;
                    }
                    let Some(old) = self.last_pods.get(&pod).and_then(|p| p.get(c)) else {
                        continue;
                    };
                    // A restart (start after the stored point) starts the container over.
                    if new.start_ms >= old.timestamp_ms && new.start_ms > 0 {
                        continue;
                    }
                    if new.timestamp_ms > old.timestamp_ms {
                        prevs.insert(c.clone(), *old);
                    } else if let Some(prev) = self.prev_pods.get(&pod).and_then(|p| p.get(c)) {
                        if prev.timestamp_ms < new.timestamp_ms {
                            prevs.insert(c.clone(), *prev);
                        }
                    }
                }
                if !prevs.is_empty() {
                    prev_pods.insert(pod.clone(), prevs);
                }
                last_pods.insert(pod, containers);
            }
        }
        *self = Self {
            last_nodes,
            prev_nodes,
            last_pods,
            prev_pods,
        };
    }

    pub fn node(&self, name: &str) -> Option<Usage> {
        usage(self.last_nodes.get(name)?, self.prev_nodes.get(name)?)
    }

    /// Per-container usage of a pod, sorted by container name, with the earliest timestamp's
    /// window; `None` unless every container has two points (metrics-server's rule).
    pub fn pod(&self, namespace: &str, name: &str) -> Option<(Usage, Vec<(String, Usage)>)> {
        let key = (namespace.to_string(), name.to_string());
        let last = self.last_pods.get(&key)?;
        let prev = self.prev_pods.get(&key)?;
        let mut out = Vec::new();
        let mut earliest: Option<Usage> = None;
        for (c, l) in last {
            let p = prev.get(c)?;
            let Some(u) = usage(l, p) else { continue };
            if earliest.is_none_or(|e| e.timestamp_ms > u.timestamp_ms) {
                earliest = Some(u);
            }
            out.push((c.clone(), u));
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Some((earliest?, out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scrape(t_ms: i64, node_cpu_s: f64, app_cpu_s: f64, start_s: f64) -> String {
        format!(
            "node_cpu_usage_seconds_total {node_cpu_s} {t_ms}\n\
             node_memory_working_set_bytes 2048 {t_ms}\n\
             container_cpu_usage_seconds_total{{container=\"app\",namespace=\"d\",pod=\"web\"}} {app_cpu_s} {t_ms}\n\
             container_memory_working_set_bytes{{container=\"app\",namespace=\"d\",pod=\"web\"}} 4096 {t_ms}\n\
             container_start_time_seconds{{container=\"app\",namespace=\"d\",pod=\"web\"}} {start_s} {t_ms}\n\
             container_cpu_usage_seconds_total{{container=\"nomem\",namespace=\"d\",pod=\"half\"}} 1 {t_ms}\n"
        )
    }

    fn batch(text: &str) -> HashMap<String, NodeBatch> {
        HashMap::from([("n1".to_string(), decode(text).unwrap())])
    }

    #[test]
    fn usage_is_the_rate_between_the_last_two_scrapes() {
        let mut s = Storage::default();
        s.store(batch(&scrape(1_000_000, 100.0, 10.0, 100.0)), 15_000);
        assert_eq!(s.node("n1"), None, "one sample is not enough");
        assert_eq!(s.pod("d", "web"), None);
        // 15 s later: the node used 3 core-seconds (200m), the container 7.5 (500m).
        s.store(batch(&scrape(1_015_000, 103.0, 17.5, 100.0)), 15_000);
        let n = s.node("n1").unwrap();
        assert_eq!(
            (n.cpu_nanocores, n.memory_bytes, n.window_ms),
            (200_000_000, 2048, 15_000)
        );
        let (pod, cs) = s.pod("d", "web").unwrap();
        assert_eq!(pod.timestamp_ms, 1_015_000);
        assert_eq!(
            cs,
            vec![(
                "app".to_string(),
                Usage {
                    timestamp_ms: 1_015_000,
                    window_ms: 15_000,
                    cpu_nanocores: 500_000_000,
                    memory_bytes: 4096
                }
            )]
        );
        assert_eq!(
            s.pod("d", "half"),
            None,
            "a container without memory is dropped"
        );
        // A scrape with the same timestamp keeps the previous point.
        s.store(batch(&scrape(1_015_000, 103.0, 17.5, 100.0)), 15_000);
        assert_eq!(s.node("n1").unwrap().cpu_nanocores, 200_000_000);
        // A node missing from a scrape is forgotten.
        s.store(HashMap::new(), 15_000);
        assert_eq!(s.node("n1"), None);
    }

    #[test]
    fn restarts_start_over_and_fresh_containers_count_from_their_start() {
        let mut s = Storage::default();
        s.store(batch(&scrape(1_000_000, 1.0, 10.0, 100.0)), 15_000);
        // Restarted at 1008 s (after the stored point, under 10 s ago): no previous point.
        s.store(batch(&scrape(1_015_000, 2.0, 1.0, 1008.0)), 60_000);
        assert_eq!(s.pod("d", "web"), None);
        // Restarted 10 s ago with a 60 s resolution: counted from its start (1 s of CPU in 10 s).
        let mut s = Storage::default();
        s.store(batch(&scrape(1_000_000, 1.0, 10.0, 100.0)), 60_000);
        s.store(batch(&scrape(1_015_000, 2.0, 1.0, 1005.0)), 60_000);
        assert_eq!(s.pod("d", "web").unwrap().0.cpu_nanocores, 100_000_000);
        // Younger than one resolution but 10 s old: the start is the previous point (0 CPU).
        let mut s = Storage::default();
        s.store(batch(&scrape(1_020_000, 1.0, 5.0, 1000.0)), 60_000);
        let (u, _) = s.pod("d", "web").unwrap();
        assert_eq!((u.window_ms, u.cpu_nanocores), (20_000, 250_000_000));
        // A decreasing counter yields nothing.
        assert_eq!(
            usage(
                &Point {
                    cpu_nanos: 1,
                    timestamp_ms: 2,
                    ..Default::default()
                },
                &Point {
                    cpu_nanos: 2,
                    timestamp_ms: 1,
                    ..Default::default()
                }
            ),
            None
        );
    }
}
