//! The kubelet's certificates (kubelet's pkg/kubelet/certificate and client-go's
//! util/certificate): a certificate and key requested from the cluster through a
//! CertificateSigningRequest, kept on disk as kubelet keeps them, and renewed before they expire.
//!
//! - [`store`]: `<root-dir>/pki/<prefix>-<time>.pem` (certificate and key, 0600) and the
//!   `<prefix>-current.pem` symlink, swapped atomically (`kubelet-client`, `kubelet-server`);
//! - [`request`]: a fresh ECDSA P-256 key, the CSR posted, waited on until issued;
//! - [`rotation`]: when to renew — at a jittered 70–90 % of the certificate's lifetime, as
//!   client-go's `nextRotationDeadline`;
//! - [`client`] (`rotateCertificates`): the API client the whole kubelet shares, whose
//!   certificate is swapped without a restart;
//! - [`serving`] (`serverTLSBootstrap`): the HTTPS server's certificate from the
//!   `kubernetes.io/kubelet-serving` signer, which nothing approves automatically.

pub mod client;
pub mod request;
pub mod rotation;
pub mod serving;
pub mod store;

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum CertificateError {
    #[error("generating a key or request: {0}")]
    Key(#[from] rcgen::Error),
    #[error("creating certificate signing request {name}: {source}")]
    Create {
        name: String,
        #[source]
        source: Box<kube::Error>,
    },
    #[error("certificate signing request {name} was denied: {reason}")]
    Denied { name: String, reason: String },
    #[error("certificate signing request {name} failed: {reason}")]
    Failed { name: String, reason: String },
    #[error("certificate signing request {name} was not issued within {secs} s (is the csrapproving/csrsigning controller running, or does it wait for `kubectl certificate approve {name}`?)")]
    Timeout { name: String, secs: u64 },
    #[error("writing {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Read { path: PathBuf, message: String },
    #[error("the issued certificate: {0}")]
    Certificate(String),
    #[error("building an API client with the new certificate: {0}")]
    Client(String),
}
