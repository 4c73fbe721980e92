//! The OCI runtime as a program (pea-runtime, or any runc-compatible binary): the shim never
//! links it, as containerd never links runc. Each call gets `--root` and a JSON `--log`, and a
//! failure carries the runtime's own error message.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use crate::error::ShimError;

/// How long one runtime call may take before it is killed.
const CALL_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, Clone)]
pub struct RuntimeCli {
    pub binary: PathBuf,
    pub root: PathBuf,
}

/// What `state` says about a container.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct RuntimeState {
    pub status: String,
    #[serde(default)]
    pub pid: i32,
}

/// Output of a finished command.
#[derive(Debug)]
pub struct Finished {
    pub code: i32,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl RuntimeCli {
    fn command(&self, log: Option<&Path>) -> tokio::process::Command {
        let mut c = tokio::process::Command::new(&self.binary);
        c.arg("--root").arg(&self.root);
        if let Some(l) = log {
            c.arg("--log").arg(l).args(["--log-format", "json"]);
        }
        c.stdin(Stdio::null()).kill_on_drop(true);
        c
    }

    /// Runs `args`; non-zero exit becomes a `ShimError::Runtime` with the runtime's message.
    pub async fn run(&self, op: &'static str, id: &str, args: &[&str]) -> Result<(), ShimError> {
        let out = self.output(op, id, args, CALL_TIMEOUT).await?;
        if out.code != 0 {
            return Err(ShimError::Runtime {
                op,
                id: id.into(),
                message: message_of(&out),
            });
        }
        Ok(())
    }

    /// Runs `args` and returns what it printed, whatever its exit code.
    pub async fn output(
        &self,
        op: &'static str,
        id: &str,
        args: &[&str],
        timeout: Duration,
    ) -> Result<Finished, ShimError> {
        let mut cmd = self.command(None);
        cmd.args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
        let child = cmd.spawn().map_err(|e| ShimError::Runtime {
            op,
            id: id.into(),
            message: format!("running {}: {e}", self.binary.display()),
        })?;
        match tokio::time::timeout(timeout, child.wait_with_output()).await {
            Err(_) => Err(ShimError::DeadlineExceeded {
                what: format!("{} {op} {id}", self.binary.display()),
                seconds: timeout.as_secs() as i64,
            }),
            Ok(Err(e)) => Err(ShimError::Runtime {
                op,
                id: id.into(),
                message: e.to_string(),
            }),
            Ok(Ok(o)) => Ok(Finished {
                code: o.status.code().unwrap_or(-1),
                stdout: o.stdout,
                stderr: o.stderr,
            }),
        }
    }

    pub async fn start(&self, id: &str) -> Result<(), ShimError> {
        self.run("start", id, &["start", id]).await
    }

    /// Sends `signal` to the init (or every process with `all`); a container already gone is
    /// not an error.
    pub async fn kill(&self, id: &str, signal: &str, all: bool) -> Result<(), ShimError> {
        let mut args = vec!["kill"];
        if all {
            args.push("--all");
        }
        args.extend([id, signal]);
        match self.run("kill", id, &args).await {
            Err(ShimError::Runtime { message, .. })
                if message.contains("not running")
                    || message.contains("does not exist")
                    || message.contains("not found")
                    || message.contains("stopped") =>
            {
                Ok(())
            }
            other => other,
        }
    }

    /// `delete --force`; a container the runtime no longer knows is already deleted.
    pub async fn delete(&self, id: &str) -> Result<(), ShimError> {
        match self.run("delete", id, &["delete", "--force", id]).await {
            Err(ShimError::Runtime { message, .. })
                if message.contains("does not exist") || message.contains("not found") =>
            {
                Ok(())
            }
            other => other,
        }
    }

    pub async fn state(&self, id: &str) -> Result<Option<RuntimeState>, ShimError> {
        let out = self
            .output("state", id, &["state", id], CALL_TIMEOUT)
            .await?;
        if out.code != 0 {
            return Ok(None);
        }
        serde_json::from_slice(&out.stdout)
            .map(Some)
            .map_err(|e| ShimError::Runtime {
                op: "state",
                id: id.into(),
                message: format!("unparsable state: {e}"),
            })
    }

    /// `run --detach` (create and start in one runtime process, as runc's `run -d`): the pause
    /// container, which needs no monitor (its output is nothing and its exit is learnt from its
    /// pid). One exec of the runtime instead of two (`create`, then `start`).
    pub async fn run_detached(
        &self,
        id: &str,
        bundle: &Path,
        pid_file: &Path,
    ) -> Result<(), ShimError> {
        let log = bundle.join("runtime.log");
        let mut cmd = self.command(Some(&log));
        // The container inherits the runtime's stdio: pipes here would never reach EOF while
        // it runs. Errors come from the JSON log instead.
        cmd.arg("run")
            .arg("--detach")
            .arg("--bundle")
            .arg(bundle)
            .arg("--pid-file")
            .arg(pid_file)
            .arg(id)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let mut child = cmd.spawn().map_err(|e| ShimError::Runtime {
            op: "run",
            id: id.into(),
            message: format!("running {}: {e}", self.binary.display()),
        })?;
        let status = tokio::time::timeout(CALL_TIMEOUT, child.wait())
            .await
            .map_err(|_| ShimError::DeadlineExceeded {
                what: format!("run --detach {id}"),
                seconds: CALL_TIMEOUT.as_secs() as i64,
            })?
            .map_err(|e| ShimError::Runtime {
                op: "run",
                id: id.into(),
                message: e.to_string(),
            })?;
        if !status.success() {
            let message = last_log_error(&log).unwrap_or_else(|| format!("{status}"));
            return Err(ShimError::Runtime {
                op: "run",
                id: id.into(),
                message,
            });
        }
        Ok(())
    }
}

/// The most useful line of a failed call: its stderr, else its stdout.
fn message_of(out: &Finished) -> String {
    let e = String::from_utf8_lossy(&out.stderr).trim().to_string();
    if !e.is_empty() {
        return e;
    }
    let o = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if o.is_empty() {
        format!("exit status {}", out.code)
    } else {
        o
    }
}

/// The last `"level":"error"` message of a runtime's JSON log.
pub fn last_log_error(log: &Path) -> Option<String> {
    let text = std::fs::read_to_string(log).ok()?;
    text.lines().rev().find_map(|l| {
        let v: serde_json::Value = serde_json::from_str(l).ok()?;
        (v.get("level")?.as_str()? == "error")
            .then(|| v.get("msg").and_then(|m| m.as_str()).map(str::to_string))
            .flatten()
    })
}
