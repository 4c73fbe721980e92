//! `/containerLogs/<ns>/<pod>/<container>`: the container's CRI log file decoded back into its
//! output ([`super::cri_log`]), with kubelet's options: follow, previous, timestamps, tailLines,
//! sinceSeconds / sinceTime, limitBytes. A followed log ends when the container is no longer
//! running and its file is drained, or when the client goes away.

use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use k8s_cri::v1 as cri;
use tokio::sync::mpsc;

use super::cri_connect::CriHandle;
use super::cri_log::{tail_start, Decoder, Flow};
use super::lookup::find_pod;
use super::{PodSource, ServerError};

/// How often a followed log looks for new lines.
const FOLLOW_POLL: Duration = Duration::from_millis(100);
/// How often a followed log asks the runtime whether the container still runs.
const STATE_CHECK: Duration = Duration::from_secs(1);
/// Largest chunk handed to the client at once.
const CHUNK: usize = 32 * 1024;

/// PodLogOptions as the kubelet reads them from the query.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogOptions {
    pub follow: bool,
    pub previous: bool,
    pub timestamps: bool,
    pub tail_lines: Option<u64>,
    pub since: Option<DateTime<Utc>>,
    pub limit_bytes: Option<u64>,
}

fn flag(v: &str) -> Result<bool, String> {
    match v {
        "" | "true" | "True" | "TRUE" | "1" | "t" | "T" => Ok(true),
        "false" | "False" | "FALSE" | "0" | "f" | "F" => Ok(false),
        other => Err(format!("invalid boolean {other:?}")),
    }
}

impl LogOptions {
    /// Parses and checks the query (kube's `ValidatePodLogOptions` rules).
    pub fn from_query(query: Option<&str>, now: DateTime<Utc>) -> Result<Self, ServerError> {
        let mut o = LogOptions::default();
        let mut since_seconds: Option<i64> = None;
        let mut since_time: Option<DateTime<Utc>> = None;
        let bad = |k: &str, e: String| ServerError::BadRequest(format!("invalid {k}: {e}"));
        for (k, v) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
            let int = || v.parse::<i64>().map_err(|e| bad(&k, e.to_string()));
            match k.as_ref() {
                "follow" => o.follow = flag(&v).map_err(|e| bad(&k, e))?,
                "previous" => o.previous = flag(&v).map_err(|e| bad(&k, e))?,
                "timestamps" => o.timestamps = flag(&v).map_err(|e| bad(&k, e))?,
                "tailLines" => {
                    let t = int()?;
                    if t < 0 {
                        return Err(bad(&k, format!("{t}: must be greater than or equal to 0")));
                    }
                    o.tail_lines = Some(t as u64);
                }
                "limitBytes" => {
                    let l = int()?;
                    if l < 1 {
                        return Err(bad(&k, format!("{l}: must be greater than 0")));
                    }
                    o.limit_bytes = Some(l as u64);
                }
                "sinceSeconds" => {
                    let s = int()?;
                    if s < 1 {
                        return Err(bad(&k, format!("{s}: must be greater than 0")));
                    }
                    since_seconds = Some(s);
                }
                "sinceTime" => {
                    since_time = Some(
                        DateTime::parse_from_rfc3339(&v)
                            .map_err(|e| bad(&k, format!("{v:?}: {e}")))?
                            .with_timezone(&Utc),
                    )
                }
                // Known options the kubelet passes on or ignores.
                "container" | "insecureSkipTLSVerifyBackend" | "stream" | "pretty" => {}
                other => {
                    return Err(ServerError::BadRequest(format!(
                        "unknown log option {other:?}"
                    )))
                }
            }
        }
        o.since = match (since_seconds, since_time) {
            (Some(_), Some(_)) => {
                return Err(ServerError::BadRequest(
                    "at most one of `sinceTime` or `sinceSeconds` may be specified".into(),
                ))
            }
            (Some(s), None) => Some(now - chrono::Duration::seconds(s)),
            (None, t) => t,
        };
        Ok(o)
    }
}

