//! The image store on disk.
//!
//! ```text
//! <root>/
//!   blobs/sha256/<hex>          verified content: manifests, configs, compressed layers
//!   ingest/<hex>.partial        a layer blob being downloaded (resumed with Range after a crash)
//!   ingest/<hex>.lock           held while that blob is fetched
//!   snapshots/<chain-hex>/      one unpacked layer in overlay format, keyed by ChainID
//!       fs/                     the layer's files (an overlay lower dir)
//!       meta.json               written before the directory is renamed into place
//!   snapshots/.tmp-*            unpacks in progress (removed by repair)
//!   images.json                 image records (versioned JSON, atomic writes)
//!   gc-history.json             image and layer use history for the learning GC policies
//!   lock                        serialises read-modify-write of images.json and the history
//! ```
//!
//! A snapshot or blob exists under its final name only when complete: both are built under a
//! temporary name and renamed. A pull killed at any point leaves only temporaries, which
//! [`Store::open`] repairs: unpack directories are removed, partial blobs are kept and resumed.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use crate::clock::{Clock, SystemClock};
use crate::digest::Digest;
use crate::fsutil::{self, write_atomic};
use crate::manifest::Platform;
use crate::reference::Reference;
use crate::unpack::UnpackOptions;

pub const STORE_VERSION: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("{path}: {detail}")]
    Corrupt { path: PathBuf, detail: String },
    #[error("image {0:?} not found")]
    NotFound(String),
    #[error("image {0:?} is ambiguous: matches {1}")]
    Ambiguous(String, String),
    #[error(transparent)]
    Reference(#[from] crate::reference::ReferenceError),
}

pub(crate) fn io_err(path: &Path) -> impl FnOnce(io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// One layer of an image as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerRecord {
    pub digest: Digest,
    pub diff_id: Digest,
    pub chain_id: Digest,
    pub media_type: String,
    /// Compressed size (the blob).
    pub size: u64,
}

/// An image: identified by its config digest, known under one or more names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRecord {
    pub id: Digest,
    pub names: BTreeSet<String>,
    pub manifest_digest: Digest,
    /// The index the manifest was selected from, if any.
    pub index_digest: Option<Digest>,
    pub layers: Vec<LayerRecord>,
    /// Seconds since the epoch.
    pub first_seen: u64,
    pub last_used: u64,
    pub pinned: bool,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ImagesFile {
    pub version: u32,
    pub images: BTreeMap<Digest, ImageRecord>,
}

/// What a snapshot directory records about itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotMeta {
    pub version: u32,
    pub chain_id: Digest,
    pub diff_id: Digest,
    pub parent: Option<Digest>,
    pub blob: Digest,
    /// Bytes the unpacked files occupy on disk.
    pub disk_bytes: u64,
    pub created: u64,
    #[serde(default)]
    pub notes: Vec<String>,
}

/// How the store pulls and unpacks.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    pub unpack: UnpackOptions,
    /// Layers fetched and unpacked at once.
    pub parallel_layers: usize,
    /// `syncfs` before a snapshot is published, so a power cut cannot leave a published
    /// snapshot with missing data.
    pub durable: bool,
    pub platform: Platform,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            unpack: UnpackOptions::default(),
            parallel_layers: 3,
            durable: true,
            platform: Platform::host(),
        }
    }
}

/// The image store; cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct Store {
    pub(crate) root: PathBuf,
    pub(crate) client: crate::client::Client,
    pub(crate) opts: StoreOptions,
    pub(crate) clock: Arc<dyn Clock>,
    /// Where pulls and container starts are recorded for the GC simulator, if anywhere.
    pub(crate) recorder: Option<Arc<crate::sim::recording::Recorder>>,
}

/// What repair found at open.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RepairReport {
    pub removed_unpacks: Vec<PathBuf>,
    pub kept_partials: Vec<(PathBuf, u64)>,
    pub removed_temp_files: Vec<PathBuf>,
}

impl Store {
    /// Opens (creating) the store at `root` and repairs what an interrupted run left.
    pub fn open(
        root: &Path,
        client: crate::client::Client,
        opts: StoreOptions,
    ) -> Result<(Self, RepairReport), StoreError> {
        Self::open_with_clock(root, client, opts, Arc::new(SystemClock))
    }

