//! RunPodSandbox: reserve the name, then pause image, pod files, network namespace; then CNI ADD
//! and, at the same time, pause rootfs, OCI bundle, pause container (`run --detach`). Each step
//! is recorded as it succeeds; on any failure `Shim::teardown` undoes the recorded steps newest
//! first and the error names both the cause and anything the rollback could not undo. Nothing is
//! persisted until all went well.

use std::sync::Arc;

use k8s_cri::v1 as cri;

use crate::cni::{result_ips, NetworkList};
use crate::error::ShimError;
use crate::oci::{self, SandboxSpecInput};
use crate::records::{self, SandboxRecord, SandboxState, RECORD_VERSION};
use crate::sandbox::{host_network, namespace_mode, Teardown};
use crate::{netns, podfiles, Shim};

/// The cgroup parent a pod asks for, checked: absolute, no `..`, default `/pea`.
pub fn cgroup_parent(config: &cri::PodSandboxConfig) -> Result<String, ShimError> {
    let p = config
        .linux
        .as_ref()
        .map(|l| l.cgroup_parent.clone())
        .unwrap_or_default();
    if p.is_empty() {
        return Ok("/pea".into());
    }
    if !p.starts_with('/') || p.split('/').any(|c| c == ".." || c == ".") {
        return Err(ShimError::invalid(format!(
            "linux.cgroup_parent: {p:?} must be an absolute cgroupfs path without . or .."
        )));
    }
    Ok(p.trim_end_matches('/').to_string())
}

fn check_metadata(config: &cri::PodSandboxConfig) -> Result<&cri::PodSandboxMetadata, ShimError> {
    let m = config
        .metadata
        .as_ref()
        .ok_or_else(|| ShimError::invalid("config.metadata: missing"))?;
    for (field, v) in [
        ("name", &m.name),
        ("namespace", &m.namespace),
        ("uid", &m.uid),
    ] {
        if v.is_empty() {
            return Err(ShimError::invalid(format!(
                "config.metadata.{field}: empty"
            )));
        }
        if v.contains(['/', '\0']) || v.len() > 253 {
            return Err(ShimError::invalid(format!(
                "config.metadata.{field}: {v:?} has '/' or NUL or is too long"
            )));
        }
    }
    Ok(m)
}

/// Whether the pod sets sysctls of its network namespace (`net.*`, also as `net/...`).
fn net_sysctls(config: &cri::PodSandboxConfig) -> bool {
    config.linux.as_ref().is_some_and(|l| {
        l.sysctls
            .keys()
            .any(|k| k.starts_with("net.") || k.starts_with("net/"))
    })
}

/// What `run_pause` made, for the rollback.
#[derive(Debug, Default)]
struct PauseMade {
    rootfs_mounted: bool,
    created: bool,
}

impl Shim {
    pub async fn run_pod_sandbox(
        self: &Arc<Self>,
        r: cri::RunPodSandboxRequest,
    ) -> Result<cri::RunPodSandboxResponse, ShimError> {
        let config = r
            .config
            .ok_or_else(|| ShimError::invalid("config: missing"))?;
        let meta = check_metadata(&config)?;
        crate::userns::check(&config)?;
        if !matches!(r.runtime_handler.as_str(), "" | "pea" | "runc") {
            return Err(ShimError::invalid(format!(
                "runtime_handler {:?}: pea-shim has one handler (\"\", also called \"pea\")",
                r.runtime_handler
            )));
        }
        let cgroup_parent = cgroup_parent(&config)?;
        let id = records::new_id();
        let name = records::sandbox_name(meta);
        self.reserve_name("sandbox", &name, &id)?;
        let _guard = self.lock(&id).await;
        let mut rec = SandboxRecord {
            version: RECORD_VERSION,
            id: id.clone(),
            name: name.clone(),
            config,
            runtime_handler: r.runtime_handler,
            state: SandboxState::Ready,
            created_at_ns: records::now_ns(),
            netns: None,
            ips: Vec::new(),
            pause_pid: None,
            cgroup_parent,
            network: None,
            pause_created: false,
            rootfs_mounted: false,
            userns: None,
        };
        match self.build_sandbox(&mut rec).await {
            Ok(()) => {
                if let Err(e) = self.put_sandbox(rec.clone()) {
                    return Err(self.roll_back(rec, e).await);
                }
                Ok(cri::RunPodSandboxResponse { pod_sandbox_id: id })
            }
            Err(e) => Err(self.roll_back(rec, e).await),
        }
    }

