//! The Kubernetes WebSocket channel protocol on a stream: subprotocol negotiation, the 101
//! answer, and a [`Session`] that turns binary messages `[channel][data]` into [`Inbound`]
//! events and writes [`Out`] ones, so the exec/attach/port-forward sessions never see
//! WebSocket frames.
//!
//! A reader task owns the receiving half and a writer task the sending half; a client that
//! closes, breaks the connection or sends garbage ends the reader, which the session sees as
//! `recv() == None` and [`Session::gone`]. Messages are bounded ([`MAX_MESSAGE`]) and the inbound
//! queue is small, so a fast client is back-pressured instead of buffered.

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{mpsc, watch};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use super::session::{Inbound, Out, Parts, Session};

/// exec/attach with the stream-close signal (kubectl ≥ 1.30's first choice).
pub const V5: &str = "v5.channel.k8s.io";
/// exec/attach (error channel carries a Status), and port-forward's framing.
pub const V4: &str = "v4.channel.k8s.io";
/// What kubectl ≥ 1.31 offers for port-forward: SPDY frames tunnelled in WebSocket messages.
pub const SPDY_TUNNEL_PORT_FORWARD: &str = "SPDY/3.1+portforward.k8s.io";

/// v5's "close this channel" message: `[255, channel]`.
pub const CLOSE_SIGNAL: u8 = 255;

/// The largest message a client may send (stdin and port-forward chunks are ≤ 32 KiB).
pub const MAX_MESSAGE: usize = 4 << 20;

/// The subprotocols a request offers, in its order (every `Sec-WebSocket-Protocol` header,
/// comma-separated lists split).
pub fn offered(headers: &hyper::HeaderMap) -> Vec<String> {
    headers
        .get_all("sec-websocket-protocol")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|p| p.trim().to_string())
        .filter(|p| !p.is_empty())
        .collect()
}

/// Picks the subprotocol for `kind` from what the client offered; `Ok(None)` means none
/// (allowed for port-forward, as the kubelet allows). The error says what is supported.
pub fn negotiate(kind: &str, offered: &[String]) -> Result<Option<&'static str>, String> {
    let has = |p: &str| offered.iter().any(|o| o == p);
    let wanted: &[&'static str] = if kind == "portforward" {
        &[V4, SPDY_TUNNEL_PORT_FORWARD]
    } else {
        &[V5, V4]
    };
    if let Some(p) = wanted.iter().find(|p| has(p)) {
        return Ok(Some(p));
    }
    if kind == "portforward" && offered.is_empty() {
        return Ok(None);
    }
    Err(format!(
        "none of the offered subprotocols {offered:?} is supported for {kind}; supported: {}",
        wanted.join(", ")
    ))
}

/// Whether the request asks for a WebSocket upgrade.
pub fn is_upgrade(headers: &hyper::HeaderMap) -> bool {
    let has_token = |name: &str, token: &str| {
        headers.get_all(name).iter().any(|v| {
            v.to_str()
                .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
        })
    };
    has_token("upgrade", "websocket") && has_token("connection", "upgrade")
}

/// Whether the request asks for SPDY (`Upgrade: SPDY/3.1`).
pub fn is_spdy(headers: &hyper::HeaderMap) -> bool {
    headers
        .get("upgrade")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().to_ascii_uppercase().starts_with("SPDY/"))
}

/// `Sec-WebSocket-Accept` for the request's key.
pub fn accept_key(headers: &hyper::HeaderMap) -> Option<String> {
    let key = headers.get("sec-websocket-key")?;
    let version = headers.get("sec-websocket-version")?;
    (version.as_bytes() == b"13")
        .then(|| tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes()))
}

