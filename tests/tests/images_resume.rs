//! Crash safety: a pull killed mid-way (SIGKILL, no cleanup) leaves only temporaries; the next
//! open repairs them and the next pull resumes the partial blobs with Range requests. A bad
//! partial is discarded and fetched again. Concurrent pulls download each blob once.

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pea_images::{LayerAction, NoProgress, Store, StoreOptions};
use pea_tests::fixtures::multilayer::{build_multilayer_image, MultiLayerSpec};
use pea_tests::fixtures::{OciLayout, Registry};
use pea_tests::images::{client_config, mount_image, open_store};
use pea_tests::privileged::{require_program, require_root};

// The name libtest knows it by in the `images` binary (module::function).
const CHILD: &str = "images_resume::child_pull_for_the_kill_test";

/// Not a test: the body of the child process [`a_pull_killed_midway_is_repaired_and_resumed`]
/// kills. Run only through that test (it is ignored otherwise).
#[test]
#[ignore = "child process of a_pull_killed_midway_is_repaired_and_resumed"]
fn child_pull_for_the_kill_test() {
    let root = std::env::var("PEA_CHILD_ROOT").expect("run by the kill test");
    let host = std::env::var("PEA_CHILD_HOST").unwrap();
    let image = std::env::var("PEA_CHILD_IMAGE").unwrap();
    let mut cfg = client_config(&[host]);
    cfg.rate_limit = Some(4 << 20);
    let store = open_store(std::path::Path::new(&root), cfg);
    store.pull(&image, &NoProgress).unwrap();
    panic!("the pull finished before the parent killed it");
}

fn spec() -> MultiLayerSpec {
    MultiLayerSpec {
        file_size: 4 << 20,
        files_per_layer: 2,
        level: 1,
        seed: 11,
    }
}

fn partial_bytes(root: &std::path::Path) -> u64 {
    std::fs::read_dir(root.join("ingest"))
        .map(|rd| {
            rd.flatten()
                .filter(|e| e.file_name().to_string_lossy().ends_with(".partial"))
                .map(|e| e.metadata().map(|m| m.len()).unwrap_or(0))
                .sum()
        })
        .unwrap_or(0)
}

