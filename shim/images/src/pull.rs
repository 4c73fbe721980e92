//! Pulling an image: resolve → manifest (platform from an index) → config → layers, each in
//! one streaming pass (download → sha256 → gunzip → diff ID sha256 → untar into a temporary
//! snapshot), layers in parallel, snapshots keyed by ChainID and reused across images.
//!
//! Memory stays bounded: a layer is never held whole, only fixed-size buffers. Each layer is
//! fetched under a per-chain lock and then a per-blob lock (both `flock`), so concurrent pulls
//! of the same image, or of images sharing layers, in this process or another, fetch each blob
//! once: the second puller finds the snapshot (or the verified blob) when it gets the lock.

use std::fs::{self, File};
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;

use sha2::{Digest as _, Sha256};
use tracing::{info, info_span, warn};

use crate::client::{RegistryError, MAX_CONFIG_BYTES, MAX_MANIFEST_BYTES};
use crate::digest::{chain_ids, Digest};
use crate::fsutil::{self, write_atomic};
use crate::hosts::Endpoint;
use crate::manifest::{self, Compression, Descriptor, Manifest, ManifestError};
use crate::reference::{Reference, ReferenceError};
use crate::store::{ImageRecord, LayerRecord, SnapshotMeta, Store, StoreError, STORE_VERSION};
use crate::unpack::{apply_layer, UnpackError, UnpackOptions, UnpackStats};

#[derive(Debug, thiserror::Error)]
pub enum PullError {
    #[error(transparent)]
    Reference(#[from] ReferenceError),
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Unpack(#[from] UnpackError),
    #[error("{reference}: an index inside an index ({digest}) is not supported")]
    NestedIndex { reference: String, digest: Digest },
    #[error("layer {layer}: digest mismatch: the registry sent {got}")]
    LayerDigest { layer: Digest, got: Digest },
    #[error("layer {layer}: size mismatch: got {got} bytes, the manifest declares {want}")]
    LayerSize { layer: Digest, got: u64, want: u64 },
    #[error("layer {layer}: uncompressed content has diff ID {got}, the config says {want}")]
    DiffId {
        layer: Digest,
        got: Digest,
        want: Digest,
    },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
}

fn pio(path: &Path) -> impl FnOnce(io::Error) -> PullError + '_ {
    move |source| PullError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// How a layer got into the store during a pull.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LayerAction {
    /// Its snapshot was already there (shared with another image or pulled before).
    Reused,
    /// Unpacked from a blob already in the content store.
    FromLocalBlob,
    /// Downloaded `bytes` from the registry, continuing a partial download at `resumed_from`.
    Downloaded { bytes: u64, resumed_from: u64 },
}

/// The outcome of a pull.
#[derive(Debug, Clone)]
pub struct PullReport {
    pub reference: String,
    pub image_id: Digest,
    pub manifest_digest: Digest,
    pub layers: Vec<(Digest, LayerAction)>,
    /// Bytes fetched from registries for layers in this pull.
    pub downloaded_bytes: u64,
    pub notes: Vec<String>,
}

/// Progress callbacks (the CLI draws bars with them). All default to nothing.
pub trait PullObserver: Sync {
    fn resolved(&self, _reference: &str, _layers: &[(Digest, u64)]) {}
    fn layer_started(&self, _layer: &Digest, _size: u64, _resumed_from: u64) {}
    fn layer_progress(&self, _layer: &Digest, _compressed_bytes: u64) {}
    fn layer_done(&self, _layer: &Digest, _action: &LayerAction) {}
}

/// An observer that ignores everything.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoProgress;
impl PullObserver for NoProgress {}

/// Counts, hashes and reports the bytes read through it.
struct Hashing<'o, R> {
    inner: R,
    hasher: Sha256,
    count: u64,
    report: Option<(&'o dyn PullObserver, &'o Digest)>,
}

impl<R: Read> Read for Hashing<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        if let Some((obs, d)) = self.report {
            obs.layer_progress(d, self.count);
        }
        Ok(n)
    }
}

/// Untars `tar` into `rootfs`, hashing the uncompressed stream on the way (the diff ID).
fn apply_hashed<R: Read>(
    rootfs: &Path,
    tar: R,
    opts: &UnpackOptions,
    layer: &str,
) -> (Result<UnpackStats, UnpackError>, Sha256) {
    let mut hashed = Hashing {
        inner: tar,
        hasher: Sha256::new(),
        count: 0,
        report: None,
    };
    let stats = apply_layer(rootfs, &mut hashed, opts, layer);
    (stats, hashed.hasher)
}

