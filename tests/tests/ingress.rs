//! pea-ingress against a real pea-control: IngressClass, Ingresses, Services, EndpointSlices and
//! a TLS Secret written by the test (IngressClasses served by pea-control, with its
//! DefaultIngressClass admission); backends are small HTTP servers on 127.0.0.x. Checked with
//! curl: host and path routing (Exact, Prefix, ImplementationSpecific), default backend, TLS
//! with SNI, HTTP/2, X-Forwarded-*, round-robin with a dead endpoint skipped, status written
//! back, reload without dropping a kept-alive connection, bad Ingresses reported while the rest
//! keep working; a WebSocket-style upgrade passes bytes both ways.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

use base64::Engine;
use pea_tests::control::{Backend, ControlPlane};
use pea_tests::fixtures::registry::free_port;
use pea_tests::ingress::{Backends, PeaIngress};
use pea_tests::privileged::require_program;

const NS: &str = "ingtest";

fn slice(svc: &str, port: u16, ips: &[&str]) -> String {
    let mut s = format!("---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: {svc}-x\n  namespace: {NS}\n  labels: {{kubernetes.io/service-name: {svc}}}\naddressType: IPv4\nports:\n- {{name: http, port: {port}, protocol: TCP}}\nendpoints:\n");
    for ip in ips {
        s.push_str(&format!(
            "- addresses: [{ip}]\n  conditions: {{ready: true}}\n"
        ));
    }
    s
}

fn service(name: &str) -> String {
    format!("---\napiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: {NS}}}\nspec:\n  ports:\n  - {{name: http, port: 80, targetPort: http}}\n")
}

fn curl(args: &[&str]) -> (String, String) {
    let out = Command::new(require_program("curl"))
        .args(["-sS", "--max-time", "5"])
        .args(args)
        .output()
        .expect("run curl");
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn get(ing: &PeaIngress, host: &str, path: &str) -> String {
    curl(&[
        "-H",
        &format!("Host: {host}"),
        &format!("http://{}{path}", ing.http),
    ])
    .0
}

fn backend_of(body: &str) -> &str {
    body.split_whitespace()
        .find_map(|w| w.strip_prefix("backend="))
        .unwrap_or(body)
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

struct Setup {
    ing: PeaIngress,
    _backends: Backends,
    cp: ControlPlane,
    dir: tempfile::TempDir,
    ca_pem: String,
}

fn setup() -> Setup {
    pea_tests::privileged::require_root();
    let cp = ControlPlane::start(Backend::Embedded).expect("pea-control");
    let port = free_port().unwrap();
    let at = |last: u8| SocketAddr::from(([127, 0, 0, last], port));
    let backends = Backends::start(&[
        ("a1", at(2)),
        ("a2", at(3)),
        ("b", at(5)),
        ("dflt", at(6)),
        ("wild", at(7)),
    ])
    .expect("backends");

    // A CA and a certificate for secure.example, as a kubernetes.io/tls Secret.
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    // Distinct names: a leaf whose issuer equals its subject looks self-signed to curl.
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "pea ingress test ca");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::from_ca_cert_pem(&ca.pem(), ca_key).unwrap();
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let leaf = rcgen::CertificateParams::new(vec!["secure.example".to_string()])
        .unwrap()
        .signed_by(&leaf_key, &issuer)
        .unwrap();
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);

    // The class pea-ingress serves (its controller), the cluster's default.
    let mut m = format!(
        "apiVersion: networking.k8s.io/v1\nkind: IngressClass\nmetadata:\n  name: pea\n  annotations: {{ingressclass.kubernetes.io/is-default-class: \"true\"}}\nspec: {{controller: pea.dev/ingress}}\n---\n\
apiVersion: v1\nkind: Namespace\nmetadata: {{name: {NS}}}\n---\n\
apiVersion: v1\nkind: Secret\nmetadata: {{name: secure-tls, namespace: {NS}}}\ntype: kubernetes.io/tls\ndata:\n  tls.crt: {}\n  tls.key: {}\n",
        b64(&leaf.pem()),
        b64(&leaf_key.serialize_pem())
    );
    for s in ["svc-a", "svc-b", "svc-dflt", "svc-wild"] {
        m.push_str(&service(s));
    }
    // 127.0.0.4 has nothing listening: connect fails there and the next endpoint is used.
    m.push_str(&slice(
        "svc-a",
        port,
        &["127.0.0.2", "127.0.0.3", "127.0.0.4"],
    ));
    m.push_str(&slice("svc-b", port, &["127.0.0.5"]));
    m.push_str(&slice("svc-dflt", port, &["127.0.0.6"]));
    m.push_str(&slice("svc-wild", port, &["127.0.0.7"]));
    let be = |s: &str| format!("{{service: {{name: {s}, port: {{number: 80}}}}}}");
    m.push_str(&format!(
        "---\napiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {{name: main, namespace: {NS}}}\nspec:\n  ingressClassName: pea\n  defaultBackend: {}\n  tls:\n  - hosts: [secure.example]\n    secretName: secure-tls\n  rules:\n  - host: a.example\n    http:\n      paths:\n      - {{path: /, pathType: Prefix, backend: {}}}\n      - {{path: /b, pathType: Prefix, backend: {}}}\n      - {{path: /exact, pathType: Exact, backend: {}}}\n  - host: \"*.wild.example\"\n    http:\n      paths:\n      - {{path: /, pathType: ImplementationSpecific, backend: {}}}\n  - host: secure.example\n    http:\n      paths:\n      - {{path: /, pathType: Prefix, backend: {}}}\n",
        be("svc-dflt"), be("svc-a"), be("svc-b"), be("svc-b"), be("svc-wild"), be("svc-b")
    ));
    cp.kubectl().ok_stdin(&["apply", "-f", "-"], &m);
    let dir = tempfile::tempdir().unwrap();
    let ing = PeaIngress::start(
        &cp.kubeconfig,
        dir.path(),
        &["--publish-address", "192.0.2.80"],
    )
    .expect("pea-ingress");
    Setup {
        ing,
        _backends: backends,
        cp,
        dir,
        ca_pem: ca.pem(),
    }
}

