//! Opening network namespaces and talking netlink inside them.
//!
//! A netlink socket belongs to the network namespace its creating thread was in when the socket
//! was made, for its whole life. So to configure a pod's namespace we switch the *calling thread*
//! into it with `setns(CLONE_NEWNET)`, create the socket, and switch straight back, without any
//! `.await` in between. This is safe here because:
//! - `setns(CLONE_NEWNET)` affects only the calling thread (unlike mount or user namespaces it is
//!   allowed in a multi-threaded process);
//! - the plugin drives tokio on a current-thread runtime, and this function is synchronous, so no
//!   other task can run on this thread while it sits in the pod's namespace;
//! - if switching back fails the process aborts rather than carry on in the wrong namespace.

use std::{
    fs::File,
    os::fd::AsFd,
    path::{Path, PathBuf},
};

use nix::sched::CloneFlags;
use rtnetlink::Handle;

/// `NSFS_MAGIC` from linux/magic.h: what fstatfs reports for a namespace file.
const NSFS_MAGIC: i64 = 0x6e73_6673;

#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    #[error("network namespace {path} does not exist")]
    NotFound { path: PathBuf },
    #[error("opening network namespace {path}: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a network namespace file")]
    NotNetns { path: PathBuf },
    #[error("CNI_NETNS {path} is the plugin's own network namespace (the node's), not a pod's")]
    OwnNamespace { path: PathBuf },
    #[error("entering network namespace {path}: {source}")]
    Enter {
        path: PathBuf,
        #[source]
        source: nix::Error,
    },
    #[error("opening a netlink socket in {path}: {source}")]
    Socket {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// An open network namespace.
#[derive(Debug)]
pub struct Netns {
    pub path: PathBuf,
    pub file: File,
}

impl Netns {
    /// Refuses the namespace the plugin runs in: plumbing a "pod" there would put the pod's
    /// interface, addresses and default route on the node itself.
    pub fn ensure_not_own(&self) -> Result<(), NetnsError> {
        use std::os::unix::fs::MetadataExt;
        let own =
            std::fs::metadata("/proc/thread-self/ns/net").map_err(|source| NetnsError::Open {
                path: "/proc/thread-self/ns/net".into(),
                source,
            })?;
        let this = self.file.metadata().map_err(|source| NetnsError::Open {
            path: self.path.clone(),
            source,
        })?;
        if (own.dev(), own.ino()) == (this.dev(), this.ino()) {
            return Err(NetnsError::OwnNamespace {
                path: self.path.clone(),
            });
        }
        Ok(())
    }

    /// Opens `path` and checks it is a namespace file (nsfs).
    pub fn open(path: &Path) -> Result<Self, NetnsError> {
        let file = File::open(path).map_err(|source| {
            if source.kind() == std::io::ErrorKind::NotFound {
                NetnsError::NotFound { path: path.into() }
            } else {
                NetnsError::Open {
                    path: path.into(),
                    source,
                }
            }
        })?;
        let fs = nix::sys::statfs::fstatfs(&file).map_err(|e| NetnsError::Open {
            path: path.into(),
            source: e.into(),
        })?;
        // The f_type integer width differs between libc targets.
        #[allow(clippy::unnecessary_cast)]
        if fs.filesystem_type().0 as i64 != NSFS_MAGIC {
            return Err(NetnsError::NotNetns { path: path.into() });
        }
        Ok(Netns {
            path: path.into(),
            file,
        })
    }

    /// A netlink handle whose socket lives in this namespace. Must run inside a tokio runtime
    /// (current-thread, see the module doc for why the namespace switch is safe).
    pub fn netlink(&self) -> Result<Handle, NetnsError> {
        let here = File::open("/proc/thread-self/ns/net").map_err(|source| NetnsError::Open {
            path: "/proc/thread-self/ns/net".into(),
            source,
        })?;
        nix::sched::setns(self.file.as_fd(), CloneFlags::CLONE_NEWNET).map_err(|source| {
            NetnsError::Enter {
                path: self.path.clone(),
                source,
            }
        })?;
        let made = rtnetlink::new_connection();
        if let Err(e) = nix::sched::setns(here.as_fd(), CloneFlags::CLONE_NEWNET) {
            eprintln!("pea-cni: cannot return to the node network namespace: {e}; aborting");
            std::process::abort();
        }
        let (conn, handle, _) = made.map_err(|source| NetnsError::Socket {
            path: self.path.clone(),
            source,
        })?;
        tokio::spawn(conn);
        Ok(handle)
    }
}

/// A netlink handle in the caller's own namespace (the node's).
pub fn netlink_here() -> Result<Handle, NetnsError> {
    let (conn, handle, _) = rtnetlink::new_connection().map_err(|source| NetnsError::Socket {
        path: "/proc/self/ns/net".into(),
        source,
    })?;
    tokio::spawn(conn);
    Ok(handle)
}
