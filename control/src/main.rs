//! Thin binary edge of pea-control: flags → [`pea_control::server::Config`] → serve until
//! SIGINT/SIGTERM.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use pea_control::server::{start, Config};

#[derive(Debug, Parser)]
#[command(name = "pea-control", about = "Kubernetes-compatible API server")]
struct Args {
    /// JSON config file (fields: dataDir, listen, advertiseAddress, etcd, insecureHttp, extraSans,
    /// bookmarkIntervalSecs, compactionIntervalSecs, serviceCidr, serviceNodePortRange,
    /// gcSweepIntervalSecs, kubeletCertificateAuthority).
    #[arg(long)]
    config: Option<PathBuf>,
    /// State directory (store, PKI, tokens, admin kubeconfig).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Listen address.
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// The address the `default/kubernetes` Service's endpoints name (kube-apiserver's
    /// --advertise-address; default: the listen address unless it is loopback or a wildcard).
    #[arg(long)]
    advertise_address: Option<std::net::IpAddr>,
    /// The range Service cluster IPs come from (default 10.96.0.0/12; its first address is the
    /// `kubernetes` Service's).
    #[arg(long)]
    service_cluster_ip_range: Option<String>,
    /// Use this etcd v3 endpoint instead of the embedded store.
    #[arg(long)]
    etcd: Option<String>,
    /// Serve plain HTTP (loopback only).
    #[arg(long)]
    insecure_http: bool,
    /// Range Service node ports are allocated from, e.g. 30000-32767.
    #[arg(long)]
    service_node_port_range: Option<String>,
    /// Do not run the scheduler inside this process (run `pea-control scheduler` instead).
    #[arg(long)]
    disable_scheduler: bool,
    /// Do not run the controllers inside this process (run `pea-control controllers` instead).
    #[arg(long)]
    disable_controllers: bool,
    /// Do not serve pea-dashboard at /dashboard/.
    #[arg(long)]
    disable_dashboard: bool,
    /// The range node IPAM of the in-process controllers hands pod CIDRs out of.
    #[arg(long)]
    cluster_cidr: Option<String>,
    /// How often the kubelets' resource metrics are scraped for metrics.k8s.io, e.g. `15s`
    /// (metrics-server's --metric-resolution; `0s` turns the scraper off).
    #[arg(long, value_parser = parse_duration_secs)]
    metric_resolution: Option<f64>,
    /// How often the in-process HPA controller reconciles each autoscaler, e.g. `15s`.
    #[arg(long, value_parser = parse_duration_secs)]
    horizontal_pod_autoscaler_sync_period: Option<f64>,
    /// The longest lifetime of certificates csrsigning issues, e.g. `8760h` (the default, as
    /// kube-controller-manager's --cluster-signing-duration); a CSR's expirationSeconds may
    /// ask for less.
    #[arg(long, value_parser = parse_duration_secs)]
    cluster_signing_duration: Option<f64>,
    /// The directory the in-process local-path provisioner makes volumes in on each node
    /// (default /var/lib/pea/storage).
    #[arg(long)]
    local_path_dir: Option<String>,
    /// PEM bundle that kubelets' serving certificates must chain to (not checked without it,
    /// as kube-apiserver's default).
    #[arg(long)]
    kubelet_certificate_authority: Option<PathBuf>,
    /// The `iss` of service-account tokens (kube-apiserver's --service-account-issuer).
    #[arg(long)]
    service_account_issuer: Option<String>,
    /// PEM private key service-account tokens are signed with (default <data-dir>/pki/sa.key,
    /// generated on first start).
    #[arg(long)]
    service_account_signing_key_file: Option<PathBuf>,
    /// PEM public (or private) keys service-account tokens may also be signed with; repeatable.
    #[arg(long = "service-account-key-file")]
    service_account_key_files: Vec<PathBuf>,
    /// Longest lifetime a TokenRequest is granted, e.g. `24h` (default: no cap).
    #[arg(long, value_parser = parse_duration_secs)]
    service_account_max_token_expiration: Option<f64>,
    /// Audiences a bearer token must name one of, comma-separated (default: the issuer).
    #[arg(long, value_delimiter = ',')]
    api_audiences: Vec<String>,
    /// Admission plugins to turn off, comma-separated (pea's: ServiceAccount).
    #[arg(long, value_delimiter = ',')]
    disable_admission_plugins: Vec<String>,
    /// An AdmissionConfiguration (apiserver.config.k8s.io/v1, YAML or JSON) with the
    /// PodSecurity plugin's defaults and exemptions (kube-apiserver's flag).
    #[arg(long)]
    admission_control_config_file: Option<PathBuf>,
    /// Accept bootstrap tokens (`ID.SECRET`, Secrets `kube-system/bootstrap-token-ID`) as
    /// bearer tokens (kube-apiserver's flag; default true here, as kubeadm sets it).
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    enable_bootstrap_token_auth: Option<bool>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Issue a client certificate from the cluster CA and print (or write) its kubeconfig, as
    /// `kubeadm kubeconfig user` does; e.g. a node identity:
    /// `--user system:node:NAME --group system:nodes`.
    Kubeconfig {
        /// pea-control's data dir (its CA is under `pki/`).
        #[arg(long)]
        data_dir: PathBuf,
        /// The user (certificate CN).
        #[arg(long)]
        user: String,
        /// A group (certificate O); repeatable.
        #[arg(long = "group")]
        groups: Vec<String>,
        /// The API server URL the kubeconfig points at, e.g. https://10.0.0.1:6443.
        #[arg(long)]
        server: String,
        /// Write the kubeconfig here (0600) instead of printing it.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Also write the cluster CA here: the kubelet's `clientCAFile` (pea-control's kubelet
        /// client certificate is signed by it).
        #[arg(long)]
        client_ca_out: Option<PathBuf>,
    },
    /// Run only the scheduler, as a client of an API server (kube-scheduler's role).
    Scheduler {
        #[arg(long)]
        kubeconfig: PathBuf,
        /// JSON SchedulerConfig (schedulerName, leaderElect, leaseNamespace, leaseName,
        /// identity, leaseDurationSecs, renewDeadlineSecs, retryPeriodSecs,
        /// percentageOfNodesToScore, podInitialBackoffSecs, podMaxBackoffSecs, bindConcurrency).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Run for leadership through a Lease (default true).
        #[arg(long)]
        leader_elect: Option<bool>,
        /// Serve the scheduler's /metrics and /healthz over plain HTTP on this address (e.g.
        /// 127.0.0.1:10259); off by default. The in-process scheduler's metrics are in the API
        /// server's /metrics.
        #[arg(long)]
        metrics_bind_address: Option<std::net::SocketAddr>,
    },
    /// Run only the controllers, as a client of an API server (kube-controller-manager's role).
    Controllers {
        #[arg(long)]
        kubeconfig: PathBuf,
        /// JSON ControllersConfig (controllers, clusterCidr, nodeCidrMaskSize, leaderElect, rootCaPem,
        /// leaderElection.{namespace,name,identity,leaseDurationSecs,renewDeadlineSecs,
        /// retryPeriodSecs}, workers, localPathDir, localPathHelperImage).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Which controllers, kube's syntax: `*` all, `foo` on, `-foo` off (e.g. `*,-podgc`).
        #[arg(long)]
        controllers: Option<String>,
        /// The range node pod CIDRs come from (default 10.244.0.0/16).
        #[arg(long)]
        cluster_cidr: Option<String>,
        /// The prefix length of each node's pod CIDR (default 24).
        #[arg(long)]
        node_cidr_mask_size: Option<u8>,
        /// Run for leadership through a Lease (default true).
        #[arg(long)]
        leader_elect: Option<bool>,
        /// PEM CA certificate csrsigning issues from (kube-controller-manager's flag).
        #[arg(long)]
        cluster_signing_cert_file: Option<PathBuf>,
        /// PEM key of that CA.
        #[arg(long)]
        cluster_signing_key_file: Option<PathBuf>,
        /// PEM private key legacy Secret-based service-account tokens are signed with (the
        /// API server's service-account signing key); without it serviceaccount-token is off.
        #[arg(long)]
        service_account_private_key_file: Option<PathBuf>,
        /// Each controller acts as its own ServiceAccount in kube-system (bound to
        /// `system:controller:<name>`) with tokens this process requests and refreshes; the
        /// kubeconfig's identity (e.g. system:kube-controller-manager) only runs leader
        /// election, the shared informers and events. Default true (kubeadm's setting).
        #[arg(long, num_args = 0..=1, default_missing_value = "true")]
        use_service_account_credentials: Option<bool>,
        /// Serve the controllers' /metrics and /healthz over plain HTTP on this address (e.g.
        /// 127.0.0.1:10257); off by default. In-process controllers' metrics are in the API
        /// server's /metrics.
        #[arg(long)]
        metrics_bind_address: Option<std::net::SocketAddr>,
    },
}

