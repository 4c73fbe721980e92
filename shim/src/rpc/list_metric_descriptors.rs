//! ListMetricDescriptors: not implemented yet; answers Unimplemented with the reason, never a fake success.

use k8s_cri::v1 as cri;

use crate::error::ShimError;
use crate::Shim;

impl Shim {
    pub async fn list_metric_descriptors(
        &self,
        _r: cri::ListMetricDescriptorsRequest,
    ) -> Result<cri::ListMetricDescriptorsResponse, ShimError> {
        Err(ShimError::Unimplemented("ListMetricDescriptors: CRI-provided metrics are not implemented yet in pea-shim; use ListPodSandboxStats".into()))
    }
}
