//! The hickory-server request handler: checks the message, answers cluster names from the current
//! [`Snapshot`], forwards the rest, and counts everything. Every malformed or unsupported message
//! gets an error answer (FORMERR, NOTIMP, REFUSED, BADVERS) instead of a panic; messages too short
//! to carry a header or that are responses are dropped by hickory-server itself.

use std::sync::{Arc, RwLock};
use std::time::Instant;

use hickory_proto::op::{Edns, Metadata, OpCode, ResponseCode};
use hickory_proto::rr::{DNSClass, Record, RecordType};
use hickory_server::net::runtime::Time;
use hickory_server::net::xfer::Protocol;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponseBuilder;
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
    pub forwarder: Option<Forwarder>,
    pub metrics: Metrics,
}

impl State {
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.read().expect("snapshot lock").clone()
    }

    pub fn set_snapshot(&self, snap: Snapshot) {
        *self.snapshot.write().expect("snapshot lock") = Arc::new(snap);
    }
}

#[derive(Debug, Clone)]
pub struct Handler {
    pub state: Arc<State>,
}

/// A response about to be sent.
struct Reply {
    rcode: ResponseCode,
    authoritative: bool,
    answers: Vec<Record>,
    authority: Vec<Record>,
    additionals: Vec<Record>,
    source: Source,
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

impl Handler {
    async fn answer(&self, request: &Request) -> (Reply, Option<RecordType>) {
        if request.metadata.op_code != OpCode::Query {
            return (Reply::error(ResponseCode::NotImp), None);
        }
        let Ok(info) = request.request_info() else {
            // Zero or several questions: RFC 9619 allows exactly one.
            return (Reply::error(ResponseCode::FormErr), None);
        };
        let qtype = info.query.query_type();
        let qname = info.query.name();
        if info.query.query_class() != DNSClass::IN {
            return (Reply::error(ResponseCode::Refused), Some(qtype));
        }
        match qtype {
            // Meta types never appear in a question.
            RecordType::OPT | RecordType::TSIG => {
                return (Reply::error(ResponseCode::FormErr), Some(qtype))
            }
            // No zone transfers (CoreDNS without the transfer plugin refuses them).
            RecordType::AXFR | RecordType::IXFR => {
                return (Reply::error(ResponseCode::Refused), Some(qtype))
            }
            _ => {}
        }
        let name = qname.into();
        let snap = self.state.snapshot();
        match lookup(&snap, &self.state.zone, &name, qtype) {
            Outcome::Answer(a) => {
                let mut reply = Reply {
                    rcode: a.rcode,
                    authoritative: a.rcode != ResponseCode::ServFail,
                    answers: a.answers,
                    authority: a.authority,
                    additionals: a.additionals,
                    source: Source::Kubernetes,
                };
                if let (Some(target), Some(fwd)) = (a.chase, self.state.forwarder.as_ref()) {
                    // The ExternalName's target, best effort: the CNAME alone is still an answer.
                    if let Forwarded::Records(records) = fwd.resolve(&target, qtype).await {
                        reply.answers.extend(records);
                    }
                }
                (reply, Some(qtype))
            }
            Outcome::Forward => {
                let Some(fwd) = self.state.forwarder.as_ref() else {
                    return (Reply::error(ResponseCode::Refused), Some(qtype));
                };
                self.state
                    .metrics
                    .forward_requests
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let mut reply = Reply::error(ResponseCode::NoError);
                reply.source = Source::Forward;
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
                            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        debug!(%name, %qtype, %why, "upstream gave no answer");
                        reply.rcode = ResponseCode::ServFail;
                    }
                    Forwarded::Busy => {
                        self.state
                            .metrics
                            .forward_refused_busy
                            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        reply.rcode = ResponseCode::Refused;
                    }
                }
                (reply, Some(qtype))
            }
        }
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
        let ipv6 = request.src().is_ipv6();

        let mut edns = None;
        let (reply, qtype) = match request.edns.as_ref() {
            Some(req) => {
                let mut e = Edns::new();
                e.set_max_payload(req.max_payload().clamp(512, MAX_UDP_PAYLOAD));
                e.set_version(0);
                let version = req.version();
                edns = Some(e);
                if version > 0 {
                    // RFC 6891 6.1.3: only version 0 exists.
                    (Reply::error(ResponseCode::BADVERS), None)
                } else {
                    self.answer(request).await
                }
            }
            None => self.answer(request).await,
        };
        self.state.metrics.request(proto, ipv6, qtype);
        if let Some(e) = edns.as_mut() {
            e.set_rcode_high(reply.rcode.high());
        }

        let mut metadata = Metadata::response_from_request(&request.metadata);
        metadata.response_code = reply.rcode;
        metadata.authoritative = reply.authoritative;
        metadata.recursion_available = self.state.forwarder.is_some();
        let response = MessageResponseBuilder::new(&request.queries, edns.as_ref()).build(
            metadata,
            reply.answers.iter(),
            reply.authority.iter(),
            std::iter::empty(),
            reply.additionals.iter(),
        );
        let info = match response_handle.send_response(response).await {
            Ok(info) => info,
            Err(error) => {
                warn!(%error, src = %request.src(), "send dns response");
                let mut h = Metadata::response_from_request(&request.metadata);
                h.response_code = ResponseCode::ServFail;
                ResponseInfo::from(hickory_proto::op::Header {
                    metadata: h,
                    counts: Default::default(),
                })
            }
        };
        self.state
            .metrics
            .response(reply.source, reply.rcode, qtype, started.elapsed());
        info
    }
}