/// `pea-control controllers --kubeconfig F`: the controllers alone, until SIGINT/SIGTERM.
fn run_controllers(
    kubeconfig: PathBuf,
    config: pea_controllers::ControllersConfig,
    service_accounts: bool,
    metrics_at: Option<std::net::SocketAddr>,
) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        if let Some(addr) = metrics_at {
            let m = config.metrics.clone();
            let at =
                pea_control::metrics_listener::serve(addr, std::sync::Arc::new(move || m.render()))
                    .await
                    .with_context(|| format!("--metrics-bind-address {addr}"))?;
            tracing::info!(%at, "serving the controllers' /metrics and /healthz");
        }
        let clients =
            pea_controllers::clients_from_kubeconfig(&kubeconfig, service_accounts).await?;
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            r = pea_controllers::run(clients, config) => r?,
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        Ok(())
    })
}

fn scheduler_config(path: Option<&PathBuf>) -> anyhow::Result<pea_scheduler::SchedulerConfig> {
    Ok(match path {
        Some(p) => serde_json::from_slice(
            &std::fs::read(p).with_context(|| format!("reading {}", p.display()))?,
        )
        .with_context(|| format!("parsing {}", p.display()))?,
        None => pea_scheduler::SchedulerConfig::default(),
    })
}

/// `pea-control scheduler --kubeconfig F`: the scheduler alone, until SIGINT/SIGTERM.
fn run_scheduler(
    kubeconfig: PathBuf,
    config: Option<PathBuf>,
    leader_elect: Option<bool>,
    metrics_at: Option<std::net::SocketAddr>,
) -> anyhow::Result<()> {
    let mut config = scheduler_config(config.as_ref())?;
    if let Some(le) = leader_elect {
        config.leader_elect = le;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let metrics = pea_scheduler::metrics::Metrics::default();
        if let Some(addr) = metrics_at {
            let m = metrics.clone();
            let at =
                pea_control::metrics_listener::serve(addr, std::sync::Arc::new(move || m.render()))
                    .await
                    .with_context(|| format!("--metrics-bind-address {addr}"))?;
            tracing::info!(%at, "serving the scheduler's /metrics and /healthz");
        }
        let client = pea_scheduler::client_from_kubeconfig(&kubeconfig).await?;
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            r = pea_scheduler::run_with_metrics(client, config, metrics) => r?,
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        Ok(())
    })
}

