//! CPU and memory charts from the resource metrics API (`metrics.k8s.io/v1beta1`, which
//! pea-control serves from the kubelets' `/metrics/resource`). The API has only the latest
//! sample, so the dashboard keeps a short history per session (read as that user, so it never
//! shows more than they may read): a node or pod page appends a sample each time it renders
//! (the live stream re-renders those pages every [`SAMPLE_EVERY`]) and draws the history as
//! inline SVG sparklines.
//!
//! Bounds: [`MAX_SERIES`] objects per session (the least recently sampled dropped first),
//! [`MAX_SAMPLES`] samples each.

use std::collections::{HashMap, VecDeque};
use std::fmt::Write;
use std::sync::Mutex;
use std::time::Duration;

use serde_json::Value;

use crate::api::Api;
use crate::html::{esc, s, seg};

/// How often a live node or pod page takes a sample.
pub const SAMPLE_EVERY: Duration = Duration::from_secs(5);
pub const MAX_SERIES: usize = 64;
pub const MAX_SAMPLES: usize = 60;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// CPU in cores.
    pub cpu: f64,
    /// Working set in bytes.
    pub memory: f64,
}

#[derive(Debug, Default)]
struct Series {
    /// The metrics API's timestamp of the last sample (a repeat is not a new sample).
    last_ts: String,
    samples: VecDeque<Sample>,
    /// Order of last use, for dropping the oldest series.
    used: u64,
}

/// One session's sample history.
#[derive(Debug, Default)]
pub struct History {
    series: HashMap<String, Series>,
    clock: u64,
}

impl History {
    /// Adds a sample taken at `ts` (ignored when that timestamp was seen last) and returns
    /// the series.
    pub fn record(&mut self, key: &str, ts: &str, sample: Sample) -> Vec<Sample> {
        self.clock += 1;
        if !self.series.contains_key(key) && self.series.len() >= MAX_SERIES {
            if let Some(oldest) = self
                .series
                .iter()
                .min_by_key(|(_, s)| s.used)
                .map(|(k, _)| k.clone())
            {
                self.series.remove(&oldest);
            }
        }
        let s = self.series.entry(key.to_string()).or_default();
        s.used = self.clock;
        if s.last_ts != ts || s.samples.is_empty() {
            s.last_ts = ts.to_string();
            s.samples.push_back(sample);
            while s.samples.len() > MAX_SAMPLES {
                s.samples.pop_front();
            }
        }
        s.samples.iter().copied().collect()
    }
}

/// A Kubernetes quantity ("250m", "1", "123456n", "64Mi", "1G") as a number.
pub fn quantity(q: &str) -> Option<f64> {
    pea_quantity::as_f64(q).ok()
}

/// The usage in a NodeMetrics or PodMetrics object (a pod's containers summed).
pub fn usage(o: &Value) -> Option<Sample> {
    let one = |u: &Value| -> Option<Sample> {
        Some(Sample {
            cpu: quantity(u.get("cpu")?.as_str()?)?,
            memory: quantity(u.get("memory")?.as_str()?)?,
        })
    };
    if let Some(u) = o.get("usage") {
        return one(u);
    }
    let containers = o.get("containers")?.as_array()?;
    let mut total = Sample {
        cpu: 0.0,
        memory: 0.0,
    };
    for c in containers {
        let u = one(c.get("usage")?)?;
        total.cpu += u.cpu;
        total.memory += u.memory;
    }
    Some(total)
}

/// An inline SVG line of `values` scaled to their maximum (no script, no style attribute).
pub fn sparkline(values: &[f64], label: &str) -> String {
    const W: f64 = 240.0;
    const H: f64 = 40.0;
    let max = values.iter().copied().fold(0.0f64, f64::max);
    let max = if max > 0.0 { max * 1.1 } else { 1.0 };
    let step = if values.len() > 1 {
        W / (MAX_SAMPLES - 1) as f64
    } else {
        0.0
    };
    // Right-aligned: the newest sample at the right edge.
    let x0 = W - step * (values.len().saturating_sub(1)) as f64;
    let mut points = String::new();
    for (i, v) in values.iter().enumerate() {
        let _ = write!(
            points,
            "{:.1},{:.1} ",
            x0 + step * i as f64,
            H - 2.0 - (v / max) * (H - 4.0)
        );
    }
    format!(
        "<svg class=\"spark\" viewBox=\"0 0 240 40\" width=\"240\" height=\"40\" role=\"img\" aria-label=\"{}\" data-points=\"{}\"><line x1=\"0\" y1=\"38\" x2=\"240\" y2=\"38\"/><polyline points=\"{}\"/></svg>",
        esc(label),
        values.len(),
        points.trim_end()
    )
}

fn cpu_text(cores: f64) -> String {
    format!("{:.0}m", cores * 1000.0)
}

fn memory_text(bytes: f64) -> String {
    format!("{:.1}Mi", bytes / (1024.0 * 1024.0))
}

/// Every node's latest usage (`metrics.k8s.io` NodeMetrics list, read as the session's user),
/// by node name.
pub async fn node_usage(api: &Api) -> Result<HashMap<String, Sample>, crate::api::ApiError> {
    Ok(api
        .list("/apis/metrics.k8s.io/v1beta1/nodes")
        .await?
        .iter()
        .filter_map(|m| Some((s(m, "/metadata/name").to_string(), usage(m)?)))
        .collect())
}

