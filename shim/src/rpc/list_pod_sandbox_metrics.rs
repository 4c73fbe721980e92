//! ListPodSandboxMetrics: per ready pod, its cgroup's and network's metrics and those of its
//! running containers, read live (see `cadvisor_metrics`).

use k8s_cri::v1 as cri;

use crate::error::ShimError;
use crate::records::SandboxState;
use crate::Shim;

impl Shim {
    pub async fn list_pod_sandbox_metrics(
        &self,
        _r: cri::ListPodSandboxMetricsRequest,
    ) -> Result<cri::ListPodSandboxMetricsResponse, ShimError> {
        let pod_metrics = self
            .sandboxes()
            .into_iter()
            .filter(|s| s.state == SandboxState::Ready)
            .map(|s| self.pod_sandbox_metrics(&s))
            .collect();
        Ok(cri::ListPodSandboxMetricsResponse { pod_metrics })
    }
}