/// Runs the protocol on an already upgraded connection: a reader task turns binary messages
/// `[channel][data]` (and v5's close signal) into [`Inbound`] events, a writer task encodes
/// [`Out`] as messages (the status on channel 3, `Out::Close` as a normal close).
pub async fn session<S>(io: S, protocol: Option<&'static str>) -> Session
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let config = WebSocketConfig::default()
        .max_message_size(Some(MAX_MESSAGE))
        .max_frame_size(Some(MAX_MESSAGE));
    let ws = WebSocketStream::from_raw_socket(io, Role::Server, Some(config)).await;
    let (mut sink, mut stream) = ws.split();
    let (out_tx, mut out_rx) = mpsc::channel::<Out>(16);
    let (in_tx, inbound) = mpsc::channel(16);
    let (gone_tx, gone) = watch::channel(false);
    let close_signal = protocol == Some(V5);
    let reader = tokio::spawn(async move {
        while let Some(Ok(msg)) = stream.next().await {
            let data = match msg {
                Message::Binary(b) => b,
                Message::Close(_) => break,
                // Ping/pong are answered by tungstenite; text (the base64 protocols) is
                // not spoken here and was not negotiated.
                _ => continue,
            };
            let event = match data.first() {
                None => continue,
                Some(&CLOSE_SIGNAL) if close_signal => match data.get(1) {
                    Some(&ch) if data.len() == 2 => Inbound::Close(ch),
                    _ => {
                        tracing::debug!("malformed close signal; ending the stream");
                        break;
                    }
                },
                Some(&ch) => Inbound::Data(ch, data.slice(1..)),
            };
            if in_tx.send(event).await.is_err() {
                break;
            }
        }
        let _ = gone_tx.send(true);
    });
    let writer = tokio::spawn(async move {
        while let Some(out) = out_rx.recv().await {
            let (m, last) = match out {
                Out::Data(ch, data) => {
                    let mut m = Vec::with_capacity(data.len() + 1);
                    m.push(ch);
                    m.extend_from_slice(&data);
                    (Message::Binary(m.into()), false)
                }
                Out::Status(status) => {
                    let mut m = vec![3u8];
                    m.extend_from_slice(status.to_string().as_bytes());
                    (Message::Binary(m.into()), false)
                }
                Out::Close => (
                    Message::Close(Some(CloseFrame {
                        code: CloseCode::Normal,
                        reason: "".into(),
                    })),
                    true,
                ),
            };
            if sink.send(m).await.is_err() || last {
                break;
            }
        }
        let _ = sink.close().await;
    });
    Session::from_parts(Parts {
        protocol,
        out: out_tx,
        inbound,
        gone,
        reader,
        writer,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn subprotocols_follow_the_kubelet_s_choices() {
        assert_eq!(negotiate("exec", &v(&[V4, V5])), Ok(Some(V5)));
        assert_eq!(negotiate("attach", &v(&[V4])), Ok(Some(V4)));
        let e = negotiate("exec", &v(&["channel.k8s.io"])).unwrap_err();
        assert!(e.contains("v5.channel.k8s.io, v4.channel.k8s.io"), "{e}");
        assert!(negotiate("exec", &[]).is_err());
        assert_eq!(negotiate("portforward", &[]), Ok(None));
        assert_eq!(negotiate("portforward", &v(&[V4])), Ok(Some(V4)));
        assert_eq!(
            negotiate("portforward", &v(&[SPDY_TUNNEL_PORT_FORWARD])),
            Ok(Some(SPDY_TUNNEL_PORT_FORWARD))
        );
    }

    #[test]
    fn upgrade_headers_are_recognised() {
        let mut h = hyper::HeaderMap::new();
        h.insert("upgrade", "websocket".parse().unwrap());
        h.insert("connection", "keep-alive, Upgrade".parse().unwrap());
        h.insert(
            "sec-websocket-protocol",
            "v5.channel.k8s.io, v4.channel.k8s.io".parse().unwrap(),
        );
        assert!(is_upgrade(&h));
        assert!(!is_spdy(&h));
        assert_eq!(offered(&h), v(&[V5, V4]));
        assert_eq!(accept_key(&h), None, "no key");
        h.insert(
            "sec-websocket-key",
            "dGhlIHNhbXBsZSBub25jZQ==".parse().unwrap(),
        );
        h.insert("sec-websocket-version", "13".parse().unwrap());
        // RFC 6455's example.
        assert_eq!(
            accept_key(&h).as_deref(),
            Some("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
        );
        h.insert("upgrade", "SPDY/3.1".parse().unwrap());
        assert!(is_spdy(&h) && !is_upgrade(&h));
    }
}
