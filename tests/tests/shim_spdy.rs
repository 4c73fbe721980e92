//! pea-shim's streaming server speaking SPDY/3.1 port-forward (`portforward.k8s.io`) to a SPDY
//! client built from pea-shim's own framing (`pea_shim::streaming::spdy`), from inside the
//! node's network namespace: the upgrade, a data/error stream pair echoing through a pod, the
//! client's half-close, and hostile input (streams without headers, ports not granted, too
//! many streams, a foreign SPDY version) getting RST_STREAM or GOAWAY. Real kubectl over SPDY
//! is in control_kubelet_proxy.rs. Exec over SPDY (remotecommand v4/v2: stream handshake,
//! stdin FIN, exit Status, bad/duplicate/unasked streams, stream floods, oversized headers, a
//! client leaving mid-exec) is `spdy_exec_speaks_remotecommand_and_refuses_bad_streams`.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use k8s_cri::v1 as cri;
use pea_shim::streaming::spdy::{self, rst, Frame, FrameReader, FrameWriter, Headers};
use pea_shim::streaming::spdy_port_forward::MAX_STREAMS;
use pea_tests::fixtures::registry::in_netns;
use pea_tests::shim_node::ShimNode;
use tokio::io::{AsyncReadExt, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::net::TcpStream;

type Conn = (
    FrameReader<ReadHalf<TcpStream>>,
    FrameWriter<WriteHalf<TcpStream>>,
);

fn headers(kind: &str, port: &str, request: &str) -> Headers {
    vec![
        ("streamtype".into(), kind.into()),
        ("port".into(), port.into()),
        ("requestid".into(), request.into()),
    ]
}

/// Upgrades `url` to SPDY/3.1 offering `protocol`; the status line and head, and the
/// connection if it was switched.
async fn upgrade(node: &ShimNode, url: &str, protocol: &str) -> (String, Option<Conn>) {
    let rest = url.strip_prefix("http://").unwrap();
    let (addr, path) = rest.split_at(rest.find('/').unwrap());
    let addr: SocketAddr = addr.parse().unwrap();
    let s = in_netns(Some(&node.netns.path()), || {
        std::net::TcpStream::connect(addr)
    })
    .unwrap();
    s.set_nonblocking(true).unwrap();
    let mut s = TcpStream::from_std(s).unwrap();
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n\
         X-Stream-Protocol-Version: {protocol}\r\nContent-Length: 0\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    // Read the head byte by byte so no SPDY byte is swallowed.
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") && head.len() < 16 << 10 {
        let mut b = [0u8];
        match tokio::time::timeout(Duration::from_secs(10), s.read(&mut b)).await {
            Ok(Ok(1)) => head.push(b[0]),
            _ => break,
        }
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    if !head.starts_with("HTTP/1.1 101") {
        let mut rest = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(2), s.read_to_end(&mut rest)).await;
        return (head + &String::from_utf8_lossy(&rest), None);
    }
    let (r, w) = tokio::io::split(s);
    (head, Some((FrameReader::new(r), FrameWriter::new(w))))
}

/// The next frame, bounded in time.
async fn next(r: &mut FrameReader<ReadHalf<TcpStream>>) -> Option<Frame> {
    tokio::time::timeout(Duration::from_secs(10), r.read())
        .await
        .expect("a frame within 10 s")
        .ok()
        .flatten()
}

async fn port_forward_url(c: &mut pea_tests::cri_client::Cri, pod: &str, ports: &[i32]) -> String {
    c.runtime
        .port_forward(cri::PortForwardRequest {
            pod_sandbox_id: pod.into(),
            port: ports.to_vec(),
        })
        .await
        .unwrap()
        .into_inner()
        .url
}

