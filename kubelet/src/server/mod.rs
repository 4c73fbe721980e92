//! The kubelet's HTTPS server (port 10250): what the API server and admins reach on a node.
//!
//! | endpoint | what |
//! |---|---|
//! | `/healthz` | `ok` |
//! | `/pods` | the pods this kubelet runs ([`PodSource`]) as a PodList |
//! | `/containerLogs/<ns>/<pod>/<container>` | the CRI log decoded ([`logs`]) |
//! | `/exec/…`, `/attach/…`, `/portForward/<ns>/<pod>` | relayed to the runtime's streaming server ([`streaming`]) |
//! | `/stats/summary` | the Summary API ([`stats`]) |
//! | `/metrics`, `/metrics/resource` | Prometheus text ([`metrics`]) |
//!
//! Every request needs a client certificate that chains to the clientCAFile (anonymous: 401)
//! from `system:masters` or a configured API server identity (others: 403).
//!
//! The kubelet core wires it with [`serve`]: a [`ServerConfig`], a [`CriHandle`] (from
//! [`cri_connect::connect`], or `CriHandle::from(cri)` from its own [`crate::cri::Cri`]) and its
//! pods as a [`PodSource`].

pub mod cri_connect;
pub mod cri_log;
pub mod logs;
pub mod lookup;
pub mod metrics;
pub mod stats;
pub mod streaming;
pub mod tls;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{combinators::BoxBody, BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use k8s_openapi::api::core::v1::Pod;
use serde::Deserialize;
use tokio::sync::watch;

pub use cri_connect::CriHandle;

use tls::Caller;

/// The group whose members may use every endpoint.
pub const ADMIN_GROUP: &str = "system:masters";

/// The server's settings (KubeletConfiguration's `address`, `port`, `tlsCertFile`,
/// `tlsPrivateKeyFile`, `authentication.x509.clientCAFile`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default, rename_all = "camelCase")]
pub struct ServerConfig {
    /// Where to listen: the node's IP (inside its network namespace) and 10250. Loopback by
    /// default, so nothing is exposed until configured.
    pub address: SocketAddr,
    /// The node name (self-signed certificate CN and SAN, the Summary's nodeName).
    pub node_name: String,
    /// Serving certificate and key files; both unset: a self-signed pair in `cert_dir`.
    pub tls_cert_file: Option<PathBuf>,
    pub tls_private_key_file: Option<PathBuf>,
    /// Where the self-signed pair lives (kubelet's `--cert-dir`).
    pub cert_dir: PathBuf,
    /// CA bundle client certificates must chain to (pea-control's CA).
    pub client_ca_file: PathBuf,
    /// Users (certificate CNs) allowed besides `system:masters` members: the API server's
    /// kubelet client identity by default.
    pub authorized_users: Vec<String>,
    /// serverTLSBootstrap: the serving certificate comes from this resolver (issued through a
    /// CSR, swapped on renewal) instead of the files or a self-signed pair.
    #[serde(skip)]
    pub serving_certificate: Option<Arc<crate::certificate::serving::ServingCert>>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            address: SocketAddr::from(([127, 0, 0, 1], 10250)),
            node_name: String::new(),
            tls_cert_file: None,
            tls_private_key_file: None,
            cert_dir: PathBuf::from("/var/lib/pea/kubelet/pki"),
            client_ca_file: PathBuf::new(),
            authorized_users: vec!["kube-apiserver-kubelet-client".into()],
            serving_certificate: None,
        }
    }
}

/// The pods this kubelet runs, as the core knows them (with the status it reports).
pub trait PodSource: Send + Sync {
    fn pods(&self) -> Vec<Pod>;

    /// One pod by namespace and name.
    fn pod(&self, namespace: &str, name: &str) -> Option<Pod> {
        self.pods().into_iter().find(|p| {
            p.metadata.namespace.as_deref() == Some(namespace)
                && p.metadata.name.as_deref() == Some(name)
        })
    }
}

