//! pea-dns against a real pea-control: Services, EndpointSlices and Namespaces written by the
//! test, answers checked with `dig` for every record kind (A, AAAA, SRV, CNAME, PTR, pod and
//! hostname records, NXDOMAIN vs NODATA, search-path expansions), forwarding to an unbound on
//! loopback, TCP and truncation, updates, /metrics, and malformed queries of every kind.

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use pea_tests::control::{Backend, ControlPlane, Kubectl};
use pea_tests::dns::{dig, http_get, resolv_conf, spare_loopback_ip, Dig, PeaDns, Unbound};
use pea_tests::privileged::require_root;

const NS: &str = "dnstest";
const ZONE: &str = "cluster.local";

fn manifests() -> String {
    let mut m = format!(
        "apiVersion: v1\nkind: Namespace\nmetadata: {{name: {NS}}}\n---\n\
apiVersion: v1\nkind: Service\nmetadata: {{name: web, namespace: {NS}}}\nspec:\n  selector: {{app: web}}\n  ports:\n  - {{name: http, port: 80, protocol: TCP}}\n  - {{name: dns, port: 53, protocol: UDP}}\n---\n\
apiVersion: v1\nkind: Service\nmetadata: {{name: db, namespace: {NS}}}\nspec:\n  clusterIP: None\n  selector: {{app: db}}\n  ports:\n  - {{name: pg, port: 5432}}\n---\n\
apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: db-a\n  namespace: {NS}\n  labels: {{kubernetes.io/service-name: db}}\naddressType: IPv4\nports:\n- {{name: pg, port: 5432, protocol: TCP}}\nendpoints:\n- addresses: [10.244.1.5]\n  hostname: db-0\n  conditions: {{ready: true}}\n- addresses: [10.244.1.6]\n  conditions: {{ready: true}}\n- addresses: [10.244.1.7]\n  conditions: {{ready: false}}\n---\n\
apiVersion: v1\nkind: Service\nmetadata: {{name: ext, namespace: {NS}}}\nspec:\n  type: ExternalName\n  externalName: www.example.test\n---\n\
apiVersion: v1\nkind: Service\nmetadata: {{name: many, namespace: {NS}}}\nspec:\n  clusterIP: None\n  ports:\n  - {{name: http, port: 80}}\n---\n\
apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: many-a\n  namespace: {NS}\n  labels: {{kubernetes.io/service-name: many}}\naddressType: IPv4\nports:\n- {{name: http, port: 80, protocol: TCP}}\nendpoints:\n"
    );
    for i in 0..100 {
        m.push_str(&format!("- addresses: [10.245.0.{}]\n", i + 1));
    }
    m
}

/// Fields drop in order: pea-dns stops before the API server it watches.
struct Cluster {
    dns: PeaDns,
    kubectl: Kubectl,
    _cp: ControlPlane,
    _upstream: Unbound,
    _dir: tempfile::TempDir,
    web_ip: String,
}

fn cluster() -> Cluster {
    require_root();
    let cp = ControlPlane::start(Backend::Embedded).expect("pea-control");
    let kubectl = cp.kubectl();
    kubectl.ok_stdin(&["apply", "-f", "-"], &manifests());
    let web_ip = kubectl.ok(&[
        "-n",
        NS,
        "get",
        "svc",
        "web",
        "-o",
        "jsonpath={.spec.clusterIP}",
    ]);
    assert!(
        web_ip.parse::<std::net::Ipv4Addr>().is_ok(),
        "clusterIP {web_ip:?}"
    );
    let dir = tempfile::tempdir().unwrap();
    let up_ip = spare_loopback_ip();
    let upstream = Unbound::start(
        SocketAddr::new(up_ip, 53),
        "example.test",
        &[
            "www.example.test. 300 IN A 192.0.2.10".into(),
            "mail.example.test. 300 IN A 192.0.2.25".into(),
        ],
        1,
    )
    .expect("unbound upstream");
    let rc = resolv_conf(dir.path(), up_ip).unwrap();
    let dns = PeaDns::start(&cp.kubeconfig, Some(&rc), &[]).expect("pea-dns");
    Cluster {
        _cp: cp,
        kubectl,
        dns,
        _upstream: upstream,
        _dir: dir,
        web_ip,
    }
}

fn q(c: &Cluster, args: &[&str]) -> Dig {
    dig(c.dns.dns, args).unwrap_or_else(|e| panic!("dig {args:?}: {e}"))
}

fn svc(name: &str) -> String {
    format!("{name}.{NS}.svc.{ZONE}.")
}

