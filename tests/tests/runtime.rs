//! Integration test binary `runtime`: pea-runtime, the pause binary and the isolation conformance suite.
//!
//! The test files are modules of a few binaries instead of a binary each: every binary
//! carries the line tables of all the code it links, and ~85 of them filled a CI disk.
//! nextest still runs each test in a process of its own. A new file is declared here
//! (`meta` checks that every file is), and picked with `-E 'test(/^FILE::/)'`.

mod isolation_pea;
mod pause;
mod runtime_containerd_cri;
mod runtime_dropin;
mod runtime_errors;
mod runtime_lifecycle;
mod runtime_run_loop;
mod runtime_tty;
