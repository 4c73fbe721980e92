//! pea-tests: what every test shares — fixtures (images, bundles, a local registry, the pause
//! program), the leak guard, the crate layering check and benchmark statistics.

pub mod bench;
pub mod bins;
pub mod cluster;
pub mod conformance;
pub mod containerd_cri;
pub mod control;
pub mod control_client;
pub mod control_etcd;
pub mod cri_client;
pub mod dns;
pub mod eviction_node;
pub mod federation;
pub mod fixtures;
pub mod https_hook;
pub mod images;
pub mod ingress;
pub mod kubelet_node;
pub mod layering;
pub mod leakguard;
pub mod netlab;
pub mod netlab_cni;
pub mod privileged;
pub mod runtime_cli;
pub mod shim_node;
pub mod tmpfs;
