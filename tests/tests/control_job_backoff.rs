//! The Job controller's memory of failures and its per-sync limits, against a real pea-control
//! (the fixtures are control_controllers.rs's, the test writing pod status as a hollow kubelet):
//! the failure backoff kept per Job (kube's podBackoffStore) when the failed pods are gone, a
//! failed pod held for its index's replacement counted toward backoffLimit, and at most 500
//! finished pods recorded in `status.uncountedTerminatedPods` per sync (kube's
//! MaxUncountedPods).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{stream, StreamExt};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Event, Pod};
use k8s_openapi::chrono::{self, SubsecRound, Utc};
use kube::api::{ListParams, Patch, PatchParams, WatchEvent, WatchParams};
use kube::{Api, ResourceExt};
use serde_json::json;

use super::control_controllers::{condition_of, config, eventually, index_of, Controllers, Test};

const FINALIZER: &str = "batch.kubernetes.io/job-tracking";

fn job_controller(t: &Test) -> Controllers {
    let mut c = config("job");
    c.leader_elect = false;
    Controllers::start(&t.cp, c)
}

fn create_job(t: &Test, name: &str, yaml: &str, n: usize) -> Vec<Pod> {
    t.k.ok_stdin(&["create", "-f", "-"], yaml);
    eventually("the Job's pods", || {
        let p = t.unfinished(name);
        (p.len() == n).then_some(p)
    })
}

/// The events about `object`, as (type, reason, message).
pub(super) fn events_of(t: &Test, object: &str) -> Vec<(String, String, String)> {
    let api: Api<Event> = Api::namespaced(t.client.clone(), "default");
    let mut evs =
        t.rt.block_on(api.list(&ListParams::default()))
            .expect("list events")
            .items;
    evs.sort_by_key(|e| e.metadata.name.clone());
    evs.into_iter()
        .filter(|e| e.involved_object.name.as_deref() == Some(object))
        .map(|e| {
            (
                e.type_.unwrap_or_default(),
                e.reason.unwrap_or_default(),
                e.message.unwrap_or_default(),
            )
        })
        .collect()
}

#[test]
fn the_failure_backoff_outlives_the_deleted_failed_pods() {
    let t = Test::start();
    let _c = job_controller(&t);
    let pods = create_job(
        &t,
        "forgetful",
        "apiVersion: batch/v1\nkind: Job\nmetadata: {name: forgetful}\nspec:\n  backoffLimit: 5\n  template:\n    spec:\n      restartPolicy: Never\n      containers: [{name: c, image: busybox}]\n",
        1,
    );
    let name = pods[0].name_any();
    let failed_at = Utc::now();
    t.finish_pod(&pods[0], "Failed", 1, failed_at, json!([]));
    // Counted, its finalizer gone: nothing keeps the failed pod, and it is deleted.
    eventually("the failure counted and the pod released", || {
        let counted = t.job("forgetful").status?.failed == Some(1);
        let f =
            t.k.ok(&["get", "pod", &name, "-o", "jsonpath={.metadata.finalizers}"]);
        (counted && !f.contains(FINALIZER)).then_some(())
    });
    t.k.ok(&["delete", "pod", &name]);
    // The controller still waits kube's first 10 s after the failure (it recomputed the delay
    // from the failed pods that still exist, none, and replaced at once).
    let r = eventually("the replacement", || {
        t.unfinished("forgetful").into_iter().next()
    });
    let created = r.metadata.creation_timestamp.as_ref().unwrap().0;
    assert!(
        created >= failed_at.trunc_subsecs(0) + chrono::Duration::seconds(10),
        "replacement created at {created}, the failure at {failed_at}"
    );
    assert_eq!(t.job("forgetful").status.unwrap().failed, Some(1));
}

#[test]
fn a_failed_pod_held_for_its_replacement_counts_toward_the_backoff_limit() {
    let t = Test::start();
    let _c = job_controller(&t);
    // One retry per index, but no failure at all for the Job as a whole.
    let pods = create_job(
        &t,
        "strict",
        "apiVersion: batch/v1\nkind: Job\nmetadata: {name: strict}\nspec:\n  completionMode: Indexed\n  completions: 2\n  parallelism: 2\n  backoffLimit: 0\n  backoffLimitPerIndex: 1\n  template:\n    spec:\n      restartPolicy: Never\n      containers: [{name: c, image: busybox}]\n",
        2,
    );
    let p0 = pods.iter().find(|p| index_of(p) == "0").unwrap();
    // Finished a minute ago: the index's own backoff is over, so only the count stops a
    // replacement. The pod keeps its finalizer (its replacement would take its counts), and
    // kube counts it as failed meanwhile: 1 > backoffLimit 0.
    t.finish_pod(
        p0,
        "Failed",
        1,
        Utc::now() - chrono::Duration::seconds(60),
        json!([]),
    );
    eventually("the Job failed", || {
        let (reason, message) = condition_of(&t.job("strict"), "Failed")?;
        assert_eq!(reason, "BackoffLimitExceeded");
        assert_eq!(message, "Job has reached the specified backoff limit");
        Some(())
    });
    // The events are written in the order recorded: once the failure's is there, every pod
    // creation's is too. Two pods, no replacement for index 0.
    let evs = eventually("the failure event", || {
        let evs = events_of(&t, "strict");
        evs.iter()
            .any(|(ty, reason, _)| ty == "Warning" && reason == "BackoffLimitExceeded")
            .then_some(evs)
    });
    let created = evs
        .iter()
        .filter(|(_, reason, _)| reason == "SuccessfulCreate")
        .count();
    assert_eq!(created, 2, "no replacement for the failed index: {evs:?}");
}

