//! The hickory-server request handler: checks the message, answers cluster names from the current
//! [`Snapshot`], forwards the rest, and counts everything. Every malformed or unsupported message
//! gets an error answer (FORMERR, NOTIMP, REFUSED, BADVERS) instead of a panic; messages too short
//! to carry a header or that are responses are dropped by hickory-server itself.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Instant;

use hickory_proto::op::{Edns, Header, Metadata, OpCode, ResponseCode};
use hickory_proto::rr::{DNSClass, Name, Record, RecordType};
use hickory_proto::serialize::binary::{BinEncodable, BinEncoder};
use hickory_server::net::runtime::Time;
use hickory_server::net::xfer::Protocol;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::{MessageResponse, MessageResponseBuilder};
use tracing::{debug, warn};

use crate::cluster::Snapshot;
use crate::forward::{Forwarded, Forwarder};
use crate::lookup::{lookup, Outcome, Zone};
use crate::metrics::{Metrics, Proto, Source};

/// The largest UDP answer we offer to send when a client asks for more (the DNS flag day 2020
/// value); above it, answers are truncated and clients retry over TCP.
pub const MAX_UDP_PAYLOAD: u16 = 1232;

/// What the handler answers from; shared with the watchers and the HTTP endpoints.
#[derive(Debug)]
pub struct State {
    pub zone: Zone,
    pub snapshot: RwLock<Arc<Snapshot>>,
    /// Bumped after every snapshot swap, so the UDP loops' answer caches know theirs is stale
    /// with one atomic load per query instead of touching the lock.
    pub generation: AtomicU64,
    pub forwarder: Option<Forwarder>,
    pub metrics: Metrics,
}

impl State {
    pub fn new(zone: Zone, forwarder: Option<Forwarder>, metrics: Metrics) -> Self {
        Self {
            zone,
            snapshot: RwLock::new(Arc::new(Snapshot::default())),
            generation: AtomicU64::new(0),
            forwarder,
            metrics,
        }
    }

    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.read().expect("snapshot lock").clone()
    }

    pub fn set_snapshot(&self, snap: Snapshot) {
        *self.snapshot.write().expect("snapshot lock") = Arc::new(snap);
        // After the swap: a reader that sees the new generation also sees the new snapshot.
        self.generation.fetch_add(1, Ordering::Release);
    }

    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }
}

#[derive(Debug, Clone)]
pub struct Handler {
    pub state: Arc<State>,
}

/// A response about to be sent.
#[derive(Debug)]
pub struct Reply {
    pub rcode: ResponseCode,
    authoritative: bool,
    answers: Vec<Record>,
    authority: Vec<Record>,
    additionals: Vec<Record>,
    pub source: Source,
}

impl Reply {
    fn error(rcode: ResponseCode) -> Self {
        Self {
            rcode,
            authoritative: false,
            answers: Vec::new(),
            authority: Vec::new(),
            additionals: Vec::new(),
            source: Source::Error,
        }
    }
}

/// Upstream work a reply still needs.
#[derive(Debug)]
enum Pending {
    /// Append the records of an ExternalName's target (best effort).
    Chase(Name),
    /// The whole answer comes from upstream.
    Forward(Name),
}

/// A request worked out as far as it goes without waiting: the reply, the EDNS to answer with,
/// and what (if anything) still has to be asked upstream.
#[derive(Debug)]
pub struct Prepared {
    pub reply: Reply,
    pub qtype: Option<RecordType>,
    pub edns: Option<Edns>,
    pending: Option<Pending>,
}

impl Prepared {
    /// True when nothing needs upstream; [`Handler::complete`] would return at once.
    pub fn is_ready(&self) -> bool {
        self.pending.is_none()
    }

    /// True when the reply is a function of the question bytes, the EDNS size and the snapshot
    /// only (cluster answers without an upstream part), so its encoding may be reused.
    pub fn is_cacheable(&self) -> bool {
        self.pending.is_none() && self.reply.source == Source::Kubernetes
    }
}

