//! Attach: validates the request against the container (running, created with stdin if stdin
//! is asked for, tty matching), then hands out a one-time streaming URL; the client then gets
//! the container's live output through its pea-monitor (`crate::streaming::attach`).

use k8s_cri::v1 as cri;

use crate::error::ShimError;
use crate::streaming::StreamRequest;
use crate::Shim;

impl Shim {
    pub async fn attach(
        &self,
        mut r: cri::AttachRequest,
    ) -> Result<cri::AttachResponse, ShimError> {
        let rec = self.running_container(&r.container_id)?;
        super::exec::check_streams(r.tty, r.stdin, r.stdout, r.stderr)?;
        if r.tty && !rec.config.tty {
            return Err(ShimError::invalid(format!(
                "tty: container {} was not created with a tty",
                rec.id
            )));
        }
        if r.stdin && !rec.config.stdin {
            return Err(ShimError::invalid(format!(
                "stdin: container {} was not created with stdin open",
                rec.id
            )));
        }
        if !crate::streaming::attach::socket_path(&self.cfg, &rec.id).exists() {
            return Err(ShimError::FailedPrecondition(format!(
                "container {}: its monitor has no attach socket (started by an older pea-monitor)",
                rec.id
            )));
        }
        r.container_id = rec.id;
        let url = self.streams.url_for(StreamRequest::Attach(r))?;
        Ok(cri::AttachResponse { url })
    }
}
