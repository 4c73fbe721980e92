//! Startup wiring: config → API client and CRI connection → node registration → pod workers,
//! node status and lease loops. Each piece is started explicitly here (no global registry).

use std::net::{IpAddr, UdpSocket};
use std::sync::Arc;

use k8s_cri::v1 as cri;
use tokio::sync::watch;

use crate::config::Config;
use crate::events::Recorder;
use crate::node::{self, Machine};
use crate::podconfig::{dns::HostResolv, NodeContext};
use crate::pods::{self, Shared};

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("kubeconfig {path}: {message}")]
    Kubeconfig { path: String, message: String },
    #[error(transparent)]
    Cri(#[from] crate::cri::CriConnectError),
    #[error("the container runtime at {endpoint} does not answer: {message}")]
    Runtime { endpoint: String, message: String },
    #[error("registering node {node}: {source}")]
    Register { node: String, source: kube::Error },
    #[error("{what}: {message}")]
    Setup { what: &'static str, message: String },
}

/// A started kubelet: its shared state and a signal that its pod watch has synced.
#[derive(Debug)]
pub struct Running {
    pub shared: Arc<Shared>,
    pub synced: watch::Receiver<bool>,
    pub server: crate::server::Running,
}

/// The local address the kernel would use to reach `server` (the node's InternalIP).
fn local_ip_towards(server: &str) -> Option<IpAddr> {
    let sock = UdpSocket::bind(if server.contains(':') && server.starts_with('[') {
        "[::]:0"
    } else {
        "0.0.0.0:0"
    })
    .ok()?;
    sock.connect(server).ok()?;
    sock.local_addr().ok().map(|a| a.ip())
}

pub async fn start(cfg: Config) -> Result<Running, StartError> {
    let kc = kube::config::Kubeconfig::read_from(&cfg.kubeconfig).map_err(|e| {
        StartError::Kubeconfig {
            path: cfg.kubeconfig.display().to_string(),
            message: e.to_string(),
        }
    })?;
    let kcfg =
        kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
            .await
            .map_err(|e| StartError::Kubeconfig {
                path: cfg.kubeconfig.display().to_string(),
                message: e.to_string(),
            })?;
    let server = {
        let u = &kcfg.cluster_url;
        let host = u.host().unwrap_or("127.0.0.1").to_string();
        let port = u.port_u16().unwrap_or(443);
        if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        }
    };
    let client = kube::Client::try_from(kcfg).map_err(|e| StartError::Kubeconfig {
        path: cfg.kubeconfig.display().to_string(),
        message: e.to_string(),
    })?;
    // rotateCertificates: one client for the whole kubelet whose certificate is renewed in place.
    let client = if cfg.rotate_certificates {
        let certs = crate::certificate::client::ClientCertificates::load(
            &cfg.kubeconfig,
            &cfg.root_dir,
            &cfg.node_name,
        )
        .await
        .map_err(|e| StartError::Setup {
            what: "rotateCertificates",
            message: e.to_string(),
        })?;
        let rotating = certs.client();
        tokio::spawn(certs.run());
        rotating
    } else {
        client
    };
    let mut cri = crate::cri::connect(&cfg.container_runtime_endpoint)?;
    let version = cri
        .runtime
        .version(cri::VersionRequest {
            version: "v1".into(),
        })
        .await
        .map_err(|s| StartError::Runtime {
            endpoint: cfg.container_runtime_endpoint.clone(),
            message: s.message().to_string(),
        })?
        .into_inner();
    let host_ip = cfg
        .node_ip
        .or_else(|| local_ip_towards(&server))
        .map(|ip| ip.to_string());
    let machine = Machine::read(&cfg.root_dir);
    std::fs::create_dir_all(&cfg.root_dir).map_err(|e| StartError::Setup {
        what: "root dir",
        message: format!("{}: {e}", cfg.root_dir.display()),
    })?;
    let host_resolv =
        HostResolv::parse(&std::fs::read_to_string(&cfg.resolv_conf).unwrap_or_default());
    let layout = crate::cgroups::Layout::new(&cfg.cgroup_root, cfg.cgroups_per_qos);
    layout.ensure_qos().map_err(|e| StartError::Setup {
        what: "QoS cgroups",
        message: e.to_string(),
    })?;
    let cpu_millis = machine.cpus * 1000;
    let pods_limit =
        crate::cgroups_allocatable::limit(&cfg, cpu_millis, machine.memory).map_err(|message| {
            StartError::Setup {
                what: "node allocatable",
                message,
            }
        })?;
    let ctx = NodeContext {
        node_name: cfg.node_name.clone(),
        cluster_dns: cfg.cluster_dns.clone(),
        cluster_domain: cfg.cluster_domain.clone(),
        host_resolv,
        pod_logs_dir: cfg.pod_logs_dir.clone(),
        root_dir: cfg.root_dir.clone(),
        cgroups: layout,
        node_memory: machine.memory,
    };
    let events = Recorder::start(client.clone(), &cfg.node_name);
    let shared = Arc::new(Shared {
        runtime_name: version.runtime_name.clone(),
        host_ips: host_ip.into_iter().collect(),
        node_cpu_millis: machine.cpus * 1000,
        ctx,
        cri,
        client,
        events,
        pulls: tokio::sync::Mutex::new(()),
        pods: Default::default(),
        pressure: Default::default(),
        last_runtime_status: Default::default(),
        cfg,
    });
    tracing::info!(
        node = %shared.cfg.node_name,
        runtime = %format!("{} {}", version.runtime_name, version.runtime_version),
        ips = ?shared.host_ips,
        "starting"
    );
    if shared.cfg.register_node {
        node::register(&shared, &machine)
            .await
            .map_err(|source| StartError::Register {
                node: shared.cfg.node_name.clone(),
                source,
            })?;
    }
    // Before the eviction manager: its allocatable signal and notifier read this limit.
    tokio::spawn(crate::cgroups_allocatable::enforce(
        shared.clone(),
        pods_limit,
    ));
    let server = start_server(&shared).await?;
    // The eviction manager's first observation sets the pressure conditions before the node's
    // status is first written.
    let image_records = Arc::new(tokio::sync::Mutex::new(crate::gc::ImageRecords::default()));
    let mut eviction =
        crate::eviction::manager::Manager::new(shared.clone(), image_records.clone());
    eviction.observe_only().await;
    tokio::spawn(node::status_loop(shared.clone(), machine));
    tokio::spawn(node::lease_loop(shared.clone()));
    tokio::spawn(crate::logrotate::run(shared.clone()));
    let (tx, rx) = watch::channel(false);
    let statics = crate::static_pods::start(shared.clone());
    let (evict_tx, evict_rx) = tokio::sync::mpsc::channel(4);
    tokio::spawn(eviction.run(evict_tx, rx.clone(), shared.cfg.eviction_monitoring_period));
    tokio::spawn(pods::run(shared.clone(), tx, statics, evict_rx));
    tokio::spawn(crate::gc::run(
        shared.clone(),
        rx.clone(),
        shared.cfg.gc_periods,
        image_records,
    ));
    Ok(Running {
        shared,
        synced: rx,
        server,
    })
}

