//! `idmap-mount` (pea's own verb; runc has none like it): an idmapped bind mount of SOURCE at
//! TARGET, mapped with the ids of the user namespace at `--userns` (`open_tree(OPEN_TREE_CLONE)`,
//! `mount_setattr(MOUNT_ATTR_IDMAP)`, `move_mount`). pea-shim uses it for user-namespace pods:
//! overlayfs cannot be idmapped itself (mount_setattr answers EINVAL) but its layers can, so the
//! shim mounts the pod's rootfs overlay from idmapped image layers and the pod's root sees the
//! image's root-owned files as its own. libcontainer 0.7.0 has no idmap support (it skips the
//! OCI mount option `idmap`). The raw syscalls live here because `unsafe` is allowed only in
//! pea-runtime and pea-cni.

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use crate::cli::IdmapMountArgs;
use crate::error::{Result, RuntimeError};

// <linux/mount.h>
const OPEN_TREE_CLONE: libc::c_uint = 1;
const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x4;
const MOUNT_ATTR_IDMAP: u64 = 0x0010_0000;

/// `struct mount_attr` (MOUNT_ATTR_SIZE_VER0, 32 bytes).
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

fn c_path(p: &Path) -> Result<CString> {
    CString::new(p.as_os_str().as_bytes())
        .map_err(|_| RuntimeError::Usage(format!("{}: path has a NUL byte", p.display())))
}

fn syscall_error(call: &str, what: &Path) -> RuntimeError {
    RuntimeError::Other(format!(
        "{call} {}: {}",
        what.display(),
        std::io::Error::last_os_error()
    ))
}

pub fn run(a: IdmapMountArgs) -> Result<i32> {
    let userns = std::fs::File::open(&a.userns).map_err(RuntimeError::io(&a.userns))?;
    let source = c_path(&a.source)?;
    let target = c_path(&a.target)?;
    let empty = c"";
    // SAFETY: open_tree takes a NUL-terminated path that outlives the call; the flags are
    // plain integers. A non-negative result is a new fd we own.
    let tree = unsafe {
        libc::syscall(
            libc::SYS_open_tree,
            libc::AT_FDCWD,
            source.as_ptr(),
            OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint,
        )
    };
    if tree < 0 {
        return Err(syscall_error("open_tree", &a.source));
    }
    // SAFETY: `tree` is a fresh fd returned by open_tree, owned by nothing else.
    let tree = unsafe { OwnedFd::from_raw_fd(tree as i32) };
    let attr = MountAttr {
        attr_set: MOUNT_ATTR_IDMAP,
        attr_clr: 0,
        propagation: 0,
        userns_fd: userns.as_raw_fd() as u64,
    };
    // SAFETY: the fd is valid, the empty path is NUL-terminated, and `attr` is a live
    // `struct mount_attr` whose size is passed with it.
    let r = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            tree.as_raw_fd(),
            empty.as_ptr(),
            libc::AT_EMPTY_PATH,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if r < 0 {
        return Err(syscall_error("mount_setattr(MOUNT_ATTR_IDMAP)", &a.source));
    }
    // SAFETY: both paths are NUL-terminated and outlive the call; the fd is the detached
    // tree made above.
    let r = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            tree.as_raw_fd(),
            empty.as_ptr(),
            libc::AT_FDCWD,
            target.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH,
        )
    };
    if r < 0 {
        return Err(syscall_error("move_mount", &a.target));
    }
    Ok(0)
}
