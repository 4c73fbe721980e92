//! The proxy's main loop: connect, watch, wait for the first full list, then sync on every
//! change (no more often than `min_sync_period`) and fully every `sync_period`.

use std::{
    net::SocketAddr,
    path::PathBuf,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use kube::{
    config::{KubeConfigOptions, Kubeconfig},
    Client,
};

use crate::{
    metrics::{self, Metrics},
    proxier::{Proxier, ProxyConfig},
    watch::Caches,
};

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("kubeconfig {path}: {source}")]
    Kubeconfig {
        path: String,
        #[source]
        source: kube::config::KubeconfigError,
    },
    #[error("no kubeconfig given and none inferred (in-cluster or $KUBECONFIG): {0}")]
    Infer(#[source] kube::config::InferConfigError),
    #[error("building the API client: {0}")]
    Client(#[source] kube::Error),
    #[error("serving {what} on {addr}: {source}")]
    Listen {
        what: &'static str,
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

#[derive(Debug, Clone)]
pub struct RunConfig {
    pub kubeconfig: Option<PathBuf>,
    pub proxy: ProxyConfig,
    pub sync_period: Duration,
    pub min_sync_period: Duration,
    pub metrics_addr: Option<SocketAddr>,
    pub healthz_addr: Option<SocketAddr>,
    /// No `--bind-address`: the node IPs come from the Node object's addresses (kube-proxy's
    /// way); `proxy.node_ips` are used until it shows some.
    pub node_ips_from_node: bool,
}

async fn client(kubeconfig: Option<&PathBuf>) -> Result<Client, RunError> {
    let config = match kubeconfig {
        Some(path) => {
            let kerr = |source| RunError::Kubeconfig {
                path: path.display().to_string(),
                source,
            };
            let kc = Kubeconfig::read_from(path).map_err(kerr)?;
            kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
                .await
                .map_err(kerr)?
        }
        None => kube::Config::infer().await.map_err(RunError::Infer)?,
    };
    Client::try_from(config).map_err(RunError::Client)
}

/// Runs until the process is stopped. Sync failures are logged and retried; they never end it.
pub async fn run(cfg: RunConfig) -> Result<(), RunError> {
    let metrics = Metrics::new(cfg.sync_period * 2 + Duration::from_secs(5));
    for (what, addr, healthz) in [
        ("/metrics", cfg.metrics_addr, false),
        ("/healthz", cfg.healthz_addr, true),
    ] {
        if let Some(addr) = addr {
            let local = metrics::serve(addr, metrics.clone(), healthz)
                .await
                .map_err(|source| RunError::Listen { what, addr, source })?;
            tracing::info!("serving {what} on {local}");
        }
    }
    let client = client(cfg.kubeconfig.as_ref()).await?;
    let caches = Caches::default();
    caches.start(client.clone());
    caches.start_node(client.clone(), &cfg.proxy.hostname);
    // The Node is waited for at most 10 s: a proxy not allowed to read Nodes still serves.
    let listing = Instant::now();
    while !(caches.synced()
        && (caches.node_listed() || listing.elapsed() > Duration::from_secs(10)))
    {
        let _ = tokio::time::timeout(Duration::from_secs(1), caches.changed.notified()).await;
    }
    tracing::info!("services, endpointslices and this node listed; first sync");
    if caches.node().is_none() {
        tracing::warn!(
            node = %cfg.proxy.hostname,
            "no Node object of this name: node IPs from --bind-address or the local addresses, no zone"
        );
    }
    let proxier = Arc::new(Mutex::new(Proxier::new(cfg.proxy.clone())));
    let mut health = crate::health_check::HealthServers::new(metrics.clone());
    let mut last_full = Instant::now();
    let mut full = true;
    loop {
        let started = Instant::now();
        // The Node's addresses and zone feed every Service's rules: a change makes a full sync.
        let node = caches.node().unwrap_or_default();
        let ips = if cfg.node_ips_from_node && !node.ips.is_empty() {
            node.ips
        } else {
            cfg.proxy.node_ips.clone()
        };
        if proxier
            .lock()
            .expect("proxier")
            .set_node(ips.clone(), node.zone)
        {
            full = true;
        }
        let changes = caches.take_changes(full);
        let p = proxier.clone();
        let was_full = full;
        let result = tokio::task::spawn_blocking(move || {
            let mut p = p.lock().expect("proxier");
            let r = p.sync(&changes, was_full);
            (
                r,
                p.last_no_local_endpoints,
                p.problems(),
                p.health_checks(),
            )
        })
        .await
        .expect("sync task");
        let (service_changes, endpoint_changes) = caches.change_counts();
        metrics.set_state(service_changes, endpoint_changes, result.1, result.2);
        match result.0 {
            Ok(mut report) => {
                let problems = std::mem::take(&mut report.new_problems);
                if !problems.is_empty() {
                    // Off the sync loop: a slow API server never delays the rules.
                    let (client, host) = (client.clone(), cfg.proxy.hostname.clone());
                    tokio::spawn(async move {
                        crate::events::post(&client, &host, &problems).await;
                    });
                }
                if was_full {
                    last_full = Instant::now();
                }
                health.sync(&result.3, &ips);
                metrics.observe_sync(was_full, report.duration, report.conntrack_flushes);
                tracing::debug!(
                    full = was_full,
                    lines = ?report.lines,
                    netlink = ?report.netlink,
                    "synced in {:?}",
                    report.duration
                );
            }
            Err(e) => {
                metrics.sync_failed();
                tracing::error!("sync failed (retried in 1 s): {e}");
                // The proxier recreates its tables next time; everything is re-sent.
                tokio::time::sleep(Duration::from_secs(1)).await;
                full = true;
                continue;
            }
        }
        // Wait for a change or the next full resync.
        let until_full = cfg.sync_period.saturating_sub(last_full.elapsed());
        full = tokio::time::timeout(until_full, caches.changed.notified())
            .await
            .is_err();
        metrics.pending();
        // Batch changes that come in bursts (kube-proxy's --min-sync-period).
        let since = started.elapsed();
        if since < cfg.min_sync_period {
            tokio::time::sleep(cfg.min_sync_period - since).await;
        }
    }
}
