//! What a pod uses of the resources disk and PID pressure rank by: bytes and inodes of its
//! logs and local volumes (emptyDir on disk, configMap — kubelet's local ephemeral volumes),
//! the tasks in its cgroup (pids.current), and a cgroup's memory working set.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// Most directory entries one measurement walks: a pod making millions of files cannot stall
/// the eviction manager; what it holds beyond is not counted (it ranks first anyway).
const MAX_ENTRIES: usize = 200_000;

/// Bytes allocated and inodes used under `dir` (not following symlinks, staying on its
/// filesystem: a tmpfs emptyDir counts as memory, not disk).
pub fn du(dir: &Path) -> (u64, u64) {
    let Ok(top) = std::fs::symlink_metadata(dir) else {
        return (0, 0);
    };
    let dev = top.dev();
    let mut bytes = top.blocks() * 512;
    let mut inodes = 1u64;
    let mut stack = vec![dir.to_path_buf()];
    let mut seen = 0usize;
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            seen += 1;
            if seen > MAX_ENTRIES {
                return (bytes, inodes);
            }
            let Ok(m) = e.metadata() else { continue };
            if m.dev() != dev {
                continue;
            }
            bytes += m.blocks() * 512;
            inodes += 1;
            if m.is_dir() {
                stack.push(e.path());
            }
        }
    }
    (bytes, inodes)
}

/// Tasks in the cgroup `path` (cgroupfs path under the hierarchy root): v1's pids hierarchy,
/// or the unified one.
pub fn pids_current(cgroup: &str) -> Option<u64> {
    let rel = cgroup.trim_start_matches('/');
    ["/sys/fs/cgroup/pids", "/sys/fs/cgroup"]
        .iter()
        .find_map(|root| {
            std::fs::read_to_string(Path::new(root).join(rel).join("pids.current")).ok()
        })
        .and_then(|v| v.trim().parse().ok())
}

/// v1's "no limit" (PAGE_COUNTER_MAX pages, rounded): anything this large is no limit.
const UNLIMITED: u64 = 1 << 62;

/// A cgroup's memory as cAdvisor reports it to kubelet: the working set (usage minus inactive
/// file pages) and the limit, if one is set. v1's memory hierarchy, or the unified one.
pub fn cgroup_memory(cgroup: &str) -> Option<(u64, Option<u64>)> {
    cgroup_memory_usage(cgroup).map(|m| (m.working_set, m.limit))
}

/// A cgroup's memory figures as cAdvisor has them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CgroupMemory {
    /// memory.usage_in_bytes (v1) or memory.current (v2).
    pub usage: u64,
    /// usage minus inactive file pages.
    pub working_set: u64,
    pub limit: Option<u64>,
}

/// [`cgroup_memory`] with the usage too (what a memcg threshold is set against).
pub fn cgroup_memory_usage(cgroup: &str) -> Option<CgroupMemory> {
    let rel = cgroup.trim_start_matches('/');
    let read = |p: std::path::PathBuf| std::fs::read_to_string(p).ok();
    let stat_field = |text: &str, key: &str| -> Option<u64> {
        text.lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix(' '))
            .and_then(|v| v.trim().parse().ok())
    };
    let v1 = Path::new("/sys/fs/cgroup/memory").join(rel);
    let (usage, inactive, limit) = if let Some(u) = read(v1.join("memory.usage_in_bytes")) {
        let stat = read(v1.join("memory.stat")).unwrap_or_default();
        (
            u.trim().parse::<u64>().ok()?,
            stat_field(&stat, "total_inactive_file").unwrap_or(0),
            read(v1.join("memory.limit_in_bytes")).and_then(|l| l.trim().parse::<u64>().ok()),
        )
    } else {
        let v2 = Path::new("/sys/fs/cgroup").join(rel);
        let u = read(v2.join("memory.current"))?;
        let stat = read(v2.join("memory.stat")).unwrap_or_default();
        (
            u.trim().parse::<u64>().ok()?,
            stat_field(&stat, "inactive_file").unwrap_or(0),
            // "max" does not parse: no limit.
            read(v2.join("memory.max")).and_then(|l| l.trim().parse::<u64>().ok()),
        )
    };
    Some(CgroupMemory {
        usage,
        working_set: usage.saturating_sub(inactive),
        limit: limit.filter(|l| *l < UNLIMITED),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn du_counts_files_and_directories() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("sub")).unwrap();
        std::fs::write(d.path().join("sub/f"), vec![1u8; 64 * 1024]).unwrap();
        let (bytes, inodes) = du(d.path());
        assert_eq!(inodes, 3);
        assert!(bytes >= 64 * 1024, "{bytes}");
        assert_eq!(du(&d.path().join("missing")), (0, 0));
    }

    #[test]
    fn the_root_cgroups_memory_is_read() {
        // The hierarchy root has usage figures on v1 and v2 hosts alike (no limit).
        let self_cg = std::fs::read_to_string("/proc/self/cgroup").unwrap();
        let mem = self_cg
            .lines()
            .find_map(|l| {
                let mut f = l.splitn(3, ':');
                let (_, ctrl, path) = (f.next()?, f.next()?, f.next()?);
                (ctrl.split(',').any(|c| c == "memory") || ctrl.is_empty())
                    .then(|| path.to_string())
            })
            .expect("memory cgroup");
        let (ws, _) = cgroup_memory(&mem).expect("memory figures");
        assert!(ws > 0);
        assert_eq!(cgroup_memory("/no-such-cgroup-pea"), None);
    }
}
