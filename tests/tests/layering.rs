//! The workspace obeys DESIGN.md's layering (see `pea_tests::layering` for the rules).

use std::process::Command;

use pea_tests::fixtures::pause::workspace_root;

#[test]
fn workspace_crates_respect_the_layering() {
    let root = workspace_root();
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--manifest-path"])
        .arg(root.join("Cargo.toml"))
        .output()
        .expect("running cargo metadata");
    assert!(
        out.status.success(),
        "cargo metadata: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let metadata: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let violations = pea_tests::layering::check(&metadata).unwrap();
    assert!(
        violations.is_empty(),
        "layering violations:\n{}",
        violations.join("\n")
    );
}

#[test]
fn top_level_folders_are_the_fixed_set() {
    let root = workspace_root();
    for f in [
        "Cargo.toml",
        "README.md",
        "runtime",
        "shim",
        "kubelet",
        "cni",
        "control",
        "tests",
        "vagrant",
    ] {
        assert!(root.join(f).exists(), "{f} is missing at the top level");
    }
}
