//! The node's state as pea-shim knows it: sandbox and container records (in memory, persisted
//! under the state dir), the names CRI reserves, per-object locks that serialise the multi-step
//! RPCs on one sandbox or container, and the services below (image store, CNI, OCI runtime).

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use k8s_cri::v1 as cri;
use tokio::sync::{broadcast, OwnedMutexGuard};

use crate::cni::Cni;
use crate::config::ShimConfig;
use crate::error::ShimError;
use crate::monitor::ExitStatus;
use crate::records::{self, ContainerRecord, ContainerState, SandboxRecord, RECORD_VERSION};
use crate::runtime_cli::RuntimeCli;

#[derive(Debug, Default)]
struct Index {
    sandboxes: HashMap<String, SandboxRecord>,
    containers: HashMap<String, ContainerRecord>,
    /// CRI name -> the id holding it.
    names: HashMap<String, String>,
}

/// The shim's state; shared behind an `Arc` by every RPC.
#[derive(Debug)]
pub struct Shim {
    pub cfg: ShimConfig,
    pub images: Arc<pea_images::Store>,
    pub runtime: RuntimeCli,
    pub cni: Cni,
    index: Mutex<Index>,
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Containers whose StartContainer is running their monitor: an exit is folded into
    /// their record only once it says Running (see `starting`).
    starting: Mutex<HashSet<String>>,
    pub events: broadcast::Sender<cri::ContainerEventResponse>,
    pub metrics: crate::rpc::Metrics,
    /// The streaming server's address and one-time tokens (Exec/Attach/PortForward).
    pub streams: crate::streaming::Streams,
    /// Held while a pod's pause or container is created (crate::cgroup_warm).
    pub cgroup_warmer: crate::cgroup_warm::CgroupWarmer,
}

impl Shim {
    /// Opens the use recorder (if asked for), creates the state dirs, opens the image store and
    /// reloads every record. The recorder is opened first, so a bad `--image-use-recording`
    /// fails before anything is made; a failure later removes the dirs (and the recording file)
    /// this call made.
    pub fn open(cfg: ShimConfig) -> Result<Self, ShimError> {
        let recording_existed = cfg.image_use_recording.as_ref().map(|p| p.exists());
        let recorder =
            match &cfg.image_use_recording {
                Some(path) => Some(pea_images::sim::recording::Recorder::open(path).map_err(
                    |e| ShimError::InvalidArgument(format!("--image-use-recording: {e}")),
                )?),
                None => None,
            };
        let mut made = MadeDirs::default();
        let opened = (|| {
            for d in [
                cfg.root.clone(),
                cfg.state.clone(),
                cfg.sandboxes_dir(),
                cfg.containers_dir(),
                cfg.runtime_root.clone(),
                cfg.images_root(),
            ] {
                made.create(&d)?;
            }
            let client = pea_images::Client::new(images_client_config(&cfg));
            let (store, repair) = pea_images::Store::open(
                &cfg.images_root(),
                client,
                pea_images::StoreOptions::default(),
            )?;
            tracing::debug!(?repair, "image store opened");
            Ok::<_, ShimError>(store)
        })();
        let store = match opened {
            Ok(store) => store,
            Err(e) => {
                made.remove();
                if let (Some(path), Some(false)) = (&cfg.image_use_recording, recording_existed) {
                    let _ = std::fs::remove_file(path);
                }
                return Err(e);
            }
        };
        let store = match recorder {
            Some(r) => store.with_recorder(r),
            None => store,
        };
        let mut index = Index::default();
        for s in records::read_all::<SandboxRecord>(&cfg.sandboxes_dir()) {
            index.names.insert(s.name.clone(), s.id.clone());
            index.sandboxes.insert(s.id.clone(), s);
        }
        for mut c in records::read_all::<ContainerRecord>(&cfg.containers_dir()) {
            adopt_interrupted_start(&cfg, &mut c);
            index.names.insert(c.name.clone(), c.id.clone());
            index.containers.insert(c.id.clone(), c);
        }
        let (events, _) = broadcast::channel(1024);
        Ok(Self {
            runtime: RuntimeCli {
                binary: cfg.runtime.clone(),
                root: cfg.runtime_root.clone(),
            },
            cni: Cni {
                bin_dirs: cfg.cni_bin_dirs.clone(),
                cache_dir: cfg.cni_cache_dir(),
            },
            images: Arc::new(store),
            cfg,
            index: Mutex::new(index),
            locks: Mutex::new(HashMap::new()),
            starting: Mutex::new(HashSet::new()),
            events,
            metrics: Default::default(),
            streams: Default::default(),
            cgroup_warmer: crate::cgroup_warm::CgroupWarmer::for_self(),
        })
    }