#[test]
fn a_pull_killed_midway_is_repaired_and_resumed() {
    require_root();
    require_program("skopeo");
    let tmp = tempfile::tempdir().unwrap();
    let layout = OciLayout::create(&tmp.path().join("layout")).unwrap();
    let (info, expected) = build_multilayer_image(&layout, "big", &spec()).unwrap();
    let registry = Registry::start().unwrap();
    registry.push(&layout.skopeo_ref("big"), "big:v1").unwrap();
    let host = registry.host();
    let image = format!("{host}/big:v1");
    let root = tmp.path().join("store");

    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--ignored", "--exact", CHILD, "--nocapture"])
        .env("PEA_CHILD_ROOT", &root)
        .env("PEA_CHILD_HOST", &host)
        .env("PEA_CHILD_IMAGE", &image)
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while partial_bytes(&root) < 6 << 20 {
        assert!(Instant::now() < deadline, "the child never got going");
        assert!(
            child.try_wait().unwrap().is_none(),
            "the child exited early"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();

    let tmp_unpacks: Vec<_> = std::fs::read_dir(root.join("snapshots"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(".tmp-"))
        .collect();
    assert!(
        !tmp_unpacks.is_empty(),
        "the kill came too late to test anything"
    );
    assert!(!root.join("images.json").exists());

    let cfg = client_config(std::slice::from_ref(&host));
    let (store, repair) =
        Store::open(&root, pea_images::Client::new(cfg), StoreOptions::default()).unwrap();
    assert_eq!(
        repair.removed_unpacks.len(),
        tmp_unpacks.len(),
        "{repair:?}"
    );
    let resumable: u64 = repair.kept_partials.iter().map(|(_, n)| n).sum();
    assert!(resumable >= 6 << 20, "{repair:?}");

    let report = store.pull(&image, &NoProgress).unwrap();
    let resumed: u64 = report
        .layers
        .iter()
        .map(|(_, a)| match a {
            LayerAction::Downloaded { resumed_from, .. } => *resumed_from,
            _ => 0,
        })
        .sum();
    let total: u64 = info.layers.iter().map(|l| l.size).sum();
    assert!(resumed > 0, "{:?}", report.layers);
    assert_eq!(report.downloaded_bytes, total - resumed);
    let rootfs = mount_image(&store, &image, &tmp.path().join("c"));
    let verdict = expected.verify(rootfs.target());
    rootfs.unmount().unwrap();
    verdict.unwrap_or_else(|e| panic!("{}", e.join("\n")));
    assert_eq!(
        std::fs::read_dir(root.join("ingest"))
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with(".partial"))
            .count(),
        0
    );
}

#[test]
fn a_corrupt_partial_is_discarded_and_fetched_again() {
    require_program("skopeo");
    let tmp = tempfile::tempdir().unwrap();
    let layout = OciLayout::create(&tmp.path().join("layout")).unwrap();
    let small = MultiLayerSpec {
        file_size: 200 << 10,
        ..spec()
    };
    let (info, _) = build_multilayer_image(&layout, "v1", &small).unwrap();
    let registry = Registry::start().unwrap();
    registry.push(&layout.skopeo_ref("v1"), "m:v1").unwrap();
    let host = registry.host();
    let root = tmp.path().join("store");
    std::fs::create_dir_all(root.join("ingest")).unwrap();
    let top = &info.layers[2];
    let hex = top.digest.strip_prefix("sha256:").unwrap();
    std::fs::write(
        root.join("ingest").join(format!("{hex}.partial")),
        vec![0x1f; 5000],
    )
    .unwrap();
    let store = open_store(&root, client_config(std::slice::from_ref(&host)));
    let report = store.pull(&format!("{host}/m:v1"), &NoProgress).unwrap();
    assert_eq!(
        report.downloaded_bytes,
        info.layers.iter().map(|l| l.size).sum::<u64>()
    );
}

#[test]
fn concurrent_pulls_of_images_sharing_layers_download_each_blob_once() {
    require_root();
    require_program("skopeo");
    let tmp = tempfile::tempdir().unwrap();
    let layout = OciLayout::create(&tmp.path().join("layout")).unwrap();
    let s = MultiLayerSpec {
        file_size: 1 << 20,
        ..spec()
    };
    let (a, _) = build_multilayer_image(&layout, "a", &s).unwrap();
    let b = layout
        .add_image("b", &a.layers[..2], &Default::default())
        .unwrap();
    let registry = Registry::start().unwrap();
    registry.push(&layout.skopeo_ref("a"), "r:a").unwrap();
    registry.push(&layout.skopeo_ref("b"), "r:b").unwrap();
    let host = registry.host();
    let root = tmp.path().join("store");
    // Separate store handles, as separate processes would have; they share only the disk.
    let stores: Vec<Arc<Store>> = (0..4)
        .map(|_| {
            Arc::new(open_store(
                &root,
                client_config(std::slice::from_ref(&host)),
            ))
        })
        .collect();
    let handles: Vec<_> = stores
        .iter()
        .enumerate()
        .map(|(i, st)| {
            let st = st.clone();
            let image = format!("{host}/r:{}", if i % 2 == 0 { "a" } else { "b" });
            std::thread::spawn(move || st.pull(&image, &NoProgress).unwrap())
        })
        .collect();
    let reports: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let downloaded: u64 = reports.iter().map(|r| r.downloaded_bytes).sum();
    let total: u64 = a.layers.iter().map(|l| l.size).sum();
    assert_eq!(downloaded, total, "{reports:#?}");
    assert_eq!(stores[0].list().unwrap().len(), 2);
    assert_eq!(b.layers.len(), 2);
}

#[test]
fn a_connection_broken_mid_blob_is_resumed_with_range_in_the_same_pull() {
    require_root();
    require_program("skopeo");
    let tmp = tempfile::tempdir().unwrap();
    let layout = OciLayout::create(&tmp.path().join("layout")).unwrap();
    let s = MultiLayerSpec {
        file_size: 1 << 20,
        files_per_layer: 1,
        ..spec()
    };
    let (info, expected) = build_multilayer_image(&layout, "v1", &s).unwrap();
    let registry = Registry::start().unwrap();
    registry.push(&layout.skopeo_ref("v1"), "m:v1").unwrap();
    let proxy =
        pea_tests::images::flaky_proxy::FlakyProxy::start(registry.addr(), 300 << 10, 2).unwrap();
    let host = proxy.host();
    let store = open_store(
        &tmp.path().join("store"),
        client_config(std::slice::from_ref(&host)),
    );
    let report = store.pull(&format!("{host}/m:v1"), &NoProgress).unwrap();
    assert_eq!(proxy.cuts.load(std::sync::atomic::Ordering::SeqCst), 2);
    let total: u64 = info.layers.iter().map(|l| l.size).sum();
    assert_eq!(report.downloaded_bytes, total);
    let ranged = proxy
        .requests
        .lock()
        .unwrap()
        .iter()
        .filter(|r| r.to_ascii_lowercase().contains("range: bytes="))
        .count();
    assert_eq!(ranged, 2, "each broken body resumed once with Range");
    let rootfs = mount_image(&store, &format!("{host}/m:v1"), &tmp.path().join("c"));
    let verdict = expected.verify(rootfs.target());
    rootfs.unmount().unwrap();
    verdict.unwrap_or_else(|e| panic!("{}", e.join("\n")));
}

#[test]
fn a_crash_between_blob_and_snapshot_unpacks_from_the_stored_blob() {
    require_root();
    require_program("skopeo");
    let tmp = tempfile::tempdir().unwrap();
    let layout = OciLayout::create(&tmp.path().join("layout")).unwrap();
    let s = MultiLayerSpec {
        file_size: 256 << 10,
        files_per_layer: 1,
        ..spec()
    };
    let (_, expected) = build_multilayer_image(&layout, "v1", &s).unwrap();
    let registry = Registry::start().unwrap();
    registry.push(&layout.skopeo_ref("v1"), "m:v1").unwrap();
    let host = registry.host();
    let root = tmp.path().join("store");
    let image = format!("{host}/m:v1");
    let store = open_store(&root, client_config(std::slice::from_ref(&host)));
    store.pull(&image, &NoProgress).unwrap();
    // The state a kill leaves after the blobs were renamed into place but before the
    // snapshots and the image record were: verified blobs, an unpack directory in progress.
    for e in std::fs::read_dir(root.join("snapshots")).unwrap().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        std::fs::rename(e.path(), root.join(format!("snapshots/.tmp-{name}-1-1"))).unwrap();
    }
    std::fs::remove_file(root.join("images.json")).unwrap();
    drop(store);

    let (store, repair) = Store::open(
        &root,
        pea_images::Client::new(client_config(std::slice::from_ref(&host))),
        StoreOptions::default(),
    )
    .unwrap();
    assert_eq!(repair.removed_unpacks.len(), 3);
    drop(registry); // nothing may be downloaded now
    let report = store.pull(&image, &NoProgress).unwrap_err();
    // The manifest still has to come from the registry, which is gone: a clear error.
    assert!(report.to_string().contains("m/manifests/v1"), "{report}");
    let registry = Registry::start().unwrap();
    registry.push(&layout.skopeo_ref("v1"), "m:v1").unwrap();
    let host = registry.host();
    let store = open_store(&root, client_config(std::slice::from_ref(&host)));
    let image = format!("{host}/m:v1");
    let report = store.pull(&image, &NoProgress).unwrap();
    assert_eq!(report.downloaded_bytes, 0);
    assert!(
        report
            .layers
            .iter()
            .all(|(_, a)| *a == LayerAction::FromLocalBlob),
        "{:?}",
        report.layers
    );
    let rootfs = mount_image(&store, &image, &tmp.path().join("c"));
    let verdict = expected.verify(rootfs.target());
    rootfs.unmount().unwrap();
    verdict.unwrap_or_else(|e| panic!("{}", e.join("\n")));
}

#[test]
fn prune_during_a_pull_never_removes_snapshots_the_pull_is_about_to_record() {
    require_root();
    require_program("skopeo");
    let tmp = tempfile::tempdir().unwrap();
    let layout = OciLayout::create(&tmp.path().join("layout")).unwrap();
    let mut w = layout.layer_writer(1).unwrap();
    pea_tests::fixtures::layer::TreeSink::file(&mut w, "small", 0o644, b"done early").unwrap();
    let small = layout.commit_layer(w.finish().unwrap()).unwrap();
    let mut w = layout.layer_writer(1).unwrap();
    w.file_from_reader(
        "big",
        0o644,
        6 << 20,
        pea_tests::fixtures::layer::PseudoRandom::new(5),
    )
    .unwrap();
    let big = layout.commit_layer(w.finish().unwrap()).unwrap();
    layout
        .add_image("v1", &[small, big], &Default::default())
        .unwrap();
    let registry = Registry::start().unwrap();
    registry.push(&layout.skopeo_ref("v1"), "p:v1").unwrap();
    let host = registry.host();
    let root = tmp.path().join("store");
    let mut cfg = client_config(std::slice::from_ref(&host));
    cfg.rate_limit = Some(4 << 20);
    let puller = Arc::new(open_store(&root, cfg));
    let pruner = open_store(&root, client_config(std::slice::from_ref(&host)));
    let image = format!("{host}/p:v1");
    let handle = {
        let (puller, image) = (puller.clone(), image.clone());
        std::thread::spawn(move || puller.pull(&image, &NoProgress))
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut prunes = 0;
    while !handle.is_finished() && Instant::now() < deadline {
        pruner.prune().unwrap();
        prunes += 1;
        std::thread::sleep(Duration::from_millis(5));
    }
    handle.join().unwrap().unwrap();
    assert!(
        prunes > 10,
        "the pull finished before prune had a chance ({prunes})"
    );
    let lowers = pruner.lower_dirs(&image).unwrap();
    assert_eq!(
        std::fs::read(lowers[1].join("small")).unwrap(),
        b"done early"
    );
    let rec = pruner.find(&image).unwrap();
    for d in [
        &rec.id,
        &rec.manifest_digest,
        &rec.layers[0].digest,
        &rec.layers[1].digest,
    ] {
        assert!(
            pruner.blob_path(d).exists(),
            "blob {d} was pruned during the pull"
        );
    }
}
