//! The CRI v1 client: k8s-cri's generated clients on one tonic channel over a unix socket. Works
//! against any CRI runtime (pea-shim, containerd's CRI plugin).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use hyper_util::rt::TokioIo;
use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use tonic::transport::{Channel, Endpoint, Uri};

use crate::instrument::{KubeletMetrics, TimedChannel};

/// The channel every CRI call goes through: timed per operation into [`KubeletMetrics`].
pub type CriChannel = TimedChannel;

/// Both CRI services on one connection (cheap to clone: clones share the channel and the
/// kubelet's metrics).
#[derive(Debug, Clone)]
pub struct Cri {
    pub runtime: RuntimeServiceClient<CriChannel>,
    pub images: ImageServiceClient<CriChannel>,
    pub metrics: Arc<KubeletMetrics>,
}

#[derive(Debug, thiserror::Error)]
pub enum CriConnectError {
    #[error("connecting to the CRI endpoint {endpoint}: {source}")]
    Connect {
        endpoint: String,
        source: tonic::transport::Error,
    },
    #[error("CRI endpoint {0:?}: only unix sockets are supported (unix:///path or /path)")]
    Scheme(String),
}

/// The socket path of a CRI endpoint: `unix:///run/x.sock` or a bare path.
pub fn socket_path(endpoint: &str) -> Result<PathBuf, CriConnectError> {
    if let Some(p) = endpoint.strip_prefix("unix://") {
        return Ok(PathBuf::from(p));
    }
    if endpoint.contains("://") {
        return Err(CriConnectError::Scheme(endpoint.to_string()));
    }
    Ok(PathBuf::from(endpoint))
}

/// Connects lazily: the first call dials the socket, and a broken connection is redialled, so a
/// runtime restart does not need a kubelet restart.
pub fn connect(endpoint: &str) -> Result<Cri, CriConnectError> {
    let path = socket_path(endpoint)?;
    let channel = Endpoint::try_from("http://[::1]:50051")
        .map_err(|source| CriConnectError::Connect {
            endpoint: endpoint.to_string(),
            source,
        })?
        .connect_with_connector_lazy(tower::service_fn(move |_: Uri| {
            let p = path.clone();
            async move { tokio::net::UnixStream::connect(p).await.map(TokioIo::new) }
        }));
    Ok(from_channel(channel))
}

/// Connects now and fails when nothing answers on `path`.
pub async fn connect_now(path: &Path) -> Result<Cri, CriConnectError> {
    let p: PathBuf = path.to_path_buf();
    let shown = path.display().to_string();
    let channel = Endpoint::try_from("http://[::1]:50051")
        .map_err(|source| CriConnectError::Connect {
            endpoint: shown.clone(),
            source,
        })?
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let p = p.clone();
            async move { tokio::net::UnixStream::connect(p).await.map(TokioIo::new) }
        }))
        .await
        .map_err(|source| CriConnectError::Connect {
            endpoint: shown,
            source,
        })?;
    Ok(from_channel(channel))
}

fn from_channel(channel: Channel) -> Cri {
    // Large ListContainers answers on busy nodes exceed tonic's 4 MiB default.
    let max = 40 << 20;
    let metrics = Arc::new(KubeletMetrics::default());
    let timed = TimedChannel::new(channel, metrics.clone());
    Cri {
        runtime: RuntimeServiceClient::new(timed.clone())
            .max_decoding_message_size(max)
            .max_encoding_message_size(max),
        images: ImageServiceClient::new(timed)
            .max_decoding_message_size(max)
            .max_encoding_message_size(max),
        metrics,
    }
}
