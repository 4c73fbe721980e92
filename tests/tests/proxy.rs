//! pea-proxy against a real pea-control, in network namespaces this test makes.
//!
//! The lab: a namespace holding the underlay bridge (192.168.60.0/24) and the API server; two
//! node namespaces on it, each routing its pods (10.244.N.0/24, one veth and /32 route per pod)
//! and the other node's pods (via that node); pods are namespaces running small servers; a "client" namespace
//! on the underlay plays a host outside the cluster. pea-proxy runs in each node namespace
//! (`ip netns exec`) with the admin kubeconfig; the test writes Services and EndpointSlices
//! itself through kubectl (there is no EndpointSlice controller in this lab).

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpListener, TcpStream, UdpSocket},
    path::PathBuf,
    process::{Child, Command, Output, Stdio},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};
use pea_tests::{
    bins::workspace_binary,
    control::{Backend, ControlPlane},
    netlab::{veth, wait_for, Netns},
    privileged::{require_program, require_root},
};
use serde_json::{json, Value};

const API_IP: &str = "192.168.60.254";
const CLUSTER_CIDR: &str = "10.244.0.0/16";

/// A process killed on drop.
struct Proc(Child);
impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A server thread in a namespace, stopped on drop.
struct Server {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<Result<()>>>,
}
impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// TCP: answers each connection with `<tag> <peer ip>` and closes; UDP: answers each datagram
/// with the same.
fn tag_server(ns: &Netns, port: u16, tag: &str, udp: bool) -> Result<Server> {
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = stop.clone();
    let tag = tag.to_string();
    let (tx, rx) = std::sync::mpsc::channel();
    let handle = ns.spawn_in(move || {
        if udp {
            let s = UdpSocket::bind(("0.0.0.0", port))?;
            s.set_read_timeout(Some(Duration::from_millis(50)))?;
            let _ = tx.send(());
            let mut buf = [0u8; 512];
            while !stop2.load(Ordering::Relaxed) {
                if let Ok((_, peer)) = s.recv_from(&mut buf) {
                    let _ = s.send_to(format!("{tag} {}", peer.ip()).as_bytes(), peer);
                }
            }
        } else {
            let l = TcpListener::bind(("0.0.0.0", port))?;
            l.set_nonblocking(true)?;
            let _ = tx.send(());
            while !stop2.load(Ordering::Relaxed) {
                match l.accept() {
                    Ok((mut s, peer)) => {
                        let _ = s.write_all(format!("{tag} {}", peer.ip()).as_bytes());
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(2))
                    }
                    Err(e) => return Err(e.into()),
                }
            }
        }
        Ok(())
    })?;
    rx.recv_timeout(Duration::from_secs(5))
        .context("server did not start")?;
    Ok(Server {
        stop,
        handle: Some(handle),
    })
}

/// Connects from `ns` to `addr` and reads the server's answer. Err on refusal or timeout.
fn tcp_get(ns: &Netns, addr: SocketAddr) -> Result<String> {
    ns.run_in(move || {
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))
            .with_context(|| format!("connect {addr}"))?;
        s.set_read_timeout(Some(Duration::from_secs(2)))?;
        let mut got = String::new();
        s.read_to_string(&mut got)?;
        Ok(got)
    })
}

/// An HTTP/1.1 GET / from `ns` to `addr`: the whole answer (status line, headers, body).
fn http_get(ns: &Netns, addr: SocketAddr) -> Result<String> {
    ns.run_in(move || {
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))
            .with_context(|| format!("connect {addr}"))?;
        s.set_read_timeout(Some(Duration::from_secs(2)))?;
        s.write_all(b"GET / HTTP/1.1\r\nHost: lb\r\nConnection: close\r\n\r\n")?;
        let mut got = String::new();
        s.read_to_string(&mut got)?;
        Ok(got)
    })
}

/// The error kind of a failed connect from `ns` (refused vs timed out).
fn tcp_error(ns: &Netns, addr: SocketAddr) -> Result<std::io::ErrorKind> {
    ns.run_in(
        move || match TcpStream::connect_timeout(&addr, Duration::from_secs(2)) {
            Ok(_) => bail!("connect {addr} succeeded"),
            Err(e) => Ok(e.kind()),
        },
    )
}

struct Pod {
    ns: Netns,
    ip: String,
    node: usize,
}

struct Lab {
    lab: Netns,
    cp: Option<ControlPlane>,
    home: tempfile::TempDir,
    nodes: Vec<Netns>,
    client: Netns,
    pods: Vec<Pod>,
    proxies: Vec<Option<Proc>>,
    logs: tempfile::TempDir,
    /// The server's data dir; dropped after the server.
    _data: tempfile::TempDir,
}

impl Lab {
    /// The underlay, the API server, `n` nodes with their pod routes, a client.
    fn new(n: usize) -> Result<Self> {
        require_root();
        for p in ["nsenter", "nft", "kubectl", "conntrack"] {
            require_program(p);
        }
        let lab = Netns::new("plab")?;
        lab.ip(&["link", "add", "under0", "type", "bridge"])?;
        lab.ip(&["link", "set", "under0", "up"])?;
        lab.ip(&["addr", "add", &format!("{API_IP}/24"), "dev", "under0"])?;
        let mut nodes = Vec::new();
        for i in 1..=n {
            let ns = Netns::new("pnode")?;
            veth(&ns, "eth0", &lab, &format!("n{i}"))?;
            lab.ip(&["link", "set", &format!("n{i}"), "master", "under0"])?;
            ns.ip(&["addr", "add", &format!("192.168.60.{i}/24"), "dev", "eth0"])?;
            ns.exec(&["sysctl", "-qw", "net.ipv4.ip_forward=1"])?;
            // Nodes have a default route, as real ones do: without one, traffic to a Service
            // address fails routing before the proxy's filter chains could reject it.
            ns.ip(&["route", "add", "default", "via", API_IP])?;
            for j in 1..=n {
                if j != i {
                    ns.ip(&[
                        "route",
                        "add",
                        &format!("10.244.{j}.0/24"),
                        "via",
                        &format!("192.168.60.{j}"),
                    ])?;
                }
            }
            nodes.push(ns);
        }
        let client = Netns::new("pclient")?;
        veth(&client, "eth0", &lab, "cl")?;
        lab.ip(&["link", "set", "cl", "master", "under0"])?;
        client.ip(&["addr", "add", "192.168.60.100/24", "dev", "eth0"])?;
        let data = tempfile::tempdir()?;
        let data_dir = data.path().join("control");
        let cp = lab.run_in(move || {
            ControlPlane::start_with(Backend::Embedded, move |c| {
                c.data_dir = data_dir;
                c.listen = format!("{API_IP}:6443").parse().expect("addr");
                c.extra_sans = vec![API_IP.into()];
            })
        })?;
        Ok(Lab {
            lab,
            cp: Some(cp),
            home: tempfile::tempdir()?,
            proxies: (0..n).map(|_| None).collect(),
            nodes,
            client,
            pods: Vec::new(),
            logs: tempfile::tempdir()?,
            _data: data,
        })
    }