    /// Serialises multi-step work on one object (held across awaits).
    pub async fn lock(&self, id: &str) -> OwnedMutexGuard<()> {
        let m = self
            .locks
            .lock()
            .expect("lock map")
            .entry(id.to_string())
            .or_default()
            .clone();
        m.lock_owned().await
    }

    fn forget_lock(&self, id: &str) {
        self.locks.lock().expect("lock map").remove(id);
    }

    /// Reserves a CRI name for `id`, or says who holds it.
    pub fn reserve_name(&self, kind: &'static str, name: &str, id: &str) -> Result<(), ShimError> {
        let mut ix = self.index.lock().expect("index");
        if let Some(holder) = ix.names.get(name) {
            return Err(ShimError::NameReserved {
                kind,
                name: name.into(),
                id: holder.clone(),
            });
        }
        ix.names.insert(name.into(), id.into());
        Ok(())
    }

    pub fn release_name(&self, name: &str, id: &str) {
        let mut ix = self.index.lock().expect("index");
        if ix.names.get(name).is_some_and(|h| h == id) {
            ix.names.remove(name);
        }
    }

    /// Resolves a full id or a unique prefix of one (crictl passes truncated ids).
    fn resolve<T>(
        map: &HashMap<String, T>,
        kind: &'static str,
        id: &str,
    ) -> Result<String, ShimError> {
        if id.is_empty() {
            return Err(ShimError::invalid(format!("{kind} id is empty")));
        }
        if map.contains_key(id) {
            return Ok(id.to_string());
        }
        let mut hits = map.keys().filter(|k| k.starts_with(id));
        match (hits.next(), hits.next()) {
            (Some(one), None) => Ok(one.clone()),
            (Some(_), Some(_)) => Err(ShimError::invalid(format!(
                "{kind} id prefix {id:?} is ambiguous"
            ))),
            _ => Err(ShimError::not_found(kind, id)),
        }
    }

    pub fn sandbox_id(&self, id: &str) -> Result<String, ShimError> {
        Self::resolve(&self.index.lock().expect("index").sandboxes, "sandbox", id)
    }

    pub fn container_id(&self, id: &str) -> Result<String, ShimError> {
        Self::resolve(
            &self.index.lock().expect("index").containers,
            "container",
            id,
        )
    }

    pub fn sandbox(&self, id: &str) -> Result<SandboxRecord, ShimError> {
        let ix = self.index.lock().expect("index");
        let id = Self::resolve(&ix.sandboxes, "sandbox", id)?;
        Ok(ix.sandboxes[&id].clone())
    }

    pub fn container(&self, id: &str) -> Result<ContainerRecord, ShimError> {
        let rec = {
            let ix = self.index.lock().expect("index");
            let id = Self::resolve(&ix.containers, "container", id)?;
            ix.containers[&id].clone()
        };
        self.refresh(rec)
    }

    pub fn sandboxes(&self) -> Vec<SandboxRecord> {
        self.index
            .lock()
            .expect("index")
            .sandboxes
            .values()
            .cloned()
            .collect()
    }

    pub fn containers(&self) -> Vec<ContainerRecord> {
        let all: Vec<ContainerRecord> = self
            .index
            .lock()
            .expect("index")
            .containers
            .values()
            .cloned()
            .collect();
        all.into_iter()
            .map(|c| {
                let id = c.id.clone();
                self.refresh(c).unwrap_or_else(|e| {
                    tracing::warn!(container = %id, error = %e, "refreshing container state");
                    self.index.lock().expect("index").containers[&id].clone()
                })
            })
            .collect()
    }

    pub fn containers_of(&self, sandbox_id: &str) -> Vec<ContainerRecord> {
        self.containers()
            .into_iter()
            .filter(|c| c.sandbox_id == sandbox_id)
            .collect()
    }

    fn sandbox_path(&self, id: &str) -> PathBuf {
        self.cfg.sandboxes_dir().join(format!("{id}.json"))
    }

    fn container_path(&self, id: &str) -> PathBuf {
        self.cfg.containers_dir().join(format!("{id}.json"))
    }

    /// Persists and indexes a sandbox record.
    pub fn put_sandbox(&self, mut rec: SandboxRecord) -> Result<(), ShimError> {
        rec.version = RECORD_VERSION;
        records::write_json(&self.sandbox_path(&rec.id), &rec)?;
        self.index
            .lock()
            .expect("index")
            .sandboxes
            .insert(rec.id.clone(), rec);
        Ok(())
    }

