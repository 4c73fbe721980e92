//! Starting a container through `pea-monitor` and reading what it reports.
//!
//! At StartContainer the monitor (shim/monitor) runs the OCI runtime's `run --detach` (create
//! and start in one runtime process) with the container's stdout and stderr on pipes it owns,
//! reports `{"pid":N}` (or `{"error":"..."}`) on its stdout, then
//! writes the CRI log and, when the container's init exits, an exit file. It runs in its own
//! process group and outlives the shim; while the shim lives, a task reaps it and refreshes the
//! container's record the moment it exits.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use tokio::io::AsyncReadExt;

use crate::error::ShimError;
use crate::Shim;

/// How long `run --detach` (inside the monitor) may take.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// What the monitor writes when the container's init has exited.
#[derive(Debug, Clone, Deserialize)]
pub struct ExitStatus {
    pub exit_code: i32,
    #[serde(default)]
    pub signal: Option<i32>,
    #[serde(default)]
    pub finished_at_ns: i64,
}

impl ExitStatus {
    pub fn read(path: &Path) -> Result<Option<Self>, ShimError> {
        match std::fs::read(path) {
            Ok(b) => serde_json::from_slice(&b).map(Some).map_err(|e| {
                ShimError::Internal(format!("{}: unparsable exit file: {e}", path.display()))
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(ShimError::io(path)(e)),
        }
    }
}

#[derive(Debug, Deserialize)]
struct Report {
    pid: Option<i32>,
    error: Option<String>,
}

/// A container started by its monitor.
#[derive(Debug, Clone, Copy)]
pub struct Started {
    pub init_pid: i32,
    pub monitor_pid: i32,
}

/// Starts a monitor that creates and starts container `id` from `bundle`; returns once the
/// runtime's `run --detach` succeeded (or failed: then the monitor has exited, and the runtime
/// has deleted what it made).
pub async fn start(
    shim: &Arc<Shim>,
    id: &str,
    bundle: &Path,
    log: Option<&Path>,
    stdin: Option<&'static str>,
    tty: bool,
) -> Result<Started, ShimError> {
    let mut cmd = tokio::process::Command::new(&shim.cfg.monitor);
    cmd.arg("--runtime")
        .arg(&shim.cfg.runtime)
        .arg("--runtime-root")
        .arg(&shim.cfg.runtime_root)
        .arg("--id")
        .arg(id)
        .arg("--bundle")
        .arg(bundle)
        .arg("--exit-file")
        .arg(shim.exit_file(id))
        .args(["--mode", "run"]);
    if let Some(l) = log {
        cmd.arg("--log").arg(l);
    }
    if let Some(socket) = attach_socket(shim, id) {
        cmd.arg("--attach-socket").arg(socket);
    }
    if let Some(mode) = stdin {
        cmd.arg("--stdin").arg(mode);
    }
    if tty {
        cmd.arg("--console-socket").arg(console_socket(shim, id)?);
    }
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        // Its own process group: a Ctrl-C or a signal to the shim's group leaves it alone.
        .process_group(0);
    let mut child = cmd.spawn().map_err(|e| ShimError::Runtime {
        op: "run",
        id: id.into(),
        message: format!("starting {}: {e}", shim.cfg.monitor.display()),
    })?;
    let monitor_pid = child.id().map(|p| p as i32).unwrap_or(0);
    let mut out = child.stdout.take().expect("piped");
    let mut line = Vec::new();
    let read = tokio::time::timeout(START_TIMEOUT, out.read_to_end(&mut line)).await;
    drop(out);
    let report: Option<Report> = serde_json::from_slice(&line).ok();
    let shim2 = shim.clone();
    let id2 = id.to_string();
    // Reap the monitor and fold the exit in as soon as it finishes.
    tokio::spawn(async move {
        let _ = child.wait().await;
        // Reading the record folds the exit file in (and emits the stopped event).
        let _ = shim2.container(&id2);
    });
    match (read, report) {
        (Err(_), _) => Err(ShimError::DeadlineExceeded {
            what: format!("starting container {id}"),
            seconds: START_TIMEOUT.as_secs() as i64,
        }),
        (_, Some(Report { pid: Some(pid), .. })) => Ok(Started {
            init_pid: pid,
            monitor_pid,
        }),
        (
            _,
            Some(Report {
                error: Some(message),
                ..
            }),
        ) => Err(ShimError::Runtime {
            op: "run",
            id: id.into(),
            message,
        }),
        _ => Err(ShimError::Runtime {
            op: "run",
            id: id.into(),
            message: format!(
                "pea-monitor reported nothing usable: {:?}",
                String::from_utf8_lossy(&line)
            ),
        }),
    }
}

/// The monitor's `--stdin` for a container config: CRI's `stdin` keeps a pipe open for attach
/// clients, `stdin_once` closes it after the first client closes its stdin.
pub fn stdin_mode(config: &k8s_cri::v1::ContainerConfig) -> Option<&'static str> {
    match (config.stdin, config.stdin_once) {
        (false, _) => None,
        (true, false) => Some("open"),
        (true, true) => Some("once"),
    }
}

/// Where a tty container's runtime sends the pty master to its monitor, in a 0700 directory
/// (the monitor binds it and removes it once it has the master).
fn console_socket(shim: &Shim, id: &str) -> Result<PathBuf, ShimError> {
    use std::os::unix::fs::PermissionsExt;
    let dir = shim.cfg.state.join("consoles");
    std::fs::create_dir_all(&dir)
        .and_then(|_| std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)))
        .map_err(ShimError::io(&dir))?;
    // Exec consoles in the same directory are named by a 16-hex nonce without this prefix.
    Ok(dir.join(format!("ctr-{}.sock", &id[..id.len().min(16)])))
}

