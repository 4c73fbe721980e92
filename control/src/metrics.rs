//! Prometheus text metrics: request counts and latency histograms by verb, resource and code.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

const BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

#[derive(Debug, Default)]
struct Series {
    count: u64,
    sum: f64,
    buckets: [u64; BUCKETS.len()],
}

/// Request metrics, shared by all connections.
#[derive(Debug, Default)]
pub struct Metrics {
    series: Mutex<BTreeMap<(String, String, u16), Series>>,
}

impl Metrics {
    pub fn observe(&self, verb: &str, resource: &str, code: u16, took: Duration) {
        let Ok(mut map) = self.series.lock() else {
            return;
        };
        let s = map
            .entry((verb.to_string(), resource.to_string(), code))
            .or_default();
        let secs = took.as_secs_f64();
        s.count += 1;
        s.sum += secs;
        for (i, b) in BUCKETS.iter().enumerate() {
            if secs <= *b {
                s.buckets[i] += 1;
            }
        }
    }

    pub fn render(&self) -> String {
        let Ok(map) = self.series.lock() else {
            return String::new();
        };
        let mut out = String::from(
            "# HELP apiserver_request_total Counter of apiserver requests broken out by verb, resource and HTTP response code.\n# TYPE apiserver_request_total counter\n",
        );
        for ((verb, resource, code), s) in map.iter() {
            out.push_str(&format!("apiserver_request_total{{verb=\"{verb}\",resource=\"{resource}\",code=\"{code}\"}} {}\n", s.count));
        }
        out.push_str("# HELP apiserver_request_duration_seconds Response latency distribution in seconds for each verb and resource.\n# TYPE apiserver_request_duration_seconds histogram\n");
        let mut by_vr: BTreeMap<(String, String), Series> = BTreeMap::new();
        for ((verb, resource, _), s) in map.iter() {
            let agg = by_vr.entry((verb.clone(), resource.clone())).or_default();
            agg.count += s.count;
            agg.sum += s.sum;
            for i in 0..BUCKETS.len() {
                agg.buckets[i] += s.buckets[i];
            }
        }
        for ((verb, resource), s) in by_vr {
            let l = format!("verb=\"{verb}\",resource=\"{resource}\"");
            for (i, b) in BUCKETS.iter().enumerate() {
                out.push_str(&format!(
                    "apiserver_request_duration_seconds_bucket{{{l},le=\"{b}\"}} {}\n",
                    s.buckets[i]
                ));
            }
            out.push_str(&format!(
                "apiserver_request_duration_seconds_bucket{{{l},le=\"+Inf\"}} {}\n",
                s.count
            ));
            out.push_str(&format!(
                "apiserver_request_duration_seconds_sum{{{l}}} {}\n",
                s.sum
            ));
            out.push_str(&format!(
                "apiserver_request_duration_seconds_count{{{l}}} {}\n",
                s.count
            ));
        }
        out
    }
}
