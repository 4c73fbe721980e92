//! Image GC on a real store with an injected clock: kubelet order (LRU, ties by first seen),
//! thresholds (high 85 %, down to low 80 %), minimum age, maximum age, pinned and in-use images
//! kept, and freed bytes counted per layer when images share layers.

use std::sync::Arc;

use pea_images::clock::ManualClock;
use pea_images::gc::{GcPolicy, Reason};
use pea_images::store::DiskSource;
use pea_images::{NoProgress, Store, StoreOptions};
use pea_tests::fixtures::busybox::build_busybox_image;
use pea_tests::fixtures::layout::ImageDefaults;
use pea_tests::fixtures::multilayer::{build_multilayer_image, MultiLayerSpec};
use pea_tests::fixtures::{OciLayout, Registry};
use pea_tests::images::{client_config, open_store_with};
use pea_tests::privileged::{require_program, require_root};

const T0: u64 = 1_700_000_000;

fn names(store: &Store) -> Vec<String> {
    let mut v: Vec<String> = store
        .list()
        .unwrap()
        .into_iter()
        .flat_map(|i| i.names.into_iter())
        .map(|n| n.rsplit(':').next().unwrap().to_string())
        .collect();
    v.sort();
    v
}

#[test]
fn gc_follows_the_kubelet_policy_with_an_injected_clock() {
    require_root();
    require_program("skopeo");
    let tmp = tempfile::tempdir().unwrap();
    let layout = OciLayout::create(&tmp.path().join("layout")).unwrap();
    let registry = Registry::start().unwrap();
    for v in ["v1", "v2", "v3", "v4", "v5"] {
        build_busybox_image(&layout, v).unwrap();
        registry
            .push(&layout.skopeo_ref(v), &format!("bb:{v}"))
            .unwrap();
    }
    let host = registry.host();
    let clock = Arc::new(ManualClock::new(T0));
    let store = open_store_with(
        &tmp.path().join("store"),
        client_config(std::slice::from_ref(&host)),
        StoreOptions::default(),
        clock.clone(),
    );
    let r = |v: &str| format!("{host}/bb:{v}");
    for (v, at) in [("v1", 0), ("v2", 10), ("v3", 20), ("v4", 30), ("v5", 190)] {
        clock.set(T0 + at);
        store.pull(&r(v), &NoProgress).unwrap();
    }
    clock.set(T0 + 50);
    store.mark_used(&r("v3")).unwrap();
    clock.set(T0 + 100);
    store.mark_used(&r("v1")).unwrap();
    store.mark_used(&r("v2")).unwrap();
    store.set_pinned(&r("v3"), true).unwrap();
    clock.set(T0 + 200);

    // LRU: v4 (30), v3 (50, pinned), v1 (100, first seen 0), v2 (100, first seen 10), v5 (young).
    let size = |v: &str| store.image_size(&store.find(&r(v)).unwrap()).unwrap();
    let total: u64 = ["v1", "v2", "v3", "v4", "v5"].iter().map(|v| size(v)).sum();
    let want_freed = size("v4") + size("v1") / 2;
    let capacity = 4 * total;
    let available = capacity * 20 / 100 - want_freed;
    let disk = DiskSource::Fixed {
        capacity,
        other_used: capacity - available - total,
    };
    let policy = GcPolicy::default();

    // Below the high threshold nothing goes.
    let calm = DiskSource::Fixed {
        capacity: total * 100,
        other_used: 0,
    };
    assert!(store
        .gc(&policy, calm, &[])
        .unwrap()
        .plan
        .removals
        .is_empty());

    let tag_of: std::collections::HashMap<String, &str> = ["v1", "v2", "v3", "v4", "v5"]
        .into_iter()
        .map(|v| (store.find(&r(v)).unwrap().id.to_string(), v))
        .collect();
    let report = store.gc(&policy, disk, &[]).unwrap();
    let removed: Vec<&str> = report.plan.removals.iter().map(|x| tag_of[&x.id]).collect();
    assert_eq!(report.plan.bytes_to_free, want_freed);
    assert!(report.plan.usage_percent >= 85, "{:?}", report.plan);
    assert_eq!(removed, ["v4", "v1"], "{:?}", report.plan);
    assert_eq!(report.plan.shortfall, None);
    assert_eq!(report.plan.freed_bytes, size_removed(&report));
    assert_eq!(names(&store), ["v2", "v3", "v5"]);
    assert_eq!(report.pruned.snapshots, 2);

    // Max age: v2 unused for 400 s > 300 goes even without disk pressure; v5 is in use, v3 pinned.
    clock.set(T0 + 500);
    let aged = GcPolicy {
        max_age_secs: Some(300),
        ..GcPolicy::default()
    };
    let report = store.gc(&aged, calm, &[r("v5")]).unwrap();
    assert_eq!(report.plan.removals.len(), 1, "{:?}", report.plan);
    assert_eq!(report.plan.removals[0].reason, Reason::MaxAge);
    assert_eq!(names(&store), ["v3", "v5"]);
}

