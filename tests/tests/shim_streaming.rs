//! pea-shim's streaming server through real clients: CRI Exec/Attach/PortForward over the
//! node's CRI socket, then a WebSocket client (tokio-tungstenite) speaking kubectl's
//! protocols (v5/v4.channel.k8s.io, the WebSocket port-forward framing) to the returned URL,
//! from inside the node's network namespace where the shim listens on 127.0.0.1.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use k8s_cri::v1 as cri;
use pea_tests::cri_client::Cri;
use pea_tests::fixtures::registry::in_netns;
use pea_tests::shim_node::ShimNode;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;
use tonic::Code;

type Ws = WebSocketStream<TcpStream>;

const V5: &str = "v5.channel.k8s.io";
const V4: &str = "v4.channel.k8s.io";

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// `http://ADDR/PATH` → (ADDR, PATH).
fn split_url(url: &str) -> (SocketAddr, String) {
    let rest = url.strip_prefix("http://").expect("http URL");
    let (addr, path) = rest.split_at(rest.find('/').expect("path"));
    (addr.parse().expect("ip:port"), path.to_string())
}

/// A TCP connection to the shim's stream server, made inside the node's namespace.
async fn dial(node: &ShimNode, addr: SocketAddr) -> TcpStream {
    let s = in_netns(Some(&node.netns.path()), || {
        std::net::TcpStream::connect(addr)
    })
    .unwrap();
    s.set_nonblocking(true).unwrap();
    TcpStream::from_std(s).unwrap()
}

/// Opens a WebSocket to `url` (plus `query`) offering `protocols`.
async fn ws(
    node: &ShimNode,
    url: &str,
    query: &str,
    protocols: &str,
) -> Result<Ws, tokio_tungstenite::tungstenite::Error> {
    let (addr, path) = split_url(url);
    let mut req = format!("ws://{addr}{path}{query}")
        .into_client_request()
        .unwrap();
    if !protocols.is_empty() {
        req.headers_mut()
            .insert("sec-websocket-protocol", protocols.parse().unwrap());
    }
    tokio_tungstenite::client_async(req, dial(node, addr).await)
        .await
        .map(|(ws, _)| ws)
}

/// The HTTP status (and body) a refused upgrade got.
fn refusal(e: tokio_tungstenite::tungstenite::Error) -> (u16, String) {
    match e {
        tokio_tungstenite::tungstenite::Error::Http(r) => (
            r.status().as_u16(),
            String::from_utf8_lossy(r.body().as_deref().unwrap_or_default()).to_string(),
        ),
        other => panic!("expected an HTTP refusal, got {other}"),
    }
}

async fn send(ws: &mut Ws, channel: u8, data: &[u8]) {
    let mut m = vec![channel];
    m.extend_from_slice(data);
    ws.send(Message::Binary(m.into())).await.unwrap();
}

/// What a stream carried until the server closed it: bytes per channel.
#[derive(Debug, Default)]
struct Collected {
    channels: std::collections::BTreeMap<u8, Vec<u8>>,
}

impl Collected {
    fn text(&self, ch: u8) -> String {
        String::from_utf8_lossy(
            self.channels
                .get(&ch)
                .map(Vec::as_slice)
                .unwrap_or_default(),
        )
        .to_string()
    }

    fn status(&self) -> serde_json::Value {
        serde_json::from_str(&self.text(3))
            .unwrap_or_else(|e| panic!("status {:?}: {e}", self.text(3)))
    }
}

/// Reads until the server closes (bounded at 20 s).
async fn collect(ws: &mut Ws) -> Collected {
    let mut c = Collected::default();
    let deadline = Instant::now() + Duration::from_secs(20);
    while let Ok(Some(m)) = tokio::time::timeout_at(deadline.into(), ws.next()).await {
        match m {
            Ok(Message::Binary(b)) if !b.is_empty() => {
                c.channels
                    .entry(b[0])
                    .or_default()
                    .extend_from_slice(&b[1..]);
            }
            Ok(Message::Close(_)) | Err(_) => break,
            _ => {}
        }
    }
    c
}

