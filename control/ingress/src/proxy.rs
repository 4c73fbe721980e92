//! The data path: one hyper service per client connection (HTTP/1.1 or HTTP/2, cleartext or TLS)
//! that routes by host and path, picks a ready endpoint round-robin (the next one when a connect
//! fails), forwards as HTTP/1.1 over a small keep-alive pool, and passes upgrades (WebSocket)
//! through as a byte tunnel.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{combinators::BoxBody, BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper::header::{HeaderMap, HeaderName, HeaderValue, CONNECTION, HOST, UPGRADE};
use hyper::{Request, Response, StatusCode, Uri, Version};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tracing::{debug, warn};

use crate::routes::Backend;
use crate::state::State;

pub type Body = BoxBody<Bytes, hyper::Error>;

/// Endpoints tried per request when connecting fails.
const CONNECT_ATTEMPTS: usize = 3;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Idle keep-alive connections kept per endpoint.
const POOL_PER_ENDPOINT: usize = 128;

/// Idle HTTP/1.1 connections to endpoints.
#[derive(Debug, Default)]
pub struct Pool {
    idle: Mutex<HashMap<SocketAddr, Vec<SendRequest<Incoming>>>>,
    next: AtomicUsize,
}

impl Pool {
    fn checkout(&self, addr: SocketAddr) -> Option<SendRequest<Incoming>> {
        let mut idle = self.idle.lock().expect("pool lock");
        let list = idle.get_mut(&addr)?;
        while let Some(s) = list.pop() {
            if s.is_ready() && !s.is_closed() {
                return Some(s);
            }
        }
        None
    }

    fn checkin(self: &Arc<Self>, addr: SocketAddr, mut sender: SendRequest<Incoming>) {
        let pool = self.clone();
        // The connection is busy until the response body has been read; back into the pool
        // once it can take the next request.
        tokio::spawn(async move {
            if sender.ready().await.is_ok() {
                let mut idle = pool.idle.lock().expect("pool lock");
                let list = idle.entry(addr).or_default();
                if list.len() < POOL_PER_ENDPOINT {
                    list.push(sender);
                }
            }
        });
    }
}

fn text(status: StatusCode, msg: &str) -> Response<Body> {
    let mut r = Response::new(
        Full::new(Bytes::from(format!("{msg}\n")))
            .map_err(|never| match never {})
            .boxed(),
    );
    *r.status_mut() = status;
    r
}

/// Hop-by-hop headers (RFC 9110 7.6.1) a proxy must not forward, plus those the Connection
/// header names.
fn strip_hop_by_hop(h: &mut HeaderMap) {
    let named: Vec<HeaderName> = h
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    for n in named {
        h.remove(n);
    }
    for n in [
        "connection",
        "keep-alive",
        "proxy-connection",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    ] {
        h.remove(n);
    }
}

fn is_upgrade<B>(req: &Request<B>) -> bool {
    req.headers()
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| {
            v.split(',')
                .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
        })
        && req.headers().contains_key(UPGRADE)
}

async fn connect(addr: SocketAddr, upgrades: bool) -> std::io::Result<SendRequest<Incoming>> {
    let tcp = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"))??;
    let _ = tcp.set_nodelay(true);
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .map_err(std::io::Error::other)?;
    tokio::spawn(async move {
        let r = if upgrades {
            conn.with_upgrades().await
        } else {
            conn.await
        };
        if let Err(e) = r {
            debug!(%addr, error = %e, "backend connection");
        }
    });
    Ok(sender)
}

