//! Building and tearing down a sandbox, step by step. `teardown` undoes whatever a record says
//! exists, newest first, and carries on past a failing step (reporting every failure): it is the
//! rollback of a failed RunPodSandbox, and the body of StopPodSandbox and RemovePodSandbox.

use std::path::PathBuf;

use k8s_cri::v1 as cri;
use serde_json::{json, Map, Value};

use crate::cni::{Attachment, NetworkList};
use crate::error::ShimError;
use crate::records::SandboxRecord;
use crate::{netns, podfiles, Shim};

/// How far to take a sandbox down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Teardown {
    /// StopPodSandbox: the pause container, the network and the network namespace.
    Stop,
    /// RemovePodSandbox (and rollback): everything, files and rootfs included.
    Remove,
}

pub fn namespace_mode(config: &cri::PodSandboxConfig) -> cri::NamespaceOption {
    config
        .linux
        .as_ref()
        .and_then(|l| l.security_context.as_ref())
        .and_then(|s| s.namespace_options.clone())
        .unwrap_or_default()
}

pub fn host_network(config: &cri::PodSandboxConfig) -> bool {
    namespace_mode(config).network == cri::NamespaceMode::Node as i32
}

/// CNI_ARGS for a pod, as the kubelet's CNI plugins expect them.
pub fn cni_args(id: &str, m: &cri::PodSandboxMetadata) -> Vec<(String, String)> {
    vec![
        ("IgnoreUnknown".into(), "1".into()),
        ("K8S_POD_NAMESPACE".into(), m.namespace.clone()),
        ("K8S_POD_NAME".into(), m.name.clone()),
        ("K8S_POD_INFRA_CONTAINER_ID".into(), id.into()),
        ("K8S_POD_UID".into(), m.uid.clone()),
    ]
}

/// Capability args: `portMappings` (host ports only) and `dns`.
pub fn capability_args(config: &cri::PodSandboxConfig) -> Map<String, Value> {
    let mut caps = Map::new();
    let ports: Vec<Value> = config
        .port_mappings
        .iter()
        .filter(|p| p.host_port > 0)
        .map(|p| {
            let proto = match cri::Protocol::try_from(p.protocol) {
                Ok(cri::Protocol::Udp) => "udp",
                Ok(cri::Protocol::Sctp) => "sctp",
                _ => "tcp",
            };
            json!({"hostPort": p.host_port, "containerPort": p.container_port,
                   "protocol": proto, "hostIP": p.host_ip})
        })
        .collect();
    if !ports.is_empty() {
        caps.insert("portMappings".into(), Value::Array(ports));
    }
    if let Some(d) = &config.dns_config {
        caps.insert(
            "dns".into(),
            json!({"servers": d.servers, "searches": d.searches, "options": d.options}),
        );
    }
    caps
}

impl Shim {
    pub fn attachment(&self, rec: &SandboxRecord) -> Attachment {
        let meta = rec.config.metadata.clone().unwrap_or_default();
        Attachment {
            container_id: rec.id.clone(),
            netns: rec
                .netns
                .as_ref()
                .filter(|p| p.exists())
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
            ifname: "eth0".into(),
            args: cni_args(&rec.id, &meta),
            capability_args: capability_args(&rec.config),
        }
    }

    pub fn pod_dir(&self, id: &str) -> PathBuf {
        podfiles::dir_for(&self.cfg.state, id)
    }

    /// Takes down what `rec` says exists; returns the record as it is afterwards and every
    /// failure (empty when all went).
    pub async fn teardown(
        &self,
        mut rec: SandboxRecord,
        how: Teardown,
    ) -> (SandboxRecord, Vec<String>) {
        let mut errors = Vec::new();
        if rec.pause_created {
            match self.runtime.delete(&rec.id).await {
                Ok(()) => {
                    rec.pause_created = false;
                    rec.pause_pid = None;
                }
                Err(e) => errors.push(e.to_string()),
            }
        }
        if let Some(network) = rec.network.clone() {
            let current = NetworkList::load_default(&self.cfg.cni_conf_dir).ok();
            match self
                .cni
                .del(Some(&network), current.as_ref(), &self.attachment(&rec))
                .await
            {
                Ok(()) => rec.network = None,
                Err(e) => errors.push(
                    ShimError::Cni {
                        op: "DEL",
                        id: rec.id.clone(),
                        message: e.to_string(),
                    }
                    .to_string(),
                ),
            }
        }
        if rec.network.is_none() {
            if let Some(ns) = rec.netns.clone() {
                match netns::remove(&ns) {
                    Ok(()) => rec.netns = None,
                    Err(e) => errors.push(e.to_string()),
                }
            }
            // The pod's user namespace pin (its network namespace's owner) goes with it.
            if let Some(ns) = rec.userns.clone() {
                match netns::remove(&ns) {
                    Ok(()) => rec.userns = None,
                    Err(e) => errors.push(e.to_string()),
                }
            }
        }
        if how == Teardown::Remove {
            if rec.rootfs_mounted {
                let target = self.cfg.bundle_dir(&rec.id).join("rootfs");
                match pea_images::rootfs::unmount_at(&target) {
                    Ok(()) => rec.rootfs_mounted = false,
                    Err(e) => errors.push(e.to_string()),
                }
            }
            if !rec.rootfs_mounted {
                for d in [
                    self.cfg.bundle_dir(&rec.id),
                    self.cfg.container_layer_dir(&rec.id),
                ] {
                    if let Err(e) = std::fs::remove_dir_all(&d) {
                        if e.kind() != std::io::ErrorKind::NotFound {
                            errors.push(format!("{}: {e}", d.display()));
                        }
                    }
                }
            }
            if let Err(e) = podfiles::remove(&self.pod_dir(&rec.id)) {
                errors.push(e.to_string());
            }
        }
        (rec, errors)
    }
}