#[test]
fn routes_by_host_and_path_with_tls_http2_and_forwarded_headers() {
    let s = setup();
    let ing = &s.ing;
    // Host and path routing.
    eventually("routes", || {
        backend_of(&get(ing, "a.example", "/b/x")) == "b"
    });
    assert!(
        backend_of(&get(ing, "a.example", "/bee")).starts_with('a'),
        "element-wise prefix: /bee is not /b"
    );
    assert_eq!(backend_of(&get(ing, "a.example", "/exact")), "b");
    assert!(
        backend_of(&get(ing, "a.example", "/exact/more")).starts_with('a'),
        "Exact only matches the path itself"
    );
    assert_eq!(backend_of(&get(ing, "x.wild.example", "/")), "wild");
    assert_eq!(
        backend_of(&get(ing, "unknown.example", "/")),
        "dflt",
        "default backend"
    );

    // Round-robin over ready endpoints; the dead one (127.0.0.4) is skipped by retry.
    let mut seen = std::collections::BTreeMap::new();
    for _ in 0..12 {
        *seen
            .entry(backend_of(&get(ing, "a.example", "/")).to_string())
            .or_insert(0) += 1;
    }
    assert_eq!(
        seen.keys().cloned().collect::<Vec<_>>(),
        ["a1", "a2"],
        "{seen:?}"
    );
    assert!(seen.values().all(|n| *n >= 4), "spread: {seen:?}");

    // X-Forwarded-* as the backend sees them.
    let body = get(ing, "a.example", "/b");
    assert!(body.contains("xff=127.0.0.1"), "{body}");
    assert!(body.contains("xfproto=http "), "{body}");
    assert!(body.contains("xfhost=a.example"), "{body}");
    assert!(body.contains("host=a.example"), "{body}");

    // HTTP/2 over cleartext (prior knowledge).
    let (out, err) = curl(&[
        "--http2-prior-knowledge",
        "-H",
        "Host: a.example",
        "-w",
        " proto=%{http_version}",
        &format!("http://{}/b", ing.http),
    ]);
    assert!(
        out.contains("backend=b") && out.ends_with("proto=2"),
        "{out} {err}"
    );

    // TLS with SNI (and ALPN h2), verified against the test's CA.
    let ca = s.dir.path().join("ca.pem");
    std::fs::write(&ca, &s.ca_pem).unwrap();
    let resolve = format!("secure.example:{}:127.0.0.1", ing.https.port());
    let url = format!("https://secure.example:{}/", ing.https.port());
    let (out, err) = curl(&[
        "--cacert",
        ca.to_str().unwrap(),
        "--resolve",
        &resolve,
        "-w",
        " proto=%{http_version}",
        &url,
    ]);
    assert!(
        out.contains("backend=b") && out.contains("xfproto=https"),
        "{out} {err}"
    );
    assert!(out.ends_with("proto=2"), "{out}");
    let (out, err) = curl(&[
        "--http1.1",
        "--cacert",
        ca.to_str().unwrap(),
        "--resolve",
        &resolve,
        "-w",
        " proto=%{http_version}",
        &url,
    ]);
    assert!(
        out.contains("backend=b") && out.ends_with("proto=1.1"),
        "{out} {err}"
    );
    // A host without a certificate: the handshake fails, nothing is served.
    let resolve_a = format!("a.example:{}:127.0.0.1", ing.https.port());
    let (out, err) = curl(&[
        "-k",
        "--resolve",
        &resolve_a,
        &format!("https://a.example:{}/", ing.https.port()),
    ]);
    assert!(
        out.is_empty() && !err.is_empty(),
        "no certificate for a.example: {out} {err}"
    );

    // status.loadBalancer written back.
    let k = s.cp.kubectl();
    eventually("status", || {
        k.ok(&[
            "-n",
            NS,
            "get",
            "ingress",
            "main",
            "-o",
            "jsonpath={.status.loadBalancer.ingress[0].ip}",
        ]) == "192.0.2.80"
    });
}

