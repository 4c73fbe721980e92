//! kube-scheduler's metrics from `pea-control scheduler --metrics-bind-address`, moving as
//! pods are scheduled, refused, gated and released, on hollow nodes (the fixtures are
//! control_scheduler.rs's).

use pea_tests::dns::http_get;
use serde_json::json;

use super::control_scheduler::{
    cluster, cpu_spec, create_pod, hollow_node, wait_bound, wait_for, SchedulerProcess,
};

const PROFILE: &str = "profile=\"default-scheduler\"";

/// The value of the sample `series` (name and labels, exactly as rendered) in `text`.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[test]
fn scheduler_metrics_count_attempts_queues_gates_and_preemption() {
    let (cp, dir) = cluster();
    let k = cp.kubectl();
    for n in ["n1", "n2"] {
        hollow_node(&k, n, "2", "4Gi", json!({}), json!([]));
    }
    let port = pea_tests::fixtures::registry::free_port().unwrap();
    let addr: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
    let s = SchedulerProcess::start_with_args(
        &cp.kubeconfig,
        dir.path(),
        "sched",
        json!({"leaderElect": false}),
        &["--metrics-bind-address", &addr.to_string()],
    );
    // Waits until every (series, value) holds in one scrape; returns that scrape.
    let scrape_until = |what: &str, want: &[(String, f64)]| -> String {
        wait_for(30, || {
            let (status, body) = http_get(addr, "/metrics").ok()?;
            (status == 200
                && want
                    .iter()
                    .all(|(series, v)| sample(&body, series) == Some(*v)))
            .then_some(body)
        })
        .unwrap_or_else(|| {
            let body = http_get(addr, "/metrics").map(|r| r.1).unwrap_or_default();
            panic!(
                "{what}: want {want:?}\n/metrics:\n{body}\nlog:\n{}",
                s.log()
            )
        })
    };
    let series = |name: &str, labels: &str| format!("{name}{{{labels}}}");

    create_pod(&k, "fits", cpu_spec("1"));
    wait_bound(&k, "fits", &s);
    // Fits nowhere, and preemption cannot help (no pod of lower priority frees 4 cpus).
    create_pod(&k, "too-big", cpu_spec("4"));
    let mut gated = cpu_spec("100m");
    gated["schedulingGates"] = json!([{"name": "example.com/wait"}]);
    create_pod(&k, "gated", gated);
    let scheduled = series(
        "scheduler_schedule_attempts_total",
        &format!("result=\"scheduled\",{PROFILE}"),
    );
    let unschedulable_pool = series("scheduler_pending_pods", "queue=\"unschedulable\"");
    let gated_queue = series("scheduler_pending_pods", "queue=\"gated\"");
    let by_fit = series(
        "scheduler_unschedulable_pods",
        &format!("plugin=\"NodeResourcesFit\",{PROFILE}"),
    );
    let text = scrape_until(
        "one pod bound, one unschedulable, one gated",
        &[
            (scheduled.clone(), 1.0),
            (unschedulable_pool.clone(), 1.0),
            (gated_queue.clone(), 1.0),
            (by_fit.clone(), 1.0),
            ("scheduler_pod_scheduling_attempts_count".into(), 1.0),
            (
                series(
                    "scheduler_pod_scheduling_sli_duration_seconds_count",
                    "attempts=\"1\"",
                ),
                1.0,
            ),
        ],
    );
    let refused = series(
        "scheduler_schedule_attempts_total",
        &format!("result=\"unschedulable\",{PROFILE}"),
    );
    assert!(sample(&text, &refused).is_some_and(|n| n >= 1.0), "{text}");
    assert!(
        sample(&text, "scheduler_preemption_attempts_total").is_some_and(|n| n >= 1.0),
        "{text}"
    );
    for want in [
        "# TYPE scheduler_scheduling_attempt_duration_seconds histogram",
        "# HELP scheduler_pending_pods [STABLE] Number of pending pods, by the queue type.",
        "# TYPE scheduler_pending_pods gauge",
        "# TYPE scheduler_scheduling_algorithm_duration_seconds histogram",
    ] {
        assert!(text.contains(want), "{want:?} missing from:\n{text}");
    }
    let bucket = series(
        "scheduler_scheduling_attempt_duration_seconds_bucket",
        &format!("result=\"scheduled\",{PROFILE},le=\"+Inf\""),
    );
    assert_eq!(sample(&text, &bucket), Some(1.0), "{text}");

    // The gate lifted: the pod is attempted and bound; the refused pod deleted: the pool empties.
    k.ok(&[
        "patch",
        "pod",
        "gated",
        "--type=json",
        "-p",
        r#"[{"op": "remove", "path": "/spec/schedulingGates"}]"#,
    ]);
    wait_bound(&k, "gated", &s);
    k.ok(&["delete", "pod", "too-big", "--wait=false"]);
    scrape_until(
        "the gated pod bound, the refused one gone",
        &[
            (scheduled, 2.0),
            (gated_queue, 0.0),
            (unschedulable_pool, 0.0),
            (by_fit, 0.0),
            ("scheduler_pod_scheduling_attempts_count".into(), 2.0),
        ],
    );
    assert_eq!(http_get(addr, "/healthz").unwrap(), (200, "ok".to_string()));
}