    pub fn open_with_clock(
        root: &Path,
        client: crate::client::Client,
        opts: StoreOptions,
        clock: Arc<dyn Clock>,
    ) -> Result<(Self, RepairReport), StoreError> {
        for d in ["blobs/sha256", "ingest", "snapshots"] {
            let p = root.join(d);
            fs::create_dir_all(&p).map_err(io_err(&p))?;
        }
        let store = Self {
            root: root.to_path_buf(),
            client,
            opts,
            clock,
            recorder: None,
        };
        let report = store.repair()?;
        Ok((store, report))
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn now(&self) -> u64 {
        self.clock.now()
    }

    pub fn blob_path(&self, d: &Digest) -> PathBuf {
        self.root.join("blobs/sha256").join(d.hex())
    }

    pub(crate) fn partial_path(&self, d: &Digest) -> PathBuf {
        self.root
            .join("ingest")
            .join(format!("{}.partial", d.hex()))
    }

    pub(crate) fn blob_lock_path(&self, d: &Digest) -> PathBuf {
        self.root.join("ingest").join(format!("{}.lock", d.hex()))
    }

    pub(crate) fn chain_lock_path(&self, chain: &Digest) -> PathBuf {
        self.root
            .join("ingest")
            .join(format!("chain-{}.lock", chain.hex()))
    }

    /// Held shared by every pull using a snapshot until its image is recorded, so prune and GC
    /// (which try it exclusively) never delete a snapshot a pull is about to reference.
    pub(crate) fn chain_use_path(&self, chain: &Digest) -> PathBuf {
        self.root
            .join("ingest")
            .join(format!("chain-{}.use", chain.hex()))
    }

    pub fn snapshot_dir(&self, chain: &Digest) -> PathBuf {
        self.root.join("snapshots").join(chain.hex())
    }

    /// The overlay lower dir of a snapshot.
    pub fn snapshot_fs(&self, chain: &Digest) -> PathBuf {
        self.snapshot_dir(chain).join("fs")
    }

    pub fn snapshot_meta(&self, chain: &Digest) -> Result<Option<SnapshotMeta>, StoreError> {
        let p = self.snapshot_dir(chain).join("meta.json");
        match fs::read(&p) {
            Ok(b) => serde_json::from_slice(&b)
                .map(Some)
                .map_err(|e| StoreError::Corrupt {
                    path: p,
                    detail: e.to_string(),
                }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(StoreError::Io { path: p, source: e }),
        }
    }

    fn repair(&self) -> Result<RepairReport, StoreError> {
        let mut report = RepairReport::default();
        let snaps = self.root.join("snapshots");
        for e in fs::read_dir(&snaps).map_err(io_err(&snaps))? {
            let e = e.map_err(io_err(&snaps))?;
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(rest) = name.strip_prefix(".tmp-") else {
                continue;
            };
            // `.tmp-<chain-hex>-<pid>-<serial>`: skip unpacks a live puller still holds.
            let chain_hex = rest.split('-').next().unwrap_or("");
            let lock = self
                .root
                .join("ingest")
                .join(format!("chain-{chain_hex}.lock"));
            let Some(_held) = fsutil::try_lock(&lock).map_err(io_err(&lock))? else {
                continue;
            };
            let p = e.path();
            fs::remove_dir_all(&p).map_err(io_err(&p))?;
            warn!(path = %p.display(), "removed an interrupted unpack");
            report.removed_unpacks.push(p);
        }
        let ingest = self.root.join("ingest");
        for e in fs::read_dir(&ingest).map_err(io_err(&ingest))? {
            let e = e.map_err(io_err(&ingest))?;
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some(hex) = name.strip_suffix(".partial") {
                let len = e.metadata().map(|m| m.len()).unwrap_or(0);
                if self.root.join("blobs/sha256").join(hex).exists() {
                    let p = e.path();
                    fs::remove_file(&p).map_err(io_err(&p))?;
                    report.removed_temp_files.push(p);
                } else {
                    info!(path = %e.path().display(), bytes = len, "partial blob kept for resume");
                    report.kept_partials.push((e.path(), len));
                }
            }
        }
        for dir in [self.root.join("blobs/sha256"), self.root.clone()] {
            for e in fs::read_dir(&dir).map_err(io_err(&dir))? {
                let e = e.map_err(io_err(&dir))?;
                if e.file_name().to_string_lossy().starts_with(".tmp-") && e.path().is_file() {
                    let p = e.path();
                    fs::remove_file(&p).map_err(io_err(&p))?;
                    report.removed_temp_files.push(p);
                }
            }
        }
        Ok(report)
    }

    pub(crate) fn images_path(&self) -> PathBuf {
        self.root.join("images.json")
    }

    pub(crate) fn read_images(&self) -> Result<ImagesFile, StoreError> {
        let p = self.images_path();
        match fs::read(&p) {
            Ok(b) => {
                let f: ImagesFile =
                    serde_json::from_slice(&b).map_err(|e| StoreError::Corrupt {
                        path: p.clone(),
                        detail: e.to_string(),
                    })?;
                if f.version != STORE_VERSION {
                    return Err(StoreError::Corrupt {
                        path: p,
                        detail: format!("version {} (this build reads {STORE_VERSION})", f.version),
                    });
                }
                Ok(f)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(ImagesFile {
                version: STORE_VERSION,
                images: BTreeMap::new(),
            }),
            Err(e) => Err(StoreError::Io { path: p, source: e }),
        }
    }

    /// Runs `f` on the image records under the store lock and saves the result atomically.
    pub(crate) fn update_images<T>(
        &self,
        f: impl FnOnce(&mut ImagesFile) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let lock = self.root.join("lock");
        let _held = fsutil::lock(&lock).map_err(io_err(&lock))?;
        let mut images = self.read_images()?;
        let out = f(&mut images)?;
        let p = self.images_path();
        let bytes = serde_json::to_vec_pretty(&images).expect("image records serialise");
        write_atomic(&p, &bytes).map_err(io_err(&p))?;
        Ok(out)
    }

    /// Every image, sorted by id.
    pub fn list(&self) -> Result<Vec<ImageRecord>, StoreError> {
        Ok(self.read_images()?.images.into_values().collect())
    }

    /// Finds an image by id (full or a unique hex prefix of 8+), name, or short name.
    pub fn find(&self, key: &str) -> Result<ImageRecord, StoreError> {
        find_in(&self.read_images()?, key).cloned()
    }

    /// Bytes an image's snapshots and blobs take (shared layers counted in full).
    pub fn image_size(&self, image: &ImageRecord) -> Result<u64, StoreError> {
        let mut total = 0;
        for l in &image.layers {
            total += self.layer_bytes(l)?;
        }
        Ok(total)
    }

    /// Bytes one layer occupies: its snapshot plus its compressed blob.
    pub fn layer_bytes(&self, l: &LayerRecord) -> Result<u64, StoreError> {
        let snap = self
            .snapshot_meta(&l.chain_id)?
            .map(|m| m.disk_bytes)
            .unwrap_or(0);
        let blob = if self.blob_path(&l.digest).exists() {
            l.size
        } else {
            0
        };
        Ok(snap + blob)
    }

    /// Marks an image used now (a container started from it); see [`Store::container_started`].
    pub fn mark_used(&self, key: &str) -> Result<(), StoreError> {
        self.container_started(key, None)
    }

    /// Pins or unpins an image (pinned images are never garbage collected).
    pub fn set_pinned(&self, key: &str, pinned: bool) -> Result<(), StoreError> {
        self.update_images(|f| {
            let id = find_in(f, key)?.id.clone();
            f.images.get_mut(&id).expect("found").pinned = pinned;
            Ok(())
        })
    }

    /// Removes the image `key` names (all its names), then the content nothing references.
    pub fn remove(&self, key: &str) -> Result<(ImageRecord, PruneReport), StoreError> {
        let removed = self.update_images(|f| {
            let id = find_in(f, key)?.id.clone();
            Ok(f.images.remove(&id).expect("found"))
        })?;
        let report = self.prune()?;
        Ok((removed, report))
    }

    /// Removes snapshots and blobs no image references. Lock files stay: unlinking a lock file
    /// another process is about to open would let two holders in at once.
    pub fn prune(&self) -> Result<PruneReport, StoreError> {
        let lock = self.root.join("lock");
        let _held = fsutil::lock(&lock).map_err(io_err(&lock))?;
        let images = self.read_images()?;
        let mut keep_blobs: BTreeSet<String> = BTreeSet::new();
        let mut keep_snaps: BTreeSet<String> = BTreeSet::new();
        for img in images.images.values() {
            keep_blobs.insert(img.id.hex().into());
            keep_blobs.insert(img.manifest_digest.hex().into());
            if let Some(i) = &img.index_digest {
                keep_blobs.insert(i.hex().into());
            }
            for l in &img.layers {
                keep_blobs.insert(l.digest.hex().into());
                keep_snaps.insert(l.chain_id.hex().into());
            }
        }
        let mut report = PruneReport::default();
        let snaps = self.root.join("snapshots");
        for e in fs::read_dir(&snaps).map_err(io_err(&snaps))? {
            let e = e.map_err(io_err(&snaps))?;
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') || keep_snaps.contains(&name) {
                continue;
            }
            // A pull unpacking it holds the chain lock; a pull about to record it, the use lock.
            let lockp = self.root.join("ingest").join(format!("chain-{name}.lock"));
            let Some(_l) = fsutil::try_lock(&lockp).map_err(io_err(&lockp))? else {
                continue;
            };
            let usep = self.root.join("ingest").join(format!("chain-{name}.use"));
            let Some(_u) = fsutil::try_lock(&usep).map_err(io_err(&usep))? else {
                continue;
            };
            let p = e.path();
            report.bytes += fsutil::disk_usage(&p).unwrap_or(0);
            fs::remove_dir_all(&p).map_err(io_err(&p))?;
            report.snapshots += 1;
        }
        // Blobs of surviving snapshots stay (a pull may be about to record their image).
        for e in fs::read_dir(&snaps).map_err(io_err(&snaps))? {
            let e = e.map_err(io_err(&snaps))?;
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                continue;
            }
            if let Ok(Some(meta)) = name
                .parse::<Digest>()
                .or_else(|_| format!("sha256:{name}").parse::<Digest>())
                .map(|d| self.snapshot_meta(&d))
                .unwrap_or(Ok(None))
            {
                keep_blobs.insert(meta.blob.hex().into());
            }
        }
        let blobs = self.root.join("blobs/sha256");
        for e in fs::read_dir(&blobs).map_err(io_err(&blobs))? {
            let e = e.map_err(io_err(&blobs))?;
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') || keep_blobs.contains(&name) {
                continue;
            }
            let lockp = self.root.join("ingest").join(format!("{name}.lock"));
            let Some(_l) = fsutil::try_lock(&lockp).map_err(io_err(&lockp))? else {
                continue;
            };
            let p = e.path();
            report.bytes += e.metadata().map(|m| m.len()).unwrap_or(0);
            fs::remove_file(&p).map_err(io_err(&p))?;
            report.blobs += 1;
        }
        Ok(report)
    }

