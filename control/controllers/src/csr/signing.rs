//! `csrsigning` (kube's pkg/controller/certificates/signer): an approved CSR of one of the
//! `kubernetes.io/kube-apiserver-client-kubelet`, `kubernetes.io/kube-apiserver-client` or
//! `kubernetes.io/kubelet-serving` signers gets a certificate from the cluster CA: the
//! request's subject (and, for serving, its DNS/IP names), the key and extended key usages of
//! `spec.usages`, valid from five minutes ago (clock skew, as kube backdates) for
//! `spec.expirationSeconds` or the signing duration (kube's `--cluster-signing-duration`,
//! 8760h), never past the CA. A request the signer's rules refuse (a kubelet client CSR that
//! is not `system:node:NAME` in `system:nodes`, a serving CSR without server auth) gets a
//! `Failed` condition (`SignerValidationFailure`) instead, as kube's.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::certificates::v1::{
    CertificateSigningRequest, CertificateSigningRequestCondition, CertificateSigningRequestStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::ByteString;
use kube::api::PostParams;
use kube::{Api, Client, ResourceExt};
use rcgen::{ExtendedKeyUsagePurpose as Eku, KeyUsagePurpose as Ku};
use tracing::Instrument;

use super::{
    check_kubelet_client, has_condition, parse_request, CLIENT_SIGNER, KUBELET_CLIENT_SIGNER,
    KUBELET_SERVING_SIGNER,
};
use crate::informer::{Cache, Change};
use crate::queue::{run_workers, Queue, Requeue};
use crate::{Clock, Informers};

/// kube-controller-manager's `--cluster-signing-duration` default.
pub const DEFAULT_DURATION: Duration = Duration::from_secs(8760 * 3600);
/// How far back certificates start (kube's signer backdates by five minutes).
const BACKDATE: Duration = Duration::from_secs(300);

#[derive(Debug, thiserror::Error)]
pub enum SigningError {
    #[error("cluster signing CA: {0}")]
    Ca(String),
    #[error("csr {name}: {what}: {source}")]
    Api {
        name: String,
        what: &'static str,
        #[source]
        source: Box<kube::Error>,
    },
    #[error("csr {name}: signing: {source}")]
    Sign {
        name: String,
        #[source]
        source: rcgen::Error,
    },
}

/// The cluster CA (PEM certificate and key) and how long issued certificates last at most.
#[derive(Clone)]
pub struct SigningCa {
    cert_pem: String,
    key_pem: String,
    not_after: time::OffsetDateTime,
    pub duration: Duration,
}

impl std::fmt::Debug for SigningCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningCa")
            .field("duration", &self.duration)
            .finish_non_exhaustive()
    }
}

impl SigningCa {
    /// Checks the pair now, so a bad `--cluster-signing-*-file` fails at start.
    pub fn new(cert_pem: &str, key_pem: &str, duration: Duration) -> Result<Self, SigningError> {
        let key = rcgen::KeyPair::from_pem(key_pem)
            .map_err(|e| SigningError::Ca(format!("reading the key: {e}")))?;
        let (_, pem) = x509_parser::pem::parse_x509_pem(cert_pem.as_bytes())
            .map_err(|e| SigningError::Ca(format!("reading the certificate: {e}")))?;
        let not_after = pem
            .parse_x509()
            .map_err(|e| SigningError::Ca(format!("reading the certificate: {e}")))?
            .validity()
            .not_after
            .to_datetime();
        rcgen::Issuer::from_ca_cert_pem(cert_pem, key)
            .map_err(|e| SigningError::Ca(format!("certificate and key: {e}")))?;
        Ok(Self {
            cert_pem: cert_pem.into(),
            key_pem: key_pem.into(),
            not_after,
            duration,
        })
    }

    /// Reads kube-controller-manager's `--cluster-signing-cert-file` / `-key-file`.
    pub fn from_files(
        cert: &std::path::Path,
        key: &std::path::Path,
        duration: Duration,
    ) -> Result<Self, SigningError> {
        let read = |p: &std::path::Path| {
            std::fs::read_to_string(p)
                .map_err(|e| SigningError::Ca(format!("reading {}: {e}", p.display())))
        };
        Self::new(&read(cert)?, &read(key)?, duration)
    }