fn size_removed(report: &pea_images::store::GcReport) -> u64 {
    report.plan.removals.iter().map(|r| r.freed_bytes).sum()
}

#[test]
fn freed_bytes_are_counted_per_layer_when_images_share_layers() {
    require_root();
    require_program("skopeo");
    let tmp = tempfile::tempdir().unwrap();
    let layout = OciLayout::create(&tmp.path().join("layout")).unwrap();
    let spec = MultiLayerSpec {
        file_size: 512 << 10,
        files_per_layer: 1,
        level: 1,
        seed: 3,
    };
    let (a, _) = build_multilayer_image(&layout, "a", &spec).unwrap();
    let (c, _) = build_multilayer_image(&layout, "c", &MultiLayerSpec { seed: 4, ..spec }).unwrap();
    layout
        .add_image(
            "b",
            &[
                a.layers[0].clone(),
                a.layers[1].clone(),
                c.layers[2].clone(),
            ],
            &ImageDefaults::default(),
        )
        .unwrap();
    let registry = Registry::start().unwrap();
    registry.push(&layout.skopeo_ref("a"), "app:a").unwrap();
    registry.push(&layout.skopeo_ref("b"), "app:b").unwrap();
    let host = registry.host();
    let clock = Arc::new(ManualClock::new(T0));
    let store = open_store_with(
        &tmp.path().join("store"),
        client_config(std::slice::from_ref(&host)),
        StoreOptions::default(),
        clock.clone(),
    );
    store.pull(&format!("{host}/app:a"), &NoProgress).unwrap();
    clock.set(T0 + 10);
    store.pull(&format!("{host}/app:b"), &NoProgress).unwrap();
    clock.set(T0 + 1000);
    let img_a = store.find(&format!("{host}/app:a")).unwrap();
    let img_b = store.find(&format!("{host}/app:b")).unwrap();
    let top_a = store.layer_bytes(&img_a.layers[2]).unwrap();
    let top_b = store.layer_bytes(&img_b.layers[2]).unwrap();
    let size_a = store.image_size(&img_a).unwrap();
    // Disk pressure asking for a bit more than a's own top layer.
    let total = size_a + top_b;
    let want = top_a + 1;
    let capacity = 2 * total;
    let disk = DiskSource::Fixed {
        capacity,
        other_used: capacity - (capacity * 20 / 100 - want) - total,
    };
    // The kubelet credits a with its whole size and stops; really only its top layer is freed.
    let kubelet = store.plan_gc(&GcPolicy::kubelet(), disk, &[]).unwrap();
    assert_eq!(kubelet.removals.len(), 1);
    assert_eq!(kubelet.removals[0].counted_bytes, size_a);
    assert_eq!(kubelet.removals[0].freed_bytes, top_a);
    // Layer-aware: a frees its top layer only, not enough; b goes too and frees the rest.
    let layered = store.gc(&GcPolicy::default(), disk, &[]).unwrap();
    assert_eq!(layered.plan.removals.len(), 2, "{:?}", layered.plan);
    assert_eq!(layered.plan.removals[0].freed_bytes, top_a);
    assert_eq!(layered.plan.freed_bytes, total);
    assert!(store.list().unwrap().is_empty());
    assert_eq!(
        std::fs::read_dir(store.root().join("snapshots"))
            .unwrap()
            .count(),
        0
    );
}
