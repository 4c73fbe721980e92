//! UpdateContainerResources: the new CPU/memory limits through the runtime's `update
//! --resources`, then remembered in the record so ContainerStatus reports them.

use k8s_cri::v1 as cri;

use crate::error::ShimError;
use crate::records::ContainerState;
use crate::Shim;

impl Shim {
    pub async fn update_container_resources(
        &self,
        r: cri::UpdateContainerResourcesRequest,
    ) -> Result<cri::UpdateContainerResourcesResponse, ShimError> {
        let id = self.container_id(&r.container_id)?;
        let _guard = self.lock(&id).await;
        let mut rec = self.container(&id)?;
        let Some(linux) = r.linux else {
            return Err(ShimError::invalid(
                "linux: missing (Windows resources do not apply)",
            ));
        };
        if rec.state == ContainerState::Exited {
            return Err(ShimError::FailedPrecondition(format!(
                "container {id} has exited"
            )));
        }
        // The same translation CreateContainer uses (negative values refused, naming the field).
        let resources = crate::oci::container_resources(&linux)
            .map_err(|e| ShimError::invalid(e.to_string()))?;
        let file = self.cfg.bundle_dir(&id).join("resources.json");
        crate::records::write_json(&file, &resources)?;
        let res = self
            .runtime
            .run(
                "update",
                &id,
                &["update", "--resources", &file.display().to_string(), &id],
            )
            .await;
        let _ = std::fs::remove_file(&file);
        res?;
        if let Some(l) = rec.config.linux.as_mut() {
            l.resources = Some(linux);
        } else {
            rec.config.linux = Some(cri::LinuxContainerConfig {
                resources: Some(linux),
                ..Default::default()
            });
        }
        self.put_container(rec)?;
        Ok(cri::UpdateContainerResourcesResponse {})
    }
}
