//! The CRI client the server uses: k8s-cri's generated RuntimeService client on a tonic channel
//! over the runtime's unix socket (pea-shim's `unix:///run/pea/pea-shim.sock`, or containerd's).
//! The kubelet core has its own client; it can hand the server a [`CriHandle`] built from the
//! same channel with [`CriHandle::from_channel`].

use std::path::PathBuf;

use hyper_util::rt::TokioIo;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use tonic::transport::{Channel, Endpoint, Uri};

/// pea-shim's socket, the kubelet's default `containerRuntimeEndpoint` on a pea node.
pub const DEFAULT_ENDPOINT: &str = "unix:///run/pea/pea-shim.sock";

/// Largest CRI message accepted (ListContainerStats on a full node is large).
const MAX_MESSAGE: usize = 40 << 20;

/// The CRI RuntimeService the server calls (clones share one connection).
#[derive(Debug, Clone)]
pub struct CriHandle {
    pub runtime: RuntimeServiceClient<Channel>,
}

#[derive(Debug, thiserror::Error)]
pub enum CriConnectError {
    #[error("CRI endpoint {0:?}: only unix sockets are supported (unix:///path or /path)")]
    Scheme(String),
    #[error("CRI endpoint {endpoint}: {source}")]
    Endpoint {
        endpoint: String,
        #[source]
        source: tonic::transport::Error,
    },
}

impl CriHandle {
    /// Wraps a channel the caller already has.
    pub fn from_channel(channel: Channel) -> Self {
        Self {
            runtime: RuntimeServiceClient::new(channel)
                .max_decoding_message_size(MAX_MESSAGE)
                .max_encoding_message_size(MAX_MESSAGE),
        }
    }
}

/// Connects lazily to `endpoint` (`unix:///path` or `/path`): the socket is dialled on the first
/// call and redialled after a runtime restart. Call it inside a tokio runtime (the channel's
/// worker task is spawned there).
pub fn connect(endpoint: &str) -> Result<CriHandle, CriConnectError> {
    let path = match endpoint.strip_prefix("unix://") {
        Some(p) => PathBuf::from(p),
        None if endpoint.contains("://") => {
            return Err(CriConnectError::Scheme(endpoint.to_string()))
        }
        None => PathBuf::from(endpoint),
    };
    // The URI is ignored: every connection dials the socket.
    let channel = Endpoint::try_from("http://[::1]:50051")
        .map_err(|source| CriConnectError::Endpoint {
            endpoint: endpoint.to_string(),
            source,
        })?
        .connect_with_connector_lazy(tower::service_fn(move |_: Uri| {
            let p = path.clone();
            async move { tokio::net::UnixStream::connect(p).await.map(TokioIo::new) }
        }));
    Ok(CriHandle::from_channel(channel))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn only_unix_endpoints_are_accepted() {
        assert!(matches!(
            connect("tcp://127.0.0.1:1"),
            Err(CriConnectError::Scheme(_))
        ));
        assert!(connect(DEFAULT_ENDPOINT).is_ok());
        assert!(connect("/run/x.sock").is_ok());
    }
}