/// Reads until channel `ch` has produced text containing `want` (bounded at 20 s).
async fn read_until(ws: &mut Ws, ch: u8, want: &str) -> String {
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !String::from_utf8_lossy(&got).contains(want) {
        match tokio::time::timeout_at(deadline.into(), ws.next()).await {
            Ok(Some(Ok(Message::Binary(b)))) if b.first() == Some(&ch) => {
                got.extend_from_slice(&b[1..])
            }
            Ok(Some(Ok(_))) => {}
            other => panic!(
                "waiting for {want:?} on channel {ch}: {other:?}; got {:?}",
                String::from_utf8_lossy(&got)
            ),
        }
    }
    String::from_utf8_lossy(&got).to_string()
}

async fn setup(
    node: &ShimNode,
    c: &mut Cri,
    ctrs: Vec<cri::ContainerConfig>,
) -> (String, Vec<String>) {
    node.pull(c, &node.busybox).await.unwrap();
    let running = node.start_pod(c, node.pod("streams"), ctrs).await.unwrap();
    (running.id, running.containers)
}

fn exec_req(id: &str, cmd: &[&str], stdin: bool, tty: bool) -> cri::ExecRequest {
    cri::ExecRequest {
        container_id: id.into(),
        cmd: cmd.iter().map(|s| s.to_string()).collect(),
        tty,
        stdin,
        stdout: true,
        stderr: !tty,
    }
}

async fn exec_url(c: &mut Cri, r: cri::ExecRequest) -> String {
    c.runtime.exec(r).await.unwrap().into_inner().url
}

/// Processes in the node (by command line) whose command line contains `needle`.
fn processes_with(needle: &str) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        if e.file_name().to_string_lossy().parse::<u32>().is_err() {
            continue;
        }
        if let Ok(cmd) = std::fs::read(e.path().join("cmdline")) {
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            if cmd.contains(needle) {
                out.push(cmd);
            }
        }
    }
    out
}

