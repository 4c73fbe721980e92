//! pea-federation: the federation controller over a federation API (a pea-control instance with
//! the CRDs of `pea federation init`).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;

#[derive(Parser, Debug)]
#[command(
    name = "pea-federation",
    about = "propagates templates on a federation API to member clusters (Karmada's API)"
)]
struct Args {
    /// Kubeconfig of the federation API.
    #[arg(long)]
    kubeconfig: PathBuf,
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
    /// Print the CRDs of the federation API (YAML) and exit.
    #[arg(long)]
    print_crds: bool,
}

fn secs(what: &str, v: f64) -> anyhow::Result<Duration> {
    Duration::try_from_secs_f64(v).with_context(|| format!("--{what} {v}: not a duration"))
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.print_crds {
        print!("{}", pea_federation::CRDS);
        return Ok(());
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "pea_federation=info".into()),
        )
        .init();
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
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async {
        let client = pea_federation::client_from_kubeconfig(&args.kubeconfig).await?;
        tokio::select! {
            r = pea_federation::run(client, config) => r.map_err(anyhow::Error::from),
            _ = tokio::signal::ctrl_c() => Ok(()),
        }
    })
}
