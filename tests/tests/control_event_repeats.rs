//! The controllers' event writer against a real pea-control: an event repeating one already
//! written is counted on the existing object (client-go's event correlator), not written again.

use k8s_openapi::api::core::v1::{ConfigMap, Event};
use kube::api::{DeleteParams, ListParams};
use kube::Api;
use pea_controllers::events::{channel, reference};

use super::control_controllers::{eventually, Test};

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
