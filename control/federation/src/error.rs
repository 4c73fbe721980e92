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
}

impl Error {
    pub fn api(what: impl Into<String>, source: kube::Error) -> Self {
        Error::Api {
            what: what.into(),
            source: Box::new(source),
        }
    }
}
