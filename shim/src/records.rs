//! What pea-shim remembers about sandboxes and containers: versioned JSON records under the
//! state dir, written atomically (temp file, fsync, rename), reloaded at start so a restarted
//! shim loses nothing.
//!
//! ```text
//! sandbox:    Ready ──StopPodSandbox──▶ NotReady ──RemovePodSandbox──▶ (gone)
//!               ▲ RunPodSandbox (all steps done; any failure rolls back, nothing is recorded)
//!
//! container:  Created ──StartContainer──▶ Running ──exit (monitor's exit file)──▶ Exited
//!                │                                                               │
//!                └──── start failed (exit 128, StartError) ──────▶ Exited ──RemoveContainer──▶ (gone)
//! ```
//!
//! A Created container has no process (no pid, no monitor, nothing in the runtime): only its
//! rootfs, bundle and record. StartContainer runs its monitor, which runs the runtime's
//! `run --detach`. Records of an older shim may hold a Created container with a pid: its
//! monitor ran `create`, and StartContainer runs the runtime's `start` for it.
//!
//! A record is written before the step that makes it true is reported to the client, and the
//! container's exit is learnt from the exit file its monitor writes (it outlives the shim).

use std::path::{Path, PathBuf};

use k8s_cri::v1 as cri;
use serde::{Deserialize, Serialize};

use crate::error::ShimError;

pub const RECORD_VERSION: u32 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SandboxState {
    Ready,
    NotReady,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SandboxRecord {
    pub version: u32,
    pub id: String,
    pub name: String,
    pub config: cri::PodSandboxConfig,
    pub runtime_handler: String,
    pub state: SandboxState,
    pub created_at_ns: i64,
    /// The pinned network namespace, unless the pod uses the host's network.
    pub netns: Option<PathBuf>,
    /// Pod IPs from the CNI result, primary first.
    pub ips: Vec<String>,
    /// The pause container's init, while it runs.
    pub pause_pid: Option<i32>,
    /// The cgroup path the pause container and the pod's containers live under.
    pub cgroup_parent: String,
    /// The CNI network ADD attached the pod to; DEL has not run yet while this is set.
    pub network: Option<String>,
    /// The pause container exists in the OCI runtime.
    pub pause_created: bool,
    /// The pause container's rootfs is mounted.
    pub rootfs_mounted: bool,
    /// The pod's pinned user namespace (mode POD); its network namespace is owned by it.
    #[serde(default)]
    pub userns: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ContainerState {
    Created,
    Running,
    Exited,
}

impl ContainerState {
    pub fn to_cri(self) -> cri::ContainerState {
        match self {
            ContainerState::Created => cri::ContainerState::ContainerCreated,
            ContainerState::Running => cri::ContainerState::ContainerRunning,
            ContainerState::Exited => cri::ContainerState::ContainerExited,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContainerRecord {
    pub version: u32,
    pub id: String,
    pub name: String,
    pub sandbox_id: String,
    pub config: cri::ContainerConfig,
    /// The image as the client named it, and its id (config digest).
    pub image_ref: String,
    pub image_id: String,
    pub state: ContainerState,
    pub created_at_ns: i64,
    pub started_at_ns: i64,
    pub finished_at_ns: i64,
    pub exit_code: i32,
    /// CRI's reason (Completed, Error, OOMKilled) and message.
    pub reason: String,
    pub message: String,
    pub pid: Option<i32>,
    /// The container's pea-monitor (to ask it to reopen the log).
    pub monitor_pid: Option<i32>,
    /// The pod's cgroup parent (the container's cgroup is `<parent>/<id>`).
    pub cgroup_parent: String,
    /// Absolute log path (sandbox log_directory + container log_path), if any.
    pub log_path: Option<PathBuf>,
}

/// Writes `value` as JSON to `path` atomically (temp file + rename), without fsync: everything
/// written here lives in the state dir (`/run`), like runc's state, and is worthless after the
/// reboot a power loss means (every container is gone); the rename alone is what keeps a
/// crashed or killed shim from leaving a torn file. An fsync cost 1-12 ms per write on this
/// busy disk, four times per pod start.
pub fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), ShimError> {
    use std::io::Write;
    let dir = path.parent().expect("records live in a directory");
    std::fs::create_dir_all(dir).map_err(ShimError::io(dir))?;
    // A temp file of its own per write: two tasks persisting the same record at once (an exit
    // folded in by the monitor's reaper and by a StopContainer waiting for it) must not rename
    // each other's file away.
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = path.with_extension(format!("json.tmp.{seq}"));
    let bytes = serde_json::to_vec_pretty(value).expect("records serialise");
    let mut f = std::fs::File::create(&tmp).map_err(ShimError::io(&tmp))?;
    f.write_all(&bytes).map_err(ShimError::io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(ShimError::io(path))?;
    Ok(())
}

/// Reads every `*.json` record in `dir`; unreadable ones are reported and skipped.
pub fn read_all<T: for<'de> Deserialize<'de>>(dir: &Path) -> Vec<T> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for e in rd.flatten() {
        let p = e.path();
        if p.extension().is_some_and(|x| x == "json") {
            match std::fs::read(&p)
                .map_err(|e| e.to_string())
                .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
            {
                Ok(v) => out.push(v),
                Err(e) => {
                    tracing::warn!(path = %p.display(), error = %e, "skipping unreadable record")
                }
            }
        }
    }
    out
}

pub fn remove(path: &Path) -> Result<(), ShimError> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(ShimError::io(path)(e)),
        _ => Ok(()),
    }
}

/// CRI's name for a sandbox: `<name>_<namespace>_<uid>_<attempt>` (as containerd makes it).
pub fn sandbox_name(m: &cri::PodSandboxMetadata) -> String {
    format!("{}_{}_{}_{}", m.name, m.namespace, m.uid, m.attempt)
}

/// CRI's name for a container: `<name>_<pod name>_<namespace>_<uid>_<attempt>`.
pub fn container_name(c: &cri::ContainerMetadata, s: &cri::PodSandboxMetadata) -> String {
    format!(
        "{}_{}_{}_{}_{}",
        c.name, s.name, s.namespace, s.uid, c.attempt
    )
}

/// Nanoseconds since the epoch.
pub fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

/// A new random 64-hex id, as containerd's.
pub fn new_id() -> String {
    use std::io::Read;
    let mut b = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .expect("/dev/urandom is readable");
    hex::encode(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let rec = SandboxRecord {
            version: RECORD_VERSION,
            id: new_id(),
            name: "p_default_u_0".into(),
            config: cri::PodSandboxConfig::default(),
            runtime_handler: String::new(),
            state: SandboxState::Ready,
            created_at_ns: now_ns(),
            netns: None,
            ips: vec!["10.0.0.2".into()],
            pause_pid: Some(1),
            cgroup_parent: "/pea".into(),
            network: Some("pea".into()),
            pause_created: true,
            rootfs_mounted: true,
            userns: None,
        };
        let p = dir.path().join(format!("{}.json", rec.id));
        write_json(&p, &rec).unwrap();
        std::fs::write(dir.path().join("junk.json"), b"{").unwrap();
        let back: Vec<SandboxRecord> = read_all(dir.path());
        assert_eq!(back.len(), 1);
        assert_eq!(back[0].ips, rec.ips);
        assert_eq!(rec.id.len(), 64);
        assert!(!dir.path().join(format!("{}.json.tmp", rec.id)).exists());
    }
}
