//! An exec session: `RUNTIME --root R exec --pid-file P [--tty --console-socket S] ID CMD...`
//! (runc's contract, which pea-runtime keeps), with the client's channels wired to the process:
//! pipes for stdin/stdout/stderr, or the pty the runtime hands over for tty (stdin and output
//! through the master, channel 4 resizes it). The runtime stays in the foreground until the
//! process exits and exits with its code (128+signal when killed), which goes on channel 3.
//!
//! A client that goes away mid-exec gets the process SIGKILLed (by the pid the runtime wrote)
//! and the runtime reaped: nothing outlives the session.

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use k8s_cri::v1 as cri;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::pty::{ConsoleSocket, TerminalSize};
use super::session::{Inbound, Outbound, Session};
use super::status;
use crate::Shim;

/// How long output is still forwarded after the process exited (a daemonised child may hold
/// the pipes or the pty forever).
const DRAIN_AFTER_EXIT: Duration = Duration::from_secs(2);

/// How long the runtime has to hand over the pty.
const CONSOLE_TIMEOUT: Duration = Duration::from_secs(30);

const READ_SIZE: usize = 32 * 1024;

pub async fn run(shim: Arc<Shim>, r: cri::ExecRequest, mut s: Session) {
    s.announce(r.stdout, r.stderr).await;
    let outcome = run_process(&shim, &r, &mut s).await;
    match outcome {
        Ok(Some(code)) => {
            tracing::debug!(code, "exec exited");
            s.out.status(&status::exit(code, &r.cmd)).await;
        }
        Ok(None) => tracing::debug!("client went away; exec killed"),
        Err(message) => {
            tracing::warn!(%message, "exec failed");
            s.out.status(&status::internal(&message)).await;
        }
    }
    s.finish().await;
}

/// The process's exit code, `None` if the client left first, or why it could not run.
async fn run_process(
    shim: &Shim,
    r: &cri::ExecRequest,
    s: &mut Session,
) -> Result<Option<i32>, String> {
    let nonce = &crate::records::new_id()[..16];
    let pid_file = shim
        .cfg
        .bundle_dir(&r.container_id)
        .join(format!("exec-{nonce}.pid"));
    let console = if r.tty {
        let path = shim
            .cfg
            .state
            .join("consoles")
            .join(format!("{nonce}.sock"));
        Some(ConsoleSocket::bind(&path).map_err(|e| format!("console socket: {e}"))?)
    } else {
        None
    };
    let mut cmd = tokio::process::Command::new(&shim.runtime.binary);
    cmd.arg("--root")
        .arg(&shim.runtime.root)
        .arg("exec")
        .arg("--pid-file")
        .arg(&pid_file);
    if let Some(c) = &console {
        cmd.arg("--tty").arg("--console-socket").arg(c.path());
    }
    cmd.arg(&r.container_id).args(&r.cmd).kill_on_drop(true);
    let piped = |on: bool| if on { Stdio::piped() } else { Stdio::null() };
    if console.is_some() {
        // The process talks to the pty; the runtime's own stderr is its error message.
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
    } else {
        cmd.stdin(piped(r.stdin))
            .stdout(piped(r.stdout))
            .stderr(piped(r.stderr));
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("running {}: {e}", shim.runtime.binary.display()))?;
    let runtime_pid = child.id();
    let proc = Process {
        pid_file: pid_file.clone(),
        runtime_pid,
    };
    let result = match console {
        Some(console) => {
            let mut stderr = child.stderr.take().expect("piped");
            let err_text = tokio::spawn(async move {
                let mut b = Vec::new();
                let _ = (&mut stderr).take(64 * 1024).read_to_end(&mut b).await;
                String::from_utf8_lossy(&b).trim().to_string()
            });
            let waiter = tokio::spawn(async move { child.wait().await });
            with_pty(r, s, &console, waiter, err_text, &proc).await
        }
        None => {
            let pumps = [
                child.stdout.take().map(|o| pump(o, s.out.clone(), 1)),
                child.stderr.take().map(|e| pump(e, s.out.clone(), 2)),
            ];
            let stdin = child.stdin.take().map(|mut w| {
                let (tx, mut rx) = mpsc::channel::<Bytes>(16);
                tokio::spawn(async move {
                    while let Some(b) = rx.recv().await {
                        if w.write_all(&b).await.is_err() {
                            break;
                        }
                    }
                    // Dropping `w` closes the pipe: the process reads EOF.
                });
                tx
            });
            let waiter = tokio::spawn(async move { child.wait().await });
            with_pipes(s, stdin, waiter, pumps, &proc).await
        }
    };
    let _ = std::fs::remove_file(&pid_file);
    result
}

/// What to kill when the client leaves: the process in the container and the runtime.
#[derive(Debug)]
struct Process {
    pid_file: PathBuf,
    runtime_pid: Option<u32>,
}

impl Process {
    /// SIGKILLs the process (once the runtime wrote its pid) and the runtime, which is still
    /// our unreaped child, so its pid cannot have been reused.
    async fn kill(&self, waiter: JoinHandle<std::io::Result<std::process::ExitStatus>>) {
        use nix::sys::signal::{kill, Signal};
        use nix::unistd::Pid;
        if let Some(pid) = read_pid(&self.pid_file) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
        if let Some(pid) = self.runtime_pid {
            if !waiter.is_finished() {
                let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
            }
        }
        let _ = tokio::time::timeout(Duration::from_secs(10), waiter).await;
    }
}

