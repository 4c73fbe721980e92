//! RemoveContainer: force-stop it if it runs, delete it in the runtime (unless it is Created
//! and never reached the runtime), unmount its rootfs and remove its bundle, writable layer
//! and record. Idempotent on unknown ids.

use std::sync::Arc;

use k8s_cri::v1 as cri;

use crate::error::ShimError;
use crate::Shim;

impl Shim {
    pub async fn remove_container(
        self: &Arc<Self>,
        r: cri::RemoveContainerRequest,
    ) -> Result<cri::RemoveContainerResponse, ShimError> {
        let id = match self.container_id(&r.container_id) {
            Ok(id) => id,
            Err(ShimError::NotFound { .. }) => return Ok(cri::RemoveContainerResponse {}),
            Err(e) => return Err(e),
        };
        self.remove_container_now(&id).await?;
        Ok(cri::RemoveContainerResponse {})
    }

    pub(crate) async fn remove_container_now(&self, id: &str) -> Result<(), ShimError> {
        // One lock over stop and removal: a StartContainer cannot slip in between.
        let _guard = self.lock(id).await;
        self.stop_container_locked(id, 0).await?;
        let rec = self.container(id)?;
        // A Created container without a process never reached the runtime.
        if !rec.has_no_process() {
            self.runtime.delete(id).await?;
        }
        let errors = self.remove_container_files(id).await;
        if !errors.is_empty() {
            return Err(ShimError::Internal(format!(
                "removing container {id}: {}",
                errors.join("; ")
            )));
        }
        self.drop_container(&rec)?;
        self.emit(&rec, cri::ContainerEventType::ContainerDeletedEvent);
        Ok(())
    }
}
