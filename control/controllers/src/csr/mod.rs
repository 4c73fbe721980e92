//! The certificate controllers of kube-controller-manager (pkg/controller/certificates) and
//! the bootstrap token cleaner (pkg/controller/bootstrap):
//! - [`approving`] (`csrapproving`): approves kubelet client CSRs whose requestor a
//!   SubjectAccessReview allows `create` on `certificatesigningrequests/nodeclient` (a new node's
//!   bootstrap token) or `.../selfnodeclient` (a node renewing its own certificate), and a
//!   node's client CSRs for its add-ons' own users ([`addon_client`], pea's rule);
//! - [`signing`] (`csrsigning`): issues approved CSRs of the `kubernetes.io/*` client and
//!   kubelet-serving signers from the cluster CA (kube's `--cluster-signing-cert-file` and
//!   `--cluster-signing-key-file`);
//! - [`tokencleaner`] (`tokencleaner`): deletes expired bootstrap token Secrets.
//!
//! Each runs its own informer of the objects it reads (CSRs, kube-system Secrets).

pub mod addon_client;
pub mod approving;
pub mod signing;
pub mod tokencleaner;

use k8s_openapi::api::certificates::v1::CertificateSigningRequest;

pub const KUBELET_CLIENT_SIGNER: &str = "kubernetes.io/kube-apiserver-client-kubelet";
pub const CLIENT_SIGNER: &str = "kubernetes.io/kube-apiserver-client";
pub const KUBELET_SERVING_SIGNER: &str = "kubernetes.io/kubelet-serving";

/// Whether the CSR has a condition of `kind`.
pub fn has_condition(csr: &CertificateSigningRequest, kind: &str) -> bool {
    csr.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == kind))
}

/// The PEM request of a CSR, parsed and its signature verified.
pub fn parse_request(
    csr: &CertificateSigningRequest,
) -> Result<rcgen::CertificateSigningRequestParams, String> {
    let pem = std::str::from_utf8(&csr.spec.request.0)
        .map_err(|_| "spec.request is not PEM text".to_string())?;
    rcgen::CertificateSigningRequestParams::from_pem(pem)
        .map_err(|e| format!("parsing the certificate request: {e}"))
}

fn dn_text(v: &rcgen::DnValue) -> Option<String> {
    match v {
        rcgen::DnValue::Utf8String(s) => Some(s.clone()),
        rcgen::DnValue::PrintableString(s) => Some(s.as_str().to_string()),
        rcgen::DnValue::Ia5String(s) => Some(s.as_str().to_string()),
        _ => None,
    }
}

/// The request's common name and organizations.
pub fn subject(req: &rcgen::CertificateSigningRequestParams) -> (String, Vec<String>) {
    let mut cn = String::new();
    let mut orgs = Vec::new();
    for (t, v) in req.params.distinguished_name.iter() {
        match t {
            rcgen::DnType::CommonName => cn = dn_text(v).unwrap_or_default(),
            rcgen::DnType::OrganizationName => orgs.extend(dn_text(v)),
            _ => {}
        }
    }
    (cn, orgs)
}

/// kube's `IsKubeletClientCSR` (certificates/v1 helpers): organization exactly
/// `system:nodes`, CN `system:node:NAME`, no subject alternative names, usages among digital
/// signature, key encipherment and client auth, with client auth. `Err` says why not.
pub fn check_kubelet_client(
    req: &rcgen::CertificateSigningRequestParams,
    usages: &[String],
) -> Result<(), String> {
    let (cn, orgs) = subject(req);
    if orgs != ["system:nodes"] {
        return Err(format!(
            "subject organization is not system:nodes: {orgs:?}"
        ));
    }
    if !cn.starts_with("system:node:") || cn.len() == "system:node:".len() {
        return Err(format!(
            "subject common name does not begin with system:node: {cn:?}"
        ));
    }
    if !req.params.subject_alt_names.is_empty() {
        return Err("subject alternative names are not allowed".into());
    }
    let allowed = ["digital signature", "key encipherment", "client auth"];
    if let Some(u) = usages.iter().find(|u| !allowed.contains(&u.as_str())) {
        return Err(format!("usage {u:?} is not allowed, only {allowed:?}"));
    }
    if !usages.iter().any(|u| u == "client auth") {
        return Err("missing required usage \"client auth\"".into());
    }
    Ok(())
}