    /// The overlay lower dirs of an image, top layer first (the order `lowerdir=` wants).
    pub fn lower_dirs(&self, key: &str) -> Result<Vec<PathBuf>, StoreError> {
        let img = self.find(key)?;
        let mut dirs = Vec::new();
        for l in img.layers.iter().rev() {
            let d = self.snapshot_fs(&l.chain_id);
            if !d.is_dir() {
                return Err(StoreError::Corrupt {
                    path: d,
                    detail: format!(
                        "snapshot of layer {} is missing; pull the image again",
                        l.digest
                    ),
                });
            }
            dirs.push(d);
        }
        Ok(dirs)
    }
}

/// What a prune removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PruneReport {
    pub snapshots: usize,
    pub blobs: usize,
    pub bytes: u64,
}

pub(crate) fn find_in<'a>(f: &'a ImagesFile, key: &str) -> Result<&'a ImageRecord, StoreError> {
    if let Ok(d) = key.parse::<Digest>() {
        if let Some(i) = f.images.get(&d) {
            return Ok(i);
        }
        if let Some(i) = f.images.values().find(|i| i.manifest_digest == d) {
            return Ok(i);
        }
    }
    let normalised = Reference::parse(key).ok().map(|r| r.to_string());
    let by_name: Vec<&ImageRecord> = f
        .images
        .values()
        .filter(|i| {
            i.names.contains(key)
                || normalised.as_ref().is_some_and(|n| i.names.contains(n))
                || i.names.iter().any(|n| {
                    Reference::parse(n)
                        .ok()
                        .and_then(|r| r.digest.map(|d| (r.registry, r.repository, d)))
                        .is_some_and(|(reg, repo, d)| {
                            Reference::parse(key).is_ok_and(|k| {
                                k.registry == reg
                                    && k.repository == repo
                                    && k.digest.as_ref() == Some(&d)
                            })
                        })
                })
        })
        .collect();
    if let [one] = by_name.as_slice() {
        return Ok(one);
    }
    let hex = key.strip_prefix("sha256:").unwrap_or(key);
    if hex.len() >= 8 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        let by_id: Vec<&ImageRecord> = f
            .images
            .values()
            .filter(|i| i.id.hex().starts_with(hex))
            .collect();
        match by_id.as_slice() {
            [one] => return Ok(one),
            [] => {}
            many => {
                return Err(StoreError::Ambiguous(
                    key.into(),
                    many.iter()
                        .map(|i| i.id.to_string())
                        .collect::<Vec<_>>()
                        .join(", "),
                ))
            }
        }
    }
    Err(StoreError::NotFound(key.into()))
}