    /// A pod on node `node` (0-based) with address 10.244.<node+1>.<host>, routed (no bridge):
    /// a /32 route per pod on the node, the node's veth answering ARP for the pod's gateway
    /// (as Calico wires pods). The node's veth carries 10.244.<node+1>.1 so traffic the node
    /// masquerades towards a pod leaves with that address.
    fn pod(&mut self, node: usize, host: u8) -> Result<usize> {
        let ns = Netns::new("ppod")?;
        let n = &self.nodes[node];
        let hostif = format!("veth{host}");
        veth(&ns, "eth0", n, &hostif)?;
        let ip = format!("10.244.{}.{host}", node + 1);
        let gw = format!("10.244.{}.1", node + 1);
        n.ip(&["addr", "add", &format!("{gw}/32"), "dev", &hostif])?;
        n.ip(&["route", "add", &format!("{ip}/32"), "dev", &hostif])?;
        n.exec(&[
            "sysctl",
            "-qw",
            &format!("net.ipv4.conf.{hostif}.proxy_arp=1"),
        ])?;
        ns.ip(&["addr", "add", &format!("{ip}/32"), "dev", "eth0"])?;
        ns.ip(&["route", "add", &gw, "dev", "eth0", "scope", "link"])?;
        ns.ip(&["route", "add", "default", "via", &gw, "dev", "eth0"])?;
        self.pods.push(Pod { ns, ip, node });
        Ok(self.pods.len() - 1)
    }

    fn log_path(&self, node: usize) -> PathBuf {
        self.logs.path().join(format!("proxy{node}.log"))
    }

    fn log(&self, node: usize) -> String {
        std::fs::read_to_string(self.log_path(node)).unwrap_or_default()
    }

    fn start_proxy(&mut self, node: usize, extra: &[&str]) -> Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path(node))?;
        let cp = self.cp.as_ref().expect("cp");
        let child = Command::new("ip")
            .args(["netns", "exec", &self.nodes[node].name])
            .arg(workspace_binary("pea-proxy", "PEA_PROXY_BIN"))
            .arg("--kubeconfig")
            .arg(&cp.kubeconfig)
            .args([
                "--hostname-override",
                &format!("node{}", node + 1),
                "--cluster-cidr",
                CLUSTER_CIDR,
                "--min-sync-period",
                "0s",
                "--ip-family",
                "IPv4",
            ])
            .args(extra)
            .env("PEA_PROXY_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("starting pea-proxy")?;
        self.proxies[node] = Some(Proc(child));
        Ok(())
    }

    fn stop_proxy(&mut self, node: usize) {
        self.proxies[node] = None;
    }

    fn kubectl(&self, args: &[&str], stdin: Option<&str>) -> Result<Output> {
        let mut child = Command::new("nsenter")
            .arg(format!("--net={}", self.lab.path().display()))
            .arg("kubectl")
            .args(args)
            .env("HOME", self.home.path())
            .env("KUBECONFIG", &self.cp.as_ref().expect("cp").kubeconfig)
            .env_remove("KUBERNETES_SERVICE_HOST")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        let mut input = child.stdin.take().expect("stdin");
        if let Some(s) = stdin {
            input.write_all(s.as_bytes())?;
        }
        drop(input);
        Ok(child.wait_with_output()?)
    }

    fn apply(&self, obj: &Value) -> Result<()> {
        let out = self.kubectl(&["apply", "-f", "-"], Some(&obj.to_string()))?;
        if !out.status.success() {
            bail!(
                "kubectl apply {}: {}",
                obj["metadata"]["name"],
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(())
    }

    fn delete(&self, kind: &str, name: &str) -> Result<()> {
        let out = self.kubectl(&["delete", kind, name, "--wait=false"], None)?;
        anyhow::ensure!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(())
    }

    /// A Service; returns its clusterIP (allocated by the server).
    fn service(&self, name: &str, spec: Value) -> Result<String> {
        self.apply(&json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": "default"}, "spec": spec}))?;
        let out = self.kubectl(
            &["get", "svc", name, "-o", "jsonpath={.spec.clusterIP}"],
            None,
        )?;
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    fn node_port(&self, name: &str) -> Result<u16> {
        self.svc_port(name, "{.spec.ports[0].nodePort}")
    }

    /// A port number of Service `name` at the jsonpath `path`.
    fn svc_port(&self, name: &str, path: &str) -> Result<u16> {
        let out = self.kubectl(
            &["get", "svc", name, "-o", &format!("jsonpath={path}")],
            None,
        )?;
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .with_context(|| format!("{path} of {name}"))
    }

    /// The EndpointSlice `<svc>-1` with these pods (ready unless listed in `not_ready`).
    fn slice(&self, svc: &str, port: Value, pods: &[usize], terminating: &[usize]) -> Result<()> {
        let eps: Vec<Value> = pods
            .iter()
            .map(|p| {
                let pod = &self.pods[*p];
                let term = terminating.contains(p);
                json!({"addresses": [pod.ip], "nodeName": format!("node{}", pod.node + 1),
                    "conditions": {"ready": !term, "serving": true, "terminating": term}})
            })
            .collect();
        self.apply(
            &json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": format!("{svc}-1"), "namespace": "default",
                "labels": {"kubernetes.io/service-name": svc}},
            "addressType": "IPv4", "ports": [port], "endpoints": eps}),
        )
    }

    /// Waits until node `node`'s table has `needle` in its map elements or chains.
    fn wait_rules(&self, node: usize, what: &str, f: impl Fn(&str) -> bool) -> Result<()> {
        let ns = &self.nodes[node];
        let ok = wait_for(Duration::from_secs(15), || {
            let out = ns.exec(&["nft", "-j", "list", "table", "ip", "pea-proxy"])?;
            Ok(out.status.success() && f(&String::from_utf8_lossy(&out.stdout)))
        })?;
        if !ok {
            bail!(
                "node{}: timed out waiting for {what}; log:\n{}",
                node + 1,
                self.log(node)
            );
        }
        Ok(())
    }

    /// Waits until the data maps of service port `key` (cluster and node-local) on `node` hold
    /// each of `ips`. Endpoint changes reach the kernel as map elements, apart from the
    /// Service's own rules, so a chain or address in the table says nothing of its endpoints.
    fn wait_endpoints(&self, node: usize, key: &str, ips: &[&str]) -> Result<()> {
        self.wait_rules(node, &format!("{key}'s endpoints {ips:?}"), |t| {
            let held = all_map_ips(t, key);
            ips.iter().all(|ip| held.iter().any(|h| h == ip))
        })
    }

    /// What a node holds, for a failure message.
    fn debug(&self, node: usize) -> String {
        let ns = &self.nodes[node];
        let mut s = String::new();
        for args in [
            &["nft", "list", "ruleset"][..],
            &["conntrack", "-L"][..],
            &["ip", "route"][..],
            &["ip", "addr"][..],
        ] {
            if let Ok(o) = ns.exec(args) {
                s.push_str(&format!(
                    "$ {}\n{}{}\n",
                    args.join(" "),
                    String::from_utf8_lossy(&o.stdout),
                    String::from_utf8_lossy(&o.stderr)
                ));
            }
        }
        s.push_str(&self.log(node));
        s
    }

    /// The node's metrics page (fetched inside its namespace).
    fn metrics(&self, node: usize, port: u16, path: &str) -> Result<(u16, String)> {
        let path = path.to_string();
        self.nodes[node].run_in(move || {
            let mut s = TcpStream::connect(("127.0.0.1", port))?;
            s.set_read_timeout(Some(Duration::from_secs(3)))?;
            write!(
                s,
                "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
            )?;
            let mut got = String::new();
            s.read_to_string(&mut got)?;
            let status = got
                .split_whitespace()
                .nth(1)
                .and_then(|c| c.parse().ok())
                .unwrap_or(0);
            Ok((status, got))
        })
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for p in &mut self.proxies {
            *p = None;
        }
        drop(self.cp.take());
    }
}

