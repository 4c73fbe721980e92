//! The resource metrics API and the horizontal pod autoscaler with real kubectl 1.32:
//! autoscaling/v1 and v2 views of one stored autoscaler (what `kubectl autoscale` posts is v1),
//! metrics.k8s.io discovery; then one real node (pea-kubelet on pea-shim, the real pea-control
//! binary scraping the kubelet's `/metrics/resource` every 2 s, HPA sync every 2 s) where a
//! Deployment burns CPU, `kubectl top` shows it and `kubectl autoscale --cpu-percent=50` scales
//! it from 1 to 3 replicas.

use std::time::{Duration, Instant};

use pea_tests::control::{Backend, ControlPlane};
use pea_tests::kubelet_node::{KubeletNode, NodeOptions};
use serde_json::Value;

/// kubectl expands the short name `hpa` to the preferred version (v2), so v1 is named in full.
const V1: &str = "horizontalpodautoscalers.v1.autoscaling";

fn json(s: &str) -> Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("not JSON ({e}): {s}"))
}

#[test]
fn autoscaling_v1_and_v2_are_views_of_one_object_and_metrics_are_discoverable() {
    let cp = ControlPlane::start_with(Backend::Embedded, |c| c.metric_resolution_secs = 0.0)
        .expect("pea-control");
    let k = cp.kubectl();
    let versions = k.ok(&["api-versions"]);
    for v in ["autoscaling/v1", "autoscaling/v2", "metrics.k8s.io/v1beta1"] {
        assert!(
            versions.lines().any(|l| l == v),
            "{v} missing from:\n{versions}"
        );
    }
    let resources = k.ok(&["api-resources", "--api-group=metrics.k8s.io", "-o", "wide"]);
    assert!(
        resources.contains("NodeMetrics") && resources.contains("PodMetrics"),
        "{resources}"
    );
    assert!(resources.contains("get,list"), "{resources}");
    // A pod but no kubelet, so no samples: kubectl says so as it does against metrics-server.
    k.ok(&["run", "lonely", "--image=busybox"]);
    let err = k.fails(&["top", "pod"]);
    assert!(err.contains("metrics not available yet"), "{err}");
    let nodes = json(&k.ok(&["get", "--raw", "/apis/metrics.k8s.io/v1beta1/nodes"]));
    assert_eq!(nodes["kind"], "NodeMetricsList");
    assert_eq!(nodes["items"], serde_json::json!([]));
    let err = k.fails(&["get", "--raw", "/apis/metrics.k8s.io/v1beta1/nodes/nope"]);
    assert!(
        err.contains("NotFound") || err.contains("not found"),
        "{err}"
    );

    k.ok(&["create", "deployment", "web", "--image=busybox"]);
    // kubectl autoscale posts an autoscaling/v1 object (protobuf).
    let out = k.ok(&[
        "autoscale",
        "deployment",
        "web",
        "--cpu-percent=50",
        "--min=1",
        "--max=3",
    ]);
    assert!(out.contains("autoscaled"), "{out}");
    let v2 = json(&k.ok(&[
        "get",
        "horizontalpodautoscalers.v2.autoscaling",
        "web",
        "-o",
        "json",
    ]));
    assert_eq!(v2["apiVersion"], "autoscaling/v2");
    assert_eq!(
        v2["spec"]["metrics"],
        serde_json::json!([{"type": "Resource", "resource": {"name": "cpu",
            "target": {"type": "Utilization", "averageUtilization": 50}}}])
    );
    assert_eq!(v2["spec"]["scaleTargetRef"]["kind"], "Deployment");
    let v1 = json(&k.ok(&["get", V1, "web", "-o", "json"]));
    assert_eq!(v1["apiVersion"], "autoscaling/v1");
    assert_eq!(v1["spec"]["targetCPUUtilizationPercentage"], 50);
    assert_eq!(v1["spec"]["maxReplicas"], 3);
    assert_eq!(
        v1["metadata"]["resourceVersion"],
        v2["metadata"]["resourceVersion"]
    );
    // What v1 cannot show survives a v1 patch: the behavior set through v2.
    k.ok(&[
        "patch",
        "horizontalpodautoscalers.v2.autoscaling",
        "web",
        "--type=merge",
        "-p",
        r#"{"spec":{"behavior":{"scaleDown":{"stabilizationWindowSeconds":30}}}}"#,
    ]);
    let v1 = json(&k.ok(&["get", V1, "web", "-o", "json"]));
    assert!(
        v1["metadata"]["annotations"]["autoscaling.alpha.kubernetes.io/behavior"]
            .as_str()
            .is_some_and(|b| b.contains("30")),
        "{v1}"
    );
    k.ok(&[
        "patch",
        V1,
        "web",
        "--type=merge",
        "-p",
        r#"{"spec":{"maxReplicas":5,"targetCPUUtilizationPercentage":70}}"#,
    ]);
    let v2 = json(&k.ok(&["get", "hpa", "web", "-o", "json"]));
    assert_eq!(
        v2["apiVersion"], "autoscaling/v2",
        "v2 is the preferred version"
    );
    assert_eq!(v2["spec"]["maxReplicas"], 5);
    assert_eq!(
        v2["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"],
        70
    );
    assert_eq!(
        v2["spec"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"],
        30
    );
    assert!(v2["metadata"].get("annotations").is_none(), "{v2}");
    // A v1 body with a field v1 does not have is refused under strict validation.
    let bad = r#"{"apiVersion":"autoscaling/v1","kind":"HorizontalPodAutoscaler","metadata":{"name":"x"},
        "spec":{"scaleTargetRef":{"kind":"Deployment","name":"web"},"maxReplicas":2,"metrics":[{"type":"Resource"}]}}"#;
    let err = String::from_utf8_lossy(
        &k.stdin_output(&["create", "--validate=strict", "-f", "-"], bad)
            .stderr,
    )
    .to_string();
    assert!(
        err.contains("unknown field") && err.contains("metrics"),
        "{err}"
    );
    // Table output and list through v1.
    let table = k.ok(&["get", V1]);
    assert!(
        table.contains("Deployment/web") && table.contains("cpu: <unknown>/70%"),
        "{table}"
    );
    k.ok(&["delete", V1, "web"]);
    assert!(k.fails(&["get", "hpa", "web"]).contains("NotFound"));
}

