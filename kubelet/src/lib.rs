//! pea-kubelet: the node agent. It watches the pods bound to its node in the Kubernetes API and
//! runs them through a CRI runtime (pea-shim, or any other such as containerd's CRI plugin),
//! reporting their status, the node's status and its lease.
//!
//! The path of a pod: [`pods`] (watch, one [`pods::worker`] per pod) → [`podconfig`] (Pod →
//! CRI messages) → [`cri`]; [`volumes`], [`cgroups`] and [`probes`] are the node-side pieces a
//! worker uses; [`node`] reports the node.

pub mod bootstrap;
pub mod certificate;
pub mod cgroups;
pub mod cgroups_allocatable;
pub mod cli;
pub mod config;
pub mod cri;
pub mod events;
pub mod eviction;
pub mod gc;
pub mod instrument;
pub mod kubelet;
pub mod labels;
pub mod logrotate;
pub mod node;
pub mod podconfig;
pub mod pods;
pub mod probes;
pub mod quantity;
pub mod server;
pub mod static_pods;
pub mod volumes;

/// The Kubernetes version whose kubelet behaviour pea-kubelet follows (what nodeInfo reports).
pub const KUBELET_VERSION: &str = "v1.32.0";