/// The endpoint addresses in the data map of service port `key` (`ns/name/proto/port`), in the
/// order of their random-number ranges, from `nft -j list table`.
fn map_ips(table_json: &str, key: &str) -> Vec<String> {
    maps_ips(table_json, key, &["endpoints-"])
}

/// The endpoint addresses in every data map of service port `key`: the cluster-wide one and
/// the node-local one (`local-endpoints-…`, traffic policy Local).
fn all_map_ips(table_json: &str, key: &str) -> Vec<String> {
    maps_ips(table_json, key, &["endpoints-", "local-endpoints-"])
}

/// The endpoint addresses in the maps of service port `key` whose names start with one of
/// `prefixes`, map by map, each in its ranges' order.
fn maps_ips(table_json: &str, key: &str, prefixes: &[&str]) -> Vec<String> {
    let Ok(v) = serde_json::from_str::<Value>(table_json) else {
        return Vec::new();
    };
    let suffix = format!("-{key}");
    v["nftables"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|i| &i["map"])
        .filter(|m| {
            m["name"]
                .as_str()
                .is_some_and(|n| prefixes.iter().any(|p| n.starts_with(p)) && n.ends_with(&suffix))
        })
        .flat_map(|m| m["elem"].as_array().into_iter().flatten())
        .filter_map(|e| e[1]["concat"][0].as_str().map(str::to_string))
        .collect()
}

fn addr(ip: &str, port: u16) -> SocketAddr {
    format!("{ip}:{port}").parse().expect("addr")
}

/// The tags answering `n` connections.
fn tags(ns: &Netns, to: SocketAddr, n: usize) -> Result<Vec<String>> {
    (0..n)
        .map(|_| tcp_get(ns, to).map(|s| s.split_whitespace().next().unwrap_or("").to_string()))
        .collect()
}

