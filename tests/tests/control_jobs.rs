//! The Job controller's pod tracking (the `batch.kubernetes.io/job-tracking` finalizer and
//! `status.uncountedTerminatedPods`), `suspend`, `spec.managedBy` validation and per-index
//! backoff, against a real pea-control driven by kubectl 1.32, the test writing pod status as a
//! hollow kubelet would (the fixtures are control_controllers.rs's).

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::chrono::{self, Utc};
use kube::ResourceExt;
use serde_json::json;

use super::control_controllers::{condition_of, config, eventually, index_of, Controllers, Test};

const FINALIZER: &str = "batch.kubernetes.io/job-tracking";

/// Controllers without leader election, so a second instance starts at once after the first.
fn job_controller(t: &Test) -> Controllers {
    let mut c = config("job");
    c.leader_elect = false;
    Controllers::start(&t.cp, c)
}

fn finalizers(t: &Test, pod: &str) -> String {
    t.k.ok(&["get", "pod", pod, "-o", "jsonpath={.metadata.finalizers}"])
}

fn pod_names(t: &Test, selector: &str) -> Vec<String> {
    t.pods(selector).iter().map(|p| p.name_any()).collect()
}

/// `kubectl create -f` the Job, then its first `n` unfinished pods.
fn create_job(t: &Test, name: &str, yaml: &str, n: usize) -> Vec<Pod> {
    t.k.ok_stdin(&["create", "-f", "-"], yaml);
    eventually("the Job's pods", || {
        let p = t.unfinished(name);
        (p.len() == n).then_some(p)
    })
}

#[test]
fn finished_pods_are_counted_once_even_when_deleted_before_the_controller_saw_them() {
    let t = Test::start();
    let c = job_controller(&t);
    let pods = create_job(
        &t,
        "tracked",
        "apiVersion: batch/v1\nkind: Job\nmetadata: {name: tracked}\nspec:\n  completions: 2\n  parallelism: 2\n  template:\n    spec:\n      restartPolicy: Never\n      containers: [{name: c, image: busybox}]\n",
        2,
    );
    for p in &pods {
        let f = finalizers(&t, &p.name_any());
        assert!(f.contains(FINALIZER), "{}: finalizers {f}", p.name_any());
    }
    // While the controller is away, one pod succeeds and one fails, and both are deleted.
    drop(c);
    let long_ago = Utc::now() - chrono::Duration::seconds(60);
    t.finish_pod(&pods[0], "Succeeded", 0, long_ago, json!([]));
    t.finish_pod(&pods[1], "Failed", 1, long_ago, json!([]));
    for p in &pods {
        t.k.ok(&["delete", "pod", &p.name_any(), "--wait=false"]);
    }
    // pea-control keeps a pod being deleted while a finalizer holds it.
    for p in &pods {
        let ts = t.k.ok(&[
            "get",
            "pod",
            &p.name_any(),
            "-o",
            "jsonpath={.metadata.deletionTimestamp}",
        ]);
        assert!(
            !ts.trim().is_empty(),
            "{} kept, being deleted",
            p.name_any()
        );
    }
    let _c = job_controller(&t);
    eventually("both counted, then gone", || {
        let s = t.job("tracked").status?;
        let names = pod_names(&t, "job-name=tracked");
        let gone = pods.iter().all(|p| !names.contains(&p.name_any()));
        (s.succeeded == Some(1)
            && s.failed == Some(1)
            && s.uncounted_terminated_pods.is_none_or(|u| {
                u.succeeded.unwrap_or_default().is_empty()
                    && u.failed.unwrap_or_default().is_empty()
            })
            && gone)
            .then_some(())
    });
    // One completion left: one replacement, which finishes the Job.
    let r = eventually("the replacement", || {
        t.unfinished("tracked").into_iter().next()
    });
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(
        t.unfinished("tracked").len(),
        1,
        "one pod for one completion"
    );
    t.finish_pod(&r, "Succeeded", 0, Utc::now(), json!([]));
    t.k.ok(&[
        "wait",
        "--for=condition=complete",
        "job/tracked",
        "--timeout=60s",
    ]);
    let s = t.job("tracked").status.unwrap();
    assert_eq!((s.succeeded, s.failed), (Some(2), Some(1)));
    // The finished pod stays (kube keeps finished pods), without the finalizer.
    eventually("the last pod released", || {
        (!finalizers(&t, &r.name_any()).contains(FINALIZER)).then_some(())
    });
}

