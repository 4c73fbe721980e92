//! A container rootfs: an overlay mount of an image's snapshot chain (read-only lower dirs)
//! plus a writable upper dir owned by the container.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};

use crate::store::{Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum RootfsError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("mounting overlay at {target} (lowerdir={lower}): {source}")]
    Mount {
        target: PathBuf,
        lower: String,
        source: nix::Error,
    },
    #[error("unmounting {target}: {source}")]
    Unmount { target: PathBuf, source: nix::Error },
    #[error("unmounting {target}: still busy after {tries} tries; detached it lazily instead")]
    Busy { target: PathBuf, tries: u32 },
    #[error("{path}: overlay option paths may not contain ',' or ':'")]
    BadPath { path: PathBuf },
}

const UNMOUNT_TRIES: u32 = 50;
const UNMOUNT_RETRY_DELAY: std::time::Duration = std::time::Duration::from_millis(50);

/// A mounted rootfs; unmounted by [`Rootfs::unmount`] (or on drop, best effort).
#[derive(Debug)]
pub struct Rootfs {
    target: PathBuf,
    mounted: bool,
}

impl Rootfs {
    pub fn target(&self) -> &Path {
        &self.target
    }

    /// Unmounts, retrying while the mount is busy (see [`unmount_at`]).
    pub fn unmount(mut self) -> Result<(), RootfsError> {
        self.mounted = false;
        unmount_at(&self.target)
    }

    /// Keeps the mount past this handle (its owner records it and unmounts it with
    /// [`unmount_at`] later, e.g. after a restart); returns the mount point.
    pub fn keep(mut self) -> PathBuf {
        self.mounted = false;
        self.target.clone()
    }
}

/// Unmounts `target`, retrying while the mount is busy as containerd's `UnmountAll` does: a
/// process forked elsewhere may briefly hold a file or cwd inside it. If it stays busy the
/// mount is detached lazily so it cannot outlive its owner, and the caller still gets an error.
/// A target that is not mounted (or absent) is not an error.
pub fn unmount_at(target: &Path) -> Result<(), RootfsError> {
    for _ in 0..UNMOUNT_TRIES {
        match umount2(target, MntFlags::empty()) {
            Ok(()) | Err(nix::Error::EINVAL) | Err(nix::Error::ENOENT) => return Ok(()),
            Err(nix::Error::EBUSY) => std::thread::sleep(UNMOUNT_RETRY_DELAY),
            Err(source) => {
                return Err(RootfsError::Unmount {
                    target: target.to_path_buf(),
                    source,
                })
            }
        }
    }
    umount2(target, MntFlags::MNT_DETACH).map_err(|source| RootfsError::Unmount {
        target: target.to_path_buf(),
        source,
    })?;
    Err(RootfsError::Busy {
        target: target.to_path_buf(),
        tries: UNMOUNT_TRIES,
    })
}

impl Drop for Rootfs {
    fn drop(&mut self) {
        if self.mounted {
            let _ = umount2(&self.target, MntFlags::MNT_DETACH);
        }
    }
}

fn check(p: &Path) -> Result<String, RootfsError> {
    let s = p.display().to_string();
    if s.contains(',') || s.contains(':') {
        return Err(RootfsError::BadPath { path: p.into() });
    }
    Ok(s)
}

/// Mounts image `key` at `target` with `state` holding the container's `upper/` and `work/`.
pub fn mount_rootfs(
    store: &Store,
    key: &str,
    state: &Path,
    target: &Path,
) -> Result<Rootfs, RootfsError> {
    let lowers = store.lower_dirs(key)?;
    let upper = state.join("upper");
    let work = state.join("work");
    for d in [&upper, &work, &target.to_path_buf()] {
        fs::create_dir_all(d).map_err(|source| RootfsError::Io {
            path: d.clone(),
            source,
        })?;
    }
    let lower = lowers
        .iter()
        .map(|p| check(p))
        .collect::<Result<Vec<_>, _>>()?
        .join(":");
    let opts = format!(
        "lowerdir={lower},upperdir={},workdir={}",
        check(&upper)?,
        check(&work)?
    );
    mount(
        Some("overlay"),
        target,
        Some("overlay"),
        MsFlags::empty(),
        Some(opts.as_str()),
    )
    .map_err(|source| RootfsError::Mount {
        target: target.into(),
        lower,
        source,
    })?;
    Ok(Rootfs {
        target: target.into(),
        mounted: true,
    })
}
