//! Integration test binary `network`: Node networking and cluster add-ons: pea-cni, pea-flanneld, pea-proxy, pea-dns, pea-ingress.
//!
//! The test files are modules of a few binaries instead of a binary each: every binary
//! carries the line tables of all the code it links, and ~85 of them filled a CI disk.
//! nextest still runs each test in a process of its own. A new file is declared here
//! (`meta` checks that every file is), and picked with `-E 'test(/^FILE::/)'`.

mod cni_churn;
mod cni_dualstack;
mod cni_flannel;
mod cni_flannel_kube;
mod cni_plugin;
mod cni_podman;
mod dns;
mod ingress;
mod proxy;
mod proxy_ipv6;
mod proxy_sync_equivalence;