#[test]
fn spdy_port_forward_echoes_through_the_pod_and_refuses_bad_streams() {
    let mut node = ShimNode::new().unwrap();
    node.start_shim().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut c = node.cri().await.unwrap();
        let pod = node
            .run_container(
                &mut c,
                "spdy",
                node.container("echo-server", "exec nc -ll -p 8080 -e cat"),
            )
            .await
            .unwrap()
            .id;

        // Negotiation: an unknown protocol is refused as the kubelet refuses it.
        let url = port_forward_url(&mut c, &pod, &[8080]).await;
        let (head, conn) = upgrade(&node, &url, "v4.channel.k8s.io").await;
        assert!(conn.is_none() && head.starts_with("HTTP/1.1 403"), "{head}");
        assert!(head.contains("unable to negotiate protocol"), "{head}");

        // A pair echoing through nc/cat; the client's FIN ends cat, which ends both streams.
        let start = Instant::now();
        let (mut r, mut w, echoed) = loop {
            let url = port_forward_url(&mut c, &pod, &[8080]).await;
            let (head, conn) = upgrade(&node, &url, "portforward.k8s.io").await;
            let (mut r, mut w) = conn.unwrap_or_else(|| panic!("{head}"));
            assert!(
                head.to_ascii_lowercase()
                    .contains("x-stream-protocol-version: portforward.k8s.io"),
                "{head}"
            );
            for (id, kind) in [(1, "error"), (3, "data")] {
                w.write(&Frame::SynStream {
                    id,
                    fin: false,
                    headers: headers(kind, "8080", "0"),
                })
                .await
                .unwrap();
            }
            w.write(&Frame::Data {
                id: 3,
                fin: true,
                data: Bytes::from_static(b"ping\n"),
            })
            .await
            .unwrap();
            w.flush().await.unwrap();
            let mut replies = Vec::new();
            let mut echoed = Vec::new();
            let mut errors = String::new();
            let mut fins = Vec::new();
            while fins.len() < 2 {
                match next(&mut r).await {
                    Some(Frame::SynReply { id, .. }) => replies.push(id),
                    Some(Frame::Data { id: 3, fin, data }) => {
                        echoed.extend_from_slice(&data);
                        if fin {
                            fins.push(3);
                        }
                    }
                    Some(Frame::Data { id: 1, fin, data }) => {
                        errors.push_str(&String::from_utf8_lossy(&data));
                        if fin {
                            fins.push(1);
                        }
                    }
                    other => panic!("unexpected {other:?}"),
                }
            }
            assert_eq!(replies, [1, 3]);
            if echoed == b"ping\n" {
                assert_eq!(errors, "");
                break (r, w, echoed);
            }
            // nc may still be starting: then the error stream says why; retry, bounded.
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "no echo: {errors:?}"
            );
            tokio::time::sleep(Duration::from_millis(300)).await;
        };
        assert_eq!(echoed, b"ping\n");

        // Bad streams are reset; the connection goes on (a PING still comes back).
        let bad = [
            (5, headers("data", "9999", "1"), rst::REFUSED_STREAM),
            (7, vec![("port".into(), "8080".into())], rst::PROTOCOL_ERROR),
            (9, headers("data", "x", "2"), rst::PROTOCOL_ERROR),
            (11, headers("error", "8080", "3"), 0),
            (13, headers("error", "8080", "3"), rst::STREAM_IN_USE),
        ];
        for (id, h, _) in &bad {
            w.write(&Frame::SynStream {
                id: *id,
                fin: false,
                headers: h.clone(),
            })
            .await
            .unwrap();
        }
        w.write(&Frame::Data {
            id: 99,
            fin: false,
            data: Bytes::from_static(b"x"),
        })
        .await
        .unwrap();
        w.write(&Frame::Ping(41)).await.unwrap();
        w.flush().await.unwrap();
        for (id, _, status) in &bad {
            let want = if *status == 0 {
                Frame::SynReply {
                    id: *id,
                    fin: false,
                    headers: vec![],
                }
            } else {
                Frame::RstStream {
                    id: *id,
                    status: *status,
                }
            };
            assert_eq!(next(&mut r).await, Some(want));
        }
        assert_eq!(
            next(&mut r).await,
            Some(Frame::RstStream {
                id: 99,
                status: rst::INVALID_STREAM
            })
        );
        assert_eq!(next(&mut r).await, Some(Frame::Ping(41)));

        // Too many open streams: the ones beyond the limit are refused.
        let mut id = 15u32;
        for n in 0..MAX_STREAMS {
            w.write(&Frame::SynStream {
                id,
                fin: false,
                headers: headers("error", "8080", &format!("many-{n}")),
            })
            .await
            .unwrap();
            id += 2;
        }
        w.flush().await.unwrap();
        let (mut replied, mut refused) = (0, 0);
        for _ in 0..MAX_STREAMS {
            match next(&mut r).await {
                Some(Frame::SynReply { .. }) => replied += 1,
                Some(Frame::RstStream {
                    status: rst::REFUSED_STREAM,
                    ..
                }) => refused += 1,
                other => panic!("unexpected {other:?}"),
            }
        }
        // Stream 11 is still open: one less fits.
        assert_eq!((replied, refused), (MAX_STREAMS - 1, 1));

        // A reused (not increasing) stream ID breaks the protocol: GOAWAY, then the end.
        w.write(&Frame::SynStream {
            id: 3,
            fin: false,
            headers: headers("data", "8080", "z"),
        })
        .await
        .unwrap();
        w.flush().await.unwrap();
        assert_eq!(
            next(&mut r).await,
            Some(Frame::GoAway {
                last_good: id - 2,
                status: spdy::goaway::PROTOCOL_ERROR
            })
        );
        assert_eq!(next(&mut r).await, None, "the connection ends after GOAWAY");

        // A foreign SPDY version on a fresh connection: GOAWAY too.
        let url = port_forward_url(&mut c, &pod, &[8080]).await;
        let (head, conn) = upgrade(&node, &url, "portforward.k8s.io").await;
        let (mut r, w) = conn.unwrap_or_else(|| panic!("{head}"));
        let mut raw = w.into_inner();
        raw.write_all(&[0x80, 2, 0, 6, 0, 0, 0, 4, 0, 0, 0, 1])
            .await
            .unwrap();
        assert_eq!(
            next(&mut r).await,
            Some(Frame::GoAway {
                last_good: 0,
                status: spdy::goaway::PROTOCOL_ERROR
            })
        );
        assert_eq!(next(&mut r).await, None);
    });
    drop(rt);
    node.teardown().unwrap();
    assert_eq!(node.leftovers(), Vec::<String>::new());
}