#[test]
fn clusterip_nodeport_reject_hairpin_affinity_and_bad_objects() -> Result<()> {
    let mut lab = Lab::new(2)?;
    let a = lab.pod(0, 10)?; // node1
    let b = lab.pod(1, 10)?; // node2
    let c = lab.pod(1, 11)?; // node2, the client pod
    let _sa = tag_server(&lab.pods[a].ns, 8080, "a", false)?;
    let _sb = tag_server(&lab.pods[b].ns, 8080, "b", false)?;
    // node1 also resyncs fully every 2 s, so the flush-and-rewrite transaction runs between
    // the incremental ones throughout this test.
    lab.start_proxy(
        0,
        &[
            "--metrics-bind-address",
            "127.0.0.1:10249",
            "--sync-period",
            "2s",
        ],
    )?;
    // node2 serves NodePorts only on its underlay address.
    lab.start_proxy(1, &["--nodeport-addresses", "192.168.60.0/24"])?;

    // ClusterIP with one endpoint on node1, reached from a pod on node2.
    let cip = lab.service("web", json!({"ports": [{"name": "http", "port": 80}]}))?;
    lab.slice("web", json!({"name": "http", "port": 8080}), &[a], &[])?;
    lab.wait_rules(1, "web's service chain", |t| {
        t.contains("default/web/tcp/http")
    })?;
    lab.wait_endpoints(1, "default/web/tcp/http", &["10.244.1.10"])?;
    let got = tcp_get(&lab.pods[c].ns, addr(&cip, 80)).with_context(|| lab.debug(1))?;
    // Pod to pod across nodes keeps the client's address (no masquerade inside the cluster).
    assert_eq!(got, format!("a {}", lab.pods[c].ip));

    // Both endpoints: numgen spreads connections over them.
    lab.slice("web", json!({"name": "http", "port": 8080}), &[a, b], &[])?;
    lab.wait_rules(1, "two endpoints", |t| {
        map_ips(t, "default/web/tcp/http").len() == 2
    })?;
    let seen = tags(&lab.pods[c].ns, addr(&cip, 80), 30)?;
    assert!(
        seen.iter().any(|t| t == "a") && seen.iter().any(|t| t == "b"),
        "{seen:?}"
    );

    // Terminating endpoints only when nothing is ready: a is terminating, b ready → only b.
    lab.slice("web", json!({"name": "http", "port": 8080}), &[a, b], &[a])?;
    lab.wait_rules(1, "one ready endpoint", |t| {
        map_ips(t, "default/web/tcp/http") == ["10.244.2.10"]
    })?;
    let seen = tags(&lab.pods[c].ns, addr(&cip, 80), 10)?;
    assert!(seen.iter().all(|t| t == "b"), "{seen:?}");
    // b gone, a still terminating (and serving): the fallback sends to a.
    lab.slice("web", json!({"name": "http", "port": 8080}), &[a], &[a])?;
    lab.wait_rules(1, "terminating fallback", |t| {
        map_ips(t, "default/web/tcp/http") == ["10.244.1.10"]
    })?;
    assert_eq!(tags(&lab.pods[c].ns, addr(&cip, 80), 3)?, ["a", "a", "a"]);

    // Hairpin: a reaches itself through its Service (masqueraded to the node's address on the pod's veth).
    let got = tcp_get(&lab.pods[a].ns, addr(&cip, 80))?;
    assert_eq!(got, "a 10.244.1.1");

    // Session affinity: one client keeps its endpoint.
    let sticky = lab.service(
        "sticky",
        json!({"ports": [{"name": "http", "port": 80}], "sessionAffinity": "ClientIP",
            "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 300}}}),
    )?;
    lab.slice(
        "sticky",
        json!({"name": "http", "port": 8080}),
        &[a, b],
        &[],
    )?;
    lab.wait_rules(1, "affinity sets", |t| t.contains("affinity-"))?;
    let seen = tags(&lab.pods[c].ns, addr(&sticky, 80), 15)?;
    assert!(
        seen.iter().all(|t| *t == seen[0]),
        "affinity broken: {seen:?}"
    );

    // NodePort from outside the cluster, to either node: masqueraded (the pod sees a node).
    let np_ip = lab.service(
        "np",
        json!({"type": "NodePort", "ports": [{"name": "http", "port": 80}]}),
    )?;
    assert!(!np_ip.is_empty());
    let np = lab.node_port("np")?;
    lab.slice("np", json!({"name": "http", "port": 8080}), &[a], &[])?;
    lab.wait_rules(1, "nodeport", |t| t.contains(&np.to_string()))?;
    lab.wait_rules(0, "nodeport", |t| t.contains(&np.to_string()))?;
    lab.wait_endpoints(0, "default/np/tcp/http", &["10.244.1.10"])?;
    lab.wait_endpoints(1, "default/np/tcp/http", &["10.244.1.10"])?;
    assert_eq!(
        tcp_get(&lab.client, addr("192.168.60.1", np))?,
        "a 10.244.1.1"
    );
    assert_eq!(
        tcp_get(&lab.client, addr("192.168.60.2", np))?,
        "a 192.168.60.2"
    );
    // node1 serves it on every local address (here its pod-side address, from a pod on node2;
    // masqueraded like all NodePort traffic under the Cluster policy); node2,
    // with --nodeport-addresses, not on its pod-side address (nothing listens: refused).
    assert_eq!(
        tcp_get(&lab.pods[c].ns, addr("10.244.1.1", np))?,
        "a 10.244.1.1"
    );
    assert_eq!(
        tcp_error(&lab.pods[c].ns, addr("10.244.2.1", np))?,
        std::io::ErrorKind::ConnectionRefused
    );

    // No endpoints: refused at once (TCP reset from the reject chain), not a timeout.
    let empty = lab.service("empty", json!({"ports": [{"name": "http", "port": 80}]}))?;
    lab.wait_rules(1, "reject", |t| {
        t.contains(&empty) && t.contains("reject-chain")
    })?;
    let started = Instant::now();
    let kind = tcp_error(&lab.pods[c].ns, addr(&empty, 80))?;
    assert_eq!(kind, std::io::ErrorKind::ConnectionRefused);
    assert!(started.elapsed() < Duration::from_secs(2));
    // A ClusterIP port the Service does not have is rejected too.
    assert_eq!(
        tcp_error(&lab.pods[c].ns, addr(&cip, 81))?,
        std::io::ErrorKind::ConnectionRefused
    );

    // Bad objects: a slice address that is not an IP (if the API server lets it through), and a
    // second Service claiming an externalIP:port another owns. Both are logged; the rest works.
    let bad = lab.kubectl(
        &["apply", "-f", "-"],
        Some(
            &json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": "web-bad", "namespace": "default",
                "labels": {"kubernetes.io/service-name": "web"}},
            "addressType": "IPv4", "ports": [{"name": "http", "port": 8080}],
            "endpoints": [{"addresses": ["300.1.2.3"]}]})
            .to_string(),
        ),
    )?;
    if bad.status.success() {
        let ok = wait_for(Duration::from_secs(10), || {
            Ok(lab
                .log(1)
                .contains("\"300.1.2.3\" is not a usable IPv4 address"))
        })?;
        assert!(ok, "no log line for the bad address: {}", lab.log(1));
    } else {
        let err = String::from_utf8_lossy(&bad.stderr);
        assert!(
            err.contains("300.1.2.3"),
            "the API refused it without naming it: {err}"
        );
    }
    lab.service(
        "ext1",
        json!({"ports": [{"name": "http", "port": 80}], "externalIPs": ["192.168.60.200"]}),
    )?;
    lab.slice("ext1", json!({"name": "http", "port": 8080}), &[a], &[])?;
    lab.service(
        "ext2",
        json!({"ports": [{"name": "http", "port": 80}], "externalIPs": ["192.168.60.200"]}),
    )?;
    lab.slice("ext2", json!({"name": "http", "port": 8080}), &[b], &[])?;
    let ok = wait_for(Duration::from_secs(10), || {
        Ok(lab
            .log(1)
            .contains("is already used by service default/ext1"))
    })?;
    assert!(ok, "no log line for the conflict: {}", lab.log(1));
    // ... and posted as a Warning Event on the Service that lost the claim (as kube-proxy's
    // recorder would), once per node that saw it.
    let ok = wait_for(Duration::from_secs(10), || {
        let out = lab.kubectl(&["get", "events", "-o", "json"], None)?;
        let list: Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        Ok(list["items"].as_array().into_iter().flatten().any(|e| {
            e["involvedObject"]["kind"] == "Service"
                && e["involvedObject"]["name"] == "ext2"
                && e["type"] == "Warning"
                && e["reason"] == "KubeProxyInvalidService"
                && e["source"]["component"] == "pea-proxy"
                && e["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("is already used by service default/ext1"))
        }))
    })?;
    assert!(ok, "no Warning Event on ext2 for the conflict");
    // Everything else still works, and the externalIP goes to ext1's endpoint only.
    assert_eq!(tags(&lab.pods[c].ns, addr(&cip, 80), 2)?, ["a", "a"]);
    assert_eq!(
        tags(&lab.pods[c].ns, addr("192.168.60.200", 80), 5)?,
        ["a"; 5]
    );
    // ext1 goes: ext2 takes the address over.
    lab.delete("svc", "ext1")?;
    lab.wait_rules(1, "ext2 owns the externalIP", |t| {
        !t.contains("default/ext1/") && t.contains("default/ext2/")
    })?;
    let ok = wait_for(Duration::from_secs(10), || {
        Ok(tcp_get(&lab.pods[c].ns, addr("192.168.60.200", 80))
            .map(|s| s.starts_with("b"))
            .unwrap_or(false))
    })?;
    assert!(ok, "ext2 did not take over the externalIP");

    // /metrics and /healthz on the node's loopback.
    let (status, body) = lab.metrics(0, 10249, "/metrics")?;
    assert_eq!(status, 200);
    assert!(
        body.contains("kubeproxy_sync_proxy_rules_duration_seconds_count"),
        "{body}"
    );
    let (status, _) = lab.metrics(0, 10256, "/healthz")?;
    assert_eq!(status, 200);
    let full_syncs: f64 = body
        .lines()
        .find_map(|l| l.strip_prefix("kubeproxy_sync_full_proxy_rules_duration_seconds_count "))
        .context("full sync count")?
        .parse()?;
    assert!(full_syncs >= 2.0, "no periodic full resync ran: {body}");
    for node in 0..2 {
        assert!(!lab.log(node).contains("sync failed"), "{}", lab.log(node));
    }

    // --cleanup removes the tables (run after the proxy stops).
    lab.stop_proxy(0);
    let out = lab.nodes[0].exec(&[
        workspace_binary("pea-proxy", "PEA_PROXY_BIN")
            .to_str()
            .unwrap(),
        "--cleanup",
    ])?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!lab.nodes[0]
        .nft_tables()?
        .iter()
        .any(|t| t.contains("pea-proxy")));
    Ok(())
}

