//! What a pod uses of the resources disk and PID pressure rank by: bytes and inodes of its
//! logs and local volumes (emptyDir on disk, configMap — kubelet's local ephemeral volumes),
//! and the tasks in its cgroup (pids.current).

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
}