    async fn roll_back(&self, rec: SandboxRecord, cause: ShimError) -> ShimError {
        let (id, name) = (rec.id.clone(), rec.name.clone());
        let (_, errors) = self.teardown(rec, Teardown::Remove).await;
        self.release_name(&name, &id);
        if errors.is_empty() {
            return cause;
        }
        tracing::error!(sandbox = %id, ?errors, "rollback of RunPodSandbox left something behind");
        let code_keeper = cause.code();
        let msg = format!("{cause}; rollback also failed: {}", errors.join("; "));
        match code_keeper {
            tonic::Code::InvalidArgument => ShimError::InvalidArgument(msg),
            _ => ShimError::Internal(msg),
        }
    }

    /// The network (netns, CNI ADD) and the pause container (rootfs, bundle, `run --detach`)
    /// are made at the same time: the pause only joins the namespace by path, and CNI only
    /// configures it, so neither waits for the other (the runtime's cgroup attach and the CNI
    /// plugin's work overlap), unless the pod sets net.* sysctls. What each made is recorded in
    /// `rec` for the rollback.
    async fn build_sandbox(self: &Arc<Self>, rec: &mut SandboxRecord) -> Result<(), ShimError> {
        // The first cgroup attach's RCU grace period overlaps the work below (crate::cgroup_warm).
        let _warm = self.cgroup_warmer.hold();
        let ns_opts = namespace_mode(&rec.config);
        let host_ipc = ns_opts.ipc == cri::NamespaceMode::Node as i32;

        let pause = self.ensure_pause_image().await?;
        let pause_config = self.image_config(&pause)?;

        let files = podfiles::create(&self.pod_dir(&rec.id), &rec.config, host_ipc)?;

        let mapping = crate::userns::mapping(&rec.config);
        let mut network = None;
        if !host_network(&rec.config) {
            let path = netns::path_for(&self.cfg.netns_dir(), &rec.id);
            match &mapping {
                // The network namespace must belong to the pod's user namespace (crate::userns).
                Some(m) => {
                    let user_pin = self.cfg.state.join("userns").join(&rec.id);
                    crate::userns::create_pinned(m, &user_pin, &path)?;
                    rec.userns = Some(user_pin);
                }
                None => netns::create(&path)?,
            }
            rec.netns = Some(path);
            let list = NetworkList::load_default(&self.cfg.cni_conf_dir)
                .map_err(|e| ShimError::FailedPrecondition(format!("network not ready: {e}")))?;
            let att = self.attachment(rec);
            // Recorded before ADD: a failed or killed ADD still gets its DEL.
            rec.network = Some(list.name.clone());
            network = Some((list, att));
        }

        let added = async {
            let Some((list, att)) = &network else {
                return Ok(None);
            };
            self.cni
                .add(list, att)
                .await
                .map(Some)
                .map_err(|e| ShimError::Cni {
                    op: "ADD",
                    id: rec.id.clone(),
                    message: e.to_string(),
                })
        };
        let mut made = PauseMade::default();
        let paused = self.run_pause(
            rec,
            &pause,
            &pause_config,
            &files,
            mapping.as_ref(),
            &mut made,
        );
        let (added, paused) = if net_sysctls(&rec.config) {
            // The runtime writes the pod's net.* sysctls inside the namespace; one may name an
            // interface CNI makes or a knob CNI sets: then CNI goes first, as in containerd 1.6.
            let added = added.await?;
            (Ok(added), paused.await)
        } else {
            tokio::join!(added, paused)
        };
        rec.rootfs_mounted = made.rootfs_mounted;
        rec.pause_created = made.created;
        match (added, paused) {
            (Ok(result), Ok(pid)) => {
                rec.ips = result.as_ref().map(result_ips).unwrap_or_default();
                rec.pause_pid = Some(pid);
                Ok(())
            }
            (Err(e), Ok(_)) | (Ok(_), Err(e)) => Err(e),
            (Err(cni), Err(pause)) => {
                tracing::warn!(sandbox = %rec.id, error = %pause, "pause container failed too");
                Err(cni)
            }
        }
    }