/// A fixed list (tests, or a kubelet that only serves what CRI shows).
impl PodSource for Vec<Pod> {
    fn pods(&self) -> Vec<Pod> {
        self.clone()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("server config: {0}")]
    Config(String),
    #[error("listening on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    BadRequest(String),
    #[error("pod {0:?} does not exist")]
    PodNotFound(String),
    #[error("CRI {call}: {message}")]
    Cri {
        call: &'static str,
        code: tonic::Code,
        message: String,
    },
    #[error("{0}")]
    Internal(String),
}

impl ServerError {
    pub fn cri(call: &'static str, status: tonic::Status) -> Self {
        ServerError::Cri {
            call,
            code: status.code(),
            message: status.message().to_string(),
        }
    }

    /// The HTTP status a failure answers with (the one place errors meet the wire).
    pub fn code(&self) -> u16 {
        match self {
            ServerError::BadRequest(_) => 400,
            ServerError::PodNotFound(_) => 404,
            ServerError::Cri { code, .. } => match code {
                tonic::Code::NotFound => 404,
                tonic::Code::InvalidArgument | tonic::Code::FailedPrecondition => 400,
                tonic::Code::Unimplemented => 501,
                _ => 500,
            },
            _ => 500,
        }
    }
}

/// Response bodies.
pub type Body = BoxBody<Bytes, Infallible>;

fn text(code: u16, body: impl Into<Bytes>, content_type: &'static str) -> Response<Body> {
    let mut r = Response::new(Full::new(body.into()).boxed());
    *r.status_mut() =
        hyper::StatusCode::from_u16(code).unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(content_type),
    );
    r
}

fn error_response(e: &ServerError) -> Response<Body> {
    text(e.code(), format!("{e}\n"), "text/plain; charset=utf-8")
}

/// What every request shares.
struct State {
    config: ServerConfig,
    cri: CriHandle,
    pods: Arc<dyn PodSource>,
    metrics: metrics::ServerMetrics,
    last_cpu: Mutex<Option<stats::CpuSample>>,
    boot_time: serde_json::Value,
}

/// A running server; [`Running::shutdown`] stops it.
#[derive(Debug)]
pub struct Running {
    pub addr: SocketAddr,
    stop: watch::Sender<bool>,
    accept: tokio::task::JoinHandle<()>,
}

impl Running {
    /// Stops accepting and closes open connections (streams end).
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.accept.await;
    }
}

/// Starts the server on the current tokio runtime.
pub async fn serve(
    config: ServerConfig,
    cri: CriHandle,
    pods: Arc<dyn PodSource>,
) -> Result<Running, ServerError> {
    if config.node_name.is_empty() {
        return Err(ServerError::Config("nodeName is required".into()));
    }
    if config.client_ca_file.as_os_str().is_empty() {
        return Err(ServerError::Config(
            "clientCAFile is required: without it no caller could be authenticated".into(),
        ));
    }
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls::server_config(&config)?));
    let listener = tokio::net::TcpListener::bind(config.address)
        .await
        .map_err(|source| ServerError::Listen {
            addr: config.address,
            source,
        })?;
    let addr = listener
        .local_addr()
        .map_err(|source| ServerError::Listen {
            addr: config.address,
            source,
        })?;
    let state = Arc::new(State {
        config,
        cri,
        pods,
        metrics: Default::default(),
        last_cpu: Mutex::new(None),
        boot_time: stats::boot_time(),
    });
    let (stop, stop_rx) = watch::channel(false);
    let accept = tokio::spawn(accept_loop(listener, acceptor, state, stop_rx));
    tracing::info!(%addr, "kubelet server listening");
    Ok(Running { addr, stop, accept })
}

async fn accept_loop(
    listener: tokio::net::TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    state: Arc<State>,
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
        let (state, acceptor, mut stop) = (state.clone(), acceptor.clone(), stop.clone());
        tokio::spawn(async move {
            let tls =
                match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await {
                    Ok(Ok(t)) => t,
                    Ok(Err(e)) => {
                        tracing::debug!(%peer, error = %e, "tls handshake failed");
                        return;
                    }
                    Err(_) => return,
                };
            let caller = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .and_then(|c| tls::caller_from_cert(c));
            let svc =
                hyper::service::service_fn(move |req| handle(state.clone(), caller.clone(), req));
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            let conn = builder.serve_connection_with_upgrades(TokioIo::new(tls), svc);
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                _ = stop.changed() => {}
            }
        });
    }
}

