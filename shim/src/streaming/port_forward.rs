//! A port-forward session (the kubelet's WebSocket framing): for port i of the request, channel
//! 2i carries data and 2i+1 errors, and each channel's first message is the port as two
//! little-endian bytes. Each port gets one TCP connection to 127.0.0.1:PORT (then [::1]) dialled
//! from inside the pod's network namespace: a short-lived thread `setns()`s into it, connects,
//! and hands the socket to tokio, so no tokio worker ever changes namespace. Bytes are pumped
//! both ways until every connection has closed or the client leaves.

use std::net::{Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use super::session::{Inbound, Session};

/// Ports per stream (two channels each; channel numbers are one byte).
pub const MAX_PORTS: usize = 64;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

const READ_SIZE: usize = 32 * 1024;

/// The ports to forward: the URL's `port` query parameters (what the kubelet's WebSocket
/// handler reads), else those of the CRI request.
pub fn ports_from_query(query: Option<&str>, fallback: Vec<u16>) -> Result<Vec<u16>, String> {
    let given: Vec<String> = form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .filter(|(k, _)| k == "port")
        .map(|(_, v)| v.into_owned())
        .collect();
    let ports = if given.is_empty() {
        fallback
    } else {
        given
            .iter()
            .map(|v| {
                v.parse::<u16>()
                    .ok()
                    .filter(|p| *p > 0)
                    .ok_or_else(|| format!("port {v:?}: want a number from 1 to 65535"))
            })
            .collect::<Result<_, _>>()?
    };
    if ports.is_empty() {
        return Err("query parameter \"port\" is required".into());
    }
    if ports.len() > MAX_PORTS {
        return Err(format!(
            "{} ports asked for; at most {MAX_PORTS} per stream",
            ports.len()
        ));
    }
    Ok(ports)
}

/// Connects to `port` on the loopback of `netns` (the caller's own namespace for `None`).
pub async fn connect(netns: Option<PathBuf>, port: u16) -> std::io::Result<TcpStream> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("pea-port-forward".into())
        .spawn(move || {
            let dial = || -> std::io::Result<std::net::TcpStream> {
                if let Some(ns) = &netns {
                    let f = std::fs::File::open(ns)?;
                    // Only this thread moves; it ends right after connecting.
                    nix::sched::setns(&f, nix::sched::CloneFlags::CLONE_NEWNET)?;
                }
                let v4 = SocketAddr::from(([127, 0, 0, 1], port));
                std::net::TcpStream::connect_timeout(&v4, CONNECT_TIMEOUT).or_else(|e4| {
                    let v6 = SocketAddr::from((Ipv6Addr::LOCALHOST, port));
                    std::net::TcpStream::connect_timeout(&v6, CONNECT_TIMEOUT).map_err(|_| e4)
                })
            };
            let _ = tx.send(dial());
        })?;
    let s = rx
        .await
        .map_err(|_| std::io::Error::other("the connecting thread died"))??;
    s.set_nonblocking(true)?;
    TcpStream::from_std(s)
}

pub async fn run(sandbox_id: String, netns: Option<PathBuf>, ports: Vec<u16>, mut s: Session) {
    for (i, port) in ports.iter().enumerate() {
        let le = port.to_le_bytes();
        s.out.send(2 * i as u8, &le).await;
        s.out.send(2 * i as u8 + 1, &le).await;
    }
    // Per port: where the client's bytes go, while the connection is up.
    let mut writers: Vec<Option<mpsc::Sender<Bytes>>> = Vec::with_capacity(ports.len());
    let (done_tx, mut done_rx) = mpsc::channel::<usize>(ports.len());
    let mut tasks = Vec::new();
    for (i, &port) in ports.iter().enumerate() {
        let data = 2 * i as u8;
        let conn = match connect(netns.clone(), port).await {
            Ok(c) => c,
            Err(e) => {
                let msg = format!("error forwarding port {port} to pod {sandbox_id}: {e}");
                tracing::debug!(%msg);
                s.out.send(data + 1, msg.as_bytes()).await;
                writers.push(None);
                let _ = done_tx.send(i).await;
                continue;
            }
        };
        let (mut rd, mut wr) = conn.into_split();
        let (tx, mut rx) = mpsc::channel::<Bytes>(16);
        writers.push(Some(tx));
        tasks.push(tokio::spawn(async move {
            while let Some(b) = rx.recv().await {
                if wr.write_all(&b).await.is_err() {
                    break;
                }
            }
            let _ = wr.shutdown().await;
        }));
        let out = s.out.clone();
        let done = done_tx.clone();
        tasks.push(tokio::spawn(async move {
            let mut buf = vec![0u8; READ_SIZE];
            loop {
                match rd.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if !out.send(data, &buf[..n]).await {
                            break;
                        }
                    }
                }
            }
            let _ = done.send(i).await;
        }));
    }
    drop(done_tx);
    let mut open = ports.len();
    while open > 0 {
        tokio::select! {
            d = done_rx.recv() => match d {
                Some(_) => open -= 1,
                None => break,
            },
            ev = s.recv() => match ev {
                Some(Inbound::Data(ch, b)) if ch % 2 == 0 => {
                    if let Some(Some(tx)) = writers.get((ch / 2) as usize) {
                        let _ = tx.send(b).await;
                    }
                }
                // v5's close signal is not part of port-forward; client errors are ignored.
                Some(_) => {}
                None => {
                    tracing::debug!("client went away");
                    break;
                }
            }
        }
    }
    for t in tasks {
        t.abort();
    }
    s.finish().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_come_from_the_query_or_the_cri_request() {
        assert_eq!(
            ports_from_query(Some("port=8080&port=53&x=1"), vec![1]),
            Ok(vec![8080, 53])
        );
        assert_eq!(ports_from_query(None, vec![80]), Ok(vec![80]));
        assert!(ports_from_query(None, vec![])
            .unwrap_err()
            .contains("required"));
        assert!(ports_from_query(Some("port=0"), vec![])
            .unwrap_err()
            .contains("\"0\""));
        assert!(ports_from_query(Some("port=70000"), vec![])
            .unwrap_err()
            .contains("70000"));
        let many = (1..=65)
            .map(|p| format!("port={p}"))
            .collect::<Vec<_>>()
            .join("&");
        assert!(ports_from_query(Some(&many), vec![])
            .unwrap_err()
            .contains("at most 64"));
    }
}
