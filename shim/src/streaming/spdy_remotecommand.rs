//! exec and attach over SPDY/3.1 (remotecommand), as the kubelet's streaming server serves
//! crictl, kubectl with `KUBECTL_REMOTE_COMMAND_WEBSOCKETS=false` and older clients.
//!
//! After `Upgrade: SPDY/3.1` the protocol is the first of the client's
//! `X-Stream-Protocol-Version`s the server speaks ([`negotiate`]; none offered means the
//! legacy `channel.k8s.io`). The client then opens one stream per channel, named by its
//! `streamType` header: `error` always, `stdin`/`stdout`/`stderr` as the CRI request asked, and
//! `resize` for a tty from v3 on. Each gets a SYN_REPLY as it comes (the client waits for it);
//! once all are there the session runs as over WebSocket ([`super::session`]): stdin DATA is
//! channel 0 and its FIN closes the process's stdin, resize DATA is a series of JSON
//! `{"Width":W,"Height":H}` objects each ended by a newline (Go's json.Encoder), output goes
//! out as DATA on stdout/stderr. At the end the error stream carries the outcome — v4 a
//! `metav1.Status` JSON (exit code in its causes, which kubectl turns into its own exit code),
//! earlier versions the message of a failure only — then every stream gets a FIN and the
//! connection a GOAWAY, as the kubelet's `conn.Close()`.
//!
//! Hostile input is bounded: a stream with another `streamType`, one asked twice or not asked
//! for gets RST_STREAM; a malformed or oversized frame, stream IDs out of order, more than
//! [`MAX_STREAMS`] streams, or streams still missing after [`STREAM_CREATION_TIMEOUT`] end the
//! connection with GOAWAY before anything is started. A client that goes away ends the
//! session, which kills what it started.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::session::{Inbound, Out, Parts, Session};
use super::spdy::{self, goaway, rst, Frame, FrameReader};

/// The remotecommand protocols, in the kubelet's order of preference.
pub const V4: &str = "v4.channel.k8s.io";
pub const V3: &str = "v3.channel.k8s.io";
pub const V2: &str = "v2.channel.k8s.io";
pub const V1: &str = "channel.k8s.io";
pub const PROTOCOLS: [&str; 4] = [V4, V3, V2, V1];

/// The kubelet's streamCreationTimeout.
pub const STREAM_CREATION_TIMEOUT: Duration = Duration::from_secs(30);

/// SYN_STREAMs per connection (a session needs at most five).
pub const MAX_STREAMS: usize = 16;

/// Frames a client may send before its streams are all open (clients send none).
const MAX_EARLY_FRAMES: usize = 16;

/// Resize bytes buffered without a newline before the resize stream is reset.
const MAX_RESIZE_MESSAGE: usize = 4096;

/// The first protocol the client offered that is spoken here (httpstream.Handshake's rule);
/// `Ok(None)` when it offered none (then `channel.k8s.io`, and no header in the answer).
pub fn negotiate(offered: &[String]) -> Result<Option<&'static str>, String> {
    if offered.is_empty() {
        return Ok(None);
    }
    offered
        .iter()
        .find_map(|o| PROTOCOLS.iter().find(|p| *p == o).copied())
        .map(Some)
        .ok_or_else(|| {
            format!(
                "unable to upgrade: unable to negotiate protocol: client supports {offered:?}, server supports {PROTOCOLS:?}"
            )
        })
}

/// The streams a request asks for (besides `error`, always there).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expect {
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    pub tty: bool,
}

/// The open streams by their IDs.
#[derive(Debug, Default, Clone, Copy)]
struct Streams {
    error: Option<u32>,
    stdin: Option<u32>,
    stdout: Option<u32>,
    stderr: Option<u32>,
    resize: Option<u32>,
}

impl Streams {
    fn slot(&mut self, kind: &str) -> Option<&mut Option<u32>> {
        Some(match kind {
            "error" => &mut self.error,
            "stdin" => &mut self.stdin,
            "stdout" => &mut self.stdout,
            "stderr" => &mut self.stderr,
            "resize" => &mut self.resize,
            _ => return None,
        })
    }