#[test]
fn pods_of_deleted_jobs_lose_the_finalizer_and_go() {
    let t = Test::start();
    let _c = job_controller(&t);
    let job = |name: &str| {
        format!("apiVersion: batch/v1\nkind: Job\nmetadata: {{name: {name}}}\nspec:\n  parallelism: 2\n  completions: 2\n  template:\n    spec:\n      restartPolicy: Never\n      containers: [{{name: c, image: busybox}}]\n")
    };
    t.k.ok_stdin(&["create", "-f", "-"], &job("cascade"));
    t.k.ok_stdin(&["create", "-f", "-"], &job("orphaning"));
    for name in ["cascade", "orphaning"] {
        eventually("two tracked pods", || {
            let p = t.pods(&format!("job-name={name}"));
            (p.len() == 2
                && p.iter()
                    .all(|p| finalizers(&t, &p.name_any()).contains(FINALIZER)))
            .then_some(())
        });
    }
    // Background cascade: the garbage collector deletes the pods, the finalizer goes.
    t.k.ok(&["delete", "job", "cascade"]);
    eventually("the cascade's pods gone", || {
        t.pods("job-name=cascade").is_empty().then_some(())
    });
    // Orphaned: the pods stay, without an owner and without the finalizer.
    t.k.ok(&["delete", "job", "orphaning", "--cascade=orphan"]);
    eventually("the orphans released", || {
        let p = t.pods("job-name=orphaning");
        (p.len() == 2
            && p.iter().all(|p| {
                p.metadata
                    .owner_references
                    .as_ref()
                    .is_none_or(Vec::is_empty)
                    && !p
                        .metadata
                        .finalizers
                        .iter()
                        .flatten()
                        .any(|f| f == FINALIZER)
            }))
        .then_some(())
    });
}

#[test]
fn suspend_deletes_the_pods_and_resume_starts_them_again() {
    let t = Test::start();
    let _c = job_controller(&t);
    let first = create_job(
        &t,
        "nap",
        "apiVersion: batch/v1\nkind: Job\nmetadata: {name: nap}\nspec:\n  completions: 4\n  parallelism: 2\n  template:\n    spec:\n      restartPolicy: Never\n      containers: [{name: c, image: busybox}]\n",
        2,
    );
    // The status follows the pods' creation.
    let started = eventually("startTime", || t.job("nap").status?.start_time).0;
    std::thread::sleep(Duration::from_millis(1100));
    t.k.ok(&[
        "patch",
        "job",
        "nap",
        "--type=merge",
        "-p",
        r#"{"spec":{"suspend":true}}"#,
    ]);
    eventually("pods deleted, Suspended", || {
        let j = t.job("nap");
        let s = j.status.as_ref()?;
        (t.pods("job-name=nap").is_empty()
            && s.active.is_none()
            && condition_of(&j, "Suspended")
                == Some(("JobSuspended".into(), "Job suspended".into())))
        .then_some(())
    });
    let s = t.job("nap").status.unwrap();
    assert_eq!(s.failed, None, "suspended pods are not failures");
    let out = t.k.ok(&["get", "job", "nap"]);
    assert!(out.contains("Suspended"), "{out}");
    std::thread::sleep(Duration::from_millis(500));
    assert!(t.pods("job-name=nap").is_empty(), "no pod while suspended");
    t.k.ok(&[
        "patch",
        "job",
        "nap",
        "--type=merge",
        "-p",
        r#"{"spec":{"suspend":false}}"#,
    ]);
    let again = eventually("two new pods", || {
        let p = t.unfinished("nap");
        (p.len() == 2).then_some(p)
    });
    assert!(again
        .iter()
        .all(|p| first.iter().all(|f| f.name_any() != p.name_any())));
    // The pods are created before the sync writes the status that says so.
    let j = eventually("the Suspended condition False, JobResumed", || {
        let j = t.job("nap");
        let c = j
            .status
            .as_ref()?
            .conditions
            .iter()
            .flatten()
            .find(|c| c.type_ == "Suspended")
            .cloned()?;
        ((c.status.as_str(), c.reason.as_deref()) == ("False", Some("JobResumed"))).then_some(j)
    });
    let restarted = j.status.unwrap().start_time.unwrap().0;
    assert!(
        restarted > started,
        "resuming resets startTime: {started} -> {restarted}"
    );
}

#[test]
fn managed_by_is_validated_and_immutable() {
    let t = Test::start();
    let job = |name: &str, managed_by: &str| {
        format!("apiVersion: batch/v1\nkind: Job\nmetadata: {{name: {name}}}\nspec:\n  managedBy: {managed_by}\n  suspend: true\n  template:\n    spec:\n      restartPolicy: Never\n      containers: [{{name: c, image: busybox}}]\n")
    };
    let err =
        t.k.fails_stdin(&["create", "-f", "-"], &job("bad", "job-controller"));
    assert!(
        err.contains("spec.managedBy") && err.contains("must be a domain-prefixed path"),
        "{err}"
    );
    let long = format!("example.com/{}", "x".repeat(60));
    let err = t.k.fails_stdin(&["create", "-f", "-"], &job("long", &long));
    assert!(err.contains("may not be more than 63 bytes"), "{err}");
    t.k.ok_stdin(
        &["create", "-f", "-"],
        &job("kueue", "example.com/multikueue"),
    );
    let err = t.k.fails(&[
        "patch",
        "job",
        "kueue",
        "--type=merge",
        "-p",
        r#"{"spec":{"managedBy":"example.com/other"}}"#,
    ]);
    assert!(
        err.contains("spec.managedBy") && err.contains("field is immutable"),
        "{err}"
    );
}

/// The per-index failure count of an Indexed Job's pod.
fn failure_count(p: &Pod) -> Option<String> {
    p.metadata
        .annotations
        .as_ref()?
        .get("batch.kubernetes.io/job-index-failure-count")
        .cloned()
}

