//! Hostile and damaged layers: every attack is refused with an error naming it, nothing
//! appears outside the store, and no partial snapshot, blob or image record is left.

use pea_images::unpack::UnpackOptions;
use pea_images::{NoProgress, StoreOptions};
use pea_tests::fixtures::hostile::{build_hostile_images, Hostile, HostileSpec};
use pea_tests::fixtures::multilayer::{build_multilayer_image, MultiLayerSpec};
use pea_tests::fixtures::{OciLayout, Registry};
use pea_tests::images::{
    client_config, list_tree, open_store, open_store_with, registry_blob_file,
};
use pea_tests::privileged::{require_program, require_root};
use std::sync::Arc;

/// The store is clean: no snapshots, no temporaries, no partial downloads, no layer blobs.
fn assert_clean(root: &std::path::Path) {
    let snaps = list_tree(&root.join("snapshots"));
    assert!(snaps.is_empty(), "snapshots left: {snaps:?}");
    let partials: Vec<_> = list_tree(&root.join("ingest"))
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "partial"))
        .collect();
    assert!(partials.is_empty(), "partial downloads left: {partials:?}");
}

#[test]
fn hostile_layers_are_refused_and_nothing_escapes() {
    require_root();
    require_program("skopeo");
    let tmp = tempfile::tempdir().unwrap();
    let outside = tmp.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    std::fs::write(outside.join("victim"), b"host secret").unwrap();
    let layout = OciLayout::create(&tmp.path().join("layout")).unwrap();
    let images = build_hostile_images(
        &layout,
        &HostileSpec {
            outside: outside.clone(),
            bomb_bytes: 64 << 20,
        },
    )
    .unwrap();
    let registry = Registry::start().unwrap();
    for (attack, _) in &images {
        registry
            .push(
                &layout.skopeo_ref(attack.tag()),
                &format!("hostile:{}", attack.tag()),
            )
            .unwrap();
    }
    let host = registry.host();
    let root = tmp.path().join("store");
    let opts = StoreOptions {
        unpack: UnpackOptions {
            allow_devices: false,
            max_layer_bytes: 8 << 20,
        },
        ..Default::default()
    };
    let store = open_store_with(
        &root,
        client_config(std::slice::from_ref(&host)),
        opts,
        Arc::new(pea_images::clock::SystemClock),
    );
    for (attack, _) in &images {
        let err = store
            .pull(&format!("{host}/hostile:{}", attack.tag()), &NoProgress)
            .expect_err(&format!("{attack:?} was accepted"))
            .to_string();
        let want = match attack {
            Hostile::DotDot => "\"..\" component",
            Hostile::Absolute => "absolute path",
            Hostile::SymlinkEscape | Hostile::RelativeSymlinkEscape => "is a symlink",
            Hostile::HardlinkEscape => "hard link target",
            Hostile::DeviceNode => "device nodes are refused",
            Hostile::Bomb => "exceeds the cap",
        };
        assert!(err.contains(want), "{attack:?}: {err}");
        assert!(
            err.contains("escapes")
                || !matches!(
                    attack,
                    Hostile::DotDot
                        | Hostile::Absolute
                        | Hostile::SymlinkEscape
                        | Hostile::RelativeSymlinkEscape
                        | Hostile::HardlinkEscape
                ),
            "{attack:?}: {err}"
        );
        assert_clean(&root);
    }
    let escaped = list_tree(&outside);
    assert_eq!(
        escaped,
        vec![outside.join("victim")],
        "files appeared outside"
    );
    assert_eq!(
        std::fs::read(outside.join("victim")).unwrap(),
        b"host secret"
    );
    assert!(store.list().unwrap().is_empty());

    // With devices allowed (and root), the device node is created inside the snapshot only.
    let store = open_store_with(
        &tmp.path().join("store-dev"),
        client_config(std::slice::from_ref(&host)),
        StoreOptions {
            unpack: UnpackOptions {
                allow_devices: true,
                ..Default::default()
            },
            ..Default::default()
        },
        Arc::new(pea_images::clock::SystemClock),
    );
    store
        .pull(&format!("{host}/hostile:device-node"), &NoProgress)
        .unwrap();
    let lower = &store
        .lower_dirs(&format!("{host}/hostile:device-node"))
        .unwrap()[0];
    use std::os::unix::fs::FileTypeExt;
    let ft = std::fs::symlink_metadata(lower.join("dev/evil-mem"))
        .unwrap()
        .file_type();
    assert!(ft.is_char_device());
    assert!(lower.join("harmless").is_file());
}

fn small() -> MultiLayerSpec {
    MultiLayerSpec {
        file_size: 256 << 10,
        files_per_layer: 1,
        level: 6,
        seed: 7,
    }
}

#[test]
fn corrupted_truncated_and_oversized_blobs_are_refused_and_cleaned_up() {
    require_root();
    require_program("skopeo");
    let tmp = tempfile::tempdir().unwrap();
    let layout = OciLayout::create(&tmp.path().join("layout")).unwrap();
    let (info, _) = build_multilayer_image(&layout, "v1", &small()).unwrap();
    let registry = Registry::start().unwrap();
    registry.push(&layout.skopeo_ref("v1"), "m:v1").unwrap();
    let host = registry.host();
    let top = &info.layers[2];
    let blob = registry_blob_file(&registry.storage_dir(), &top.digest);
    let good = std::fs::read(&blob).unwrap();
    let root = tmp.path().join("store");
    let store = open_store(&root, client_config(std::slice::from_ref(&host)));
    let image = format!("{host}/m:v1");

    // One flipped byte in the middle.
    let mut bad = good.clone();
    let mid = bad.len() / 2;
    bad[mid] ^= 0xff;
    std::fs::write(&blob, &bad).unwrap();
    let err = store.pull(&image, &NoProgress).unwrap_err().to_string();
    assert!(
        err.contains(&top.digest)
            && (err.contains("digest mismatch")
                || err.contains("diff ID")
                || err.contains("archive")
                || err.contains("corrupt")),
        "{err}"
    );
    assert_clean(&root);
    assert!(!store.blob_path(&top.digest.parse().unwrap()).exists());

    // Truncated: the registry now serves fewer bytes than the manifest declares.
    std::fs::write(&blob, &good[..good.len() - 1000]).unwrap();
    let err = store.pull(&image, &NoProgress).unwrap_err().to_string();
    assert!(err.contains("size") || err.contains("truncated"), "{err}");
    assert!(err.contains(&top.digest), "{err}");
    assert_clean(&root);

    // Longer than declared.
    let mut long = good.clone();
    long.extend_from_slice(b"trailing junk");
    std::fs::write(&blob, &long).unwrap();
    let err = store.pull(&image, &NoProgress).unwrap_err().to_string();
    assert!(err.contains("manifest declares"), "{err}");
    assert_clean(&root);
    assert!(store.list().unwrap().is_empty());

    // Fixed blob: the pull works and the layers that verified earlier were not kept as garbage.
    std::fs::write(&blob, &good).unwrap();
    store.pull(&image, &NoProgress).unwrap();
    assert_eq!(
        std::fs::read_dir(root.join("snapshots")).unwrap().count(),
        3
    );
}
