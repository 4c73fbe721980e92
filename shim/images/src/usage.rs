//! What the store remembers about use, for GC: the [`History`] the learning policies read
//! (`<root>/gc-history.json`, versioned JSON written atomically under the store lock) and,
//! when a [`Recorder`] is attached, a recording a user can replay in the simulator
//! (`pea-image simulate --recording FILE`; format in [`crate::sim::recording`]).
//!
//! Calls: a pull records which layers it fetched; [`Store::container_started`] (the shim's
//! StartContainer) records a use of the image and every layer it holds;
//! [`Store::container_stopped`] records the stop; each GC run records its plan.

use std::fs;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::fsutil::{self, write_atomic};
use crate::gc::{History, Plan};
use crate::sim::recording::{Record, RecordedLayer, Recorder};
use crate::store::{find_in, io_err, ImageRecord, Store, StoreError};

const HISTORY_VERSION: u32 = 1;

#[derive(Debug, Serialize, Deserialize)]
struct HistoryFile {
    version: u32,
    history: History,
}

impl Store {
    /// Records pulls and container starts/stops to `recorder` from now on.
    pub fn with_recorder(mut self, recorder: Recorder) -> Self {
        self.recorder = Some(Arc::new(recorder));
        self
    }

    pub(crate) fn history_path(&self) -> PathBuf {
        self.root.join("gc-history.json")
    }

    /// The use history (empty before the first use).
    pub fn read_history(&self) -> Result<History, StoreError> {
        let p = self.history_path();
        match fs::read(&p) {
            Ok(b) => {
                let f: HistoryFile =
                    serde_json::from_slice(&b).map_err(|e| StoreError::Corrupt {
                        path: p.clone(),
                        detail: e.to_string(),
                    })?;
                if f.version != HISTORY_VERSION {
                    return Err(StoreError::Corrupt {
                        path: p,
                        detail: format!(
                            "version {} (this build reads {HISTORY_VERSION})",
                            f.version
                        ),
                    });
                }
                Ok(f.history)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(History::default()),
            Err(e) => Err(StoreError::Io { path: p, source: e }),
        }
    }

    /// Runs `f` on the history under the store lock and saves it atomically.
    fn update_history(&self, f: impl FnOnce(&mut History)) -> Result<(), StoreError> {
        let lock = self.root.join("lock");
        let _held = fsutil::lock(&lock).map_err(io_err(&lock))?;
        self.update_history_locked(f)
    }

    fn update_history_locked(&self, f: impl FnOnce(&mut History)) -> Result<(), StoreError> {
        let mut history = self.read_history()?;
        f(&mut history);
        let p = self.history_path();
        let bytes = serde_json::to_vec(&HistoryFile {
            version: HISTORY_VERSION,
            history,
        })
        .expect("history serialises");
        write_atomic(&p, &bytes).map_err(io_err(&p))
    }

    /// A container started from the image `key` names: marks it used now, records a use of it
    /// and its layers in the history and, with a recorder, a `start` record.
    pub fn container_started(&self, key: &str, container: Option<&str>) -> Result<(), StoreError> {
        let now = self.now();
        let image = self.update_images(|f| {
            let id = find_in(f, key)?.id.clone();
            let rec = f.images.get_mut(&id).expect("found");
            rec.last_used = now;
            let rec = rec.clone();
            self.update_history_locked(|h| {
                h.record_use(
                    rec.id.as_str(),
                    rec.layers.iter().map(|l| l.chain_id.as_str()),
                    now,
                )
            })?;
            Ok(rec)
        })?;
        if self.recorder.is_some() {
            let layers = self.recorded_layers(&image)?;
            self.record(&Record::Start {
                ts: now,
                image: image.id.to_string(),
                container: container.map(String::from),
                layers: Some(layers),
            });
        }
        Ok(())
    }

    /// A container stopped (only recorded, with a recorder attached).
    pub fn container_stopped(&self, container: &str) {
        self.record(&Record::Stop {
            ts: self.now(),
            container: container.to_string(),
        });
    }

    /// After a pull recorded `image` as `name`: `fetched` are the layers it unpacked.
    pub(crate) fn pulled(
        &self,
        image: &Digest,
        name: &str,
        fetched: &[Digest],
    ) -> Result<(), StoreError> {
        self.update_history(|h| {
            h.record_pull(
                image.as_str(),
                crate::gc::history::repository_of(name),
                fetched.iter().map(Digest::as_str),
            )
        })?;
        if self.recorder.is_some() {
            let rec = self.find(image.as_str())?;
            let layers = self.recorded_layers(&rec)?;
            self.record(&Record::Pull {
                ts: self.now(),
                image: image.to_string(),
                reference: Some(name.to_string()),
                layers,
            });
        }
        Ok(())
    }

    pub(crate) fn record_gc(&self, plan: &Plan) -> Result<(), StoreError> {
        if plan.removals.is_empty() {
            return Ok(());
        }
        let now = self.now();
        self.update_history(|h| h.record_gc(plan, now))
    }

    /// An image's layers as a recording lists them: ChainID and bytes on this node.
    fn recorded_layers(&self, image: &ImageRecord) -> Result<Vec<RecordedLayer>, StoreError> {
        image
            .layers
            .iter()
            .map(|l| {
                Ok(RecordedLayer {
                    layer: l.chain_id.to_string(),
                    bytes: self.layer_bytes(l)?,
                })
            })
            .collect()
    }

    /// Recording is best effort: a full disk must not fail a pull or a start.
    fn record(&self, r: &Record) {
        if let Some(rec) = &self.recorder {
            if let Err(e) = rec.write(r) {
                tracing::warn!(error = %e, "GC recording dropped a record");
            }
        }
    }
}
