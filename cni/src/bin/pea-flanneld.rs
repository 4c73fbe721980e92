//! pea-flanneld: the node network agent (flannel-style VXLAN overlay). Thin: parses arguments,
//! starts the agent, reconciles every resync period until SIGTERM/SIGINT. On exit the device and
//! routes stay, so restarting the agent does not disturb running pods.

use std::{path::PathBuf, time::Duration};

use anyhow::Context;
use clap::Parser;
use pea_cni::flannel::{agent::Agent, config::AgentConfig};
use tokio::signal::unix::{signal, SignalKind};

#[derive(Debug, Parser)]
#[command(
    name = "pea-flanneld",
    about = "flannel-style VXLAN node network agent"
)]
struct Args {
    /// The agent's JSON configuration.
    #[arg(long)]
    config: PathBuf,
    /// Set up, reconcile once and exit.
    #[arg(long)]
    once: bool,
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("PEA_FLANNELD_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let cfg = AgentConfig::load(&args.config)?;
    // Current-thread: netlink sockets stay in the namespace the agent was started in.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    rt.block_on(async move {
        let resync = Duration::from_millis(cfg.resync_millis);
        let agent = Agent::start(cfg).await?;
        let report = agent.reconcile().await?;
        tracing::info!(?report, "first reconcile");
        if args.once {
            return Ok(());
        }
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        let mut hup = signal(SignalKind::hangup())?;
        let mut tick = tokio::time::interval(resync);
        loop {
            tokio::select! {
                _ = term.recv() => break,
                _ = int.recv() => break,
                _ = hup.recv() => {}
                _ = tick.tick() => {}
            }
            match agent.reconcile().await {
                Ok(r) if !r.withdrawn.is_empty() => tracing::info!(?r, "reconciled"),
                Ok(_) => {}
                // A failed round is retried next period; the agent keeps running.
                Err(e) => tracing::error!("reconcile failed: {e:#}"),
            }
        }
        tracing::info!("stopping; overlay left in place");
        Ok(())
    })
}
