//! The CRI log file: records are batched per read and appended with one write each batch
//! (O_APPEND, so a rotating kubelet never sees interleaved halves); SIGUSR1 reopens the path.
//!
//! A failing write (disk full, file removed under us) never stops the monitor: the container
//! must not block on a full pipe because its log is broken. The first failure is reported on
//! stderr, the data is dropped, and the next reopen starts afresh.

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::framing::{Tag, TIMESTAMP_LEN};

/// Batches are written once they reach this size (or at the end of a read).
const FLUSH_AT: usize = 32 * 1024;

/// Where the container's output goes.
#[derive(Debug)]
pub struct LogSink {
    id: String,
    path: Option<PathBuf>,
    file: Option<File>,
    batch: Vec<u8>,
    failing: bool,
}

impl LogSink {
    /// Opens `path` for appending (created 0640; its directory must exist); `None` discards.
    pub fn open(id: &str, path: Option<&Path>) -> std::io::Result<Self> {
        let file = path.map(open_append).transpose()?;
        Ok(Self {
            id: id.to_string(),
            path: path.map(Path::to_path_buf),
            file,
            batch: Vec::new(),
            failing: false,
        })
    }

    /// Adds one record to the batch.
    pub fn record(
        &mut self,
        ts: &[u8; TIMESTAMP_LEN],
        stream: &str,
        tag: Tag,
        head: &[u8],
        tail: &[u8],
    ) {
        if self.file.is_none() {
            return;
        }
        let b = &mut self.batch;
        b.extend_from_slice(ts);
        b.push(b' ');
        b.extend_from_slice(stream.as_bytes());
        b.push(b' ');
        b.push(tag.as_byte());
        b.push(b' ');
        b.extend_from_slice(head);
        b.extend_from_slice(tail);
        b.push(b'\n');
        if self.batch.len() >= FLUSH_AT {
            self.flush();
        }
    }

    /// Writes the batch out.
    pub fn flush(&mut self) {
        if self.batch.is_empty() {
            return;
        }
        if let Some(f) = self.file.as_mut() {
            match f.write_all(&self.batch) {
                Ok(()) => self.failing = false,
                Err(e) if !self.failing => {
                    self.failing = true;
                    warn(&format!(
                        "container {}: writing log {}: {e} (dropping output until it works again)",
                        self.id,
                        self.path.as_deref().unwrap_or(Path::new("")).display()
                    ));
                }
                Err(_) => {}
            }
        }
        self.batch.clear();
    }

    /// Opens the path again (after the kubelet renamed the file). On failure the old file is kept
    /// so no output is lost, and the error is reported on stderr.
    pub fn reopen(&mut self) {
        self.flush();
        let Some(path) = &self.path else { return };
        match open_append(path) {
            Ok(f) => {
                self.file = Some(f);
                self.failing = false;
            }
            Err(e) => warn(&format!(
                "container {}: reopening log {}: {e} (still writing to the old file)",
                self.id,
                path.display()
            )),
        }
    }
}

fn open_append(path: &Path) -> std::io::Result<File> {
    // std opens with O_CLOEXEC: the runtime and the container never inherit the log.
    std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o640)
        .open(path)
}

/// A diagnostic on stderr (the shim's log). Never panics: the shim may be gone.
pub fn warn(msg: &str) {
    let _ = writeln!(std::io::stderr(), "pea-monitor: {msg}");
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    const TS: &[u8; TIMESTAMP_LEN] = b"2026-12-06T04:05:06.123456789Z";

    #[test]
    fn records_are_cri_lines_and_reopen_follows_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.log");
        let mut s = LogSink::open("c1", Some(&path)).unwrap();
        s.record(TS, "stdout", Tag::Full, b"hel", b"lo");
        s.record(TS, "stderr", Tag::Partial, b"", b"x");
        s.flush();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "2026-12-06T04:05:06.123456789Z stdout F hello\n\
             2026-12-06T04:05:06.123456789Z stderr P x\n"
        );
        // 0640 less the umask: never world-readable, always owner-writable.
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!((mode & 0o600, mode & 0o137), (0o600, 0), "mode {mode:o}");
        let rotated = dir.path().join("0.log.1");
        std::fs::rename(&path, &rotated).unwrap();
        s.record(TS, "stdout", Tag::Full, b"old", b"");
        s.reopen();
        s.record(TS, "stdout", Tag::Full, b"new", b"");
        s.flush();
        assert!(std::fs::read_to_string(&rotated)
            .unwrap()
            .ends_with("stdout F old\n"));
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "2026-12-06T04:05:06.123456789Z stdout F new\n"
        );
    }

    #[test]
    fn a_missing_directory_is_an_error_and_no_path_discards() {
        let dir = tempfile::tempdir().unwrap();
        assert!(LogSink::open("c1", Some(&dir.path().join("no/0.log"))).is_err());
        let mut s = LogSink::open("c1", None).unwrap();
        s.record(TS, "stdout", Tag::Full, b"gone", b"");
        s.flush();
        s.reopen();
    }
}
