//! The leak guard sees what a test leaves: a network namespace, a mount, a cgroup, a process.

use std::process::Command;

use pea_tests::leakguard::Snapshot;
use pea_tests::privileged::require_root;

#[test]
fn guard_reports_each_kind_of_leftover_and_nothing_after_cleanup() {
    require_root();
    let before = Snapshot::take().unwrap();
    let suffix = format!("{}", std::process::id());

    let ns = format!("pea-leakprobe-{suffix}");
    assert!(Command::new("ip")
        .args(["netns", "add", &ns])
        .status()
        .unwrap()
        .success());
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("mnt");
    std::fs::create_dir(&target).unwrap();
    nix::mount::mount(
        Some("tmpfs"),
        &target,
        Some("tmpfs"),
        nix::mount::MsFlags::empty(),
        None::<&str>,
    )
    .unwrap();
    let cgroup = std::path::PathBuf::from(format!("/sys/fs/cgroup/pids/pea-leakprobe-{suffix}"));
    std::fs::create_dir(&cgroup).unwrap();
    let mut child = Command::new("sleep").arg("30").spawn().unwrap();

    let during = Snapshot::take().unwrap();
    let leaks = before.leaks_in(&during);

    // Clean up before asserting, so a failed assertion leaves nothing either.
    child.kill().unwrap();
    child.wait().unwrap();
    std::fs::remove_dir(&cgroup).unwrap();
    nix::mount::umount(&target).unwrap();
    assert!(Command::new("ip")
        .args(["netns", "del", &ns])
        .status()
        .unwrap()
        .success());

    for want in [
        format!("network namespace: {ns}"),
        format!("mount: {} (tmpfs)", target.display()),
        format!("cgroup: pids/pea-leakprobe-{suffix}"),
        format!("process: {} sleep", child.id()),
    ] {
        assert!(leaks.contains(&want), "{want} not reported in {leaks:#?}");
    }
    let after = Snapshot::take().unwrap();
    let remaining: Vec<_> = before
        .leaks_in(&after)
        .into_iter()
        .filter(|l| l.contains("leakprobe") || l.contains(&target.display().to_string()))
        .collect();
    assert!(remaining.is_empty(), "{remaining:?}");
}
