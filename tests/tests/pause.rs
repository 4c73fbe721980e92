//! pea's pause program: exits cleanly on SIGTERM/SIGINT, and as PID 1 of a container (under
//! runc until pea-runtime lands) it reaps the orphans re-parented to it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use pea_tests::fixtures::pause::pause_binary;
use pea_tests::fixtures::{BundleBuilder, Rootfs};
use pea_tests::leakguard::parent_pid;
use pea_tests::privileged::{require_program, require_root};

#[test]
fn pause_exits_zero_on_sigterm_and_sigint() {
    let bin = pause_binary().unwrap();
    for sig in [Signal::SIGTERM, Signal::SIGINT] {
        let child = Command::new(&bin).stderr(Stdio::piped()).spawn().unwrap();
        // Give it time to block signals: a signal before that would kill it with 128+n.
        std::thread::sleep(Duration::from_millis(100));
        kill(Pid::from_raw(child.id() as i32), sig).unwrap();
        let out = child.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{sig}: {out:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(&format!("shutting down, got signal {sig}")),
            "{stderr}"
        );
    }
}

#[test]
fn pause_rejects_unknown_arguments() {
    let out = Command::new(pause_binary().unwrap())
        .arg("--bogus")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown argument \"--bogus\""));
    let out = Command::new(pause_binary().unwrap())
        .arg("-v")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("pea-pause "));
}

/// A runc container that is force-deleted on drop, so a failing test leaves nothing.
struct RuncContainer {
    runc: PathBuf,
    root: PathBuf,
    id: String,
}

impl RuncContainer {
    fn cmd(&self) -> Command {
        let mut c = Command::new(&self.runc);
        c.arg("--root").arg(&self.root);
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        let out = self.cmd().args(args).output().unwrap();
        assert!(
            out.status.success(),
            "runc {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    fn status(&self) -> String {
        let out = self.cmd().args(["state", &self.id]).output().unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        v["status"].as_str().unwrap_or("gone").to_string()
    }
}

impl Drop for RuncContainer {
    fn drop(&mut self) {
        let _ = self.cmd().args(["delete", "--force", &self.id]).output();
    }
}

/// Pids whose parent is `pid`, zombies included (this kernel has no /proc/PID/task/TID/children).
fn children_of(pid: u32) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|child| parent_pid(*child) == Some(pid))
        .collect()
}

fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn pause_as_container_init_reaps_orphans_and_stops_on_sigterm() {
    require_root();
    let runc = require_program("runc");
    let tmp = tempfile::tempdir().unwrap();
    let bundle = BundleBuilder::new(&tmp.path().join("bundle"), Rootfs::BusyboxWithPause)
        .args(["/pause"])
        .build()
        .unwrap();
    let c = RuncContainer {
        runc,
        root: tmp.path().join("runc-root"),
        id: format!("pea-pause-test-{}", std::process::id()),
    };
    let log = tmp.path().join("pause.log");
    let pid_file = tmp.path().join("pid");
    let status = c
        .cmd()
        .args(["run", "--detach", "--pid-file"])
        .arg(&pid_file)
        .arg("--bundle")
        .arg(&bundle.dir)
        .arg(&c.id)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(std::fs::File::create(&log).unwrap())
        .status()
        .unwrap();
    assert!(status.success(), "runc run: {}", read(&log));
    let pause_pid: u32 = read(&pid_file).trim().parse().unwrap();
    assert_eq!(c.status(), "running");

    // The shell exits at once; its `sleep` becomes an orphan of the container's PID 1. Its stdio
    // is detached so `runc exec` returns when the shell exits, not when the orphan does.
    c.run(&[
        "exec",
        &c.id,
        "/bin/sh",
        "-c",
        "sleep 1000 </dev/null >/dev/null 2>&1 & exit 0",
    ]);
    let mut orphans = Vec::new();
    wait_until(
        "the orphan to be re-parented to pause",
        Duration::from_secs(10),
        || {
            orphans = children_of(pause_pid);
            !orphans.is_empty()
        },
    );
    for pid in &orphans {
        kill(Pid::from_raw(*pid as i32), Signal::SIGKILL).unwrap();
    }
    // A zombie keeps its parent until reaped: no children left means pause reaped them.
    wait_until("pause to reap the orphan", Duration::from_secs(10), || {
        children_of(pause_pid).is_empty()
    });

    c.run(&["kill", &c.id, "TERM"]);
    wait_until("the container to stop", Duration::from_secs(10), || {
        c.status() == "stopped"
    });
    assert!(
        read(&log).contains("shutting down, got signal SIGTERM"),
        "{}",
        read(&log)
    );
    c.run(&["delete", &c.id]);
    assert_eq!(c.status(), "gone");
}

#[test]
fn busybox_bundle_runs_under_runc() {
    require_root();
    let runc = require_program("runc");
    let tmp = tempfile::tempdir().unwrap();
    let bundle = BundleBuilder::busybox(&tmp.path().join("bundle"))
        .hostname("pea-fixture")
        .args([
            "/bin/sh",
            "-c",
            "echo hello; hostname; cat /etc/pea-variant; id -u; id -Gn pea",
        ])
        .build()
        .unwrap();
    let c = RuncContainer {
        runc,
        root: tmp.path().join("runc-root"),
        id: format!("pea-bundle-test-{}", std::process::id()),
    };
    let out = c
        .cmd()
        .args(["run", "--bundle"])
        .arg(&bundle.dir)
        .arg(&c.id)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "hello\npea-fixture\ndefault\n0\npea users audio\n"
    );
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_default()
}
