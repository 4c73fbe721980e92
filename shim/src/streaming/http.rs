//! The HTTP side of the stream server: one route per kind, `GET /{exec,attach,portforward}/TOKEN`
//! with a WebSocket upgrade. Every refusal is a plain-text answer naming what was wrong, and
//! nothing is started before the token, the upgrade and the subprotocol all check out.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tracing::Instrument;

use super::websocket::{self, Session};
use super::{attach, exec, port_forward, StreamRequest};
use crate::Shim;

/// What a SPDY client (crictl, kubectl < 1.30 without WebSocket) is told.
pub const SPDY_REFUSED: &str = "SPDY is not implemented; use a WebSocket client (kubectl ≥ 1.30)";

/// A client must send its request head this fast (hostile or stuck clients hold nothing long).
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

pub async fn serve(shim: Arc<Shim>, listener: TcpListener) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "stream server accept");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let shim = shim.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| handle(shim.clone(), req));
            let conn = http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(stream), svc)
                .with_upgrades();
            if let Err(e) = conn.await {
                tracing::debug!(%peer, error = %e, "stream connection");
            }
        });
    }
}

fn plain(code: StatusCode, text: impl Into<String>) -> Response<Full<Bytes>> {
    let mut text = text.into();
    text.push('\n');
    Response::builder()
        .status(code)
        .header("content-type", "text/plain; charset=utf-8")
        .body(Full::new(Bytes::from(text)))
        .expect("static response parts")
}

async fn handle(
    shim: Arc<Shim>,
    mut req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path().to_string();
    let Some((kind, token)) = path
        .strip_prefix('/')
        .and_then(|p| p.split_once('/'))
        .filter(|(k, t)| matches!(*k, "exec" | "attach" | "portforward") && !t.contains('/'))
    else {
        return Ok(plain(
            StatusCode::NOT_FOUND,
            format!(
                "{path}: not a stream URL (want /exec/TOKEN, /attach/TOKEN or /portforward/TOKEN)"
            ),
        ));
    };
    let headers = req.headers();
    if websocket::is_spdy(headers) {
        return Ok(plain(StatusCode::BAD_REQUEST, SPDY_REFUSED));
    }
    if !websocket::is_upgrade(headers) {
        return Ok(plain(
            StatusCode::BAD_REQUEST,
            format!("a WebSocket upgrade is required ({SPDY_REFUSED})"),
        ));
    }
    let Some(accept) = websocket::accept_key(headers) else {
        return Ok(plain(
            StatusCode::BAD_REQUEST,
            "Sec-WebSocket-Key missing or Sec-WebSocket-Version not 13",
        ));
    };
    let offered = websocket::offered(headers);
    let Some(request) = shim.streams.consume(token) else {
        return Ok(plain(
            StatusCode::NOT_FOUND,
            format!("stream token {token:?} is unknown, already used or expired (tokens are single-use and live 1 minute)"),
        ));
    };
    if request.kind() != kind {
        return Ok(plain(
            StatusCode::BAD_REQUEST,
            format!("the token is for {}, not {kind}", request.kind()),
        ));
    }
    let protocol = match websocket::negotiate(kind, &offered) {
        Ok(p) => p,
        Err(e) => return Ok(plain(StatusCode::BAD_REQUEST, e)),
    };
    let request = match request {
        StreamRequest::PortForward {
            sandbox_id,
            netns,
            ports,
        } => match port_forward::ports_from_query(req.uri().query(), ports) {
            Ok(ports) => StreamRequest::PortForward {
                sandbox_id,
                netns,
                ports,
            },
            Err(e) => return Ok(plain(StatusCode::BAD_REQUEST, e)),
        },
        other => other,
    };
    let upgrade = hyper::upgrade::on(&mut req);
    let span = tracing::info_span!("stream", kind, id = %request_id(&request));
    tokio::spawn(
        async move {
            let io = match upgrade.await {
                Ok(u) => TokioIo::new(u),
                Err(e) => {
                    tracing::warn!(error = %e, "upgrade failed");
                    return;
                }
            };
            let session = Session::new(io, protocol).await;
            tracing::debug!(protocol = protocol.unwrap_or(""), "stream started");
            match request {
                StreamRequest::Exec(r) => exec::run(shim, r, session).await,
                StreamRequest::Attach(r) => attach::run(shim, r, session).await,
                StreamRequest::PortForward {
                    sandbox_id,
                    netns,
                    ports,
                } => port_forward::run(sandbox_id, netns, ports, session).await,
            }
            tracing::debug!("stream ended");
        }
        .instrument(span),
    );
    let mut resp = Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header("upgrade", "websocket")
        .header("connection", "Upgrade")
        .header("sec-websocket-accept", accept);
    if let Some(p) = protocol {
        resp = resp.header("sec-websocket-protocol", p);
    }
    Ok(resp
        .body(Full::new(Bytes::new()))
        .expect("static response parts"))
}

fn request_id(r: &StreamRequest) -> String {
    match r {
        StreamRequest::Exec(e) => e.container_id.clone(),
        StreamRequest::Attach(a) => a.container_id.clone(),
        StreamRequest::PortForward { sandbox_id, .. } => sandbox_id.clone(),
    }
}
