//! UDP serving: one OS thread per SO_REUSEPORT socket, blocking `recv_from`/`send_to` with no
//! task, channel or allocation per query on the cached path (hickory-server's UDP path spawns a
//! task and goes through a channel for every datagram, which cost pea-dns a third of unbound's
//! rate). A query whose encoded answer is in the thread's [`AnswerCache`] is answered from it;
//! any other goes through the full hickory parser and [`Handler`]: cluster answers are computed
//! on the thread (they need no waiting), questions that need the upstream resolvers are handed
//! to the tokio runtime so a slow upstream never stalls the loop.

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hickory_proto::op::{Header, MessageType, Metadata, ResponseCode};
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder, BinEncodable, BinEncoder};
use hickory_server::net::xfer::Protocol;
use hickory_server::server::Request;
use nix::sys::socket::{sendto, MsgFlags, SockaddrStorage};
use tracing::{debug, warn};

use crate::answer_cache::AnswerCache;
use crate::handler::Handler;
use crate::metrics::{Proto, Source};

/// How often a blocked receive wakes to check for shutdown.
const STOP_POLL: Duration = Duration::from_millis(200);
/// Largest datagram read whole (the UDP maximum); longer ones cannot arrive.
const RECV_BUF: usize = 65_535;

/// Starts one receive thread per socket; they run until `stop` is set.
pub fn spawn(
    sockets: Vec<UdpSocket>,
    handler: Handler,
    runtime: tokio::runtime::Handle,
    stop: Arc<AtomicBool>,
) -> std::io::Result<Vec<std::thread::JoinHandle<()>>> {
    let mut threads = Vec::with_capacity(sockets.len());
    for (i, socket) in sockets.into_iter().enumerate() {
        socket.set_nonblocking(false)?;
        socket.set_read_timeout(Some(STOP_POLL))?;
        let l = Loop {
            socket: Arc::new(socket),
            handler: handler.clone(),
            runtime: runtime.clone(),
            stop: stop.clone(),
            cache: AnswerCache::default(),
            out: Vec::with_capacity(512),
        };
        threads.push(
            std::thread::Builder::new()
                .name(format!("pea-dns-udp{i}"))
                .spawn(move || l.run())?,
        );
    }
    Ok(threads)
}

struct Loop {
    socket: Arc<UdpSocket>,
    handler: Handler,
    runtime: tokio::runtime::Handle,
    stop: Arc<AtomicBool>,
    cache: AnswerCache,
    out: Vec<u8>,
}

impl Loop {
    fn run(mut self) {
        let mut buf = vec![0u8; RECV_BUF];
        while !self.stop.load(Ordering::Relaxed) {
            match self.socket.recv_from(&mut buf) {
                Ok((n, src)) => self.serve(&buf[..n], src),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock
                            | std::io::ErrorKind::TimedOut
                            | std::io::ErrorKind::Interrupted
                    ) => {}
                Err(error) => {
                    // Errors queued by ICMP for earlier sends and the like; not fatal to the
                    // socket, but do not spin on a persistent one.
                    debug!(%error, "udp receive");
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        }
    }

    fn send(&self, bytes: &[u8], dst: SocketAddr) {
        if let Err(error) = self.socket.send_to(bytes, dst) {
            debug!(%error, %dst, "send dns response");
        }
    }

    fn serve(&mut self, query: &[u8], src: SocketAddr) {
        // As hickory-server: no answers to port 0, nothing for messages without a header.
        if src.port() == 0 || query.len() < 12 {
            return;
        }
        let started = Instant::now();
        let state = &self.handler.state;
        self.cache.check_generation(state.generation());
        if let Some(hit) = self.cache.answer(query, &mut self.out) {
            let (qtype, rcode) = (hit.qtype, hit.rcode);
            if let Err(error) = self.socket.send_to(&self.out, src) {
                debug!(%error, dst = %src, "send dns response");
            }
            state.metrics.request(Proto::Udp, src.is_ipv6(), qtype);
            state
                .metrics
                .response(Source::Kubernetes, rcode, qtype, started.elapsed());
            return;
        }
        let request = match Request::from_bytes(query.to_vec(), src, Protocol::Udp) {
            Ok(r) => r,
            Err(error) => {
                debug!(%error, %src, "unparsable dns message");
                if let Some(bytes) = format_error(query) {
                    self.send(&bytes, src);
                }
                return;
            }
        };
        // Never answer responses (reflection).
        if request.metadata.message_type == MessageType::Response {
            return;
        }
        let mut prepared = self.handler.prepare(&request);
        if prepared.is_ready() {
            let cacheable = prepared.is_cacheable();
            let (qtype, rcode) = (prepared.qtype, prepared.reply.rcode);
            let bytes = self.handler.encode_udp(&request, &mut prepared, started);
            self.send(&bytes, src);
            if cacheable {
                self.cache.insert(query, &bytes, qtype, rcode);
            }
            return;
        }
        let (handler, socket) = (self.handler.clone(), self.socket.clone());
        self.runtime.spawn(async move {
            handler.complete(&mut prepared).await;
            let bytes = handler.encode_udp(&request, &mut prepared, started);
            // Never block a runtime thread on a full socket buffer: a lost UDP answer is retried.
            if let Err(error) = sendto(
                std::os::fd::AsRawFd::as_raw_fd(&*socket),
                &bytes,
                &SockaddrStorage::from(src),
                MsgFlags::MSG_DONTWAIT,
            ) {
                warn!(%error, dst = %src, "send forwarded dns response");
            }
        });
    }
}

/// FORMERR for a message whose header reads but whose body does not (hickory-server's answer).
fn format_error(query: &[u8]) -> Option<Vec<u8>> {
    let header = Header::read(&mut BinDecoder::new(query)).ok()?;
    if header.metadata.message_type == MessageType::Response {
        return None;
    }
    let mut metadata = Metadata::response_from_request(&header.metadata);
    metadata.response_code = ResponseCode::FormErr;
    let mut bytes = Vec::with_capacity(12);
    Header {
        metadata,
        counts: Default::default(),
    }
    .emit(&mut BinEncoder::new(&mut bytes))
    .ok()?;
    Some(bytes)
}
