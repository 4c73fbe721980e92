//! Kubernetes Pod → CRI messages: one translation, in one place (kubelet's
//! `kuberuntime_sandbox.go` and `kuberuntime_container.go`). No I/O: what the translation needs
//! from the API (configmaps, secrets, services) and the node (volumes, pod IP) is passed in.

pub mod container;
pub mod dns;
pub mod env;
pub mod qos;
pub mod sandbox;

use std::path::PathBuf;

/// Node facts the translation needs.
#[derive(Debug, Clone)]
pub struct NodeContext {
    pub node_name: String,
    pub cluster_dns: Vec<String>,
    pub cluster_domain: String,
    pub host_resolv: dns::HostResolv,
    pub pod_logs_dir: PathBuf,
    /// The kubelet's root dir: pod dirs (volumes, etc-hosts, termination logs) live under it.
    pub root_dir: PathBuf,
    /// `<cgroupRoot>/kubepods` and its QoS children (cgroupfs paths).
    pub cgroups: crate::cgroups::Layout,
    pub node_memory: u64,
}

/// The pod's log directory, as kubelet names it: `<podLogsDir>/<ns>_<name>_<uid>`.
pub fn pod_log_dir(ctx: &NodeContext, pod: &k8s_openapi::api::core::v1::Pod) -> PathBuf {
    let m = &pod.metadata;
    ctx.pod_logs_dir.join(format!(
        "{}_{}_{}",
        m.namespace.as_deref().unwrap_or(""),
        m.name.as_deref().unwrap_or(""),
        m.uid.as_deref().unwrap_or("")
    ))
}
