//! `/metrics/resource` (the kubelet's resource metrics, what metrics-server scrapes) rendered
//! from a Summary, and `/metrics` (the server's own counters and what the runtime runs), both
//! in the Prometheus text format.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;

use serde_json::Value;

/// Escapes a label value (backslash, quote, newline), as the text format requires.
pub fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn time_ms(v: &Value) -> Option<i64> {
    let t = v.get("time")?.as_str()?;
    Some(
        chrono::DateTime::parse_from_rfc3339(t)
            .ok()?
            .timestamp_millis(),
    )
}

fn sample(out: &mut String, name: &str, labels: &[(&str, &str)], value: f64, ts: Option<i64>) {
    out.push_str(name);
    if !labels.is_empty() {
        out.push('{');
        let l: Vec<String> = labels
            .iter()
            .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
            .collect();
        out.push_str(&l.join(","));
        out.push('}');
    }
    let _ = match ts {
        Some(ts) => writeln!(out, " {value} {ts}"),
        None => writeln!(out, " {value}"),
    };
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} [STABLE] {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// The resource metrics of a Summary (`None`: the summary failed, so only
/// `resource_scrape_error 1`).
pub fn resource_metrics(summary: Option<&Value>) -> String {
    let mut out = String::new();
    let Some(s) = summary else {
        header(
            &mut out,
            "resource_scrape_error",
            "gauge",
            "1 if there was an error while getting container metrics, 0 otherwise",
        );
        sample(&mut out, "resource_scrape_error", &[], 1.0, None);
        return out;
    };
    let pods: Vec<&Value> = s["pods"]
        .as_array()
        .map(|a| a.iter().collect())
        .unwrap_or_default();
    let pod_labels = |p: &Value| {
        (
            p.pointer("/podRef/namespace")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
            p.pointer("/podRef/name")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
        )
    };
    let secs = |v: &Value, p: &str| v.pointer(p).and_then(Value::as_u64).map(|n| n as f64 / 1e9);
    let bytes = |v: &Value, p: &str| v.pointer(p).and_then(Value::as_u64).map(|n| n as f64);
    let series: [(&str, &str, &str, &str); 2] = [
        (
            "cpu_usage_seconds_total",
            "counter",
            "/cpu/usageCoreNanoSeconds",
            "Cumulative cpu time consumed by the {} in core-seconds",
        ),
        (
            "memory_working_set_bytes",
            "gauge",
            "/memory/workingSetBytes",
            "Current working set of the {} in bytes",
        ),
    ];
    for (suffix, kind, pointer, help) in series {
        let name = format!("container_{suffix}");
        header(&mut out, &name, kind, &help.replace("{}", "container"));
        for p in &pods {
            let (ns, pod) = pod_labels(p);
            for c in p["containers"].as_array().into_iter().flatten() {
                let cname = c["name"].as_str().unwrap_or("");
                let v = if suffix.starts_with("cpu") {
                    secs(c, pointer)
                } else {
                    bytes(c, pointer)
                };
                if let Some(v) = v {
                    let section = if suffix.starts_with("cpu") {
                        &c["cpu"]
                    } else {
                        &c["memory"]
                    };
                    sample(
                        &mut out,
                        &name,
                        &[("container", cname), ("namespace", &ns), ("pod", &pod)],
                        v,
                        time_ms(section),
                    );
                }
            }
        }
    }
    header(
        &mut out,
        "container_start_time_seconds",
        "gauge",
        "Start time of the container since unix epoch in seconds",
    );
    for p in &pods {
        let (ns, pod) = pod_labels(p);
        for c in p["containers"].as_array().into_iter().flatten() {
            let start = c["startTime"]
                .as_str()
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok());
            if let Some(t) = start {
                sample(
                    &mut out,
                    "container_start_time_seconds",
                    &[
                        ("container", c["name"].as_str().unwrap_or("")),
                        ("namespace", &ns),
                        ("pod", &pod),
                    ],
                    t.timestamp() as f64,
                    Some(t.timestamp_millis()),
                );
            }
        }
    }
    header(
        &mut out,
        "node_cpu_usage_seconds_total",
        "counter",
        "Cumulative cpu time consumed by the node in core-seconds",
    );
    if let Some(v) = secs(&s["node"], "/cpu/usageCoreNanoSeconds") {
        sample(
            &mut out,
            "node_cpu_usage_seconds_total",
            &[],
            v,
            time_ms(&s["node"]["cpu"]),
        );
    }
    header(
        &mut out,
        "node_memory_working_set_bytes",
        "gauge",
        "Current working set of the node in bytes",
    );
    if let Some(v) = bytes(&s["node"], "/memory/workingSetBytes") {
        sample(
            &mut out,
            "node_memory_working_set_bytes",
            &[],
            v,
            time_ms(&s["node"]["memory"]),
        );
    }
    header(
        &mut out,
        "pod_cpu_usage_seconds_total",
        "counter",
        "Cumulative cpu time consumed by the pod in core-seconds",
    );
    for p in &pods {
        let (ns, pod) = pod_labels(p);
        if let Some(v) = secs(p, "/cpu/usageCoreNanoSeconds") {
            sample(
                &mut out,
                "pod_cpu_usage_seconds_total",
                &[("namespace", &ns), ("pod", &pod)],
                v,
                time_ms(&p["cpu"]),
            );
        }
    }
    header(
        &mut out,
        "pod_memory_working_set_bytes",
        "gauge",
        "Current working set of the pod in bytes",
    );
    for p in &pods {
        let (ns, pod) = pod_labels(p);
        if let Some(v) = bytes(p, "/memory/workingSetBytes") {
            sample(
                &mut out,
                "pod_memory_working_set_bytes",
                &[("namespace", &ns), ("pod", &pod)],
                v,
                time_ms(&p["memory"]),
            );
        }
    }
    header(
        &mut out,
        "resource_scrape_error",
        "gauge",
        "1 if there was an error while getting container metrics, 0 otherwise",
    );
    sample(&mut out, "resource_scrape_error", &[], 0.0, None);
    out
}

