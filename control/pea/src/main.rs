//! `pea`: a whole multi-node cluster on one host. Each node is a network namespace on an underlay
//! bridge inside a cluster namespace `pea` makes; node 0 runs pea-control; every node runs
//! pea-agent (pea-shim, pea-kubelet, pea-flanneld and pea-proxy in one process, as k3s's
//! agent); pea-dns answers at the clusterDNS IP.
//! `pea` only starts the programs and talks to their interfaces (flags, files, the API through
//! kubectl): it links no pea crate. The root network namespace is never changed: the host reaches
//! the API server through a loopback forwarder (`pea forward`).

mod addon_kubeconfig;
mod addons;
mod cluster;
mod down;
mod etcd;
mod federation;
mod forward;
mod identities;
mod install;
mod join;
mod kubectl;
mod logs;
mod proc;
mod prometheus;
mod status;
mod supervise;
mod token;
mod up;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "pea",
    about = "a whole Kubernetes-style cluster of pea nodes on one host"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum TokenVerb {
    /// Creates a bootstrap token and prints it (or the whole `pea join` command).
    Create {
        /// How long the token is valid (e.g. 24h, 30m; 0: never expires).
        #[arg(long, default_value = "24h")]
        ttl: String,
        /// Print `pea join --server ... --token ... --discovery-token-ca-cert-hash ...`.
        #[arg(long)]
        print_join_command: bool,
        #[arg(long, default_value = "")]
        description: String,
        /// The admin kubeconfig of the cluster.
        #[arg(long, default_value = token::DEFAULT_KUBECONFIG)]
        kubeconfig: std::path::PathBuf,
    },
}