/// The endpoint family of a path (a fixed name: metrics labels never carry client paths).
fn endpoint(path: &str) -> &'static str {
    match path.trim_start_matches('/').split('/').next().unwrap_or("") {
        "healthz" => "healthz",
        "pods" => "pods",
        "containerLogs" => "containerLogs",
        "exec" => "exec",
        "attach" => "attach",
        "portForward" => "portForward",
        "stats" => "stats",
        "metrics" => "metrics",
        _ => "other",
    }
}

async fn handle(
    state: Arc<State>,
    caller: Option<Caller>,
    mut req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let path = req.uri().path().to_string();
    let family = endpoint(&path);
    let span = tracing::debug_span!("kubelet_request", path = %path, user = caller.as_ref().map(|c| c.name.as_str()).unwrap_or(""));
    let _guard = span.enter();
    let response = match &caller {
        None => text(401, "Unauthorized\n", "text/plain; charset=utf-8"),
        Some(c)
            if !tls::allowed(c, &state.config)
                && !tls::may_read_metrics(c, family, req.method()) =>
        {
            text(
                403,
                format!(
                    "Forbidden (user={}, verb={}, resource=nodes, subresource={})\n",
                    c.name,
                    if req.method() == hyper::Method::GET {
                        "get"
                    } else {
                        "create"
                    },
                    subresource(family)
                ),
                "text/plain; charset=utf-8",
            )
        }
        Some(_) => {
            let upgrade = is_upgrade(req.headers()).then(|| hyper::upgrade::on(&mut req));
            drop(_guard);
            match route(&state, &req, upgrade).await {
                Ok(r) => r,
                Err(e) => {
                    tracing::debug!(path = %path, error = %e, "request failed");
                    error_response(&e)
                }
            }
        }
    };
    state.metrics.observe(family, response.status().as_u16());
    Ok(response)
}

/// The kubelet's authorizer attributes: which nodes/<subresource> an endpoint is.
fn subresource(family: &str) -> &'static str {
    match family {
        "stats" => "stats",
        "metrics" => "metrics",
        "pods" => "pods",
        "healthz" => "healthz",
        _ => "proxy",
    }
}