    /// Issues the certificate (PEM) `csr` asks for, or says why the signer refuses it.
    pub fn sign(
        &self,
        csr: &CertificateSigningRequest,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<Result<String, String>, rcgen::Error> {
        let mut req = match parse_request(csr) {
            Ok(r) => r,
            Err(e) => return Ok(Err(e)),
        };
        let usages = csr.spec.usages.clone().unwrap_or_default();
        let signer = csr.spec.signer_name.as_str();
        if signer == KUBELET_CLIENT_SIGNER {
            if let Err(e) = check_kubelet_client(&req, &usages) {
                return Ok(Err(format!(
                    "invalid kubelet client certificate request: {e}"
                )));
            }
        }
        if signer == CLIENT_SIGNER && !usages.iter().any(|u| u == "client auth") {
            return Ok(Err("missing required usage \"client auth\"".into()));
        }
        if signer == KUBELET_SERVING_SIGNER && !usages.iter().any(|u| u == "server auth") {
            return Ok(Err("missing required usage \"server auth\"".into()));
        }
        let mut p = rcgen::CertificateParams::default();
        p.distinguished_name = req.params.distinguished_name.clone();
        if signer == KUBELET_SERVING_SIGNER {
            p.subject_alt_names = req.params.subject_alt_names.clone();
        }
        for u in &usages {
            match u.as_str() {
                "digital signature" => p.key_usages.push(Ku::DigitalSignature),
                "key encipherment" => p.key_usages.push(Ku::KeyEncipherment),
                "content commitment" => p.key_usages.push(Ku::ContentCommitment),
                "key agreement" => p.key_usages.push(Ku::KeyAgreement),
                "data encipherment" => p.key_usages.push(Ku::DataEncipherment),
                "client auth" => p.extended_key_usages.push(Eku::ClientAuth),
                "server auth" => p.extended_key_usages.push(Eku::ServerAuth),
                "code signing" => p.extended_key_usages.push(Eku::CodeSigning),
                "email protection" => p.extended_key_usages.push(Eku::EmailProtection),
                "timestamping" => p.extended_key_usages.push(Eku::TimeStamping),
                "ocsp signing" => p.extended_key_usages.push(Eku::OcspSigning),
                other => return Ok(Err(format!("usage {other:?} is not allowed by {signer}"))),
            }
        }
        let lifetime = csr
            .spec
            .expiration_seconds
            .and_then(|s| u64::try_from(s).ok())
            .map(Duration::from_secs)
            .unwrap_or(self.duration)
            .min(self.duration);
        let start = time::OffsetDateTime::from_unix_timestamp(now.timestamp())
            .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
        // kube's signer assumes lifetimes far above its backdate (its shortest is 10 min): a
        // shorter --cluster-signing-duration would give certificates mostly in the past, which
        // kubelets renew at once and forever (they renew at 70-90 % of notAfter - notBefore).
        // Such short lifetimes are backdated by a tenth of the lifetime instead.
        p.not_before = start - BACKDATE.min(lifetime / 10);
        p.not_after = (start + lifetime).min(self.not_after);
        p.use_authority_key_identifier_extension = true;
        // The serial is rcgen's: a hash of the requested public key (one key per request).
        req.params = p;
        let key = rcgen::KeyPair::from_pem(&self.key_pem)?;
        let issuer = rcgen::Issuer::from_ca_cert_pem(&self.cert_pem, key)?;
        Ok(Ok(req.signed_by(&issuer)?.pem()))
    }
}

pub struct CsrSigner {
    client: Client,
    clock: Clock,
    ca: SigningCa,
    csrs: Arc<Cache<CertificateSigningRequest>>,
    queue: Arc<Queue>,
}

impl std::fmt::Debug for CsrSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CsrSigner").finish_non_exhaustive()
    }
}

impl CsrSigner {
    pub fn register(
        informers: &Informers,
        client: Client,
        clock: Clock,
        ca: SigningCa,
    ) -> Arc<Self> {
        let informer = &informers.certificatesigningrequests;
        let c = Arc::new(Self {
            client,
            clock,
            ca,
            csrs: informer.cache(),
            queue: Queue::new(),
        });
        let q = c.queue.clone();
        informer.add_handler(move |ch| {
            if let Change::Added(csr) | Change::Updated { new: csr, .. } = ch {
                q.add(csr.name_any());
            }
        });
        c
    }

    pub async fn run(self: Arc<Self>, workers: usize) {
        self.csrs.wait_synced().await;
        let q = self.queue.clone();
        run_workers(q, workers, "csrsigning", move |name| {
            let c = self.clone();
            async move {
                let span = tracing::debug_span!("sign_csr", csr = %name);
                c.sync(&name).instrument(span).await
            }
        })
        .await;
    }

    async fn sync(&self, name: &str) -> Result<Requeue, SigningError> {
        let Some(csr) = self.csrs.get("", name) else {
            return Ok(Requeue::default());
        };
        let issued = csr
            .status
            .as_ref()
            .and_then(|s| s.certificate.as_ref())
            .is_some_and(|c| !c.0.is_empty());
        if issued
            || !has_condition(&csr, "Approved")
            || has_condition(&csr, "Denied")
            || has_condition(&csr, "Failed")
            || ![KUBELET_CLIENT_SIGNER, CLIENT_SIGNER, KUBELET_SERVING_SIGNER]
                .contains(&csr.spec.signer_name.as_str())
        {
            return Ok(Requeue::default());
        }
        let now = self.clock.now();
        let outcome = self
            .ca
            .sign(&csr, now)
            .map_err(|source| SigningError::Sign {
                name: name.into(),
                source,
            })?;
        let mut next = (*csr).clone();
        let status = next
            .status
            .get_or_insert_with(CertificateSigningRequestStatus::default);
        match outcome {
            Ok(pem) => status.certificate = Some(ByteString(pem.into_bytes())),
            Err(reason) => {
                tracing::info!(csr = %name, %reason, "signer refused the request");
                status.conditions.get_or_insert_with(Vec::new).push(
                    CertificateSigningRequestCondition {
                        type_: "Failed".into(),
                        status: "True".into(),
                        reason: Some("SignerValidationFailure".into()),
                        message: Some(reason),
                        last_update_time: Some(Time(now)),
                        last_transition_time: Some(Time(now)),
                    },
                );
            }
        }
        let body = serde_json::to_vec(&next).unwrap_or_default();
        Api::<CertificateSigningRequest>::all(self.client.clone())
            .replace_status(name, &PostParams::default(), body)
            .await
            .map_err(|source| SigningError::Api {
                name: name.into(),
                what: "writing the certificate",
                source: Box::new(source),
            })?;
        tracing::info!(csr = %name, signer = %csr.spec.signer_name, "signed");
        Ok(Requeue::default())
    }
}