#[test]
fn local_traffic_policy_and_endpoint_churn() -> Result<()> {
    let mut lab = Lab::new(2)?;
    let a = lab.pod(0, 10)?;
    let b = lab.pod(1, 10)?;
    let b2 = lab.pod(1, 12)?;
    let c = lab.pod(1, 11)?; // client pod on node2
    let _sa = tag_server(&lab.pods[a].ns, 8080, "a", false)?;
    let _sb = tag_server(&lab.pods[b].ns, 8080, "b", false)?;
    let _sb2 = tag_server(&lab.pods[b2].ns, 8080, "b2", false)?;
    lab.start_proxy(0, &[])?;
    lab.start_proxy(1, &[])?;

    // externalTrafficPolicy Local: NodePort answered only on the node with a local endpoint,
    // with the client's own address preserved.
    lab.service(
        "loc",
        json!({"type": "NodePort", "externalTrafficPolicy": "Local",
            "ports": [{"name": "http", "port": 80}]}),
    )?;
    let np = lab.node_port("loc")?;
    lab.slice("loc", json!({"name": "http", "port": 8080}), &[a], &[])?;
    lab.wait_rules(0, "loc", |t| t.contains("local-"))?;
    lab.wait_rules(1, "loc drop", |t| t.contains(&np.to_string()))?;
    lab.wait_endpoints(0, "default/loc/tcp/http", &["10.244.1.10"])?;
    lab.wait_endpoints(1, "default/loc/tcp/http", &["10.244.1.10"])?;
    assert_eq!(
        tcp_get(&lab.client, addr("192.168.60.1", np))?,
        "a 192.168.60.100"
    );
    assert_eq!(
        tcp_error(&lab.client, addr("192.168.60.2", np))?,
        std::io::ErrorKind::TimedOut,
        "node2 has no local endpoint: dropped"
    );

    // A LoadBalancer with externalTrafficPolicy Local: each node answers its health check
    // node port as kube-proxy does, 200 where an endpoint is local, 503 elsewhere; the port
    // closes when the policy goes back to Cluster.
    let lb_spec = |policy: &str| {
        json!({"type": "LoadBalancer", "externalTrafficPolicy": policy,
            "ports": [{"name": "http", "port": 80}]})
    };
    lab.service("lbl", lb_spec("Local"))?;
    let hc = lab.svc_port("lbl", "{.spec.healthCheckNodePort}")?;
    lab.slice("lbl", json!({"name": "http", "port": 8080}), &[a], &[])?;
    let answer = |node: &str| http_get(&lab.client, addr(node, hc)).unwrap_or_default();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !(answer("192.168.60.1").starts_with("HTTP/1.1 200")
        && answer("192.168.60.2").starts_with("HTTP/1.1 503"))
    {
        assert!(
            Instant::now() < deadline,
            "health check node port {hc}: node1 {:?}, node2 {:?}\nnode2's log:\n{}",
            answer("192.168.60.1"),
            answer("192.168.60.2"),
            lab.log(1)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let up = answer("192.168.60.1");
    assert!(
        up.to_lowercase()
            .contains("x-load-balancing-endpoint-weight: 1")
            && up.contains("\"localEndpoints\": 1")
            && up.contains("\"namespace\": \"default\"")
            && up.contains("\"name\": \"lbl\"")
            && up.contains("\"serviceProxyHealthy\": true"),
        "{up}"
    );
    assert!(answer("192.168.60.2").contains("\"localEndpoints\": 0"));
    lab.service("lbl", lb_spec("Cluster"))?;
    let deadline = Instant::now() + Duration::from_secs(20);
    while tcp_error(&lab.client, addr("192.168.60.1", hc)).ok()
        != Some(std::io::ErrorKind::ConnectionRefused)
    {
        assert!(
            Instant::now() < deadline,
            "health check port {hc} still open"
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    // internalTrafficPolicy Local: a ClusterIP from node2's pod reaches only node2's endpoint.
    let itp = lab.service(
        "itp",
        json!({"internalTrafficPolicy": "Local", "ports": [{"name": "http", "port": 80}]}),
    )?;
    lab.slice("itp", json!({"name": "http", "port": 8080}), &[a, b], &[])?;
    lab.wait_rules(1, "itp", |t| t.contains("default/itp/"))?;
    lab.wait_endpoints(0, "default/itp/tcp/http", &["10.244.1.10"])?;
    lab.wait_endpoints(1, "default/itp/tcp/http", &["10.244.2.10"])?;
    assert_eq!(tags(&lab.pods[c].ns, addr(&itp, 80), 8)?, ["b"; 8]);
    assert_eq!(tags(&lab.pods[a].ns, addr(&itp, 80), 4)?, ["a"; 4]);

    // Churn: the endpoint set changes while a client loops; once the proxy has synced a
    // change, no new connection reaches a removed endpoint.
    let churn = lab.service("churn", json!({"ports": [{"name": "http", "port": 80}]}))?;
    let port = json!({"name": "http", "port": 8080});
    let sets: [&[usize]; 4] = [&[a, b], &[b2], &[a], &[b, b2]];
    for (round, set) in sets.iter().enumerate() {
        lab.slice("churn", port.clone(), set, &[])?;
        let ips: Vec<String> = set.iter().map(|p| lab.pods[*p].ip.clone()).collect();
        let all = ["10.244.1.10", "10.244.2.10", "10.244.2.12"];
        lab.wait_rules(1, &format!("churn round {round}"), |t| {
            let now = map_ips(t, "default/churn/tcp/http");
            all.iter()
                .all(|ip| now.contains(&ip.to_string()) == ips.contains(&ip.to_string()))
        })?;
        let want: Vec<&str> = set
            .iter()
            .map(|p| match *p {
                x if x == a => "a",
                x if x == b => "b",
                _ => "b2",
            })
            .collect();
        for t in tags(&lab.pods[c].ns, addr(&churn, 80), 20)? {
            assert!(
                want.contains(&t.as_str()),
                "round {round}: {t} answered, want {want:?}"
            );
        }
    }
    // The log says nothing failed.
    assert!(!lab.log(1).contains("sync failed"), "{}", lab.log(1));
    Ok(())
}

#[test]
fn udp_conntrack_flush_and_restart_keeps_connections() -> Result<()> {
    let mut lab = Lab::new(1)?;
    let a = lab.pod(0, 10)?;
    let b = lab.pod(0, 11)?;
    let c = lab.pod(0, 12)?;
    let _ua = tag_server(&lab.pods[a].ns, 5353, "a", true)?;
    let _ub = tag_server(&lab.pods[b].ns, 5353, "b", true)?;
    lab.start_proxy(0, &[])?;
    let dns = lab.service(
        "dns",
        json!({"ports": [{"name": "dns", "port": 53, "protocol": "UDP"}]}),
    )?;
    let port = json!({"name": "dns", "port": 5353, "protocol": "UDP"});
    lab.slice("dns", port.clone(), &[a], &[])?;
    lab.wait_rules(0, "dns", |t| t.contains("default/dns/udp/dns"))?;
    lab.wait_endpoints(0, "default/dns/udp/dns", &["10.244.1.10"])?;
    // One client socket (one conntrack flow) asks again and again.
    let to = addr(&dns, 53);
    let ask = |sock: &UdpSocket| -> Result<String> {
        sock.send_to(b"q", to)?;
        let mut buf = [0u8; 64];
        let (n, _) = sock.recv_from(&mut buf)?;
        Ok(String::from_utf8_lossy(&buf[..n])
            .split_whitespace()
            .next()
            .unwrap_or("")
            .to_string())
    };
    let sock = lab.pods[c].ns.run_in(|| {
        let s = UdpSocket::bind("0.0.0.0:40000")?;
        s.set_read_timeout(Some(Duration::from_secs(2)))?;
        Ok(s)
    })?;
    assert_eq!(ask(&sock)?, "a");
    // a leaves the Service (but still runs): the flow must move to b after the sync.
    lab.slice("dns", port, &[b], &[])?;
    lab.wait_rules(0, "dns on b", |t| {
        map_ips(t, "default/dns/udp/dns") == ["10.244.1.11"]
    })?;
    let ok = wait_for(Duration::from_secs(5), || {
        Ok(ask(&sock).map(|t| t == "b").unwrap_or(false))
    })?;
    assert!(
        ok,
        "the UDP flow still goes to the removed endpoint; log: {}",
        lab.log(0)
    );

    // Restart: an established TCP connection through a ClusterIP survives.
    let echo = lab.pods[a].ns.tcp_stream_echo_server(7000)?;
    let svc = lab.service("echo", json!({"ports": [{"name": "e", "port": 70}]}))?;
    lab.slice("echo", json!({"name": "e", "port": 7000}), &[a], &[])?;
    lab.wait_rules(0, "echo", |t| t.contains("default/echo/tcp/e"))?;
    lab.wait_endpoints(0, "default/echo/tcp/e", &["10.244.1.10"])?;
    let mut conn = lab.pods[c].ns.tcp_connect(addr(&svc, 70))?;
    assert_eq!(conn.echo(b"one")?, b"one");
    lab.stop_proxy(0);
    lab.start_proxy(0, &[])?;
    let ok = wait_for(Duration::from_secs(10), || {
        Ok(lab.log(0).matches("first sync").count() >= 2)
    })?;
    assert!(ok, "{}", lab.log(0));
    lab.wait_rules(0, "echo after restart", |t| {
        t.contains("default/echo/tcp/e")
    })?;
    assert_eq!(conn.echo(b"two")?, b"two");
    drop(conn);
    drop(echo);
    Ok(())
}

/// loadBalancerSourceRanges: new connections to a LoadBalancer IP from outside the ranges are
/// dropped before DNAT (kube-proxy's firewall-ips map and per-service firewall chains); a client
/// inside the range gets through, as does the NodePort of the same Service from anywhere; the
/// annotation works when the field is empty; changing or removing the ranges is applied.
#[test]
fn load_balancer_source_ranges_drop_other_sources() -> Result<()> {
    const LB_IP: &str = "192.168.61.10";
    let mut lab = Lab::new(1)?;
    let a = lab.pod(0, 10)?;
    let _sa = tag_server(&lab.pods[a].ns, 8080, "a", false)?;
    // A second host outside the cluster, next to the lab's client; both route the LB IP to the
    // node (the "load balancer" delivers to the node with the client's address kept).
    let outsider = Netns::new("pclient")?;
    veth(&outsider, "eth0", &lab.lab, "cl2")?;
    lab.lab.ip(&["link", "set", "cl2", "master", "under0"])?;
    outsider.ip(&["addr", "add", "192.168.60.101/24", "dev", "eth0"])?;
    for ns in [&lab.client, &outsider] {
        ns.ip(&[
            "route",
            "add",
            &format!("{LB_IP}/32"),
            "via",
            "192.168.60.1",
        ])?;
    }
    lab.start_proxy(0, &[])?;
    lab.service(
        "guarded",
        json!({"type": "LoadBalancer", "ports": [{"name": "http", "port": 80}],
            "loadBalancerSourceRanges": ["192.168.60.100/32"]}),
    )?;
    lab.slice("guarded", json!({"name": "http", "port": 8080}), &[a], &[])?;
    let patch = json!({"status": {"loadBalancer": {"ingress": [{"ip": LB_IP}]}}}).to_string();
    let out = lab.kubectl(
        &[
            "patch",
            "svc",
            "guarded",
            "--subresource=status",
            "--type=merge",
            "-p",
            &patch,
        ],
        None,
    )?;
    anyhow::ensure!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    lab.wait_rules(0, "the firewall", |t| {
        has_firewall_chain(t) && t.contains(LB_IP)
    })?;
    lab.wait_endpoints(0, "default/guarded/tcp/http", &["10.244.1.10"])?;
    let lb = addr(LB_IP, 80);
    let inside = tcp_get(&lab.client, lb);
    assert!(
        inside.as_ref().is_ok_and(|s| s.starts_with("a ")),
        "a client inside the range: {inside:?}\n{}",
        lab.debug(0)
    );
    assert_eq!(
        tcp_error(&outsider, lb)?,
        std::io::ErrorKind::TimedOut,
        "a client outside the range is dropped (no reset)"
    );
    // The NodePort of the same Service is not firewalled (as kube-proxy: only LB IPs are).
    let np = lab.node_port("guarded")?;
    assert!(tcp_get(&outsider, addr("192.168.60.1", np))?.starts_with("a "));

    // The annotation when the field is empty: now only the outsider is allowed.
    lab.apply(&json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "guarded", "namespace": "default",
            "annotations": {"service.beta.kubernetes.io/load-balancer-source-ranges": "192.168.60.101/32, 10.99.0.0/16"}},
        "spec": {"type": "LoadBalancer", "ports": [{"name": "http", "port": 80}]}}))?;
    lab.wait_rules(0, "the annotated ranges", |t| t.contains("10.99.0.0"))?;
    assert!(tcp_get(&outsider, lb)?.starts_with("a "));
    assert_eq!(tcp_error(&lab.client, lb)?, std::io::ErrorKind::TimedOut);

    // A range containing the node's own address (192.168.60.1): the LB IP is let in as a
    // source too (kube-proxy's allowance for VIPs that loop back through the node).
    lab.apply(&json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "guarded", "namespace": "default"},
        "spec": {"type": "LoadBalancer", "ports": [{"name": "http", "port": 80}],
            "loadBalancerSourceRanges": ["192.168.60.0/24"]}}))?;
    let ok = wait_for(Duration::from_secs(15), || {
        let out = lab.nodes[0].exec(&["nft", "list", "table", "ip", "pea-proxy"])?;
        Ok(String::from_utf8_lossy(&out.stdout)
            .contains(&format!("ip saddr != {{ 192.168.60.0/24, {LB_IP} }} drop")))
    })?;
    assert!(ok, "the node allowance is missing:\n{}", lab.debug(0));
    // The API refuses what kube refuses, in kube's words.
    let out = lab.kubectl(
        &["apply", "-f", "-"],
        Some(
            &json!({"apiVersion": "v1", "kind": "Service",
                "metadata": {"name": "guarded", "namespace": "default"},
                "spec": {"type": "LoadBalancer", "ports": [{"name": "http", "port": 80}],
                    "loadBalancerSourceRanges": ["192.168.60.0/33"]}})
            .to_string(),
        ),
    )?;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("spec.LoadBalancerSourceRanges[0]: Invalid value: \"192.168.60.0/33\": must be a valid CIDR value"),
        "{err}"
    );

    // No ranges at all: the firewall goes and everyone gets through.
    lab.apply(&json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "guarded", "namespace": "default"},
        "spec": {"type": "LoadBalancer", "ports": [{"name": "http", "port": 80}]}}))?;
    lab.wait_rules(0, "no firewall", |t| !has_firewall_chain(t))?;
    for ns in [&lab.client, &outsider] {
        assert!(tcp_get(ns, lb)?.starts_with("a "));
    }
    assert!(!lab.log(0).contains("sync failed"), "{}", lab.log(0));
    Ok(())
}

