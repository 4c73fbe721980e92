//! TLS from `kubernetes.io/tls` Secrets: certificates parsed from `tls.crt`/`tls.key`, chosen by
//! SNI at each handshake from the current [`Certs`]; ALPN offers h2 and http/1.1.

use std::sync::Arc;

use tokio_rustls::rustls::crypto::ring::sign::any_supported_type;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::{ClientHello, ResolvesServerCert};
use tokio_rustls::rustls::sign::CertifiedKey;
use tokio_rustls::rustls::ServerConfig;

use crate::state::State;

/// Parses a Secret's `tls.crt` and `tls.key` (PEM) into a certificate rustls can serve.
pub fn certified_key(crt: &[u8], key: &[u8]) -> Result<CertifiedKey, String> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(crt)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("tls.crt: {e}"))?;
    if chain.is_empty() {
        return Err("tls.crt: no certificate".into());
    }
    let key = PrivateKeyDer::from_pem_slice(key).map_err(|e| format!("tls.key: {e}"))?;
    let signer = any_supported_type(&key).map_err(|e| format!("tls.key: {e}"))?;
    Ok(CertifiedKey::new(chain, signer))
}

#[derive(Debug)]
struct BySni(Arc<State>);

impl ResolvesServerCert for BySni {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        // No SNI or no certificate for it: the handshake fails (unrecognized_name) rather than
        // show a certificate for another host.
        self.0.certs().find(hello.server_name()?)
    }
}

pub fn server_config(state: Arc<State>) -> Arc<ServerConfig> {
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let mut cfg = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(BySni(state)));
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Arc::new(cfg)
}
