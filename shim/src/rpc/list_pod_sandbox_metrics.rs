//! ListPodSandboxMetrics: not implemented yet; answers Unimplemented with the reason, never a fake success.

use k8s_cri::v1 as cri;

use crate::error::ShimError;
use crate::Shim;

impl Shim {
    pub async fn list_pod_sandbox_metrics(
        &self,
        _r: cri::ListPodSandboxMetricsRequest,
    ) -> Result<cri::ListPodSandboxMetricsResponse, ShimError> {
        Err(ShimError::Unimplemented("ListPodSandboxMetrics: CRI-provided metrics are not implemented yet in pea-shim; use ListPodSandboxStats".into()))
    }
}