/// The pods the server's `/pods` shows: what the workers run, with the status they wrote.
struct Pods(Arc<Shared>);

impl crate::server::PodSource for Pods {
    fn pods(&self) -> Vec<k8s_openapi::api::core::v1::Pod> {
        self.0
            .pods
            .read()
            .expect("pods")
            .values()
            .cloned()
            .collect()
    }
}

/// The HTTPS server (logs, exec, attach, port-forward, stats) on the node's address.
async fn start_server(s: &Arc<Shared>) -> Result<crate::server::Running, StartError> {
    let ip: IpAddr = if s.cfg.address.is_empty() {
        s.host_ips
            .first()
            .and_then(|ip| ip.parse().ok())
            .unwrap_or(IpAddr::from([127, 0, 0, 1]))
    } else {
        s.cfg.address.parse().map_err(|_| StartError::Setup {
            what: "address",
            message: format!("{:?} is not an IP address", s.cfg.address),
        })?
    };
    let client_ca_file = s.cfg.client_ca_file.clone().ok_or(StartError::Setup {
        what: "authentication.x509.clientCAFile",
        message:
            "required: the kubelet's server authenticates the API server by its client certificate"
                .into(),
    })?;
    let serving_certificate = if s.cfg.server_tls_bootstrap {
        let mut ips: Vec<IpAddr> = s.host_ips.iter().filter_map(|a| a.parse().ok()).collect();
        if !ips.contains(&ip) && !ip.is_unspecified() {
            ips.push(ip);
        }
        let (manager, stored) = crate::certificate::serving::ServingCertificates::load(
            s.client.clone(),
            &s.cfg.root_dir,
            &s.cfg.node_name,
            ips,
        )
        .map_err(|e| StartError::Setup {
            what: "serverTLSBootstrap",
            message: e.to_string(),
        })?;
        let resolver = manager.resolver();
        tokio::spawn(manager.run(stored));
        Some(resolver)
    } else {
        None
    };
    let config = crate::server::ServerConfig {
        serving_certificate,
        address: std::net::SocketAddr::new(ip, s.cfg.port),
        node_name: s.cfg.node_name.clone(),
        tls_cert_file: s.cfg.tls_cert_file.clone(),
        tls_private_key_file: s.cfg.tls_private_key_file.clone(),
        cert_dir: s.cfg.root_dir.join("pki"),
        client_ca_file,
        ..Default::default()
    };
    let running = crate::server::serve(
        config,
        crate::server::CriHandle::from(s.cri.clone()),
        Arc::new(Pods(s.clone())),
    )
    .await
    .map_err(|e| StartError::Setup {
        what: "kubelet server",
        message: e.to_string(),
    })?;
    tracing::info!(addr = %running.addr, "serving logs, exec, attach, port-forward and stats");
    Ok(running)
}
