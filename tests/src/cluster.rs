//! What the `pea up` cluster tests share: running the `pea` CLI, kubectl through the kubeconfig
//! `pea up` printed (with a fresh HOME, as kubectl caches discovery there), a guard that runs
//! `pea down` even when an assertion fails midway, and commands in the cluster's namespace.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use crate::bins::workspace_binary;
use crate::leakguard::Snapshot;

/// `pea ARGS`, its output captured.
pub fn pea(args: &[&str]) -> Output {
    Command::new(workspace_binary("pea", "PEA_CLI"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("running pea")
}

/// `systemd-analyze verify` of every unit `pea install --root ROOT` wrote (run from the root,
/// bounded to 60 s): whether it passed, and what it said.
pub fn systemd_verify(root: &Path) -> (bool, String) {
    let units: Vec<_> = std::fs::read_dir(root.join("etc/systemd/system"))
        .expect("the installed units")
        .flatten()
        .map(|e| e.path())
        .collect();
    let out = Command::new("timeout")
        .args(["60", "systemd-analyze", "verify", "--man=no"])
        .args(&units)
        .current_dir(root)
        .output()
        .expect("systemd-analyze");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout),
    )
}

/// The names in `dir`, sorted (none when it does not exist).
pub fn file_names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// `pea up --nodes N --name NAME`, asserting success; returns the host kubeconfig it printed.
pub fn up(name: &str, nodes: usize) -> PathBuf {
    let out = pea(&["up", "--nodes", &nodes.to_string(), "--name", name]);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "pea up failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("pea up: export KUBECONFIG="))
        .expect("pea up prints the KUBECONFIG")
        .into()
}

#[derive(Debug)]
pub struct Kubectl {
    pub kubeconfig: PathBuf,
    pub home: tempfile::TempDir,
}

impl Kubectl {
    pub fn new(kubeconfig: PathBuf) -> Self {
        Self {
            kubeconfig,
            home: tempfile::tempdir().expect("kubectl home"),
        }
    }

    /// kubectl ARGS (at most 30 s), optionally fed `stdin`.
    pub fn run(&self, args: &[&str], stdin: Option<&str>) -> Output {
        let mut child = Command::new("timeout")
            .arg("30")
            .arg("kubectl")
            .args(args)
            .env("KUBECONFIG", &self.kubeconfig)
            .env("HOME", self.home.path())
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("kubectl");
        if let Some(s) = stdin {
            use std::io::Write;
            child.stdin.take().unwrap().write_all(s.as_bytes()).unwrap();
        }
        child.wait_with_output().unwrap()
    }

    /// kubectl ARGS, asserting success; its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args, None);
        assert!(
            out.status.success(),
            "kubectl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

/// Removes the cluster when dropped (`std::mem::forget` it after a checked `pea down`).
#[derive(Debug)]
pub struct Down(pub String);
impl Drop for Down {
    fn drop(&mut self) {
        let _ = pea(&["down", "--name", &self.0]);
    }
}

/// Panics naming the first program a `pea up` cluster test needs that is missing
/// (kubectl, the registry, skopeo, nsenter, setsid, busybox), then `extra`.
pub fn require_cluster_programs(extra: &[&str]) {
    for p in [
        "kubectl",
        "docker-registry",
        "skopeo",
        "nsenter",
        "setsid",
        "busybox",
    ]
    .iter()
    .chain(extra)
    {
        crate::privileged::require_program(p);
    }
}

/// `pea down --name NAME` (the guard forgotten once it succeeded), then nothing of the cluster
/// left: no process of its pid files (`started`, read before down), no run or state dir, and no
/// mount, cgroup, namespace, link, nft table or process named after it that `before` lacks.
pub fn down_leaves_nothing(name: &str, before: &Snapshot, guard: Down, started: &[u32]) {
    let down = pea(&["down", "--name", name]);
    assert!(
        down.status.success(),
        "pea down: {}",
        String::from_utf8_lossy(&down.stderr)
    );
    std::mem::forget(guard);
    for p in started {
        let cmdline = std::fs::read(format!("/proc/{p}/cmdline")).unwrap_or_default();
        assert!(
            cmdline.is_empty(),
            "process {p} still running after pea down"
        );
    }
    let run_dir = PathBuf::from("/run/pea").join(name);
    assert!(!run_dir.exists() && !Path::new("/var/lib/pea/clusters").join(name).exists());
    let after = Snapshot::take().expect("snapshot");
    let tag = format!("pea-{name}");
    let leaks: Vec<String> = before
        .leaks_in(&after)
        .into_iter()
        .filter(|l| l.contains(&tag) || l.contains(&format!("/clusters/{name}")))
        .collect();
    assert!(leaks.is_empty(), "left after pea down: {leaks:#?}");
}

/// The pids in the pid files under a cluster's run dir.
/// `pea supervise` of cluster `name` held (SIGSTOP) while `f` runs, so a process the test kills
/// stays dead meanwhile, then let go (SIGCONT): it starts the dead ones again.
pub fn supervisor_held<T>(name: &str, f: impl FnOnce() -> T) -> T {
    let pid_file = format!("/run/pea/{name}/supervise.pid");
    let pid: i32 = std::fs::read_to_string(&pid_file)
        .unwrap_or_else(|e| panic!("{pid_file}: {e}"))
        .trim()
        .parse()
        .expect("pea supervise's pid");
    let sup = nix::unistd::Pid::from_raw(pid);
    nix::sys::signal::kill(sup, nix::sys::signal::Signal::SIGSTOP).expect("SIGSTOP pea supervise");
    let out = f();
    nix::sys::signal::kill(sup, nix::sys::signal::Signal::SIGCONT).expect("SIGCONT pea supervise");
    out
}

pub fn pids(run_dir: &Path) -> Vec<u32> {
    std::fs::read_dir(run_dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "pid"))
        .filter_map(|e| std::fs::read_to_string(e.path()).ok()?.trim().parse().ok())
        .collect()
}

/// The processes running one of `programs` (argv[0], a path inside their container) in node
/// `node`'s network namespace `pea-NODE`: e.g. the add-ons' containers on node 0's host network.
pub fn programs_in_node(node: &str, programs: &[&str]) -> Vec<u32> {
    use std::os::unix::fs::MetadataExt;
    let Ok(netns) = std::fs::metadata(format!("/run/netns/pea-{node}")) else {
        return Vec::new();
    };
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let argv0 = cmd.split(|b| *b == 0).next().unwrap_or_default();
            programs.iter().any(|p| argv0 == p.as_bytes())
                && std::fs::metadata(format!("/proc/{pid}/ns/net"))
                    .is_ok_and(|m| m.ino() == netns.ino())
        })
        .collect()
}

/// `busybox wget -q -O - URL` inside the cluster's namespace `pea-NAME` (the underlay), at most
/// 10 s; `None` when it fails.
pub fn wget_in_cluster(name: &str, url: &str) -> Option<String> {
    let out = Command::new("timeout")
        .args(["10", "ip", "netns", "exec", &format!("pea-{name}")])
        .args(["busybox", "wget", "-q", "-O", "-", url])
        .stdin(Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}