/// A layer's outcome and the notes its unpack left.
type LayerResult = Result<(LayerAction, Vec<String>, UseLock), PullError>;

/// A shared hold on a snapshot, kept until the image referencing it is recorded.
type UseLock = nix::fcntl::Flock<File>;

struct Job<'a> {
    endpoints: &'a [Endpoint],
    repository: &'a str,
    layer: &'a Descriptor,
    diff_id: &'a Digest,
    chain_id: &'a Digest,
    parent: Option<&'a Digest>,
}

static SERIAL: AtomicU64 = AtomicU64::new(0);

impl Store {
    /// Pulls `reference` (normalised: `busybox` is `docker.io/library/busybox:latest`).
    pub fn pull(&self, reference: &str, obs: &dyn PullObserver) -> Result<PullReport, PullError> {
        let r = Reference::parse(reference)?;
        let span = info_span!("pull", reference = %r);
        let _g = span.enter();
        let resolved = self.client.resolve(&r)?;
        let what = r.to_string();
        let mut index_digest = None;
        let (manifest_bytes, manifest_digest, image) =
            match manifest::parse(&what, &resolved.content_type, &resolved.bytes)? {
                Manifest::Image(m) => (resolved.bytes.clone(), resolved.digest.clone(), m),
                Manifest::Index(idx) => {
                    let desc = idx.select(&what, &self.opts.platform)?.clone();
                    let bytes = self.client.fetch_verified(
                        &resolved.endpoints,
                        &r.repository,
                        "manifest",
                        &desc.digest,
                        desc.size,
                        MAX_MANIFEST_BYTES,
                    )?;
                    let m = match manifest::parse(&what, &desc.media_type, &bytes)? {
                        Manifest::Image(m) => m,
                        Manifest::Index(_) => {
                            return Err(PullError::NestedIndex {
                                reference: what,
                                digest: desc.digest,
                            })
                        }
                    };
                    index_digest = Some(resolved.digest.clone());
                    (bytes, desc.digest, m)
                }
            };
        let config_bytes = self.client.fetch_verified(
            &resolved.endpoints,
            &r.repository,
            "config",
            &image.config.digest,
            image.config.size,
            MAX_CONFIG_BYTES,
        )?;
        let config = manifest::parse_config(&what, &config_bytes)?;
        if config.rootfs.diff_ids.len() != image.layers.len() {
            return Err(ManifestError::LayerCount {
                what,
                diff_ids: config.rootfs.diff_ids.len(),
                layers: image.layers.len(),
            }
            .into());
        }
        let chains = chain_ids(&config.rootfs.diff_ids);
        obs.resolved(
            &what,
            &image
                .layers
                .iter()
                .map(|l| (l.digest.clone(), l.size))
                .collect::<Vec<_>>(),
        );

        let mut written_blobs = Vec::new();
        // Manifest, config and index are written with the image record, under the store lock,
        // so a concurrent prune never sees them unreferenced.
        let mut small = vec![
            (manifest_digest.clone(), manifest_bytes.as_slice()),
            (image.config.digest.clone(), config_bytes.as_slice()),
        ];
        if let Some(i) = &index_digest {
            small.push((i.clone(), resolved.bytes.as_slice()));
        }

        let jobs: Vec<Job<'_>> = image
            .layers
            .iter()
            .enumerate()
            .map(|(i, layer)| Job {
                endpoints: &resolved.endpoints,
                repository: &r.repository,
                layer,
                diff_id: &config.rootfs.diff_ids[i],
                chain_id: &chains[i],
                parent: i.checked_sub(1).map(|p| &chains[p]),
            })
            .collect();
        let results: Vec<Mutex<Option<LayerResult>>> =
            jobs.iter().map(|_| Mutex::new(None)).collect();
        let next = AtomicUsize::new(0);
        let workers = self.opts.parallel_layers.clamp(1, jobs.len().max(1));
        std::thread::scope(|s| {
            for _ in 0..workers {
                s.spawn(|| loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    let Some(job) = jobs.get(i) else { break };
                    let out = self.layer(job, obs);
                    if let Ok((action, _, _)) = &out {
                        obs.layer_done(&job.layer.digest, action);
                    }
                    *results[i].lock().expect("result slot") = Some(out);
                });
            }
        });

