//! `pea-flanneld`: the node network agent, like flannel with its vxlan backend.
//!
//! It takes the node's subnet lease (a static config, or its Node's `spec.podCIDR` from the
//! cluster API like flannel's `--kube-subnet-mgr`), creates the VXLAN device, publishes the
//! node's VTEP MAC and public IP under flannel's annotation names, programs neighbour + FDB +
//! on-link route for every remote node (and withdraws them when a node goes), and writes
//! subnet.env for the CNI plugin.
//! All programming is reconciled against what the kernel already has, so a restart keeps the
//! device and routes in place and pods are not disturbed.

pub mod agent;
pub mod cli;
pub mod config;
pub mod kube_source;
pub mod metrics;
pub mod registry;
pub mod subnet_env;
pub mod uplink;
pub mod vxlan;
