//! Startup wiring and the HTTPS front: store, PKI, tokens, default namespaces, then a rustls
//! listener (HTTP/2 and HTTP/1.1) whose connections feed [`Api::handle`].

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http_body_util::{combinators::BoxBody, BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming as HyperBody};
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use pea_control_store::{etcd::EtcdStore, sqlite::SqliteStore, Store, StoreError};
use serde::Deserialize;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer};

use crate::api::{Api, Incoming, Reply, MAX_BODY};
use crate::auth::{user_from_cert, Tokens, User, ADMIN_GROUP};
use crate::kubelet_proxy::{is_upgrade_request, Forwarded, KubeletClient};
use crate::metrics::Metrics;
use crate::pki::{write_atomic, Pki, PkiError};
use crate::resources::Resources;
use crate::status::ApiError;

/// Server configuration (also the JSON config file's schema).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default, rename_all = "camelCase")]
pub struct Config {
    /// State: store.db, pki/, tokens.csv, admin.kubeconfig.
    pub data_dir: PathBuf,
    /// Where to listen; loopback by default.
    pub listen: SocketAddr,
    /// kube-apiserver's `--advertise-address`: the address the `default/kubernetes` Service's
    /// endpoints name (default: `listen`'s, unless that is loopback or a wildcard).
    pub advertise_address: Option<std::net::IpAddr>,
    /// An etcd v3 endpoint (e.g. http://127.0.0.1:2379); `None` uses the embedded store.
    pub etcd: Option<String>,
    /// Serve plain HTTP (bearer tokens only). Refused unless `listen` is a loopback address.
    pub insecure_http: bool,
    /// Extra names and IPs for the serving certificate.
    pub extra_sans: Vec<String>,
    /// Seconds between BOOKMARK events on watches that allow them.
    pub bookmark_interval_secs: u64,
    /// Every this many seconds the store forgets history older than the revision it had one
    /// interval ago (kube-apiserver's default is 5 minutes); 0 disables compaction.
    pub compaction_interval_secs: u64,
    /// The range Service cluster IPs are allocated from.
    pub service_cidr: String,
    /// The range Service node ports are allocated from (`first-last` or `first+offset`).
    pub service_node_port_range: String,
    /// Seconds between garbage collector sweeps (one always runs at startup; 0: only then).
    pub gc_sweep_interval_secs: u64,
    /// A PEM bundle to verify kubelets' serving certificates with (kube-apiserver's
    /// `--kubelet-certificate-authority`); `None` does not verify them, as kube's default.
    pub kubelet_certificate_authority: Option<PathBuf>,
    /// kube-apiserver's `--authorization-mode`: `Node,RBAC` (the default), `RBAC`, or
    /// `AlwaysAllow` (every authenticated request is allowed; for comparisons only).
    pub authorization_mode: String,
    /// Seconds between scrapes of the kubelets' resource metrics (metrics-server's
    /// `--metric-resolution`, 15 s); 0 turns the metrics.k8s.io scraper off.
    pub metric_resolution_secs: f64,
    /// Service-account token flags (issuer, signing key, key files, max expiration, API
    /// audiences).
    pub service_accounts: crate::serviceaccount::Config,
    /// kube-apiserver's `--disable-admission-plugins` (of pea's: `ServiceAccount`), e.g. for
    /// an API server that runs without the controllers that create `default` accounts.
    pub disable_admission_plugins: Vec<String>,
    /// kube-apiserver's `--admission-control-config-file`: an AdmissionConfiguration with
    /// the PodSecurity plugin's defaults and exemptions.
    pub admission_control_config_file: Option<PathBuf>,
    /// Whether admission reads Namespaces, ServiceAccounts, quotas, LimitRanges,
    /// PriorityClasses and webhook configurations from watch-fed caches (the default) or
    /// from the store on every request (for comparisons: `bench-control --no-admission-caches`).
    pub admission_caches: bool,
    /// kube-apiserver's `--enable-bootstrap-token-auth` (on by default here, as kubeadm sets
    /// it): `ID.SECRET` bearer tokens checked against `kube-system/bootstrap-token-ID`.
    pub enable_bootstrap_token_auth: bool,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("/var/lib/pea/control"),
            listen: SocketAddr::from(([127, 0, 0, 1], 6443)),
            advertise_address: None,
            etcd: None,
            insecure_http: false,
            extra_sans: Vec::new(),
            bookmark_interval_secs: 60,
            compaction_interval_secs: 300,
            service_cidr: "10.96.0.0/12".into(),
            service_node_port_range: "30000-32767".into(),
            gc_sweep_interval_secs: 60,
            kubelet_certificate_authority: None,
            authorization_mode: "Node,RBAC".into(),
            metric_resolution_secs: 15.0,
            service_accounts: Default::default(),
            disable_admission_plugins: Vec::new(),
            admission_control_config_file: None,
            admission_caches: true,
            enable_bootstrap_token_auth: true,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("creating data dir {path}: {source}")]
    DataDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("pki: {0}")]
    Pki(#[from] PkiError),
    #[error("tokens: {0}")]
    Tokens(#[from] crate::auth::AuthError),
    #[error("listening on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("plain HTTP is only allowed on a loopback address, not {0}")]
    InsecureNonLoopback(SocketAddr),
    #[error("tls setup: {0}")]
    Tls(String),
    #[error("config: {0}")]
    Cidr(#[from] crate::ipalloc::CidrError),
    #[error("config: {0}")]
    NodePortRange(#[from] crate::portalloc::PortRangeError),
    #[error("bootstrapping default namespaces: {0}")]
    Bootstrap(ApiError),
    #[error(transparent)]
    KubeletClient(#[from] crate::kubelet_proxy::KubeletClientError),
    #[error("config: {0}")]
    AuthorizationMode(String),
    #[error("config: {0}")]
    AdmissionPlugin(String),
    #[error(transparent)]
    ServiceAccountKey(#[from] crate::serviceaccount::KeyError),
}

/// Serves the requests under a path prefix beside the API (pea-dashboard at `/dashboard`). It
/// sees the request as it came (its body read, at most [`MAX_BODY`] bytes) and does its own
/// authentication: the API's (bearer token, client certificate) does not apply to it. When the
/// connection presented a client certificate that chains to the cluster CA (verified by the TLS
/// layer), the request's extensions hold its [`User`] (CN and O), so the handler may offer a
/// certificate login (see [`InProcess::connect_as`]).
pub type MountHandler = Arc<
    dyn Fn(
            Request<Bytes>,
        ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Response<Body>> + Send>>
        + Send
        + Sync,
>;

/// The mounted handlers, by prefix; shared by every connection, set after start.
#[derive(Clone, Default)]
struct Mounts(Arc<std::sync::RwLock<Vec<(String, MountHandler)>>>);

impl std::fmt::Debug for Mounts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let prefixes: Vec<String> = self
            .0
            .read()
            .map(|m| m.iter().map(|(p, _)| p.clone()).collect())
            .unwrap_or_default();
        f.debug_tuple("Mounts").field(&prefixes).finish()
    }
}

impl Mounts {
    fn find(&self, path: &str) -> Option<MountHandler> {
        let mounts = self.0.read().ok()?;
        mounts
            .iter()
            .find(|(prefix, _)| {
                path.strip_prefix(prefix.as_str())
                    .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
            })
            .map(|(_, h)| h.clone())
    }
}

/// A running server. Dropping it does not stop it; call [`Running::shutdown`].
#[derive(Debug)]
pub struct Running {
    pub addr: SocketAddr,
    pub kubeconfig: PathBuf,
    pub admin_token: String,
    pub pki: Arc<Pki>,
    pub api: Arc<Api>,
    stop: watch::Sender<bool>,
    accept: tokio::task::JoinHandle<()>,
    mounts: Mounts,
    /// The URL clients reach the server at, and whether it is plain HTTP.
    server_url: String,
    insecure_http: bool,
    in_process: InProcess,
}

/// In-process connections to a running server (see [`Running::in_process`]).
#[derive(Debug, Clone)]
pub struct InProcess {
    front: Front,
    stop: watch::Receiver<bool>,
}

impl InProcess {
    /// A new in-memory HTTP/1.1 connection to the server on which every request is
    /// authenticated as `user`, exactly as if it had come over TLS with a client certificate
    /// for that user: the same authentication order (a bearer token sent on it would still
    /// be checked first), authorization, admission and audit. No credential is made.
    ///
    /// For pea-dashboard's certificate login: pea-control passes it only the identity the TLS
    /// layer verified on the browser's own connection, so the dashboard acts as that user and
    /// the authorizer decides — it cannot widen access. The connection ends with the server.
    pub fn connect_as(&self, user: User) -> tokio::io::DuplexStream {
        let (client, server) = tokio::io::duplex(64 * 1024);
        let (front, mut stop) = (self.front.clone(), self.stop.clone());
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| {
                serve(front.clone(), Some(user.clone()), req)
            });
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            let conn = builder.serve_connection_with_upgrades(TokioIo::new(server), svc);
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                _ = stop.changed() => {}
            }
        });
        client
    }
}

