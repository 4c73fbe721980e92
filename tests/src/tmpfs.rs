//! A tmpfs of bounded size on a fresh directory, for tests that fill a filesystem (a kubelet's
//! root dir under disk pressure or over local storage limits) without touching the host's
//! disk. Unmounted (with whatever was mounted below it) and removed on drop.

use std::path::{Path, PathBuf};

#[derive(Debug)]
pub struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size_mib` MiB (at most 256) on a new temporary directory.
    pub fn new(size_mib: u64) -> Self {
        assert!(size_mib <= 256);
        let dir = tempfile::Builder::new()
            .prefix("pea-evict-fs-")
            .tempdir()
            .expect("tempdir");
        nix::mount::mount(
            Some("tmpfs"),
            dir.path(),
            Some("tmpfs"),
            nix::mount::MsFlags::MS_NOSUID | nix::mount::MsFlags::MS_NODEV,
            Some(format!("size={size_mib}m,mode=0755").as_str()),
        )
        .expect("mounting the test tmpfs");
        Self { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Mounts the kubelet left below (e.g. a pod's tmpfs volume) go first.
        let below: Vec<PathBuf> = std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split(' ').nth(4).map(PathBuf::from))
            .filter(|m| m.starts_with(self.dir.path()) && m != self.dir.path())
            .collect();
        for m in below.iter().rev() {
            let _ = nix::mount::umount2(m, nix::mount::MntFlags::MNT_DETACH);
        }
        if let Err(e) = nix::mount::umount2(self.dir.path(), nix::mount::MntFlags::MNT_DETACH) {
            eprintln!("unmounting {}: {e}", self.dir.path().display());
        }
    }
}
