//! Drop-in proof: containerd 1.6 (runc.v2 shim with pea-runtime as its BinaryName, through
//! `ctr --runc-binary`) and podman (`--runtime`) run busybox containers to completion through
//! pea-runtime. Each test runs its own private daemon/storage in temp dirs, uses a unique
//! namespace and cgroup parent, and removes what it made.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use pea_tests::fixtures::BundleBuilder;
use pea_tests::privileged::{require_program, require_root};
use pea_tests::runtime_cli::{cgroups_with, pea_runtime_binary, processes_with, run_with_timeout};

/// Removes the cgroup tree `name` at the top of each v1 hierarchy, retrying while the last
/// processes (conmon, the shim) finish exiting.
fn remove_cgroup_parent(name: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        remove_cgroup_parent_once(name);
        if cgroups_with(name).is_empty() || Instant::now() > deadline {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn remove_cgroup_parent_once(name: &str) {
    for e in std::fs::read_dir("/sys/fs/cgroup")
        .into_iter()
        .flatten()
        .flatten()
    {
        let top = e.path().join(name);
        if !top.is_dir() {
            continue;
        }
        let mut dirs = vec![top.clone()];
        let mut i = 0;
        while i < dirs.len() {
            for c in std::fs::read_dir(&dirs[i]).into_iter().flatten().flatten() {
                if c.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                    dirs.push(c.path());
                }
            }
            i += 1;
        }
        for d in dirs.iter().rev() {
            let _ = std::fs::remove_dir(d);
        }
    }
}

struct Containerd {
    child: Child,
    dir: tempfile::TempDir,
}

impl Containerd {
    fn start() -> Self {
        let bin = require_program("containerd");
        let dir = tempfile::Builder::new()
            .prefix("pea-ctd-")
            .tempdir_in("/tmp")
            .unwrap();
        let d = dir.path().display();
        let config = format!(
            "version = 2\nroot = \"{d}/root\"\nstate = \"{d}/state\"\n\
             disabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n\
             [grpc]\n  address = \"{d}/containerd.sock\"\n\
             [ttrpc]\n  address = \"{d}/containerd.sock.ttrpc\"\n"
        );
        std::fs::write(dir.path().join("config.toml"), config).unwrap();
        let log = std::fs::File::create(dir.path().join("containerd.log")).unwrap();
        let child = Command::new(bin)
            .arg("--config")
            .arg(dir.path().join("config.toml"))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let sock = dir.path().join("containerd.sock");
        let start = Instant::now();
        while !sock.exists() {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "containerd did not come up"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Self { child, dir }
    }

    fn ctr(&self, ns: &str, args: &[&str]) -> pea_tests::runtime_cli::Output {
        let mut cmd = Command::new("ctr");
        cmd.arg("-a")
            .arg(self.dir.path().join("containerd.sock"))
            .arg("-n")
            .arg(ns)
            .args(args);
        run_with_timeout(cmd, None, Duration::from_secs(60))
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn containerd_runc_v2_shim_runs_containers_through_pea_runtime() {
    require_root();
    require_program("ctr");
    require_program("containerd-shim-runc-v2");
    let pea = pea_runtime_binary();
    let tmp = tempfile::tempdir().unwrap();
    let bundle = BundleBuilder::busybox(tmp.path()).build().unwrap();
    let rootfs = bundle.rootfs.display().to_string();
    let ns = format!("pea-test-{}", std::process::id());
    let ctd = Containerd::start();
    let pea_s = pea.display().to_string();

    // Foreground run to completion, exit code passed through.
    let o = ctd.ctr(
        &ns,
        &[
            "run",
            "--rm",
            "--runc-binary",
            &pea_s,
            "--rootfs",
            &rootfs,
            "c1",
            "/bin/sh",
            "-c",
            "echo hello-from-pea-via-containerd; exit 3",
        ],
    );
    assert_eq!(o.code, Some(3), "{}\n{}", o.stdout, o.stderr);
    assert!(o.stdout.contains("hello-from-pea-via-containerd"));

    // containerd's default seccomp profile (what its CRI gives a RuntimeDefault container);
    // ctr's default spec sets noNewPrivileges (the CRI path leaves it false: covered by the
    // isolation suite's containerd-CRI case and the shim's RuntimeDefault pods).
    let o = ctd.ctr(
        &ns,
        &[
            "run",
            "--rm",
            "--seccomp",
            "--runc-binary",
            &pea_s,
            "--rootfs",
            &rootfs,
            "c0",
            "/bin/sh",
            "-c",
            "grep -E '^(Seccomp|NoNewPrivs):' /proc/self/status",
        ],
    );
    assert_eq!(o.code, Some(0), "{}\n{}", o.stdout, o.stderr);
    assert!(o.stdout.contains("Seccomp:\t2"), "{}", o.stdout);
    assert!(o.stdout.contains("NoNewPrivs:\t1"), "{}", o.stdout);

    // Detached task: ps, exec, pause/resume, kill, delete — all through pea-runtime.
    let marker = pea_tests::runtime_cli::unique_sleep();
    ctd.ctr(
        &ns,
        &[
            "run",
            "-d",
            "--runc-binary",
            &pea_s,
            "--rootfs",
            &rootfs,
            "c2",
            "/bin/sleep",
            &marker,
        ],
    )
    .ok();
    // pea-runtime's own record proves which runtime the shim drove.
    let state_dir = Path::new("/run/containerd/runc").join(&ns).join("c2");
    assert!(
        state_dir.join("pea.json").exists(),
        "{} has no pea.json: the shim did not use pea-runtime",
        state_dir.display()
    );
    let o = ctd.ctr(&ns, &["task", "ps", "c2"]).ok();
    assert!(o.stdout.lines().count() >= 2, "{}", o.stdout);
    let o = ctd
        .ctr(
            &ns,
            &[
                "task",
                "exec",
                "--exec-id",
                "e1",
                "c2",
                "/bin/sh",
                "-c",
                "echo exec-ok",
            ],
        )
        .ok();
    assert!(o.stdout.contains("exec-ok"));
    ctd.ctr(&ns, &["task", "pause", "c2"]).ok();
    assert!(ctd.ctr(&ns, &["task", "ls"]).ok().stdout.contains("PAUSED"));
    ctd.ctr(&ns, &["task", "resume", "c2"]).ok();
    ctd.ctr(&ns, &["task", "kill", "-s", "KILL", "c2"]).ok();
    let start = Instant::now();
    while !ctd
        .ctr(&ns, &["task", "ls"])
        .ok()
        .stdout
        .contains("STOPPED")
    {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "task never stopped"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    ctd.ctr(&ns, &["task", "delete", "c2"]).ok();
    ctd.ctr(&ns, &["container", "delete", "c2"]).ok();
    assert!(!state_dir.exists(), "runtime state left behind");
    assert!(processes_with(&marker).is_empty());
    drop(ctd);
    let _ = std::fs::remove_dir(Path::new("/run/containerd/runc").join(&ns));
    remove_cgroup_parent(&ns);
    assert!(cgroups_with(&ns).is_empty(), "{:?}", cgroups_with(&ns));
}

#[test]
fn podman_runs_containers_through_pea_runtime() {
    require_root();
    require_program("podman");
    require_program("conmon");
    let pea = pea_runtime_binary();
    let tmp = tempfile::tempdir().unwrap();
    let bundle = BundleBuilder::busybox(&tmp.path().join("b"))
        .build()
        .unwrap();
    let store: PathBuf = tmp.path().join("store");
    let parent = format!("pea-podman-{}", std::process::id());
    let podman = |args: &[&str]| {
        let mut cmd = Command::new("podman");
        cmd.arg("--root")
            .arg(store.join("root"))
            .arg("--runroot")
            .arg(store.join("runroot"))
            .arg("--tmpdir")
            .arg(store.join("tmp"))
            .args([
                "--storage-driver",
                "vfs",
                "--cgroup-manager",
                "cgroupfs",
                "--events-backend",
                "file",
                "--runtime",
            ])
            .arg(&pea)
            .args(args)
            .stdin(Stdio::null());
        run_with_timeout(cmd, None, Duration::from_secs(120))
    };
    let rootfs = bundle.rootfs.display().to_string();
    let cgroup_parent = format!("/{parent}");
    // Podman asks for RLIMIT_NOFILE/NPROC hard limits of 1048576 by default; this host lacks
    // CAP_SYS_RESOURCE, so they must be at or below the current hard limits (runc fails too).
    let base = [
        "run",
        "--rm",
        "--network",
        "none",
        "--cgroup-parent",
        &cgroup_parent,
        "--ulimit",
        "nofile=1024:4096",
        "--ulimit",
        "nproc=1024:4096",
    ];
    // podman's default security options: its default seccomp profile with noNewPrivileges
    // false. pea installs the filter before the capability drop, as runc does.
    let mut args: Vec<&str> = base.to_vec();
    args.extend([
        "--rootfs",
        &rootfs,
        "/bin/sh",
        "-c",
        "echo hello-from-pea-via-podman; grep -E '^(Seccomp|NoNewPrivs):' /proc/self/status; exit 4",
    ]);
    let o = podman(&args);
    assert_eq!(o.code, Some(4), "{}\n{}", o.stdout, o.stderr);
    assert!(o.stdout.contains("hello-from-pea-via-podman"));
    // podman's default seccomp profile is enforced by pea's executor, without no_new_privs
    assert!(o.stdout.contains("Seccomp:\t2"), "{}", o.stdout);
    assert!(o.stdout.contains("NoNewPrivs:\t0"), "{}", o.stdout);

    // With --security-opt no-new-privileges the filter goes in right before execve.
    let mut args: Vec<&str> = base.to_vec();
    args.extend([
        "--security-opt",
        "no-new-privileges",
        "--rootfs",
        &rootfs,
        "/bin/sh",
        "-c",
        "grep -E '^(Seccomp|NoNewPrivs):' /proc/self/status",
    ]);
    let o = podman(&args);
    assert_eq!(o.code, Some(0), "{}\n{}", o.stdout, o.stderr);
    assert!(o.stdout.contains("Seccomp:\t2"), "{}", o.stdout);
    assert!(o.stdout.contains("NoNewPrivs:\t1"), "{}", o.stdout);

    // Without the ulimit override, the refusal names the setting.
    let o = podman(&[
        "run",
        "--rm",
        "--network",
        "none",
        "--cgroup-parent",
        &cgroup_parent,
        "--rootfs",
        &rootfs,
        "/bin/true",
    ]);
    assert_ne!(o.code, Some(0));
    assert!(o.stderr.contains("process.rlimits RLIMIT_"), "{}", o.stderr);

    remove_cgroup_parent(&parent);
    assert!(
        cgroups_with(&parent).is_empty(),
        "{:?}",
        cgroups_with(&parent)
    );
}