impl Running {
    /// Writes `<data dir>/<file>`: a kubeconfig with a client certificate for `user` in
    /// `groups`, issued by the cluster CA at every start, so an in-process component (the
    /// scheduler as `system:kube-scheduler`) runs with what its RBAC role grants instead of
    /// the admin's credentials. Over plain HTTP (no client certificates) it is the admin's.
    pub fn component_kubeconfig(
        &self,
        file: &str,
        user: &str,
        groups: &[&str],
    ) -> Result<PathBuf, ServerError> {
        if self.insecure_http {
            return Ok(self.kubeconfig.clone());
        }
        let pair = self.pki.issue_client(user, groups)?;
        let text = crate::kubeconfig::render(&self.server_url, &self.pki.ca.cert_pem, user, &pair);
        let path = self
            .kubeconfig
            .parent()
            .map(|d| d.join(file))
            .unwrap_or_else(|| PathBuf::from(file));
        write_atomic(&path, text.as_bytes(), 0o600)?;
        Ok(path)
    }

    /// Serves `prefix` (e.g. "/dashboard": that path and everything under it) with `handler`
    /// from now on. API paths are never shadowed: none starts with a mounted prefix.
    pub fn mount(&self, prefix: &str, handler: MountHandler) {
        let prefix = prefix.trim_end_matches('/').to_string();
        if let Ok(mut m) = self.mounts.0.write() {
            m.retain(|(p, _)| *p != prefix);
            m.push((prefix, handler));
        }
    }

