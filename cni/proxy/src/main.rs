//! pea-proxy: kube-proxy's nftables mode. Runs inside the node's network namespace. Thin: flags
//! (`pea_proxy::cli`), logging, signals.

use anyhow::Result;
use clap::Parser;
use pea_proxy::cli;

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("PEA_PROXY_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let prepared = cli::prepare(cli::Args::parse())?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async {
        let stop = async {
            let _ = tokio::signal::ctrl_c().await;
        };
        cli::run(prepared, stop).await
    })
}
