//! A terminal: the browser opens a WebSocket at `…/ns/NS/pods/NAME/exec?container=C&command=sh`,
//! and the dashboard opens `pods/exec` on the API server as the logged-in user
//! (`v5.channel.k8s.io`, tty, stdin and stdout), then relays frames both ways.
//!
//! The browser speaks the same channel framing (first byte of a binary message): it may send
//! only stdin (0) and resize (4, `{"Width":W,"Height":H}`, re-encoded here after bounds
//! checks); it receives stdout/stderr (1, 2) and the exit status (3, a `v1.Status`) as the
//! API server sent them, and text messages from the dashboard itself (`{"error": "403
//! Forbidden — …"}` when the API server refuses, `{"connected": true}` once attached).
//!
//! The upgrade is checked before anything is opened: same origin (the `Origin` header names
//! this host), and the session's CSRF token offered as a subprotocol `csrf.TOKEN` beside
//! `pea.terminal` (so it never appears in a URL). Bounds: one stream slot of the session,
//! messages of at most [`MAX_MESSAGE`] bytes, closed after [`IDLE`] without traffic, at
//! logout, or when the session ends.

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http_body_util::BodyExt;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;
use tracing::Instrument;

use crate::api::{self, ApiError};
use crate::html::seg;
use crate::{constant_time_eq, plain, Body, StreamSlot};

/// The subprotocol the page asks for.
pub const PROTOCOL: &str = "pea.terminal";
/// Kubernetes' streaming protocol with a resize channel and a close signal.
pub const K8S_PROTOCOL: &str = "v5.channel.k8s.io";
/// Largest message relayed either way.
pub const MAX_MESSAGE: usize = 256 * 1024;
/// A terminal with no traffic either way for this long is closed.
pub const IDLE: Duration = Duration::from_secs(30 * 60);
const MAX_ARGS: usize = 64;
const MAX_COMMAND: usize = 4096;

fn header<'a>(req: &'a Request<Bytes>, name: &str) -> &'a str {
    req.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

/// The `pods/exec` path for the page's choices, or what is wrong with them.
pub fn exec_path(ns: &str, pod: &str, query: &HashMap<String, String>) -> Result<String, String> {
    let container = query.get("container").map(String::as_str).unwrap_or("");
    let command = query.get("command").map(String::as_str).unwrap_or("sh");
    if command.len() > MAX_COMMAND {
        return Err(format!("command longer than {MAX_COMMAND} bytes"));
    }
    let args: Vec<&str> = command.split_whitespace().collect();
    if args.is_empty() {
        return Err("command is empty".into());
    }
    if args.len() > MAX_ARGS {
        return Err(format!("command has more than {MAX_ARGS} words"));
    }
    if container.len() > 253 {
        return Err("container name longer than 253 characters".into());
    }
    let mut path = format!("{}/exec?", api::PODS.path(Some(ns), Some(pod)));
    if !container.is_empty() {
        path.push_str(&format!("container={}&", seg(container)));
    }
    for a in &args {
        path.push_str(&format!("command={}&", seg(a)));
    }
    // A tty merges stderr into stdout (the API server refuses both).
    path.push_str("stdin=true&stdout=true&stderr=false&tty=true");
    Ok(path)
}

