//! StartContainer: the runtime's `start` on a Created container. A failed start leaves the
//! container Exited with reason StartError, as containerd does, so the kubelet can restart it.

use k8s_cri::v1 as cri;

use crate::error::ShimError;
use crate::records::{now_ns, ContainerState};
use crate::Shim;

impl Shim {
    pub async fn start_container(
        &self,
        r: cri::StartContainerRequest,
    ) -> Result<cri::StartContainerResponse, ShimError> {
        let id = self.container_id(&r.container_id)?;
        let _guard = self.lock(&id).await;
        let mut rec = self.container(&id)?;
        if rec.state != ContainerState::Created {
            return Err(ShimError::FailedPrecondition(format!(
                "container {id} is {:?}, not Created",
                rec.state
            )));
        }
        // Taken before `start`: a quick command may be reaped (finished_at) before it returns.
        let started = now_ns();
        if let Err(e) = self.runtime.start(&id).await {
            rec.state = ContainerState::Exited;
            rec.exit_code = 128;
            rec.finished_at_ns = now_ns();
            rec.reason = "StartError".into();
            rec.message = e.to_string();
            self.put_container(rec)?;
            return Err(e);
        }
        rec.state = ContainerState::Running;
        rec.started_at_ns = started;
        self.put_container(rec.clone())?;
        // GC bookkeeping (the image's last use, the use history): four fsyncs of the image
        // store's files under its lock, 5-40 ms on a busy disk, that nothing in this start
        // waits for. Off the reply's path; an image in use is kept from GC by the shim's
        // container records (`Shim::images_in_use`), not by this one.
        let images = self.images.clone();
        let (image_id, cid) = (rec.image_id.clone(), id.clone());
        tokio::task::spawn_blocking(move || {
            if let Err(e) = images.container_started(&image_id, Some(&cid)) {
                tracing::warn!(container = %cid, error = %e, "marking the image used");
            }
        });
        self.emit(&rec, cri::ContainerEventType::ContainerStartedEvent);
        // It may already have exited (a quick command): fold the exit file in.
        let _ = self.container(&id);
        Ok(cri::StartContainerResponse {})
    }
}
