//! StartContainer: the container's pea-monitor runs the runtime's `run --detach` on the bundle
//! CreateContainer prepared (one runtime process per container, as containerd makes the task at
//! StartContainer), and the record turns Running. A failed start leaves the container Exited
//! with exit code 128 and reason StartError, as containerd does, so the kubelet can replace it;
//! the runtime has deleted what it made, and RemoveContainer removes the rest. Starting a
//! container that is not Created is an error.

use std::sync::Arc;

use k8s_cri::v1 as cri;

use crate::error::ShimError;
use crate::records::{now_ns, ContainerRecord, ContainerState, SandboxState};
use crate::{monitor, Shim};

/// containerd's exit code and reason for a container whose start failed.
const START_ERROR_EXIT_CODE: i32 = 128;
const START_ERROR_REASON: &str = "StartError";

impl Shim {
    pub async fn start_container(
        self: &Arc<Self>,
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
        // Exits folded in by the monitor's reaper wait until the record says Running.
        let starting = self.starting(&id);
        // Taken before the runtime runs: a quick command may be reaped (finished_at) before
        // the monitor reports.
        let started = now_ns();
        let result = match rec.pid {
            // Created by an older shim whose monitor ran `create`: its init waits for `start`.
            Some(pid) => self
                .runtime
                .start(&id)
                .await
                .map(|()| (pid, rec.monitor_pid)),
            None => self
                .start_under_monitor(&rec)
                .await
                .map(|s| (s.init_pid, Some(s.monitor_pid))),
        };
        let (pid, monitor_pid) = match result {
            Ok(p) => p,
            Err(e) => {
                rec.state = ContainerState::Exited;
                rec.pid = None;
                rec.exit_code = START_ERROR_EXIT_CODE;
                rec.finished_at_ns = now_ns();
                rec.reason = START_ERROR_REASON.into();
                rec.message = e.to_string();
                self.put_container(rec.clone())?;
                self.emit(&rec, cri::ContainerEventType::ContainerStoppedEvent);
                drop(starting);
                return Err(e);
            }
        };
        rec.state = ContainerState::Running;
        rec.pid = Some(pid);
        rec.monitor_pid = monitor_pid;
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
        drop(starting);
        // It may already have exited (a quick command): fold the exit file in.
        let _ = self.container(&id);
        Ok(cri::StartContainerResponse {})
    }

    /// Checks what containerd checks again at start (the pod is Ready, a PID-namespace target
    /// still runs), then runs the container under a new pea-monitor.
    async fn start_under_monitor(
        self: &Arc<Self>,
        rec: &ContainerRecord,
    ) -> Result<monitor::Started, ShimError> {
        let sandbox = self.sandbox(&rec.sandbox_id)?;
        if sandbox.state != SandboxState::Ready {
            return Err(ShimError::FailedPrecondition(format!(
                "sandbox {} is not ready",
                sandbox.id
            )));
        }
        self.target_pid(&rec.config)?;
        let bundle = self.cfg.bundle_dir(&rec.id);
        // The runtime's cgroup attach finds the RCU grace period passed (crate::cgroup_warm).
        let warm = self.cgroup_warmer.hold();
        let started = monitor::start(
            self,
            &rec.id,
            &bundle,
            rec.log_path.as_deref(),
            monitor::stdin_mode(&rec.config),
            rec.config.tty,
        )
        .await;
        drop(warm);
        if let Err(ShimError::DeadlineExceeded { .. }) = &started {
            // A runtime that did not answer in time may have left a container behind.
            if let Err(e) = self.runtime.delete(&rec.id).await {
                tracing::error!(container = %rec.id, error = %e, "deleting a container whose start timed out");
            }
        }
        started
    }
}
