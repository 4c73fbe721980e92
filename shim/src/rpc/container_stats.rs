//! ContainerStats: CPU and memory from the container's cgroup, the writable layer's size.

use k8s_cri::v1 as cri;

use super::image_fs_info::usage;
use crate::error::ShimError;
use crate::records::{now_ns, ContainerRecord};
use crate::{stats, Shim};

impl Shim {
    pub fn cri_container_stats(&self, c: &ContainerRecord) -> cri::ContainerStats {
        let cg = c.cgroups_path();
        let upper = self.cfg.container_layer_dir(&c.id).join("upper");
        let (bytes, inodes) = usage(&upper);
        cri::ContainerStats {
            attributes: Some(cri::ContainerAttributes {
                id: c.id.clone(),
                metadata: c.config.metadata.clone(),
                labels: c.config.labels.clone(),
                annotations: c.config.annotations.clone(),
            }),
            cpu: stats::cpu(&cg),
            memory: stats::mem(&cg),
            writable_layer: Some(cri::FilesystemUsage {
                timestamp: now_ns(),
                fs_id: Some(cri::FilesystemIdentifier {
                    mountpoint: upper.display().to_string(),
                }),
                used_bytes: Some(cri::UInt64Value { value: bytes }),
                inodes_used: Some(cri::UInt64Value { value: inodes }),
            }),
            swap: None,
        }
    }

    pub async fn container_stats(
        &self,
        r: cri::ContainerStatsRequest,
    ) -> Result<cri::ContainerStatsResponse, ShimError> {
        let c = self.container(&r.container_id)?;
        Ok(cri::ContainerStatsResponse {
            stats: Some(self.cri_container_stats(&c)),
        })
    }
}
