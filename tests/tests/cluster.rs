//! Integration test binary `cluster`: Whole clusters: `pea up`, install, join, certificates, Prometheus, etcd, resilience.
//!
//! The test files are modules of a few binaries instead of a binary each: every binary
//! carries the line tables of all the code it links, and ~85 of them filled a CI disk.
//! nextest still runs each test in a process of its own. A new file is declared here
//! (`meta` checks that every file is), and picked with `-E 'test(/^FILE::/)'`.

mod cluster_certificates;
mod cluster_etcd;
mod cluster_install;
mod cluster_install_addons;
mod cluster_join;
mod cluster_prometheus;
mod cluster_resilience;
mod cluster_up;
