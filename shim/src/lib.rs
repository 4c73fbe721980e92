//! pea-shim: a CRI v1 runtime and image service over pea-runtime, pea-cni and pea-images.
//!
//! A pod sandbox is a pause container run by the OCI runtime in a network namespace the shim
//! pins and hands to CNI; it holds the pod's NET, IPC and UTS namespaces (and PID when the pod
//! shares it), which the pod's containers join by path. Each container's I/O and exit are
//! owned by a small `pea-monitor` process that outlives the shim, so containers keep running
//! and logging while the shim restarts; the shim learns exits from the monitor's exit file.
//!
//! ```text
//! rpc/        one file per CRI RPC (RuntimeService and ImageService), `call` logs and maps errors
//! shim.rs     the node's state: records, names, per-id locks, the image store, CNI, runtime
//! records.rs  versioned JSON records of sandboxes and containers (state machine)
//! oci/        CRI config -> OCI runtime spec
//! cni/        libcni semantics: conflists, prevResult chaining, result cache, DEL from cache
//! netns.rs    pinned network namespaces
//! monitor.rs  starting pea-monitor and reading its report and exit file
//! cgroup_warm.rs  keeps the cgroup attach path's RCU grace period out of pod starts
//! runtime_cli.rs  the OCI runtime as a program
//! image_gc.rs the shim's own image GC with pea's policies (`--image-gc-policy`)
//! ```

pub mod cgroup_warm;
pub mod cli;
pub mod cni;
pub mod config;
pub mod error;
pub mod image_gc;
pub mod images;
pub mod monitor;
pub mod netns;
pub mod oci;
pub mod podfiles;
pub mod records;
pub mod rpc;
pub mod runtime_cli;
pub mod sandbox;
pub mod server;
pub mod shim;
pub mod stats;
pub mod streaming;
pub mod userns;

pub use config::ShimConfig;
pub use error::ShimError;
pub use shim::Shim;