fn assert_negative(d: &Dig, status: &str, what: &str) {
    assert_eq!(d.status, status, "{what}: {}", d.raw);
    assert!(d.answer.is_empty(), "{what}: {}", d.raw);
    assert!(d.has_flag("aa"), "{what}: authoritative: {}", d.raw);
    let soa = d.authority.iter().find(|r| r.2 == "SOA");
    let soa = soa.unwrap_or_else(|| panic!("{what}: SOA in authority: {}", d.raw));
    assert_eq!(soa.0, format!("{ZONE}."), "{what}");
    assert!(
        soa.3
            .starts_with(&format!("ns.dns.{ZONE}. hostmaster.{ZONE}. ")),
        "{what}: {}",
        soa.3
    );
}

#[test]
fn every_record_kind_answers_as_coredns() {
    let c = cluster();

    // ClusterIP A, TTL 5, authoritative; NODATA for AAAA and other types.
    let d = q(&c, &[&svc("web"), "A"]);
    assert_eq!(d.status, "NOERROR", "{}", d.raw);
    assert!(d.has_flag("aa"), "{}", d.raw);
    assert_eq!(d.rdata("A"), std::slice::from_ref(&c.web_ip));
    assert_eq!(d.answer[0].1, 5, "TTL");
    assert_negative(
        &q(&c, &[&svc("web"), "AAAA"]),
        "NOERROR",
        "AAAA of a v4 service",
    );
    assert_negative(&q(&c, &[&svc("web"), "MX"]), "NOERROR", "MX of a service");
    assert_negative(
        &q(&c, &[&format!("{NS}.svc.{ZONE}."), "A"]),
        "NOERROR",
        "namespace",
    );

    // NXDOMAIN: missing service, missing namespace, unknown kind, search-path expansions.
    for name in [
        svc("nope"),
        format!("web.nonamespace.svc.{ZONE}."),
        format!("web.{NS}.foo.{ZONE}."),
        format!("web.{NS}.svc.{ZONE}.{NS}.svc.{ZONE}."),
        format!("www.example.test.{NS}.svc.{ZONE}."),
        format!("www.example.test.svc.{ZONE}."),
        format!("www.example.test.{ZONE}."),
    ] {
        assert_negative(&q(&c, &[&name, "A"]), "NXDOMAIN", &name);
    }

    // SRV for named ports, with the target's address in the additional section.
    let d = q(&c, &[&format!("_http._tcp.{}", svc("web")), "SRV"]);
    assert_eq!(d.rdata("SRV"), [format!("0 100 80 {}", svc("web"))]);
    assert!(
        d.additional.iter().any(|r| r.2 == "A" && r.3 == c.web_ip),
        "{}",
        d.raw
    );
    let d = q(&c, &[&format!("_dns._udp.{}", svc("web")), "SRV"]);
    assert_eq!(d.rdata("SRV"), [format!("0 100 53 {}", svc("web"))]);
    assert_negative(
        &q(&c, &[&format!("_http._udp.{}", svc("web")), "SRV"]),
        "NXDOMAIN",
        "port name with the wrong protocol",
    );

    // Headless: ready endpoints only; hostname and dashed-address endpoint records; SRV per
    // endpoint.
    let d = q(&c, &[&svc("db"), "A"]);
    assert_eq!(d.rdata("A"), ["10.244.1.5", "10.244.1.6"], "{}", d.raw);
    let d = q(&c, &[&format!("db-0.{}", svc("db")), "A"]);
    assert_eq!(d.rdata("A"), ["10.244.1.5"]);
    let d = q(&c, &[&format!("10-244-1-6.{}", svc("db")), "A"]);
    assert_eq!(d.rdata("A"), ["10.244.1.6"]);
    assert_negative(
        &q(&c, &[&format!("10-244-1-7.{}", svc("db")), "A"]),
        "NXDOMAIN",
        "not-ready endpoint",
    );
    let d = q(&c, &[&format!("_pg._tcp.{}", svc("db")), "SRV"]);
    assert_eq!(
        d.rdata("SRV"),
        [
            format!("0 50 5432 10-244-1-6.{}", svc("db")),
            format!("0 50 5432 db-0.{}", svc("db")),
        ]
    );

    // Pods ("pods insecure").
    let d = q(&c, &[&format!("10-244-3-9.{NS}.pod.{ZONE}."), "A"]);
    assert_eq!(d.rdata("A"), ["10.244.3.9"]);
    let d = q(&c, &[&format!("fd00-10--9.{NS}.pod.{ZONE}."), "AAAA"]);
    assert_eq!(d.rdata("AAAA"), ["fd00:10::9"]);
    assert_negative(
        &q(&c, &[&format!("not-an-ip.{NS}.pod.{ZONE}."), "A"]),
        "NXDOMAIN",
        "pod name that is no address",
    );

    // ExternalName: CNAME, and the target's address from upstream.
    let d = q(&c, &[&svc("ext"), "A"]);
    assert_eq!(d.rdata("CNAME"), ["www.example.test."], "{}", d.raw);
    assert_eq!(d.rdata("A"), ["192.0.2.10"], "{}", d.raw);
    assert_negative(
        &q(&c, &[&format!("x.{}", svc("ext")), "A"]),
        "NXDOMAIN",
        "endpoint of an ExternalName",
    );

    // PTR for a ClusterIP and for an endpoint with a hostname.
    let d = q(&c, &["-x", &c.web_ip]);
    assert_eq!(d.rdata("PTR"), [svc("web")]);
    let d = q(&c, &["-x", "10.244.1.5"]);
    assert_eq!(d.rdata("PTR"), [format!("db-0.{}", svc("db"))]);

    // Apex SOA/NS and the schema version.
    let d = q(&c, &[&format!("{ZONE}."), "SOA"]);
    assert_eq!(d.answer.len(), 1, "{}", d.raw);
    let d = q(&c, &[&format!("dns-version.{ZONE}."), "TXT"]);
    assert_eq!(d.rdata("TXT"), ["\"1.1.0\""]);

    // Everything else goes upstream (not authoritative, recursion available).
    let d = q(&c, &["www.example.test.", "A"]);
    assert_eq!(d.rdata("A"), ["192.0.2.10"]);
    assert!(!d.has_flag("aa") && d.has_flag("ra"), "{}", d.raw);
    let d = q(&c, &["nothere.example.test.", "A"]);
    assert_eq!(d.status, "NXDOMAIN", "{}", d.raw);
    let d = q(&c, &["-x", "192.0.2.1"]);
    assert_ne!(
        d.status, "NOERROR",
        "unknown reverse name forwarded: {}",
        d.raw
    );

    // TCP gives the same answers.
    let d = q(&c, &["+tcp", &svc("web"), "A"]);
    assert_eq!(d.rdata("A"), std::slice::from_ref(&c.web_ip));

    // 100 endpoints do not fit 512 bytes: TC over UDP without EDNS, all of them over TCP.
    let d = q(&c, &["+noedns", "+ignore", &svc("many"), "A"]);
    assert!(d.has_flag("tc"), "{}", d.raw);
    let d = q(&c, &["+tcp", &svc("many"), "A"]);
    assert_eq!(d.rdata("A").len(), 100, "{}", d.raw);
    assert!(!d.has_flag("tc"));

    // Metrics and health.
    let (code, body) = http_get(c.dns.http, "/metrics").unwrap();
    assert_eq!(code, 200);
    assert!(body.contains("coredns_dns_requests_total{"), "{body}");
    assert!(
        body.contains("rcode=\"NXDOMAIN\",plugin=\"kubernetes\""),
        "{body}"
    );
    assert!(
        body.contains("coredns_dns_request_duration_seconds_bucket{"),
        "{body}"
    );
    assert_eq!(http_get(c.dns.http, "/health").unwrap().0, 200);
}

fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("timed out waiting for {what}");
}

#[test]
fn answers_follow_changes_to_services_and_endpoints() {
    let c = cluster();
    // An endpoint turns unready; a new service appears; one is deleted.
    c.kubectl.ok_stdin(
        &["apply", "-f", "-"],
        &format!("apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: db-a\n  namespace: {NS}\n  labels: {{kubernetes.io/service-name: db}}\naddressType: IPv4\nports:\n- {{name: pg, port: 5432, protocol: TCP}}\nendpoints:\n- addresses: [10.244.1.5]\n  hostname: db-0\n  conditions: {{ready: false}}\n- addresses: [10.244.1.6]\n---\napiVersion: v1\nkind: Service\nmetadata: {{name: late, namespace: {NS}}}\nspec:\n  ports:\n  - {{port: 8080}}\n"),
    );
    eventually("db loses its unready endpoint", || {
        q(&c, &[&svc("db"), "A"]).rdata("A") == ["10.244.1.6"]
    });
    eventually("the new service answers", || {
        q(&c, &[&svc("late"), "A"]).rdata("A").len() == 1
    });
    c.kubectl.ok(&["-n", NS, "delete", "svc", "web"]);
    eventually("the deleted service is NXDOMAIN", || {
        q(&c, &[&svc("web"), "A"]).status == "NXDOMAIN"
    });
    let d = q(&c, &["-x", &c.web_ip]);
    assert_ne!(
        d.rdata("PTR"),
        [svc("web")],
        "PTR of a deleted service: {}",
        d.raw
    );
}

/// Sends raw bytes over UDP and returns the reply, if any within 1 s.
fn raw(addr: SocketAddr, msg: &[u8]) -> Option<Vec<u8>> {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
    s.send_to(msg, addr).unwrap();
    let mut buf = [0u8; 4096];
    s.recv(&mut buf).ok().map(|n| buf[..n].to_vec())
}

