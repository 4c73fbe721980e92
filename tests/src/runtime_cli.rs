//! Driving an OCI runtime binary (pea-runtime, runc, crun) from tests: every call has a timeout
//! so a hang fails the test, each `Runtime` has its own state root, and `Drop` force-deletes
//! whatever a failed test left behind.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The pea-runtime binary: `$PEA_RUNTIME`, else the one next to this test's target dir.
pub fn pea_runtime_binary() -> PathBuf {
    crate::bins::workspace_binary("pea-runtime", "PEA_RUNTIME")
}

/// The pea-monitor binary: `$PEA_MONITOR`, else the one next to this test's target dir.
pub fn pea_monitor_binary() -> PathBuf {
    crate::bins::workspace_binary("pea-monitor", "PEA_MONITOR")
}

/// What a runtime call produced.
#[derive(Debug, Clone)]
pub struct Output {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

impl Output {
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }

    /// Panics with both streams unless the call succeeded.
    pub fn ok(self) -> Self {
        assert!(
            self.success(),
            "runtime call failed ({:?}):\nstdout: {}\nstderr: {}",
            self.code,
            self.stdout,
            self.stderr
        );
        self
    }

    /// Panics unless the call failed with `needle` in stderr.
    pub fn fails_with(self, needle: &str) -> Self {
        assert!(
            !self.success(),
            "expected a failure mentioning {needle:?}, got success: {}",
            self.stdout
        );
        assert!(
            self.stderr.contains(needle),
            "expected stderr to mention {needle:?}, got: {}",
            self.stderr
        );
        self
    }
}

fn read_all(mut f: std::fs::File) -> String {
    use std::io::Seek;
    let mut s = String::new();
    let _ = f.seek(std::io::SeekFrom::Start(0));
    let _ = f.read_to_string(&mut s);
    s
}

/// Runs `cmd` with a timeout; on timeout the child is killed and the call panics.
pub fn run_with_timeout(mut cmd: Command, stdin: Option<&[u8]>, timeout: Duration) -> Output {
    let start = Instant::now();
    // Files, not pipes: a detached container inherits them and would keep a pipe open forever.
    let out_file = tempfile::tempfile().expect("stdout file");
    let err_file = tempfile::tempfile().expect("stderr file");
    cmd.stdout(out_file.try_clone().expect("dup"))
        .stderr(err_file.try_clone().expect("dup"));
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    });
    let desc = format!("{cmd:?}");
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {desc}: {e}"));
    if let Some(data) = stdin {
        use std::io::Write;
        let mut s = child.stdin.take().expect("stdin");
        s.write_all(data).expect("write stdin");
    }
    let status = loop {
        if let Some(st) = child.try_wait().expect("try_wait") {
            break st;
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{desc} did not finish within {timeout:?} (hang)");
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    let elapsed = start.elapsed();
    Output {
        code: status.code().or_else(|| {
            use std::os::unix::process::ExitStatusExt;
            status.signal().map(|s| 128 + s)
        }),
        stdout: read_all(out_file),
        stderr: read_all(err_file),
        elapsed,
    }
}

/// An OCI runtime binary with a private state root.
#[derive(Debug)]
pub struct Runtime {
    pub bin: PathBuf,
    pub root: PathBuf,
    /// Extra global flags (e.g. crun's `--cgroup-manager=disabled`).
    pub global_args: Vec<String>,
    pub timeout: Duration,
    _root_dir: tempfile::TempDir,
}

impl Runtime {
    pub fn new(bin: impl Into<PathBuf>) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("rt-root-")
            .tempdir_in("/run")
            .expect("state root in /run");
        Self {
            bin: bin.into(),
            root: dir.path().to_path_buf(),
            global_args: Vec::new(),
            timeout: Duration::from_secs(30),
            _root_dir: dir,
        }
    }

    pub fn pea() -> Self {
        Self::new(pea_runtime_binary())
    }

    pub fn command<I, S>(&self, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        let mut cmd = Command::new(&self.bin);
        cmd.arg("--root").arg(&self.root);
        cmd.args(&self.global_args);
        cmd.args(args);
        cmd
    }

    /// Runs the runtime with `args` (after `--root`).
    pub fn run<I, S>(&self, args: I) -> Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        run_with_timeout(self.command(args), None, self.timeout)
    }

    pub fn run_stdin<I, S>(&self, args: I, stdin: &[u8]) -> Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        run_with_timeout(self.command(args), Some(stdin), self.timeout)
    }

    /// `state <id>` parsed.
    pub fn state(&self, id: &str) -> serde_json::Value {
        let out = self.run(["state", id]).ok();
        serde_json::from_str(&out.stdout).expect("state json")
    }

    pub fn status(&self, id: &str) -> String {
        self.state(id)["status"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// Waits until `state` reports `status` (bounded).
    pub fn wait_status(&self, id: &str, status: &str, timeout: Duration) {
        let start = Instant::now();
        loop {
            let s = self.status(id);
            if s == status {
                return;
            }
            assert!(
                start.elapsed() < timeout,
                "container {id} stayed {s}, wanted {status}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Container ids under the state root.
    pub fn ids(&self) -> Vec<String> {
        std::fs::read_dir(&self.root)
            .map(|rd| {
                rd.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        for id in self.ids() {
            let mut cmd = self.command(["delete", "--force", id.as_str()]);
            cmd.stdout(Stdio::null()).stderr(Stdio::null());
            let _ = cmd.status();
        }
    }
}

/// Processes whose command line contains `marker` (for leak checks).
pub fn processes_with(marker: &str) -> Vec<i32> {
    let mut out = Vec::new();
    let me = std::process::id() as i32;
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if pid == me {
            continue;
        }
        if let Ok(cmd) = std::fs::read(e.path().join("cmdline")) {
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            if cmd.contains(marker) {
                out.push(pid);
            }
        }
    }
    out
}

/// cgroup directories (in every v1 hierarchy and the unified one) whose name contains `needle`.
pub fn cgroups_with(needle: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    fn walk(dir: &Path, needle: &str, depth: usize, found: &mut Vec<PathBuf>) {
        if depth > 4 {
            return;
        }
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let p = e.path();
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                if e.file_name().to_string_lossy().contains(needle) {
                    found.push(p.clone());
                }
                walk(&p, needle, depth + 1, found);
            }
        }
    }
    walk(Path::new("/sys/fs/cgroup"), needle, 0, &mut found);
    found
}

/// Mounts whose mount point or source contains `needle`.
pub fn mounts_with(needle: &str) -> Vec<String> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(needle))
        .map(str::to_string)
        .collect()
}

/// A unique id for this test process: `<prefix>-<pid>-<n>`.
pub fn unique_id(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// A unique all-digit marker, usable as a `sleep` argument and found again in /proc cmdlines.
pub fn unique_sleep() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "7{:07}{:03}",
        std::process::id() % 10_000_000,
        N.fetch_add(1, Ordering::Relaxed) % 1000
    )
}

/// Asserts nothing of container `id` is left: no cgroup, no process with `marker`, no state dir.
pub fn assert_no_leftovers(rt: &Runtime, id: &str, marker: Option<&str>) {
    assert!(
        !rt.root.join(id).exists(),
        "state dir {} left behind",
        rt.root.join(id).display()
    );
    let cg = cgroups_with(id);
    assert!(cg.is_empty(), "cgroups left behind for {id}: {cg:?}");
    if let Some(m) = marker {
        // Killed processes may take a moment to be reaped by init.
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let p = processes_with(m);
            if p.is_empty() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "processes left behind for {id}: {p:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}
