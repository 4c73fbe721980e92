//! A node's own record of image use, and its conversion into a simulator [`Trace`].
//!
//! # Recording format (JSON lines, appended by the node)
//!
//! ```text
//! {"ts":1765000000,"event":"pull","image":"sha256:<config>","ref":"registry.local/app:1.2","layers":[{"layer":"sha256:<chain id>","bytes":52428800}]}
//! {"ts":1765000004,"event":"start","image":"sha256:<config>","container":"0f3c…"}
//! {"ts":1765000600,"event":"stop","container":"0f3c…"}
//! ```
//!
//! - `ts`: Unix seconds, non-decreasing.
//! - `pull`: an image was pulled onto the node: its id (config digest), the reference asked
//!   for, and each layer bottom first as the store keys it (`layer`: the ChainID, equal for
//!   equal content on equal parents, so images share it) with the bytes it takes on this node
//!   (unpacked snapshot plus compressed blob — what removing it frees).
//! - `start`: a container started from `image` (`container` optional). May carry `layers` like
//!   a pull, for images already on the node when recording began.
//! - `stop`: the container exited.
//!
//! The simulator replays starts: every start is a request for its image, running until its
//! stop (until the end of the recording if it never stopped; no time at all without a
//! container id). Pulls only describe images — the simulated node decides for itself when a
//! pull is needed. Lines are at most [`MAX_LINE`] bytes; blank lines and `#` comments are
//! skipped.

use std::collections::HashMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use super::trace::{Event, Trace, TraceError};

/// Longest accepted line (an image with a few hundred layers fits).
pub const MAX_LINE: usize = 64 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordedLayer {
    pub layer: String,
    pub bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Record {
    Pull {
        ts: u64,
        image: String,
        #[serde(rename = "ref", default, skip_serializing_if = "Option::is_none")]
        reference: Option<String>,
        layers: Vec<RecordedLayer>,
    },
    Start {
        ts: u64,
        image: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        container: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        layers: Option<Vec<RecordedLayer>>,
    },
    Stop {
        ts: u64,
        container: String,
    },
}

impl Record {
    fn ts(&self) -> u64 {
        match self {
            Record::Pull { ts, .. } | Record::Start { ts, .. } | Record::Stop { ts, .. } => *ts,
        }
    }
}

/// Converts a recording into a trace (times relative to the first record).
pub fn load(text: &str) -> Result<Trace, TraceError> {
    let mut records = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let err = |detail: String| TraceError::Line {
            line: i + 1,
            detail,
        };
        let l = line.trim();
        if l.is_empty() || l.starts_with('#') {
            continue;
        }
        if l.len() > MAX_LINE {
            return Err(err(format!(
                "line is {} bytes (at most {MAX_LINE})",
                l.len()
            )));
        }
        let r: Record = serde_json::from_str(l).map_err(|e| err(e.to_string()))?;
        if let Some((_, prev)) = records.last() {
            let prev: &Record = prev;
            if r.ts() < prev.ts() {
                return Err(err(format!(
                    "ts {} goes back (previous {})",
                    r.ts(),
                    prev.ts()
                )));
            }
        }
        records.push((i + 1, r));
    }
    let t0 = records.first().map(|(_, r)| r.ts()).unwrap_or(0);
    let end = records.last().map(|(_, r)| r.ts()).unwrap_or(0);
    let mut out = Trace::default();
    let mut open: HashMap<String, usize> = HashMap::new();
    let describe = |out: &mut Trace, line: usize, image: &str, layers: &[RecordedLayer]| {
        let err = |detail: String| TraceError::Line { line, detail };
        if layers.is_empty() {
            return Err(err(format!("image {image} has no layers")));
        }
        let layers: Vec<(String, u64)> =
            layers.iter().map(|l| (l.layer.clone(), l.bytes)).collect();
        if let Some(known) = out.images.get(image) {
            if *known != layers {
                return Err(err(format!("image {image} changes its layers")));
            }
            return Ok(());
        }
        for (id, bytes) in &layers {
            if let Some(b) = out.layer_sizes.get(id) {
                if b != bytes {
                    return Err(err(format!(
                        "layer {id} is {bytes} bytes here and {b} bytes earlier"
                    )));
                }
            }
            out.layer_sizes.insert(id.clone(), *bytes);
        }
        out.images.insert(image.to_string(), layers);
        Ok(())
    };
    for (line, r) in records {
        match r {
            Record::Pull {
                image,
                layers,
                reference,
                ..
            } => {
                describe(&mut out, line, &image, &layers)?;
                if let Some(repo) = reference
                    .as_deref()
                    .and_then(crate::gc::history::repository_of)
                {
                    out.repositories.insert(image.clone(), repo.to_string());
                }
            }
            Record::Start {
                ts,
                image,
                container,
                layers,
            } => {
                if let Some(layers) = &layers {
                    describe(&mut out, line, &image, layers)?;
                }
                if !out.images.contains_key(&image) {
                    return Err(TraceError::Line {
                        line,
                        detail: format!("start of image {image} before its layers were recorded"),
                    });
                }
                let idx = out.events.len();
                out.events.push(Event {
                    t: ts - t0,
                    image,
                    duration: 0,
                });
                if let Some(c) = container {
                    out.events[idx].duration = end - ts;
                    open.insert(c, idx);
                }
            }
            Record::Stop { ts, container } => {
                // A stop for a container started before the recording began is ignored.
                if let Some(idx) = open.remove(&container) {
                    out.events[idx].duration = ts - t0 - out.events[idx].t;
                }
            }
        }
    }
    Ok(out)
}