fn wait_for<T>(
    what: &str,
    timeout: Duration,
    mut f: impl FnMut() -> Option<T>,
    last: impl Fn() -> String,
) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            start.elapsed() < timeout,
            "{what} not within {timeout:?}:\n{}",
            last()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[test]
fn kubectl_top_shows_kubelet_usage_and_the_autoscaler_scales_a_busy_deployment() {
    let opts = NodeOptions {
        control_args: [
            "--metric-resolution",
            "2s",
            "--horizontal-pod-autoscaler-sync-period",
            "2s",
        ]
        .map(String::from)
        .to_vec(),
        ..Default::default()
    };
    let mut n = KubeletNode::with("hpa-node", &opts).expect("node");
    n.start_kubelet().expect("kubelet");
    // A loop that burns CPU, capped at 200m by its limit, against a 100m request: 200 %.
    n.apply(&format!(
        r#"
apiVersion: apps/v1
kind: Deployment
metadata: {{name: burn}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: burn}}}}
  template:
    metadata: {{labels: {{app: burn}}}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: loop
        image: {image}
        command: [sh, -c, 'while true; do :; done']
        resources: {{requests: {{cpu: 100m}}, limits: {{cpu: 200m, memory: 32Mi}}}}
"#,
        image = n.image
    ));
    let top = wait_for(
        "kubectl top pod with numbers",
        Duration::from_secs(60),
        || {
            let out = n.kubectl(&["top", "pod", "-l", "app=burn", "--no-headers"]);
            let text = String::from_utf8_lossy(&out.stdout).to_string();
            let cpu = text
                .split_whitespace()
                .nth(1)?
                .strip_suffix('m')?
                .parse::<u64>()
                .ok()?;
            (out.status.success() && cpu > 0).then_some((text, cpu))
        },
        || {
            format!(
                "{}\n--- control log:\n{}",
                String::from_utf8_lossy(&n.kubectl(&["top", "pod"]).stderr),
                n.control_log()
            )
        },
    );
    eprintln!("kubectl top pod: {}", top.0.trim());
    assert!(top.0.contains("Mi"), "memory column: {}", top.0);
    // Under its 200m quota (with slack for a busy machine and the 2 s window).
    assert!(top.1 <= 260, "{}", top.0);
    let node_top = n.ok(&["top", "node", "--no-headers"]);
    eprintln!("kubectl top node: {}", node_top.trim());
    assert!(
        node_top.starts_with("hpa-node") && node_top.contains('%'),
        "{node_top}"
    );
    let raw = json(&n.ok(&[
        "get",
        "--raw",
        "/apis/metrics.k8s.io/v1beta1/namespaces/default/pods?labelSelector=app%3Dburn",
    ]));
    let item = &raw["items"][0];
    assert_eq!(item["kind"], "PodMetrics");
    assert_eq!(item["metadata"]["labels"]["app"], "burn");
    assert_eq!(item["containers"][0]["name"], "loop");
    assert!(item["window"].as_str().unwrap().ends_with('s'), "{item}");
    assert!(item["timestamp"].as_str().unwrap().ends_with('Z'), "{item}");
    let nm = json(&n.ok(&[
        "get",
        "--raw",
        "/apis/metrics.k8s.io/v1beta1/nodes/hpa-node",
    ]));
    assert_eq!(nm["kind"], "NodeMetrics");
    assert!(nm["usage"]["memory"].as_str().is_some(), "{nm}");

    n.ok(&[
        "autoscale",
        "deployment",
        "burn",
        "--cpu-percent=50",
        "--min=1",
        "--max=3",
    ]);
    let started = Instant::now();
    let replicas = || {
        n.get_json(&["deployment", "burn"])
            .and_then(|d| d["spec"]["replicas"].as_i64())
    };
    wait_for(
        "the autoscaler scaling burn to 3",
        Duration::from_secs(60),
        || (replicas() == Some(3)).then_some(()),
        || {
            format!(
                "{}\n{}",
                n.ok(&["describe", "hpa", "burn"]),
                n.ok(&["get", "hpa", "burn", "-o", "yaml"])
            )
        },
    );
    eprintln!("scaled to 3 in {:?}", started.elapsed());
    let hpa = wait_for(
        "the autoscaler status",
        Duration::from_secs(30),
        || {
            n.get_json(&["hpa", "burn"]).filter(|h| {
                h["status"]["desiredReplicas"] == 3 && h["status"]["lastScaleTime"].is_string()
            })
        },
        || n.ok(&["get", "hpa", "burn", "-o", "yaml"]),
    );
    let util = hpa["status"]["currentMetrics"][0]["resource"]["current"]["averageUtilization"]
        .as_i64()
        .unwrap_or(0);
    assert!(util > 50, "utilization above target: {hpa}");
    let conds = hpa["status"]["conditions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let cond = |t: &str| {
        conds
            .iter()
            .find(|c| c["type"] == t)
            .cloned()
            .unwrap_or_default()
    };
    assert_eq!(cond("AbleToScale")["status"], "True", "{hpa}");
    assert_eq!(cond("ScalingActive")["status"], "True", "{hpa}");
    assert_eq!(cond("ScalingActive")["reason"], "ValidMetricFound", "{hpa}");
    assert!(cond("ScalingLimited")["status"].is_string(), "{hpa}");
    let events = n.ok(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=burn,reason=SuccessfulRescale",
        "-o",
        "json",
    ]);
    assert!(
        events.contains(
            "New size: 3; reason: cpu resource utilization (percentage of request) above target"
        ),
        "{events}"
    );
    let v1 = json(&n.ok(&["get", V1, "burn", "-o", "json"]));
    assert!(
        v1["status"]["currentCPUUtilizationPercentage"]
            .as_i64()
            .unwrap_or(0)
            > 50,
        "{v1}"
    );
    // Never beyond maxReplicas.
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(replicas(), Some(3));
    n.ok(&["delete", "hpa", "burn"]);
    n.ok(&["delete", "deployment", "burn", "--wait=false"]);
}
