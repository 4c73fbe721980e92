//! UpdateContainerResources: the new CPU/memory limits through the runtime's `update
//! --resources`, then remembered in the record so ContainerStatus reports them.

use k8s_cri::v1 as cri;
use serde_json::{json, Map, Value};

use crate::error::ShimError;
use crate::records::ContainerState;
use crate::Shim;

/// CRI's Linux resources as OCI `linux.resources` JSON (only what was set).
pub fn oci_resources(r: &cri::LinuxContainerResources) -> Value {
    let mut cpu = Map::new();
    if r.cpu_shares > 0 {
        cpu.insert("shares".into(), json!(r.cpu_shares));
    }
    if r.cpu_quota != 0 {
        cpu.insert("quota".into(), json!(r.cpu_quota));
    }
    if r.cpu_period > 0 {
        cpu.insert("period".into(), json!(r.cpu_period));
    }
    if !r.cpuset_cpus.is_empty() {
        cpu.insert("cpus".into(), json!(r.cpuset_cpus));
    }
    if !r.cpuset_mems.is_empty() {
        cpu.insert("mems".into(), json!(r.cpuset_mems));
    }
    let mut memory = Map::new();
    if r.memory_limit_in_bytes > 0 {
        memory.insert("limit".into(), json!(r.memory_limit_in_bytes));
    }
    if r.memory_swap_limit_in_bytes > 0 {
        memory.insert("swap".into(), json!(r.memory_swap_limit_in_bytes));
    }
    let mut out = Map::new();
    if !cpu.is_empty() {
        out.insert("cpu".into(), Value::Object(cpu));
    }
    if !memory.is_empty() {
        out.insert("memory".into(), Value::Object(memory));
    }
    if !r.unified.is_empty() {
        out.insert("unified".into(), json!(r.unified));
    }
    Value::Object(out)
}

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
        if linux.memory_limit_in_bytes < 0 || linux.cpu_shares < 0 || linux.cpu_period < 0 {
            return Err(ShimError::invalid("linux: negative limits"));
        }
        let file = self.cfg.bundle_dir(&id).join("resources.json");
        crate::records::write_json(&file, &oci_resources(&linux))?;
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
