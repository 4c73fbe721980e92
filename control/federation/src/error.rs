//! Errors of the federation controller.

/// What went wrong, naming the object or member involved.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("kubeconfig {what}: {message}")]
    Kubeconfig { what: String, message: String },
    #[error("{what}: {source}")]
    Api {
        what: String,
        #[source]
        source: Box<kube::Error>,
    },
    #[error("{what}: {message}")]
    Invalid { what: String, message: String },
    /// The federation API refused the agent's credentials.
    #[error("the federation API refused the credentials of {kubeconfig}: {message}")]
    FederationCredentials { kubeconfig: String, message: String },
    /// The agent was started for a cluster the federation does not know.
    #[error("cluster {name} is not joined to the federation (no Cluster {name}): run `pea federation join {name} --sync-mode Pull` first, or start the agent with --register")]
    UnknownCluster { name: String },
    /// The agent was started for a cluster pea-federation pushes to.
    #[error("cluster {name} has spec.syncMode {mode}: an agent serves Pull clusters only (pea-federation itself dials Push clusters)")]
    NotPullMode { name: String, mode: String },
}

impl Error {
    pub fn api(what: impl Into<String>, source: kube::Error) -> Self {
        Error::Api {
            what: what.into(),
            source: Box::new(source),
        }
    }
}
