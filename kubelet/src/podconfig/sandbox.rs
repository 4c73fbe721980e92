//! Pod → PodSandboxConfig (kubelet's `generatePodSandboxConfig`).

use std::collections::HashMap;

use k8s_cri::v1 as cri;
use k8s_openapi::api::core::v1::Pod;

use super::{dns, pod_log_dir, NodeContext};
use crate::labels;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SandboxConfigError {
    #[error("container {container:?} port {port}: protocol {protocol:?} is not supported (TCP, UDP, SCTP)")]
    Protocol {
        container: String,
        port: i32,
        protocol: String,
    },
}

pub fn sandbox_config(
    pod: &Pod,
    attempt: u32,
    cgroup_parent: &str,
    ctx: &NodeContext,
) -> Result<cri::PodSandboxConfig, SandboxConfigError> {
    let m = &pod.metadata;
    let spec = pod.spec.clone().unwrap_or_default();
    let host_network = spec.host_network.unwrap_or(false);
    let name = m.name.clone().unwrap_or_default();
    let hostname = if host_network {
        nix::unistd::gethostname()
            .ok()
            .and_then(|h| h.into_string().ok())
            .unwrap_or_default()
    } else {
        let h = spec.hostname.clone().unwrap_or_else(|| name.clone());
        // kubelet truncates to 63 and trims trailing '-' / '.'.
        h.chars()
            .take(63)
            .collect::<String>()
            .trim_end_matches(['-', '.'])
            .to_string()
    };
    let mut port_mappings = Vec::new();
    for c in &spec.containers {
        for p in c.ports.iter().flatten() {
            let Some(host_port) = p.host_port.filter(|hp| *hp > 0) else {
                continue;
            };
            let protocol = match p.protocol.as_deref().unwrap_or("TCP") {
                "TCP" => cri::Protocol::Tcp,
                "UDP" => cri::Protocol::Udp,
                "SCTP" => cri::Protocol::Sctp,
                other => {
                    return Err(SandboxConfigError::Protocol {
                        container: c.name.clone(),
                        port: p.container_port,
                        protocol: other.into(),
                    })
                }
            };
            port_mappings.push(cri::PortMapping {
                protocol: protocol as i32,
                container_port: p.container_port,
                host_port,
                host_ip: p.host_ip.clone().unwrap_or_default(),
            });
        }
    }
    let mut labels_map: HashMap<String, String> =
        m.labels.clone().unwrap_or_default().into_iter().collect();
    labels_map.extend(labels::pod_labels(pod));
    let annotations: HashMap<String, String> = m
        .annotations
        .clone()
        .unwrap_or_default()
        .into_iter()
        .collect();
    let psc = spec.security_context.clone().unwrap_or_default();
    let sysctls: HashMap<String, String> = psc
        .sysctls
        .iter()
        .flatten()
        .map(|s| (s.name.clone(), s.value.clone()))
        .collect();
    let privileged = spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .any(|c| {
            c.security_context
                .as_ref()
                .and_then(|s| s.privileged)
                .unwrap_or(false)
        });
    let seccomp = psc.seccomp_profile.as_ref().map(seccomp_profile);
    Ok(cri::PodSandboxConfig {
        metadata: Some(cri::PodSandboxMetadata {
            name,
            uid: m.uid.clone().unwrap_or_default(),
            namespace: m.namespace.clone().unwrap_or_default(),
            attempt,
        }),
        hostname,
        log_directory: pod_log_dir(ctx, pod).display().to_string(),
        dns_config: Some(dns::dns_config(
            pod,
            &ctx.cluster_dns,
            &ctx.cluster_domain,
            &ctx.host_resolv,
        )),
        port_mappings,
        labels: labels_map,
        annotations,
        linux: Some(cri::LinuxPodSandboxConfig {
            cgroup_parent: cgroup_parent.to_string(),
            security_context: Some(cri::LinuxSandboxSecurityContext {
                namespace_options: Some(namespace_options(pod)),
                run_as_user: psc.run_as_user.map(|v| cri::Int64Value { value: v }),
                run_as_group: psc.run_as_group.map(|v| cri::Int64Value { value: v }),
                supplemental_groups: psc.supplemental_groups.clone().unwrap_or_default(),
                privileged,
                seccomp,
                ..Default::default()
            }),
            sysctls,
            ..Default::default()
        }),
        windows: None,
    })
}

/// Which namespaces the pod shares with the node or across its containers.
pub fn namespace_options(pod: &Pod) -> cri::NamespaceOption {
    let spec = pod.spec.as_ref();
    let flag = |f: fn(&k8s_openapi::api::core::v1::PodSpec) -> Option<bool>| {
        spec.and_then(f).unwrap_or(false)
    };
    let node_or_pod = |host: bool| {
        if host {
            cri::NamespaceMode::Node
        } else {
            cri::NamespaceMode::Pod
        }
    };
    let pid = if flag(|s| s.host_pid) {
        cri::NamespaceMode::Node
    } else if flag(|s| s.share_process_namespace) {
        cri::NamespaceMode::Pod
    } else {
        cri::NamespaceMode::Container
    };
    cri::NamespaceOption {
        network: node_or_pod(flag(|s| s.host_network)) as i32,
        pid: pid as i32,
        ipc: node_or_pod(flag(|s| s.host_ipc)) as i32,
        ..Default::default()
    }
}

pub fn seccomp_profile(p: &k8s_openapi::api::core::v1::SeccompProfile) -> cri::SecurityProfile {
    let (profile_type, localhost_ref) = match p.type_.as_str() {
        "RuntimeDefault" => (
            cri::security_profile::ProfileType::RuntimeDefault,
            String::new(),
        ),
        "Localhost" => (
            cri::security_profile::ProfileType::Localhost,
            p.localhost_profile.clone().unwrap_or_default(),
        ),
        _ => (
            cri::security_profile::ProfileType::Unconfined,
            String::new(),
        ),
    };
    cri::SecurityProfile {
        profile_type: profile_type as i32,
        localhost_ref,
    }
}
