//! Everything outside the cluster zone goes to the resolvers of a resolv.conf (CoreDNS's
//! `forward . /etc/resolv.conf` with `cache`): hickory-resolver does the transport (UDP, TCP on
//! truncation), retries across servers and a bounded TTL cache; a semaphore bounds how many
//! questions are in flight upstream so a flood cannot grow memory (CoreDNS's `max_concurrent`).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{Name, Record, RecordType};
use hickory_resolver::config::{ResolveHosts, ResolverOpts};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::Resolver;
use tokio::sync::Semaphore;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("read upstream resolv.conf {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("upstream resolv.conf {path}: {message}")]
    Parse { path: PathBuf, message: String },
}

/// What the upstream said.
#[derive(Debug)]
pub enum Forwarded {
    Records(Vec<Record>),
    /// NXDOMAIN or NODATA, with the upstream's SOA when it sent one.
    Negative {
        rcode: ResponseCode,
        soa: Option<Box<Record>>,
    },
    /// Timeout or no server answered (SERVFAIL).
    Failed(String),
    /// Too many questions in flight (REFUSED, as CoreDNS's max_concurrent).
    Busy,
}

/// Questions in flight upstream at most (CoreDNS's forward `max_concurrent` default is unset;
/// its docs suggest 1000).
pub const MAX_CONCURRENT: usize = 1000;

/// Upstream resolvers with a cache.
pub struct Forwarder {
    resolver: Resolver<TokioRuntimeProvider>,
    permits: Arc<Semaphore>,
    pub servers: Vec<String>,
}

impl std::fmt::Debug for Forwarder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Forwarder")
            .field("servers", &self.servers)
            .finish()
    }
}

impl Forwarder {
    pub fn from_resolv_conf(path: &Path) -> Result<Self, Error> {
        let data = std::fs::read(path).map_err(|source| Error::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let (config, _) =
            hickory_resolver::system_conf::parse_resolv_conf(&data).map_err(|e| Error::Parse {
                path: path.to_path_buf(),
                message: e.to_string(),
            })?;
        let servers = config
            .name_servers()
            .iter()
            .map(|s| s.ip.to_string())
            .collect();
        let mut opts = ResolverOpts::default();
        // Questions arrive fully qualified; search lists belong to the clients.
        opts.ndots = 0;
        opts.timeout = Duration::from_secs(2);
        opts.attempts = 2;
        opts.cache_size = 10_000;
        opts.use_hosts_file = ResolveHosts::Never;
        opts.preserve_intermediates = true;
        opts.positive_max_ttl = Some(Duration::from_secs(3600));
        opts.negative_max_ttl = Some(Duration::from_secs(300));
        let mut builder = Resolver::builder_with_config(config, TokioRuntimeProvider::default());
        *builder.options_mut() = opts;
        let resolver = builder.build().map_err(|e| Error::Parse {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        Ok(Self {
            resolver,
            permits: Arc::new(Semaphore::new(MAX_CONCURRENT)),
            servers,
        })
    }

    pub async fn resolve(&self, name: &Name, qtype: RecordType) -> Forwarded {
        let Ok(_permit) = self.permits.clone().try_acquire_owned() else {
            return Forwarded::Busy;
        };
        let mut name = name.clone();
        name.set_fqdn(true);
        match self.resolver.lookup(name, qtype).await {
            Ok(lookup) => Forwarded::Records(lookup.answers().to_vec()),
            Err(e) if e.is_no_records_found() => {
                let rcode = if e.is_nx_domain() {
                    ResponseCode::NXDomain
                } else {
                    ResponseCode::NoError
                };
                let soa = e.into_soa().map(|r| Box::new(r.into_record_of_rdata()));
                Forwarded::Negative { rcode, soa }
            }
            Err(e) => Forwarded::Failed(e.to_string()),
        }
    }
}
