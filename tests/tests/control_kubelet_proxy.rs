//! pea-control's kubelet-served subresources end to end with real kubectl 1.32: kubectl →
//! pea-control (pods/log, pods/exec, pods/portforward, nodes/proxy) → the kubelet's HTTPS server
//! (pea_kubelet::server, authenticating pea-control by its kubelet client certificate) → pea-shim
//! over CRI (the log file, the streaming server).
//!
//! Everything runs inside the node's network namespace the test made (pea-control, the kubelet
//! server and kubectl included), so all traffic stays on that namespace's loopback. The pod is
//! made through CRI with the kubelet's labels and a matching Pod object bound to the node, as
//! the kubelet core would (it is not wired to this server yet).
//!
//! Port-forward is driven both ways: with a WebSocket client speaking the kubelet's port-forward
//! framing (v4.channel.k8s.io), and with real `kubectl port-forward`, which offers SPDY tunnelled
//! in WebSocket (`SPDY/3.1+portforward.k8s.io`), then plain SPDY; pea-control and the kubelet
//! server pass either upgrade through unchanged and pea-shim's streaming server speaks all three.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_cri::v1 as cri;
use k8s_openapi::api::core::v1::Pod;
use pea_kubelet::server::{self, PodSource, ServerConfig};
use pea_tests::control::{Backend, ControlPlane, Kubectl};
use pea_tests::fixtures::registry::in_netns;
use pea_tests::shim_node::ShimNode;

const NODE: &str = "node1";

/// The pods the kubelet server reports (what the kubelet core's pod manager would hold).
#[derive(Debug, Default)]
struct Pods(Mutex<Vec<Pod>>);

impl PodSource for Pods {
    fn pods(&self) -> Vec<Pod> {
        self.0.lock().unwrap().clone()
    }
}

/// A node: pea-shim, pea-control and the kubelet server, all in one network namespace.
struct Cluster {
    // Drop order: kubelet server, then the API server, then the node (pods removed via CRI).
    kubelet: Option<(tokio::runtime::Runtime, server::Running)>,
    control: Option<ControlPlane>,
    kubectl: Kubectl,
    pods: Arc<Pods>,
    node: ShimNode,
    netns: PathBuf,
    kubelet_port: u16,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if let Some((rt, running)) = self.kubelet.take() {
            rt.block_on(running.shutdown());
            rt.shutdown_timeout(Duration::from_secs(5));
        }
        drop(self.control.take());
        if let Err(e) = self.node.teardown() {
            eprintln!("node teardown: {e:#}");
        }
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "status {}\nstdout: {}\nstderr: {}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

impl Cluster {
    fn start() -> Self {
        pea_tests::privileged::require_root();
        let mut node = ShimNode::new().expect("node");
        node.start_shim().expect("pea-shim");
        let netns = node.netns.path();
        // Threads made inside the namespace (the runtimes' workers) stay there: every socket
        // pea-control and the kubelet server open is the namespace's.
        let control =
            in_netns(Some(&netns), || ControlPlane::start(Backend::Embedded)).expect("pea-control");
        let client_ca = control.data_dir.join("pki/ca.crt");
        let pods = Arc::new(Pods::default());
        let socket = node.socket.clone();
        let cert_dir = node.path("kubelet-pki");
        let source: Arc<dyn PodSource> = pods.clone();
        let (kubelet_rt, running) = in_netns(Some(&netns), move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            // The lazy channel starts its worker on the runtime it is made in.
            let _in_rt = rt.enter();
            let cri = server::cri_connect::connect(&format!("unix://{}", socket.display()))
                .expect("cri endpoint");
            let config = ServerConfig {
                address: "127.0.0.1:0".parse().unwrap(),
                node_name: NODE.into(),
                cert_dir,
                client_ca_file: client_ca,
                ..Default::default()
            };
            let running = rt
                .block_on(server::serve(config, cri, source))
                .expect("kubelet server");
            (rt, running)
        });
        let kubelet_port = running.addr.port();
        let kubectl = control.kubectl();
        let cluster = Cluster {
            kubelet: Some((kubelet_rt, running)),
            control: Some(control),
            kubectl,
            pods,
            node,
            netns,
            kubelet_port,
        };
        cluster.register_node();
        cluster
    }

