//! Counters in CoreDNS's metric names (`coredns_dns_requests_total`, `coredns_dns_responses_total`,
//! `coredns_dns_request_duration_seconds`, `coredns_forward_requests_total`), kept in fixed arrays
//! of atomics so counting costs no lock and no allocation per query and label cardinality is
//! bounded whatever clients send.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;

/// Query types counted by name; the rest are `other` (CoreDNS's monitored types, abridged).
const TYPES: [RecordType; 10] = [
    RecordType::A,
    RecordType::AAAA,
    RecordType::CNAME,
    RecordType::MX,
    RecordType::NS,
    RecordType::PTR,
    RecordType::SOA,
    RecordType::SRV,
    RecordType::TXT,
    RecordType::ANY,
];
const NTYPES: usize = TYPES.len() + 1;
/// Which part answered: the cluster zone, the forwarder, or neither (errors before lookup).
const PLUGINS: [&str; 3] = ["kubernetes", "forward", ""];
const NRCODES: usize = 24;
/// Histogram bounds in seconds (CoreDNS uses exponential buckets from 0.00025 s).
const BUCKETS: [f64; 12] = [
    0.00025, 0.0005, 0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256, 0.512,
];

/// Which part of pea-dns produced an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Kubernetes = 0,
    Forward = 1,
    Error = 2,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    Udp = 0,
    Tcp = 1,
}

fn type_index(t: RecordType) -> usize {
    TYPES.iter().position(|x| *x == t).unwrap_or(TYPES.len())
}

/// The rcode names CoreDNS's metrics use (miekg/dns `RcodeToString`).
fn rcode_name(code: usize) -> String {
    const NAMES: [&str; 11] = [
        "NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED", "YXDOMAIN", "YXRRSET",
        "NXRRSET", "NOTAUTH", "NOTZONE",
    ];
    match code {
        16 => "BADVERS".into(),
        c => NAMES
            .get(c)
            .map_or_else(|| c.to_string(), |n| n.to_string()),
    }
}

fn type_name(i: usize) -> String {
    TYPES.get(i).map_or("other".into(), |t| t.to_string())
}

/// pea-dns's counters.
#[derive(Debug)]
pub struct Metrics {
    server: String,
    zone: String,
    /// [proto][family v4/v6][type]
    requests: Vec<AtomicU64>,
    /// [plugin][rcode]
    responses: Vec<AtomicU64>,
    /// [type][bucket + +Inf], with sums in microseconds per type
    duration: Vec<AtomicU64>,
    duration_sum_us: Vec<AtomicU64>,
    pub forward_requests: AtomicU64,
    pub forward_failures: AtomicU64,
    pub forward_refused_busy: AtomicU64,
    pub snapshot_rebuilds: AtomicU64,
}

fn counters(n: usize) -> Vec<AtomicU64> {
    (0..n).map(|_| AtomicU64::new(0)).collect()
}

impl Metrics {
    pub fn new(server: &str, zone: &str) -> Self {
        Self {
            server: server.into(),
            zone: zone.into(),
            requests: counters(2 * 2 * NTYPES),
            responses: counters(PLUGINS.len() * (NRCODES + 1)),
            duration: counters(NTYPES * (BUCKETS.len() + 1)),
            duration_sum_us: counters(NTYPES),
            forward_requests: AtomicU64::new(0),
            forward_failures: AtomicU64::new(0),
            forward_refused_busy: AtomicU64::new(0),
            snapshot_rebuilds: AtomicU64::new(0),
        }
    }

    pub fn request(&self, proto: Proto, ipv6: bool, qtype: Option<RecordType>) {
        let t = qtype.map_or(TYPES.len(), type_index);
        let i = (proto as usize * 2 + ipv6 as usize) * NTYPES + t;
        self.requests[i].fetch_add(1, Ordering::Relaxed);
    }