async fn exec_url(
    c: &mut pea_tests::cri_client::Cri,
    id: &str,
    cmd: &[&str],
    stdin: bool,
) -> String {
    c.runtime
        .exec(cri::ExecRequest {
            container_id: id.into(),
            cmd: cmd.iter().map(|s| s.to_string()).collect(),
            tty: false,
            stdin,
            stdout: true,
            stderr: true,
        })
        .await
        .unwrap()
        .into_inner()
        .url
}

fn stream_type(kind: &str) -> Headers {
    vec![("streamtype".into(), kind.into())]
}

/// Opens the error/stdin/stdout/stderr streams (ids 1, 3, 5, 7; stdin only when asked) and
/// checks each gets its SYN_REPLY.
async fn open_exec_streams(conn: &mut Conn, stdin: bool) {
    let (r, w) = conn;
    let mut kinds = vec![(1, "error"), (5, "stdout"), (7, "stderr")];
    if stdin {
        kinds.insert(1, (3, "stdin"));
    }
    for (id, kind) in &kinds {
        w.write(&Frame::SynStream {
            id: *id,
            fin: false,
            headers: stream_type(kind),
        })
        .await
        .unwrap();
        w.flush().await.unwrap();
        assert_eq!(
            next(r).await,
            Some(Frame::SynReply {
                id: *id,
                fin: false,
                headers: vec![]
            })
        );
    }
}