    fn all(&self) -> impl Iterator<Item = u32> {
        [
            self.stdout,
            self.stderr,
            self.error,
            self.stdin,
            self.resize,
        ]
        .into_iter()
        .flatten()
    }
}

/// What one protocol version does.
#[derive(Debug, Clone, Copy)]
struct Version {
    name: &'static str,
    resize: bool,
    json_status: bool,
}

impl Version {
    fn of(name: Option<&'static str>) -> Self {
        let name = name.unwrap_or(V1);
        Self {
            name,
            resize: matches!(name, V4 | V3),
            json_status: name == V4,
        }
    }

    fn wants(&self, e: &Expect, kind: &str) -> bool {
        match kind {
            "error" => true,
            "stdin" => e.stdin,
            "stdout" => e.stdout,
            "stderr" => e.stderr,
            "resize" => e.tty && self.resize,
            _ => false,
        }
    }

    fn count(&self, e: &Expect) -> usize {
        ["error", "stdin", "stdout", "stderr", "resize"]
            .iter()
            .filter(|k| self.wants(e, k))
            .count()
    }

    /// What the error stream carries for `status`: v4 the Status, before that the message of
    /// a failure (success is silence).
    fn status_bytes(&self, status: &serde_json::Value) -> Option<Bytes> {
        if self.json_status {
            return Some(Bytes::from(status.to_string()));
        }
        (status["status"] != "Success").then(|| {
            Bytes::from(
                status["message"]
                    .as_str()
                    .unwrap_or("unknown error")
                    .to_string(),
            )
        })
    }
}

/// The handshake's bookkeeping, carried into the session's reader (apart from the frame
/// reader, so that borrowing it across awaits asks nothing of the connection's type).
struct Conn {
    frames: mpsc::Sender<Frame>,
    streams: Streams,
    last_id: u32,
    opened: usize,
}

impl Conn {
    async fn send(&self, f: Frame) {
        let _ = self.frames.send(f).await;
    }

    async fn go_away(&self, why: &str) {
        tracing::debug!(why, "SPDY protocol error; sending GOAWAY");
        self.send(Frame::GoAway {
            last_good: self.last_id,
            status: goaway::PROTOCOL_ERROR,
        })
        .await;
    }

    async fn reset(&self, id: u32, status: u32, why: &str) {
        tracing::debug!(id, status, why, "resetting SPDY stream");
        self.send(Frame::RstStream { id, status }).await;
    }

    /// Checks a new stream's ID and the stream budget; false (after a GOAWAY) ends the
    /// connection.
    async fn admit(&mut self, id: u32) -> bool {
        // Client streams are odd and increasing (SPDY/3 §2.3.2).
        if id % 2 == 0 || id <= self.last_id {
            self.go_away("stream ID out of order").await;
            return false;
        }
        self.last_id = id;
        self.opened += 1;
        if self.opened > MAX_STREAMS {
            self.go_away("too many streams").await;
            return false;
        }
        true
    }
}