#[derive(Debug, thiserror::Error)]
#[error("recording to {path}: {source}")]
pub struct RecorderError {
    pub path: PathBuf,
    pub source: std::io::Error,
}

/// Appends records to a file (created 0600), one `write` per line so concurrent writers to
/// an `O_APPEND` file do not interleave within a line.
#[derive(Debug)]
pub struct Recorder {
    path: PathBuf,
    file: Mutex<std::fs::File>,
}

impl Recorder {
    pub fn open(path: &Path) -> Result<Self, RecorderError> {
        use std::os::unix::fs::OpenOptionsExt as _;
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(path)
            .map_err(|source| RecorderError {
                path: path.to_path_buf(),
                source,
            })?;
        Ok(Self {
            path: path.to_path_buf(),
            file: Mutex::new(file),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn write(&self, r: &Record) -> Result<(), RecorderError> {
        let mut line = serde_json::to_vec(r).expect("records serialise");
        line.push(b'\n');
        let mut f = self.file.lock().unwrap_or_else(|p| p.into_inner());
        f.write_all(&line).map_err(|source| RecorderError {
            path: self.path.clone(),
            source,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_recording_becomes_a_trace_with_durations_from_stops() {
        let text = r#"
{"ts":1000,"event":"pull","image":"sha256:a","ref":"r/a:1","layers":[{"layer":"base","bytes":50},{"layer":"a1","bytes":10}]}
{"ts":1002,"event":"start","image":"sha256:a","container":"c1"}
{"ts":1005,"event":"start","image":"sha256:b","layers":[{"layer":"base","bytes":50}],"container":"c2"}
{"ts":1010,"event":"start","image":"sha256:a"}
{"ts":1100,"event":"stop","container":"c1"}
{"ts":1200,"event":"stop","container":"unknown"}
"#;
        let t = load(text).unwrap();
        let got: Vec<(u64, &str, u64)> = t
            .events
            .iter()
            .map(|e| (e.t, e.image.as_str(), e.duration))
            .collect();
        // c1 ran 98 s; c2 never stopped (runs to the end, 1200); the third start had no id.
        assert_eq!(
            got,
            [
                (2, "sha256:a", 98),
                (5, "sha256:b", 195),
                (10, "sha256:a", 0)
            ]
        );
        assert_eq!(t.layer_sizes["base"], 50);
        assert_eq!(t.images["sha256:b"], [("base".to_string(), 50)]);
    }

    #[test]
    fn bad_recordings_name_the_line() {
        let e = load(r#"{"ts":5,"event":"start","image":"x"}"#).unwrap_err();
        assert_eq!(
            e.to_string(),
            "trace line 1: start of image x before its layers were recorded"
        );
        let e = load("{\"ts\":5,\"event\":\"stop\",\"container\":\"c\"}\n{\"ts\":4,\"event\":\"stop\",\"container\":\"c\"}").unwrap_err();
        assert!(
            e.to_string().starts_with("trace line 2: ts 4 goes back"),
            "{e}"
        );
        let e = load(r#"{"ts":5,"event":"launch"}"#).unwrap_err();
        assert!(e.to_string().contains("unknown variant"), "{e}");
        let long = format!(
            "{{\"ts\":5,\"event\":\"stop\",\"container\":\"{}\"}}",
            "c".repeat(MAX_LINE)
        );
        assert!(load(&long).unwrap_err().to_string().contains("at most"));
    }

    #[test]
    fn the_recorder_appends_lines_the_loader_reads() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("rec.jsonl");
        let r = Recorder::open(&p).unwrap();
        r.write(&Record::Pull {
            ts: 10,
            image: "i".into(),
            reference: Some("reg/i:1".into()),
            layers: vec![RecordedLayer {
                layer: "l".into(),
                bytes: 7,
            }],
        })
        .unwrap();
        r.write(&Record::Start {
            ts: 11,
            image: "i".into(),
            container: Some("c".into()),
            layers: None,
        })
        .unwrap();
        r.write(&Record::Stop {
            ts: 20,
            container: "c".into(),
        })
        .unwrap();
        use std::os::unix::fs::PermissionsExt as _;
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let t = load(&std::fs::read_to_string(&p).unwrap()).unwrap();
        assert_eq!(
            t.events,
            [Event {
                t: 1,
                image: "i".into(),
                duration: 9
            }]
        );
    }
}
