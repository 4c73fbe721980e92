//! StopPodSandbox: stop every container of the pod, then the pause container, the network (CNI
//! DEL) and the network namespace. Idempotent: a stopped or unknown sandbox is not an error.

use std::sync::Arc;

use k8s_cri::v1 as cri;

use crate::error::ShimError;
use crate::records::{ContainerState, SandboxState};
use crate::sandbox::Teardown;
use crate::Shim;

/// How long each container gets between SIGTERM and SIGKILL when its pod is stopped.
const POD_STOP_GRACE_SECONDS: i64 = 10;

impl Shim {
    pub async fn stop_pod_sandbox(
        self: &Arc<Self>,
        r: cri::StopPodSandboxRequest,
    ) -> Result<cri::StopPodSandboxResponse, ShimError> {
        let id = match self.sandbox_id(&r.pod_sandbox_id) {
            Ok(id) => id,
            Err(ShimError::NotFound { .. }) => return Ok(cri::StopPodSandboxResponse {}),
            Err(e) => return Err(e),
        };
        self.stop_sandbox(&id).await?;
        Ok(cri::StopPodSandboxResponse {})
    }

    pub(crate) async fn stop_sandbox(self: &Arc<Self>, id: &str) -> Result<(), ShimError> {
        for c in self.containers_of(id) {
            if c.state == ContainerState::Running {
                self.stop_container_now(&c.id, POD_STOP_GRACE_SECONDS)
                    .await?;
            }
        }
        let _guard = self.lock(id).await;
        let rec = self.sandbox(id)?;
        let (mut rec, errors) = self.teardown(rec, Teardown::Stop).await;
        rec.state = SandboxState::NotReady;
        self.put_sandbox(rec)?;
        if !errors.is_empty() {
            return Err(ShimError::Internal(format!(
                "stopping sandbox {id}: {}",
                errors.join("; ")
            )));
        }
        Ok(())
    }
}