/// Checks the WebSocket upgrade and answers 101, then attaches in the background.
pub fn upgrade(
    req: &mut Request<Bytes>,
    slot: StreamSlot,
    csrf: &str,
    ns: &str,
    pod: &str,
    query: &HashMap<String, String>,
) -> Response<Body> {
    if !header(req, "upgrade").eq_ignore_ascii_case("websocket")
        || header(req, "sec-websocket-version") != "13"
    {
        return plain(
            400,
            "a terminal is a WebSocket (Upgrade: websocket, version 13): open the pod's terminal page",
        );
    }
    let key = header(req, "sec-websocket-key").to_string();
    if key.is_empty() || key.len() > 64 {
        return plain(400, "Sec-WebSocket-Key missing or too long");
    }
    // Browsers always send Origin on a WebSocket: it must be this host, whatever the scheme.
    let origin = header(req, "origin");
    let host = header(req, "host");
    let origin_host = origin.split_once("://").map(|(_, h)| h).unwrap_or("");
    if host.is_empty() || origin_host != host {
        tracing::info!(%origin, %host, "refused a cross-origin terminal");
        return plain(
            403,
            "the terminal must be opened from this dashboard's own pages",
        );
    }
    let offered: Vec<&str> = header(req, "sec-websocket-protocol")
        .split(',')
        .map(str::trim)
        .collect();
    let token = offered
        .iter()
        .find_map(|p| p.strip_prefix("csrf."))
        .unwrap_or("");
    if !offered.contains(&PROTOCOL) || !constant_time_eq(token.as_bytes(), csrf.as_bytes()) {
        tracing::info!("refused a terminal without the session's CSRF token");
        return plain(
            403,
            "CSRF token missing or wrong: reload the page and try again",
        );
    }
    let path = match exec_path(ns, pod, query) {
        Ok(p) => p,
        Err(e) => return plain(400, &e),
    };
    let on_upgrade = hyper::upgrade::on(req);
    let span = tracing::info_span!("terminal", pod = %format!("{ns}/{pod}"));
    tokio::spawn(
        async move {
            let upgraded = match on_upgrade.await {
                Ok(u) => u,
                Err(e) => {
                    tracing::info!(error = %e, "the browser's upgrade failed");
                    return;
                }
            };
            let browser = WebSocketStream::from_raw_socket(
                TokioIo::new(upgraded),
                Role::Server,
                Some(ws_config()),
            )
            .await;
            relay(slot, browser, &path).await;
        }
        .instrument(span),
    );
    let mut r = Response::new(http_body_util::Empty::new().map_err(|e| match e {}).boxed());
    *r.status_mut() = hyper::StatusCode::SWITCHING_PROTOCOLS;
    let h = r.headers_mut();
    h.insert(
        "connection",
        hyper::header::HeaderValue::from_static("upgrade"),
    );
    h.insert(
        "upgrade",
        hyper::header::HeaderValue::from_static("websocket"),
    );
    h.insert(
        "sec-websocket-protocol",
        hyper::header::HeaderValue::from_static(PROTOCOL),
    );
    if let Ok(v) = derive_accept_key(key.as_bytes()).parse() {
        h.insert("sec-websocket-accept", v);
    }
    r
}

fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .max_message_size(Some(MAX_MESSAGE))
        .max_frame_size(Some(MAX_MESSAGE))
}

type Browser = WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>;

fn note(key: &str, value: serde_json::Value) -> Message {
    Message::text(serde_json::json!({ key: value }).to_string())
}

async fn relay(slot: StreamSlot, mut browser: Browser, path: &str) {
    let upstream = match connect(&slot, path).await {
        Ok(u) => u,
        Err(e) => {
            tracing::info!(code = e.code, "the API server refused the terminal");
            let _ = browser
                .send(note("error", crate::views::error_line(&e).into()))
                .await;
            let _ = browser.close(None).await;
            return;
        }
    };
    let _ = browser.send(note("connected", true.into())).await;
    let (mut up_tx, mut up_rx) = upstream.split();
    let (mut br_tx, mut br_rx) = browser.split();
    let mut ended = slot.session.ended.subscribe();
    let lifetime = tokio::time::sleep(slot.remaining());
    tokio::pin!(lifetime);
    let idle = tokio::time::sleep(IDLE);
    tokio::pin!(idle);
    let why = loop {
        tokio::select! {
            m = br_rx.next() => {
                let m = match m {
                    Some(Ok(m)) => m,
                    _ => break "the browser closed the terminal",
                };
                idle.as_mut().reset(tokio::time::Instant::now() + IDLE);
                let forward = match m {
                    Message::Binary(b) => match from_browser(&b) {
                        Some(f) => f,
                        None => {
                            let _ = br_tx.send(note("error", "the page sent a frame other than stdin or resize".into())).await;
                            break "a bad frame from the page";
                        }
                    },
                    Message::Close(_) => break "the browser closed the terminal",
                    _ => continue,
                };
                if up_tx.send(Message::Binary(forward)).await.is_err() {
                    break "the API server closed the stream";
                }
            }
            m = up_rx.next() => {
                let m = match m {
                    Some(Ok(m)) => m,
                    Some(Err(e)) => {
                        tracing::info!(error = %e, "the exec stream failed");
                        break "the exec stream failed";
                    }
                    None => break "the command ended",
                };
                idle.as_mut().reset(tokio::time::Instant::now() + IDLE);
                let out = match m {
                    Message::Binary(b) if matches!(b.first(), Some(1..=3)) => b,
                    Message::Close(_) => break "the command ended",
                    _ => continue,
                };
                if br_tx.send(Message::Binary(out)).await.is_err() {
                    break "the browser went away";
                }
            }
            _ = ended.changed() => break "logged out",
            _ = &mut lifetime => break "the session ended",
            _ = &mut idle => break "idle for too long",
        }
    };
    tracing::info!(why, "terminal closed");
    let _ = br_tx.send(note("closed", why.into())).await;
    let _ = br_tx.close().await;
    let _ = up_tx.close().await;
}

