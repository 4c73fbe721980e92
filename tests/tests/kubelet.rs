//! Integration test binary `kubelet`: pea-kubelet over pea-shim (and containerd's CRI).
//!
//! The test files are modules of a few binaries instead of a binary each: every binary
//! carries the line tables of all the code it links, and ~85 of them filled a CI disk.
//! nextest still runs each test in a process of its own. A new file is declared here
//! (`meta` checks that every file is), and picked with `-E 'test(/^FILE::/)'`.

mod kubelet_agent;
mod kubelet_containerd;
mod kubelet_eviction;
mod kubelet_eviction_disk;
mod kubelet_eviction_signals;
mod kubelet_eviction_storage;
mod kubelet_gc;
mod kubelet_logs;
mod kubelet_node;
mod kubelet_probes;
mod kubelet_sa_token;
mod kubelet_static;
