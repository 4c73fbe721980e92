//! Serving CRI on a unix socket (mode 0600, only root talks to it) and `/metrics` on an
//! optional TCP address; both stop on SIGTERM/SIGINT. Containers keep running: they belong to
//! their monitors, not to this process.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use k8s_cri::v1::image_service_server::ImageServiceServer;
use k8s_cri::v1::runtime_service_server::RuntimeServiceServer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, UnixListener};
use tokio_stream::wrappers::UnixListenerStream;

use crate::error::ShimError;
use crate::image_gc::{ImageGc, ImageGcCounters};
use crate::rpc::CriService;
use crate::Shim;

/// CRI messages can carry large configs and ExecSync output (16 MiB each stream).
const MAX_MESSAGE: usize = 40 << 20;

/// Binds the CRI socket: refuses to take over a live one, replaces a stale one.
pub fn bind(path: &Path) -> Result<UnixListener, ShimError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(ShimError::io(dir))?;
    }
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(ShimError::FailedPrecondition(format!(
                "{}: another process is serving on this socket",
                path.display()
            )));
        }
        std::fs::remove_file(path).map_err(ShimError::io(path))?;
    }
    // Bind under a restrictive umask-equivalent: create, then chmod before anyone can use it.
    let l = UnixListener::bind(path).map_err(ShimError::io(path))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(ShimError::io(path))?;
    Ok(l)
}

/// Serves until `shutdown` resolves.
pub async fn serve(
    shim: Arc<Shim>,
    listener: UnixListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), ShimError> {
    let svc = CriService(shim.clone());
    // The shim's own image GC (`--image-gc-policy`), when one is set.
    let image_gc = ImageGc::from_config(&shim.cfg)?.map(|gc| {
        let counters = Arc::new(ImageGcCounters::default());
        tokio::spawn(crate::image_gc::run(
            shim.clone(),
            gc.clone(),
            counters.clone(),
        ));
        (gc.name, counters)
    });
    if let Some(addr) = shim.cfg.metrics_address {
        let l = TcpListener::bind(addr)
            .await
            .map_err(|e| ShimError::Internal(format!("metrics address {addr}: {e}")))?;
        tracing::info!(%addr, "serving /metrics");
        tokio::spawn(serve_metrics(shim.clone(), l, image_gc.clone()));
    }
    crate::streaming::start(shim.clone()).await?;
    // Exits that happen while nobody asks still reach GetContainerEvents subscribers.
    let watcher = shim.clone();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let _ = watcher.containers();
        }
    });
    tonic::transport::Server::builder()
        .add_service(
            RuntimeServiceServer::new(svc.clone())
                .max_decoding_message_size(MAX_MESSAGE)
                .max_encoding_message_size(MAX_MESSAGE),
        )
        .add_service(
            ImageServiceServer::new(svc)
                .max_decoding_message_size(MAX_MESSAGE)
                .max_encoding_message_size(MAX_MESSAGE),
        )
        .serve_with_incoming_shutdown(UnixListenerStream::new(listener), shutdown)
        .await
        .map_err(|e| ShimError::Internal(format!("grpc server: {e}")))
}

/// A minimal HTTP/1 responder: `GET /metrics` gets the exposition, anything else 404.
async fn serve_metrics(
    shim: Arc<Shim>,
    l: TcpListener,
    image_gc: Option<(String, Arc<ImageGcCounters>)>,
) {
    loop {
        let Ok((mut s, _)) = l.accept().await else {
            continue;
        };
        let shim = shim.clone();
        let image_gc = image_gc.clone();
        tokio::spawn(async move {
            let mut buf = [0u8; 1024];
            let n = match tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await {
                Ok(Ok(n)) => n,
                _ => return,
            };
            let req = String::from_utf8_lossy(&buf[..n]);
            let resp = if req.starts_with("GET /metrics ") {
                let mut body = shim
                    .metrics
                    .render(shim.sandboxes().len(), shim.containers().len());
                if let Some((policy, counters)) = &image_gc {
                    body.push_str(&counters.render(policy));
                }
                format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\n\
                     Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                )
            } else {
                "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".into()
            };
            let _ = s.write_all(resp.as_bytes()).await;
        });
    }
}
