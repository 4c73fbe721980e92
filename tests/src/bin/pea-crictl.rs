//! pea-crictl: a small crictl work-alike over any CRI v1 socket (pea-shim, containerd), for
//! trying pea-shim by hand. Pod and container configs are crictl's JSON files (CRI field names).
//!
//! ```text
//! pea-crictl [--runtime-endpoint unix:///run/pea/pea-shim.sock] version|info|pods|ps|images
//! pea-crictl pull IMAGE | rmi IMAGE | runp POD.json | create POD_ID CTR.json POD.json
//! pea-crictl start|stop|rm|inspect ID | stopp|rmp|inspectp POD_ID | exec [-i] [-t] ID CMD... | logs ID
//! ```
//!
//! `exec` without `-i`/`-t` is ExecSync; with them it is CRI Exec and a WebSocket to the
//! returned URL (v5.channel.k8s.io, as kubectl speaks it), so it must run where that URL's
//! address is reachable (the shim's network namespace for a loopback stream address).

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use k8s_cri::v1 as cri;
use pea_tests::cri_client::connect;

#[derive(Debug, Parser)]
#[command(name = "pea-crictl", about = "a small crictl for CRI v1 sockets")]
struct Args {
    #[arg(long, short = 'r', default_value = "unix:///run/pea/pea-shim.sock")]
    runtime_endpoint: String,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    Version,
    Info,
    Pods,
    Ps {
        #[arg(long, short = 'a')]
        all: bool,
    },
    Images,
    Pull {
        image: String,
    },
    Rmi {
        image: String,
    },
    Runp {
        pod: PathBuf,
    },
    Create {
        pod_id: String,
        container: PathBuf,
        pod: PathBuf,
    },
    Start {
        id: String,
    },
    Stop {
        id: String,
        #[arg(long, default_value_t = 10)]
        timeout: i64,
    },
    Rm {
        id: String,
    },
    Inspect {
        id: String,
    },
    Stopp {
        id: String,
    },
    Rmp {
        id: String,
    },
    Inspectp {
        id: String,
    },
    Exec {
        /// Stream stdin to the process (CRI Exec instead of ExecSync).
        #[arg(short, long)]
        interactive: bool,
        /// Allocate a terminal (CRI Exec with tty; stderr goes to the terminal too).
        #[arg(short, long)]
        tty: bool,
        id: String,
        #[arg(long, default_value_t = 0)]
        timeout: i64,
        #[arg(trailing_var_arg = true, required = true)]
        cmd: Vec<String>,
    },
    Logs {
        id: String,
    },
}

/// Reads a crictl-style JSON config. k8s-cri's serde types require every field, while crictl's
/// files name only what they set: the file is merged over a template with every field (and the
/// nested structs people set) at its default.
fn read<T: serde::de::DeserializeOwned>(p: &PathBuf, template: serde_json::Value) -> Result<T> {
    let user: serde_json::Value = serde_json::from_slice(
        &std::fs::read(p).with_context(|| format!("reading {}", p.display()))?,
    )
    .with_context(|| format!("{}: not JSON", p.display()))?;
    let mut merged = template;
    merge(&mut merged, user);
    serde_json::from_value(merged).with_context(|| format!("{}: not a CRI config", p.display()))
}

