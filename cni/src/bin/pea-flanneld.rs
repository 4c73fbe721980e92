//! pea-flanneld: the node network agent (flannel-style VXLAN overlay). Thin: flags
//! (`pea_cni::flannel::cli`), logging, signals: SIGTERM/SIGINT stop it, SIGHUP asks for a round.

use anyhow::Context;
use clap::Parser;
use pea_cni::flannel::cli;
use tokio::signal::unix::{signal, SignalKind};

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("PEA_FLANNELD_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let prepared = cli::prepare(cli::Args::parse())?;
    // Current-thread: netlink sockets stay in the namespace the agent was started in.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    rt.block_on(async move {
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        let mut hup = signal(SignalKind::hangup())?;
        let stop = async move {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        };
        let reload = std::sync::Arc::new(tokio::sync::Notify::new());
        let on_hup = reload.clone();
        tokio::spawn(async move {
            while hup.recv().await.is_some() {
                on_hup.notify_one();
            }
        });
        cli::run(prepared, stop, reload).await
    })
}
