//! The server's TLS: a serving certificate (given files, or a self-signed one written to the
//! cert dir as the kubelet does: `kubelet.crt`/`kubelet.key`, CN `<node>@<unix time>`), client
//! certificates verified against the clientCAFile, and who may call (kubelet's webhook authz
//! as a cluster would set it up for the API server and admins only).

use std::path::Path;
use std::sync::Arc;

use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer};

use super::{ServerConfig, ServerError};

/// The caller, from its verified client certificate: CN the name, O the groups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub name: String,
    pub groups: Vec<String>,
}

pub fn caller_from_cert(der: &[u8]) -> Option<Caller> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let name = cert
        .subject()
        .iter_common_name()
        .next()?
        .as_str()
        .ok()?
        .to_string();
    let groups = cert
        .subject()
        .iter_organization()
        .filter_map(|o| o.as_str().ok().map(str::to_string))
        .collect();
    Some(Caller { name, groups })
}

/// Admins (`system:masters`) and the configured API server identities may use every endpoint.
pub fn allowed(caller: &Caller, config: &ServerConfig) -> bool {
    caller.groups.iter().any(|g| g == super::ADMIN_GROUP)
        || config.authorized_users.contains(&caller.name)
}

/// Members of `system:monitoring` may GET `/metrics` (and `/metrics/...`): what kube's bootstrap
/// ClusterRole `system:monitoring` grants on `nodes/metrics`, so a Prometheus needs no admin
/// certificate to scrape a node.
pub fn may_read_metrics(caller: &Caller, family: &str, method: &hyper::Method) -> bool {
    family == "metrics"
        && method == hyper::Method::GET
        && caller.groups.iter().any(|g| g == MONITORING_GROUP)
}

pub const MONITORING_GROUP: &str = "system:monitoring";

fn read(path: &Path) -> Result<Vec<u8>, ServerError> {
    std::fs::read(path).map_err(|e| ServerError::Config(format!("reading {}: {e}", path.display())))
}

fn write_private(path: &Path, data: &[u8], mode: u32) -> Result<(), ServerError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let err = |e: std::io::Error| ServerError::Config(format!("writing {}: {e}", path.display()));
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .map_err(err)?;
    f.write_all(data).map_err(err)?;
    f.sync_all().map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)
}

/// The serving certificate and key (PEM): the configured files, else the self-signed pair in
/// the cert dir, made on first start for the node name and the listen address.
pub fn serving_pair(config: &ServerConfig) -> Result<(Vec<u8>, Vec<u8>), ServerError> {
    match (&config.tls_cert_file, &config.tls_private_key_file) {
        (Some(c), Some(k)) => return Ok((read(c)?, read(k)?)),
        (None, None) => {}
        _ => {
            return Err(ServerError::Config(
                "tlsCertFile and tlsPrivateKeyFile go together".into(),
            ))
        }
    }
    let (crt, key) = (
        config.cert_dir.join("kubelet.crt"),
        config.cert_dir.join("kubelet.key"),
    );
    if crt.exists() && key.exists() {
        return Ok((read(&crt)?, read(&key)?));
    }
    std::fs::create_dir_all(&config.cert_dir)
        .map_err(|e| ServerError::Config(format!("creating {}: {e}", config.cert_dir.display())))?;
    let gen = |e: rcgen::Error| ServerError::Config(format!("self-signed certificate: {e}"));
    let key_pair = rcgen::KeyPair::generate().map_err(gen)?;
    let mut names = vec![config.node_name.clone(), "localhost".to_string()];
    names.push(config.address.ip().to_string());
    names.dedup();
    let mut params = rcgen::CertificateParams::new(names).map_err(gen)?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(
        rcgen::DnType::CommonName,
        format!("{}@{now}", config.node_name),
    );
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let cert = params.self_signed(&key_pair).map_err(gen)?;
    let (cert_pem, key_pem) = (cert.pem(), key_pair.serialize_pem());
    write_private(&key, key_pem.as_bytes(), 0o600)?;
    write_private(&crt, cert_pem.as_bytes(), 0o644)?;
    Ok((cert_pem.into_bytes(), key_pem.into_bytes()))
}

/// rustls server config: our serving pair; client certificates optional at the TLS layer (an
/// anonymous caller gets a 401 rather than a handshake failure) but, when offered, verified
/// against the client CA.
pub fn server_config(config: &ServerConfig) -> Result<rustls::ServerConfig, ServerError> {
    let tls = |e: &dyn std::fmt::Display| ServerError::Config(format!("tls: {e}"));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let ca = read(&config.client_ca_file)?;
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(&ca) {
        roots.add(c.map_err(|e| tls(&e))?).map_err(|e| tls(&e))?;
    }
    if roots.is_empty() {
        return Err(ServerError::Config(format!(
            "clientCAFile {} holds no certificate",
            config.client_ca_file.display()
        )));
    }
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .allow_unauthenticated()
    .build()
    .map_err(|e| tls(&e))?;
    let builder = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| tls(&e))?
        .with_client_cert_verifier(verifier);
    let mut cfg = match &config.serving_certificate {
        // serverTLSBootstrap: whatever certificate is current at each handshake.
        Some(resolver) => builder.with_cert_resolver(resolver.clone()),
        None => {
            let (cert_pem, key_pem) = serving_pair(config)?;
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
                .collect::<Result<_, _>>()
                .map_err(|e| tls(&e))?;
            let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| tls(&e))?;
            builder.with_single_cert(certs, key).map_err(|e| tls(&e))?
        }
    };
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(cfg)
}
