//! The kubelet's own Prometheus series, as kubelet names them: every CRI call timed by operation
//! (`kubelet_runtime_operations_duration_seconds`, `_total`, `_errors_total`: kubelet's
//! instrumented runtime service) and the pod start latency (`kubelet_pod_start_duration_seconds`:
//! from the kubelet first seeing a pod to the pod Running). The CRI timing is a tower wrapper
//! around the one channel to the runtime, so every caller (pod workers, probes, GC, the server)
//! is counted without each call site knowing.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tonic::body::Body;
use tonic::codegen::http;
use tonic::transport::Channel;

/// kubelet's runtime operation buckets: ExponentialBuckets(0.005, 2.5, 14).
const RUNTIME_BUCKETS: [f64; 14] = [
    0.005,
    0.0125,
    0.03125,
    0.078125,
    0.1953125,
    0.48828125,
    1.220703125,
    3.0517578125,
    7.62939453125,
    19.073486328125,
    47.6837158203125,
    119.20928955078125,
    298.0232238769531,
    745.0580596923828,
];

/// kubelet's pod start buckets (seconds).
const POD_START_BUCKETS: [f64; 25] = [
    0.5, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 20.0, 30.0, 45.0, 60.0, 120.0, 180.0, 240.0,
    300.0, 360.0, 480.0, 600.0, 900.0, 1200.0, 1800.0, 2700.0, 3600.0,
];

#[derive(Debug, Clone)]
struct Histogram {
    bounds: &'static [f64],
    counts: Vec<u64>,
    count: u64,
    sum: f64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Self {
        Self {
            bounds,
            counts: vec![0; bounds.len()],
            count: 0,
            sum: 0.0,
        }
    }

    fn observe(&mut self, secs: f64) {
        for (i, b) in self.bounds.iter().enumerate() {
            if secs <= *b {
                self.counts[i] += 1;
            }
        }
        self.count += 1;
        self.sum += secs;
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        for (b, n) in self.bounds.iter().zip(&self.counts) {
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{b}\"}} {n}");
        }
        let _ = writeln!(
            out,
            "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {}",
            self.count
        );
        let braces = |s: &str| {
            if s.is_empty() {
                String::new()
            } else {
                format!("{{{s}}}")
            }
        };
        let _ = writeln!(out, "{name}_sum{} {}", braces(labels), self.sum);
        let _ = writeln!(out, "{name}_count{} {}", braces(labels), self.count);
    }
}

#[derive(Debug)]
struct Operation {
    latency: Histogram,
    errors: u64,
}

/// The kubelet's series; one per kubelet, shared by every clone of its CRI client.
#[derive(Debug)]
pub struct KubeletMetrics {
    runtime: Mutex<BTreeMap<&'static str, Operation>>,
    pod_start: Mutex<Histogram>,
}

impl Default for KubeletMetrics {
    fn default() -> Self {
        Self {
            runtime: Mutex::new(BTreeMap::new()),
            pod_start: Mutex::new(Histogram::new(&POD_START_BUCKETS)),
        }
    }
}

impl KubeletMetrics {
    pub fn observe_runtime(&self, operation: &'static str, took: Duration, failed: bool) {
        let mut m = self.runtime.lock().unwrap_or_else(|p| p.into_inner());
        let op = m.entry(operation).or_insert_with(|| Operation {
            latency: Histogram::new(&RUNTIME_BUCKETS),
            errors: 0,
        });
        op.latency.observe(took.as_secs_f64());
        if failed {
            op.errors += 1;
        }
    }

    pub fn observe_pod_start(&self, took: Duration) {
        self.pod_start
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .observe(took.as_secs_f64());
    }

    /// The series in Prometheus text format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let runtime = self.runtime.lock().unwrap_or_else(|p| p.into_inner());
        let _ = writeln!(out, "# HELP kubelet_runtime_operations_total [ALPHA] Cumulative number of runtime operations by operation type.\n# TYPE kubelet_runtime_operations_total counter");
        for (op, o) in runtime.iter() {
            let _ = writeln!(
                out,
                "kubelet_runtime_operations_total{{operation_type=\"{op}\"}} {}",
                o.latency.count
            );
        }
        let _ = writeln!(out, "# HELP kubelet_runtime_operations_errors_total [ALPHA] Cumulative number of runtime operation errors by operation type.\n# TYPE kubelet_runtime_operations_errors_total counter");
        for (op, o) in runtime.iter() {
            let _ = writeln!(
                out,
                "kubelet_runtime_operations_errors_total{{operation_type=\"{op}\"}} {}",
                o.errors
            );
        }
        let _ = writeln!(out, "# HELP kubelet_runtime_operations_duration_seconds [ALPHA] Duration in seconds of runtime operations. Broken down by operation type.\n# TYPE kubelet_runtime_operations_duration_seconds histogram");
        for (op, o) in runtime.iter() {
            o.latency.render(
                &mut out,
                "kubelet_runtime_operations_duration_seconds",
                &format!("operation_type=\"{op}\""),
            );
        }
        drop(runtime);
        let _ = writeln!(out, "# HELP kubelet_pod_start_duration_seconds [ALPHA] Duration in seconds from kubelet seeing a pod for the first time to the pod starting to run\n# TYPE kubelet_pod_start_duration_seconds histogram");
        self.pod_start
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .render(&mut out, "kubelet_pod_start_duration_seconds", "");
        out
    }
}

