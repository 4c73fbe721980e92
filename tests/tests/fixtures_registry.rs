//! The local registry fixture: a real docker-registry on 127.0.0.1, images pushed with skopeo,
//! manifests served under the digests the fixtures computed, nothing left after stop.

use std::process::Command;

use pea_tests::fixtures::busybox::build_busybox_image;
use pea_tests::fixtures::pause::build_pause_image;
use pea_tests::fixtures::registry::http_get;
use pea_tests::fixtures::{OciLayout, Registry};
use pea_tests::privileged::require_program;

#[test]
fn pushed_images_are_served_by_digest_and_the_registry_stops_clean() {
    require_program("skopeo");
    let tmp = tempfile::tempdir().unwrap();
    let layout = OciLayout::create(&tmp.path().join("layout")).unwrap();
    let busybox = build_busybox_image(&layout, "v1").unwrap();
    let pause = build_pause_image(&layout, "3.10").unwrap();

    let registry = Registry::start().unwrap();
    assert!(registry.addr().ip().is_loopback());
    registry
        .push(&layout.skopeo_ref("v1"), "library/busybox:v1")
        .unwrap();
    registry
        .push(&layout.skopeo_ref("3.10"), "pause:3.10")
        .unwrap();

    let (status, body) = http_get(registry.addr(), "/v2/_catalog").unwrap();
    assert_eq!(status, 200);
    let catalog: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        catalog["repositories"],
        serde_json::json!(["library/busybox", "pause"])
    );
    for (repo, info) in [("library/busybox", &busybox), ("pause", &pause)] {
        let (status, _) = http_get(
            registry.addr(),
            &format!("/v2/{repo}/manifests/{}", info.manifest_digest),
        )
        .unwrap();
        assert_eq!(status, 200, "{repo}@{}", info.manifest_digest);
        let (status, _) = http_get(
            registry.addr(),
            &format!("/v2/{repo}/blobs/{}", info.layers[0].digest),
        )
        .unwrap();
        assert_eq!(status, 200);
    }
    let out = Command::new("skopeo")
        .args(["inspect", "--tls-verify=false", "--format", "{{.Digest}}"])
        .arg(format!("docker://{}/library/busybox:v1", registry.host()))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        busybox.manifest_digest
    );

    let addr = registry.addr();
    let storage = registry.storage_dir();
    registry.stop().unwrap();
    assert!(
        http_get(addr, "/v2/").is_err(),
        "registry still answers after stop"
    );
    assert!(!storage.exists(), "registry storage left behind");
}
