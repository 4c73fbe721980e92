//! The monitor's errors: each names the container and the path or step that failed, so the one
//! line the shim receives on the report channel is enough to act on.

use std::path::PathBuf;

/// Everything that can stop a monitor.
#[derive(Debug, thiserror::Error)]
pub enum MonitorError {
    /// The command line is not the contract's.
    #[error("usage: {0}")]
    Usage(String),

    /// A system call while setting up (subreaper, signals, pipes).
    #[error("container {id}: {op}: {source}")]
    Setup {
        id: String,
        op: &'static str,
        source: nix::Error,
    },

    /// The CRI log file could not be opened (its directory must exist: the kubelet makes it).
    #[error("container {id}: opening log {path}: {source}")]
    OpenLog {
        id: String,
        path: PathBuf,
        source: std::io::Error,
    },

    /// The console socket of a tty container: binding it, or taking the pty master from it.
    #[error("container {id}: console socket {path}: {source}")]
    Console {
        id: String,
        path: PathBuf,
        source: std::io::Error,
    },

    /// The runtime binary could not be started at all.
    #[error("container {id}: running runtime {path}: {source}")]
    Spawn {
        id: String,
        path: PathBuf,
        source: std::io::Error,
    },

    /// The runtime's `create` (or `run --detach`) failed; `cause` is its last logged error or
    /// its exit status.
    #[error("container {id}: runtime {verb} failed: {cause}")]
    Create {
        id: String,
        verb: &'static str,
        cause: String,
    },

    /// `create` succeeded but its pid file is missing or not a pid.
    #[error("container {id}: reading pid file {path}: {reason}")]
    PidFile {
        id: String,
        path: PathBuf,
        reason: String,
    },

    /// The poll loop itself failed (not expected: poll and signalfd reads only fail on bugs).
    #[error("container {id}: {op}: {source}")]
    Loop {
        id: String,
        op: &'static str,
        source: nix::Error,
    },

    /// The exit file could not be written.
    #[error("container {id}: writing exit file {path}: {source}")]
    ExitFile {
        id: String,
        path: PathBuf,
        source: std::io::Error,
    },
}
