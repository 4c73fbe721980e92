//! pea-dns: the cluster's DNS server. CoreDNS's kubernetes plugin semantics (see [`lookup`]) on
//! hickory-server, fed by watches of Namespaces, Services and EndpointSlices through the
//! Kubernetes API only, so it runs against pea-control or any kube-apiserver. Names outside the
//! cluster zone are forwarded to the resolvers of a resolv.conf, with a cache.
//!
//! ```text
//!   API server ──watch──▶ watch.rs ──Snapshot (swapped whole)──▶ handler.rs ◀── TCP :53
//!                                                         udp.rs (thread per socket, answer_cache.rs) ◀── UDP :53
//!                                                                   │  lookup.rs (cluster zone)
//!                                                                   └─ forward.rs (upstream + cache)
//! ```

pub mod answer_cache;
pub mod cluster;
pub mod forward;
pub mod handler;
pub mod http;
pub mod lookup;
pub mod metrics;
pub mod server;
pub mod udp;
pub mod watch;

pub use server::{start, Config, Running};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("bind {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("cluster domain {domain:?}: {message}")]
    Domain { domain: String, message: String },
    #[error(transparent)]
    Upstream(#[from] forward::Error),
    #[error("kubeconfig {path}: {source}")]
    Kubeconfig {
        path: std::path::PathBuf,
        source: kube::config::KubeconfigError,
    },
    #[error("client for kubeconfig {path}: {source}")]
    Client {
        path: std::path::PathBuf,
        source: Box<kube::Error>,
    },
    #[error("dns server: {0}")]
    Serve(String),
}

/// A client for the cluster a kubeconfig file names (its current context).
pub async fn client_from_kubeconfig(path: &std::path::Path) -> Result<kube::Client, Error> {
    let kerr = |source| Error::Kubeconfig {
        path: path.to_path_buf(),
        source,
    };
    let kc = kube::config::Kubeconfig::read_from(path).map_err(kerr)?;
    let cfg = kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
        .await
        .map_err(kerr)?;
    kube::Client::try_from(cfg).map_err(|source| Error::Client {
        path: path.to_path_buf(),
        source: Box::new(source),
    })
}