/// Marks every pod in `pods` Succeeded, 16 at a time.
fn succeed_all(t: &Test, pods: &[Pod]) {
    let api: Api<Pod> = Api::namespaced(t.client.clone(), "default");
    let at = Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    t.rt.block_on(
        stream::iter(pods.iter().map(|p| {
            let (api, at) = (api.clone(), at.clone());
            async move {
                let patch = json!({"status": {"phase": "Succeeded", "containerStatuses": [{
                    "name": "c", "image": "busybox", "imageID": "", "ready": false,
                    "restartCount": 0,
                    "state": {"terminated": {"exitCode": 0, "finishedAt": at}}}]}});
                api.patch_status(&p.name_any(), &PatchParams::default(), &Patch::Merge(patch))
                    .await
                    .expect("finish pod");
            }
        }))
        .buffer_unordered(16)
        .collect::<Vec<()>>(),
    );
}

#[test]
fn at_most_500_finished_pods_are_recorded_per_sync() {
    const N: usize = 510;
    let t = Test::start();
    let c = job_controller(&t);
    t.k.ok_stdin(
        &["create", "-f", "-"],
        &format!("apiVersion: batch/v1\nkind: Job\nmetadata: {{name: wide}}\nspec:\n  completions: {N}\n  parallelism: {N}\n  template:\n    spec:\n      restartPolicy: Never\n      containers: [{{name: c, image: busybox}}]\n"),
    );
    // 510 creations on 2 shared cores: a longer bound than `eventually`'s.
    let deadline = Instant::now() + Duration::from_secs(240);
    let pods = loop {
        let p = t.unfinished("wide");
        if p.len() == N {
            break p;
        }
        assert!(Instant::now() < deadline, "{} of {N} pods created", p.len());
        std::thread::sleep(Duration::from_millis(500));
    };
    // Every pod finishes while the controller is away: its first sync sees all of them.
    drop(c);
    succeed_all(&t, &pods);
    // Every status the Job goes through, from a watch started before the controller returns.
    let most: Arc<Mutex<(usize, usize)>> = Arc::default();
    let watch = {
        let most = most.clone();
        let api: Api<Job> = Api::namespaced(t.client.clone(), "default");
        t.rt.spawn(async move {
            let mut s = api
                .watch(&WatchParams::default().fields("metadata.name=wide"), "0")
                .await
                .expect("watch")
                .boxed();
            while let Some(ev) = s.next().await {
                if let Ok(WatchEvent::Added(j) | WatchEvent::Modified(j)) = ev {
                    let u = j.status.and_then(|s| s.uncounted_terminated_pods);
                    let n = u.map_or(0, |u| {
                        u.succeeded.unwrap_or_default().len() + u.failed.unwrap_or_default().len()
                    });
                    let mut m = most.lock().unwrap();
                    m.0 = m.0.max(n);
                    m.1 += 1;
                }
            }
        })
    };
    eventually("the watch's first event", || {
        (most.lock().unwrap().1 > 0).then_some(())
    });
    let _c = job_controller(&t);
    t.k.ok(&[
        "wait",
        "--for=condition=complete",
        "job/wide",
        "--timeout=240s",
    ]);
    let s = t.job("wide").status.unwrap();
    assert_eq!(s.succeeded, Some(N as i32));
    assert!(s.uncounted_terminated_pods.is_none_or(|u| {
        u.succeeded.unwrap_or_default().is_empty() && u.failed.unwrap_or_default().is_empty()
    }));
    watch.abort();
    let (max, seen) = *most.lock().unwrap();
    assert!(
        max > 0 && max <= 500,
        "at most 500 uncounted pods at a time, saw {max} (in {seen} versions)"
    );
    eventually("every pod released", || {
        t.pods("job-name=wide")
            .iter()
            .all(|p| {
                !p.metadata
                    .finalizers
                    .iter()
                    .flatten()
                    .any(|f| f == FINALIZER)
            })
            .then_some(())
    });
}