    /// Opens in-process connections authenticated as a given user (pea-dashboard's
    /// certificate login).
    pub fn in_process(&self) -> InProcess {
        self.in_process.clone()
    }

    /// Stops accepting and closes open connections (watches end).
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.accept.await;
    }
}

async fn open_store(config: &Config) -> Result<Arc<dyn Store>, ServerError> {
    Ok(match &config.etcd {
        Some(endpoint) => Arc::new(EtcdStore::connect(endpoint).await?),
        None => {
            let path = config.data_dir.join("store.db");
            Arc::new(
                tokio::task::spawn_blocking(move || SqliteStore::open(path))
                    .await
                    .map_err(|_| StoreError::Closed)??,
            )
        }
    })
}

/// Reads the token file, creating it with a fresh admin token on first start.
fn load_tokens(path: &Path) -> Result<(Tokens, String), ServerError> {
    if !path.exists() {
        let mut raw = [0u8; 24];
        crate::objects::random_bytes(&mut raw);
        let token: String = raw.iter().map(|b| format!("{b:02x}")).collect();
        write_atomic(
            path,
            format!("{token},admin,admin,\"{ADMIN_GROUP}\"\n").as_bytes(),
            0o600,
        )?;
    }
    let tokens = Tokens::load(path)?;
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let admin = text
        .lines()
        .find(|l| l.contains(ADMIN_GROUP))
        .and_then(|l| l.split(',').next())
        .unwrap_or("")
        .to_string();
    Ok((tokens, admin))
}

