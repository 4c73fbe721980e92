//! libcontainer 0.7.0 bind-mounts the cgroup v1 hierarchies into the container read-write and
//! ignores the spec's `ro` option, so a container's root could create cgroups or raise its own
//! limits. After `build()` (the init is still waiting for `start`), pea enters the container's
//! mount namespace, makes every `ro` cgroup mount read-only, recursively, with mount_setattr(2),
//! and returns to its own.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;

use oci_spec::runtime::Spec;

use crate::error::{Result, RuntimeError};

const MOUNT_ATTR_RDONLY: u64 = 0x1;
const AT_RECURSIVE: libc::c_uint = 0x8000;

#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

/// Destinations of cgroup mounts the spec wants read-only.
pub fn readonly_cgroup_mounts(spec: &Spec) -> Vec<std::path::PathBuf> {
    spec.mounts()
        .iter()
        .flatten()
        .filter(|m| matches!(m.typ().as_deref(), Some("cgroup") | Some("cgroup2")))
        .filter(|m| m.options().iter().flatten().any(|o| o == "ro"))
        .map(|m| m.destination().clone())
        .collect()
}

/// Makes `dests` read-only (recursively) inside the mount namespace of `pid`.
pub fn make_readonly(pid: i32, dests: &[std::path::PathBuf]) -> Result<()> {
    if dests.is_empty() {
        return Ok(());
    }
    let ns = CString::new(format!("/proc/{pid}/ns/mnt")).expect("no NUL");
    let paths: Vec<CString> = dests
        .iter()
        .map(|d| CString::new(d.as_os_str().as_bytes()))
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| RuntimeError::InvalidSpec(format!("mount destination: {e}")))?;
    let attr = MountAttr {
        attr_set: MOUNT_ATTR_RDONLY,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    // Done in this process (a forked helper costs ~3 ms to tear down its copy of our address
    // space): enter the container's mount namespace, remount, and come back. Requires a
    // single-threaded caller (setns(CLONE_NEWNS) refuses shared fs state), which build() needs too.
    let here = CString::new("/proc/self/ns/mnt").expect("no NUL");
    let dot = CString::new(".").expect("no NUL");
    // SAFETY: plain syscalls on NUL-terminated strings and fds this function owns and closes.
    unsafe {
        let own = libc::open(here.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC);
        let cwd = libc::open(dot.as_ptr(), libc::O_PATH | libc::O_CLOEXEC);
        let target = libc::open(ns.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC);
        let close_all = || {
            for fd in [own, cwd, target] {
                if fd >= 0 {
                    libc::close(fd);
                }
            }
        };
        if own < 0 || cwd < 0 || target < 0 {
            let e = std::io::Error::last_os_error();
            close_all();
            return Err(RuntimeError::Other(format!(
                "cgroup mount: opening mount namespaces: {e}"
            )));
        }
        if libc::setns(target, libc::CLONE_NEWNS) != 0 {
            let e = std::io::Error::last_os_error();
            close_all();
            return Err(RuntimeError::Other(format!(
                "cgroup mount: entering the container's mount namespace: {e}"
            )));
        }
        let mut failed = None;
        for (i, p) in paths.iter().enumerate() {
            let rc = libc::syscall(
                libc::SYS_mount_setattr,
                libc::AT_FDCWD,
                p.as_ptr(),
                AT_RECURSIVE,
                &attr as *const MountAttr,
                std::mem::size_of::<MountAttr>(),
            );
            if rc != 0 {
                failed = Some((i, std::io::Error::last_os_error()));
                break;
            }
        }
        let back = libc::setns(own, libc::CLONE_NEWNS) == 0 && libc::fchdir(cwd) == 0;
        let back_err = std::io::Error::last_os_error();
        close_all();
        if !back {
            // Continuing in the container's mount namespace would be wrong for every later
            // path (state dir, cgroups); stop here.
            return Err(RuntimeError::Other(format!(
                "cgroup mount: returning to the runtime's mount namespace: {back_err}"
            )));
        }
        if let Some((i, e)) = failed {
            return Err(RuntimeError::Other(format!(
                "cgroup mount: making {} read-only: {e}",
                dests[i].display()
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_ro_cgroup_mounts_are_selected() {
        let spec: Spec = serde_json::from_value(serde_json::json!({
            "ociVersion": "1.0.2",
            "mounts": [
                {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
                 "options": ["nosuid", "ro"]},
                {"destination": "/rw-cgroup", "type": "cgroup", "source": "cgroup"},
                {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["ro"]}
            ]
        }))
        .unwrap();
        assert_eq!(
            readonly_cgroup_mounts(&spec),
            vec![std::path::PathBuf::from("/sys/fs/cgroup")]
        );
        // nothing to do: no fork happens
        assert!(make_readonly(1, &[]).is_ok());
    }
}