/// Where GC gets disk numbers from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiskSource {
    /// The filesystem holding the store (statvfs).
    Filesystem,
    /// A disk of `capacity` bytes holding `other_used` bytes besides the store (tests, quotas).
    Fixed { capacity: u64, other_used: u64 },
}

/// What a GC run did.
#[derive(Debug, Clone)]
pub struct GcReport {
    pub plan: crate::gc::Plan,
    pub pruned: PruneReport,
}

impl Store {
    /// Bytes per layer (snapshot + blob), keyed by ChainID, for every layer images reference.
    pub fn layer_sizes(&self) -> Result<std::collections::HashMap<String, u64>, StoreError> {
        let mut out = std::collections::HashMap::new();
        for img in self.list()? {
            for l in &img.layers {
                if !out.contains_key(l.chain_id.as_str()) {
                    out.insert(l.chain_id.to_string(), self.layer_bytes(l)?);
                }
            }
        }
        Ok(out)
    }

    /// Runs image GC: plans with `policy` (images named in `in_use` are kept) and removes.
    pub fn gc(
        &self,
        policy: &crate::gc::GcPolicy,
        disk: DiskSource,
        in_use: &[String],
    ) -> Result<GcReport, StoreError> {
        let plan = self.plan_gc(policy, disk, in_use)?;
        self.record_gc(&plan)?;
        if !plan.removals.is_empty() {
            let ids: BTreeSet<String> = plan.removals.iter().map(|r| r.id.clone()).collect();
            self.update_images(|f| {
                f.images.retain(|id, _| !ids.contains(id.as_str()));
                Ok(())
            })?;
            for r in &plan.removals {
                info!(image = %r.id, reason = ?r.reason, freed = r.freed_bytes, "image garbage collected");
            }
        }
        let pruned = self.prune()?;
        Ok(GcReport { plan, pruned })
    }

