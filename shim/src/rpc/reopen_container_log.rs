//! ReopenContainerLog: the container's pea-monitor reopens the log path (after the kubelet
//! rotated the file) on SIGUSR1.

use k8s_cri::v1 as cri;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::error::ShimError;
use crate::monitor::is_monitor_of;
use crate::records::ContainerState;
use crate::Shim;

impl Shim {
    pub async fn reopen_container_log(
        &self,
        r: cri::ReopenContainerLogRequest,
    ) -> Result<cri::ReopenContainerLogResponse, ShimError> {
        let rec = self.container(&r.container_id)?;
        if rec.state != ContainerState::Running {
            return Err(ShimError::FailedPrecondition(format!(
                "container {} is not running",
                rec.id
            )));
        }
        let pid = rec
            .monitor_pid
            .filter(|p| is_monitor_of(*p, &rec.id))
            .ok_or_else(|| {
                ShimError::FailedPrecondition(format!("container {} has no live monitor", rec.id))
            })?;
        kill(Pid::from_raw(pid), Signal::SIGUSR1)
            .map_err(|e| ShimError::Internal(format!("signalling monitor {pid}: {e}")))?;
        Ok(cri::ReopenContainerLogResponse {})
    }
}
