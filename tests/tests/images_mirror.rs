//! Mirrors configured like containerd's hosts.toml: an air-gapped node pulls
//! `registry.k8s.io/pause` and `busybox` (docker.io) from mirrors on 127.0.0.1, falling back
//! past a dead mirror and a mirror that lacks the image; the upstream is never contacted.

use pea_images::{ClientConfig, NoProgress};
use pea_tests::fixtures::busybox::build_busybox_image;
use pea_tests::fixtures::pause::build_pause_image;
use pea_tests::fixtures::{OciLayout, Registry};
use pea_tests::images::{dead_port, open_store};
use pea_tests::privileged::require_program;

#[test]
fn pulls_fall_back_through_mirrors_in_hosts_toml_order() {
    require_program("skopeo");
    let tmp = tempfile::tempdir().unwrap();
    let layout = OciLayout::create(&tmp.path().join("layout")).unwrap();
    let pause = build_pause_image(&layout, "3.10").unwrap();
    let bb = build_busybox_image(&layout, "latest").unwrap();
    let empty = Registry::start().unwrap();
    let good = Registry::start().unwrap();
    good.push(&layout.skopeo_ref("3.10"), "pause:3.10").unwrap();
    good.push(&layout.skopeo_ref("latest"), "library/busybox:latest")
        .unwrap();

    let hosts = tmp.path().join("certs.d");
    let dead = dead_port();
    for (registry, server) in [
        ("registry.k8s.io", "https://registry.k8s.io"),
        ("docker.io", "https://registry-1.docker.io"),
    ] {
        std::fs::create_dir_all(hosts.join(registry)).unwrap();
        std::fs::write(
            hosts.join(registry).join("hosts.toml"),
            format!(
                "server = \"{server}\"\n\n\
                 [host.\"http://127.0.0.1:{dead}\"]\n  capabilities = [\"pull\", \"resolve\"]\n\n\
                 [host.\"http://{}\"]\n  capabilities = [\"pull\", \"resolve\"]\n\n\
                 [host.\"http://{}\"]\n  capabilities = [\"pull\", \"resolve\"]\n",
                empty.host(),
                good.host()
            ),
        )
        .unwrap();
    }
    let cfg = ClientConfig {
        hosts_dir: Some(hosts),
        retries: 1,
        backoff: std::time::Duration::from_millis(10),
        ..Default::default()
    };
    let store = open_store(&tmp.path().join("store"), cfg);
    let report = store
        .pull("registry.k8s.io/pause:3.10", &NoProgress)
        .unwrap();
    assert_eq!(report.reference, "registry.k8s.io/pause:3.10");
    assert_eq!(report.manifest_digest.to_string(), pause.manifest_digest);
    let report = store.pull("busybox", &NoProgress).unwrap();
    assert_eq!(report.reference, "docker.io/library/busybox:latest");
    assert_eq!(report.manifest_digest.to_string(), bb.manifest_digest);
    assert!(store.find("busybox:latest").is_ok());
    assert!(store.find("registry.k8s.io/pause:3.10").is_ok());

    // With every mirror gone, the error lists each endpoint tried.
    drop(good);
    let err = store
        .pull("registry.k8s.io/pause:other", &NoProgress)
        .unwrap_err()
        .to_string();
    assert!(err.contains("every endpoint failed"), "{err}");
    assert!(err.contains(&format!("127.0.0.1:{dead}")), "{err}");
    assert!(err.contains("not found"), "{err}");
}
