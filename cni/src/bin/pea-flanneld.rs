//! pea-flanneld: the node network agent (flannel-style VXLAN overlay). Thin: parses arguments,
//! starts the agent, reconciles every resync period (and on every Node change in kube mode) until
//! SIGTERM/SIGINT. On exit the device and routes stay, so restarting the agent does not disturb
//! running pods.

use std::{path::PathBuf, time::Duration};

use anyhow::Context;
use clap::Parser;
use pea_cni::flannel::{
    agent::{Agent, AgentError, Report},
    config::{AgentConfig, SubnetSource},
    metrics::Metrics,
};
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
    /// Take the subnet from this node's Node `spec.podCIDR` and learn the other nodes from the
    /// cluster API (overrides the config's subnetSource), like flannel's flag.
    #[arg(long)]
    kube_subnet_mgr: bool,
    /// The kubeconfig for --kube-subnet-mgr (default: in-cluster, then $KUBECONFIG). Use the
    /// node's own identity (system:node:<name>): it only needs to patch its own Node.
    #[arg(long, requires = "kube_subnet_mgr")]
    kubeconfig_file: Option<PathBuf>,
    /// This node's name (default: $NODE_NAME, then the config's nodeName).
    #[arg(long)]
    node_name: Option<String>,
    /// Set up, reconcile once and exit.
    #[arg(long)]
    once: bool,
    /// Where /metrics and /healthz are served ("none": not served).
    #[arg(long, default_value = "none")]
    metrics_listen: String,
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
    let mut cfg = AgentConfig::read(&args.config)?;
    if let Some(name) = args.node_name.or_else(|| std::env::var("NODE_NAME").ok()) {
        cfg.node_name = name;
    }
    if args.kube_subnet_mgr {
        cfg.subnet_source = Some(SubnetSource::Kubernetes {
            kubeconfig: args.kubeconfig_file,
        });
    }
    cfg.validate()?;
    let metrics_addr: Option<std::net::SocketAddr> = match args.metrics_listen.as_str() {
        "none" | "" => None,
        a => Some(
            a.parse()
                .with_context(|| format!("--metrics-listen {a:?}: not an address"))?,
        ),
    };
    let metrics = std::sync::Arc::new(Metrics::default());
    // Current-thread: netlink sockets stay in the namespace the agent was started in.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    rt.block_on(async move {
        let resync = Duration::from_millis(cfg.resync_millis);
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        let mut hup = signal(SignalKind::hangup())?;
        // Start may wait (for the Node's podCIDR, for the API server): stay stoppable meanwhile.
        let agent = tokio::select! {
            a = Agent::start(cfg) => a?,
            _ = term.recv() => return Ok(()),
            _ = int.recv() => return Ok(()),
        };
        // A failed first round (a peer that cannot be programmed, an unreadable registry) does
        // not stop the agent: the next period retries. `--once` reports it in its exit status.
        if let Some(addr) = metrics_addr {
            pea_cni::flannel::metrics::serve(addr, metrics.clone())
                .await
                .with_context(|| format!("--metrics-listen {addr}"))?;
        }
        let first = timed(&agent, &metrics).await;
        match &first {
            Ok(report) => tracing::info!(?report, "first reconcile"),
            Err(e) => tracing::error!("reconcile failed: {e:#}"),
        }
        if args.once {
            let report = first?;
            anyhow::ensure!(
                report.failed.is_empty(),
                "reconcile failed for: {}",
                report.failed.join("; ")
            );
            return Ok(());
        }
        let mut tick = tokio::time::interval(resync);
        loop {
            tokio::select! {
                _ = term.recv() => break,
                _ = int.recv() => break,
                _ = hup.recv() => {}
                _ = tick.tick() => {}
                _ = agent.changed() => {}
            }
            match timed(&agent, &metrics).await {
                Ok(r) if !r.withdrawn.is_empty() || !r.failed.is_empty() => {
                    tracing::info!(?r, "reconciled")
                }
                Ok(_) => {}
                // A failed round is retried next period; the agent keeps running.
                Err(e) => tracing::error!("reconcile failed: {e:#}"),
            }
        }
        tracing::info!("stopping; overlay left in place");
        Ok(())
    })
}

/// One reconcile round, counted in the metrics.
async fn timed(agent: &Agent, metrics: &Metrics) -> Result<Report, AgentError> {
    let started = std::time::Instant::now();
    let result = agent.reconcile().await;
    let (failed, peers) = match &result {
        Ok(r) => (!r.failed.is_empty(), Some(r.peers.len())),
        Err(_) => (true, None),
    };
    metrics.observe(started.elapsed(), failed, peers);
    result
}
