//! pea-kubelet's gRPC and HTTPS probes on one real node (pea-shim, pea-control, kubectl 1.32).
//! The probe targets are servers this test runs in the node's network namespace: the pods use
//! hostNetwork, so their IP is the node's and kubelet probes reach the test's servers there —
//! a grpc.health.v1 server (tonic-health) and an HTTPS server with a self-signed certificate
//! (rustls), which records the User-Agent it sees.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pea_tests::fixtures::registry::in_netns;
use pea_tests::kubelet_node::{tail, KubeletNode};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::rustls;

const GRPC_PORT: u16 = 19090;
const HTTPS_PORT: u16 = 19443;

fn condition(p: &Value, t: &str) -> Option<String> {
    p["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == t)
        .and_then(|c| c["status"].as_str().map(str::to_string))
}

fn node_ready(n: &KubeletNode) {
    let start = Instant::now();
    loop {
        if let Some(node) = n.get_json(&["node", &n.name]) {
            if condition(&node, "Ready").as_deref() == Some("True") {
                return;
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "node not Ready\n{}",
            tail(&n.kubelet_log(), 30)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn listen(n: &KubeletNode, port: u16) -> std::net::TcpListener {
    let l = in_netns(Some(&n.node.netns.path()), || {
        std::net::TcpListener::bind(("0.0.0.0", port))
    })
    .expect("listen in the node's namespace");
    l.set_nonblocking(true).expect("nonblocking");
    l
}

/// grpc.health.v1 with "ready" SERVING and "draining" NOT_SERVING.
async fn grpc_server(l: std::net::TcpListener) {
    let (reporter, service) = tonic_health::server::health_reporter();
    reporter
        .set_service_status("ready", tonic_health::ServingStatus::Serving)
        .await;
    reporter
        .set_service_status("draining", tonic_health::ServingStatus::NotServing)
        .await;
    let l = tokio::net::TcpListener::from_std(l).expect("tokio listener");
    let incoming =
        futures_util::stream::unfold(
            l,
            |l| async move { Some((l.accept().await.map(|(s, _)| s), l)) },
        );
    let _ = tonic::transport::Server::builder()
        .add_service(service)
        .serve_with_incoming(incoming)
        .await;
}

/// HTTPS: /healthz 200, /redirect 302 to /healthz, anything else 500; records User-Agents.
async fn https_server(l: std::net::TcpListener, agents: Arc<Mutex<Vec<String>>>) {
    let key = rcgen::KeyPair::generate().expect("key");
    let cert = rcgen::CertificateParams::new(vec!["probe.test".to_string()])
        .expect("params")
        .self_signed(&key)
        .expect("self-signed");
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_no_client_auth()
    .with_single_cert(
        vec![cert.der().clone()],
        rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
    )
    .expect("server config");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let l = tokio::net::TcpListener::from_std(l).expect("tokio listener");
    loop {
        let Ok((tcp, _)) = l.accept().await else {
            return;
        };
        let (acceptor, agents) = (acceptor.clone(), agents.clone());
        tokio::spawn(async move {
            let Ok(mut s) = acceptor.accept(tcp).await else {
                return;
            };
            let mut buf = vec![0u8; 4096];
            let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
                .await
                .ok()
                .and_then(Result::ok)
                .unwrap_or(0);
            let req = String::from_utf8_lossy(&buf[..n]).to_string();
            if let Some(ua) = req.lines().find_map(|l| l.strip_prefix("User-Agent: ")) {
                agents.lock().expect("agents").push(ua.to_string());
            }
            let answer = match req.split_whitespace().nth(1) {
                Some("/healthz") => "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
                Some("/redirect") => {
                    "HTTP/1.1 302 Found\r\nLocation: /healthz\r\nContent-Length: 0\r\n\r\n"
                }
                _ => "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n",
            };
            let _ = s.write_all(answer.as_bytes()).await;
            let _ = s.shutdown().await;
        });
    }
}

#[test]
fn grpc_and_https_probes_reach_servers_in_the_pods_network() {
    let mut n = KubeletNode::new("node-probes").expect("node");
    n.start_kubelet().expect("kubelet");
    node_ready(&n);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let agents = Arc::new(Mutex::new(Vec::new()));
    let grpc = rt.spawn(grpc_server(listen(&n, GRPC_PORT)));
    let https = rt.spawn(https_server(listen(&n, HTTPS_PORT), agents.clone()));
    let img = n.image.clone();
    n.apply(&format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: grpc-ready}}
spec:
  hostNetwork: true
  containers:
  - name: c
    image: {img}
    command: [sleep, '3600']
    readinessProbe: {{grpc: {{port: {GRPC_PORT}, service: ready}}, periodSeconds: 1}}
---
apiVersion: v1
kind: Pod
metadata: {{name: grpc-draining}}
spec:
  hostNetwork: true
  containers:
  - name: c
    image: {img}
    command: [sleep, '3600']
    readinessProbe: {{grpc: {{port: {GRPC_PORT}, service: draining}}, periodSeconds: 1}}
---
apiVersion: v1
kind: Pod
metadata: {{name: https-ready}}
spec:
  hostNetwork: true
  containers:
  - name: c
    image: {img}
    command: [sleep, '3600']
    readinessProbe: {{httpGet: {{scheme: HTTPS, path: /redirect, port: {HTTPS_PORT}}}, periodSeconds: 1}}
---
apiVersion: v1
kind: Pod
metadata: {{name: https-failing}}
spec:
  hostNetwork: true
  terminationGracePeriodSeconds: 1
  containers:
  - name: c
    image: {img}
    command: [sleep, '3600']
    livenessProbe: {{httpGet: {{scheme: HTTPS, path: /broken, port: {HTTPS_PORT}}}, periodSeconds: 1, failureThreshold: 1}}
"#
    ));
    // SERVING: Ready.
    n.wait_pod("grpc-ready", Duration::from_secs(60), |p| {
        condition(p, "Ready").as_deref() == Some("True")
    });
    // HTTPS with a self-signed certificate, following a same-host redirect: Ready.
    n.wait_pod("https-ready", Duration::from_secs(60), |p| {
        condition(p, "Ready").as_deref() == Some("True")
    });
    // A failing HTTPS liveness probe restarts the container.
    n.wait_pod("https-failing", Duration::from_secs(60), |p| {
        p["status"]["containerStatuses"][0]["restartCount"]
            .as_i64()
            .unwrap_or(0)
            >= 1
    });
    let ev = n.events("https-failing");
    assert!(
        ev.iter().any(|(r, m)| r == "Unhealthy"
            && m == "Liveness probe failed: HTTP probe failed with statuscode: 500"),
        "{ev:?}"
    );
    // NOT_SERVING: never Ready, with kubelet's wording in the event.
    let start = Instant::now();
    loop {
        let ev = n.events("grpc-draining");
        if ev.iter().any(|(r, m)| {
            r == "Unhealthy"
                && m == "Readiness probe failed: service unhealthy (responded with \"NOT_SERVING\")"
        }) {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "no Unhealthy event for grpc-draining: {ev:?}\n{}",
            tail(&n.kubelet_log(), 30)
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    let p = n.get_json(&["pod", "grpc-draining"]).expect("pod");
    assert_eq!(
        condition(&p, "Ready").as_deref(),
        Some("False"),
        "{}",
        p["status"]
    );
    assert_eq!(p["status"]["phase"], "Running");
    let seen = agents.lock().expect("agents").clone();
    assert!(
        !seen.is_empty() && seen.iter().all(|a| a == "kube-probe/1.32"),
        "{seen:?}"
    );
    n.delete_all_pods();
    grpc.abort();
    https.abort();
    rt.shutdown_timeout(Duration::from_secs(2));
}