/// Handles one request from a client at `peer`; `https` says which listener it came in on.
pub async fn handle(
    state: Arc<State>,
    peer: SocketAddr,
    https: bool,
    mut req: Request<Incoming>,
) -> Result<Response<Body>, hyper::Error> {
    let host = req
        .uri()
        .host()
        .map(str::to_string)
        .or_else(|| {
            req.headers()
                .get(HOST)
                .and_then(|h| h.to_str().ok())
                .map(|h| {
                    h.rsplit_once(':')
                        .map_or(h, |(n, p)| {
                            if p.chars().all(|c| c.is_ascii_digit()) {
                                n
                            } else {
                                h
                            }
                        })
                        .to_string()
                })
        })
        .unwrap_or_default();
    let path = req.uri().path().to_string();
    let table = state.table();
    let Some(backend) = table.route(&host, &path) else {
        return Ok(text(StatusCode::NOT_FOUND, "no ingress rule matches"));
    };
    if backend.endpoints.is_empty() {
        return Ok(text(
            StatusCode::SERVICE_UNAVAILABLE,
            &format!("no ready endpoints for {}", backend.name),
        ));
    }
    let backend: Backend = backend.clone();
    drop(table);

    let upgrade = is_upgrade(&req);
    let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
    let upgrade_headers = upgrade.then(|| {
        (
            req.headers().get(CONNECTION).cloned(),
            req.headers().get(UPGRADE).cloned(),
        )
    });

    // The request as the backend sees it: origin-form, HTTP/1.1, Host kept, X-Forwarded-*.
    let orig_host = req.headers().get(HOST).cloned().or_else(|| {
        req.uri()
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
    });
    let pq = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "/".into());
    *req.uri_mut() = pq.parse::<Uri>().unwrap_or_else(|_| Uri::from_static("/"));
    *req.version_mut() = Version::HTTP_11;
    let headers = req.headers_mut();
    strip_hop_by_hop(headers);
    if let Some(h) = orig_host.clone() {
        headers.insert(HOST, h.clone());
        headers.insert("x-forwarded-host", h);
    }
    let xff = match headers.get("x-forwarded-for").and_then(|v| v.to_str().ok()) {
        Some(prev) => format!("{prev}, {}", peer.ip()),
        None => peer.ip().to_string(),
    };
    if let Ok(v) = HeaderValue::from_str(&xff) {
        headers.insert("x-forwarded-for", v);
    }
    headers.insert(
        "x-forwarded-proto",
        HeaderValue::from_static(if https { "https" } else { "http" }),
    );
    if let Some((conn, up)) = upgrade_headers {
        if let (Some(c), Some(u)) = (conn, up) {
            headers.insert(CONNECTION, c);
            headers.insert(UPGRADE, u);
        }
    }

    // Round-robin over ready endpoints; on connect failure the next one.
    let n = backend.endpoints.len();
    let start = state.pool.next.fetch_add(1, Ordering::Relaxed);
    let mut sender = None;
    for i in 0..n.min(CONNECT_ATTEMPTS) {
        let addr = backend.endpoints[(start + i) % n];
        if !upgrade {
            if let Some(s) = state.pool.checkout(addr) {
                sender = Some((addr, s));
                break;
            }
        }
        match connect(addr, upgrade).await {
            Ok(s) => {
                sender = Some((addr, s));
                break;
            }
            Err(e) => {
                warn!(backend = %backend.name, endpoint = %addr, error = %e, "connect to endpoint failed; trying the next")
            }
        }
    }
    let Some((addr, mut sender)) = sender else {
        return Ok(text(
            StatusCode::BAD_GATEWAY,
            &format!("no endpoint of {} accepted a connection", backend.name),
        ));
    };
    let fut = sender.send_request(req);
    if !upgrade {
        state.pool.checkin(addr, sender);
    }
    let mut resp = match fut.await {
        Ok(r) => r,
        Err(e) => {
            warn!(backend = %backend.name, endpoint = %addr, error = %e, "backend request failed");
            return Ok(text(
                StatusCode::BAD_GATEWAY,
                &format!("backend {addr}: {e}"),
            ));
        }
    };
    if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
        if let Some(client_upgrade) = client_upgrade {
            let backend_upgrade = hyper::upgrade::on(&mut resp);
            tokio::spawn(async move {
                match (client_upgrade.await, backend_upgrade.await) {
                    (Ok(c), Ok(b)) => {
                        let (mut c, mut b) = (TokioIo::new(c), TokioIo::new(b));
                        let _ = tokio::io::copy_bidirectional(&mut c, &mut b).await;
                    }
                    (c, b) => debug!(
                        client_ok = c.is_ok(),
                        backend_ok = b.is_ok(),
                        "upgrade failed"
                    ),
                }
            });
            let (parts, body) = resp.into_parts();
            return Ok(Response::from_parts(parts, body.boxed()));
        }
    }
    strip_hop_by_hop(resp.headers_mut());
    let (parts, body) = resp.into_parts();
    Ok(Response::from_parts(parts, body.boxed()))
}
