//! Exec: validates the request as the kubelet does, then hands out a one-time streaming URL
//! (`crate::streaming`); the command runs when the client connects to it.

use k8s_cri::v1 as cri;

use crate::error::ShimError;
use crate::records::ContainerState;
use crate::streaming::StreamRequest;
use crate::Shim;

impl Shim {
    pub async fn exec(&self, mut r: cri::ExecRequest) -> Result<cri::ExecResponse, ShimError> {
        let rec = self.running_container(&r.container_id)?;
        if r.cmd.is_empty() {
            return Err(ShimError::invalid("cmd: empty"));
        }
        check_streams(r.tty, r.stdin, r.stdout, r.stderr)?;
        r.container_id = rec.id;
        let url = self.streams.url_for(StreamRequest::Exec(r))?;
        Ok(cri::ExecResponse { url })
    }
}

impl Shim {
    /// The record of container `id` (a unique prefix will do), which must be running: what
    /// Exec and Attach stream into.
    pub(crate) fn running_container(
        &self,
        id: &str,
    ) -> Result<crate::records::ContainerRecord, ShimError> {
        let rec = self.container(id)?;
        if rec.state != ContainerState::Running {
            return Err(ShimError::FailedPrecondition(format!(
                "container {} is not running",
                rec.id
            )));
        }
        Ok(rec)
    }
}

/// The kubelet's checks on the streams a client asks for.
pub(crate) fn check_streams(
    tty: bool,
    stdin: bool,
    stdout: bool,
    stderr: bool,
) -> Result<(), ShimError> {
    if tty && stderr {
        return Err(ShimError::invalid(
            "tty and stderr cannot both be true (a terminal has one output stream)",
        ));
    }
    if !(stdin || stdout || stderr) {
        return Err(ShimError::invalid(
            "one of stdin, stdout or stderr must be set",
        ));
    }
    Ok(())
}
