//! The `pea-image` binary end to end against a real registry on 127.0.0.1: pull, list, inspect,
//! remove, prune, and a clear error (non-zero exit) for a reference that does not exist.

use std::path::Path;
use std::process::{Command, Output};

use pea_tests::bins::workspace_binary;
use pea_tests::fixtures::busybox::build_busybox_image;
use pea_tests::fixtures::{OciLayout, Registry};
use pea_tests::privileged::require_root;

fn pea_image(root: &Path, registry: &Registry, args: &[&str]) -> Output {
    Command::new(workspace_binary("pea-image", "PEA_IMAGE"))
        .arg("--root")
        .arg(root)
        .args(["--insecure", &registry.host()])
        .args(args)
        .output()
        .expect("running pea-image")
}

fn ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "pea-image failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn pull_list_inspect_remove_prune_through_the_cli() {
    require_root();
    let tmp = tempfile::tempdir().unwrap();
    let layout = OciLayout::create(&tmp.path().join("layout")).unwrap();
    let info = build_busybox_image(&layout, "cli").unwrap();
    let registry = Registry::start().unwrap();
    registry
        .push(&layout.skopeo_ref("cli"), "library/busybox:cli")
        .unwrap();
    let root = tmp.path().join("store");
    let reference = format!("{}/library/busybox:cli", registry.host());

    ok(pea_image(&root, &registry, &["pull", &reference]));
    let list = ok(pea_image(&root, &registry, &["list"]));
    assert!(list.contains(&reference), "{list}");
    let inspect = ok(pea_image(&root, &registry, &["inspect", &reference]));
    assert!(inspect.contains(&info.layers[0].digest), "{inspect}");

    let missing = pea_image(
        &root,
        &registry,
        &["pull", &format!("{}/library/nope:missing", registry.host())],
    );
    assert!(!missing.status.success());
    let stderr = String::from_utf8_lossy(&missing.stderr);
    assert!(
        stderr.contains("nope"),
        "error should name the reference: {stderr}"
    );

    ok(pea_image(&root, &registry, &["remove", &reference]));
    let list = ok(pea_image(&root, &registry, &["list"]));
    assert!(!list.contains(&reference), "{list}");
    ok(pea_image(&root, &registry, &["prune"]));
}
