//! Device nodes: a CRI device (a node or a directory of nodes on the host) becomes linux.devices
//! entries with the host node's type, numbers, mode and owner, and a device cgroup rule with
//! the requested permissions; a privileged container gets every device under the host's /dev.

use std::path::{Path, PathBuf};

use k8s_cri::v1 as cri;
use nix::sys::stat::{major, minor, stat, SFlag};
use oci_spec::runtime::{LinuxDevice, LinuxDeviceBuilder, LinuxDeviceCgroup, LinuxDeviceType};

use super::{invalid, io_error, is_clean_absolute, OciError};

/// The node at `host` as a device at `dest`; None when it is not a block or char device.
fn device_at(host: &Path, dest: &Path) -> Result<Option<LinuxDevice>, OciError> {
    let st = stat(host).map_err(|e| OciError::Io {
        path: host.to_path_buf(),
        source: std::io::Error::from(e),
    })?;
    let kind = SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT;
    let typ = if kind == SFlag::S_IFCHR {
        LinuxDeviceType::C
    } else if kind == SFlag::S_IFBLK {
        LinuxDeviceType::B
    } else {
        return Ok(None);
    };
    let dev = LinuxDeviceBuilder::default()
        .path(dest)
        .typ(typ)
        .major(major(st.st_rdev) as i64)
        .minor(minor(st.st_rdev) as i64)
        .file_mode(st.st_mode & 0o7777)
        .uid(st.st_uid)
        .gid(st.st_gid)
        .build()
        .map_err(|e| invalid("devices", e.to_string()))?;
    Ok(Some(dev))
}

/// Every device under `dir` (recursively), mapped under `dest`; `skip` names entries of the
/// top directory not to enter.
fn devices_under(
    dir: &Path,
    dest: &Path,
    skip: &[&str],
    out: &mut Vec<LinuxDevice>,
) -> Result<(), OciError> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .map_err(io_error(dir))?
        .filter_map(Result::ok)
        .collect();
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let name = entry.file_name();
        if skip.iter().any(|s| name == *s) {
            continue;
        }
        let Ok(ft) = entry.file_type() else { continue };
        let host = entry.path();
        let target = dest.join(&name);
        if ft.is_dir() {
            devices_under(&host, &target, &[], out)?;
        } else if ft.is_symlink() {
            continue;
        } else {
            match device_at(&host, &target) {
                Ok(Some(d)) => out.push(d),
                Ok(None) => {}
                // Gone while walking: not ours to report.
                Err(OciError::Io { source, .. })
                    if source.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(())
}

/// The host's /dev as a privileged container sees it (containerd's HostDevices: no pts, shm,
/// mqueue, fd or console, which the container gets its own of).
pub(super) fn host_devices() -> Result<Vec<LinuxDevice>, OciError> {
    let mut out = Vec::new();
    devices_under(
        Path::new("/dev"),
        Path::new("/dev"),
        &[
            "pts",
            "shm",
            "mqueue",
            "fd",
            "console",
            ".lxc",
            ".lxd-mounts",
            ".udev",
        ],
        &mut out,
    )?;
    Ok(out)
}

/// Adds the config's devices (and their cgroup rules unless the container is privileged, whose
/// cgroup already allows everything).
pub(super) fn add_cri_devices(
    list: &[cri::Device],
    devices: &mut Vec<LinuxDevice>,
    rules: &mut Vec<LinuxDeviceCgroup>,
    privileged: bool,
) -> Result<(), OciError> {
    for (i, d) in list.iter().enumerate() {
        let field = |f: &str| format!("devices[{i}].{f}");
        if !is_clean_absolute(&d.host_path) {
            return Err(invalid(
                field("host_path"),
                format!(
                    "{:?} must be an absolute path without '..' components",
                    d.host_path
                ),
            ));
        }
        if !is_clean_absolute(&d.container_path) {
            return Err(invalid(
                field("container_path"),
                format!(
                    "{:?} must be an absolute path without '..' components",
                    d.container_path
                ),
            ));
        }
        if d.permissions.is_empty() || !d.permissions.chars().all(|c| "rwm".contains(c)) {
            return Err(invalid(
                field("permissions"),
                format!("{:?} must be one or more of r, w, m", d.permissions),
            ));
        }
        let host = PathBuf::from(&d.host_path);
        let dest = PathBuf::from(&d.container_path);
        let md = std::fs::metadata(&host)
            .map_err(|e| invalid(field("host_path"), format!("{}: {e}", host.display())))?;
        let mut found = Vec::new();
        if md.is_dir() {
            devices_under(&host, &dest, &[], &mut found)?;
        } else {
            match device_at(&host, &dest)? {
                Some(dev) => found.push(dev),
                None => {
                    return Err(invalid(
                        field("host_path"),
                        format!("{} is not a device node", host.display()),
                    ))
                }
            }
        }
        for dev in found {
            if !privileged {
                let mut r = LinuxDeviceCgroup::default();
                r.set_allow(true);
                r.set_typ(Some(dev.typ()));
                r.set_major(Some(dev.major()));
                r.set_minor(Some(dev.minor()));
                r.set_access(Some(d.permissions.clone()));
                rules.push(r);
            }
            devices.retain(|e| e.path() != dev.path());
            devices.push(dev);
        }
    }
    Ok(())
}
