//! ImageFsInfo: bytes and inodes under the image store, and under the containers' writable
//! layers (the kubelet's imagefs and containerfs).

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use k8s_cri::v1 as cri;

use crate::error::ShimError;
use crate::records::now_ns;
use crate::Shim;

/// Bytes (allocated blocks) and inodes below `root`, each hard-linked inode counted once.
pub fn usage(root: &Path) -> (u64, u64) {
    let mut seen = std::collections::HashSet::new();
    let mut bytes = 0;
    let mut inodes = 0;
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in rd.flatten() {
            let Ok(m) = e.path().symlink_metadata() else {
                continue;
            };
            if !seen.insert((m.dev(), m.ino())) {
                continue;
            }
            inodes += 1;
            bytes += m.blocks() * 512;
            if m.is_dir() {
                stack.push(e.path());
            }
        }
    }
    (bytes, inodes)
}

fn fs_usage(path: &Path) -> cri::FilesystemUsage {
    let (bytes, inodes) = usage(path);
    cri::FilesystemUsage {
        timestamp: now_ns(),
        fs_id: Some(cri::FilesystemIdentifier {
            mountpoint: path.display().to_string(),
        }),
        used_bytes: Some(cri::UInt64Value { value: bytes }),
        inodes_used: Some(cri::UInt64Value { value: inodes }),
    }
}

impl Shim {
    pub async fn image_fs_info(
        &self,
        _r: cri::ImageFsInfoRequest,
    ) -> Result<cri::ImageFsInfoResponse, ShimError> {
        let images = self.cfg.images_root();
        let containers = self.cfg.root.join("containers");
        let (i, c) =
            tokio::task::spawn_blocking(move || (fs_usage(&images), fs_usage(&containers)))
                .await
                .map_err(|e| ShimError::Internal(format!("usage task: {e}")))?;
        Ok(cri::ImageFsInfoResponse {
            image_filesystems: vec![i],
            container_filesystems: vec![c],
        })
    }
}