/// kubelet's `operation_type` of a CRI method path (`/runtime.v1.RuntimeService/RunPodSandbox`):
/// a fixed table, so the label set stays bounded whatever the path.
pub fn operation_type(path: &str) -> &'static str {
    match path.rsplit('/').next().unwrap_or("") {
        "Version" => "version",
        "RunPodSandbox" => "run_podsandbox",
        "StopPodSandbox" => "stop_podsandbox",
        "RemovePodSandbox" => "remove_podsandbox",
        "PodSandboxStatus" => "podsandbox_status",
        "ListPodSandbox" => "list_podsandbox",
        "CreateContainer" => "create_container",
        "StartContainer" => "start_container",
        "StopContainer" => "stop_container",
        "RemoveContainer" => "remove_container",
        "ListContainers" => "list_containers",
        "ContainerStatus" => "container_status",
        "UpdateContainerResources" => "update_container",
        "ReopenContainerLog" => "reopen_container_log",
        "ExecSync" => "exec_sync",
        "Exec" => "exec",
        "Attach" => "attach",
        "PortForward" => "port_forward",
        "ContainerStats" => "container_stats",
        "ListContainerStats" => "list_container_stats",
        "PodSandboxStats" => "pod_sandbox_stats",
        "ListPodSandboxStats" => "list_pod_sandbox_stats",
        "UpdateRuntimeConfig" => "update_runtime_config",
        "Status" => "status",
        "CheckpointContainer" => "checkpoint_container",
        "GetContainerEvents" => "get_container_events",
        "ListMetricDescriptors" => "list_metric_descriptors",
        "ListPodSandboxMetrics" => "list_podsandbox_metrics",
        "RuntimeConfig" => "runtime_config",
        "ListImages" => "list_images",
        "ImageStatus" => "image_status",
        "PullImage" => "pull_image",
        "RemoveImage" => "remove_image",
        "ImageFsInfo" => "image_fs_info",
        _ => "other",
    }
}

/// The CRI channel with every call timed into [`KubeletMetrics`]. A call fails when the
/// transport fails or the answer carries a non-OK `grpc-status` in its headers (tonic sends
/// unary errors as trailers-only responses, so the status is in the headers).
#[derive(Debug, Clone)]
pub struct TimedChannel {
    inner: Channel,
    metrics: Arc<KubeletMetrics>,
}

impl TimedChannel {
    pub fn new(inner: Channel, metrics: Arc<KubeletMetrics>) -> Self {
        Self { inner, metrics }
    }
}

type ResponseFuture =
    Pin<Box<dyn Future<Output = Result<http::Response<Body>, tonic::transport::Error>> + Send>>;

impl tower::Service<http::Request<Body>> for TimedChannel {
    type Response = http::Response<Body>;
    type Error = tonic::transport::Error;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        let op = operation_type(req.uri().path());
        let metrics = self.metrics.clone();
        let started = Instant::now();
        let call = self.inner.call(req);
        Box::pin(async move {
            let result = call.await;
            let failed = match &result {
                Ok(r) => r
                    .headers()
                    .get("grpc-status")
                    .is_some_and(|s| s.as_bytes() != b"0"),
                Err(_) => true,
            };
            metrics.observe_runtime(op, started.elapsed(), failed);
            result
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_are_kubelets_and_well_formed() {
        let m = KubeletMetrics::default();
        m.observe_runtime(
            operation_type("/runtime.v1.RuntimeService/RunPodSandbox"),
            Duration::from_millis(20),
            false,
        );
        m.observe_runtime(
            operation_type("/runtime.v1.RuntimeService/RunPodSandbox"),
            Duration::from_millis(2),
            true,
        );
        m.observe_runtime(operation_type("/x/Nope\"}"), Duration::ZERO, false);
        m.observe_pod_start(Duration::from_millis(1500));
        let text = m.render();
        for want in [
            "kubelet_runtime_operations_total{operation_type=\"run_podsandbox\"} 2",
            "kubelet_runtime_operations_errors_total{operation_type=\"run_podsandbox\"} 1",
            "kubelet_runtime_operations_duration_seconds_bucket{operation_type=\"run_podsandbox\",le=\"0.005\"} 1",
            "kubelet_runtime_operations_duration_seconds_bucket{operation_type=\"run_podsandbox\",le=\"+Inf\"} 2",
            "kubelet_runtime_operations_total{operation_type=\"other\"} 1",
            "kubelet_pod_start_duration_seconds_bucket{le=\"1\"} 0",
            "kubelet_pod_start_duration_seconds_bucket{le=\"2\"} 1",
            "kubelet_pod_start_duration_seconds_sum 1.5",
            "kubelet_pod_start_duration_seconds_count 1",
        ] {
            assert!(text.contains(want), "{want} in:\n{text}");
        }
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let (_, value) = line.rsplit_once(' ').unwrap();
            value.parse::<f64>().unwrap_or_else(|_| panic!("{line}"));
        }
    }
}
