//! ExecSync: the runtime's `exec` in a running container, with a timeout (the process is killed
//! when it passes) and stdout/stderr capped at 16 MiB each, as CRI asks (CVE-2022-1708).

use std::process::Stdio;
use std::time::Duration;

use k8s_cri::v1 as cri;
use tokio::io::AsyncReadExt;

use crate::error::ShimError;
use crate::records::ContainerState;
use crate::Shim;

const MAX_OUTPUT: u64 = 16 << 20;

impl Shim {
    pub async fn exec_sync(
        &self,
        r: cri::ExecSyncRequest,
    ) -> Result<cri::ExecSyncResponse, ShimError> {
        let rec = self.container(&r.container_id)?;
        if rec.state != ContainerState::Running {
            return Err(ShimError::FailedPrecondition(format!(
                "container {} is not running",
                rec.id
            )));
        }
        if r.cmd.is_empty() {
            return Err(ShimError::invalid("cmd: empty"));
        }
        let pid_file = self
            .cfg
            .bundle_dir(&rec.id)
            .join(format!("exec-{}.pid", crate::records::new_id()));
        let mut cmd = tokio::process::Command::new(&self.runtime.binary);
        cmd.arg("--root")
            .arg(&self.runtime.root)
            .arg("exec")
            .arg("--pid-file")
            .arg(&pid_file)
            .arg(&rec.id)
            .args(&r.cmd)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd.spawn().map_err(|e| ShimError::Runtime {
            op: "exec",
            id: rec.id.clone(),
            message: e.to_string(),
        })?;
        let mut out = child.stdout.take().expect("piped").take(MAX_OUTPUT);
        let mut err = child.stderr.take().expect("piped").take(MAX_OUTPUT);
        let run = async {
            let mut o = Vec::new();
            let mut e = Vec::new();
            let (ro, re) = tokio::join!(out.read_to_end(&mut o), err.read_to_end(&mut e));
            ro.and(re)?;
            // Past the cap the output is discarded, not back-pressured.
            let (mut rest_o, mut rest_e) = (out.into_inner(), err.into_inner());
            let (mut sink_o, mut sink_e) = (tokio::io::sink(), tokio::io::sink());
            let _ = tokio::join!(
                tokio::io::copy(&mut rest_o, &mut sink_o),
                tokio::io::copy(&mut rest_e, &mut sink_e)
            );
            let status = child.wait().await?;
            Ok::<_, std::io::Error>((o, e, status))
        };
        let outcome = if r.timeout > 0 {
            tokio::time::timeout(Duration::from_secs(r.timeout as u64), run).await
        } else {
            Ok(run.await)
        };
        let result = match outcome {
            Err(_) => {
                // Kill the process inside the container, not only the runtime's exec.
                if let Some(pid) = std::fs::read_to_string(&pid_file)
                    .ok()
                    .and_then(|s| s.trim().parse::<i32>().ok())
                {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(pid),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
                Err(ShimError::DeadlineExceeded {
                    what: format!("exec in container {}", rec.id),
                    seconds: r.timeout,
                })
            }
            Ok(Err(e)) => Err(ShimError::Runtime {
                op: "exec",
                id: rec.id.clone(),
                message: e.to_string(),
            }),
            Ok(Ok((stdout, stderr, status))) => Ok(cri::ExecSyncResponse {
                stdout,
                stderr,
                exit_code: status.code().unwrap_or(128 + 9),
            }),
        };
        let _ = std::fs::remove_file(&pid_file);
        result
    }
}