    pub fn put_container(&self, mut rec: ContainerRecord) -> Result<(), ShimError> {
        rec.version = RECORD_VERSION;
        records::write_json(&self.container_path(&rec.id), &rec)?;
        self.index
            .lock()
            .expect("index")
            .containers
            .insert(rec.id.clone(), rec);
        Ok(())
    }

    /// Persists a record only while the container is still known: the exit watcher folding an
    /// exit in must not resurrect a container RemoveContainer has just dropped. Returns whether
    /// it wrote.
    fn update_existing(&self, mut rec: ContainerRecord) -> Result<bool, ShimError> {
        rec.version = RECORD_VERSION;
        let mut ix = self.index.lock().expect("index");
        if !ix.containers.contains_key(&rec.id) {
            return Ok(false);
        }
        records::write_json(&self.container_path(&rec.id), &rec)?;
        ix.containers.insert(rec.id.clone(), rec);
        Ok(true)
    }

    pub fn drop_sandbox(&self, rec: &SandboxRecord) -> Result<(), ShimError> {
        records::remove(&self.sandbox_path(&rec.id))?;
        self.index.lock().expect("index").sandboxes.remove(&rec.id);
        self.release_name(&rec.name, &rec.id);
        self.forget_lock(&rec.id);
        Ok(())
    }

    pub fn drop_container(&self, rec: &ContainerRecord) -> Result<(), ShimError> {
        {
            // Under the index lock, so a concurrent `update_existing` cannot write it back.
            let mut ix = self.index.lock().expect("index");
            records::remove(&self.container_path(&rec.id))?;
            ix.containers.remove(&rec.id);
        }
        self.release_name(&rec.name, &rec.id);
        self.forget_lock(&rec.id);
        Ok(())
    }

    /// The monitor's exit file for container `id`.
    pub fn exit_file(&self, id: &str) -> PathBuf {
        self.cfg.bundle_dir(id).join("exit.json")
    }

    /// Marks container `id` as being started until the guard drops: a quick command's monitor
    /// may write its exit file before StartContainer has recorded Running, and folding the
    /// exit into the Created record then would be overwritten (and report the exit twice).
    pub fn starting(&self, id: &str) -> Starting<'_> {
        self.starting
            .lock()
            .expect("starting set")
            .insert(id.to_string());
        Starting {
            shim: self,
            id: id.to_string(),
        }
    }

    /// Folds a finished container's exit file into its record (and persists it).
    pub fn refresh(&self, rec: ContainerRecord) -> Result<ContainerRecord, ShimError> {
        if rec.state == ContainerState::Exited
            || (rec.state == ContainerState::Created
                && self
                    .starting
                    .lock()
                    .expect("starting set")
                    .contains(&rec.id))
        {
            return Ok(rec);
        }
        let Some(exit) = ExitStatus::read(&self.exit_file(&rec.id))? else {
            return self.lost(rec);
        };
        let mut rec = rec;
        let oom = crate::monitor::oom_killed(&rec.cgroups_path());
        rec.state = ContainerState::Exited;
        rec.exit_code = exit.exit_code;
        rec.finished_at_ns = exit.finished_at_ns;
        rec.pid = None;
        rec.reason = if oom {
            "OOMKilled".into()
        } else if exit.exit_code == 0 {
            "Completed".into()
        } else {
            "Error".into()
        };
        if self.update_existing(rec.clone())? {
            self.images.container_stopped(&rec.id);
            self.emit(&rec, cri::ContainerEventType::ContainerStoppedEvent);
        }
        Ok(rec)
    }

    /// A started container whose monitor and init are both gone without an exit file (the
    /// monitor was killed, or the node rebooted): its exit code is unknowable. It is reported
    /// Exited with code 255 and reason Unknown rather than Running forever.
    fn lost(&self, mut rec: ContainerRecord) -> Result<ContainerRecord, ShimError> {
        let alive =
            |pid: Option<i32>| pid.is_some_and(|p| Path::new(&format!("/proc/{p}")).exists());
        let monitor_alive = rec
            .monitor_pid
            .is_some_and(|p| crate::monitor::is_monitor_of(p, &rec.id));
        if rec.state != ContainerState::Running || monitor_alive || alive(rec.pid) {
            return Ok(rec);
        }
        rec.state = ContainerState::Exited;
        rec.exit_code = 255;
        rec.finished_at_ns = records::now_ns();
        rec.reason = "Unknown".into();
        rec.message = "the container's monitor exited without recording its exit".into();
        rec.pid = None;
        if self.update_existing(rec.clone())? {
            self.images.container_stopped(&rec.id);
            self.emit(&rec, cri::ContainerEventType::ContainerStoppedEvent);
        }
        Ok(rec)
    }

    /// Tells `GetContainerEvents` subscribers (the kubelet's evented PLEG) about a change.
    pub fn emit(&self, rec: &ContainerRecord, kind: cri::ContainerEventType) {
        let _ = self.events.send(cri::ContainerEventResponse {
            container_id: rec.id.clone(),
            container_event_type: kind as i32,
            created_at: records::now_ns(),
            pod_sandbox_status: None,
            containers_statuses: Vec::new(),
        });
    }
}

