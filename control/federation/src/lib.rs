//! pea-federation: one control plane over many clusters, with Karmada's API so its users
//! recognise it. A pea-control instance serves as the federation API (its own data dir and port,
//! no controllers); the kinds below are CRDs on it (`crds/federation.yaml`, installed by
//! `pea federation init`), and this controller is a client of that API and of every member's API
//! only, through kube-rs — it never links pea-control.
//!
//! - `Cluster` (cluster.karmada.io/v1alpha1): a member — push mode: its API endpoint and a
//!   Secret holding a kubeconfig, or a bearer `token` and `caBundle`; status condition `Ready`
//!   from the member's `/readyz`, `status.resourceSummary` from its Nodes and Pods. Pull mode:
//!   never dialled; its agent ([`agent`], `pea-federation agent`) applies the `Work`s written for
//!   it ([`work`]), renews its Lease and reports the same status.
//! - `Work` (work.karmada.io): one template rendered for one Pull member, in `karmada-es-<name>`.
//! - `PropagationPolicy` / `ClusterPropagationPolicy` (policy.karmada.io): which templates
//!   (apiVersion/kind/name/labels) go to which members (names, label selectors, taints, spread
//!   by cluster, region or zone), with replicas Duplicated or Divided by static weights or by
//!   each member's available capacity (dynamicWeight AvailableReplicas, Aggregated). The most
//!   specific policy wins (Karmada's rules).
//! - `OverridePolicy`: per-member image, command/args, labels/annotations, plaintext JSON patches.
//! - `ResourceBinding` (work.karmada.io): per template, the placement and each member's status.
//!
//! - `ClusterOverridePolicy` (cluster-scoped overrides, applied before the namespaced ones) and
//!   `ClusterResourceBinding` (the binding of a cluster-scoped template).
//!
//! The controller is watch-driven (see [`controller`]): watches on the federation API and on
//! every member feed one queue keyed by template, so a template, a policy change, drift or a
//! status change in a member is acted on when its event arrives; a full pass every
//! `full_resync` is only the safety net.

pub mod agent;
pub mod apply;
pub mod cache;
pub mod capacity;
pub mod controller;
pub mod error;
pub mod events;
pub mod health;
pub mod kinds;
pub mod members;
pub mod overrides;
pub mod placement;
pub mod policy;
pub mod reconcile;
pub mod render;
pub mod report;
pub mod selector;
pub mod work;

use std::time::Duration;

pub use controller::run;
pub use error::Error;

/// The CRDs of the federation API, as `kubectl apply -f` takes them.
pub const CRDS: &str = include_str!("../crds/federation.yaml");

/// Field manager of every server-side apply to a member.
pub const FIELD_MANAGER: &str = "pea-federation";
/// Finalizer on templates: member objects are deleted before the template goes.
pub const FINALIZER: &str = "federation.pea.dev/cleanup";
/// Label on member objects naming the template (its uid on the federation API).
pub const TEMPLATE_UID_LABEL: &str = "federation.pea.dev/template-uid";
/// Karmada's marker label on objects it manages in members.
pub const MANAGED_LABEL: &str = "karmada.io/managed";
/// Annotation on member objects naming the template (kind/namespace/name).
pub const TEMPLATE_ANNOTATION: &str = "federation.pea.dev/template";

/// The controller's settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// Time between health probes of the members.
    pub resync: Duration,
    /// Time between full passes over every template (the safety net under the watches, which
    /// drive propagation, drift correction and status).
    pub full_resync: Duration,
    /// How long a member may be not Ready before its Divided replicas move to healthy members
    /// (Karmada's failover toleration; its default is 300 s).
    pub failover_toleration: Duration,
    /// Bound of every request to a member (connect and read).
    pub member_timeout: Duration,
    /// Time between collections of each member's resource summary (its Nodes and Pods, for
    /// division by capacity); Karmada's --cluster-status-update-frequency, 10 s by default.
    pub summary_interval: Duration,
    /// How old a Pull cluster's lease may be before the cluster is not Ready (Karmada's
    /// --cluster-monitor-grace-period, 40 s by default).
    pub lease_grace: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            resync: Duration::from_secs(2),
            full_resync: Duration::from_secs(60),
            failover_toleration: Duration::from_secs(300),
            member_timeout: Duration::from_secs(5),
            summary_interval: Duration::from_secs(10),
            lease_grace: Duration::from_secs(40),
        }
    }
}

/// A client of the API a kubeconfig file names.
pub async fn client_from_kubeconfig(path: &std::path::Path) -> Result<kube::Client, Error> {
    let kc = kube::config::Kubeconfig::read_from(path).map_err(|e| Error::Kubeconfig {
        what: path.display().to_string(),
        message: e.to_string(),
    })?;
    members::client_from(kc, None, None, false, &path.display().to_string()).await
}

/// A member's clients from its kubeconfig file (for a Pull member's agent): one with every
/// request bounded by `timeout`, one for watches (only the connect bounded).
pub async fn member_clients_from_kubeconfig(
    path: &std::path::Path,
    timeout: Duration,
) -> Result<(kube::Client, kube::Client), Error> {
    let what = path.display().to_string();
    let kc = kube::config::Kubeconfig::read_from(path).map_err(|e| Error::Kubeconfig {
        what: what.clone(),
        message: e.to_string(),
    })?;
    let client = members::client_from(kc.clone(), None, Some(timeout), false, &what).await?;
    let watch = members::client_from(kc, None, Some(timeout), true, &what).await?;
    Ok((client, watch))
}
