//! Attach: not implemented yet; answers Unimplemented with the reason, never a fake success.

use k8s_cri::v1 as cri;

use crate::error::ShimError;
use crate::Shim;

impl Shim {
    pub async fn attach(&self, _r: cri::AttachRequest) -> Result<cri::AttachResponse, ShimError> {
        Err(ShimError::Unimplemented(
            "Attach: the streaming server (attach) is not implemented yet in pea-shim".into(),
        ))
    }
}
