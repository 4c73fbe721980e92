//! Requesting a certificate (client-go util/certificate/csr `RequestCertificate` and
//! `WaitForCertificate`): a fresh ECDSA P-256 key, a CertificateSigningRequest for it, then a wait
//! until the CSR carries a certificate — or is Denied or Failed, which ends the wait with the
//! reason.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use k8s_openapi::api::certificates::v1::{
    CertificateSigningRequest, CertificateSigningRequestSpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::ByteString;
use kube::api::PostParams;
use kube::{Api, Client};

use super::store::Pair;
use super::CertificateError;

/// What to ask for.
#[derive(Debug, Clone)]
pub struct Want {
    /// Name the CSR `node-csr-<hash of the key>` (kubelet's bootstrap, so a restarted
    /// bootstrap finds its own); else the server generates it from `csr-` (renewals).
    pub key_named: bool,
    pub signer: &'static str,
    pub common_name: String,
    pub organizations: Vec<String>,
    pub dns_names: Vec<String>,
    pub ips: Vec<IpAddr>,
    pub usages: Vec<String>,
    /// How long to wait for the certificate.
    pub timeout: Duration,
}

impl Want {
    /// The kubelet's client certificate: `system:node:NAME` in `system:nodes`, from
    /// `kubernetes.io/kube-apiserver-client-kubelet` — the same subject for the bootstrap and
    /// every renewal.
    pub fn node_client(node_name: &str, key_named: bool, timeout: Duration) -> Want {
        Want {
            key_named,
            signer: super::client::SIGNER,
            common_name: format!("system:node:{node_name}"),
            organizations: vec!["system:nodes".into()],
            dns_names: Vec::new(),
            ips: Vec::new(),
            usages: vec!["digital signature".into(), "client auth".into()],
            timeout,
        }
    }
}

/// The PEM request and key of `want`.
fn make_request(want: &Want) -> Result<(String, rcgen::KeyPair), CertificateError> {
    let key = rcgen::KeyPair::generate()?;
    let mut params = rcgen::CertificateParams::default();
    let mut dn = rcgen::DistinguishedName::new();
    for o in &want.organizations {
        dn.push(rcgen::DnType::OrganizationName, o.as_str());
    }
    dn.push(rcgen::DnType::CommonName, want.common_name.as_str());
    params.distinguished_name = dn;
    for d in &want.dns_names {
        params
            .subject_alt_names
            .push(rcgen::SanType::DnsName(d.as_str().try_into()?));
    }
    for ip in &want.ips {
        params
            .subject_alt_names
            .push(rcgen::SanType::IpAddress(*ip));
    }
    let pem = params.serialize_request(&key)?.pem()?;
    Ok((pem, key))
}

/// A CSR name from the public key (unique per key, a valid object name).
pub fn csr_name(public_der: &[u8]) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(public_der);
    format!("node-csr-{}", &hex::encode(digest)[..32])
}

/// The condition that ends a wait: Denied or Failed, with its reason and message.
fn refusal(csr: &CertificateSigningRequest) -> Option<(String, String)> {
    csr.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find_map(|c| {
            matches!(c.type_.as_str(), "Denied" | "Failed").then(|| {
                (
                    c.type_.clone(),
                    format!(
                        "{}: {}",
                        c.reason.clone().unwrap_or_default(),
                        c.message.clone().unwrap_or_default()
                    ),
                )
            })
        })
}

/// Posts the CSR and waits for its certificate; returns the pair and the CSR's name.
pub async fn request(client: &Client, want: &Want) -> Result<(Pair, String), CertificateError> {
    let (request, key) = make_request(want)?;
    let fixed = want.key_named.then(|| csr_name(key.public_key_raw()));
    let api: Api<CertificateSigningRequest> = Api::all(client.clone());
    let csr = CertificateSigningRequest {
        metadata: ObjectMeta {
            name: fixed.clone(),
            generate_name: fixed.is_none().then(|| "csr-".to_string()),
            ..Default::default()
        },
        spec: CertificateSigningRequestSpec {
            request: ByteString(request.into_bytes()),
            signer_name: want.signer.into(),
            usages: Some(want.usages.clone()),
            ..Default::default()
        },
        status: None,
    };
    let shown = fixed.clone().unwrap_or_else(|| "csr-*".into());
    let name = match api.create(&PostParams::default(), &csr).await {
        Ok(created) => created.metadata.name.unwrap_or(shown),
        // The bootstrap's name is the key's hash: a retry after a crash finds its own CSR.
        Err(kube::Error::Api(s)) if s.code == 409 && fixed.is_some() => shown,
        Err(source) => {
            return Err(CertificateError::Create {
                name: shown,
                source: Box::new(source),
            })
        }
    };
    tracing::info!(csr = %name, signer = want.signer, cn = %want.common_name, "posted certificate signing request; waiting for it to be issued");
    let started = Instant::now();
    let cert = loop {
        if let Ok(Some(current)) = api.get_opt(&name).await {
            if let Some((kind, reason)) = refusal(&current) {
                return Err(if kind == "Denied" {
                    CertificateError::Denied { name, reason }
                } else {
                    CertificateError::Failed { name, reason }
                });
            }
            if let Some(c) = current
                .status
                .and_then(|s| s.certificate)
                .filter(|c| !c.0.is_empty())
            {
                break String::from_utf8_lossy(&c.0).into_owned();
            }
        }
        if started.elapsed() > want.timeout {
            return Err(CertificateError::Timeout {
                name,
                secs: want.timeout.as_secs(),
            });
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let pair = Pair::new(cert, key.serialize_pem()).map_err(CertificateError::Certificate)?;
    tracing::info!(csr = %name, not_after = %pair.not_after, "certificate issued");
    Ok((pair, name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_carries_the_subject_and_names() {
        let want = Want {
            key_named: false,
            signer: "kubernetes.io/kubelet-serving",
            common_name: "system:node:n1".into(),
            organizations: vec!["system:nodes".into()],
            dns_names: vec!["n1".into()],
            ips: vec!["10.0.0.7".parse().unwrap()],
            usages: vec![],
            timeout: Duration::from_secs(1),
        };
        let (pem, _) = make_request(&want).unwrap();
        let parsed = rcgen::CertificateSigningRequestParams::from_pem(&pem).unwrap();
        let dn: Vec<String> = parsed
            .params
            .distinguished_name
            .iter()
            .map(|(t, v)| format!("{t:?}={v:?}"))
            .collect();
        assert!(dn.iter().any(|d| d.contains("system:node:n1")), "{dn:?}");
        assert!(dn.iter().any(|d| d.contains("system:nodes")), "{dn:?}");
        assert_eq!(parsed.params.subject_alt_names.len(), 2);
    }
}
