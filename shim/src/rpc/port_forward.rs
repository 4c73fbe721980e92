//! PortForward: checks the sandbox is ready and the ports are valid, then hands out a one-time
//! streaming URL; connections are made inside the pod's network namespace when the client
//! connects (`crate::streaming::port_forward`).

use k8s_cri::v1 as cri;

use crate::error::ShimError;
use crate::records::SandboxState;
use crate::streaming::StreamRequest;
use crate::Shim;

impl Shim {
    pub async fn port_forward(
        &self,
        r: cri::PortForwardRequest,
    ) -> Result<cri::PortForwardResponse, ShimError> {
        let sb = self.sandbox(&r.pod_sandbox_id)?;
        if sb.state != SandboxState::Ready {
            return Err(ShimError::FailedPrecondition(format!(
                "sandbox {} is not ready",
                sb.id
            )));
        }
        let ports = r
            .port
            .iter()
            .map(|&p| {
                u16::try_from(p)
                    .ok()
                    .filter(|p| *p > 0)
                    .ok_or_else(|| ShimError::invalid(format!("port {p}: want 1 to 65535")))
            })
            .collect::<Result<Vec<u16>, _>>()?;
        if ports.len() > crate::streaming::port_forward::MAX_PORTS {
            return Err(ShimError::invalid(format!(
                "port: {} ports, at most {}",
                ports.len(),
                crate::streaming::port_forward::MAX_PORTS
            )));
        }
        let url = self.streams.url_for(StreamRequest::PortForward {
            sandbox_id: sb.id.clone(),
            netns: sb.netns.clone(),
            ports,
        })?;
        Ok(cri::PortForwardResponse { url })
    }
}
