//! What an exec, attach or port-forward session sees of its client, whatever the transport:
//! [`Inbound`] events in (data per channel, stdin closed), [`Outbound`] output per channel and
//! the final `metav1.Status` out, and [`Session::gone`] once the client left. WebSocket
//! ([`super::websocket::session`]) and SPDY ([`super::spdy_remotecommand`]) each translate
//! their frames to these, so the sessions are written once.
//!
//! Channels are the WebSocket channel numbers: 0 stdin, 1 stdout, 2 stderr, 3 error (status),
//! 4 resize. The queues are small, so a fast client is back-pressured instead of buffered.

use bytes::Bytes;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

/// What the client sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inbound {
    Data(u8, Bytes),
    /// The client closed its side of this channel (stdin half-close: WebSocket v5's close
    /// signal, SPDY's FIN).
    Close(u8),
}

/// What a session writes; the transport's writer encodes it.
#[derive(Debug, Clone, PartialEq)]
pub enum Out {
    Data(u8, Bytes),
    /// The session's outcome (`metav1.Status`), for the error channel.
    Status(serde_json::Value),
    /// The session is over: close the connection normally.
    Close,
}

/// The sending side; cheap to clone into the tasks that produce output.
#[derive(Debug, Clone)]
pub struct Outbound(mpsc::Sender<Out>);

impl Outbound {
    /// Sends `data` on `channel`; false once the connection is gone.
    pub async fn send(&self, channel: u8, data: &[u8]) -> bool {
        self.0
            .send(Out::Data(channel, Bytes::copy_from_slice(data)))
            .await
            .is_ok()
    }

    /// Sends a `metav1.Status` on the error channel (3).
    pub async fn status(&self, status: &serde_json::Value) -> bool {
        self.0.send(Out::Status(status.clone())).await.is_ok()
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

/// The transport's ends a [`Session`] is made of.
#[derive(Debug)]
pub struct Parts {
    pub protocol: Option<&'static str>,
    /// Where the session's output goes (the writer task drains it).
    pub out: mpsc::Sender<Out>,
    /// The client's events (the reader task fills it).
    pub inbound: mpsc::Receiver<Inbound>,
    /// Turns true when the reader task saw the client go.
    pub gone: watch::Receiver<bool>,
    pub reader: JoinHandle<()>,
    /// Ends once `Out::Close` and everything before it is written.
    pub writer: JoinHandle<()>,
}

impl Session {
    pub fn from_parts(p: Parts) -> Self {
        Self {
            protocol: p.protocol,
            out: Outbound(p.out),
            inbound: p.inbound,
            gone: p.gone,
            reader: p.reader,
            writer: p.writer,
        }
    }

    /// Tells the client the stream is established, as the kubelet's WebSocket server does: an
    /// empty message on the lowest output channel it asked for (stdout, else stderr, else the
    /// error channel). SPDY writers drop it (SPDY streams are established by SYN_REPLY).
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
        let _ = out.0.send(Out::Close).await;
        drop(out);
        let limit = std::time::Duration::from_secs(5);
        let abort = writer.abort_handle();
        if tokio::time::timeout(limit, writer).await.is_err() {
            abort.abort();
        }
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
