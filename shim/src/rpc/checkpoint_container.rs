//! CheckpointContainer: needs CRIU, which this host does not have (and pea-runtime has no
//! checkpoint/restore), so it answers Unimplemented saying so.

use k8s_cri::v1 as cri;

use crate::error::ShimError;
use crate::Shim;

impl Shim {
    pub async fn checkpoint_container(
        &self,
        r: cri::CheckpointContainerRequest,
    ) -> Result<cri::CheckpointContainerResponse, ShimError> {
        Err(ShimError::Unimplemented(format!(
            "CheckpointContainer {}: checkpointing needs CRIU, which is not installed on this \
             host, and pea-runtime has no checkpoint/restore",
            r.container_id
        )))
    }
}