/// A Created container without a process whose monitor is alive: the shim was stopped while
/// StartContainer ran, after the monitor had started it. It is Running under that monitor
/// (its init's pid from the pid file the runtime wrote, its start time the file's). A Created
/// container with no live monitor is left as it is: never started, or its start failed and
/// the runtime removed what it made (an exit file, if the monitor wrote one, is folded in as
/// for any container).
fn adopt_interrupted_start(cfg: &ShimConfig, rec: &mut ContainerRecord) {
    if rec.state != ContainerState::Created || rec.pid.is_some() {
        return;
    }
    let Some(monitor_pid) = crate::monitor::find_monitor_of(&rec.id) else {
        return;
    };
    let pid_file = cfg.bundle_dir(&rec.id).join("init.pid");
    let pid = std::fs::read_to_string(&pid_file)
        .ok()
        .and_then(|t| t.trim().parse::<i32>().ok())
        .filter(|p| *p > 0);
    let Some(pid) = pid else {
        tracing::warn!(container = %rec.id, monitor = monitor_pid, "a monitor runs for a Created container without an init pid yet; leaving it Created");
        return;
    };
    let started = std::fs::metadata(&pid_file)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or_else(records::now_ns, |d| d.as_nanos() as i64);
    rec.state = ContainerState::Running;
    rec.pid = Some(pid);
    rec.monitor_pid = Some(monitor_pid);
    rec.started_at_ns = started;
    let path = cfg.containers_dir().join(format!("{}.json", rec.id));
    match records::write_json(&path, rec) {
        Ok(()) => {
            tracing::info!(container = %rec.id, pid, "adopted a container started while the shim was down")
        }
        Err(e) => {
            tracing::warn!(container = %rec.id, error = %e, "persisting an adopted container")
        }
    }
}

/// A container StartContainer is starting (`Shim::starting`).
#[derive(Debug)]
pub struct Starting<'a> {
    shim: &'a Shim,
    id: String,
}

impl Drop for Starting<'_> {
    fn drop(&mut self) {
        self.shim
            .starting
            .lock()
            .expect("starting set")
            .remove(&self.id);
    }
}

/// How the image store reaches registries: hosts.toml mirrors and insecure registries.
pub fn images_client_config(cfg: &ShimConfig) -> pea_images::ClientConfig {
    pea_images::ClientConfig {
        hosts_dir: cfg.registry_config.clone(),
        insecure: cfg.insecure_registries.clone(),
        ..Default::default()
    }
}

impl ContainerRecord {
    /// Created and never started: CreateContainer made only its rootfs, bundle and record
    /// (a container created by an older shim has an init waiting for `start`, and a pid).
    pub fn has_no_process(&self) -> bool {
        self.state == ContainerState::Created && self.pid.is_none()
    }

    /// The cgroupfs path the container runs in (see `oci`): `<pod cgroup parent>/<id>`.
    pub fn cgroups_path(&self) -> String {
        self.cgroup_parent.trim_end_matches('/').to_string() + "/" + &self.id
    }
}

/// Directories one start-up created (outermost first), so a failed start can remove them.
#[derive(Default)]
struct MadeDirs(Vec<PathBuf>);

impl MadeDirs {
    fn create(&mut self, dir: &Path) -> Result<(), ShimError> {
        let mut missing = Vec::new();
        let mut at = Some(dir);
        while let Some(d) = at.filter(|d| !d.as_os_str().is_empty() && !d.exists()) {
            missing.push(d.to_path_buf());
            at = d.parent();
        }
        std::fs::create_dir_all(dir).map_err(ShimError::io(dir))?;
        self.0.extend(missing.into_iter().rev());
        Ok(())
    }

    /// Removes what was made: each outermost made dir with all it holds (all of it was made by
    /// this start-up, under dirs that did not exist before).
    fn remove(self) {
        for d in &self.0 {
            if d.exists() {
                if let Err(e) = std::fs::remove_dir_all(d) {
                    tracing::warn!(dir = %d.display(), "removing a dir made by a failed start: {e}");
                }
            }
        }
    }
}