impl Handler {
    /// Everything that needs no upstream: message checks, EDNS, the cluster lookup.
    pub fn prepare(&self, request: &Request) -> Prepared {
        let mut edns = None;
        let (reply, qtype, pending) = match request.edns.as_ref() {
            Some(req) => {
                let mut e = Edns::new();
                e.set_max_payload(req.max_payload().clamp(512, MAX_UDP_PAYLOAD));
                e.set_version(0);
                let version = req.version();
                edns = Some(e);
                if version > 0 {
                    // RFC 6891 6.1.3: only version 0 exists.
                    (Reply::error(ResponseCode::BADVERS), None, None)
                } else {
                    self.answer_local(request)
                }
            }
            None => self.answer_local(request),
        };
        Prepared {
            reply,
            qtype,
            edns,
            pending,
        }
    }

    fn answer_local(&self, request: &Request) -> (Reply, Option<RecordType>, Option<Pending>) {
        if request.metadata.op_code != OpCode::Query {
            return (Reply::error(ResponseCode::NotImp), None, None);
        }
        let Ok(info) = request.request_info() else {
            // Zero or several questions: RFC 9619 allows exactly one.
            return (Reply::error(ResponseCode::FormErr), None, None);
        };
        let qtype = info.query.query_type();
        let qname = info.query.name();
        if info.query.query_class() != DNSClass::IN {
            return (Reply::error(ResponseCode::Refused), Some(qtype), None);
        }
        match qtype {
            // Meta types never appear in a question.
            RecordType::OPT | RecordType::TSIG => {
                return (Reply::error(ResponseCode::FormErr), Some(qtype), None)
            }
            // No zone transfers (CoreDNS without the transfer plugin refuses them).
            RecordType::AXFR | RecordType::IXFR => {
                return (Reply::error(ResponseCode::Refused), Some(qtype), None)
            }
            _ => {}
        }
        let name: Name = qname.into();
        let snap = self.state.snapshot();
        match lookup(&snap, &self.state.zone, &name, qtype) {
            Outcome::Answer(a) => {
                let reply = Reply {
                    rcode: a.rcode,
                    authoritative: a.rcode != ResponseCode::ServFail,
                    answers: a.answers,
                    authority: a.authority,
                    additionals: a.additionals,
                    source: Source::Kubernetes,
                };
                let pending = match (a.chase, self.state.forwarder.is_some()) {
                    (Some(target), true) => Some(Pending::Chase(target)),
                    _ => None,
                };
                (reply, Some(qtype), pending)
            }
            Outcome::Forward => {
                if self.state.forwarder.is_none() {
                    return (Reply::error(ResponseCode::Refused), Some(qtype), None);
                }
                let mut reply = Reply::error(ResponseCode::NoError);
                reply.source = Source::Forward;
                (reply, Some(qtype), Some(Pending::Forward(name)))
            }
        }
    }

    /// Does the upstream part of a prepared request, if any.
    pub async fn complete(&self, prepared: &mut Prepared) {
        let (Some(pending), Some(fwd), Some(qtype)) = (
            prepared.pending.take(),
            self.state.forwarder.as_ref(),
            prepared.qtype,
        ) else {
            return;
        };
        let reply = &mut prepared.reply;
        match pending {
            Pending::Chase(target) => {
                // The ExternalName's target, best effort: the CNAME alone is still an answer.
                if let Forwarded::Records(records) = fwd.resolve(&target, qtype).await {
                    reply.answers.extend(records);
                }
            }
            Pending::Forward(name) => {
                self.state
                    .metrics
                    .forward_requests
                    .fetch_add(1, Ordering::Relaxed);
                match fwd.resolve(&name, qtype).await {
                    Forwarded::Records(r) => reply.answers = r,
                    Forwarded::Negative { rcode, soa } => {
                        reply.rcode = rcode;
                        reply.authority.extend(soa.map(|r| *r));
                    }
                    Forwarded::Failed(why) => {
                        self.state
                            .metrics
                            .forward_failures
                            .fetch_add(1, Ordering::Relaxed);
                        debug!(%name, %qtype, %why, "upstream gave no answer");
                        reply.rcode = ResponseCode::ServFail;
                    }
                    Forwarded::Busy => {
                        self.state
                            .metrics
                            .forward_refused_busy
                            .fetch_add(1, Ordering::Relaxed);
                        reply.rcode = ResponseCode::Refused;
                    }
                }
            }
        }
    }