    fn control(&self) -> &ControlPlane {
        self.control.as_ref().expect("control plane")
    }

    /// kubectl inside the node's namespace.
    fn kubectl(&self, args: &[&str]) -> Output {
        let cmd = self.kubectl.command(args);
        in_netns(Some(&self.netns), move || {
            let mut cmd = cmd;
            cmd.output().expect("run kubectl")
        })
    }

    fn kubectl_ok(&self, args: &[&str]) -> String {
        let o = self.kubectl(args);
        assert!(o.status.success(), "kubectl {args:?}: {}", text(&o));
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    fn kubectl_fails(&self, args: &[&str]) -> String {
        let o = self.kubectl(args);
        assert!(
            !o.status.success(),
            "kubectl {args:?} succeeded: {}",
            text(&o)
        );
        String::from_utf8_lossy(&o.stderr).into_owned()
    }

    fn kubectl_stdin(&self, args: &[&str], input: &str) -> String {
        let mut cmd = self.kubectl.command(args);
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = in_netns(Some(&self.netns), move || cmd.spawn().expect("kubectl"));
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        let o = child.wait_with_output().unwrap();
        assert!(o.status.success(), "kubectl {args:?}: {}", text(&o));
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// The Node object the kubelet would register: its kubelet on this namespace's loopback.
    fn register_node(&self) {
        self.kubectl_stdin(
            &["apply", "-f", "-"],
            &format!("apiVersion: v1\nkind: Node\nmetadata:\n  name: {NODE}\n"),
        );
        let status = serde_json::json!({"status": {
            "addresses": [{"type": "InternalIP", "address": "127.0.0.1"},
                          {"type": "Hostname", "address": NODE}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": self.kubelet_port}}}});
        self.kubectl_ok(&[
            "patch",
            "node",
            NODE,
            "--subresource=status",
            "--type=merge",
            "-p",
            &status.to_string(),
        ]);
    }

    /// A Pod bound to the node (made in the API) and its sandbox and containers made through
    /// CRI with the kubelet's labels; `containers` are (name, script) pairs.
    fn run_pod(&self, name: &str, containers: &[(&str, &str)]) {
        self.run_pod_with(name, containers, false)
    }

    /// [`Cluster::run_pod`], with `stdin` (and `stdinOnce`) on every container when asked.
    fn run_pod_with(&self, name: &str, containers: &[(&str, &str)], stdin: bool) {
        let spec_containers: Vec<serde_json::Value> = containers
            .iter()
            .map(|(c, _)| {
                serde_json::json!({"name": c, "image": self.node.busybox,
                    "stdin": stdin, "stdinOnce": stdin})
            })
            .collect();
        let pod = serde_json::json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"nodeName": NODE, "containers": spec_containers}});
        self.kubectl_stdin(&["create", "-f", "-"], &pod.to_string());
        let uid = self.kubectl_ok(&["get", "pod", name, "-o", "jsonpath={.metadata.uid}"]);
        assert!(!uid.is_empty());
        let mut config = self.node.pod(name);
        if let Some(m) = config.metadata.as_mut() {
            m.uid = uid.clone();
        }
        let labels = [
            ("io.kubernetes.pod.name", name),
            ("io.kubernetes.pod.namespace", "default"),
            ("io.kubernetes.pod.uid", uid.as_str()),
        ];
        for (k, v) in labels {
            config.labels.insert(k.into(), v.into());
        }
        let mut ctrs = Vec::new();
        for (c, script) in containers {
            let mut cc = self.node.container(c, script);
            cc.stdin = stdin;
            cc.stdin_once = stdin;
            for (k, v) in labels {
                cc.labels.insert(k.into(), v.into());
            }
            cc.labels
                .insert("io.kubernetes.container.name".into(), c.to_string());
            ctrs.push(cc);
        }
        let image = self.node.busybox.clone();
        let socket = self.node.socket.clone();
        rt().block_on(async move {
            let mut c = pea_tests::cri_client::connect(&socket).await.unwrap();
            c.images
                .pull_image(cri::PullImageRequest {
                    image: Some(cri::ImageSpec {
                        image,
                        ..Default::default()
                    }),
                    ..Default::default()
                })
                .await
                .expect("pull busybox");
            let sandbox = c
                .runtime
                .run_pod_sandbox(cri::RunPodSandboxRequest {
                    config: Some(config.clone()),
                    runtime_handler: String::new(),
                })
                .await
                .expect("RunPodSandbox")
                .into_inner()
                .pod_sandbox_id;
            for cc in ctrs {
                let id = c
                    .runtime
                    .create_container(cri::CreateContainerRequest {
                        pod_sandbox_id: sandbox.clone(),
                        config: Some(cc),
                        sandbox_config: Some(config.clone()),
                    })
                    .await
                    .expect("CreateContainer")
                    .into_inner()
                    .container_id;
                c.runtime
                    .start_container(cri::StartContainerRequest { container_id: id })
                    .await
                    .expect("StartContainer");
            }
        });
        // The kubelet reports the pod Running; its pod manager holds the API's object.
        self.kubectl_ok(&[
            "patch",
            "pod",
            name,
            "--subresource=status",
            "--type=merge",
            "-p",
            r#"{"status":{"phase":"Running"}}"#,
        ]);
        let obj: Pod = serde_json::from_str(&self.kubectl_ok(&["get", "pod", name, "-o", "json"]))
            .expect("pod json");
        self.pods.0.lock().unwrap().push(obj);
    }

    /// Waits (bounded) until `kubectl logs` of `pod` holds `want`.
    fn wait_for_log(&self, pod: &str, want: &str) -> String {
        let start = Instant::now();
        loop {
            let o = self.kubectl(&["logs", pod]);
            let out = String::from_utf8_lossy(&o.stdout).into_owned();
            if o.status.success() && out.contains(want) {
                return out;
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "no {want:?} in the log of {pod} after 20 s: {}\nshim log: {}",
                text(&o),
                self.node.log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// curl to the kubelet server with an optional client certificate.
    fn curl_kubelet(&self, path: &str, cert: Option<(&Path, &Path)>) -> String {
        let mut cmd = std::process::Command::new("curl");
        cmd.args(["-sk", "-o", "/dev/null", "-w", "%{http_code}"]);
        if let Some((c, k)) = cert {
            cmd.arg("--cert").arg(c).arg("--key").arg(k);
        }
        cmd.arg(format!("https://127.0.0.1:{}{path}", self.kubelet_port));
        let o = in_netns(Some(&self.netns), move || cmd.output().expect("curl"));
        String::from_utf8_lossy(&o.stdout).into_owned()
    }
}

#[test]
fn kubectl_logs_and_node_proxy_reach_the_kubelet_through_pea_control() {
    let cluster = Cluster::start();
    cluster.run_pod(
        "web",
        &[("app", "echo one; echo two; echo three >&2; exec sleep 3600")],
    );
    let all = cluster.wait_for_log("web", "three");
    assert_eq!(all, "one\ntwo\nthree\n");
    // Options travel through pea-control to the kubelet's decoder.
    assert_eq!(cluster.kubectl_ok(&["logs", "web", "--tail=1"]), "three\n");
    assert_eq!(
        cluster.kubectl_ok(&["logs", "web", "-c", "app", "--limit-bytes=6"]),
        "one\ntw"
    );
    let stamped = cluster.kubectl_ok(&["logs", "web", "--timestamps"]);
    let first = stamped.lines().next().unwrap_or_default();
    let (ts, msg) = first.split_once(' ').expect("timestamped line");
    assert_eq!(msg, "one");
    assert!(
        ts.len() >= 20 && ts.as_bytes()[4] == b'-' && ts.contains('T'),
        "not an RFC 3339 timestamp: {first:?}"
    );
    assert_eq!(cluster.kubectl_ok(&["logs", "web", "--since=1h"]), all);
    // Follow streams; bounded by --limit-bytes so the kubectl exits by itself.
    assert_eq!(
        cluster.kubectl_ok(&["logs", "-f", "web", "--limit-bytes=4"]),
        "one\n"
    );
    // kube's errors, as Status from pea-control.
    let err = cluster.kubectl_fails(&["logs", "web", "-c", "nope"]);
    assert!(
        err.contains("container nope is not valid for pod web"),
        "{err}"
    );
    let err = cluster.kubectl_fails(&["logs", "web", "--previous"]);
    assert!(err.contains("previous terminated container"), "{err}");
    let err = cluster.kubectl_fails(&[
        "get",
        "--raw",
        "/api/v1/namespaces/default/pods/web/log?tailLines=-1",
    ]);
    assert!(
        err.contains("PodLogOptions \"web\" is invalid: tailLines: Invalid value: -1"),
        "{err}"
    );
    // A pod with two containers needs a name; kube's wording lists them (kubectl itself would
    // default to the first, so ask the API directly).
    cluster.kubectl_stdin(
        &["create", "-f", "-"],
        &format!(
            r#"{{"apiVersion":"v1","kind":"Pod","metadata":{{"name":"duo"}},"spec":{{"nodeName":"{NODE}","containers":[{{"name":"a","image":"x"}},{{"name":"b","image":"x"}}]}}}}"#
        ),
    );
    let err = cluster.kubectl_fails(&["get", "--raw", "/api/v1/namespaces/default/pods/duo/log"]);
    assert!(
        err.contains("a container name must be specified for pod duo, choose one of: [a b]"),
        "{err}"
    );
    // nodes/proxy: any path on the kubelet.
    assert_eq!(
        cluster.kubectl_ok(&[
            "get",
            "--raw",
            &format!("/api/v1/nodes/{NODE}/proxy/healthz")
        ]),
        "ok"
    );
    let pods: serde_json::Value = serde_json::from_str(&cluster.kubectl_ok(&[
        "get",
        "--raw",
        &format!("/api/v1/nodes/{NODE}/proxy/pods"),
    ]))
    .unwrap();
    assert_eq!(pods["kind"], "PodList");
    assert_eq!(pods["items"][0]["metadata"]["name"], "web");
    let summary: serde_json::Value = serde_json::from_str(&cluster.kubectl_ok(&[
        "get",
        "--raw",
        &format!("/api/v1/nodes/{NODE}/proxy/stats/summary"),
    ]))
    .unwrap();
    assert_eq!(summary["node"]["nodeName"], NODE);
    assert!(
        summary["node"]["memory"]["workingSetBytes"]
            .as_u64()
            .unwrap()
            > 0
    );
    let web = summary["pods"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["podRef"]["name"] == "web")
        .unwrap_or_else(|| panic!("web not in {summary}"));
    assert_eq!(web["containers"][0]["name"], "app");
    let metrics = cluster.kubectl_ok(&[
        "get",
        "--raw",
        &format!("/api/v1/nodes/{NODE}/proxy/metrics/resource"),
    ]);
    for series in [
        "node_cpu_usage_seconds_total ",
        "node_memory_working_set_bytes ",
        "container_memory_working_set_bytes{container=\"app\",namespace=\"default\",pod=\"web\"}",
        "resource_scrape_error 0",
    ] {
        assert!(metrics.contains(series), "no {series:?} in\n{metrics}");
    }
    // A missing kubelet path is the kubelet's 404, passed through.
    let err = cluster.kubectl_fails(&[
        "get",
        "--raw",
        &format!("/api/v1/nodes/{NODE}/proxy/nothing"),
    ]);
    assert!(
        err.contains("NotFound") || err.contains("not found"),
        "{err}"
    );
    // Who may: a node identity is refused by pea-control; the kubelet refuses anyone without a
    // client certificate (401) and a non-admin certificate (403).
    let node_kubeconfig = cluster
        .control()
        .kubeconfig_for(&format!("system:node:{NODE}"), &["system:nodes"])
        .unwrap();
    let node_kubectl = Kubectl::new(&node_kubeconfig);
    let cmd = node_kubectl.command(&["logs", "web"]);
    let o = in_netns(Some(&cluster.netns), move || {
        let mut cmd = cmd;
        cmd.output().unwrap()
    });
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("cannot get resource \"pods/log\""),
        "{}",
        text(&o)
    );
    assert_eq!(cluster.curl_kubelet("/healthz", None), "401");
    let pair = cluster
        .control()
        .running()
        .pki
        .issue_client(&format!("system:node:{NODE}"), &["system:nodes"])
        .unwrap();
    let (cert, key) = (cluster.node.path("node.crt"), cluster.node.path("node.key"));
    std::fs::write(&cert, &pair.cert_pem).unwrap();
    std::fs::write(&key, &pair.key_pem).unwrap();
    assert_eq!(cluster.curl_kubelet("/healthz", Some((&cert, &key))), "403");
    let admin = &cluster.control().running().pki.admin;
    std::fs::write(&cert, &admin.cert_pem).unwrap();
    std::fs::write(&key, &admin.key_pem).unwrap();
    assert_eq!(cluster.curl_kubelet("/healthz", Some((&cert, &key))), "200");
}

#[test]
fn kubectl_exec_streams_through_pea_control_and_the_kubelet() {
    let cluster = Cluster::start();
    cluster.run_pod("web", &[("app", "echo ready; exec sleep 3600")]);
    cluster.wait_for_log("web", "ready");
    // kubectl 1.32 opens a WebSocket (v5.channel.k8s.io): pea-control and the kubelet pass the
    // upgrade on, pea-shim's streaming server answers it, and the bytes flow back unchanged.
    let out = cluster.kubectl_ok(&["exec", "web", "--", "sh", "-c", "echo hi; echo err >&2"]);
    assert_eq!(out, "hi\n");
    let out = cluster.kubectl_stdin(&["exec", "-i", "web", "--", "cat"], "piped\n");
    assert_eq!(out, "piped\n");
    let err = cluster.kubectl_fails(&["exec", "web", "--", "sh", "-c", "exit 3"]);
    assert!(err.contains("exit code 3"), "{err}");
    // kube's errors before any upgrade: an unknown container, and a node identity (nodes never
    // exec into pods).
    let err = cluster.kubectl_fails(&["exec", "web", "-c", "nope", "--", "true"]);
    assert!(
        err.contains("container nope is not valid for pod web"),
        "{err}"
    );
    let node_kubeconfig = cluster
        .control()
        .kubeconfig_for(&format!("system:node:{NODE}"), &["system:nodes"])
        .unwrap();
    let cmd = Kubectl::new(&node_kubeconfig).command(&["exec", "web", "--", "true"]);
    let o = in_netns(Some(&cluster.netns), move || {
        let mut cmd = cmd;
        cmd.output().unwrap()
    });
    assert!(!o.status.success(), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("cannot create resource \"pods/exec\""),
        "{}",
        text(&o)
    );
}

/// `timeout 60 kubectl ARGS` (or `timeout 60 script ... kubectl ARGS` with `tty`, for a
/// terminal) inside the node's namespace, with `env`, `input` on its stdin.
fn kubectl_with(
    cluster: &Cluster,
    args: &[&str],
    env: &[(&str, &str)],
    input: &[u8],
    tty: bool,
) -> Output {
    let base = cluster.kubectl.command(&[]);
    let mut cmd = std::process::Command::new("timeout");
    cmd.arg("60");
    if tty {
        // `script` gives kubectl a terminal; its exit code is kubectl's (-e).
        let line: Vec<String> = args.iter().map(|a| format!("'{a}'")).collect();
        cmd.args([
            "script",
            "-qec",
            &format!("kubectl {}", line.join(" ")),
            "/dev/null",
        ]);
    } else {
        cmd.arg("kubectl").args(args);
    }
    for (k, v) in base.get_envs() {
        match v {
            Some(v) => cmd.env(k, v),
            None => cmd.env_remove(k),
        };
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = in_netns(Some(&cluster.netns), move || cmd.spawn().expect("kubectl"));
    let mut stdin = child.stdin.take().unwrap();
    if tty {
        // kubectl's terminal must be up before the line is typed.
        std::thread::sleep(Duration::from_secs(2));
    }
    let _ = stdin.write_all(input);
    if tty {
        // Closing script's input early would end the session before the answer.
        let out = child.wait_with_output().unwrap();
        drop(stdin);
        return out;
    }
    drop(stdin);
    child.wait_with_output().unwrap()
}

#[test]
fn kubectl_exec_and_attach_over_spdy_through_pea_control_and_the_kubelet() {
    let cluster = Cluster::start();
    cluster.run_pod_with(
        "web",
        &[
            ("app", "echo ready; exec sleep 3600"),
            (
                "reader",
                "echo ready; read line; echo got:$line; echo bye >&2",
            ),
        ],
        true,
    );
    cluster.wait_for_log("web", "ready");
    // kubectl 1.32 speaks SPDY/3.1 when WebSockets are turned off; pea-shim logs each SPDY
    // session it opens, so a WebSocket session cannot pass for one.
    let spdy = [("KUBECTL_REMOTE_COMMAND_WEBSOCKETS", "false")];
    let sessions = || cluster.node.log().matches("SPDY streams open").count();
    let before = sessions();
    let exec = |args: &[&str]| {
        let mut a = vec!["exec", "web", "-c", "app", "--"];
        a.extend_from_slice(args);
        a.into_iter().map(String::from).collect::<Vec<_>>()
    };
    let args = exec(&["sh", "-c", "echo hi; echo err >&2"]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let o = kubectl_with(&cluster, &args, &spdy, b"", false);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(String::from_utf8_lossy(&o.stdout), "hi\n");
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("err"),
        "{}",
        text(&o)
    );
    assert_eq!(sessions(), before + 1, "no SPDY session in pea-shim's log");
    // stdin through the stdin stream; its FIN ends cat.
    let o = kubectl_with(
        &cluster,
        &["exec", "-i", "web", "-c", "app", "--", "cat"],
        &spdy,
        b"piped\nlines\n",
        false,
    );
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(String::from_utf8_lossy(&o.stdout), "piped\nlines\n");
    // The exit code rides the error stream as a v4 Status; kubectl exits with it.
    let o = kubectl_with(
        &cluster,
        &["exec", "web", "-c", "app", "--", "sh", "-c", "exit 3"],
        &spdy,
        b"",
        false,
    );
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    // A command the runtime cannot run is an error, not a hang.
    let o = kubectl_with(
        &cluster,
        &["exec", "web", "-c", "app", "--", "/no/such/binary"],
        &spdy,
        b"",
        false,
    );
    assert!(!o.status.success(), "{}", text(&o));
    // -it: a pty, the resize stream, typed input echoed and the exit code.
    let o = kubectl_with(
        &cluster,
        &[
            "exec",
            "-it",
            "web",
            "-c",
            "app",
            "--",
            "sh",
            "-c",
            "read x; echo got-$x; exit 7",
        ],
        &spdy,
        b"typed\r",
        true,
    );
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("got-typed"),
        "{}",
        text(&o)
    );
    assert_eq!(o.status.code(), Some(7), "{}", text(&o));
    // attach: stdin to a stdin_once container, its live stdout and stderr back, and a clean
    // end when the container exits.
    let o = kubectl_with(
        &cluster,
        &["attach", "-i", "web", "-c", "reader"],
        &spdy,
        b"hello\n",
        false,
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("got:hello"),
        "{}",
        text(&o)
    );
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("bye"),
        "{}",
        text(&o)
    );
    assert_eq!(sessions(), before + 6, "every session above went over SPDY");
}

/// A WebSocket to pea-control as the admin (its client certificate, over TLS), from inside the
/// node's namespace.
async fn admin_websocket(
    cluster: &Cluster,
    path_and_query: &str,
    protocol: &str,
) -> tokio_tungstenite::WebSocketStream<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    use tokio_rustls::rustls;
    use tokio_rustls::rustls::pki_types::{
        pem::PemObject, CertificateDer, PrivateKeyDer, ServerName,
    };
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let pki = &cluster.control().running().pki;
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(pki.ca.cert_pem.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let certs = CertificateDer::pem_slice_iter(pki.admin.cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_slice(pki.admin.key_pem.as_bytes()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(certs, key)
        .unwrap();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    let addr = cluster.control().addr;
    let tcp = in_netns(Some(&cluster.netns), || std::net::TcpStream::connect(addr)).unwrap();
    tcp.set_nonblocking(true).unwrap();
    let tcp = tokio::net::TcpStream::from_std(tcp).unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(ServerName::try_from("127.0.0.1").unwrap(), tcp)
        .await
        .unwrap();
    let mut req = format!("ws://{addr}{path_and_query}")
        .into_client_request()
        .unwrap();
    req.headers_mut()
        .insert("sec-websocket-protocol", protocol.parse().unwrap());
    let (ws, resp) = tokio_tungstenite::client_async(req, tls)
        .await
        .expect("websocket through pea-control");
    // The runtime's choice of subprotocol came back through both hops.
    assert_eq!(resp.headers()["sec-websocket-protocol"], protocol);
    ws
}

#[test]
fn port_forward_over_websocket_reaches_the_pod_through_pea_control_and_the_kubelet() {
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    let cluster = Cluster::start();
    cluster.run_pod(
        "web",
        &[(
            "app",
            "echo ready; while true; do echo hello-pf | nc -l -p 8080; done",
        )],
    );
    cluster.wait_for_log("web", "ready");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let (opened, data) = runtime.block_on(async {
        loop {
            // The kubelet's WebSocket port-forward framing (v4.channel.k8s.io): channel 0 data,
            // 1 errors, each opening with the port in two little-endian bytes.
            let mut ws = admin_websocket(
                &cluster,
                "/api/v1/namespaces/default/pods/web/portforward?ports=8080",
                "v4.channel.k8s.io",
            )
            .await;
            let mut opened = std::collections::BTreeMap::new();
            let mut data = Vec::new();
            while !String::from_utf8_lossy(&data).contains("hello-pf") {
                match tokio::time::timeout(Duration::from_secs(5), ws.next()).await {
                    Ok(Some(Ok(Message::Binary(b)))) if !b.is_empty() => {
                        if let std::collections::btree_map::Entry::Vacant(e) = opened.entry(b[0]) {
                            e.insert(b[1..].to_vec());
                        } else if b[0] == 0 {
                            data.extend_from_slice(&b[1..]);
                        }
                    }
                    Ok(Some(Ok(_))) => {}
                    _ => break,
                }
            }
            // nc may be between two connections: try again, bounded.
            if String::from_utf8_lossy(&data).contains("hello-pf") || Instant::now() > deadline {
                return (opened, data);
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    });
    assert_eq!(
        opened.get(&0).map(Vec::as_slice),
        Some(&8080u16.to_le_bytes()[..])
    );
    assert_eq!(String::from_utf8_lossy(&data), "hello-pf\n");
}

/// Runs `kubectl port-forward pod/web LOCAL:REMOTE` inside the node's namespace (with `env`),
/// waits for it to listen, sends `send` on one connection through it (then half-closes) and
/// returns what comes back (bounded) and kubectl's stderr, then stops it.
fn kubectl_port_forward(
    cluster: &Cluster,
    (local, remote): (u16, u16),
    send: &[u8],
    env: &[(&str, &str)],
) -> (String, String) {
    use std::io::{BufRead, BufReader, Read};
    let mut cmd = cluster.kubectl.command(&[
        "port-forward",
        "pod/web",
        &format!("{local}:{remote}"),
        "--address=127.0.0.1",
        "-v=4",
    ]);
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = in_netns(Some(&cluster.netns), move || cmd.spawn().expect("kubectl"));
    // kubectl says "Forwarding from 127.0.0.1:PORT -> REMOTE" once it listens.
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let listening = rx
        .recv_timeout(Duration::from_secs(20))
        .is_ok_and(|l| l.contains("Forwarding from"));
    let mut got = String::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while listening && got.is_empty() && Instant::now() < deadline {
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], local));
        let conn = in_netns(Some(&cluster.netns), move || {
            std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        });
        if let Ok(mut c) = conn {
            c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let _ = c.write_all(send);
            let _ = c.shutdown(std::net::Shutdown::Write);
            let mut buf = Vec::new();
            let _ = c.read_to_end(&mut buf);
            got = String::from_utf8_lossy(&buf).into_owned();
        }
        // nc may be between two connections: try again, bounded.
        if got.is_empty() {
            std::thread::sleep(Duration::from_millis(300));
        }
    }
    let _ = child.kill();
    let o = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(
        listening && !got.is_empty(),
        "kubectl port-forward (env {env:?}) read nothing; kubectl stderr: {stderr}"
    );
    (got, stderr)
}

#[test]
fn kubectl_port_forward_reaches_the_pod_over_spdy_and_spdy_in_websocket() {
    let cluster = Cluster::start();
    cluster.run_pod(
        "web",
        &[
            (
                "app",
                "echo ready; while true; do echo hello-pf | nc -l -p 8080; done",
            ),
            ("echo", "nc -ll -p 8081 -e cat"),
        ],
    );
    cluster.wait_for_log("web", "ready");
    // kubectl 1.32's first choice: SPDY/3.1 tunnelled in WebSocket (SPDY/3.1+portforward.k8s.io);
    // client-go logs (-v=4) when it falls back to plain SPDY, which must not happen here.
    let (got, stderr) = kubectl_port_forward(&cluster, (18080, 8080), b"", &[]);
    assert_eq!(got, "hello-pf\n", "{stderr}");
    assert!(!stderr.to_lowercase().contains("fallback"), "{stderr}");
    // Both ways, with the client's half-close reaching the pod (cat ends, the stream ends).
    let (got, stderr) = kubectl_port_forward(&cluster, (18082, 8081), b"ping\n", &[]);
    assert_eq!(got, "ping\n", "{stderr}");
    // The fallback (and older kubectl): a plain `Upgrade: SPDY/3.1` (portforward.k8s.io).
    let plain = [("KUBECTL_PORT_FORWARD_WEBSOCKETS", "false")];
    let (got, stderr) = kubectl_port_forward(&cluster, (18081, 8080), b"", &plain);
    assert_eq!(got, "hello-pf\n", "{stderr}");
    let (got, stderr) = kubectl_port_forward(&cluster, (18083, 8081), b"ping\n", &plain);
    assert_eq!(got, "ping\n", "{stderr}");
    // A port nothing listens on: kubectl reports the runtime's error for that connection.
    let o = {
        let mut cmd = cluster
            .kubectl
            .command(&["port-forward", "pod/web", "18084:9"]);
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = in_netns(Some(&cluster.netns), move || cmd.spawn().expect("kubectl"));
        std::thread::sleep(Duration::from_secs(2));
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], 18084));
        let _ = in_netns(Some(&cluster.netns), move || {
            std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5)).map(|mut c| {
                use std::io::Read;
                c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                let _ = c.read_to_end(&mut Vec::new());
            })
        });
        std::thread::sleep(Duration::from_millis(500));
        let _ = child.kill();
        child.wait_with_output().unwrap()
    };
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains("error forwarding port 9 to pod"),
        "{}",
        text(&o)
    );
}