/// Runs the stream handshake on an upgraded connection and returns the session, or `None`
/// when the client broke the protocol or left first (the connection is then closed).
pub async fn session<S>(io: S, protocol: Option<&'static str>, expect: Expect) -> Option<Session>
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let version = Version::of(protocol);
    let (rd, wr) = tokio::io::split(io);
    let (frames, writer) = spdy::spawn_writer(wr);
    let mut reader = FrameReader::new(rd);
    let mut c = Conn {
        frames,
        streams: Streams::default(),
        last_id: 0,
        opened: 0,
    };
    let want = version.count(&expect);
    let mut have = 0;
    let mut early = Vec::new();
    let deadline = tokio::time::Instant::now() + STREAM_CREATION_TIMEOUT;
    let established = loop {
        if have == want {
            break true;
        }
        let f = match tokio::time::timeout_at(deadline, reader.read()).await {
            Err(_) => {
                c.go_away("timed out waiting for client to create streams")
                    .await;
                break false;
            }
            Ok(Err(e)) => {
                c.go_away(&e.to_string()).await;
                break false;
            }
            Ok(Ok(None)) => break false,
            Ok(Ok(Some(f))) => f,
        };
        match f {
            Frame::SynStream { id, headers, .. } => {
                if !c.admit(id).await {
                    break false;
                }
                let kind = spdy::header(&headers, "streamtype")
                    .unwrap_or("")
                    .to_string();
                let wanted = version.wants(&expect, &kind);
                match c.streams.slot(&kind) {
                    None => c.reset(id, rst::PROTOCOL_ERROR, "unknown streamType").await,
                    Some(_) if !wanted => {
                        c.reset(id, rst::REFUSED_STREAM, "stream not asked for")
                            .await
                    }
                    Some(Some(_)) => {
                        c.reset(id, rst::STREAM_IN_USE, "streamType already open")
                            .await
                    }
                    Some(slot @ None) => {
                        *slot = Some(id);
                        have += 1;
                        c.send(Frame::SynReply {
                            id,
                            fin: false,
                            headers: Vec::new(),
                        })
                        .await;
                    }
                }
            }
            Frame::Ping(n) => c.send(Frame::Ping(n)).await,
            Frame::GoAway { .. } => break false,
            f @ (Frame::Data { .. } | Frame::RstStream { .. }) => {
                if early.len() >= MAX_EARLY_FRAMES {
                    c.go_away("data before the streams were open").await;
                    break false;
                }
                early.push(f);
            }
            Frame::SynReply { .. }
            | Frame::Headers { .. }
            | Frame::Settings
            | Frame::WindowUpdate { .. }
            | Frame::Unknown(_) => {}
        }
    };
    if !established {
        drop(c);
        let abort = writer.abort_handle();
        if tokio::time::timeout(Duration::from_secs(5), writer)
            .await
            .is_err()
        {
            abort.abort();
        }
        return None;
    }
    tracing::debug!(protocol = version.name, "SPDY streams open");
    let streams = c.streams;
    let frames = c.frames.clone();
    let (in_tx, inbound) = mpsc::channel(16);
    let (gone_tx, gone) = watch::channel(false);
    let reader = tokio::spawn(async move {
        read_loop(reader, c, early, in_tx).await;
        let _ = gone_tx.send(true);
    });
    let (out_tx, out_rx) = mpsc::channel::<Out>(16);
    let writer = tokio::spawn(write_loop(out_rx, frames, writer, streams, version));
    Some(Session::from_parts(Parts {
        protocol: Some(version.name),
        out: out_tx,
        inbound,
        gone,
        reader,
        writer,
    }))
}

/// The client's frames → session events, until the client leaves or breaks the protocol.
async fn read_loop<R: AsyncRead + Unpin>(
    mut reader: FrameReader<R>,
    mut c: Conn,
    early: Vec<Frame>,
    tx: mpsc::Sender<Inbound>,
) {
    let mut resize = BytesMut::new();
    let mut early = early.into_iter();
    loop {
        let f = match early.next() {
            Some(f) => f,
            None => match reader.read().await {
                Ok(Some(f)) => f,
                Ok(None) => return,
                Err(e) => return c.go_away(&e.to_string()).await,
            },
        };
        match f {
            Frame::Data { id, fin, data } => {
                if Some(id) == c.streams.stdin {
                    if !data.is_empty() && tx.send(Inbound::Data(0, data)).await.is_err() {
                        return;
                    }
                    if fin {
                        c.streams.stdin = None;
                        if tx.send(Inbound::Close(0)).await.is_err() {
                            return;
                        }
                    }
                } else if Some(id) == c.streams.resize {
                    resize.extend_from_slice(&data);
                    while let Some(at) = resize.iter().position(|b| *b == b'\n') {
                        let msg = resize.split_to(at + 1).freeze();
                        if tx.send(Inbound::Data(4, msg)).await.is_err() {
                            return;
                        }
                    }
                    if resize.len() > MAX_RESIZE_MESSAGE {
                        c.streams.resize = None;
                        resize.clear();
                        c.reset(id, rst::PROTOCOL_ERROR, "resize message too long")
                            .await;
                    } else if fin && !resize.is_empty() {
                        let msg = resize.split().freeze();
                        if tx.send(Inbound::Data(4, msg)).await.is_err() {
                            return;
                        }
                    }
                } else if !c.streams.all().any(|s| s == id) {
                    c.reset(id, rst::INVALID_STREAM, "DATA on no stream").await;
                }
                // DATA the client writes on error/stdout/stderr means nothing and is dropped.
            }
            Frame::SynStream { id, .. } => {
                if !c.admit(id).await {
                    return;
                }
                c.reset(
                    id,
                    rst::REFUSED_STREAM,
                    "the session's streams are all open",
                )
                .await;
            }
            Frame::RstStream { id, .. } => {
                if Some(id) == c.streams.stdin {
                    c.streams.stdin = None;
                    if tx.send(Inbound::Close(0)).await.is_err() {
                        return;
                    }
                }
            }
            Frame::Ping(n) => c.send(Frame::Ping(n)).await,
            Frame::GoAway { .. } => return,
            Frame::SynReply { id, .. } => {
                c.reset(id, rst::PROTOCOL_ERROR, "SYN_REPLY from a client")
                    .await
            }
            Frame::Headers { .. }
            | Frame::Settings
            | Frame::WindowUpdate { .. }
            | Frame::Unknown(_) => {}
        }
    }
}