#[test]
fn reload_keeps_connections_bad_ingresses_are_reported_and_upgrades_pass_through() {
    let s = setup();
    let ing = &s.ing;
    eventually("routes", || backend_of(&get(ing, "a.example", "/b")) == "b");

    // A kept-alive connection, used before and after a reload.
    let mut conn = TcpStream::connect(ing.http).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let ask = |c: &mut TcpStream, path: &str| -> String {
        write!(c, "GET {path} HTTP/1.1\r\nHost: a.example\r\n\r\n").unwrap();
        let mut buf = vec![0u8; 4096];
        let mut got = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            let n = c.read(&mut buf).unwrap();
            got.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&got);
            if text.contains("backend=") && text.ends_with('\n') {
                break;
            }
        }
        String::from_utf8_lossy(&got).into_owned()
    };
    assert!(ask(&mut conn, "/b").contains("backend=b"));

    // A bad Ingress (invalid host, missing TLS Secret, unknown service) next to a new good one.
    let be = |s: &str| format!("{{service: {{name: {s}, port: {{number: 80}}}}}}");
    s.cp.kubectl().ok_stdin(&["apply", "-f", "-"], &format!(
        "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {{name: bad, namespace: {NS}}}\nspec:\n  ingressClassName: pea\n  tls:\n  - hosts: [missing.example]\n    secretName: nope-tls\n  rules:\n  - host: missing.example\n    http:\n      paths:\n      - {{path: /, pathType: Prefix, backend: {}}}\n---\napiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {{name: more, namespace: {NS}}}\nspec:\n  ingressClassName: pea\n  rules:\n  - host: new.example\n    http:\n      paths:\n      - {{path: /, pathType: Prefix, backend: {}}}\n",
        be("no-such-svc"), be("svc-b")
    ));
    eventually("the new ingress", || {
        backend_of(&get(ing, "new.example", "/")) == "b"
    });
    eventually("problems logged", || {
        let log = ing.log_text();
        log.contains("tls secret ingtest/nope-tls for host missing.example not found")
            && log.contains("service ingtest/no-such-svc not found")
    });
    // ... and posted as Warning Events on the Ingress that has them.
    eventually("events on the bad ingress", || {
        let events = s.cp.kubectl().ok(&[
            "get",
            "events",
            "-n",
            NS,
            "-o",
            "jsonpath={range .items[*]}{.involvedObject.kind}|{.involvedObject.name}|{.type}|{.reason}|{.source.component}|{.message}{\"\\n\"}{end}",
        ]);
        let on_bad = |needle: &str| {
            events.lines().any(|l| {
                l.starts_with("Ingress|bad|Warning|Sync|pea-ingress|") && l.contains(needle)
            })
        };
        on_bad("service ingtest/no-such-svc not found")
            && on_bad("tls secret ingtest/nope-tls for host missing.example not found")
    });
    // The old connection still works after the reload, and so do the old routes.
    assert!(
        ask(&mut conn, "/b").contains("backend=b"),
        "kept-alive connection across reload"
    );
    assert!(backend_of(&get(ing, "a.example", "/b")) == "b");

    // An upgrade (WebSocket handshake headers) passes through; bytes go both ways.
    let mut ws = TcpStream::connect(ing.http).unwrap();
    ws.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(ws, "GET /chat HTTP/1.1\r\nHost: a.example\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n").unwrap();
    let mut buf = vec![0u8; 1024];
    let n = ws.read(&mut buf).unwrap();
    let head = String::from_utf8_lossy(&buf[..n]).to_string();
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(
        head.to_ascii_lowercase().contains("upgrade: websocket"),
        "{head}"
    );
    // A masked text frame "hello" (RFC 6455), echoed back by the backend byte for byte.
    let frame = [
        0x81u8,
        0x85,
        1,
        2,
        3,
        4,
        b'h' ^ 1,
        b'e' ^ 2,
        b'l' ^ 3,
        b'l' ^ 4,
        b'o' ^ 1,
    ];
    ws.write_all(&frame).unwrap();
    let mut echo = vec![0u8; frame.len()];
    ws.read_exact(&mut echo).unwrap();
    assert_eq!(echo, frame);
}

