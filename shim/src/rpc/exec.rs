//! Exec: not implemented yet; answers Unimplemented with the reason, never a fake success.

use k8s_cri::v1 as cri;

use crate::error::ShimError;
use crate::Shim;

impl Shim {
    pub async fn exec(&self, _r: cri::ExecRequest) -> Result<cri::ExecResponse, ShimError> {
        Err(ShimError::Unimplemented("Exec: the streaming server (exec over WebSocket/SPDY) is not implemented yet in pea-shim; ExecSync works".into()))
    }
}
