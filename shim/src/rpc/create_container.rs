//! CreateContainer: reserve the name, then rootfs (overlay over the image's snapshots), OCI
//! bundle and the record, in state Created with no process: as containerd's CRI plugin, the
//! OCI runtime and the container's pea-monitor run at StartContainer (`start_container.rs`).
//! Any failure removes what was made, newest first.

use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use k8s_cri::v1 as cri;

use crate::error::ShimError;
use crate::oci::{self, ContainerSpecInput};
use crate::records::{self, ContainerRecord, ContainerState, SandboxState, RECORD_VERSION};
use crate::{podfiles, Shim};

/// The container's log file: the sandbox's `log_directory` joined with the container's
/// relative `log_path`, refusing anything that could point outside the directory.
pub fn log_path(
    sandbox: &cri::PodSandboxConfig,
    config: &cri::ContainerConfig,
) -> Result<Option<PathBuf>, ShimError> {
    if config.log_path.is_empty() {
        return Ok(None);
    }
    let dir = Path::new(&sandbox.log_directory);
    if sandbox.log_directory.is_empty() || !dir.is_absolute() {
        return Err(ShimError::invalid(format!(
            "sandbox log_directory {:?} must be an absolute path when log_path is set",
            sandbox.log_directory
        )));
    }
    let rel = Path::new(&config.log_path);
    if !rel.components().all(|c| matches!(c, Component::Normal(_))) {
        return Err(ShimError::invalid(format!(
            "log_path {:?} must be relative to the sandbox's log directory, without '..'",
            config.log_path
        )));
    }
    Ok(Some(dir.join(rel)))
}

impl Shim {
    pub async fn create_container(
        self: &Arc<Self>,
        r: cri::CreateContainerRequest,
    ) -> Result<cri::CreateContainerResponse, ShimError> {
        let sandbox = self.sandbox(&r.pod_sandbox_id)?;
        if sandbox.state != SandboxState::Ready {
            return Err(ShimError::FailedPrecondition(format!(
                "sandbox {} is not ready",
                sandbox.id
            )));
        }
        let sandbox_pid = sandbox.pause_pid.ok_or_else(|| {
            ShimError::FailedPrecondition(format!("sandbox {} has no pause process", sandbox.id))
        })?;
        let config = r
            .config
            .ok_or_else(|| ShimError::invalid("config: missing"))?;
        let meta = config
            .metadata
            .clone()
            .filter(|m| !m.name.is_empty())
            .ok_or_else(|| ShimError::invalid("config.metadata.name: empty"))?;
        if meta.name.contains(['/', '\0']) {
            return Err(ShimError::invalid(format!(
                "config.metadata.name: {:?} has '/' or NUL",
                meta.name
            )));
        }
        let image_name = config
            .image
            .as_ref()
            .map(|i| i.image.clone())
            .filter(|i| !i.is_empty())
            .ok_or_else(|| ShimError::invalid("config.image.image: empty"))?;
        let log = log_path(&sandbox.config, &config)?;
        let image = self
            .find_image(&image_name)?
            .ok_or_else(|| ShimError::not_found("image", &image_name))?;
        let image_config = self.image_config(&image)?;

        let target_pid = self.target_pid(&config)?;
        let sandbox_meta = sandbox.config.metadata.clone().unwrap_or_default();
        let id = records::new_id();
        let name = records::container_name(&meta, &sandbox_meta);
        self.reserve_name("container", &name, &id)?;
        let _guard = self.lock(&id).await;

        let bundle = self.cfg.bundle_dir(&id);
        let made = async {
            let mapping = crate::userns::mapping(&sandbox.config);
            let rootfs = self
                .mount_pod_rootfs(
                    &image.id.to_string(),
                    &id,
                    &bundle.join("rootfs"),
                    mapping.as_ref().zip(sandbox.userns.as_deref()),
                )
                .map_err(|e| ShimError::Internal(format!("rootfs: {e}")))?
                .keep();
            let files = podfiles::existing(&self.pod_dir(&sandbox.id));
            let spec = oci::container_spec(&ContainerSpecInput {
                id: &id,
                sandbox_id: &sandbox.id,
                target_pid,
                config: &config,
                sandbox: &sandbox.config,
                image: &image_config,
                rootfs: &rootfs,
                sandbox_pid,
                cgroups_path: format!("{}/{}", sandbox.cgroup_parent, id),
                files: &files,
                seccomp_profile_root: &self.cfg.seccomp_profile_root,
            })
            .map_err(|e| ShimError::invalid(e.to_string()))?;
            records::write_json(&bundle.join("config.json"), &spec)?;
            // The kubelet makes `<log_directory>/<container>/`; crictl and critest may not.
            if let Some(dir) = log.as_deref().and_then(Path::parent) {
                std::fs::create_dir_all(dir).map_err(ShimError::io(dir))?;
            }
            Ok::<_, ShimError>(())
        }
        .await;
        match made {
            Ok(()) => {}
            Err(e) => {
                // Nothing runs yet: the rootfs and bundle are all there is.
                let errors = self.remove_container_files(&id).await;
                self.release_name(&name, &id);
                if !errors.is_empty() {
                    tracing::error!(container = %id, ?errors, "rollback of CreateContainer left something behind");
                }
                return Err(e);
            }
        }
        let rec = ContainerRecord {
            version: RECORD_VERSION,
            id: id.clone(),
            name,
            sandbox_id: sandbox.id.clone(),
            image_ref: image_name,
            image_id: image.id.to_string(),
            config,
            state: ContainerState::Created,
            created_at_ns: records::now_ns(),
            started_at_ns: 0,
            finished_at_ns: 0,
            exit_code: 0,
            reason: String::new(),
            message: String::new(),
            pid: None,
            monitor_pid: None,
            cgroup_parent: sandbox.cgroup_parent.clone(),
            log_path: log,
        };
        if let Err(e) = self.put_container(rec.clone()) {
            self.remove_container_files(&id).await;
            self.release_name(&rec.name, &id);
            return Err(e);
        }
        self.emit(&rec, cri::ContainerEventType::ContainerCreatedEvent);
        Ok(cri::CreateContainerResponse { container_id: id })
    }