/// Requests served, by endpoint family and code (endpoint names are fixed strings, never paths
/// from the client, so the label set stays bounded).
#[derive(Debug, Default)]
pub struct ServerMetrics {
    requests: Mutex<BTreeMap<(&'static str, u16), u64>>,
}

impl ServerMetrics {
    pub fn observe(&self, endpoint: &'static str, code: u16) {
        let mut m = self.requests.lock().unwrap_or_else(|p| p.into_inner());
        *m.entry((endpoint, code)).or_default() += 1;
    }

    /// `/metrics`: request counts plus the runtime's pod and container counts.
    pub fn render(&self, running_pods: Option<usize>, running_containers: Option<usize>) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "# HELP kubelet_http_requests_total Number of HTTP requests the kubelet server answered, by endpoint and code");
        let _ = writeln!(out, "# TYPE kubelet_http_requests_total counter");
        for ((endpoint, code), n) in self
            .requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            let _ = writeln!(
                out,
                "kubelet_http_requests_total{{path=\"{endpoint}\",code=\"{code}\"}} {n}"
            );
        }
        if let Some(n) = running_pods {
            let _ = writeln!(out, "# HELP kubelet_running_pods [ALPHA] Number of pods that have a running pod sandbox");
            let _ = writeln!(out, "# TYPE kubelet_running_pods gauge");
            let _ = writeln!(out, "kubelet_running_pods {n}");
        }
        if let Some(n) = running_containers {
            let _ = writeln!(
                out,
                "# HELP kubelet_running_containers [ALPHA] Number of containers currently running"
            );
            let _ = writeln!(out, "# TYPE kubelet_running_containers gauge");
            let _ = writeln!(
                out,
                "kubelet_running_containers{{container_state=\"running\"}} {n}"
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn resource_metrics_name_every_series_metrics_server_reads() {
        let s = json!({
            "node": {"cpu": {"time": "2026-01-01T00:00:00Z", "usageCoreNanoSeconds": 2_500_000_000u64},
                     "memory": {"time": "2026-01-01T00:00:00Z", "workingSetBytes": 1024}},
            "pods": [{"podRef": {"name": "web", "namespace": "d\"q", "uid": "u"},
                "cpu": {"time": "2026-01-01T00:00:00Z", "usageCoreNanoSeconds": 1_000_000_000u64},
                "memory": {"time": "2026-01-01T00:00:00Z", "workingSetBytes": 2048},
                "containers": [{"name": "app", "startTime": "2025-12-31T23:00:00Z",
                    "cpu": {"time": "2026-01-01T00:00:00Z", "usageCoreNanoSeconds": 500_000_000u64},
                    "memory": {"time": "2026-01-01T00:00:00Z", "workingSetBytes": 4096}}]}]
        });
        let text = resource_metrics(Some(&s));
        let ts = 1767225600000i64;
        for line in [
            format!("node_cpu_usage_seconds_total 2.5 {ts}"),
            format!("node_memory_working_set_bytes 1024 {ts}"),
            format!("container_cpu_usage_seconds_total{{container=\"app\",namespace=\"d\\\"q\",pod=\"web\"}} 0.5 {ts}"),
            format!("container_memory_working_set_bytes{{container=\"app\",namespace=\"d\\\"q\",pod=\"web\"}} 4096 {ts}"),
            format!("pod_cpu_usage_seconds_total{{namespace=\"d\\\"q\",pod=\"web\"}} 1 {ts}"),
            format!("pod_memory_working_set_bytes{{namespace=\"d\\\"q\",pod=\"web\"}} 2048 {ts}"),
            "resource_scrape_error 0".to_string(),
            "# TYPE container_cpu_usage_seconds_total counter".to_string(),
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
        }
        assert!(resource_metrics(None).contains("resource_scrape_error 1"));
    }
}
