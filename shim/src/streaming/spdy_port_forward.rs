//! Port-forward over SPDY/3.1 (`portforward.k8s.io`), what kubectl speaks to the kubelet either
//! directly after `Upgrade: SPDY/3.1` or tunnelled in WebSocket binary messages
//! (`SPDY/3.1+portforward.k8s.io`).
//!
//! Per forwarded connection the client opens two streams with headers `streamType` (`error`,
//! then `data`), `port` and `requestID`; each gets a SYN_REPLY. Once both of a request ID are
//! there, one TCP connection to the port is dialled inside the pod's network namespace (as
//! [`port_forward::connect`] does for WebSocket). Client DATA goes to the pod; the client's FIN
//! half-closes it. When the pod side ends, the data stream gets a FIN; a failure is written as
//! text on the error stream; then the error stream gets its FIN, which kubectl waits for.
//!
//! Bad input: a malformed or oversized frame ends the connection with GOAWAY PROTOCOL_ERROR;
//! a stream without the headers, with a port not being forwarded, a reused ID or beyond
//! [`MAX_STREAMS`] gets RST_STREAM and the connection goes on. Pairs not completed within
//! [`PAIR_TIMEOUT`] are reset. Everything a session started ends with it.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::port_forward;
use super::spdy::{self, goaway, rst, Frame, FrameReader};

/// The protocol named in `X-Stream-Protocol-Version`.
pub const PROTOCOL: &str = "portforward.k8s.io";

/// Open streams per connection (two per forwarded connection).
pub const MAX_STREAMS: usize = 256;

/// How long the second stream of a pair may take (the kubelet's stream creation timeout).
pub const PAIR_TIMEOUT: Duration = Duration::from_secs(30);

const READ_SIZE: usize = 32 * 1024;

/// What the session may reach.
#[derive(Debug, Clone)]
pub struct Target {
    pub sandbox_id: String,
    /// The pod's network namespace; `None` for a host-network pod.
    pub netns: Option<PathBuf>,
    /// Ports the request was granted; empty means any (kubectl's SPDY request names none).
    pub ports: Vec<u16>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Data,
    Error,
}

struct Pair {
    port: u16,
    data: Option<u32>,
    error: Option<u32>,
    since: Instant,
}

struct Forward {
    error: u32,
    to_pod: mpsc::Sender<Option<Bytes>>,
    task: JoinHandle<()>,
}

/// A forward that ended: its streams and what went wrong, if anything.
struct Done {
    data: u32,
    error: u32,
    failure: Option<String>,
}

/// Serves one SPDY connection until the client leaves or breaks the protocol.
pub async fn serve<S>(io: S, target: Target)
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (rd, wr) = tokio::io::split(io);
    let (out_tx, writer) = spdy::spawn_writer(wr);
    let (in_tx, mut in_rx) = mpsc::channel::<Result<Frame, spdy::SpdyError>>(16);
    let reader = tokio::spawn(async move {
        let mut r = FrameReader::new(rd);
        loop {
            let f = r.read().await;
            let stop = !matches!(f, Ok(Some(_)));
            let msg = match f {
                Ok(Some(f)) => Ok(f),
                Ok(None) => break,
                Err(e) => Err(e),
            };
            if in_tx.send(msg).await.is_err() || stop {
                break;
            }
        }
    });
    let mut s = Session {
        target,
        out: out_tx,
        kinds: HashMap::new(),
        pairs: HashMap::new(),
        forwards: HashMap::new(),
        last_id: 0,
    };
    let (done_tx, mut done_rx) = mpsc::channel::<Done>(16);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            f = in_rx.recv() => match f {
                Some(Ok(f)) => {
                    if !s.on_frame(f, &done_tx).await {
                        break;
                    }
                }
                Some(Err(e)) => {
                    tracing::debug!(error = %e, "SPDY protocol error; sending GOAWAY");
                    let _ = s.out.send(Frame::GoAway {
                        last_good: s.last_id,
                        status: goaway::PROTOCOL_ERROR,
                    }).await;
                    break;
                }
                None => {
                    tracing::debug!("client went away");
                    break;
                }
            },
            Some(d) = done_rx.recv() => s.on_done(d).await,
            _ = tick.tick() => s.expire_pairs().await,
        }
    }
    for (_, f) in s.forwards.drain() {
        f.task.abort();
    }
    reader.abort();
    drop(s);
    // What is queued gets 5 s to reach the client; one that stopped reading is cut off.
    let abort = writer.abort_handle();
    if tokio::time::timeout(Duration::from_secs(5), writer)
        .await
        .is_err()
    {
        abort.abort();
    }
}

