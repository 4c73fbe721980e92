//! RemovePodSandbox: stop it if needed, remove its containers, then its rootfs, files and
//! record. Idempotent: an unknown sandbox is not an error.

use std::sync::Arc;

use k8s_cri::v1 as cri;

use crate::error::ShimError;
use crate::records::SandboxState;
use crate::sandbox::Teardown;
use crate::Shim;

impl Shim {
    pub async fn remove_pod_sandbox(
        self: &Arc<Self>,
        r: cri::RemovePodSandboxRequest,
    ) -> Result<cri::RemovePodSandboxResponse, ShimError> {
        let id = match self.sandbox_id(&r.pod_sandbox_id) {
            Ok(id) => id,
            Err(ShimError::NotFound { .. }) => return Ok(cri::RemovePodSandboxResponse {}),
            Err(e) => return Err(e),
        };
        if self.sandbox(&id)?.state == SandboxState::Ready {
            self.stop_sandbox(&id).await?;
        }
        for c in self.containers_of(&id) {
            self.remove_container_now(&c.id).await?;
        }
        let _guard = self.lock(&id).await;
        let rec = self.sandbox(&id)?;
        let (rec, errors) = self.teardown(rec, Teardown::Remove).await;
        if !errors.is_empty() {
            self.put_sandbox(rec)?;
            return Err(ShimError::Internal(format!(
                "removing sandbox {id}: {}",
                errors.join("; ")
            )));
        }
        self.drop_sandbox(&rec)?;
        Ok(cri::RemovePodSandboxResponse {})
    }
}