/// The admin kubeconfig: over HTTPS the admin client certificate; over plain HTTP (where no
/// client certificate is presented) the admin bearer token.
fn kubeconfig(server: &str, pki: &Pki, http_token: Option<&str>) -> String {
    if let Some(token) = http_token {
        return format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: pea\n  cluster:\n    server: {server}\nusers:\n- name: pea-admin\n  user:\n    token: {token}\ncontexts:\n- name: pea\n  context:\n    cluster: pea\n    user: pea-admin\ncurrent-context: pea\n"
        );
    }
    crate::kubeconfig::render(server, &pki.ca.cert_pem, "pea-admin", &pki.admin)
}

fn tls_config(pki: &Pki) -> Result<rustls::ServerConfig, ServerError> {
    let tls = |e: &dyn std::fmt::Display| ServerError::Tls(e.to_string());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(pki.ca.cert_pem.as_bytes()) {
        roots.add(c.map_err(|e| tls(&e))?).map_err(|e| tls(&e))?;
    }
    // Client certificates are optional at the TLS layer (bearer tokens work without one); an
    // offered certificate must chain to our CA.
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .allow_unauthenticated()
    .build()
    .map_err(|e| tls(&e))?;
    let certs: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(pki.serving.cert_pem.as_bytes())
            .collect::<Result<_, _>>()
            .map_err(|e| tls(&e))?;
    let key = PrivateKeyDer::from_pem_slice(pki.serving.key_pem.as_bytes()).map_err(|e| tls(&e))?;
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| tls(&e))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)
        .map_err(|e| tls(&e))?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(cfg)
}