/// Whether a table (nft -j) has a per-service firewall chain (`firewall-<HASH>-...`; the fixed
/// `firewall-ips` map and `firewall-check` chain are lowercase).
fn has_firewall_chain(table: &str) -> bool {
    table
        .split("\"firewall-")
        .skip(1)
        .any(|rest| rest.starts_with(|c: char| c.is_ascii_uppercase() || c.is_ascii_digit()))
}

/// pea-controllers (only the EndpointSlice controller) on a runtime inside the lab's namespace,
/// where the API server listens; stopped on drop.
struct SliceController(Option<tokio::runtime::Runtime>);

impl SliceController {
    fn start(lab: &Lab) -> Result<Self> {
        let kubeconfig = lab.cp.as_ref().expect("cp").kubeconfig.clone();
        // Worker threads are made now, inside the lab's namespace, and stay there.
        let rt = lab.lab.run_in(|| {
            Ok(tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()?)
        })?;
        rt.spawn(async move {
            let client = pea_controllers::client_from_kubeconfig(&kubeconfig)
                .await
                .expect("client");
            let mut config = pea_controllers::ControllersConfig {
                leader_elect: false,
                ..Default::default()
            };
            config.set_controllers("endpointslice");
            if let Err(e) = pea_controllers::run(client, config).await {
                panic!("controllers stopped: {e}");
            }
        });
        Ok(SliceController(Some(rt)))
    }
}