/// Session output → DATA frames; `Out::Close` ends every stream and the connection.
async fn write_loop(
    mut rx: mpsc::Receiver<Out>,
    frames: mpsc::Sender<Frame>,
    writer: JoinHandle<()>,
    streams: Streams,
    version: Version,
) {
    let data = |id: u32, data: Bytes, fin: bool| Frame::Data { id, fin, data };
    while let Some(out) = rx.recv().await {
        let frame = match out {
            // Empty DATA is WebSocket's "established"; SPDY said it with SYN_REPLY.
            Out::Data(_, d) if d.is_empty() => None,
            Out::Data(1, d) => streams.stdout.map(|id| data(id, d, false)),
            Out::Data(2, d) => streams.stderr.map(|id| data(id, d, false)),
            Out::Data(..) => None,
            Out::Status(s) => version
                .status_bytes(&s)
                .zip(streams.error)
                .map(|(b, id)| data(id, b, false)),
            Out::Close => break,
        };
        if let Some(f) = frame {
            if frames.send(f).await.is_err() {
                break;
            }
        }
    }
    for id in streams.all() {
        let _ = frames.send(data(id, Bytes::new(), true)).await;
    }
    let _ = frames
        .send(Frame::GoAway {
            last_good: 0,
            status: goaway::OK,
        })
        .await;
    drop(frames);
    let abort = writer.abort_handle();
    if tokio::time::timeout(Duration::from_secs(5), writer)
        .await
        .is_err()
    {
        abort.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn negotiation_takes_the_client_s_first_known_protocol() {
        assert_eq!(negotiate(&v(&[V4, V3, V2, V1])), Ok(Some(V4)));
        assert_eq!(negotiate(&v(&["v5.channel.k8s.io", V2])), Ok(Some(V2)));
        assert_eq!(negotiate(&[]), Ok(None));
        let e = negotiate(&v(&["portforward.k8s.io"])).unwrap_err();
        assert!(e.contains("unable to negotiate protocol"), "{e}");
    }

    #[test]
    fn versions_differ_in_resize_and_status() {
        let tty = Expect {
            stdin: true,
            stdout: true,
            stderr: false,
            tty: true,
        };
        assert_eq!(Version::of(Some(V4)).count(&tty), 4);
        assert_eq!(Version::of(Some(V2)).count(&tty), 3);
        assert_eq!(Version::of(None).count(&tty), 3);
        let fail = super::super::status::exit(3, &["false".into()]);
        let ok = super::super::status::success();
        let v4 = Version::of(Some(V4));
        let v2 = Version::of(Some(V2));
        assert_eq!(
            v4.status_bytes(&fail).unwrap(),
            Bytes::from(fail.to_string())
        );
        assert!(v2.status_bytes(&ok).is_none());
        assert!(String::from_utf8_lossy(&v2.status_bytes(&fail).unwrap()).contains("exit code 3"));
    }
}