/// Starts the server on the current tokio runtime.
pub async fn start(config: Config) -> Result<Running, ServerError> {
    if config.insecure_http && !config.listen.ip().is_loopback() {
        return Err(ServerError::InsecureNonLoopback(config.listen));
    }
    let service_cidr = crate::ipalloc::ServiceCidr::parse(&config.service_cidr)?;
    let node_port_range = crate::portalloc::PortRange::parse(&config.service_node_port_range)?;
    let authorization_mode = crate::authz::Mode::parse(&config.authorization_mode)
        .map_err(ServerError::AuthorizationMode)?;
    std::fs::create_dir_all(&config.data_dir).map_err(|source| ServerError::DataDir {
        path: config.data_dir.clone(),
        source,
    })?;
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::set_permissions(&config.data_dir, std::fs::Permissions::from_mode(0o700));
    let store = open_store(&config).await?;
    // The serving certificate names the listen IP too, so the kubeconfig written below works.
    let mut sans = config.extra_sans.clone();
    if !config.listen.ip().is_unspecified() {
        sans.push(config.listen.ip().to_string());
    }
    // In-cluster clients (client-go's and kube-rs's in-cluster config) dial the
    // `default/kubernetes` Service's IP or name and check it against the service-account
    // ca.crt: kube-apiserver's serving certificate names both, and so does this one.
    sans.extend(crate::kubernetes_service::serving_names(&service_cidr));
    let pki = Arc::new(Pki::load_or_create(&config.data_dir.join("pki"), &sans)?);
    let (tokens, admin_token) = load_tokens(&config.data_dir.join("tokens.csv"))?;
    let mut service_accounts =
        crate::serviceaccount::ServiceAccounts::load(&config.service_accounts, &pki.dir)?;
    for plugin in &config.disable_admission_plugins {
        match plugin.as_str() {
            crate::serviceaccount::admission::PLUGIN => service_accounts.admission = false,
            other => {
                return Err(ServerError::AdmissionPlugin(format!(
                    "--disable-admission-plugins: unknown plugin {other:?} (pea knows: {})",
                    crate::serviceaccount::admission::PLUGIN
                )))
            }
        }
    }
    let service_accounts = Arc::new(service_accounts);
    let admission = match &config.admission_control_config_file {
        Some(path) => crate::admission::plugin_config::load(path).map_err(|e| {
            ServerError::AdmissionPlugin(format!("--admission-control-config-file: {e}"))
        })?,
        None => Default::default(),
    };
    let kubelet = Arc::new(KubeletClient::new(
        &pki,
        config.kubelet_certificate_authority.as_deref(),
    )?);
    let listener =
        TcpListener::bind(config.listen)
            .await
            .map_err(|source| ServerError::Listen {
                addr: config.listen,
                source,
            })?;
    let addr = listener
        .local_addr()
        .map_err(|source| ServerError::Listen {
            addr: config.listen,
            source,
        })?;
    let resources = Resources::builtin();
    let api = Arc::new(Api {
        store,
        informers: crate::admission::informers::Informers::new(&resources),
        admission,
        resources,
        clock: Arc::new(SystemTime::now),
        metrics: Metrics::default(),
        server_address: addr.to_string(),
        bookmark_interval: Duration::from_secs(config.bookmark_interval_secs.max(1)),
        openapi_cache: Default::default(),
        watch_cache: Default::default(),
        service_cidr,
        node_port_range,
        authz: crate::authz::Authorizer::new(authorization_mode),
        resource_metrics: Arc::new(crate::resource_metrics::ResourceMetrics::new(
            Duration::from_secs_f64(config.metric_resolution_secs.clamp(0.0, 3600.0)),
        )),
        service_accounts: Some(service_accounts),
    });
    api.ensure_default_namespaces()
        .await
        .map_err(ServerError::Bootstrap)?;
    // kube-apiserver's bootstrap roles and bindings, the RBAC index, and the aggregated roles
    // (admin, edit, view) complete before the first request.
    crate::rbac::bootstrap::reconcile(&api)
        .await
        .map_err(ServerError::Bootstrap)?;
    crate::priority::ensure_system_classes(&api)
        .await
        .map_err(ServerError::Bootstrap)?;
    // kubeadm's join objects: cluster-info for discovery, the bootstrap-token bindings.
    crate::certificates::cluster_info::ensure(
        &api,
        &format!(
            "{}://{}",
            if config.insecure_http {
                "http"
            } else {
                "https"
            },
            addr
        ),
        &pki.ca.cert_pem,
    )
    .await
    .map_err(ServerError::Bootstrap)?;
    // In-cluster clients find the API at `kubernetes.default` from the first pod on.
    let publish = crate::kubernetes_service::Publish::new(config.advertise_address, addr);
    if publish.advertise.is_none() {
        tracing::info!(%addr, "default/kubernetes gets no endpoint from this server: it listens on loopback or a wildcard (set --advertise-address)");
    }
    // Not fatal: a user Service already holding the range's first address (kube logs the same
    // conflict every round) must not keep the API down.
    if let Err(e) = crate::kubernetes_service::reconcile(&api, publish).await {
        tracing::warn!(error = %e, "creating the default/kubernetes service");
    }
    let rbac_revision = api.authz.rbac.resync(api.store.as_ref()).await?;
    // Custom resources are served from the first request on (CRDs survive restarts).
    crate::crd::controller::reconcile(&api).await;
    // Aggregated roles can aggregate aggregated roles (admin ⊃ edit ⊃ view): settle them all.
    for _ in 0..8 {
        if crate::rbac::aggregation::aggregate_once(&api).await == 0 {
            break;
        }
    }
    let scheme = if config.insecure_http {
        "http"
    } else {
        "https"
    };
    let kubeconfig_path = config.data_dir.join("admin.kubeconfig");
    // A wildcard listen address is reached through loopback (which the certificate names).
    let client_addr = if addr.ip().is_unspecified() {
        SocketAddr::new(std::net::Ipv4Addr::LOCALHOST.into(), addr.port())
    } else {
        addr
    };
    write_atomic(
        &kubeconfig_path,
        kubeconfig(
            &format!("{scheme}://{client_addr}"),
            &pki,
            config.insecure_http.then_some(admin_token.as_str()),
        )
        .as_bytes(),
        0o600,
    )?;
    let acceptor = if config.insecure_http {
        None
    } else {
        Some(tokio_rustls::TlsAcceptor::from(Arc::new(tls_config(&pki)?)))
    };
    let (stop, stop_rx) = watch::channel(false);
    // The node authorizer answers from its graph from the first request on.
    if api.authz.mode.node {
        crate::node_authz::populator::NodeGraph::start(&api, stop_rx.clone()).await?;
    }
    // Admission reads its caches from the first request on: list them before serving.
    if config.admission_caches {
        crate::admission::informers::Informers::start(&api, stop_rx.clone()).await?;
    }
    let tokens = Arc::new(tokens);
    if config.compaction_interval_secs > 0 {
        tokio::spawn(compact_periodically(
            api.store.clone(),
            Duration::from_secs(config.compaction_interval_secs),
            stop_rx.clone(),
        ));
    }
    tokio::spawn(crate::gc_sweep::run(
        api.clone(),
        Duration::from_secs(config.gc_sweep_interval_secs),
        stop_rx.clone(),
    ));
    tokio::spawn(
        api.authz
            .rbac
            .clone()
            .run(api.store.clone(), rbac_revision, stop_rx.clone()),
    );
    tokio::spawn(crate::rbac::aggregation::run(api.clone(), stop_rx.clone()));
    tokio::spawn(crate::kubernetes_service::run(
        api.clone(),
        publish,
        stop_rx.clone(),
    ));
    tokio::spawn(crate::crd::controller::run_periodically(
        api.clone(),
        Duration::from_secs(10),
        stop_rx.clone(),
    ));
    let mounts = Mounts::default();
    if config.metric_resolution_secs > 0.0 {
        tokio::spawn(crate::resource_metrics::scraper::run(
            api.clone(),
            kubelet.clone(),
            api.resource_metrics.clone(),
            stop_rx.clone(),
        ));
    }
    let front = Front {
        api: api.clone(),
        tokens,
        kubelet,
        mounts: mounts.clone(),
        bootstrap_tokens: config.enable_bootstrap_token_auth,
    };
    let in_process = InProcess {
        front: front.clone(),
        stop: stop_rx.clone(),
    };
    let accept = tokio::spawn(accept_loop(listener, acceptor, front, stop_rx));
    tracing::info!(%addr, store = %if config.etcd.is_some() { "etcd" } else { "embedded" }, "pea-control serving");
    Ok(Running {
        addr,
        kubeconfig: kubeconfig_path,
        admin_token,
        pki,
        api,
        stop,
        accept,
        mounts,
        server_url: format!("{scheme}://{client_addr}"),
        insecure_http: config.insecure_http,
        in_process,
    })
}

