//! Pulls from a real docker-registry on 127.0.0.1: by tag, by digest, through an index; layers
//! verified against the expected tree through a real overlay mount; snapshots reused across
//! images; anonymous pulls of plain HTTP refused unless the registry is marked insecure.

use pea_images::manifest::{OCI_INDEX, OCI_MANIFEST};
use pea_images::LayerAction;
use pea_images::NoProgress;
use pea_tests::fixtures::busybox::build_busybox_image;
use pea_tests::fixtures::layout::ImageDefaults;
use pea_tests::fixtures::multilayer::{build_multilayer_image, MultiLayerSpec};
use pea_tests::fixtures::{OciLayout, Registry};
use pea_tests::images::{client_config, index_json, mount_image, open_store, put_manifest};
use pea_tests::privileged::{require_program, require_root};

fn small_spec(seed: u64) -> MultiLayerSpec {
    MultiLayerSpec {
        file_size: 300 << 10,
        files_per_layer: 2,
        level: 6,
        seed,
    }
}

#[test]
fn multilayer_image_pulls_by_tag_and_digest_and_mounts_as_the_expected_tree() {
    require_root();
    require_program("skopeo");
    let tmp = tempfile::tempdir().unwrap();
    let layout = OciLayout::create(&tmp.path().join("layout")).unwrap();
    let (info, expected) = build_multilayer_image(&layout, "v1", &small_spec(1)).unwrap();
    let registry = Registry::start().unwrap();
    registry.push(&layout.skopeo_ref("v1"), "multi:v1").unwrap();
    let host = registry.host();

    let store = open_store(
        &tmp.path().join("store"),
        client_config(std::slice::from_ref(&host)),
    );
    let report = store
        .pull(&format!("{host}/multi:v1"), &NoProgress)
        .unwrap();
    assert_eq!(report.manifest_digest.to_string(), info.manifest_digest);
    assert_eq!(report.image_id.to_string(), info.config_digest);
    assert_eq!(report.layers.len(), 3);
    assert!(report.layers.iter().all(|(_, a)| matches!(
        a,
        LayerAction::Downloaded {
            resumed_from: 0,
            ..
        }
    )));
    let total: u64 = info.layers.iter().map(|l| l.size).sum();
    assert_eq!(report.downloaded_bytes, total);

    let mnt = tmp.path().join("c1");
    let rootfs = mount_image(&store, &format!("{host}/multi:v1"), &mnt);
    let verdict = expected.verify(rootfs.target());
    // The container writes to its own upper dir, never to the shared snapshots.
    std::fs::write(rootfs.target().join("data/new-in-container"), b"c").unwrap();
    std::fs::remove_file(rootfs.target().join("etc/os-release")).unwrap();
    rootfs.unmount().unwrap();
    if let Err(errors) = verdict {
        panic!(
            "rootfs differs from the expected tree:\n{}",
            errors.join("\n")
        );
    }
    assert!(mnt.join("state/upper/data/new-in-container").exists());
    let rootfs = mount_image(&store, &format!("{host}/multi:v1"), &tmp.path().join("c2"));
    assert!(
        rootfs.target().join("etc/os-release").exists(),
        "a container's delete leaked into the image"
    );
    rootfs.unmount().unwrap();

    // Again, and by digest: nothing is downloaded, every snapshot reused.
    let again = store
        .pull(&format!("{host}/multi:v1"), &NoProgress)
        .unwrap();
    assert_eq!(again.downloaded_bytes, 0);
    assert!(again.layers.iter().all(|(_, a)| *a == LayerAction::Reused));
    let by_digest = store
        .pull(
            &format!("{host}/multi@{}", info.manifest_digest),
            &NoProgress,
        )
        .unwrap();
    assert_eq!(by_digest.image_id, report.image_id);
    let images = store.list().unwrap();
    assert_eq!(images.len(), 1);
    assert_eq!(images[0].names.len(), 2, "{:?}", images[0].names);
}

#[test]
fn images_sharing_base_layers_reuse_their_snapshots() {
    require_program("skopeo");
    require_root();
    let tmp = tempfile::tempdir().unwrap();
    let layout = OciLayout::create(&tmp.path().join("layout")).unwrap();
    let (a, _) = build_multilayer_image(&layout, "a", &small_spec(1)).unwrap();
    let (c, _) = build_multilayer_image(&layout, "c", &small_spec(2)).unwrap();
    let b = layout
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
    let store = open_store(
        &tmp.path().join("store"),
        client_config(std::slice::from_ref(&host)),
    );
    store.pull(&format!("{host}/app:a"), &NoProgress).unwrap();
    let rb = store.pull(&format!("{host}/app:b"), &NoProgress).unwrap();
    assert_eq!(rb.layers[0].1, LayerAction::Reused);
    assert_eq!(rb.layers[1].1, LayerAction::Reused);
    assert!(matches!(rb.layers[2].1, LayerAction::Downloaded { .. }));
    assert_eq!(rb.downloaded_bytes, b.layers[2].size);
    assert_eq!(store.list().unwrap().len(), 2);

    // Removing one image keeps the layers the other still uses.
    let (_, pruned) = store.remove(&format!("{host}/app:b")).unwrap();
    assert_eq!(pruned.snapshots, 1, "only b's top layer is unique to it");
    let lowers = store.lower_dirs(&format!("{host}/app:a")).unwrap();
    assert!(lowers.iter().all(|d| d.is_dir()));
    store.remove(&format!("{host}/app:a")).unwrap();
    assert_eq!(
        std::fs::read_dir(store.root().join("snapshots"))
            .unwrap()
            .count(),
        0
    );
    assert_eq!(
        std::fs::read_dir(store.root().join("blobs/sha256"))
            .unwrap()
            .count(),
        0
    );
}