/// `pea-control kubeconfig ...`: a user's kubeconfig from the cluster CA.
fn write_kubeconfig(
    data_dir: &std::path::Path,
    user: &str,
    groups: &[String],
    server: &str,
    out: Option<&std::path::Path>,
    client_ca_out: Option<&std::path::Path>,
) -> anyhow::Result<()> {
    let groups: Vec<&str> = groups.iter().map(String::as_str).collect();
    let (text, ca) = pea_control::kubeconfig::for_user(data_dir, server, user, &groups)?;
    if let Some(path) = client_ca_out {
        pea_control::pki::write_atomic(path, ca.as_bytes(), 0o644)?;
    }
    match out {
        Some(path) => pea_control::kubeconfig::write(path, &text)?,
        None => print!("{text}"),
    }
    Ok(())
}

/// A Go-style duration (`15s`, `500ms`, `1m`, or plain seconds) in seconds.
fn parse_duration_secs(s: &str) -> Result<f64, String> {
    let (num, unit) = s
        .find(|c: char| c.is_ascii_alphabetic())
        .map_or((s, "s"), |i| s.split_at(i));
    let n: f64 = num
        .parse()
        .map_err(|_| format!("invalid duration {s:?} (e.g. 15s, 500ms, 1m)"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(format!("invalid duration unit in {s:?} (ms, s, m, h)")),
    };
    if !secs.is_finite() || secs < 0.0 {
        return Err(format!("invalid duration {s:?}"));
    }
    Ok(secs)
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    if let Some(Command::Kubeconfig {
        data_dir,
        user,
        groups,
        server,
        out,
        client_ca_out,
    }) = &args.command
    {
        return write_kubeconfig(
            data_dir,
            user,
            groups,
            server,
            out.as_deref(),
            client_ca_out.as_deref(),
        );
    }
    if let Some(Command::Scheduler {
        kubeconfig,
        config,
        leader_elect,
        metrics_bind_address,
    }) = args.command
    {
        return run_scheduler(kubeconfig, config, leader_elect, metrics_bind_address);
    }
    if let Some(Command::Controllers {
        kubeconfig,
        config,
        controllers,
        cluster_cidr,
        node_cidr_mask_size,
        leader_elect,
        cluster_signing_cert_file,
        cluster_signing_key_file,
        service_account_private_key_file,
        use_service_account_credentials,
        metrics_bind_address,
    }) = args.command
    {
        let mut c: pea_controllers::ControllersConfig = match &config {
            Some(p) => serde_json::from_slice(
                &std::fs::read(p).with_context(|| format!("reading {}", p.display()))?,
            )
            .with_context(|| format!("parsing {}", p.display()))?,
            None => Default::default(),
        };
        if let Some(list) = controllers {
            c.set_controllers(&list);
        }
        if let Some(cidr) = cluster_cidr {
            c.cluster_cidr = cidr;
        }
        if let Some(m) = node_cidr_mask_size {
            c.node_cidr_mask_size = m;
        }
        if let Some(le) = leader_elect {
            c.leader_elect = le;
        }
        if cluster_signing_cert_file.is_some() {
            c.cluster_signing_cert_file = cluster_signing_cert_file;
        }
        if cluster_signing_key_file.is_some() {
            c.cluster_signing_key_file = cluster_signing_key_file;
        }
        if service_account_private_key_file.is_some() {
            c.service_account_private_key_file = service_account_private_key_file;
        }
        if c.root_ca_pem.is_none() {
            c.root_ca_pem = pea_controllers::ca_pem_from_kubeconfig(&kubeconfig);
        }
        return run_controllers(
            kubeconfig,
            c,
            use_service_account_credentials.unwrap_or(true),
            metrics_bind_address,
        );
    }
    let mut config = match &args.config {
        Some(p) => serde_json::from_slice(
            &std::fs::read(p).with_context(|| format!("reading {}", p.display()))?,
        )
        .with_context(|| format!("parsing {}", p.display()))?,
        None => Config::default(),
    };
    if let Some(d) = args.data_dir {
        config.data_dir = d;
    }
    if let Some(l) = args.listen {
        config.listen = l;
    }
    if args.advertise_address.is_some() {
        config.advertise_address = args.advertise_address;
    }
    if let Some(r) = args.service_cluster_ip_range {
        config.service_cidr = r;
    }
    if args.etcd.is_some() {
        config.etcd = args.etcd;
    }
    config.insecure_http |= args.insecure_http;
    if let Some(r) = args.service_node_port_range {
        config.service_node_port_range = r;
    }
    if let Some(r) = args.metric_resolution {
        config.metric_resolution_secs = r;
    }
    if args.kubelet_certificate_authority.is_some() {
        config.kubelet_certificate_authority = args.kubelet_certificate_authority;
    }
    let sa = &mut config.service_accounts;
    if let Some(i) = args.service_account_issuer {
        sa.issuer = i;
    }
    if args.service_account_signing_key_file.is_some() {
        sa.signing_key_file = args.service_account_signing_key_file;
    }
    sa.key_files.extend(args.service_account_key_files);
    if let Some(m) = args.service_account_max_token_expiration {
        sa.max_token_expiration_secs = m as u64;
    }
    if !args.api_audiences.is_empty() {
        sa.api_audiences = args.api_audiences;
    }
    config
        .disable_admission_plugins
        .extend(args.disable_admission_plugins);
    config.admission_control_config_file = args.admission_control_config_file;
    if let Some(b) = args.enable_bootstrap_token_auth {
        config.enable_bootstrap_token_auth = b;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    // The in-process serviceaccount-token controller signs legacy tokens with the API
    // server's service-account key (kube: --service-account-private-key-file).
    let sa_key_file = config.service_accounts.signing_key_file.clone();
    rt.block_on(async {
        let running = start(config).await?;
        // The in-process scheduler is a client like any other: it reaches the server through
        // its own listen address, as kube-scheduler's identity (`system:kube-scheduler`, bound
        // to kube's bootstrap role of that name), not as admin.
        let scheduler = if args.disable_scheduler {
            None
        } else {
            let kubeconfig = running.component_kubeconfig(
                "scheduler.kubeconfig",
                "system:kube-scheduler",
                &[],
            )?;
            let client = pea_scheduler::client_from_kubeconfig(&kubeconfig).await?;
            let metrics = pea_scheduler::metrics::Metrics::default();
            running.api.metrics.add_component(metrics.clone());
            Some(tokio::spawn(async move {
                let config = pea_scheduler::SchedulerConfig::default();
                if let Err(e) = pea_scheduler::run_with_metrics(client, config, metrics).await {
                    tracing::error!(error = %e, "scheduler stopped");
                }
            }))
        };
        // The controllers likewise, as kube-controller-manager with
        // --use-service-account-credentials: the manager is `system:kube-controller-manager`
        // (its bootstrap role lets it create the controllers' ServiceAccounts and tokens),
        // each controller its own `system:serviceaccount:kube-system:<name>`.
        let controllers = if args.disable_controllers {
            None
        } else {
            let kubeconfig = running.component_kubeconfig(
                "controller-manager.kubeconfig",
                "system:kube-controller-manager",
                &[],
            )?;
            let clients = pea_controllers::clients_from_kubeconfig(&kubeconfig, true).await?;
            let mut c = pea_controllers::ControllersConfig {
                root_ca_pem: Some(running.pki.ca.cert_pem.clone()),
                // csrsigning issues from pea-control's own CA.
                cluster_signing_ca: Some(pea_controllers::csr::signing::SigningCa::new(
                    &running.pki.ca.cert_pem,
                    &running.pki.ca.key_pem,
                    pea_controllers::csr::signing::DEFAULT_DURATION,
                )?),
                service_account_private_key_file: Some(
                    sa_key_file.unwrap_or_else(|| running.pki.dir.join("sa.key")),
                ),
                ..Default::default()
            };
            running.api.metrics.add_component(c.metrics.clone());
            if let Some(p) = args.horizontal_pod_autoscaler_sync_period {
                c.hpa.sync_period_secs = p;
            }
            if let Some(cidr) = args.cluster_cidr.clone() {
                c.cluster_cidr = cidr;
            }
            if let Some(d) = args.cluster_signing_duration {
                if d < 1.0 {
                    anyhow::bail!("--cluster-signing-duration {d}s: must be at least 1s");
                }
                c.cluster_signing_duration_secs = d as u64;
            }
            if let Some(dir) = args.local_path_dir.clone() {
                c.local_path_dir = dir;
            }
            Some(tokio::spawn(async move {
                if let Err(e) = pea_controllers::run(clients, c).await {
                    tracing::error!(error = %e, "controllers stopped");
                }
            }))
        };
        // pea-dashboard, a client of the API like the scheduler: it reaches the server through
        // its listen address and trusts its CA, but acts only with each user's own token, or,
        // for a browser that presented a client certificate chaining to the cluster CA, over
        // an in-process connection authenticated as that certificate's user (nothing else).
        if !args.disable_dashboard {
            let in_process = running.in_process();
            let connect_as: pea_dashboard::ConnectAs =
                std::sync::Arc::new(move |u: &pea_dashboard::ClientCertUser| {
                    in_process.connect_as(pea_control::auth::User {
                        name: u.name.clone(),
                        groups: u.groups.clone(),
                        ..Default::default()
                    })
                });
            let dashboard = std::sync::Arc::new(
                pea_dashboard::Dashboard::from_kubeconfig(&running.kubeconfig, "/dashboard")
                    .await?
                    .with_certificate_login(connect_as),
            );
            running.mount(
                "/dashboard",
                std::sync::Arc::new(move |mut req: hyper::Request<bytes::Bytes>| {
                    // The TLS layer's verified client certificate, in the dashboard's terms.
                    let cert = req
                        .extensions_mut()
                        .remove::<pea_control::auth::User>()
                        .map(|u| pea_dashboard::ClientCertUser {
                            name: u.name,
                            groups: u.groups,
                        });
                    if let Some(c) = cert {
                        req.extensions_mut().insert(c);
                    }
                    let d = dashboard.clone();
                    Box::pin(async move { d.handle(req).await })
                }),
            );
        }
        println!(
            "pea-control listening on {} (kubeconfig: {})",
            running.addr,
            running.kubeconfig.display()
        );
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        if let Some(s) = scheduler {
            s.abort();
        }
        if let Some(c) = controllers {
            c.abort();
        }
        running.shutdown().await;
        Ok(())
    })
}
