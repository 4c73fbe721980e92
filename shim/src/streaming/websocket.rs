//! The Kubernetes WebSocket channel protocol on a stream: subprotocol negotiation, the 101
//! answer, and a [`Session`] that turns binary messages `[channel][data]` into [`Inbound`]
//! events and writes [`Outbound`] ones, so the exec/attach/port-forward sessions never see
//! WebSocket frames.
//!
//! A reader task owns the receiving half and a writer task the sending half; a client that
//! closes, breaks the connection or sends garbage ends the reader, which the session sees as
//! `recv() == None` and [`Session::gone`]. Messages are bounded ([`MAX_MESSAGE`]) and the inbound
//! queue is small, so a fast client is back-pressured instead of buffered.

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

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

/// What the client sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inbound {
    Data(u8, Bytes),
    /// v5: the client closed its side of this channel (stdin half-close).
    Close(u8),
}

/// The sending side; cheap to clone into the tasks that produce output.
#[derive(Debug, Clone)]
pub struct Outbound(mpsc::Sender<Message>);

impl Outbound {
    /// Sends `data` on `channel`; false once the connection is gone.
    pub async fn send(&self, channel: u8, data: &[u8]) -> bool {
        let mut m = Vec::with_capacity(data.len() + 1);
        m.push(channel);
        m.extend_from_slice(data);
        self.0.send(Message::Binary(m.into())).await.is_ok()
    }

    /// Sends a `metav1.Status` on the error channel (3).
    pub async fn status(&self, status: &serde_json::Value) -> bool {
        self.send(3, status.to_string().as_bytes()).await
    }
}

#[derive(Debug)]
pub struct Session {
    pub protocol: Option<&'static str>,
    pub out: Outbound,
    inbound: mpsc::Receiver<Inbound>,
    gone: watch::Receiver<bool>,
    reader: JoinHandle<()>,
    writer: JoinHandle<()>,
}

impl Session {
    /// Runs the protocol on an already upgraded connection.
    pub async fn new<S>(io: S, protocol: Option<&'static str>) -> Self
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let config = WebSocketConfig::default()
            .max_message_size(Some(MAX_MESSAGE))
            .max_frame_size(Some(MAX_MESSAGE));
        let ws = WebSocketStream::from_raw_socket(io, Role::Server, Some(config)).await;
        let (mut sink, mut stream) = ws.split();
        let (out_tx, mut out_rx) = mpsc::channel::<Message>(16);
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
            while let Some(m) = out_rx.recv().await {
                let last = matches!(m, Message::Close(_));
                if sink.send(m).await.is_err() || last {
                    break;
                }
            }
            let _ = sink.close().await;
        });
        Self {
            protocol,
            out: Outbound(out_tx),
            inbound,
            gone,
            reader,
            writer,
        }
    }

    /// Tells the client the stream is established, as the kubelet does: an empty message on
    /// the lowest output channel it asked for (stdout, else stderr, else the error channel).
    pub async fn announce(&self, stdout: bool, stderr: bool) {
        let channel = if stdout {
            1
        } else if stderr {
            2
        } else {
            3
        };
        self.out.send(channel, &[]).await;
    }

    /// The next event from the client; `None` once it is gone.
    pub async fn recv(&mut self) -> Option<Inbound> {
        self.inbound.recv().await
    }

    /// Resolves when the client has gone (closed or broke the connection).
    pub fn gone(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut g = self.gone.clone();
        async move {
            let _ = g.wait_for(|gone| *gone).await;
        }
    }

    /// Closes the connection normally once everything queued is written (bounded: a client
    /// that stops reading does not keep the session alive).
    pub async fn finish(self) {
        let Session {
            out,
            reader,
            writer,
            ..
        } = self;
        let _ = out
            .0
            .send(Message::Close(Some(CloseFrame {
                code: CloseCode::Normal,
                reason: "".into(),
            })))
            .await;
        drop(out);
        let limit = std::time::Duration::from_secs(5);
        let _ = tokio::time::timeout(limit, writer).await;
        // The client's close reply ends the reader; one that never answers is cut off.
        let abort = reader.abort_handle();
        if tokio::time::timeout(std::time::Duration::from_secs(1), reader)
            .await
            .is_err()
        {
            abort.abort();
        }
    }
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
