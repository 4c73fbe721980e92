//! pea-proxy's binary edge as a library: kube-proxy's flags and running until told to stop.
//! Shared by the `pea-proxy` binary and `pea-agent` (a node's programs in one process, as k3s's
//! agent embeds kube-proxy), so both parse the same flags and behave the same.

use std::{future::Future, net::SocketAddr, path::PathBuf, time::Duration};

use anyhow::{bail, Context, Result};
use clap::Parser;
use ipnet::IpNet;
use pea_godur::parse as parse_duration;

use crate::{
    model::Family,
    nft::Nft,
    proxier::{Proxier, ProxyConfig},
    run::RunConfig,
};

/// Flags as kube-proxy's (`--proxy-mode nftables` is implied).
#[derive(Debug, Parser)]
#[command(name = "pea-proxy", version, about)]
pub struct Args {
    /// Path to a kubeconfig (default: in-cluster, then $KUBECONFIG).
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// This node's name: endpoints whose nodeName matches are local (default: the hostname).
    #[arg(long)]
    hostname_override: Option<String>,
    /// CIDRs (comma-separated) whose local addresses accept NodePorts, or `primary` for the
    /// node IPs only (kube-proxy's nftables default) (default: every local address but loopback).
    #[arg(long, value_delimiter = ',')]
    nodeport_addresses: Vec<String>,
    /// This node's primary IP, as kube-proxy's flag: loadBalancerSourceRanges that contain it let
    /// the node through, `--nodeport-addresses primary` accepts NodePorts on it. 0.0.0.0 / ::
    /// (the default): the node's IPs from its Node object (InternalIP first, one per family), or
    /// while it has none every non-loopback address of the node.
    #[arg(long, default_value = "0.0.0.0")]
    bind_address: std::net::IpAddr,
    /// The pods' CIDRs (comma-separated, one per family): ClusterIP traffic from outside them
    /// is masqueraded.
    #[arg(long, value_delimiter = ',')]
    cluster_cidr: Vec<IpNet>,
    /// Where /metrics is served; "0" turns it off.
    #[arg(long, default_value = "127.0.0.1:10249")]
    metrics_bind_address: String,
    /// Where /healthz is served; "0" turns it off.
    #[arg(long, default_value = "127.0.0.1:10256")]
    healthz_bind_address: String,
    /// The longest time between full resyncs (e.g. 30s, 1m, 1h).
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    sync_period: Duration,
    /// The shortest time between syncs: changes arriving meanwhile are batched.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    min_sync_period: Duration,
    /// Only this family: "IPv4" or "IPv6" (default both).
    #[arg(long)]
    ip_family: Option<String>,
    /// Remove pea-proxy's nftables tables and exit.
    #[arg(long)]
    cleanup: bool,
}

fn bind(flag: &str, v: &str) -> Result<Option<SocketAddr>> {
    if v == "0" || v.is_empty() {
        return Ok(None);
    }
    v.parse()
        .map(Some)
        .with_context(|| format!("--{flag} {v:?} is not an address:port"))
}

/// What the flags ask for, checked before anything starts.
#[derive(Debug)]
pub enum Prepared {
    /// `--cleanup`: remove the tables and exit.
    Cleanup(Nft),
    Run(Box<RunConfig>),
}

/// The proxy's configuration from its flags.
pub fn prepare(args: Args) -> Result<Prepared> {
    let nft = Nft::default();
    if args.cleanup {
        return Ok(Prepared::Cleanup(nft));
    }
    let families = match args.ip_family.as_deref() {
        None => vec![Family::V4, Family::V6],
        Some("IPv4") => vec![Family::V4],
        Some("IPv6") => vec![Family::V6],
        Some(other) => bail!("--ip-family {other:?} is not IPv4 or IPv6"),
    };
    let hostname = match args.hostname_override {
        Some(h) => h,
        None => nix::unistd::gethostname()
            .context("hostname")?
            .to_string_lossy()
            .to_lowercase(),
    };
    let conntrack = crate::conntrack::program();
    if conntrack.is_none() {
        tracing::warn!(
            "conntrack is not installed: stale UDP flows of removed endpoints are not flushed"
        );
    }
    let node_ips = if args.bind_address.is_unspecified() {
        crate::proxier::local_addresses()
            .context("listing this node's addresses (give --bind-address)")?
            .into_iter()
            .filter(|ip| !ip.is_loopback() && !ip.is_unspecified())
            .filter(|ip| !matches!(ip, std::net::IpAddr::V6(v6) if (v6.segments()[0] & 0xffc0) == 0xfe80))
            .collect()
    } else {
        vec![args.bind_address]
    };
    let nodeport_primary = args.nodeport_addresses.iter().any(|a| a == "primary");
    let nodeport_cidrs: Vec<IpNet> = args
        .nodeport_addresses
        .iter()
        .filter(|a| *a != "primary")
        .map(|a| {
            a.parse::<IpNet>()
                .with_context(|| format!("--nodeport-addresses {a:?} is not a CIDR or \"primary\""))
        })
        .collect::<Result<_>>()?;
    if nodeport_primary && !nodeport_cidrs.is_empty() {
        bail!("--nodeport-addresses: \"primary\" cannot be combined with CIDRs");
    }
    Ok(Prepared::Run(Box::new(RunConfig {
        kubeconfig: args.kubeconfig,
        proxy: ProxyConfig {
            hostname,
            cluster_cidrs: args.cluster_cidr,
            nodeport_cidrs: (!nodeport_cidrs.is_empty()).then_some(nodeport_cidrs),
            node_ips,
            nodeport_primary,
            zone: None,
            families,
            nft,
            conntrack,
            netlink_elements: true,
        },
        sync_period: args.sync_period,
        min_sync_period: args.min_sync_period,
        metrics_addr: bind("metrics-bind-address", &args.metrics_bind_address)?,
        healthz_addr: bind("healthz-bind-address", &args.healthz_bind_address)?,
        node_ips_from_node: args.bind_address.is_unspecified(),
    })))
}

/// Syncs Services until `stop` completes (or removes the tables, for `--cleanup`).
pub async fn run(p: Prepared, stop: impl Future<Output = ()>) -> Result<()> {
    match p {
        Prepared::Cleanup(nft) => {
            Proxier::cleanup(&nft).context("removing pea-proxy's tables")?;
            Ok(())
        }
        Prepared::Run(cfg) => tokio::select! {
            r = crate::run::run(*cfg) => r.map_err(anyhow::Error::from),
            _ = stop => Ok(()),
        },
    }
}
