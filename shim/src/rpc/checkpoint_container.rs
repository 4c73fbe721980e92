//! CheckpointContainer: checkpointing needs CRIU working on this host, and it does not (on
//! kernel 6.18 Debian's CRIU 3.17.1 stops at start-up: "vdso: Unexpected rt vDSO area bounds",
//! the kernel's split `[vvar]`/`[vvar_vclock]` mappings are newer than it). So the answer is
//! Unimplemented, and its message is what `criu check` says on this node at the time of the
//! call (run bounded in time), so it stays true when the host changes.

use std::time::Duration;

use k8s_cri::v1 as cri;

use crate::error::ShimError;
use crate::Shim;

/// `criu check` runs in well under a second; bound it in case it hangs.
const CRIU_CHECK_TIMEOUT: Duration = Duration::from_secs(10);

impl Shim {
    pub async fn checkpoint_container(
        &self,
        r: cri::CheckpointContainerRequest,
    ) -> Result<cri::CheckpointContainerResponse, ShimError> {
        // An unknown container is NotFound, as for every other container RPC.
        self.container(&r.container_id)?;
        Err(ShimError::Unimplemented(format!(
            "CheckpointContainer {}: {}",
            r.container_id,
            criu_check().await
        )))
    }
}

/// Why this node cannot checkpoint, from a `criu check` run now.
pub async fn criu_check() -> String {
    let run = tokio::process::Command::new("criu")
        .arg("check")
        .kill_on_drop(true)
        .output();
    match tokio::time::timeout(CRIU_CHECK_TIMEOUT, run).await {
        Err(_) => format!(
            "checkpointing needs CRIU; `criu check` did not finish in {} s",
            CRIU_CHECK_TIMEOUT.as_secs()
        ),
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::NotFound => {
            "checkpointing needs CRIU, which is not installed on this host (criu: not found)".into()
        }
        Ok(Err(e)) => format!("checkpointing needs CRIU; running `criu check`: {e}"),
        Ok(Ok(out)) if out.status.success() => {
            "CRIU works on this host (`criu check` passes) but pea-shim and pea-runtime do not \
             implement checkpointing yet"
                .into()
        }
        Ok(Ok(out)) => {
            let said: Vec<String> = String::from_utf8_lossy(&out.stderr)
                .lines()
                .chain(String::from_utf8_lossy(&out.stdout).lines())
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .take(8)
                .map(String::from)
                .collect();
            format!(
                "checkpointing needs CRIU, which does not work on this host: `criu check` \
                 failed ({}): {}",
                out.status,
                said.join("; ")
            )
        }
    }
}
