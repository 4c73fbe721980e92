//! StopContainer: SIGTERM (or the image's STOPSIGNAL), then SIGKILL to every process once
//! `timeout` seconds have passed. Idempotent: stopping an exited or unknown container is not an
//! error, and stopping a Created container (no process yet) does nothing, as in containerd.

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_cri::v1 as cri;

use crate::error::ShimError;
use crate::records::ContainerState;
use crate::Shim;

/// How long to wait for the monitor's exit file after SIGKILL.
const AFTER_KILL: Duration = Duration::from_secs(10);

impl Shim {
    pub async fn stop_container(
        self: &Arc<Self>,
        r: cri::StopContainerRequest,
    ) -> Result<cri::StopContainerResponse, ShimError> {
        let id = match self.container_id(&r.container_id) {
            Ok(id) => id,
            Err(ShimError::NotFound { .. }) => return Ok(cri::StopContainerResponse {}),
            Err(e) => return Err(e),
        };
        self.stop_container_now(&id, r.timeout).await?;
        Ok(cri::StopContainerResponse {})
    }

    /// Waits until the container's exit is recorded, up to `limit`.
    async fn wait_exited(&self, id: &str, limit: Duration) -> Result<bool, ShimError> {
        let start = Instant::now();
        loop {
            if self.container(id)?.state == ContainerState::Exited {
                return Ok(true);
            }
            if start.elapsed() >= limit {
                return Ok(false);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub(crate) async fn stop_container_now(&self, id: &str, timeout: i64) -> Result<(), ShimError> {
        let _guard = self.lock(id).await;
        self.stop_container_locked(id, timeout).await
    }

    /// Stops container `id`; the caller holds its lock.
    pub(crate) async fn stop_container_locked(
        &self,
        id: &str,
        timeout: i64,
    ) -> Result<(), ShimError> {
        let rec = self.container(id)?;
        if rec.state == ContainerState::Exited || rec.has_no_process() {
            return Ok(());
        }
        if timeout > 0 {
            let signal = self.stop_signal(&rec.image_id);
            self.runtime.kill(id, &signal, false).await?;
            if self
                .wait_exited(id, Duration::from_secs(timeout as u64))
                .await?
            {
                return Ok(());
            }
        }
        self.runtime.kill(id, "KILL", true).await?;
        if !self.wait_exited(id, AFTER_KILL).await? {
            return Err(ShimError::DeadlineExceeded {
                what: format!("container {id} after SIGKILL"),
                seconds: AFTER_KILL.as_secs() as i64,
            });
        }
        Ok(())
    }

    /// The image's STOPSIGNAL, or SIGTERM.
    fn stop_signal(&self, image_id: &str) -> String {
        self.find_image(image_id)
            .ok()
            .flatten()
            .and_then(|i| self.image_config(&i).ok())
            .and_then(|c| c.config().as_ref().and_then(|c| c.stop_signal().clone()))
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "TERM".into())
    }
}