/// Resolves the container and its log file, then streams the decoded log into the returned
/// channel from a task of its own.
pub async fn container_logs(
    cri: &CriHandle,
    pods: &dyn PodSource,
    namespace: &str,
    pod: &str,
    container: &str,
    opts: LogOptions,
) -> Result<mpsc::Receiver<Bytes>, ServerError> {
    let uid = pods.pod(namespace, pod).and_then(|p| p.metadata.uid);
    let runtime_pod = find_pod(cri, namespace, pod, uid.as_deref()).await?;
    let c = runtime_pod.container(container, opts.previous)?;
    let status = cri
        .runtime
        .clone()
        .container_status(cri::ContainerStatusRequest {
            container_id: c.id.clone(),
            verbose: false,
        })
        .await
        .map_err(|s| ServerError::cri("ContainerStatus", s))?
        .into_inner()
        .status
        .ok_or_else(|| ServerError::Internal(format!("container {} has no status", c.id)))?;
    if status.log_path.is_empty() {
        return Err(ServerError::BadRequest(format!(
            "container {container:?} in pod \"{namespace}/{pod}\" has no log file"
        )));
    }
    let path = PathBuf::from(&status.log_path);
    let file = std::fs::File::open(&path)
        .map_err(|e| ServerError::Internal(format!("opening log file {}: {e}", path.display())))?;
    let (tx, rx) = mpsc::channel(16);
    let cri = cri.clone();
    let id = c.id.clone();
    tokio::task::spawn_blocking(move || {
        let span = tracing::debug_span!("container_logs", container_id = %id);
        let _enter = span.enter();
        let handle = tokio::runtime::Handle::current();
        if let Err(e) = stream_file(file, path, opts, &tx, || {
            handle.block_on(still_running(&cri, &id))
        }) {
            tracing::debug!(error = %e, "log stream ended");
        }
    });
    Ok(rx)
}

async fn still_running(cri: &CriHandle, id: &str) -> bool {
    match cri
        .runtime
        .clone()
        .container_status(cri::ContainerStatusRequest {
            container_id: id.to_string(),
            verbose: false,
        })
        .await
    {
        Ok(r) => r
            .into_inner()
            .status
            .is_some_and(|s| s.state == cri::ContainerState::ContainerRunning as i32),
        Err(_) => false,
    }
}