    pub fn response(
        &self,
        source: Source,
        rcode: ResponseCode,
        qtype: Option<RecordType>,
        took: Duration,
    ) {
        let code = usize::from(u16::from(rcode)).min(NRCODES);
        self.responses[source as usize * (NRCODES + 1) + code].fetch_add(1, Ordering::Relaxed);
        let t = qtype.map_or(TYPES.len(), type_index);
        let secs = took.as_secs_f64();
        let b = BUCKETS
            .iter()
            .position(|le| secs <= *le)
            .unwrap_or(BUCKETS.len());
        self.duration[t * (BUCKETS.len() + 1) + b].fetch_add(1, Ordering::Relaxed);
        self.duration_sum_us[t].fetch_add(took.as_micros() as u64, Ordering::Relaxed);
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let (server, zone) = (&self.server, &self.zone);
        out.push_str("# HELP coredns_dns_requests_total Counter of DNS requests made per zone, protocol and family.\n# TYPE coredns_dns_requests_total counter\n");
        for proto in 0..2 {
            for fam in 0..2 {
                for t in 0..NTYPES {
                    let v = self.requests[(proto * 2 + fam) * NTYPES + t].load(Ordering::Relaxed);
                    if v == 0 {
                        continue;
                    }
                    let _ = writeln!(
                        out,
                        "coredns_dns_requests_total{{server=\"{server}\",zone=\"{zone}\",view=\"\",proto=\"{}\",family=\"{}\",type=\"{}\"}} {v}",
                        ["udp", "tcp"][proto],
                        fam + 1,
                        type_name(t)
                    );
                }
            }
        }
        out.push_str("# HELP coredns_dns_responses_total Counter of response status codes.\n# TYPE coredns_dns_responses_total counter\n");
        for (p, plugin) in PLUGINS.iter().enumerate() {
            for code in 0..=NRCODES {
                let v = self.responses[p * (NRCODES + 1) + code].load(Ordering::Relaxed);
                if v == 0 {
                    continue;
                }
                let rcode = if code == NRCODES {
                    "other".to_string()
                } else {
                    rcode_name(code)
                };
                let _ = writeln!(
                    out,
                    "coredns_dns_responses_total{{server=\"{server}\",zone=\"{zone}\",view=\"\",rcode=\"{rcode}\",plugin=\"{plugin}\"}} {v}"
                );
            }
        }
        out.push_str("# HELP coredns_dns_request_duration_seconds Histogram of the time (in seconds) each request took.\n# TYPE coredns_dns_request_duration_seconds histogram\n");
        for t in 0..NTYPES {
            let counts: Vec<u64> = (0..=BUCKETS.len())
                .map(|b| self.duration[t * (BUCKETS.len() + 1) + b].load(Ordering::Relaxed))
                .collect();
            let total: u64 = counts.iter().sum();
            if total == 0 {
                continue;
            }
            let labels = format!(
                "server=\"{server}\",zone=\"{zone}\",view=\"\",type=\"{}\"",
                type_name(t)
            );
            let mut cumulative = 0;
            for (b, le) in BUCKETS.iter().enumerate() {
                cumulative += counts[b];
                let _ = writeln!(
                    out,
                    "coredns_dns_request_duration_seconds_bucket{{{labels},le=\"{le}\"}} {cumulative}"
                );
            }
            let _ = writeln!(
                out,
                "coredns_dns_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {total}"
            );
            let sum = self.duration_sum_us[t].load(Ordering::Relaxed) as f64 / 1e6;
            let _ = writeln!(
                out,
                "coredns_dns_request_duration_seconds_sum{{{labels}}} {sum}"
            );
            let _ = writeln!(
                out,
                "coredns_dns_request_duration_seconds_count{{{labels}}} {total}"
            );
        }
        for (name, help, v) in [
            (
                "coredns_forward_requests_total",
                "Counter of requests made per upstream.",
                &self.forward_requests,
            ),
            (
                "coredns_forward_failures_total",
                "Counter of forwarded requests that got no answer from any upstream.",
                &self.forward_failures,
            ),
            (
                "coredns_forward_max_concurrent_rejects_total",
                "Counter of requests refused because the number of concurrent forwarded queries reached the limit.",
                &self.forward_refused_busy,
            ),
            (
                "pea_dns_snapshot_rebuilds_total",
                "Counter of cluster snapshots built from watched objects.",
                &self.snapshot_rebuilds,
            ),
        ] {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                v.load(Ordering::Relaxed)
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_coredns_names_with_bounded_labels() {
        let m = Metrics::new("dns://127.0.0.1:53", "cluster.local.");
        m.request(Proto::Udp, false, Some(RecordType::A));
        m.request(Proto::Tcp, true, Some(RecordType::from(65000)));
        m.response(
            Source::Kubernetes,
            ResponseCode::NXDomain,
            Some(RecordType::A),
            Duration::from_micros(300),
        );
        let text = m.render();
        assert!(text.contains("coredns_dns_requests_total{server=\"dns://127.0.0.1:53\",zone=\"cluster.local.\",view=\"\",proto=\"udp\",family=\"1\",type=\"A\"} 1"), "{text}");
        assert!(
            text.contains("proto=\"tcp\",family=\"2\",type=\"other\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("rcode=\"NXDOMAIN\",plugin=\"kubernetes\"} 1"),
            "{text}"
        );
        assert!(text.contains("type=\"A\",le=\"0.0005\"} 1"), "{text}");
        assert!(text.contains("type=\"A\",le=\"0.00025\"} 0"), "{text}");
    }
}
