//! pea-flanneld's binary edge as a library: its flags and the reconcile loop, until told to stop.
//! Shared by the `pea-flanneld` binary and `pea-agent` (a node's programs in one process, as
//! k3s's agent embeds flannel), so both parse the same flags and behave the same. On exit the
//! device and routes stay, so restarting the agent does not disturb running pods.

use std::{future::Future, net::SocketAddr, path::PathBuf, sync::Arc, time::Duration};

use anyhow::Context;
use clap::Parser;

use super::{
    agent::{Agent, AgentError, Report},
    config::{AgentConfig, SubnetSource},
    metrics::Metrics,
};

#[derive(Debug, Parser)]
#[command(
    name = "pea-flanneld",
    about = "flannel-style VXLAN node network agent"
)]
pub struct Args {
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
    /// The interface for inter-node traffic, by name or by one of its IPv4 addresses
    /// (flannel's flag; overrides the config's iface). Default: the default route's interface.
    #[arg(long)]
    iface: Option<String>,
    /// The address other nodes send this node's overlay traffic to (flannel's flag; overrides
    /// the config's publicIP). Default: the address --iface gave, else the uplink's first.
    #[arg(long)]
    public_ip: Option<std::net::Ipv4Addr>,
    /// Set up, reconcile once and exit.
    #[arg(long)]
    once: bool,
    /// Where /metrics and /healthz are served ("none": not served).
    #[arg(long, default_value = "none")]
    metrics_listen: String,
}

/// What the flags ask for, checked before anything starts.
#[derive(Debug)]
pub struct Prepared {
    cfg: AgentConfig,
    once: bool,
    metrics_addr: Option<SocketAddr>,
}

/// The agent's configuration from its flags and `--config` file.
pub fn prepare(args: Args) -> anyhow::Result<Prepared> {
    let mut cfg = AgentConfig::read(&args.config)?;
    if let Some(name) = args.node_name.or_else(|| std::env::var("NODE_NAME").ok()) {
        cfg.node_name = name;
    }
    if args.iface.is_some() {
        cfg.iface = args.iface;
    }
    if args.public_ip.is_some() {
        cfg.public_ip = args.public_ip;
    }
    if args.kube_subnet_mgr {
        cfg.subnet_source = Some(SubnetSource::Kubernetes {
            kubeconfig: args.kubeconfig_file,
        });
    }
    cfg.validate()?;
    let metrics_addr = match args.metrics_listen.as_str() {
        "none" | "" => None,
        a => Some(
            a.parse()
                .with_context(|| format!("--metrics-listen {a:?}: not an address"))?,
        ),
    };
    Ok(Prepared {
        cfg,
        once: args.once,
        metrics_addr,
    })
}

/// Sets up the overlay and reconciles every resync period (and on every Node change in kube
/// mode) until `stop` completes; with `--once`, one round whose failures are the result.
/// `reload` (SIGHUP for the binary) asks for a round now.
pub async fn run(
    p: Prepared,
    stop: impl Future<Output = ()>,
    reload: Arc<tokio::sync::Notify>,
) -> anyhow::Result<()> {
    let Prepared {
        cfg,
        once,
        metrics_addr,
    } = p;
    let metrics = Arc::new(Metrics::default());
    let resync = Duration::from_millis(cfg.resync_millis);
    tokio::pin!(stop);
    // Start may wait (for the Node's podCIDR, for the API server): stay stoppable meanwhile.
    let agent = tokio::select! {
        a = Agent::start(cfg) => a?,
        _ = &mut stop => return Ok(()),
    };
    // A failed first round (a peer that cannot be programmed, an unreadable registry) does
    // not stop the agent: the next period retries. `--once` reports it in its exit status.
    if let Some(addr) = metrics_addr {
        super::metrics::serve(addr, metrics.clone())
            .await
            .with_context(|| format!("--metrics-listen {addr}"))?;
    }
    let first = timed(&agent, &metrics).await;
    match &first {
        Ok(report) => tracing::info!(?report, "first reconcile"),
        Err(e) => tracing::error!("reconcile failed: {e:#}"),
    }
    if once {
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
            _ = &mut stop => break,
            _ = reload.notified() => {}
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
