//! The runtime's error type. Messages follow runc's wording where users grep for it.

use std::path::PathBuf;

use libcontainer::error::LibcontainerError;

/// Every way a runtime command can fail.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("container \"{0}\" does not exist")]
    NotFound(String),
    #[error("container with id exists: {0}")]
    Exists(String),
    #[error("invalid container id {id:?}: {reason}")]
    InvalidId { id: String, reason: &'static str },
    #[error("bundle {path}: {reason}")]
    Bundle { path: PathBuf, reason: String },
    #[error("invalid config.json: {0}")]
    InvalidSpec(String),
    #[error("cannot {op} container {id}: container is {status}")]
    Status {
        id: String,
        op: &'static str,
        status: String,
    },
    #[error("{op} container {id}: {source}")]
    Libcontainer {
        id: String,
        op: &'static str,
        #[source]
        source: Box<LibcontainerError>,
    },
    #[error("cgroup of container {id}: {reason}")]
    Cgroup { id: String, reason: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Seccomp(#[from] crate::seccomp::SeccompError),
    #[error("{0}: not implemented in pea-runtime")]
    NotImplemented(String),
    #[error("{0}")]
    Usage(String),
    #[error("{0}")]
    Other(String),
}

impl RuntimeError {
    pub fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| RuntimeError::Io { path, source }
    }

    pub fn lc(id: &str, op: &'static str) -> impl FnOnce(LibcontainerError) -> Self {
        let id = id.to_string();
        move |source| RuntimeError::Libcontainer {
            id,
            op,
            source: Box::new(source),
        }
    }
}

/// Result alias for the runtime library.
pub type Result<T, E = RuntimeError> = std::result::Result<T, E>;

/// The error and all its causes, "a: b: c", skipping causes already in the text.
pub fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut cur = err.source();
    while let Some(e) = cur {
        let s = e.to_string();
        if !out.contains(&s) {
            out.push_str(": ");
            out.push_str(&s);
        }
        cur = e.source();
    }
    out
}