    /// Mounts the pause rootfs, writes its bundle and runs it detached (`run --detach`: one
    /// runtime call instead of `create` + `start`); returns its pid. `made` says what exists.
    async fn run_pause(
        &self,
        rec: &SandboxRecord,
        pause: &pea_images::ImageRecord,
        pause_config: &oci_spec::image::ImageConfiguration,
        files: &oci::PodFiles,
        mapping: Option<&crate::userns::PodMapping>,
        made: &mut PauseMade,
    ) -> Result<i32, ShimError> {
        let bundle = self.cfg.bundle_dir(&rec.id);
        let rootfs = self
            .mount_pod_rootfs(
                &pause.id.to_string(),
                &rec.id,
                &bundle.join("rootfs"),
                mapping.zip(rec.userns.as_deref()),
            )
            .map_err(|e| ShimError::Internal(format!("pause rootfs: {e}")))?;
        let rootfs = rootfs.keep();
        made.rootfs_mounted = true;

        let spec = oci::sandbox_spec(&SandboxSpecInput {
            id: &rec.id,
            config: &rec.config,
            image: pause_config,
            rootfs: &rootfs,
            netns: rec.netns.as_deref(),
            userns: rec.userns.as_deref(),
            cgroups_path: format!("{}/{}", rec.cgroup_parent, rec.id),
            files,
            seccomp_profile_root: &self.cfg.seccomp_profile_root,
        })
        .map_err(|e| ShimError::invalid(e.to_string()))?;
        records::write_json(&bundle.join("config.json"), &spec)?;

        let pid_file = bundle.join("init.pid");
        made.created = true;
        match self.runtime.run_detached(&rec.id, &bundle, &pid_file).await {
            // The runtime removes what it made when it fails; a timed-out call may not have.
            Err(e @ ShimError::Runtime { .. }) => {
                made.created = false;
                return Err(e);
            }
            Err(e) => return Err(e),
            Ok(()) => {}
        }
        std::fs::read_to_string(&pid_file)
            .map_err(ShimError::io(&pid_file))?
            .trim()
            .parse::<i32>()
            .map_err(|e| ShimError::Internal(format!("{}: {e}", pid_file.display())))
    }

    /// Mounts image `image`'s rootfs for container (or sandbox) `id` at `target`; for a
    /// user-namespace pod (its mapping and pinned namespace) from idmapped layers owned by the
    /// pod's root (crate::userns).
    pub fn mount_pod_rootfs(
        &self,
        image: &str,
        id: &str,
        target: &std::path::Path,
        userns: Option<(&crate::userns::PodMapping, &std::path::Path)>,
    ) -> Result<pea_images::rootfs::Rootfs, pea_images::rootfs::RootfsError> {
        let state = self.cfg.container_layer_dir(id);
        let Some((m, userns)) = userns else {
            return pea_images::rootfs::mount_rootfs(&self.images, image, &state, target);
        };
        let runtime = self.cfg.runtime.clone();
        let map_layer = move |layer: &std::path::Path, at: &std::path::Path| {
            crate::userns::idmap_layer(&runtime, userns, layer, at)
        };
        pea_images::rootfs::mount_rootfs_mapped(
            &self.images,
            image,
            &state,
            target,
            &pea_images::rootfs::IdMappedLayers {
                staging: &state.join("idmapped-layers"),
                owner: (m.uid_host, m.gid_host),
                map_layer: &map_layer,
            },
        )
    }

    /// The pause image, pulled if absent, pinned.
    pub async fn ensure_pause_image(
        self: &Arc<Self>,
    ) -> Result<pea_images::ImageRecord, ShimError> {
        if let Some(rec) = self.find_image(&self.cfg.pause_image)? {
            if !rec.pinned {
                self.images.set_pinned(&rec.id.to_string(), true)?;
            }
            return Ok(rec);
        }
        self.pull_image(cri::PullImageRequest {
            image: Some(cri::ImageSpec {
                image: self.cfg.pause_image.clone(),
                ..Default::default()
            }),
            auth: None,
            sandbox_config: None,
        })
        .await?;
        self.find_image(&self.cfg.pause_image)?
            .ok_or_else(|| ShimError::not_found("image", &self.cfg.pause_image))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cgroup_parents_are_checked() {
        let mut c = cri::PodSandboxConfig::default();
        assert_eq!(cgroup_parent(&c).unwrap(), "/pea");
        c.linux = Some(cri::LinuxPodSandboxConfig {
            cgroup_parent: "/kubepods/burstable/pod1/".into(),
            ..Default::default()
        });
        assert_eq!(cgroup_parent(&c).unwrap(), "/kubepods/burstable/pod1");
        c.linux.as_mut().unwrap().cgroup_parent = "/kubepods/../../etc".into();
        assert!(cgroup_parent(&c)
            .unwrap_err()
            .to_string()
            .contains("cgroup_parent"));
        c.linux.as_mut().unwrap().cgroup_parent = "kubepods".into();
        assert!(cgroup_parent(&c).is_err());
    }
}
