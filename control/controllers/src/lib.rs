//! pea-controllers: a kube-controller-manager work-alike that is a client of the Kubernetes API
//! only (kube-rs), so it runs against pea-control and against a real kube-apiserver alike.
//!
//! Wiring: [`run`] takes a client and a [`ControllersConfig`], optionally wins the
//! `kube-system/kube-controller-manager` Lease ([`leader`]), then starts one shared informer per
//! resource type ([`informer`]) and the enabled controllers, each a work queue ([`queue`]) of
//! object keys fed by informer handlers and drained by a few workers:
//!
//! ```text
//!   watch ─▶ Informer (cache + handlers) ─▶ Queue of "ns/name" ─▶ workers ─▶ sync(key) ─▶ API writes
//! ```
//!
//! One file per controller: [`replicaset`] (also [`replicationcontroller`]), [`deployment`], [`endpoints`], [`endpointslice`],
//! [`nodeipam`], [`nodelifecycle`], [`tainteviction`], [`disruption`], [`serviceaccount`],
//! [`podgc`], [`persistentvolume`] (the binder) and [`localpath`] (the local-path provisioner).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use k8s_openapi::api::apps::v1::{
    ControllerRevision, DaemonSet, Deployment, ReplicaSet, StatefulSet,
};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use k8s_openapi::api::core::v1::{
    ConfigMap, Endpoints, Namespace, Node, PersistentVolume, PersistentVolumeClaim, Pod,
    ReplicationController, Service, ServiceAccount,
};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::storage::v1::StorageClass;
use kube::{Api, Client};
use serde::Deserialize;

pub mod backoff;
pub mod bootstrapsigner;
pub mod claim;
pub mod cron;
pub mod cronjob;
pub mod csr;
pub mod daemonset;
pub mod deployment;
pub mod deployment_util;
pub mod disruption;
pub mod endpoints;
pub mod endpointslice;
pub mod endpointslice_hints;
pub mod event_correlator;
pub mod events;
pub mod expectations;
pub mod history;
pub mod hpa;
pub mod hpa_calc;
pub mod identity;
pub mod informer;
pub mod job;
pub mod leader;
pub mod localpath;
/// The controllers record kube-controller-manager's metrics through the shared crate.
pub use pea_metrics as metrics;
pub mod nodeipam;
pub mod nodelifecycle;
pub mod persistentvolume;
pub mod podgc;
pub mod podutil;
pub mod queue;
pub mod quota;
pub mod replicaset;
pub mod replicationcontroller;
pub mod resourcequota;
pub mod rootca;
pub mod serviceaccount;
pub mod statefulset;
pub mod storageprotection;
pub mod tainteviction;
pub mod tokens;
pub mod ttlafterfinished;
pub mod volumeutil;

use informer::Informer;

/// The time source of every decision that depends on the current time.
#[derive(Clone)]
pub struct Clock(Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>);

impl Clock {
    pub fn new(f: impl Fn() -> DateTime<Utc> + Send + Sync + 'static) -> Self {
        Self(Arc::new(f))
    }

    pub fn now(&self) -> DateTime<Utc> {
        (self.0)()
    }
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Clock({})", self.now())
    }
}

pub fn system_clock() -> Clock {
    Clock::new(Utc::now)
}

/// Every controller this crate has, by kube-controller-manager's names.
pub const ALL: &[&str] = &[
    "replicaset",
    "replicationcontroller",
    "deployment",
    "daemonset",
    "statefulset",
    "cronjob",
    "endpoint",
    "endpointslice",
    "job",
    "nodeipam",
    "nodelifecycle",
    "taint-eviction-controller",
    "disruption",
    "serviceaccount",
    "serviceaccount-token",
    "root-ca-cert-publisher",
    "ttl-after-finished",
    "podgc",
    "horizontalpodautoscaling",
    "persistentvolume-binder",
    "local-path-provisioner",
    "resourcequota",
    "pvc-protection",
    "csrapproving",
    "csrsigning",
    "tokencleaner",
    "bootstrapsigner",
];