/// A usage cell: `120m (3%)` of the node's allocatable `alloc` (a quantity); `cpu` picks the
/// resource.
pub fn used_cell(used: Option<Sample>, alloc: &str, cpu: bool) -> String {
    let Some(u) = used else {
        return "<span class=\"muted\">–</span>".into();
    };
    let (value, text) = if cpu {
        (u.cpu, cpu_text(u.cpu))
    } else {
        (u.memory, memory_text(u.memory))
    };
    match quantity(alloc).filter(|a| *a > 0.0) {
        Some(a) => format!("{} ({:.0}%)", esc(&text), value / a * 100.0),
        None => esc(&text),
    }
}

/// The `#metrics` section of a node (`ns` None) or pod page: the latest usage and the
/// session's history as sparklines, or why there is none.
pub async fn section(api: &Api, history: &Mutex<History>, ns: Option<&str>, name: &str) -> String {
    let (path, key) = match ns {
        Some(ns) => (
            format!(
                "/apis/metrics.k8s.io/v1beta1/namespaces/{}/pods/{}",
                seg(ns),
                seg(name)
            ),
            format!("pod/{ns}/{name}"),
        ),
        None => (
            format!("/apis/metrics.k8s.io/v1beta1/nodes/{}", seg(name)),
            format!("node/{name}"),
        ),
    };
    let body = match api.get(&path).await {
        Ok(o) => match usage(&o) {
            Some(sample) => {
                let series = history.lock().unwrap_or_else(|p| p.into_inner()).record(
                    &key,
                    s(&o, "/timestamp"),
                    sample,
                );
                let cpu: Vec<f64> = series.iter().map(|x| x.cpu).collect();
                let mem: Vec<f64> = series.iter().map(|x| x.memory).collect();
                format!(
                    "<table class=\"metrics\"><tr><th>CPU</th><td id=\"cpu-now\">{}</td><td>{}</td></tr><tr><th>Memory</th><td id=\"memory-now\">{}</td><td>{}</td></tr></table><p class=\"muted\">{} samples, one every {} s at most (window {}, sampled while this page is open).</p>",
                    cpu_text(sample.cpu),
                    sparkline(&cpu, "CPU usage"),
                    memory_text(sample.memory),
                    sparkline(&mem, "memory usage"),
                    series.len(),
                    SAMPLE_EVERY.as_secs(),
                    esc(s(&o, "/window")),
                )
            }
            None => "<p class=\"muted\">The metrics API answered without usage.</p>".into(),
        },
        Err(e) => format!(
            "<p class=\"muted\">No metrics: {}</p>",
            esc(&crate::views::error_line(&e))
        ),
    };
    format!("<section id=\"metrics\"><h2>CPU and memory</h2>{body}</section>")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities() {
        assert_eq!(quantity("250m"), Some(0.25));
        assert_eq!(quantity("1"), Some(1.0));
        assert_eq!(quantity("1500000n"), Some(0.0015));
        assert_eq!(quantity("64Mi"), Some(64.0 * 1024.0 * 1024.0));
        assert_eq!(quantity("2Ki"), Some(2048.0));
        assert_eq!(quantity("12x"), None);
        assert_eq!(quantity(""), None);
    }

    #[test]
    fn pod_usage_sums_containers() {
        let v = serde_json::json!({"containers": [
            {"name": "a", "usage": {"cpu": "100m", "memory": "1Mi"}},
            {"name": "b", "usage": {"cpu": "50m", "memory": "1Mi"}}]});
        let u = usage(&v).unwrap();
        assert!((u.cpu - 0.15).abs() < 1e-9);
        assert_eq!(u.memory, 2.0 * 1024.0 * 1024.0);
    }

    #[test]
    fn history_is_bounded_and_skips_repeats() {
        let mut h = History::default();
        let x = Sample {
            cpu: 1.0,
            memory: 1.0,
        };
        assert_eq!(h.record("a", "t1", x).len(), 1);
        assert_eq!(h.record("a", "t1", x).len(), 1, "same timestamp");
        for i in 0..100 {
            h.record("a", &format!("t{i}x"), x);
        }
        assert_eq!(h.record("a", "t1", x).len(), MAX_SAMPLES);
        for i in 0..MAX_SERIES + 5 {
            h.record(&format!("k{i}"), "t", x);
        }
        assert_eq!(h.series.len(), MAX_SERIES);
    }

    #[test]
    fn usage_cells() {
        let u = Sample {
            cpu: 0.5,
            memory: 512.0 * 1024.0 * 1024.0,
        };
        assert_eq!(used_cell(Some(u), "2", true), "500m (25%)");
        assert_eq!(used_cell(Some(u), "1Gi", false), "512.0Mi (50%)");
        assert_eq!(used_cell(Some(u), "", true), "500m");
        assert!(used_cell(None, "2", true).contains("–"));
    }

    #[test]
    fn sparkline_is_plain_svg() {
        let svg = sparkline(&[0.0, 1.0, 0.5], "CPU <usage>");
        assert!(svg.contains("data-points=\"3\""), "{svg}");
        assert!(svg.contains("aria-label=\"CPU &lt;usage&gt;\""), "{svg}");
        assert!(svg.contains("<polyline points=\""), "{svg}");
        assert!(!svg.contains("style="), "{svg}");
    }
}
