//! The Job controller's metrics (kube's job_controller_* families) move as a Job runs, against
//! a real pea-control, the test writing pod status as a hollow kubelet (the fixtures are
//! control_controllers.rs's).

use k8s_openapi::chrono::Utc;
use pea_controllers::job::metrics as job_metrics;
use pea_controllers::metrics::Metrics;
use serde_json::json;

use super::control_controllers::{config, eventually, Controllers, Test};

#[test]
fn job_metrics_count_syncs_finished_pods_policy_failures_and_the_finished_job() {
    let t = Test::start();
    let mut c = config("job");
    c.leader_elect = false;
    let m = Metrics::default();
    c.metrics = m.clone();
    let _c = Controllers::start(&t.cp, c);
    // Two completions; a failure with exit code 3 is ignored by the policy.
    t.k.ok_stdin(
        &["create", "-f", "-"],
        "apiVersion: batch/v1\nkind: Job\nmetadata: {name: counted}\nspec:\n  completions: 2\n  parallelism: 1\n  podFailurePolicy:\n    rules:\n    - action: Ignore\n      onExitCodes: {operator: In, values: [3]}\n  template:\n    spec:\n      restartPolicy: Never\n      containers: [{name: c, image: busybox}]\n",
    );
    let mode = ("completion_mode", "NonIndexed");
    let created = [mode, ("result", "success"), ("action", "pods_created")];
    let first = eventually("the first pod", || {
        t.unfinished("counted").into_iter().next()
    });
    eventually("a sync that created pods", || {
        (m.counter(&job_metrics::SYNCS, &created) >= 1.0).then_some(())
    });
    t.finish_pod(&first, "Failed", 3, Utc::now(), json!([]));
    eventually("the ignored failure", || {
        (m.counter(&job_metrics::FAILURES_BY_POLICY, &[("action", "Ignore")]) == 1.0).then_some(())
    });
    for n in 0..2 {
        let pod = eventually("a pod to finish", || {
            t.unfinished("counted")
                .into_iter()
                .find(|p| p.metadata.uid != first.metadata.uid)
        });
        t.finish_pod(&pod, "Succeeded", 0, Utc::now(), json!([]));
        eventually(&format!("success {n} counted"), || {
            let l = [mode, ("result", "succeeded")];
            (m.counter(&job_metrics::PODS_FINISHED, &l) == f64::from(n + 1)).then_some(())
        });
    }
    let finished = [
        mode,
        ("result", "succeeded"),
        ("reason", "CompletionsReached"),
    ];
    eventually("the Job counted as finished", || {
        (m.counter(&job_metrics::FINISHED, &finished) == 1.0).then_some(())
    });
    // The ignored failure is not a failed pod of the Job.
    let failed = [mode, ("result", "failed")];
    assert_eq!(m.counter(&job_metrics::PODS_FINISHED, &failed), 0.0);
    // Three finished pods got the tracking finalizer while finished (added) and lost it.
    eventually("the finalizers of the finished pods counted", || {
        let add = m.counter(&job_metrics::TRACKING_FINALIZER, &[("event", "add")]);
        let delete = m.counter(&job_metrics::TRACKING_FINALIZER, &[("event", "delete")]);
        (add == 3.0 && delete == 3.0).then_some(())
    });
    let tracking = [mode, ("result", "success"), ("action", "tracking")];
    assert!(m.counter(&job_metrics::SYNCS, &tracking) >= 1.0);
    // Three pods created, all new: the ignored failure is no failed pod, none terminated.
    let new = [("reason", "new"), ("status", "succeeded")];
    assert_eq!(m.counter(&job_metrics::PODS_CREATION, &new), 3.0);
    // A Job another controller manages is counted and left alone: no pod.
    t.k.ok_stdin(
        &["create", "-f", "-"],
        "apiVersion: batch/v1\nkind: Job\nmetadata: {name: elsewhere}\nspec:\n  managedBy: example.com/multikueue\n  template:\n    spec:\n      restartPolicy: Never\n      containers: [{name: c, image: busybox}]\n",
    );
    let external = [("controller_name", "example.com/multikueue")];
    eventually("the external Job counted", || {
        (m.counter(&job_metrics::BY_EXTERNAL_CONTROLLER, &external) == 1.0).then_some(())
    });
    assert!(t.unfinished("elsewhere").is_empty());
    let text = m.render();
    for want in [
        "# TYPE job_controller_job_sync_duration_seconds histogram",
        "job_controller_job_sync_duration_seconds_bucket{completion_mode=\"NonIndexed\",result=\"success\",action=\"pods_created\",le=\"0.004\"}",
        "job_controller_job_syncs_total{completion_mode=\"NonIndexed\",result=\"success\",action=\"pods_created\"}",
        "job_controller_jobs_finished_total{completion_mode=\"NonIndexed\",result=\"succeeded\",reason=\"CompletionsReached\"} 1",
        "job_controller_job_pods_finished_total{completion_mode=\"NonIndexed\",result=\"succeeded\"} 2",
        "job_controller_pod_failures_handled_by_failure_policy_total{action=\"Ignore\"} 1",
        "job_controller_terminated_pods_tracking_finalizer_total{event=\"add\"} 3",
        "# TYPE job_controller_job_pods_creation_total counter",
        "job_controller_job_pods_creation_total{reason=\"new\",status=\"succeeded\"} 3",
        "job_controller_jobs_by_external_controller_total{controller_name=\"example.com/multikueue\"} 1",
    ] {
        assert!(text.contains(want), "{want:?} missing from:\n{text}");
    }
}

/// `pea-control controllers` running alone serves the controllers' /metrics and /healthz on
/// `--metrics-bind-address` (kube-controller-manager's metrics, there on its secure port).
#[test]
fn standalone_controllers_serve_their_metrics() {
    use pea_tests::bins::workspace_binary;
    use pea_tests::control::{Backend, ControlPlane};
    use pea_tests::dns::http_get;
    let cp = ControlPlane::start(Backend::Embedded).unwrap();
    let port = pea_tests::fixtures::registry::free_port().unwrap();
    let addr: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
    /// Killed however the test ends.
    struct Running(std::process::Child);
    impl Drop for Running {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _controllers = Running(
        std::process::Command::new(workspace_binary("pea-control", "PEA_CONTROL"))
            .args(["controllers", "--kubeconfig"])
            .arg(&cp.kubeconfig)
            .args([
                "--controllers",
                "job",
                "--leader-elect",
                "false",
                "--use-service-account-credentials=false",
                "--metrics-bind-address",
                &addr.to_string(),
            ])
            .stdin(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let k = cp.kubectl();
    k.ok_stdin(
        &["create", "-f", "-"],
        "apiVersion: batch/v1\nkind: Job\nmetadata: {name: alone}\nspec:\n  template:\n    spec:\n      restartPolicy: Never\n      containers: [{name: c, image: busybox}]\n",
    );
    // The pod is counted inside the sync and the sync itself when it returns, so both are
    // waited for: a scrape between the two sees only the first.
    let text = eventually("a job sync in the standalone /metrics", || {
        let (status, body) = http_get(addr, "/metrics").ok()?;
        (status == 200
            && body.contains(
                "job_controller_job_pods_creation_total{reason=\"new\",status=\"succeeded\"} 1",
            )
            && body.contains("job_controller_job_syncs_total{"))
        .then_some(body)
    });
    assert!(
        text.contains("# TYPE job_controller_job_syncs_total counter"),
        "{text}"
    );
    assert_eq!(http_get(addr, "/healthz").unwrap(), (200, "ok".to_string()));
    assert_eq!(http_get(addr, "/nothing").unwrap().0, 404);
}