impl Drop for SliceController {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_timeout(Duration::from_secs(5));
        }
    }
}

impl Lab {
    /// A Node object `node<i+1>` (hollow: nothing runs for it but pea-proxy) with a zone label,
    /// 2 allocatable CPUs, Ready, and `internal_ip` as its InternalIP.
    fn node_object(&self, i: usize, zone: &str, internal_ip: &str) -> Result<()> {
        let name = format!("node{}", i + 1);
        self.apply(&json!({"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": {"topology.kubernetes.io/zone": zone}}}))?;
        self.node_status(i, internal_ip)
    }

    fn node_status(&self, i: usize, internal_ip: &str) -> Result<()> {
        let status = json!({"status": {
            "addresses": [{"type": "InternalIP", "address": internal_ip},
                          {"type": "Hostname", "address": format!("node{}", i + 1)}],
            "allocatable": {"cpu": "2", "memory": "4Gi", "pods": "110"},
            "capacity": {"cpu": "2", "memory": "4Gi", "pods": "110"},
            "conditions": [{"type": "Ready", "status": "True",
                "lastHeartbeatTime": "2026-01-01T00:00:00Z",
                "lastTransitionTime": "2026-01-01T00:00:00Z",
                "reason": "KubeletReady", "message": "hollow"}]}});
        let out = self.kubectl(
            &[
                "patch",
                "node",
                &format!("node{}", i + 1),
                "--subresource=status",
                "--type=merge",
                "-p",
                &status.to_string(),
            ],
            None,
        )?;
        anyhow::ensure!(
            out.status.success(),
            "patch node status: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(())
    }

    /// A Pod object for lab pod `p` (labelled `app: <app>`, on its node), Ready at its address.
    fn pod_object(&self, p: usize, app: &str) -> Result<()> {
        let pod = &self.pods[p];
        let name = format!("{app}-{}", pod.ip.replace('.', "-"));
        self.apply(&json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "default", "labels": {"app": app}},
            "spec": {"nodeName": format!("node{}", pod.node + 1),
                "containers": [{"name": "c", "image": "hollow",
                    "ports": [{"name": "http", "containerPort": 8080}]}]}}))?;
        let status = json!({"status": {"phase": "Running", "podIP": pod.ip,
            "podIPs": [{"ip": pod.ip}],
            "conditions": [{"type": "Ready", "status": "True",
                "lastTransitionTime": "2026-01-01T00:00:00Z"}]}});
        let out = self.kubectl(
            &[
                "patch",
                "pod",
                &name,
                "--subresource=status",
                "--type=merge",
                "-p",
                &status.to_string(),
            ],
            None,
        )?;
        anyhow::ensure!(
            out.status.success(),
            "patch pod status: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(())
    }

    /// The zone hints of the Service's slices, by endpoint address ("-" without hints).
    fn hints(&self, svc: &str) -> Result<Vec<(String, String)>> {
        let out = self.kubectl(
            &[
                "get",
                "endpointslices",
                "-l",
                &format!("kubernetes.io/service-name={svc}"),
                "-o",
                "json",
            ],
            None,
        )?;
        let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        let mut got = Vec::new();
        for s in v["items"].as_array().into_iter().flatten() {
            for e in s["endpoints"].as_array().into_iter().flatten() {
                let zones: Vec<&str> = e["hints"]["forZones"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|z| z["name"].as_str())
                    .collect();
                let hint = if zones.is_empty() {
                    "-".to_string()
                } else {
                    zones.join(",")
                };
                got.push((e["addresses"][0].as_str().unwrap_or("").to_string(), hint));
            }
        }
        got.sort();
        Ok(got)
    }

    fn wait_hints(&self, svc: &str, want: &[(&str, &str)]) -> Result<()> {
        let want: Vec<(String, String)> = want
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        let mut last = Vec::new();
        let ok = wait_for(Duration::from_secs(20), || {
            last = self.hints(svc)?;
            Ok(last == want)
        })?;
        anyhow::ensure!(ok, "hints of {svc}: want {want:?}, have {last:?}");
        Ok(())
    }
}

/// The distinct tags answering `n` connections.
fn tag_set(ns: &Netns, to: SocketAddr, n: usize) -> Result<std::collections::BTreeSet<String>> {
    Ok(tags(ns, to, n)?.into_iter().collect())
}