struct Session {
    target: Target,
    out: mpsc::Sender<Frame>,
    kinds: HashMap<u32, Kind>,
    /// Pairs by request ID, until both streams are there.
    pairs: HashMap<String, Pair>,
    /// Running forwards by data stream.
    forwards: HashMap<u32, Forward>,
    last_id: u32,
}

impl Session {
    async fn send(&self, f: Frame) {
        let _ = self.out.send(f).await;
    }

    async fn reset(&self, id: u32, status: u32, why: &str) {
        tracing::debug!(id, status, why, "resetting SPDY stream");
        self.send(Frame::RstStream { id, status }).await;
    }

    /// Handles one frame; false ends the connection.
    async fn on_frame(&mut self, f: Frame, done: &mpsc::Sender<Done>) -> bool {
        match f {
            Frame::SynStream { id, headers, .. } => {
                if id % 2 == 0 || id <= self.last_id {
                    // Client streams are odd and increasing (SPDY/3 §2.3.2).
                    self.send(Frame::GoAway {
                        last_good: self.last_id,
                        status: goaway::PROTOCOL_ERROR,
                    })
                    .await;
                    return false;
                }
                self.last_id = id;
                self.open(id, &headers, done).await;
            }
            Frame::Data { id, fin, data } => match self.kinds.get(&id) {
                Some(Kind::Data) => {
                    if let Some(f) = self.forwards.get(&id) {
                        if !data.is_empty() {
                            let _ = f.to_pod.send(Some(data)).await;
                        }
                        if fin {
                            let _ = f.to_pod.send(None).await;
                        }
                    }
                }
                // kubectl never writes on the error stream; it closes it at once.
                Some(Kind::Error) => {}
                None => {
                    self.reset(id, rst::INVALID_STREAM, "DATA on no stream")
                        .await
                }
            },
            Frame::RstStream { id, .. } => self.forget(id),
            Frame::Ping(id) => self.send(Frame::Ping(id)).await,
            Frame::GoAway { .. } => return false,
            Frame::SynReply { id, .. } => {
                self.reset(id, rst::PROTOCOL_ERROR, "SYN_REPLY from a client")
                    .await
            }
            Frame::Headers { .. }
            | Frame::Settings
            | Frame::WindowUpdate { .. }
            | Frame::Unknown(_) => {}
        }
        true
    }

    async fn open(&mut self, id: u32, headers: &spdy::Headers, done: &mpsc::Sender<Done>) {
        if self.kinds.len() >= MAX_STREAMS {
            return self
                .reset(id, rst::REFUSED_STREAM, "too many open streams")
                .await;
        }
        let kind = match spdy::header(headers, "streamtype") {
            Some("data") => Kind::Data,
            Some("error") => Kind::Error,
            _ => {
                return self
                    .reset(id, rst::PROTOCOL_ERROR, "streamType is not data or error")
                    .await
            }
        };
        let port = match spdy::header(headers, "port").map(str::parse::<u16>) {
            Some(Ok(p)) if p > 0 => p,
            _ => {
                return self
                    .reset(
                        id,
                        rst::PROTOCOL_ERROR,
                        "port is not a number from 1 to 65535",
                    )
                    .await
            }
        };
        if !self.target.ports.is_empty() && !self.target.ports.contains(&port) {
            return self
                .reset(id, rst::REFUSED_STREAM, "port is not among those forwarded")
                .await;
        }
        let Some(request) = spdy::header(headers, "requestid").map(str::to_string) else {
            return self
                .reset(id, rst::PROTOCOL_ERROR, "requestID is missing")
                .await;
        };
        let pair = self.pairs.entry(request.clone()).or_insert(Pair {
            port,
            data: None,
            error: None,
            since: Instant::now(),
        });
        let slot = match kind {
            Kind::Data => &mut pair.data,
            Kind::Error => &mut pair.error,
        };
        if slot.is_some() || pair.port != port {
            return self
                .reset(id, rst::STREAM_IN_USE, "requestID already has this stream")
                .await;
        }
        *slot = Some(id);
        self.kinds.insert(id, kind);
        self.send(Frame::SynReply {
            id,
            fin: false,
            headers: Vec::new(),
        })
        .await;
        if let Some(Pair {
            data: Some(data),
            error: Some(error),
            port,
            ..
        }) = self.pairs.get(&request)
        {
            let (data, error, port) = (*data, *error, *port);
            self.pairs.remove(&request);
            self.start(data, error, port, done.clone());
        }
    }