/// What the page may send, checked and re-encoded: stdin as is, a resize with sane numbers.
fn from_browser(frame: &[u8]) -> Option<Bytes> {
    match frame.split_first()? {
        (0, _) => Some(Bytes::copy_from_slice(frame)),
        (4, json) => {
            let v: serde_json::Value = serde_json::from_slice(json).ok()?;
            let dim = |k: &str| {
                v.get(k)
                    .and_then(serde_json::Value::as_u64)
                    .filter(|n| (1..=1000).contains(n))
            };
            let (w, h) = (dim("Width")?, dim("Height")?);
            let mut out = vec![4u8];
            out.extend_from_slice(format!("{{\"Width\":{w},\"Height\":{h}}}").as_bytes());
            Some(Bytes::from(out))
        }
        _ => None,
    }
}

type Upstream = WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>;

/// Opens `pods/exec` as the session's user (kube's client carries their credentials and
/// trusts the cluster CA); a refusal comes back as the API server's status.
async fn connect(slot: &StreamSlot, path: &str) -> Result<Upstream, ApiError> {
    let key = tokio_tungstenite::tungstenite::handshake::client::generate_key();
    let req = Request::get(path)
        .header("connection", "Upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-version", "13")
        .header("sec-websocket-key", &key)
        .header("sec-websocket-protocol", K8S_PROTOCOL)
        .body(kube::client::Body::from(Vec::new()))
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let res = slot.session.streams_api.client.send(req).await?;
    if res.status() != hyper::StatusCode::SWITCHING_PROTOCOLS {
        let code = res.status().as_u16();
        let body = http_body_util::Limited::new(res.into_body(), 64 * 1024)
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        return Err(ApiError::from_status_body(code, &body));
    }
    let accept = res
        .headers()
        .get("sec-websocket-accept")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if accept != derive_accept_key(key.as_bytes()) {
        return Err(ApiError::bad_gateway(
            "the API server's WebSocket answer has a wrong Sec-WebSocket-Accept".into(),
        ));
    }
    let proto = res
        .headers()
        .get("sec-websocket-protocol")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if proto != K8S_PROTOCOL {
        return Err(ApiError::bad_gateway(format!(
            "the API server chose streaming protocol {proto:?}, not {K8S_PROTOCOL}"
        )));
    }
    let upgraded = hyper::upgrade::on(res)
        .await
        .map_err(|e| ApiError::bad_gateway(format!("upgrading the exec stream: {e}")))?;
    Ok(
        WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Client, Some(ws_config()))
            .await,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exec_paths() {
        let q: HashMap<String, String> = [("command", "sh -c  id"), ("container", "c")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(
            exec_path("a", "p", &q).unwrap(),
            "/api/v1/namespaces/a/pods/p/exec?container=c&command=sh&command=-c&command=id&stdin=true&stdout=true&stderr=false&tty=true"
        );
        let empty: HashMap<String, String> = [("command".to_string(), "  ".to_string())].into();
        assert_eq!(exec_path("a", "p", &empty).unwrap_err(), "command is empty");
    }

    #[test]
    fn only_stdin_and_resize_pass() {
        assert_eq!(from_browser(b"\x00ls\r").as_deref(), Some(&b"\x00ls\r"[..]));
        assert_eq!(
            from_browser(b"\x04{\"Width\":80,\"Height\":24,\"x\":1}").as_deref(),
            Some(&b"\x04{\"Width\":80,\"Height\":24}"[..])
        );
        assert_eq!(from_browser(b"\x04{\"Width\":0,\"Height\":24}"), None);
        assert_eq!(from_browser(b"\x01out"), None);
        assert_eq!(from_browser(b"\xffclose"), None);
        assert_eq!(from_browser(b""), None);
    }
}