/// Compacts the store to the revision it had one interval earlier, so watches and lists can
/// resume from anything newer than one interval and history does not grow without bound.
async fn compact_periodically(
    store: Arc<dyn Store>,
    every: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let mut previous: Option<i64> = None;
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            _ = tokio::time::sleep(every) => {}
        }
        let now = match store.current_revision().await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "reading the revision for compaction failed");
                continue;
            }
        };
        if let Some(target) = previous.filter(|p| *p > 0) {
            match store.compact(target).await {
                Ok(()) => tracing::info!(revision = target, "compacted store"),
                // Nothing new since the last compaction.
                Err(StoreError::Compacted { .. }) => {}
                Err(e) => tracing::warn!(revision = target, error = %e, "compaction failed"),
            }
        }
        previous = Some(now);
    }
}

/// What every connection's requests share.
#[derive(Debug, Clone)]
struct Front {
    api: Arc<Api>,
    tokens: Arc<Tokens>,
    kubelet: Arc<KubeletClient>,
    mounts: Mounts,
    bootstrap_tokens: bool,
}

async fn accept_loop(
    listener: TcpListener,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
    front: Front,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let (tcp, peer) = tokio::select! {
            _ = stop.changed() => return,
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = tcp.set_nodelay(true);
        let (front, acceptor, mut stop) = (front.clone(), acceptor.clone(), stop.clone());
        tokio::spawn(async move {
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            match acceptor {
                Some(acceptor) => {
                    let tls =
                        match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp))
                            .await
                        {
                            Ok(Ok(t)) => t,
                            Ok(Err(e)) => {
                                tracing::debug!(%peer, error = %e, "tls handshake failed");
                                return;
                            }
                            Err(_) => return,
                        };
                    let cert_user = tls
                        .get_ref()
                        .1
                        .peer_certificates()
                        .and_then(|c| c.first())
                        .and_then(|c| user_from_cert(c));
                    let svc = hyper::service::service_fn(move |req| {
                        serve(front.clone(), cert_user.clone(), req)
                    });
                    // Upgrades: exec/attach/port-forward hand the connection to a kubelet.
                    let conn = builder.serve_connection_with_upgrades(TokioIo::new(tls), svc);
                    tokio::pin!(conn);
                    tokio::select! {
                        _ = conn.as_mut() => {}
                        _ = stop.changed() => {}
                    }
                }
                None => {
                    let svc =
                        hyper::service::service_fn(move |req| serve(front.clone(), None, req));
                    let conn = builder.serve_connection_with_upgrades(TokioIo::new(tcp), svc);
                    tokio::pin!(conn);
                    tokio::select! {
                        _ = conn.as_mut() => {}
                        _ = stop.changed() => {}
                    }
                }
            }
        });
    }
}

