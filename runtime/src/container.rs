//! Loading containers from the state root, runc's `state` JSON, cgroup access and signalling.
//!
//! libcontainer keeps `<root>/<id>/state.json`; pea adds `<root>/<id>/pea.json` (versioned,
//! written atomically) with the init's start time so a recycled pid is not taken for the init.
//!
//! ```text
//!  create ──► created ──start──► running ──(exit)──► stopped ──delete──► (gone)
//!                │  ▲  pause/resume  │
//!                │  └──── paused ◄───┘
//!                └──────kill/delete──────────────────► stopped
//! ```

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use libcgroups::common::{AnyCgroupManager, CgroupConfig, CgroupManager, FreezerState};
use libcontainer::container::{Container, ContainerStatus};
use serde::{Deserialize, Serialize};

use crate::error::{Result, RuntimeError};

/// Checks an id before it becomes a path component.
pub fn check_id(id: &str) -> Result<()> {
    let bad = |reason| {
        Err(RuntimeError::InvalidId {
            id: id.to_string(),
            reason,
        })
    };
    if id.is_empty() {
        return bad("empty");
    }
    if id == "." || id == ".." {
        return bad("must not be . or ..");
    }
    if id.len() > 1024 {
        return bad("longer than 1024 bytes");
    }
    if !id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"_+-.".contains(&b))
    {
        return bad("only letters, digits and _ + - . are allowed");
    }
    Ok(())
}

/// pea's own per-container record next to libcontainer's state.json.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PeaRecord {
    pub version: u32,
    /// Start time of the init process (field 22 of /proc/<pid>/stat), in clock ticks.
    pub init_start_time: Option<u64>,
}

pub const RECORD_FILE: &str = "pea.json";

/// Writes `data` to `path` atomically: temp file, rename. No fsync, as runc's state and pid
/// files: they describe processes a power loss kills anyway, and the rename alone keeps a
/// reader from seeing a torn file.
pub fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    use std::io::Write;
    let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(data)?;
        std::fs::rename(&tmp, path)
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        RuntimeError::Io {
            path: path.to_path_buf(),
            source: e,
        }
    })
}

/// Start time of `pid` in clock ticks since boot, if it exists.
pub fn start_time(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // comm may hold spaces and parens: fields start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split(' ').nth(19)?.parse().ok()
}

/// A loaded container with its status refreshed.
#[derive(Debug)]
pub struct Handle {
    pub c: Container,
    pub root: PathBuf,
}

impl Handle {
    /// Loads `<root>/<id>` and refreshes its status (guarding against pid reuse).
    pub fn load(root: &Path, id: &str) -> Result<Self> {
        check_id(id)?;
        let dir = root.join(id);
        if !dir.join("state.json").exists() {
            return Err(RuntimeError::NotFound(id.to_string()));
        }
        let mut c = Container::load(dir.clone()).map_err(RuntimeError::lc(id, "load"))?;
        if let (Some(pid), Ok(text)) = (c.pid(), std::fs::read(dir.join(RECORD_FILE))) {
            if let Ok(rec) = serde_json::from_slice::<PeaRecord>(&text) {
                if rec.init_start_time.is_some() && start_time(pid.as_raw()) != rec.init_start_time
                {
                    c.set_status(ContainerStatus::Stopped);
                }
            }
        }
        Ok(Self { c, root: dir })
    }

    pub fn id(&self) -> &str {
        self.c.id()
    }

    pub fn status(&self) -> ContainerStatus {
        self.c.status()
    }

    pub fn status_name(&self) -> String {
        status_name(self.c.status()).to_string()
    }

    /// Errors with runc's wording unless the status is one of `ok`.
    pub fn require(&self, op: &'static str, ok: &[ContainerStatus]) -> Result<()> {
        if ok.contains(&self.status()) {
            Ok(())
        } else {
            Err(RuntimeError::Status {
                id: self.id().to_string(),
                op,
                status: self.status_name(),
            })
        }
    }

    pub fn cgroup_manager(&self) -> Result<AnyCgroupManager> {
        let cfg = self
            .c
            .spec()
            .map_err(RuntimeError::lc(self.id(), "read config of"))?;
        libcgroups::common::create_cgroup_manager(CgroupConfig {
            cgroup_path: cfg.cgroup_path,
            systemd_cgroup: false,
            container_name: self.id().to_string(),
        })
        .map_err(|e| self.cgroup_err(e))
    }

    pub fn cgroup_err(&self, e: impl std::fmt::Display) -> RuntimeError {
        RuntimeError::Cgroup {
            id: self.id().to_string(),
            reason: e.to_string(),
        }
    }