#[derive(Subcommand)]
enum Cmd {
    /// Brings up a cluster (idempotent: a cluster that is up is reported, not touched).
    Up {
        #[arg(long, default_value_t = 3)]
        nodes: usize,
        #[arg(long, default_value = "pea")]
        name: String,
        /// pea-control's store on a real 3-member etcd cluster (in node 0's namespace) instead
        /// of the embedded one.
        #[arg(long)]
        etcd: bool,
    },
    /// Removes everything `up` made: processes, namespaces, links, mounts, cgroups, state.
    Down {
        #[arg(long, default_value = "pea")]
        name: String,
    },
    /// Shows the cluster's processes and nodes.
    Status {
        #[arg(long, default_value = "pea")]
        name: String,
    },
    /// The container logs of matching pods across all nodes, merged by time, each line
    /// prefixed [pod/container].
    Logs {
        #[arg(long, default_value = "pea")]
        name: String,
        /// Label selector, e.g. app=web.
        #[arg(short = 'l', long)]
        selector: Option<String>,
        #[arg(short = 'n', long, default_value = "default")]
        namespace: String,
        /// Only lines newer than this (30s, 5m, 1h).
        #[arg(long)]
        since: Option<String>,
        /// Stream new lines as they are written.
        #[arg(short = 'f', long)]
        follow: bool,
        /// Print each line's timestamp after the prefix.
        #[arg(long)]
        timestamps: bool,
    },
    /// Prints the Prometheus scrape configuration of a cluster that is up (every component's
    /// /metrics; run Prometheus in the cluster namespace `pea-NAME`).
    PrometheusConfig {
        #[arg(long, default_value = "pea")]
        name: String,
        #[arg(long, default_value = "15s")]
        scrape_interval: String,
    },
    /// Installs this host as a pea node under systemd: units for pea-shim, pea-kubelet,
    /// pea-flanneld, pea-proxy (and pea-control for a control plane), config under /etc/pea.
    Install {
        #[arg(long, value_enum)]
        role: install::Role,
        /// Write under this directory instead of / (units are then not started).
        #[arg(long, default_value = "/")]
        root: std::path::PathBuf,
        /// Where the pea binaries are installed.
        #[arg(long, default_value = "/usr/local/bin")]
        bin_dir: std::path::PathBuf,
        /// The node's name (default: the host name).
        #[arg(long)]
        node_name: Option<String>,
        /// The node's address (the kubelet and the API listen there).
        #[arg(long)]
        node_ip: std::net::IpAddr,
        /// The API server (a worker's; a control plane uses https://NODE_IP:6443).
        #[arg(long)]
        server: Option<String>,
        /// A worker's node kubeconfig (system:node:NAME), copied to /etc/pea.
        #[arg(long)]
        kubeconfig: Option<std::path::PathBuf>,
        /// A worker's copy of the cluster CA certificate.
        #[arg(long)]
        client_ca: Option<std::path::PathBuf>,
        /// A worker's bootstrap-token kubeconfig (from `pea join`) instead of --kubeconfig: the
        /// kubelet requests its own client certificate (TLS bootstrap).
        #[arg(long)]
        bootstrap_kubeconfig: Option<std::path::PathBuf>,
        /// With --kubeconfig: pea-proxy's identity (system:kube-proxy), issued on the control
        /// plane by `pea-control kubeconfig --user system:kube-proxy`. A worker installed with
        /// --bootstrap-kubeconfig gets it (and pea-flanneld's) with `pea addon-kubeconfig`.
        #[arg(long)]
        proxy_kubeconfig: Option<std::path::PathBuf>,
        /// With --kubeconfig: pea-flanneld's identity (system:pea-flanneld), issued as above.
        #[arg(long)]
        flanneld_kubeconfig: Option<std::path::PathBuf>,
        #[command(flatten)]
        runtime: install::RuntimeFlags,
        #[command(flatten)]
        addons: install::AddonFlags,
    },
    /// Bootstrap tokens for joining nodes (`pea token create`, as kubeadm's).
    Token {
        #[command(subcommand)]
        verb: TokenVerb,
    },
    /// Joins this host to a cluster with a bootstrap token (kubeadm join's token discovery and
    /// TLS bootstrap): verifies cluster-info's signature made with the token and the cluster CA
    /// against the pin, checks the token, writes the
    /// bootstrap kubeconfig, and installs the worker (with --node-ip) or prints how to.
    Join {
        /// The API server, e.g. https://10.0.0.1:6443.
        #[arg(long)]
        server: String,
        /// The bootstrap token ID.SECRET from `pea token create`.
        #[arg(long)]
        token: String,
        /// sha256:HEX of the cluster CA's public key; repeatable.
        #[arg(long = "discovery-token-ca-cert-hash")]
        ca_cert_hashes: Vec<String>,
        /// Trust whatever CA cluster-info names (kubeadm's flag; not recommended).
        #[arg(long)]
        discovery_token_unsafe_skip_ca_verification: bool,
        /// How long discovery waits for cluster-info to be signed with the token (seconds).
        #[arg(long, default_value_t = 60)]
        discovery_timeout: u64,
        /// Where the bootstrap kubeconfig and CA are written.
        #[arg(long, default_value = "/var/lib/pea/join")]
        dir: std::path::PathBuf,
        /// Install the worker now (`pea install --role worker`) with this node address.
        #[arg(long)]
        node_ip: Option<std::net::IpAddr>,
        /// The node's name (default: the host name).
        #[arg(long)]
        node_name: Option<String>,
        #[arg(long, default_value = "/")]
        root: std::path::PathBuf,
        #[arg(long, default_value = "/usr/local/bin")]
        bin_dir: std::path::PathBuf,
        #[command(flatten)]
        runtime: install::RuntimeFlags,
    },
    /// On a joined worker: gets an add-on's own identity (pea-proxy: system:kube-proxy,
    /// pea-flanneld: system:pea-flanneld) with the node's credentials: a CSR the control plane
    /// approves for nodes only, written as the add-on's kubeconfig (kept while it has a fifth
    /// of its lifetime left).
    AddonKubeconfig {
        #[arg(long, value_enum)]
        component: addon_kubeconfig::Component,
        /// The node's own kubeconfig (system:node:NAME), as the kubelet wrote it.
        #[arg(long, default_value = "/etc/pea/kubelet.kubeconfig")]
        kubeconfig: std::path::PathBuf,
        /// Where the add-on's kubeconfig goes (0600).
        #[arg(long)]
        out: std::path::PathBuf,
        /// Seconds to wait for --kubeconfig to appear (the kubelet's TLS bootstrap).
        #[arg(long, default_value_t = 300)]
        wait: u64,
        /// Seconds to wait for the CSR to be approved and signed.
        #[arg(long, default_value_t = 120)]
        timeout: u64,
        /// Once a new kubeconfig is written, `systemctl try-restart` this service (the
        /// add-on reads its kubeconfig at start); nothing is restarted when it is kept.
        #[arg(long)]
        restart_unit: Option<String>,
    },
    /// Removes what `pea install` wrote (stopping its units on the running system).
    Uninstall {
        #[arg(long, default_value = "/")]
        root: std::path::PathBuf,
    },
    /// A federation of clusters (Karmada's API): init the federation API, join/unjoin members.
    Federation {
        #[command(subcommand)]
        verb: federation::Verb,
    },
    /// (internal) Restarts the processes of cluster `--name` when they die; `pea up` starts it.
    #[command(hide = true)]
    Supervise {
        #[arg(long, default_value = "pea")]
        name: String,
    },
    /// (internal) Relays 127.0.0.1:PORT of this namespace to an address inside `--netns`.
    #[command(hide = true)]
    Forward {
        #[arg(long)]
        netns: std::path::PathBuf,
        #[arg(long)]
        to: std::net::SocketAddr,
        #[arg(long)]
        port_file: std::path::PathBuf,
    },
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.cmd {
        Cmd::Up { nodes, name, etcd } => {
            cluster::Cluster::new(&name, nodes).and_then(|c| up::up(&c, etcd))
        }
        Cmd::Down { name } => cluster::Cluster::existing(&name).and_then(|c| down::down(&c)),
        Cmd::Status { name } => cluster::Cluster::existing(&name).and_then(|c| status::status(&c)),
        Cmd::Logs {
            name,
            selector,
            namespace,
            since,
            follow,
            timestamps,
        } => logs::check_namespace(&namespace)
            .and_then(|()| cluster::Cluster::existing(&name))
            .and_then(|c| {
                logs::logs(
                    &c,
                    &logs::Options {
                        selector,
                        namespace,
                        since,
                        follow,
                        timestamps,
                    },
                )
            }),
        Cmd::Install {
            role,
            root,
            bin_dir,
            node_name,
            node_ip,
            server,
            kubeconfig,
            client_ca,
            bootstrap_kubeconfig,
            proxy_kubeconfig,
            flanneld_kubeconfig,
            runtime,
            addons,
        } => std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map_err(anyhow::Error::from)
            .and_then(|host| {
                install::install(&install::Options {
                    role,
                    root,
                    bin_dir,
                    node_name: node_name.unwrap_or_else(|| host.trim().to_lowercase()),
                    node_ip,
                    server,
                    kubeconfig,
                    client_ca,
                    bootstrap_kubeconfig,
                    proxy_kubeconfig,
                    flanneld_kubeconfig,
                    runtime,
                    addons,
                })
            }),
        Cmd::Uninstall { root } => install::uninstall(&root),
        Cmd::AddonKubeconfig {
            component,
            kubeconfig,
            out,
            wait,
            timeout,
            restart_unit,
        } => addon_kubeconfig::run(&addon_kubeconfig::Options {
            component,
            kubeconfig,
            out,
            wait: std::time::Duration::from_secs(wait),
            timeout: std::time::Duration::from_secs(timeout),
            restart_unit,
        }),
        Cmd::PrometheusConfig {
            name,
            scrape_interval,
        } => {
            cluster::Cluster::existing(&name).and_then(|c| prometheus::print(&c, &scrape_interval))
        }
        Cmd::Federation { verb } => federation::run(verb),
        Cmd::Token {
            verb:
                TokenVerb::Create {
                    ttl,
                    print_join_command,
                    description,
                    kubeconfig,
                },
        } => token::create(&kubeconfig, &ttl, print_join_command, &description),
        Cmd::Join {
            node_ip: None,
            ref runtime,
            ..
        } if !runtime.insecure_registries.is_empty() || runtime.pause_image.is_some() =>
        {
            Err(anyhow::anyhow!(
                "--insecure-registry and --pause-image configure the worker join installs: give --node-ip too"
            ))
        }
        Cmd::Join {
            server,
            token,
            ca_cert_hashes,
            discovery_token_unsafe_skip_ca_verification,
            discovery_timeout,
            dir,
            node_ip,
            node_name,
            root,
            bin_dir,
            runtime,
        } => std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map_err(anyhow::Error::from)
            .and_then(|host| {
                join::join(join::Options {
                    server,
                    token,
                    ca_cert_hashes,
                    unsafe_skip_ca_verification: discovery_token_unsafe_skip_ca_verification,
                    discovery_timeout: std::time::Duration::from_secs(discovery_timeout),
                    dir,
                    install: node_ip.map(|node_ip| install::Options {
                        role: install::Role::Worker,
                        root,
                        bin_dir,
                        node_name: node_name.unwrap_or_else(|| host.trim().to_lowercase()),
                        node_ip,
                        server: None,
                        kubeconfig: None,
                        client_ca: None,
                        bootstrap_kubeconfig: None,
                        proxy_kubeconfig: None,
                        flanneld_kubeconfig: None,
                        runtime,
                        addons: install::AddonFlags::default(),
                    }),
                })
            }),
        Cmd::Supervise { name } => {
            cluster::Cluster::existing(&name).and_then(|c| supervise::supervise(&c))
        }
        Cmd::Forward {
            netns,
            to,
            port_file,
        } => forward::run(&netns, to, &port_file),
    };
    if let Err(e) = result {
        eprintln!("pea: error: {e:#}");
        std::process::exit(1);
    }
}
