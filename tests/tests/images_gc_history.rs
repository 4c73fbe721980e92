//! The learning GC policies on a real store: pulls and container starts build the use history
//! (`gc-history.json`) and, with a recorder attached, a recording the simulator loads; a GC
//! run with the `learned` policy reads that history and keeps the image that keeps coming back.

use std::sync::Arc;

use pea_images::clock::ManualClock;
use pea_images::gc::GcPolicy;
use pea_images::sim::recording::{self, Recorder};
use pea_images::sim::{self, SimConfig};
use pea_images::store::DiskSource;
use pea_images::{NoProgress, StoreOptions};
use pea_tests::fixtures::busybox::build_busybox_image;
use pea_tests::fixtures::{OciLayout, Registry};
use pea_tests::images::{client_config, open_store_with};
use pea_tests::privileged::{require_program, require_root};

const T0: u64 = 1_700_000_000;

#[test]
fn history_and_recording_follow_pulls_and_starts_and_learned_gc_reads_them() {
    require_root();
    require_program("skopeo");
    let tmp = tempfile::tempdir().unwrap();
    let layout = OciLayout::create(&tmp.path().join("layout")).unwrap();
    let registry = Registry::start().unwrap();
    for v in ["daily", "once", "never"] {
        build_busybox_image(&layout, v).unwrap();
        registry
            .push(&layout.skopeo_ref(v), &format!("bb:{v}"))
            .unwrap();
    }
    let host = registry.host();
    let clock = Arc::new(ManualClock::new(T0));
    let rec_path = tmp.path().join("recording.jsonl");
    let store = open_store_with(
        &tmp.path().join("store"),
        client_config(std::slice::from_ref(&host)),
        StoreOptions::default(),
        clock.clone(),
    )
    .with_recorder(Recorder::open(&rec_path).unwrap());
    let r = |v: &str| format!("{host}/bb:{v}");
    for (i, v) in ["daily", "once", "never"].into_iter().enumerate() {
        clock.set(T0 + 10 * i as u64);
        store.pull(&r(v), &NoProgress).unwrap();
    }
    clock.set(T0 + 30);
    store.container_started(&r("once"), Some("c-once")).unwrap();
    // "daily" runs every 100 s, ten times.
    for k in 0..10u64 {
        clock.set(T0 + 100 + 100 * k);
        store
            .container_started(&r("daily"), Some(&format!("c-daily-{k}")))
            .unwrap();
        clock.set(T0 + 150 + 100 * k);
        store.container_stopped(&format!("c-daily-{k}"));
    }
    let daily = store.find(&r("daily")).unwrap();
    let history = store.read_history().unwrap();
    let d = &history.images[daily.id.as_str()];
    assert_eq!(d.uses, 10);
    assert_eq!(d.gaps, [100; 9]);
    let layer = daily.layers[0].chain_id.as_str();
    assert_eq!(history.layers[layer].uses, 10);
    assert_eq!(history.layers[layer].uses_since_pull, 10);

    // The recording replays: 11 starts, durations from the stops, "once" never stopped.
    let trace = recording::load(&std::fs::read_to_string(&rec_path).unwrap()).unwrap();
    assert_eq!(trace.events.len(), 11);
    assert_eq!(trace.images.len(), 3, "pulls describe every image");
    assert_eq!(trace.events[0].t, 30);
    assert!(trace.events[1..].iter().all(|e| e.duration == 50));
    let total: u64 = trace.layer_sizes.values().sum();
    let replay = sim::simulate(
        &trace,
        &SimConfig {
            disk_bytes: total * 4,
            other_used: 0,
            gc_period_secs: 300,
            policy: GcPolicy::named("learned", &GcPolicy::default()).unwrap(),
        },
        "learned",
    );
    assert_eq!(
        (replay.requests, replay.hits, replay.failed_pulls),
        (11, 9, 0)
    );

    // A disk at 90 %: must get below 85 %. The learned policy keeps "daily" and frees at
    // least the must from the other two.
    clock.set(T0 + 1100);
    let size = |v: &str| store.image_size(&store.find(&r(v)).unwrap()).unwrap();
    let used: u64 = ["daily", "once", "never"].iter().map(|v| size(v)).sum();
    let capacity = used * 100 / 90;
    let learned = GcPolicy::named("learned", &GcPolicy::default()).unwrap();
    let report = store
        .gc(
            &learned,
            DiskSource::Fixed {
                capacity,
                other_used: 0,
            },
            &[],
        )
        .unwrap();
    let removed: Vec<&str> = report.plan.removals.iter().map(|x| x.id.as_str()).collect();
    assert!(!removed.is_empty(), "{:?}", report.plan);
    assert!(!removed.contains(&daily.id.as_str()), "{:?}", report.plan);
    assert!(
        report.plan.freed_bytes * 100 >= capacity * 5,
        "{:?}",
        report.plan
    );
    assert_eq!(report.plan.shortfall, None);
    // The run taught the history how long removed images had been idle.
    assert!(store.read_history().unwrap().evicted_idle_secs.is_some());
    assert!(store.find(&r("daily")).is_ok());
}

#[test]
fn gc_refuses_a_policy_it_does_not_know_and_per_layer_orders_need_layer_accounting() {
    let err = pea_images::gc::GcPolicy {
        accounting: pea_images::gc::Accounting::Image,
        order: pea_images::gc::Order::Learned,
        ..GcPolicy::default()
    }
    .validate()
    .unwrap_err();
    assert!(err.to_string().contains("needs layer accounting"), "{err}");
    assert!(GcPolicy::named("fifo", &GcPolicy::default()).is_none());
}
