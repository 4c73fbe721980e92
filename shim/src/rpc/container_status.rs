//! ContainerStatus: state, times, exit code and reason, image, mounts, log path.

use std::collections::HashMap;

use k8s_cri::v1 as cri;

use crate::error::ShimError;
use crate::records::ContainerRecord;
use crate::Shim;

impl ContainerRecord {
    pub fn cri_image_spec(&self) -> cri::ImageSpec {
        cri::ImageSpec {
            image: self.image_ref.clone(),
            annotations: self
                .config
                .image
                .as_ref()
                .map(|i| i.annotations.clone())
                .unwrap_or_default(),
            user_specified_image: self
                .config
                .image
                .as_ref()
                .map(|i| i.user_specified_image.clone())
                .unwrap_or_default(),
            runtime_handler: String::new(),
        }
    }
}

impl Shim {
    pub async fn container_status(
        &self,
        r: cri::ContainerStatusRequest,
    ) -> Result<cri::ContainerStatusResponse, ShimError> {
        let c = self.container(&r.container_id)?;
        let mut info = HashMap::new();
        if r.verbose {
            info.insert(
                "info".into(),
                serde_json::json!({
                    "pid": c.pid,
                    "monitorPid": c.monitor_pid,
                    "sandboxID": c.sandbox_id,
                    "bundle": self.cfg.bundle_dir(&c.id),
                    "config": c.config,
                })
                .to_string(),
            );
        }
        Ok(cri::ContainerStatusResponse {
            status: Some(cri::ContainerStatus {
                id: c.id.clone(),
                metadata: c.config.metadata.clone(),
                state: c.state.to_cri() as i32,
                created_at: c.created_at_ns,
                started_at: c.started_at_ns,
                finished_at: c.finished_at_ns,
                exit_code: c.exit_code,
                image: Some(c.cri_image_spec()),
                image_ref: c.image_id.clone(),
                reason: c.reason.clone(),
                message: c.message.clone(),
                labels: c.config.labels.clone(),
                annotations: c.config.annotations.clone(),
                mounts: c.config.mounts.clone(),
                log_path: c
                    .log_path
                    .as_ref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default(),
                resources: c
                    .config
                    .linux
                    .as_ref()
                    .and_then(|l| l.resources.clone())
                    .map(|r| cri::ContainerResources {
                        linux: Some(r),
                        windows: None,
                    }),
                image_id: c.image_id.clone(),
                user: None,
            }),
            info,
        })
    }
}
