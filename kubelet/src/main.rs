//! Thin binary edge of pea-kubelet: flags (kubelet's names) + config file → run until SIGTERM.

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use pea_kubelet::config::Config;

#[derive(Debug, Parser)]
#[command(
    name = "pea-kubelet",
    about = "node agent: runs the API's pods through CRI"
)]
struct Args {
    /// KubeletConfiguration file (kubelet.config.k8s.io/v1beta1, YAML or JSON).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Credentials of this node (system:node:NAME) for the API server.
    #[arg(long)]
    kubeconfig: PathBuf,
    /// Bootstrap credentials (a bootstrap token): when --kubeconfig does not exist, request a
    /// client certificate with them (TLS bootstrap) and write --kubeconfig.
    #[arg(long)]
    bootstrap_kubeconfig: Option<PathBuf>,
    /// The node's name (default: the hostname).
    #[arg(long)]
    hostname_override: Option<String>,
    /// The node's InternalIP (default: the address that routes to the API server).
    #[arg(long)]
    node_ip: Option<std::net::IpAddr>,
    /// Where pod volumes and files live.
    #[arg(long)]
    root_dir: Option<PathBuf>,
    /// The CRI endpoint, e.g. unix:///run/pea/pea-shim.sock (overrides the config file).
    #[arg(long)]
    container_runtime_endpoint: Option<String>,
    /// How often dead containers are collected (pea extension; kubelet's fixed period is 1m).
    #[arg(long, value_parser = pea_kubelet::config::parse_duration)]
    container_gc_period: Option<std::time::Duration>,
    /// How often unused images are collected (pea extension; kubelet's fixed period is 5m).
    #[arg(long, value_parser = pea_kubelet::config::parse_duration)]
    image_gc_period: Option<std::time::Duration>,
    /// How often the eviction manager observes its signals (pea extension; kubelet's fixed
    /// housekeeping period is 10s).
    #[arg(long, value_parser = pea_kubelet::config::parse_duration)]
    eviction_monitoring_period: Option<std::time::Duration>,
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,libcgroups=error".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let name = match args.hostname_override {
        Some(n) => n,
        None => nix::unistd::gethostname()
            .context("reading the hostname")?
            .to_string_lossy()
            .to_lowercase(),
    };
    let mut cfg = Config::defaults(&name, &args.kubeconfig);
    if let Some(p) = &args.config {
        cfg.apply_file(p)?;
    }
    cfg.node_ip = args.node_ip;
    if let Some(r) = args.root_dir {
        cfg.root_dir = r;
    }
    if let Some(e) = args.container_runtime_endpoint {
        cfg.container_runtime_endpoint = e;
    }
    if let Some(p) = args.container_gc_period {
        anyhow::ensure!(!p.is_zero(), "--container-gc-period must be above zero");
        cfg.gc_periods.containers = p;
    }
    if let Some(p) = args.image_gc_period {
        anyhow::ensure!(!p.is_zero(), "--image-gc-period must be above zero");
        cfg.gc_periods.images = p;
    }
    if let Some(p) = args.eviction_monitoring_period {
        anyhow::ensure!(
            !p.is_zero(),
            "--eviction-monitoring-period must be above zero"
        );
        cfg.eviction_monitoring_period = p;
    }
    cfg.validate()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async move {
        if let Some(b) = args.bootstrap_kubeconfig {
            pea_kubelet::bootstrap::Bootstrap {
                bootstrap_kubeconfig: b,
                kubeconfig: cfg.kubeconfig.clone(),
                root_dir: cfg.root_dir.clone(),
                node_name: cfg.node_name.clone(),
                timeout: std::time::Duration::from_secs(3600),
            }
            .ensure()
            .await?;
        }
        let _running = pea_kubelet::kubelet::start(cfg).await?;
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        // Containers keep running: a restarted kubelet adopts them from CRI.
        tracing::info!("stopping (pods keep running)");
        anyhow::Ok(())
    })
}
