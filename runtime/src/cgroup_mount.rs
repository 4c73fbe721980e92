//! libcontainer 0.7.0 bind-mounts the cgroup v1 hierarchies into the container read-write and
//! ignores the spec's `ro` option, so a container's root could create cgroups or raise its own
//! limits. After `build()` (the init is still waiting for `start`), pea enters the container's
//! mount namespace in a short-lived child and makes every `ro` cgroup mount read-only,
//! recursively, with mount_setattr(2).

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
    // SAFETY: the process is single-threaded here (libcontainer requires it for build()); the
    // child only makes raw syscalls on memory prepared before the fork, then _exits.
    let child = unsafe { libc::fork() };
    if child < 0 {
        return Err(RuntimeError::Other(format!(
            "fork: {}",
            std::io::Error::last_os_error()
        )));
    }
    if child == 0 {
        // SAFETY: async-signal-safe syscalls only; every pointer refers to live memory.
        unsafe {
            let fd = libc::open(ns.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC);
            if fd < 0 || libc::setns(fd, libc::CLONE_NEWNS) != 0 {
                libc::_exit(100);
            }
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
                    libc::_exit(101 + i as i32);
                }
            }
            libc::_exit(0);
        }
    }
    let mut status = 0;
    // SAFETY: waiting for the child we just forked.
    let r = unsafe { libc::waitpid(child, &mut status, 0) };
    if r != child || !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
        let code = if libc::WIFEXITED(status) {
            libc::WEXITSTATUS(status)
        } else {
            -1
        };
        let what = match code {
            100 => "entering the container's mount namespace failed".to_string(),
            c if c > 100 => format!(
                "making {} read-only failed",
                dests
                    .get((c - 101) as usize)
                    .map(|d| d.display().to_string())
                    .unwrap_or_default()
            ),
            c => format!("helper exited with {c}"),
        };
        return Err(RuntimeError::Other(format!("cgroup mount: {what}")));
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