/// pea-control serves IngressClasses (validation, table columns) and defaults the class of a new
/// Ingress to the newest default class; pea-ingress serves only Ingresses whose class names its
/// controller, and follows a class that goes away.
#[test]
fn ingress_classes_decide_which_ingresses_are_served() {
    let s = setup();
    let ing = &s.ing;
    let k = s.cp.kubectl();
    eventually("routes", || backend_of(&get(ing, "a.example", "/b")) == "b");

    // Served like kube: table columns, and a controller that is not a domain-prefixed path refused.
    let table = k.ok(&["get", "ingressclasses"]);
    assert!(
        table.starts_with("NAME") && table.contains("CONTROLLER") && table.contains("PARAMETERS"),
        "{table}"
    );
    assert!(table.contains("pea.dev/ingress"), "{table}");
    let err = k.fails_stdin(
        &["create", "-f", "-"],
        "apiVersion: networking.k8s.io/v1\nkind: IngressClass\nmetadata: {name: bad}\nspec: {controller: nginx}\n",
    );
    assert!(
        err.contains("spec.controller") && err.contains("domain-prefixed path"),
        "{err}"
    );
    let err = k.fails(&[
        "patch",
        "ingressclass",
        "pea",
        "--type=merge",
        "-p",
        r#"{"spec":{"controller":"pea.dev/other"}}"#,
    ]);
    assert!(err.contains("field is immutable"), "{err}");

    // Without a class: DefaultIngressClass admission sets `pea`, and pea-ingress serves it.
    let be = |svc: &str| format!("{{service: {{name: {svc}, port: {{number: 80}}}}}}");
    let ingress = |name: &str, host: &str, extra: &str| {
        format!("apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {{name: {name}, namespace: {NS}{extra}}}\nspec:\n  rules:\n  - host: {host}\n    http:\n      paths:\n      - {{path: /, pathType: Prefix, backend: {}}}\n", be("svc-b"))
    };
    k.ok_stdin(
        &["create", "-f", "-"],
        &ingress("classless", "classless.example", ""),
    );
    assert_eq!(
        k.ok(&[
            "get",
            "ingress",
            "-n",
            NS,
            "classless",
            "-o",
            "jsonpath={.spec.ingressClassName}"
        ]),
        "pea"
    );
    eventually("the defaulted ingress", || {
        backend_of(&get(ing, "classless.example", "/")) == "b"
    });
    // The legacy annotation is left alone (no ingressClassName added).
    k.ok_stdin(
        &["create", "-f", "-"],
        &ingress(
            "legacy",
            "legacy.example",
            ", annotations: {kubernetes.io/ingress.class: pea}",
        ),
    );
    assert_eq!(
        k.ok(&[
            "get",
            "ingress",
            "-n",
            NS,
            "legacy",
            "-o",
            "jsonpath={.spec.ingressClassName}"
        ]),
        ""
    );
    eventually("the legacy-annotated ingress", || {
        backend_of(&get(ing, "legacy.example", "/")) == "b"
    });

    // A newer default class of another controller wins the defaulting; its Ingresses are not ours.
    std::thread::sleep(Duration::from_millis(1100)); // creationTimestamp has second precision
    k.ok_stdin(
        &["create", "-f", "-"],
        "apiVersion: networking.k8s.io/v1\nkind: IngressClass\nmetadata:\n  name: other\n  annotations: {ingressclass.kubernetes.io/is-default-class: \"true\"}\nspec:\n  controller: example.com/other\n  parameters: {apiGroup: example.com, kind: Params, name: p}\n",
    );
    let table = k.ok(&["get", "ingressclass", "other"]);
    assert!(table.contains("Params.example.com/p"), "{table}");
    k.ok_stdin(
        &["create", "-f", "-"],
        &ingress("foreign", "foreign.example", ""),
    );
    assert_eq!(
        k.ok(&[
            "get",
            "ingress",
            "-n",
            NS,
            "foreign",
            "-o",
            "jsonpath={.spec.ingressClassName}"
        ]),
        "other"
    );
    // Another Ingress after it proves the table was rebuilt since; the foreign host falls
    // through to the main Ingress's default backend.
    k.ok_stdin(
        &["create", "-f", "-"],
        &ingress("after", "after.example", "")
            .replace("spec:\n", "spec:\n  ingressClassName: pea\n"),
    );
    eventually("the ingress after", || {
        backend_of(&get(ing, "after.example", "/")) == "b"
    });
    assert_eq!(backend_of(&get(ing, "foreign.example", "/")), "dflt");

    // The `pea` class deleted: its Ingresses are no longer served (the default backend of
    // `main` went with them, so nothing routes).
    k.ok(&["delete", "ingressclass", "pea"]);
    eventually("routes gone with the class", || {
        !get(ing, "a.example", "/b").contains("backend=")
    });
}
