//! pea-cni: a flannel-style CNI plugin (bridge + veth + host-local style IPAM + nftables
//! masquerade) and the `pea-flanneld` node agent (VXLAN overlay).
//!
//! The plugin is a short-lived process run once per CNI verb by a container runtime
//! (`CNI_COMMAND` ADD, DEL, CHECK, VERSION, STATUS, GC). Its binary only wires stdin/env/stdout to
//! [`cmd::run`]; every verb lives in its own file under [`cmd`].

pub mod cmd;
pub mod config;
pub mod env;
pub mod flannel;
pub mod ipam;
pub mod link;
pub mod masq;
pub mod netns;
pub mod spec;
pub mod sysctl;
