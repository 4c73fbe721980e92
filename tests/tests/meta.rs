//! Integration test binary `meta`: The suite's own guards: crate layering, the leak guard, every test file in one binary.
//!
//! The test files are modules of a few binaries instead of a binary each: every binary
//! carries the line tables of all the code it links, and ~85 of them filled a CI disk.
//! nextest still runs each test in a process of its own. A new file is declared here
//! (`meta` checks that every file is), and picked with `-E 'test(/^FILE::/)'`.

mod layering;
mod leakguard;

/// Cargo builds only the binaries `Cargo.toml` names (`autotests = false`), so a test file that
/// no binary declares would silently never run.
#[test]
fn every_test_file_is_a_module_of_exactly_one_binary() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests");
    let manifest = std::fs::read_to_string(dir.with_file_name("Cargo.toml")).unwrap();
    let binaries: Vec<String> = manifest
        .lines()
        .filter_map(|l| {
            l.strip_prefix("name = \"")
                .and_then(|r| r.strip_suffix('"'))
        })
        .filter(|n| *n != "pea-tests")
        .map(str::to_owned)
        .collect();
    assert!(binaries.contains(&"meta".to_owned()), "{binaries:?}");
    let mut declared = std::collections::BTreeMap::<String, Vec<String>>::new();
    for bin in &binaries {
        let root = std::fs::read_to_string(dir.join(format!("{bin}.rs")))
            .unwrap_or_else(|e| panic!("test binary {bin}: {e}"));
        for m in root.lines().filter_map(|l| l.strip_prefix("mod ")) {
            let m = m.trim_end_matches(';').to_owned();
            declared.entry(m).or_default().push(bin.clone());
        }
    }
    for entry in std::fs::read_dir(&dir).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        let Some(stem) = name.strip_suffix(".rs") else {
            continue;
        };
        if binaries.iter().any(|b| b == stem) {
            continue;
        }
        let owners = declared.get(stem).cloned().unwrap_or_default();
        assert_eq!(
            owners.len(),
            1,
            "tests/tests/{name} must be a `mod {stem};` of exactly one test binary (tests/Cargo.toml's [[test]]), found in {owners:?}"
        );
    }
}
