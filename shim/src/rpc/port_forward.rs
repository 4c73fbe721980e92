//! PortForward: not implemented yet; answers Unimplemented with the reason, never a fake success.

use k8s_cri::v1 as cri;

use crate::error::ShimError;
use crate::Shim;

impl Shim {
    pub async fn port_forward(
        &self,
        _r: cri::PortForwardRequest,
    ) -> Result<cri::PortForwardResponse, ShimError> {
        Err(ShimError::Unimplemented(
            "PortForward: the streaming server (port-forward) is not implemented yet in pea-shim"
                .into(),
        ))
    }
}