#[test]
fn exec_streams_stdin_output_exit_codes_and_a_tty() {
    let mut node = ShimNode::new().unwrap();
    node.start_shim().unwrap();
    rt().block_on(async {
        let mut c = node.cri().await.unwrap();
        let (_, ids) = setup(&node, &mut c, vec![node.container("sh", "exec sleep 3600")]).await;
        let id = &ids[0];

        // stdin → cat → stdout; v5's close signal half-closes stdin, so cat ends with 0.
        let url = exec_url(&mut c, exec_req(id, &["cat"], true, false)).await;
        assert!(url.starts_with("http://127.0.0.1:") && url.contains("/exec/"), "{url}");
        let mut s = ws(&node, &url, "", &format!("{V5},{V4}")).await.unwrap();
        send(&mut s, 0, b"hello through stdin\n").await;
        assert!(read_until(&mut s, 1, "hello through stdin").await.contains("hello"));
        s.send(Message::Binary(vec![255, 0].into())).await.unwrap();
        let got = collect(&mut s).await;
        assert_eq!(got.status()["status"], "Success", "{got:?}");

        // Exit code and stderr, over v4 (no close signal needed).
        let url = exec_url(
            &mut c,
            exec_req(id, &["sh", "-c", "echo out; echo err >&2; exit 3"], false, false),
        )
        .await;
        let mut s = ws(&node, &url, "", V4).await.unwrap();
        let got = collect(&mut s).await;
        assert_eq!(got.text(1), "out\n");
        assert_eq!(got.text(2), "err\n");
        let st = got.status();
        assert_eq!(st["status"], "Failure");
        assert_eq!(st["reason"], "NonZeroExitCode");
        assert_eq!(st["details"]["causes"][0]["reason"], "ExitCode");
        assert_eq!(st["details"]["causes"][0]["message"], "3");

        // A tty: the resize on channel 4 is what `stty size` sees; exit code from the shell.
        let url = exec_url(&mut c, exec_req(id, &["sh"], true, true)).await;
        let mut s = ws(&node, &url, "", V5).await.unwrap();
        send(&mut s, 4, br#"{"Width":123,"Height":45}"#).await;
        send(&mut s, 0, b"stty size; tty; exit 7\n").await;
        let got = collect(&mut s).await;
        let out = got.text(1);
        assert!(out.contains("45 123"), "stty size through the pty: {out:?}");
        assert!(out.contains("/dev/pts/"), "a real terminal: {out:?}");
        assert_eq!(got.status()["details"]["causes"][0]["message"], "7", "{got:?}");

        // A client that disconnects mid-exec leaves no process behind.
        let url = exec_url(&mut c, exec_req(id, &["sleep", "4242"], false, false)).await;
        let s = ws(&node, &url, "", V5).await.unwrap();
        let start = Instant::now();
        while processes_with("sleep 4242").is_empty() {
            assert!(start.elapsed() < Duration::from_secs(10), "exec never started");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        drop(s);
        let start = Instant::now();
        while !processes_with("sleep 4242").is_empty() || !processes_with(" exec --pid-file").is_empty() {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "left behind after the client went: {:?} {:?}",
                processes_with("sleep 4242"),
                processes_with(" exec --pid-file")
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }

        // Tokens: single use, unknown ones refused; a SPDY upgrade gets SPDY.
        let url = exec_url(&mut c, exec_req(id, &["true"], false, false)).await;
        let mut s = ws(&node, &url, "", V5).await.unwrap();
        assert_eq!(collect(&mut s).await.status()["status"], "Success");
        let (code, body) = refusal(ws(&node, &url, "", V5).await.unwrap_err());
        assert_eq!(code, 404, "{body}");
        assert!(body.contains("already used or expired"), "{body}");
        let (addr, _) = split_url(&url);
        let (code, body) =
            refusal(ws(&node, &format!("http://{addr}/exec/0123"), "", V5).await.unwrap_err());
        assert_eq!(code, 404, "{body}");
        let url = exec_url(&mut c, exec_req(id, &["true"], false, false)).await;
        let (code, body) = refusal(ws(&node, &url, "", "channel.k8s.io").await.unwrap_err());
        assert_eq!(code, 400);
        assert!(body.contains("v5.channel.k8s.io, v4.channel.k8s.io"), "{body}");
        let (_, path) = split_url(&exec_url(&mut c, exec_req(id, &["true"], false, false)).await);
        let raw = in_netns(Some(&node.netns.path()), || {
            use std::io::{Read, Write};
            let mut t = std::net::TcpStream::connect(addr).unwrap();
            t.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            write!(
                t,
                "POST {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n\
                 X-Stream-Protocol-Version: v4.channel.k8s.io\r\nContent-Length: 0\r\n\r\n"
            )
            .unwrap();
            let mut buf = vec![0u8; 4096];
            let n = t.read(&mut buf).unwrap();
            String::from_utf8_lossy(&buf[..n]).to_string()
        });
        // SPDY exec is spoken too (shim_spdy.rs and control_kubelet_proxy.rs drive it).
        assert!(raw.starts_with("HTTP/1.1 101"), "{raw}");
        assert!(
            raw.to_ascii_lowercase()
                .contains("x-stream-protocol-version: v4.channel.k8s.io"),
            "{raw}"
        );

        // pea-crictl's `exec -i` speaks the same protocol: stdin through, exit code back.
        let crictl = pea_tests::bins::workspace_binary("pea-crictl", "PEA_CRICTL");
        let run = |args: &[&str], input: &'static [u8]| {
            let mut cmd = std::process::Command::new(&crictl);
            cmd.arg("-r")
                .arg(&node.socket)
                .args(args)
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped());
            in_netns(Some(&node.netns.path()), move || {
                use std::io::Write;
                let mut child = cmd.spawn().unwrap();
                child.stdin.take().unwrap().write_all(input).unwrap();
                child.wait_with_output().unwrap()
            })
        };
        let o = run(&["exec", "-i", id, "cat"], b"typed at pea-crictl\n");
        assert_eq!(o.status.code(), Some(0), "{o:?}");
        assert_eq!(String::from_utf8_lossy(&o.stdout), "typed at pea-crictl\n");
        let o = run(&["exec", "-i", id, "sh", "-c", "exit 5"], b"");
        assert_eq!(o.status.code(), Some(5), "{o:?}");

        // Bad CRI requests fail at the RPC, naming what is wrong.
        for (r, code, what) in [
            (exec_req(id, &[], false, false), Code::InvalidArgument, "cmd"),
            (
                cri::ExecRequest { stderr: true, ..exec_req(id, &["sh"], true, true) },
                Code::InvalidArgument,
                "tty and stderr",
            ),
            (
                cri::ExecRequest {
                    stdout: false,
                    stderr: false,
                    ..exec_req(id, &["true"], false, false)
                },
                Code::InvalidArgument,
                "one of stdin, stdout or stderr",
            ),
            (exec_req("nope", &["true"], false, false), Code::NotFound, "nope"),
        ] {
            let e = c.runtime.exec(r).await.unwrap_err();
            assert_eq!(e.code(), code, "{e:?}");
            assert!(e.message().contains(what), "{e:?}");
        }
        c.runtime
            .stop_container(cri::StopContainerRequest {
                container_id: id.clone(),
                timeout: 0,
            })
            .await
            .unwrap();
        let e = c
            .runtime
            .exec(exec_req(id, &["true"], false, false))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
        assert!(e.message().contains("not running"), "{e:?}");
    });
    node.teardown().unwrap();
    assert_eq!(node.leftovers(), Vec::<String>::new());
}

