//! ListMetricDescriptors: the cAdvisor-named metrics ListPodSandboxMetrics reports (see
//! `cadvisor_metrics`).

use k8s_cri::v1 as cri;

use super::cadvisor_metrics;
use crate::error::ShimError;
use crate::Shim;

impl Shim {
    pub async fn list_metric_descriptors(
        &self,
        _r: cri::ListMetricDescriptorsRequest,
    ) -> Result<cri::ListMetricDescriptorsResponse, ShimError> {
        Ok(cri::ListMetricDescriptorsResponse {
            descriptors: cadvisor_metrics::descriptors(),
        })
    }
}