    /// For `namespace_options.pid == TARGET`: the running target container's init.
    pub(crate) fn target_pid(
        &self,
        config: &cri::ContainerConfig,
    ) -> Result<Option<i32>, ShimError> {
        let Some(ns) = config
            .linux
            .as_ref()
            .and_then(|l| l.security_context.as_ref())
            .and_then(|s| s.namespace_options.as_ref())
            .filter(|n| n.pid == cri::NamespaceMode::Target as i32)
        else {
            return Ok(None);
        };
        let target = self.container(&ns.target_id).map_err(|_| {
            ShimError::invalid(format!(
                "linux.security_context.namespace_options.target_id: container {:?} not found",
                ns.target_id
            ))
        })?;
        match (target.state, target.pid) {
            (crate::records::ContainerState::Running, Some(pid)) => Ok(Some(pid)),
            _ => Err(ShimError::FailedPrecondition(format!(
                "target container {} is not running",
                target.id
            ))),
        }
    }

    /// Unmounts a container's rootfs and removes its bundle and writable layer; returns every
    /// failure (empty when all went).
    pub async fn remove_container_files(&self, id: &str) -> Vec<String> {
        let mut errors = Vec::new();
        let bundle = self.cfg.bundle_dir(id);
        if let Err(e) = pea_images::rootfs::unmount_at(&bundle.join("rootfs")) {
            errors.push(e.to_string());
            return errors;
        }
        for d in [bundle, self.cfg.container_layer_dir(id)] {
            if let Err(e) = std::fs::remove_dir_all(&d) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    errors.push(format!("{}: {e}", d.display()));
                }
            }
        }
        errors
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_log_paths_are_refused() {
        let sandbox = cri::PodSandboxConfig {
            log_directory: "/var/log/pods/ns_p_uid".into(),
            ..Default::default()
        };
        let mut c = cri::ContainerConfig {
            log_path: "c/0.log".into(),
            ..Default::default()
        };
        assert_eq!(
            log_path(&sandbox, &c).unwrap().unwrap(),
            PathBuf::from("/var/log/pods/ns_p_uid/c/0.log")
        );
        for bad in ["../../etc/passwd", "/etc/passwd", "c/../../x", "./c"] {
            c.log_path = bad.into();
            assert!(log_path(&sandbox, &c).is_err(), "{bad}");
        }
        c.log_path = String::new();
        assert_eq!(log_path(&sandbox, &c).unwrap(), None);
        let rel = cri::PodSandboxConfig {
            log_directory: "relative".into(),
            ..Default::default()
        };
        c.log_path = "c/0.log".into();
        assert!(log_path(&rel, &c).is_err());
    }
}
