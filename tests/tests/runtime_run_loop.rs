//! `run` of /bin/true, many times in a row: it must never hang (youki 0.7.0 loses a fast
//! child's SIGCHLD about once in 150 runs). Each run has its own timeout, so a hang fails the
//! test instead of blocking CI; the loop is bounded in count and total time.

use std::time::{Duration, Instant};

use pea_tests::fixtures::BundleBuilder;
use pea_tests::privileged::require_root;
use pea_tests::runtime_cli::{run_with_timeout, Runtime};

const RUNS: usize = 300;
const PER_RUN: Duration = Duration::from_secs(10);
const TOTAL: Duration = Duration::from_secs(240);

#[test]
fn run_true_300_times_never_hangs() {
    require_root();
    let rt = Runtime::pea();
    let tmp = tempfile::tempdir().unwrap();
    let bun = BundleBuilder::busybox(tmp.path())
        .args(["/bin/true"])
        .build()
        .unwrap();
    let start = Instant::now();
    for i in 0..RUNS {
        assert!(
            start.elapsed() < TOTAL,
            "only {i} runs within {TOTAL:?}: far too slow"
        );
        let id = format!("loop-{}-{i}", std::process::id());
        let o = run_with_timeout(
            rt.command(["run", "--bundle", bun.dir.to_str().unwrap(), &id]),
            None,
            PER_RUN,
        );
        assert_eq!(o.code, Some(0), "run {i}: {}", o.stderr);
        assert!(!rt.root.join(&id).exists(), "run {i} left its state dir");
    }
    assert!(rt.ids().is_empty());
}

#[test]
fn run_with_exit_codes_in_a_loop() {
    require_root();
    let rt = Runtime::pea();
    let tmp = tempfile::tempdir().unwrap();
    let bun = BundleBuilder::busybox(tmp.path())
        .args(["sh", "-c", "exit 7"])
        .build()
        .unwrap();
    for i in 0..50 {
        let id = format!("loop7-{}-{i}", std::process::id());
        let o = run_with_timeout(
            rt.command(["run", "--bundle", bun.dir.to_str().unwrap(), &id]),
            None,
            PER_RUN,
        );
        assert_eq!(o.code, Some(7), "run {i}: {}", o.stderr);
    }
    assert!(rt.ids().is_empty());
}

#[test]
fn concurrent_runs_do_not_interfere() {
    require_root();
    let rt = std::sync::Arc::new(Runtime::pea());
    let tmp = tempfile::tempdir().unwrap();
    let bun = BundleBuilder::busybox(tmp.path())
        .args(["sh", "-c", "echo $(hostname)"])
        .build()
        .unwrap();
    let dir = bun.dir.clone();
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let rt = rt.clone();
            let dir = dir.clone();
            std::thread::spawn(move || {
                for i in 0..25 {
                    let id = format!("par-{}-{t}-{i}", std::process::id());
                    let o = run_with_timeout(
                        rt.command(["run", "--bundle", dir.to_str().unwrap(), &id]),
                        None,
                        PER_RUN,
                    );
                    assert_eq!(o.code, Some(0), "thread {t} run {i}: {}", o.stderr);
                    assert_eq!(o.stdout.trim(), "pea-test");
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("runner thread");
    }
    assert!(rt.ids().is_empty(), "{:?}", rt.ids());
}
