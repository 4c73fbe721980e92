//! ListContainerStats with CRI's filters (id, sandbox id, labels); exited containers have none.

use k8s_cri::v1 as cri;

use super::list_pod_sandbox::labels_match;
use crate::error::ShimError;
use crate::records::ContainerState;
use crate::Shim;

impl Shim {
    pub async fn list_container_stats(
        &self,
        r: cri::ListContainerStatsRequest,
    ) -> Result<cri::ListContainerStatsResponse, ShimError> {
        let f = r.filter.unwrap_or_default();
        let stats = self
            .containers()
            .into_iter()
            .filter(|c| c.state == ContainerState::Running)
            .filter(|c| f.id.is_empty() || c.id.starts_with(&f.id))
            .filter(|c| f.pod_sandbox_id.is_empty() || c.sandbox_id.starts_with(&f.pod_sandbox_id))
            .filter(|c| labels_match(&f.label_selector, &c.config.labels))
            .map(|c| self.cri_container_stats(&c))
            .collect();
        Ok(cri::ListContainerStatsResponse { stats })
    }
}
