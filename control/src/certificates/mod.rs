//! kubeadm's TLS bootstrap on the server side: the `certificates.k8s.io/v1`
//! CertificateSigningRequest API ([`csr`]: requestor fields, kube's validation, the `approval`
//! and `status` subresources, the CertificateApproval/CertificateSigning admission checks),
//! bootstrap-token authentication ([`bootstrap_token`]) and the objects kubeadm creates so a
//! joining node can discover the cluster and get its certificate ([`cluster_info`]).

pub mod bootstrap_token;
pub mod cluster_info;
pub mod csr;
pub mod table;

/// The signer of kubelet client certificates (`system:node:NAME` in `system:nodes`).
pub const KUBELET_CLIENT_SIGNER: &str = "kubernetes.io/kube-apiserver-client-kubelet";
/// The signer of other API client certificates.
pub const CLIENT_SIGNER: &str = "kubernetes.io/kube-apiserver-client";
/// The signer of kubelet serving certificates.
pub const KUBELET_SERVING_SIGNER: &str = "kubernetes.io/kubelet-serving";
/// Refused in certificates.k8s.io/v1 (it existed for v1beta1 objects only).
pub const LEGACY_UNKNOWN_SIGNER: &str = "kubernetes.io/legacy-unknown";
