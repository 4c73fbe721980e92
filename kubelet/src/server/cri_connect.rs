//! The CRI client the server uses: the RuntimeService client of the kubelet's own CRI
//! connection ([`crate::cri`]), so the server and the pod workers share one channel to the
//! runtime (pea-shim's `unix:///run/pea/pea-shim.sock`, or containerd's).

use std::sync::Arc;

use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;

use crate::cri::CriChannel;
use crate::instrument::KubeletMetrics;

pub use crate::cri::CriConnectError;

/// pea-shim's socket, the kubelet's default `containerRuntimeEndpoint` on a pea node.
pub const DEFAULT_ENDPOINT: &str = "unix:///run/pea/pea-shim.sock";

/// The CRI RuntimeService the server calls (clones share one connection).
#[derive(Debug, Clone)]
pub struct CriHandle {
    pub runtime: RuntimeServiceClient<CriChannel>,
    /// The kubelet's series (CRI latencies, pod start), rendered on `/metrics`.
    pub metrics: Arc<KubeletMetrics>,
}

impl From<crate::cri::Cri> for CriHandle {
    fn from(cri: crate::cri::Cri) -> Self {
        Self {
            runtime: cri.runtime,
            metrics: cri.metrics,
        }
    }
}

/// Connects lazily to `endpoint` (`unix:///path` or `/path`) through [`crate::cri::connect`]:
/// the socket is dialled on the first call and redialled after a runtime restart. Call it
/// inside a tokio runtime (the channel's worker task is spawned there). A kubelet that already
/// holds a [`crate::cri::Cri`] hands the server `CriHandle::from(cri.clone())` instead.
pub fn connect(endpoint: &str) -> Result<CriHandle, CriConnectError> {
    crate::cri::connect(endpoint).map(CriHandle::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn only_unix_endpoints_are_accepted() {
        assert!(connect("tcp://127.0.0.1:1").is_err());
        assert!(connect(DEFAULT_ENDPOINT).is_ok());
        assert!(connect("/run/x.sock").is_ok());
    }
}
