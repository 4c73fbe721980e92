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
    #[error("idmapped mount of layer {layer}: {message}")]
    IdMap { layer: PathBuf, message: String },
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
    let (upper, work) = state_dirs(state, target)?;
    mount_overlay(&lowers, &upper, &work, target)
}

/// How a user-namespace pod's rootfs is mounted: overlayfs cannot be idmapped itself
/// (mount_setattr answers EINVAL), its layers can. Each image layer is seen through an
/// idmapped mount that `map_layer(layer, at)` makes at a directory under `staging`, and the
/// upper and work directories belong to the pod's root (`owner`, host ids), so the pod's root
/// owns the image's root-owned files and its copy-ups and new files land on disk with its host
/// ids (containerd 2 mounts such snapshots the same way). The staged mounts are detached once
/// the overlay holds them (overlayfs keeps private clones of its layers).
pub struct IdMappedLayers<'a> {
    pub staging: &'a Path,
    pub owner: (u32, u32),
    pub map_layer: &'a dyn Fn(&Path, &Path) -> Result<(), String>,
}

impl std::fmt::Debug for IdMappedLayers<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdMappedLayers")
            .field("staging", &self.staging)
            .field("owner", &self.owner)
            .finish_non_exhaustive()
    }
}

/// [`mount_rootfs`] from idmapped layers (see [`IdMappedLayers`]). On failure nothing stays
/// mounted and the staging directory is gone.
pub fn mount_rootfs_mapped(
    store: &Store,
    key: &str,
    state: &Path,
    target: &Path,
    mapped: &IdMappedLayers<'_>,
) -> Result<Rootfs, RootfsError> {
    let lowers = store.lower_dirs(key)?;
    let (upper, work) = state_dirs(state, target)?;
    for d in [&upper, &work] {
        std::os::unix::fs::chown(d, Some(mapped.owner.0), Some(mapped.owner.1)).map_err(
            |source| RootfsError::Io {
                path: d.clone(),
                source,
            },
        )?;
    }
    let mut staged = Vec::new();
    let mounted = (|| {
        for (i, layer) in lowers.iter().enumerate() {
            let at = mapped.staging.join(i.to_string());
            fs::create_dir_all(&at).map_err(|source| RootfsError::Io {
                path: at.clone(),
                source,
            })?;
            (mapped.map_layer)(layer, &at).map_err(|message| RootfsError::IdMap {
                layer: layer.clone(),
                message,
            })?;
            staged.push(at);
        }
        mount_overlay(&staged, &upper, &work, target)
    })();
    // Never a recursive removal here: a staged mount that failed to detach would let it
    // reach into the image's layer. Empty directories only.
    for at in &staged {
        let _ = umount2(at.as_path(), MntFlags::MNT_DETACH);
    }
    for i in 0..lowers.len() {
        let _ = fs::remove_dir(mapped.staging.join(i.to_string()));
    }
    let _ = fs::remove_dir(mapped.staging);
    mounted
}

fn state_dirs(state: &Path, target: &Path) -> Result<(PathBuf, PathBuf), RootfsError> {
    let upper = state.join("upper");
    let work = state.join("work");
    for d in [&upper, &work, &target.to_path_buf()] {
        fs::create_dir_all(d).map_err(|source| RootfsError::Io {
            path: d.clone(),
            source,
        })?;
    }
    Ok((upper, work))
}

fn mount_overlay(
    lowers: &[PathBuf],
    upper: &Path,
    work: &Path,
    target: &Path,
) -> Result<Rootfs, RootfsError> {
    let lower = lowers
        .iter()
        .map(|p| check(p))
        .collect::<Result<Vec<_>, _>>()?
        .join(":");
    let opts = format!(
        "lowerdir={lower},upperdir={},workdir={}",
        check(upper)?,
        check(work)?
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
