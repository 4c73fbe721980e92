//! pea-kubelet's binary edge as a library: its flags (kubelet's names) and running until told to
//! stop. Shared by the `pea-kubelet` binary and `pea-agent` (a node's programs in one process, as
//! k3s's agent), so both parse the same flags and behave the same.

use std::future::Future;
use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;

use crate::config::Config;

#[derive(Debug, Parser)]
#[command(
    name = "pea-kubelet",
    about = "node agent: runs the API's pods through CRI"
)]
pub struct Args {
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
    #[arg(long, value_parser = crate::config::parse_duration)]
    container_gc_period: Option<std::time::Duration>,
    /// How often unused images are collected (pea extension; kubelet's fixed period is 5m).
    #[arg(long, value_parser = crate::config::parse_duration)]
    image_gc_period: Option<std::time::Duration>,
    /// How often the eviction manager observes its signals (pea extension; kubelet's fixed
    /// housekeeping period is 10s).
    #[arg(long, value_parser = crate::config::parse_duration)]
    eviction_monitoring_period: Option<std::time::Duration>,
}

/// What the flags ask for, checked before anything starts.
#[derive(Debug)]
pub struct Prepared {
    cfg: Config,
    bootstrap_kubeconfig: Option<PathBuf>,
}

/// The kubelet's configuration from its flags and `--config` file.
pub fn prepare(args: Args) -> anyhow::Result<Prepared> {
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
    Ok(Prepared {
        cfg,
        bootstrap_kubeconfig: args.bootstrap_kubeconfig,
    })
}

/// TLS bootstrap when asked, then the kubelet until `stop` completes. Containers keep running
/// after it: a restarted kubelet adopts them from CRI.
pub async fn run(p: Prepared, stop: impl Future<Output = ()>) -> anyhow::Result<()> {
    let Prepared {
        cfg,
        bootstrap_kubeconfig,
    } = p;
    if let Some(b) = bootstrap_kubeconfig {
        crate::bootstrap::Bootstrap {
            bootstrap_kubeconfig: b,
            kubeconfig: cfg.kubeconfig.clone(),
            root_dir: cfg.root_dir.clone(),
            node_name: cfg.node_name.clone(),
            timeout: std::time::Duration::from_secs(3600),
        }
        .ensure()
        .await?;
    }
    let _running = crate::kubelet::start(cfg).await?;
    stop.await;
    tracing::info!("stopping (pods keep running)");
    Ok(())
}
