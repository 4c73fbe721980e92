//! Version: the CRI version and this runtime's name and version.

use k8s_cri::v1 as cri;

use crate::error::ShimError;
use crate::Shim;

impl Shim {
    pub async fn version(
        &self,
        _r: cri::VersionRequest,
    ) -> Result<cri::VersionResponse, ShimError> {
        Ok(cri::VersionResponse {
            // The kubelet checks `version` against the CRI API version it speaks.
            version: "0.1.0".into(),
            runtime_name: "pea".into(),
            runtime_version: env!("CARGO_PKG_VERSION").into(),
            runtime_api_version: "v1".into(),
        })
    }
}