#[test]
fn an_index_resolves_to_the_linux_amd64_manifest() {
    require_program("skopeo");
    let tmp = tempfile::tempdir().unwrap();
    let layout = OciLayout::create(&tmp.path().join("layout")).unwrap();
    let amd = build_busybox_image(&layout, "amd64").unwrap();
    let arm = build_busybox_image(&layout, "arm64").unwrap();
    let registry = Registry::start().unwrap();
    registry
        .push(&layout.skopeo_ref("amd64"), "bb:amd64")
        .unwrap();
    registry
        .push(&layout.skopeo_ref("arm64"), "bb:arm64")
        .unwrap();
    let index = index_json(&[
        (&arm.manifest_digest, arm.manifest_size, "arm64"),
        (&amd.manifest_digest, amd.manifest_size, "amd64"),
    ]);
    let status = put_manifest(registry.addr(), "bb", "multi", OCI_INDEX, &index).unwrap();
    assert_eq!(status, 201);
    let host = registry.host();
    let store = open_store(
        &tmp.path().join("store"),
        client_config(std::slice::from_ref(&host)),
    );
    let report = store
        .pull(&format!("{host}/bb:multi"), &NoProgress)
        .unwrap();
    assert_eq!(report.manifest_digest.to_string(), amd.manifest_digest);
    let rec = store.find(&format!("{host}/bb:multi")).unwrap();
    assert!(rec.index_digest.is_some());
    let _ = OCI_MANIFEST;
}

#[test]
fn plain_http_is_refused_unless_the_registry_is_marked_insecure_and_missing_tags_are_clear() {
    require_program("skopeo");
    let tmp = tempfile::tempdir().unwrap();
    let layout = OciLayout::create(&tmp.path().join("layout")).unwrap();
    build_busybox_image(&layout, "v1").unwrap();
    let registry = Registry::start().unwrap();
    registry.push(&layout.skopeo_ref("v1"), "bb:v1").unwrap();
    let host = registry.host();

    let store = open_store(&tmp.path().join("store"), client_config(&[]));
    let err = store
        .pull(&format!("{host}/bb:v1"), &NoProgress)
        .unwrap_err()
        .to_string();
    assert!(err.contains(&format!("https://{host}")), "{err}");

    let store = open_store(
        &tmp.path().join("store2"),
        client_config(std::slice::from_ref(&host)),
    );
    let err = store
        .pull(&format!("{host}/bb:nope"), &NoProgress)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("not found") && err.contains("bb/manifests/nope"),
        "{err}"
    );
    assert!(store.list().unwrap().is_empty());
}

#[test]
fn zstd_layers_unpack_to_the_same_tree() {
    require_root();
    require_program("skopeo");
    let tmp = tempfile::tempdir().unwrap();
    let layout = OciLayout::create(&tmp.path().join("layout")).unwrap();
    let (_, expected) = build_multilayer_image(&layout, "v1", &small_spec(5)).unwrap();
    let registry = Registry::start().unwrap();
    let host = registry.host();
    // skopeo recompresses every layer with zstd and writes tar+zstd media types.
    let out = std::process::Command::new("skopeo")
        .args([
            "--insecure-policy",
            "copy",
            "--quiet",
            "--dest-tls-verify=false",
            "--dest-compress-format",
            "zstd",
            &layout.skopeo_ref("v1"),
            &format!("docker://{host}/z:v1"),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (_, body) =
        pea_tests::fixtures::registry::http_get(registry.addr(), "/v2/z/manifests/v1").unwrap();
    assert!(
        String::from_utf8_lossy(&body).contains("tar+zstd"),
        "skopeo did not write zstd layers"
    );
    let store = open_store(
        &tmp.path().join("store"),
        client_config(std::slice::from_ref(&host)),
    );
    store.pull(&format!("{host}/z:v1"), &NoProgress).unwrap();
    let rootfs = mount_image(&store, &format!("{host}/z:v1"), &tmp.path().join("c"));
    let verdict = expected.verify(rootfs.target());
    rootfs.unmount().unwrap();
    verdict.unwrap_or_else(|e| panic!("{}", e.join("\n")));
}

#[test]
fn docker_schema2_manifests_pull_like_oci_ones() {
    require_root();
    require_program("skopeo");
    let tmp = tempfile::tempdir().unwrap();
    let layout = OciLayout::create(&tmp.path().join("layout")).unwrap();
    let (_, expected) = build_multilayer_image(&layout, "v1", &small_spec(6)).unwrap();
    let registry = Registry::start().unwrap();
    let host = registry.host();
    let out = std::process::Command::new("skopeo")
        .args([
            "--insecure-policy",
            "copy",
            "--quiet",
            "--dest-tls-verify=false",
            "--format",
            "v2s2",
            &layout.skopeo_ref("v1"),
            &format!("docker://{host}/d:v1"),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (_, body) =
        pea_tests::fixtures::registry::http_get(registry.addr(), "/v2/d/manifests/v1").unwrap();
    let manifest = String::from_utf8_lossy(&body);
    assert!(
        manifest.contains("application/vnd.docker.distribution.manifest.v2+json")
            && manifest.contains("application/vnd.docker.image.rootfs.diff.tar.gzip"),
        "{manifest}"
    );
    let store = open_store(
        &tmp.path().join("store"),
        client_config(std::slice::from_ref(&host)),
    );
    store.pull(&format!("{host}/d:v1"), &NoProgress).unwrap();
    let rootfs = mount_image(&store, &format!("{host}/d:v1"), &tmp.path().join("c"));
    let verdict = expected.verify(rootfs.target());
    rootfs.unmount().unwrap();
    verdict.unwrap_or_else(|e| panic!("{}", e.join("\n")));
}
