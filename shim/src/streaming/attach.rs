//! An attach session: the container's live output and (when it was created with stdin) its
//! stdin, through its pea-monitor's attach socket (`<state>/attach/<id>.sock`, see pea-monitor's
//! `attach` module for the wire format: monitor → us `[stream 1|2][u32 BE length][bytes]`,
//! us → monitor raw stdin bytes, our write-side shutdown = "this client closed stdin").
//! The session ends when the container exits (the monitor closes the socket): then channel 3
//! says Success, as the kubelet's attach does.

use std::path::PathBuf;
use std::sync::Arc;

use k8s_cri::v1 as cri;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

use super::session::{Inbound, Session};
use super::status;
use crate::config::ShimConfig;
use crate::Shim;

/// The largest frame a monitor sends (it reads 32 KiB at a time); anything bigger is a
/// protocol error, not an allocation.
const MAX_FRAME: usize = 64 * 1024;

/// Where container `id`'s monitor listens for attach clients.
pub fn socket_path(cfg: &ShimConfig, id: &str) -> PathBuf {
    cfg.state.join("attach").join(format!("{id}.sock"))
}

pub async fn run(shim: Arc<Shim>, r: cri::AttachRequest, mut s: Session) {
    s.announce(r.stdout, r.stderr).await;
    let path = socket_path(&shim.cfg, &r.container_id);
    let conn = match UnixStream::connect(&path).await {
        Ok(c) => c,
        Err(e) => {
            let msg = format!(
                "attaching to container {}: its monitor's attach socket {}: {e}",
                r.container_id,
                path.display()
            );
            tracing::warn!(%msg);
            s.out.status(&status::internal(&msg)).await;
            s.finish().await;
            return;
        }
    };
    let (mut rd, mut wr) = conn.into_split();
    let out = s.out.clone();
    let (want_out, want_err) = (r.stdout, r.stderr);
    let mut output = tokio::spawn(async move {
        let mut head = [0u8; 5];
        let mut buf = Vec::new();
        loop {
            if rd.read_exact(&mut head).await.is_err() {
                return Ok(());
            }
            let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
            if len > MAX_FRAME {
                return Err(format!("monitor sent a {len}-byte frame"));
            }
            buf.resize(len, 0);
            if rd.read_exact(&mut buf).await.is_err() {
                return Ok(());
            }
            let wanted = match head[0] {
                1 => want_out,
                2 => want_err,
                other => return Err(format!("monitor sent stream {other}")),
            };
            if wanted && !out.send(head[0], &buf).await {
                return Ok(());
            }
        }
    });
    let mut stdin_open = r.stdin;
    // A tty container's terminal is resized through its init's stdin (the pty slave).
    let tty_pid = shim
        .container(&r.container_id)
        .ok()
        .filter(|c| c.config.tty)
        .and_then(|c| c.pid);
    let ended = loop {
        tokio::select! {
            o = &mut output => break Some(o),
            ev = s.recv() => match ev {
                Some(Inbound::Data(0, b)) if stdin_open => {
                    if wr.write_all(&b).await.is_err() {
                        stdin_open = false;
                    }
                }
                Some(Inbound::Data(4, b)) => {
                    if let Some(pid) = tty_pid {
                        resize(pid, &b, &r.container_id);
                    }
                }
                Some(Inbound::Close(0)) if stdin_open => {
                    stdin_open = false;
                    let _ = wr.shutdown().await;
                }
                Some(_) => {}
                None => break None,
            }
        }
    };
    match ended {
        // The client left: dropping our end tells the monitor to forget us.
        None => output.abort(),
        Some(Ok(Ok(()))) => {
            s.out.status(&status::success()).await;
        }
        Some(Ok(Err(e))) => {
            s.out.status(&status::internal(&e)).await;
        }
        Some(Err(e)) => {
            s.out.status(&status::internal(&e.to_string())).await;
        }
    }
    drop(wr);
    s.finish().await;
}

/// Applies a channel-4 resize message to a tty container's terminal; failures only matter to
/// the look of the client's screen, so they are logged, not fatal.
fn resize(init_pid: i32, msg: &[u8], id: &str) {
    match super::pty::TerminalSize::parse(msg) {
        Some(size) => {
            if let Err(e) = super::pty::resize_container_terminal(init_pid, &size) {
                tracing::debug!(container = %id, error = %e, "resizing the terminal");
            }
        }
        None => tracing::debug!(container = %id, "ignoring a malformed resize message"),
    }
}