    /// What [`Store::gc`] would remove now.
    pub fn plan_gc(
        &self,
        policy: &crate::gc::GcPolicy,
        disk: DiskSource,
        in_use: &[String],
    ) -> Result<crate::gc::Plan, StoreError> {
        let images = self.list()?;
        let sizes = self.layer_sizes()?;
        let usage = match disk {
            DiskSource::Filesystem => {
                let (capacity, available) =
                    fsutil::fs_stats(&self.root).map_err(io_err(&self.root))?;
                crate::gc::Usage {
                    capacity,
                    available,
                }
            }
            DiskSource::Fixed {
                capacity,
                other_used,
            } => {
                let used = other_used + sizes.values().sum::<u64>();
                crate::gc::Usage {
                    capacity,
                    available: capacity.saturating_sub(used),
                }
            }
        };
        let mut in_use_ids = BTreeSet::new();
        for key in in_use {
            in_use_ids.insert(self.find(key)?.id);
        }
        let candidates: Vec<crate::gc::Candidate> = images
            .iter()
            .map(|i| crate::gc::Candidate {
                id: i.id.to_string(),
                layers: i.layers.iter().map(|l| l.chain_id.to_string()).collect(),
                first_seen: i.first_seen,
                last_used: i.last_used,
                in_use: in_use_ids.contains(&i.id),
                pinned: i.pinned,
            })
            .collect();
        let history = if policy.order.per_layer() {
            self.read_history()?
        } else {
            crate::gc::History::default()
        };
        Ok(crate::gc::plan_with_history(
            &candidates,
            &sizes,
            usage,
            policy,
            &history,
            self.now(),
        ))
    }
}
