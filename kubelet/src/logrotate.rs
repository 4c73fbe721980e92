//! Container log rotation as kubelet's container log manager (`pkg/kubelet/logs`): every
//! `containerLogMonitorInterval` each running container's log (from CRI ContainerStatus) is
//! checked, by up to `containerLogMaxWorkers` at once. Above `containerLogMaxSize` the log is
//! renamed to `<log>.<YYYYMMDD-hhmmss>` and the runtime reopens it (CRI ReopenContainerLog);
//! before that, leftovers of an interrupted pass are removed, rotated files beyond
//! `containerLogMaxFiles` (the current log counts) are deleted oldest first, and the earlier
//! rotations are gzipped (`.gz`), so all but the newest rotated file are compressed.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures_util::StreamExt;
use k8s_cri::v1 as cri;

use crate::pods::Shared;

/// kubelet's rotated-file suffix format (Go's "20060102-150405").
const TIMESTAMP: &str = "%Y%m%d-%H%M%S";
const TMP_SUFFIX: &str = ".tmp";
const GZ_SUFFIX: &str = ".gz";

#[derive(Debug, thiserror::Error)]
pub enum RotateError {
    #[error("container log {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("reopening the log of container {id}: {message}")]
    Reopen { id: String, message: String },
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> RotateError + '_ {
    move |source| RotateError::Io {
        path: path.into(),
        source,
    }
}

/// Runs until the process ends.
pub async fn run(s: Arc<Shared>) {
    let mut tick = tokio::time::interval(s.cfg.container_log_monitor_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let mut cri = s.cri.clone();
        let running = cri::ContainerStateValue {
            state: cri::ContainerState::ContainerRunning as i32,
        };
        let Ok(list) = cri
            .runtime
            .list_containers(cri::ListContainersRequest {
                filter: Some(cri::ContainerFilter {
                    state: Some(running),
                    ..Default::default()
                }),
            })
            .await
        else {
            continue;
        };
        let ids: Vec<String> = list
            .into_inner()
            .containers
            .into_iter()
            .map(|c| c.id)
            .collect();
        futures_util::stream::iter(ids)
            .for_each_concurrent(s.cfg.container_log_max_workers as usize, |id| {
                let s = s.clone();
                async move {
                    if let Err(e) = rotate_container(&s, &id).await {
                        tracing::warn!(container = %id, error = %e, "rotating a container log");
                    }
                }
            })
            .await;
    }
}

async fn rotate_container(s: &Shared, id: &str) -> Result<(), RotateError> {
    let mut cri = s.cri.clone();
    let status = match cri
        .runtime
        .container_status(cri::ContainerStatusRequest {
            container_id: id.to_string(),
            verbose: false,
        })
        .await
    {
        Ok(r) => r.into_inner().status,
        // Gone meanwhile: nothing to rotate.
        Err(_) => return Ok(()),
    };
    let Some(log) = status.map(|st| st.log_path).filter(|p| !p.is_empty()) else {
        return Ok(());
    };
    let log = PathBuf::from(log);
    let size = match std::fs::metadata(&log) {
        Ok(m) => m.len(),
        Err(_) => return Ok(()),
    };
    if size < s.cfg.container_log_max_size {
        return Ok(());
    }
    let log2 = log.clone();
    let max_files = s.cfg.container_log_max_files as usize;
    let rotated = tokio::task::spawn_blocking(move || prepare_and_rename(&log2, max_files))
        .await
        .map_err(|e| RotateError::Io {
            path: log.clone(),
            source: std::io::Error::other(e.to_string()),
        })??;
    let Some(rotated) = rotated else {
        return Ok(());
    };
    if let Err(st) = cri
        .runtime
        .reopen_container_log(cri::ReopenContainerLogRequest {
            container_id: id.to_string(),
        })
        .await
    {
        // As kubelet: put the log back so the runtime's open file and the name agree.
        let _ = std::fs::rename(&rotated, &log);
        return Err(RotateError::Reopen {
            id: id.into(),
            message: st.message().to_string(),
        });
    }
    tracing::info!(container = %id, rotated = %rotated.display(), "container log rotated");
    Ok(())
}

/// The rotated files of `log` (`<log>.<timestamp>[.gz]`), oldest first.
fn rotated_files(log: &Path) -> Result<Vec<PathBuf>, RotateError> {
    let dir = log.parent().unwrap_or(Path::new("."));
    let prefix = format!("{}.", log.file_name().unwrap_or_default().to_string_lossy());
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(io(dir))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(&prefix))
        })
        .collect();
    // The timestamp sorts as text; ".gz" does not change the order between two stamps.
    files.sort();
    Ok(files)
}

