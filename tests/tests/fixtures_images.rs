//! The image fixtures are real images: skopeo reads them, umoci (a reference unpacker) applies
//! them to the tree we expect, and the busybox rootfs runs.

use std::process::Command;

use pea_tests::fixtures::busybox::{build_busybox_image, VARIANT_FILE};
use pea_tests::fixtures::hostile::{build_hostile_images, Hostile, HostileSpec};
use pea_tests::fixtures::multilayer::{build_multilayer_image, MultiLayerSpec};
use pea_tests::fixtures::pause::build_pause_image;
use pea_tests::fixtures::OciLayout;
use pea_tests::privileged::{require_program, require_root};

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().expect("spawn");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn umoci_unpack(layout: &OciLayout, tag: &str, dest: &std::path::Path) {
    run(Command::new(require_program("umoci"))
        .arg("unpack")
        .arg("--image")
        .arg(format!("{}:{tag}", layout.root().display()))
        .arg(dest));
}

#[test]
fn busybox_variants_have_distinct_digests_and_run() {
    require_root();
    let tmp = tempfile::tempdir().unwrap();
    let layout = OciLayout::create(&tmp.path().join("layout")).unwrap();
    let a = build_busybox_image(&layout, "a").unwrap();
    let b = build_busybox_image(&layout, "b").unwrap();
    let a2 = build_busybox_image(&layout, "a").unwrap();
    assert_ne!(a.manifest_digest, b.manifest_digest);
    assert_eq!(
        a.manifest_digest, a2.manifest_digest,
        "builds are reproducible"
    );

    let inspect = run(Command::new(require_program("skopeo"))
        .args(["inspect", "--raw"])
        .arg(layout.skopeo_ref("b")));
    assert!(inspect.contains(&b.layers[0].digest), "{inspect}");

    let bundle = tmp.path().join("unpacked");
    umoci_unpack(&layout, "b", &bundle);
    let rootfs = bundle.join("rootfs");
    use std::os::unix::fs::MetadataExt;
    let busybox = std::fs::metadata(rootfs.join("bin/busybox")).unwrap();
    let sh = std::fs::metadata(rootfs.join("bin/sh")).unwrap();
    assert_eq!(busybox.ino(), sh.ino(), "applets are hard links to busybox");
    assert_eq!(
        std::fs::read_to_string(rootfs.join(VARIANT_FILE)).unwrap(),
        "b\n"
    );
    let out = run(Command::new("chroot").arg(&rootfs).args([
        "/bin/sh",
        "-c",
        "id -un; id -Gn pea; cat /etc/pea-variant",
    ]));
    assert_eq!(out, "root\npea users audio\nb\n");
}

#[test]
fn multilayer_image_unpacks_to_the_expected_tree() {
    require_root();
    let tmp = tempfile::tempdir().unwrap();
    let layout = OciLayout::create(&tmp.path().join("layout")).unwrap();
    let spec = MultiLayerSpec {
        file_size: 3 << 20,
        files_per_layer: 2,
        ..Default::default()
    };
    let (info, expected) = build_multilayer_image(&layout, "multi", &spec).unwrap();
    assert_eq!(info.layers.len(), 3);
    // Incompressible content: the layers really are large.
    assert!(info.layers.iter().all(|l| l.size > 6 << 20));

    let bundle = tmp.path().join("unpacked");
    umoci_unpack(&layout, "multi", &bundle);
    if let Err(errors) = expected.verify(&bundle.join("rootfs")) {
        panic!(
            "umoci's unpack differs from the expected tree:\n{}",
            errors.join("\n")
        );
    }
    // The check can fail: a tree with one layer missing does not match.
    let wrong = tmp.path().join("wrong");
    std::fs::create_dir(&wrong).unwrap();
    assert!(expected.verify(&wrong).is_err());
}

/// Name, link name, type and size of a tar entry, bytes as stored.
type RawEntry = (Vec<u8>, Option<Vec<u8>>, tar::EntryType, u64);

#[test]
fn hostile_layers_hold_their_attacks() {
    let tmp = tempfile::tempdir().unwrap();
    let layout = OciLayout::create(&tmp.path().join("layout")).unwrap();
    let outside = tmp.path().join("outside");
    let spec = HostileSpec {
        outside: outside.clone(),
        bomb_bytes: 256 << 20,
    };
    let images = build_hostile_images(&layout, &spec).unwrap();
    assert_eq!(images.len(), Hostile::ALL.len());
    for (attack, info) in images {
        let layer = &info.layers[0];
        let gz = flate2::read::GzDecoder::new(std::fs::File::open(&layer.path).unwrap());
        let mut archive = tar::Archive::new(gz);
        let entries: Vec<RawEntry> = archive
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (
                    e.path_bytes().into_owned(),
                    e.link_name_bytes().map(|l| l.into_owned()),
                    e.header().entry_type(),
                    e.header().size().unwrap(),
                )
            })
            .collect();
        assert_eq!(entries[0].0, b"harmless", "{attack:?}");
        let last = entries.last().unwrap();
        let name = String::from_utf8_lossy(&last.0).into_owned();
        let link = last
            .1
            .as_ref()
            .map(|l| String::from_utf8_lossy(l).into_owned());
        let out = outside.display().to_string();
        match attack {
            Hostile::DotDot => assert!(name.starts_with("../") && name.contains(&out)),
            Hostile::Absolute => assert!(name.starts_with(&out)),
            Hostile::SymlinkEscape => {
                assert_eq!(entries[1].1.as_deref(), Some(out.as_bytes()));
                assert_eq!(name, "escape/symlink-pwned");
            }
            Hostile::RelativeSymlinkEscape => {
                let l = String::from_utf8_lossy(entries[1].1.as_ref().unwrap()).into_owned();
                assert!(l.starts_with("../") && l.ends_with(&out));
                assert_eq!(name, "up/relsymlink-pwned");
            }
            Hostile::HardlinkEscape => {
                assert_eq!(last.2, tar::EntryType::Link);
                assert!(link.unwrap().starts_with("../"));
            }
            Hostile::DeviceNode => assert_eq!(last.2, tar::EntryType::Char),
            Hostile::Bomb => {
                assert_eq!(last.3, 256 << 20);
                assert!(
                    layer.size < (256 << 20) / 500,
                    "ratio too low: {}",
                    layer.size
                );
            }
        }
    }
    assert!(!outside.exists(), "building the images touched the target");
}

#[test]
fn pause_image_is_static_and_tagged() {
    let tmp = tempfile::tempdir().unwrap();
    let layout = OciLayout::create(&tmp.path().join("layout")).unwrap();
    let info = build_pause_image(&layout, "3.10").unwrap();
    let inspect = run(Command::new(require_program("skopeo"))
        .args(["inspect", "--config"])
        .arg(layout.skopeo_ref("3.10")));
    let config: serde_json::Value = serde_json::from_str(&inspect).unwrap();
    assert_eq!(
        config["config"]["Entrypoint"],
        serde_json::json!(["/pause"])
    );
    assert_eq!(config["config"]["User"], "65535:65535");
    let bin = std::fs::read(pea_tests::fixtures::pause::pause_binary().unwrap()).unwrap();
    assert!(
        !bin.windows(12).any(|w| w == b"/lib64/ld-li"),
        "pause must be statically linked (no ELF interpreter)"
    );
    assert_eq!(info.layers.len(), 1);
}
