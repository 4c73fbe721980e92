//! pea-ingress: an Ingress controller (networking.k8s.io/v1 Ingress and IngressClass, controller
//! `pea.dev/ingress`) on hyper and rustls, fed by watches through the Kubernetes API only.
//!
//! ```text
//!   API server ──watch──▶ watch.rs ──Table + Certs (swapped whole)──▶ proxy.rs ◀── HTTP/HTTPS
//!        ▲                  │ routes.rs (class, host, path)               │ round-robin, retry
//!        └─ status.loadBalancer                                          ▼ backends (HTTP/1.1)
//! ```

pub mod events;
pub mod metrics;
pub mod proxy;
pub mod routes;
pub mod server;
pub mod state;
pub mod tls;
pub mod watch;

pub use server::{start, Config, Running};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("bind {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
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
