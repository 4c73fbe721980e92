//! The exit file: the container's last word, read by the shim whenever it (re)starts.
//!
//! `{"version":1,"exit_code":137,"signal":9,"started_at_ns":...,"finished_at_ns":...}` —
//! `exit_code` is the init's exit code, or 128 + the signal that killed it; `signal` is that
//! signal, 0 when the init exited by itself; times are unix nanoseconds (started = when the
//! runtime's create succeeded, finished = when the init was reaped). Written atomically (temp
//! file in the same directory, fsync, rename, fsync of the directory), so a reader sees either
//! no file or the whole record, even across a crash.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use nix::sys::wait::WaitStatus;

/// How a process ended, in the exit file's terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExitStatus {
    pub exit_code: i32,
    /// The signal that killed it, 0 when it exited.
    pub signal: i32,
}

impl ExitStatus {
    /// From a reaped wait status; `None` for statuses that are not an end (stopped, continued).
    pub fn from_wait(ws: WaitStatus) -> Option<Self> {
        match ws {
            WaitStatus::Exited(_, code) => Some(Self {
                exit_code: code,
                signal: 0,
            }),
            WaitStatus::Signaled(_, sig, _) => Some(Self {
                exit_code: 128 + sig as i32,
                signal: sig as i32,
            }),
            _ => None,
        }
    }
}

/// One container's ending.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExitRecord {
    pub status: ExitStatus,
    pub started_at_ns: u128,
    pub finished_at_ns: u128,
}

impl ExitRecord {
    /// The file's content (one JSON line).
    pub fn to_json(&self) -> String {
        format!(
            "{{\"version\":1,\"exit_code\":{},\"signal\":{},\"started_at_ns\":{},\"finished_at_ns\":{}}}\n",
            self.status.exit_code, self.status.signal, self.started_at_ns, self.finished_at_ns
        )
    }
}

/// Unix nanoseconds of `t`.
pub fn unix_ns(t: SystemTime) -> u128 {
    t.duration_since(UNIX_EPOCH).unwrap_or_default().as_nanos()
}

/// Writes `record` to `path` atomically.
pub fn write(path: &Path, record: &ExitRecord) -> std::io::Result<()> {
    write_atomic(path, record.to_json().as_bytes())
}

fn write_atomic(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("/"));
    let name = path
        .file_name()
        .ok_or_else(|| std::io::Error::other("exit file path has no file name"))?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".tmp-{}", std::process::id()));
    let tmp = dir.join(tmp_name);
    let result = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o644)
            .open(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        // The rename itself is durable only once the directory is.
        std::fs::File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use nix::sys::signal::Signal;
    use nix::unistd::Pid;

    use super::*;

    #[test]
    fn statuses_follow_the_shell_convention() {
        let p = Pid::from_raw(1);
        assert_eq!(
            ExitStatus::from_wait(WaitStatus::Exited(p, 3)),
            Some(ExitStatus {
                exit_code: 3,
                signal: 0
            })
        );
        assert_eq!(
            ExitStatus::from_wait(WaitStatus::Signaled(p, Signal::SIGKILL, false)),
            Some(ExitStatus {
                exit_code: 137,
                signal: 9
            })
        );
        assert_eq!(ExitStatus::from_wait(WaitStatus::StillAlive), None);
    }

    #[test]
    fn writes_the_record_atomically_and_leaves_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("exit.json");
        let rec = ExitRecord {
            status: ExitStatus {
                exit_code: 137,
                signal: 9,
            },
            started_at_ns: 1,
            finished_at_ns: 2,
        };
        write(&path, &rec).unwrap();
        write(&path, &rec).unwrap(); // replacing an old one is fine
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "{\"version\":1,\"exit_code\":137,\"signal\":9,\"started_at_ns\":1,\"finished_at_ns\":2}\n"
        );
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("exit.json")]);
        assert!(write(&dir.path().join("absent/exit.json"), &rec).is_err());
    }
}