#[test]
fn topology_hints_keep_traffic_in_the_clients_zone() -> Result<()> {
    let mut lab = Lab::new(2)?;
    lab.node_object(0, "zone-a", "192.168.60.1")?;
    lab.node_object(1, "zone-b", "192.168.60.2")?;
    let a1 = lab.pod(0, 10)?;
    let a2 = lab.pod(0, 11)?;
    let b1 = lab.pod(1, 10)?;
    let b2 = lab.pod(1, 11)?;
    let ca = lab.pod(0, 20)?; // clients, not endpoints
    let cb = lab.pod(1, 20)?;
    let _servers = [
        tag_server(&lab.pods[a1].ns, 8080, "a1", false)?,
        tag_server(&lab.pods[a2].ns, 8080, "a2", false)?,
        tag_server(&lab.pods[b1].ns, 8080, "b1", false)?,
        tag_server(&lab.pods[b2].ns, 8080, "b2", false)?,
    ];
    for p in [a1, a2, b1, b2] {
        lab.pod_object(p, "web")?;
    }
    let _controller = SliceController::start(&lab)?;
    // Topology mode Auto: both zones have 2 CPUs and 2 endpoints, so every endpoint keeps its
    // own zone (kube's proportional allocation).
    lab.apply(&json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "web", "namespace": "default",
            "annotations": {"service.kubernetes.io/topology-mode": "Auto"}},
        "spec": {"selector": {"app": "web"},
            "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}}))?;
    let ip = {
        let out = lab.kubectl(
            &["get", "svc", "web", "-o", "jsonpath={.spec.clusterIP}"],
            None,
        )?;
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let own_zones = [
        ("10.244.1.10", "zone-a"),
        ("10.244.1.11", "zone-a"),
        ("10.244.2.10", "zone-b"),
        ("10.244.2.11", "zone-b"),
    ];
    lab.wait_hints("web", &own_zones)?;
    lab.start_proxy(0, &[])?;
    lab.start_proxy(1, &[])?;
    // The hints are there before the proxies start: each node's data map holds its zone's two.
    let own_two = |t: &str| map_ips(t, "default/web/tcp/http").len() == 2;
    lab.wait_rules(0, "web endpoints", own_two)?;
    lab.wait_rules(1, "web endpoints", own_two)?;
    let to = addr(&ip, 80);
    let set = |v: &[&str]| -> std::collections::BTreeSet<String> {
        v.iter().map(|s| s.to_string()).collect()
    };
    // 24 connections each: the other zone's endpoints never answer, both own-zone ones do
    // (a miss of one has odds 2^-23).
    assert_eq!(
        tag_set(&lab.pods[ca].ns, to, 24)?,
        set(&["a1", "a2"]),
        "{}",
        lab.debug(0)
    );
    assert_eq!(tag_set(&lab.pods[cb].ns, to, 24)?, set(&["b1", "b2"]));

    // Without the annotation the controller removes the hints and every zone is used again.
    lab.apply(&json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "web", "namespace": "default", "annotations": {}},
        "spec": {"selector": {"app": "web"},
            "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}}))?;
    let none: Vec<(&str, &str)> = own_zones.iter().map(|(a, _)| (*a, "-")).collect();
    lab.wait_hints("web", &none)?;
    let mut seen = std::collections::BTreeSet::new();
    let ok = wait_for(Duration::from_secs(15), || {
        seen.extend(tag_set(&lab.pods[ca].ns, to, 8)?);
        Ok(seen.len() == 4)
    })?;
    assert!(ok, "without hints zone A's client reached only {seen:?}");

    // trafficDistribution PreferClose: each endpoint hinted for its own zone again.
    lab.apply(&json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {"selector": {"app": "web"}, "trafficDistribution": "PreferClose",
            "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}}))?;
    lab.wait_hints("web", &own_zones)?;
    // The proxy applies them soon after; then only zone A answers zone A's client.
    let ok = wait_for(Duration::from_secs(15), || {
        Ok(tag_set(&lab.pods[ca].ns, to, 12)? == set(&["a1", "a2"]))
    })?;
    assert!(ok, "PreferClose: zone A's client still reaches zone B");
    assert_eq!(tag_set(&lab.pods[cb].ns, to, 24)?, set(&["b1", "b2"]));

    // Zone A's endpoints go (pods deleted): with no endpoint for its zone the proxy ignores the
    // hints (kube-proxy's canUseTopology), so zone A's client reaches zone B instead of nothing.
    for p in [a1, a2] {
        let name = format!("web-{}", lab.pods[p].ip.replace('.', "-"));
        lab.kubectl(
            &["delete", "pod", &name, "--grace-period=0", "--force"],
            None,
        )?;
    }
    lab.wait_hints("web", &own_zones[2..])?;
    let ok = wait_for(Duration::from_secs(15), || {
        Ok(tag_set(&lab.pods[ca].ns, to, 12)? == set(&["b1", "b2"]))
    })?;
    assert!(ok, "zone A without endpoints: its client gets nowhere");
    assert!(!lab.log(0).contains("sync failed"), "{}", lab.log(0));
    Ok(())
}

#[test]
fn node_ips_come_from_the_node_object() -> Result<()> {
    let mut lab = Lab::new(1)?;
    // The node has two addresses; its Node object names one as InternalIP.
    lab.nodes[0].ip(&["addr", "add", "192.168.60.51/24", "dev", "eth0"])?;
    lab.node_object(0, "zone-a", "192.168.60.1")?;
    let a = lab.pod(0, 10)?;
    let _sa = tag_server(&lab.pods[a].ns, 8080, "a", false)?;
    // No --bind-address: NodePorts on the node IP only (kube-proxy's nftables default). Policy
    // Cluster: masqueraded, so pod a sees its node's bridge address, as in the first test.
    lab.start_proxy(0, &["--nodeport-addresses", "primary"])?;
    lab.service(
        "np",
        json!({"type": "NodePort", "ports": [{"name": "http", "port": 80}]}),
    )?;
    let np = lab.node_port("np")?;
    lab.slice("np", json!({"name": "http", "port": 8080}), &[a], &[])?;
    lab.wait_rules(0, "node IP in nodeport-ips", |t| {
        t.contains("192.168.60.1\"")
    })?;
    lab.wait_endpoints(0, "default/np/tcp/http", &["10.244.1.10"])?;
    assert_eq!(
        tcp_get(&lab.client, addr("192.168.60.1", np))?,
        "a 10.244.1.1"
    );
    assert_eq!(
        tcp_error(&lab.client, addr("192.168.60.51", np))?,
        std::io::ErrorKind::ConnectionRefused,
        "not the node IP: no NodePort there"
    );
    // The Node's InternalIP changes: the proxy follows without a restart.
    lab.node_status(0, "192.168.60.51")?;
    lab.wait_rules(0, "new node IP", |t| {
        t.contains("192.168.60.51\"") && !t.contains("192.168.60.1\"")
    })?;
    assert_eq!(
        tcp_get(&lab.client, addr("192.168.60.51", np))?,
        "a 10.244.1.1"
    );
    assert_eq!(
        tcp_error(&lab.client, addr("192.168.60.1", np))?,
        std::io::ErrorKind::ConnectionRefused
    );
    assert!(
        lab.log(0).contains("node addresses or zone changed"),
        "{}",
        lab.log(0)
    );
    Ok(())
}

/// This kernel (6.18) has no SCTP (socket(AF_INET, SOCK_STREAM, IPPROTO_SCTP) fails with
/// EPROTONOSUPPORT, /proc/net/protocols lists no SCTP, no /proc/net/sctp, no module to load),
/// so no SCTP association can be made here: the test checks that the kernel accepts an SCTP Service's rules and their
/// shape. Where SCTP sockets work it says so, so the gap is visible.
#[test]
fn sctp_service_rules_are_accepted_by_the_kernel() -> Result<()> {
    // The kernel lists the transport protocols it has in /proc/net/protocols.
    let sctp = std::fs::read_to_string("/proc/net/protocols")?
        .lines()
        .any(|l| l.starts_with("SCTP"));
    if sctp {
        eprintln!("this kernel has SCTP sockets: an end-to-end SCTP test could run here");
    }
    let mut lab = Lab::new(1)?;
    let a = lab.pod(0, 10)?;
    lab.start_proxy(0, &[])?;
    let ip = lab.service(
        "sctp",
        json!({"ports": [{"name": "s", "port": 3868, "protocol": "SCTP"}]}),
    )?;
    lab.slice(
        "sctp",
        json!({"name": "s", "port": 3868, "protocol": "SCTP"}),
        &[a],
        &[],
    )?;
    lab.wait_rules(0, "sctp service", |t| t.contains("default/sctp/sctp/s"))?;
    let out = lab.nodes[0].exec(&["nft", "list", "table", "ip", "pea-proxy"])?;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!("{ip} . sctp . 3868 : goto service-")),
        "{text}"
    );
    assert!(
        text.contains("meta l4proto sctp dnat ip to numgen random mod 720720 map @endpoints-"),
        "{text}"
    );
    assert!(text.contains("0-720719 : 10.244.1.10 . 3868"), "{text}");
    Ok(())
}
