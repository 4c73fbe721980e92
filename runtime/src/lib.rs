//! pea-runtime: a runc-compatible OCI runtime on libcontainer 0.7.0.
//!
//! The CLI (`cli`) maps runc's verbs onto `commands::*` (one module per verb). libcontainer does
//! the namespaces, mounts, cgroups and capabilities; pea adds what it lacks or gets wrong for a
//! runc drop-in: seccomp through `seccompiler` installed by our `executor` right before execve,
//! spec pre-checks with errors naming the setting (`validate`), runc's `state`/`kill`/`exec`
//! semantics (`container`, `commands`), and a foreground wait that cannot lose an exit
//! (`foreground`).

pub mod cgroup_fs;
pub mod cgroup_mount;
pub mod cli;
pub mod commands;
pub mod container;
pub mod error;
pub mod executor;
pub mod foreground;
pub mod logging;
pub mod seccomp;
pub mod signals;
pub mod syscall_table;
pub mod syscall_table_i386;
pub mod syscall_table_x32;
pub mod tty;
pub mod validate;

pub use error::{Result, RuntimeError};