/// A query header: id 0x1234, `flags_hi` (opcode etc.), counts.
fn header(flags_hi: u8, qd: u16, an: u16, ar: u16) -> Vec<u8> {
    let mut h = vec![0x12, 0x34, flags_hi, 0x00];
    for c in [qd, an, 0, ar] {
        h.extend_from_slice(&c.to_be_bytes());
    }
    h
}

fn question(name: &str, qtype: u16, qclass: u16) -> Vec<u8> {
    let mut q = Vec::new();
    for label in name.trim_end_matches('.').split('.') {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.push(0);
    q.extend_from_slice(&qtype.to_be_bytes());
    q.extend_from_slice(&qclass.to_be_bytes());
    q
}

fn rcode(reply: &[u8]) -> u8 {
    reply[3] & 0x0f
}

#[test]
fn malformed_queries_get_clean_errors_and_the_server_keeps_answering() {
    let c = cluster();
    let addr = c.dns.dns;
    let name = svc("web");
    let a = 1u16;

    // Two questions: FORMERR.
    let mut m = header(0x01, 2, 0, 0);
    m.extend(question(&name, a, 1));
    m.extend(question(&name, a, 1));
    assert_eq!(raw(addr, &m).map(|r| rcode(&r)), Some(1), "two questions");
    // No question: FORMERR.
    assert_eq!(
        raw(addr, &header(0x01, 0, 0, 0)).map(|r| rcode(&r)),
        Some(1),
        "no question"
    );
    // Counts promising more than the message holds: FORMERR.
    let mut m = header(0x01, 1, 5, 0);
    m.extend(question(&name, a, 1));
    assert_eq!(
        raw(addr, &m).map(|r| rcode(&r)),
        Some(1),
        "truncated records"
    );
    // A label running past the end: FORMERR.
    let mut m = header(0x01, 1, 0, 0);
    m.extend_from_slice(&[63, b'a', b'b']);
    assert_eq!(
        raw(addr, &m).map(|r| rcode(&r)),
        Some(1),
        "label past the end"
    );
    // A compression pointer loop: FORMERR.
    let mut m = header(0x01, 1, 0, 0);
    m.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1]);
    assert_eq!(raw(addr, &m).map(|r| rcode(&r)), Some(1), "pointer loop");
    // Opcode STATUS (2): NOTIMP.
    let mut m = header(0x01 | (2 << 3), 1, 0, 0);
    m.extend(question(&name, a, 1));
    assert_eq!(raw(addr, &m).map(|r| rcode(&r)), Some(4), "opcode status");
    // Class CHAOS: REFUSED.
    let mut m = header(0x01, 1, 0, 0);
    m.extend(question(&name, 16, 3));
    assert_eq!(raw(addr, &m).map(|r| rcode(&r)), Some(5), "class CH");
    // AXFR: REFUSED.
    let mut m = header(0x01, 1, 0, 0);
    m.extend(question(&format!("{ZONE}."), 252, 1));
    assert_eq!(raw(addr, &m).map(|r| rcode(&r)), Some(5), "axfr");
    // EDNS version 1: BADVERS (16 = extended rcode 1 in the OPT record, low bits 0).
    let mut m = header(0x01, 1, 0, 1);
    m.extend(question(&name, a, 1));
    m.extend_from_slice(&[0, 0, 41, 0x04, 0xd0, 0, 1, 0, 0, 0, 0]);
    let r = raw(addr, &m).expect("badvers reply");
    assert_eq!(rcode(&r), 0, "badvers low bits");
    assert!(
        r.windows(3)
            .any(|w| w == [0, 41, 0x04] || w[0..2] == [0, 41]),
        "an OPT in the reply"
    );
    // A response sent to the server and a few-byte packet: no reply, no crash.
    let mut m = header(0x81, 1, 0, 0);
    m.extend(question(&name, a, 1));
    assert_eq!(raw(addr, &m), None, "responses are not answered");
    assert_eq!(raw(addr, &[0x12, 0x34, 0x01]), None, "runt");
    // A burst of random garbage (bounded), then the server still answers.
    let mut seed = 0x9e3779b9u32;
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    for i in 0..2000 {
        let len = 12 + (i % 500);
        let mut buf = Vec::with_capacity(len);
        for _ in 0..len {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            buf.push(seed as u8);
        }
        buf[2] &= 0x7f; // queries, not responses, so each gets parsed
        s.send_to(&buf, addr).unwrap();
    }
    let d = q(&c, &[&name, "A"]);
    assert_eq!(d.rdata("A"), std::slice::from_ref(&c.web_ip));
    // A TCP client that sends a length and then nothing does not block others.
    let _idle = std::net::TcpStream::connect(addr).unwrap();
    let d = q(&c, &["+tcp", &name, "A"]);
    assert_eq!(d.rdata("A"), std::slice::from_ref(&c.web_ip));
}
