//! `/metrics` (Prometheus text), `/health` (the process serves: CoreDNS's health plugin) and
//! `/ready` (200 once the cluster state has synced: CoreDNS's ready plugin) on one listener.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::debug;

use crate::handler::State;

fn reply(status: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r
}

fn route(path: &str, state: &State, synced: bool) -> Response<Full<Bytes>> {
    match path {
        "/metrics" => {
            let mut r = reply(StatusCode::OK, state.metrics.render());
            r.headers_mut().insert(
                hyper::header::CONTENT_TYPE,
                hyper::header::HeaderValue::from_static("text/plain; version=0.0.4"),
            );
            r
        }
        "/health" => reply(StatusCode::OK, "OK"),
        "/ready" if synced => reply(StatusCode::OK, "OK"),
        "/ready" => reply(
            StatusCode::SERVICE_UNAVAILABLE,
            "cluster state not synced yet",
        ),
        _ => reply(
            StatusCode::NOT_FOUND,
            "not found: try /metrics, /health or /ready",
        ),
    }
}

/// Serves until the listener fails or the task is aborted.
pub async fn serve(listener: TcpListener, state: Arc<State>, synced: watch::Receiver<bool>) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                // Out of descriptors and the like: back off instead of spinning.
                debug!(error = %e, "accept on the metrics listener");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let state = state.clone();
        let synced = synced.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                let r = route(req.uri().path(), &state, *synced.borrow());
                async move { Ok::<_, Infallible>(r) }
            });
            if let Err(e) = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                debug!(%peer, error = %e, "metrics connection");
            }
        });
    }
}