#[test]
fn backoff_limit_per_index_fails_indexes_not_the_job() {
    let t = Test::start();
    let _c = job_controller(&t);
    t.k.ok_stdin(
        &["create", "-f", "-"],
        "apiVersion: batch/v1\nkind: Job\nmetadata: {name: per-index}\nspec:\n  completions: 4\n  parallelism: 4\n  completionMode: Indexed\n  backoffLimitPerIndex: 1\n  podFailurePolicy:\n    rules:\n    - action: FailIndex\n      onExitCodes: {operator: In, values: [42]}\n  template:\n    spec:\n      restartPolicy: Never\n      containers: [{name: main, image: busybox}]\n",
    );
    let by_index = |t: &Test| {
        let mut p = t.unfinished("per-index");
        p.sort_by_key(index_of);
        p
    };
    let pods = eventually("four pods", || {
        let p = by_index(&t);
        (p.len() == 4).then_some(p)
    });
    assert!(pods
        .iter()
        .all(|p| failure_count(p).as_deref() == Some("0")));
    let long_ago = Utc::now() - chrono::Duration::seconds(600);
    // Index 0 fails once: retried, its replacement carries the count.
    t.finish_pod(&pods[0], "Failed", 1, long_ago, json!([]));
    let retry = eventually("index 0 retried", || {
        t.unfinished("per-index")
            .into_iter()
            .find(|p| index_of(p) == "0")
    });
    assert_eq!(failure_count(&retry).as_deref(), Some("1"));
    // Index 1 exits 42: FailIndex, never retried. Index 0 fails again: past its limit.
    t.finish_pod(&pods[1], "Failed", 42, long_ago, json!([]));
    t.finish_pod(&retry, "Failed", 1, long_ago, json!([]));
    eventually("indexes 0 and 1 failed", || {
        let s = t.job("per-index").status?;
        (s.failed_indexes.as_deref() == Some("0,1") && s.failed == Some(3)).then_some(())
    });
    std::thread::sleep(Duration::from_secs(1));
    let left: Vec<String> = by_index(&t).iter().map(index_of).collect();
    assert_eq!(left, ["2", "3"], "failed indexes are not retried");
    // The other indexes succeed: the Job fails, with the failed indexes.
    for p in by_index(&t) {
        t.finish_pod(&p, "Succeeded", 0, Utc::now(), json!([]));
    }
    t.k.ok(&[
        "wait",
        "--for=condition=failed",
        "job/per-index",
        "--timeout=60s",
    ]);
    let j = t.job("per-index");
    assert_eq!(
        condition_of(&j, "Failed").map(|c| c.0).as_deref(),
        Some("FailedIndexes")
    );
    let s = j.status.unwrap();
    assert_eq!(s.completed_indexes.as_deref(), Some("2,3"));

    // maxFailedIndexes 0: the first failed index fails the Job.
    t.k.ok_stdin(
        &["create", "-f", "-"],
        "apiVersion: batch/v1\nkind: Job\nmetadata: {name: strict}\nspec:\n  completions: 3\n  parallelism: 3\n  completionMode: Indexed\n  backoffLimitPerIndex: 0\n  maxFailedIndexes: 0\n  template:\n    spec:\n      restartPolicy: Never\n      containers: [{name: main, image: busybox}]\n",
    );
    let p = eventually("a strict pod", || t.unfinished("strict").into_iter().next());
    t.finish_pod(&p, "Failed", 1, long_ago, json!([]));
    t.k.ok(&[
        "wait",
        "--for=condition=failed",
        "job/strict",
        "--timeout=60s",
    ]);
    let j = t.job("strict");
    assert_eq!(
        condition_of(&j, "Failed"),
        Some((
            "MaxFailedIndexesExceeded".into(),
            "Job has exceeded the specified maximal number of failed indexes".into()
        ))
    );
    eventually("the other pods deleted", || {
        t.unfinished("strict").is_empty().then_some(())
    });
}

#[test]
fn a_namespace_with_a_running_job_is_deleted_whole() {
    let t = Test::start();
    let _c = job_controller(&t);
    t.k.ok(&["create", "namespace", "batch"]);
    t.k.ok_stdin(
        &["create", "-n", "batch", "-f", "-"],
        "apiVersion: batch/v1\nkind: Job\nmetadata: {name: busy}\nspec:\n  completions: 4\n  parallelism: 2\n  template:\n    spec:\n      restartPolicy: Never\n      containers: [{name: c, image: busybox}]\n",
    );
    eventually("two tracked pods", || {
        let f = t.k.ok(&[
            "get",
            "pods",
            "-n",
            "batch",
            "-o",
            "jsonpath={.items[*].metadata.finalizers}",
        ]);
        (f.matches(FINALIZER).count() == 2).then_some(())
    });
    t.k.ok(&["delete", "namespace", "batch", "--wait=false"]);
    // The tracking finalizer never keeps the namespace terminating.
    eventually("the namespace gone", || {
        let out = t.k.run(&["get", "namespace", "batch"]);
        (!out.status.success()).then_some(())
    });
}
