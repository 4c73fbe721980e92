//! Direct cgroup v1 filesystem work where libcgroups is needlessly slow: removing a container's
//! cgroup reads /proc/self/mountinfo once instead of once per controller.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Controllers libcgroups' v1 manager creates cgroups in (not `name=systemd`).
const CONTROLLERS: &[&str] = &[
    "cpu",
    "cpuacct",
    "cpuset",
    "devices",
    "hugetlb",
    "memory",
    "pids",
    "perf_event",
    "blkio",
    "net_prio",
    "net_cls",
    "freezer",
];

/// Mount points of v1 hierarchies that carry one of `CONTROLLERS`, from a mountinfo text.
pub fn v1_mountpoints(mountinfo: &str) -> Vec<PathBuf> {
    mountinfo
        .lines()
        .filter_map(|l| {
            let (pre, post) = l.split_once(" - ")?;
            let mut post = post.split_whitespace();
            if post.next()? != "cgroup" {
                return None;
            }
            let _source = post.next()?;
            let opts = post.next()?;
            let managed = opts.split(',').any(|o| CONTROLLERS.contains(&o));
            let mountpoint = pre.split_whitespace().nth(4)?;
            managed.then(|| PathBuf::from(mountpoint))
        })
        .collect()
}

/// Removes `cgroup_path` from every v1 hierarchy: SIGKILL whatever is left in it, then rmdir,
/// retrying for up to a second while dying tasks leave.
pub fn remove_v1(cgroup_path: &Path) -> Result<(), String> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| format!("/proc/self/mountinfo: {e}"))?;
    let rel = cgroup_path.strip_prefix("/").unwrap_or(cgroup_path);
    if rel.as_os_str().is_empty() {
        return Err("refusing to remove a hierarchy root".into());
    }
    for mp in v1_mountpoints(&mountinfo) {
        let dir = mp.join(rel);
        if !dir.is_dir() {
            continue;
        }
        let deadline = Instant::now() + Duration::from_secs(1);
        loop {
            match std::fs::remove_dir(&dir) {
                Ok(()) => break,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => break,
                Err(e) => {
                    if Instant::now() > deadline {
                        return Err(format!("rmdir {}: {e}", dir.display()));
                    }
                    let procs =
                        std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
                    for pid in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
                        // SAFETY: kill with integer arguments.
                        unsafe { libc::kill(pid, libc::SIGKILL) };
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_managed_v1_hierarchies_only() {
        let mi = "\
30 25 0:26 / /sys/fs/cgroup/unified rw,nosuid - cgroup2 cgroup2 rw
31 25 0:27 / /sys/fs/cgroup/systemd rw,nosuid - cgroup cgroup rw,xattr,name=systemd
34 25 0:30 / /sys/fs/cgroup/memory rw,nosuid - cgroup cgroup rw,memory
35 25 0:31 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid - cgroup cgroup rw,cpu,cpuacct
40 25 0:40 / /proc rw - proc proc rw
";
        assert_eq!(
            v1_mountpoints(mi),
            vec![
                PathBuf::from("/sys/fs/cgroup/memory"),
                PathBuf::from("/sys/fs/cgroup/cpu,cpuacct")
            ]
        );
    }

    #[test]
    fn never_removes_a_root() {
        assert!(remove_v1(Path::new("/")).is_err());
        assert!(remove_v1(Path::new("")).is_err());
    }
}
