//! A CRI v1 client over a unix socket (k8s-cri's generated clients on a tonic channel), for the
//! pea-shim tests and `pea-crictl`. Works against any CRI runtime (containerd too).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use hyper_util::rt::TokioIo;
use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use tonic::transport::{Channel, Endpoint, Uri};

/// Both CRI services on one connection.
#[derive(Debug, Clone)]
pub struct Cri {
    pub runtime: RuntimeServiceClient<Channel>,
    pub images: ImageServiceClient<Channel>,
}

/// Connects to the CRI socket at `path` (`unix://` prefix optional).
pub async fn connect(path: &Path) -> Result<Cri> {
    let path: PathBuf = path
        .to_str()
        .and_then(|s| s.strip_prefix("unix://"))
        .map(PathBuf::from)
        .unwrap_or_else(|| path.to_path_buf());
    // The URI is ignored: every connection dials the socket.
    let channel = Endpoint::try_from("http://[::1]:50051")?
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let p = path.clone();
            async move { tokio::net::UnixStream::connect(p).await.map(TokioIo::new) }
        }))
        .await
        .context("connecting to the CRI socket")?;
    let max = 40 << 20;
    Ok(Cri {
        runtime: RuntimeServiceClient::new(channel.clone())
            .max_decoding_message_size(max)
            .max_encoding_message_size(max),
        images: ImageServiceClient::new(channel)
            .max_decoding_message_size(max)
            .max_encoding_message_size(max),
    })
}
