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

use super::spdy_port_forward::{self, Target};
use super::spdy_remotecommand::{self, Expect};
use super::websocket;
use super::{attach, exec, port_forward, tunnel, StreamRequest};
use crate::Shim;

/// What is spoken besides WebSocket (said when neither upgrade was asked for).
pub const ALSO_SPDY: &str = "or \"Upgrade: SPDY/3.1\" with X-Stream-Protocol-Version";

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
        return Ok(spdy_upgrade(shim, kind, token, req));
    }
    if !websocket::is_upgrade(headers) {
        return Ok(plain(
            StatusCode::BAD_REQUEST,
            format!("a WebSocket upgrade is required ({ALSO_SPDY})"),
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
    let tunnelled = protocol == Some(websocket::SPDY_TUNNEL_PORT_FORWARD);
    let request = match request {
        // SPDY names its ports per stream; the request's, if any, bound them.
        StreamRequest::PortForward {
            sandbox_id,
            netns,
            ports,
        } if tunnelled => match granted_ports(req.uri().query(), ports) {
            Ok(ports) => StreamRequest::PortForward {
                sandbox_id,
                netns,
                ports,
            },
            Err(e) => return Ok(plain(StatusCode::BAD_REQUEST, e)),
        },
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
            if let (
                true,
                StreamRequest::PortForward {
                    sandbox_id,
                    netns,
                    ports,
                },
            ) = (tunnelled, &request)
            {
                let target = Target {
                    sandbox_id: sandbox_id.clone(),
                    netns: netns.clone(),
                    ports: ports.clone(),
                };
                tracing::debug!("SPDY-in-WebSocket port-forward started");
                spdy_port_forward::serve(tunnel::byte_stream(io).await, target).await;
                tracing::debug!("stream ended");
                return;
            }
            let session = websocket::session(io, protocol).await;
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

/// The ports a SPDY port-forward may reach: the URL's or the CRI request's; none named means
/// any (kubectl's SPDY request names none; each stream says its port).
fn granted_ports(query: Option<&str>, cri: Vec<u16>) -> Result<Vec<u16>, String> {
    let named = form_urlencoded::parse(query.unwrap_or("").as_bytes()).any(|(k, _)| k == "port");
    if !named && cri.is_empty() {
        return Ok(Vec::new());
    }
    port_forward::ports_from_query(query, cri)
}

/// `Upgrade: SPDY/3.1`: port-forward with `X-Stream-Protocol-Version: portforward.k8s.io`
/// (kubectl's port-forward, and its fallback when the WebSocket tunnel is refused), exec and
/// attach with remotecommand's versions (crictl, kubectl with WebSockets turned off).
fn spdy_upgrade(
    shim: Arc<Shim>,
    kind: &str,
    token: &str,
    mut req: Request<Incoming>,
) -> Response<Full<Bytes>> {
    let headers = req.headers();
    let upgrade_ok = headers
        .get("upgrade")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("SPDY/3.1"));
    let connection_ok = headers.get_all("connection").iter().any(|v| {
        v.to_str().is_ok_and(|v| {
            v.split(',')
                .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
        })
    });
    if !upgrade_ok || !connection_ok {
        return plain(
            StatusCode::BAD_REQUEST,
            "want \"Upgrade: SPDY/3.1\" and \"Connection: Upgrade\" (only SPDY/3.1 is spoken)",
        );
    }
    let offered: Vec<String> = headers
        .get_all("x-stream-protocol-version")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|p| p.trim().to_string())
        .filter(|p| !p.is_empty())
        .collect();
    let protocol = if kind == "portforward" {
        if !offered.iter().any(|p| p == spdy_port_forward::PROTOCOL) {
            // The kubelet's answer to a failed negotiation (httpstream.Handshake).
            return plain(
                StatusCode::FORBIDDEN,
                format!(
                    "unable to upgrade: unable to negotiate protocol: client supports {offered:?}, server supports [{:?}]",
                    spdy_port_forward::PROTOCOL
                ),
            );
        }
        Some(spdy_port_forward::PROTOCOL)
    } else {
        match spdy_remotecommand::negotiate(&offered) {
            Ok(p) => p,
            Err(e) => return plain(StatusCode::FORBIDDEN, e),
        }
    };
    let Some(request) = shim.streams.consume(token) else {
        return plain(
            StatusCode::NOT_FOUND,
            format!("stream token {token:?} is unknown, already used or expired (tokens are single-use and live 1 minute)"),
        );
    };
    if request.kind() != kind {
        return plain(
            StatusCode::BAD_REQUEST,
            format!("the token is for {}, not {kind}", request.kind()),
        );
    }
    let request = match request {
        StreamRequest::PortForward {
            sandbox_id,
            netns,
            ports,
        } => match granted_ports(req.uri().query(), ports) {
            Ok(ports) => StreamRequest::PortForward {
                sandbox_id,
                netns,
                ports,
            },
            Err(e) => return plain(StatusCode::BAD_REQUEST, e),
        },
        other => other,
    };
    let upgrade = hyper::upgrade::on(&mut req);
    let span = tracing::info_span!(
        "stream",
        kind,
        id = %request_id(&request),
        protocol = protocol.unwrap_or(spdy_remotecommand::V1),
        transport = "SPDY/3.1"
    );
    tokio::spawn(
        async move {
            let io = match upgrade.await {
                Ok(u) => TokioIo::new(u),
                Err(e) => return tracing::warn!(error = %e, "upgrade failed"),
            };
            tracing::debug!("SPDY stream started");
            match request {
                StreamRequest::PortForward {
                    sandbox_id,
                    netns,
                    ports,
                } => {
                    let target = Target {
                        sandbox_id,
                        netns,
                        ports,
                    };
                    spdy_port_forward::serve(io, target).await
                }
                StreamRequest::Exec(r) => {
                    let expect = Expect {
                        stdin: r.stdin,
                        stdout: r.stdout,
                        stderr: r.stderr,
                        tty: r.tty,
                    };
                    if let Some(s) = spdy_remotecommand::session(io, protocol, expect).await {
                        exec::run(shim, r, s).await
                    }
                }
                StreamRequest::Attach(r) => {
                    let expect = Expect {
                        stdin: r.stdin,
                        stdout: r.stdout,
                        stderr: r.stderr,
                        tty: r.tty,
                    };
                    if let Some(s) = spdy_remotecommand::session(io, protocol, expect).await {
                        attach::run(shim, r, s).await
                    }
                }
            }
            tracing::debug!("stream ended");
        }
        .instrument(span),
    );
    let mut resp = Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header("connection", "Upgrade")
        .header("upgrade", "SPDY/3.1");
    if let Some(p) = protocol {
        resp = resp.header("x-stream-protocol-version", p);
    }
    resp.body(Full::new(Bytes::new()))
        .expect("static response parts")
}

fn request_id(r: &StreamRequest) -> String {
    match r {
        StreamRequest::Exec(e) => e.container_id.clone(),
        StreamRequest::Attach(a) => a.container_id.clone(),
        StreamRequest::PortForward { sandbox_id, .. } => sandbox_id.clone(),
    }
}