    /// The response message for a finished request (without sending it).
    fn response<'a>(
        &self,
        request: &'a Request,
        prepared: &'a mut Prepared,
    ) -> MessageResponse<
        'a,
        'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
    > {
        if let Some(e) = prepared.edns.as_mut() {
            e.set_rcode_high(prepared.reply.rcode.high());
        }
        let mut metadata = Metadata::response_from_request(&request.metadata);
        metadata.response_code = prepared.reply.rcode;
        metadata.authoritative = prepared.reply.authoritative;
        metadata.recursion_available = self.state.forwarder.is_some();
        let reply = &prepared.reply;
        MessageResponseBuilder::new(&request.queries, prepared.edns.as_ref()).build(
            metadata,
            reply.answers.iter(),
            reply.authority.iter(),
            std::iter::empty(),
            reply.additionals.iter(),
        )
    }

    /// Encodes a finished request's response for UDP (truncated past the client's EDNS size,
    /// 512 bytes without EDNS, as hickory-server's own UDP path) and counts it.
    pub fn encode_udp(
        &self,
        request: &Request,
        prepared: &mut Prepared,
        started: Instant,
    ) -> Vec<u8> {
        let max = prepared.edns.as_ref().map_or(512, |e| e.max_payload());
        let (source, rcode, qtype) = (prepared.reply.source, prepared.reply.rcode, prepared.qtype);
        let mut bytes = Vec::with_capacity(512);
        let mut encoder = BinEncoder::new(&mut bytes);
        encoder.set_max_size(max);
        let encoded = self
            .response(request, prepared)
            .destructive_emit(&mut encoder);
        let rcode = match encoded {
            Ok(_) => rcode,
            Err(error) => {
                warn!(%error, src = %request.src(), "encode dns response");
                bytes.clear();
                let mut h = Metadata::response_from_request(&request.metadata);
                h.response_code = ResponseCode::ServFail;
                let header = Header {
                    metadata: h,
                    counts: Default::default(),
                };
                let mut encoder = BinEncoder::new(&mut bytes);
                let _ = header.emit(&mut encoder);
                ResponseCode::ServFail
            }
        };
        self.state
            .metrics
            .request(Proto::Udp, request.src().is_ipv6(), qtype);
        self.state
            .metrics
            .response(source, rcode, qtype, started.elapsed());
        bytes
    }
}

#[async_trait::async_trait]
impl RequestHandler for Handler {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        mut response_handle: R,
    ) -> ResponseInfo {
        let started = Instant::now();
        let proto = if request.protocol() == Protocol::Udp {
            Proto::Udp
        } else {
            Proto::Tcp
        };
        let mut prepared = self.prepare(request);
        self.complete(&mut prepared).await;
        let (source, rcode, qtype) = (prepared.reply.source, prepared.reply.rcode, prepared.qtype);
        self.state
            .metrics
            .request(proto, request.src().is_ipv6(), qtype);
        let response = self.response(request, &mut prepared);
        let info = match response_handle.send_response(response).await {
            Ok(info) => info,
            Err(error) => {
                warn!(%error, src = %request.src(), "send dns response");
                let mut h = Metadata::response_from_request(&request.metadata);
                h.response_code = ResponseCode::ServFail;
                ResponseInfo::from(Header {
                    metadata: h,
                    counts: Default::default(),
                })
            }
        };
        self.state
            .metrics
            .response(source, rcode, qtype, started.elapsed());
        info
    }
}
