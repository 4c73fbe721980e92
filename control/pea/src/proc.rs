//! Running programs: one-shot commands (failing with their stderr), background services started
//! with setsid inside a node's namespace (log file, pid file), and stopping them again.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// Runs `prog args`, returning stdout; a failure carries the command and its stderr.
pub fn run(prog: &str, args: &[&str]) -> Result<String> {
    let out = Command::new(prog)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {prog}"))?;
    if !out.status.success() {
        bail!(
            "{prog} {}: {} {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `ip -n NETNS args`.
pub fn ip(netns: &str, args: &[&str]) -> Result<String> {
    let mut a = vec!["-n", netns];
    a.extend_from_slice(args);
    run("ip", &a)
}

/// Starts `cmd` in the background in namespace file `netns` (and UTS namespace file `uts`)
/// (setsid, so it outlives `pea`), output appended to `log`; writes its pid to `pid_file`.
/// nsenter and setsid exec, so the pid is the program's own.
pub fn spawn(
    netns: Option<&Path>,
    uts: Option<&Path>,
    cmd: &[String],
    envs: &[(&str, &str)],
    log: &Path,
    pid_file: &Path,
) -> Result<u32> {
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("opening {}", log.display()))?;
    let mut c = Command::new("setsid");
    if netns.is_some() || uts.is_some() {
        c.arg("nsenter");
    }
    if let Some(ns) = netns {
        c.arg(format!("--net={}", ns.display()));
    }
    if let Some(ns) = uts {
        c.arg(format!("--uts={}", ns.display()));
    }
    c.args(cmd)
        .envs(envs.iter().copied())
        .env_remove("KUBECONFIG")
        .stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out);
    let child = c.spawn().with_context(|| format!("starting {}", cmd[0]))?;
    let pid = child.id();
    std::fs::write(pid_file, pid.to_string())?;
    // How it was started, so `pea supervise` can start it again the same way.
    let spec = Spawned {
        netns: netns.map(Path::to_path_buf),
        uts: uts.map(Path::to_path_buf),
        cmd: cmd.to_vec(),
        envs: envs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        log: log.to_path_buf(),
    };
    std::fs::write(spawn_file(pid_file), serde_json::to_vec(&spec)?)?;
    // Not waited for: it runs on after pea exits (init reaps it then).
    drop(child);
    Ok(pid)
}

/// How `spawn` started a service (beside its pid file).
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct Spawned {
    pub netns: Option<PathBuf>,
    /// Absent in a spec an older pea wrote.
    #[serde(default)]
    pub uts: Option<PathBuf>,
    pub cmd: Vec<String>,
    pub envs: Vec<(String, String)>,
    pub log: PathBuf,
}

pub fn spawn_file(pid_file: &Path) -> PathBuf {
    pid_file.with_extension("spawn.json")
}

/// Starts a service again exactly as `spawn` started it (the spec beside `pid_file`).
pub fn respawn(pid_file: &Path) -> Result<u32> {
    let f = spawn_file(pid_file);
    let spec: Spawned = serde_json::from_slice(
        &std::fs::read(&f).with_context(|| format!("reading {}", f.display()))?,
    )
    .with_context(|| format!("{}", f.display()))?;
    let envs: Vec<(&str, &str)> = spec
        .envs
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    spawn(
        spec.netns.as_deref(),
        spec.uts.as_deref(),
        &spec.cmd,
        &envs,
        &spec.log,
        pid_file,
    )
}

/// Whether `f` is a namespace pinned by a bind mount (nsfs), not a plain file.
pub fn is_namespace_file(f: &Path) -> bool {
    nix::sys::statfs::statfs(f).is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::NSFS_MAGIC)
}

pub fn read_pid(pid_file: &Path) -> Option<u32> {
    std::fs::read_to_string(pid_file).ok()?.trim().parse().ok()
}

/// Whether the process is alive (and not a zombie).
pub fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => !s
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

/// SIGTERM, then SIGKILL after `grace`.
pub fn stop(pids: &[u32], grace: Duration) {
    for &p in pids {
        let _ = kill(Pid::from_raw(p as i32), Signal::SIGTERM);
    }
    let start = Instant::now();
    while pids.iter().any(|&p| alive(p)) && start.elapsed() < grace {
        std::thread::sleep(Duration::from_millis(50));
    }
    for &p in pids {
        if alive(p) {
            let _ = kill(Pid::from_raw(p as i32), Signal::SIGKILL);
        }
    }
}

/// Polls `f` every 100 ms until it holds or `timeout` passes.
pub fn wait_for(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    loop {
        if f() {
            return true;
        }
        if start.elapsed() > timeout {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The last `n` lines of a log, for error messages.
pub fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Waits until `ready` holds for the service with `pid`, failing at once (with its log) if it
/// exits, or after `timeout`.
pub fn wait_started(
    what: &str,
    pid: u32,
    log: &Path,
    timeout: Duration,
    mut ready: impl FnMut() -> bool,
) -> Result<()> {
    let start = Instant::now();
    loop {
        if ready() {
            return Ok(());
        }
        if !alive(pid) {
            bail!("{what} exited; its log ends:\n{}", tail(log, 15));
        }
        if start.elapsed() > timeout {
            bail!(
                "{what} not ready after {timeout:?}; its log ends:\n{}",
                tail(log, 15)
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