/// Configuration of the controller manager (also a JSON schema: camelCase fields).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default, rename_all = "camelCase")]
pub struct ControllersConfig {
    /// kube's `--controllers` syntax: `*` is every controller, `foo` enables foo, `-foo`
    /// disables it, e.g. `*,-podgc`.
    pub controllers: Vec<String>,
    /// The range node IPAM hands pod CIDRs out of.
    pub cluster_cidr: String,
    /// The prefix length of each node's pod CIDR.
    pub node_cidr_mask_size: u8,
    /// Contend for the `kube-system/kube-controller-manager` Lease and run only while holding it.
    pub leader_elect: bool,
    pub leader_election: leader::LeaderElectionConfig,
    /// Workers per controller (kube's --concurrent-*-syncs, default 5).
    pub workers: usize,
    /// The cluster CA (PEM) the root CA publisher puts in every namespace's
    /// `kube-root-ca.crt` ConfigMap (kube's --root-ca-file); without it that controller
    /// does not run.
    pub root_ca_pem: Option<String>,
    /// Node lifecycle timing (node-monitor-period, node-monitor-grace-period, eviction rates).
    pub node_lifecycle: nodelifecycle::NodeLifecycleConfig,
    /// The HorizontalPodAutoscaler controller's timing and tolerance.
    pub hpa: hpa::HpaSettings,
    /// The directory the local-path provisioner makes volumes in on each node (a class's
    /// `basePath` parameter overrides it).
    pub local_path_dir: String,
    /// The image of the local-path provisioner's cleanup pods (a class's `helperImage`
    /// parameter overrides it).
    pub local_path_helper_image: String,
    /// kube-controller-manager's `--cluster-signing-cert-file` / `--cluster-signing-key-file`:
    /// the CA `csrsigning` issues certificates from (without a CA it does not run).
    pub cluster_signing_cert_file: Option<std::path::PathBuf>,
    pub cluster_signing_key_file: Option<std::path::PathBuf>,
    /// `--cluster-signing-duration` in seconds (longest certificate lifetime; 8760h).
    pub cluster_signing_duration_secs: u64,
    /// The signing CA handed over in-process (pea-control's own), instead of the files.
    #[serde(skip)]
    pub cluster_signing_ca: Option<csr::signing::SigningCa>,
    /// kube-controller-manager's `--service-account-private-key-file`: the key legacy
    /// Secret-based tokens are signed with (`serviceaccount-token`; without it that
    /// controller does not run).
    pub service_account_private_key_file: Option<std::path::PathBuf>,
    /// Where the controllers' metrics go (kube-controller-manager's /metrics); whoever serves
    /// them renders this handle.
    #[serde(skip)]
    pub metrics: metrics::Metrics,
}

