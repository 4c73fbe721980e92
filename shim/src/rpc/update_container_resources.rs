//! UpdateContainerResources: the new CPU/memory limits through the runtime's `update
//! --resources`, then remembered in the record so ContainerStatus reports them. A Created
//! container has no process yet: the limits go into its bundle's config.json, which the
//! runtime applies at StartContainer (containerd updates a created container's spec the same
//! way).

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
        if rec.has_no_process() {
            self.update_bundle_resources(&id, resources)?;
        } else {
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
        }
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

    /// Puts `resources` into a Created container's config.json, keeping the device rules
    /// CreateContainer made (CRI's resources do not carry them).
    fn update_bundle_resources(
        &self,
        id: &str,
        mut resources: oci_spec::runtime::LinuxResources,
    ) -> Result<(), ShimError> {
        let path = self.cfg.bundle_dir(id).join("config.json");
        let bytes = std::fs::read(&path).map_err(ShimError::io(&path))?;
        let mut spec: oci_spec::runtime::Spec = serde_json::from_slice(&bytes).map_err(|e| {
            ShimError::Internal(format!("{}: unparsable bundle config: {e}", path.display()))
        })?;
        let mut linux = spec.linux().clone().unwrap_or_default();
        let devices = linux.resources().as_ref().and_then(|r| r.devices().clone());
        resources.set_devices(devices);
        linux.set_resources(Some(resources));
        spec.set_linux(Some(linux));
        crate::records::write_json(&path, &spec)
    }
}
