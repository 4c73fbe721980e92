//! pea-dns: cluster DNS (CoreDNS kubernetes-plugin semantics) for a pea or Kubernetes cluster.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;

#[derive(Debug, Parser)]
#[command(
    name = "pea-dns",
    version,
    about = "Cluster DNS: Services, endpoints and pods by name, everything else forwarded"
)]
struct Args {
    /// Kubeconfig of the cluster; without it the in-cluster config or $KUBECONFIG is used.
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// The cluster's DNS domain.
    #[arg(long, default_value = "cluster.local")]
    cluster_domain: String,
    /// UDP and TCP address to answer on.
    #[arg(long, default_value = "127.0.0.1:53")]
    listen: SocketAddr,
    /// Address of /metrics, /health and /ready ("none" to disable).
    #[arg(long, default_value = "127.0.0.1:9153")]
    http_listen: String,
    /// resolv.conf whose nameservers get every question outside the cluster domain; without it
    /// such questions are refused.
    #[arg(long)]
    upstream_resolv_conf: Option<PathBuf>,
    /// TTL of cluster records in seconds.
    #[arg(long, default_value_t = 5)]
    ttl: u32,
    /// Tokio worker threads (0: one per core).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// UDP sockets sharing the port with SO_REUSEPORT, each read by its own loop (0: as many
    /// as worker threads).
    #[arg(long, default_value_t = 0)]
    udp_sockets: usize,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
                "info,hickory_server=warn,hickory_resolver=warn,hickory_net=warn".into()
            }),
        )
        .with_writer(std::io::stderr)
        // Colours only on a terminal: as a pod, stderr is a container log file.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let http_listen = match args.http_listen.as_str() {
        "none" | "" => None,
        a => Some(
            a.parse()
                .with_context(|| format!("--http-listen {a:?}: not an address"))?,
        ),
    };
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    if args.threads > 0 {
        rt.worker_threads(args.threads);
    }
    let rt = rt.enable_all().build()?;
    rt.block_on(async move {
        let client = match &args.kubeconfig {
            Some(p) => pea_dns::client_from_kubeconfig(p).await?,
            None => kube::Client::try_default()
                .await
                .context("no --kubeconfig and no in-cluster or $KUBECONFIG config")?,
        };
        let config = pea_dns::Config {
            listen: args.listen,
            http_listen,
            cluster_domain: args.cluster_domain,
            ttl: args.ttl,
            upstream_resolv_conf: args.upstream_resolv_conf,
            udp_sockets: match (args.udp_sockets, args.threads) {
                (0, 0) => std::thread::available_parallelism().map_or(1, |n| n.get()),
                (0, t) => t,
                (n, _) => n,
            },
        };
        let mut running = pea_dns::start(config, client).await?;
        tokio::select! {
            r = running.wait() => r.context("dns server stopped")?,
            _ = tokio::signal::ctrl_c() => {}
            _ = async {
                match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                    Ok(mut s) => { s.recv().await; }
                    Err(_) => std::future::pending::<()>().await,
                }
            } => {}
        }
        running.shutdown().await;
        Ok(())
    })
}