/// Cleans up, trims, compresses and renames; returns the rotated name (None when a file of
/// that second exists already: the next pass rotates).
pub fn prepare_and_rename(log: &Path, max_files: usize) -> Result<Option<PathBuf>, RotateError> {
    // Leftovers of an interrupted pass: temporary files, and originals whose .gz was written.
    for f in rotated_files(log)? {
        let name = f.to_string_lossy().to_string();
        let leftover = name.ends_with(TMP_SUFFIX)
            || (!name.ends_with(GZ_SUFFIX) && Path::new(&format!("{name}{GZ_SUFFIX}")).exists());
        if leftover {
            std::fs::remove_file(&f).map_err(io(&f))?;
        }
    }
    // Room for the current log and the one about to be rotated.
    let files = rotated_files(log)?;
    let keep = max_files.saturating_sub(2);
    let excess = files.len().saturating_sub(keep);
    for f in &files[..excess] {
        std::fs::remove_file(f).map_err(io(f))?;
    }
    let files = rotated_files(log)?;
    // Every earlier rotation is gzipped; the one made below stays plain until the next pass
    // (kubelet's order: a reader following the log may still be on it).
    for f in &files {
        if !f.to_string_lossy().ends_with(GZ_SUFFIX) {
            compress(f)?;
        }
    }
    let stamp = chrono::Local::now().format(TIMESTAMP);
    let rotated = PathBuf::from(format!("{}.{stamp}", log.display()));
    if rotated.exists() || Path::new(&format!("{}{GZ_SUFFIX}", rotated.display())).exists() {
        return Ok(None);
    }
    std::fs::rename(log, &rotated).map_err(io(log))?;
    Ok(Some(rotated))
}

/// `f` → `f.gz` through a temporary file, then `f` removed.
fn compress(f: &Path) -> Result<(), RotateError> {
    let gz = PathBuf::from(format!("{}{GZ_SUFFIX}", f.display()));
    let tmp = PathBuf::from(format!("{}{TMP_SUFFIX}", gz.display()));
    let mut input = std::fs::File::open(f).map_err(io(f))?;
    let out = std::fs::File::create(&tmp).map_err(io(&tmp))?;
    let mut enc = flate2::write::GzEncoder::new(out, flate2::Compression::default());
    std::io::copy(&mut input, &mut enc).map_err(io(f))?;
    let out = enc.finish().map_err(io(&tmp))?;
    out.sync_all().map_err(io(&tmp))?;
    std::fs::rename(&tmp, &gz).map_err(io(&gz))?;
    std::fs::remove_file(f).map_err(io(f))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    fn write_all(path: &Path, data: &[u8]) -> std::io::Result<()> {
        std::fs::File::create(path)?.write_all(data)
    }

    #[test]
    fn rotation_trims_compresses_and_renames() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("0.log");
        for (name, body) in [
            ("0.log.20250101-000001.gz", "x"),
            ("0.log.20250101-000002.gz", "x"),
            ("0.log.20250101-000003", "third\n"),
            ("0.log.20250101-000004", "fourth\n"),
            ("0.log.20250101-000005.gz.tmp", "partial"),
        ] {
            write_all(&dir.path().join(name), body.as_bytes()).unwrap();
        }
        write_all(&log, b"current\n").unwrap();
        let rotated = prepare_and_rename(&log, 4).unwrap().expect("rotated");
        assert!(!log.exists(), "the runtime reopens it");
        let mut names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
            .collect();
        names.sort();
        // max 4 files: the current log (reopened), the new rotation and two older ones; the
        // tmp leftover removed; all but the newest rotated gzipped.
        assert_eq!(names.len(), 3, "{names:?}");
        assert_eq!(names[0], "0.log.20250101-000003.gz");
        assert_eq!(names[1], "0.log.20250101-000004.gz");
        assert_eq!(
            names[2],
            rotated.file_name().unwrap().to_string_lossy().to_string()
        );
        let mut text = String::new();
        flate2::read::GzDecoder::new(
            std::fs::File::open(dir.path().join("0.log.20250101-000003.gz")).unwrap(),
        )
        .read_to_string(&mut text)
        .unwrap();
        assert_eq!(text, "third\n");
        assert_eq!(std::fs::read_to_string(&rotated).unwrap(), "current\n");
        // A second rotation within the same second waits for the next pass.
        write_all(&log, b"again\n").unwrap();
        assert_eq!(prepare_and_rename(&log, 4).unwrap(), None);
        assert!(log.exists());
    }
}
