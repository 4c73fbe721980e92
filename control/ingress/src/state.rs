//! What the data path reads: the routing table and the certificates, each swapped whole when the
//! watched objects change, so reloading never touches an open connection.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use tokio_rustls::rustls::sign::CertifiedKey;

use crate::proxy::Pool;
use crate::routes::Table;

/// Certificates by TLS host (`*.example.com` kept as written).
#[derive(Debug, Default)]
pub struct Certs {
    pub by_host: HashMap<String, Arc<CertifiedKey>>,
}

impl Certs {
    /// The certificate for an SNI name: exact host first, then a wildcard one label up.
    pub fn find(&self, sni: &str) -> Option<Arc<CertifiedKey>> {
        let sni = sni.to_ascii_lowercase();
        self.by_host.get(&sni).cloned().or_else(|| {
            let (_, base) = sni.split_once('.')?;
            self.by_host.get(&format!("*.{base}")).cloned()
        })
    }
}

#[derive(Debug, Default)]
pub struct State {
    table: RwLock<Arc<Table>>,
    certs: RwLock<Arc<Certs>>,
    pub pool: Arc<Pool>,
    pub metrics: crate::metrics::Metrics,
}

impl State {
    pub fn table(&self) -> Arc<Table> {
        self.table.read().expect("table lock").clone()
    }

    pub fn certs(&self) -> Arc<Certs> {
        self.certs.read().expect("certs lock").clone()
    }

    pub fn replace(&self, table: Table, certs: Certs) {
        *self.table.write().expect("table lock") = Arc::new(table);
        *self.certs.write().expect("certs lock") = Arc::new(certs);
    }
}