        let mut layers = Vec::new();
        let mut notes = Vec::new();
        let mut downloaded = 0;
        let mut first_err = None;
        let mut created_chains = Vec::new();
        let mut holds = Vec::new();
        for (job, slot) in jobs.iter().zip(results) {
            match slot
                .into_inner()
                .expect("result slot")
                .expect("every job ran")
            {
                Ok((action, n, hold)) => {
                    holds.push(hold);
                    if let LayerAction::Downloaded { bytes, .. } = &action {
                        downloaded += bytes;
                    }
                    if action != LayerAction::Reused {
                        created_chains.push(job.chain_id.clone());
                        written_blobs.push(job.layer.digest.clone());
                    }
                    notes.extend(n);
                    layers.push((job.layer.digest.clone(), action));
                }
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        if let Some(e) = first_err {
            drop(holds);
            self.discard_unreferenced(&created_chains, &written_blobs);
            return Err(e);
        }

        let name = r.to_string();
        let now = self.now();
        let record_layers: Vec<LayerRecord> = jobs
            .iter()
            .map(|j| LayerRecord {
                digest: j.layer.digest.clone(),
                diff_id: j.diff_id.clone(),
                chain_id: j.chain_id.clone(),
                media_type: j.layer.media_type.clone(),
                size: j.layer.size,
            })
            .collect();
        let id = image.config.digest.clone();
        self.update_images(|f| {
            for (d, bytes) in &small {
                let p = self.blob_path(d);
                if !p.exists() {
                    write_atomic(&p, bytes).map_err(|source| StoreError::Io {
                        path: p.clone(),
                        source,
                    })?;
                }
            }
            // A tag that moved no longer names the old image.
            for other in f.images.values_mut() {
                if other.id != id {
                    other.names.remove(&name);
                }
            }
            let rec = f.images.entry(id.clone()).or_insert_with(|| ImageRecord {
                id: id.clone(),
                names: Default::default(),
                manifest_digest: manifest_digest.clone(),
                index_digest: index_digest.clone(),
                layers: record_layers.clone(),
                first_seen: now,
                last_used: now,
                pinned: false,
            });
            rec.names.insert(name.clone());
            rec.manifest_digest = manifest_digest.clone();
            rec.index_digest = index_digest.clone();
            rec.layers = record_layers;
            Ok(())
        })?;
        drop(holds);
        self.pulled(&id, &name, &created_chains)?;
        info!(image = %id, downloaded, "pulled");
        Ok(PullReport {
            reference: name,
            image_id: id,
            manifest_digest,
            layers,
            downloaded_bytes: downloaded,
            notes,
        })
    }

    /// After a failed pull: removes what it created that no image references.
    fn discard_unreferenced(&self, chains: &[Digest], blobs: &[Digest]) {
        let lock = self.root.join("lock");
        let Ok(_held) = fsutil::lock(&lock) else {
            return;
        };
        let Ok(images) = self.read_images() else {
            return;
        };
        let referenced = |d: &Digest| {
            images.images.values().any(|i| {
                &i.id == d
                    || &i.manifest_digest == d
                    || i.index_digest.as_ref() == Some(d)
                    || i.layers.iter().any(|l| &l.digest == d || &l.chain_id == d)
            })
        };
        for c in chains.iter().filter(|c| !referenced(c)) {
            let Ok(Some(_l)) = fsutil::try_lock(&self.chain_lock_path(c)) else {
                continue;
            };
            // Another pull may be about to record an image using it.
            if let Ok(Some(_u)) = fsutil::try_lock(&self.chain_use_path(c)) {
                let _ = fs::remove_dir_all(self.snapshot_dir(c));
            }
        }
        for b in blobs.iter().filter(|b| !referenced(b)) {
            if let Ok(Some(_l)) = fsutil::try_lock(&self.blob_lock_path(b)) {
                let _ = fs::remove_file(self.blob_path(b));
            }
        }
    }

    /// Makes sure the snapshot for one layer exists.
    fn layer(&self, job: &Job<'_>, obs: &dyn PullObserver) -> LayerResult {
        let span = info_span!("layer", digest = %job.layer.digest, chain = %job.chain_id);
        let _g = span.enter();
        let use_path = self.chain_use_path(job.chain_id);
        let in_use = fsutil::lock_shared(&use_path).map_err(pio(&use_path))?;
        let snap = self.snapshot_dir(job.chain_id);
        if snap.join("meta.json").exists() {
            return Ok((LayerAction::Reused, Vec::new(), in_use));
        }
        let chain_lock = self.chain_lock_path(job.chain_id);
        let _chain = fsutil::lock(&chain_lock).map_err(pio(&chain_lock))?;
        if snap.join("meta.json").exists() {
            return Ok((LayerAction::Reused, Vec::new(), in_use));
        }
        let blob_lock = self.blob_lock_path(&job.layer.digest);
        let _blob = fsutil::lock(&blob_lock).map_err(pio(&blob_lock))?;
        let tmp = self.root.join("snapshots").join(format!(
            ".tmp-{}-{}-{}",
            job.chain_id.hex(),
            std::process::id(),
            SERIAL.fetch_add(1, Ordering::SeqCst)
        ));
        let resumable = !self.blob_path(&job.layer.digest).exists()
            && fs::metadata(self.partial_path(&job.layer.digest)).is_ok_and(|m| m.len() > 0);
        let mut result = self.unpack_into(job, &tmp, obs);
        if resumable && result.as_ref().is_err_and(|e| !keep_partial(e)) {
            // The resumed prefix may have been bad: start once more from nothing.
            warn!("resumed download did not verify; downloading again from the start");
            let _ = fs::remove_dir_all(&tmp);
            let _ = fs::remove_file(self.partial_path(&job.layer.digest));
            result = self.unpack_into(job, &tmp, obs);
        }
        match result {
            Ok((action, notes)) => Ok((action, notes, in_use)),
            Err(e) => {
                let _ = fs::remove_dir_all(&tmp);
                if !keep_partial(&e) {
                    let _ = fs::remove_file(self.partial_path(&job.layer.digest));
                }
                Err(e)
            }
        }
    }

    fn unpack_into(
        &self,
        job: &Job<'_>,
        tmp: &Path,
        obs: &dyn PullObserver,
    ) -> Result<(LayerAction, Vec<String>), PullError> {
        let digest = &job.layer.digest;
        let size = job.layer.size;
        let compression = manifest::layer_compression(digest.as_str(), &job.layer.media_type)?;
        let rootfs = tmp.join("fs");
        fs::create_dir_all(&rootfs).map_err(pio(&rootfs))?;
        let blob = self.blob_path(digest);
        let partial = self.partial_path(digest);

        let (action, source): (LayerAction, Box<dyn Read + '_>) = if blob.exists() {
            obs.layer_started(digest, size, size);
            (
                LayerAction::FromLocalBlob,
                Box::new(File::open(&blob).map_err(pio(&blob))?),
            )
        } else {
            let file = fs::OpenOptions::new()
                .read(true)
                .append(true)
                .create(true)
                .open(&partial)
                .map_err(pio(&partial))?;
            let mut offset = file.metadata().map_err(pio(&partial))?.len();
            if offset > size {
                file.set_len(0).map_err(pio(&partial))?;
                offset = 0;
            }
            if offset > 0 {
                info!(offset, size, "resuming a partial download");
            }
            obs.layer_started(digest, size, offset);
            let stream =
                self.client
                    .open_blob(job.endpoints, job.repository, digest, size, offset)?;
            let mut prefix = file.try_clone().map_err(pio(&partial))?;
            prefix.seek(SeekFrom::Start(0)).map_err(pio(&partial))?;
            let appender = file;
            (
                LayerAction::Downloaded {
                    bytes: size - offset,
                    resumed_from: offset,
                },
                Box::new(TeeAfter {
                    prefix: prefix.take(offset),
                    stream,
                    out: appender,
                }),
            )
        };
        let compressed = Hashing {
            inner: source,
            hasher: Sha256::new(),
            count: 0,
            report: Some((obs, digest)),
        };
        let mut compressed = BufReader::with_capacity(256 << 10, compressed);
        let (stats, diff_hasher) = match compression {
            Compression::Gzip => apply_hashed(
                &rootfs,
                flate2::bufread::MultiGzDecoder::new(&mut compressed),
                &self.opts.unpack,
                digest.as_str(),
            ),
            Compression::Zstd => apply_hashed(
                &rootfs,
                ZstdFrames {
                    source: Some(&mut compressed),
                    frame: None,
                },
                &self.opts.unpack,
                digest.as_str(),
            ),
            Compression::None => {
                apply_hashed(&rootfs, &mut compressed, &self.opts.unpack, digest.as_str())
            }
        };
        let stats = stats.map_err(|e| match transport_cause(&e) {
            Some(r) => PullError::Registry(r),
            None => PullError::Unpack(e),
        })?;
        // Whatever follows the compressed stream still belongs to the blob and its digest.
        io::copy(&mut compressed, &mut io::sink()).map_err(|e| match registry_cause(&e) {
            Some(r) => PullError::Registry(r),
            None => PullError::Io {
                path: partial.clone(),
                source: e,
            },
        })?;
        let compressed = compressed.into_inner();
        let got_size = compressed.count;
        let got = Digest::from_hasher(compressed.hasher);
        drop(compressed.inner);
        if got_size != size {
            return Err(PullError::LayerSize {
                layer: digest.clone(),
                got: got_size,
                want: size,
            });
        }
        if &got != digest {
            return Err(PullError::LayerDigest {
                layer: digest.clone(),
                got,
            });
        }
        let diff = Digest::from_hasher(diff_hasher);
        if &diff != job.diff_id {
            return Err(PullError::DiffId {
                layer: digest.clone(),
                got: diff,
                want: job.diff_id.clone(),
            });
        }
        if let LayerAction::Downloaded { .. } = action {
            let f = File::open(&partial).map_err(pio(&partial))?;
            f.sync_all().map_err(pio(&partial))?;
            fs::rename(&partial, &blob).map_err(pio(&blob))?;
        }
        let meta = SnapshotMeta {
            version: STORE_VERSION,
            chain_id: job.chain_id.clone(),
            diff_id: job.diff_id.clone(),
            parent: job.parent.cloned(),
            blob: digest.clone(),
            disk_bytes: fsutil::disk_usage(&rootfs).map_err(pio(&rootfs))?,
            created: self.now(),
            notes: stats.notes.clone(),
        };
        if self.opts.durable {
            let d = File::open(tmp).map_err(pio(tmp))?;
            nix::unistd::syncfs(d.as_raw_fd()).map_err(|e| PullError::Io {
                path: tmp.to_path_buf(),
                source: e.into(),
            })?;
        }
        let meta_path = tmp.join("meta.json");
        write_atomic(
            &meta_path,
            &serde_json::to_vec_pretty(&meta).expect("snapshot meta serialises"),
        )
        .map_err(pio(&meta_path))?;
        let snap = self.snapshot_dir(job.chain_id);
        fs::rename(tmp, &snap).map_err(pio(&snap))?;
        let snaps = self.root.join("snapshots");
        fsutil::sync_dir(&snaps).map_err(pio(&snaps))?;
        Ok((action, stats.notes))
    }
}

/// Decodes every zstd frame of a stream in turn (ruzstd's decoder reads one frame).
struct ZstdFrames<'r, R: io::BufRead> {
    source: Option<&'r mut R>,
    frame: Option<ruzstd::decoding::StreamingDecoder<&'r mut R, ruzstd::decoding::FrameDecoder>>,
}

