//! The pod's network namespace: made by the shim and pinned with a bind mount, so it outlives
//! the pause container and CNI DEL can still find it after a crash (containerd's `netns` does
//! the same). It is made on a dedicated OS thread: `unshare(CLONE_NEWNET)` changes only the
//! calling thread, which must not be a tokio worker that later runs other tasks.

use std::path::{Path, PathBuf};
use std::process::Command;

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{unshare, CloneFlags};

use crate::error::ShimError;

/// Creates a pinned network namespace at `path` with `lo` up. On failure nothing is left.
pub fn create(path: &Path) -> Result<(), ShimError> {
    let dir = path.parent().expect("netns path has a parent");
    std::fs::create_dir_all(dir).map_err(ShimError::io(dir))?;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(ShimError::io(path))?;
    let target = path.to_path_buf();
    let made = std::thread::spawn(move || -> Result<(), String> {
        unshare(CloneFlags::CLONE_NEWNET).map_err(|e| format!("unshare(CLONE_NEWNET): {e}"))?;
        mount(
            Some(Path::new("/proc/thread-self/ns/net")),
            &target,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(|e| format!("bind-mounting the namespace on {}: {e}", target.display()))?;
        // A child forked from this thread starts in this thread's network namespace.
        let out = Command::new("ip")
            .args(["link", "set", "lo", "up"])
            .output()
            .map_err(|e| format!("ip link set lo up: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "ip link set lo up: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(())
    })
    .join()
    .map_err(|_| ShimError::Internal("network namespace thread panicked".into()))?;
    if let Err(message) = made {
        let _ = remove(path);
        return Err(ShimError::Internal(format!(
            "network namespace {}: {message}",
            path.display()
        )));
    }
    Ok(())
}

/// Unmounts and removes a pinned namespace; a missing one is not an error.
pub fn remove(path: &Path) -> Result<(), ShimError> {
    match umount2(path, MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::Error::EINVAL) | Err(nix::Error::ENOENT) => {}
        Err(e) => {
            return Err(ShimError::Internal(format!(
                "unmounting network namespace {}: {e}",
                path.display()
            )))
        }
    }
    crate::records::remove(path)
}

/// Where the sandbox `id`'s namespace is pinned.
pub fn path_for(dir: &Path, id: &str) -> PathBuf {
    dir.join(id)
}