    /// Pids in the container's cgroup.
    pub fn pids(&self) -> Result<Vec<i32>> {
        let cm = self.cgroup_manager()?;
        let pids = cm.get_all_pids().map_err(|e| self.cgroup_err(e))?;
        Ok(pids.into_iter().map(|p| p.as_raw()).collect())
    }

    /// Sends `sig` to the init, or with `all` to every process in the cgroup (frozen meanwhile
    /// so nothing forks past the signal).
    pub fn signal(&self, sig: i32, all: bool) -> Result<()> {
        if all {
            let cm = self.cgroup_manager()?;
            let was_paused = self.status() == ContainerStatus::Paused;
            cm.freeze(FreezerState::Frozen)
                .map_err(|e| self.cgroup_err(e))?;
            let pids = cm.get_all_pids();
            if let Ok(pids) = &pids {
                for p in pids {
                    // SAFETY: kill with integer arguments; ESRCH (already gone) is fine.
                    unsafe { libc::kill(p.as_raw(), sig) };
                }
            }
            if !was_paused || sig == libc::SIGKILL {
                cm.freeze(FreezerState::Thawed)
                    .map_err(|e| self.cgroup_err(e))?;
            }
            pids.map_err(|e| self.cgroup_err(e))?;
            return Ok(());
        }
        let pid = self.c.pid().ok_or_else(|| {
            RuntimeError::Other(format!("container {} has no init pid", self.id()))
        })?;
        // SAFETY: kill with integer arguments.
        let rc = unsafe { libc::kill(pid.as_raw(), sig) };
        if rc != 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::ESRCH) {
                return Err(RuntimeError::Other(format!("kill {}: {e}", pid.as_raw())));
            }
        }
        if sig == libc::SIGKILL && self.status() == ContainerStatus::Paused {
            // A frozen task cannot die until thawed.
            if let Ok(cm) = self.cgroup_manager() {
                let _ = cm.freeze(FreezerState::Thawed);
            }
        }
        Ok(())
    }

    /// runc's `state` output.
    pub fn oci_state(&self) -> serde_json::Value {
        let stopped = self.status() == ContainerStatus::Stopped;
        let bundle = self.c.bundle().clone();
        let rootfs = crate::validate::load_spec(&bundle)
            .ok()
            .and_then(|s| crate::validate::rootfs_path(&bundle, &s).ok())
            .unwrap_or_else(|| bundle.join("rootfs"));
        let mut v = serde_json::json!({
            "ociVersion": oci_spec::runtime::VERSION,
            "id": self.id(),
            "pid": if stopped { 0 } else { self.c.pid().map(|p| p.as_raw()).unwrap_or(0) },
            "status": self.status_name(),
            "bundle": bundle,
            "rootfs": rootfs,
            "created": self.c.created().map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)),
            "owner": "",
        });
        if let Some(a) = self.c.state.annotations.as_ref().filter(|a| !a.is_empty()) {
            v["annotations"] = serde_json::json!(a);
        }
        v
    }
}

pub fn status_name(s: ContainerStatus) -> &'static str {
    match s {
        ContainerStatus::Creating => "creating",
        ContainerStatus::Created => "created",
        ContainerStatus::Running => "running",
        ContainerStatus::Stopped => "stopped",
        ContainerStatus::Paused => "paused",
    }
}

/// Waits until `pid` has exited (it may not be our child), up to `timeout`.
pub fn wait_gone(pid: i32, timeout: Duration) -> bool {
    // SAFETY: pidfd_open takes integers and returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) } as i32;
    if fd < 0 {
        return true; // ESRCH: already gone
    }
    // SAFETY: fd was just returned by pidfd_open and is owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let mut pfd = libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        let rc = unsafe { libc::poll(&mut pfd, 1, left.as_millis().min(i32::MAX as u128) as i32) };
        if rc > 0 {
            return true;
        }
        if rc == 0 {
            return false;
        }
        if std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            return false;
        }
    }
}

/// Creates the state root (0700) if needed.
pub fn ensure_root(root: &Path) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    if root.is_dir() {
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(root)
        .map_err(RuntimeError::io(root))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids() {
        assert!(check_id("abc-1_2+3.x").is_ok());
        for bad in ["", ".", "..", "a/b", "../x", "a b", "é"] {
            assert!(check_id(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn own_start_time_is_readable() {
        assert!(start_time(std::process::id() as i32).is_some());
        assert!(start_time(i32::MAX).is_none());
    }
}
