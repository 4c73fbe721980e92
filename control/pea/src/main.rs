//! `pea`: a whole multi-node cluster on one host. Each node is a network namespace on an underlay
//! bridge inside a cluster namespace `pea` makes; node 0 runs pea-control; every node runs
//! pea-shim, pea-kubelet, pea-flanneld and pea-proxy; pea-dns answers at the clusterDNS IP.
//! `pea` only starts the programs and talks to their interfaces (flags, files, the API through
//! kubectl): it links no pea crate. The root network namespace is never changed: the host reaches
//! the API server through a loopback forwarder (`pea forward`).

mod cluster;
mod down;
mod federation;
mod forward;
mod install;
mod logs;
mod proc;
mod prometheus;
mod status;
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
enum Cmd {
    /// Brings up a cluster (idempotent: a cluster that is up is reported, not touched).
    Up {
        #[arg(long, default_value_t = 3)]
        nodes: usize,
        #[arg(long, default_value = "pea")]
        name: String,
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
        Cmd::Up { nodes, name } => cluster::Cluster::new(&name, nodes).and_then(|c| up::up(&c)),
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
                })
            }),
        Cmd::Uninstall { root } => install::uninstall(&root),
        Cmd::PrometheusConfig {
            name,
            scrape_interval,
        } => {
            cluster::Cluster::existing(&name).and_then(|c| prometheus::print(&c, &scrape_interval))
        }
        Cmd::Federation { verb } => federation::run(verb),
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