impl<R: io::BufRead> Read for ZstdFrames<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if let Some(f) = self.frame.as_mut() {
                let n = f.read(buf)?;
                if n > 0 || buf.is_empty() {
                    return Ok(n);
                }
                // Frame done: take the source back and look for another frame.
                self.source = self.frame.take().map(|f| f.into_inner());
            }
            let Some(src) = self.source.take() else {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "zstd stream is broken",
                ));
            };
            if src.fill_buf()?.is_empty() {
                self.source = Some(src);
                return Ok(0);
            }
            let dec = ruzstd::decoding::StreamingDecoder::new(src)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("zstd: {e}")))?;
            self.frame = Some(dec);
        }
    }
}

/// Replays the partial file's first bytes, then streams the rest and appends it to the file.
struct TeeAfter<'a, P> {
    prefix: io::Take<P>,
    stream: crate::client::BlobStream<'a>,
    out: File,
}

impl<P: Read> Read for TeeAfter<'_, P> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.prefix.limit() > 0 {
            let n = self.prefix.read(buf)?;
            if n > 0 {
                return Ok(n);
            }
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "partial download shrank while resuming",
            ));
        }
        let n = self.stream.read(buf)?;
        self.out.write_all(&buf[..n])?;
        Ok(n)
    }
}

fn registry_cause(e: &io::Error) -> Option<RegistryError> {
    let inner = e.get_ref()?;
    let r = inner.downcast_ref::<RegistryError>()?;
    Some(clone_registry_error(r))
}

fn transport_cause(e: &UnpackError) -> Option<RegistryError> {
    match e {
        UnpackError::Archive { source, .. } => registry_cause(source),
        UnpackError::Io { .. } => None,
        _ => None,
    }
}

fn clone_registry_error(r: &RegistryError) -> RegistryError {
    match r {
        RegistryError::SizeMismatch {
            url,
            what,
            got,
            want,
        } => RegistryError::SizeMismatch {
            url: url.clone(),
            what: what.clone(),
            got: *got,
            want: *want,
        },
        RegistryError::Transport { url, detail } => RegistryError::Transport {
            url: url.clone(),
            detail: detail.clone(),
        },
        other => RegistryError::Transport {
            url: String::new(),
            detail: other.to_string(),
        },
    }
}

/// Whether a failed layer's partial download is worth resuming next time.
fn keep_partial(e: &PullError) -> bool {
    matches!(
        e,
        PullError::Registry(
            RegistryError::Transport { .. } | RegistryError::AllEndpointsFailed { .. }
        )
    )
}
