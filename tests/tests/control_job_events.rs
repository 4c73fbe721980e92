//! The events the Job controller records, with kube's reasons and messages (what
//! `kubectl describe job` lists), against a real pea-control (the fixtures are
//! control_controllers.rs's, the test writing pod status as a hollow kubelet).

use k8s_openapi::chrono::Utc;
use kube::ResourceExt;
use serde_json::json;

use super::control_controllers::{config, eventually, Controllers, Test};
use super::control_job_backoff::events_of;

fn job_controller(t: &Test) -> Controllers {
    let mut c = config("job");
    c.leader_elect = false;
    Controllers::start(&t.cp, c)
}

/// Waits until the events about `object` include `(type, reason, message)`.
fn expect_event(t: &Test, object: &str, type_: &str, reason: &str, message: &str) {
    eventually(&format!("event {reason} \"{message}\" of {object}"), || {
        events_of(t, object)
            .iter()
            .any(|(ty, r, m)| ty == type_ && r == reason && m == message)
            .then_some(())
    });
}

#[test]
fn suspend_resume_pod_and_completion_events() {
    let t = Test::start();
    let _c = job_controller(&t);
    t.k.ok_stdin(
        &["create", "-f", "-"],
        "apiVersion: batch/v1\nkind: Job\nmetadata: {name: nap}\nspec:\n  template:\n    spec:\n      restartPolicy: Never\n      containers: [{name: c, image: busybox}]\n",
    );
    let first = eventually("the pod", || t.unfinished("nap").into_iter().next());
    expect_event(
        &t,
        "nap",
        "Normal",
        "SuccessfulCreate",
        &format!("Created pod: {}", first.name_any()),
    );
    t.k.ok(&[
        "patch",
        "job",
        "nap",
        "--type=merge",
        "-p",
        r#"{"spec":{"suspend":true}}"#,
    ]);
    expect_event(&t, "nap", "Normal", "Suspended", "Job suspended");
    expect_event(
        &t,
        "nap",
        "Normal",
        "SuccessfulDelete",
        &format!("Deleted pod: {}", first.name_any()),
    );
    t.k.ok(&[
        "patch",
        "job",
        "nap",
        "--type=merge",
        "-p",
        r#"{"spec":{"suspend":false}}"#,
    ]);
    expect_event(&t, "nap", "Normal", "Resumed", "Job resumed");
    let second = eventually("a new pod", || {
        t.unfinished("nap")
            .into_iter()
            .find(|p| p.name_any() != first.name_any())
    });
    t.finish_pod(&second, "Succeeded", 0, Utc::now(), json!([]));
    expect_event(&t, "nap", "Normal", "Completed", "Job completed");
    // Each transition once.
    let evs = events_of(&t, "nap");
    for reason in ["Suspended", "Resumed", "Completed"] {
        let n = evs.iter().filter(|(_, r, _)| r == reason).count();
        assert_eq!(n, 1, "{reason} recorded once: {evs:?}");
    }
    // kubectl describe lists them.
    let out = t.k.ok(&["describe", "job", "nap"]);
    assert!(
        out.contains("Suspended") && out.contains("Job resumed"),
        "{out}"
    );
}

#[test]
fn adopted_successes_past_completions_are_too_many() {
    let t = Test::start();
    // Two pods that already succeeded, no owner, labelled as the Job selects.
    for name in ["extra-a", "extra-b"] {
        t.k.ok_stdin(
            &["create", "-f", "-"],
            &format!("apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, labels: {{app: many}}}}\nspec:\n  restartPolicy: Never\n  containers: [{{name: c, image: busybox}}]\n"),
        );
    }
    for p in t.pods("app=many") {
        t.finish_pod(&p, "Succeeded", 0, Utc::now(), json!([]));
    }
    let _c = job_controller(&t);
    t.k.ok_stdin(
        &["create", "-f", "-"],
        "apiVersion: batch/v1\nkind: Job\nmetadata: {name: many}\nspec:\n  manualSelector: true\n  selector: {matchLabels: {app: many}}\n  completions: 1\n  template:\n    metadata: {labels: {app: many}}\n    spec:\n      restartPolicy: Never\n      containers: [{name: c, image: busybox}]\n",
    );
    t.k.ok(&[
        "wait",
        "--for=condition=complete",
        "job/many",
        "--timeout=60s",
    ]);
    assert_eq!(t.job("many").status.unwrap().succeeded, Some(2));
    expect_event(
        &t,
        "many",
        "Warning",
        "TooManySucceededPods",
        "Too many succeeded pods running after completion count reached",
    );
    expect_event(&t, "many", "Normal", "Completed", "Job completed");
}

#[test]
fn refused_pod_creations_are_failed_create_events() {
    let t = Test::start();
    t.k.ok(&["create", "quota", "none", "--hard=pods=0"]);
    // No resourcequota controller runs: the test writes the status it would (a quota without
    // one limits nothing).
    t.k.ok(&[
        "patch",
        "resourcequota",
        "none",
        "--subresource=status",
        "--type=merge",
        "-p",
        r#"{"status":{"hard":{"pods":"0"},"used":{"pods":"0"}}}"#,
    ]);
    let _c = job_controller(&t);
    t.k.ok_stdin(
        &["create", "-f", "-"],
        "apiVersion: batch/v1\nkind: Job\nmetadata: {name: refused}\nspec:\n  template:\n    spec:\n      restartPolicy: Never\n      containers: [{name: c, image: busybox}]\n",
    );
    let (_, _, message) = eventually("a FailedCreate event", || {
        events_of(&t, "refused")
            .into_iter()
            .find(|(ty, r, _)| ty == "Warning" && r == "FailedCreate")
    });
    assert!(
        message.starts_with("Error creating: ") && message.contains("exceeded quota: none"),
        "{message}"
    );
    assert!(t.unfinished("refused").is_empty());
}