#[test]
fn attach_streams_live_output_and_stdin_and_port_forward_reaches_the_pod() {
    let mut node = ShimNode::new().unwrap();
    node.start_shim().unwrap();
    rt().block_on(async {
        let mut c = node.cri().await.unwrap();
        let ticker = node.container(
            "ticker",
            "i=0; while [ $i -lt 600 ]; do echo tick $i; i=$((i+1)); sleep 0.1; done",
        );
        let cat = cri::ContainerConfig {
            stdin: true,
            stdin_once: true,
            command: vec!["cat".into()],
            ..node.container("cat", "")
        };
        let server = node.container("echo-server", "exec nc -ll -p 8080 -e cat");
        let (pod, ids) = setup(&node, &mut c, vec![ticker, cat, server]).await;

        // Live output of a running container.
        let url = c
            .runtime
            .attach(cri::AttachRequest {
                container_id: ids[0].clone(),
                stdin: false,
                tty: false,
                stdout: true,
                stderr: true,
            })
            .await
            .unwrap()
            .into_inner()
            .url;
        assert!(url.contains("/attach/"), "{url}");
        let mut s = ws(&node, &url, "", V5).await.unwrap();
        let out = read_until(&mut s, 1, "tick").await;
        assert!(out.contains("tick "), "{out:?}");
        drop(s);

        // stdin of a stdin_once container: typed lines come back, closing stdin ends it.
        let url = c
            .runtime
            .attach(cri::AttachRequest {
                container_id: ids[1].clone(),
                stdin: true,
                tty: false,
                stdout: true,
                stderr: true,
            })
            .await
            .unwrap()
            .into_inner()
            .url;
        let mut s = ws(&node, &url, "", V5).await.unwrap();
        send(&mut s, 0, b"typed into the container\n").await;
        read_until(&mut s, 1, "typed into the container").await;
        s.send(Message::Binary(vec![255, 0].into())).await.unwrap();
        let got = collect(&mut s).await;
        assert_eq!(got.status()["status"], "Success", "{got:?}");
        // Attach with stdin to a container without stdin is refused.
        let e = c
            .runtime
            .attach(cri::AttachRequest {
                container_id: ids[0].clone(),
                stdin: true,
                tty: false,
                stdout: true,
                stderr: false,
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");

        // Port-forward: 8080 (nc echoing through cat) and 9 (nothing listens) in one stream.
        let url = c
            .runtime
            .port_forward(cri::PortForwardRequest {
                pod_sandbox_id: pod.clone(),
                port: vec![8080],
            })
            .await
            .unwrap()
            .into_inner()
            .url;
        assert!(url.contains("/portforward/"), "{url}");
        let start = Instant::now();
        let mut s = loop {
            // nc may still be starting: retry the whole request a few times.
            let url = if start.elapsed().is_zero() {
                url.clone()
            } else {
                c.runtime
                    .port_forward(cri::PortForwardRequest {
                        pod_sandbox_id: pod.clone(),
                        port: vec![8080],
                    })
                    .await
                    .unwrap()
                    .into_inner()
                    .url
            };
            let mut s = ws(&node, &url, "?port=8080&port=9", V4).await.unwrap();
            // Each channel opens with its port, little-endian.
            let mut opened = std::collections::BTreeMap::new();
            while opened.len() < 4 {
                match tokio::time::timeout(Duration::from_secs(10), s.next()).await {
                    Ok(Some(Ok(Message::Binary(b)))) => {
                        opened.entry(b[0]).or_insert_with(|| b[1..].to_vec());
                    }
                    other => panic!("port-forward opening: {other:?}"),
                }
            }
            assert_eq!(opened[&0], 8080u16.to_le_bytes());
            assert_eq!(opened[&1], 8080u16.to_le_bytes());
            assert_eq!(opened[&2], 9u16.to_le_bytes());
            send(&mut s, 0, b"ping through the pod\n").await;
            let mut echoed = Vec::new();
            let mut refused = String::new();
            let deadline = Instant::now() + Duration::from_secs(10);
            while !String::from_utf8_lossy(&echoed).contains("ping through the pod") {
                match tokio::time::timeout_at(deadline.into(), s.next()).await {
                    Ok(Some(Ok(Message::Binary(b)))) => match b[0] {
                        0 => echoed.extend_from_slice(&b[1..]),
                        1 => refused.push_str("8080: "),
                        3 => refused.push_str(&String::from_utf8_lossy(&b[1..])),
                        _ => {}
                    },
                    _ => break,
                }
            }
            if String::from_utf8_lossy(&echoed).contains("ping through the pod") {
                assert!(
                    refused.contains("error forwarding port 9"),
                    "port 9 has no listener: {refused:?}"
                );
                break s;
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "no echo through port 8080: {refused:?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        s.close(None).await.unwrap();
        // Bad ports are refused at the RPC.
        let e = c
            .runtime
            .port_forward(cri::PortForwardRequest {
                pod_sandbox_id: pod.clone(),
                port: vec![70000],
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    });
    node.teardown().unwrap();
    assert_eq!(node.leftovers(), Vec::<String>::new());
}

/// The CRI log file of the container named `name` under the node's log dir.
fn container_log(node: &ShimNode, name: &str) -> String {
    for pod in std::fs::read_dir(node.path("logs")).unwrap().flatten() {
        let log = pod.path().join(name).join("0.log");
        if log.exists() {
            return std::fs::read_to_string(log).unwrap();
        }
    }
    panic!("no log for container {name}");
}

#[test]
fn a_tty_container_takes_typed_input_resizes_and_logs_one_stream() {
    let mut node = ShimNode::new().unwrap();
    node.start_shim().unwrap();
    rt().block_on(async {
        let mut c = node.cri().await.unwrap();
        let tty = cri::ContainerConfig {
            tty: true,
            stdin: true,
            command: vec!["/bin/sh".into()],
            ..node.container("tty", "")
        };
        let (_pod, ids) = setup(&node, &mut c, vec![tty]).await;
        let attach = |stderr: bool| cri::AttachRequest {
            container_id: ids[0].clone(),
            stdin: true,
            tty: true,
            stdout: true,
            stderr,
        };
        // A terminal has one output stream.
        let e = c.runtime.attach(attach(true)).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
        let url = c
            .runtime
            .attach(attach(false))
            .await
            .unwrap()
            .into_inner()
            .url;
        let mut s = ws(&node, &url, "", V5).await.unwrap();
        // The resize reaches the terminal before the typed line does.
        send(&mut s, 4, br#"{"Width":123,"Height":45}"#).await;
        // Markers are computed so the terminal's echo of the typed line never matches them.
        send(&mut s, 0, b"stty size; [ -t 0 ] && echo term-$((6*7))\n").await;
        let out = read_until(&mut s, 1, "term-42").await;
        assert!(out.contains("45 123"), "{out:?}");
        send(&mut s, 0, b"exit 3\n").await;
        let got = collect(&mut s).await;
        assert_eq!(got.status()["status"], "Success", "{got:?}");
        let status = c
            .runtime
            .container_status(cri::ContainerStatusRequest {
                container_id: ids[0].clone(),
                verbose: false,
            })
            .await
            .unwrap()
            .into_inner()
            .status
            .unwrap();
        assert_eq!(status.exit_code, 3, "{status:?}");
        // The log holds the terminal's output as stdout records only (CRI's tty logging).
        let log = container_log(&node, "tty");
        assert!(log.contains(" stdout ") && log.contains("term-42"), "{log}");
        assert!(!log.contains(" stderr "), "{log}");
    });
    node.teardown().unwrap();
    assert_eq!(node.leftovers(), Vec::<String>::new());
}
