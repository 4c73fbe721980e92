//! pea-ingress: serves the cluster's Ingresses of one IngressClass over HTTP and HTTPS.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;

#[derive(Debug, Parser)]
#[command(
    name = "pea-ingress",
    version,
    about = "Ingress controller (controller name pea.dev/ingress)"
)]
struct Args {
    /// Kubeconfig of the cluster; without it the in-cluster config or $KUBECONFIG is used.
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// Plain HTTP address ("none" to disable).
    #[arg(long, default_value = "127.0.0.1:80")]
    http_listen: String,
    /// HTTPS address ("none" to disable).
    #[arg(long, default_value = "127.0.0.1:443")]
    https_listen: String,
    /// Address of /metrics and /healthz ("none" to disable), ingress-nginx's port.
    #[arg(long, default_value = "127.0.0.1:10254")]
    metrics_listen: String,
    /// The IngressClass served; its spec.controller must be pea.dev/ingress.
    #[arg(long, default_value = "pea")]
    ingress_class: String,
    /// Address written to status.loadBalancer of served Ingresses (IP or hostname).
    #[arg(long)]
    publish_address: Option<String>,
    /// Tokio worker threads (0: one per core).
    #[arg(long, default_value_t = 0)]
    threads: usize,
}

fn addr(flag: &str, v: &str) -> anyhow::Result<Option<SocketAddr>> {
    match v {
        "none" | "" => Ok(None),
        a => {
            Ok(Some(a.parse().with_context(|| {
                format!("{flag} {a:?}: not an address")
            })?))
        }
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        // Colours only on a terminal: as a pod, stderr is a container log file.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let config = pea_ingress::Config {
        http_listen: addr("--http-listen", &args.http_listen)?,
        https_listen: addr("--https-listen", &args.https_listen)?,
        metrics_listen: addr("--metrics-listen", &args.metrics_listen)?,
        ingress_class: args.ingress_class,
        publish_address: args.publish_address,
    };
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    if args.threads > 0 {
        rt.worker_threads(args.threads);
    }
    rt.enable_all().build()?.block_on(async move {
        let client = match &args.kubeconfig {
            Some(p) => pea_ingress::client_from_kubeconfig(p).await?,
            None => kube::Client::try_default()
                .await
                .context("no --kubeconfig and no in-cluster or $KUBECONFIG config")?,
        };
        let running = pea_ingress::start(config, client).await?;
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        running.shutdown();
        Ok(())
    })
}
