//! The runc-like default spec parts, as containerd's `pkg/oci` populateDefaultUnixSpec and
//! the CRI plugin leave them (no /run mount, no rlimits, /sys/fs/cgroup read-only).

use std::collections::HashSet;

use oci_spec::runtime::{Capability, LinuxDeviceCgroup, LinuxDeviceType, Mount, MountBuilder};

/// containerd 1.7's default capability set.
pub(super) fn default_caps() -> HashSet<Capability> {
    use Capability::*;
    [
        Chown,
        DacOverride,
        Fsetid,
        Fowner,
        Mknod,
        NetRaw,
        Setgid,
        Setuid,
        Setfcap,
        Setpcap,
        NetBindService,
        SysChroot,
        Kill,
        AuditWrite,
    ]
    .into_iter()
    .collect()
}

pub(super) fn masked_paths() -> Vec<String> {
    [
        "/proc/acpi",
        "/proc/asound",
        "/proc/kcore",
        "/proc/keys",
        "/proc/latency_stats",
        "/proc/timer_list",
        "/proc/timer_stats",
        "/proc/sched_debug",
        "/sys/firmware",
        "/sys/devices/virtual/powercap",
        "/proc/scsi",
    ]
    .map(String::from)
    .to_vec()
}

pub(super) fn readonly_paths() -> Vec<String> {
    [
        "/proc/bus",
        "/proc/fs",
        "/proc/irq",
        "/proc/sys",
        "/proc/sysrq-trigger",
    ]
    .map(String::from)
    .to_vec()
}

fn mount(dest: &str, typ: &str, source: &str, options: &[&str]) -> Mount {
    MountBuilder::default()
        .destination(dest)
        .typ(typ)
        .source(source)
        .options(options.iter().map(|o| o.to_string()).collect::<Vec<_>>())
        .build()
        .expect("a mount with every field set builds")
}

/// /proc, /dev, /dev/pts, /dev/shm, /dev/mqueue, /sys and /sys/fs/cgroup; sysfs and the
/// cgroup tree are read-only unless `writable_sys` (privileged containers).
pub(super) fn default_mounts(writable_sys: bool) -> Vec<Mount> {
    let sys_mode = if writable_sys { "rw" } else { "ro" };
    vec![
        mount("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"]),
        mount(
            "/dev",
            "tmpfs",
            "tmpfs",
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        ),
        mount(
            "/dev/pts",
            "devpts",
            "devpts",
            &[
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620",
                "gid=5",
            ],
        ),
        mount(
            "/dev/shm",
            "tmpfs",
            "shm",
            &["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
        ),
        mount(
            "/dev/mqueue",
            "mqueue",
            "mqueue",
            &["nosuid", "noexec", "nodev"],
        ),
        mount(
            "/sys",
            "sysfs",
            "sysfs",
            &["nosuid", "noexec", "nodev", sys_mode],
        ),
        mount(
            "/sys/fs/cgroup",
            "cgroup",
            "cgroup",
            &["nosuid", "noexec", "nodev", "relatime", sys_mode],
        ),
    ]
}

fn rule(
    allow: bool,
    typ: LinuxDeviceType,
    dev: Option<(i64, Option<i64>)>,
    access: &str,
) -> LinuxDeviceCgroup {
    let mut r = LinuxDeviceCgroup::default();
    r.set_allow(allow);
    r.set_typ(Some(typ));
    r.set_major(dev.map(|(major, _)| major));
    r.set_minor(dev.and_then(|(_, minor)| minor));
    r.set_access(Some(access.to_string()));
    r
}

/// Deny everything, then runc's standard allow-list: mknod of any node, and the devices every
/// container gets (null, zero, full, random, urandom, tty, ptmx, the pts).
pub(super) fn default_device_rules() -> Vec<LinuxDeviceCgroup> {
    use LinuxDeviceType::{B, C};
    let mut deny = rule(false, LinuxDeviceType::A, None, "rwm");
    deny.set_typ(None);
    vec![
        deny,
        rule(true, C, None, "m"),
        rule(true, B, None, "m"),
        rule(true, C, Some((1, Some(3))), "rwm"),
        rule(true, C, Some((1, Some(5))), "rwm"),
        rule(true, C, Some((1, Some(7))), "rwm"),
        rule(true, C, Some((1, Some(8))), "rwm"),
        rule(true, C, Some((1, Some(9))), "rwm"),
        rule(true, C, Some((5, Some(0))), "rwm"),
        rule(true, C, Some((5, Some(2))), "rwm"),
        rule(true, C, Some((136, None)), "rwm"),
    ]
}

/// The device cgroup of a privileged container: everything.
pub(super) fn allow_all_devices() -> LinuxDeviceCgroup {
    let mut r = rule(true, LinuxDeviceType::A, None, "rwm");
    r.set_typ(None);
    r
}