/// Reads until GOAWAY: (stdout, stderr, error stream) bytes and the streams that got a FIN.
async fn exec_outcome(
    r: &mut FrameReader<ReadHalf<TcpStream>>,
) -> (String, String, String, Vec<u32>) {
    let (mut out, mut err, mut status, mut fins) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    loop {
        match next(r).await {
            Some(Frame::Data { id, fin, data }) => {
                match id {
                    1 => status.extend_from_slice(&data),
                    5 => out.extend_from_slice(&data),
                    7 => err.extend_from_slice(&data),
                    _ => {}
                }
                if fin {
                    fins.push(id);
                }
            }
            Some(Frame::GoAway { status: s, .. }) => {
                assert_eq!(s, spdy::goaway::OK);
                break;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    fins.sort();
    let s = |b: Vec<u8>| String::from_utf8_lossy(&b).into_owned();
    (s(out), s(err), s(status), fins)
}

/// Whether a process whose command line is exactly `argv` runs on the host.
fn running(argv: &[&str]) -> bool {
    let want = argv.join("\0") + "\0";
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .any(|e| std::fs::read(e.path().join("cmdline")).is_ok_and(|c| c == want.as_bytes()))
}

#[test]
fn spdy_exec_speaks_remotecommand_and_refuses_bad_streams() {
    let mut node = ShimNode::new().unwrap();
    node.start_shim().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut c = node.cri().await.unwrap();
        let started = node
            .run_container(
                &mut c,
                "spdy-exec",
                node.container("app", "exec sleep 3600"),
            )
            .await
            .unwrap();
        let id = started.containers[0].clone();

        // Negotiation: the client's first protocol spoken here; an unknown one is refused.
        let url = exec_url(&mut c, &id, &["true"], false).await;
        let (head, conn) = upgrade(&node, &url, "v9.channel.k8s.io").await;
        assert!(conn.is_none() && head.starts_with("HTTP/1.1 403"), "{head}");
        assert!(head.contains("unable to negotiate protocol"), "{head}");

        // v4: stdin through its stream (FIN = EOF), stdout and stderr back, and a Status
        // with the exit code on the error stream; then FIN on every stream and GOAWAY.
        let url = exec_url(
            &mut c,
            &id,
            &["sh", "-c", "cat; echo err >&2; exit 3"],
            true,
        )
        .await;
        let (head, conn) = upgrade(&node, &url, "v4.channel.k8s.io, v3.channel.k8s.io").await;
        let mut conn = conn.unwrap_or_else(|| panic!("{head}"));
        assert!(
            head.to_ascii_lowercase()
                .contains("x-stream-protocol-version: v4.channel.k8s.io"),
            "{head}"
        );
        open_exec_streams(&mut conn, true).await;
        let (r, w) = &mut conn;
        w.write(&Frame::Data {
            id: 3,
            fin: true,
            data: Bytes::from_static(b"through stdin\n"),
        })
        .await
        .unwrap();
        w.flush().await.unwrap();
        let (out, err, status, fins) = exec_outcome(r).await;
        assert_eq!((out.as_str(), err.as_str()), ("through stdin\n", "err\n"));
        let status: serde_json::Value = serde_json::from_str(&status).unwrap();
        assert_eq!(status["reason"], "NonZeroExitCode", "{status}");
        assert_eq!(status["details"]["causes"][0]["message"], "3", "{status}");
        assert_eq!(fins, [1, 3, 5, 7]);

        // v2: a failure is its message, success is silence.
        let url = exec_url(&mut c, &id, &["sh", "-c", "exit 4"], false).await;
        let (head, conn) = upgrade(&node, &url, "v2.channel.k8s.io").await;
        let mut conn = conn.unwrap_or_else(|| panic!("{head}"));
        open_exec_streams(&mut conn, false).await;
        let (_, _, status, _) = exec_outcome(&mut conn.0).await;
        assert!(status.contains("exit code 4"), "{status}");
        let url = exec_url(&mut c, &id, &["true"], false).await;
        let (head, conn) = upgrade(&node, &url, "v2.channel.k8s.io").await;
        let mut conn = conn.unwrap_or_else(|| panic!("{head}"));
        open_exec_streams(&mut conn, false).await;
        assert_eq!(exec_outcome(&mut conn.0).await.2, "");

        // Bad streams before the session starts: an unknown streamType, one not asked for
        // (stdin), one twice; each is reset and the session still runs once the right ones
        // are there.
        let url = exec_url(&mut c, &id, &["echo", "still-fine"], false).await;
        let (head, conn) = upgrade(&node, &url, "v4.channel.k8s.io").await;
        let (mut r, mut w) = conn.unwrap_or_else(|| panic!("{head}"));
        let opens = [
            (1, "bogus", Some(rst::PROTOCOL_ERROR)),
            (3, "stdin", Some(rst::REFUSED_STREAM)),
            (5, "error", None),
            (7, "error", Some(rst::STREAM_IN_USE)),
            (9, "stdout", None),
            (11, "stderr", None),
        ];
        for (sid, kind, reset) in opens {
            w.write(&Frame::SynStream {
                id: sid,
                fin: false,
                headers: stream_type(kind),
            })
            .await
            .unwrap();
            w.flush().await.unwrap();
            let want = match reset {
                Some(status) => Frame::RstStream { id: sid, status },
                None => Frame::SynReply {
                    id: sid,
                    fin: false,
                    headers: vec![],
                },
            };
            assert_eq!(next(&mut r).await, Some(want), "stream {sid} ({kind})");
        }
        let mut out = Vec::new();
        loop {
            match next(&mut r).await {
                Some(Frame::Data { id: 9, data, .. }) => out.extend_from_slice(&data),
                Some(Frame::GoAway { .. }) => break,
                Some(_) => {}
                None => panic!("no GOAWAY"),
            }
        }
        assert_eq!(out, b"still-fine\n");

        // Too many streams before the session is complete: GOAWAY, and nothing was started.
        let url = exec_url(&mut c, &id, &["sleep", "977"], false).await;
        let (head, conn) = upgrade(&node, &url, "v4.channel.k8s.io").await;
        let (mut r, mut w) = conn.unwrap_or_else(|| panic!("{head}"));
        let max = pea_shim::streaming::spdy_remotecommand::MAX_STREAMS as u32;
        for n in 0..=max {
            w.write(&Frame::SynStream {
                id: 2 * n + 1,
                fin: false,
                headers: stream_type("bogus"),
            })
            .await
            .unwrap();
        }
        w.flush().await.unwrap();
        for n in 0..max {
            assert!(
                matches!(next(&mut r).await, Some(Frame::RstStream { id, .. }) if id == 2 * n + 1)
            );
        }
        assert_eq!(
            next(&mut r).await,
            Some(Frame::GoAway {
                last_good: 2 * max + 1,
                status: spdy::goaway::PROTOCOL_ERROR
            })
        );
        assert_eq!(next(&mut r).await, None);
        assert!(!running(&["sleep", "977"]));

        // A header block inflating past the limit: GOAWAY.
        let url = exec_url(&mut c, &id, &["true"], false).await;
        let (head, conn) = upgrade(&node, &url, "v4.channel.k8s.io").await;
        let (mut r, mut w) = conn.unwrap_or_else(|| panic!("{head}"));
        w.write(&Frame::SynStream {
            id: 1,
            fin: false,
            headers: vec![("streamtype".into(), "e".repeat(spdy::MAX_HEADER_BLOCK))],
        })
        .await
        .unwrap();
        w.flush().await.unwrap();
        assert!(matches!(
            next(&mut r).await,
            Some(Frame::GoAway {
                status: spdy::goaway::PROTOCOL_ERROR,
                ..
            })
        ));
        assert_eq!(next(&mut r).await, None);

        // A client that leaves mid-exec takes the process with it.
        let url = exec_url(&mut c, &id, &["sh", "-c", "echo up; exec sleep 976"], false).await;
        let (head, conn) = upgrade(&node, &url, "v4.channel.k8s.io").await;
        let mut conn = conn.unwrap_or_else(|| panic!("{head}"));
        open_exec_streams(&mut conn, false).await;
        assert!(matches!(
            next(&mut conn.0).await,
            Some(Frame::Data { id: 5, ref data, .. }) if data.as_ref() == b"up\n"
        ));
        let start = Instant::now();
        while !running(&["sleep", "976"]) {
            assert!(start.elapsed() < Duration::from_secs(10), "exec never ran");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        drop(conn);
        let start = Instant::now();
        while running(&["sleep", "976"]) {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "the exec outlived its client"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    drop(rt);
    node.teardown().unwrap();
    assert_eq!(node.leftovers(), Vec::<String>::new());
}
