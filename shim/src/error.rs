//! pea-shim's errors, and the one place they become gRPC statuses (`From<ShimError> for
//! tonic::Status`). Every RPC handler returns `Result<_, ShimError>`; `crate::rpc::call` logs the
//! call with its ids and converts.

use std::path::PathBuf;

use tonic::Code;

#[derive(Debug, thiserror::Error)]
pub enum ShimError {
    #[error("{kind} {id:?} not found")]
    NotFound { kind: &'static str, id: String },
    #[error("{0}")]
    InvalidArgument(String),
    /// CRI's "name reserved": another sandbox or container holds the name.
    #[error("the name {name:?} is reserved for {kind} {id}")]
    NameReserved {
        kind: &'static str,
        name: String,
        id: String,
    },
    #[error("{0}")]
    FailedPrecondition(String),
    /// A feature this host or this build lacks; the message says why.
    #[error("{0}")]
    Unimplemented(String),
    /// A bounded resource is used up (e.g. streaming URLs in flight); retrying later may work.
    #[error("{0}")]
    ResourceExhausted(String),
    #[error("{what}: deadline of {seconds} s exceeded")]
    DeadlineExceeded { what: String, seconds: i64 },
    #[error("image {reference:?}: {source}")]
    Pull {
        reference: String,
        source: Box<pea_images::PullError>,
    },
    #[error(transparent)]
    Store(#[from] pea_images::StoreError),
    #[error("{op} {id}: {message}")]
    Runtime {
        op: &'static str,
        id: String,
        message: String,
    },
    #[error("cni {op} for sandbox {id}: {message}")]
    Cni {
        op: &'static str,
        id: String,
        message: String,
    },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Internal(String),
}

impl ShimError {
    pub fn not_found(kind: &'static str, id: impl Into<String>) -> Self {
        ShimError::NotFound {
            kind,
            id: id.into(),
        }
    }

    pub fn invalid(msg: impl Into<String>) -> Self {
        ShimError::InvalidArgument(msg.into())
    }

    pub fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> ShimError {
        let path = path.into();
        move |source| ShimError::Io { path, source }
    }

    pub fn code(&self) -> Code {
        match self {
            ShimError::NotFound { .. } => Code::NotFound,
            ShimError::InvalidArgument(_) => Code::InvalidArgument,
            ShimError::NameReserved { .. } => Code::AlreadyExists,
            ShimError::FailedPrecondition(_) => Code::FailedPrecondition,
            ShimError::Unimplemented(_) => Code::Unimplemented,
            ShimError::ResourceExhausted(_) => Code::ResourceExhausted,
            ShimError::DeadlineExceeded { .. } => Code::DeadlineExceeded,
            ShimError::Pull { source, .. } => pull_code(source),
            ShimError::Store(pea_images::StoreError::NotFound(_)) => Code::NotFound,
            ShimError::Store(pea_images::StoreError::Reference(_)) => Code::InvalidArgument,
            ShimError::Store(_) => Code::Internal,
            ShimError::Runtime { .. } | ShimError::Cni { .. } => Code::Unknown,
            ShimError::Io { .. } | ShimError::Internal(_) => Code::Internal,
        }
    }
}

fn pull_code(e: &pea_images::PullError) -> Code {
    use pea_images::client::RegistryError as R;
    use pea_images::PullError as P;
    match e {
        P::Reference(_) => Code::InvalidArgument,
        P::Registry(R::NotFound { .. }) => Code::NotFound,
        P::Registry(R::Unauthorized { .. }) => Code::PermissionDenied,
        P::Registry(R::AllEndpointsFailed { errors, .. })
            if errors.iter().all(|e| e.contains("not found (404)")) =>
        {
            Code::NotFound
        }
        _ => Code::Unknown,
    }
}

impl From<ShimError> for tonic::Status {
    fn from(e: ShimError) -> Self {
        tonic::Status::new(e.code(), e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_follow_what_cri_clients_expect() {
        let s: tonic::Status = ShimError::not_found("container", "abc").into();
        assert_eq!(s.code(), Code::NotFound);
        assert_eq!(s.message(), "container \"abc\" not found");
        let s: tonic::Status = ShimError::NameReserved {
            kind: "sandbox",
            name: "p_ns_uid_0".into(),
            id: "123".into(),
        }
        .into();
        assert_eq!(s.code(), Code::AlreadyExists);
        assert!(s.message().contains("reserved"));
    }
}
