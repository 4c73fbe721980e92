//! pea-agent: a node's programs in one process (see the library's doc). Thin: flags, logging,
//! signals — SIGTERM/SIGINT stop every component, SIGHUP asks pea-flanneld for a round.

use std::io::IsTerminal;
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use tokio::signal::unix::{signal, SignalKind};

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,libcgroups=error".into()),
        )
        .with_writer(std::io::stderr)
        // Colours only on a terminal: `pea up` and systemd write the log to a file.
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let plan = pea_agent::plan(&pea_agent::Args::parse())?;
    // Two workers, as pea-kubelet alone: the components are mostly waiting on the API and CRI.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(async move {
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        let mut hup = signal(SignalKind::hangup())?;
        let stop = async move {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
            tracing::info!("stopping");
        };
        let reload = Arc::new(tokio::sync::Notify::new());
        let on_hup = reload.clone();
        tokio::spawn(async move {
            while hup.recv().await.is_some() {
                on_hup.notify_one();
            }
        });
        pea_agent::run(plan, stop, reload).await
    })
}