/// Where the monitor serves attach clients (`crate::streaming::attach`), in a 0700 directory;
/// `None` (attach unavailable, logged) when the path would not fit a unix socket address.
fn attach_socket(shim: &Shim, id: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = crate::streaming::attach::socket_path(&shim.cfg, id);
    if path.as_os_str().len() > 107 {
        tracing::warn!(container = id, path = %path.display(), "attach socket path too long; attach will not be available");
        return None;
    }
    let dir = path.parent()?;
    let made = std::fs::create_dir_all(dir)
        .and_then(|_| std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)));
    if let Err(e) = made {
        tracing::warn!(container = id, error = %e, "attach socket dir; attach will not be available");
        return None;
    }
    Some(path)
}

/// Whether `pid` is still container `id`'s monitor (pids are reused).
pub fn is_monitor_of(pid: i32, id: &str) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| {
        let args: Vec<&[u8]> = c.split(|b| *b == 0).collect();
        args.first().is_some_and(|a0| a0.ends_with(b"pea-monitor")) && args.contains(&id.as_bytes())
    })
}

/// The live pea-monitor of container `id`, found by its command line (a shim killed while
/// StartContainer ran never learnt its pid).
pub fn find_monitor_of(id: &str) -> Option<i32> {
    std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .find(|&pid| is_monitor_of(pid, id))
}

/// Whether the kernel's OOM killer struck in the container's memory cgroup (v1
/// `memory.oom_control`'s `oom_kill`, v2 `memory.events`' `oom_kill`).
pub fn oom_killed(cgroups_path: &str) -> bool {
    let rel = cgroups_path.trim_start_matches('/');
    let candidates: [(PathBuf, &str); 2] = [
        (
            Path::new("/sys/fs/cgroup/memory")
                .join(rel)
                .join("memory.oom_control"),
            "oom_kill ",
        ),
        (
            Path::new("/sys/fs/cgroup").join(rel).join("memory.events"),
            "oom_kill ",
        ),
    ];
    candidates.iter().any(|(p, key)| {
        std::fs::read_to_string(p).is_ok_and(|t| {
            t.lines()
                .filter_map(|l| l.strip_prefix(key))
                .any(|n| n.trim().parse::<u64>().is_ok_and(|n| n > 0))
        })
    })
}
