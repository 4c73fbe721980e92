//! `pea-dashboard --kubeconfig F --listen 127.0.0.1:PORT`: the dashboard alone, against any API
//! server, until SIGINT/SIGTERM. Only the kubeconfig's cluster (URL and CA) is used: every user
//! logs in with their own token. Plain HTTP, so loopback only (put TLS in front otherwise; the
//! session cookie is `Secure`, which browsers accept over http only on localhost).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;

#[derive(Debug, Parser)]
#[command(name = "pea-dashboard", about = "A web UI for a Kubernetes cluster")]
struct Args {
    /// The cluster to show (its current context's server and certificate authority).
    #[arg(long)]
    kubeconfig: PathBuf,
    /// Where to serve (plain HTTP; loopback addresses only).
    #[arg(long, default_value = "127.0.0.1:8001")]
    listen: SocketAddr,
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    if !args.listen.ip().is_loopback() {
        anyhow::bail!(
            "{} is not a loopback address: pea-dashboard serves plain HTTP (pea-control serves it over its own TLS at /dashboard/)",
            args.listen
        );
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let dashboard = pea_dashboard::Dashboard::from_kubeconfig(&args.kubeconfig, "/dashboard")
            .await
            .context("loading the kubeconfig")?;
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("listening on {}", args.listen))?;
        let addr = listener.local_addr()?;
        println!("pea-dashboard listening on http://{addr}/dashboard/");
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            _ = pea_dashboard::serve(listener, Arc::new(dashboard)) => {}
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        Ok(())
    })
}
