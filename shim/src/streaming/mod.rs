//! The CRI streaming server: Exec, Attach and PortForward answer with a one-time URL
//! `http://ADDR:PORT/{exec,attach,portforward}/TOKEN` on `ShimConfig::stream_address` (loopback
//! and a free port unless configured); the kubelet proxies its client's upgraded connection to
//! that URL byte for byte, as it does for containerd's stream server.
//!
//! ```text
//!  CRI Exec/Attach/PortForward ──validate──▶ cache.insert(request) ──▶ URL with TOKEN
//!  GET /exec/TOKEN (Upgrade: websocket) ──cache.consume(TOKEN)──▶ 101 + subprotocol ──▶ session
//!  POST /portforward/TOKEN (Upgrade: SPDY/3.1) ──▶ 101 + portforward.k8s.io ──▶ SPDY session
//!  POST /{exec,attach}/TOKEN (Upgrade: SPDY/3.1) ──▶ 101 + v4.channel.k8s.io … ──▶ SPDY streams
//!  anything else: 404 unknown/used/expired token, 403 no common protocol, 400 no upgrade
//! ```
//!
//! Protocols ([`websocket`]): `v5.channel.k8s.io` and `v4.channel.k8s.io` for exec/attach
//! (channels 0 stdin, 1 stdout, 2 stderr, 3 error as a `metav1.Status`, 4 resize; v5 adds the
//! 255 close signal), and the kubelet's WebSocket port-forward framing (`v4.channel.k8s.io` or
//! no subprotocol: per port a data and an error channel, each opened with the port as two
//! little-endian bytes). Port-forward also speaks SPDY/3.1 ([`spdy`], [`spdy_port_forward`]):
//! after `Upgrade: SPDY/3.1` with `X-Stream-Protocol-Version: portforward.k8s.io`, or inside a
//! WebSocket offering `SPDY/3.1+portforward.k8s.io` ([`tunnel`]) — kubectl's two ways. Exec and
//! attach also speak SPDY/3.1 ([`spdy_remotecommand`]: `v4.channel.k8s.io` down to
//! `channel.k8s.io`, one SPDY stream per channel named by `streamType`); both transports hand
//! the sessions the same [`session::Session`].
//!
//! Sessions: [`exec`] runs the runtime's `exec` (pipes, or a pty handed over a console socket
//! for tty), [`attach`] subscribes to the container's pea-monitor, [`port_forward`] dials
//! 127.0.0.1:PORT from inside the pod's network namespace. A client that goes away ends its
//! session and whatever the session started.

pub mod attach;
pub mod cache;
pub mod exec;
pub mod http;
pub mod port_forward;
pub mod pty;
pub mod session;
pub mod spdy;
pub mod spdy_port_forward;
pub mod spdy_remotecommand;
pub mod status;
pub mod tunnel;
pub mod websocket;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use k8s_cri::v1 as cri;

use crate::error::ShimError;
use crate::Shim;

/// What a token stands for: a validated CRI request.
#[derive(Debug, Clone)]
pub enum StreamRequest {
    Exec(cri::ExecRequest),
    Attach(cri::AttachRequest),
    PortForward {
        sandbox_id: String,
        /// The pod's network namespace; `None` for a host-network pod.
        netns: Option<PathBuf>,
        /// Ports from the CRI request (the URL's `port` query parameters take precedence).
        ports: Vec<u16>,
    },
}

impl StreamRequest {
    /// The URL path segment.
    pub fn kind(&self) -> &'static str {
        match self {
            StreamRequest::Exec(_) => "exec",
            StreamRequest::Attach(_) => "attach",
            StreamRequest::PortForward { .. } => "portforward",
        }
    }
}

/// The stream server's shared state: where it listens and the outstanding tokens.
#[derive(Debug, Default)]
pub struct Streams {
    addr: OnceLock<SocketAddr>,
    cache: Mutex<cache::RequestCache<StreamRequest>>,
}

impl Streams {
    /// Registers `request` and returns its one-time URL.
    pub fn url_for(&self, request: StreamRequest) -> Result<String, ShimError> {
        let addr = self.addr.get().ok_or_else(|| {
            ShimError::FailedPrecondition("the streaming server is not running".into())
        })?;
        let kind = request.kind();
        let token = self
            .cache
            .lock()
            .expect("stream cache")
            .insert(request, Instant::now())
            .map_err(|e| ShimError::ResourceExhausted(e.to_string()))?;
        Ok(format!("http://{addr}/{kind}/{token}"))
    }

    fn consume(&self, token: &str) -> Option<StreamRequest> {
        self.cache
            .lock()
            .expect("stream cache")
            .consume(token, Instant::now())
    }

    /// The address the server listens on, once started.
    pub fn address(&self) -> Option<SocketAddr> {
        self.addr.get().copied()
    }
}

/// Binds `shim.cfg.stream_address` and serves streams until the process ends.
pub async fn start(shim: Arc<Shim>) -> Result<SocketAddr, ShimError> {
    let want = shim.cfg.stream_address;
    let listener = tokio::net::TcpListener::bind(want)
        .await
        .map_err(|e| ShimError::Internal(format!("stream address {want}: {e}")))?;
    let addr = listener
        .local_addr()
        .map_err(|e| ShimError::Internal(format!("stream address {want}: {e}")))?;
    if shim.streams.addr.set(addr).is_err() {
        return Err(ShimError::Internal(
            "the streaming server was started twice".into(),
        ));
    }
    tracing::info!(%addr, "serving exec/attach/port-forward streams");
    tokio::spawn(http::serve(shim, listener));
    Ok(addr)
}