/// Response bodies of the HTTP front.
pub type Body = BoxBody<Bytes, Infallible>;

/// Bytes of an oversized body read and discarded so the client can finish sending and read the
/// 413 (instead of a broken pipe); beyond this the connection is simply closed.
const DRAIN_LIMIT: usize = 16 * 1024 * 1024;

/// Reads a request body of at most [`MAX_BODY`] bytes.
async fn read_body(mut body: HyperBody) -> Result<Bytes, ApiError> {
    let mut buf = Vec::new();
    let mut seen = 0usize;
    while let Some(frame) = body.frame().await {
        let frame =
            frame.map_err(|e| ApiError::BadRequest(format!("reading request body: {e}")))?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        seen += data.len();
        if seen > DRAIN_LIMIT {
            break;
        }
        if seen <= MAX_BODY {
            buf.extend_from_slice(&data);
        }
    }
    if seen > MAX_BODY {
        return Err(ApiError::TooLarge { limit: MAX_BODY });
    }
    Ok(Bytes::from(buf))
}

fn full(code: u16, content_type: &str, body: Vec<u8>) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(body)).boxed());
    *r.status_mut() =
        hyper::StatusCode::from_u16(code).unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
    if let Ok(v) = content_type.parse() {
        r.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    r
}

fn error_response(e: ApiError) -> Response<Body> {
    full(
        e.code(),
        "application/json",
        e.to_status().to_string().into_bytes(),
    )
}