/// Reads `file` from the tail offset, decodes, sends; in follow mode keeps reading new lines
/// (reopening `path` when it was rotated) until `running` says the container ended and the file
/// is drained, or the receiver is gone.
fn stream_file(
    file: std::fs::File,
    path: PathBuf,
    opts: LogOptions,
    tx: &mpsc::Sender<Bytes>,
    mut running: impl FnMut() -> bool,
) -> std::io::Result<()> {
    let mut file = file;
    let start = match opts.tail_lines {
        Some(n) => tail_start(&mut file, n)?,
        None => 0,
    };
    file.seek(SeekFrom::Start(start))?;
    let mut inode = file.metadata()?.ino();
    let mut reader = BufReader::new(file);
    let mut decoder = Decoder::new(opts.since, opts.timestamps, opts.limit_bytes);
    let mut out = Vec::with_capacity(CHUNK);
    let mut pending: Vec<u8> = Vec::new();
    let mut last_check = std::time::Instant::now();
    let send = |out: &mut Vec<u8>| -> bool {
        if out.is_empty() {
            return true;
        }
        let chunk = Bytes::from(std::mem::take(out));
        tx.blocking_send(chunk).is_ok()
    };
    loop {
        let n = reader.read_until(b'\n', &mut pending)?;
        if n > 0 && pending.last() == Some(&b'\n') {
            let flow = decoder.line(&pending, &mut out);
            pending.clear();
            match flow {
                Ok(Flow::Done) => {
                    send(&mut out);
                    return Ok(());
                }
                Ok(Flow::More) => {}
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "skipping a bad log line")
                }
            }
            if out.len() >= CHUNK && !send(&mut out) {
                return Ok(());
            }
            continue;
        }
        // End of the file for now (a line may be half written).
        if !send(&mut out) {
            return Ok(());
        }
        if !opts.follow {
            if !pending.is_empty() {
                let _ = decoder.line(&pending, &mut out);
                send(&mut out);
            }
            return Ok(());
        }
        if tx.is_closed() {
            return Ok(());
        }
        // Rotated (ReopenContainerLog): the path names a new file; read it from its start.
        if let Ok(meta) = std::fs::metadata(&path) {
            if meta.ino() != inode {
                if let Ok(f) = std::fs::File::open(&path) {
                    inode = meta.ino();
                    reader = BufReader::new(f);
                    continue;
                }
            }
        }
        if last_check.elapsed() >= STATE_CHECK {
            last_check = std::time::Instant::now();
            if !running() {
                // One more pass for what was written before the exit.
                let mut rest = Vec::new();
                std::io::Read::read_to_end(&mut reader, &mut rest)?;
                pending.extend_from_slice(&rest);
                for line in pending.split_inclusive(|c| *c == b'\n') {
                    if decoder.line(line, &mut out) == Ok(Flow::Done) {
                        break;
                    }
                }
                send(&mut out);
                return Ok(());
            }
        }
        std::thread::sleep(FOLLOW_POLL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_parse_and_check_like_kube() {
        let now = DateTime::parse_from_rfc3339("2026-01-01T00:01:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let o = LogOptions::from_query(
            Some("follow=true&timestamps=1&tailLines=5&limitBytes=10&sinceSeconds=60"),
            now,
        )
        .unwrap();
        assert!(o.follow && o.timestamps && !o.previous);
        assert_eq!((o.tail_lines, o.limit_bytes), (Some(5), Some(10)));
        assert_eq!(o.since.unwrap().to_rfc3339(), "2026-01-01T00:00:00+00:00");
        for bad in [
            "tailLines=-1",
            "limitBytes=0",
            "sinceSeconds=0",
            "sinceSeconds=1&sinceTime=2026-01-01T00:00:00Z",
            "sinceTime=yesterday",
            "follow=maybe",
            "tailLines=x",
            "color=red",
        ] {
            let e = LogOptions::from_query(Some(bad), now).unwrap_err();
            assert!(matches!(e, ServerError::BadRequest(_)), "{bad}: {e}");
        }
    }

    #[test]
    fn a_file_streams_with_tail_and_follow_ends_when_the_container_stops() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.log");
        std::fs::write(
            &path,
            "2026-01-01T00:00:00Z stdout F one\n2026-01-01T00:00:01Z stdout F two\n2026-01-01T00:00:02Z stderr F three\n",
        )
        .unwrap();
        let (tx, mut rx) = mpsc::channel(16);
        let opts = LogOptions {
            tail_lines: Some(2),
            ..Default::default()
        };
        stream_file(
            std::fs::File::open(&path).unwrap(),
            path.clone(),
            opts,
            &tx,
            || true,
        )
        .unwrap();
        drop(tx);
        let mut got = Vec::new();
        while let Some(b) = rx.blocking_recv() {
            got.extend_from_slice(&b);
        }
        assert_eq!(got, b"two\nthree\n");
        // Follow: a line appended later arrives, then the "container" stops.
        let (tx, mut rx) = mpsc::channel(16);
        let p2 = path.clone();
        let writer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            use std::io::Write;
            let mut f = std::fs::OpenOptions::new().append(true).open(&p2).unwrap();
            f.write_all(b"2026-01-01T00:00:03Z stdout F four\n")
                .unwrap();
        });
        let started = std::time::Instant::now();
        let opts = LogOptions {
            follow: true,
            tail_lines: Some(0),
            ..Default::default()
        };
        stream_file(std::fs::File::open(&path).unwrap(), path, opts, &tx, || {
            started.elapsed() < Duration::from_millis(1500)
        })
        .unwrap();
        writer.join().unwrap();
        drop(tx);
        let mut got = Vec::new();
        while let Some(b) = rx.blocking_recv() {
            got.extend_from_slice(&b);
        }
        assert_eq!(got, b"four\n");
    }
}
