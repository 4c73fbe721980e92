//! RPC counts and latencies for `/metrics` (Prometheus text format).

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

/// Latency bucket bounds in seconds.
const BUCKETS: [f64; 10] = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0];

#[derive(Debug, Default, Clone)]
struct Series {
    ok: u64,
    failed: u64,
    sum: f64,
    buckets: [u64; BUCKETS.len()],
}

#[derive(Debug, Default)]
pub struct Metrics {
    rpcs: Mutex<BTreeMap<&'static str, Series>>,
}

impl Metrics {
    pub fn observe(&self, rpc: &'static str, ok: bool, took: Duration) {
        let mut m = self.rpcs.lock().expect("metrics");
        let s = m.entry(rpc).or_default();
        if ok {
            s.ok += 1;
        } else {
            s.failed += 1;
        }
        let secs = took.as_secs_f64();
        s.sum += secs;
        for (i, b) in BUCKETS.iter().enumerate() {
            if secs <= *b {
                s.buckets[i] += 1;
            }
        }
    }

    /// The text exposition, with the pod and container counts the caller knows.
    pub fn render(&self, pods: usize, containers: usize) -> String {
        let m = self.rpcs.lock().expect("metrics").clone();
        let mut out = String::new();
        out.push_str("# HELP pea_shim_rpc_total CRI calls by method and outcome.\n");
        out.push_str("# TYPE pea_shim_rpc_total counter\n");
        for (rpc, s) in &m {
            out.push_str(&format!(
                "pea_shim_rpc_total{{method=\"{rpc}\",code=\"ok\"}} {}\n",
                s.ok
            ));
            out.push_str(&format!(
                "pea_shim_rpc_total{{method=\"{rpc}\",code=\"error\"}} {}\n",
                s.failed
            ));
        }
        out.push_str("# HELP pea_shim_rpc_duration_seconds CRI call latency.\n");
        out.push_str("# TYPE pea_shim_rpc_duration_seconds histogram\n");
        for (rpc, s) in &m {
            for (i, b) in BUCKETS.iter().enumerate() {
                out.push_str(&format!(
                    "pea_shim_rpc_duration_seconds_bucket{{method=\"{rpc}\",le=\"{b}\"}} {}\n",
                    s.buckets[i]
                ));
            }
            let n = s.ok + s.failed;
            out.push_str(&format!(
                "pea_shim_rpc_duration_seconds_bucket{{method=\"{rpc}\",le=\"+Inf\"}} {n}\n"
            ));
            out.push_str(&format!(
                "pea_shim_rpc_duration_seconds_sum{{method=\"{rpc}\"}} {}\n",
                s.sum
            ));
            out.push_str(&format!(
                "pea_shim_rpc_duration_seconds_count{{method=\"{rpc}\"}} {n}\n"
            ));
        }
        out.push_str("# HELP pea_shim_pods Pod sandboxes known to the shim.\n");
        out.push_str(&format!(
            "# TYPE pea_shim_pods gauge\npea_shim_pods {pods}\n"
        ));
        out.push_str("# HELP pea_shim_containers Containers known to the shim.\n");
        out.push_str(&format!(
            "# TYPE pea_shim_containers gauge\npea_shim_containers {containers}\n"
        ));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_cumulative() {
        let m = Metrics::default();
        m.observe("Version", true, Duration::from_millis(3));
        m.observe("Version", false, Duration::from_millis(300));
        let t = m.render(1, 2);
        assert!(t.contains("pea_shim_rpc_total{method=\"Version\",code=\"ok\"} 1"));
        assert!(t.contains("le=\"0.005\"} 1\n"));
        assert!(t.contains("le=\"0.5\"} 2\n"));
        assert!(t.contains("le=\"+Inf\"} 2\n"));
        assert!(t.contains("pea_shim_containers 2"));
    }
}