    fn start(&mut self, data: u32, error: u32, port: u16, done: mpsc::Sender<Done>) {
        let (to_pod, mut from_client) = mpsc::channel::<Option<Bytes>>(16);
        let out = self.out.clone();
        let netns = self.target.netns.clone();
        let sandbox = self.target.sandbox_id.clone();
        let task = tokio::spawn(async move {
            let failure = match port_forward::connect(netns, port).await {
                Err(e) => Some(format!(
                    "error forwarding port {port} to pod {sandbox}: {e}"
                )),
                Ok(conn) => {
                    let (mut rd, mut wr) = conn.into_split();
                    let to_pod = async move {
                        while let Some(Some(b)) = from_client.recv().await {
                            if wr.write_all(&b).await.is_err() {
                                return;
                            }
                        }
                        let _ = wr.shutdown().await;
                        // Half-closed: the pod may still answer; the read side decides.
                        std::future::pending::<()>().await;
                    };
                    let from_pod = async move {
                        let mut buf = vec![0u8; READ_SIZE];
                        loop {
                            match rd.read(&mut buf).await {
                                Ok(0) => return None,
                                Ok(n) => {
                                    let f = Frame::Data {
                                        id: data,
                                        fin: false,
                                        data: Bytes::copy_from_slice(&buf[..n]),
                                    };
                                    if out.send(f).await.is_err() {
                                        return None;
                                    }
                                }
                                Err(e) => {
                                    return Some(format!(
                                        "error forwarding port {port} to pod {sandbox}: {e}"
                                    ))
                                }
                            }
                        }
                    };
                    // One task owns both halves, so aborting it closes the pod connection.
                    tokio::select! {
                        failure = from_pod => failure,
                        () = to_pod => None,
                    }
                }
            };
            let _ = done
                .send(Done {
                    data,
                    error,
                    failure,
                })
                .await;
        });
        self.forwards.insert(
            data,
            Forward {
                error,
                to_pod,
                task,
            },
        );
    }

    async fn on_done(&mut self, d: Done) {
        if self.forwards.remove(&d.data).is_none() {
            return; // reset by the client meanwhile
        }
        if let Some(msg) = &d.failure {
            tracing::debug!(%msg);
            self.send(Frame::Data {
                id: d.error,
                fin: false,
                data: Bytes::from(msg.clone().into_bytes()),
            })
            .await;
        }
        for id in [d.data, d.error] {
            self.send(Frame::Data {
                id,
                fin: true,
                data: Bytes::new(),
            })
            .await;
            self.kinds.remove(&id);
        }
    }

    /// The client reset `id`: stop its forward, if any, and forget the pair.
    fn forget(&mut self, id: u32) {
        self.kinds.remove(&id);
        let data = if self.forwards.contains_key(&id) {
            Some(id)
        } else {
            self.forwards
                .iter()
                .find(|(_, f)| f.error == id)
                .map(|(d, _)| *d)
        };
        if let Some(d) = data {
            if let Some(f) = self.forwards.remove(&d) {
                f.task.abort();
                self.kinds.remove(&d);
                self.kinds.remove(&f.error);
            }
        }
        self.pairs
            .retain(|_, p| p.data != Some(id) && p.error != Some(id));
    }

    async fn expire_pairs(&mut self) {
        let stale: Vec<String> = self
            .pairs
            .iter()
            .filter(|(_, p)| p.since.elapsed() > PAIR_TIMEOUT)
            .map(|(k, _)| k.clone())
            .collect();
        for k in stale {
            if let Some(p) = self.pairs.remove(&k) {
                for id in [p.data, p.error].into_iter().flatten() {
                    self.kinds.remove(&id);
                    self.reset(id, rst::CANCEL, "the other stream of the pair never came")
                        .await;
                }
            }
        }
    }
}