fn read_pid(path: &Path) -> Option<i32> {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|s| s.trim().parse::<i32>().ok())
        .filter(|p| *p > 0)
}

fn code_of(status: std::process::ExitStatus) -> i32 {
    status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(255)
}

/// Forwards everything `r` yields to `channel`.
fn pump<R: AsyncRead + Unpin + Send + 'static>(
    mut r: R,
    out: Outbound,
    channel: u8,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut buf = vec![0u8; READ_SIZE];
        loop {
            match r.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if !out.send(channel, &buf[..n]).await {
                        break;
                    }
                }
            }
        }
    })
}

async fn finish_pumps(pumps: impl IntoIterator<Item = JoinHandle<()>>) {
    for p in pumps {
        let abort = p.abort_handle();
        if tokio::time::timeout(DRAIN_AFTER_EXIT, p).await.is_err() {
            abort.abort();
        }
    }
}

type Waiter = JoinHandle<std::io::Result<std::process::ExitStatus>>;

async fn with_pipes(
    s: &mut Session,
    mut stdin: Option<mpsc::Sender<Bytes>>,
    mut waiter: Waiter,
    pumps: [Option<JoinHandle<()>>; 2],
    proc: &Process,
) -> Result<Option<i32>, String> {
    let exited = loop {
        tokio::select! {
            st = &mut waiter => break Some(st),
            ev = s.recv() => match ev {
                Some(Inbound::Data(0, b)) => {
                    if let Some(tx) = &stdin {
                        // The process not reading its stdin back-pressures the client, but
                        // never hides the process's exit.
                        tokio::select! {
                            sent = tx.send(b) => if sent.is_err() { stdin = None },
                            st = &mut waiter => break Some(st),
                        }
                    }
                }
                Some(Inbound::Close(0)) => stdin = None,
                Some(_) => {}
                None => break None,
            }
        }
    };
    let Some(st) = exited else {
        proc.kill(waiter).await;
        for p in pumps.into_iter().flatten() {
            p.abort();
        }
        return Ok(None);
    };
    drop(stdin);
    finish_pumps(pumps.into_iter().flatten()).await;
    let st = st
        .map_err(|e| format!("waiting for the runtime: {e}"))?
        .map_err(|e| format!("waiting for the runtime: {e}"))?;
    Ok(Some(code_of(st)))
}

async fn with_pty(
    r: &cri::ExecRequest,
    s: &mut Session,
    console: &ConsoleSocket,
    mut waiter: Waiter,
    err_text: JoinHandle<String>,
    proc: &Process,
) -> Result<Option<i32>, String> {
    // The runtime hands the master over once the process exists, or fails first.
    let pty = tokio::select! {
        got = tokio::time::timeout(CONSOLE_TIMEOUT, console.receive_master()) => match got {
            Ok(Ok(p)) => p,
            Ok(Err(e)) => {
                proc.kill(waiter).await;
                return Err(format!("receiving the pty: {e}"));
            }
            Err(_) => {
                proc.kill(waiter).await;
                return Err(format!("the runtime sent no pty within {} s", CONSOLE_TIMEOUT.as_secs()));
            }
        },
        st = &mut waiter => {
            let text = err_text.await.unwrap_or_default();
            let how = match st {
                Ok(Ok(st)) => format!("exit status {}", code_of(st)),
                Ok(Err(e)) => e.to_string(),
                Err(e) => e.to_string(),
            };
            return Err(format!("the runtime's exec failed ({how}): {text}"));
        }
        // Early messages (kubectl's first resize) stay queued for after the handover.
        _ = s.gone() => {
            proc.kill(waiter).await;
            return Ok(None);
        }
    };
    let (mut output, mut input) = (pty.output, pty.input);
    let reader = {
        let out = s.out.clone();
        let stdout = r.stdout;
        tokio::spawn(async move {
            let mut buf = vec![0u8; READ_SIZE];
            loop {
                match output.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if stdout && !out.send(1, &buf[..n]).await {
                            break;
                        }
                    }
                }
            }
        })
    };
    let exited = loop {
        tokio::select! {
            st = &mut waiter => break Some(st),
            ev = s.recv() => match ev {
                Some(Inbound::Data(0, b)) if r.stdin => {
                    tokio::select! {
                        w = input.write_all(&b) => if let Err(e) = w {
                            tracing::debug!(error = %e, "writing to the pty");
                        },
                        st = &mut waiter => break Some(st),
                    }
                }
                Some(Inbound::Data(4, b)) => match TerminalSize::parse(&b) {
                    Some(size) => {
                        if let Err(e) = input.resize(size.width, size.height) {
                            tracing::debug!(error = %e, "resizing the pty");
                        }
                    }
                    None => tracing::debug!("ignoring a malformed resize message"),
                },
                Some(_) => {}
                None => break None,
            }
        }
    };
    let Some(st) = exited else {
        proc.kill(waiter).await;
        reader.abort();
        return Ok(None);
    };
    finish_pumps([reader]).await;
    let _ = err_text.await;
    let st = st
        .map_err(|e| format!("waiting for the runtime: {e}"))?
        .map_err(|e| format!("waiting for the runtime: {e}"))?;
    Ok(Some(code_of(st)))
}
