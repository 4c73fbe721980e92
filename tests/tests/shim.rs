//! Integration test binary `shim`: pea-shim, the CRI server.
//!
//! The test files are modules of a few binaries instead of a binary each: every binary
//! carries the line tables of all the code it links, and ~85 of them filled a CI disk.
//! nextest still runs each test in a process of its own. A new file is declared here
//! (`meta` checks that every file is), and picked with `-E 'test(/^FILE::/)'`.

mod shim_churn;
mod shim_created;
mod shim_cri;
mod shim_image_gc;
mod shim_metrics;
mod shim_monitor;
mod shim_spdy;
mod shim_streaming;
mod shim_userns;