/// One HTTP request: authenticate, read the bounded body, run the pipeline, encode the reply.
async fn serve(
    front: Front,
    cert_user: Option<User>,
    mut req: Request<HyperBody>,
) -> Result<Response<Body>, Infallible> {
    let Front {
        api,
        tokens,
        kubelet,
        mounts,
        bootstrap_tokens,
    } = front;
    let started = Instant::now();
    if let Some(handler) = mounts.find(req.uri().path()) {
        let (mut parts, body) = req.into_parts();
        if let Some(user) = cert_user {
            parts.extensions.insert(user);
        }
        let response = match read_body(body).await {
            Ok(body) => handler(Request::from_parts(parts, body)).await,
            Err(e) => error_response(e),
        };
        api.metrics
            .observe("other", "", response.status().as_u16(), started.elapsed());
        return Ok(response);
    }
    // Taken before the body is: only the request itself can hand its connection over.
    let upgrade = is_upgrade_request(req.headers()).then(|| hyper::upgrade::on(&mut req));
    let http_method = req.method().clone();
    let headers = req.headers().clone();
    let header = |name: hyper::header::HeaderName| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    let accept = header(hyper::header::ACCEPT);
    let content_type = header(hyper::header::CONTENT_TYPE);
    let authorization = header(hyper::header::AUTHORIZATION);
    let user_agent = header(hyper::header::USER_AGENT);
    let method = req.method().as_str().to_string();
    let path = req.uri().path().to_string();
    let query = req.uri().query().map(str::to_string);
    // A presented bearer token must be valid; otherwise the client certificate decides.
    let user = match authorization.strip_prefix("Bearer ") {
        Some(token) => match tokens.lookup(token.trim()) {
            Some(u) => Some(u.clone()),
            None => {
                let bootstrap = if bootstrap_tokens {
                    crate::certificates::bootstrap_token::authenticate(&api, token.trim()).await
                } else {
                    None
                };
                if let Some(Err(e)) = &bootstrap {
                    tracing::info!(error = %e, "bootstrap token refused");
                    api.metrics.observe(&method, "", 401, started.elapsed());
                    return Ok(error_response(ApiError::Unauthorized));
                }
                match bootstrap {
                    Some(r) => r.ok(),
                    None => {
                        match crate::serviceaccount::authenticate::authenticate(&api, token.trim())
                            .await
                        {
                            Some(Ok(u)) => Some(u),
                            failed => {
                                if let Some(Err(e)) = failed {
                                    tracing::info!(error = %e, "service-account token refused");
                                }
                                api.metrics.observe(&method, "", 401, started.elapsed());
                                return Ok(error_response(ApiError::Unauthorized));
                            }
                        }
                    }
                }
            }
        },
        None => cert_user,
    }
    .map(User::authenticated);
    let impersonate = crate::rbac::impersonation::Impersonation::from_headers(&headers);
    let body = match read_body(req.into_body()).await {
        Ok(b) => b,
        Err(e) => {
            api.metrics
                .observe(&method, "", e.code(), started.elapsed());
            return Ok(error_response(e));
        }
    };
    let (reply, verb, resource) = api
        .handle(Incoming {
            method: &method,
            path: &path,
            query: query.as_deref(),
            accept: &accept,
            content_type: &content_type,
            user_agent: &user_agent,
            body: body.clone(),
            user,
            impersonate,
        })
        .await;
    let response = match reply {
        Reply::Json {
            code,
            body,
            content_type,
            warnings,
        } => {
            // to_vec writes straight into a Vec; `Value::to_string` goes through `fmt::Write`.
            let mut r = full(
                code,
                content_type,
                serde_json::to_vec(&body).unwrap_or_default(),
            );
            for w in warnings {
                // A quoted-string with backslash escapes, as kube writes and client-go reads it.
                let text = w.replace('\\', "\\\\").replace('"', "\\\"");
                if let Ok(v) = format!("299 - \"{text}\"").parse() {
                    r.headers_mut().append(hyper::header::WARNING, v);
                }
            }
            r
        }
        Reply::Text {
            code,
            body,
            content_type,
        } => full(code, content_type, body.into_bytes()),
        Reply::Bytes {
            code,
            body,
            content_type,
        } => full(code, content_type, body.to_vec()),
        Reply::Kubelet(to) => {
            let forwarded = Forwarded {
                method: http_method,
                headers,
                body,
                upgrade,
            };
            kubelet.forward(&to, forwarded).await.unwrap_or_else(|e| {
                tracing::debug!(url = %to.url(), error = %e, "relaying to a kubelet failed");
                error_response(e)
            })
        }
        Reply::Stream(rx) => {
            let stream = futures_util::stream::unfold(rx, |mut rx| async move {
                rx.recv()
                    .await
                    .map(|b| (Ok::<_, Infallible>(Frame::data(b)), rx))
            });
            let mut r = Response::new(BodyExt::boxed(StreamBody::new(stream)));
            r.headers_mut().insert(
                hyper::header::CONTENT_TYPE,
                hyper::header::HeaderValue::from_static("application/json"),
            );
            r
        }
    };
    api.metrics.observe(
        &verb,
        &resource,
        response.status().as_u16(),
        started.elapsed(),
    );
    Ok(response)
}
