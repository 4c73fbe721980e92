//! pea-scheduler: a kube-scheduler work-alike that is a client of the Kubernetes API only
//! (kube-rs), so it runs against pea-control or a real kube-apiserver.
//!
//! ```text
//! informer (watch Nodes, Pods) ──► cache (ClusterState) ◄── assume / forget
//!            │                         │
//!            └──► queue (active, backoff, unschedulable) ──► loop: algorithm (filters,
//!                 scores, preemption) ──► bind / PodScheduled=False + FailedScheduling
//! ```
//!
//! The decision code (`algorithm`, `plugins`, `preemption`, `queue`, `cache`) does no I/O;
//! `informer`, `writes`, `leader` and `scheduler` talk to the API.

pub mod algorithm;
pub mod cache;
pub mod config;
pub mod disruption_budgets;
pub mod events;
pub mod framework;
pub mod informer;
pub mod leader;
pub mod metrics;
pub mod node_info;
pub mod plugins;
pub mod preemption;
/// Quantities are the workspace's shared exact parser (common/quantity).
pub use pea_quantity as quantity;
pub mod queue;
pub mod resource;
pub mod scheduler;
pub mod spread_sources;
pub mod volumes;
pub mod writes;

#[cfg(test)]
mod testutil;

use std::path::{Path, PathBuf};

pub use config::SchedulerConfig;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum SchedulerError {
    #[error("kubeconfig {path}: {source}")]
    Kubeconfig {
        path: PathBuf,
        #[source]
        source: kube::config::KubeconfigError,
    },
    #[error("client for kubeconfig {path}: {source}")]
    Client {
        path: PathBuf,
        #[source]
        source: kube::Error,
    },
}

/// A client from a kubeconfig file (the admin kubeconfig pea-control writes, or any other).
pub async fn client_from_kubeconfig(path: &Path) -> Result<kube::Client, SchedulerError> {
    let kerr = |source| SchedulerError::Kubeconfig {
        path: path.to_path_buf(),
        source,
    };
    let kc = kube::config::Kubeconfig::read_from(path).map_err(kerr)?;
    let cfg = kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
        .await
        .map_err(kerr)?;
    kube::Client::try_from(cfg).map_err(|source| SchedulerError::Client {
        path: path.to_path_buf(),
        source,
    })
}

/// `<hostname>_<pid>-<nanos>`: unique per process, readable in the Lease.
fn default_identity() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "pea".into());
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{host}_{}-{nanos:08x}", std::process::id())
}

/// Runs the scheduler until the future is dropped. With leader election it first waits to
/// hold the Lease, schedules while it holds it, and goes back to waiting when it loses it
/// (everything it started is stopped; a new term starts from fresh caches).
pub async fn run(client: kube::Client, config: SchedulerConfig) -> Result<(), SchedulerError> {
    run_with_metrics(client, config, metrics::Metrics::default()).await
}

/// [`run`], recording kube-scheduler's metrics into `metrics` (which whoever serves
/// /metrics renders).
pub async fn run_with_metrics(
    client: kube::Client,
    config: SchedulerConfig,
    metrics: metrics::Metrics,
) -> Result<(), SchedulerError> {
    let identity = config.identity.clone().unwrap_or_else(default_identity);
    if !config.leader_elect {
        scheduler::run_scheduler(client, config, metrics).await;
        return Ok(());
    }
    let mut elector = leader::LeaderElector::new(
        client.clone(),
        &config.lease_namespace,
        &config.lease_name,
        identity.clone(),
        config.lease_duration(),
        config.renew_deadline(),
        config.retry_period(),
    );
    loop {
        elector.acquire().await;
        tokio::select! {
            _ = scheduler::run_scheduler(client.clone(), config.clone(), metrics.clone()) => return Ok(()),
            lost = elector.hold() => tracing::warn!(error = %lost, "stopped scheduling"),
        }
    }
}
