//! ListPodSandboxStats with CRI's filters (id, labels).

use k8s_cri::v1 as cri;

use super::list_pod_sandbox::labels_match;
use crate::error::ShimError;
use crate::Shim;

impl Shim {
    pub async fn list_pod_sandbox_stats(
        &self,
        r: cri::ListPodSandboxStatsRequest,
    ) -> Result<cri::ListPodSandboxStatsResponse, ShimError> {
        let f = r.filter.unwrap_or_default();
        let stats = self
            .sandboxes()
            .into_iter()
            .filter(|s| f.id.is_empty() || s.id.starts_with(&f.id))
            .filter(|s| labels_match(&f.label_selector, &s.config.labels))
            .map(|s| self.cri_pod_stats(&s))
            .collect();
        Ok(cri::ListPodSandboxStatsResponse { stats })
    }
}
