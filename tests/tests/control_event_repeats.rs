//! The controllers' event writer against a real pea-control: an event repeating one already
//! written is counted on the existing object (client-go's event correlator), not written again,
//! and a burst of similar events ends in one combined event.

use k8s_openapi::api::core::v1::{ConfigMap, Event};
use kube::api::{DeleteParams, ListParams};
use kube::{Api, ResourceExt};
use pea_controllers::events::{channel, reference};

use super::control_controllers::{config, eventually, Controllers, Test};

/// The Event objects about `object`.
fn events_about(t: &Test, object: &str) -> Vec<Event> {
    let api: Api<Event> = Api::namespaced(t.client.clone(), "default");
    t.rt.block_on(api.list(&ListParams::default()))
        .expect("list events")
        .items
        .into_iter()
        .filter(|e| e.involved_object.name.as_deref() == Some(object))
        .collect()
}

fn with_message<'a>(evs: &'a [Event], message: &str) -> Vec<&'a Event> {
    evs.iter()
        .filter(|e| e.message.as_deref() == Some(message))
        .collect()
}

#[test]
fn repeated_events_are_counted_on_one_object() {
    let t = Test::start();
    t.k.ok(&["create", "configmap", "talk"]);
    let cms: Api<ConfigMap> = Api::namespaced(t.client.clone(), "default");
    let cm = t.rt.block_on(cms.get("talk")).expect("configmap");
    let (recorder, writer) = channel(t.client.clone(), pea_controllers::system_clock());
    let recorder = recorder.for_controller("test-controller", &t.client);
    let writer = t.rt.spawn(writer.run());
    for _ in 0..3 {
        recorder.warning(reference(&cm), "Flaky", "it failed".into());
    }
    recorder.normal(reference(&cm), "Flaky", "it worked".into());
    let failed = eventually("one event counted 3 times", || {
        let evs = events_about(&t, "talk");
        let worked = with_message(&evs, "it worked");
        let failed = with_message(&evs, "it failed");
        (worked.len() == 1 && failed.len() == 1 && failed[0].count == Some(3)).then(|| {
            assert_eq!(worked[0].count, Some(1), "another message: another event");
            failed[0].clone()
        })
    });
    let (first, last) = (
        failed.first_timestamp.clone().unwrap().0,
        failed.last_timestamp.clone().unwrap().0,
    );
    assert!(first <= last, "first {first}, last {last}");
    // Gone (as after the API server's event TTL): the next repeat makes it again, counting on.
    let api: Api<Event> = Api::namespaced(t.client.clone(), "default");
    t.rt.block_on(api.delete(
        &failed.metadata.name.clone().unwrap(),
        &DeleteParams::default(),
    ))
    .expect("delete event");
    recorder.warning(reference(&cm), "Flaky", "it failed".into());
    eventually("the event made again with count 4", || {
        let evs = events_about(&t, "talk");
        let failed = with_message(&evs, "it failed");
        (failed.len() == 1 && failed[0].count == Some(4)).then_some(())
    });
    writer.abort();
}

/// client-go's aggregation through a real controller: a ReplicaSet of 12 records 12
/// SuccessfulCreate events with distinct messages within seconds; from the 10th on they are
/// one combined event, counted on.
#[test]
fn a_controllers_burst_of_similar_events_ends_in_one_combined_event() {
    let t = Test::start();
    let mut c = config("replicaset");
    c.leader_elect = false;
    let _c = Controllers::start(&t.cp, c);
    t.k.ok_stdin(
        &["create", "-f", "-"],
        "apiVersion: apps/v1\nkind: ReplicaSet\nmetadata: {name: burst}\nspec:\n  replicas: 12\n  selector: {matchLabels: {app: burst}}\n  template:\n    metadata: {labels: {app: burst}}\n    spec:\n      containers: [{name: c, image: busybox}]\n",
    );
    let (single, combined) = eventually("9 events and one combined from 3", || {
        let evs = events_about(&t, "burst");
        let (combined, single): (Vec<Event>, Vec<Event>) = evs
            .into_iter()
            .filter(|e| e.reason.as_deref() == Some("SuccessfulCreate"))
            .partition(|e| {
                e.message
                    .as_deref()
                    .is_some_and(|m| m.starts_with("(combined from similar events): "))
            });
        (single.len() == 9 && combined.len() == 1 && combined[0].count == Some(3))
            .then(|| (single, combined[0].clone()))
    });
    let pods = t.pods("app=burst");
    assert_eq!(pods.len(), 12, "every pod is made all the same");
    for e in &single {
        let m = e.message.as_deref().unwrap_or_default();
        assert!(m.starts_with("Created pod: burst-"), "{m}");
        assert_eq!(e.count, Some(1), "{m}");
    }
    // The combined event names the last pod created, one none of the single events names.
    let last = combined.message.as_deref().unwrap_or_default();
    let last_pod = last.trim_start_matches("(combined from similar events): Created pod: ");
    assert!(pods.iter().any(|p| p.name_any() == last_pod), "{last}");
    assert!(
        !single
            .iter()
            .any(|e| e.message.as_deref() == Some(&format!("Created pod: {last_pod}"))),
        "{last}"
    );
}
