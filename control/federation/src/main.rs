//! pea-federation: the federation controller over a federation API (a pea-control instance with
//! the CRDs of `pea federation init`), and `pea-federation agent`, the agent of a Pull member.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Args, Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "pea-federation",
    about = "propagates templates on a federation API to member clusters (Karmada's API)",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    controller: ControllerArgs,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// The agent of a Pull member (Karmada's karmada-agent): runs next to the member, dials out
    /// to the federation API, renews the cluster's lease, applies the Works assigned to it and
    /// reports their status and the cluster's.
    Agent(AgentArgs),
}

#[derive(Args, Debug)]
struct ControllerArgs {
    /// Kubeconfig of the federation API.
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// Seconds between health probes of the members.
    #[arg(long, default_value_t = 2.0)]
    resync_seconds: f64,
    /// Seconds between full passes over every template (watches drive everything else).
    #[arg(long, default_value_t = 60.0)]
    full_resync_seconds: f64,
    /// Seconds a member may be not Ready before its Divided replicas move to healthy members.
    #[arg(long, default_value_t = 300.0)]
    failover_toleration_seconds: f64,
    /// Bound of each request to a member, in seconds.
    #[arg(long, default_value_t = 5.0)]
    member_timeout_seconds: f64,
    /// Seconds between collections of each member's resource summary (its Nodes and Pods, for
    /// division by capacity); Karmada's --cluster-status-update-frequency.
    #[arg(long, default_value_t = 10.0)]
    cluster_status_update_seconds: f64,
    /// Seconds a Pull cluster's lease may go unrenewed before it is not Ready
    /// (ClusterStatusUnknown); Karmada's --cluster-monitor-grace-period.
    #[arg(long, default_value_t = 40.0)]
    cluster_monitor_grace_period_seconds: f64,
    /// Print the CRDs of the federation API (YAML) and exit.
    #[arg(long)]
    print_crds: bool,
}

#[derive(Args, Debug)]
struct AgentArgs {
    /// Kubeconfig of the federation API (karmada-agent's --karmada-kubeconfig).
    #[arg(long, visible_alias = "karmada-kubeconfig")]
    kubeconfig: PathBuf,
    /// Kubeconfig of the member cluster this agent runs next to.
    #[arg(long)]
    cluster_kubeconfig: PathBuf,
    /// The Cluster's name on the federation API.
    #[arg(long)]
    cluster_name: String,
    /// Create the Cluster (syncMode Pull) if it is missing, or set an existing one to Pull;
    /// without it the Cluster must have been joined with `pea federation join NAME --sync-mode
    /// Pull`.
    #[arg(long)]
    register: bool,
    /// The member's API endpoint written into the Cluster on --register.
    #[arg(long)]
    cluster_api_endpoint: Option<String>,
    /// Duration of the cluster's lease in seconds (Karmada's --cluster-lease-duration).
    #[arg(long, default_value_t = 40.0)]
    cluster_lease_duration_seconds: f64,
    /// The lease is renewed every duration × this fraction (Karmada's
    /// --cluster-lease-renew-interval-fraction).
    #[arg(long, default_value_t = 0.25)]
    cluster_lease_renew_interval_fraction: f64,
    /// Seconds between reports of the cluster's Ready condition and resource summary
    /// (Karmada's --cluster-status-update-frequency).
    #[arg(long, default_value_t = 10.0)]
    cluster_status_update_seconds: f64,
    /// Bound of each request to the member, in seconds.
    #[arg(long, default_value_t = 5.0)]
    member_timeout_seconds: f64,
    /// Seconds between full passes over the Works (watches drive everything else).
    #[arg(long, default_value_t = 60.0)]
    resync_seconds: f64,
}

fn secs(what: &str, v: f64) -> anyhow::Result<Duration> {
    Duration::try_from_secs_f64(v).with_context(|| format!("--{what} {v}: not a duration"))
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if cli.controller.print_crds {
        print!("{}", pea_federation::CRDS);
        return Ok(());
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "pea_federation=info".into()),
        )
        .init();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    match cli.command {
        Some(Command::Agent(a)) => rt.block_on(agent(a)),
        None => rt.block_on(controller(cli.controller)),
    }
}

async fn controller(args: ControllerArgs) -> anyhow::Result<()> {
    let Some(kubeconfig) = args.kubeconfig else {
        bail!("--kubeconfig (of the federation API) is required");
    };
    let config = pea_federation::Config {
        resync: secs("resync-seconds", args.resync_seconds)?,
        full_resync: secs("full-resync-seconds", args.full_resync_seconds)?,
        failover_toleration: secs(
            "failover-toleration-seconds",
            args.failover_toleration_seconds,
        )?,
        member_timeout: secs("member-timeout-seconds", args.member_timeout_seconds)?,
        summary_interval: secs(
            "cluster-status-update-seconds",
            args.cluster_status_update_seconds,
        )?,
        lease_grace: secs(
            "cluster-monitor-grace-period-seconds",
            args.cluster_monitor_grace_period_seconds,
        )?,
    };
    let client = pea_federation::client_from_kubeconfig(&kubeconfig).await?;
    tokio::select! {
        r = pea_federation::run(client, config) => r.map_err(anyhow::Error::from),
        _ = tokio::signal::ctrl_c() => Ok(()),
    }
}

async fn agent(a: AgentArgs) -> anyhow::Result<()> {
    let fraction = a.cluster_lease_renew_interval_fraction;
    if !(fraction > 0.0 && fraction <= 1.0) {
        bail!("--cluster-lease-renew-interval-fraction {fraction}: must be in (0, 1]");
    }
    let config = pea_federation::agent::AgentConfig {
        cluster_name: a.cluster_name.clone(),
        register: a.register,
        endpoint: a.cluster_api_endpoint,
        lease_duration: secs(
            "cluster-lease-duration-seconds",
            a.cluster_lease_duration_seconds,
        )?,
        renew_fraction: fraction,
        status_interval: secs(
            "cluster-status-update-seconds",
            a.cluster_status_update_seconds,
        )?,
        member_timeout: secs("member-timeout-seconds", a.member_timeout_seconds)?,
        resync: secs("resync-seconds", a.resync_seconds)?,
    };
    let fed = pea_federation::client_from_kubeconfig(&a.kubeconfig).await?;
    let (member, member_watch) = pea_federation::member_clients_from_kubeconfig(
        &a.cluster_kubeconfig,
        config.member_timeout,
    )
    .await?;
    let what = a.kubeconfig.display().to_string();
    tokio::select! {
        r = pea_federation::agent::run(fed, &what, member, member_watch, config) => r.map_err(anyhow::Error::from),
        _ = tokio::signal::ctrl_c() => Ok(()),
    }
}
