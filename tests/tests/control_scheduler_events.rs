//! The scheduler's events.k8s.io/v1 events (client-go's `tools/events` recorder): reporting
//! controller and instance, action and note, and repeats about the same pod version recorded
//! as a series on one Event instead of new objects (the fixtures are control_scheduler.rs's).

use serde_json::{json, Value};

use super::control_scheduler::{
    cluster, cpu_spec, create_pod, hollow_node, wait_for, SchedulerProcess,
};

/// The events.k8s.io/v1 FailedScheduling events about `pod`.
fn failed_scheduling_v1(k: &pea_tests::control::Kubectl, pod: &str) -> Vec<Value> {
    let list: Value =
        serde_json::from_str(&k.ok(&["get", "events.v1.events.k8s.io", "-o", "json"]))
            .expect("events json");
    list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["regarding"]["name"] == pod && e["reason"] == "FailedScheduling")
        .cloned()
        .collect()
}

#[test]
fn repeated_failures_become_a_series_of_events_k8s_io_v1() {
    let (cp, dir) = cluster();
    let k = cp.kubectl();
    hollow_node(&k, "n1", "1", "2Gi", json!({}), json!([]));
    let s = SchedulerProcess::start(
        &cp.kubeconfig,
        dir.path(),
        "sched",
        json!({"leaderElect": false, "podInitialBackoffSecs": 1, "podMaxBackoffSecs": 1}),
    );
    create_pod(&k, "too-big", cpu_spec("4"));
    let first = wait_for(30, || {
        failed_scheduling_v1(&k, "too-big").into_iter().next()
    })
    .unwrap_or_else(|| panic!("no FailedScheduling event; log:\n{}", s.log()));
    assert_eq!(first["reportingController"], "default-scheduler", "{first}");
    assert!(
        first["reportingInstance"]
            .as_str()
            .is_some_and(|i| i.starts_with("default-scheduler-")),
        "{first}"
    );
    assert_eq!(first["action"], "Scheduling", "{first}");
    assert_eq!(first["type"], "Warning", "{first}");
    assert!(
        first["note"]
            .as_str()
            .is_some_and(|n| n.starts_with("0/1 nodes are available: 1 Insufficient cpu.")),
        "{first}"
    );
    assert!(first["eventTime"].is_string(), "{first}");

    // Node changes make the scheduler try again. The first failure wrote the pod's
    // PodScheduled condition (a new resourceVersion: a new object reference, so a new event);
    // from then on the pod stays the same, and its failures count on one Event.
    let mut round = 0;
    let series = wait_for(60, || {
        round += 1;
        k.ok(&[
            "label",
            "node",
            "n1",
            &format!("round={round}"),
            "--overwrite",
        ]);
        std::thread::sleep(std::time::Duration::from_millis(1500));
        failed_scheduling_v1(&k, "too-big")
            .into_iter()
            .find(|e| e["series"]["count"].as_i64().is_some_and(|c| c >= 2))
    })
    .unwrap_or_else(|| {
        panic!(
            "no series after {round} node changes: {:#?}\nlog:\n{}",
            failed_scheduling_v1(&k, "too-big"),
            s.log()
        )
    });
    assert!(series["series"]["lastObservedTime"].is_string(), "{series}");
    let all = failed_scheduling_v1(&k, "too-big");
    assert!(
        all.len() < round + 1,
        "{} failures made {} events: repeats were not aggregated: {all:#?}",
        round + 1,
        all.len()
    );
    // The core/v1 view of the same Event carries the series too.
    let name = series["metadata"]["name"].as_str().unwrap();
    let core: Value =
        serde_json::from_str(&k.ok(&["get", "event", name, "-o", "json"])).expect("event json");
    assert_eq!(core["series"]["count"], series["series"]["count"], "{core}");
    assert_eq!(core["involvedObject"]["name"], "too-big", "{core}");
}