impl Default for ControllersConfig {
    fn default() -> Self {
        Self {
            controllers: vec!["*".into()],
            cluster_cidr: "10.244.0.0/16".into(),
            node_cidr_mask_size: 24,
            leader_elect: true,
            leader_election: leader::LeaderElectionConfig::default(),
            workers: 5,
            root_ca_pem: None,
            node_lifecycle: nodelifecycle::NodeLifecycleConfig::default(),
            hpa: hpa::HpaSettings::default(),
            local_path_dir: localpath::LocalPathConfig::default().base_dir,
            local_path_helper_image: localpath::LocalPathConfig::default().helper_image,
            cluster_signing_cert_file: None,
            cluster_signing_key_file: None,
            cluster_signing_duration_secs: csr::signing::DEFAULT_DURATION.as_secs(),
            cluster_signing_ca: None,
            service_account_private_key_file: None,
            metrics: metrics::Metrics::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("unknown controller {0:?} in --controllers (known: {known})", known = ALL.join(", "))]
    UnknownController(String),
    #[error("node ipam: {0}")]
    NodeIpam(#[from] nodeipam::NodeIpamError),
    #[error(transparent)]
    Signing(#[from] csr::signing::SigningError),
    #[error(transparent)]
    Tokens(#[from] tokens::TokensError),
    #[error("kubeconfig {path}: {source}")]
    Kubeconfig {
        path: std::path::PathBuf,
        #[source]
        source: kube::config::KubeconfigError,
    },
    #[error("client from kubeconfig {path}: {source}")]
    Client {
        path: std::path::PathBuf,
        #[source]
        source: Box<kube::Error>,
    },
    #[error("controller credentials: {0}")]
    Identity(#[from] identity::IdentityError),
}

impl ControllersConfig {
    /// Parses kube's `--controllers` value (comma separated).
    pub fn set_controllers(&mut self, flag: &str) {
        self.controllers = flag
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect();
    }

    /// The controllers to run, or the first name that is not a controller.
    pub fn enabled(&self) -> Result<BTreeSet<&'static str>, Error> {
        for c in &self.controllers {
            let name = c.strip_prefix('-').unwrap_or(c);
            if name != "*" && !ALL.contains(&name) {
                return Err(Error::UnknownController(c.clone()));
            }
        }
        let star = self.controllers.iter().any(|c| c == "*");
        Ok(ALL
            .iter()
            .copied()
            .filter(|name| {
                if self
                    .controllers
                    .iter()
                    .any(|c| c.strip_prefix('-') == Some(name))
                {
                    return false;
                }
                star || self.controllers.iter().any(|c| c == name)
            })
            .collect())
    }
}

/// The connection settings of the cluster a kubeconfig file names (its current context).
async fn config_from_kubeconfig(path: &std::path::Path) -> Result<kube::Config, Error> {
    let kerr = |source| Error::Kubeconfig {
        path: path.to_path_buf(),
        source,
    };
    let kc = kube::config::Kubeconfig::read_from(path).map_err(kerr)?;
    kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
        .await
        .map_err(kerr)
}

/// A client for the cluster a kubeconfig file names (its current context).
pub async fn client_from_kubeconfig(path: &std::path::Path) -> Result<Client, Error> {
    let cfg = config_from_kubeconfig(path).await?;
    Client::try_from(cfg).map_err(|source| Error::Client {
        path: path.to_path_buf(),
        source: Box::new(source),
    })
}

/// The controllers' clients from the manager's kubeconfig: with `service_accounts`
/// (kube-controller-manager's `--use-service-account-credentials`), each controller acts as
/// its own ServiceAccount in kube-system ([`identity`]); otherwise all share the kubeconfig's
/// identity.
pub async fn clients_from_kubeconfig(
    path: &std::path::Path,
    service_accounts: bool,
) -> Result<identity::ControllerClients, Error> {
    let cfg = config_from_kubeconfig(path).await?;
    let manager = Client::try_from(cfg.clone()).map_err(|source| Error::Client {
        path: path.to_path_buf(),
        source: Box::new(source),
    })?;
    Ok(if service_accounts {
        identity::ControllerClients::service_accounts(manager, cfg)
    } else {
        identity::ControllerClients::shared(manager)
    })
}

impl From<Client> for identity::ControllerClients {
    fn from(client: Client) -> Self {
        identity::ControllerClients::shared(client)
    }
}

/// The CA (PEM) of the cluster a kubeconfig's current context names, if it gives one
/// (inline `certificate-authority-data` or a `certificate-authority` file): what the root CA
/// publisher hands to pods when the controllers run as their own process.
pub fn ca_pem_from_kubeconfig(path: &std::path::Path) -> Option<String> {
    use base64::Engine;
    let kc = kube::config::Kubeconfig::read_from(path).ok()?;
    let ctx_name = kc.current_context.clone()?;
    let ctx = kc
        .contexts
        .iter()
        .find(|c| c.name == ctx_name)?
        .context
        .clone()?;
    let cluster = kc
        .clusters
        .iter()
        .find(|c| c.name == ctx.cluster)?
        .cluster
        .clone()?;
    if let Some(data) = cluster.certificate_authority_data {
        let pem = base64::engine::general_purpose::STANDARD
            .decode(data.trim())
            .ok()?;
        return String::from_utf8(pem).ok();
    }
    let file = cluster.certificate_authority?;
    let file = path
        .parent()
        .map_or_else(|| file.clone().into(), |dir| dir.join(&file));
    std::fs::read_to_string(file).ok()
}

/// One informer per resource type, shared by every controller that reads it.
#[derive(Debug)]
pub struct Informers {
    pub pods: Arc<Informer<Pod>>,
    pub replicasets: Arc<Informer<ReplicaSet>>,
    pub replicationcontrollers: Arc<Informer<ReplicationController>>,
    pub deployments: Arc<Informer<Deployment>>,
    pub services: Arc<Informer<Service>>,
    pub endpoints: Arc<Informer<Endpoints>>,
    pub endpointslices: Arc<Informer<EndpointSlice>>,
    pub nodes: Arc<Informer<Node>>,
    pub namespaces: Arc<Informer<Namespace>>,
    pub serviceaccounts: Arc<Informer<ServiceAccount>>,
    pub configmaps: Arc<Informer<ConfigMap>>,
    pub jobs: Arc<Informer<Job>>,
    pub daemonsets: Arc<Informer<DaemonSet>>,
    pub hpas: Arc<Informer<HorizontalPodAutoscaler>>,
    pub statefulsets: Arc<Informer<StatefulSet>>,
    pub controllerrevisions: Arc<Informer<ControllerRevision>>,
    pub persistentvolumeclaims: Arc<Informer<PersistentVolumeClaim>>,
    pub cronjobs: Arc<Informer<CronJob>>,
    pub persistentvolumes: Arc<Informer<PersistentVolume>>,
    pub storageclasses: Arc<Informer<StorageClass>>,
    /// Shared by csrapproving and csrsigning (kube shares one CSR informer too).
    pub certificatesigningrequests: Arc<Informer<CertificateSigningRequest>>,
}

impl Informers {
    pub fn new(client: &Client) -> Self {
        Self {
            pods: Informer::new(Api::all(client.clone())),
            replicasets: Informer::new(Api::all(client.clone())),
            replicationcontrollers: Informer::new(Api::all(client.clone())),
            deployments: Informer::new(Api::all(client.clone())),
            services: Informer::new(Api::all(client.clone())),
            endpoints: Informer::new(Api::all(client.clone())),
            endpointslices: Informer::new(Api::all(client.clone())),
            nodes: Informer::new(Api::all(client.clone())),
            namespaces: Informer::new(Api::all(client.clone())),
            serviceaccounts: Informer::new(Api::all(client.clone())),
            configmaps: Informer::new(Api::all(client.clone())),
            jobs: Informer::new(Api::all(client.clone())),
            daemonsets: Informer::new(Api::all(client.clone())),
            hpas: Informer::new(Api::all(client.clone())),
            statefulsets: Informer::new(Api::all(client.clone())),
            controllerrevisions: Informer::new(Api::all(client.clone())),
            persistentvolumeclaims: Informer::new(Api::all(client.clone())),
            cronjobs: Informer::new(Api::all(client.clone())),
            persistentvolumes: Informer::new(Api::all(client.clone())),
            storageclasses: Informer::new(Api::all(client.clone())),
            certificatesigningrequests: Informer::new(Api::all(client.clone())),
        }
    }

    /// Starts the informers some controller registered a handler on.
    fn spawn(&self, set: &mut tokio::task::JoinSet<()>) {
        macro_rules! start {
            ($($f:ident),*) => {$(
                if self.$f.has_handlers() {
                    set.spawn(self.$f.clone().run());
                }
            )*};
        }
        start!(
            pods,
            replicasets,
            replicationcontrollers,
            deployments,
            services,
            endpoints,
            endpointslices,
            nodes,
            namespaces,
            serviceaccounts,
            configmaps,
            jobs,
            daemonsets,
            hpas,
            statefulsets,
            controllerrevisions,
            persistentvolumeclaims,
            cronjobs,
            persistentvolumes,
            storageclasses,
            certificatesigningrequests
        );
    }
}

/// Runs the enabled controllers until the future is dropped. With leader election, controllers
/// run only while this instance holds the Lease; losing it stops them and contention resumes.
///
/// `clients` is a [`Client`] (every controller shares its identity) or the
/// [`identity::ControllerClients`] of [`clients_from_kubeconfig`].
pub async fn run(
    clients: impl Into<identity::ControllerClients>,
    config: ControllersConfig,
) -> Result<(), Error> {
    run_with_clock(clients, config, system_clock()).await
}

pub async fn run_with_clock(
    clients: impl Into<identity::ControllerClients>,
    config: ControllersConfig,
    clock: Clock,
) -> Result<(), Error> {
    let clients = clients.into();
    let client = clients.manager().clone();
    config.enabled()?;
    // Validate before contending so a bad flag fails at once.
    nodeipam::CidrSet::new(&config.cluster_cidr, config.node_cidr_mask_size)?;
    if !config.leader_elect {
        return run_controllers(&clients, &config, clock).await;
    }
    let elector = leader::Elector::new(client.clone(), config.leader_election.clone());
    loop {
        elector.acquire().await;
        tracing::info!(identity = %elector.identity(), "became leader; starting controllers");
        tokio::select! {
            r = run_controllers(&clients, &config, clock.clone()) => return r,
            _ = elector.hold() => {
                tracing::warn!(identity = %elector.identity(), "lost the controller-manager lease; stopping controllers");
            }
        }
    }
}

async fn run_controllers(
    clients: &identity::ControllerClients,
    config: &ControllersConfig,
    clock: Clock,
) -> Result<(), Error> {
    let enabled = config.enabled()?;
    // Tokens are refreshed by tasks of this run: a new run (after a lost lease) gets its own.
    let clients = clients.for_run();
    // Informers and leader election act as the manager itself; each controller's writes and
    // events as its own identity (the `client` each block below shadows this one with).
    let client = clients.manager().clone();
    let informers = Informers::new(&client);
    let mut set = tokio::task::JoinSet::new();
    let workers = config.workers;
    let (recorder, writer) = events::channel(client.clone(), clock.clone());
    set.spawn(writer.run());
    if enabled.contains("replicaset") {
        let client = clients.for_controller("replicaset", &mut set).await?;
        let c = replicaset::ReplicaSetController::register(
            &informers,
            client.clone(),
            clock.clone(),
            recorder.for_controller("replicaset-controller", &client),
        );
        set.spawn(c.run(workers));
    }
    if enabled.contains("replicationcontroller") {
        let client = clients
            .for_controller("replicationcontroller", &mut set)
            .await?;
        let c = replicationcontroller::ReplicationManager::register(
            &informers,
            client.clone(),
            clock.clone(),
            recorder.for_controller("replication-controller", &client),
        );
        set.spawn(c.run(workers));
    }
    if enabled.contains("deployment") {
        let client = clients.for_controller("deployment", &mut set).await?;
        let c = deployment::DeploymentController::register(
            &informers,
            client.clone(),
            clock.clone(),
            recorder.for_controller("deployment-controller", &client),
        );
        set.spawn(c.run(workers));
    }
    if enabled.contains("daemonset") {
        let client = clients.for_controller("daemonset", &mut set).await?;
        let c = daemonset::DaemonSetController::register(
            &informers,
            client.clone(),
            clock.clone(),
            recorder.for_controller("daemonset-controller", &client),
        );
        set.spawn(c.run(workers));
    }
    if enabled.contains("statefulset") {
        let client = clients.for_controller("statefulset", &mut set).await?;
        let c = statefulset::StatefulSetController::register(
            &informers,
            client.clone(),
            clock.clone(),
            recorder.for_controller("statefulset-controller", &client),
        );
        set.spawn(c.run(workers));
    }
    if enabled.contains("cronjob") {
        let client = clients.for_controller("cronjob", &mut set).await?;
        let c = cronjob::CronJobController::register(
            &informers,
            client.clone(),
            clock.clone(),
            recorder.for_controller("cronjob-controller", &client),
        );
        set.spawn(c.run(workers));
    }
    if enabled.contains("job") {
        let client = clients.for_controller("job", &mut set).await?;
        let c = job::JobController::register(
            &informers,
            client.clone(),
            clock.clone(),
            recorder.for_controller("job-controller", &client),
            config.metrics.clone(),
        );
        set.spawn(c.run(workers));
    }
    if enabled.contains("ttl-after-finished") {
        let client = clients
            .for_controller("ttl-after-finished", &mut set)
            .await?;
        let c = ttlafterfinished::TtlAfterFinishedController::register(
            &informers,
            client.clone(),
            clock.clone(),
        );
        set.spawn(c.run(workers.min(2)));
    }
    if enabled.contains("endpoint") {
        let client = clients.for_controller("endpoint", &mut set).await?;
        let c = endpoints::EndpointsController::register(&informers, client.clone(), clock.clone());
        set.spawn(c.run(workers));
    }
    if enabled.contains("endpointslice") {
        let client = clients.for_controller("endpointslice", &mut set).await?;
        let c = endpointslice::EndpointSliceController::register(&informers, client.clone());
        set.spawn(c.run(workers));
    }
    if enabled.contains("nodeipam") {
        let client = clients.for_controller("nodeipam", &mut set).await?;
        let cidrs = nodeipam::CidrSet::new(&config.cluster_cidr, config.node_cidr_mask_size)?;
        let c = nodeipam::NodeIpamController::register(&informers, client.clone(), cidrs);
        set.spawn(c.run());
    }
    if enabled.contains("nodelifecycle") {
        let client = clients.for_controller("nodelifecycle", &mut set).await?;
        let c = nodelifecycle::NodeLifecycleController::register(
            &informers,
            client.clone(),
            clock.clone(),
            config.node_lifecycle.clone(),
            recorder.for_controller("node-controller", &client),
        );
        set.spawn(c.run(workers.min(2)));
    }
    if enabled.contains("taint-eviction-controller") {
        let client = clients
            .for_controller("taint-eviction-controller", &mut set)
            .await?;
        let c = tainteviction::TaintEvictionController::register(
            &informers,
            client.clone(),
            clock.clone(),
            recorder.for_controller("taint-eviction-controller", &client),
        );
        set.spawn(c.run(workers.min(2)));
    }
    if enabled.contains("disruption") {
        let client = clients.for_controller("disruption", &mut set).await?;
        let c =
            disruption::DisruptionController::register(&informers, client.clone(), clock.clone());
        set.spawn(c.run(workers));
    }
    if enabled.contains("serviceaccount") {
        let client = clients.for_controller("serviceaccount", &mut set).await?;
        let c = serviceaccount::ServiceAccountController::register(&informers, client.clone());
        set.spawn(c.run(workers.min(2)));
    }
    if enabled.contains("csrapproving") {
        let client = clients.for_controller("csrapproving", &mut set).await?;
        let c = csr::approving::CsrApprover::register(&informers, client.clone(), clock.clone());
        set.spawn(c.run(workers.min(2)));
    }
    if enabled.contains("csrsigning") {
        let client = clients.for_controller("csrsigning", &mut set).await?;
        let duration = std::time::Duration::from_secs(config.cluster_signing_duration_secs);
        let ca = match (
            &config.cluster_signing_ca,
            &config.cluster_signing_cert_file,
            &config.cluster_signing_key_file,
        ) {
            (Some(ca), _, _) => {
                let mut ca = ca.clone();
                ca.duration = duration;
                Some(ca)
            }
            (None, Some(cert), Some(key)) => {
                Some(csr::signing::SigningCa::from_files(cert, key, duration)?)
            }
            _ => None,
        };
        match ca {
            Some(ca) => {
                let c = csr::signing::CsrSigner::register(
                    &informers,
                    client.clone(),
                    clock.clone(),
                    ca,
                );
                set.spawn(c.run(workers.min(2)));
            }
            None => tracing::info!("no cluster signing CA configured; csrsigning not started"),
        }
    }
    if enabled.contains("tokencleaner") {
        let client = clients.for_controller("tokencleaner", &mut set).await?;
        let c = csr::tokencleaner::TokenCleaner::register(client.clone(), clock.clone());
        set.spawn(c.run(1));
    }
    if enabled.contains("bootstrapsigner") {
        let client = clients.for_controller("bootstrapsigner", &mut set).await?;
        let c = bootstrapsigner::BootstrapSigner::register(client.clone(), clock.clone());
        set.spawn(c.run());
    }
    if enabled.contains("root-ca-cert-publisher") {
        let client = clients
            .for_controller("root-ca-cert-publisher", &mut set)
            .await?;
        match config.root_ca_pem.clone() {
            Some(pem) => {
                let c = rootca::RootCaPublisher::register(&informers, client.clone(), pem);
                set.spawn(c.run(workers.min(2)));
            }
            None => tracing::info!("no root CA configured; root-ca-cert-publisher not started"),
        }
    }
    // kube starts `serviceaccount-token` apart from the others, whenever the key is given and
    // `--controllers` does not turn it off.
    match &config.service_account_private_key_file {
        Some(_) if !enabled.contains("serviceaccount-token") => {
            tracing::info!("serviceaccount-token disabled by --controllers")
        }
        Some(path) => {
            // As kube's, it runs with the manager's own credentials, not a token of its
            // own making.
            let pem = std::fs::read_to_string(path)
                .map_err(|e| tokens::TokensError::Key(format!("{}: {e}", path.display())))?;
            let signer = tokens::TokenSigner::from_pem(&pem)?;
            let c = tokens::TokensController::register(
                &informers,
                clients.manager().clone(),
                signer,
                config.root_ca_pem.clone(),
            );
            set.spawn(c.run(workers.min(2)));
        }
        None => tracing::info!(
            "no --service-account-private-key-file; serviceaccount-token not started"
        ),
    }
    if enabled.contains("horizontalpodautoscaling") {
        let client = clients
            .for_controller("horizontalpodautoscaling", &mut set)
            .await?;
        let c = hpa::HpaController::register(
            &informers,
            client.clone(),
            clock.clone(),
            recorder.for_controller("horizontal-pod-autoscaler", &client),
            config.hpa.config(),
        );
        set.spawn(c.run(workers));
    }
    if enabled.contains("pvc-protection") {
        let client = clients.for_controller("pvc-protection", &mut set).await?;
        let c =
            storageprotection::StorageProtectionController::register(&informers, client.clone());
        set.spawn(c.run(workers));
    }
    if enabled.contains("resourcequota") {
        let client = clients.for_controller("resourcequota", &mut set).await?;
        let c = resourcequota::ResourceQuotaController::register(
            &informers,
            client.clone(),
            clock.clone(),
        );
        set.spawn(c.run());
    }
    if enabled.contains("podgc") {
        let client = clients.for_controller("podgc", &mut set).await?;
        let c = podgc::PodGcController::register(&informers, client.clone());
        set.spawn(c.run());
    }
    if enabled.contains("persistentvolume-binder") {
        let client = clients
            .for_controller("persistentvolume-binder", &mut set)
            .await?;
        let c = persistentvolume::PersistentVolumeController::register(
            &informers,
            client.clone(),
            clock.clone(),
            recorder.for_controller("persistentvolume-controller", &client),
        );
        set.spawn(c.run());
    }
    if enabled.contains("local-path-provisioner") {
        let client = clients
            .for_controller("local-path-provisioner", &mut set)
            .await?;
        let c = localpath::LocalPathProvisioner::register(
            &informers,
            client.clone(),
            recorder.for_controller(localpath::PROVISIONER, &client),
            localpath::LocalPathConfig {
                base_dir: config.local_path_dir.clone(),
                helper_image: config.local_path_helper_image.clone(),
                ..Default::default()
            },
        );
        set.spawn(c.run(workers.min(2)));
    }
    informers.spawn(&mut set);
    tracing::info!(controllers = ?enabled, "controllers running");
    while set.join_next().await.is_some() {}
    Ok(())
}

/// Splits a queue key `namespace/name` (or `name` for cluster-scoped objects).
pub fn split_key(key: &str) -> (&str, &str) {
    key.split_once('/').unwrap_or(("", key))
}

pub fn key(namespace: &str, name: &str) -> String {
    if namespace.is_empty() {
        name.to_string()
    } else {
        format!("{namespace}/{name}")
    }
}

/// Whether a kube error is the API's NotFound.
pub fn is_not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404)
}

pub fn is_conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409)
}

pub fn is_already_exists(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409 && s.reason == "AlreadyExists")
}

/// How long a sync waits before looking again at something time will change.
pub(crate) fn secs(s: i64) -> Duration {
    Duration::from_secs(s.max(0) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controllers_flag_follows_kube_syntax() {
        let mut c = ControllersConfig::default();
        assert_eq!(c.enabled().unwrap().len(), ALL.len());
        c.set_controllers("*,-podgc");
        let e = c.enabled().unwrap();
        assert!(!e.contains("podgc") && e.contains("deployment"));
        c.set_controllers("replicaset,deployment");
        assert_eq!(
            c.enabled().unwrap().into_iter().collect::<Vec<_>>(),
            ["deployment", "replicaset"]
        );
        c.set_controllers("*,-nope");
        assert!(matches!(c.enabled(), Err(Error::UnknownController(n)) if n == "-nope"));
    }
}