fn is_upgrade(headers: &hyper::HeaderMap) -> bool {
    headers.contains_key(hyper::header::UPGRADE)
        && headers
            .get_all(hyper::header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
}

async fn route(
    state: &Arc<State>,
    req: &Request<Incoming>,
    upgrade: Option<hyper::upgrade::OnUpgrade>,
) -> Result<Response<Body>, ServerError> {
    let path = req.uri().path();
    let query = req.uri().query();
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    let get_only = |r: Result<Response<Body>, ServerError>| {
        if req.method() == hyper::Method::GET || req.method() == hyper::Method::HEAD {
            r
        } else {
            Err(ServerError::BadRequest(format!(
                "{} is not allowed on {path}",
                req.method()
            )))
        }
    };
    match parts.as_slice() {
        ["healthz"] => get_only(Ok(text(200, "ok", "text/plain; charset=utf-8"))),
        ["pods"] => {
            let items = state.pods.pods();
            let list = serde_json::json!({"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": items});
            get_only(Ok(text(
                200,
                serde_json::to_vec(&list).unwrap_or_default(),
                "application/json",
            )))
        }
        ["containerLogs", ns, pod, container] => {
            if req.method() != hyper::Method::GET {
                return Err(ServerError::BadRequest("containerLogs is GET only".into()));
            }
            let opts = logs::LogOptions::from_query(query, chrono::Utc::now())?;
            let rx =
                logs::container_logs(&state.cri, state.pods.as_ref(), ns, pod, container, opts)
                    .await?;
            let stream = futures_util::stream::unfold(rx, |mut rx| async move {
                rx.recv()
                    .await
                    .map(|b| (Ok::<_, Infallible>(Frame::data(b)), rx))
            });
            let mut r = Response::new(BodyExt::boxed(StreamBody::new(stream)));
            r.headers_mut().insert(
                hyper::header::CONTENT_TYPE,
                hyper::header::HeaderValue::from_static("text/plain"),
            );
            Ok(r)
        }
        [kind @ ("exec" | "attach"), ns, pod, rest @ ..] if matches!(rest.len(), 1 | 2) => {
            // `/exec/<ns>/<pod>/<container>` or `/exec/<ns>/<pod>/<uid>/<container>`.
            let container = rest[rest.len() - 1];
            let kind = if *kind == "exec" {
                streaming::Kind::Exec
            } else {
                streaming::Kind::Attach
            };
            stream(state, req, upgrade, kind, ns, pod, Some(container), query).await
        }
        ["portForward", ns, pod, ..] if parts.len() <= 4 => {
            stream(
                state,
                req,
                upgrade,
                streaming::Kind::PortForward,
                ns,
                pod,
                None,
                query,
            )
            .await
        }
        ["stats", "summary"] => {
            let s = stats::summary(
                &state.cri,
                &state.config.node_name,
                &state.last_cpu,
                state.boot_time.clone(),
            )
            .await?;
            get_only(Ok(text(
                200,
                serde_json::to_vec(&s).unwrap_or_default(),
                "application/json",
            )))
        }
        ["metrics", "resource"] => {
            let s = stats::summary(
                &state.cri,
                &state.config.node_name,
                &state.last_cpu,
                state.boot_time.clone(),
            )
            .await;
            if let Err(e) = &s {
                tracing::warn!(error = %e, "resource metrics: summary failed");
            }
            get_only(Ok(text(
                200,
                metrics::resource_metrics(s.as_ref().ok()),
                "text/plain; version=0.0.4",
            )))
        }
        ["metrics"] => {
            let (pods, containers) = running_counts(&state.cri).await;
            get_only(Ok(text(
                200,
                state.metrics.render(pods, containers) + &state.cri.metrics.render(),
                "text/plain; version=0.0.4",
            )))
        }
        _ => Ok(text(
            404,
            "404 page not found\n",
            "text/plain; charset=utf-8",
        )),
    }
}

#[allow(clippy::too_many_arguments)]
async fn stream(
    state: &Arc<State>,
    req: &Request<Incoming>,
    upgrade: Option<hyper::upgrade::OnUpgrade>,
    kind: streaming::Kind,
    ns: &str,
    pod: &str,
    container: Option<&str>,
    query: Option<&str>,
) -> Result<Response<Body>, ServerError> {
    let Some(upgrade) = upgrade else {
        return Err(ServerError::BadRequest("Upgrade request required".into()));
    };
    let opts = streaming::StreamOptions::from_query(kind, query)?;
    let url = streaming::streaming_url(
        &state.cri,
        state.pods.as_ref(),
        kind,
        ns,
        pod,
        container,
        &opts,
    )
    .await?;
    streaming::proxy(&url, req.method().clone(), req.headers().clone(), upgrade).await
}

async fn running_counts(cri: &CriHandle) -> (Option<usize>, Option<usize>) {
    let mut rt = cri.runtime.clone();
    let pods = rt
        .list_pod_sandbox(k8s_cri::v1::ListPodSandboxRequest {
            filter: Some(k8s_cri::v1::PodSandboxFilter {
                state: Some(k8s_cri::v1::PodSandboxStateValue {
                    state: k8s_cri::v1::PodSandboxState::SandboxReady as i32,
                }),
                ..Default::default()
            }),
        })
        .await
        .ok()
        .map(|r| r.into_inner().items.len());
    let containers = rt
        .list_containers(k8s_cri::v1::ListContainersRequest {
            filter: Some(k8s_cri::v1::ContainerFilter {
                state: Some(k8s_cri::v1::ContainerStateValue {
                    state: k8s_cri::v1::ContainerState::ContainerRunning as i32,
                }),
                ..Default::default()
            }),
        })
        .await
        .ok()
        .map(|r| r.into_inner().containers.len());
    (pods, containers)
}