fn merge(base: &mut serde_json::Value, over: serde_json::Value) {
    match (base, over) {
        (serde_json::Value::Object(b), serde_json::Value::Object(o)) => {
            for (k, v) in o {
                match b.get_mut(&k) {
                    Some(slot) if !slot.is_null() => merge(slot, v),
                    _ => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (slot, v) => *slot = v,
    }
}

fn pod_template() -> serde_json::Value {
    serde_json::to_value(cri::PodSandboxConfig {
        metadata: Some(Default::default()),
        dns_config: Some(Default::default()),
        linux: Some(cri::LinuxPodSandboxConfig {
            security_context: Some(cri::LinuxSandboxSecurityContext {
                namespace_options: Some(Default::default()),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    })
    .expect("json")
}

fn container_template() -> serde_json::Value {
    serde_json::to_value(cri::ContainerConfig {
        metadata: Some(Default::default()),
        image: Some(Default::default()),
        linux: Some(cri::LinuxContainerConfig {
            resources: Some(Default::default()),
            security_context: Some(cri::LinuxContainerSecurityContext {
                namespace_options: Some(Default::default()),
                capabilities: Some(Default::default()),
                ..Default::default()
            }),
        }),
        ..Default::default()
    })
    .expect("json")
}

fn show<T: serde::Serialize>(v: &T) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

fn image(i: &str) -> Option<cri::ImageSpec> {
    Some(cri::ImageSpec {
        image: i.into(),
        ..Default::default()
    })
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let a = Args::parse();
    let mut c = connect(std::path::Path::new(&a.runtime_endpoint)).await?;
    let r = &mut c.runtime;
    let i = &mut c.images;
    match a.cmd {
        Cmd::Version => show(
            &r.version(cri::VersionRequest::default())
                .await?
                .into_inner(),
        )?,
        Cmd::Info => show(
            &r.status(cri::StatusRequest { verbose: true })
                .await?
                .into_inner(),
        )?,
        Cmd::Pods => {
            for p in r
                .list_pod_sandbox(cri::ListPodSandboxRequest::default())
                .await?
                .into_inner()
                .items
            {
                let m = p.metadata.unwrap_or_default();
                let state = cri::PodSandboxState::try_from(p.state)
                    .map(|s| s.as_str_name())
                    .unwrap_or("?");
                println!("{:.13}  {:<24} {:<16} {state}", p.id, m.name, m.namespace);
            }
        }
        Cmd::Ps { all } => {
            for ct in r
                .list_containers(cri::ListContainersRequest::default())
                .await?
                .into_inner()
                .containers
            {
                if !all && ct.state != cri::ContainerState::ContainerRunning as i32 {
                    continue;
                }
                let m = ct.metadata.unwrap_or_default();
                let state = cri::ContainerState::try_from(ct.state)
                    .map(|s| s.as_str_name())
                    .unwrap_or("?");
                println!(
                    "{:.13}  {:<20} {state:<18} pod {:.13}",
                    ct.id, m.name, ct.pod_sandbox_id
                );
            }
        }
        Cmd::Images => {
            for im in i
                .list_images(cri::ListImagesRequest::default())
                .await?
                .into_inner()
                .images
            {
                println!(
                    "{:<60} {:.19}  {} bytes",
                    im.repo_tags.join(","),
                    im.id,
                    im.size
                );
            }
        }
        Cmd::Pull { image: name } => {
            let resp = i
                .pull_image(cri::PullImageRequest {
                    image: image(&name),
                    ..Default::default()
                })
                .await?;
            println!("Image is up to date for {}", resp.into_inner().image_ref);
        }
        Cmd::Rmi { image: name } => {
            i.remove_image(cri::RemoveImageRequest {
                image: image(&name),
            })
            .await?;
            println!("Deleted: {name}");
        }
        Cmd::Runp { pod } => {
            let config = read(&pod, pod_template())?;
            let id = r
                .run_pod_sandbox(cri::RunPodSandboxRequest {
                    config: Some(config),
                    runtime_handler: String::new(),
                })
                .await?
                .into_inner()
                .pod_sandbox_id;
            println!("{id}");
        }
        Cmd::Create {
            pod_id,
            container,
            pod,
        } => {
            let id = r
                .create_container(cri::CreateContainerRequest {
                    pod_sandbox_id: pod_id,
                    config: Some(read(&container, container_template())?),
                    sandbox_config: Some(read(&pod, pod_template())?),
                })
                .await?
                .into_inner()
                .container_id;
            println!("{id}");
        }
        Cmd::Start { id } => {
            r.start_container(cri::StartContainerRequest {
                container_id: id.clone(),
            })
            .await?;
            println!("{id}");
        }
        Cmd::Stop { id, timeout } => {
            r.stop_container(cri::StopContainerRequest {
                container_id: id.clone(),
                timeout,
            })
            .await?;
            println!("{id}");
        }
        Cmd::Rm { id } => {
            r.remove_container(cri::RemoveContainerRequest {
                container_id: id.clone(),
            })
            .await?;
            println!("{id}");
        }
        Cmd::Inspect { id } => show(
            &r.container_status(cri::ContainerStatusRequest {
                container_id: id,
                verbose: true,
            })
            .await?
            .into_inner(),
        )?,
        Cmd::Stopp { id } => {
            r.stop_pod_sandbox(cri::StopPodSandboxRequest {
                pod_sandbox_id: id.clone(),
            })
            .await?;
            println!("Stopped sandbox {id}");
        }
        Cmd::Rmp { id } => {
            r.remove_pod_sandbox(cri::RemovePodSandboxRequest {
                pod_sandbox_id: id.clone(),
            })
            .await?;
            println!("Removed sandbox {id}");
        }
        Cmd::Inspectp { id } => show(
            &r.pod_sandbox_status(cri::PodSandboxStatusRequest {
                pod_sandbox_id: id,
                verbose: true,
            })
            .await?
            .into_inner(),
        )?,
        Cmd::Exec {
            interactive,
            tty,
            id,
            cmd,
            ..
        } if interactive || tty => {
            let url = r
                .exec(cri::ExecRequest {
                    container_id: id,
                    cmd,
                    tty,
                    stdin: interactive,
                    stdout: true,
                    stderr: !tty,
                })
                .await?
                .into_inner()
                .url;
            std::process::exit(stream_exec(&url, interactive, tty).await?);
        }
        Cmd::Exec {
            id, timeout, cmd, ..
        } => {
            let out = r
                .exec_sync(cri::ExecSyncRequest {
                    container_id: id,
                    cmd,
                    timeout,
                })
                .await?
                .into_inner();
            use std::io::Write;
            std::io::stdout().write_all(&out.stdout)?;
            std::io::stderr().write_all(&out.stderr)?;
            std::process::exit(out.exit_code);
        }
        Cmd::Logs { id } => {
            let st = r
                .container_status(cri::ContainerStatusRequest {
                    container_id: id.clone(),
                    verbose: false,
                })
                .await?
                .into_inner()
                .status
                .context("no status")?;
            if st.log_path.is_empty() {
                bail!("container {id} has no log path");
            }
            // CRI log lines: "<time> <stream> <F|P> <text>"; partial lines join the next.
            let text = std::fs::read_to_string(&st.log_path)?;
            for l in text.lines() {
                let mut parts = l.splitn(4, ' ');
                let (_t, stream, tag, msg) = (
                    parts.next(),
                    parts.next(),
                    parts.next(),
                    parts.next().unwrap_or(""),
                );
                let newline = if tag == Some("P") { "" } else { "\n" };
                if stream == Some("stderr") {
                    eprint!("{msg}{newline}");
                } else {
                    print!("{msg}{newline}");
                }
            }
        }
    }
    Ok(())
}

/// Runs an exec stream at `url` on this terminal; returns the process's exit code.
async fn stream_exec(url: &str, stdin: bool, tty: bool) -> Result<i32> {
    use futures_util::{SinkExt, StreamExt};
    use std::io::Write;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    use tokio_tungstenite::tungstenite::Message;

    let rest = url
        .strip_prefix("http://")
        .with_context(|| format!("unexpected stream URL {url}"))?;
    let addr = &rest[..rest.find('/').unwrap_or(rest.len())];
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .with_context(|| format!("connecting to the stream server {addr}"))?;
    let mut req = format!("ws://{rest}").into_client_request()?;
    req.headers_mut().insert(
        "sec-websocket-protocol",
        "v5.channel.k8s.io,v4.channel.k8s.io".parse()?,
    );
    let (ws, resp) = tokio_tungstenite::client_async(req, tcp)
        .await
        .context("WebSocket upgrade")?;
    let v5 = resp
        .headers()
        .get("sec-websocket-protocol")
        .is_some_and(|p| p == "v5.channel.k8s.io");
    let (mut tx, mut rx) = ws.split();
    let _raw = tty.then(RawTerminal::enable).flatten();
    if tty {
        // `stty size` prints "ROWS COLS" for the terminal on its stdin.
        if let Ok(o) = std::process::Command::new("stty").arg("size").output() {
            let text = String::from_utf8_lossy(&o.stdout).to_string();
            if let Some((rows, cols)) = text.trim().split_once(' ') {
                let size = format!(r#"{{"Width":{cols},"Height":{rows}}}"#);
                let mut m = vec![4u8];
                m.extend_from_slice(size.as_bytes());
                tx.send(Message::Binary(m.into())).await?;
            }
        }
    }
    let (in_tx, mut in_rx) = tokio::sync::mpsc::channel::<Vec<u8>>(4);
    if stdin {
        // A plain thread: reading a terminal blocks, and the process exits when done.
        std::thread::spawn(move || {
            use std::io::Read;
            let mut input = std::io::stdin();
            let mut buf = vec![0u8; 16 * 1024];
            loop {
                let n = input.read(&mut buf).unwrap_or(0);
                let mut m = vec![0u8];
                m.extend_from_slice(&buf[..n]);
                let msg = if n == 0 { vec![255, 0] } else { m };
                if in_tx.blocking_send(msg).is_err() || n == 0 {
                    break;
                }
            }
        });
    } else {
        drop(in_tx);
    }
    let mut status = Vec::new();
    let (mut out, mut err) = (std::io::stdout(), std::io::stderr());
    loop {
        tokio::select! {
            m = in_rx.recv(), if stdin => match m {
                Some(m) if m[0] == 255 && !v5 => {}
                Some(m) => tx.send(Message::Binary(m.into())).await?,
                None => {}
            },
            m = rx.next() => match m {
                Some(Ok(Message::Binary(b))) if !b.is_empty() => match b[0] {
                    1 => { out.write_all(&b[1..])?; out.flush()?; }
                    2 => { err.write_all(&b[1..])?; err.flush()?; }
                    3 => status.extend_from_slice(&b[1..]),
                    _ => {}
                },
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                Some(Ok(_)) => {}
            }
        }
    }
    drop(_raw);
    if status.is_empty() {
        return Ok(0);
    }
    let st: serde_json::Value = serde_json::from_slice(&status).context("error channel")?;
    if st["status"] == "Success" {
        return Ok(0);
    }
    if let Some(code) = st["details"]["causes"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["reason"] == "ExitCode"))
        .and_then(|c| c["message"].as_str()?.parse().ok())
    {
        return Ok(code);
    }
    eprintln!(
        "exec failed: {}",
        st["message"].as_str().unwrap_or("unknown error")
    );
    Ok(1)
}

/// Puts this terminal in raw mode (when stdin is one) and restores it on drop.
#[derive(Debug)]
struct RawTerminal(nix::sys::termios::Termios);

impl RawTerminal {
    fn enable() -> Option<Self> {
        use nix::sys::termios::{cfmakeraw, tcgetattr, tcsetattr, SetArg};
        let stdin = std::io::stdin();
        let saved = tcgetattr(&stdin).ok()?;
        let mut raw = saved.clone();
        cfmakeraw(&mut raw);
        tcsetattr(&stdin, SetArg::TCSANOW, &raw).ok()?;
        Some(Self(saved))
    }
}

impl Drop for RawTerminal {
    fn drop(&mut self) {
        let _ = nix::sys::termios::tcsetattr(
            std::io::stdin(),
            nix::sys::termios::SetArg::TCSANOW,
            &self.0,
        );
    }
}
